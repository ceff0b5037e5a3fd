//! The write path, operation by operation, against the S3 model: what reaches the bucket,
//! what S3 is asked, and what the caller sees, including faults and other writers.

use std::ffi::OsString;

use bytes::Bytes;
use goofys_core::fuse_types::{FileKind, FuseOp, FuseReply, OpenFlags, SetAttrChanges};
use goofys_core::s3_types::Body;
use goofys_core::write::WRITE_ID_METADATA;
use goofys_core::{CoreConfig, Errno, Ino, UnixNanos};
use goofys_sim::faults::FaultKind;
use goofys_sim::plan::PlanDriver;
use goofys_sim::s3_model::{ModelLimits, S3Model};
use goofys_tests::plan_ops::{close, create, ino_of, lookup, open, read, write};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// A driver whose bucket accepts 64 KiB parts and writes 64 KiB parts, so multipart paths
/// run with small files.
fn small_parts() -> PlanDriver {
    let model = S3Model::with_limits(ModelLimits { min_part_size_bytes: 64 * KIB as u64, ..ModelLimits::default() });
    let config = CoreConfig {
        write_part_size_bytes: 64 * KIB as u64,
        multipart_min_part_size_bytes: 64 * KIB as u64,
        part_uploads_inflight_max: 4,
        ..CoreConfig::default()
    };
    PlanDriver::with_model(config, model)
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
}

fn object(driver: &PlanDriver, key: &str) -> Option<Bytes> {
    driver.model.object(key).map(|o| o.body.clone())
}

#[test]
fn a_small_new_file_goes_up_in_one_conditional_put_at_close() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    let (ino, fh) = create(&mut driver, Ino::ROOT, "hello.txt");
    write(&mut driver, ino, fh, 0, b"hello, ");
    write(&mut driver, ino, fh, 7, b"world\n");
    assert!(object(&driver, "hello.txt").is_none(), "nothing reaches S3 before close");
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Empty);
    let stored = driver.model.object("hello.txt").expect("written");
    assert_eq!(stored.body, Bytes::from_static(b"hello, world\n"));
    assert!(stored.metadata.contains_key(WRITE_ID_METADATA));
    let puts = driver.plan().matches("-> PutObject").count();
    assert_eq!(puts, 1, "{}", driver.plan());
    assert!(driver.plan().contains("if_none_match_any: true"), "a new file must not replace another's");
}

#[test]
fn an_empty_created_file_exists_after_close() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    let (ino, fh) = create(&mut driver, Ino::ROOT, "empty");
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Empty);
    assert_eq!(object(&driver, "empty"), Some(Bytes::new()));
}

#[test]
fn a_sequential_writer_streams_parts_while_writing_and_completes_at_close() {
    let mut driver = small_parts();
    let data = pattern(MIB + 1234, 3);
    let (ino, fh) = create(&mut driver, Ino::ROOT, "big.bin");
    for (index, chunk) in data.chunks(32 * KIB).enumerate() {
        write(&mut driver, ino, fh, (index * 32 * KIB) as u64, chunk);
    }
    let before_close = driver.plan().matches("-> UploadPart {").count();
    assert!(before_close >= 10, "parts upload while the file is written ({before_close})\n{}", driver.plan());
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Empty);
    assert_eq!(object(&driver, "big.bin").as_deref(), Some(&data[..]));
    assert_eq!(driver.model.uploads_in_progress(), 0);
    assert!(driver.model.object("big.bin").unwrap().etag.as_str().ends_with("-17"), "17 parts of 64 KiB");
}

#[test]
fn a_streamed_file_holds_its_written_bytes_once_while_its_parts_are_on_their_way() {
    let mut driver = small_parts();
    let part_bytes = 64 * KIB;
    // The first four parts hang (the in-flight limit): the rest wait their turn.
    for _ in 0..4 {
        driver.fail_next("UploadPart", FaultKind::Stall);
    }
    let data = pattern(10 * part_bytes + 100, 5);
    let (ino, fh) = create(&mut driver, Ino::ROOT, "big.bin");
    for (index, chunk) in data.chunks(32 * KIB).enumerate() {
        write(&mut driver, ino, fh, (index * 32 * KIB) as u64, chunk);
    }
    assert_eq!(driver.plan().matches("-> UploadPart {").count(), 4, "{}", driver.plan());
    // Memory for the writer: every written byte, once. The four parts sent are slices of the
    // written bytes (no body of their own), and the six waiting their turn are not built.
    assert_eq!(driver.core.counters().dirty_bytes, data.len() as u64);
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Empty);
    assert_eq!(object(&driver, "big.bin").as_deref(), Some(&data[..]));
    assert_eq!(driver.core.counters().dirty_bytes, 0);
}

