//! Finding out what a name is: lookup, getattr and the revalidation at open.
//!
//! Problems this module solves:
//! - A name can be a file (an object `dir/name`), a directory (any key under `dir/name/`), both
//!   (the directory wins), or nothing. A lookup asks HeadObject and a one-key ListObjectsV2
//!   together, so it costs one round trip, and answers as soon as the listing shows a
//!   directory (as mountpoint-s3's `remote_lookup` does).
//! - getattr and open of a file whose cached attributes have expired ask HeadObject only.
//! - A listing or HEAD that fails after its retries reaches the caller as an errno; a 404 is
//!   remembered in the negative cache.

use std::ffi::OsStr;

use crate::calls::{CallId, Purpose};
use crate::errno::{Errno, errno_for_s3_error};
use crate::fuse_types::{FileKind, FuseReply, OpenFlags};
use crate::ids::{FuseReqId, Ino};
use crate::inode::{CachedLookup, ChildStat, Observation, UpsertEffect};
use crate::machine::{Core, Waiting};
use crate::namespace::{InvalidName, check_name};
use crate::s3_types::{ObjectMeta, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, TransportError};
use crate::time::Instant;

/// Why a lookup-like request is asking S3.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum Intent {
    Lookup,
    GetAttr {
        ino: Ino,
    },
    Open {
        ino: Ino,
        flags: OpenFlags,
    },
    /// Refresh the attributes, then run this request again.
    Then {
        ino: Ino,
        op: Box<crate::fuse_types::FuseOp>,
    },
}

/// One of the two questions a lookup asks.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum Probe<T> {
    NotAsked,
    Pending(CallId),
    Answered(Result<T, S3Error>),
}

impl<T> Probe<T> {
    fn pending_call(&self) -> Option<CallId> {
        match self {
            Probe::Pending(call) => Some(*call),
            _ => None,
        }
    }
}

/// A lookup, getattr or open waiting for S3.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct LookupOp {
    intent: Intent,
    parent: Ino,
    name: String,
    /// HeadObject on the file key: `Some(meta)` if the object exists.
    head: Probe<Option<ObjectMeta>>,
    /// ListObjectsV2 on `key/`: what is under it.
    list: Probe<Under>,
    /// When the probes were sent: what they answer held at that moment or later.
    asked_at: Instant,
    /// When the first probe answered: what the lookup learns is as old as that, and cache
    /// deadlines count from it, not from when the slower probe finished.
    observed_at: Option<Instant>,
}

/// What the one-key listing of `key/` found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct Under {
    /// Something is under it: it is a directory.
    anything: bool,
    /// Its marker `key/` exists (it sorts first, so a one-key listing shows it).
    marker: bool,
}

/// What the probes found.
enum Found {
    /// A directory, and whether its marker exists.
    Directory {
        marker: bool,
    },
    File(ObjectMeta),
    Nothing,
    Failed(S3Error),
}

impl Core {
    pub(crate) fn lookup(&mut self, now: Instant, id: FuseReqId, parent: Ino, name: &OsStr) {
        let Some(parent_inode) = self.inodes.get(parent) else {
            return self.reply_error(id, Errno::ENOENT);
        };
        if parent_inode.kind != FileKind::Directory {
            return self.reply_error(id, Errno::ENOTDIR);
        }
        // S3 keys are UTF-8: a name that is not cannot exist.
        let Some(name) = name.to_str() else {
            return self.reply_error(id, Errno::ENOENT);
        };
        match check_name(name) {
            Ok(()) => {}
            Err(InvalidName::TooLong) => return self.reply_error(id, Errno::ENAMETOOLONG),
            Err(_) => return self.reply_error(id, Errno::ENOENT),
        }
        if parent_inode.key.len() + name.len() > crate::namespace::KEY_MAX_BYTES {
            // No object or prefix can be that long.
            return self.reply_error(id, Errno::ENOENT);
        }
        match self.inodes.lookup_cached(parent, name, now) {
            CachedLookup::Hit(ino) => self.reply_entry(id, ino),
            CachedLookup::Negative => self.reply_error(id, Errno::ENOENT),
            CachedLookup::Miss => {
                let file_key = crate::namespace::file_key(&parent_inode.key, name);
                let dir_prefix = crate::namespace::dir_prefix(&parent_inode.key, name);
                let head =
                    self.start_call(now, Purpose::LookupHead { op: id }, S3Request::HeadObject { key: file_key });
                let list = if self.config.cheap_lookups {
                    // Asked only if HEAD finds nothing.
                    Probe::NotAsked
                } else {
                    Probe::Pending(self.start_directory_probe(now, id, dir_prefix))
                };
                let op = LookupOp {
                    intent: Intent::Lookup,
                    parent,
                    name: name.to_owned(),
                    head: Probe::Pending(head),
                    list,
                    asked_at: now,
                    observed_at: None,
                };
                self.lookups.insert(id, op);
                self.waiting.insert(id, Waiting::Lookup);
            }
        }
    }

