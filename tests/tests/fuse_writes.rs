//! End-to-end proof of the write path: a real FUSE mount of a bucket on a real S3 server
//! (SeaweedFS on 127.0.0.1), used by ordinary system calls and tools, and the bucket checked
//! byte for byte afterwards through a separate S3 client.
//!
//! It proves that fsx's random reads, writes, mapped writes, truncates, syncs and reopens
//! (10,000 on a small file, 2,000 on a multipart-sized one) never read a wrong byte and leave
//! S3 holding exactly the file a local filesystem ends with; that appends, truncation (shrink,
//! extend with zeros, `O_TRUNC`, `truncate(2)` of a file nobody has open) and overwrites in
//! place reach S3 exactly, the last by uploading only the changed part and copying the rest
//! server-side; that a directory of 2,500 children is renamed whole; that `mkdir -p`, `rm -rf`,
//! `cp -r`, `tar` and `rsync` round-trip trees (`tar` and `rsync` with their owners, modes and
//! times); and that a file being written reads back its writer's bytes and size in the same
//! mount (close errors: `fuse_close_errors.rs`). Requests are observed, and refused, by a proxy between the mount and the
//! server (`goofys_tests::fault_proxy`).

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use goofys_core::CoreConfig;
use goofys_tests::bucket::{get, get_many, list_keys, put, put_many};
use goofys_tests::fault_proxy::{FaultProxy, Network, Operation, ProxiedBucket};
use goofys_tests::files::{assert_same_bytes, describe_output, pattern, run, tool};
use goofys_tests::mount::TestMount;
use goofys_tests::seaweedfs::SeaweedFs;

const MIB: usize = 1024 * 1024;

/// What S3 holds at `key`, or a panic naming the key.
async fn object(client: &goofys_s3::S3Client, key: &str) -> Bytes {
    get(client, key).await.unwrap_or_else(|| panic!("no object at {key}"))
}

async fn appends_with_o_append_and_shell_redirection_reach_the_bucket(network: Network) {
    let server = SeaweedFs::shared();
    let bucket = ProxiedBucket::on(&server, "fuse-append", network).await;
    let client = Arc::clone(&bucket.direct);
    put(&client, "log.txt", &b"line 0\n"[..]).await;
    let big = pattern(1, 12 * MIB);
    put(&client, "big.log", big.clone()).await;
    let mount = TestMount::new(Arc::clone(&bucket.proxied), network.core_config(CoreConfig::default()));
    let expected_log: String = (0..=20).map(|i| format!("line {i}\n")).collect();

    mount
        .use_files(move |root| {
            for i in 1..=10 {
                let mut log = OpenOptions::new().append(true).open(root.join("log.txt")).unwrap();
                log.write_all(format!("line {i}\n").as_bytes()).unwrap();
            }
            for i in 11..=20 {
                let script = format!("printf 'line {i}\\n' >> log.txt");
                run(Command::new("sh").arg("-c").arg(script).current_dir(&root));
            }
            assert_eq!(
                std::fs::read_to_string(root.join("log.txt")).unwrap(),
                (0..=20).map(|i| format!("line {i}\n")).collect::<String>()
            );

            // O_APPEND ignores the file offset: a seek to 0 still appends.
            let mut both = OpenOptions::new().read(true).append(true).open(root.join("big.log")).unwrap();
            both.write_all(b"first tail ").unwrap();
            both.seek(SeekFrom::Start(0)).unwrap();
            both.write_all(b"second tail").unwrap();
            drop(both);

            // `>>` onto a name that does not exist creates it.
            run(Command::new("sh").arg("-c").arg("echo one >> fresh.log; echo two >> fresh.log").current_dir(&root));
            assert_eq!(std::fs::read(root.join("fresh.log")).unwrap(), b"one\ntwo\n");
        })
        .await;
    mount.unmount().await;
    bucket.finish().await;

    assert_same_bytes("log.txt", &object(&client, "log.txt").await, expected_log.as_bytes());
    assert_same_bytes("fresh.log", &object(&client, "fresh.log").await, b"one\ntwo\n");
    let mut expected_big = big;
    expected_big.extend_from_slice(b"first tail second tail");
    assert_same_bytes("big.log", &object(&client, "big.log").await, &expected_big);
}

