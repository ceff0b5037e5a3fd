//! End-to-end: a real FUSE mount of a bucket on a real S3 server (SeaweedFS on 127.0.0.1),
//! used through the ordinary file API, as `ls`, `stat` and `cat` would.

use std::sync::Arc;

use goofys_core::CoreConfig;
use goofys_tests::bucket::{get, put};
use goofys_tests::mount::TestMount;
use goofys_tests::seaweedfs::SeaweedFs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mounted_bucket_lists_stats_and_reads_like_a_directory_tree() {
    let server = SeaweedFs::shared();
    let client = Arc::new(server.new_bucket("fuse-tree").await);
    put(&client, "top.txt", &b"hello\n"[..]).await;
    put(&client, "dir/a.txt", &b"aaa"[..]).await;
    put(&client, "dir/sub/deep.bin", vec![7u8; 3 * 1024 * 1024 + 17]).await;
    put(&client, "marker/", &b""[..]).await;

    let mount = TestMount::new(Arc::clone(&client), CoreConfig::default());
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_written_through_the_mount_reach_the_bucket_and_namespace_changes_work() {
    let server = SeaweedFs::shared();
    let client = Arc::new(server.new_bucket("fuse-write").await);
    put(&client, "existing.txt", &b"line 1\n"[..]).await;
    let mount = TestMount::new(Arc::clone(&client), CoreConfig::default());
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

    assert_eq!(get(&client, "big.bin").await.as_deref(), Some(&expected_big[..]));
    assert_eq!(get(&client, "existing.txt").await.as_deref(), Some(&b"line 1\nline 2\n"[..]));
    assert_eq!(get(&client, "renamed/moved.txt").await.as_deref(), Some(&b"hel"[..]));
    assert_eq!(get(&client, "new.txt").await, None);
    assert_eq!(get(&client, "d1/d2/inner").await, None);
}

fn libc_enotempty() -> i32 {
    39
}
