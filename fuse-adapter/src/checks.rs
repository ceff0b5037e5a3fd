//! Checks of the host before mounting, each failing with one line that names the cause and the
//! fix: the mountpoint (missing, not a directory, already mounted, or a dead FUSE mount) and
//! the FUSE device.
//!
//! Problems this module solves:
//! - The kernel's and fusermount3's own errors are terse ("fuse: bad mount point: No such file
//!   or directory"); checking first gives the user a sentence with the fix.
//! - A process that died without auto-unmount leaves a dead mount ("Transport endpoint is not
//!   connected"). Mounting there again is what the user wants, so the dead mount is detached
//!   (lazily, as `fusermount3 -u -z` does) and the mount goes ahead, with a warning.
//! - Mounting over a live mount would hide it; that is refused.

use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The FUSE device.
pub const FUSE_DEVICE: &str = "/dev/fuse";

/// A check failed: one line with the cause and the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CheckError(pub String);

/// The first executable `name` on PATH.
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| {
        candidate.metadata().is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    })
}

/// Whether /etc/fuse.conf's text enables `user_allow_other` (a line of its own, not commented).
pub fn fuse_conf_allows_other(text: &str) -> bool {
    text.lines().any(|line| line.trim() == "user_allow_other")
}

/// Checks that the FUSE device exists.
pub fn check_fuse_device(device: &Path) -> Result<(), CheckError> {
    match device.metadata() {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Err(CheckError(format!(
            "{} does not exist, so FUSE is unavailable: load the module with `modprobe fuse`, or in a container \
             start it with `--device /dev/fuse --cap-add SYS_ADMIN`",
            device.display()
        ))),
        Err(error) => Err(CheckError(format!("cannot use {}: {error}", device.display()))),
    }
}

/// One line of /proc/self/mountinfo, the parts we need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The device number, `major:minor` (a FUSE mount's backing device info is named so).
    pub device: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
    pub source: String,
}

/// Parses /proc/self/mountinfo (fields: id parent major:minor root mount-point options
/// [optional...] - fstype source super-options; spaces and such are octal-escaped).
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let device = before.split(' ').nth(2)?;
            let mount_point = before.split(' ').nth(4)?;
            let mut after = after.split(' ');
            let fs_type = after.next()?;
            let source = after.next().unwrap_or("");
            Some(MountEntry {
                device: device.to_owned(),
                mount_point: PathBuf::from(unescape_mountinfo(mount_point)),
                fs_type: unescape_mountinfo(fs_type),
                source: unescape_mountinfo(source),
            })
        })
        .collect()
}

/// Undoes mountinfo's `\NNN` octal escapes.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b))
            && let Ok(value) = u8::from_str_radix(std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or(""), 8)
        {
            out.push(value);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The last (topmost) mount at exactly `path`, if any.
pub fn mount_at(path: &Path) -> Option<MountEntry> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    parse_mountinfo(&text).into_iter().rev().find(|entry| entry.mount_point == path)
}

/// Checks the mountpoint and returns its canonical path. A dead FUSE mount on it is detached
/// first; `warn` hears about that.
pub fn prepare_mountpoint(mountpoint: &Path, warn: &mut dyn FnMut(String)) -> Result<PathBuf, CheckError> {
    if is_dead_fuse_mount(mountpoint) {
        detach_dead_mount(mountpoint)?;
        warn(format!(
            "{} was a dead FUSE mount (its process had died: \"Transport endpoint is not connected\"); detached it",
            mountpoint.display()
        ));
    }
    prepare_mountpoint_once(mountpoint)
}

/// Whether `path` is a FUSE mount whose server is gone. `stat` alone cannot tell: the kernel
/// answers it from cached attributes while they last, so a directory listing is tried too.
fn is_dead_fuse_mount(path: &Path) -> bool {
    let not_connected = |error: &io::Error| error.raw_os_error() == Some(libc::ENOTCONN);
    match std::fs::metadata(path) {
        Err(error) => not_connected(&error),
        Ok(_) => {
            let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_owned());
            mount_at(&absolute).is_some_and(|entry| is_fuse(&entry.fs_type))
                && std::fs::read_dir(path).is_err_and(|error| not_connected(&error))
        }
    }
}

fn is_fuse(fs_type: &str) -> bool {
    fs_type == "fuse" || fs_type.starts_with("fuse.")
}

