//! POSIX metadata against the S3 model: modes, owners and times in s3fs's metadata names,
//! symlinks, extended attributes, mknod and link, with what S3 is asked and what the caller
//! sees.

use std::ffi::OsString;

use goofys_core::fuse_types::{Attr, FileKind, FuseOp, FuseReply, OpenFlags, SetAttrChanges, SetTime};
use goofys_core::s3_types::{Metadata, S3Request};
use goofys_core::xattr::ETAG_XATTR;
use goofys_core::{CoreConfig, Errno, Ino, UnixNanos};
use goofys_sim::faults::FaultKind;
use goofys_sim::plan::PlanDriver;
use goofys_sim::s3_model::{ModelLimits, S3Model};
use goofys_tests::plan_ops::{close, create, ino_of, lookup, write};

const XATTR_CREATE: u32 = 1;
const XATTR_REPLACE: u32 = 2;

fn attr_of(reply: FuseReply) -> Attr {
    match reply {
        FuseReply::Attr { attr, .. } => attr,
        FuseReply::Entry(entry) => entry.attr,
        other => panic!("expected attributes: {other:?}"),
    }
}

fn setattr(driver: &mut PlanDriver, ino: Ino, changes: SetAttrChanges) -> FuseReply {
    driver.run(FuseOp::SetAttr { ino, fh: None, changes })
}

fn chmod(mode: u32) -> SetAttrChanges {
    SetAttrChanges { mode: Some(mode), ..SetAttrChanges::default() }
}

/// Puts an object with user metadata, as another tool (s3fs) would.
fn put_with_metadata(driver: &mut PlanDriver, key: &str, body: &[u8], metadata: &[(&str, &str)]) {
    put_at(driver, UnixNanos::from_secs(1_700_000_000), key, body, metadata);
}

/// [`put_with_metadata`] at the time `at`.
fn put_at(driver: &mut PlanDriver, at: UnixNanos, key: &str, body: &[u8], metadata: &[(&str, &str)]) {
    let request = S3Request::PutObject {
        key: key.into(),
        body: body.to_vec().into(),
        content_type: None,
        metadata: metadata.iter().map(|(name, value)| (name.to_string(), value.to_string())).collect(),
        if_match: None,
        if_none_match_any: false,
    };
    driver.model.apply(at, &request).expect("put");
}

fn stored_metadata(driver: &PlanDriver, key: &str) -> Metadata {
    driver.model.object(key).unwrap_or_else(|| panic!("{key} is in the bucket")).metadata.clone()
}

/// A second mount of the same bucket, knowing nothing yet.
fn remount(driver: &PlanDriver) -> PlanDriver {
    PlanDriver::with_model(CoreConfig::default(), driver.model.clone())
}

fn mkdir(driver: &mut PlanDriver, parent: Ino, name: &str, mode: u32) -> Ino {
    match driver.run(FuseOp::Mkdir { parent, name: name.into(), mode, uid: 0, gid: 0 }) {
        FuseReply::Entry(entry) => entry.attr.ino,
        other => panic!("mkdir {name}: {other:?}"),
    }
}

fn getxattr(driver: &mut PlanDriver, ino: Ino, name: &str, size: u32) -> FuseReply {
    driver.run(FuseOp::GetXattr { ino, name: name.into(), size })
}

fn setxattr(driver: &mut PlanDriver, ino: Ino, name: &str, value: &[u8], flags: u32) -> FuseReply {
    driver.run(FuseOp::SetXattr { ino, name: name.into(), value: value.to_vec(), flags })
}

#[test]
fn chmod_chown_and_utimes_of_a_file_copy_it_onto_itself_with_s3fs_metadata() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    driver.put("f.txt", &b"bytes stay"[..]);
    let ino = ino_of(&mut driver, Ino::ROOT, "f.txt");
    let mtime = UnixNanos(1_600_000_000_500_000_000);
    let changes = SetAttrChanges {
        mode: Some(0o100_600),
        uid: Some(1000),
        gid: Some(1001),
        mtime: Some(SetTime::At(mtime)),
        ..SetAttrChanges::default()
    };
    let attr = attr_of(setattr(&mut driver, ino, changes));
    assert_eq!((attr.perm, attr.uid, attr.gid, attr.mtime), (0o600, 1000, 1001, mtime));
    assert!(attr.ctime > mtime, "ctime is the time of the change");
    assert_eq!(driver.plan().matches("-> CopyObject").count(), 1, "{}", driver.plan());

    let stored = driver.model.object("f.txt").expect("still there");
    assert_eq!(&stored.body[..], b"bytes stay");
    assert_eq!(stored.metadata["mode"], (0o100_600).to_string());
    assert_eq!(stored.metadata["uid"], "1000");
    assert_eq!(stored.metadata["gid"], "1001");
    assert_eq!(stored.metadata["mtime"], "1600000000.5");

    let mut other = remount(&driver);
    let seen = attr_of(lookup(&mut other, Ino::ROOT, "f.txt"));
    assert_eq!((seen.perm, seen.uid, seen.gid, seen.mtime), (0o600, 1000, 1001, mtime));
}

