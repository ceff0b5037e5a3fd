//! How a goofys-rs mount starts and ends, through the real binary against SeaweedFS on
//! 127.0.0.1: the background mode's readiness, signals, `umount` and `fusermount3 -u` from
//! outside, a SIGKILL (auto-unmount), a dead mount left without auto-unmount (cleaned by the
//! next mount), a busy mount at a signal, fstab through `mount -t fuse.goofys-rs`, the
//! `mount.fuse.goofys-rs` helper name, and the log file.
//!
//! Needs root, FUSE 3 (`fusermount3`, `mount.fuse3`) and `weed` (SeaweedFS).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use goofys_s3::S3Client;
use goofys_tests::binary::{
    ForegroundProcess, Mountpoint, bucket_name, goofys_command, goofys_processes_mentioning, is_mounted, mount_type,
    process_is_running, wait_until,
};
use goofys_tests::bucket::put;
use goofys_tests::seaweedfs::{ACCESS_KEY, SECRET_KEY, SeaweedFs};

const BINARY: &str = env!("CARGO_BIN_EXE_goofys-rs");

/// A fresh bucket holding `hello.txt` and `sub/inner.txt`.
async fn bucket_with_files(server: &SeaweedFs, name: &str) -> (Arc<S3Client>, String) {
    let client = Arc::new(server.new_bucket(name).await);
    put(&client, "hello.txt", &b"hello from s3\n"[..]).await;
    put(&client, "sub/inner.txt", &b"inner\n"[..]).await;
    let bucket = bucket_name(&client);
    (client, bucket)
}

/// `goofys-rs -f --endpoint E bucket mnt`, plus `extra` flags before the bucket.
fn foreground_command(server: &SeaweedFs, bucket: &str, mnt: &Mountpoint, extra: &[&str]) -> Command {
    let mut command = goofys_command(Path::new(BINARY));
    command.args(["-f", "--endpoint", server.endpoint()]).args(extra).arg(bucket).arg(mnt.path());
    command
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()))
}

