//! The mounted tree through ordinary tools: `ls -la`, `stat`, `cat`, `find`, `du` and
//! `sha256sum` over objects another S3 client wrote, through the real `goofys-rs` binary
//! against SeaweedFS on 127.0.0.1. A prefix mount, a directory of 5,000 entries, names with
//! spaces, unicode and `%`, a 1 GiB object read whole with its checksum, and an object replaced
//! while a reader is in the middle of it.
//!
//! Needs root, FUSE 3 and `weed` (SeaweedFS).

use std::io::Read as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use goofys_tests::binary::{ForegroundProcess, Mountpoint, bucket_name, goofys_command};
use goofys_tests::bucket::{put, put_many, put_multipart};
use goofys_tests::seaweedfs::SeaweedFs;
use sha2::{Digest as _, Sha256};

const BINARY: &str = env!("CARGO_BIN_EXE_goofys-rs");
const MIB: usize = 1024 * 1024;

/// Mounts `source` (`bucket` or `bucket:prefix`) with `-f` and `extra` flags.
fn mount(server: &SeaweedFs, source: &str, mnt: &Mountpoint, extra: &[&str]) -> ForegroundProcess {
    let mut command = goofys_command(Path::new(BINARY));
    command.args(["-f", "--endpoint", server.endpoint()]).args(extra).arg(source).arg(mnt.path());
    ForegroundProcess::mount(command, mnt)
}

