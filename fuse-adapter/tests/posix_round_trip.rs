//! `cp -a` and `rsync -aX` of a tree with symlinks, modes, owners, times and user xattrs into a
//! mount of the real `goofys-rs` binary and back out, compared with `rsync -anicX` (checksums,
//! nanosecond times, modes, owners, groups, link targets, xattrs): right after the copy, after
//! a remount by a new process (cold caches), and for the copies brought back out.
//!
//! Run against two servers: the simulator's S3 model over HTTP, which keeps what AWS keeps, and
//! SeaweedFS, which drops the user metadata of `dir/` marker objects. There, after a remount,
//! directories come back with the mount's defaults, and a listing shows every entry with the
//! defaults (no marker says the entries carry attributes), so the test looks each entry up
//! first: then every entry but the directories round-trips.
//!
//! Needs root (chown), FUSE 3, rsync, setfattr and `weed` (SeaweedFS).

use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use goofys_sim::s3_model::S3Model;
use goofys_sim::server::ServerHandle;
use goofys_tests::binary::{ForegroundProcess, Mountpoint, bucket_name, goofys_command};
use goofys_tests::files::{describe_output, pattern, run};
use goofys_tests::seaweedfs::{ACCESS_KEY, SECRET_KEY, SeaweedFs};

const BINARY: &str = env!("CARGO_BIN_EXE_goofys-rs");

/// Where the bucket lives, and what its server keeps.
#[derive(Clone, Debug)]
struct Backend {
    endpoint: String,
    bucket: String,
    /// Whether a `dir/` marker keeps its user metadata (a directory's mode, owner, times and
    /// xattrs).
    keeps_marker_metadata: bool,
}

/// A time in the past with a fraction of a second, for `touch -d`.
const PAST: &str = "2001-02-03 04:05:06.789012345";

