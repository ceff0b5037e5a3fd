//! Directory listings: paging, stable offsets, packing, and the file/directory merge.

mod harness;

use std::collections::BTreeSet;
use std::ffi::OsString;

use goofys_core::fuse_types::{FileKind, FuseOp, FuseReply, dirent_size_bytes};
use goofys_core::s3_types::{S3Error, S3ErrorCode, S3Request, S3Response};
use goofys_core::{CoreConfig, Errno, FileHandle, Ino};
use harness::*;

fn opendir(h: &mut Harness, ino: Ino) -> FileHandle {
    let id = h.fuse(FuseOp::OpenDir { ino });
    h.opened(id)
}

/// Answers the listing of `keys` (all directly in the root) page by page as it is asked for.
fn answer_listing(h: &mut Harness, keys: &[String], page_keys: usize) {
    while let Some((s3_id, request)) = h.take_requests().into_iter().next() {
        let S3Request::ListObjectsV2 { continuation_token, max_keys, .. } = request else { panic!("{request:?}") };
        assert_eq!(max_keys as usize, page_keys);
        let start: usize = continuation_token.map_or(0, |t| t.parse().unwrap());
        let end = (start + page_keys).min(keys.len());
        let objects: Vec<(&str, u64)> = keys[start..end].iter().map(|k| (k.as_str(), 7)).collect();
        let token = (end < keys.len()).then(|| end.to_string());
        h.s3(s3_id, Ok(list_page(&objects, &[], token.as_deref())));
    }
}

fn readdir(h: &mut Harness, fh: FileHandle, offset: u64, size_bytes: u32, plus: bool) -> FuseReply {
    let id = h.fuse(FuseOp::ReadDir { ino: Ino::ROOT, fh, offset, size_bytes, plus });
    h.reply(id)
}

fn dir_names(reply: &FuseReply) -> Vec<(String, u64)> {
    match reply {
        FuseReply::Dir(entries) => {
            entries.iter().map(|e| (e.name.to_string_lossy().into_owned(), e.next_offset)).collect()
        }
        FuseReply::DirPlus(entries) => {
            entries.iter().map(|e| (e.dirent.name.to_string_lossy().into_owned(), e.dirent.next_offset)).collect()
        }
        other => panic!("expected entries, got {other:?}"),
    }
}

#[test]
fn a_directory_of_5000_entries_lists_whole_and_stable_under_any_offset() {
    let mut h = Harness::new(CoreConfig::default());
    let keys: Vec<String> = (0..5000).map(|i| format!("file-{i:05}")).collect();
    let fh = opendir(&mut h, Ino::ROOT);
    answer_listing(&mut h, &keys, 1000);

    // Read it all with a 4 KiB buffer, as getdents does.
    let mut all = Vec::new();
    let mut offset = 0;
    loop {
        let reply = readdir(&mut h, fh, offset, 4096, false);
        let names = dir_names(&reply);
        if names.is_empty() {
            break;
        }
        let used: usize = names.iter().map(|(n, _)| dirent_size_bytes(n.len())).sum();
        assert!(used <= 4096, "entries fit the kernel's buffer");
        offset = names.last().unwrap().1;
        all.extend(names);
    }
    let names: Vec<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.len(), 5002);
    assert_eq!(&names[..2], &[".", ".."]);
    let unique: BTreeSet<&str> = names[2..].iter().copied().collect();
    assert_eq!(unique.len(), 5000, "no duplicates, nothing missing");

    // Any offset, in any order, means the same entry.
    for offset in [4000u64, 17, 2, 0, 4999, 5001, 333] {
        let reply = readdir(&mut h, fh, offset, 4096, false);
        let names = dir_names(&reply);
        assert_eq!(names[0], all[offset as usize], "offset {offset}");
    }
    assert!(dir_names(&readdir(&mut h, fh, 5002, 4096, false)).is_empty());
    assert!(h.take_requests().is_empty(), "no second listing for the same handle");
}

