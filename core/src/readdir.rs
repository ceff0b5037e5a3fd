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

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;

use crate::calls::{CallId, Purpose};
use crate::errno::{Errno, errno_for_s3_error};
use crate::fuse_types::{
    DirEntry, DirEntryPlus, FileKind, FuseReply, OpenReplyFlags, dirent_size_bytes, direntplus_size_bytes,
};
use crate::ids::{FileHandle, FuseReqId, Ino};
use crate::inode::{ChildStat, Observation};
use crate::lookup::unexpected_response;
use crate::machine::{Core, Waiting};
use crate::namespace::{ListedItem, classify_common_prefix, classify_listed_object};
use crate::s3_types::{ListPage, ObjectSummary, S3Request, S3Response, S3Result};
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
    /// Every page has arrived.
    Complete,
    /// The listing failed after its retries.
    Failed(Errno),
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
                ListingState::Fetching(_) => return false,
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
        let (ino, prefix) = (dir.ino, dir.prefix.clone());
        let local_names = self.dirs[&fh].local_names.clone();
        for item in items.into_iter().filter(|item| !local_names.contains(&item.name)) {
            let kind = match item.stat {
                ChildStat::File { .. } => FileKind::File,
                ChildStat::Directory => FileKind::Directory,
            };
            let (child, effect) = self.inodes.upsert_child(ino, &item.name, item.stat, item.seen);
            self.notify_upsert(ino, &item.name, child, effect);
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
            None => ListingState::Complete,
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