    /// Asks whether `dir_prefix` is a directory: a one-key listing under it, or with
    /// `--no-implicit-dir` a HEAD of its marker.
    fn start_directory_probe(&mut self, now: Instant, id: FuseReqId, dir_prefix: String) -> CallId {
        let request = if self.config.no_implicit_dirs {
            S3Request::HeadObject { key: dir_prefix }
        } else {
            S3Request::ListObjectsV2 {
                prefix: dir_prefix,
                delimiter: Some("/".into()),
                continuation_token: None,
                start_after: None,
                max_keys: 1,
            }
        };
        self.start_call(now, Purpose::LookupList { op: id }, request)
    }

    pub(crate) fn getattr(&mut self, now: Instant, id: FuseReqId, ino: Ino) {
        let Some(inode) = self.inodes.get(ino) else {
            return self.reply_error(id, Errno::ENOENT);
        };
        if inode.kind == FileKind::Directory || inode.writing || now < inode.stat_expiry {
            let attr = self.inodes.attr(inode, &self.config);
            let ttl = self.config.stat_cache_ttl;
            return self.reply(id, FuseReply::Attr { attr, ttl });
        }
        self.revalidate_file(now, id, ino, Intent::GetAttr { ino });
    }

    pub(crate) fn open(&mut self, now: Instant, id: FuseReqId, ino: Ino, flags: OpenFlags) {
        let Some(inode) = self.inodes.get(ino) else {
            return self.reply_error(id, Errno::ENOENT);
        };
        if inode.kind == FileKind::Directory {
            return self.reply_error(id, Errno::EISDIR);
        }
        // A file being written here is what this mount says; O_DIRECT asks for the current
        // object, as in mountpoint-s3.
        // A writer needs the object's metadata too: the commit keeps it.
        let fresh = now < inode.stat_expiry
            && inode.etag.is_some()
            && !flags.has(OpenFlags::O_DIRECT)
            && (inode.metadata.is_some() || !flags.writes());
        if inode.writing || fresh {
            return self.open_file_handle(now, id, ino, flags);
        }
        self.revalidate_file(now, id, ino, Intent::Open { ino, flags });
    }

    /// Refreshes a file inode's attributes with HeadObject, then runs `op` again.
    pub(crate) fn revalidate_then(&mut self, now: Instant, id: FuseReqId, ino: Ino, op: crate::fuse_types::FuseOp) {
        self.revalidate_file(now, id, ino, Intent::Then { ino, op: Box::new(op) });
    }

    /// Asks HeadObject for a file inode's current attributes.
    fn revalidate_file(&mut self, now: Instant, id: FuseReqId, ino: Ino, intent: Intent) {
        let inode = self.inodes.get(ino).expect("caller checked the inode");
        let (parent, name, key) = (inode.parent, inode.name.clone(), inode.key.clone());
        let head = self.start_call(now, Purpose::LookupHead { op: id }, S3Request::HeadObject { key });
        let op = LookupOp {
            intent,
            parent,
            name,
            head: Probe::Pending(head),
            list: Probe::NotAsked,
            asked_at: now,
            observed_at: None,
        };
        self.lookups.insert(id, op);
        self.waiting.insert(id, Waiting::Lookup);
    }