#[test]
fn objects_written_by_s3fs_show_their_mode_owner_and_times_and_others_the_defaults() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    let metadata = [("mode", "33261"), ("uid", "1001"), ("gid", "1002"), ("mtime", "1500000000"), ("atime", "x")];
    put_with_metadata(&mut driver, "tool", b"#!/bin/sh\n", &metadata);
    driver.put("plain", &b"p"[..]);
    let tool = attr_of(lookup(&mut driver, Ino::ROOT, "tool"));
    assert_eq!((tool.kind, tool.perm, tool.uid, tool.gid), (FileKind::File, 0o755, 1001, 1002));
    assert_eq!(tool.mtime, UnixNanos::from_secs(1_500_000_000));
    assert_eq!(tool.atime, tool.mtime, "a malformed atime is ignored");
    let config = CoreConfig::default();
    let plain = attr_of(lookup(&mut driver, Ino::ROOT, "plain"));
    assert_eq!((plain.perm, plain.uid, plain.gid), (config.file_mode, config.uid, config.gid));
}

#[test]
fn chmod_of_a_directory_writes_its_marker_and_the_bucket_root_refuses() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    let dir = mkdir(&mut driver, Ino::ROOT, "d", 0o755);
    let attr = attr_of(setattr(&mut driver, dir, chmod(0o40_700)));
    assert_eq!((attr.kind, attr.perm), (FileKind::Directory, 0o700));
    assert_eq!(stored_metadata(&driver, "d/")["mode"], (0o40_700).to_string());

    // A directory that only exists as a prefix gets a marker.
    driver.put("implicit/file", &b"x"[..]);
    let implicit = ino_of(&mut driver, Ino::ROOT, "implicit");
    attr_of(setattr(&mut driver, implicit, chmod(0o750)));
    assert_eq!(stored_metadata(&driver, "implicit/")["mode"], (0o40_750).to_string());
    assert_eq!(&driver.model.object("implicit/file").unwrap().body[..], b"x");

    assert_eq!(setattr(&mut driver, Ino::ROOT, chmod(0o700)), FuseReply::Error(Errno::EPERM));

    let mut other = remount(&driver);
    assert_eq!(attr_of(lookup(&mut other, Ino::ROOT, "d")).perm, 0o700);
}

#[test]
fn attributes_of_a_file_being_written_go_up_with_its_bytes_in_one_put() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    let (ino, fh) = create(&mut driver, Ino::ROOT, "new.sh");
    write(&mut driver, ino, fh, 0, b"echo hi\n");
    assert_eq!(attr_of(setattr(&mut driver, ino, chmod(0o755))).perm, 0o755);
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Empty);
    assert_eq!(driver.plan().matches("-> PutObject").count(), 1, "{}", driver.plan());
    assert_eq!(driver.plan().matches("-> CopyObject").count(), 0, "{}", driver.plan());
    let stored = driver.model.object("new.sh").expect("written");
    assert_eq!(&stored.body[..], b"echo hi\n");
    assert_eq!(stored.metadata["mode"], (0o100_755).to_string());
}

#[test]
fn a_new_file_with_another_owner_or_mode_carries_them_from_its_first_put() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    let op = FuseOp::Create {
        parent: Ino::ROOT,
        name: "owned".into(),
        mode: 0o600,
        uid: 1234,
        gid: 1234,
        flags: OpenFlags(OpenFlags::O_WRONLY | OpenFlags::O_CREAT),
    };
    let FuseReply::Created { entry, fh, .. } = driver.run(op) else { panic!("create") };
    assert_eq!((entry.attr.perm, entry.attr.uid), (0o600, 1234));
    assert_eq!(close(&mut driver, entry.attr.ino, fh), FuseReply::Empty);
    let metadata = stored_metadata(&driver, "owned");
    assert_eq!((metadata["mode"].as_str(), metadata["uid"].as_str()), ("33152", "1234"));
}