#[test]
fn overwriting_in_place_copies_unchanged_parts_server_side() {
    let mut driver = small_parts();
    let original = pattern(MIB, 1);
    driver.put("data.bin", original.clone());
    let ino = ino_of(&mut driver, Ino::ROOT, "data.bin");
    let fh = open(&mut driver, ino, OpenFlags::O_RDWR);
    write(&mut driver, ino, fh, 300 * KIB as u64, b"CHANGED");
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Empty);
    let mut expected = original;
    expected[300 * KIB..300 * KIB + 7].copy_from_slice(b"CHANGED");
    assert_eq!(object(&driver, "data.bin").as_deref(), Some(&expected[..]));
    let copies = driver.plan().matches("-> UploadPartCopy").count();
    let uploads = driver.plan().matches("-> UploadPart {").count();
    assert_eq!((copies, uploads), (15, 1), "only the changed part is uploaded\n{}", driver.plan());
    assert_eq!(driver.model.uploads_in_progress(), 0);
}

#[test]
fn append_writes_at_the_end_of_an_existing_object() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    driver.put("log.txt", &b"line 1\n"[..]);
    let ino = ino_of(&mut driver, Ino::ROOT, "log.txt");
    let fh = open(&mut driver, ino, OpenFlags::O_WRONLY | OpenFlags::O_APPEND);
    write(&mut driver, ino, fh, 0, b"line 2\n");
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Empty);
    assert_eq!(object(&driver, "log.txt"), Some(Bytes::from_static(b"line 1\nline 2\n")));
}

#[test]
fn truncate_shrinks_and_extends_with_zeros() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    driver.put("t.bin", &b"0123456789"[..]);
    let ino = ino_of(&mut driver, Ino::ROOT, "t.bin");
    let shrink = SetAttrChanges { size_bytes: Some(4), ..Default::default() };
    match driver.run(FuseOp::SetAttr { ino, fh: None, changes: shrink }) {
        FuseReply::Attr { attr, .. } => assert_eq!(attr.size_bytes, 4),
        other => panic!("{other:?}"),
    }
    assert_eq!(object(&driver, "t.bin"), Some(Bytes::from_static(b"0123")), "truncate(2) of a closed file commits");
    let fh = open(&mut driver, ino, OpenFlags::O_RDWR);
    let extend = SetAttrChanges { size_bytes: Some(8), ..Default::default() };
    driver.run(FuseOp::SetAttr { ino, fh: Some(fh), changes: extend });
    assert_eq!(read(&mut driver, ino, fh, 0, 100), b"0123\0\0\0\0");
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Empty);
    assert_eq!(object(&driver, "t.bin"), Some(Bytes::from_static(b"0123\0\0\0\0")));
}

#[test]
fn o_trunc_empties_the_file_at_open() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    driver.put("f", &b"old contents"[..]);
    let ino = ino_of(&mut driver, Ino::ROOT, "f");
    let fh = open(&mut driver, ino, OpenFlags::O_WRONLY | OpenFlags::O_TRUNC);
    write(&mut driver, ino, fh, 0, b"new");
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Empty);
    assert_eq!(object(&driver, "f"), Some(Bytes::from_static(b"new")));
}

#[test]
fn reads_see_the_writers_bytes_and_stat_its_size_before_close() {
    let mut driver = small_parts();
    let original = pattern(200 * KIB, 9);
    driver.put("rw.bin", original.clone());
    let ino = ino_of(&mut driver, Ino::ROOT, "rw.bin");
    let fh = open(&mut driver, ino, OpenFlags::O_RDWR);
    write(&mut driver, ino, fh, 100, b"XYZ");
    write(&mut driver, ino, fh, 250 * KIB as u64, b"tail");
    let got = read(&mut driver, ino, fh, 96, 10);
    let mut expected = original[96..106].to_vec();
    expected[4..7].copy_from_slice(b"XYZ");
    assert_eq!(got, expected);
    assert_eq!(read(&mut driver, ino, fh, 200 * KIB as u64, 8), vec![0u8; 8], "the gap reads as zeros");
    match driver.run(FuseOp::GetAttr { ino, fh: None }) {
        FuseReply::Attr { attr, .. } => assert_eq!(attr.size_bytes, 250 * KIB as u64 + 4),
        other => panic!("{other:?}"),
    }
    // Another handle of the same file sees the same bytes.
    let reader = open(&mut driver, ino, OpenFlags::O_RDONLY);
    assert_eq!(read(&mut driver, ino, reader, 250 * KIB as u64, 10), b"tail");
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Empty);
    assert_eq!(read(&mut driver, ino, reader, 100, 3), b"XYZ", "after the commit too");
}

