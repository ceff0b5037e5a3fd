//! A file larger than the mount's maximum, through a real FUSE mount on SeaweedFS: the `write`
//! that crosses the maximum fails with EFBIG (not the close), the bytes before it are kept as
//! on any file system, and a writer that gives up and removes its file leaves nothing in the
//! bucket: no object, no multipart upload (parts had been streaming).
//!
//! The maximum is `CoreConfig::max_object_size_bytes` (S3's 5 TiB by default; no flag sets it),
//! set here to 12 MiB + 5 bytes with 5 MiB parts, so two parts stream before the limit.

use std::fs::File;
use std::io::Write as _;

use goofys_core::CoreConfig;
use goofys_tests::bucket::{get, multipart_uploads};
use goofys_tests::files::pattern;
use goofys_tests::mount::TestMount;
use goofys_tests::seaweedfs::SeaweedFs;

const MIB: usize = 1024 * 1024;
const LIMIT_BYTES: usize = 12 * MIB + 5;
const CHUNK_BYTES: usize = 64 * 1024;

fn small_limit() -> CoreConfig {
    CoreConfig {
        max_object_size_bytes: LIMIT_BYTES as u64,
        write_part_size_bytes: 5 * MIB as u64,
        ..CoreConfig::default()
    }
}

/// Writes `data` in 64 KiB `write(2)` calls until one fails; returns how many bytes went in
/// and the error.
fn write_until_error(file: &mut File, data: &[u8]) -> (usize, std::io::Error) {
    let mut written = 0;
    for chunk in data.chunks(CHUNK_BYTES) {
        match file.write(chunk) {
            Ok(count) if count == chunk.len() => written += count,
            Ok(count) => panic!("a short write of {count} bytes at {written}"),
            Err(error) => return (written, error),
        }
    }
    panic!("{} bytes went in without an error", data.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_write_that_crosses_the_maximum_fails_with_efbig_and_the_bytes_before_it_are_kept() {
    let server = SeaweedFs::shared();
    let client = std::sync::Arc::new(server.new_bucket("efbig-keep").await);
    let mount = TestMount::new(std::sync::Arc::clone(&client), small_limit());
    let data = pattern(1, 16 * MIB);
    let written = mount
        .use_files({
            let data = data.clone();
            move |root| {
                let mut file = File::create(root.join("too-big.bin")).unwrap();
                let (written, error) = write_until_error(&mut file, &data);
                assert_eq!(error.raw_os_error(), Some(libc::EFBIG), "the crossing write: {error}");
                assert_eq!(written, LIMIT_BYTES / CHUNK_BYTES * CHUNK_BYTES, "every write below the limit went in");
                // Writing up to the limit exactly still works; one byte more does not.
                let rest = LIMIT_BYTES - written;
                file.write_all(&data[written..written + rest]).unwrap();
                let error = file.write(b"!").expect_err("a byte past the limit");
                assert_eq!(error.raw_os_error(), Some(libc::EFBIG));
                nix::unistd::close(file).expect("close succeeds: the file holds what was written");
                LIMIT_BYTES
            }
        })
        .await;
    mount.unmount().await;
    let stored = get(&client, "too-big.bin").await.expect("the file up to the limit is stored");
    assert!(stored[..] == data[..written], "the object holds the bytes before the crossing write");
    assert_eq!(multipart_uploads(&client, "").await, Vec::new(), "no upload is left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_writer_that_removes_its_file_after_efbig_leaves_no_object_and_no_upload() {
    let server = SeaweedFs::shared();
    let client = std::sync::Arc::new(server.new_bucket("efbig-remove").await);
    let mount = TestMount::new(std::sync::Arc::clone(&client), small_limit());
    mount
        .use_files(|root| {
            let path = root.join("given-up.bin");
            let mut file = File::create(&path).unwrap();
            let (written, error) = write_until_error(&mut file, &pattern(2, 16 * MIB));
            assert_eq!(error.raw_os_error(), Some(libc::EFBIG), "the crossing write: {error}");
            assert!(written > 10 * MIB, "two 5 MiB parts streamed first ({written} bytes)");
            // What a careful tool does with a file it could not finish.
            std::fs::remove_file(&path).unwrap();
            nix::unistd::close(file).expect("closing a removed file");
            assert!(!path.exists());
        })
        .await;
    mount.unmount().await;
    assert_eq!(get(&client, "given-up.bin").await, None, "no object");
    assert_eq!(multipart_uploads(&client, "").await, Vec::new(), "the streamed upload was aborted");
}
