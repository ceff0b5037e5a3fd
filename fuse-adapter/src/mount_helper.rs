//! mount(8) and fstab: turning the argument forms they use into ordinary goofys-rs flags.
//!
//! Problems this module solves:
//! - An fstab line such as `bucket:prefix /mnt fuse.goofys-rs _netdev,allow_other,--file-mode=0666 0 0`
//!   reaches us as `goofys-rs bucket:prefix /mnt -o _netdev,allow_other,--file-mode=0666,...`
//!   (mount(8) runs `mount.fuse3`, which runs `goofys-rs` from PATH). As goofys does, every
//!   `-o` item that starts with `-` becomes a flag of its own, the rest stay mount options.
//!   A comma inside a value is written `\,`.
//! - Installed as `/sbin/mount.fuse.goofys-rs` (or `mount.goofys-rs`), the binary is called
//!   by mount(8) directly with the helper protocol: `spec dir [-sfnv] [-N ns] [-o opts] [-t type]`.
//!   argv[0] tells; then `-s`, `-n`, `-v` and `-t` are dropped, `-f` (fake) means "do not mount",
//!   and `-N` (another mount namespace) is refused rather than ignored.
//! - mount(8) runs helpers with PATH and HOME removed from the environment. Without HOME the
//!   AWS credential chain cannot find `~/.aws/credentials`, and without PATH no `fusermount3`
//!   is found (so no auto-unmount). [`restore_environment_stripped_by_mount8`] puts back the
//!   standard PATH and the user's home directory from the password database.

use std::ffi::OsString;
use std::path::Path;

/// The PATH a login shell starts with, used when mount(8) removed ours.
pub const STANDARD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Sets PATH and HOME when they are missing, as they are under mount(8). Returns which ones
/// were set, for the log. Must run while the process has a single thread (environment writes
/// race with reads from other threads); it refuses otherwise.
#[allow(unsafe_code)]
pub fn restore_environment_stripped_by_mount8() -> Vec<&'static str> {
    let threads = std::fs::read_dir("/proc/self/task").map(|tasks| tasks.count()).unwrap_or(usize::MAX);
    if threads != 1 {
        return Vec::new();
    }
    let mut restored = Vec::new();
    if std::env::var_os("PATH").is_none() {
        // SAFETY: the process has a single thread (checked above), so nothing reads the
        // environment concurrently.
        unsafe { std::env::set_var("PATH", STANDARD_PATH) };
        restored.push("PATH");
    }
    if std::env::var_os("HOME").is_none()
        && let Ok(Some(user)) = nix::unistd::User::from_uid(nix::unistd::geteuid())
    {
        // SAFETY: as above, single-threaded.
        unsafe { std::env::set_var("HOME", &user.dir) };
        restored.push("HOME");
    }
    restored
}

/// The outcome of [`normalize_argv`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Normalized {
    /// Arguments for the command-line parser; argv[0] is always `goofys-rs`.
    Args(Vec<OsString>),
    /// mount(8) asked for a fake mount (`-f`): nothing to do.
    FakeMount,
}

/// Whether argv[0] names a mount(8) helper (`mount.goofys-rs`, `mount.fuse.goofys-rs`).
fn is_mount_helper_name(argv0: &OsString) -> bool {
    Path::new(argv0).file_name().is_some_and(|name| name.to_string_lossy().starts_with("mount."))
}

/// Rewrites mount(8)'s helper protocol and fstab-style `-o` lists into plain arguments.
pub fn normalize_argv(argv: Vec<OsString>) -> Result<Normalized, String> {
    let mut args = argv.into_iter();
    let argv0 = args.next().unwrap_or_default();
    let rest: Vec<OsString> = args.collect();
    let rest = if is_mount_helper_name(&argv0) {
        match strip_helper_flags(rest)? {
            Some(rest) => rest,
            None => return Ok(Normalized::FakeMount),
        }
    } else {
        rest
    };
    let mut out = vec![OsString::from("goofys-rs")];
    out.extend(expand_option_lists(rest));
    Ok(Normalized::Args(out))
}

/// Drops the helper-protocol flags mount(8) adds; `None` for a fake mount.
fn strip_helper_flags(args: Vec<OsString>) -> Result<Option<Vec<OsString>>, String> {
    let mut out = Vec::with_capacity(args.len());
    let mut args = args.into_iter();
    let mut fake = false;
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy();
        match text.as_ref() {
            "-t" => {
                args.next();
            }
            "-N" => {
                return Err("mount(8) asked for another mount namespace (-N), which goofys-rs does not support; \
                            run the mount inside that namespace instead"
                    .into());
            }
            "-o" => {
                out.push(arg);
                out.extend(args.next());
            }
            flags if flags.len() > 1 && flags.starts_with('-') && flags[1..].chars().all(|c| "sfnv".contains(c)) => {
                fake |= flags.contains('f');
            }
            _ => out.push(arg),
        }
    }
    Ok(if fake { None } else { Some(out) })
}