#[test]
fn a_file_replaced_by_another_client_is_not_overwritten_and_close_says_estale() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    driver.put("shared.txt", &b"v1"[..]);
    let ino = ino_of(&mut driver, Ino::ROOT, "shared.txt");
    let fh = open(&mut driver, ino, OpenFlags::O_RDWR);
    write(&mut driver, ino, fh, 0, b"mine");
    driver.put("shared.txt", &b"theirs"[..]);
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Error(Errno::ESTALE));
    assert_eq!(object(&driver, "shared.txt"), Some(Bytes::from_static(b"theirs")));
    assert_shows_their_object(&mut driver, "shared.txt", ino, 6);
}

/// Found by seed 12624: the conditional PUT of a file another client deleted meanwhile is
/// answered 404 by AWS; the writer gets ESTALE and the file is not brought back.
#[test]
fn a_file_deleted_by_another_client_while_open_is_not_recreated_and_close_says_estale() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    driver.put("gone.txt", &b"v1"[..]);
    let ino = ino_of(&mut driver, Ino::ROOT, "gone.txt");
    let fh = open(&mut driver, ino, OpenFlags::O_RDWR);
    write(&mut driver, ino, fh, 0, b"mine");
    assert!(driver.model.delete_object("gone.txt"));
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Error(Errno::ESTALE));
    assert_eq!(object(&driver, "gone.txt"), None);
}

#[test]
fn a_name_another_client_created_meanwhile_is_not_overwritten_and_close_says_eexist() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    let (ino, fh) = create(&mut driver, Ino::ROOT, "race");
    write(&mut driver, ino, fh, 0, b"mine");
    driver.put("race", &b"theirs"[..]);
    let fsync = FuseOp::Fsync { ino, fh, datasync: false };
    assert_eq!(driver.run(fsync), FuseReply::Error(Errno::EEXIST));
    // Later writes and reads of the handle say the file changed (found by seed 10698: a write
    // answered EEXIST, which write(2) never returns).
    let data = Body(Bytes::from_static(b"more"));
    assert_eq!(driver.run(FuseOp::Write { ino, fh, offset: 4, data }), FuseReply::Error(Errno::ESTALE));
    assert_eq!(driver.run(FuseOp::Read { ino, fh, offset: 0, size: 4 }), FuseReply::Error(Errno::ESTALE));
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Error(Errno::EEXIST));
    assert_eq!(object(&driver, "race"), Some(Bytes::from_static(b"theirs")));
    assert_shows_their_object(&mut driver, "race", ino, 6);
}

/// After a commit lost to another client and was reported, the mount shows S3's object, and
/// nothing retries the lost commit in the background (found by seed 620: the release of the
/// failed file committed again and kept serving the local size).
fn assert_shows_their_object(driver: &mut PlanDriver, name: &str, ino: Ino, their_size_bytes: u64) {
    let plan_before = driver.plan().len();
    match lookup(driver, Ino::ROOT, name) {
        FuseReply::Entry(entry) => {
            assert_eq!(entry.attr.ino, ino);
            assert_eq!(entry.attr.size_bytes, their_size_bytes, "the mount shows S3's object again");
        }
        other => panic!("{other:?}"),
    }
    let fh = open(driver, ino, OpenFlags::O_RDONLY);
    assert_eq!(read(driver, ino, fh, 0, 64), b"theirs");
    assert_eq!(close(driver, ino, fh), FuseReply::Empty);
    let since = &driver.plan()[plan_before..];
    assert!(
        !["PutObject", "CreateMultipartUpload"].iter().any(|write| since.contains(write)),
        "no commit runs again after its conflict was reported:\n{since}"
    );
}

#[test]
fn a_completion_applied_before_a_reset_is_recognised_as_ours() {
    let mut driver = small_parts();
    let data = pattern(300 * KIB, 5);
    let (ino, fh) = create(&mut driver, Ino::ROOT, "f");
    write(&mut driver, ino, fh, 0, &data);
    // The completion's reply is lost after S3 applied it; its retry finds no upload.
    driver.fail_next("CompleteMultipartUpload", FaultKind::ResetAfterApply);
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Empty, "{}", driver.plan());
    assert!(driver.plan().contains("NoSuchUpload"), "{}", driver.plan());
    assert_eq!(object(&driver, "f").as_deref(), Some(&data[..]));
    assert_eq!(driver.model.uploads_in_progress(), 0);
}

#[test]
fn an_upload_created_before_a_lost_reply_is_aborted() {
    let mut driver = small_parts();
    let data = pattern(200 * KIB, 6);
    let (ino, fh) = create(&mut driver, Ino::ROOT, "f");
    driver.fail_next("CreateMultipartUpload", FaultKind::ResetAfterApply);
    write(&mut driver, ino, fh, 0, &data);
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Empty, "{}", driver.plan());
    assert!(driver.plan().contains("ListMultipartUploads"), "{}", driver.plan());
    assert_eq!(object(&driver, "f").as_deref(), Some(&data[..]));
    assert_eq!(driver.model.uploads_in_progress(), 0, "{}", driver.plan());
}

