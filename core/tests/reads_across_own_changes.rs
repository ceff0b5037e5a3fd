//! Reads of a file that this mount itself changes in S3: a commit of its bytes, or a chmod,
//! chown, utimes or setxattr (a copy onto itself), gives the object a new ETag. Open handles
//! follow it rather than going stale. A GET still on its way may reach S3 after the change
//! and be answered 412 (or, on a server that ignores If-Match, with the new bytes) before the
//! change's own reply arrives: such a read waits for the change and reads the new version;
//! only a change that fails leaves the handle stale. Found by fsx through a mount (a page
//! fault's read-around GET overtaken by an msync's PUT).

mod harness;

use bytes::Bytes;
use goofys_core::fuse_types::{FuseOp, FuseReply, OpenFlags, SetAttrChanges};
use goofys_core::s3_types::{Body, ByteRange, ETag, S3Error, S3ErrorCode, S3Request, S3Response};
use goofys_core::{CoreConfig, Errno, FileHandle, FuseReqId, Ino, S3ReqId};
use harness::{Harness, content, get_reply, range_of};

const FILE_BYTES: usize = 10_000;

/// A file of `content` open for reading and writing, with `b"mine"` written at its start, a
/// read of `[4096, 8192)` whose GET is on its way, and an fsync whose commit's PUT is on its
/// way (the base bytes it needed answered).
struct ReadDuringCommit {
    ino: Ino,
    fh: FileHandle,
    read: FuseReqId,
    read_get: S3ReqId,
    read_range: ByteRange,
    fsync: FuseReqId,
    put: S3ReqId,
}

fn read_in_flight_while_a_commit_puts(h: &mut Harness, file: &Bytes) -> ReadDuringCommit {
    let (ino, _) = h.open_file("f", file);
    let open = h.fuse(FuseOp::Open { ino, flags: OpenFlags(OpenFlags::O_RDWR) });
    let fh = h.opened(open);
    let write = h.fuse(FuseOp::Write { ino, fh, offset: 0, data: Body(Bytes::from_static(b"mine")) });
    assert_eq!(h.reply(write), FuseReply::Written { size: 4 });
    let read = h.read(ino, fh, 4096, 4096);
    let (read_get, request) = h.take_one_request();
    let read_range = range_of(&request);
    let fsync = h.fuse(FuseOp::Fsync { ino, fh, datasync: false });
    let put = loop {
        let (id, request) = h.take_one_request();
        match request {
            S3Request::GetObject { .. } => h.s3(id, get_reply(file, range_of(&request), "v1")),
            S3Request::PutObject { .. } => break id,
            other => panic!("unexpected {other:?}"),
        }
    };
    ReadDuringCommit { ino, fh, read, read_get, read_range, fsync, put }
}

/// The new version's bytes: `file` with `b"mine"` at its start.
fn committed(file: &Bytes) -> Bytes {
    let mut bytes = file.to_vec();
    bytes[..4].copy_from_slice(b"mine");
    Bytes::from(bytes)
}