/// A local tree: directories of modes 0700 and 0755 (one owned by uid 1234, one with an xattr,
/// one empty), files of modes 0600, 0644 and 0755, one owned by 1234:1234, one with two xattrs,
/// a 3 MiB file, symlinks to a file, to a directory and to nothing; every time in the past.
fn make_tree(root: &Path) {
    let dirs = ["private-dir", "open-dir/deep/er", "empty-dir"];
    for dir in dirs {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    let files: [(&str, Vec<u8>, u32); 6] = [
        ("private-dir/key", b"secret\n".to_vec(), 0o600),
        ("script.sh", b"#!/bin/sh\necho hi\n".to_vec(), 0o755),
        ("plain.txt", b"plain\n".to_vec(), 0o644),
        ("owned.txt", b"owned\n".to_vec(), 0o640),
        ("open-dir/deep/er/file", b"deep\n".to_vec(), 0o444),
        ("open-dir/blob.bin", pattern(3, 3 * 1024 * 1024 + 7), 0o644),
    ];
    for (name, body, mode) in files {
        std::fs::write(root.join(name), body).unwrap();
        std::fs::set_permissions(root.join(name), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let dir_modes = [("private-dir", 0o700), ("open-dir", 0o755), ("open-dir/deep", 0o750)];
    for (dir, mode) in dir_modes {
        std::fs::set_permissions(root.join(dir), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    for owned in ["owned.txt", "open-dir/deep"] {
        std::os::unix::fs::chown(root.join(owned), Some(1234), Some(1234)).unwrap();
    }
    symlink("plain.txt", root.join("link-to-file")).unwrap();
    symlink("open-dir/deep", root.join("link-to-dir")).unwrap();
    symlink("../nowhere", root.join("dangling")).unwrap();
    let setfattr = |name: &str, value: &str, path: &str| {
        run(Command::new("setfattr").args(["-n", name, "-v", value]).arg(root.join(path)));
    };
    setfattr("user.x", "hello", "plain.txt");
    setfattr("user.note", "café, not ASCII", "plain.txt");
    setfattr("user.project", "alpha", "open-dir");
    // Times last: deepest first, so a directory's time is not moved by its entries'.
    run(Command::new("find").arg(root).args(["-depth", "-exec", "touch", "-h", "-d", PAST, "{}", "+"]));
    run(Command::new("touch").args(["-h", "-d", "1999-12-31 23:59:59"]).arg(root.join("link-to-file")));
    run(Command::new("touch").args(["-d", "2010-06-07 08:09:10.5"]).arg(root.join("private-dir/key")));
}

/// What `rsync -anicX` would change to make `to` like `from` (checksums, nanosecond times,
/// modes, owners, groups, link targets, xattrs; entries only in `to` too), one itemized line
/// per entry.
fn differences(from: &Path, to: &Path) -> Vec<String> {
    let output = run(Command::new("rsync")
        .args(["-a", "-n", "-i", "-c", "-X", "--delete", "--modify-window=-1"])
        .arg(format!("{}/", from.display()))
        .arg(format!("{}/", to.display())));
    String::from_utf8_lossy(&output.stdout).lines().map(str::to_owned).collect()
}

/// Whether rsync's itemized line is about a directory (its second letter is the file type).
fn is_directory_line(line: &str) -> bool {
    line.as_bytes().get(1) == Some(&b'd')
}

/// Asserts what [`differences`] finds between `local` and `copy`: nothing, or on a server
/// that drops a marker's metadata, at most directories.
fn assert_same_tree(backend: &Backend, what: &str, local: &Path, copy: &Path, directories_may_differ: bool) {
    let found = differences(local, copy);
    let allowed = directories_may_differ && !backend.keeps_marker_metadata;
    let unexpected: Vec<&String> = found.iter().filter(|line| !(allowed && is_directory_line(line))).collect();
    assert!(
        unexpected.is_empty(),
        "{what} ({}): rsync -anicX finds differences:\n{}",
        backend.endpoint,
        found.join("\n")
    );
    if allowed {
        eprintln!("{what}: directories that lost their attributes on this server:\n{}", found.join("\n"));
    }
}

/// Runs `command` against the mount `process` serves; panics with the command's output and
/// the mount's log if it fails.
#[track_caller]
fn run_on(process: &ForegroundProcess, command: &mut Command) {
    let output = command.output().unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed with {}:\n{}\n--- goofys-rs log\n{}",
        output.status,
        describe_output(&output),
        process.stderr()
    );
}

/// Looks up every entry of `local` under `copy` in the mount (`lstat`), walking the local tree
/// so that the mount lists nothing: each entry's attributes come from its own object.
fn look_up_each(local: &Path, copy: &Path) {
    for entry in std::fs::read_dir(local).unwrap() {
        let entry = entry.unwrap();
        let in_mount = copy.join(entry.file_name());
        std::fs::symlink_metadata(&in_mount).unwrap_or_else(|e| panic!("lstat {}: {e}", in_mount.display()));
        if entry.file_type().unwrap().is_dir() {
            look_up_each(&entry.path(), &in_mount);
        }
    }
}

/// A `goofys-rs -f` process serving `backend` on `mountpoint`.
fn mount(backend: &Backend, mountpoint: &Mountpoint) -> ForegroundProcess {
    let mut command = goofys_command(Path::new(BINARY));
    command.args(["-f", "--endpoint", &backend.endpoint]).arg(&backend.bucket).arg(mountpoint.path());
    ForegroundProcess::mount(command, mountpoint)
}

/// Stops a mount with SIGTERM, as a user would, and checks it ended cleanly.
fn unmount(mut process: ForegroundProcess, mountpoint: &Mountpoint) {
    process.signal("TERM");
    let status = process.wait();
    assert!(status.success(), "goofys-rs exited with {status}; stderr:\n{}", process.stderr());
    assert!(mountpoint.wait_unmounted(), "{} is still mounted", mountpoint.path().display());
}

fn round_trip(backend: Backend) {
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("tree");
    make_tree(&local);
    let out: PathBuf = work.path().join("out");
    std::fs::create_dir(&out).unwrap();

    // The copies go one level below the root: the bucket's root has no marker to say that its
    // entries carry attributes, so a listing of it (goofys-rs's readiness check lists it) shows
    // its directories with the defaults until they are looked up again.
    let first = Mountpoint::new();
    let process = mount(&backend, &first);
    std::fs::create_dir(first.join("copies")).unwrap();
    let in_first = |copy: &str| first.join("copies").join(copy);
    run_on(&process, Command::new("cp").arg("-a").arg(&local).arg(in_first("cp")));
    let into_mount = format!("{}/", local.display());
    run_on(&process, Command::new("rsync").args(["-a", "-X"]).arg(into_mount).arg(in_first("rsync")));
    for copy in ["cp", "rsync"] {
        assert_same_tree(&backend, &format!("{copy} into the mount"), &local, &in_first(copy), false);
    }
    unmount(process, &first);

    let second = Mountpoint::new();
    let process = mount(&backend, &second);
    let in_second = |copy: &str| second.join("copies").join(copy);
    if !backend.keeps_marker_metadata {
        // Without a marker saying its entries carry attributes, a directory's listing shows
        // the defaults; a lookup shows what the object holds.
        for copy in ["cp", "rsync"] {
            look_up_each(&local, &in_second(copy));
        }
    }
    for copy in ["cp", "rsync"] {
        assert_same_tree(&backend, &format!("{copy} after a remount"), &local, &in_second(copy), true);
    }
    run_on(&process, Command::new("cp").arg("-a").arg(in_second("cp")).arg(out.join("cp")));
    let out_of_mount = format!("{}/", in_second("rsync").display());
    run_on(&process, Command::new("rsync").args(["-a", "-X"]).arg(out_of_mount).arg(out.join("rsync")));
    unmount(process, &second);
    for copy in ["cp", "rsync"] {
        assert_same_tree(&backend, &format!("{copy} back out of the mount"), &local, &out.join(copy), true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_a_and_rsync_ax_round_trip_modes_owners_times_links_and_xattrs_on_an_s3_that_keeps_marker_metadata() {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let bucket = "posix-round-trip";
    let model = Arc::new(Mutex::new(S3Model::new()));
    let server = ServerHandle::spawn(listener, bucket, ACCESS_KEY, SECRET_KEY, model).unwrap();
    let backend = Backend { endpoint: server.endpoint_url(), bucket: bucket.to_owned(), keeps_marker_metadata: true };
    // The server runs on this runtime: the mount and the tools run on a blocking thread.
    let result = tokio::task::spawn_blocking(move || round_trip(backend)).await;
    server.shutdown().await.unwrap();
    result.unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cp_a_and_rsync_ax_round_trip_on_seaweedfs_all_but_directory_attributes() {
    let server = SeaweedFs::shared();
    let client = server.new_bucket("posix-round-trip").await;
    let backend =
        Backend { endpoint: server.endpoint().to_owned(), bucket: bucket_name(&client), keeps_marker_metadata: false };
    let result = tokio::task::spawn_blocking(move || round_trip(backend)).await;
    result.unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()));
}