#[test]
fn a_failed_commit_reaches_close_as_an_errno_and_leaves_no_upload() {
    let mut driver = small_parts();
    let data = pattern(300 * KIB, 7);
    let (ino, fh) = create(&mut driver, Ino::ROOT, "f");
    // The server starts refusing parts after two, an error that is not retried.
    driver.refuse("UploadPart", 2);
    write(&mut driver, ino, fh, 0, &data);
    let flushed = close(&mut driver, ino, fh);
    assert_eq!(flushed, FuseReply::Error(Errno::EACCES), "{}", driver.plan());
    assert_eq!(driver.model.uploads_in_progress(), 0, "{}", driver.plan());
    assert!(object(&driver, "f").is_none());
}

/// A file whose close failed keeps its bytes in memory and is written again at unmount: a
/// failure that passes loses nothing, and the close that failed said so (the bucket may then
/// hold the old content or the new, never a mix).
#[test]
fn a_file_whose_close_failed_is_written_at_unmount_once_the_store_takes_it() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    let (ino, fh) = create(&mut driver, Ino::ROOT, "f");
    driver.refuse("PutObject", 0);
    write(&mut driver, ino, fh, 0, b"kept in memory");
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Error(Errno::EACCES), "{}", driver.plan());
    assert!(object(&driver, "f").is_none());
    driver.refuse("PutObject", u32::MAX);
    driver.unmount();
    assert_eq!(object(&driver, "f").as_deref(), Some(&b"kept in memory"[..]), "{}", driver.plan());
}

/// The same file is written again while the mount runs: the release after the failed close
/// tries once more (the store still refuses: nobody waits, so the next flush reports it), and
/// the flush after that writes it.
#[test]
fn a_file_whose_close_failed_is_written_by_a_later_flush() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    let (ino, fh) = create(&mut driver, Ino::ROOT, "f");
    driver.refuse("PutObject", 0);
    write(&mut driver, ino, fh, 0, b"kept in memory");
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Error(Errno::EACCES), "{}", driver.plan());
    driver.refuse("PutObject", u32::MAX);
    let fh = open(&mut driver, ino, OpenFlags::O_RDWR);
    assert_eq!(read(&mut driver, ino, fh, 0, 100), b"kept in memory");
    let reported = driver.run(FuseOp::Flush { ino, fh });
    assert_eq!(reported, FuseReply::Error(Errno::EACCES), "the release's failure, reported once");
    assert_eq!(driver.run(FuseOp::Flush { ino, fh }), FuseReply::Empty, "{}", driver.plan());
    assert_eq!(object(&driver, "f").as_deref(), Some(&b"kept in memory"[..]), "{}", driver.plan());
    assert_eq!(driver.run(FuseOp::Release { ino, fh }), FuseReply::Empty);
}

/// A multipart commit the store fails (it refuses parts after two) and whose abort it refuses
/// as well: the upload stays, remembered as a leftover.
fn fail_a_commit_and_its_abort() -> PlanDriver {
    let mut driver = small_parts();
    let (ino, fh) = create(&mut driver, Ino::ROOT, "f");
    driver.refuse("UploadPart", 2);
    driver.refuse("AbortMultipartUpload", 0);
    write(&mut driver, ino, fh, 0, &pattern(300 * KIB, 7));
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Error(Errno::EACCES), "{}", driver.plan());
    assert_eq!(driver.model.uploads_in_progress(), 1, "the store refused the abort");
    assert_eq!(driver.core.leftover_upload_count(), 1);
    driver
}

/// An upload whose abort failed for good (the store refused it) is aborted again later, on
/// a timer, once the store takes it.
#[test]
fn an_upload_whose_abort_failed_is_aborted_again_later() {
    let mut driver = fail_a_commit_and_its_abort();

    // Refused again at the first retry; the store takes the one after.
    driver.wait(std::time::Duration::from_secs(31));
    assert_eq!(driver.model.uploads_in_progress(), 1);
    driver.refuse("AbortMultipartUpload", u32::MAX);
    driver.wait(std::time::Duration::from_secs(61));
    assert_eq!(driver.model.uploads_in_progress(), 0, "{}", driver.plan());
    assert_eq!(driver.core.leftover_upload_count(), 0);
    assert_eq!(driver.plan().matches("-> AbortMultipartUpload").count(), 3, "{}", driver.plan());
}

/// Unmounting does not wait for a leftover abort's timer: it sends it at once.
#[test]
fn an_upload_whose_abort_failed_is_aborted_at_unmount() {
    let mut driver = fail_a_commit_and_its_abort();
    driver.refuse("AbortMultipartUpload", u32::MAX);
    driver.unmount();
    assert_eq!(driver.model.uploads_in_progress(), 0, "{}", driver.plan());
}

