//! Listing directories: ListObjectsV2 paging, the file-versus-directory merge, and packing
//! entries into the kernel's buffer.
//!
//! Problems this module solves:
//! - A directory can hold more keys than one page: the listing follows continuation tokens,
//!   one page in flight at a time, the next asked as soon as one arrives.
//! - The kernel continues a listing by offset and may come back to an earlier one (after a
//!   short buffer, a `seekdir`, an interrupted `getdents`). Each open handle keeps the entries
//!   it has produced, so every offset always means the same entry: a listing is whole and
//!   stable, whatever the kernel asks.
//! - S3 orders `a`, `a-b`, `a/`: a file and a directory with the same name are not adjacent.
//!   A file is held back until the listing has passed the place where its directory would
//!   be; if the directory shows up, it wins and the file is hidden.
//! - Entries must fit the kernel's buffer exactly, so none is lost: the core packs them with
//!   the kernel's dirent sizes.
//! - Names that cannot be file names are hidden (see [`crate::namespace`]).
//! - Listing a directory records what it learned in the inode table, so a following `stat`
//!   or `ls -l` needs no HEAD per file.
//! - Listings carry no metadata, so they cannot show modes, owners, times or symlinks. A
//!   directory whose marker says its entries may carry them (it spells out its own mode: see
//!   [`crate::attrs`]) is a *POSIX directory*: its listing HEADs every entry whose metadata
//!   this mount does not know yet (files; subdirectories' markers), at most
//!   [`CONFIRM_INFLIGHT_MAX`] at a time, before handing the entries out. Elsewhere a listing
//!   costs no HEAD and shows the defaults. The first page tells whether the directory has a
//!   marker (it sorts first); only then is the marker asked for.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsString;

use crate::calls::{CallId, Purpose};
use crate::errno::{Errno, errno_for_s3_error, is_not_found};
use crate::fuse_types::{
    DirEntry, DirEntryPlus, FileKind, FuseReply, OpenReplyFlags, dirent_size_bytes, direntplus_size_bytes,
};
use crate::ids::{FileHandle, FuseReqId, Ino};
use crate::inode::{ChildStat, ObjectMetadata, Observation};
use crate::lookup::unexpected_response;
use crate::machine::{Core, Waiting};
use crate::namespace::{ListedItem, classify_common_prefix, classify_listed_object};
use crate::s3_types::{ETag, ListPage, ObjectSummary, S3Request, S3Response, S3Result};

/// HEADs in flight at once per listing while confirming its entries' attributes.
pub const CONFIRM_INFLIGHT_MAX: usize = 32;
use crate::time::Instant;

/// One entry of a listing snapshot.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Listed {
    name: String,
    ino: Ino,
    kind: FileKind,
}

/// A name the listing produced, with what S3 said of it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct MergedItem {
    pub name: String,
    pub stat: ChildStat,
    /// When S3 was asked for its page and answered: cache deadlines count from the answer,
    /// not from when the item was released.
    pub seen: Observation,
}

/// Turns the pages of one delimited listing into entries, applying the rule that a
/// directory hides a file of the same name.
#[derive(Clone, Debug, Default)]
pub(crate) struct ListingMerger {
    /// Files not yet emitted because their directory could still follow, with when their
    /// page was asked for and arrived.
    held_files: BTreeMap<String, (ObjectSummary, Observation)>,
}

impl ListingMerger {
    /// Consumes one page of `ListObjectsV2(prefix = dir_prefix, delimiter = "/")` and returns
    /// the entries now certain, in a deterministic order.
    pub fn push_page(&mut self, dir_prefix: &str, page: &ListPage, seen: Observation) -> Vec<MergedItem> {
        let mut out = Vec::new();
        let mut objects = page.objects.iter().peekable();
        let mut prefixes = page.common_prefixes.iter().peekable();
        loop {
            // Walk objects and common prefixes together in key order, as S3 interleaves them.
            let take_object = match (objects.peek(), prefixes.peek()) {
                (Some(object), Some(prefix)) => object.key.as_str() < prefix.as_str(),
                (Some(_), None) => true,
                (None, Some(_)) => false,
                (None, None) => break,
            };
            if take_object {
                let object = objects.next().expect("peeked");
                self.release_passed(dir_prefix, &object.key, &mut out);
                if let ListedItem::File(name) = classify_listed_object(dir_prefix, &object.key) {
                    self.held_files.insert(name.to_owned(), (object.clone(), seen));
                }
            } else {
                let prefix = prefixes.next().expect("peeked");
                self.release_passed(dir_prefix, prefix, &mut out);
                if let ListedItem::Directory(name) = classify_common_prefix(dir_prefix, prefix) {
                    if self.held_files.remove(name).is_some() {
                        tracing::debug!(name, "a directory hides the file of the same name");
                    }
                    out.push(MergedItem { name: name.to_owned(), stat: ChildStat::Directory, seen });
                }
            }
        }
        out
    }

