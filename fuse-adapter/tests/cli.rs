//! The `goofys-rs` command line as a user meets it, without mounting anything: `--help` and
//! `demo --help` (snapshots, version filtered out), `--version`, and refused flag values.

use std::process::{Command, Output};

const BINARY: &str = env!("CARGO_BIN_EXE_goofys-rs");

fn run(args: &[&str]) -> Output {
    Command::new(BINARY).args(args).env_remove("GOOFYS_SSE_C_KEY").output().expect("cannot run goofys-rs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn with_version_filtered(snapshot: impl FnOnce()) {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&regex_escape(env!("CARGO_PKG_VERSION")), "[VERSION]");
    settings.bind(snapshot);
}

fn regex_escape(text: &str) -> String {
    text.chars().flat_map(|c| if c.is_ascii_alphanumeric() { vec![c] } else { vec!['\\', c] }).collect()
}

#[test]
fn help_lists_every_goofys_flag_under_its_heading() {
    let output = run(&["--help"]);
    assert!(output.status.success());
    with_version_filtered(|| insta::assert_snapshot!("help", stdout(&output)));
}

#[test]
fn demo_help() {
    let output = run(&["demo", "--help"]);
    assert!(output.status.success());
    with_version_filtered(|| insta::assert_snapshot!("demo_help", stdout(&output)));
}

#[test]
fn version_answers_to_dash_v_as_in_goofys() {
    for flag in ["-v", "-V", "--version"] {
        let output = run(&[flag]);
        assert!(output.status.success(), "{flag}");
        assert_eq!(stdout(&output), format!("goofys-rs {}\n", env!("CARGO_PKG_VERSION")), "{flag}");
    }
}

/// A refused value stops the program with exit status 2 and an error line naming the flag and
/// what it expects.
#[test]
fn bad_flag_values_are_refused_with_the_flag_named() {
    let cases: [(&[&str], &str); 6] = [
        (&["--file-mode", "999"], "`9` is not an octal digit"),
        (&["--dir-mode", "0o17777"], "more than 0o7777"),
        (&["--stat-cache-ttl", "soon"], "expected a duration such as 30s"),
        (&["--type-cache-ttl", "10"], "lacks a unit"),
        (&["--acl", "everyone"], "possible values: private"),
        (&["--uid=-1"], "is not in 0..=4294967295"),
    ];
    for (flags, expected) in cases {
        let mut args = flags.to_vec();
        args.extend(["bucket", "/nonexistent-mountpoint"]);
        let output = run(&args);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {message}");
        let first = message.lines().next().unwrap_or_default();
        let flag = flags[0].split('=').next().unwrap();
        assert!(first.starts_with("error: ") && first.contains(flag), "{args:?}: {message}");
        assert!(message.contains(expected), "{args:?}: {message}");
    }
}

/// A flag the filesystem cannot honour yet is refused, not accepted and ignored: exit 1 with
/// one line saying so and what to do instead.
#[test]
fn flags_not_supported_yet_are_refused_with_a_reason() {
    for (flags, expected) in [
        (vec!["--cache", "/var/cache/goofys"], "--cache (goofys' local data cache through catfs) is not supported yet"),
        (vec!["-o", "bogus_option"], "unknown mount option `-o bogus_option`"),
    ] {
        let mut args = flags.clone();
        args.extend(["bucket", "/nonexistent-mountpoint"]);
        let output = run(&args);
        let message = stderr(&output);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {message}");
        assert_eq!(message.lines().count(), 1, "{args:?}: {message}");
        assert!(message.starts_with(&format!("error: {expected}")), "{args:?}: {message}");
    }
}

#[test]
fn a_fake_mount_from_mount8_does_nothing_and_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let helper = dir.path().join("mount.fuse.goofys-rs");
    std::os::unix::fs::symlink(BINARY, &helper).unwrap();
    let output = Command::new(&helper)
        .args(["bucket", "/nonexistent-mountpoint", "-f", "-o", "rw,--file-mode=0600", "-t", "fuse.goofys-rs"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stderr(&output), "");
}