#[test]
fn mkdir_rmdir_and_unlink_follow_posix_errors() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    let dir = match driver.run(FuseOp::Mkdir { parent: Ino::ROOT, name: "d".into(), mode: 0o755, uid: 0, gid: 0 }) {
        FuseReply::Entry(entry) => {
            assert_eq!(entry.attr.kind, FileKind::Directory);
            entry.attr.ino
        }
        other => panic!("{other:?}"),
    };
    assert!(driver.model.object("d/").is_some(), "mkdir writes a marker");
    driver.put("d/inner", &b"x"[..]);
    assert_eq!(driver.run(FuseOp::Rmdir { parent: Ino::ROOT, name: "d".into() }), FuseReply::Error(Errno::ENOTEMPTY));
    // Another client's file in a directory this mount just made is seen once the type and
    // negative caches expire (the mount knows every name of the new directory until then).
    assert_eq!(lookup(&mut driver, dir, "inner"), FuseReply::Error(Errno::ENOENT));
    driver.wait(std::time::Duration::from_secs(61));
    assert!(matches!(lookup(&mut driver, dir, "inner"), FuseReply::Entry(_)));
    assert_eq!(driver.run(FuseOp::Unlink { parent: dir, name: "inner".into() }), FuseReply::Empty);
    assert!(driver.model.object("d/inner").is_none());
    assert_eq!(driver.run(FuseOp::Unlink { parent: dir, name: "inner".into() }), FuseReply::Error(Errno::ENOENT));
    assert_eq!(driver.run(FuseOp::Rmdir { parent: Ino::ROOT, name: "d".into() }), FuseReply::Empty);
    assert!(driver.model.object("d/").is_none());
    assert_eq!(lookup(&mut driver, Ino::ROOT, "d"), FuseReply::Error(Errno::ENOENT));
    assert_eq!(
        driver.run(FuseOp::Unlink { parent: Ino::ROOT, name: "never".into() }),
        FuseReply::Error(Errno::ENOENT),
        "unlinking a missing name is an error, unlike goofys"
    );
}

#[test]
fn rename_of_a_file_copies_then_deletes_and_honours_noreplace() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    driver.put("a", &b"AAA"[..]);
    driver.put("b", &b"BBB"[..]);
    let ino = ino_of(&mut driver, Ino::ROOT, "a");
    let noreplace =
        FuseOp::Rename { parent: Ino::ROOT, name: "a".into(), new_parent: Ino::ROOT, new_name: "b".into(), flags: 1 };
    assert_eq!(driver.run(noreplace), FuseReply::Error(Errno::EEXIST));
    let exchange =
        FuseOp::Rename { parent: Ino::ROOT, name: "a".into(), new_parent: Ino::ROOT, new_name: "b".into(), flags: 2 };
    assert_eq!(driver.run(exchange), FuseReply::Error(Errno::EINVAL));
    let plain =
        FuseOp::Rename { parent: Ino::ROOT, name: "a".into(), new_parent: Ino::ROOT, new_name: "c".into(), flags: 0 };
    assert_eq!(driver.run(plain), FuseReply::Empty);
    assert!(object(&driver, "a").is_none());
    assert_eq!(object(&driver, "c"), Some(Bytes::from_static(b"AAA")));
    assert_eq!(ino_of(&mut driver, Ino::ROOT, "c"), ino, "the inode follows its new name");
}

/// Found by seed 5350: `mv src dst` where `dst` was unlinked earlier (a negative entry) and the
/// kernel holds no inode of `src`; the next lookup of `dst` must find the moved file.
#[test]
fn regression_a_rename_onto_a_name_known_missing_makes_it_visible() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    driver.put("dst", &b"old"[..]);
    driver.put("src", &b"moved"[..]);
    assert_eq!(driver.run(FuseOp::Unlink { parent: Ino::ROOT, name: "dst".into() }), FuseReply::Empty);
    assert_eq!(lookup(&mut driver, Ino::ROOT, "dst"), FuseReply::Error(Errno::ENOENT), "negatively cached");
    rename_src_to_dst(&mut driver);
    match lookup(&mut driver, Ino::ROOT, "dst") {
        FuseReply::Entry(entry) => assert_eq!(entry.attr.size_bytes, 5),
        other => panic!("the renamed file is visible at once: {other:?}"),
    }
    assert_eq!(lookup(&mut driver, Ino::ROOT, "src"), FuseReply::Error(Errno::ENOENT));
}

