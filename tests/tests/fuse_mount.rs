//! End-to-end: a real FUSE mount of a bucket on a real S3 server (SeaweedFS on 127.0.0.1),
//! used through the ordinary file API, as `ls`, `stat` and `cat` would, on a clean network and
//! through a proxy that fails one request in ten (`clean::*`, `under_faults::*`); and, under
//! faults, every call returning within the configured retry budget.

use std::sync::Arc;

use std::time::{Duration, Instant};

use goofys_core::CoreConfig;
use goofys_tests::bucket::{get, put};
use goofys_tests::fault_proxy::{Network, ProxiedBucket};
use goofys_tests::files::{assert_same_bytes, pattern};
use goofys_tests::mount::TestMount;
use goofys_tests::seaweedfs::SeaweedFs;

async fn a_mounted_bucket_lists_stats_and_reads_like_a_directory_tree(network: Network) {
    let server = SeaweedFs::shared();
    let bucket = ProxiedBucket::on(&server, "fuse-tree", network).await;
    let client = Arc::clone(&bucket.direct);
    put(&client, "top.txt", &b"hello\n"[..]).await;
    put(&client, "dir/a.txt", &b"aaa"[..]).await;
    put(&client, "dir/sub/deep.bin", vec![7u8; 3 * 1024 * 1024 + 17]).await;
    put(&client, "marker/", &b""[..]).await;

    let mount = TestMount::new(Arc::clone(&bucket.proxied), network.core_config(CoreConfig::default()));
    let root = mount.path().to_owned();
    tokio::task::spawn_blocking(move || {
        let mut names: Vec<String> =
            std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        assert_eq!(names, ["dir", "marker", "top.txt"]);
        assert_eq!(std::fs::read_to_string(root.join("top.txt")).unwrap(), "hello\n");
        assert!(std::fs::metadata(root.join("dir")).unwrap().is_dir());
        assert!(std::fs::metadata(root.join("marker")).unwrap().is_dir());
        assert_eq!(std::fs::metadata(root.join("dir/a.txt")).unwrap().len(), 3);
        let deep = std::fs::read(root.join("dir/sub/deep.bin")).unwrap();
        assert_eq!(deep.len(), 3 * 1024 * 1024 + 17);
        assert!(deep.iter().all(|&b| b == 7));
        let missing = std::fs::metadata(root.join("nope")).unwrap_err();
        assert_eq!(missing.kind(), std::io::ErrorKind::NotFound);
    })
    .await
    .unwrap();
    mount.unmount().await;
    bucket.finish().await;
}

async fn files_written_through_the_mount_reach_the_bucket_and_namespace_changes_work(network: Network) {
    let server = SeaweedFs::shared();
    let bucket = ProxiedBucket::on(&server, "fuse-write", network).await;
    let client = Arc::clone(&bucket.direct);
    put(&client, "existing.txt", &b"line 1\n"[..]).await;
    let mount = TestMount::new(Arc::clone(&bucket.proxied), network.core_config(CoreConfig::default()));
    let root = mount.path().to_owned();
    let big: Vec<u8> = (0..20 * 1024 * 1024 + 3).map(|i: u32| (i % 251) as u8).collect();
    let expected_big = big.clone();
    tokio::task::spawn_blocking(move || {
        use std::io::Write as _;
        std::fs::write(root.join("new.txt"), b"hello\n").unwrap();
        assert_eq!(std::fs::read(root.join("new.txt")).unwrap(), b"hello\n");
        std::fs::write(root.join("big.bin"), &big).unwrap();
        let mut log = std::fs::OpenOptions::new().append(true).open(root.join("existing.txt")).unwrap();
        log.write_all(b"line 2\n").unwrap();
        drop(log);
        assert_eq!(std::fs::read_to_string(root.join("existing.txt")).unwrap(), "line 1\nline 2\n");
        let file = std::fs::OpenOptions::new().write(true).open(root.join("new.txt")).unwrap();
        file.set_len(3).unwrap();
        drop(file);
        assert_eq!(std::fs::read(root.join("new.txt")).unwrap(), b"hel");
        std::fs::create_dir_all(root.join("d1/d2")).unwrap();
        std::fs::write(root.join("d1/d2/inner"), b"inner").unwrap();
        std::fs::rename(root.join("new.txt"), root.join("d1/moved.txt")).unwrap();
        std::fs::rename(root.join("d1"), root.join("renamed")).unwrap();
        assert_eq!(std::fs::read(root.join("renamed/d2/inner")).unwrap(), b"inner");
        assert_eq!(std::fs::read(root.join("renamed/moved.txt")).unwrap(), b"hel");
        assert_eq!(std::fs::remove_dir(root.join("renamed")).unwrap_err().raw_os_error(), Some(libc_enotempty()));
        std::fs::remove_file(root.join("renamed/d2/inner")).unwrap();
        assert_eq!(
            std::fs::remove_file(root.join("renamed/d2/inner")).unwrap_err().kind(),
            std::io::ErrorKind::NotFound
        );
    })
    .await
    .unwrap();
    mount.unmount().await;
    bucket.finish().await;

    assert_eq!(get(&client, "big.bin").await.as_deref(), Some(&expected_big[..]));
    assert_eq!(get(&client, "existing.txt").await.as_deref(), Some(&b"line 1\nline 2\n"[..]));
    assert_eq!(get(&client, "renamed/moved.txt").await.as_deref(), Some(&b"hel"[..]));
    assert_eq!(get(&client, "new.txt").await, None);
    assert_eq!(get(&client, "d1/d2/inner").await, None);
}

fn libc_enotempty() -> i32 {
    39
}