/// Runs a command and returns its stdout; panics with its stderr if it fails.
fn sh(program: &str, args: &[&str]) -> String {
    let output = Command::new(program).args(args).output().unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(output.status.success(), "{program} {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

fn sorted_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    lines.sort();
    lines
}

/// Bytes that depend on their offset and `seed`: a misplaced or stale block shows.
fn pattern(seed: u64, start_offset: u64, length_bytes: usize) -> Bytes {
    let mut out = Vec::with_capacity(length_bytes);
    let first_word = start_offset / 8;
    for word in first_word..first_word + (length_bytes as u64).div_ceil(8) {
        // splitmix64's finaliser of (seed, word index).
        let mut z = word.wrapping_add(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(length_bytes);
    Bytes::from(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ls_stat_cat_find_and_du_see_the_tree_another_client_wrote() {
    let server = SeaweedFs::shared();
    let client = server.new_bucket("tree").await;
    let files: [(&str, Bytes); 6] = [
        ("README.md", Bytes::from_static(b"# A project\n")),
        ("src/main.rs", Bytes::from_static(b"fn main() {}\n")),
        ("src/lib/util.rs", Bytes::from_static(b"pub fn util() {}\n")),
        ("assets/logo.png", pattern(7, 0, 100 * 1024)),
        ("docs/guide/intro.md", Bytes::from_static(b"Start here.\n")),
        ("docs/guide/deep/notes.txt", pattern(8, 0, 3 * MIB + 5)),
    ];
    for (key, body) in &files {
        put(&client, key, body.clone()).await;
    }
    put(&client, "docs/", &b""[..]).await; // an explicit marker beside implicit directories
    put(&client, "empty/", &b""[..]).await;
    let mnt = Mountpoint::new();
    let _process = mount(
        &server,
        &bucket_name(&client),
        &mnt,
        &["--uid", "1234", "--gid", "2345", "--file-mode", "0640", "--dir-mode", "0750"],
    );
    let root = mnt.arg();

    // ls -la: every entry with the configured modes, `.` and `..` included.
    let listing = sh("ls", &["-la", &root]);
    let entries: Vec<(String, String)> = listing
        .lines()
        .skip(1) // "total N"
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields[0].to_owned(), fields.last().unwrap().to_string())
        })
        .collect();
    let expected: Vec<(String, String)> = [
        ("drwxr-x---", "."),
        ("drwxrwxrwt", ".."),
        ("-rw-r-----", "README.md"),
        ("drwxr-x---", "assets"),
        ("drwxr-x---", "docs"),
        ("drwxr-x---", "empty"),
        ("drwxr-x---", "src"),
    ]
    .iter()
    .map(|(mode, name)| (mode.to_string(), name.to_string()))
    .collect();
    let without_parent = |list: &[(String, String)]| -> Vec<(String, String)> {
        list.iter().filter(|(_, name)| name != "..").cloned().collect()
    };
    assert_eq!(without_parent(&entries), without_parent(&expected), "ls -la:\n{listing}");

    // stat: size, owner, mode and type of a file and a directory.
    let file_stat = sh("stat", &["-c", "%s %u %g %a %F", &format!("{root}/docs/guide/deep/notes.txt")]);
    assert_eq!(file_stat.trim(), format!("{} 1234 2345 640 regular file", 3 * MIB + 5));
    let dir_stat = sh("stat", &["-c", "%u %g %a %F", &format!("{root}/src/lib")]);
    assert_eq!(dir_stat.trim(), "1234 2345 750 directory");

    // cat: the bytes of each object.
    for (key, body) in &files {
        let output = Command::new("cat").arg(format!("{root}/{key}")).output().unwrap();
        assert!(output.status.success(), "cat {key}");
        assert!(output.stdout == body[..], "cat {key} gave other bytes");
    }

    // find: the whole tree, implicit directories included.
    let found = sh("find", &[&root]);
    let relative: Vec<String> =
        sorted_lines(&found).iter().map(|line| line.strip_prefix(&root).unwrap_or(line).to_owned()).collect();
    let mut expected_paths: Vec<String> = [
        "",
        "/README.md",
        "/assets",
        "/assets/logo.png",
        "/docs",
        "/docs/guide",
        "/docs/guide/deep",
        "/docs/guide/deep/notes.txt",
        "/docs/guide/intro.md",
        "/empty",
        "/src",
        "/src/lib",
        "/src/lib/util.rs",
        "/src/main.rs",
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    expected_paths.sort();
    assert_eq!(relative, expected_paths);

    // du: apparent sizes add up to the objects' sizes plus the directories' 4096 bytes each.
    let du = sh("du", &["-sb", &root]);
    let total: u64 = du.split_whitespace().next().unwrap().parse().unwrap();
    let directories = expected_paths.len() - files.len();
    let file_bytes: u64 = files.iter().map(|(_, body)| body.len() as u64).sum();
    assert_eq!(total, file_bytes + 4096 * directories as u64, "du -sb: {du}");
    let du_file = sh("du", &["-b", &format!("{root}/assets/logo.png")]);
    assert!(du_file.starts_with(&format!("{}\t", 100 * 1024)), "{du_file}");
    sh("du", &["-sh", &root]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_mount_shows_only_the_keys_under_its_prefix() {
    let server = SeaweedFs::shared();
    let client = server.new_bucket("prefix").await;
    for (key, body) in [
        ("team/a/report.txt", "report\n"),
        ("team/a/sub/deep.txt", "deep\n"),
        ("team/ab/other.txt", "beside the prefix\n"),
        ("team/a", "a file named like the prefix\n"),
        ("top.txt", "outside\n"),
    ] {
        put(&client, key, body.as_bytes().to_vec()).await;
    }
    let mnt = Mountpoint::new();
    let _process = mount(&server, &format!("{}:/team/a", bucket_name(&client)), &mnt, &[]);
    let root = mnt.arg();
    assert_eq!(sorted_lines(&sh("ls", &["-a", &root])), [".", "..", "report.txt", "sub"]);
    assert_eq!(sh("cat", &[&format!("{root}/sub/deep.txt")]), "deep\n");
    assert_eq!(sorted_lines(&sh("find", &[&root, "-type", "f"])).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_of_5000_entries_lists_whole() {
    let server = SeaweedFs::shared();
    let client = Arc::new(server.new_bucket("wide").await);
    let names: Vec<String> = (0..5000).map(|i| format!("entry-{i:05}.txt")).collect();
    let started = Instant::now();
    let objects = names.iter().map(|name| (format!("wide/{name}"), Bytes::from(name.clone()))).collect();
    put_many(&client, objects).await;
    eprintln!("5,000 PUTs took {:?}", started.elapsed());
    let mnt = Mountpoint::new();
    let _process = mount(&server, &bucket_name(&client), &mnt, &[]);
    let dir = format!("{}/wide", mnt.arg());

    let started = Instant::now();
    let listed = sh("ls", &[&dir]);
    eprintln!("ls of 5,000 entries took {:?}", started.elapsed());
    assert_eq!(sorted_lines(&listed), names);
    // ls -la: one line per entry with its attributes (readdirplus), plus total, `.` and `..`.
    let started = Instant::now();
    let long = sh("ls", &["-la", &dir]);
    eprintln!("ls -la of 5,000 entries took {:?}", started.elapsed());
    assert_eq!(long.lines().count(), 5000 + 3);
    assert!(long.lines().filter(|line| line.starts_with("-rw-r--r--")).count() == 5000, "{}", &long[..500]);
    assert_eq!(sh("cat", &[&format!("{dir}/entry-04999.txt")]), "entry-04999.txt");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_with_spaces_unicode_and_percent_signs_work() {
    let server = SeaweedFs::shared();
    let client = server.new_bucket("names").await;
    let names = [
        "with space.txt",
        "  leading and trailing spaces  ",
        "ünïcødé 文件 🎉.txt",
        "100%.txt",
        "a%2Fb%20c.txt",
        "plus+amp&eq=q?hash#.txt",
        "quote's \"double\".txt",
    ];
    for name in names {
        put(&client, &format!("dir with space/{name}"), name.as_bytes().to_vec()).await;
    }
    let mnt = Mountpoint::new();
    let _process = mount(&server, &bucket_name(&client), &mnt, &[]);
    let dir = mnt.join("dir with space");
    let listed = sh("ls", &["-1", "-a", "--quoting-style=literal", dir.to_str().unwrap()]);
    let mut expected: Vec<String> = names.iter().map(|n| n.to_string()).chain([".".into(), "..".into()]).collect();
    expected.sort();
    assert_eq!(sorted_lines(&listed), expected);
    for name in names {
        let path = dir.join(name);
        assert_eq!(sh("cat", &[path.to_str().unwrap()]), name, "cat {name:?}");
        assert_eq!(sh("stat", &["-c", "%s", path.to_str().unwrap()]).trim(), name.len().to_string());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_object_reads_whole_with_its_sha256() {
    let server = SeaweedFs::shared();
    let client = Arc::new(server.new_bucket("gib").await);
    let part_bytes = 64 * MIB;
    let part_count = 16u32; // 1 GiB
    let mut hasher = Sha256::new();
    let started = Instant::now();
    put_multipart(&client, "large/one-gib.bin", part_count, 4, |index| {
        let part = pattern(42, u64::from(index) * part_bytes as u64, part_bytes);
        hasher.update(&part);
        part
    })
    .await;
    let expected: String = hasher.finalize().iter().map(|b| format!("{b:02x}")).collect();
    eprintln!("uploading 1 GiB took {:?}", started.elapsed());

    let mnt = Mountpoint::new();
    let _process = mount(&server, &bucket_name(&client), &mnt, &[]);
    let path = mnt.join("large/one-gib.bin");
    assert_eq!(sh("stat", &["-c", "%s", path.to_str().unwrap()]).trim(), (1u64 << 30).to_string());
    let started = Instant::now();
    let sum = sh("sha256sum", &[path.to_str().unwrap()]);
    let elapsed = started.elapsed();
    eprintln!("sha256sum of 1 GiB through the mount took {elapsed:?} ({:.0} MiB/s)", 1024.0 / elapsed.as_secs_f64());
    assert_eq!(sum.split_whitespace().next(), Some(expected.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_a_replaced_object_gets_estale_never_bytes_of_two_versions() {
    let server = SeaweedFs::shared();
    let client = server.new_bucket("replaced").await;
    // Twice the prefetcher's largest window: whatever it fetched ahead before the replace,
    // the reader reaches bytes it must fetch after it.
    let size = 128 * MIB;
    let old = pattern(1, 0, size);
    put(&client, "moving.bin", old.clone()).await;
    let mnt = Mountpoint::new();
    let _process = mount(&server, &bucket_name(&client), &mnt, &[]);
    let path = mnt.join("moving.bin");

    let mut file = std::fs::File::open(&path).unwrap();
    let mut chunk = vec![0u8; MIB];
    file.read_exact(&mut chunk).unwrap();
    assert!(chunk[..] == old[..MIB]);
    put(&client, "moving.bin", pattern(2, 0, size)).await;

    let mut offset = MIB;
    let error = loop {
        match file.read(&mut chunk) {
            Ok(0) => panic!("read all {size} bytes without noticing the object was replaced"),
            Ok(read) => {
                assert!(chunk[..read] == old[offset..offset + read], "bytes of the new version at offset {offset}");
                offset += read;
            }
            Err(error) => break error,
        }
    };
    assert_eq!(error.raw_os_error(), Some(libc::ESTALE), "{error}");
    eprintln!("ESTALE after {} MiB of the old version", offset / MIB);
    // A fresh open sees the new version.
    let mut reopened = std::fs::File::open(&path).unwrap();
    reopened.read_exact(&mut chunk).unwrap();
    assert!(chunk[..] == pattern(2, 0, MIB)[..]);
}
