//! What a SIGKILL of the `goofys-rs` daemon leaves behind, through the real binary against
//! SeaweedFS on 127.0.0.1: killed in the middle of a large write, of a directory rename (copies
//! then deletes, key by key), and of a read, and killed while mounted without auto-unmount.
//!
//! After each kill: the mountpoint is released at once (unmounted by the fusermount3 that
//! auto-unmount leaves behind, or a dead mount the next mount detaches, saying so), a new mount
//! on the same directory is ready at once (the time is printed), every file whose close
//! succeeded before the kill is intact in the bucket (SHA-256 through a direct S3 client), an
//! interrupted directory rename leaves every object under its old or its new name with its
//! bytes, and the only multipart upload left is the one of the file being written (a killed
//! process cannot abort it; see docs/SEMANTICS.md, "Killed mounts").
//!
//! Needs root, FUSE 3 (`fusermount3`) and `weed` (SeaweedFS).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use goofys_s3::S3Client;
use goofys_tests::binary::{ForegroundProcess, Mountpoint, bucket_name, goofys_command, is_mounted, wait_until};
use goofys_tests::bucket::{get, get_many, list_keys, multipart_uploads, put, put_many};
use goofys_tests::files::pattern;
use goofys_tests::seaweedfs::SeaweedFs;
use sha2::{Digest as _, Sha256};

const BINARY: &str = env!("CARGO_BIN_EXE_goofys-rs");
const MIB: usize = 1024 * 1024;

/// `goofys-rs -f --endpoint E bucket mnt`, plus `extra` flags before the bucket.
fn foreground_command(server: &SeaweedFs, bucket: &str, mnt: &Mountpoint, extra: &[&str]) -> Command {
    let mut command = goofys_command(Path::new(BINARY));
    command.args(["-f", "--endpoint", server.endpoint()]).args(extra).arg(bucket).arg(mnt.path());
    command
}

