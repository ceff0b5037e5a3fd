//! Writing files: random writes, appends, truncation, and committing them to S3.
//!
//! Problems this module solves:
//! - A file open for writing is its **base** object (pinned by ETag, possibly truncated) plus
//!   **unwritten extents** in memory. Reads in this mount see the extents laid over the base,
//!   and `stat` shows the current size, from the first write on.
//! - **Committing** (at flush, fsync, close, and when memory runs short) makes S3 hold exactly
//!   the file's current content: a file no larger than one part goes up in one PUT; a larger one
//!   in a multipart upload where unchanged ranges of the base of at least the store's minimum
//!   part size are copied server-side (UploadPartCopy) and only changed parts are uploaded.
//! - **Streaming**: a file written from the start (new, or truncated to zero) starts its
//!   multipart upload as soon as its first part is full, and uploads parts while the writer is
//!   still writing, so memory stays bounded and `close` only uploads the tail. Part sizes grow
//!   on a schedule so one file can reach 5 TiB within 10,000 parts.
//! - **The base is pinned**: every GET and copy of base bytes carries `If-Match`, a PUT carries
//!   `If-Match` (or `If-None-Match: *` for a new file), and a multipart upload is checked with
//!   HEAD before it completes. If another client replaced the object meanwhile the commit fails
//!   with ESTALE (EEXIST for a name another client created), and nothing of theirs is
//!   overwritten by us.
//! - **Ambiguous failures** (a reset after S3 applied the request) are resolved, not guessed:
//!   every object this mount writes carries a write id in its metadata; a PUT answered 412 or a
//!   CompleteMultipartUpload answered NoSuchUpload on a retry checks with HEAD whether the
//!   object is ours. A CreateMultipartUpload that needed retries may have left an upload behind:
//!   the commit lists the key's uploads and aborts the ones nobody here uses.
//! - A failed commit aborts its upload and reaches the caller as an errno; nothing is left
//!   behind.
//! - Memory is bounded by `max_dirty_bytes`: past it, writes wait (backpressure) while streamed
//!   parts upload or the largest file commits.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{Bytes, BytesMut};
use rand_core::Rng;

use crate::calls::{CallId, Purpose};
use crate::copy::{CopyMetadata, ObjectCopy};
use crate::errno::{Errno, errno_for_s3_error};
use crate::extents::Extents;
use crate::fuse_types::{FileKind, FuseOp, FuseReply, OpenFlags, OpenReplyFlags, SetAttrChanges};
use crate::ids::{FileHandle, FuseReqId, Ino};
use crate::inode::ObjectMetadata;
use crate::machine::Core;
use crate::s3_types::{
    Body, ByteRange, CompletedPart, ETag, RequestBody, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, UploadId,
};
use crate::time::Instant;

/// The metadata key under which every object this mount writes carries its write id.
pub const WRITE_ID_METADATA: &str = "goofys-write-id";

/// The object a file being written builds on.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Base {
    pub etag: ETag,
    pub size_bytes: u64,
}

/// A multipart upload of this file in progress.
#[derive(Debug)]
struct Upload {
    id: UploadIdState,
    parts: BTreeMap<u32, Part>,
    /// Bytes `[0, streamed_until)` belong to parts streamed while the file was written.
    streamed_until: u64,
    /// A CreateMultipartUpload of this file needed more than one attempt: an upload may have
    /// been created whose id we never heard.
    create_was_ambiguous: bool,
    /// The metadata the upload was created with (the object gets it at completion).
    metadata: ObjectMetadata,
}

#[derive(Debug)]
enum UploadIdState {
    Creating(CallId),
    Ready(UploadId),
}

/// One part of a multipart upload.
#[derive(Debug)]
struct Part {
    start: u64,
    end: u64,
    state: PartState,
}

#[derive(Debug)]
enum PartState {
    /// Waiting for base bytes; `buffer` already holds zeros and the written bytes.
    Fetching {
        buffer: BytesMut,
        gets: BTreeSet<CallId>,
    },
    /// Bytes ready to upload.
    Ready(Bytes),
    /// Every byte is in the file's extents, which stay as they are until the part is done
    /// (writes over it commit first): the part is sent as slices of them, never copied.
    Written,
    /// To be copied server-side from the base.
    Copy,
    /// Being uploaded or copied; `body_bytes` is memory of its own (a buffer built for the part,
    /// counted as unwritten memory), 0 when it is sent from the extents or copied.
    Sending {
        call: CallId,
        body_bytes: u64,
    },
    Done(ETag),
}

/// A commit in progress.
#[derive(Debug)]
struct Commit {
    /// Flush and fsync requests waiting for this commit's result.
    waiters: Vec<FuseReqId>,
    size_bytes: u64,
    /// The metadata the object must have when the commit succeeds (write id included).
    metadata: ObjectMetadata,
    stage: CommitStage,
}

#[derive(Debug)]
enum CommitStage {
    /// A single PUT, waiting for base bytes.
    PutFetching {
        /// `None`: the extents hold every byte, and the PUT sends them as they are.
        buffer: Option<BytesMut>,
        gets: BTreeSet<CallId>,
    },
    Putting(CallId),
    /// Multipart: parts being prepared and sent.
    Parts,
    /// HEAD before completing: is the base still what we built on?
    Checking(CallId),
    Completing(CallId),
    /// HEAD after an ambiguous answer: is the object the one we wrote?
    Verifying {
        call: CallId,
        otherwise: Errno,
    },
    /// The commit failed; its upload is being aborted (then leftovers are cleaned up, if a
    /// CreateMultipartUpload was ambiguous).
    Aborting {
        failure: Errno,
        then_cleanup: bool,
    },
    /// Looking for uploads an ambiguous CreateMultipartUpload may have left, and aborting them.
    CleaningUp {
        calls: BTreeSet<CallId>,
        listed: bool,
        outcome: Result<ETag, Errno>,
    },
    /// The completed upload carries the metadata it was created with; the file's attributes
    /// changed since (a chmod or utimes while writing): a copy onto itself writes them.
    Relabeling {
        copy: Box<ObjectCopy>,
        /// An ambiguous CreateMultipartUpload: look for leftovers afterwards.
        then_cleanup: bool,
    },
}

/// A file with writers or unwritten data.
#[derive(Debug)]
pub(crate) struct WriteFile {
    key: String,
    base: Option<Base>,
    /// Bytes `[0, base_valid_bytes)` of the base are part of the file (less after truncation).
    base_valid_bytes: u64,
    size_bytes: u64,
    extents: Extents,
    /// There is something to commit.
    dirty: bool,
    /// Unlinked while open: nothing is committed any more.
    unlinked: bool,
    /// Open writable handles.
    handles: u32,
    upload: Option<Upload>,
    commit: Option<Commit>,
    /// Requests waiting for the commit in progress (or for memory), run again after it.
    blocked: Vec<(FuseReqId, FuseOp)>,
    /// The error of a commit nobody waited for, reported by the next flush.
    unreported_failure: Option<Errno>,
    /// The file's content can no longer reach S3, and every later flush, write and read
    /// through it reports this errno: EIO when streamed parts went with a failed upload,
    /// ESTALE/EEXIST when another client replaced or created the object (the commit was pinned
    /// to what this mount saw). The last close drops the write state, so the mount shows S3's
    /// object again.
    doomed: Option<Errno>,
    /// Identifies the next object this file writes.
    write_id: String,
    /// The content type and user metadata the next commit writes (besides the write id): the
    /// base object's, with this mount's changes of attributes and xattrs.
    pub(crate) metadata: ObjectMetadata,
}

