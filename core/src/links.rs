//! Entries that are not made by `create`: symbolic links, `mknod` and hard links.
//!
//! Problems this module solves:
//! - A symlink is an object holding its target as its body, marked by `x-amz-meta-mode` with
//!   `S_IFLNK` (as s3fs writes it). It is written with one conditional PUT (`If-None-Match:
//!   *`), so it never replaces an object another client wrote meanwhile (`EEXIST`).
//! - `mknod` of a regular file makes an empty object the same way (the name exists at once,
//!   as after `create` and `close`); other node types (FIFOs, sockets, devices) have no S3
//!   form: `EPERM`, as Linux answers for a type a filesystem cannot hold.
//! - Hard links cannot exist in S3 (a key is one name): `link` is `EPERM`, like a filesystem
//!   that has none.

use std::ffi::OsStr;

use crate::calls::Purpose;
use crate::errno::{Errno, errno_for_s3_error};
use crate::fuse_types::FileKind;
use crate::ids::{FuseReqId, Ino};
use crate::inode::{ChildStat, ObjectMetadata, Observation};
use crate::machine::Core;
use crate::mutate::Mutation;
use crate::namespace::file_key;
use crate::posix::{PosixAttrs, S_IFLNK, S_IFMT, S_IFREG};
use crate::s3_types::{Body, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use crate::time::Instant;
use crate::write::WRITE_ID_METADATA;

/// An object being created for a new entry.
#[derive(Clone, Debug)]
pub(crate) struct NewObject {
    parent: Ino,
    name: String,
    body: Body,
    /// With a write id, so a retried PUT refused because its first attempt succeeded is
    /// recognised.
    metadata: ObjectMetadata,
}

impl Core {
    pub(crate) fn symlink(
        &mut self,
        now: Instant,
        id: FuseReqId,
        parent: Ino,
        name: &OsStr,
        target: &OsStr,
        attrs: PosixAttrs,
    ) {
        let Some(target) = target.to_str() else {
            tracing::info!("a symlink target that is not UTF-8 cannot be an S3 object's body here; EINVAL");
            return self.reply_error(id, Errno::EINVAL);
        };
        let attrs = PosixAttrs { mode: Some(S_IFLNK | 0o777), ..attrs };
        self.new_object(now, id, parent, name, Body::from(target.as_bytes().to_vec()), attrs);
    }

    pub(crate) fn mknod(
        &mut self,
        now: Instant,
        id: FuseReqId,
        parent: Ino,
        name: &OsStr,
        mode: u32,
        attrs: PosixAttrs,
    ) {
        if mode & S_IFMT != S_IFREG && mode & S_IFMT != 0 {
            tracing::info!(mode = format_args!("{mode:o}"), "only regular files can be made with mknod on S3; EPERM");
            return self.reply_error(id, Errno::EPERM);
        }
        self.new_object(now, id, parent, name, Body::default(), attrs);
    }

    pub(crate) fn link(&mut self, id: FuseReqId) {
        tracing::info!("S3 has no hard links; EPERM");
        self.reply_error(id, Errno::EPERM);
    }

    /// PUTs a new object `name` in `parent`, failing if the name is taken.
    fn new_object(&mut self, now: Instant, id: FuseReqId, parent: Ino, name: &OsStr, body: Body, attrs: PosixAttrs) {
        let name = match self.valid_new_name(parent, name) {
            Ok(name) => name,
            Err(errno) => return self.reply_error(id, errno),
        };
        if let Some(child) = self.inodes.child(parent, &name)
            && self.inodes.get(child).is_some_and(|inode| inode.writing || inode.kind == FileKind::Directory)
        {
            return self.reply_error(id, Errno::EEXIST);
        }
        let mut metadata = ObjectMetadata::default();
        attrs.write_into(&mut metadata.user);
        metadata.user.insert(WRITE_ID_METADATA.to_owned(), self.new_write_id());
        let parent_key = self.inodes.get(parent).map(|inode| inode.key.clone()).unwrap_or_default();
        let request = S3Request::PutObject {
            key: file_key(&parent_key, &name),
            body: body.clone().into(),
            content_type: None,
            metadata: metadata.user.clone(),
            if_match: None,
            if_none_match_any: true,
        };
        self.start_call(now, Purpose::Mutate { op: id }, request);
        self.mutations.insert(id, Mutation::NewObject(Box::new(NewObject { parent, name, body, metadata })));
    }

    pub(crate) fn new_object_done(
        &mut self,
        now: Instant,
        id: FuseReqId,
        object: NewObject,
        attempts: u32,
        result: S3Result,
    ) {
        let ours = |meta: &crate::s3_types::ObjectMeta| {
            meta.metadata.get(WRITE_ID_METADATA) == object.metadata.user.get(WRITE_ID_METADATA)
        };
        let etag = match result {
            Ok(S3Response::PutObject { etag }) => etag,
            // A retried PUT was refused: the first attempt may have made the object.
            Err(S3Error::Service(error))
                if attempts > 1 && (error.status == 412 || error.code == S3ErrorCode::PreconditionFailed) =>
            {
                let parent_key = self.inodes.get(object.parent).map(|inode| inode.key.clone()).unwrap_or_default();
                let key = file_key(&parent_key, &object.name);
                self.start_call(now, Purpose::Mutate { op: id }, S3Request::HeadObject { key });
                self.mutations.insert(id, Mutation::NewObject(Box::new(object)));
                return;
            }
            Ok(S3Response::HeadObject(meta)) if ours(&meta) => meta.etag,
            Ok(S3Response::HeadObject(_)) => {
                return self.reply_error(id, Errno::EEXIST);
            }
            result => {
                return self.new_object_failed(id, object, result);
            }
        };
        let NewObject { parent, name, body, metadata } = object;
        let gives_posix = !metadata.posix().is_empty();
        let stat = ChildStat::File {
            size_bytes: body.len() as u64,
            etag: etag.clone(),
            mtime: self.wall_time(now),
            metadata: Some(metadata),
        };
        let is_link = stat.kind() == FileKind::Symlink;
        self.inodes.forget_name(parent, &name);
        let (ino, effect) = self.inodes.upsert_child(parent, &name, stat, Observation::local(now));
        self.notify_upsert(parent, &name, ino, effect);
        if is_link && let Some(inode) = self.inodes.get_mut(ino) {
            inode.link_target = Some((etag, body));
        }
        if gives_posix {
            self.hint_parent(now, ino);
        }
        self.reply_entry(id, ino);
    }

    fn new_object_failed(&mut self, id: FuseReqId, object: NewObject, result: S3Result) {
        match result {
            Err(S3Error::Service(error)) if error.status == 412 || error.code == S3ErrorCode::PreconditionFailed => {
                self.inodes.forget_name(object.parent, &object.name);
                self.reply_error(id, Errno::EEXIST)
            }
            // Found gone while checking a refused retry: another client removed it.
            Err(error) if crate::errno::is_not_found(&error) => self.reply_error(id, Errno::ESTALE),
            Err(error) => self.reply_error(id, errno_for_s3_error(&error)),
            Ok(other) => {
                let error = crate::lookup::unexpected_response("PutObject", &other);
                self.reply_error(id, errno_for_s3_error(&error))
            }
        }
    }
}
