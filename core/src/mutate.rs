//! Changing the namespace: mkdir, unlink, rmdir and rename, of files and of whole directories.
//!
//! Problems this module solves:
//! - Each change first finds out what the names are now (from the caches, or by the same HEAD
//!   plus one-key LIST a lookup uses), so unlink of a missing name is ENOENT, rmdir of a
//!   non-empty directory ENOTEMPTY, and `RENAME_NOREPLACE` onto an existing name EEXIST.
//! - S3 has no rename. A file is copied (CopyObject pinned to the source's ETag, or a multipart
//!   copy of UploadPartCopy parts above 5 GiB), then deleted. A directory is renamed key by key:
//!   every key is copied first, and only when all copies succeeded are the originals deleted,
//!   so a failure midway leaves every object under its old name or its new one, never lost; the
//!   copies of a failed rename are removed again.
//! - A file being written is committed before it is renamed (or, if it exists only in this
//!   mount, renamed in memory), so the copy holds what the writer wrote.
//! - Afterwards the inode table and the open handles follow the new names at once; the kernel
//!   moves its own entries when the reply succeeds.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsStr;

use crate::calls::{CallId, Purpose};
use crate::copy::{CopyMetadata, MARKER_CONTENT_TYPE, ObjectCopy};
use crate::errno::{Errno, errno_for_s3_error};
use crate::fuse_types::{FileKind, FuseOp, FuseReply};
use crate::ids::{FuseReqId, Ino};
use crate::inode::{CachedLookup, ChildStat, ObjectMetadata, Observation};
use crate::machine::Core;
use crate::namespace::{InvalidName, KEY_MAX_BYTES, check_name, dir_prefix, file_key};
use crate::posix::PosixAttrs;
use crate::s3_types::{ETag, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use crate::time::Instant;

/// Flag of rename(2): fail if the new name exists.
pub const RENAME_NOREPLACE: u32 = 1;
/// Flag of rename(2): swap the two names.
pub const RENAME_EXCHANGE: u32 = 2;

/// What a name turned out to be.
#[derive(Clone, PartialEq, Eq, Debug)]
enum Found {
    File { size_bytes: u64, etag: Option<ETag>, local: bool },
    Directory { local: bool },
    Missing,
}

/// Finding out what one name is.
#[derive(Clone, Debug, Default)]
pub(crate) struct Probe {
    head: Option<CallId>,
    list: Option<CallId>,
    head_answer: Option<Result<Option<crate::s3_types::ObjectMeta>, S3Error>>,
    list_answer: Option<Result<bool, S3Error>>,
    found: Option<Found>,
    /// When S3 was asked (or the caches answered).
    asked_at: Instant,
}

#[derive(Clone, Debug)]
enum RenameStage {
    /// Finding out what the source and target are.
    Resolving { source: Box<Probe>, target: Box<Probe> },
    /// Checking that the target directory is empty.
    CheckingTarget(CallId),
    /// Listing every key under the source directory.
    Listing { call: CallId, keys: Vec<(String, u64, ETag)> },
    /// Copying.
    Copying { jobs: Vec<ObjectCopy>, next: usize },
    /// Deleting the originals (or, after a failure, the copies).
    Deleting { batches: VecDeque<Vec<String>>, call: Option<CallId>, failure: Option<Errno> },
}

/// A namespace change in progress.
#[derive(Clone, Debug)]
pub(crate) enum Mutation {
    Mkdir {
        parent: Ino,
        name: String,
        metadata: ObjectMetadata,
    },
    Unlink {
        parent: Ino,
        name: String,
        probe: Probe,
        delete: Option<CallId>,
    },
    Rmdir {
        parent: Ino,
        name: String,
        probe: Probe,
        check: Option<CallId>,
        delete: Option<CallId>,
    },
    Rename(Box<Rename>),
    /// A symlink or `mknod` (see [`crate::links`]).
    NewObject(Box<crate::links::NewObject>),
}

#[derive(Clone, Debug)]
pub(crate) struct Rename {
    parent: Ino,
    name: String,
    new_parent: Ino,
    new_name: String,
    flags: u32,
    stage: RenameStage,
    source_kind: Option<Found>,
    target_existed: bool,
    /// The ETag of a renamed file's copy (a copy of a multipart object gets a new one).
    new_etag: Option<ETag>,
    /// Each finished copy of a directory's rename: the original's key → the copy's ETag and
    /// size, for the handles and write states of files under the directory.
    copied: BTreeMap<String, (ETag, u64)>,
}

impl Core {
    /// Checks a name for a new entry in `parent`.
    /// A name whose object key would pass S3's limit is `ENAMETOOLONG` (a new directory's
    /// marker key is one byte longer: see [`Core::valid_new_dir_name`]).
    pub(crate) fn valid_new_name(&self, parent: Ino, name: &OsStr) -> Result<String, Errno> {
        let parent_key_bytes = match self.inodes.get(parent) {
            None => return Err(Errno::ENOENT),
            Some(inode) if inode.kind != FileKind::Directory => return Err(Errno::ENOTDIR),
            Some(inode) => inode.key.len(),
        };
        let name = name.to_str().ok_or(Errno::EINVAL)?;
        match check_name(name) {
            Ok(()) if parent_key_bytes + name.len() > KEY_MAX_BYTES => Err(Errno::ENAMETOOLONG),
            Ok(()) => Ok(name.to_owned()),
            Err(InvalidName::TooLong) => Err(Errno::ENAMETOOLONG),
            Err(_) => Err(Errno::EINVAL),
        }
    }

    /// [`Core::valid_new_name`] for a directory, whose key prefix ends in `/`.
    fn valid_new_dir_name(&self, parent: Ino, name: &OsStr) -> Result<String, Errno> {
        let name = self.valid_new_name(parent, name)?;
        if dir_prefix(&self.parent_key(parent), &name).len() > KEY_MAX_BYTES {
            return Err(Errno::ENAMETOOLONG);
        }
        Ok(name)
    }

    fn parent_key(&self, parent: Ino) -> String {
        self.inodes.get(parent).map(|inode| inode.key.clone()).unwrap_or_default()
    }

    /// What `name` in `parent` is, from the caches if they are fresh; otherwise asks S3 (the
    /// probe settles when its answers arrive).
    fn probe(&mut self, now: Instant, op: FuseReqId, parent: Ino, name: &str) -> Probe {
        let mut probe = Probe { asked_at: now, ..Probe::default() };
        match self.inodes.lookup_cached(parent, name, now) {
            CachedLookup::Hit(ino) => {
                let inode = self.inodes.get(ino).expect("cached");
                probe.found = Some(match inode.kind {
                    FileKind::Directory => Found::Directory { local: inode.writing },
                    _ => Found::File {
                        size_bytes: self.writing_size(ino).unwrap_or(inode.size_bytes),
                        etag: inode.etag.clone(),
                        local: inode.is_local(),
                    },
                });
            }
            CachedLookup::Negative => probe.found = Some(Found::Missing),
            CachedLookup::Miss => {
                let parent_key = self.parent_key(parent);
                let head = S3Request::HeadObject { key: file_key(&parent_key, name) };
                let list = S3Request::ListObjectsV2 {
                    prefix: dir_prefix(&parent_key, name),
                    delimiter: Some("/".into()),
                    continuation_token: None,
                    start_after: None,
                    max_keys: 1,
                };
                probe.head = Some(self.start_call(now, Purpose::Mutate { op }, head));
                probe.list = Some(self.start_call(now, Purpose::Mutate { op }, list));
            }
        }
        probe
    }

    /// Feeds an answer to a probe; `true` if the call was the probe's.
    fn feed_probe(probe: &mut Probe, call_id: CallId, result: &S3Result) -> bool {
        if probe.head == Some(call_id) {
            probe.head = None;
            probe.head_answer = Some(match result {
                Ok(S3Response::HeadObject(meta)) => Ok(Some(meta.clone())),
                Err(S3Error::Service(e)) if e.status == 404 || e.code == S3ErrorCode::NoSuchKey => Ok(None),
                Err(e) => Err(e.clone()),
                Ok(other) => Err(crate::lookup::unexpected_response("HeadObject", other)),
            });
        } else if probe.list == Some(call_id) {
            probe.list = None;
            probe.list_answer = Some(match result {
                Ok(S3Response::ListObjectsV2(page)) => Ok(!page.objects.is_empty() || !page.common_prefixes.is_empty()),
                Err(e) => Err(e.clone()),
                Ok(other) => Err(crate::lookup::unexpected_response("ListObjectsV2", other)),
            });
        } else {
            return false;
        }
        probe.found = match (&probe.list_answer, &probe.head_answer) {
            (Some(Ok(true)), _) => Some(Found::Directory { local: false }),
            (Some(Ok(false)), Some(Ok(Some(meta)))) => {
                Some(Found::File { size_bytes: meta.size_bytes, etag: Some(meta.etag.clone()), local: false })
            }
            (Some(Ok(false)), Some(Ok(None))) => Some(Found::Missing),
            _ => None,
        };
        true
    }

    /// The error of a probe that failed, if it did.
    fn probe_error(probe: &Probe) -> Option<Errno> {
        let list_error = probe.list_answer.as_ref().and_then(|answer| answer.as_ref().err());
        let head_error = probe.head_answer.as_ref().and_then(|answer| answer.as_ref().err());
        list_error.or(head_error).map(errno_for_s3_error)
    }

    fn cancel_probe(&mut self, probe: &Probe) {
        for call in [probe.head, probe.list].into_iter().flatten() {
            self.cancel_call(call);
        }
    }

    // ---- mkdir ----------------------------------------------------------------------------

    pub(crate) fn mkdir(&mut self, now: Instant, id: FuseReqId, parent: Ino, name: &OsStr, attrs: PosixAttrs) {
        let name = match self.valid_new_dir_name(parent, name) {
            Ok(name) => name,
            Err(errno) => return self.reply_error(id, errno),
        };
        if let CachedLookup::Hit(_) = self.inodes.lookup_cached(parent, &name, now) {
            return self.reply_error(id, Errno::EEXIST);
        }
        // A directory with attributes other than the defaults needs a marker to keep them.
        if !self.config.create_dir_markers && attrs.is_empty() {
            let ino = self.inodes.create_local_dir(parent, &name, now);
            return self.reply_entry(id, ino);
        }
        let mut metadata = ObjectMetadata { content_type: Some(MARKER_CONTENT_TYPE.to_owned()), ..Default::default() };
        attrs.write_into(&mut metadata.user);
        let marker = dir_prefix(&self.parent_key(parent), &name);
        let request = S3Request::PutObject {
            key: marker,
            body: Default::default(),
            content_type: metadata.content_type.clone(),
            metadata: metadata.user.clone(),
            if_match: None,
            if_none_match_any: false,
        };
        self.start_call(now, Purpose::Mutate { op: id }, request);
        self.mutations.insert(id, Mutation::Mkdir { parent, name, metadata });
    }

    // ---- unlink and rmdir -----------------------------------------------------------------

    pub(crate) fn unlink(&mut self, now: Instant, id: FuseReqId, parent: Ino, name: &OsStr) {
        let Some(name) = name.to_str().map(str::to_owned) else {
            return self.reply_error(id, Errno::ENOENT);
        };
        let probe = self.probe(now, id, parent, &name);
        self.mutations.insert(id, Mutation::Unlink { parent, name, probe, delete: None });
        self.advance_mutation(now, id);
    }

    pub(crate) fn rmdir(&mut self, now: Instant, id: FuseReqId, parent: Ino, name: &OsStr) {
        let Some(name) = name.to_str().map(str::to_owned) else {
            return self.reply_error(id, Errno::ENOENT);
        };
        let probe = self.probe(now, id, parent, &name);
        self.mutations.insert(id, Mutation::Rmdir { parent, name, probe, check: None, delete: None });
        self.advance_mutation(now, id);
    }

    // ---- rename ---------------------------------------------------------------------------

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn rename(
        &mut self,
        now: Instant,
        id: FuseReqId,
        parent: Ino,
        name: &OsStr,
        new_parent: Ino,
        new_name: &OsStr,
        flags: u32,
    ) {
        if flags & RENAME_EXCHANGE != 0 || flags & !RENAME_NOREPLACE != 0 {
            tracing::warn!(flags, "rename flags other than RENAME_NOREPLACE are not supported; EINVAL");
            return self.reply_error(id, Errno::EINVAL);
        }
        let Some(name) = name.to_str().map(str::to_owned) else {
            return self.reply_error(id, Errno::ENOENT);
        };
        let new_name = match self.valid_new_name(new_parent, new_name) {
            Ok(name) => name,
            Err(errno) => return self.reply_error(id, errno),
        };
        let source = self.probe(now, id, parent, &name);
        let target = self.probe(now, id, new_parent, &new_name);
        let rename = Rename {
            parent,
            name,
            new_parent,
            new_name,
            flags,
            stage: RenameStage::Resolving { source: Box::new(source), target: Box::new(target) },
            source_kind: None,
            target_existed: false,
            new_etag: None,
            copied: BTreeMap::new(),
        };
        self.mutations.insert(id, Mutation::Rename(Box::new(rename)));
        self.advance_mutation(now, id);
    }

    // ---- results --------------------------------------------------------------------------

    pub(crate) fn mutation_step_done(
        &mut self,
        now: Instant,
        op: FuseReqId,
        call_id: CallId,
        request: &S3Request,
        attempts: u32,
        result: S3Result,
    ) {
        let Some(mut mutation) = self.mutations.remove(&op) else { return };
        if let Mutation::NewObject(object) = mutation {
            return self.new_object_done(now, op, *object, attempts, result);
        }
        let outcome = match &mut mutation {
            Mutation::Mkdir { parent, name, metadata } => {
                match result {
                    Ok(response) => {
                        let (ino, effect) =
                            self.inodes.upsert_child(*parent, name, ChildStat::Directory, Observation::local(now));
                        self.notify_upsert(*parent, name, ino, effect);
                        let etag = match response {
                            S3Response::PutObject { etag } => Some(etag),
                            _ => None,
                        };
                        let gives_posix = !metadata.posix().is_empty();
                        self.inodes.set_marker(ino, etag, std::mem::take(metadata));
                        // The kernel looked the name up before mkdir and found nothing: the new
                        // directory is empty.
                        self.inodes.names_complete(ino, now);
                        if gives_posix {
                            self.hint_parent(now, ino);
                        }
                        self.reply_entry(op, ino);
                    }
                    Err(error) => self.reply_error(op, errno_for_s3_error(&error)),
                }
                return;
            }
            Mutation::Unlink { probe, delete, parent, name } => {
                if Self::feed_probe(probe, call_id, &result) {
                    None
                } else if *delete == Some(call_id) {
                    Some(result.map(|_| ()).map_err(|e| errno_for_s3_error(&e)).map(|()| (*parent, name.clone())))
                } else {
                    None
                }
            }
            Mutation::Rmdir { probe, check, delete, parent, name } => {
                if Self::feed_probe(probe, call_id, &result) {
                    None
                } else if *check == Some(call_id) {
                    *check = None;
                    match result {
                        Ok(S3Response::ListObjectsV2(page)) => {
                            let marker = dir_prefix(&self.parent_key(*parent), name);
                            let others =
                                page.objects.iter().any(|o| o.key != marker) || !page.common_prefixes.is_empty();
                            if others {
                                Some(Err(Errno::ENOTEMPTY))
                            } else {
                                let call = self.start_call(
                                    now,
                                    Purpose::Mutate { op },
                                    S3Request::DeleteObject { key: marker },
                                );
                                *delete = Some(call);
                                None
                            }
                        }
                        Ok(other) => {
                            Some(Err(errno_for_s3_error(&crate::lookup::unexpected_response("ListObjectsV2", &other))))
                        }
                        Err(error) => Some(Err(errno_for_s3_error(&error))),
                    }
                } else if *delete == Some(call_id) {
                    Some(result.map(|_| (*parent, name.clone())).map_err(|e| errno_for_s3_error(&e)))
                } else {
                    None
                }
            }
            Mutation::Rename(_) => {
                self.mutations.insert(op, mutation);
                return self.rename_step_done(now, op, call_id, request, result);
            }
            Mutation::NewObject(_) => unreachable!("answered before the match"),
        };
        match outcome {
            Some(Ok((parent, name))) => {
                self.finish_removal(now, parent, &name);
                self.reply(op, FuseReply::Empty);
            }
            Some(Err(errno)) => self.reply_error(op, errno),
            None => {
                self.mutations.insert(op, mutation);
                self.advance_mutation(now, op);
            }
        }
    }

    /// After unlink or rmdir: the name is gone, and a file being written under it is not
    /// written any more.
    fn finish_removal(&mut self, now: Instant, parent: Ino, name: &str) {
        if let Some(ino) = self.inodes.child(parent, name) {
            self.unlink_write_state(ino);
        }
        self.inodes.remove_name(parent, name, now);
    }

    /// Moves unlink and rmdir on once their probe settled.
    fn advance_mutation(&mut self, now: Instant, op: FuseReqId) {
        let Some(mutation) = self.mutations.get(&op) else { return };
        match mutation {
            Mutation::Unlink { probe, delete: None, parent, name } => {
                if let Some(errno) = Self::probe_error(probe) {
                    let probe = probe.clone();
                    self.mutations.remove(&op);
                    self.cancel_probe(&probe);
                    return self.reply_error(op, errno);
                }
                let Some(found) = probe.found.clone() else { return };
                let (parent, name) = (*parent, name.clone());
                let probe = probe.clone();
                self.cancel_probe(&probe);
                match found {
                    Found::Missing => {
                        self.mutations.remove(&op);
                        self.inodes.set_negative(
                            parent,
                            &name,
                            Observation { asked_at: probe.asked_at, answered_at: now },
                        );
                        self.reply_error(op, Errno::ENOENT)
                    }
                    Found::Directory { .. } => {
                        self.mutations.remove(&op);
                        self.reply_error(op, Errno::EISDIR)
                    }
                    Found::File { local: true, .. } => {
                        self.mutations.remove(&op);
                        self.finish_removal(now, parent, &name);
                        self.reply(op, FuseReply::Empty)
                    }
                    Found::File { .. } => {
                        let key = file_key(&self.parent_key(parent), &name);
                        if let Some(ino) = self.inodes.child(parent, &name).filter(|&ino| self.has_open_files(ino)) {
                            // Open handles keep the file until they close.
                            self.mutations.remove(&op);
                            self.defer_unlink(key, ino);
                            self.finish_removal(now, parent, &name);
                            return self.reply(op, FuseReply::Empty);
                        }
                        let call = self.start_call(now, Purpose::Mutate { op }, S3Request::DeleteObject { key });
                        if let Some(Mutation::Unlink { delete, .. }) = self.mutations.get_mut(&op) {
                            *delete = Some(call);
                        }
                    }
                }
            }
            Mutation::Rmdir { probe, check: None, delete: None, parent, name } => {
                if let Some(errno) = Self::probe_error(probe) {
                    let probe = probe.clone();
                    self.mutations.remove(&op);
                    self.cancel_probe(&probe);
                    return self.reply_error(op, errno);
                }
                let Some(found) = probe.found.clone() else { return };
                let (parent, name) = (*parent, name.clone());
                let probe = probe.clone();
                self.cancel_probe(&probe);
                match found {
                    Found::Missing => {
                        self.mutations.remove(&op);
                        self.reply_error(op, Errno::ENOENT)
                    }
                    Found::File { .. } => {
                        self.mutations.remove(&op);
                        self.reply_error(op, Errno::ENOTDIR)
                    }
                    Found::Directory { local } => {
                        let dir = self.inodes.child(parent, &name);
                        if dir.is_some_and(|dir| !self.inodes.local_children(dir).is_empty()) {
                            self.mutations.remove(&op);
                            return self.reply_error(op, Errno::ENOTEMPTY);
                        }
                        if local {
                            self.mutations.remove(&op);
                            self.finish_removal(now, parent, &name);
                            return self.reply(op, FuseReply::Empty);
                        }
                        let request = S3Request::ListObjectsV2 {
                            prefix: dir_prefix(&self.parent_key(parent), &name),
                            delimiter: None,
                            continuation_token: None,
                            start_after: None,
                            max_keys: 2,
                        };
                        let call = self.start_call(now, Purpose::Mutate { op }, request);
                        if let Some(Mutation::Rmdir { check, .. }) = self.mutations.get_mut(&op) {
                            *check = Some(call);
                        }
                    }
                }
            }
            Mutation::Rename(_) => self.advance_rename(now, op),
            _ => {}
        }
    }

    // ---- rename steps ---------------------------------------------------------------------

    /// (parent, name, new parent, new name) of a rename in progress.
    fn rename_names(&self, op: FuseReqId) -> (Ino, String, Ino, String) {
        match self.mutations.get(&op) {
            Some(Mutation::Rename(rename)) => {
                (rename.parent, rename.name.clone(), rename.new_parent, rename.new_name.clone())
            }
            _ => unreachable!("a rename in progress"),
        }
    }

    fn rename_mut(&mut self, op: FuseReqId) -> &mut Rename {
        match self.mutations.get_mut(&op) {
            Some(Mutation::Rename(rename)) => rename,
            _ => unreachable!("a rename in progress"),
        }
    }

    fn fail_rename(&mut self, op: FuseReqId, errno: Errno) {
        if let Some(Mutation::Rename(rename)) = self.mutations.remove(&op) {
            if let RenameStage::Resolving { source, target } = &rename.stage {
                let (source, target) = (source.clone(), target.clone());
                self.cancel_probe(&source);
                self.cancel_probe(&target);
            }
            let moved: BTreeSet<Ino> =
                self.files.values().map(|reader| reader.ino).filter(|&ino| self.rename_moves(&rename, ino)).collect();
            for ino in moved {
                self.stale_if_overtaken(ino);
            }
        }
        self.reply_error(op, errno);
    }

    /// Whether this mount is renaming the file `ino` or a directory above it (copying, then
    /// deleting the originals).
    pub(crate) fn is_renaming(&self, ino: Ino) -> bool {
        self.mutations
            .values()
            .any(|mutation| matches!(mutation, Mutation::Rename(rename) if self.rename_moves(rename, ino)))
    }

    /// Whether `rename` moves the file `ino`: it is the renamed file, or under the renamed
    /// directory.
    fn rename_moves(&self, rename: &Rename, ino: Ino) -> bool {
        match rename.source_kind {
            Some(Found::Directory { .. }) => {
                let prefix = dir_prefix(&self.parent_key(rename.parent), &rename.name);
                self.inodes.get(ino).is_some_and(|inode| inode.key.starts_with(&prefix))
            }
            _ => self.inodes.child(rename.parent, &rename.name) == Some(ino),
        }
    }

    /// A directory moved from `old_prefix` to `new_prefix`: open files under it (already
    /// re-keyed) take their copies' ETags, from `copied` (original key → ETag and size).
    fn rebase_files_under(
        &mut self,
        now: Instant,
        old_prefix: &str,
        new_prefix: &str,
        copied: &BTreeMap<String, (ETag, u64)>,
    ) {
        let under = self.open_files_under(new_prefix);
        for (&ino, key) in &under {
            let rest = &key[new_prefix.len()..];
            if let Some((etag, size_bytes)) = copied.get(&format!("{old_prefix}{rest}")) {
                self.rebase_write_state(ino, etag);
                self.rebase_readers(now, ino, etag.clone(), *size_bytes);
            }
            // Reads that a GET overtaken by the rename left waiting, if no rebase took them.
            self.stale_if_overtaken(ino);
        }
    }

    /// The open files (handles or write states) whose keys are under `prefix`, with their keys.
    fn open_files_under(&self, prefix: &str) -> BTreeMap<Ino, String> {
        let readers = self.files.values().map(|reader| (reader.ino, reader.key.clone()));
        readers.chain(self.written_keys()).filter(|(_, key)| key.starts_with(prefix)).collect()
    }

    fn rename_step_done(
        &mut self,
        now: Instant,
        op: FuseReqId,
        call_id: CallId,
        request: &S3Request,
        result: S3Result,
    ) {
        let (_, _, new_parent, new_name) = self.rename_names(op);
        let target_marker = dir_prefix(&self.parent_key(new_parent), &new_name);
        let rename = self.rename_mut(op);
        match &mut rename.stage {
            RenameStage::Resolving { source, target } => {
                if !Self::feed_probe(source, call_id, &result) {
                    Self::feed_probe(target, call_id, &result);
                }
                self.advance_rename(now, op);
            }
            RenameStage::CheckingTarget(call) if *call == call_id => match result {
                Ok(S3Response::ListObjectsV2(page)) => {
                    if page.objects.iter().any(|o| o.key != target_marker) || !page.common_prefixes.is_empty() {
                        return self.fail_rename(op, Errno::ENOTEMPTY);
                    }
                    self.start_rename_listing(now, op, None);
                }
                Ok(other) => {
                    let errno = errno_for_s3_error(&crate::lookup::unexpected_response("ListObjectsV2", &other));
                    self.fail_rename(op, errno)
                }
                Err(error) => self.fail_rename(op, errno_for_s3_error(&error)),
            },
            RenameStage::Listing { call, keys } if *call == call_id => match result {
                Ok(S3Response::ListObjectsV2(page)) => {
                    keys.extend(page.objects.into_iter().map(|o| (o.key, o.size_bytes, o.etag)));
                    match page.next_continuation_token {
                        Some(token) => self.start_rename_listing(now, op, Some(token)),
                        None => self.start_rename_copies(now, op),
                    }
                }
                Ok(other) => {
                    let errno = errno_for_s3_error(&crate::lookup::unexpected_response("ListObjectsV2", &other));
                    self.fail_rename(op, errno)
                }
                Err(error) => self.fail_rename(op, errno_for_s3_error(&error)),
            },
            RenameStage::Copying { .. } => self.copy_step_done(now, op, call_id, result),
            RenameStage::Deleting { call, .. } if *call == Some(call_id) => {
                self.delete_step_done(now, op, request, result)
            }
            _ => {}
        }
    }

    fn advance_rename(&mut self, now: Instant, op: FuseReqId) {
        let rename = self.rename_mut(op);
        let RenameStage::Resolving { source, target } = &rename.stage else { return };
        if let Some(errno) = Self::probe_error(source).or_else(|| Self::probe_error(target)) {
            return self.fail_rename(op, errno);
        }
        let (Some(source_found), Some(target_found)) = (source.found.clone(), target.found.clone()) else { return };
        let (parent, name, new_parent, new_name, flags) =
            (rename.parent, rename.name.clone(), rename.new_parent, rename.new_name.clone(), rename.flags);
        rename.source_kind = Some(source_found.clone());
        rename.target_existed = target_found != Found::Missing;
        if parent == new_parent && name == new_name {
            self.mutations.remove(&op);
            return self.reply(
                op,
                if source_found == Found::Missing { FuseReply::Error(Errno::ENOENT) } else { FuseReply::Empty },
            );
        }
        if target_found != Found::Missing && flags & RENAME_NOREPLACE != 0 {
            return self.fail_rename(op, Errno::EEXIST);
        }
        match (&source_found, &target_found) {
            (Found::Missing, _) => return self.fail_rename(op, Errno::ENOENT),
            (Found::File { .. }, Found::Directory { .. }) => return self.fail_rename(op, Errno::EISDIR),
            (Found::Directory { .. }, Found::File { .. }) => return self.fail_rename(op, Errno::ENOTDIR),
            _ => {}
        }
        let source_key = file_key(&self.parent_key(parent), &name);
        match source_found {
            Found::File { local, size_bytes, etag } => {
                let ino = self.inodes.child(parent, &name);
                // A file being written is committed first, so the copy holds its bytes.
                if let Some(ino) = ino
                    && !local
                    && self.needs_commit_before_rename(ino)
                {
                    return self.wait_for_commit_then(now, op, ino);
                }
                if local || etag.is_none() {
                    return self.finish_rename(now, op);
                }
                let target_key = file_key(&self.parent_key(new_parent), &new_name);
                let known = self.inodes.child(parent, &name).and_then(|ino| self.inodes.get(ino)?.metadata.clone());
                let metadata = CopyMetadata::Source(known);
                let job = ObjectCopy::new(source_key, target_key, size_bytes, etag.expect("checked"), metadata);
                self.rename_mut(op).stage = RenameStage::Copying { jobs: vec![job], next: 0 };
                self.pump_copies(now, op);
            }
            Found::Directory { local } => {
                let prefix = dir_prefix(&self.parent_key(parent), &name);
                // Everything written under the directory reaches S3 first.
                if let Some(ino) = self.writes.keys().copied().find(|&ino| {
                    self.inodes.get(ino).is_some_and(|inode| inode.key.starts_with(&prefix))
                        && self.needs_commit_before_rename(ino)
                }) {
                    return self.wait_for_commit_then(now, op, ino);
                }
                if local {
                    return self.finish_rename(now, op);
                }
                if matches!(target_found, Found::Directory { local: false }) {
                    let request = S3Request::ListObjectsV2 {
                        prefix: dir_prefix(&self.parent_key(new_parent), &new_name),
                        delimiter: None,
                        continuation_token: None,
                        start_after: None,
                        max_keys: 2,
                    };
                    let call = self.start_call(now, Purpose::Mutate { op }, request);
                    self.rename_mut(op).stage = RenameStage::CheckingTarget(call);
                    return;
                }
                self.start_rename_listing(now, op, None);
            }
            Found::Missing => unreachable!("handled above"),
        }
    }

    /// Whether a file being written must be committed before it can be renamed: it has
    /// unwritten data (and, inside a directory being renamed, also if it exists only here).
    fn needs_commit_before_rename(&self, ino: Ino) -> bool {
        self.inodes.get(ino).is_some_and(|inode| inode.writing && inode.kind == FileKind::File)
            && (self.write_state_is_busy(ino) || self.inodes.get(ino).is_some_and(|inode| inode.is_local()))
    }

    /// Puts the rename back in line behind a commit of `ino`; it runs again afterwards.
    fn wait_for_commit_then(&mut self, now: Instant, op: FuseReqId, ino: Ino) {
        let Some(Mutation::Rename(rename)) = self.mutations.remove(&op) else { return };
        let again = FuseOp::Rename {
            parent: rename.parent,
            name: rename.name.clone().into(),
            new_parent: rename.new_parent,
            new_name: rename.new_name.clone().into(),
            flags: rename.flags,
        };
        self.block_behind_commit(now, ino, op, again);
    }

    fn start_rename_listing(&mut self, now: Instant, op: FuseReqId, token: Option<String>) {
        let (parent, name, _, _) = self.rename_names(op);
        let prefix = dir_prefix(&self.parent_key(parent), &name);
        let rename = self.rename_mut(op);
        let keys = match std::mem::replace(&mut rename.stage, RenameStage::Copying { jobs: Vec::new(), next: 0 }) {
            RenameStage::Listing { keys, .. } => keys,
            _ => Vec::new(),
        };
        let request = S3Request::ListObjectsV2 {
            prefix,
            delimiter: None,
            continuation_token: token,
            start_after: None,
            max_keys: self.config.list_page_keys,
        };
        let call = self.start_call(now, Purpose::Mutate { op }, request);
        self.rename_mut(op).stage = RenameStage::Listing { call, keys };
    }

    fn start_rename_copies(&mut self, now: Instant, op: FuseReqId) {
        let (parent, name, new_parent, new_name) = self.rename_names(op);
        let source_prefix = dir_prefix(&self.parent_key(parent), &name);
        let target_prefix = dir_prefix(&self.parent_key(new_parent), &new_name);
        let rename = self.rename_mut(op);
        let RenameStage::Listing { keys, .. } =
            std::mem::replace(&mut rename.stage, RenameStage::Copying { jobs: Vec::new(), next: 0 })
        else {
            unreachable!("listing finished")
        };
        let jobs: Vec<ObjectCopy> = keys
            .into_iter()
            .filter_map(|(key, size_bytes, etag)| {
                let target = format!("{target_prefix}{}", key.strip_prefix(&source_prefix)?);
                Some(ObjectCopy::new(key, target, size_bytes, etag, CopyMetadata::Source(None)))
            })
            .collect();
        self.rename_mut(op).stage = RenameStage::Copying { jobs, next: 0 };
        self.pump_copies(now, op);
    }

    /// Sends what the copies under way can send and starts new ones up to the in-flight
    /// limit; when all are done, deletes the originals.
    fn pump_copies(&mut self, now: Instant, op: FuseReqId) {
        let limit = self.config.rename_inflight_max.max(1) as usize;
        let config = self.config.clone();
        let RenameStage::Copying { jobs, next } = &mut self.rename_mut(op).stage else { return };
        let busy = jobs[..*next].iter().filter(|job| job.done().is_none()).count();
        let started = (*next + limit.saturating_sub(busy)).min(jobs.len());
        *next = started;
        let mut requests = Vec::new();
        for (index, job) in jobs[..started].iter_mut().enumerate() {
            requests.extend(job.poll_requests(&config).into_iter().map(|(step, request)| (index, step, request)));
        }
        for (index, step, request) in requests {
            let call = self.start_call(now, Purpose::Mutate { op }, request);
            if let RenameStage::Copying { jobs, .. } = &mut self.rename_mut(op).stage {
                jobs[index].sent(step, call);
            }
        }
        let RenameStage::Copying { jobs, next } = &self.rename_mut(op).stage else { return };
        if *next >= jobs.len() && jobs.iter().all(|job| job.done().is_some()) {
            let originals: Vec<String> = jobs.iter().map(|job| job.source.clone()).collect();
            self.start_deletes(now, op, originals, None);
        }
    }

    fn copy_step_done(&mut self, now: Instant, op: FuseReqId, call_id: CallId, result: S3Result) {
        let config = self.config.clone();
        let rename = self.rename_mut(op);
        let RenameStage::Copying { jobs, .. } = &mut rename.stage else { return };
        let Some(job) = jobs.iter_mut().find(|job| job.owns(call_id)) else { return };
        let outcome = job.answered(call_id, result, &config).map(|()| job.done().cloned());
        let (source, size_bytes) = (job.source.clone(), job.size_bytes);
        match outcome {
            Err(errno) => self.abandon_copies(now, op, errno),
            Ok(done) => {
                if let Some(etag) = done {
                    let rename = self.rename_mut(op);
                    rename.copied.insert(source, (etag.clone(), size_bytes));
                    rename.new_etag = Some(etag);
                }
                self.pump_copies(now, op)
            }
        }
    }

    /// A copy failed: stop the others, remove the copies made, and report `errno`.
    fn abandon_copies(&mut self, now: Instant, op: FuseReqId, errno: Errno) {
        let rename = self.rename_mut(op);
        let RenameStage::Copying { jobs, .. } =
            std::mem::replace(&mut rename.stage, RenameStage::Copying { jobs: Vec::new(), next: 0 })
        else {
            return;
        };
        let mut calls = Vec::new();
        let mut aborts = Vec::new();
        let mut made = Vec::new();
        for job in jobs {
            calls.extend(job.calls_in_flight());
            aborts.extend(job.upload_to_abort());
            if job.may_have_made_target() {
                made.push(job.target.clone());
            }
        }
        for call in calls {
            self.cancel_call(call);
        }
        for (key, upload_id) in aborts {
            // Fire and forget: nobody waits for an abandoned copy's upload to be aborted.
            self.start_call(
                now,
                Purpose::Mutate { op: FuseReqId(u64::MAX) },
                S3Request::AbortMultipartUpload { key, upload_id },
            );
        }
        tracing::warn!(?errno, copies = made.len(), "a rename failed; removing the copies it made");
        self.start_deletes(now, op, made, Some(errno));
    }

    /// Deletes `keys` in batches; then the rename succeeds (no `failure`) or reports `failure`.
    fn start_deletes(&mut self, now: Instant, op: FuseReqId, keys: Vec<String>, failure: Option<Errno>) {
        let batches: VecDeque<Vec<String>> = keys.chunks(1000).map(<[String]>::to_vec).collect();
        self.rename_mut(op).stage = RenameStage::Deleting { batches, call: None, failure };
        self.next_delete(now, op);
    }

    fn next_delete(&mut self, now: Instant, op: FuseReqId) {
        let rename = self.rename_mut(op);
        let RenameStage::Deleting { batches, failure, .. } = &mut rename.stage else { return };
        match batches.pop_front() {
            Some(batch) => {
                let request = if batch.len() == 1 {
                    S3Request::DeleteObject { key: batch[0].clone() }
                } else {
                    S3Request::DeleteObjects { keys: batch }
                };
                let started = self.start_call(now, Purpose::Mutate { op }, request);
                if let RenameStage::Deleting { call, .. } = &mut self.rename_mut(op).stage {
                    *call = Some(started);
                }
            }
            None => match *failure {
                Some(errno) => self.fail_rename(op, errno),
                None => self.finish_rename(now, op),
            },
        }
    }

    fn delete_step_done(&mut self, now: Instant, op: FuseReqId, request: &S3Request, result: S3Result) {
        let rename = self.rename_mut(op);
        let RenameStage::Deleting { batches, call, failure } = &mut rename.stage else { return };
        *call = None;
        match (request, result) {
            (_, Ok(S3Response::DeleteObjects { failed })) if !failed.is_empty() => {
                tracing::error!(count = failed.len(), first = %failed[0].key, "a rename could not delete some originals");
                failure.get_or_insert(Errno::EIO);
            }
            (S3Request::DeleteObjects { keys }, Err(S3Error::Service(error))) if error.status == 400 => {
                // The store cannot batch these keys (some cannot go in XML): one by one.
                for key in keys.iter().rev() {
                    batches.push_front(vec![key.clone()]);
                }
            }
            (_, Ok(_)) => {}
            (_, Err(error)) => {
                tracing::error!(%error, "a rename could not delete some originals; they exist under both names");
                failure.get_or_insert(errno_for_s3_error(&error));
            }
        }
        self.next_delete(now, op);
    }

    /// The rename succeeded: the inode table, write states and open handles follow it.
    fn finish_rename(&mut self, now: Instant, op: FuseReqId) {
        let Some(Mutation::Rename(rename)) = self.mutations.remove(&op) else { return };
        let old_key = match rename.source_kind {
            Some(Found::Directory { .. }) => dir_prefix(&self.parent_key(rename.parent), &rename.name),
            _ => file_key(&self.parent_key(rename.parent), &rename.name),
        };
        let new_key = match rename.source_kind {
            Some(Found::Directory { .. }) => dir_prefix(&self.parent_key(rename.new_parent), &rename.new_name),
            _ => file_key(&self.parent_key(rename.new_parent), &rename.new_name),
        };
        if let Some(target) = self.inodes.child(rename.new_parent, &rename.new_name) {
            // The replaced file is gone; a writer of it writes nowhere now.
            self.unlink_write_state(target);
        }
        match self.inodes.child(rename.parent, &rename.name) {
            Some(ino) => {
                self.inodes.rename(ino, rename.new_parent, &rename.new_name, &old_key, &new_key, now);
                self.rekey_open_files(&old_key, &new_key);
                match (&rename.source_kind, rename.new_etag) {
                    // The copy is the same bytes, perhaps under a new ETag: handles and caches
                    // follow it.
                    (Some(Found::File { size_bytes, .. }), Some(etag)) => {
                        self.inodes.set_etag(ino, etag.clone());
                        self.rebase_write_state(ino, &etag);
                        self.rebase_readers(now, ino, etag, *size_bytes);
                    }
                    // Objects under a renamed directory may have new ETags: ask S3 next time;
                    // open files under it follow their copies.
                    (Some(Found::Directory { .. }), _) => {
                        self.inodes.expire_stats_under(&new_key);
                        self.rebase_files_under(now, &old_key, &new_key, &rename.copied);
                    }
                    _ => {}
                }
                // Reads that a GET overtaken by the rename left waiting, if no rebase took them.
                self.stale_if_overtaken(ino);
            }
            None => {
                // The kernel holds no inode of the source: forget both names, so the new one
                // is asked about (found by seed 5350: a negative entry of the new name from an
                // earlier unlink outlived the rename).
                self.inodes.remove_name(rename.parent, &rename.name, now);
                self.inodes.forget_name(rename.new_parent, &rename.new_name);
            }
        }
        self.reply(op, FuseReply::Empty);
    }
}

impl Core {
    /// Open handles and write states of keys that moved follow them.
    fn rekey_open_files(&mut self, old_key: &str, new_key: &str) {
        let moved = |key: &str| -> Option<String> {
            if key == old_key {
                Some(new_key.to_owned())
            } else if old_key.ends_with('/') {
                key.strip_prefix(old_key).map(|rest| format!("{new_key}{rest}"))
            } else {
                None
            }
        };
        for reader in self.files.values_mut() {
            if let Some(key) = moved(&reader.key) {
                reader.key = key;
            }
        }
        self.rekey_write_states(&moved);
    }
}