#[test]
fn a_change_overtaken_by_another_client_fails_with_estale_and_keeps_theirs() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    driver.put("shared", &b"v1"[..]);
    let ino = ino_of(&mut driver, Ino::ROOT, "shared");
    driver.put("shared", &b"theirs"[..]);
    assert_eq!(setattr(&mut driver, ino, chmod(0o600)), FuseReply::Error(Errno::ESTALE));
    let stored = driver.model.object("shared").unwrap();
    assert_eq!(&stored.body[..], b"theirs");
    assert!(!stored.metadata.contains_key("mode"));
}

#[test]
fn a_metadata_copy_that_meets_faults_is_retried_to_success() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    driver.put("f", &b"x"[..]);
    let ino = ino_of(&mut driver, Ino::ROOT, "f");
    driver.fail_next("CopyObject", FaultKind::ResetAfterApply);
    driver.fail_next("CopyObject", FaultKind::SlowDown);
    assert_eq!(attr_of(setattr(&mut driver, ino, chmod(0o640))).perm, 0o640);
    assert_eq!(stored_metadata(&driver, "f")["mode"], (0o100_640).to_string());
}

#[test]
fn a_symlink_is_an_object_holding_its_target_and_reads_back_in_another_mount() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    let op =
        FuseOp::Symlink { parent: Ino::ROOT, name: "link".into(), target: "../some/target".into(), uid: 0, gid: 0 };
    let FuseReply::Entry(entry) = driver.run(op) else { panic!("symlink") };
    assert_eq!((entry.attr.kind, entry.attr.perm, entry.attr.size_bytes), (FileKind::Symlink, 0o777, 14));
    let stored = driver.model.object("link").expect("a link object");
    assert_eq!(&stored.body[..], b"../some/target");
    assert_eq!(stored.metadata["mode"], (0o120_777).to_string());
    assert!(driver.plan().contains("if_none_match_any: true"), "never replaces another's object");
    let readlink = FuseOp::ReadLink { ino: entry.attr.ino };
    assert_eq!(driver.run(readlink.clone()), FuseReply::Data(b"../some/target".to_vec().into()));
    assert_eq!(driver.plan().matches("-> GetObject").count(), 0, "the target is known");

    let mut other = remount(&driver);
    let seen = attr_of(lookup(&mut other, Ino::ROOT, "link"));
    assert_eq!(seen.kind, FileKind::Symlink);
    let reply = other.run(FuseOp::ReadLink { ino: seen.ino });
    assert_eq!(reply, FuseReply::Data(b"../some/target".to_vec().into()));
    assert_eq!(other.plan().matches("-> GetObject").count(), 1);
}

#[test]
fn a_symlink_onto_a_name_another_client_took_fails_with_eexist() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    driver.put("taken", &b"theirs"[..]);
    let op = FuseOp::Symlink { parent: Ino::ROOT, name: "taken".into(), target: "t".into(), uid: 0, gid: 0 };
    assert_eq!(driver.run(op), FuseReply::Error(Errno::EEXIST));
    assert_eq!(&driver.model.object("taken").unwrap().body[..], b"theirs");
}