fn sha256(bytes: &[u8]) -> String {
    Sha256::digest(bytes).iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Kills `process` with SIGKILL and waits until its mount is gone from the tree (auto-unmount)
/// or at least dead (a listing fails with ENOTCONN); returns how long that took.
fn kill_and_wait_released(process: &mut ForegroundProcess, mnt: &Mountpoint) -> Duration {
    process.signal("KILL");
    process.wait();
    let killed = Instant::now();
    let released = wait_until(Duration::from_secs(10), || {
        !is_mounted(mnt.path())
            || std::fs::read_dir(mnt.path()).is_err_and(|error| error.raw_os_error() == Some(libc::ENOTCONN))
    });
    assert!(released, "the mount of a killed daemon hangs or still answers");
    killed.elapsed()
}

/// Mounts again on `mnt` and returns the process and the time until the mount was usable.
fn remount(server: &SeaweedFs, bucket: &str, mnt: &Mountpoint, what: &str) -> (ForegroundProcess, Duration) {
    let started = Instant::now();
    let process = ForegroundProcess::mount(foreground_command(server, bucket, mnt, &[]), mnt);
    let ready = started.elapsed();
    eprintln!("{what}: a new mount on the same directory was ready {ready:?} after it was started");
    assert!(ready < Duration::from_secs(10), "{what}: remounting took {ready:?}");
    (process, ready)
}

/// Waits for a child process (a writer, `mv`, a reader cut off by the kill) to end, 10 s at
/// most: nothing may hang on a killed mount. Returns whether it succeeded.
fn child_ends(child: &mut Child, what: &str) -> bool {
    let ended = wait_until(Duration::from_secs(10), || child.try_wait().ok().flatten().is_some());
    if !ended {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{what} hung on the killed mount");
    }
    child.wait().expect("an ended child").success()
}

/// Files written and closed through the mount before the kill: their names and SHA-256s.
fn write_closed_files(mnt: &Mountpoint, sizes: &[usize]) -> Vec<(String, String)> {
    sizes
        .iter()
        .enumerate()
        .map(|(index, &size)| {
            let name = format!("closed-{index}.bin");
            let body = pattern(100 + index as u64, size);
            // std::fs::write returns only after close(2), which returns once S3 holds the file.
            std::fs::write(mnt.join(&name), &body).unwrap_or_else(|error| panic!("writing {name}: {error}"));
            (name, sha256(&body))
        })
        .collect()
}

async fn assert_closed_files_intact(client: &S3Client, closed: &[(String, String)]) {
    for (name, digest) in closed {
        let body = get(client, name).await.unwrap_or_else(|| panic!("{name} was closed before the kill but is gone"));
        assert_eq!(&sha256(&body), digest, "{name} changed");
    }
}

async fn new_bucket(server: &SeaweedFs, prefix: &str) -> (Arc<S3Client>, String) {
    let client = Arc::new(server.new_bucket(prefix).await);
    let bucket = bucket_name(&client);
    (client, bucket)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_write_the_closed_files_are_intact_and_only_the_open_files_upload_is_left() {
    let server = SeaweedFs::shared();
    let (client, bucket) = new_bucket(&server, "kill-write").await;
    let mnt = Mountpoint::new();
    let mut first = ForegroundProcess::mount(foreground_command(&server, &bucket, &mnt, &[]), &mnt);
    let closed = write_closed_files(&mnt, &[1234, 3 * MIB, 20 * MIB]);

    // A large file being written by dd (8 MiB parts stream while it writes).
    let mut dd = Command::new("dd")
        .arg("if=/dev/urandom")
        .arg(format!("of={}", mnt.join("being-written.bin").display()))
        .args(["bs=1M", "count=400", "status=none"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let streaming = wait_until(Duration::from_secs(30), || {
        std::fs::metadata(mnt.join("being-written.bin")).is_ok_and(|meta| meta.len() >= 48 * MIB as u64)
    });
    assert!(streaming, "dd did not get going");
    assert!(dd.try_wait().unwrap().is_none(), "dd finished before the kill");
    let released = kill_and_wait_released(&mut first, &mnt);
    eprintln!("killed mid-write: the mountpoint was released {released:?} after the kill");
    assert!(!child_ends(&mut dd, "dd"), "dd must see its file fail, not succeed");

    let uploads = multipart_uploads(&client, "").await;
    assert!(
        uploads.iter().all(|upload| upload.key == "being-written.bin"),
        "only the file being written may have an upload in progress: {uploads:?}"
    );
    let (second, _ready) = remount(&server, &bucket, &mnt, "killed mid-write");
    assert_closed_files_intact(&client, &closed).await;
    // dd opens its output, moves it to fd 1 and closes the first descriptor: a close of the
    // still empty file, which commits it. That empty object is all any close acknowledged.
    let interrupted = get(&client, "being-written.bin").await;
    assert!(
        interrupted.as_ref().is_none_or(|body| body.is_empty()),
        "the interrupted file holds {} bytes no close acknowledged",
        interrupted.map_or(0, |body| body.len())
    );
    let mut names: Vec<String> =
        std::fs::read_dir(mnt.path()).unwrap().map(|entry| entry.unwrap().file_name().into_string().unwrap()).collect();
    names.retain(|name| name != "being-written.bin");
    assert_eq!(names.len(), closed.len(), "the new mount lists the closed files: {names:?}");
    for (name, digest) in &closed {
        assert_eq!(&sha256(&std::fs::read(mnt.join(name)).unwrap()), digest, "{name} through the new mount");
    }
    drop(second);
    // The new mount does not know the killed one's upload (it cannot tell it from a live
    // writer's elsewhere): it stays until a lifecycle rule or an operator removes it.
    let left = multipart_uploads(&client, "").await;
    eprintln!("killed mid-write: {} multipart upload(s) left for being-written.bin", left.len());
    assert_eq!(left.len(), uploads.len(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_directory_rename_every_object_is_under_its_old_or_its_new_name() {
    const CHILDREN: usize = 600;
    let server = SeaweedFs::shared();
    let (client, bucket) = new_bucket(&server, "kill-rename").await;
    let bodies: Vec<(String, Bytes)> = (0..CHILDREN)
        .map(|index| (format!("{index:04}.txt"), Bytes::from(pattern(index as u64, 100 + index * 7))))
        .collect();
    put_many(&client, bodies.iter().map(|(name, body)| (format!("tree/{name}"), body.clone())).collect()).await;
    let mnt = Mountpoint::new();
    let mut first = ForegroundProcess::mount(foreground_command(&server, &bucket, &mnt, &[]), &mnt);
    let closed = write_closed_files(&mnt, &[4321]);

    let mut mv = Command::new("mv").arg(mnt.join("tree")).arg(mnt.join("moved")).stderr(Stdio::null()).spawn().unwrap();
    // Kill once a fair share of the copies exist under the new name, before the deletes end.
    let watcher = Arc::clone(&client);
    let copied_at_kill = {
        let started = Instant::now();
        loop {
            let copied = list_keys(&watcher, "moved/").await.len();
            if copied >= CHILDREN / 10 {
                break copied;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "the rename did not start copying");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let originals_at_kill = list_keys(&client, "tree/").await.len();
    assert!(mv.try_wait().unwrap().is_none(), "mv finished before the kill");
    let released = kill_and_wait_released(&mut first, &mnt);
    eprintln!(
        "killed mid-rename ({copied_at_kill} copies, {originals_at_kill} originals seen just before): released {released:?} after"
    );
    assert!(!child_ends(&mut mv, "mv"), "mv must fail, not report success");

    let old_keys: Vec<String> = bodies.iter().map(|(name, _)| format!("tree/{name}")).collect();
    let new_keys: Vec<String> = bodies.iter().map(|(name, _)| format!("moved/{name}")).collect();
    let (old, new) = (get_many(&client, &old_keys).await, get_many(&client, &new_keys).await);
    let (mut under_old, mut under_new) = (0, 0);
    for (index, (name, body)) in bodies.iter().enumerate() {
        assert!(old[index].is_some() || new[index].is_some(), "{name} is under neither name: lost");
        for copy in [&old[index], &new[index]].into_iter().flatten() {
            assert!(copy == body, "{name}: a copy holds other bytes");
        }
        under_old += usize::from(old[index].is_some());
        under_new += usize::from(new[index].is_some());
    }
    eprintln!("after the kill: {under_old} objects under the old name, {under_new} under the new one");
    assert!(under_new < CHILDREN || under_old < CHILDREN, "the kill came in the middle");
    let stray: Vec<(String, u64)> = list_keys(&client, "")
        .await
        .into_iter()
        .filter(|(key, _)| !key.starts_with("tree/") && !key.starts_with("moved/") && !key.starts_with("closed-"))
        .collect();
    assert_eq!(stray, Vec::new(), "no other key appeared");
    assert_eq!(multipart_uploads(&client, "").await, Vec::new(), "small copies leave no upload");

    let (second, _ready) = remount(&server, &bucket, &mnt, "killed mid-rename");
    assert_closed_files_intact(&client, &closed).await;
    let listed = |dir: &str| std::fs::read_dir(mnt.join(dir)).map(|entries| entries.count()).unwrap_or(0);
    assert_eq!(listed("tree"), under_old, "the new mount lists what is under the old name");
    assert_eq!(listed("moved"), under_new, "the new mount lists what is under the new name");
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_mid_read_the_reader_gets_an_error_and_a_new_mount_reads_the_whole_object() {
    let server = SeaweedFs::shared();
    let (client, bucket) = new_bucket(&server, "kill-read").await;
    let body = pattern(7, 96 * MIB);
    put(&client, "large.bin", body.clone()).await;
    let mnt = Mountpoint::new();
    let mut first = ForegroundProcess::mount(foreground_command(&server, &bucket, &mnt, &[]), &mnt);

    // A reader that takes its time (1 MiB every 20 ms), so it is mid-file at the kill.
    let path = mnt.join("large.bin");
    let (done, outcome) = std::sync::mpsc::channel();
    let (progress_tx, progress) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::Read as _;
        let result = (|| {
            let mut file = std::fs::File::open(path)?;
            let mut buffer = vec![0u8; MIB];
            let mut total = 0usize;
            loop {
                let read = file.read(&mut buffer)?;
                if read == 0 {
                    return Ok::<usize, std::io::Error>(total);
                }
                total += read;
                let _ = progress_tx.send(total);
                std::thread::sleep(Duration::from_millis(20));
            }
        })();
        let _ = done.send(result);
    });
    let mut read_before_kill = 0;
    while read_before_kill < 8 * MIB {
        read_before_kill = progress.recv_timeout(Duration::from_secs(30)).expect("the reader did not get going");
    }
    let released = kill_and_wait_released(&mut first, &mnt);
    eprintln!(
        "killed mid-read after {read_before_kill} bytes: the mountpoint was released {released:?} after the kill"
    );
    let result = outcome.recv_timeout(Duration::from_secs(10)).expect("the reader hung on the killed mount");
    let error = result.expect_err("the reader must see the kill, not a short file");
    assert!(
        matches!(error.raw_os_error(), Some(libc::ENOTCONN | libc::EIO | libc::ECONNABORTED)),
        "the reader got {error}"
    );

    let (second, _ready) = remount(&server, &bucket, &mnt, "killed mid-read");
    let read = std::fs::read(mnt.join("large.bin")).unwrap();
    assert!(read == body, "the new mount reads other bytes");
    assert_eq!(get(&client, "large.bin").await.as_deref(), Some(&body[..]), "the object is untouched");
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_mount_from_a_daemon_killed_mid_write_is_detached_by_the_next_mount_which_says_so() {
    let server = SeaweedFs::shared();
    let (client, bucket) = new_bucket(&server, "kill-stale").await;
    let mnt = Mountpoint::new();
    // Without fusermount3 on PATH, root mounts directly and cannot auto-unmount.
    let mut without_fuse3 = foreground_command(&server, &bucket, &mnt, &[]);
    without_fuse3.env("PATH", "/nonexistent");
    let mut first = ForegroundProcess::mount(without_fuse3, &mnt);
    let closed = write_closed_files(&mnt, &[5000]);
    let mut dd = Command::new("dd")
        .arg("if=/dev/zero")
        .arg(format!("of={}", mnt.join("open.bin").display()))
        .args(["bs=1M", "count=200", "status=none"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(wait_until(Duration::from_secs(30), || std::fs::metadata(mnt.join("open.bin"))
        .is_ok_and(|meta| meta.len() >= 4 * MIB as u64)));
    kill_and_wait_released(&mut first, &mnt);
    child_ends(&mut dd, "dd");
    let error = std::fs::read_dir(mnt.path()).expect_err("a killed FUSE server leaves a dead mount");
    assert_eq!(error.raw_os_error(), Some(libc::ENOTCONN), "{error}");

    let (second, _ready) = remount(&server, &bucket, &mnt, "a dead mount");
    let expected = format!(
        "{} was a dead FUSE mount (its process had died: \"Transport endpoint is not connected\"); detached it",
        mnt.path().display()
    );
    assert!(second.stderr().contains(&expected), "the next mount must say what it did:\n{}", second.stderr());
    assert!(std::fs::read_dir(mnt.path()).is_ok(), "the new mount answers");
    assert_closed_files_intact(&client, &closed).await;
    assert!(
        multipart_uploads(&client, "").await.iter().all(|upload| upload.key == "open.bin"),
        "only the open file's upload may be left"
    );
}