#[test]
fn rename_of_a_directory_moves_every_key_and_nothing_is_lost_when_a_copy_fails() {
    let mut driver = PlanDriver::new(CoreConfig { list_page_keys: 7, ..CoreConfig::default() });
    for i in 0..25 {
        driver.put(&format!("src/f{i:02}"), format!("file {i}").into_bytes());
    }
    driver.put("src/", Bytes::new());
    driver.put("src/sub/deep", &b"deep"[..]);
    let op = || FuseOp::Rename {
        parent: Ino::ROOT,
        name: "src".into(),
        new_parent: Ino::ROOT,
        new_name: "dst".into(),
        flags: 0,
    };
    ino_of(&mut driver, Ino::ROOT, "src");
    // A copy fails for good midway: the copies made are removed, the originals stay.
    driver.refuse("CopyObject", 10);
    let reply = driver.run(op());
    assert!(matches!(reply, FuseReply::Error(_)), "{reply:?}");
    let keys: Vec<String> = driver.model.objects().map(|(k, _)| k.to_owned()).collect();
    assert_eq!(keys.iter().filter(|k| k.starts_with("src/")).count(), 27, "{keys:?}");
    assert_eq!(keys.iter().filter(|k| k.starts_with("dst/")).count(), 0, "{keys:?}");
    driver.refuse("CopyObject", u32::MAX);
    assert_eq!(driver.run(op()), FuseReply::Empty, "{}", driver.plan());
    let keys: Vec<String> = driver.model.objects().map(|(k, _)| k.to_owned()).collect();
    assert_eq!(keys.iter().filter(|k| k.starts_with("dst/")).count(), 27);
    assert_eq!(keys.iter().filter(|k| k.starts_with("src/")).count(), 0);
    assert_eq!(object(&driver, "dst/f07"), Some(Bytes::from("file 7")));
    let dst = ino_of(&mut driver, Ino::ROOT, "dst");
    let sub = ino_of(&mut driver, dst, "sub");
    let deep = ino_of(&mut driver, sub, "deep");
    let fh = open(&mut driver, deep, OpenFlags::O_RDONLY);
    assert_eq!(read(&mut driver, deep, fh, 0, 100), b"deep");
}

/// Writes `body` through the mount as `src/big.bin`, uploaded in parts; returns its inode.
fn uploaded_in_parts_under_src(driver: &mut PlanDriver, body: &[u8]) -> Ino {
    let dir = match driver.run(FuseOp::Mkdir { parent: Ino::ROOT, name: "src".into(), mode: 0o755, uid: 0, gid: 0 }) {
        FuseReply::Entry(entry) => entry.attr.ino,
        other => panic!("{other:?}"),
    };
    let (ino, writer) = create(driver, dir, "big.bin");
    write(driver, ino, writer, 0, body);
    assert_eq!(close(driver, ino, writer), FuseReply::Empty);
    ino
}

fn rename_src_to_dst(driver: &mut PlanDriver) {
    let rename = FuseOp::Rename {
        parent: Ino::ROOT,
        name: "src".into(),
        new_parent: Ino::ROOT,
        new_name: "dst".into(),
        flags: 0,
    };
    assert_eq!(driver.run(rename), FuseReply::Empty, "{}", driver.plan());
}

/// A copy of an object uploaded in parts has a new ETag: handles open under a renamed
/// directory follow their file's copy instead of failing their next GET with ESTALE.
#[test]
fn a_file_open_for_reading_reads_on_after_its_directory_is_renamed() {
    let mut driver = small_parts();
    let body = pattern(2 * MIB, 3);
    let ino = uploaded_in_parts_under_src(&mut driver, &body);
    let uploaded_etag = driver.model.object("src/big.bin").expect("uploaded").etag.clone();
    assert!(uploaded_etag.as_str().contains('-'), "uploaded in parts: {uploaded_etag:?}");
    let fh = open(&mut driver, ino, OpenFlags::O_RDONLY);
    assert_eq!(read(&mut driver, ino, fh, 0, 4096), &body[..4096]);
    rename_src_to_dst(&mut driver);
    assert_ne!(driver.model.object("dst/big.bin").expect("copied").etag, uploaded_etag, "the copy has a new ETag");
    let far = 2 * MIB - 4096;
    assert_eq!(read(&mut driver, ino, fh, far as u64, 4096), &body[far..]);
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Empty);
}

/// A file open for writing, with unwritten changes, when its directory is renamed: the changes
/// land under the new name, over the copy of its object.
#[test]
fn a_file_being_rewritten_is_committed_after_its_directory_is_renamed() {
    let mut driver = small_parts();
    let body = pattern(2 * MIB, 4);
    let ino = uploaded_in_parts_under_src(&mut driver, &body);
    let fh = open(&mut driver, ino, OpenFlags::O_RDWR);
    write(&mut driver, ino, fh, 100, b"changed");
    rename_src_to_dst(&mut driver);
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Empty, "{}", driver.plan());
    let mut expected = body.clone();
    expected[100..107].copy_from_slice(b"changed");
    assert_eq!(object(&driver, "dst/big.bin").as_deref(), Some(&expected[..]));
    assert!(object(&driver, "src/big.bin").is_none());
}