#[test]
fn user_xattrs_are_object_metadata_with_posix_errors() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    driver.put("f", &b"data"[..]);
    let ino = ino_of(&mut driver, Ino::ROOT, "f");
    assert_eq!(setxattr(&mut driver, ino, "user.Color", b"blue", 0), FuseReply::Empty);
    assert_eq!(stored_metadata(&driver, "f")["color"], "blue");
    assert_eq!(&driver.model.object("f").unwrap().body[..], b"data");

    assert_eq!(getxattr(&mut driver, ino, "user.color", 0), FuseReply::XattrSize(4));
    assert_eq!(getxattr(&mut driver, ino, "user.color", 64), FuseReply::Data(b"blue".to_vec().into()));
    assert_eq!(getxattr(&mut driver, ino, "user.color", 2), FuseReply::Error(Errno::ERANGE));
    assert_eq!(getxattr(&mut driver, ino, "user.missing", 64), FuseReply::Error(Errno::ENODATA));
    assert_eq!(getxattr(&mut driver, ino, "security.capability", 64), FuseReply::Error(Errno::ENODATA));

    let binary = [0u8, 159, 146, 150, b'\n'];
    assert_eq!(setxattr(&mut driver, ino, "user.bin", &binary, 0), FuseReply::Empty);
    assert_eq!(getxattr(&mut driver, ino, "user.bin", 64), FuseReply::Data(binary.to_vec().into()));
    assert_eq!(setxattr(&mut driver, ino, "user.color", b"red", XATTR_CREATE), FuseReply::Error(Errno::EEXIST));
    assert_eq!(setxattr(&mut driver, ino, "user.new", b"x", XATTR_REPLACE), FuseReply::Error(Errno::ENODATA));

    attr_of(setattr(&mut driver, ino, chmod(0o600)));
    let list = driver.run(FuseOp::ListXattr { ino, size: 256 });
    assert_eq!(list, FuseReply::Data(b"user.bin\0user.color\0".to_vec().into()), "POSIX names are not xattrs");

    let remove = FuseOp::RemoveXattr { ino, name: "user.color".into() };
    assert_eq!(driver.run(remove.clone()), FuseReply::Empty);
    assert_eq!(driver.run(remove), FuseReply::Error(Errno::ENODATA));
    assert!(!stored_metadata(&driver, "f").contains_key("color"));

    let mut other = remount(&driver);
    let seen = ino_of(&mut other, Ino::ROOT, "f");
    assert_eq!(getxattr(&mut other, seen, "user.bin", 64), FuseReply::Data(binary.to_vec().into()));
}

#[test]
fn xattr_limits_and_read_only_names_give_clear_errors_and_change_nothing() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    driver.put("f", &b"data"[..]);
    let ino = ino_of(&mut driver, Ino::ROOT, "f");
    let etag = driver.model.object("f").unwrap().etag.as_str().to_owned();
    assert_eq!(getxattr(&mut driver, ino, ETAG_XATTR, 128), FuseReply::Data(etag.into_bytes().into()));
    assert_eq!(getxattr(&mut driver, ino, "s3.storage-class", 128), FuseReply::Data(b"STANDARD".to_vec().into()));
    assert_eq!(setxattr(&mut driver, ino, ETAG_XATTR, b"x", 0), FuseReply::Error(Errno::EPERM));
    assert_eq!(setxattr(&mut driver, ino, "user.mode", b"x", 0), FuseReply::Error(Errno::EPERM));
    assert_eq!(setxattr(&mut driver, ino, "trusted.x", b"x", 0), FuseReply::Error(Errno::ENOTSUP));
    assert_eq!(setxattr(&mut driver, ino, "user.bad name", b"x", 0), FuseReply::Error(Errno::EINVAL));
    assert_eq!(setxattr(&mut driver, ino, "user.big", &[b'v'; 3000], 0), FuseReply::Error(Errno::E2BIG));
    assert!(stored_metadata(&driver, "f").is_empty());
    assert_eq!(driver.plan().matches("-> CopyObject").count(), 0, "{}", driver.plan());
}

#[test]
fn xattrs_of_a_directory_live_on_its_marker() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    let dir = mkdir(&mut driver, Ino::ROOT, "d", 0o755);
    assert_eq!(setxattr(&mut driver, dir, "user.project", b"alpha", 0), FuseReply::Empty);
    assert_eq!(stored_metadata(&driver, "d/")["project"], "alpha");
    let mut other = remount(&driver);
    let seen = ino_of(&mut other, Ino::ROOT, "d");
    assert_eq!(getxattr(&mut other, seen, "user.project", 64), FuseReply::Data(b"alpha".to_vec().into()));
}

#[test]
fn mknod_makes_regular_files_only_and_hard_links_are_refused() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    let regular = FuseOp::Mknod { parent: Ino::ROOT, name: "plain".into(), mode: 0o100_644, uid: 0, gid: 0 };
    let FuseReply::Entry(entry) = driver.run(regular) else { panic!("mknod") };
    assert_eq!(entry.attr.kind, FileKind::File);
    assert_eq!(driver.model.object("plain").map(|o| o.body.len()), Some(0));
    let fifo = FuseOp::Mknod { parent: Ino::ROOT, name: "fifo".into(), mode: 0o010_644, uid: 0, gid: 0 };
    assert_eq!(driver.run(fifo), FuseReply::Error(Errno::EPERM));
    let link = FuseOp::Link { ino: entry.attr.ino, new_parent: Ino::ROOT, new_name: OsString::from("hard") };
    assert_eq!(driver.run(link), FuseReply::Error(Errno::EPERM));
    assert!(driver.model.object("fifo").is_none() && driver.model.object("hard").is_none());
}