    /// The listing is over: every held file is certain.
    pub fn finish(&mut self) -> Vec<MergedItem> {
        std::mem::take(&mut self.held_files).into_values().map(file_item).collect()
    }

    /// Emits held files whose directory form `name/` sorts before `key`: it can no longer come.
    fn release_passed(&mut self, dir_prefix: &str, key: &str, out: &mut Vec<MergedItem>) {
        let Some(rest) = key.strip_prefix(dir_prefix) else {
            return;
        };
        while let Some(entry) = self.held_files.first_entry() {
            let as_directory = format!("{}/", entry.key());
            if as_directory.as_str() >= rest {
                break;
            }
            out.push(file_item(entry.remove()));
        }
    }
}

fn file_item((object, seen): (ObjectSummary, Observation)) -> MergedItem {
    let name = object.key.rsplit('/').next().expect("rsplit yields an item").to_owned();
    MergedItem {
        name,
        seen,
        stat: ChildStat::File {
            size_bytes: object.size_bytes,
            etag: object.etag,
            mtime: object.last_modified,
            metadata: None,
        },
    }
}

/// Where the listing of a handle stands.
#[derive(Clone, PartialEq, Eq, Debug)]
enum ListingState {
    /// A page is being fetched.
    Fetching(CallId),
    /// A page's entries are being confirmed (see [`Confirm`]).
    Confirming,
    /// Every page has arrived.
    Complete,
    /// The listing failed after its retries.
    Failed(Errno),
}

/// A page held back while the attributes of its entries are asked for.
#[derive(Debug, Default)]
struct Confirm {
    items: Vec<MergedItem>,
    next_token: Option<String>,
    /// The HEAD of the directory's own marker, on the first page.
    own_marker: Option<CallId>,
    /// Whether the entries that need a HEAD have been queued.
    queued: bool,
    queue: VecDeque<usize>,
    in_flight: BTreeMap<CallId, usize>,
    /// Entries found deleted since the page was listed.
    gone: BTreeSet<usize>,
    /// What subdirectories' markers hold (no ETag: no marker).
    markers: BTreeMap<usize, (Option<ETag>, ObjectMetadata)>,
}

/// A readdir waiting for entries.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct WaitingReaddir {
    id: FuseReqId,
    offset: u64,
    size_bytes: u32,
    plus: bool,
}

/// An open directory handle with its listing snapshot.
#[derive(Debug)]
pub(crate) struct DirHandle {
    ino: Ino,
    parent: Ino,
    prefix: String,
    /// Entries after `.` and `..`, in the order produced; entry `i` has offset `i + 2`.
    entries: Vec<Listed>,
    /// Names that existed only in this mount when the handle opened.
    local_names: BTreeSet<String>,
    merger: ListingMerger,
    state: ListingState,
    /// When the page being fetched was first asked for.
    page_asked_at: Instant,
    /// When the first page was asked for: a listing gone through whole knows every name as of
    /// then.
    listing_asked_at: Instant,
    /// No page has arrived yet.
    first_page: bool,
    confirm: Option<Confirm>,
    waiting: Vec<WaitingReaddir>,
}

impl DirHandle {
    pub(crate) fn forget_waiting_readdirs(&mut self) {
        self.waiting.clear();
    }
}