impl WriteFile {
    /// Bytes of request bodies this file holds besides its extents. Only a commit builds them
    /// (a PUT or parts merged with base bytes); between commits a streaming upload's parts are
    /// slices of the extents or done, so writes, which ask this each time, walk no parts.
    fn body_bytes_besides_extents(&self) -> u64 {
        let Some(commit) = &self.commit else { return 0 };
        let put_buffer_bytes = match &commit.stage {
            CommitStage::PutFetching { buffer: Some(buffer), .. } => buffer.len() as u64,
            _ => 0,
        };
        let part_bytes: u64 = self
            .upload
            .iter()
            .flat_map(|upload| upload.parts.values())
            .map(|part| match &part.state {
                PartState::Fetching { buffer, .. } => buffer.len() as u64,
                PartState::Ready(bytes) => bytes.len() as u64,
                PartState::Sending { body_bytes, .. } => *body_bytes,
                PartState::Written | PartState::Copy | PartState::Done(_) => 0,
            })
            .sum();
        put_buffer_bytes + part_bytes
    }

    /// Whether `[start, end)` touches bytes that were streamed and dropped from memory.
    fn touches_streamed(&self, start: u64, end: u64) -> bool {
        self.upload.as_ref().is_some_and(|upload| start < upload.streamed_until && end > 0 && start < end)
    }

    fn base_etag(&self) -> Option<ETag> {
        self.base.as_ref().map(|base| base.etag.clone())
    }

    /// The metadata an object written now carries: the file's, with its write id.
    fn metadata_to_write(&self) -> ObjectMetadata {
        let mut metadata = self.metadata.clone();
        metadata.user.insert(WRITE_ID_METADATA.to_owned(), self.write_id.clone());
        metadata
    }

    /// The file replaces `base` rather than building on it: its commit is conditional on
    /// `base`'s ETag and uses none of its bytes.
    pub(crate) fn replace_base(&mut self, base: Base) {
        self.base = Some(base);
        self.base_valid_bytes = 0;
        self.dirty = true;
    }

    /// The file needs a commit (its attributes changed).
    pub(crate) fn mark_dirty(&mut self) {
        self.dirty = true;
    }

    pub(crate) fn is_committing(&self) -> bool {
        self.commit.is_some()
    }

    pub(crate) fn has_writers(&self) -> bool {
        self.handles > 0
    }

    /// The bytes changed: the modification time is the commit's from now on, not one set
    /// earlier with utimes.
    fn data_changed(&mut self) {
        self.dirty = true;
        self.metadata.user.remove(crate::posix::MTIME_METADATA);
        self.metadata.user.remove(crate::posix::CTIME_METADATA);
    }
}

impl Core {
    pub(crate) fn new_write_id(&mut self) -> String {
        format!("{:016x}", self.rng.next_u64())
    }

    /// A writable handle of `ino` opened: make sure it has a write state.
    pub(crate) fn attach_writer(&mut self, now: Instant, ino: Ino, truncate: bool) {
        if !self.writes.contains_key(&ino) {
            let inode = self.inodes.get(ino).expect("a known inode");
            let base = inode.etag.clone().map(|etag| Base { etag, size_bytes: inode.size_bytes });
            let size_bytes = if base.is_some() { inode.size_bytes } else { 0 };
            let key = inode.key.clone();
            let metadata = inode.metadata.clone().unwrap_or_default();
            let write_id = self.new_write_id();
            let file = WriteFile {
                key,
                base_valid_bytes: size_bytes,
                size_bytes,
                // A file that is not in S3 yet must be created even if nothing is written.
                dirty: base.is_none(),
                base,
                extents: Extents::default(),
                unlinked: false,
                handles: 0,
                upload: None,
                commit: None,
                blocked: Vec::new(),
                unreported_failure: None,
                doomed: None,
                write_id,
                metadata,
            };
            self.writes.insert(ino, file);
            self.inodes.set_writing(ino, true);
        }
        let file = self.writes.get_mut(&ino).expect("just ensured");
        file.handles += 1;
        if truncate {
            self.truncate_file(now, ino, 0);
        }
    }

    /// A writable handle of `ino` closed.
    pub(crate) fn detach_writer(&mut self, now: Instant, ino: Ino) {
        let Some(file) = self.writes.get_mut(&ino) else { return };
        file.handles = file.handles.saturating_sub(1);
        if file.handles == 0 && file.dirty && file.commit.is_none() && !file.unlinked && file.doomed.is_none() {
            // The kernel flushes on close; this catches writes through a handle closed without
            // one (and mmap writes). Nobody waits: a failure is logged.
            self.start_commit(now, ino, None);
        }
        self.drop_write_state_if_idle(ino);
    }

    fn drop_write_state_if_idle(&mut self, ino: Ino) {
        let Some(file) = self.writes.get(&ino) else { return };
        let idle = file.handles == 0 && file.commit.is_none() && file.upload.is_none() && file.blocked.is_empty();
        if idle && (!file.dirty || file.unlinked || file.doomed.is_some()) {
            if let Some(errno) = file.unreported_failure.or(file.doomed.filter(|_| file.dirty)) {
                tracing::warn!(key = %file.key, ?errno, "a file closed with unwritten data that could not be written");
            }
            let doomed = file.doomed.is_some();
            self.writes.remove(&ino);
            self.inodes.set_writing(ino, false);
            if doomed {
                // What this mount showed never reached S3: ask S3 what the file is.
                self.inodes.expire_stat(ino);
            }
        }
    }

    /// `create`: a new file that exists in this mount until its first commit puts it in S3.
    pub(crate) fn create(
        &mut self,
        now: Instant,
        id: FuseReqId,
        parent: Ino,
        name: &std::ffi::OsStr,
        flags: OpenFlags,
        attrs: crate::posix::PosixAttrs,
    ) {
        let name = match self.valid_new_name(parent, name) {
            Ok(name) => name,
            Err(errno) => return self.reply_error(id, errno),
        };
        if flags.has(OpenFlags::O_EXCL)
            && matches!(self.inodes.lookup_cached(parent, &name, now), crate::inode::CachedLookup::Hit(_))
        {
            return self.reply_error(id, Errno::EEXIST);
        }
        let ino = self.inodes.create_local_file(parent, &name, self.wall_time(now), now);
        let reader_flags = OpenFlags((flags.0 & !OpenFlags::O_ACCMODE) | OpenFlags::O_RDWR);
        let fh = self.allocate_handle();
        self.inodes.add_lookup(ino);
        self.insert_handle(fh, ino, reader_flags, flags.has(OpenFlags::O_APPEND));
        self.attach_writer(now, ino, false);
        let key = self.inodes.get(ino).map(|inode| inode.key.clone()).unwrap_or_default();
        self.take_over_unlinked(&key, ino);
        if !attrs.is_empty() {
            // A mode or owner other than the mount's defaults travels with the first commit.
            let file = self.writes.get_mut(&ino).expect("attached");
            attrs.write_into(&mut file.metadata.user);
            if let Some(inode) = self.inodes.get_mut(ino) {
                inode.posix = attrs;
            }
            self.hint_parent(now, ino);
        }
        let inode = self.inodes.get(ino).expect("just created");
        let entry = self.inodes.entry(inode, &self.config);
        self.reply(id, FuseReply::Created { entry, fh, flags: OpenReplyFlags::default() });
    }

    /// `write`: lays the bytes into the file's extents.
    pub(crate) fn write(&mut self, now: Instant, id: FuseReqId, fh: FileHandle, offset: u64, data: Body) {
        let Some(handle) = self.files.get(&fh) else {
            return self.reply_error(id, Errno::EBADF);
        };
        if !handle.writable {
            return self.reply_error(id, Errno::EBADF);
        }
        let (ino, append) = (handle.ino, handle.append);
        let max_file_size = self.config.max_file_size_bytes();
        let Some(file) = self.writes.get_mut(&ino) else {
            return self.reply_error(id, Errno::EBADF);
        };
        if let Some(errno) = file.doomed {
            return self.reply_error(id, data_errno(errno));
        }
        let offset = if append { file.size_bytes } else { offset };
        let len = data.len() as u64;
        let end = offset.saturating_add(len);
        if end > max_file_size {
            return self.reply_error(id, Errno::EFBIG);
        }
        if file.commit.is_some() {
            file.blocked.push((id, FuseOp::Write { ino, fh, offset, data }));
            return;
        }
        if file.touches_streamed(offset, end) {
            // Bytes already uploaded as parts are no longer in memory: commit them, then
            // write over the committed object.
            file.blocked.push((id, FuseOp::Write { ino, fh, offset, data }));
            return self.start_commit(now, ino, None);
        }
        if self.dirty_bytes_total() + len > self.config.max_dirty_bytes && self.dirty_bytes_total() > 0 {
            return self.wait_for_memory(now, ino, id, FuseOp::Write { ino, fh, offset, data });
        }
        let file = self.writes.get_mut(&ino).expect("checked above");
        file.extents.write(offset, data.0);
        file.size_bytes = file.size_bytes.max(end);
        file.data_changed();
        let size_bytes = file.size_bytes;
        self.inodes.set_size(ino, size_bytes, self.wall_time(now));
        self.reply(id, FuseReply::Written { size: len as u32 });
        self.stream_parts(now, ino);
    }