#[test]
fn a_file_being_written_is_renamed_with_its_bytes() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    let (ino, fh) = create(&mut driver, Ino::ROOT, "draft");
    write(&mut driver, ino, fh, 0, b"unsaved");
    let op = FuseOp::Rename {
        parent: Ino::ROOT,
        name: "draft".into(),
        new_parent: Ino::ROOT,
        new_name: "final".into(),
        flags: 0,
    };
    assert_eq!(driver.run(op), FuseReply::Empty);
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Empty);
    assert_eq!(object(&driver, "final"), Some(Bytes::from_static(b"unsaved")));
    assert!(object(&driver, "draft").is_none());
}

#[test]
fn new_files_are_listed_and_looked_up_before_they_reach_s3() {
    let mut driver = PlanDriver::new(CoreConfig { type_cache_ttl: std::time::Duration::ZERO, ..CoreConfig::default() });
    let (ino, fh) = create(&mut driver, Ino::ROOT, "pending");
    assert!(matches!(lookup(&mut driver, Ino::ROOT, "pending"), FuseReply::Entry(_)));
    let dir = match driver.run(FuseOp::OpenDir { ino: Ino::ROOT }) {
        FuseReply::Opened { fh, .. } => fh,
        other => panic!("{other:?}"),
    };
    let FuseReply::Dir(entries) =
        driver.run(FuseOp::ReadDir { ino: Ino::ROOT, fh: dir, offset: 0, size_bytes: 4096, plus: false })
    else {
        panic!()
    };
    let names: Vec<OsString> = entries.into_iter().map(|e| e.name).collect();
    assert!(names.contains(&OsString::from("pending")), "{names:?}");
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Empty);
}

#[test]
fn writers_wait_for_memory_instead_of_failing() {
    let model = S3Model::with_limits(ModelLimits { min_part_size_bytes: 64 * KIB as u64, ..ModelLimits::default() });
    let config = CoreConfig {
        write_part_size_bytes: 64 * KIB as u64,
        multipart_min_part_size_bytes: 64 * KIB as u64,
        max_dirty_bytes: 256 * KIB as u64,
        ..CoreConfig::default()
    };
    let mut driver = PlanDriver::with_model(config, model);
    driver.put("big", pattern(2 * MIB, 2));
    let ino = ino_of(&mut driver, Ino::ROOT, "big");
    let fh = open(&mut driver, ino, OpenFlags::O_RDWR);
    // Random writes cannot stream; past 256 KiB unwritten, the file is committed to make room.
    for i in 0..16u64 {
        write(&mut driver, ino, fh, (i * 7919 * 13) % (2 * MIB as u64), &[b'#'; 32 * KIB]);
    }
    assert!(driver.plan().matches("-> CompleteMultipartUpload").count() >= 1, "a commit made room");
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Empty);
    let stored = object(&driver, "big").unwrap();
    assert_eq!(stored.len(), 2 * MIB);
    let _ = UnixNanos(0);
}

#[test]
fn cheap_lookups_ask_head_first_and_list_only_for_a_missing_object() {
    let config = CoreConfig { cheap_lookups: true, ..CoreConfig::default() };
    let mut driver = PlanDriver::new(config);
    driver.put("file", &b"x"[..]);
    driver.put("dir/inner", &b"y"[..]);
    assert!(matches!(lookup(&mut driver, Ino::ROOT, "file"), FuseReply::Entry(e) if e.attr.kind == FileKind::File));
    assert_eq!(driver.plan().matches("-> ListObjectsV2").count(), 0, "a file costs one HEAD\n{}", driver.plan());
    assert!(matches!(lookup(&mut driver, Ino::ROOT, "dir"), FuseReply::Entry(e) if e.attr.kind == FileKind::Directory));
    assert_eq!(lookup(&mut driver, Ino::ROOT, "none"), FuseReply::Error(Errno::ENOENT));
    assert_eq!(driver.plan().matches("-> ListObjectsV2").count(), 2, "{}", driver.plan());
}

#[test]
fn without_implicit_directories_a_lookup_heads_the_marker_instead_of_listing() {
    let config = CoreConfig { no_implicit_dirs: true, ..CoreConfig::default() };
    let mut driver = PlanDriver::new(config);
    driver.put("marked/", &b""[..]);
    driver.put("marked/inner", &b"y"[..]);
    driver.put("implicit/inner", &b"y"[..]);
    let marked = lookup(&mut driver, Ino::ROOT, "marked");
    assert!(matches!(marked, FuseReply::Entry(e) if e.attr.kind == FileKind::Directory), "{marked:?}");
    assert_eq!(lookup(&mut driver, Ino::ROOT, "implicit"), FuseReply::Error(Errno::ENOENT));
    assert_eq!(driver.plan().matches("-> ListObjectsV2").count(), 0, "{}", driver.plan());
}

