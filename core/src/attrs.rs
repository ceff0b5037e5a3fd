//! Changing what S3 keeps beside a file's bytes: mode, owner, group and times (`setattr`) and
//! user extended attributes.
//!
//! Problems this module solves:
//! - S3 cannot change an object's metadata in place. A file's new attributes are written by a
//!   metadata-only copy of the object onto itself, pinned to the version this mount knows,
//!   keeping the rest of its metadata (content type, other attributes, xattrs). A directory's
//!   attributes live on its marker object, which is rewritten, or created for a directory that
//!   had none. The bucket's root has no object to hold them: changing them is `EPERM`.
//! - The metadata must be known before it is changed (listings carry none): it is read with
//!   HEAD first when it is not, or when the stat cache says it may be stale.
//! - A file being written keeps its new attributes with its unwritten bytes; the commit at
//!   close writes both (`write.rs`).
//! - Listings show POSIX attributes without a HEAD per entry only in directories whose marker
//!   says their entries may carry them (`confirm.rs`): after giving an entry attributes, the
//!   mount makes sure its directory's marker says so (a *hint*: the marker's own mode).
//! - A change that another client's change of the same object overtook fails with `ESTALE`,
//!   never overwriting theirs.

use crate::calls::{CallId, Purpose};
use crate::copy::{CopyMetadata, MARKER_CONTENT_TYPE, ObjectCopy};
use crate::errno::{Errno, errno_for_s3_error};
use crate::fuse_types::{FileKind, FuseOp, FuseReply, SetAttrChanges, SetTime};
use crate::ids::{FuseReqId, Ino};
use crate::inode::{ObjectMetadata, Observation, UpsertEffect};
use crate::machine::Core;
use crate::posix::{PosixAttrs, S_IFDIR, S_IFLNK, S_IFREG};
use crate::s3_types::{ETag, RequestBody, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use crate::time::{Instant, UnixNanos};
use crate::write::WRITE_ID_METADATA;

/// S3's limit on the user metadata of one object (names and values), in bytes.
pub const USER_METADATA_MAX_BYTES: usize = 2048;

/// `setxattr` flag: fail if the attribute exists.
pub const XATTR_CREATE: u32 = 1;
/// `setxattr` flag: fail unless the attribute exists.
pub const XATTR_REPLACE: u32 = 2;

/// What a change does to an object's metadata.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum MetadataEdit {
    /// New POSIX attributes (the ones set; ctime included).
    Posix(PosixAttrs),
    /// A user metadata entry (an xattr `user.NAME`) set to `value`.
    SetUser {
        name: String,
        value: String,
        flags: u32,
    },
    RemoveUser {
        name: String,
    },
    /// A directory's marker says its entries may carry attributes (it spells out its mode).
    Hint,
}

/// Who waits for a change.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum MetaWaiter {
    /// A setattr, answered with the attributes; a truncation to `then_size` follows.
    SetAttr { id: FuseReqId, then_size: Option<u64> },
    /// An xattr change, answered with nothing.
    Xattr { id: FuseReqId },
    /// Nobody (a hint).
    Nobody,
}

impl MetaWaiter {
    fn id(&self) -> Option<FuseReqId> {
        match self {
            MetaWaiter::SetAttr { id, .. } | MetaWaiter::Xattr { id } => Some(*id),
            MetaWaiter::Nobody => None,
        }
    }
}

/// A metadata change in progress.
#[derive(Debug)]
pub(crate) struct MetaChange {
    ino: Ino,
    waiter: MetaWaiter,
    edit: MetadataEdit,
    stage: MetaStage,
}

#[derive(Debug)]
enum MetaStage {
    /// Reading the object's (or marker's) current metadata.
    Reading { call: CallId, asked_at: Instant },
    /// Copying a file onto itself with its new metadata.
    Copying { copy: Box<ObjectCopy>, metadata: ObjectMetadata },
    /// Writing a directory's marker.
    PuttingMarker { call: CallId, metadata: ObjectMetadata },
    /// A retried write was refused as if the object had changed: reading it back tells
    /// whether the object holds this change (its write id) after all.
    Verifying { call: CallId, metadata: ObjectMetadata },
}