    /// Memory held for written data not yet in S3: the extents, and the part bodies built from
    /// them (waiting for base bytes, ready, or on their way).
    pub(crate) fn dirty_bytes_total(&self) -> u64 {
        self.writes.values().map(|file| file.extents.total_bytes() + file.body_bytes_besides_extents()).sum()
    }

    /// A write that would exceed the memory limit waits until uploads free memory; if nothing
    /// is under way that will, the file with the most unwritten bytes is committed.
    fn wait_for_memory(&mut self, now: Instant, ino: Ino, id: FuseReqId, op: FuseOp) {
        self.writes.get_mut(&ino).expect("a write state").blocked.push((id, op));
        let freeing = self
            .writes
            .values()
            .any(|file| file.commit.is_some() || file.upload.as_ref().is_some_and(|upload| upload.sending()));
        if !freeing {
            let largest = self
                .writes
                .iter()
                .filter(|(_, file)| file.commit.is_none() && !file.extents.is_empty())
                .max_by_key(|(ino, file)| (file.extents.total_bytes(), std::cmp::Reverse(**ino)))
                .map(|(&ino, _)| ino);
            if let Some(largest) = largest {
                self.start_commit(now, largest, None);
            }
        }
    }

    /// Runs again the requests that waited for memory or for a commit.
    fn run_blocked(&mut self, now: Instant) {
        let mut blocked = Vec::new();
        for file in self.writes.values_mut() {
            if file.commit.is_none() {
                blocked.append(&mut file.blocked);
            }
        }
        blocked.sort_by_key(|(id, _)| *id);
        for (id, op) in blocked {
            self.handle_fuse(now, id, op);
        }
    }

    /// `flush` and `fsync`: commit what this handle's file holds, answer when S3 has it.
    pub(crate) fn flush(&mut self, now: Instant, id: FuseReqId, fh: FileHandle) {
        let Some(handle) = self.files.get(&fh) else {
            return self.reply_error(id, Errno::EBADF);
        };
        let ino = handle.ino;
        // A reader has nothing to flush (close(2) flushes every handle).
        let Some(file) = self.writes.get_mut(&ino).filter(|_| handle.writable) else {
            return self.reply(id, FuseReply::Empty);
        };
        if let Some(commit) = &mut file.commit {
            commit.waiters.push(id);
            return;
        }
        if let Some(errno) = file.unreported_failure.take() {
            return self.reply_error(id, errno);
        }
        if let Some(errno) = file.doomed {
            return self.reply_error(id, errno);
        }
        if file.dirty && !file.unlinked {
            return self.start_commit(now, ino, Some(id));
        }
        self.reply(id, FuseReply::Empty)
    }

    /// `setattr` with a size (or nothing): truncate or extend with zeros. Attribute changes are
    /// `attrs.rs`'s.
    pub(crate) fn setattr_size(&mut self, now: Instant, id: FuseReqId, ino: Ino, changes: SetAttrChanges) {
        let Some(inode) = self.inodes.get(ino) else {
            return self.reply_error(id, Errno::ENOENT);
        };
        let Some(size) = changes.size_bytes else {
            let attr = self.inodes.attr(inode, &self.config);
            let ttl = self.config.stat_cache_ttl;
            return self.reply(id, FuseReply::Attr { attr, ttl });
        };
        if inode.kind == FileKind::Directory {
            return self.reply_error(id, Errno::EISDIR);
        }
        if size > self.config.max_file_size_bytes() {
            return self.reply_error(id, Errno::EFBIG);
        }
        let op = FuseOp::SetAttr { ino, fh: None, changes };
        let opened_here = self.writes.contains_key(&ino);
        if !opened_here {
            let revalidated = self.revalidated.remove(&id);
            let stale = now >= inode.stat_expiry || inode.metadata.is_none();
            if stale && !self.inodes.is_writing(ino) && !revalidated {
                // Truncating a file nobody writes here: it must be current first.
                self.revalidated.insert(id);
                return self.revalidate_then(now, id, ino, op);
            }
            self.attach_writer(now, ino, false);
        }
        let file = self.writes.get_mut(&ino).expect("attached");
        if file.commit.is_some() || file.touches_streamed(size, u64::MAX) {
            file.blocked.push((id, op));
            if file.commit.is_none() {
                self.start_commit(now, ino, None);
            }
            if !opened_here {
                self.writes.get_mut(&ino).expect("attached").handles -= 1;
            }
            return;
        }
        self.truncate_file(now, ino, size);
        if opened_here {
            let inode = self.inodes.get(ino).expect("known");
            let attr = self.inodes.attr(inode, &self.config);
            let ttl = self.config.stat_cache_ttl;
            return self.reply(id, FuseReply::Attr { attr, ttl });
        }
        // `truncate` on a file nobody has open: commit at once and answer after.
        let file = self.writes.get_mut(&ino).expect("attached");
        file.handles -= 1;
        self.start_commit(now, ino, None);
        let file = self.writes.get_mut(&ino).expect("committing");
        if let Some(commit) = &mut file.commit {
            commit.waiters.push(id);
            self.setattr_waiters.insert(id, ino);
        }
    }

    fn truncate_file(&mut self, now: Instant, ino: Ino, size: u64) {
        let file = self.writes.get_mut(&ino).expect("a write state");
        file.extents.truncate(size);
        file.base_valid_bytes = file.base_valid_bytes.min(size);
        file.size_bytes = size;
        file.data_changed();
        self.inodes.set_size(ino, size, self.wall_time(now));
    }

    // ---- reads of a file being written ----------------------------------------------------

    /// Plans a read of a file being written: `Some((object_end, reply_end))`, where the object
    /// supplies `[offset, object_end)` and the reply is `[offset, reply_end)`; `None` if the read
    /// waits for a commit.
    pub(crate) fn plan_read_while_writing(
        &mut self,
        now: Instant,
        id: FuseReqId,
        fh: FileHandle,
        ino: Ino,
        offset: u64,
        size: u32,
    ) -> Option<(u64, u64)> {
        let file = self.writes.get_mut(&ino).expect("caller checked");
        if let Some(errno) = file.doomed {
            // Bytes that were streamed went with a failed upload, or S3 holds another object.
            self.reply_error(id, data_errno(errno));
            return None;
        }
        let reply_end = offset.saturating_add(u64::from(size)).min(file.size_bytes);
        let op = FuseOp::Read { ino, fh, offset, size };
        if file.commit.is_some() {
            file.blocked.push((id, op));
            return None;
        }
        if file.touches_streamed(offset, reply_end) {
            file.blocked.push((id, op));
            self.start_commit(now, ino, None);
            return None;
        }
        let object_end = reply_end.min(file.base_valid_bytes);
        if offset >= object_end || file.extents.covers(offset, object_end) {
            return Some((offset, reply_end));
        }
        Some((object_end, reply_end))
    }

    /// The reply to a read of a file being written: the object's bytes, zeros past the base,
    /// the unwritten bytes on top.
    pub(crate) fn compose_read(&self, ino: Ino, start: u64, reply_end: u64, object_bytes: Bytes) -> Bytes {
        let len = reply_end.saturating_sub(start) as usize;
        let mut out = vec![0u8; len];
        let Some(file) = self.writes.get(&ino) else {
            let take = object_bytes.len().min(len);
            out[..take].copy_from_slice(&object_bytes[..take]);
            return Bytes::from(out);
        };
        let valid = file.base_valid_bytes.saturating_sub(start).min(object_bytes.len() as u64) as usize;
        let valid = valid.min(len);
        out[..valid].copy_from_slice(&object_bytes[..valid]);
        file.extents.overlay(start, &mut out);
        Bytes::from(out)
    }

