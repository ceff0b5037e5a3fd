//! `goofys-rs demo`, as the README's first command runs it: an in-memory S3 server on
//! 127.0.0.1, the sample bucket mounted, the printed instructions true (the README, the
//! checksum), and Ctrl-C unmounting and removing what the demo created. Needs nothing but FUSE.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use goofys_fuse::demo::{SAMPLE_BINARY_KEY, SAMPLE_README, sample_binary_md5_hex};
use goofys_tests::binary::{ForegroundProcess, is_mounted, wait_until};

const BINARY: &str = env!("CARGO_BIN_EXE_goofys-rs");

/// Unmounts `path` if a failing test left it mounted.
struct UnmountOnDrop(PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        if is_mounted(&self.0) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

/// Starts the demo and returns it once it printed its instructions, with the mountpoint it
/// printed.
fn start_demo(args: &[&str]) -> (ForegroundProcess, PathBuf) {
    let mut command = Command::new(BINARY);
    command.arg("demo").args(args).env_remove("GOOFYS_LOG");
    let mut demo = ForegroundProcess::spawn(command);
    let ready = wait_until(Duration::from_secs(30), || demo.stdout().contains("Press Ctrl-C") || demo.has_exited());
    assert!(
        ready && !demo.has_exited(),
        "the demo did not start; stdout:\n{}\nstderr:\n{}",
        demo.stdout(),
        demo.stderr()
    );
    let stdout = demo.stdout();
    let mountpoint = stdout
        .lines()
        .find_map(|line| line.strip_prefix("mounted at "))
        .unwrap_or_else(|| panic!("no `mounted at` line in:\n{stdout}"));
    (demo, PathBuf::from(mountpoint))
}

fn md5sum(path: &Path) -> String {
    let output = Command::new("md5sum").arg(path).output().unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout).split_whitespace().next().unwrap().to_owned()
}

#[test]
fn the_demo_mounts_sample_objects_and_ctrl_c_cleans_everything_up() {
    let (mut demo, mountpoint) = start_demo(&[]);
    let _guard = UnmountOnDrop(mountpoint.clone());
    assert!(is_mounted(&mountpoint), "{} is not mounted", mountpoint.display());
    assert!(mountpoint.starts_with(std::env::temp_dir()), "{}", mountpoint.display());

    assert_eq!(std::fs::read_to_string(mountpoint.join("README.txt")).unwrap(), SAMPLE_README);
    let checksum = md5sum(&mountpoint.join(SAMPLE_BINARY_KEY));
    assert_eq!(checksum, sample_binary_md5_hex());
    assert!(demo.stdout().contains(&format!("S3's ETag: {checksum}")), "the printed ETag is the file's MD5");
    let mut top: Vec<String> = std::fs::read_dir(&mountpoint)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    top.sort();
    assert_eq!(top, ["README.txt", "data", "docs", "empty", "notes", "photos"]);
    assert!(mountpoint.join("notes/café menu ☕.txt").is_file());
    // Writing works as the instructions say: cp -r, then mv and rm.
    let copy = Command::new("cp").arg("-r").arg(mountpoint.join("docs")).arg(mountpoint.join("my-docs")).status();
    assert!(copy.unwrap().success());
    let copied = std::fs::read_to_string(mountpoint.join("my-docs/getting-started.md")).unwrap();
    assert_eq!(copied, std::fs::read_to_string(mountpoint.join("docs/getting-started.md")).unwrap());
    std::fs::rename(mountpoint.join("my-docs"), mountpoint.join("moved-docs")).unwrap();
    assert!(mountpoint.join("moved-docs/semantics.md").is_file());
    std::fs::remove_dir_all(mountpoint.join("moved-docs")).unwrap();
    assert!(!mountpoint.join("moved-docs").exists());
    // Extended attributes through the embedded server (s3s), which decodes RFC 2047 words:
    // binary values, UTF-8 text and plain ASCII come back byte for byte.
    let readme = mountpoint.join("README.txt");
    for (name, value_arg, expected) in [
        ("user.binary", "0sAP8KDQ==", &[0u8, 255, 10, 13][..]),
        ("user.text", "0saMOpbGxv", "héllo".as_bytes()),
        ("user.plain", "0sYmx1ZQ==", b"blue"),
    ] {
        let set = Command::new("setfattr").args(["-n", name, "-v", value_arg]).arg(&readme).output().unwrap();
        assert!(set.status.success(), "setfattr {name}: {}", String::from_utf8_lossy(&set.stderr));
        let got = Command::new("getfattr").args(["--only-values", "-n", name]).arg(&readme).output().unwrap();
        assert_eq!(got.stdout, expected, "getfattr {name}: {}", String::from_utf8_lossy(&got.stderr));
    }

    demo.signal("INT");
    let status = demo.wait();
    assert!(status.success(), "{status:?}; stderr:\n{}", demo.stderr());
    assert!(!is_mounted(&mountpoint), "the demo left its mount");
    assert!(!mountpoint.exists(), "the demo left its temporary mountpoint");
    assert!(demo.stdout().contains("Unmounted"), "{}", demo.stdout());
}

#[test]
fn a_demo_mountpoint_that_did_not_exist_is_created_and_removed() {
    let parent = tempfile::tempdir().unwrap();
    let wanted = parent.path().join("try-goofys");
    let (mut demo, mountpoint) = start_demo(&[wanted.to_str().unwrap()]);
    let _guard = UnmountOnDrop(mountpoint.clone());
    assert_eq!(mountpoint, wanted.canonicalize().unwrap());
    assert!(mountpoint.join("docs/getting-started.md").is_file());
    demo.signal("TERM");
    assert!(demo.wait().success(), "{}", demo.stderr());
    assert!(!wanted.exists(), "the directory the demo created is gone");
}