impl MetadataEdit {
    /// The metadata after the edit, or `None` if it already says so. `kept_mtime`: the
    /// modification time the object shows now, written into metadata that has none, for an edit
    /// applied by copying the object onto itself: the copy's new Last-Modified must not become
    /// the file's modification time (a chmod or an atime change leaves mtime as it was).
    fn apply(
        &self,
        current: &ObjectMetadata,
        directory_perm: u16,
        kept_mtime: Option<UnixNanos>,
    ) -> Result<Option<ObjectMetadata>, Errno> {
        let mut next = current.clone();
        match self {
            MetadataEdit::Posix(changes) => current.posix().updated_by(changes).write_into(&mut next.user),
            MetadataEdit::SetUser { name, value, flags } => {
                let exists = current.user.contains_key(name);
                if exists && flags & XATTR_CREATE != 0 {
                    return Err(Errno::EEXIST);
                }
                if !exists && flags & XATTR_REPLACE != 0 {
                    return Err(Errno::ENODATA);
                }
                next.user.insert(name.clone(), value.clone());
            }
            MetadataEdit::RemoveUser { name } => {
                if next.user.remove(name).is_none() {
                    return Err(Errno::ENODATA);
                }
            }
            MetadataEdit::Hint => {
                if current.posix().mode.is_some() {
                    return Ok(None);
                }
                let mode = PosixAttrs { mode: Some(S_IFDIR | u32::from(directory_perm)), ..PosixAttrs::default() };
                mode.write_into(&mut next.user);
            }
        }
        if let Some(mtime) = kept_mtime
            && next.posix().mtime.is_none()
        {
            PosixAttrs { mtime: Some(mtime), ..PosixAttrs::default() }.write_into(&mut next.user);
        }
        let size: usize = next.user.iter().map(|(name, value)| name.len() + value.len()).sum();
        if size > USER_METADATA_MAX_BYTES {
            tracing::warn!(size, "S3 keeps at most 2 KiB of user metadata per object; refusing the change with E2BIG");
            return Err(Errno::E2BIG);
        }
        Ok(Some(next))
    }

    fn gives_posix_attributes(&self) -> bool {
        matches!(self, MetadataEdit::Posix(_))
    }
}

/// The POSIX attributes a setattr sets (ctime: now, if anything changes).
fn posix_changes(kind: FileKind, changes: &SetAttrChanges, wall: UnixNanos) -> PosixAttrs {
    let file_type = match kind {
        FileKind::File => S_IFREG,
        FileKind::Directory => S_IFDIR,
        FileKind::Symlink => S_IFLNK,
    };
    let time = |time: Option<SetTime>| {
        time.map(|time| match time {
            SetTime::Now => wall,
            SetTime::At(at) => at,
        })
    };
    let mut attrs = PosixAttrs {
        mode: changes.mode.map(|mode| file_type | (mode & crate::posix::PERMISSION_BITS)),
        uid: changes.uid,
        gid: changes.gid,
        mtime: time(changes.mtime),
        atime: time(changes.atime),
        ctime: None,
    };
    if !attrs.is_empty() {
        attrs.ctime = Some(wall);
    }
    attrs
}

impl Core {
    /// `setattr`: attributes through metadata, sizes through the write path.
    pub(crate) fn setattr(&mut self, now: Instant, id: FuseReqId, ino: Ino, changes: SetAttrChanges) {
        let Some(inode) = self.inodes.get(ino) else {
            return self.reply_error(id, Errno::ENOENT);
        };
        let attrs = posix_changes(inode.kind, &changes, self.wall_time(now));
        if attrs.is_empty() {
            return self.setattr_size(now, id, ino, changes);
        }
        if self.writes.get(&ino).is_some_and(|file| file.is_committing()) {
            // The commit under way has the old attributes: change them after it.
            return self.block_behind_commit(now, ino, id, FuseOp::SetAttr { ino, fh: None, changes });
        }
        let waiter = MetaWaiter::SetAttr { id, then_size: changes.size_bytes };
        self.change_metadata(now, ino, waiter, MetadataEdit::Posix(attrs));
    }

