//! End-to-end proof that a large file goes through the mount whole: 2 GiB written by an
//! application in 1 MiB writes (streamed to S3 as a multipart upload while it is written, with
//! memory bounded) reads back through a fresh mount, straight from S3, with the same SHA-256.
//!
//! It has a test binary of its own so that it does not share the machine's two cores (and the
//! one SeaweedFS server) with the other end-to-end tests, which would slow both.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::sync::Arc;
use std::time::Instant;

use goofys_core::CoreConfig;
use goofys_tests::bucket::head;
use goofys_tests::files::pattern;
use goofys_tests::mount::TestMount;
use goofys_tests::seaweedfs::SeaweedFs;
use sha2::{Digest as _, Sha256};

const MIB: usize = 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_2_gib_file_written_in_1_mib_writes_reads_back_with_the_same_sha256() {
    const SIZE_MIB: u64 = 2048;
    let server = SeaweedFs::shared();
    let client = Arc::new(server.new_bucket("fuse-2gib").await);
    let mount = TestMount::new(Arc::clone(&client), CoreConfig::default());
    let started = Instant::now();
    let written = mount
        .use_files(|root| {
            // One pseudorandom MiB, its first 8 bytes set to its index: every MiB differs, so a
            // part out of place changes the checksum.
            let mut block = pattern(12, MIB);
            let mut hasher = Sha256::new();
            let mut file = File::create(root.join("2gib.bin")).unwrap();
            for index in 0..SIZE_MIB {
                block[..8].copy_from_slice(&index.to_le_bytes());
                file.write_all(&block).unwrap();
                hasher.update(&block);
            }
            assert_eq!(nix::unistd::close(file), Ok(()), "close of the 2 GiB file");
            hasher.finalize()
        })
        .await;
    eprintln!("wrote 2 GiB through the mount in {:?}", started.elapsed());
    mount.unmount().await;
    assert_eq!(head(&client, "2gib.bin").await.map(|meta| meta.size_bytes), Some(SIZE_MIB * MIB as u64));

    // A fresh mount has nothing in the kernel's page cache: every byte comes from S3.
    let mount = TestMount::new(Arc::clone(&client), CoreConfig::default());
    let started = Instant::now();
    let read = mount
        .use_files(|root| {
            let mut file = File::open(root.join("2gib.bin")).unwrap();
            let mut buffer = vec![0; MIB];
            let mut hasher = Sha256::new();
            let mut total = 0u64;
            loop {
                let n = file.read(&mut buffer).unwrap();
                if n == 0 {
                    break;
                }
                hasher.update(&buffer[..n]);
                total += n as u64;
            }
            assert_eq!(total, SIZE_MIB * MIB as u64);
            hasher.finalize()
        })
        .await;
    eprintln!("read 2 GiB back through a fresh mount in {:?}", started.elapsed());
    mount.unmount().await;
    assert_eq!(read, written, "SHA-256 of the 2 GiB read back");
}