impl Core {
    pub(crate) fn opendir(&mut self, now: Instant, id: FuseReqId, ino: Ino) {
        let Some(inode) = self.inodes.get(ino) else {
            return self.reply_error(id, Errno::ENOENT);
        };
        if inode.kind != FileKind::Directory {
            return self.reply_error(id, Errno::ENOTDIR);
        }
        let (parent, prefix, local_dir) = (inode.parent, inode.key.clone(), inode.is_local());
        let fh = self.allocate_handle();
        // Entries that exist only in this mount come first; the listing cannot have them.
        let mut entries = Vec::new();
        let mut local_names = BTreeSet::new();
        for (name, child, kind) in self.inodes.local_children(ino) {
            self.inodes.open_handle(child);
            local_names.insert(name.clone());
            entries.push(Listed { name, ino: child, kind });
        }
        let state = if local_dir {
            ListingState::Complete
        } else {
            ListingState::Fetching(self.start_call(now, Purpose::ListPage { fh }, self.list_request(&prefix, None)))
        };
        self.inodes.open_handle(ino);
        self.dirs.insert(
            fh,
            DirHandle {
                ino,
                parent,
                prefix,
                entries,
                local_names,
                merger: ListingMerger::default(),
                state,
                page_asked_at: now,
                listing_asked_at: now,
                first_page: true,
                confirm: None,
                waiting: Vec::new(),
            },
        );
        self.reply(id, FuseReply::Opened { fh, flags: OpenReplyFlags::default() });
    }

    fn list_request(&self, prefix: &str, continuation_token: Option<String>) -> S3Request {
        S3Request::ListObjectsV2 {
            prefix: prefix.to_owned(),
            delimiter: Some("/".into()),
            continuation_token,
            start_after: None,
            max_keys: self.config.list_page_keys,
        }
    }

    pub(crate) fn readdir(&mut self, id: FuseReqId, fh: FileHandle, offset: u64, size_bytes: u32, plus: bool) {
        if !self.dirs.contains_key(&fh) {
            return self.reply_error(id, Errno::EBADF);
        }
        let request = WaitingReaddir { id, offset, size_bytes, plus };
        if !self.try_answer_readdir(fh, request) {
            self.dirs.get_mut(&fh).expect("checked").waiting.push(request);
            self.waiting.insert(id, Waiting::ReadDir(fh));
        }
    }

    /// Answers a readdir from the snapshot if it can: with entries, with the end of the
    /// listing, or with the listing's error. `false` if it must wait for a page.
    fn try_answer_readdir(&mut self, fh: FileHandle, request: WaitingReaddir) -> bool {
        let dir = &self.dirs[&fh];
        let known = dir.entries.len() as u64 + 2;
        let budget = request.size_bytes as usize;
        let mut used = 0;
        let mut picked = Vec::new();
        let mut index = request.offset;
        while index < known {
            let (name, ino, kind) = match index {
                0 => (".", dir.ino, FileKind::Directory),
                1 => ("..", dir.parent, FileKind::Directory),
                i => {
                    let entry = &dir.entries[(i - 2) as usize];
                    (entry.name.as_str(), entry.ino, entry.kind)
                }
            };
            let size = if request.plus { direntplus_size_bytes(name.len()) } else { dirent_size_bytes(name.len()) };
            if used + size > budget {
                break;
            }
            used += size;
            picked.push((index, name.to_owned(), ino, kind));
            index += 1;
        }
        if picked.is_empty() {
            if index < known {
                // The buffer cannot hold even one entry.
                self.reply_error(request.id, Errno::EINVAL);
                return true;
            }
            match &dir.state {
                ListingState::Complete => self.reply_dir(request, Vec::new()),
                ListingState::Failed(errno) => {
                    let errno = *errno;
                    self.reply_error(request.id, errno);
                }
                ListingState::Fetching(_) | ListingState::Confirming => return false,
            }
            return true;
        }
        self.reply_dir(request, picked);
        true
    }