/// A 48 MiB object read whole (prefetched GETs streamed into the core, some cut short or
/// stalled under faults) and at random offsets returns exactly its bytes.
async fn a_large_object_reads_back_exactly_whole_and_at_random_offsets(network: Network) {
    let server = SeaweedFs::shared();
    let bucket = ProxiedBucket::on(&server, "fuse-large-read", network).await;
    let content = pattern(31, 48 * 1024 * 1024 + 7);
    put(&bucket.direct, "large.bin", content.clone()).await;
    let mount = TestMount::new(Arc::clone(&bucket.proxied), network.core_config(CoreConfig::default()));
    mount
        .use_files(move |root| {
            use std::os::unix::fs::FileExt as _;
            let path = root.join("large.bin");
            assert_same_bytes("large.bin read whole", &std::fs::read(&path).unwrap(), &content);
            let file = std::fs::File::open(&path).unwrap();
            let mut offset = 12_345u64;
            for i in 0..40u64 {
                offset = (offset * 7_919 + i * 104_729) % content.len() as u64;
                let mut buffer = vec![0u8; 1 + (i as usize * 37_171) % 300_000];
                let read = file.read_at(&mut buffer, offset).unwrap();
                let end = (offset as usize + read).min(content.len());
                assert!(read > 0 || offset as usize == content.len());
                assert_same_bytes(
                    &format!("{read} bytes at {offset}"),
                    &buffer[..read],
                    &content[offset as usize..end],
                );
            }
        })
        .await;
    mount.unmount().await;
    bucket.finish().await;
}

/// One call of [`every_call_returns_within_the_retry_budget_under_faults`], and how long it took.
#[derive(Debug)]
struct TimedCall {
    what: String,
    took: Duration,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_returns_within_the_retry_budget_under_faults() {
    let network = Network::Faulty { seed: 77 };
    let server = SeaweedFs::shared();
    let bucket = ProxiedBucket::on(&server, "fuse-budget", network).await;
    let client = Arc::clone(&bucket.direct);
    let stored: Vec<Vec<u8>> = (0..20).map(|i| pattern(200 + i, 1000 + 40_000 * i as usize)).collect();
    for (i, bytes) in stored.iter().enumerate() {
        put(&client, &format!("in/{i}.bin"), bytes.clone()).await;
    }
    let config = network.core_config(CoreConfig::default());
    let budget = config.request_retry_budget();
    let mount = TestMount::new(Arc::clone(&bucket.proxied), config);

    // Each call waits on at most one S3 request at a time, except close of a new file (one PUT)
    // and rename (a copy, then a delete): two budgets for those.
    let expected_reads = stored.clone();
    let calls = mount
        .use_files(move |root| {
            let mut calls = Vec::new();
            let mut timed = |what: String, call: &mut dyn FnMut()| {
                let started = Instant::now();
                call();
                calls.push(TimedCall { what, took: started.elapsed() });
            };
            for round in 0..3 {
                timed(format!("readdir in/ (round {round})"), &mut || {
                    assert_eq!(std::fs::read_dir(root.join("in")).unwrap().count(), 20);
                });
                for (i, expected) in expected_reads.iter().enumerate() {
                    let path = root.join(format!("in/{i}.bin"));
                    timed(format!("stat in/{i}.bin"), &mut || {
                        assert_eq!(std::fs::metadata(&path).unwrap().len(), expected.len() as u64);
                    });
                    timed(format!("read in/{i}.bin"), &mut || {
                        assert_same_bytes(&format!("in/{i}.bin"), &std::fs::read(&path).unwrap(), expected);
                    });
                    let new = root.join(format!("out/{round}-{i}.bin"));
                    if i == 0 {
                        timed(format!("mkdir out (round {round})"), &mut || {
                            std::fs::create_dir_all(root.join("out")).unwrap();
                        });
                    }
                    timed(format!("write and close {}", new.display()), &mut || {
                        std::fs::write(&new, expected).unwrap();
                    });
                    let renamed = new.with_extension("moved");
                    timed(format!("rename {}", new.display()), &mut || {
                        std::fs::rename(&new, &renamed).unwrap();
                    });
                    if i % 2 == 0 {
                        timed(format!("unlink {}", renamed.display()), &mut || {
                            std::fs::remove_file(&renamed).unwrap();
                        });
                    }
                }
            }
            calls
        })
        .await;
    mount.unmount().await;
    bucket.finish().await;

    let slowest = calls.iter().max_by_key(|call| call.took).expect("calls were made");
    let mut took: Vec<Duration> = calls.iter().map(|call| call.took).collect();
    took.sort();
    eprintln!(
        "{} calls: median {:?}, 99th percentile {:?}, slowest {:?} ({}); one request's retry budget {budget:?}",
        calls.len(),
        took[took.len() / 2],
        took[took.len() * 99 / 100],
        slowest.took,
        slowest.what
    );
    for call in &calls {
        assert!(call.took <= budget * 2, "{} took {:?}, past twice the retry budget {budget:?}", call.what, call.took);
    }
    for round in 0..3 {
        for (i, expected) in stored.iter().enumerate().filter(|(i, _)| i % 2 == 1) {
            let key = format!("out/{round}-{i}.moved");
            assert_same_bytes(&key, &get(&client, &key).await.unwrap_or_default(), expected);
        }
    }
}

goofys_tests::on_both_networks!(
    a_mounted_bucket_lists_stats_and_reads_like_a_directory_tree,
    a_large_object_reads_back_exactly_whole_and_at_random_offsets,
    files_written_through_the_mount_reach_the_bucket_and_namespace_changes_work,
);

goofys_tests::in_each_fault_alone!(
    a_mounted_bucket_lists_stats_and_reads_like_a_directory_tree,
    a_large_object_reads_back_exactly_whole_and_at_random_offsets,
    files_written_through_the_mount_reach_the_bucket_and_namespace_changes_work,
);
