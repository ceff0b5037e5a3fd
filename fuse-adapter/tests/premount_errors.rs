//! Every way a mount can fail before it starts ends with one line that names the cause and the
//! fix, a non-zero exit, and nothing mounted: a missing bucket, wrong credentials, access
//! denied, an unreachable endpoint, a missing or non-directory mountpoint, a mountpoint that is
//! already mounted, and no /dev/fuse. The S3 failures are run in the default background mode,
//! so the message travels from the background process to the command that started it.
//!
//! Needs `weed` (SeaweedFS) and FUSE; the /dev/fuse case needs root (a private mount namespace).

use std::path::Path;
use std::process::{Command, Output};

use goofys_tests::binary::{Mountpoint, bucket_name, goofys_command, is_mounted, isolate_aws_environment};
use goofys_tests::seaweedfs::{LIMITED_ACCESS_KEY, LIMITED_SECRET_KEY, SeaweedFs};

const BINARY: &str = env!("CARGO_BIN_EXE_goofys-rs");

/// Runs goofys-rs to completion and returns its output.
fn mount_attempt(mut command: Command, args: &[&str]) -> Output {
    command.args(args).output().expect("cannot run goofys-rs")
}

/// Asserts a failed start: exit status 1, exactly one stderr line, containing each of
/// `expected`, and nothing mounted on `mountpoint`.
fn assert_fails_with(output: &Output, mountpoint: &Path, expected: &[&str]) {
    let message = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert_eq!(message.lines().count(), 1, "not one line: {message}");
    assert!(message.starts_with("error: "), "{message}");
    for part in expected {
        assert!(message.contains(part), "`{part}` missing from: {message}");
    }
    assert!(!is_mounted(mountpoint), "{} was mounted", mountpoint.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_failures_before_mounting_name_the_cause_and_the_fix() {
    let server = SeaweedFs::shared();
    let client = server.new_bucket("premount").await;
    let bucket = bucket_name(&client);
    let endpoint = server.endpoint().to_owned();
    let mnt = Mountpoint::new();
    let mnt_arg = mnt.arg();
    let base_args = |bucket: &str| vec!["--endpoint".to_owned(), endpoint.clone(), bucket.to_owned(), mnt_arg.clone()];
    let run = |command: Command, args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        mount_attempt(command, &args)
    };

    let missing = run(goofys_command(Path::new(BINARY)), base_args("goofys-no-such-bucket"));
    assert_fails_with(
        &missing,
        mnt.path(),
        &["bucket `goofys-no-such-bucket` does not exist", "check the bucket name, --endpoint and --region"],
    );

    let mut wrong_secret = Command::new(BINARY);
    isolate_aws_environment(&mut wrong_secret, goofys_tests::seaweedfs::ACCESS_KEY, "not-the-secret");
    assert_fails_with(
        &run(wrong_secret, base_args(&bucket)),
        mnt.path(),
        &["rejected the credentials (SignatureDoesNotMatch)", "check AWS_SECRET_ACCESS_KEY"],
    );

    let mut unknown_key = Command::new(BINARY);
    isolate_aws_environment(&mut unknown_key, "AKIDUNKNOWN", "whatever");
    assert_fails_with(
        &run(unknown_key, base_args(&bucket)),
        mnt.path(),
        &["rejected the credentials (InvalidAccessKeyId)", "check AWS_ACCESS_KEY_ID"],
    );

    let mut limited = Command::new(BINARY);
    isolate_aws_environment(&mut limited, LIMITED_ACCESS_KEY, LIMITED_SECRET_KEY);
    assert_fails_with(
        &run(limited, base_args(&bucket)),
        mnt.path(),
        &[&format!("access to bucket `{bucket}` denied (AccessDenied)"), "check the bucket policy"],
    );

    let mut unsigned = base_args(&bucket);
    unsigned.insert(0, "--no-sign-request".into());
    assert_fails_with(
        &run(goofys_command(Path::new(BINARY)), unsigned),
        mnt.path(),
        &["unsigned requests (--no-sign-request)", "drop --no-sign-request"],
    );

    // A port nothing listens on: bind one, note it, close it.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let unreachable = run(
        goofys_command(Path::new(BINARY)),
        vec!["--endpoint".into(), format!("http://127.0.0.1:{closed_port}"), bucket.clone(), mnt.arg()],
    );
    assert_fails_with(
        &unreachable,
        mnt.path(),
        &[&format!("cannot reach http://127.0.0.1:{closed_port}"), "check --endpoint, the network"],
    );
}

#[test]
fn mountpoint_problems_are_caught_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let output = mount_attempt(goofys_command(Path::new(BINARY)), &["bucket", missing.to_str().unwrap()]);
    assert_fails_with(&output, &missing, &["mountpoint", "does not exist", "mkdir -p"]);

    let file = dir.path().join("file");
    std::fs::write(&file, b"not a directory").unwrap();
    let output = mount_attempt(goofys_command(Path::new(BINARY)), &["bucket", file.to_str().unwrap()]);
    assert_fails_with(&output, &file, &["is not a directory", "give a directory"]);

    // /proc is always a mount point; mounting over a live mount would hide it.
    let output = Command::new(BINARY).args(["bucket", "/proc"]).output().unwrap();
    let message = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{message}");
    assert!(
        message.contains("/proc is already a mount point (proc") && message.contains("unmount it first"),
        "{message}"
    );
}

/// In a private mount namespace whose /dev is an empty tmpfs, there is no /dev/fuse.
#[test]
fn a_missing_fuse_device_is_reported_with_the_fix() {
    assert!(running_as_root(), "this test needs root (it makes a private mount namespace); the CI runs as root");
    let mnt = Mountpoint::new();
    let output = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", r#"mount -t tmpfs none /dev && exec "$0" "$@""#])
        .arg(BINARY)
        .args(["-f", "bucket", &mnt.arg()])
        .output()
        .expect("cannot run unshare");
    assert_fails_with(&output, mnt.path(), &["/dev/fuse does not exist", "modprobe fuse", "--device /dev/fuse"]);
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}