/// Answers the GETs of `key` at version `etag` the core asks for until `read` is answered.
fn serve_reads_of(h: &mut Harness, read: FuseReqId, key: &str, bytes: &Bytes, etag: &str) -> FuseReply {
    loop {
        if let Some(reply) = h.take_reply(read) {
            return reply;
        }
        let (id, request) = h.take_one_request();
        match &request {
            S3Request::GetObject { key: asked, if_match, .. } => {
                assert_eq!((asked.as_str(), if_match.as_ref()), (key, Some(&ETag::new(etag))), "{request:?}");
                h.s3(id, get_reply(bytes, range_of(&request), etag));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// [`serve_reads_of`] the file `f`.
fn serve_reads(h: &mut Harness, read: FuseReqId, bytes: &Bytes, etag: &str) -> FuseReply {
    serve_reads_of(h, read, "f", bytes, etag)
}

#[test]
fn a_get_overtaken_by_this_mounts_own_put_reads_the_new_version() {
    let mut h = Harness::new(CoreConfig::default());
    let file = content(FILE_BYTES);
    let ReadDuringCommit { read, read_get, fsync, put, .. } = read_in_flight_while_a_commit_puts(&mut h, &file);
    h.s3(read_get, Err(S3Error::service(412, S3ErrorCode::PreconditionFailed)));
    assert_eq!(h.take_reply(read), None, "the read waits for the commit");
    h.s3(put, Ok(S3Response::PutObject { etag: ETag::new("v2") }));
    assert_eq!(h.reply(fsync), FuseReply::Empty);
    let new = committed(&file);
    assert_eq!(serve_reads(&mut h, read, &new, "v2"), FuseReply::Data(Body(new.slice(4096..8192))));
}

#[test]
fn new_bytes_from_a_server_that_ignores_if_match_during_the_commit_are_read_again_after_it() {
    let mut h = Harness::new(CoreConfig::default());
    let file = content(FILE_BYTES);
    let ReadDuringCommit { read, read_get, read_range, fsync, put, .. } =
        read_in_flight_while_a_commit_puts(&mut h, &file);
    let new = committed(&file);
    h.s3(read_get, get_reply(&new, read_range, "v2"));
    assert_eq!(h.take_reply(read), None, "the read waits for the commit");
    h.s3(put, Ok(S3Response::PutObject { etag: ETag::new("v2") }));
    assert_eq!(h.reply(fsync), FuseReply::Empty);
    assert_eq!(serve_reads(&mut h, read, &new, "v2"), FuseReply::Data(Body(new.slice(4096..8192))));
}

#[test]
fn a_get_answered_412_during_a_commit_that_then_fails_leaves_the_handle_stale() {
    let mut h = Harness::new(CoreConfig::default());
    let file = content(FILE_BYTES);
    let ReadDuringCommit { ino, fh, read, read_get, fsync, put, .. } =
        read_in_flight_while_a_commit_puts(&mut h, &file);
    h.s3(read_get, Err(S3Error::service(412, S3ErrorCode::PreconditionFailed)));
    // Another client replaced the object: the conditional PUT is refused and the write id
    // check finds their object, not ours.
    h.s3(put, Err(S3Error::service(412, S3ErrorCode::PreconditionFailed)));
    let (head, request) = h.take_one_request();
    assert!(matches!(request, S3Request::HeadObject { .. }), "{request:?}");
    h.s3(head, Ok(S3Response::HeadObject(harness::meta(FILE_BYTES as u64, "theirs"))));
    assert_eq!(h.reply(fsync), FuseReply::Error(Errno::ESTALE));
    assert_eq!(h.reply(read), FuseReply::Error(Errno::ESTALE));
    let later = h.read(ino, fh, 0, 16);
    assert_eq!(h.reply(later), FuseReply::Error(Errno::ESTALE));
}

const BIG_FILE_BYTES: usize = 4 << 20;

/// Starts a chmod of `ino` through this mount: returns it and its copy onto itself.
fn start_chmod(h: &mut Harness, ino: Ino) -> (FuseReqId, S3ReqId) {
    let changes = SetAttrChanges { mode: Some(0o600), ..SetAttrChanges::default() };
    let chmod = h.fuse(FuseOp::SetAttr { ino, fh: None, changes });
    let (copy, request) = h.take_one_request();
    assert!(matches!(request, S3Request::CopyObject { .. }), "{request:?}");
    (chmod, copy)
}

#[test]
fn a_handle_reads_on_after_this_mount_changes_the_files_mode() {
    let mut h = Harness::new(CoreConfig::default());
    let file = content(BIG_FILE_BYTES);
    let (ino, fh) = h.open_file("f", &file);
    let first = h.read(ino, fh, 0, 4096);
    assert_eq!(serve_reads(&mut h, first, &file, "v1"), FuseReply::Data(Body(file.slice(0..4096))));
    let (chmod, copy) = start_chmod(&mut h, ino);
    h.s3(copy, Ok(S3Response::CopyObject { etag: ETag::new("v2") }));
    assert!(matches!(h.reply(chmod), FuseReply::Attr { .. }));
    // The copy kept the bytes under a new ETag: the handle asks for that one.
    let far = 3 << 20;
    let later = h.read(ino, fh, far, 4096);
    assert_eq!(
        serve_reads(&mut h, later, &file, "v2"),
        FuseReply::Data(Body(file.slice(far as usize..far as usize + 4096)))
    );
}

/// Opens the file `f` of `file` and reads its first page: returns the inode, the read and its
/// GET, still on its way.
fn first_read_in_flight(h: &mut Harness, file: &Bytes) -> (Ino, FuseReqId, S3ReqId) {
    let (ino, fh) = h.open_file("f", file);
    let read = h.read(ino, fh, 0, 4096);
    let (read_get, _) = h.take_one_request();
    (ino, read, read_get)
}

#[test]
fn a_get_overtaken_by_this_mounts_own_chmod_reads_the_new_version() {
    let mut h = Harness::new(CoreConfig::default());
    let file = content(BIG_FILE_BYTES);
    let (ino, read, read_get) = first_read_in_flight(&mut h, &file);
    let (chmod, copy) = start_chmod(&mut h, ino);
    h.s3(read_get, Err(S3Error::service(412, S3ErrorCode::PreconditionFailed)));
    assert_eq!(h.take_reply(read), None, "the read waits for the chmod");
    h.s3(copy, Ok(S3Response::CopyObject { etag: ETag::new("v2") }));
    assert!(matches!(h.reply(chmod), FuseReply::Attr { .. }));
    assert_eq!(serve_reads(&mut h, read, &file, "v2"), FuseReply::Data(Body(file.slice(0..4096))));
}

#[test]
fn a_get_overtaken_by_this_mounts_own_rename_of_the_file_reads_it_under_its_new_name() {
    let mut h = Harness::new(CoreConfig::default());
    let file = content(BIG_FILE_BYTES);
    let (_, read, read_get) = first_read_in_flight(&mut h, &file);
    let rename = h.fuse(FuseOp::Rename {
        parent: Ino::ROOT,
        name: "f".into(),
        new_parent: Ino::ROOT,
        new_name: "g".into(),
        flags: 0,
    });
    // The rename copies, then deletes the original; the read's GET reaches S3 after the delete.
    let mut answered_read_get = false;
    while h.take_reply(rename).is_none() {
        for (id, request) in h.take_requests() {
            let result = match &request {
                S3Request::HeadObject { key } if key == "f" => {
                    Ok(S3Response::HeadObject(harness::meta(FILE_BYTES as u64, "v1")))
                }
                S3Request::HeadObject { .. } => harness::not_found(),
                S3Request::ListObjectsV2 { .. } => Ok(harness::list_page(&[], &[], None)),
                S3Request::CopyObject { .. } => Ok(S3Response::CopyObject { etag: ETag::new("v2") }),
                S3Request::DeleteObject { .. } => {
                    // S3 applied the delete, then answered the GET, then the delete.
                    h.s3(read_get, harness::not_found());
                    answered_read_get = true;
                    assert_eq!(h.take_reply(read), None, "the read waits for the rename");
                    Ok(S3Response::DeleteObject)
                }
                other => panic!("unexpected {other:?}"),
            };
            h.s3(id, result);
        }
    }
    assert!(answered_read_get);
    assert_eq!(serve_reads_of(&mut h, read, "g", &file, "v2"), FuseReply::Data(Body(file.slice(0..4096))));
}

/// Found by the simulator (seed 5147): a handle opened while this mount extends the file took
/// the writer's size as the object's, prefetched past the object's end, was answered 416, and
/// went stale.
#[test]
fn a_handle_opened_while_the_file_grows_here_fetches_only_the_objects_bytes() {
    let mut h = Harness::new(CoreConfig::default());
    let file = content(FILE_BYTES);
    let (ino, _) = h.open_file("f", &file);
    let open = h.fuse(FuseOp::Open { ino, flags: OpenFlags(OpenFlags::O_RDWR) });
    let writer = h.opened(open);
    let tail = Bytes::from_static(b"tail");
    let write = h.fuse(FuseOp::Write { ino, fh: writer, offset: 3 * FILE_BYTES as u64, data: Body(tail) });
    assert_eq!(h.reply(write), FuseReply::Written { size: 4 });
    let open = h.open(ino);
    let reader = h.opened(open);
    let read = h.read(ino, reader, 0, 4096);
    for (id, request) in h.take_requests() {
        let range = range_of(&request);
        assert!(range.end <= FILE_BYTES as u64, "a GET past the object's end: {request:?}");
        h.s3(id, get_reply(&file, range, "v1"));
    }
    assert_eq!(h.reply(read), FuseReply::Data(Body(file.slice(0..4096))));
    let far = h.read(ino, reader, 3 * FILE_BYTES as u64 - 2, 8);
    let mut expected = vec![0u8; 2];
    expected.extend_from_slice(b"tail");
    assert_eq!(h.reply(far), FuseReply::Data(Body(Bytes::from(expected))), "the writer's bytes, past the object");
}
