//! One-shot reads that a FUSE request waits for: a directory marker's metadata, and a
//! symbolic link's target.
//!
//! Problems this module solves:
//! - A directory's attributes and extended attributes live on its marker object, which a
//!   listing shows but does not describe: a request that needs them (getxattr, a lookup of a
//!   directory whose marker exists) HEADs the marker once, then runs again with the answer
//!   (no marker: the defaults).
//! - A symlink's target is its object's body: readlink GETs it, pinned to the version this
//!   mount knows, and keeps it beside the inode until the object changes.
//! - Like every request waiting for S3, these are answered `EINTR` when interrupted and `EIO`
//!   at unmount.

use crate::calls::{CallId, Purpose};
use crate::errno::{Errno, errno_for_s3_error, is_not_found};
use crate::fuse_types::{FileKind, FuseOp, FuseReply};
use crate::ids::{FuseReqId, Ino};
use crate::inode::ObjectMetadata;
use crate::machine::{Core, Waiting};
use crate::s3_types::{S3Error, S3Request, S3Response, S3Result};
use crate::time::Instant;

/// What a fetch is for.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum FetchKind {
    /// A directory's marker metadata; `then` runs again once it is known.
    Marker { then: Box<FuseOp> },
    /// A symlink's target, answered as the reply.
    LinkTarget,
}

/// A fetch in progress.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Fetch {
    ino: Ino,
    call: CallId,
    kind: FetchKind,
}

impl Core {
    /// HEADs directory `ino`'s marker, records what it holds, then runs `then` again.
    pub(crate) fn fetch_marker_then(&mut self, now: Instant, id: FuseReqId, ino: Ino, then: FuseOp) {
        let Some(inode) = self.inodes.get(ino) else {
            return self.reply_error(id, Errno::ENOENT);
        };
        let request = S3Request::HeadObject { key: inode.key.clone() };
        let call = self.start_call(now, Purpose::Fetch { op: id }, request);
        self.fetches.insert(id, Fetch { ino, call, kind: FetchKind::Marker { then: Box::new(then) } });
        self.waiting.insert(id, Waiting::Fetch);
    }

    /// `readlink`: the target, from memory if this version's is known, else from S3.
    pub(crate) fn readlink(&mut self, now: Instant, id: FuseReqId, ino: Ino) {
        let Some(inode) = self.inodes.get(ino) else {
            return self.reply_error(id, Errno::ENOENT);
        };
        if inode.kind != FileKind::Symlink {
            return self.reply_error(id, Errno::EINVAL);
        }
        if let Some((etag, target)) = &inode.link_target
            && inode.etag.as_ref() == Some(etag)
        {
            let target = target.clone();
            return self.reply(id, FuseReply::Data(target));
        }
        let request = S3Request::GetObject { key: inode.key.clone(), range: None, if_match: inode.etag.clone() };
        let call = self.start_call(now, Purpose::Fetch { op: id }, request);
        self.fetches.insert(id, Fetch { ino, call, kind: FetchKind::LinkTarget });
        self.waiting.insert(id, Waiting::Fetch);
    }

    pub(crate) fn fetch_done(&mut self, now: Instant, id: FuseReqId, call_id: CallId, result: S3Result) {
        if self.fetches.get(&id).is_none_or(|fetch| fetch.call != call_id) {
            return;
        }
        let Fetch { ino, kind, .. } = self.fetches.remove(&id).expect("checked");
        self.waiting.remove(&id);
        match kind {
            FetchKind::Marker { then } => {
                match result {
                    Ok(S3Response::HeadObject(meta)) => {
                        self.inodes.set_marker(ino, Some(meta.etag.clone()), ObjectMetadata::of(&meta))
                    }
                    Err(error) if is_not_found(&error) => self.inodes.set_marker(ino, None, ObjectMetadata::default()),
                    Err(error) => return self.reply_error(id, errno_for_s3_error(&error)),
                    Ok(other) => {
                        let error = crate::lookup::unexpected_response("HeadObject", &other);
                        return self.reply_error(id, errno_for_s3_error(&error));
                    }
                }
                self.handle_fuse(now, id, *then);
            }
            FetchKind::LinkTarget => match result {
                Ok(S3Response::GetObject(output)) => {
                    let target = output.body;
                    if let Some(inode) = self.inodes.get_mut(ino) {
                        inode.link_target = Some((output.meta.etag, target.clone()));
                    }
                    self.reply(id, FuseReply::Data(target));
                }
                // The link was replaced or removed since this mount saw it.
                Err(S3Error::Service(error)) if error.status == 412 => {
                    self.inodes.expire_stat(ino);
                    self.reply_error(id, Errno::ESTALE)
                }
                Err(error) if is_not_found(&error) => self.reply_error(id, Errno::ENOENT),
                Err(error) => self.reply_error(id, errno_for_s3_error(&error)),
                Ok(other) => {
                    let error = crate::lookup::unexpected_response("GetObject", &other);
                    self.reply_error(id, errno_for_s3_error(&error))
                }
            },
        }
    }

    /// An interrupted fetch: stop asking S3. The caller replies.
    pub(crate) fn abandon_fetch(&mut self, id: FuseReqId) {
        if let Some(fetch) = self.fetches.remove(&id) {
            self.cancel_call(fetch.call);
        }
    }
}