    fn reply_dir(&mut self, request: WaitingReaddir, picked: Vec<(u64, String, Ino, FileKind)>) {
        let mut dirents = Vec::with_capacity(picked.len());
        let mut plus_entries = Vec::new();
        for (index, name, ino, kind) in picked {
            let dirent = DirEntry { ino, next_offset: index + 1, kind, name: OsString::from(name) };
            if request.plus {
                let inode = self.inodes.get(ino).expect("listing snapshots keep their inodes alive");
                let entry = self.inodes.entry(inode, &self.config);
                // The kernel takes a reference for every readdirplus entry but `.` and `..`.
                if index >= 2 {
                    self.inodes.add_lookup(ino);
                }
                plus_entries.push(DirEntryPlus { dirent, entry });
            } else {
                dirents.push(dirent);
            }
        }
        let reply = if request.plus { FuseReply::DirPlus(plus_entries) } else { FuseReply::Dir(dirents) };
        self.reply(request.id, reply);
    }

    pub(crate) fn list_page_done(&mut self, now: Instant, fh: FileHandle, result: S3Result) {
        let Some(dir) = self.dirs.get_mut(&fh) else {
            return;
        };
        let page = match result {
            Ok(S3Response::ListObjectsV2(page)) => page,
            Ok(other) => {
                return self.listing_failed(fh, errno_for_s3_error(&unexpected_response("ListObjectsV2", &other)));
            }
            Err(error) => return self.listing_failed(fh, errno_for_s3_error(&error)),
        };
        let seen = Observation { asked_at: dir.page_asked_at, answered_at: now };
        let mut items = dir.merger.push_page(&dir.prefix, &page, seen);
        let next_token = page.next_continuation_token.clone();
        if next_token.is_none() {
            items.extend(dir.merger.finish());
        }
        let first_page = std::mem::replace(&mut dir.first_page, false);
        let has_marker = !dir.prefix.is_empty() && page.objects.first().is_some_and(|object| object.key == dir.prefix);
        let (ino, prefix) = (dir.ino, dir.prefix.clone());
        dir.state = ListingState::Confirming;
        dir.confirm = Some(Confirm { items, next_token, ..Confirm::default() });
        if let Some(inode) = self.inodes.get(ino)
            && first_page
            && inode.metadata.is_none()
        {
            if has_marker {
                let call = self.start_call(now, Purpose::Confirm { fh }, S3Request::HeadObject { key: prefix });
                self.confirm_of(fh).own_marker = Some(call);
                return;
            }
            if !inode.writing {
                self.inodes.set_marker(ino, None, ObjectMetadata::default());
            }
        }
        self.advance_confirm(now, fh);
    }

    fn confirm_of(&mut self, fh: FileHandle) -> &mut Confirm {
        self.dirs.get_mut(&fh).and_then(|dir| dir.confirm.as_mut()).expect("a page being confirmed")
    }

    /// Asks for the attributes the held page still needs, or hands its entries out.
    fn advance_confirm(&mut self, now: Instant, fh: FileHandle) {
        let dir = &self.dirs[&fh];
        let Some(confirm) = &dir.confirm else { return };
        if confirm.own_marker.is_some() {
            return;
        }
        if !confirm.queued {
            let posix = self.inodes.get(dir.ino).is_some_and(|inode| inode.posix.mode.is_some());
            let mut queue = VecDeque::new();
            for (index, item) in confirm.items.iter().enumerate().filter(|_| posix) {
                let known = self.inodes.child(dir.ino, &item.name).and_then(|child| self.inodes.get(child));
                let needed = match &item.stat {
                    ChildStat::File { metadata: Some(_), .. } => false,
                    ChildStat::File { etag, .. } => {
                        known.is_none_or(|inode| inode.metadata.is_none() || inode.etag.as_ref() != Some(etag))
                    }
                    ChildStat::Directory => known.is_none_or(|inode| inode.metadata.is_none()),
                };
                if needed {
                    queue.push_back(index);
                }
            }
            let confirm = self.confirm_of(fh);
            confirm.queue = queue;
            confirm.queued = true;
        }
        let prefix = self.dirs[&fh].prefix.clone();
        loop {
            let confirm = self.confirm_of(fh);
            if confirm.in_flight.len() >= CONFIRM_INFLIGHT_MAX {
                break;
            }
            let Some(index) = confirm.queue.pop_front() else { break };
            let item = &confirm.items[index];
            let key = match item.stat {
                ChildStat::File { .. } => crate::namespace::file_key(&prefix, &item.name),
                ChildStat::Directory => crate::namespace::dir_prefix(&prefix, &item.name),
            };
            let call = self.start_call(now, Purpose::Confirm { fh }, S3Request::HeadObject { key });
            self.confirm_of(fh).in_flight.insert(call, index);
        }
        if self.confirm_of(fh).in_flight.is_empty() {
            self.release_page(now, fh);
        }
    }

