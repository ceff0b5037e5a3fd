//! Hostile buckets through the real `goofys-rs` binary: keys no file system can show as they
//! are (`//`, `.` and `..` components, components over 255 bytes, NUL, listed forms that are
//! not UTF-8), keys that are hard but legal (1024 bytes, CR and LF in names, a 255-byte
//! component), a key that is both a file and a prefix, and 100,000 keys in one directory.
//!
//! Real servers refuse to store most of these (SeaweedFS rejects `.`/`..` segments and long
//! segments; no S3 stores a key that is not UTF-8), so the bucket is hand-made: a
//! [`ListingServer`] answers ListObjectsV2, HEAD and GET with crafted XML, as S3 would. The
//! rules checked here are the "Hostile buckets" table of docs/SEMANTICS.md.
//!
//! Needs root and FUSE 3 (`fusermount3`).

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt as _, OsStringExt as _};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use bytes::Bytes;
use goofys_tests::binary::{ForegroundProcess, Mountpoint, goofys_command};
use goofys_tests::files::run;
use goofys_tests::listing_server::ListingServer;

const BINARY: &str = env!("CARGO_BIN_EXE_goofys-rs");

/// A read-only foreground mount of `server`'s bucket.
fn mount(server: &ListingServer, mnt: &Mountpoint) -> ForegroundProcess {
    let mut command = goofys_command(Path::new(BINARY));
    command
        .args(["-f", "--read-only", "--region", "us-east-1", "--endpoint", &server.endpoint()])
        .arg(server.bucket())
        .arg(mnt.path());
    ForegroundProcess::mount(command, mnt)
}

fn names(dir: &Path) -> BTreeSet<Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap_or_else(|error| panic!("listing {}: {error}", dir.display()))
        .map(|entry| entry.unwrap().file_name().into_vec())
        .collect()
}

fn set(names: &[&[u8]]) -> BTreeSet<Vec<u8>> {
    names.iter().map(|name| name.to_vec()).collect()
}

fn path_of(root: &Path, relative: &[u8]) -> PathBuf {
    root.join(OsString::from_vec(relative.to_vec()))
}

/// A 1024-byte key: `long/` and four components of 254 bytes.
fn key_of_1024_bytes() -> Vec<u8> {
    let mut key = b"long/".to_vec();
    for letter in [b'a', b'b', b'c'] {
        key.extend(std::iter::repeat_n(letter, 254));
        key.push(b'/');
    }
    key.extend(std::iter::repeat_n(b'd', 1024 - key.len()));
    assert_eq!((key.len(), key.rsplit(|&byte| byte == b'/').next().map(<[u8]>::len)), (1024, Some(254)));
    key
}