    pub(crate) fn lookup_head_done(&mut self, now: Instant, op: FuseReqId, result: S3Result) {
        let Some(lookup) = self.lookups.get_mut(&op) else {
            return;
        };
        lookup.observed_at = Some(lookup.observed_at.map_or(now, |at| at.min(now)));
        lookup.head = Probe::Answered(match result {
            Ok(S3Response::HeadObject(meta)) => Ok(Some(meta)),
            Ok(other) => Err(unexpected_response("HeadObject", &other)),
            Err(S3Error::Service(e)) if e.status == 404 || e.code == S3ErrorCode::NoSuchKey => Ok(None),
            Err(e) => Err(e),
        });
        // `--cheap`: no such object, so ask whether it is a directory.
        if lookup.intent == Intent::Lookup
            && lookup.list == Probe::NotAsked
            && matches!(lookup.head, Probe::Answered(Ok(None)))
        {
            let parent_key = self.inodes.get(lookup.parent).map(|inode| inode.key.as_str()).unwrap_or_default();
            let dir_prefix = crate::namespace::dir_prefix(parent_key, &lookup.name);
            let call = self.start_directory_probe(now, op, dir_prefix);
            self.lookups.get_mut(&op).expect("checked").list = Probe::Pending(call);
            return;
        }
        self.finish_lookup_if_decided(now, op);
    }

    pub(crate) fn lookup_list_done(&mut self, now: Instant, op: FuseReqId, result: S3Result) {
        let Some(lookup) = self.lookups.get(&op) else {
            return;
        };
        let parent_key = self.inodes.get(lookup.parent).map(|inode| inode.key.as_str()).unwrap_or_default();
        let prefix = crate::namespace::dir_prefix(parent_key, &lookup.name);
        let asked_marker = self.config.no_implicit_dirs;
        let lookup = self.lookups.get_mut(&op).expect("checked");
        lookup.observed_at = Some(lookup.observed_at.map_or(now, |at| at.min(now)));
        lookup.list = Probe::Answered(match result {
            Ok(S3Response::ListObjectsV2(page)) => Ok(Under {
                anything: !page.objects.is_empty() || !page.common_prefixes.is_empty(),
                marker: page.objects.first().is_some_and(|object| object.key == prefix),
            }),
            // `--no-implicit-dir`: the marker's HEAD.
            Ok(S3Response::HeadObject(_)) => Ok(Under { anything: true, marker: true }),
            Err(S3Error::Service(e)) if asked_marker && (e.status == 404 || e.code == S3ErrorCode::NoSuchKey) => {
                Ok(Under { anything: false, marker: false })
            }
            Ok(other) => Err(unexpected_response("ListObjectsV2", &other)),
            Err(e) => Err(e),
        });
        self.finish_lookup_if_decided(now, op);
    }

