//! End-to-end: a real FUSE mount of a bucket on a real S3 server (SeaweedFS on 127.0.0.1),
//! used through the ordinary file API, as `ls`, `stat` and `cat` would.

use std::sync::Arc;

use goofys_core::CoreConfig;
use goofys_tests::mount::TestMount;
use goofys_tests::objects::put_object as put;
use goofys_tests::seaweedfs::SeaweedFs;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mounted_bucket_lists_stats_and_reads_like_a_directory_tree() {
    let server = SeaweedFs::shared();
    let client = Arc::new(server.new_bucket("fuse-tree").await);
    put(&client, "top.txt", b"hello\n").await;
    put(&client, "dir/a.txt", b"aaa").await;
    put(&client, "dir/sub/deep.bin", &vec![7u8; 3 * 1024 * 1024 + 17]).await;
    put(&client, "marker/", b"").await;

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