    /// The size of the object under a file this mount is writing (0 if it has none yet); `None`
    /// if the file is not being written.
    pub(crate) fn written_base_size(&self, ino: Ino) -> Option<u64> {
        self.writes.get(&ino).map(|file| file.base.as_ref().map_or(0, |base| base.size_bytes))
    }

    /// The files being written, with their keys.
    pub(crate) fn written_keys(&self) -> impl Iterator<Item = (Ino, String)> + '_ {
        self.writes.iter().map(|(&ino, file)| (ino, file.key.clone()))
    }

    /// Whether this mount is committing `ino`'s bytes.
    pub(crate) fn is_committing(&self, ino: Ino) -> bool {
        self.writes.get(&ino).is_some_and(WriteFile::is_committing)
    }

    /// The current size of a file being written, if it is.
    pub(crate) fn writing_size(&self, ino: Ino) -> Option<u64> {
        self.writes.get(&ino).map(|file| file.size_bytes)
    }

    /// Marks a file being written as unlinked: nothing of it is committed any more.
    pub(crate) fn unlink_write_state(&mut self, ino: Ino) {
        if let Some(file) = self.writes.get_mut(&ino) {
            file.unlinked = true;
            file.dirty = false;
        }
        self.abort_stream_if_idle(ino);
    }

    fn abort_stream_if_idle(&mut self, ino: Ino) {
        let Some(file) = self.writes.get_mut(&ino) else { return };
        if file.commit.is_none() && file.upload.is_some() {
            let failure = Errno::ENOENT;
            let metadata = file.metadata_to_write();
            file.commit = Some(Commit { waiters: Vec::new(), size_bytes: 0, metadata, stage: CommitStage::Parts });
            self.fail_commit(Instant::ZERO, ino, failure);
        }
    }

    // ---- streaming ------------------------------------------------------------------------

    /// Starts uploading parts of a file written from its start as soon as they are full.
    fn stream_parts(&mut self, now: Instant, ino: Ino) {
        let file = self.writes.get(&ino).expect("a write state");
        if file.commit.is_some() || file.unlinked || file.doomed.is_some() || file.base_valid_bytes > 0 {
            return;
        }
        let mut new_parts = Vec::new();
        let mut next_number = file.upload.as_ref().map_or(1, |u| u.parts.len() as u32 + 1);
        let mut at = file.upload.as_ref().map_or(0, |u| u.streamed_until);
        loop {
            let part_size = self.config.write_part_size(next_number);
            let end = at + part_size;
            // Stream only parts that are full and not the file's last bytes: a file of one
            // part goes up in a single PUT at close.
            if file.size_bytes <= end || !file.extents.covers(at, end) || next_number > self.config.multipart_max_parts
            {
                break;
            }
            new_parts.push((next_number, at, end));
            next_number += 1;
            at = end;
        }
        if new_parts.is_empty() {
            return;
        }
        if self.writes[&ino].upload.is_none() {
            let call = self.create_upload_call(now, ino);
            self.writes.get_mut(&ino).expect("a write state").upload = Some(Upload {
                id: UploadIdState::Creating(call),
                parts: BTreeMap::new(),
                streamed_until: 0,
                create_was_ambiguous: false,
                metadata: self.writes[&ino].metadata_to_write(),
            });
        }
        let file = self.writes.get_mut(&ino).expect("a write state");
        let upload = file.upload.as_mut().expect("just ensured");
        for (number, start, end) in new_parts {
            upload.parts.insert(number, Part { start, end, state: PartState::Written });
            upload.streamed_until = end;
        }
        self.send_parts(now, ino);
    }

    fn create_upload_call(&mut self, now: Instant, ino: Ino) -> CallId {
        let file = &self.writes[&ino];
        let metadata = file.metadata_to_write();
        let request = S3Request::CreateMultipartUpload {
            key: file.key.clone(),
            content_type: metadata.content_type,
            metadata: metadata.user,
        };
        self.start_call(now, Purpose::WriteCreateUpload { ino }, request)
    }

    /// Sends parts that are ready, up to the in-flight limit.
    fn send_parts(&mut self, now: Instant, ino: Ino) {
        let limit = self.config.part_uploads_inflight_max.max(1) as usize;
        let file = &self.writes[&ino];
        let Some(upload) = &file.upload else { return };
        let UploadIdState::Ready(upload_id) = &upload.id else { return };
        let sending = upload.parts.values().filter(|part| matches!(part.state, PartState::Sending { .. })).count();
        let to_send: Vec<u32> = upload
            .parts
            .iter()
            .filter(|(_, part)| matches!(part.state, PartState::Ready(_) | PartState::Written | PartState::Copy))
            .map(|(&number, _)| number)
            .take(limit.saturating_sub(sending))
            .collect();
        let (key, upload_id, base) = (file.key.clone(), upload_id.clone(), file.base_etag());
        for number in to_send {
            let file = self.writes.get_mut(&ino).expect("a write state");
            let part = file.upload.as_mut().expect("an upload").parts.get_mut(&number).expect("listed");
            // A built buffer is memory of its own until the part is done; the extents' slices
            // are the extents' memory, counted already.
            let (body, body_bytes) = match std::mem::replace(&mut part.state, PartState::Copy) {
                PartState::Ready(bytes) => {
                    let body_bytes = bytes.len() as u64;
                    (Some(RequestBody::from(bytes)), body_bytes)
                }
                PartState::Written => (Some(RequestBody::from_chunks(file.extents.slices(part.start, part.end))), 0),
                _ => (None, 0),
            };
            let request = match body {
                Some(body) => {
                    S3Request::UploadPart { key: key.clone(), upload_id: upload_id.clone(), part_number: number, body }
                }
                None => S3Request::UploadPartCopy {
                    key: key.clone(),
                    upload_id: upload_id.clone(),
                    part_number: number,
                    source_key: key.clone(),
                    source_range: Some(ByteRange::new(part.start, part.end)),
                    source_if_match: base.clone(),
                },
            };
            let call = self.start_call(now, Purpose::WritePart { ino, part: number }, request);
            let part = self.writes.get_mut(&ino).expect("a write state").upload.as_mut().expect("an upload");
            part.parts.get_mut(&number).expect("listed").state = PartState::Sending { call, body_bytes };
        }
    }

    // ---- committing -----------------------------------------------------------------------

    /// Starts a commit of `ino`; `waiter` (a flush or fsync) gets its result.
    pub(crate) fn start_commit(&mut self, now: Instant, ino: Ino, waiter: Option<FuseReqId>) {
        let file = self.writes.get_mut(&ino).expect("a write state");
        if let Some(commit) = &mut file.commit {
            commit.waiters.extend(waiter);
            return;
        }
        let waiters: Vec<FuseReqId> = waiter.into_iter().collect();
        if file.unlinked || (!file.dirty && file.upload.is_none()) {
            for id in waiters {
                self.reply(id, FuseReply::Empty);
            }
            return;
        }
        if let Some(errno) = file.doomed {
            for id in waiters {
                self.reply_error(id, errno);
            }
            return;
        }
        let size = file.size_bytes;
        let single_put = file.upload.is_none() && size <= self.config.write_part_size(1);
        if single_put {
            let (buffer, gaps) = if file.extents.covers(0, size) {
                (None, Vec::new())
            } else {
                let (buffer, gaps) = build_buffer(file, 0, size);
                (Some(buffer), gaps)
            };
            file.commit = Some(Commit {
                waiters,
                size_bytes: size,
                metadata: file.metadata_to_write(),
                stage: CommitStage::PutFetching { buffer, gets: BTreeSet::new() },
            });
            let gets = self.fetch_base(now, ino, 0, &gaps);
            if let Some(CommitStage::PutFetching { gets: pending, .. }) =
                self.writes.get_mut(&ino).and_then(|f| f.commit.as_mut()).map(|c| &mut c.stage)
            {
                pending.extend(gets);
            }
        } else {
            let metadata = file.metadata_to_write();
            file.commit = Some(Commit { waiters, size_bytes: size, metadata, stage: CommitStage::Parts });
            self.plan_remaining_parts(now, ino);
        }
        self.advance_commit(now, ino);
    }

    /// Adds the parts that cover what streaming did not, deciding for each whether to copy it
    /// from the base or to upload it.
    fn plan_remaining_parts(&mut self, now: Instant, ino: Ino) {
        let min_part = self.config.multipart_min_part_size_bytes;
        if self.writes[&ino].upload.is_none() {
            let call = self.create_upload_call(now, ino);
            self.writes.get_mut(&ino).expect("a write state").upload = Some(Upload {
                id: UploadIdState::Creating(call),
                parts: BTreeMap::new(),
                streamed_until: 0,
                create_was_ambiguous: false,
                metadata: self.writes[&ino].metadata_to_write(),
            });
        }
        let file = &self.writes[&ino];
        let upload = file.upload.as_ref().expect("ensured");
        let mut number = upload.parts.len() as u32 + 1;
        let mut at = upload.streamed_until;
        let size = file.size_bytes;
        let mut planned = Vec::new();
        while at < size || (number == 1 && size == 0) {
            let end = (at + self.config.write_part_size(number)).min(size);
            let last = end == size;
            let copyable = file.base.is_some()
                && end <= file.base_valid_bytes
                && !file.extents.overlaps(at, end)
                && (end - at >= min_part || last);
            planned.push((number, at, end, copyable));
            number += 1;
            at = end;
            if last {
                break;
            }
        }
        let mut fetches = Vec::new();
        let file = self.writes.get_mut(&ino).expect("a write state");
        for (number, start, end, copyable) in planned {
            let state = if copyable {
                PartState::Copy
            } else if file.extents.covers(start, end) {
                PartState::Written
            } else {
                let (buffer, gaps) = build_buffer(file, start, end);
                if gaps.is_empty() {
                    PartState::Ready(buffer.freeze())
                } else {
                    fetches.push((number, start, gaps));
                    PartState::Fetching { buffer, gets: BTreeSet::new() }
                }
            };
            file.upload.as_mut().expect("ensured").parts.insert(number, Part { start, end, state });
        }
        for (number, start, gaps) in fetches {
            let gets = self.fetch_base(now, ino, number, &gaps);
            let _ = start;
            let part = self.writes.get_mut(&ino).expect("a write state").upload.as_mut().expect("an upload");
            if let Some(Part { state: PartState::Fetching { gets: pending, .. }, .. }) = part.parts.get_mut(&number) {
                pending.extend(gets);
            }
        }
    }

    /// Starts GETs of base bytes for part `part` (0: the single PUT).
    fn fetch_base(&mut self, now: Instant, ino: Ino, part: u32, gaps: &[(u64, u64)]) -> Vec<CallId> {
        let file = &self.writes[&ino];
        let (key, etag) = (file.key.clone(), file.base_etag());
        let piece = self.config.read_part_size_bytes.max(1);
        let mut calls = Vec::new();
        for &(start, end) in gaps {
            let mut at = start;
            while at < end {
                let piece_end = (at + piece).min(end);
                let request = S3Request::GetObject {
                    key: key.clone(),
                    range: Some(ByteRange::new(at, piece_end)),
                    if_match: etag.clone(),
                };
                calls.push(self.start_call(now, Purpose::WriteGet { ino, part }, request));
                at = piece_end;
            }
        }
        calls
    }

    /// Moves a commit forward when nothing it waits for is outstanding.
    fn advance_commit(&mut self, now: Instant, ino: Ino) {
        let Some(file) = self.writes.get(&ino) else { return };
        let Some(commit) = &file.commit else { return };
        match &commit.stage {
            CommitStage::PutFetching { gets, .. } if gets.is_empty() => {
                let file = self.writes.get_mut(&ino).expect("a write state");
                let commit = file.commit.as_mut().expect("a commit");
                let CommitStage::PutFetching { buffer, .. } = std::mem::replace(&mut commit.stage, CommitStage::Parts)
                else {
                    unreachable!()
                };
                let metadata = file.commit.as_ref().expect("a commit").metadata.clone();
                let body = match buffer {
                    Some(buffer) => RequestBody::from(buffer.freeze()),
                    None => RequestBody::from_chunks(file.extents.slices(0, file.size_bytes)),
                };
                let request = S3Request::PutObject {
                    key: file.key.clone(),
                    body,
                    content_type: metadata.content_type,
                    metadata: metadata.user,
                    if_match: file.base_etag(),
                    if_none_match_any: file.base.is_none(),
                };
                let call = self.start_call(now, Purpose::WritePut { ino }, request);
                self.writes.get_mut(&ino).expect("a write state").commit.as_mut().expect("a commit").stage =
                    CommitStage::Putting(call);
            }
            CommitStage::Parts => {
                self.send_parts(now, ino);
                let file = &self.writes[&ino];
                let upload = file.upload.as_ref().expect("a multipart commit has an upload");
                let all_done = upload.parts.values().all(|part| matches!(part.state, PartState::Done(_)));
                if all_done && matches!(upload.id, UploadIdState::Ready(_)) {
                    let request = S3Request::HeadObject { key: file.key.clone() };
                    let call = self.start_call(now, Purpose::WriteHead { ino }, request);
                    self.writes.get_mut(&ino).expect("a write state").commit.as_mut().expect("a commit").stage =
                        CommitStage::Checking(call);
                }
            }
            _ => {}
        }
    }

    /// Sends CompleteMultipartUpload with every part.
    fn complete_upload(&mut self, now: Instant, ino: Ino) {
        let file = &self.writes[&ino];
        let upload = file.upload.as_ref().expect("an upload");
        let UploadIdState::Ready(upload_id) = &upload.id else { unreachable!("parts were sent") };
        let parts = upload
            .parts
            .iter()
            .map(|(&part_number, part)| match &part.state {
                PartState::Done(etag) => CompletedPart { part_number, etag: etag.clone() },
                other => unreachable!("completing with part {part_number} in {other:?}"),
            })
            .collect();
        let request = S3Request::CompleteMultipartUpload { key: file.key.clone(), upload_id: upload_id.clone(), parts };
        let call = self.start_call(now, Purpose::WriteComplete { ino }, request);
        self.writes.get_mut(&ino).expect("a write state").commit.as_mut().expect("a commit").stage =
            CommitStage::Completing(call);
    }

    // ---- S3 results -----------------------------------------------------------------------

    pub(crate) fn write_get_done(
        &mut self,
        now: Instant,
        ino: Ino,
        part: u32,
        call_id: CallId,
        request: &S3Request,
        result: S3Result,
    ) {
        let S3Request::GetObject { range: Some(range), .. } = request else { unreachable!("ranged GETs") };
        match result {
            Ok(S3Response::GetObject(output)) => {
                self.write_data_arrived(now, ino, part, call_id, output.range_start, output.body.0, true, range.end)
            }
            Ok(other) => {
                let error = crate::lookup::unexpected_response("GetObject", &other);
                self.fail_commit(now, ino, errno_for_s3_error(&error))
            }
            Err(error) => self.fail_commit(now, ino, base_errno(&error)),
        }
    }

    /// Base bytes for a commit arrived (all of a GET's range, or a prefix of it when its body
    /// was cut short and the rest is on its way).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write_data_arrived(
        &mut self,
        now: Instant,
        ino: Ino,
        part: u32,
        call_id: CallId,
        data_start: u64,
        data: Bytes,
        complete: bool,
        range_end: u64,
    ) {
        let Some(file) = self.writes.get_mut(&ino) else { return };
        let extents = &file.extents;
        let (buffer, buffer_start, gets) = match (part, file.commit.as_mut()) {
            (0, Some(Commit { stage: CommitStage::PutFetching { buffer: Some(buffer), gets }, .. })) => {
                (buffer, 0, gets)
            }
            (number, _) => match file.upload.as_mut().and_then(|u| u.parts.get_mut(&number)) {
                Some(Part { start, state: PartState::Fetching { buffer, gets }, .. }) => (buffer, *start, gets),
                _ => return,
            },
        };
        if !gets.contains(&call_id) {
            return;
        }
        // Copy the object's bytes under what was written since.
        let data_end = (data_start + data.len() as u64).min(range_end);
        let mut piece = data[..(data_end - data_start) as usize].to_vec();
        extents.overlay(data_start, &mut piece);
        let offset = (data_start - buffer_start) as usize;
        buffer[offset..offset + piece.len()].copy_from_slice(&piece);
        if complete {
            gets.remove(&call_id);
        }
        let done = gets.is_empty();
        if done && part != 0 {
            let upload = file.upload.as_mut().expect("an upload");
            let part_entry = upload.parts.get_mut(&part).expect("fetching part");
            let PartState::Fetching { buffer, .. } = std::mem::replace(&mut part_entry.state, PartState::Copy) else {
                unreachable!()
            };
            part_entry.state = PartState::Ready(buffer.freeze());
        }
        if done {
            self.advance_commit(now, ino);
        }
    }

    pub(crate) fn write_create_upload_done(&mut self, now: Instant, ino: Ino, attempts: u32, result: S3Result) {
        let Some(file) = self.writes.get_mut(&ino) else { return };
        let Some(upload) = file.upload.as_mut() else { return };
        upload.create_was_ambiguous |= attempts > 1;
        match result {
            Ok(S3Response::CreateMultipartUpload { upload_id }) => {
                upload.id = UploadIdState::Ready(upload_id);
                self.send_parts(now, ino);
                self.advance_commit(now, ino);
            }
            Ok(other) => {
                let error = crate::lookup::unexpected_response("CreateMultipartUpload", &other);
                self.fail_upload(now, ino, errno_for_s3_error(&error));
            }
            Err(error) => self.fail_upload(now, ino, errno_for_s3_error(&error)),
        }
    }

    pub(crate) fn write_part_done(&mut self, now: Instant, ino: Ino, part: u32, result: S3Result) {
        let Some(file) = self.writes.get_mut(&ino) else { return };
        let Some(upload) = file.upload.as_mut() else { return };
        let Some(entry) = upload.parts.get_mut(&part) else { return };
        match result {
            Ok(S3Response::UploadPart { etag } | S3Response::UploadPartCopy { etag }) => {
                entry.state = PartState::Done(etag);
                let (start, end) = (entry.start, entry.end);
                // A streamed part's bytes are in S3 now; memory is free for more writes.
                if end <= upload.streamed_until {
                    file.extents.remove_range(start, end);
                }
                self.send_parts(now, ino);
                self.advance_commit(now, ino);
                self.run_blocked_for_memory(now);
            }
            Ok(other) => {
                let error = crate::lookup::unexpected_response("UploadPart", &other);
                self.fail_upload(now, ino, errno_for_s3_error(&error));
            }
            Err(error) => self.fail_upload(now, ino, base_errno(&error)),
        }
    }

    /// Writes that waited for memory may go on once streamed parts freed some.
    fn run_blocked_for_memory(&mut self, now: Instant) {
        if self.dirty_bytes_total() < self.config.max_dirty_bytes {
            self.run_blocked(now);
        }
    }

    pub(crate) fn write_put_done(&mut self, now: Instant, ino: Ino, result: S3Result) {
        let Some(file) = self.writes.get(&ino) else { return };
        match result {
            Ok(S3Response::PutObject { etag }) => self.commit_succeeded(now, ino, etag),
            Err(S3Error::Service(error)) if error.status == 412 || error.code == S3ErrorCode::PreconditionFailed => {
                // Our own earlier attempt may have written it (a reset after S3 applied it).
                let otherwise = conflict_errno(file);
                self.verify_ours(now, ino, otherwise);
            }
            // AWS answers a conditional PUT of a key that no longer exists with 404: another
            // client deleted the file (found by seed 12624).
            Err(S3Error::Service(error)) if error.status == 404 || error.code == S3ErrorCode::NoSuchKey => {
                self.fail_commit(now, ino, Errno::ESTALE)
            }
            Ok(other) => {
                let error = crate::lookup::unexpected_response("PutObject", &other);
                self.fail_commit(now, ino, errno_for_s3_error(&error))
            }
            Err(error) => self.fail_commit(now, ino, errno_for_s3_error(&error)),
        }
    }

    fn verify_ours(&mut self, now: Instant, ino: Ino, otherwise: Errno) {
        let key = self.writes[&ino].key.clone();
        let call = self.start_call(now, Purpose::WriteHead { ino }, S3Request::HeadObject { key });
        let commit = self.writes.get_mut(&ino).expect("a write state").commit.as_mut().expect("a commit");
        commit.stage = CommitStage::Verifying { call, otherwise };
    }

    pub(crate) fn write_head_done(&mut self, now: Instant, ino: Ino, result: S3Result) {
        let Some(file) = self.writes.get(&ino) else { return };
        let Some(commit) = &file.commit else { return };
        let found = match result {
            Ok(S3Response::HeadObject(meta)) => Some(meta),
            Err(S3Error::Service(error)) if error.status == 404 || error.code == S3ErrorCode::NoSuchKey => None,
            Ok(other) => {
                let error = crate::lookup::unexpected_response("HeadObject", &other);
                return self.fail_commit(now, ino, errno_for_s3_error(&error));
            }
            Err(error) => return self.fail_commit(now, ino, errno_for_s3_error(&error)),
        };
        match &commit.stage {
            CommitStage::Checking(_) => {
                let unchanged = match (&file.base, &found) {
                    (None, None) => true,
                    (Some(base), Some(meta)) => base.etag == meta.etag,
                    // Unlinked by us or another client since: recreating it is what the writer
                    // asked for only if the file was new to begin with.
                    (Some(_), None) | (None, Some(_)) => false,
                };
                if unchanged {
                    self.complete_upload(now, ino);
                } else {
                    let errno = conflict_errno(file);
                    tracing::warn!(key = %file.key, "the object changed while this mount wrote it; not replacing it");
                    self.fail_commit(now, ino, errno);
                }
            }
            &CommitStage::Verifying { otherwise, .. } => {
                let ours = found
                    .as_ref()
                    .filter(|meta| meta.metadata.get(WRITE_ID_METADATA) == Some(&file.write_id))
                    .map(|meta| meta.etag.clone());
                match ours {
                    Some(etag) => self.commit_succeeded(now, ino, etag),
                    None => self.fail_commit(now, ino, otherwise),
                }
            }
            _ => {}
        }
    }

    pub(crate) fn write_complete_done(&mut self, now: Instant, ino: Ino, result: S3Result) {
        match result {
            Ok(S3Response::CompleteMultipartUpload { etag }) => self.commit_succeeded(now, ino, etag),
            Err(S3Error::Service(error)) if error.code == S3ErrorCode::NoSuchUpload => {
                // A retry of a completion that already succeeded finds no upload.
                self.verify_ours(now, ino, Errno::EIO);
            }
            Ok(other) => {
                let error = crate::lookup::unexpected_response("CompleteMultipartUpload", &other);
                self.fail_commit(now, ino, errno_for_s3_error(&error))
            }
            Err(error) => self.fail_commit(now, ino, errno_for_s3_error(&error)),
        }
    }

    pub(crate) fn write_abort_done(&mut self, now: Instant, ino: Ino, result: S3Result) {
        if let Err(error) = &result
            && !matches!(error, S3Error::Service(service) if service.code == S3ErrorCode::NoSuchUpload)
        {
            tracing::error!(%error, "aborting a failed multipart upload failed; it may be left in the bucket");
        }
        let Some(file) = self.writes.get_mut(&ino) else { return };
        let Some(Commit { stage: CommitStage::Aborting { failure, then_cleanup, .. }, .. }) = &file.commit else {
            return;
        };
        let (failure, then_cleanup) = (*failure, *then_cleanup);
        if then_cleanup {
            return self.start_cleanup(now, ino, Err(failure));
        }
        self.settle_commit(now, ino, Err(failure));
    }

    pub(crate) fn write_cleanup_done(&mut self, now: Instant, ino: Ino, call_id: CallId, result: S3Result) {
        let in_use: BTreeSet<String> = self
            .writes
            .values()
            .filter_map(|file| match file.upload.as_ref().map(|u| &u.id) {
                Some(UploadIdState::Ready(id)) => Some(id.0.clone()),
                _ => None,
            })
            .collect();
        let Some(file) = self.writes.get_mut(&ino) else { return };
        let key = file.key.clone();
        let Some(Commit { stage: CommitStage::CleaningUp { calls, listed, .. }, .. }) = &mut file.commit else {
            return;
        };
        calls.remove(&call_id);
        let mut aborts = Vec::new();
        if !*listed {
            *listed = true;
            match result {
                Ok(S3Response::ListMultipartUploads { uploads }) => {
                    aborts = uploads
                        .into_iter()
                        .filter(|upload| upload.key == key && !in_use.contains(&upload.upload_id.0))
                        .map(|upload| upload.upload_id)
                        .collect();
                }
                other => tracing::error!(?other, %key, "cannot list uploads to clean up; some may be left behind"),
            }
        } else if let Err(error) = result {
            tracing::error!(%error, %key, "aborting a leftover multipart upload failed");
        }
        for upload_id in aborts {
            tracing::info!(%key, upload_id = %upload_id.0, "aborting an upload a lost reply left behind");
            let request = S3Request::AbortMultipartUpload { key: key.clone(), upload_id };
            let call = self.start_call(now, Purpose::WriteCleanup { ino }, request);
            if let Some(Commit { stage: CommitStage::CleaningUp { calls, .. }, .. }) =
                &mut self.writes.get_mut(&ino).expect("a write state").commit
            {
                calls.insert(call);
            }
        }
        let file = self.writes.get_mut(&ino).expect("a write state");
        if let Some(Commit { stage: CommitStage::CleaningUp { calls, outcome, .. }, .. }) = &mut file.commit
            && calls.is_empty()
        {
            let outcome = outcome.clone();
            self.settle_commit(now, ino, outcome);
        }
    }

    // ---- the end of a commit --------------------------------------------------------------

    fn commit_succeeded(&mut self, now: Instant, ino: Ino, etag: ETag) {
        let file = self.writes.get_mut(&ino).expect("a write state");
        let upload = file.upload.take();
        let ambiguous = upload.as_ref().is_some_and(|upload| upload.create_was_ambiguous);
        let key = file.key.clone();
        let commit = file.commit.as_mut().expect("a commit");
        if let Some(upload) = upload
            && upload.metadata != commit.metadata
        {
            let metadata = CopyMetadata::Replace(commit.metadata.clone());
            let copy = ObjectCopy::new(key.clone(), key, commit.size_bytes, etag, metadata);
            commit.stage = CommitStage::Relabeling { copy: Box::new(copy), then_cleanup: ambiguous };
            return self.pump_relabel(now, ino);
        }
        if ambiguous {
            return self.start_cleanup(now, ino, Ok(etag));
        }
        self.settle_commit(now, ino, Ok(etag));
    }

    fn relabel_copy(&mut self, ino: Ino) -> Option<&mut ObjectCopy> {
        match &mut self.writes.get_mut(&ino)?.commit.as_mut()?.stage {
            CommitStage::Relabeling { copy, .. } => Some(copy),
            _ => None,
        }
    }

    fn pump_relabel(&mut self, now: Instant, ino: Ino) {
        let config = self.config.clone();
        let Some(copy) = self.relabel_copy(ino) else { return };
        for (step, request) in copy.poll_requests(&config) {
            let call = self.start_call(now, Purpose::WriteRelabel { ino }, request);
            self.relabel_copy(ino).expect("relabeling").sent(step, call);
        }
    }

    fn write_relabel_done(&mut self, now: Instant, ino: Ino, call_id: CallId, result: S3Result) {
        let config = self.config.clone();
        let Some(copy) = self.relabel_copy(ino).filter(|copy| copy.owns(call_id)) else { return };
        match copy.answered(call_id, result, &config) {
            // The bytes are in S3, but not the attributes the caller set: the commit failed.
            Err(errno) => self.fail_commit(now, ino, errno),
            Ok(()) => match copy.done().cloned() {
                Some(etag) => {
                    let commit = self.writes[&ino].commit.as_ref().expect("a commit");
                    let CommitStage::Relabeling { then_cleanup, .. } = commit.stage else { unreachable!() };
                    if then_cleanup {
                        return self.start_cleanup(now, ino, Ok(etag));
                    }
                    self.settle_commit(now, ino, Ok(etag));
                }
                None => self.pump_relabel(now, ino),
            },
        }
    }

    /// An upload failed while streaming or committing.
    fn fail_upload(&mut self, now: Instant, ino: Ino, errno: Errno) {
        let file = self.writes.get_mut(&ino).expect("a write state");
        if file.commit.is_none() {
            // Streaming failed with no commit under way: fail through one, so the upload is
            // aborted and the next flush reports it.
            let metadata = file.metadata_to_write();
            file.commit =
                Some(Commit { waiters: Vec::new(), size_bytes: file.size_bytes, metadata, stage: CommitStage::Parts });
        }
        self.fail_commit(now, ino, errno);
    }

    /// The commit cannot succeed: abort its upload (if any), then report `errno`.
    pub(crate) fn fail_commit(&mut self, now: Instant, ino: Ino, errno: Errno) {
        let Some(file) = self.writes.get_mut(&ino) else { return };
        let Some(commit) = &mut file.commit else { return };
        if matches!(commit.stage, CommitStage::Aborting { .. } | CommitStage::CleaningUp { .. }) {
            return;
        }
        tracing::warn!(key = %file.key, ?errno, "writing the file to S3 failed");
        // Stop everything this commit still has in flight.
        let mut calls = Vec::new();
        let mut abandoned_copy_upload = None;
        match &commit.stage {
            CommitStage::PutFetching { gets, .. } => calls.extend(gets.iter().copied()),
            CommitStage::Putting(call) | CommitStage::Checking(call) | CommitStage::Completing(call) => {
                calls.push(*call)
            }
            CommitStage::Verifying { call, .. } => calls.push(*call),
            CommitStage::Relabeling { copy, .. } => {
                calls.extend(copy.calls_in_flight());
                if let Some((key, upload_id)) = copy.upload_to_abort() {
                    // Nobody waits for it: the answer finds no relabeling under way.
                    abandoned_copy_upload = Some((key, upload_id));
                }
            }
            _ => {}
        }
        let mut abort = None;
        let mut cleanup = false;
        if let Some(upload) = file.upload.take() {
            if upload.streamed_until > 0 {
                // Streamed parts left memory: without the upload, the file cannot be written.
                file.doomed = Some(Errno::EIO);
            }
            for part in upload.parts.values() {
                match &part.state {
                    PartState::Sending { call, .. } => calls.push(*call),
                    PartState::Fetching { gets, .. } => calls.extend(gets.iter().copied()),
                    _ => {}
                }
            }
            match upload.id {
                // It may still be created: clean up whatever the key has left over.
                UploadIdState::Creating(call) => {
                    calls.push(call);
                    cleanup = true;
                }
                UploadIdState::Ready(id) => abort = Some(id),
            }
            cleanup |= upload.create_was_ambiguous;
        }
        let key = file.key.clone();
        for call in calls {
            self.cancel_call(call);
        }
        if let Some((key, upload_id)) = abandoned_copy_upload {
            self.start_call(now, Purpose::WriteRelabel { ino }, S3Request::AbortMultipartUpload { key, upload_id });
        }
        if let Some(upload_id) = abort {
            let request = S3Request::AbortMultipartUpload { key, upload_id };
            self.start_call(now, Purpose::WriteAbort { ino }, request);
            let commit = self.writes.get_mut(&ino).expect("a write state").commit.as_mut().expect("a commit");
            commit.stage = CommitStage::Aborting { failure: errno, then_cleanup: cleanup };
            return;
        }
        if cleanup {
            return self.start_cleanup(now, ino, Err(errno));
        }
        self.settle_commit(now, ino, Err(errno));
    }

    fn start_cleanup(&mut self, now: Instant, ino: Ino, outcome: Result<ETag, Errno>) {
        let key = self.writes[&ino].key.clone();
        let call = self.start_call(now, Purpose::WriteCleanup { ino }, S3Request::ListMultipartUploads { prefix: key });
        let commit = self.writes.get_mut(&ino).expect("a write state").commit.as_mut().expect("a commit");
        commit.stage = CommitStage::CleaningUp { calls: BTreeSet::from([call]), listed: false, outcome };
    }

    /// Records the commit's outcome, answers its waiters and runs what waited for it.
    fn settle_commit(&mut self, now: Instant, ino: Ino, outcome: Result<ETag, Errno>) {
        let file = self.writes.get_mut(&ino).expect("a write state");
        let commit = file.commit.take().expect("a commit");
        file.upload = None;
        let outcome_failed = outcome.is_err();
        let reply = match outcome {
            Ok(etag) => {
                let size = commit.size_bytes;
                file.base = Some(Base { etag: etag.clone(), size_bytes: size });
                file.base_valid_bytes = size;
                file.extents = Extents::default();
                // Attributes changed during the commit need another one.
                file.dirty = file.size_bytes != size || file.metadata_to_write() != commit.metadata;
                file.unreported_failure = None;
                file.write_id = format!("{:016x}", self.rng.next_u64());
                self.inodes.committed(ino, size, etag.clone(), now, commit.metadata);
                self.inodes.make_ancestors_real(ino);
                self.rebase_readers(now, ino, etag, size);
                FuseReply::Empty
            }
            Err(_) if file.unlinked => FuseReply::Empty,
            Err(errno) => {
                if matches!(errno, Errno::ESTALE | Errno::EEXIST) {
                    // Another client's object is in S3 now; a retry would lose the same way.
                    file.doomed.get_or_insert(errno);
                } else if commit.waiters.is_empty() {
                    file.unreported_failure = Some(errno);
                }
                FuseReply::Error(errno)
            }
        };
        if outcome_failed {
            self.stale_if_overtaken(ino);
        }
        for id in commit.waiters {
            if let Some(setattr_ino) = self.setattr_waiters.remove(&id) {
                let reply = match &reply {
                    FuseReply::Empty => {
                        let inode = self.inodes.get(setattr_ino).expect("known");
                        let attr = self.inodes.attr(inode, &self.config);
                        FuseReply::Attr { attr, ttl: self.config.stat_cache_ttl }
                    }
                    other => other.clone(),
                };
                self.reply(id, reply);
            } else {
                self.reply(id, reply.clone());
            }
        }
        self.run_blocked(now);
        self.drop_write_state_if_idle(ino);
    }

    /// The S3 call of a write-path purpose failed or answered; route it.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn write_call_done(
        &mut self,
        now: Instant,
        purpose: Purpose,
        call_id: CallId,
        request: &S3Request,
        attempts: u32,
        result: S3Result,
    ) {
        match purpose {
            Purpose::WriteGet { ino, part } => self.write_get_done(now, ino, part, call_id, request, result),
            Purpose::WriteCreateUpload { ino } => self.write_create_upload_done(now, ino, attempts, result),
            Purpose::WritePart { ino, part } => self.write_part_done(now, ino, part, result),
            Purpose::WritePut { ino } => self.write_put_done(now, ino, result),
            Purpose::WriteHead { ino } => self.write_head_done(now, ino, result),
            Purpose::WriteComplete { ino } => self.write_complete_done(now, ino, result),
            Purpose::WriteAbort { ino } => self.write_abort_done(now, ino, result),
            Purpose::WriteCleanup { ino } => self.write_cleanup_done(now, ino, call_id, result),
            Purpose::WriteRelabel { ino } => self.write_relabel_done(now, ino, call_id, result),
            _ => unreachable!("not a write purpose"),
        }
    }

    /// Flushes every file being written (at shutdown).
    pub(crate) fn commit_all(&mut self, now: Instant) {
        let dirty: Vec<Ino> = self
            .writes
            .iter()
            .filter(|(_, file)| file.commit.is_none() && (file.dirty || file.upload.is_some()) && file.doomed.is_none())
            .map(|(&ino, _)| ino)
            .collect();
        for ino in dirty {
            self.start_commit(now, ino, None);
        }
    }

    /// Whether any file has a commit or upload under way.
    pub(crate) fn writes_in_progress(&self) -> bool {
        self.writes.values().any(|file| file.commit.is_some() || file.upload.is_some())
    }

    /// Answers blocked requests with EIO (at shutdown).
    pub(crate) fn fail_blocked(&mut self) -> Vec<FuseReqId> {
        let mut ids = Vec::new();
        for file in self.writes.values_mut() {
            ids.extend(file.blocked.drain(..).map(|(id, _)| id));
        }
        ids
    }
}