    /// The attributes a new entry must carry: those that differ from the mount's defaults.
    pub(crate) fn new_entry_attrs(&self, kind: FileKind, mode: u32, uid: u32, gid: u32) -> PosixAttrs {
        let (file_type, default_perm) = match kind {
            FileKind::File => (S_IFREG, self.config.file_mode),
            FileKind::Directory => (S_IFDIR, self.config.dir_mode),
            FileKind::Symlink => (S_IFLNK, 0o777),
        };
        let perm = mode & crate::posix::PERMISSION_BITS;
        PosixAttrs {
            mode: (perm != u32::from(default_perm) || kind == FileKind::Symlink).then_some(file_type | perm),
            uid: (uid != self.config.uid).then_some(uid),
            gid: (gid != self.config.gid).then_some(gid),
            ..PosixAttrs::default()
        }
    }

    fn meta_change(&mut self, change: u64) -> Option<&mut MetaChange> {
        self.meta_changes.get_mut(&change)
    }

    /// Starts changing `ino`'s metadata.
    pub(crate) fn change_metadata(&mut self, now: Instant, ino: Ino, waiter: MetaWaiter, edit: MetadataEdit) {
        let Some(inode) = self.inodes.get(ino) else {
            return self.fail_change(&waiter, Errno::ENOENT);
        };
        let root_of_bucket = ino == Ino::ROOT && self.config.mount_prefix.is_empty();
        if inode.kind == FileKind::Directory && root_of_bucket {
            if waiter != MetaWaiter::Nobody {
                tracing::warn!("the bucket's root has no object to keep attributes in; replying EPERM");
            }
            return self.fail_change(&waiter, Errno::EPERM);
        }
        if inode.kind != FileKind::Directory && self.writes.contains_key(&ino) {
            return self.change_write_metadata(now, ino, waiter, edit);
        }
        let change = self.next_meta_change;
        self.next_meta_change += 1;
        let must_read = inode.metadata.is_none()
            || (inode.kind != FileKind::Directory && (inode.etag.is_none() || now >= inode.stat_expiry));
        let stage = if must_read {
            let request = S3Request::HeadObject { key: inode.key.clone() };
            MetaStage::Reading { call: self.start_call(now, Purpose::MetaChange { change }, request), asked_at: now }
        } else {
            // Placeholder, replaced at once by `write_metadata`.
            MetaStage::Reading { call: CallId(u64::MAX), asked_at: now }
        };
        self.meta_changes.insert(change, MetaChange { ino, waiter, edit, stage });
        if !must_read {
            self.write_metadata(now, change);
        }
    }

    /// A file being written takes its new metadata with its bytes, at the next commit (at
    /// once, and answered after it, if no writer has it open any more).
    fn change_write_metadata(&mut self, now: Instant, ino: Ino, waiter: MetaWaiter, edit: MetadataEdit) {
        let dir_perm = self.config.dir_mode;
        let file = self.writes.get_mut(&ino).expect("checked");
        // The commit writes new bytes: Last-Modified is the file's modification time.
        let next = match edit.apply(&file.metadata, dir_perm, None) {
            Err(errno) => return self.fail_change(&waiter, errno),
            Ok(next) => next,
        };
        let open_writers = file.has_writers();
        if let Some(next) = &next {
            file.metadata = next.clone();
            file.mark_dirty();
            if let Some(inode) = self.inodes.get_mut(ino) {
                inode.posix = next.posix();
            }
        }
        if edit.gives_posix_attributes() {
            self.hint_parent(now, ino);
        }
        if next.is_none() || open_writers {
            return self.finish_change(now, ino, waiter);
        }
        match waiter {
            MetaWaiter::SetAttr { id, then_size: None } => {
                self.setattr_waiters.insert(id, ino);
                self.start_commit(now, ino, Some(id));
            }
            MetaWaiter::Xattr { id } => self.start_commit(now, ino, Some(id)),
            MetaWaiter::Nobody => self.start_commit(now, ino, None),
            // The truncation that follows commits.
            waiter @ MetaWaiter::SetAttr { .. } => self.finish_change(now, ino, waiter),
        }
    }