#[test]
fn listing_three_pages_follows_continuation_tokens() {
    let mut h = Harness::new(CoreConfig { list_page_keys: 2, ..CoreConfig::default() });
    let keys: Vec<String> = ["a", "b", "c", "d", "e"].iter().map(|s| s.to_string()).collect();
    let fh = opendir(&mut h, Ino::ROOT);
    let mut tokens = Vec::new();
    while let Some((s3_id, request)) = h.take_requests().into_iter().next() {
        let S3Request::ListObjectsV2 { continuation_token, .. } = request else { panic!() };
        tokens.push(continuation_token.clone());
        let start: usize = continuation_token.map_or(0, |t| t.parse().unwrap());
        let end = (start + 2).min(5);
        let objects: Vec<(&str, u64)> = keys[start..end].iter().map(|k| (k.as_str(), 1)).collect();
        h.s3(s3_id, Ok(list_page(&objects, &[], (end < 5).then(|| end.to_string()).as_deref())));
    }
    assert_eq!(tokens, vec![None, Some("2".into()), Some("4".into())]);
    let names: Vec<String> = dir_names(&readdir(&mut h, fh, 0, 4096, false)).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, vec![".", "..", "a", "b", "c", "d", "e"]);
}

#[test]
fn a_readdir_before_the_first_page_waits_for_it() {
    let mut h = Harness::new(CoreConfig::default());
    let fh = opendir(&mut h, Ino::ROOT);
    let id = h.fuse(FuseOp::ReadDir { ino: Ino::ROOT, fh, offset: 2, size_bytes: 4096, plus: false });
    assert!(h.take_reply(id).is_none());
    answer_listing(&mut h, &["x".to_string()], 1000);
    assert_eq!(dir_names(&h.reply(id)), vec![("x".to_string(), 3)]);
}

#[test]
fn listing_a_directory_fills_the_stat_cache_so_lookups_need_no_head() {
    let mut h = Harness::new(CoreConfig::default());
    let fh = opendir(&mut h, Ino::ROOT);
    answer_listing(&mut h, &["f1".to_string(), "f2".to_string()], 1000);
    readdir(&mut h, fh, 0, 4096, false);
    let id = h.lookup(Ino::ROOT, "f2");
    let entry = h.entry(id);
    assert_eq!(entry.attr.size_bytes, 7);
    assert!(h.take_requests().is_empty(), "ls -l costs no HEAD per file");
}

#[test]
fn readdirplus_returns_attributes_and_takes_a_reference_per_entry() {
    let mut h = Harness::new(CoreConfig::default());
    let fh = opendir(&mut h, Ino::ROOT);
    answer_listing(&mut h, &["f1".to_string()], 1000);
    let reply = readdir(&mut h, fh, 0, 4096, true);
    let FuseReply::DirPlus(entries) = reply else { panic!() };
    assert_eq!(entries.len(), 3);
    let file = &entries[2];
    assert_eq!(file.entry.attr.size_bytes, 7);
    assert_eq!(file.entry.attr.kind, FileKind::File);
    let count_before = h.core.inode_count();
    // One forget for the readdirplus reference drops it... but it is still cached by name.
    h.fuse(FuseOp::Forget { ino: file.dirent.ino, nlookup: 1 });
    assert_eq!(h.core.inode_count(), count_before);
}

#[test]
fn a_file_and_a_directory_of_the_same_name_list_once_as_the_directory() {
    let mut h = Harness::new(CoreConfig::default());
    let fh = opendir(&mut h, Ino::ROOT);
    let (s3_id, _) = h.take_one_request();
    h.s3(s3_id, Ok(list_page(&[("a", 1), ("a-b", 1), ("a.txt", 1)], &["a/"], None)));
    let reply = readdir(&mut h, fh, 2, 4096, false);
    let FuseReply::Dir(entries) = reply else { panic!() };
    let listed: Vec<(String, FileKind)> =
        entries.iter().map(|e| (e.name.to_string_lossy().into_owned(), e.kind)).collect();
    assert_eq!(
        listed,
        vec![
            ("a".to_string(), FileKind::Directory),
            ("a-b".to_string(), FileKind::File),
            ("a.txt".to_string(), FileKind::File)
        ]
    );
}

#[test]
fn a_failed_listing_reaches_the_caller_as_an_errno() {
    let mut h = Harness::new(CoreConfig::default());
    let fh = opendir(&mut h, Ino::ROOT);
    let (s3_id, _) = h.take_one_request();
    h.s3(s3_id, Err(S3Error::service(403, S3ErrorCode::AccessDenied)));
    // `.` and `..` are known without S3.
    let dots: Vec<String> = dir_names(&readdir(&mut h, fh, 0, 4096, false)).into_iter().map(|(n, _)| n).collect();
    assert_eq!(dots, vec![".", ".."]);
    assert_eq!(readdir(&mut h, fh, 2, 4096, false), FuseReply::Error(Errno::EACCES));
}