impl Core {
    /// Whether a file being written has anything not yet in S3, or a commit under way.
    pub(crate) fn write_state_is_busy(&self, ino: Ino) -> bool {
        self.writes.get(&ino).is_some_and(|file| file.dirty || file.commit.is_some() || file.upload.is_some())
    }

    /// Runs `op` again once `ino` is committed (starting the commit if needed).
    pub(crate) fn block_behind_commit(&mut self, now: Instant, ino: Ino, id: FuseReqId, op: FuseOp) {
        let file = self.writes.get_mut(&ino).expect("a write state");
        file.blocked.push((id, op));
        if file.commit.is_none() {
            self.start_commit(now, ino, None);
        }
    }

    /// The base of a file being written was rewritten with the same bytes under `etag`.
    pub(crate) fn rebase_write_state(&mut self, ino: Ino, etag: &ETag) {
        if let Some(file) = self.writes.get_mut(&ino)
            && let Some(base) = &mut file.base
        {
            base.etag = etag.clone();
        }
    }

    /// Write states follow keys that moved (a rename).
    pub(crate) fn rekey_write_states(&mut self, moved: &dyn Fn(&str) -> Option<String>) {
        for file in self.writes.values_mut() {
            if let Some(key) = moved(&file.key) {
                file.key = key;
            }
        }
    }
}