    /// Replies once the probes answered enough: a directory as soon as the listing shows one,
    /// otherwise when both have answered.
    fn finish_lookup_if_decided(&mut self, now: Instant, id: FuseReqId) {
        let lookup = &self.lookups[&id];
        let found = match (&lookup.list, &lookup.head) {
            (Probe::Answered(Ok(under)), _) if under.anything => Found::Directory { marker: under.marker },
            (Probe::Answered(Err(e)), _) => Found::Failed(e.clone()),
            (Probe::Pending(_), _) | (_, Probe::Pending(_)) => return,
            (_, Probe::Answered(Ok(Some(meta))))
                if lookup.intent == Intent::Lookup && self.is_unlinked_object(&self.lookup_key(lookup), &meta.etag) =>
            {
                Found::Nothing
            }
            (_, Probe::Answered(Ok(Some(meta)))) => Found::File(meta.clone()),
            (_, Probe::Answered(Ok(None))) => Found::Nothing,
            (_, Probe::Answered(Err(e))) => Found::Failed(e.clone()),
            (_, Probe::NotAsked) => unreachable!("every lookup asks HeadObject"),
        };
        let lookup = self.lookups.remove(&id).expect("lookup exists");
        for call in [lookup.head.pending_call(), lookup.list.pending_call()].into_iter().flatten() {
            self.cancel_call(call);
        }
        let LookupOp { intent, parent, name, asked_at, observed_at, .. } = lookup;
        let observed_at = observed_at.unwrap_or(now);
        let seen = Observation { asked_at, answered_at: observed_at };
        match (intent.clone(), found) {
            (_, Found::Failed(error)) => self.reply_error(id, errno_for_s3_error(&error)),
            (Intent::Lookup, Found::Directory { marker }) => {
                let (ino, effect) = self.inodes.upsert_child(parent, &name, ChildStat::Directory, seen);
                self.notify_upsert(parent, &name, ino, effect);
                let Some(inode) = self.inodes.get(ino) else { return self.reply_error(id, Errno::ENOENT) };
                if marker && inode.metadata.is_none() {
                    // Its attributes live on the marker: read them before answering.
                    let name = name.into();
                    return self.fetch_marker_then(now, id, ino, crate::fuse_types::FuseOp::Lookup { parent, name });
                }
                if !marker && !inode.writing {
                    self.inodes.set_marker(ino, None, crate::inode::ObjectMetadata::default());
                }
                self.reply_entry(id, ino);
            }
            (Intent::Lookup, Found::File(meta)) => {
                let stat = ChildStat::of_object(&meta);
                let (ino, effect) = self.inodes.upsert_child(parent, &name, stat, seen);
                self.notify_upsert(parent, &name, ino, effect);
                self.reply_entry(id, ino);
            }
            (Intent::GetAttr { ino } | Intent::Open { ino, .. } | Intent::Then { ino, .. }, Found::File(meta)) => {
                let effect = self.inodes.refresh_file(ino, &meta, seen);
                self.notify_upsert(parent, &name, ino, effect);
                if effect == UpsertEffect::Replaced {
                    // The name now holds an object of another kind (a file became a symlink).
                    return self.reply_error(id, Errno::ESTALE);
                }
                match intent {
                    Intent::Open { flags, .. } => self.open_file_handle(now, id, ino, flags),
                    Intent::Then { op, .. } => self.handle_fuse(now, id, *op),
                    _ => {
                        let inode = self.inodes.get(ino).expect("refreshed inode exists");
                        let attr = self.inodes.attr(inode, &self.config);
                        let ttl = self.config.stat_cache_ttl;
                        self.reply(id, FuseReply::Attr { attr, ttl });
                    }
                }
            }
            (intent, Found::Nothing | Found::Directory { .. }) => {
                self.inodes.set_negative(parent, &name, seen);
                if intent != Intent::Lookup {
                    // The kernel still holds the name for a file that is gone.
                    self.emit(crate::io::Output::InvalidateEntry { parent, name: name.into() });
                }
                self.reply_error(id, Errno::ENOENT);
            }
        }
    }

    /// The file key a lookup asks about.
    fn lookup_key(&self, lookup: &LookupOp) -> String {
        let parent_key = self.inodes.get(lookup.parent).map(|inode| inode.key.as_str()).unwrap_or_default();
        crate::namespace::file_key(parent_key, &lookup.name)
    }

    /// Replies to a lookup with a known inode, taking a kernel reference on it.
    pub(crate) fn reply_entry(&mut self, id: FuseReqId, ino: Ino) {
        let inode = self.inodes.get(ino).expect("entry for a known inode");
        let entry = self.inodes.entry(inode, &self.config);
        self.inodes.add_lookup(ino);
        self.reply(id, FuseReply::Entry(entry));
    }

    /// An interrupted lookup: stop asking S3. The caller replies.
    pub(crate) fn abandon_lookup(&mut self, id: FuseReqId) {
        if let Some(lookup) = self.lookups.remove(&id) {
            for call in [lookup.head.pending_call(), lookup.list.pending_call()].into_iter().flatten() {
                self.cancel_call(call);
            }
        }
    }
}

/// A reply of the wrong kind is a transport bug; it fails the request rather than the mount.
pub(crate) fn unexpected_response(expected: &str, got: &S3Response) -> S3Error {
    tracing::error!(expected, ?got, "S3 reply does not match its request");
    S3Error::Transport(TransportError::Other(format!("expected a {expected} reply")))
}