fn prepare_mountpoint_once(mountpoint: &Path) -> Result<PathBuf, CheckError> {
    let shown = mountpoint.display();
    let metadata = match std::fs::metadata(mountpoint) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            return Err(CheckError(format!("mountpoint {shown} does not exist: create it with `mkdir -p {shown}`")));
        }
        Err(error) if error.raw_os_error() == Some(libc::ENOTCONN) => {
            return Err(CheckError(format!(
                "mountpoint {shown} is a dead FUSE mount (\"Transport endpoint is not connected\") that could not be \
                 detached: run `fusermount3 -u -z {shown}` (or `umount -l {shown}` as root) and mount again"
            )));
        }
        Err(error) => {
            return Err(CheckError(format!("cannot use mountpoint {shown}: {error}; check its path and permissions")));
        }
    };
    if !metadata.is_dir() {
        return Err(CheckError(format!("mountpoint {shown} is not a directory: give a directory to mount on")));
    }
    let canonical =
        mountpoint.canonicalize().map_err(|error| CheckError(format!("cannot resolve mountpoint {shown}: {error}")))?;
    if let Some(existing) = mount_at(&canonical) {
        return Err(CheckError(format!(
            "{} is already a mount point ({} {}): unmount it first (`umount {}`) or choose another directory",
            canonical.display(),
            existing.fs_type,
            existing.source,
            canonical.display()
        )));
    }
    Ok(canonical)
}

/// Lazily unmounts a dead FUSE mount at `mountpoint`, as `fusermount3 -u -z` does. Only a
/// FUSE mount is touched.
fn detach_dead_mount(mountpoint: &Path) -> Result<(), CheckError> {
    let absolute = std::path::absolute(mountpoint).unwrap_or_else(|_| mountpoint.to_owned());
    let is_fuse =
        mount_at(&absolute).is_some_and(|entry| entry.fs_type == "fuse" || entry.fs_type.starts_with("fuse."));
    let shown = absolute.display();
    if !is_fuse {
        return Err(CheckError(format!(
            "mountpoint {shown} answers \"Transport endpoint is not connected\" but is not a FUSE mount this process \
             can see: unmount it with `umount -l {shown}` and mount again"
        )));
    }
    if nix::unistd::geteuid().is_root()
        && nix::mount::umount2(absolute.as_path(), nix::mount::MntFlags::MNT_DETACH).is_ok()
    {
        return Ok(());
    }
    let output = Command::new("fusermount3").arg("-u").arg("-z").arg("--").arg(&absolute).output();
    match output {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(CheckError(format!(
            "mountpoint {shown} is a dead FUSE mount and `fusermount3 -u -z` failed ({}): unmount it as its owner or \
             root and mount again",
            one_line(&String::from_utf8_lossy(&output.stderr))
        ))),
        Err(error) => Err(CheckError(format!(
            "mountpoint {shown} is a dead FUSE mount and fusermount3 could not run ({error}): install fuse3 or \
             unmount it as root with `umount -l {shown}`"
        ))),
    }
}

/// Joins the lines of a multi-line message into one.
pub fn one_line(text: &str) -> String {
    text.lines().map(str::trim).filter(|line| !line.is_empty()).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_lines_are_parsed_and_unescaped() {
        let text = "36 35 98:0 /mnt1 /mnt/with\\040space rw,noatime master:1 - fuse.goofys-rs bucket:pre rw\n\
                    22 1 0:21 / /proc rw,nosuid - proc proc rw\n";
        let entries = parse_mountinfo(text);
        assert_eq!(
            entries[0],
            MountEntry {
                device: "98:0".into(),
                mount_point: "/mnt/with space".into(),
                fs_type: "fuse.goofys-rs".into(),
                source: "bucket:pre".into()
            }
        );
        assert_eq!(entries[1].mount_point, PathBuf::from("/proc"));
    }

    #[test]
    fn user_allow_other_must_be_an_uncommented_line() {
        assert!(fuse_conf_allows_other("# comment\nuser_allow_other\n"));
        assert!(!fuse_conf_allows_other("#user_allow_other\n"));
        assert!(!fuse_conf_allows_other("mount_max = 1000\n"));
    }

    #[test]
    fn a_missing_fuse_device_names_the_fix() {
        let error = check_fuse_device(Path::new("/nonexistent/fuse")).unwrap_err().0;
        assert!(error.contains("modprobe fuse") && error.contains("--device /dev/fuse"), "{error}");
        check_fuse_device(Path::new("/")).unwrap();
    }

    #[test]
    fn mountpoint_errors_name_the_cause_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let mut no_warnings = |warning: String| panic!("unexpected warning {warning}");
        let missing = dir.path().join("missing");
        let error = prepare_mountpoint(&missing, &mut no_warnings).unwrap_err().0;
        assert!(error.contains("does not exist") && error.contains("mkdir -p"), "{error}");
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let error = prepare_mountpoint(&file, &mut no_warnings).unwrap_err().0;
        assert!(error.contains("is not a directory"), "{error}");
        assert_eq!(prepare_mountpoint(dir.path(), &mut no_warnings).unwrap(), dir.path().canonicalize().unwrap());
        let error = prepare_mountpoint(Path::new("/proc"), &mut no_warnings).unwrap_err().0;
        assert!(error.contains("already a mount point (proc"), "{error}");
    }

    #[test]
    fn multi_line_messages_become_one_line() {
        assert_eq!(one_line("fusermount3: failed\n  because\n\n"), "fusermount3: failed; because");
    }
}