    /// A HEAD of a page being confirmed answered.
    pub(crate) fn confirm_done(&mut self, now: Instant, fh: FileHandle, call_id: CallId, result: S3Result) {
        let Some(ino) = self.dirs.get(&fh).filter(|dir| dir.confirm.is_some()).map(|dir| dir.ino) else { return };
        let confirm = self.confirm_of(fh);
        if confirm.own_marker == Some(call_id) {
            confirm.own_marker = None;
            match result {
                Ok(S3Response::HeadObject(meta)) => {
                    self.inodes.set_marker(ino, Some(meta.etag.clone()), ObjectMetadata::of(&meta))
                }
                Err(error) if is_not_found(&error) => self.inodes.set_marker(ino, None, ObjectMetadata::default()),
                // The entries show the defaults; the next listing asks again.
                other => tracing::info!(?other, "could not read a directory's marker; listing without attributes"),
            }
        } else if let Some(index) = confirm.in_flight.remove(&call_id) {
            let is_file = matches!(confirm.items[index].stat, ChildStat::File { .. });
            match result {
                Ok(S3Response::HeadObject(meta)) if is_file => confirm.items[index].stat = ChildStat::of_object(&meta),
                Ok(S3Response::HeadObject(meta)) => {
                    confirm.markers.insert(index, (Some(meta.etag.clone()), ObjectMetadata::of(&meta)));
                }
                Err(error) if is_not_found(&error) && is_file => {
                    confirm.gone.insert(index);
                }
                Err(error) if is_not_found(&error) => {
                    confirm.markers.insert(index, (None, ObjectMetadata::default()));
                }
                other => tracing::info!(?other, "could not read an entry's attributes; it shows the defaults"),
            }
        } else {
            return;
        }
        self.advance_confirm(now, fh);
    }

    /// Hands a confirmed page's entries out and asks for the next page.
    fn release_page(&mut self, now: Instant, fh: FileHandle) {
        let dir = self.dirs.get_mut(&fh).expect("dir exists");
        let confirm = dir.confirm.take().expect("a page being confirmed");
        let (ino, prefix) = (dir.ino, dir.prefix.clone());
        let local_names = dir.local_names.clone();
        let Confirm { items, next_token, gone, mut markers, .. } = confirm;
        for (index, item) in items.into_iter().enumerate() {
            let unlinked = match &item.stat {
                ChildStat::File { etag, .. } => {
                    self.is_unlinked_object(&crate::namespace::file_key(&prefix, &item.name), etag)
                }
                ChildStat::Directory => false,
            };
            if gone.contains(&index) || local_names.contains(&item.name) || unlinked {
                continue;
            }
            let listed_kind = item.stat.kind();
            let (child, effect) = self.inodes.upsert_child(ino, &item.name, item.stat, item.seen);
            let kind = self.inodes.get(child).map_or(listed_kind, |inode| inode.kind);
            self.notify_upsert(ino, &item.name, child, effect);
            if let Some((etag, metadata)) = markers.remove(&index)
                && !self.inodes.is_writing(child)
            {
                self.inodes.set_marker(child, etag, metadata);
            }
            // The snapshot keeps its entries' inodes alive until releasedir: readdirplus at any
            // offset needs their attributes, even after the kernel forgot them.
            self.inodes.open_handle(child);
            let dir = self.dirs.get_mut(&fh).expect("dir exists");
            dir.entries.push(Listed { name: item.name, ino: child, kind });
        }
        let state = match &next_token {
            Some(_) => {
                let request = self.list_request(&prefix, next_token.clone());
                ListingState::Fetching(self.start_call(now, Purpose::ListPage { fh }, request))
            }
            None => {
                let listing_asked_at = self.dirs[&fh].listing_asked_at;
                self.inodes.names_complete(ino, listing_asked_at);
                ListingState::Complete
            }
        };
        let dir = self.dirs.get_mut(&fh).expect("dir exists");
        dir.state = state;
        dir.page_asked_at = now;
        self.answer_waiting_readdirs(fh);
    }