/// Splits every `-o a,b,--flag=value` into `-o a -o b --flag=value`.
fn expand_option_lists(args: Vec<OsString>) -> Vec<OsString> {
    let mut out = Vec::with_capacity(args.len());
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let text = arg.to_string_lossy().into_owned();
        let list = if text == "--" {
            out.push(arg);
            out.extend(args.by_ref());
            break;
        } else if text == "-o" {
            match args.next() {
                Some(list) => list.to_string_lossy().into_owned(),
                None => {
                    // Let the parser report the missing value.
                    out.push(arg);
                    break;
                }
            }
        } else if let Some(list) = text.strip_prefix("-o").filter(|_| !text.starts_with("--")) {
            list.to_owned()
        } else {
            out.push(arg);
            continue;
        };
        for item in split_option_list(&list) {
            if item.starts_with('-') {
                out.push(item.into());
            } else if !item.is_empty() {
                out.push("-o".into());
                out.push(item.into());
            }
        }
    }
    out
}

/// Splits on commas not escaped as `\,`.
fn split_option_list(list: &str) -> Vec<String> {
    let mut items = vec![String::new()];
    let mut chars = list.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&',') => {
                chars.next();
                items.last_mut().expect("never empty").push(',');
            }
            ',' => items.push(String::new()),
            c => items.last_mut().expect("never empty").push(c),
        }
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normalize(argv: &[&str]) -> Normalized {
        normalize_argv(argv.iter().map(OsString::from).collect()).unwrap()
    }

    fn args(list: &[&str]) -> Normalized {
        Normalized::Args(list.iter().map(OsString::from).collect())
    }

    #[test]
    fn fstab_options_from_mount_fuse_become_flags() {
        // What mount.fuse3 runs for `bucket:prefix /mnt fuse.goofys-rs _netdev,allow_other,--file-mode=0666 0 0`.
        assert_eq!(
            normalize(&[
                "goofys-rs",
                "bucket:prefix",
                "/mnt",
                "-o",
                "rw,allow_other,--file-mode=0666,--cheap,dev,suid"
            ]),
            args(&[
                "goofys-rs",
                "bucket:prefix",
                "/mnt",
                "-o",
                "rw",
                "-o",
                "allow_other",
                "--file-mode=0666",
                "--cheap",
                "-o",
                "dev",
                "-o",
                "suid"
            ])
        );
    }

    #[test]
    fn ordinary_command_lines_pass_through() {
        assert_eq!(
            normalize(&["/usr/bin/goofys-rs", "-f", "--stat-cache-ttl", "1s", "b", "/m"]),
            args(&["goofys-rs", "-f", "--stat-cache-ttl", "1s", "b", "/m"])
        );
        assert_eq!(
            normalize(&["goofys-rs", "-oro,noexec", "b", "/m"]),
            args(&["goofys-rs", "-o", "ro", "-o", "noexec", "b", "/m"])
        );
        // A value after `--` is not an option list.
        assert_eq!(normalize(&["goofys-rs", "--", "b", "-o"]), args(&["goofys-rs", "--", "b", "-o"]));
    }

    #[test]
    fn escaped_commas_stay_in_values() {
        assert_eq!(
            normalize(&["goofys-rs", "-o", r"--profile=a\,b,ro", "b", "/m"]),
            args(&["goofys-rs", "--profile=a,b", "-o", "ro", "b", "/m"])
        );
    }

    #[test]
    fn mount_helper_protocol_flags_are_dropped_and_fake_mounts_do_nothing() {
        assert_eq!(
            normalize(&[
                "/sbin/mount.fuse.goofys-rs",
                "b:p",
                "/m",
                "-n",
                "-v",
                "-o",
                "_netdev,--uid=7",
                "-t",
                "fuse.goofys-rs"
            ]),
            args(&["goofys-rs", "b:p", "/m", "-o", "_netdev", "--uid=7"])
        );
        assert_eq!(normalize(&["mount.goofys-rs", "b", "/m", "-sf", "-o", "ro"]), Normalized::FakeMount);
        assert!(normalize_argv(["mount.goofys-rs", "b", "/m", "-N", "1"].map(OsString::from).to_vec()).is_err());
        // Outside helper mode, -f is --foreground.
        assert_eq!(normalize(&["goofys-rs", "-f", "b", "/m"]), args(&["goofys-rs", "-f", "b", "/m"]));
    }
}