async fn truncation_shrinks_extends_with_zeros_and_o_trunc_empties(network: Network) {
    let server = SeaweedFs::shared();
    let bucket = ProxiedBucket::on(&server, "fuse-truncate", network).await;
    let client = Arc::clone(&bucket.direct);
    let small = pattern(2, 1000);
    let big = pattern(3, 12 * MIB);
    for key in ["shrink.txt", "grow.txt", "holes.txt"] {
        put(&client, key, small.clone()).await;
    }
    put(&client, "otrunc.txt", &b"the old content"[..]).await;
    put(&client, "emptied.txt", &b"data"[..]).await;
    put(&client, "big.bin", big.clone()).await;
    put(&client, "big-otrunc.bin", big.clone()).await;
    let mount = TestMount::new(Arc::clone(&bucket.proxied), network.core_config(CoreConfig::default()));

    mount
        .use_files(move |root| {
            let truncate =
                |size: &str, name: &str| run(Command::new("truncate").args(["-s", size, name]).current_dir(&root));
            truncate("300", "shrink.txt");
            truncate("5000", "grow.txt");
            // ftruncate on an open file, then a write past the end leaves a hole of zeros.
            let holes = OpenOptions::new().write(true).open(root.join("holes.txt")).unwrap();
            holes.set_len(100).unwrap();
            holes.write_all_at(b"XYZ", 200).unwrap();
            drop(holes);
            // O_TRUNC, with and without a write after it.
            std::fs::write(root.join("otrunc.txt"), b"new").unwrap();
            run(Command::new("sh").arg("-c").arg(": > emptied.txt").current_dir(&root));
            std::fs::write(root.join("big-otrunc.bin"), b"tiny").unwrap();
            // truncate(2) by path on files nobody has open: a multipart object shrunk (its head
            // copied server-side), then extended with zeros.
            nix::unistd::truncate(&root.join("big.bin"), (6 * MIB + 1) as i64).unwrap();
            nix::unistd::truncate(&root.join("big.bin"), (9 * MIB) as i64).unwrap();
            assert_eq!(std::fs::metadata(root.join("big.bin")).unwrap().len(), 9 * MIB as u64);
            assert_eq!(std::fs::metadata(root.join("grow.txt")).unwrap().len(), 5000);
        })
        .await;
    mount.unmount().await;
    bucket.finish().await;

    assert_same_bytes("shrink.txt", &object(&client, "shrink.txt").await, &small[..300]);
    let mut grown = small.clone();
    grown.resize(5000, 0);
    assert_same_bytes("grow.txt", &object(&client, "grow.txt").await, &grown);
    let mut holes = small[..100].to_vec();
    holes.resize(200, 0);
    holes.extend_from_slice(b"XYZ");
    assert_same_bytes("holes.txt", &object(&client, "holes.txt").await, &holes);
    assert_same_bytes("otrunc.txt", &object(&client, "otrunc.txt").await, b"new");
    assert_same_bytes("emptied.txt", &object(&client, "emptied.txt").await, b"");
    assert_same_bytes("big-otrunc.bin", &object(&client, "big-otrunc.bin").await, b"tiny");
    let mut big_expected = big[..6 * MIB + 1].to_vec();
    big_expected.resize(9 * MIB, 0);
    assert_same_bytes("big.bin", &object(&client, "big.bin").await, &big_expected);
}