fn single_goofys_process(mnt: &Mountpoint) -> i32 {
    let pids = goofys_processes_mentioning(&mnt.arg());
    assert_eq!(pids.len(), 1, "goofys-rs processes serving {}: {pids:?}", mnt.arg());
    pids[0]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_background_mount_is_ready_when_the_command_returns_and_umount_ends_it() {
    let server = SeaweedFs::shared();
    let (_client, bucket) = bucket_with_files(&server, "daemon").await;
    let mnt = Mountpoint::new();
    let mut command = goofys_command(Path::new(BINARY));
    command.args(["--endpoint", server.endpoint(), &bucket, &mnt.arg()]);
    let started = Instant::now();
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "{stderr}");
    assert_eq!((output.stdout.as_slice(), stderr.as_str()), (&b""[..], ""));
    // Ready means ready: no waiting here.
    assert!(is_mounted(mnt.path()), "the command returned before the mount was there");
    assert_eq!(mount_type(mnt.path()).as_deref(), Some("fuse.goofys-rs"));
    assert_eq!(read(mnt.join("hello.txt")), "hello from s3\n");
    eprintln!("background mount ready after {:?}", started.elapsed());

    let daemon = single_goofys_process(&mnt);
    // It left the terminal's session and keeps no directory busy.
    let stat = std::fs::read_to_string(format!("/proc/{daemon}/stat")).unwrap();
    let session: i32 = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(3).unwrap().parse().unwrap();
    assert_eq!(session, daemon, "the daemon is the leader of a session of its own");
    assert_eq!(std::fs::read_link(format!("/proc/{daemon}/cwd")).unwrap(), Path::new("/"));
    let status = Command::new("umount").arg(mnt.path()).status().unwrap();
    assert!(status.success());
    assert!(wait_until(Duration::from_secs(10), || !process_is_running(daemon)), "the daemon outlived its mount");
    assert!(!is_mounted(mnt.path()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_sigterm_and_fusermount_u_end_a_foreground_mount_with_exit_0() {
    let server = SeaweedFs::shared();
    let (_client, bucket) = bucket_with_files(&server, "signals").await;
    for ending in ["INT", "TERM", "fusermount3 -u"] {
        let mnt = Mountpoint::new();
        let mut process = ForegroundProcess::mount(foreground_command(&server, &bucket, &mnt, &[]), &mnt);
        assert_eq!(read(mnt.join("sub/inner.txt")), "inner\n");
        if ending == "fusermount3 -u" {
            assert!(Command::new("fusermount3").arg("-u").arg(mnt.path()).status().unwrap().success());
        } else {
            process.signal(ending);
        }
        let status = process.wait();
        assert!(status.success(), "{ending}: {status:?}; stderr:\n{}", process.stderr());
        assert!(!is_mounted(mnt.path()), "{ending} left the mount");
        assert!(process.stderr().contains("unmounted"), "{ending}: {}", process.stderr());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_leaves_no_hung_mountpoint_and_a_new_mount_works_at_once() {
    let server = SeaweedFs::shared();
    let (_client, bucket) = bucket_with_files(&server, "sigkill").await;
    let mnt = Mountpoint::new();
    let mut first = ForegroundProcess::mount(foreground_command(&server, &bucket, &mnt, &[]), &mnt);
    assert_eq!(read(mnt.join("hello.txt")), "hello from s3\n");
    first.signal("KILL");
    first.wait();
    let killed = Instant::now();
    // fusermount3, left behind for auto-unmount, notices the death and unmounts.
    assert!(mnt.wait_unmounted(), "the mount of a killed process stayed");
    eprintln!("auto-unmounted {:?} after SIGKILL", killed.elapsed());
    std::fs::read_dir(mnt.path()).expect("the mountpoint is an ordinary directory again");

    let second = ForegroundProcess::mount(foreground_command(&server, &bucket, &mnt, &[]), &mnt);
    assert_eq!(read(mnt.join("hello.txt")), "hello from s3\n");
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_mount_left_without_auto_unmount_is_cleaned_up_by_the_next_mount() {
    let server = SeaweedFs::shared();
    let (_client, bucket) = bucket_with_files(&server, "stale").await;
    let mnt = Mountpoint::new();
    // Without fusermount3 on PATH, root mounts directly and cannot auto-unmount.
    let mut without_fuse3 = foreground_command(&server, &bucket, &mnt, &[]);
    without_fuse3.env("PATH", "/nonexistent");
    let mut first = ForegroundProcess::mount(without_fuse3, &mnt);
    assert!(
        first.stderr().contains("warning: auto-unmount is off because fusermount3 was not found"),
        "{}",
        first.stderr()
    );
    first.signal("KILL");
    first.wait();
    // (stat may still be answered from the kernel's attribute cache; a listing is not.)
    let error = std::fs::read_dir(mnt.path()).expect_err("a killed FUSE server leaves a dead mount");
    assert_eq!(error.raw_os_error(), Some(libc::ENOTCONN), "{error}");

    let second = ForegroundProcess::mount(foreground_command(&server, &bucket, &mnt, &[]), &mnt);
    assert!(second.stderr().contains("was a dead FUSE mount"), "{}", second.stderr());
    assert_eq!(read(mnt.join("hello.txt")), "hello from s3\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mount_busy_at_a_signal_is_detached_and_the_process_still_exits_0() {
    let server = SeaweedFs::shared();
    let (_client, bucket) = bucket_with_files(&server, "busy").await;
    let mnt = Mountpoint::new();
    let mut process = ForegroundProcess::mount(foreground_command(&server, &bucket, &mnt, &[]), &mnt);
    let mut resident = Command::new("sh")
        .arg("-c")
        .arg("cd \"$0\" && exec sleep 30")
        .arg(mnt.join("sub"))
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || std::fs::read_link(format!("/proc/{}/cwd", resident.id()))
            .is_ok_and(|cwd| cwd.starts_with(mnt.path()))),
        "the resident shell never entered the mount"
    );
    process.signal("TERM");
    let status = process.wait();
    let _ = resident.kill();
    let _ = resident.wait();
    assert!(status.success(), "{status:?}; stderr:\n{}", process.stderr());
    assert!(process.stderr().contains("the mount was busy"), "{}", process.stderr());
    assert!(!is_mounted(mnt.path()), "a busy mount must be detached from the tree");
}

/// What mount(8) does with an fstab line `bucket:team MNT fuse.goofys-rs _netdev,allow_other,...`:
/// it runs /sbin/mount.fuse3, which runs `goofys-rs` through `sh` with a PATH of its own
/// (mount(8) removes PATH and HOME). So the test runs in a private mount namespace where
/// /usr/local/sbin holds `goofys-rs` and root's home holds `.aws/credentials` with the test
/// keys: nothing on the host changes, and the credentials can only come from the file that
/// goofys-rs finds through the home directory it looks up itself.
const FSTAB_SCRIPT: &str = r#"
set -eu
bin_dir=$1; home_dir=$2; options=$3; source=$4; mnt=$5
mount --bind "$bin_dir" /usr/local/sbin
mount --bind "$home_dir" "$(getent passwd "$(id -u)" | cut -d: -f6)"
mount -t fuse.goofys-rs -o "$options" "$source" "$mnt"
echo "type=$(awk -v m="$mnt" '$5 == m' /proc/self/mountinfo | sed 's/.* - //' | cut -d' ' -f1)"
echo "report=$(cat "$mnt/report.txt")"
echo "mode=$(stat -c %a "$mnt/report.txt")"
if [ -e "$mnt/elsewhere.txt" ]; then echo "beside=visible"; else echo "beside=hidden"; fi
umount "$mnt"
echo "unmounted"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_fstab_style_mount_through_mount_t_fuse_goofys_rs_works_and_umount_ends_it() {
    let server = SeaweedFs::shared();
    let client = Arc::new(server.new_bucket("fstab").await);
    put(&client, "team/report.txt", &b"quarterly\n"[..]).await;
    put(&client, "elsewhere.txt", &b"not under the prefix\n"[..]).await;
    let bucket = bucket_name(&client);
    let mnt = Mountpoint::new();

    let bin_dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(BINARY, bin_dir.path().join("goofys-rs")).unwrap();
    let home_dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(home_dir.path().join(".aws")).unwrap();
    std::fs::write(
        home_dir.path().join(".aws/credentials"),
        format!("[default]\naws_access_key_id = {ACCESS_KEY}\naws_secret_access_key = {SECRET_KEY}\n"),
    )
    .unwrap();
    let options = format!(
        "_netdev,allow_other,--file-mode=0666,--endpoint={},--stat-cache-ttl=1s,--type-cache-ttl=1s",
        server.endpoint()
    );
    let mut command = Command::new("unshare");
    command.args(["--mount", "--propagation", "private", "sh", "-c", FSTAB_SCRIPT, "fstab-test"]);
    command.arg(bin_dir.path()).arg(home_dir.path()).arg(&options).arg(format!("{bucket}:team")).arg(mnt.path());
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AWS_") || name.to_string_lossy().starts_with("GOOFYS_") {
            command.env_remove(name);
        }
    }
    command.env("AWS_EC2_METADATA_DISABLED", "true");
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "the fstab-style mount failed:\n{stdout}{stderr}");
    assert_eq!(
        stdout, "type=fuse.goofys-rs\nreport=quarterly\nmode=666\nbeside=hidden\nunmounted\n",
        "stderr: {stderr}"
    );
    // The daemon ends with its mount (its mount namespace goes with it).
    assert!(
        wait_until(Duration::from_secs(10), || goofys_processes_mentioning(&mnt.arg()).is_empty()),
        "the daemon outlived its mount"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_as_mount_fuse_goofys_rs_it_speaks_the_mount8_helper_protocol() {
    let server = SeaweedFs::shared();
    let (_client, bucket) = bucket_with_files(&server, "helper").await;
    let mnt = Mountpoint::new();
    let helper_dir = tempfile::tempdir().unwrap();
    let helper = helper_dir.path().join("mount.fuse.goofys-rs");
    std::os::unix::fs::symlink(BINARY, &helper).unwrap();
    // What mount(8) runs for an fstab line of type fuse.goofys-rs when the helper is installed.
    let mut command = goofys_command(&helper);
    let options = format!("rw,nosuid,nodev,--endpoint={},--uid=1234,--gid=4321", server.endpoint());
    command.args([bucket.as_str(), &mnt.arg(), "-n", "-o", &options, "-t", "fuse.goofys-rs"]);
    let output = tokio::task::spawn_blocking(move || command.output().unwrap()).await.unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let metadata = std::fs::metadata(mnt.join("hello.txt")).unwrap();
    assert_eq!((metadata.uid(), metadata.gid()), (1234, 4321));
    let daemon = single_goofys_process(&mnt);
    assert!(Command::new("umount").arg(mnt.path()).status().unwrap().success());
    assert!(wait_until(Duration::from_secs(10), || !process_is_running(daemon)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_file_is_owner_only_and_holds_requests_but_no_secret() {
    let server = SeaweedFs::shared();
    let (_client, bucket) = bucket_with_files(&server, "logs").await;
    let mnt = Mountpoint::new();
    let log_dir = tempfile::tempdir().unwrap();
    let log_file = log_dir.path().join("goofys.log");
    let sse_c_key = "c2VjcmV0LWtleS1mb3ItbG9ncy0zMi1ieXRlcy1vayE="; // base64 of 32 bytes
    let mut command = foreground_command(
        &server,
        &bucket,
        &mnt,
        &["--debug_s3", "--debug_fuse", "--log-file", log_file.to_str().unwrap()],
    );
    command.env("GOOFYS_SSE_C_KEY", sse_c_key);
    let mut process = ForegroundProcess::mount(command, &mnt);
    let names: Vec<_> = std::fs::read_dir(mnt.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    process.signal("TERM");
    assert!(process.wait().success(), "{}", process.stderr());

    let log = std::fs::read_to_string(&log_file).unwrap();
    assert_eq!(std::fs::metadata(&log_file).unwrap().mode() & 0o777, 0o600);
    assert!(log.contains("ListObjectsV2"), "--debug_s3 logs each request:\n{log}");
    assert!(log.contains("READDIR") || log.contains("ReadDir") || log.contains("readdir"), "--debug_fuse:\n{log}");
    for secret in [SECRET_KEY, sse_c_key, "secret-key-for-logs"] {
        assert!(!log.contains(secret), "the log holds a secret ({secret})");
    }
    assert_eq!(process.stderr(), "", "with --log-file nothing goes to stderr");
}

/// The answer to `GET /metrics` at `address`, body only.
fn scrape(address: &str) -> String {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: {address}\r\n\r\n").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    body.to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_addr_serves_the_mounts_figures_and_the_unmount_line_sums_them_up() {
    let server = SeaweedFs::shared();
    let (_client, bucket) = bucket_with_files(&server, "metrics").await;
    let mnt = Mountpoint::new();
    let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let command = foreground_command(&server, &bucket, &mnt, &["--metrics-addr", &address]);
    let mut process = ForegroundProcess::mount(command, &mnt);
    assert_eq!(read(mnt.join("hello.txt")), "hello from s3\n");

    let body = tokio::task::spawn_blocking({
        let address = address.clone();
        move || scrape(&address)
    })
    .await
    .unwrap();
    for wanted in [
        "goofys_s3_requests_total{kind=\"GetObject\",outcome=\"ok\"} ",
        "goofys_s3_request_duration_seconds_count{kind=\"GetObject\"} ",
        "goofys_fuse_ops_total{op=\"read\",outcome=\"ok\"} ",
        "goofys_fuse_op_duration_seconds_bucket{op=\"lookup\",le=\"+Inf\"} ",
        "goofys_memory_resident_bytes ",
    ] {
        assert!(body.contains(wanted), "missing {wanted} in\n{body}");
    }
    let received: u64 = body
        .lines()
        .find_map(|line| line.strip_prefix("goofys_s3_received_bytes_total "))
        .and_then(|value| value.parse().ok())
        .unwrap();
    assert!(received >= 14, "hello.txt came from S3: {received} bytes counted");

    process.signal("TERM");
    assert!(process.wait().success(), "{}", process.stderr());
    let stderr = process.stderr();
    let unmounted = stderr.lines().find(|line| line.contains("unmounted")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(unmounted.contains("S3 requests: "), "{unmounted}");
    assert!(unmounted.contains("GetObject"), "{unmounted}");
    assert!(unmounted.contains("FUSE ops: "), "{unmounted}");
    assert!(unmounted.contains("peak resident memory"), "{unmounted}");
    // The endpoint ends with the mount.
    assert!(std::net::TcpStream::connect(&address).is_err(), "metrics still served after exit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_reader_reaches_the_mount_in_1_mib_requests_not_128_kib() {
    let server = SeaweedFs::shared();
    let (client, bucket) = bucket_with_files(&server, "readahead").await;
    let body: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    put(&client, "big.bin", body.clone()).await;
    let mnt = Mountpoint::new();
    let address = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
    let command = foreground_command(&server, &bucket, &mnt, &["--metrics-addr", &address]);
    let _process = ForegroundProcess::mount(command, &mnt);
    let device = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|line| line.split(' ').nth(4) == Some(mnt.arg().as_str()))
        .and_then(|line| line.split(' ').nth(2).map(str::to_owned))
        .unwrap();
    let read_ahead_kb = std::fs::read_to_string(format!("/sys/class/bdi/{device}/read_ahead_kb")).unwrap();
    assert_eq!(read_ahead_kb.trim(), "1024");

    assert!(std::fs::read(mnt.join("big.bin")).unwrap() == body, "the bytes read differ");
    let body = tokio::task::spawn_blocking(move || scrape(&address)).await.unwrap();
    let reads: u64 = body
        .lines()
        .find_map(|line| line.strip_prefix("goofys_fuse_ops_total{op=\"read\",outcome=\"ok\"} "))
        .and_then(|value| value.parse().ok())
        .unwrap();
    // 8 MiB in 1 MiB requests (and a last one at the end); at 128 KiB it would be 64.
    assert!(reads <= 12, "{reads} FUSE reads for 8 MiB");
}