    /// The metadata is known: write the new one.
    fn write_metadata(&mut self, now: Instant, change: u64) {
        let dir_perm = self.config.dir_mode;
        let change_ref = self.meta_changes.get(&change).expect("a change");
        let ino = change_ref.ino;
        let Some(inode) = self.inodes.get(ino) else {
            let change = self.meta_changes.remove(&change).expect("a change");
            return self.fail_change(&change.waiter, Errno::ENOENT);
        };
        let current = inode.metadata.clone().unwrap_or_default();
        let directory_perm =
            if inode.kind == FileKind::Directory { self.inodes.attr(inode, &self.config).perm } else { dir_perm };
        // A directory's times are not its marker's Last-Modified: only a file's copy moves them.
        let kept_mtime = (inode.kind != FileKind::Directory).then(|| self.inodes.attr(inode, &self.config).mtime);
        let next = match change_ref.edit.apply(&current, directory_perm, kept_mtime) {
            Err(errno) => {
                let change = self.meta_changes.remove(&change).expect("a change");
                return self.fail_change(&change.waiter, errno);
            }
            Ok(None) => {
                let change = self.meta_changes.remove(&change).expect("a change");
                return self.finish_change(now, ino, change.waiter);
            }
            Ok(Some(next)) => next,
        };
        let mut next = next;
        // Tells this change apart if a retry leaves its outcome in doubt.
        next.user.insert(WRITE_ID_METADATA.to_owned(), self.new_write_id());
        let inode = self.inodes.get(ino).expect("checked");
        if inode.kind == FileKind::Directory {
            let request = S3Request::PutObject {
                key: inode.key.clone(),
                body: RequestBody::default(),
                content_type: Some(next.content_type.clone().unwrap_or_else(|| MARKER_CONTENT_TYPE.to_owned())),
                metadata: next.user.clone(),
                if_match: inode.etag.clone(),
                if_none_match_any: inode.etag.is_none(),
            };
            let call = self.start_call(now, Purpose::MetaChange { change }, request);
            self.meta_change(change).expect("a change").stage = MetaStage::PuttingMarker { call, metadata: next };
            return;
        }
        let etag = inode.etag.clone().expect("read before");
        let copy = ObjectCopy::new(
            inode.key.clone(),
            inode.key.clone(),
            inode.size_bytes,
            etag,
            CopyMetadata::Replace(next.clone()),
        );
        self.meta_change(change).expect("a change").stage = MetaStage::Copying { copy: Box::new(copy), metadata: next };
        self.pump_meta_copy(now, change);
    }

    fn pump_meta_copy(&mut self, now: Instant, change: u64) {
        let config = self.config.clone();
        let Some(MetaChange { stage: MetaStage::Copying { copy, .. }, .. }) = self.meta_change(change) else {
            return;
        };
        for (step, request) in copy.poll_requests(&config) {
            let call = self.start_call(now, Purpose::MetaChange { change }, request);
            if let Some(MetaChange { stage: MetaStage::Copying { copy, .. }, .. }) = self.meta_change(change) {
                copy.sent(step, call);
            }
        }
    }