/// Lists a directory with readdirplus: (name, kind, perm) of every entry but `.` and `..`.
fn list_plus(driver: &mut PlanDriver, ino: Ino) -> Vec<(String, FileKind, u16)> {
    let FuseReply::Opened { fh, .. } = driver.run(FuseOp::OpenDir { ino }) else { panic!("opendir") };
    let FuseReply::DirPlus(entries) =
        driver.run(FuseOp::ReadDir { ino, fh, offset: 0, size_bytes: 1 << 20, plus: true })
    else {
        panic!("readdirplus")
    };
    assert_eq!(driver.run(FuseOp::ReleaseDir { ino, fh }), FuseReply::Empty);
    entries
        .into_iter()
        .skip(2)
        .map(|entry| (entry.dirent.name.into_string().unwrap(), entry.entry.attr.kind, entry.entry.attr.perm))
        .collect()
}

#[test]
fn a_listing_of_a_directory_holding_attributes_shows_them_at_one_head_per_unknown_entry() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    let dir = mkdir(&mut driver, Ino::ROOT, "d", 0o755);
    let (file, fh) = create(&mut driver, dir, "secret");
    assert_eq!(close(&mut driver, file, fh), FuseReply::Empty);
    attr_of(setattr(&mut driver, file, chmod(0o600)));
    let op = FuseOp::Symlink { parent: dir, name: "link".into(), target: "secret".into(), uid: 0, gid: 0 };
    assert!(matches!(driver.run(op), FuseReply::Entry(_)));
    mkdir(&mut driver, dir, "private", 0o700);
    let (plain, fh) = create(&mut driver, dir, "plain");
    assert_eq!(close(&mut driver, plain, fh), FuseReply::Empty);
    assert!(stored_metadata(&driver, "d/").contains_key("mode"), "the directory says its entries have attributes");

    let mut other = remount(&driver);
    let dir = ino_of(&mut other, Ino::ROOT, "d");
    let heads_before = other.plan().matches("-> HeadObject").count();
    let listed = list_plus(&mut other, dir);
    let config = CoreConfig::default();
    assert_eq!(
        listed,
        vec![
            ("link".to_owned(), FileKind::Symlink, 0o777),
            ("plain".to_owned(), FileKind::File, config.file_mode),
            ("private".to_owned(), FileKind::Directory, 0o700),
            ("secret".to_owned(), FileKind::File, 0o600),
        ]
    );
    let heads = other.plan().matches("-> HeadObject").count() - heads_before;
    assert_eq!(heads, 4, "one HEAD per entry whose attributes were unknown\n{}", other.plan());
    list_plus(&mut other, dir);
    assert_eq!(other.plan().matches("-> HeadObject").count() - heads_before, 4, "known entries are not asked again");
}

#[test]
fn a_listing_elsewhere_costs_no_head_and_shows_the_defaults() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    for name in ["plain/a", "plain/b", "plain/sub/c"] {
        put_with_metadata(&mut driver, name, b"x", &[("mode", "33152")]);
    }
    let dir = ino_of(&mut driver, Ino::ROOT, "plain");
    let heads_before = driver.plan().matches("-> HeadObject").count();
    let listed = list_plus(&mut driver, dir);
    let config = CoreConfig::default();
    assert_eq!(
        listed,
        vec![
            ("a".to_owned(), FileKind::File, config.file_mode),
            ("b".to_owned(), FileKind::File, config.file_mode),
            ("sub".to_owned(), FileKind::Directory, config.dir_mode),
        ]
    );
    assert_eq!(driver.plan().matches("-> HeadObject").count(), heads_before, "{}", driver.plan());
    assert_eq!(attr_of(lookup(&mut driver, Ino::ROOT, "plain")).perm, config.dir_mode);
}