async fn an_overwrite_in_the_middle_of_20_mib_uploads_only_the_changed_part(network: Network) {
    let server = SeaweedFs::shared();
    let bucket = ProxiedBucket::on(&server, "fuse-overwrite", network).await;
    let (proxy, client) = (Arc::clone(&bucket.proxy), Arc::clone(&bucket.direct));
    let original = pattern(4, 20 * MIB);
    put(&client, "big.bin", original.clone()).await;
    // 8 MiB parts: the change at 10 MiB lies in part 2, [8 MiB, 16 MiB).
    let config = CoreConfig::default();
    assert_eq!(config.write_part_size(1), 8 * MIB as u64);
    let mount = TestMount::new(Arc::clone(&bucket.proxied), network.core_config(config));
    let patch = pattern(5, 4096);
    let at = (10 * MIB + 123) as u64;

    let written = patch.clone();
    mount
        .use_files(move |root| {
            let file = OpenOptions::new().write(true).open(root.join("big.bin")).unwrap();
            file.write_all_at(&written, at).unwrap();
            let closed = nix::unistd::close(file);
            assert_eq!(closed, Ok(()), "close after an overwrite in place");
        })
        .await;
    let exchanges = proxy.exchanges();
    mount.unmount().await;
    bucket.finish().await;

    let mut expected = original;
    expected[at as usize..at as usize + patch.len()].copy_from_slice(&patch);
    assert_same_bytes("big.bin", &object(&client, "big.bin").await, &expected);
    // Successful requests only: a retried one is counted once.
    let of = |operation: Operation| {
        exchanges.iter().filter(|e| e.operation == operation && e.status / 100 == 2).collect::<Vec<_>>()
    };
    let uploaded: u64 = of(Operation::UploadPart).iter().map(|e| e.body_bytes).sum();
    assert_eq!(uploaded, 8 * MIB as u64, "only the 8 MiB part holding the change is uploaded: {exchanges:#?}");
    assert_eq!(of(Operation::UploadPartCopy).len(), 2, "parts 1 and 3 are copied server-side: {exchanges:#?}");
    assert!(of(Operation::PutObject).is_empty(), "no whole-object PUT: {exchanges:#?}");
    assert_eq!(of(Operation::CompleteMultipartUpload).len(), 1, "{exchanges:#?}");
}

async fn renaming_a_directory_of_2500_children_moves_every_key_with_its_bytes(network: Network) {
    let server = SeaweedFs::shared();
    let bucket = ProxiedBucket::on(&server, "fuse-rename", network).await;
    let client = Arc::clone(&bucket.direct);
    let body = |i: usize| Bytes::from(format!("object {i} of the renamed directory\n").repeat(i % 7 + 1));
    let names: Vec<String> =
        (0..2400).map(|i| format!("f{i:04}")).chain((0..100).map(|i| format!("sub/g{i:03}"))).collect();
    let started = Instant::now();
    put_many(&client, names.iter().enumerate().map(|(i, name)| (format!("big/{name}"), body(i))).collect()).await;
    put(&client, "outside.txt", &b"not moved"[..]).await;
    eprintln!("put 2,500 objects in {:?}", started.elapsed());
    let mount = TestMount::new(Arc::clone(&bucket.proxied), network.core_config(CoreConfig::default()));

    let started = Instant::now();
    mount
        .use_files(move |root| {
            std::fs::rename(root.join("big"), root.join("moved")).unwrap();
            // SeaweedFS keeps an emptied folder listed (`big/sub/`), so `big` may still show as
            // a directory; it holds no file.
            assert_eq!(files_under(&root.join("big")), Vec::<std::path::PathBuf>::new());
            assert_eq!(std::fs::read_dir(root.join("moved")).unwrap().count(), 2401);
            assert_eq!(files_under(&root.join("moved")).len(), 2500);
            assert_eq!(std::fs::read(root.join("moved/f0009")).unwrap(), body(9));
        })
        .await;
    eprintln!("renamed 2,500 objects in {:?}", started.elapsed());
    mount.unmount().await;
    bucket.finish().await;

    assert_eq!(list_keys(&client, "big/").await, Vec::new(), "nothing is left under the old name");
    let moved: Vec<String> = names.iter().map(|name| format!("moved/{name}")).collect();
    let listed: Vec<String> = list_keys(&client, "moved/").await.into_iter().map(|(key, _)| key).collect();
    assert_eq!(listed, moved, "every key is under the new name");
    for (i, found) in get_many(&client, &moved).await.into_iter().enumerate() {
        assert_eq!(found.as_ref(), Some(&body(i)), "the bytes of {}", moved[i]);
    }
    assert_eq!(object(&client, "outside.txt").await, &b"not moved"[..]);
}