    /// An answer to one of a metadata change's requests.
    pub(crate) fn meta_change_done(
        &mut self,
        now: Instant,
        change: u64,
        call_id: CallId,
        attempts: u32,
        result: S3Result,
    ) {
        let config = self.config.clone();
        let Some(meta_change) = self.meta_changes.get_mut(&change) else { return };
        let ino = meta_change.ino;
        match &mut meta_change.stage {
            MetaStage::Reading { call, asked_at } if *call == call_id => {
                let seen = Observation { asked_at: *asked_at, answered_at: now };
                let is_directory = self.inodes.get(ino).is_some_and(|inode| inode.kind == FileKind::Directory);
                match result {
                    Ok(S3Response::HeadObject(meta)) if is_directory => {
                        self.inodes.set_marker(ino, Some(meta.etag.clone()), ObjectMetadata::of(&meta));
                    }
                    Ok(S3Response::HeadObject(meta)) => {
                        if self.inodes.refresh_file(ino, &meta, seen) == UpsertEffect::Replaced {
                            return self.abandon_change(change, Errno::ESTALE);
                        }
                    }
                    Err(S3Error::Service(error))
                        if is_directory && (error.status == 404 || error.code == S3ErrorCode::NoSuchKey) =>
                    {
                        self.inodes.set_marker(ino, None, ObjectMetadata::default());
                    }
                    Err(S3Error::Service(error)) if error.status == 404 || error.code == S3ErrorCode::NoSuchKey => {
                        return self.abandon_change(change, Errno::ENOENT);
                    }
                    Err(error) => return self.abandon_change(change, errno_for_s3_error(&error)),
                    Ok(other) => {
                        let error = crate::lookup::unexpected_response("HeadObject", &other);
                        return self.abandon_change(change, errno_for_s3_error(&error));
                    }
                }
                self.write_metadata(now, change);
            }
            MetaStage::PuttingMarker { call, metadata } if *call == call_id => match result {
                Ok(S3Response::PutObject { etag }) => {
                    let metadata = std::mem::take(metadata);
                    self.inodes.set_marker(ino, Some(etag), metadata);
                    // A directory that existed only in this mount is in S3 now.
                    self.inodes.set_writing(ino, false);
                    let change = self.meta_changes.remove(&change).expect("a change");
                    self.finish_change(now, ino, change.waiter);
                }
                // Another client wrote the marker meanwhile, or an earlier attempt did.
                Err(S3Error::Service(error))
                    if error.status == 412 || error.code == S3ErrorCode::PreconditionFailed =>
                {
                    let metadata = std::mem::take(metadata);
                    self.verify_change(now, change, attempts, metadata)
                }
                Err(error) => self.abandon_change(change, errno_for_s3_error(&error)),
                Ok(other) => {
                    let error = crate::lookup::unexpected_response("PutObject", &other);
                    self.abandon_change(change, errno_for_s3_error(&error))
                }
            },
            MetaStage::Verifying { call, metadata } if *call == call_id => {
                let metadata = std::mem::take(metadata);
                let is_directory = self.inodes.get(ino).is_some_and(|inode| inode.kind == FileKind::Directory);
                match result {
                    Ok(S3Response::HeadObject(meta))
                        if meta.metadata.get(WRITE_ID_METADATA) == metadata.user.get(WRITE_ID_METADATA) =>
                    {
                        let etag = meta.etag.clone();
                        if is_directory {
                            self.inodes.set_marker(ino, Some(etag), metadata);
                            self.inodes.set_writing(ino, false);
                        } else {
                            self.file_relabeled(now, ino, etag, meta.size_bytes, metadata);
                        }
                        let change = self.meta_changes.remove(&change).expect("a change");
                        if change.edit.gives_posix_attributes() {
                            self.hint_parent(now, ino);
                        }
                        self.finish_change(now, ino, change.waiter);
                    }
                    Ok(_) => self.abandon_change(change, Errno::ESTALE),
                    Err(error) if crate::errno::is_not_found(&error) => self.abandon_change(change, Errno::ESTALE),
                    Err(error) => self.abandon_change(change, errno_for_s3_error(&error)),
                }
            }
            MetaStage::Copying { copy, metadata } if copy.owns(call_id) => {
                match copy.answered(call_id, result, &config) {
                    Err(Errno::ESTALE) => {
                        let metadata = std::mem::take(metadata);
                        self.verify_change(now, change, attempts, metadata)
                    }
                    Err(errno) => self.abandon_change(change, errno),
                    Ok(()) => match copy.done().cloned() {
                        None => self.pump_meta_copy(now, change),
                        Some(etag) => {
                            let metadata = std::mem::take(metadata);
                            let gives_posix = meta_change.edit.gives_posix_attributes();
                            let size_bytes = copy.size_bytes;
                            self.file_relabeled(now, ino, etag, size_bytes, metadata);
                            let change = self.meta_changes.remove(&change).expect("a change");
                            if gives_posix {
                                self.hint_parent(now, ino);
                            }
                            self.finish_change(now, ino, change.waiter);
                        }
                    },
                }
            }
            _ => {}
        }
    }