#[test]
fn a_file_unlinked_while_open_reads_on_until_its_last_close_then_goes() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    driver.put("d/open.txt", &b"still readable"[..]);
    let dir = ino_of(&mut driver, Ino::ROOT, "d");
    let ino = ino_of(&mut driver, dir, "open.txt");
    let fh = goofys_tests::plan_ops::open(&mut driver, ino, OpenFlags::O_RDONLY);
    assert_eq!(attr_of(driver.run(FuseOp::GetAttr { ino, fh: Some(fh) })).nlink, 1);
    let unlink = FuseOp::Unlink { parent: dir, name: "open.txt".into() };
    assert_eq!(driver.run(unlink.clone()), FuseReply::Empty);
    assert_eq!(lookup(&mut driver, dir, "open.txt"), FuseReply::Error(Errno::ENOENT));
    assert!(list_plus(&mut driver, dir).is_empty(), "the name is gone from listings");
    assert_eq!(goofys_tests::plan_ops::read(&mut driver, ino, fh, 6, 8), b"readable");
    let attr = attr_of(driver.run(FuseOp::GetAttr { ino, fh: Some(fh) }));
    assert_eq!((attr.size_bytes, attr.nlink), (14, 0), "fstat of an unlinked file shows no links");
    assert!(driver.model.object("d/open.txt").is_some(), "kept while a handle holds it");
    assert_eq!(driver.run(unlink), FuseReply::Error(Errno::ENOENT));
    assert_eq!(driver.run(FuseOp::Release { ino, fh }), FuseReply::Empty);
    assert!(driver.model.object("d/open.txt").is_none(), "deleted at the last close\n{}", driver.plan());
}

/// A copy onto itself gives an object uploaded in parts a new ETag (the MD5 of its bytes):
/// open handles follow it instead of failing with ESTALE at their next GET.
#[test]
fn a_file_open_for_reading_reads_on_after_this_mount_changes_its_mode_and_xattrs() {
    const KIB: usize = 1 << 10;
    const MIB: usize = 1 << 20;
    let model = S3Model::with_limits(ModelLimits { min_part_size_bytes: 64 * KIB as u64, ..ModelLimits::default() });
    let config = CoreConfig {
        write_part_size_bytes: 64 * KIB as u64,
        multipart_min_part_size_bytes: 64 * KIB as u64,
        ..CoreConfig::default()
    };
    let mut driver = PlanDriver::with_model(config, model);
    let body: Vec<u8> = (0..8 * MIB).map(|i| (i % 251) as u8).collect();
    let (ino, writer) = create(&mut driver, Ino::ROOT, "big.bin");
    write(&mut driver, ino, writer, 0, &body);
    assert_eq!(close(&mut driver, ino, writer), FuseReply::Empty);
    let uploaded_etag = driver.model.object("big.bin").expect("uploaded").etag.clone();
    assert!(uploaded_etag.as_str().contains('-'), "uploaded in parts: {uploaded_etag:?}");

    let fh = goofys_tests::plan_ops::open(&mut driver, ino, OpenFlags::O_RDONLY);
    assert_eq!(goofys_tests::plan_ops::read(&mut driver, ino, fh, 0, 4096), &body[..4096]);
    attr_of(setattr(&mut driver, ino, chmod(0o600)));
    assert_ne!(driver.model.object("big.bin").expect("copied").etag, uploaded_etag, "the copy has a new ETag");
    let far = 6 * MIB;
    assert_eq!(goofys_tests::plan_ops::read(&mut driver, ino, fh, far as u64, 4096), &body[far..far + 4096]);
    assert_eq!(setxattr(&mut driver, ino, "user.tag", b"x", 0), FuseReply::Empty);
    let near_end = 8 * MIB - 4096;
    assert_eq!(goofys_tests::plan_ops::read(&mut driver, ino, fh, near_end as u64, 4096), &body[near_end..]);
    assert_eq!(driver.run(FuseOp::Release { ino, fh }), FuseReply::Empty);
}

/// The kernel keeps the attributes a write gave it; the commit at close must not move the
/// modification time under it (pjdfstest's `utimensat::utime_omit` saw it move).
#[test]
fn a_new_files_mtime_is_its_last_write_not_its_commit() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    let (ino, fh) = create(&mut driver, Ino::ROOT, "f");
    write(&mut driver, ino, fh, 0, b"bytes");
    let written = attr_of(driver.run(FuseOp::GetAttr { ino, fh: Some(fh) }));
    driver.wait(std::time::Duration::from_secs(5));
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Empty);
    let committed = attr_of(driver.run(FuseOp::GetAttr { ino, fh: None }));
    assert_eq!((committed.size_bytes, committed.mtime, committed.ctime), (5, written.mtime, written.mtime));
}