impl Upload {
    fn sending(&self) -> bool {
        matches!(self.id, UploadIdState::Creating(_))
            || self
                .parts
                .values()
                .any(|part| matches!(part.state, PartState::Sending { .. } | PartState::Fetching { .. }))
    }
}

/// A buffer for `[start, end)` of the file holding zeros and the written bytes, and the ranges
/// of the base still to fetch into it.
fn build_buffer(file: &WriteFile, start: u64, end: u64) -> (BytesMut, Vec<(u64, u64)>) {
    let mut buffer = BytesMut::zeroed((end - start) as usize);
    file.extents.overlay(start, &mut buffer);
    let gaps = file.extents.gaps(start, end.min(file.base_valid_bytes));
    (buffer, gaps)
}

/// The errno a read or write of a doomed file gets: EEXIST means nothing to read(2) or
/// write(2), so a name another client created is reported as the file having changed.
fn data_errno(doomed: Errno) -> Errno {
    if doomed == Errno::EEXIST { Errno::ESTALE } else { doomed }
}

/// The errno of a commit that lost to another writer.
fn conflict_errno(file: &WriteFile) -> Errno {
    if file.base.is_none() { Errno::EEXIST } else { Errno::ESTALE }
}

/// The errno of a failed read or copy of base bytes: the base changed (412) or vanished (404).
fn base_errno(error: &S3Error) -> Errno {
    match error {
        S3Error::Service(service)
            if matches!(
                service.code,
                S3ErrorCode::PreconditionFailed | S3ErrorCode::NoSuchKey | S3ErrorCode::InvalidRange
            ) =>
        {
            Errno::ESTALE
        }
        other => errno_for_s3_error(other),
    }
}
