//! Close errors through a real FUSE mount: a close after the server started refusing writes
//! fails with `EIO` and leaves no multipart upload, also when the abort itself failed while
//! the server was down (it is sent again once the server is back).
//!
//! These tests live apart from `fuse_writes.rs`, one at a time: a FUSE `flush` (which commits
//! a file) runs at every close of a file description, and a fork in another thread of the
//! test process (a tool, `fusermount3` for another test's mount) copies the open descriptor
//! and closes it at exec, which commits the file before the test refuses writes.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use goofys_core::CoreConfig;
use goofys_tests::bucket::{get, head, multipart_uploads, put};
use goofys_tests::fault_proxy::{Operation, ProxiedBucket};
use goofys_tests::files::pattern;
use goofys_tests::mount::TestMount;
use goofys_tests::seaweedfs::SeaweedFs;

const MIB: usize = 1024 * 1024;

/// Held for the whole of each test: no other test of this binary forks while one holds a file
/// open.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// What S3 holds at `key`, or a panic naming the key.
async fn object(client: &goofys_s3::S3Client, key: &str) -> Bytes {
    get(client, key).await.unwrap_or_else(|| panic!("no object at {key}"))
}

/// A configuration that gives up quickly (3 attempts, short backoffs) and uploads 5 MiB parts.
fn quick_to_fail() -> CoreConfig {
    CoreConfig {
        retry_max_attempts: 3,
        retry_initial_backoff: Duration::from_millis(10),
        retry_max_backoff: Duration::from_millis(100),
        s3_request_timeout: Duration::from_secs(10),
        write_part_size_bytes: 5 * MIB as u64,
        ..CoreConfig::default()
    }
}

/// Waits until `parts` UploadParts have succeeded through `proxy`.
fn wait_for_streamed_parts(proxy: &goofys_tests::fault_proxy::FaultProxy, parts: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.exchanges_of(Operation::UploadPart).iter().filter(|e| e.status == 200).count() < parts {
        assert!(Instant::now() < deadline, "parts did not stream: {:#?}", proxy.exchanges());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_that_failed_while_the_server_was_down_is_aborted_once_it_is_back() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = SeaweedFs::shared();
    let ProxiedBucket { proxy, direct: client, proxied } = ProxiedBucket::new(&server, "fuse-down").await;
    let mount = TestMount::new(proxied, quick_to_fail());
    let down = Arc::clone(&proxy);
    mount
        .use_files(move |root| {
            let mut streamed = File::create(root.join("streamed.bin")).unwrap();
            streamed.write_all(&pattern(14, 12 * MIB)).unwrap();
            wait_for_streamed_parts(&down, 2);
            down.refuse(&Operation::ALL);
            let closed = nix::unistd::close(streamed);
            assert_eq!(closed, Err(nix::errno::Errno::EIO), "close while the server is down: {:#?}", down.exchanges());
            down.heal();
        })
        .await;
    // The server is back; the mount is used a little more, then unmounted.
    mount.use_files(|root| std::fs::write(root.join("later.txt"), b"later").unwrap()).await;
    mount.unmount().await;
    let exchanges = proxy.exchanges_of(Operation::AbortMultipartUpload);
    assert_eq!(multipart_uploads(&client, "").await, Vec::new(), "aborts: {exchanges:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_after_the_server_refuses_writes_fails_with_eio_and_leaves_no_upload() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let server = SeaweedFs::shared();
    let ProxiedBucket { proxy, direct: client, proxied } = ProxiedBucket::new(&server, "fuse-refused").await;
    put(&client, "kept.txt", &b"the old content\n"[..]).await;
    let mount = TestMount::new(proxied, quick_to_fail());

    let refusing = Arc::clone(&proxy);
    mount
        .use_files(move |root| {
            let proxy = refusing;
            // 12 MiB in 5 MiB parts: parts 1 and 2 stream while the file is open.
            let mut streamed = File::create(root.join("streamed.bin")).unwrap();
            streamed.write_all(&pattern(11, 12 * MIB)).unwrap();
            wait_for_streamed_parts(&proxy, 2);
            let mut small = File::create(root.join("small.txt")).unwrap();
            small.write_all(b"never stored").unwrap();
            let kept = OpenOptions::new().write(true).open(root.join("kept.txt")).unwrap();
            kept.write_all_at(b"NEW", 0).unwrap();
            let mut down = File::create(root.join("down.txt")).unwrap();
            down.write_all(b"written while the server is down").unwrap();

            proxy.refuse(&Operation::WRITES);
            assert_eq!(nix::unistd::close(streamed), Err(nix::errno::Errno::EIO), "close of a streamed file");
            assert_eq!(nix::unistd::close(small), Err(nix::errno::Errno::EIO), "close of a new small file");
            assert_eq!(nix::unistd::close(kept), Err(nix::errno::Errno::EIO), "close of an overwritten file");
            // A server that answers nothing at all (503 to every request) fails a close as well.
            proxy.refuse(&Operation::ALL);
            assert_eq!(nix::unistd::close(down), Err(nix::errno::Errno::EIO), "close while the server is down");
        })
        .await;

    let exchanges = proxy.exchanges();
    let created =
        exchanges.iter().filter(|e| e.operation == Operation::CreateMultipartUpload && e.status == 200).count();
    assert_eq!(created, 1, "the streamed file started one upload: {exchanges:#?}");
    let aborted =
        exchanges.iter().filter(|e| e.operation == Operation::AbortMultipartUpload && e.status == 204).count();
    assert_eq!(aborted, 1, "its upload was aborted: {exchanges:#?}");
    assert!(exchanges.iter().any(|e| e.refused), "the proxy refused writes: {exchanges:#?}");
    assert_eq!(multipart_uploads(&client, "").await, Vec::new(), "no upload is left behind");
    assert_eq!(head(&client, "streamed.bin").await, None);
    assert_eq!(head(&client, "small.txt").await, None);
    assert_eq!(head(&client, "down.txt").await, None);
    assert_eq!(object(&client, "kept.txt").await, &b"the old content\n"[..], "the old object is untouched");
    proxy.heal();
    mount.unmount().await;
    assert_eq!(multipart_uploads(&client, "").await, Vec::new(), "no upload is left behind after unmount");
    // Not asserted: today the core keeps the unwritten bytes of small.txt, kept.txt and down.txt
    // after their failed close and writes them at unmount, once the server takes writes again
    // (streamed.bin's streamed parts are gone, so it is never written). The issue does not say
    // which is right; docs/SEMANTICS.md should.
}