#[test]
fn an_unlinked_open_file_never_deletes_what_replaced_it() {
    // Another client's object under the name.
    let mut driver = PlanDriver::new(CoreConfig::default());
    driver.put("f", &b"old"[..]);
    let ino = ino_of(&mut driver, Ino::ROOT, "f");
    let fh = goofys_tests::plan_ops::open(&mut driver, ino, OpenFlags::O_RDONLY);
    assert_eq!(driver.run(FuseOp::Unlink { parent: Ino::ROOT, name: "f".into() }), FuseReply::Empty);
    driver.put("f", &b"theirs"[..]);
    assert_eq!(driver.run(FuseOp::Release { ino, fh }), FuseReply::Empty);
    assert_eq!(driver.model.object("f").map(|o| o.body.clone()), Some(b"theirs"[..].into()));

    // A file this mount creates under the name replaces the unlinked object.
    driver.put("g", &b"old"[..]);
    let ino = ino_of(&mut driver, Ino::ROOT, "g");
    let fh = goofys_tests::plan_ops::open(&mut driver, ino, OpenFlags::O_RDONLY);
    assert_eq!(driver.run(FuseOp::Unlink { parent: Ino::ROOT, name: "g".into() }), FuseReply::Empty);
    let (new, new_fh) = create(&mut driver, Ino::ROOT, "g");
    write(&mut driver, new, new_fh, 0, b"new");
    assert_eq!(close(&mut driver, new, new_fh), FuseReply::Empty);
    assert_eq!(driver.run(FuseOp::Release { ino, fh }), FuseReply::Empty);
    assert_eq!(driver.model.object("g").map(|o| o.body.clone()), Some(b"new"[..].into()));
}

/// Found by `posix_attrs_faults`: a conditional marker PUT whose first attempt succeeded but
/// whose reply was lost is refused on retry (412); the change is recognised by its write id,
/// not reported as another client's.
#[test]
fn regression_a_retried_conditional_write_refused_because_it_already_succeeded_is_a_success() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    driver.put("d/f", &b"x"[..]);
    let dir = ino_of(&mut driver, Ino::ROOT, "d");
    driver.fail_next("PutObject", FaultKind::ResetAfterApply);
    assert_eq!(attr_of(setattr(&mut driver, dir, chmod(0o700))).perm, 0o700);
    assert_eq!(stored_metadata(&driver, "d/")["mode"], (0o40_700).to_string());

    driver.fail_next("PutObject", FaultKind::ResetAfterApply);
    let op = FuseOp::Symlink { parent: dir, name: "l".into(), target: "f".into(), uid: 0, gid: 0 };
    assert!(matches!(driver.run(op), FuseReply::Entry(entry) if entry.attr.kind == FileKind::Symlink));
}

#[test]
fn a_chmod_an_atime_change_or_an_xattr_leaves_a_files_modification_time_as_it_was() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    // Written long before the changes below, with no times in its metadata.
    let written_at = UnixNanos::from_secs(1_600_000_000);
    put_at(&mut driver, written_at, "old", b"x", &[]);
    let ino = ino_of(&mut driver, Ino::ROOT, "old");
    let atime = UnixNanos::from_secs(1_900_000_000);
    let changes = SetAttrChanges { atime: Some(SetTime::At(atime)), ..SetAttrChanges::default() };
    let attr = attr_of(setattr(&mut driver, ino, changes));
    assert_eq!((attr.atime, attr.mtime), (atime, written_at));
    assert_eq!(attr_of(setattr(&mut driver, ino, chmod(0o600))).mtime, written_at);
    assert_eq!(setxattr(&mut driver, ino, "user.x", b"y", 0), FuseReply::Empty);
    let stored = driver.model.object("old").expect("still there");
    assert!(stored.last_modified > written_at, "the copies gave the object a new Last-Modified");

    let mut other = remount(&driver);
    let seen = attr_of(lookup(&mut other, Ino::ROOT, "old"));
    assert_eq!((seen.perm, seen.atime, seen.mtime), (0o600, atime, written_at));
}