/// The hostile keys and the body of each (its own name, so a read shows which object came).
fn hostile_objects() -> Vec<(Vec<u8>, Bytes)> {
    let mut keys: Vec<Vec<u8>> = [
        &b"plain.txt"[..],
        b"slashes//hidden",
        b"//leading-slashes",
        b"./dot-first",
        b"../escape.txt",
        b"..",
        b".",
        b"dots/./hidden-by-dot",
        b"dots/../hidden-by-dot-dot",
        b"dots/visible",
        b"crlf/line\nfeed",
        b"crlf/carriage\rreturn",
        b"crlf/both\r\n",
        b"not-utf8/\xff\xfe.txt",
        b"not-utf8/\xc3(/inner",
        b"not-utf8/fine.txt",
        b"\xffat-the-root",
        b"nul/a\0b",
        b"both",
        b"both/inner",
    ]
    .iter()
    .map(|key| key.to_vec())
    .collect();
    keys.push(key_of_1024_bytes());
    let mut long_component = b"components/".to_vec();
    long_component.extend(std::iter::repeat_n(b'x', 256));
    keys.push(long_component);
    let mut longest_component = b"components/".to_vec();
    longest_component.extend(std::iter::repeat_n(b'y', 255));
    keys.push(longest_component);
    keys.into_iter()
        .map(|key| {
            let body = Bytes::from([&b"body of "[..], &key, b"\n"].concat());
            (key, body)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_keys_are_hidden_or_shown_by_the_rules_and_nothing_escapes_the_mountpoint() {
    let objects = hostile_objects();
    let server = ListingServer::start("hostile", objects.clone()).await;
    let mnt = Mountpoint::new();
    let mut process = mount(&server, &mnt);
    let body_of = |key: &[u8]| objects.iter().find(|(k, _)| k == key).expect("a served key").1.clone();

    let checks = tokio::task::spawn_blocking({
        let mnt_path = mnt.path().to_owned();
        let long_key = key_of_1024_bytes();
        let mut longest = b"components/".to_vec();
        longest.extend(std::iter::repeat_n(b'y', 255));
        let expected_bodies: Vec<(Vec<u8>, Bytes)> =
            [&b"plain.txt"[..], b"dots/visible", b"crlf/line\nfeed", b"crlf/carriage\rreturn", b"crlf/both\r\n"]
                .iter()
                .map(|key| key.to_vec())
                .chain([b"not-utf8/fine.txt".to_vec(), b"both/inner".to_vec(), long_key.clone(), longest.clone()])
                .map(|key| {
                    let body = body_of(&key);
                    (key, body)
                })
                .collect();
        move || {
            let root = mnt_path.as_path();
            // The root: every hidden key is left out; a directory wins over the file `both`.
            assert_eq!(
                names(root),
                set(&[
                    b"plain.txt",
                    b"slashes",
                    b"dots",
                    b"crlf",
                    b"not-utf8",
                    b"nul",
                    b"both",
                    b"long",
                    b"components"
                ])
            );
            assert_eq!(names(&root.join("slashes")), set(&[]), "`a//b` makes `a` a directory that looks empty");
            assert_eq!(names(&root.join("dots")), set(&[b"visible"]));
            assert_eq!(names(&root.join("crlf")), set(&[b"line\nfeed", b"carriage\rreturn", b"both\r\n"]));
            assert_eq!(names(&root.join("not-utf8")), set(&[b"fine.txt"]));
            assert_eq!(names(&root.join("nul")), set(&[]));
            assert_eq!(names(&root.join("both")), set(&[b"inner"]));
            assert_eq!(names(&root.join("components")), set(&[&[b'y'; 255][..]]));
            assert!(std::fs::metadata(root.join("both")).unwrap().is_dir(), "`a` and `a/b`: `a` is the directory");
            // Every visible file reads back its own object, through paths of up to 1024 bytes.
            for (key, body) in &expected_bodies {
                let read = std::fs::read(path_of(root, key))
                    .unwrap_or_else(|error| panic!("reading {:?}: {error}", String::from_utf8_lossy(key)));
                assert_eq!(read, body.as_ref(), "{:?}", String::from_utf8_lossy(key));
            }
            // Hidden names are not found by name either.
            for hidden in [&b"slashes//hidden"[..], b"dots/hidden-by-dot", b"nul/a"] {
                assert!(std::fs::metadata(path_of(root, hidden)).is_err(), "{}", String::from_utf8_lossy(hidden));
            }
            let too_long = root.join(format!("components/{}", "x".repeat(256)));
            let error = std::fs::metadata(too_long).expect_err("a 256-byte name");
            assert_eq!(error.raw_os_error(), Some(libc::ENAMETOOLONG));

            // find, cat, du walk it all; every path stays under the mountpoint.
            let found = run(Command::new("find").arg(root).arg("-print0")).stdout;
            let found: Vec<&[u8]> = found.split(|&byte| byte == 0).filter(|path| !path.is_empty()).collect();
            // The root, its 9 entries, dots/ 1, crlf/ 3, not-utf8/ 1, both/ 1, long/ 4 levels, components/ 1.
            assert_eq!(found.len(), 21, "find saw {found:?}");
            let root_bytes = root.as_os_str().as_bytes();
            for path in &found {
                assert!(path.starts_with(root_bytes), "{:?} is outside the mount", String::from_utf8_lossy(path));
                let path = Path::new(std::ffi::OsStr::from_bytes(path));
                assert!(
                    path.components()
                        .all(|c| !matches!(c, std::path::Component::ParentDir | std::path::Component::CurDir)),
                    "{path:?}"
                );
                assert!(path.canonicalize().unwrap().starts_with(root), "{path:?} resolves outside the mount");
            }
            let outside = root.parent().unwrap().join("escape.txt");
            assert!(!outside.exists(), "a key `../escape.txt` reached the mountpoint's parent");
            let cat =
                run(Command::new("cat").arg(path_of(root, b"crlf/line\nfeed")).arg(root.join("plain.txt"))).stdout;
            assert_eq!(cat, [&b"body of crlf/line\nfeed\n"[..], b"body of plain.txt\n"].concat());
            let du = run(Command::new("du").args(["-s", "-B1", "--apparent-size"]).arg(root)).stdout;
            let du_bytes: u64 = String::from_utf8_lossy(&du).split_whitespace().next().unwrap().parse().unwrap();
            let file_bytes: u64 = expected_bodies.iter().map(|(_, body)| body.len() as u64).sum();
            let dirs = 12; // the root, its 8 directories, long/'s three levels below it
            assert_eq!(du_bytes, file_bytes + 4096 * dirs, "du sums the visible files and directories");
        }
    });
    checks.await.unwrap_or_else(|error| std::panic::resume_unwind(error.into_panic()));
    assert!(!process.has_exited(), "the daemon died:\n{}", process.stderr());
    let stderr = process.stderr();
    assert!(stderr.contains("not UTF-8"), "a key that is not UTF-8 is left out with a warning:\n{stderr}");
    assert_eq!(server.requests_of("other"), 0, "a read-only walk asks nothing but LIST, HEAD and GET");
}

/// The daemon's peak resident memory (VmHWM), in KiB.
fn peak_rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_of_100_000_keys_lists_whole_in_bounded_memory() {
    const KEYS: usize = 100_000;
    const PEAK_RSS_KIB_MAX: u64 = 256 * 1024;
    let objects: Vec<(Vec<u8>, Bytes)> = (0..KEYS)
        .map(|index| (format!("many/key-{index:06}").into_bytes(), Bytes::from_static(b"x\n")))
        .chain([(b"beside.txt".to_vec(), Bytes::from_static(b"beside\n"))])
        .collect();
    let server = ListingServer::start("many", objects).await;
    let mnt = Mountpoint::new();
    let process = mount(&server, &mnt);
    let before_kib = peak_rss_kib(process.pid());
    let started = Instant::now();
    let dir = mnt.join("many");
    let listed = tokio::task::spawn_blocking(move || {
        let ls = run(Command::new("ls").arg("-f").arg(&dir)).stdout;
        let names: Vec<&[u8]> = ls.split(|&byte| byte == b'\n').filter(|name| !name.is_empty()).collect();
        let expected_first = b"key-000000";
        assert!(names.contains(&&expected_first[..]) && names.contains(&&b"key-099999"[..]));
        let find = run(Command::new("find").arg(&dir).args(["-type", "f"])).stdout;
        (names.len(), find.split(|&byte| byte == b'\n').filter(|line| !line.is_empty()).count())
    })
    .await
    .unwrap();
    let elapsed = started.elapsed();
    let peak_kib = peak_rss_kib(process.pid());
    eprintln!(
        "100,000 keys: ls -f and find in {elapsed:?}, {} LIST requests; daemon peak RSS {} MiB (at mount {} MiB)",
        server.requests_of("ListObjectsV2"),
        peak_kib / 1024,
        before_kib / 1024
    );
    assert_eq!(listed, (KEYS + 2, KEYS), "ls -f shows every key plus . and ..; find every file");
    assert!(peak_kib < PEAK_RSS_KIB_MAX, "peak RSS {peak_kib} KiB for 100,000 entries");
    // The lookup of `many` itself may send one HEAD (raced by its one-key listing); the
    // 100,000 entries cost none.
    assert!(server.requests_of("HeadObject") <= 1, "{} HEADs for a listing", server.requests_of("HeadObject"));
}