#[test]
fn releasedir_cancels_the_listing_and_unknown_handles_get_ebadf() {
    let mut h = Harness::new(CoreConfig::default());
    let fh = opendir(&mut h, Ino::ROOT);
    let (s3_id, _) = h.take_one_request();
    let id = h.fuse(FuseOp::ReleaseDir { ino: Ino::ROOT, fh });
    assert_eq!(h.reply(id), FuseReply::Empty);
    assert_eq!(h.take_cancels(), vec![s3_id]);
    h.s3(s3_id, Ok(S3Response::ListObjectsV2(Default::default())));
    assert!(h.outputs.is_empty());
    assert_eq!(readdir(&mut h, fh, 0, 4096, false), FuseReply::Error(Errno::EBADF));
}

#[test]
fn opendir_of_a_file_is_enotdir_and_lookup_under_a_file_too() {
    let mut h = Harness::new(CoreConfig::default());
    let entry = h.lookup_file(Ino::ROOT, "f", meta(1, "e"));
    let id = h.fuse(FuseOp::OpenDir { ino: entry.attr.ino });
    assert_eq!(h.reply(id), FuseReply::Error(Errno::ENOTDIR));
    let id = h.fuse(FuseOp::Lookup { parent: entry.attr.ino, name: OsString::from("x") });
    assert_eq!(h.reply(id), FuseReply::Error(Errno::ENOTDIR));
}

/// Found by simulator seed 7332: a file held back by the listing merge was cached from the
/// time it was released, not from when its page arrived, so it outlived its TTL.
#[test]
fn regression_a_held_listing_entry_caches_from_its_page() {
    let ttl = std::time::Duration::from_secs(5);
    let mut h = Harness::new(CoreConfig { stat_cache_ttl: ttl, type_cache_ttl: ttl, ..CoreConfig::default() });
    let fh = opendir(&mut h, Ino::ROOT);
    let (first, _) = h.take_one_request();
    h.s3(first, Ok(list_page(&[("f", 1)], &[], Some("1"))));
    h.advance(std::time::Duration::from_secs(4));
    let (second, _) = h.take_one_request();
    h.s3(second, Ok(list_page(&[("g", 1)], &[], None)));
    readdir(&mut h, fh, 0, 4096, false);
    h.advance(std::time::Duration::from_millis(1500));
    let id = h.lookup(Ino::ROOT, "g");
    h.entry(id);
    assert!(h.take_requests().is_empty(), "g was listed 1.5 s ago: cached");
    h.lookup(Ino::ROOT, "f");
    assert_eq!(h.take_requests().len(), 2, "f was listed 5.5 s ago: expired");
}

/// Found by simulator seed 16704: after the kernel forgot a listed inode and the table swept
/// it, readdirplus from an earlier offset skipped the entry and misnumbered the rest.
#[test]
fn regression_a_listing_keeps_its_inodes_alive_until_releasedir() {
    let ttl = std::time::Duration::from_secs(1);
    let mut h = Harness::new(CoreConfig { stat_cache_ttl: ttl, type_cache_ttl: ttl, ..CoreConfig::default() });
    let fh = opendir(&mut h, Ino::ROOT);
    answer_listing(&mut h, &["f1".to_string(), "f2".to_string()], 1000);
    let FuseReply::DirPlus(first) = readdir(&mut h, fh, 0, 4096, true) else { panic!() };
    for entry in &first[2..] {
        h.fuse(FuseOp::Forget { ino: entry.dirent.ino, nlookup: 1 });
    }
    // Let the attributes expire and the table sweep.
    h.advance(std::time::Duration::from_secs(2));
    for _ in 0..1100 {
        h.advance(std::time::Duration::from_millis(1));
    }
    let FuseReply::DirPlus(again) = readdir(&mut h, fh, 2, 4096, true) else { panic!() };
    let names: Vec<(String, u64)> =
        again.iter().map(|e| (e.dirent.name.to_string_lossy().into_owned(), e.dirent.next_offset)).collect();
    assert_eq!(names, vec![("f1".to_string(), 3), ("f2".to_string(), 4)]);
    let id = h.fuse(FuseOp::ReleaseDir { ino: Ino::ROOT, fh });
    assert_eq!(h.reply(id), FuseReply::Empty);
}