    /// A write of the change was refused as if the object had changed. After a retry the
    /// refusal may be of this change's own earlier attempt: read the object back to tell.
    fn verify_change(&mut self, now: Instant, change: u64, attempts: u32, metadata: ObjectMetadata) {
        let Some(key) = self.meta_changes.get(&change).and_then(|c| self.inodes.get(c.ino)).map(|i| i.key.clone())
        else {
            return;
        };
        if attempts <= 1 {
            return self.abandon_change(change, Errno::ESTALE);
        }
        let calls = match &self.meta_changes[&change].stage {
            MetaStage::Copying { copy, .. } => copy.calls_in_flight(),
            _ => Vec::new(),
        };
        for call in calls {
            self.cancel_call(call);
        }
        let call = self.start_call(now, Purpose::MetaChange { change }, S3Request::HeadObject { key });
        self.meta_change(change).expect("a change").stage = MetaStage::Verifying { call, metadata };
    }

    /// A file's copy onto itself with new metadata is in S3: the same bytes under a new ETag,
    /// which the inode, a write state's base and open handles follow.
    fn file_relabeled(&mut self, now: Instant, ino: Ino, etag: ETag, size_bytes: u64, metadata: ObjectMetadata) {
        self.inodes.set_object_metadata(ino, etag.clone(), metadata, now);
        self.rebase_write_state(ino, &etag);
        self.rebase_readers(now, ino, etag, size_bytes);
    }

    /// Whether this mount is changing `ino`'s metadata in S3.
    pub(crate) fn is_changing_metadata(&self, ino: Ino) -> bool {
        self.meta_changes.values().any(|change| change.ino == ino)
    }

    fn abandon_change(&mut self, change: u64, errno: Errno) {
        let Some(change) = self.meta_changes.remove(&change) else { return };
        self.stale_if_overtaken(change.ino);
        let calls: Vec<CallId> = match &change.stage {
            MetaStage::Reading { call, .. }
            | MetaStage::PuttingMarker { call, .. }
            | MetaStage::Verifying { call, .. } => vec![*call],
            MetaStage::Copying { copy, .. } => copy.calls_in_flight(),
        };
        for call in calls {
            self.cancel_call(call);
        }
        if change.waiter == MetaWaiter::Nobody {
            tracing::warn!(ino = ?change.ino, ?errno, "could not mark a directory as holding entries with attributes");
        }
        self.fail_change(&change.waiter, errno);
    }

    fn fail_change(&mut self, waiter: &MetaWaiter, errno: Errno) {
        if let Some(id) = waiter.id() {
            self.reply_error(id, errno);
        }
    }

    /// The change is in S3 (or in the write state): answer whoever waits.
    fn finish_change(&mut self, now: Instant, ino: Ino, waiter: MetaWaiter) {
        match waiter {
            MetaWaiter::SetAttr { id, then_size: Some(size) } => {
                let changes = SetAttrChanges { size_bytes: Some(size), ..SetAttrChanges::default() };
                self.handle_fuse(now, id, FuseOp::SetAttr { ino, fh: None, changes });
            }
            MetaWaiter::SetAttr { id, then_size: None } => match self.inodes.get(ino) {
                Some(inode) => {
                    let attr = self.inodes.attr(inode, &self.config);
                    let ttl = self.config.stat_cache_ttl;
                    self.reply(id, FuseReply::Attr { attr, ttl });
                }
                None => self.reply_error(id, Errno::ENOENT),
            },
            MetaWaiter::Xattr { id } => self.reply(id, FuseReply::Empty),
            MetaWaiter::Nobody => {}
        }
    }

    /// `ino` carries POSIX attributes now: its directory's marker must say that its entries
    /// may, so listings confirm them (nobody waits; a failure is logged).
    pub(crate) fn hint_parent(&mut self, now: Instant, ino: Ino) {
        let Some(parent) = self.inodes.get(ino).map(|inode| inode.parent) else { return };
        let Some(parent_inode) = self.inodes.get(parent) else { return };
        let root_of_bucket = parent == Ino::ROOT && self.config.mount_prefix.is_empty();
        if root_of_bucket || parent_inode.posix.mode.is_some() {
            return;
        }
        let in_flight =
            self.meta_changes.values().any(|change| change.ino == parent && change.edit == MetadataEdit::Hint);
        if !in_flight {
            self.change_metadata(now, parent, MetaWaiter::Nobody, MetadataEdit::Hint);
        }
    }
}