    fn listing_failed(&mut self, fh: FileHandle, errno: Errno) {
        let dir = self.dirs.get_mut(&fh).expect("dir exists");
        tracing::warn!(prefix = %dir.prefix, ?errno, "directory listing failed");
        dir.state = ListingState::Failed(errno);
        self.answer_waiting_readdirs(fh);
    }

    fn answer_waiting_readdirs(&mut self, fh: FileHandle) {
        let waiting = std::mem::take(&mut self.dirs.get_mut(&fh).expect("dir exists").waiting);
        for request in waiting {
            if !self.try_answer_readdir(fh, request) {
                self.dirs.get_mut(&fh).expect("dir exists").waiting.push(request);
            }
        }
    }

    pub(crate) fn releasedir(&mut self, id: FuseReqId, fh: FileHandle) {
        let Some(mut dir) = self.dirs.remove(&fh) else {
            return self.reply_error(id, Errno::EBADF);
        };
        if let ListingState::Fetching(call) = dir.state {
            self.cancel_call(call);
        }
        if let Some(confirm) = dir.confirm.take() {
            for call in confirm.own_marker.into_iter().chain(confirm.in_flight.into_keys()) {
                self.cancel_call(call);
            }
        }
        for request in dir.waiting.drain(..) {
            self.reply_error(request.id, Errno::EBADF);
        }
        for entry in &dir.entries {
            self.inodes.close_handle(entry.ino);
        }
        self.inodes.close_handle(dir.ino);
        self.reply(id, FuseReply::Empty);
    }

    /// An interrupted readdir: stop waiting for it (the listing goes on). The caller replies.
    pub(crate) fn abandon_readdir(&mut self, id: FuseReqId, fh: FileHandle) {
        if let Some(dir) = self.dirs.get_mut(&fh) {
            dir.waiting.retain(|request| request.id != id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::s3_types::ETag;
    use crate::time::UnixNanos;

    fn object(key: &str) -> ObjectSummary {
        ObjectSummary { key: key.into(), size_bytes: 1, etag: ETag::new("e"), last_modified: UnixNanos(0) }
    }

    fn page(objects: &[&str], prefixes: &[&str]) -> ListPage {
        ListPage {
            objects: objects.iter().map(|k| object(k)).collect(),
            common_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
            next_continuation_token: None,
        }
    }

    fn names(items: &[MergedItem]) -> Vec<String> {
        items
            .iter()
            .map(|item| match item.stat {
                ChildStat::Directory => format!("{}/", item.name),
                ChildStat::File { .. } => item.name.clone(),
            })
            .collect()
    }

    #[test]
    fn a_directory_hides_the_file_of_the_same_name_across_pages() {
        let mut merger = ListingMerger::default();
        let first = merger.push_page("d/", &page(&["d/a", "d/a-b"], &[]), Observation::local(Instant::ZERO));
        assert_eq!(names(&first), Vec::<String>::new(), "a is held until a/ could have appeared");
        let second = merger.push_page("d/", &page(&["d/b"], &["d/a/"]), Observation::local(Instant::ZERO));
        assert_eq!(names(&second), vec!["a/", "a-b"], "the directory wins; a-b is certain once b is seen");
        let rest = merger.finish();
        assert_eq!(names(&rest), vec!["b"]);
    }

    #[test]
    fn held_files_are_released_once_the_listing_passes_their_directory_slot() {
        let mut merger = ListingMerger::default();
        let items = merger.push_page("", &page(&["a", "b", "c"], &[]), Observation::local(Instant::ZERO));
        assert_eq!(names(&items), vec!["a", "b"]);
        assert_eq!(names(&merger.finish()), vec!["c"]);
    }

    #[test]
    fn markers_and_invalid_names_are_not_entries() {
        let mut merger = ListingMerger::default();
        let mut items = merger.push_page(
            "d/",
            &page(&["d/", "d/.", "d/ok"], &["d//", "d/../", "d/sub/"]),
            Observation::local(Instant::ZERO),
        );
        items.extend(merger.finish());
        assert_eq!(names(&items), vec!["ok", "sub/"]);
    }
}