/// Every file below `dir` (none if `dir` does not exist).
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.unwrap().path();
        if std::fs::metadata(&path).unwrap().is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A local tree with nested and empty directories, a name with a space, empty, small, 1 MiB
/// and multipart-sized (9 MiB, over one 8 MiB part) files.
fn make_tree(root: &Path) {
    for dir in ["docs/deep/er", "empty-dir", "src"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    std::fs::write(root.join("README"), b"a tree to copy\n").unwrap();
    std::fs::write(root.join("docs/a b.txt"), b"a name with a space\n").unwrap();
    std::fs::write(root.join("docs/deep/er/zero"), b"").unwrap();
    for i in 0..20 {
        std::fs::write(root.join(format!("src/{i}.rs")), pattern(100 + i, 37 * i as usize * i as usize)).unwrap();
    }
    std::fs::write(root.join("src/one-mib"), pattern(7, MIB)).unwrap();
    std::fs::write(root.join("blob.bin"), pattern(8, 9 * MIB + 5)).unwrap();
}

fn diff_trees(expected: &Path, actual: &Path) {
    run(Command::new("diff").arg("-r").arg(expected).arg(actual));
}

/// Panics unless `rsync -ani` finds `actual` like `expected` in modes, owners, groups and
/// nanosecond times as well as sizes (`diff_trees` compares the bytes).
#[track_caller]
fn assert_same_metadata(expected: &Path, actual: &Path) {
    let output = run(Command::new("rsync")
        .args(["-a", "-n", "-i", "--delete", "--modify-window=-1"])
        .arg(format!("{}/", expected.display()))
        .arg(format!("{}/", actual.display())));
    let differences = String::from_utf8_lossy(&output.stdout);
    assert!(differences.is_empty(), "{} differs from {}:\n{differences}", actual.display(), expected.display());
}

async fn mkdir_p_rm_rf_cp_r_tar_and_rsync_round_trip_trees(network: Network) {
    let server = SeaweedFs::shared();
    let bucket = ProxiedBucket::on(&server, "fuse-tools", network).await;
    let client = Arc::clone(&bucket.direct);
    let mount = TestMount::new(Arc::clone(&bucket.proxied), network.core_config(CoreConfig::default()));
    let work = tempfile::tempdir().unwrap();
    let local = work.path().join("tree");
    make_tree(&local);
    let work_path = work.path().to_owned();

    mount
        .use_files(move |root| {
            let work = work_path;
            // mkdir -p, then rm -rf of it.
            run(Command::new("mkdir").arg("-p").arg(root.join("a/b/c")).arg(root.join("kept/x/y")));
            assert!(std::fs::metadata(root.join("a/b/c")).unwrap().is_dir());

            // cp -r into the mount and back out.
            run(Command::new("cp").arg("-r").arg(&local).arg(root.join("copied")));
            run(Command::new("cp").arg("-r").arg(root.join("copied")).arg(work.join("copied-back")));
            diff_trees(&local, &work.join("copied-back"));
            run(Command::new("rm").arg("-rf").arg(root.join("copied")).arg(root.join("a")));
            assert!(!root.join("copied").exists() && !root.join("a").exists());

            // tar x into the mount as root (owners, modes and times kept), tar c out of it, in
            // the POSIX format, which keeps times to the nanosecond.
            let tar_in = work.join("in.tar");
            run(Command::new("tar").arg("--format=posix").arg("-cf").arg(&tar_in).arg("-C").arg(&local).arg("."));
            std::fs::create_dir(root.join("untarred")).unwrap();
            run(Command::new("tar").arg("-xf").arg(&tar_in).arg("-C").arg(root.join("untarred")));
            assert_same_metadata(&local, &root.join("untarred"));
            let tar_out = work.join("out.tar");
            run(Command::new("tar")
                .arg("--format=posix")
                .arg("-cf")
                .arg(&tar_out)
                .arg("-C")
                .arg(root.join("untarred"))
                .arg("."));
            std::fs::create_dir(work.join("untarred-back")).unwrap();
            run(Command::new("tar").arg("-xf").arg(&tar_out).arg("-C").arg(work.join("untarred-back")));
            diff_trees(&local, &work.join("untarred-back"));
            assert_same_metadata(&local, &work.join("untarred-back"));

            // rsync into the mount and back, then again after a change (rsync then writes a
            // temporary file beside each file it sends and renames it over the old one).
            // rsync compares times to the second unless told otherwise, and would leave a new
            // directory's time alone when the source's differs from it by a fraction of a second.
            let rsync = |from: &Path, to: &Path| {
                let from = format!("{}/", from.display());
                run(Command::new("rsync").args(["-a", "--modify-window=-1"]).arg(from).arg(to));
            };
            rsync(&local, &root.join("synced"));
            assert_same_metadata(&local, &root.join("synced"));
            rsync(&root.join("synced"), &work.join("synced-back"));
            diff_trees(&local, &work.join("synced-back"));
            assert_same_metadata(&local, &work.join("synced-back"));
            std::fs::write(local.join("README"), b"a tree to copy, changed\n").unwrap();
            std::fs::write(local.join("docs/new file"), pattern(9, 70_000)).unwrap();
            rsync(&local, &root.join("synced"));
            assert_same_metadata(&local, &root.join("synced"));
            rsync(&root.join("synced"), &work.join("synced-back-again"));
            diff_trees(&local, &work.join("synced-back-again"));
        })
        .await;
    mount.unmount().await;
    bucket.finish().await;

    for gone in ["copied/", "a/"] {
        assert_eq!(list_keys(&client, gone).await, Vec::new(), "rm -rf left keys under {gone}");
    }
    let markers: Vec<(String, u64)> = ["kept/", "kept/x/", "kept/x/y/"].map(|key| (key.to_owned(), 0)).into();
    assert_eq!(list_keys(&client, "kept/").await, markers, "mkdir -p made a marker per directory");
    let readme = std::fs::read(work.path().join("tree/README")).unwrap();
    assert_same_bytes("synced/README", &object(&client, "synced/README").await, &readme);
    assert_same_bytes("untarred/blob.bin", &object(&client, "untarred/blob.bin").await, &pattern(8, 9 * MIB + 5));
}

async fn a_file_open_for_writing_reads_back_its_writers_bytes_and_size(network: Network) {
    let server = SeaweedFs::shared();
    let bucket = ProxiedBucket::on(&server, "fuse-read-own", network).await;
    let client = Arc::clone(&bucket.direct);
    let mount = TestMount::new(Arc::clone(&bucket.proxied), network.core_config(CoreConfig::default()));
    let content = pattern(10, 10 * MIB + 5);

    let expected = content.clone();
    let final_content = mount
        .use_files(move |root| {
            let path = root.join("growing.bin");
            let direct = || OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(&path).unwrap();
            let read_all = |mut file: &File| {
                let mut bytes = Vec::new();
                file.seek(SeekFrom::Start(0)).unwrap();
                file.read_to_end(&mut bytes).unwrap();
                bytes
            };
            let mut writer = File::create(&path).unwrap();
            writer.write_all(&content[..3000]).unwrap();
            let reader = File::open(&path).unwrap();
            let direct_reader = direct();
            assert_eq!(std::fs::metadata(&path).unwrap().len(), 3000);
            assert_eq!(reader.metadata().unwrap().len(), 3000);
            assert_same_bytes("read through a second handle", &read_all(&reader), &content[..3000]);
            assert_same_bytes("read with O_DIRECT", &read_all(&direct_reader), &content[..3000]);

            // Past one part: the first part streams to S3 while the file is still open.
            writer.write_all(&content[3000..]).unwrap();
            assert_eq!(std::fs::metadata(&path).unwrap().len(), content.len() as u64);
            assert_same_bytes("read of 10 MiB being written", &read_all(&reader), &content);
            assert_same_bytes("O_DIRECT read of 10 MiB being written", &read_all(&direct_reader), &content);

            let mut content = content;
            writer.write_all_at(b"HELLO", 100).unwrap();
            content[100..105].copy_from_slice(b"HELLO");
            assert_same_bytes("O_DIRECT read after an overwrite", &read_all(&direct_reader), &content);
            writer.set_len(5000).unwrap();
            content.truncate(5000);
            assert_eq!(std::fs::metadata(&path).unwrap().len(), 5000);
            assert_same_bytes("O_DIRECT read after a truncate", &read_all(&direct_reader), &content);
            assert_same_bytes("read of a new handle", &read_all(&direct()), &content);
            drop(writer);
            content
        })
        .await;
    mount.unmount().await;
    bucket.finish().await;
    assert_ne!(final_content, expected);
    assert_same_bytes("growing.bin", &object(&client, "growing.bin").await, &final_content);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_just_written_in_unaligned_writes_reads_back_with_a_few_gets() {
    let server = SeaweedFs::shared();
    let ProxiedBucket { proxy, proxied, .. } = ProxiedBucket::new(&server, "fuse-reread").await;
    let mount = TestMount::new(proxied, CoreConfig::default());
    let content = pattern(13, 9 * MIB);

    let reading = Arc::clone(&proxy);
    let (elapsed, gets) = mount
        .use_files(move |root| {
            // tar writes in 10 KiB records: most writes end inside a page.
            let mut file = File::create(root.join("tarred.bin")).unwrap();
            for record in content.chunks(10 * 1024) {
                file.write_all(record).unwrap();
            }
            assert_eq!(nix::unistd::close(file), Ok(()));
            reading.clear_exchanges();
            let started = Instant::now();
            assert_same_bytes("tarred.bin", &std::fs::read(root.join("tarred.bin")).unwrap(), &content);
            (started.elapsed(), reading.exchanges_of(Operation::GetObject).len())
        })
        .await;
    mount.unmount().await;
    // Read sequentially, 9 MiB is a few prefetch GETs (5 after the kernel's cache is dropped).
    // The kernel keeps the pages it wrote whole and asks FUSE for each partly written page
    // alone: 4 KiB reads at rising but not adjacent offsets, which the core takes as a stream
    // with short skips (it once took them as random reads: about 430 GETs).
    assert!(gets <= 16, "{gets} GETs and {elapsed:?} to read back 9 MiB just written");
}

/// fsx's configuration (fsx.toml) for a small file: 256 KiB, within one part, so each commit
/// is one PUT; 10,000 operations of every kind the mount supports (weights in
/// [`fsx_config`]). Mapped writes are followed by `msync(MS_SYNC)` (fsx's default), so each
/// one commits the file to S3, as do fsync, fdatasync and close.
fn fsx_small_file() -> String {
    fsx_config("flen = 262144\n[opsize]\nmax = 65536", 2, 5)
}

/// fsx's configuration for a file of up to 12 MiB, over two 5 MiB parts, so each commit is a
/// multipart upload mixing uploaded parts, parts copied server-side and base bytes fetched to
/// fill the gaps of changed parts. Commits are costly here, so mapped writes are not followed
/// by msync (the kernel writes them back at the next fsync or close), and close/open and
/// truncate are rarer than in [`fsx_small_file`].
fn fsx_multipart_file() -> String {
    fsx_config("flen = 12582912\nnomsyncafterwrite = true\n[opsize]\nmax = 262144", 1, 3)
}

/// An fsx.toml: `file` settings, then the weights of every operation the mount supports. Left
/// out: hole punching (`fallocate(2)` with `FALLOC_FL_PUNCH_HOLE` fails with EOPNOTSUPP: the
/// mount has no fallocate). `posix_fallocate` is in: glibc emulates it with writes when
/// `fallocate(2)` is refused.
fn fsx_config(file: &str, close_open: u32, truncate: u32) -> String {
    format!(
        "{file}\n[weights]\nclose_open = {close_open}\ntruncate = {truncate}\nread = 10\nwrite = 10\n\
         mapread = 5\nmapwrite = 5\ninvalidate = 1\nfsync = 1\nfdatasync = 1\nposix_fallocate = 1\n\
         sendfile = 2\nposix_fadvise = 1\ncopy_file_range = 2\npunch_hole = 0\n"
    )
}
const FSX_SEED: &str = "20260611";
/// How fsx -v names each kind of operation in its log: every one must have run.
const FSX_OPERATION_NAMES: [&str; 13] = [
    "close/open",
    "copy_file_range",
    "fdatasync",
    "fsync",
    "mapread",
    "mapwrite",
    "msync(MS_INVALIDATE)",
    "posix_fadvise",
    "posix_fallocate",
    "read",
    "sendfile",
    "truncate",
    "write",
];

/// Runs fsx on `target`: an error unless it completes `operations` with no mismatch, having
/// run every kind of operation.
fn run_fsx(fsx: &Path, config: &Path, operations: &str, artifacts: &Path, target: &Path) -> Result<(), String> {
    let mut command = Command::new(fsx);
    command.args(["-v", "-N", operations, "-S", FSX_SEED, "-f"]).arg(config).arg("-P").arg(artifacts).arg(target);
    let output = command.output().map_err(|e| format!("cannot run {command:?}: {e}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let config_text = std::fs::read_to_string(config).unwrap_or_default();
    if !output.status.success() || !stdout.contains("All operations completed A-OK!") {
        return Err(format!(
            "{command:?} failed with {} (replay: the same command with this config):\n{config_text}\n{}",
            output.status,
            describe_output(&output)
        ));
    }
    let log = String::from_utf8_lossy(&output.stderr);
    for name in FSX_OPERATION_NAMES {
        let ran = log.lines().filter(|line| line.contains(&format!(" {name}"))).count();
        if ran == 0 {
            return Err(format!("fsx never ran {name} on {}", target.display()));
        }
    }
    Ok(())
}

/// The requests of `proxy` that were not answered with success, for a failure message: on a
/// clean network there should be none, so one of them is the likely cause.
fn unsuccessful_exchanges(proxy: &FaultProxy) -> String {
    const SHOWN: usize = 20;
    let exchanges = proxy.exchanges();
    let unsuccessful: Vec<String> = exchanges
        .iter()
        .filter(|exchange| !matches!(exchange.status / 100, 2 | 3))
        .map(|exchange| format!("{exchange:?}"))
        .collect();
    let first = unsuccessful.len().saturating_sub(SHOWN);
    format!(
        "{} of {} requests were not answered with success; the last {}:\n{}",
        unsuccessful.len(),
        exchanges.len(),
        unsuccessful.len() - first,
        unsuccessful[first..].join("\n")
    )
}

/// Runs fsx with `fsx_config` through a mount with `config`, then the same fsx run on a local
/// file: fsx is deterministic, so the local file ends with the bytes S3 must hold.
/// `commits_with`: the S3 operations the run must have used to commit (through a proxy that
/// records them), to show it exercised what it claims to.
async fn fsx_through_the_mount(
    bucket_name: &str,
    fsx_config: &str,
    operations: &str,
    config: CoreConfig,
    commits_with: &[Operation],
    network: Network,
) {
    let fsx = tool("fsx", "FSX", "Install it with `cargo install fsx --locked` (scripts/test-all.sh does).");
    let server = SeaweedFs::shared();
    let bucket = ProxiedBucket::on(&server, bucket_name, network).await;
    let (proxy, client) = (Arc::clone(&bucket.proxy), Arc::clone(&bucket.direct));
    let work = tempfile::tempdir().unwrap();
    let config_file = work.path().join("fsx.toml");
    std::fs::write(&config_file, fsx_config).unwrap();
    let mount = TestMount::new(Arc::clone(&bucket.proxied), network.core_config(config));
    let started = Instant::now();
    let (fsx_for_mount, config_for_mount, artifacts) = (fsx.clone(), config_file.clone(), work.path().to_owned());
    let operations_for_mount = operations.to_owned();
    let outcome = mount
        .use_files(move |root| {
            run_fsx(&fsx_for_mount, &config_for_mount, &operations_for_mount, &artifacts, &root.join("fsx.bin"))
        })
        .await;
    if let Err(failure) = outcome {
        panic!("through the mount: {failure}\n{}", unsuccessful_exchanges(&proxy));
    }
    eprintln!("fsx ({operations} operations) through the mount took {:?}", started.elapsed());
    mount.unmount().await;
    bucket.finish().await;
    for &operation in commits_with {
        let succeeded = proxy.exchanges_of(operation).iter().filter(|e| e.status / 100 == 2).count();
        assert!(succeeded > 0, "fsx's commits never used {operation:?}");
        eprintln!("{succeeded} × {operation:?}");
    }

    let local = match Path::new("/dev/shm").is_dir() {
        true => tempfile::tempdir_in("/dev/shm").unwrap(),
        false => tempfile::tempdir().unwrap(),
    };
    if let Err(failure) = run_fsx(&fsx, &config_file, operations, local.path(), &local.path().join("fsx.bin")) {
        panic!("on a local file: {failure}");
    }
    let expected = std::fs::read(local.path().join("fsx.bin")).unwrap();
    assert_same_bytes("fsx.bin in the bucket", &object(&client, "fsx.bin").await, &expected);
}

async fn fsx_runs_random_operations_with_no_mismatch_and_the_bucket_holds_its_file(network: Network) {
    // A faulty network makes each commit slower (a stall costs a request timeout): fewer operations.
    let operations = match network {
        Network::Clean => "10000",
        Network::Faulty { .. } => "1500",
        Network::FailingOnly { .. } => "150",
    };
    let commits_with = [Operation::PutObject];
    fsx_through_the_mount("fuse-fsx", &fsx_small_file(), operations, CoreConfig::default(), &commits_with, network)
        .await;
}

async fn fsx_on_a_file_of_several_parts_commits_multipart_uploads_with_no_mismatch(network: Network) {
    let config = CoreConfig { write_part_size_bytes: 5 * MIB as u64, ..CoreConfig::default() };
    let multipart = [Operation::UploadPart, Operation::UploadPartCopy, Operation::CompleteMultipartUpload];
    let operations = match network {
        Network::Clean => "2000",
        Network::Faulty { .. } => "400",
        Network::FailingOnly { .. } => "150",
    };
    fsx_through_the_mount("fuse-fsx-parts", &fsx_multipart_file(), operations, config, &multipart, network).await;
}

goofys_tests::on_both_networks!(
    appends_with_o_append_and_shell_redirection_reach_the_bucket,
    truncation_shrinks_extends_with_zeros_and_o_trunc_empties,
    an_overwrite_in_the_middle_of_20_mib_uploads_only_the_changed_part,
    renaming_a_directory_of_2500_children_moves_every_key_with_its_bytes,
    mkdir_p_rm_rf_cp_r_tar_and_rsync_round_trip_trees,
    a_file_open_for_writing_reads_back_its_writers_bytes_and_size,
    fsx_runs_random_operations_with_no_mismatch_and_the_bucket_holds_its_file,
    fsx_on_a_file_of_several_parts_commits_multipart_uploads_with_no_mismatch,
);

goofys_tests::in_each_fault_alone!(
    appends_with_o_append_and_shell_redirection_reach_the_bucket,
    truncation_shrinks_extends_with_zeros_and_o_trunc_empties,
    an_overwrite_in_the_middle_of_20_mib_uploads_only_the_changed_part,
    a_file_open_for_writing_reads_back_its_writers_bytes_and_size,
    fsx_runs_random_operations_with_no_mismatch_and_the_bucket_holds_its_file,
    fsx_on_a_file_of_several_parts_commits_multipart_uploads_with_no_mismatch,
);