/// S3 keys end at 1024 bytes: a new name whose key would pass that is ENAMETOOLONG (not an
/// S3 error turned EIO), and looking such a name up is ENOENT without asking S3.
#[test]
fn a_name_whose_key_would_pass_1024_bytes_cannot_be_created_or_found() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    let mkdir = |parent: Ino, name: String| FuseOp::Mkdir { parent, name: name.into(), mode: 0o755, uid: 0, gid: 0 };
    let mut dir = Ino::ROOT;
    for level in 0..5u8 {
        // Five levels of 200-byte names: the key prefix is 5 × 201 = 1005 bytes.
        dir = match driver.run(mkdir(dir, char::from(b'a' + level).to_string().repeat(200))) {
            FuseReply::Entry(entry) => entry.attr.ino,
            other => panic!("mkdir: {other:?}"),
        };
    }
    let (file, fh) = create(&mut driver, dir, &"f".repeat(19));
    write(&mut driver, file, fh, 0, b"at the limit");
    assert_eq!(close(&mut driver, file, fh), FuseReply::Empty);
    let longest_key = format!(
        "{}{}",
        (0..5u8).map(|l| char::from(b'a' + l).to_string().repeat(200) + "/").collect::<String>(),
        "f".repeat(19)
    );
    assert_eq!(longest_key.len(), 1024);
    assert_eq!(object(&driver, &longest_key).as_deref(), Some(&b"at the limit"[..]));

    let flags = OpenFlags(OpenFlags::O_WRONLY | OpenFlags::O_CREAT);
    let create_op = FuseOp::Create { parent: dir, name: "g".repeat(20).into(), mode: 0o644, uid: 0, gid: 0, flags };
    assert_eq!(driver.run(create_op), FuseReply::Error(Errno::ENAMETOOLONG));
    assert!(matches!(driver.run(mkdir(dir, "d".repeat(18))), FuseReply::Entry(_)), "a 1024-byte marker key");
    assert_eq!(driver.run(mkdir(dir, "e".repeat(19))), FuseReply::Error(Errno::ENAMETOOLONG));
    let requests_before = driver.plan().matches("-> ").count();
    assert_eq!(lookup(&mut driver, dir, &"h".repeat(20)), FuseReply::Error(Errno::ENOENT));
    assert_eq!(driver.plan().matches("-> ").count(), requests_before, "no S3 request\n{}", driver.plan());
}

/// What `tar x` or `cp -r` into a new directory costs: the kernel looks every new name up
/// before creating it, and in a directory this mount made (or listed whole) the answer comes
/// from the inode table: no HEAD or LIST per file, only its PUT.
#[test]
fn creating_files_in_a_new_or_fully_listed_directory_asks_s3_nothing_but_the_puts() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    let dir = match driver.run(FuseOp::Mkdir { parent: Ino::ROOT, name: "new".into(), mode: 0o755, uid: 0, gid: 0 }) {
        FuseReply::Entry(entry) => entry.attr.ino,
        other => panic!("mkdir: {other:?}"),
    };
    let asked = |driver: &PlanDriver, operation: &str| driver.plan().matches(&format!("-> {operation}")).count();
    let (heads, lists) = (asked(&driver, "HeadObject"), asked(&driver, "ListObjectsV2"));
    for index in 0..10 {
        let name = format!("f{index}");
        assert_eq!(lookup(&mut driver, dir, &name), FuseReply::Error(Errno::ENOENT));
        let (ino, fh) = create(&mut driver, dir, &name);
        write(&mut driver, ino, fh, 0, b"small");
        assert_eq!(close(&mut driver, ino, fh), FuseReply::Empty);
    }
    assert_eq!((asked(&driver, "HeadObject"), asked(&driver, "ListObjectsV2")), (heads, lists), "{}", driver.plan());
    assert_eq!(asked(&driver, "PutObject"), 11, "the marker and ten files");

    // A directory another client filled, once listed whole.
    driver.put("old/a", &b"a"[..]);
    driver.put("old/b", &b"b"[..]);
    let old = ino_of(&mut driver, Ino::ROOT, "old");
    let FuseReply::Opened { fh, .. } = driver.run(FuseOp::OpenDir { ino: old }) else { panic!("opendir") };
    let listed = driver.run(FuseOp::ReadDir { ino: old, fh, offset: 0, size_bytes: 1 << 20, plus: false });
    assert!(matches!(&listed, FuseReply::Dir(entries) if entries.len() == 4), "{listed:?}");
    assert_eq!(driver.run(FuseOp::ReleaseDir { ino: old, fh }), FuseReply::Empty);
    let requests = driver.plan().matches("-> ").count();
    assert_eq!(lookup(&mut driver, old, "c"), FuseReply::Error(Errno::ENOENT));
    assert!(matches!(lookup(&mut driver, old, "a"), FuseReply::Entry(_)));
    assert_eq!(driver.plan().matches("-> ").count(), requests, "{}", driver.plan());
}
