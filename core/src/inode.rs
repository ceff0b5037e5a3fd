//! The inode table: which names the kernel knows, what they are, and how long that knowledge
//! is trusted.
//!
//! Problems this module solves:
//! - The kernel refers to files by inode number and counts its references (`lookup`/`forget`);
//!   an inode must live while the kernel or an open handle refers to it, and no longer.
//! - Three caches with their own TTLs, all stored as absolute deadlines: the stat cache (an
//!   inode's attributes), the type cache (a name → inode mapping) and the negative cache (a name
//!   known not to exist).
//! - A name can change kind under us (another client replaces a file with a directory): the old
//!   inode is detached from its name and a new one takes it, never a kind change in place.
//! - Listings create entries for names the kernel has not looked up yet, so `ls -l` needs no
//!   HEAD per file; those unreferenced inodes are swept once their attributes expire.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::config::CoreConfig;
use crate::fuse_types::{Attr, Entry, FileKind};
use crate::ids::Ino;
use crate::posix::PosixAttrs;
use crate::s3_types::{ETag, Metadata, ObjectMeta};
use crate::time::{Instant, UnixNanos};

/// What is known of one file or directory.
#[derive(Clone, Debug)]
pub(crate) struct Inode {
    pub ino: Ino,
    pub parent: Ino,
    pub name: String,
    pub kind: FileKind,
    /// A file's object key, or a directory's key prefix (empty or ending in `/`).
    pub key: String,
    pub size_bytes: u64,
    pub etag: Option<ETag>,
    pub mtime: UnixNanos,
    /// The attributes are trusted until this time.
    pub stat_expiry: Instant,
    /// When S3 was asked for the attributes held: an answer to a request asked earlier may
    /// describe an older state and never replaces them.
    pub attrs_asked_at: Instant,
    /// References held by the kernel (lookups minus forgets).
    pub lookup_count: u64,
    /// Open file or directory handles.
    pub open_handles: u32,
    /// The object version whose bytes the kernel's page cache may hold for this inode.
    pub kernel_cached_etag: Option<ETag>,
    /// Being written in this mount: what this mount knows beats what S3 says, and the name
    /// stays known without TTL.
    pub writing: bool,
    /// The object's content type and user metadata (a directory's: its marker's), as S3 last
    /// reported them or as this mount wrote them; `None` while only a listing has been seen,
    /// since listings carry no metadata.
    pub metadata: Option<ObjectMetadata>,
    /// The POSIX attributes `metadata` carries (none while it is unknown).
    pub posix: PosixAttrs,
    /// A symlink's target, with the version of the object it was read from.
    pub link_target: Option<(ETag, crate::s3_types::Body)>,
    /// This mount removed the name (unlink, rmdir, or a rename over it) while the kernel or an
    /// open handle still held the inode: `stat` shows no links.
    pub unlinked: bool,
    /// A directory's names are all known here until then (it was created by this mount, or
    /// listed whole): a name with no entry does not exist, without asking S3.
    pub names_complete_until: Instant,
}

/// What an object carries besides its bytes.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub(crate) struct ObjectMetadata {
    pub content_type: Option<String>,
    /// User metadata, names without the `x-amz-meta-` prefix.
    pub user: Metadata,
    /// The storage class HEAD reported (`None`: STANDARD, or not reported). Read only: a copy
    /// never sets it from here.
    pub storage_class: Option<String>,
}

impl ObjectMetadata {
    pub fn of(meta: &ObjectMeta) -> Self {
        ObjectMetadata {
            content_type: meta.content_type.clone(),
            user: meta.metadata.clone(),
            storage_class: meta.storage_class.clone(),
        }
    }

    pub fn posix(&self) -> PosixAttrs {
        PosixAttrs::from_metadata(&self.user)
    }
}

impl Inode {
    /// Exists only in this mount (created here, not yet in S3).
    pub fn is_local(&self) -> bool {
        self.writing && self.etag.is_none()
    }
}

/// When S3 was asked and when it answered: what the answer says held at some moment in
/// between. Cache deadlines count from the answer; which of two answers is newer goes by when
/// they were asked (an answer to a later request cannot describe an earlier state).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Observation {
    pub asked_at: Instant,
    pub answered_at: Instant,
}

impl Observation {
    /// What this mount knows at `now` by itself (its own change).
    pub fn local(now: Instant) -> Self {
        Observation { asked_at: now, answered_at: now }
    }
}

/// A name → inode mapping in a directory.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Dentry {
    pub ino: Ino,
    /// The mapping (and the kind) is trusted until this time.
    pub type_expiry: Instant,
    /// When S3 was asked the question whose answer said so: of two answers, the one asked
    /// later wins.
    pub asked_at: Instant,
}

/// A name known not to exist.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NegativeEntry {
    /// When S3 was asked the question whose answer said so.
    pub asked_at: Instant,
    pub expiry: Instant,
}

/// Attributes of a child as S3 reported them (HEAD or a listing).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum ChildStat {
    /// An object; `metadata` is known from HEAD, not from a listing. An object whose mode
    /// says so is a symlink.
    File {
        size_bytes: u64,
        etag: ETag,
        mtime: UnixNanos,
        metadata: Option<ObjectMetadata>,
    },
    Directory,
}

impl ChildStat {
    /// What HEAD reported of an object.
    pub fn of_object(meta: &ObjectMeta) -> Self {
        ChildStat::File {
            size_bytes: meta.size_bytes,
            etag: meta.etag.clone(),
            mtime: meta.last_modified,
            metadata: Some(ObjectMetadata::of(meta)),
        }
    }

    pub fn kind(&self) -> FileKind {
        match self {
            ChildStat::File { metadata: Some(metadata), .. } if metadata.posix().is_symlink() => FileKind::Symlink,
            ChildStat::File { .. } => FileKind::File,
            ChildStat::Directory => FileKind::Directory,
        }
    }
}

/// What [`InodeTable::upsert_child`] did, so the caller can tell the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum UpsertEffect {
    /// Nothing the kernel caches has changed.
    Unchanged,
    /// A new inode took a name that was unknown.
    NewInode,
    /// A new inode took a name that named an inode of another kind: the kernel's entry for the
    /// name is stale.
    Replaced,
    /// The file's content changed (a new ETag): the kernel's cached pages are stale.
    ContentChanged,
}

/// The result of looking a name up in the caches alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CachedLookup {
    /// Known and fresh.
    Hit(Ino),
    /// Known not to exist.
    Negative,
    /// S3 must be asked.
    Miss,
}

/// Every inode, name and negative entry of the mount.
#[derive(Debug)]
pub(crate) struct InodeTable {
    inodes: BTreeMap<Ino, Inode>,
    dentries: BTreeMap<(Ino, String), Dentry>,
    negative: BTreeMap<(Ino, String), NegativeEntry>,
    next_ino: u64,
    stat_cache_ttl: Duration,
    type_cache_ttl: Duration,
    negative_cache_ttl: Duration,
}

impl InodeTable {
    pub fn new(config: &CoreConfig, mount_time: UnixNanos) -> Self {
        let root = Inode {
            ino: Ino::ROOT,
            parent: Ino::ROOT,
            name: String::new(),
            kind: FileKind::Directory,
            key: config.mount_prefix.clone(),
            size_bytes: 0,
            etag: None,
            mtime: mount_time,
            stat_expiry: Instant::from_nanos(u64::MAX),
            attrs_asked_at: Instant::ZERO,
            lookup_count: 1,
            open_handles: 0,
            kernel_cached_etag: None,
            writing: false,
            // A bucket's root has no marker to hold metadata; a prefix's marker is asked for.
            metadata: config.mount_prefix.is_empty().then(ObjectMetadata::default),
            posix: PosixAttrs::default(),
            link_target: None,
            unlinked: false,
            names_complete_until: Instant::ZERO,
        };
        InodeTable {
            inodes: BTreeMap::from([(Ino::ROOT, root)]),
            dentries: BTreeMap::new(),
            negative: BTreeMap::new(),
            next_ino: Ino::ROOT.0 + 1,
            stat_cache_ttl: config.stat_cache_ttl,
            type_cache_ttl: config.type_cache_ttl,
            negative_cache_ttl: config.negative_cache_ttl,
        }
    }

    pub fn get(&self, ino: Ino) -> Option<&Inode> {
        self.inodes.get(&ino)
    }

    pub fn get_mut(&mut self, ino: Ino) -> Option<&mut Inode> {
        self.inodes.get_mut(&ino)
    }

    pub fn len(&self) -> usize {
        self.inodes.len()
    }

    /// Answers a lookup from the caches if they are fresh at `now`.
    pub fn lookup_cached(&self, parent: Ino, name: &str, now: Instant) -> CachedLookup {
        let slot = (parent, name.to_owned());
        if let Some(negative) = self.negative.get(&slot)
            && now < negative.expiry
        {
            return CachedLookup::Negative;
        }
        let Some(dentry) = self.dentries.get(&slot) else {
            let names_complete = self.inodes.get(&parent).is_some_and(|dir| now < dir.names_complete_until);
            return if names_complete { CachedLookup::Negative } else { CachedLookup::Miss };
        };
        match self.inodes.get(&dentry.ino) {
            Some(inode) if inode.writing => CachedLookup::Hit(dentry.ino),
            _ if now >= dentry.type_expiry => CachedLookup::Miss,
            Some(inode) if inode.kind == FileKind::Directory || now < inode.stat_expiry => {
                CachedLookup::Hit(dentry.ino)
            }
            _ => CachedLookup::Miss,
        }
    }

    /// Records what S3 said `name` in `parent` was at `observed_at`, refreshing its TTLs from
    /// then. An observation older than what the table already holds (a listing page that
    /// arrived before a lookup's answer) never overwrites it; the caller still gets an inode of
    /// the observed kind for its listing entry.
    pub fn upsert_child(&mut self, parent: Ino, name: &str, stat: ChildStat, seen: Observation) -> (Ino, UpsertEffect) {
        let observed_at = seen.answered_at;
        let slot = (parent, name.to_owned());
        let stat = self.with_known_metadata(&slot, stat);
        // A file being written here is what this mount says it is, whatever S3 says.
        if let Some(dentry) = self.dentries.get(&slot)
            && self.inodes.get(&dentry.ino).is_some_and(|inode| inode.writing)
        {
            let ino = dentry.ino;
            if self.inodes[&ino].kind == stat.kind() {
                return (ino, UpsertEffect::Unchanged);
            }
            return (self.insert_inode(parent, name, stat, seen), UpsertEffect::NewInode);
        }
        let newer_dentry = self.dentries.get(&slot).filter(|d| d.asked_at > seen.asked_at).map(|d| d.ino);
        let newer_negative = self.negative.get(&slot).is_some_and(|n| n.asked_at > seen.asked_at);
        if newer_dentry.is_some() || newer_negative {
            if let Some(ino) = newer_dentry
                && self.inodes.get(&ino).is_some_and(|inode| inode.kind == stat.kind())
            {
                return (ino, UpsertEffect::Unchanged);
            }
            let ino = self.insert_inode(parent, name, stat, seen);
            return (ino, UpsertEffect::NewInode);
        }

        self.negative.remove(&slot);
        let stat_expiry = observed_at + self.stat_cache_ttl;
        let type_expiry = observed_at + self.type_cache_ttl;
        if let Some(dentry) = self.dentries.get_mut(&slot)
            && let Some(inode) = self.inodes.get_mut(&dentry.ino)
            && inode.kind == stat.kind()
        {
            dentry.type_expiry = type_expiry;
            dentry.asked_at = seen.asked_at;
            if seen.asked_at < inode.attrs_asked_at {
                // The attributes held come from a later question (found by seed 9051).
                return (inode.ino, UpsertEffect::Unchanged);
            }
            inode.stat_expiry = stat_expiry;
            inode.attrs_asked_at = seen.asked_at;
            let mut effect = UpsertEffect::Unchanged;
            if let ChildStat::File { size_bytes, etag, mtime, metadata } = stat {
                if inode.etag.as_ref() != Some(&etag) {
                    effect = UpsertEffect::ContentChanged;
                }
                set_object_attrs(inode, size_bytes, etag, mtime, metadata);
            }
            return (inode.ino, effect);
        }

        let replaced = self.dentries.contains_key(&slot);
        self.detach(parent, name);
        let ino = self.insert_inode(parent, name, stat, seen);
        self.dentries.insert(slot, Dentry { ino, type_expiry, asked_at: seen.asked_at });
        (ino, if replaced { UpsertEffect::Replaced } else { UpsertEffect::NewInode })
    }

    /// A listed object (no metadata) that is the version this table knows keeps the metadata
    /// known from HEAD, and with it its kind (a symlink stays one).
    fn with_known_metadata(&self, slot: &(Ino, String), stat: ChildStat) -> ChildStat {
        let ChildStat::File { size_bytes, etag, mtime, metadata: None } = stat else { return stat };
        let known = self
            .dentries
            .get(slot)
            .and_then(|dentry| self.inodes.get(&dentry.ino))
            .filter(|inode| inode.etag.as_ref() == Some(&etag))
            .and_then(|inode| inode.metadata.clone());
        ChildStat::File { size_bytes, etag, mtime, metadata: known }
    }

    /// Adds an inode for `name` in `parent` without naming it in the directory.
    fn insert_inode(&mut self, parent: Ino, name: &str, stat: ChildStat, seen: Observation) -> Ino {
        let parent_key = self.inodes.get(&parent).map(|p| p.key.clone()).unwrap_or_default();
        let ino = Ino(self.next_ino);
        self.next_ino += 1;
        let kind = stat.kind();
        let (key, size_bytes, etag, mtime, metadata) = match stat {
            ChildStat::File { size_bytes, etag, mtime, metadata } => {
                (crate::namespace::file_key(&parent_key, name), size_bytes, Some(etag), mtime, metadata)
            }
            ChildStat::Directory => {
                let mtime = self.inodes[&Ino::ROOT].mtime;
                (crate::namespace::dir_prefix(&parent_key, name), 0, None, mtime, None)
            }
        };
        let posix = metadata.as_ref().map(ObjectMetadata::posix).unwrap_or_default();
        let inode = Inode {
            ino,
            parent,
            name: name.to_owned(),
            kind,
            key,
            size_bytes,
            etag,
            mtime,
            stat_expiry: seen.answered_at + self.stat_cache_ttl,
            attrs_asked_at: seen.asked_at,
            lookup_count: 0,
            open_handles: 0,
            kernel_cached_etag: None,
            writing: false,
            metadata,
            posix,
            link_target: None,
            unlinked: false,
            names_complete_until: Instant::ZERO,
        };
        self.inodes.insert(ino, inode);
        ino
    }

    /// Records the attributes HEAD reported for a file or symlink inode, wherever its name is
    /// now, unless the inode holds attributes from a later question. An object that is no
    /// longer of the inode's kind (a file replaced by a symlink) detaches the name and says
    /// `Replaced`: the inode no longer names anything.
    pub fn refresh_file(&mut self, ino: Ino, meta: &ObjectMeta, seen: Observation) -> UpsertEffect {
        let observed_at = seen.answered_at;
        let Some(inode) =
            self.inodes.get_mut(&ino).filter(|inode| !inode.writing && seen.asked_at >= inode.attrs_asked_at)
        else {
            return UpsertEffect::Unchanged;
        };
        let stat = ChildStat::of_object(meta);
        if stat.kind() != inode.kind {
            let (parent, name) = (inode.parent, inode.name.clone());
            if self.dentries.get(&(parent, name.clone())).is_some_and(|dentry| dentry.ino == ino) {
                self.detach(parent, &name);
            }
            return UpsertEffect::Replaced;
        }
        inode.attrs_asked_at = seen.asked_at;
        let effect = if inode.etag.as_ref() == Some(&meta.etag) {
            UpsertEffect::Unchanged
        } else {
            UpsertEffect::ContentChanged
        };
        let ChildStat::File { size_bytes, etag, mtime, metadata } = stat else { unreachable!("an object") };
        set_object_attrs(inode, size_bytes, etag, mtime, metadata);
        inode.stat_expiry = observed_at + self.stat_cache_ttl;
        let slot = (inode.parent, inode.name.clone());
        if let Some(dentry) = self.dentries.get_mut(&slot)
            && dentry.ino == ino
            && dentry.asked_at <= seen.asked_at
        {
            dentry.type_expiry = observed_at + self.type_cache_ttl;
            dentry.asked_at = seen.asked_at;
        }
        effect
    }

    /// Records that S3 said `name` did not exist in `parent`.
    pub fn set_negative(&mut self, parent: Ino, name: &str, seen: Observation) {
        let slot = (parent, name.to_owned());
        if let Some(dentry) = self.dentries.get(&slot)
            && (dentry.asked_at > seen.asked_at || self.inodes.get(&dentry.ino).is_some_and(|i| i.writing))
        {
            return;
        }
        self.detach(parent, name);
        if !self.negative_cache_ttl.is_zero() {
            let expiry = seen.answered_at + self.negative_cache_ttl;
            self.negative.insert(slot, NegativeEntry { asked_at: seen.asked_at, expiry });
        }
    }

    /// Removes the name `name` from `parent`; the inode it named lives on while referenced.
    pub fn detach(&mut self, parent: Ino, name: &str) {
        if let Some(dentry) = self.dentries.remove(&(parent, name.to_owned())) {
            self.remove_if_unreferenced(dentry.ino, false);
        }
    }

    /// The inode named `name` in `parent` loses that name for good (this mount removed it).
    fn mark_unlinked(&mut self, parent: Ino, name: &str) {
        if let Some(dentry) = self.dentries.get(&(parent, name.to_owned()))
            && let Some(inode) = self.inodes.get_mut(&dentry.ino)
        {
            inode.unlinked = true;
        }
    }

    /// Every name in directory `dir` is known as of `asked_at` (it was just created here, or a
    /// listing asked then went through it whole). Lookups of other names are `ENOENT` without
    /// asking S3 for as long as both the type cache and the negative cache would trust it.
    pub fn names_complete(&mut self, dir: Ino, asked_at: Instant) {
        let ttl = self.type_cache_ttl.min(self.negative_cache_ttl);
        if ttl.is_zero() {
            return;
        }
        if let Some(inode) = self.inodes.get_mut(&dir)
            && inode.kind == FileKind::Directory
        {
            inode.names_complete_until = inode.names_complete_until.max(asked_at + ttl);
        }
    }

    /// Forces the next lookup or getattr of `ino` to ask S3.
    pub fn expire_stat(&mut self, ino: Ino) {
        if let Some(inode) = self.inodes.get_mut(&ino)
            && ino != Ino::ROOT
        {
            inode.stat_expiry = Instant::ZERO;
        }
    }

    /// The kernel took one more reference (a lookup or readdirplus entry).
    pub fn add_lookup(&mut self, ino: Ino) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.lookup_count += 1;
        }
    }

    /// The kernel dropped `count` references.
    pub fn forget(&mut self, ino: Ino, count: u64) {
        if ino == Ino::ROOT {
            return;
        }
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.lookup_count = inode.lookup_count.saturating_sub(count);
            self.remove_if_unreferenced(ino, true);
        }
    }

    pub fn open_handle(&mut self, ino: Ino) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.open_handles += 1;
        }
    }

    pub fn close_handle(&mut self, ino: Ino) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.open_handles = inode.open_handles.saturating_sub(1);
            self.remove_if_unreferenced(ino, true);
        }
    }

    /// Drops an inode nobody refers to. With `keep_if_named`, an inode that still has its name
    /// is kept: a listing may have created it for a coming lookup, and [`Self::sweep`] drops it
    /// once it expires.
    fn remove_if_unreferenced(&mut self, ino: Ino, keep_if_named: bool) {
        let Some(inode) = self.inodes.get(&ino) else {
            return;
        };
        if ino == Ino::ROOT || inode.lookup_count > 0 || inode.open_handles > 0 {
            return;
        }
        let slot = (inode.parent, inode.name.clone());
        let named_here = self.dentries.get(&slot).is_some_and(|d| d.ino == ino);
        if keep_if_named && named_here {
            return;
        }
        if named_here {
            self.dentries.remove(&slot);
        }
        self.inodes.remove(&ino);
    }

    /// Removes unreferenced inodes whose attributes and names have expired, and expired
    /// negative entries. Cost is linear in the table; the caller amortises it.
    pub fn sweep(&mut self, now: Instant) {
        let expired: Vec<(Ino, (Ino, String))> = self
            .inodes
            .values()
            .filter(|inode| {
                inode.ino != Ino::ROOT && inode.lookup_count == 0 && inode.open_handles == 0 && now >= inode.stat_expiry
            })
            .map(|inode| (inode.ino, (inode.parent, inode.name.clone())))
            .collect();
        for (ino, slot) in expired {
            if self.dentries.get(&slot).is_some_and(|d| d.ino == ino && now < d.type_expiry) {
                continue;
            }
            if self.dentries.get(&slot).is_some_and(|d| d.ino == ino) {
                self.dentries.remove(&slot);
            }
            self.inodes.remove(&ino);
        }
        self.negative.retain(|_, negative| now < negative.expiry);
    }

    /// Marks an inode as being written here (or no longer).
    pub fn set_writing(&mut self, ino: Ino, writing: bool) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.writing = writing;
        }
    }

    pub fn is_writing(&self, ino: Ino) -> bool {
        self.inodes.get(&ino).is_some_and(|inode| inode.writing)
    }

    /// The current size and modification time of a file being written (a time set earlier
    /// with utimes no longer holds).
    pub fn set_size(&mut self, ino: Ino, size_bytes: u64, mtime: UnixNanos) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.size_bytes = size_bytes;
            inode.mtime = mtime;
            inode.posix.mtime = None;
            inode.posix.ctime = None;
        }
    }

    /// A file this mount wrote is in S3 now, as this version. The kernel's pages hold exactly
    /// its bytes, so they stay valid. Its modification time stays that of its last change
    /// (create, write or truncate), which the kernel already holds, not the commit's.
    pub fn committed(&mut self, ino: Ino, size_bytes: u64, etag: ETag, now: Instant, metadata: ObjectMetadata) {
        let stat_expiry = now + self.stat_cache_ttl;
        let type_expiry = now + self.type_cache_ttl;
        let Some(inode) = self.inodes.get_mut(&ino) else { return };
        inode.posix = metadata.posix();
        inode.metadata = Some(metadata);
        inode.size_bytes = size_bytes;
        inode.kernel_cached_etag = Some(etag.clone());
        inode.etag = Some(etag);
        inode.stat_expiry = stat_expiry;
        inode.attrs_asked_at = now;
        let slot = (inode.parent, inode.name.clone());
        if let Some(dentry) = self.dentries.get_mut(&slot)
            && dentry.ino == ino
        {
            dentry.type_expiry = type_expiry;
            dentry.asked_at = now;
        }
    }

    /// A new file created in this mount, not yet in S3.
    pub fn create_local_file(&mut self, parent: Ino, name: &str, mtime: UnixNanos, now: Instant) -> Ino {
        self.detach(parent, name);
        self.negative.remove(&(parent, name.to_owned()));
        let stat =
            ChildStat::File { size_bytes: 0, etag: ETag::new(""), mtime, metadata: Some(ObjectMetadata::default()) };
        let ino = self.insert_inode(parent, name, stat, Observation::local(now));
        let inode = self.inodes.get_mut(&ino).expect("just inserted");
        inode.etag = None;
        inode.writing = true;
        self.dentries
            .insert((parent, name.to_owned()), Dentry { ino, type_expiry: now + self.type_cache_ttl, asked_at: now });
        ino
    }

    /// A new directory that exists only in this mount (mkdir without markers) until a file
    /// written in it reaches S3.
    pub fn create_local_dir(&mut self, parent: Ino, name: &str, now: Instant) -> Ino {
        self.detach(parent, name);
        self.negative.remove(&(parent, name.to_owned()));
        let ino = self.insert_inode(parent, name, ChildStat::Directory, Observation::local(now));
        self.inodes.get_mut(&ino).expect("just inserted").writing = true;
        self.names_complete(ino, now);
        self.dentries
            .insert((parent, name.to_owned()), Dentry { ino, type_expiry: now + self.type_cache_ttl, asked_at: now });
        ino
    }

    /// A file under local directories reached S3: the directories exist there now.
    pub fn make_ancestors_real(&mut self, ino: Ino) {
        let mut at = self.inodes.get(&ino).map(|inode| inode.parent);
        while let Some(parent) = at.filter(|&p| p != Ino::ROOT) {
            let Some(inode) = self.inodes.get_mut(&parent) else { break };
            if inode.kind == FileKind::Directory && inode.writing {
                inode.writing = false;
            }
            at = Some(inode.parent);
        }
    }

    /// Names in `parent` that exist only in this mount, in name order.
    pub fn local_children(&self, parent: Ino) -> Vec<(String, Ino, FileKind)> {
        self.dentries
            .range((parent, String::new())..)
            .take_while(|((dir, _), _)| *dir == parent)
            .filter_map(|((_, name), dentry)| {
                let inode = self.inodes.get(&dentry.ino)?;
                inode.is_local().then(|| (name.clone(), dentry.ino, inode.kind))
            })
            .collect()
    }

    /// The inode named `name` in `parent`, fresh or not.
    pub fn child(&self, parent: Ino, name: &str) -> Option<Ino> {
        self.dentries.get(&(parent, name.to_owned())).map(|dentry| dentry.ino)
    }

    /// Moves an inode to a new name (after a rename): the old name is forgotten, whatever the
    /// new name held is detached, and the keys of the inode and of everything cached below it
    /// move from `old_key` to `new_key`.
    pub fn rename(&mut self, ino: Ino, new_parent: Ino, new_name: &str, old_key: &str, new_key: &str, now: Instant) {
        let Some(inode) = self.inodes.get(&ino) else { return };
        let old_slot = (inode.parent, inode.name.clone());
        if self.dentries.get(&old_slot).is_some_and(|d| d.ino == ino) {
            self.dentries.remove(&old_slot);
        }
        self.mark_unlinked(new_parent, new_name);
        self.detach(new_parent, new_name);
        self.negative.remove(&(new_parent, new_name.to_owned()));
        let type_expiry = now + self.type_cache_ttl;
        let inode = self.inodes.get_mut(&ino).expect("checked");
        inode.parent = new_parent;
        inode.name = new_name.to_owned();
        self.dentries.insert((new_parent, new_name.to_owned()), Dentry { ino, type_expiry, asked_at: now });
        for inode in self.inodes.values_mut() {
            if let Some(rest) = inode.key.strip_prefix(old_key)
                && (inode.ino == ino || old_key.ends_with('/'))
            {
                inode.key = format!("{new_key}{rest}");
            }
        }
    }

    /// What a directory's marker holds: its ETag (`None`: no marker) and metadata.
    pub fn set_marker(&mut self, ino: Ino, etag: Option<ETag>, metadata: ObjectMetadata) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.etag = etag;
            inode.posix = metadata.posix();
            inode.metadata = Some(metadata);
        }
    }

    /// A file's object was copied onto itself with new metadata: same bytes, perhaps another
    /// ETag (the kernel's pages stay valid).
    pub fn set_object_metadata(&mut self, ino: Ino, etag: ETag, metadata: ObjectMetadata, now: Instant) {
        self.set_etag(ino, etag);
        let stat_expiry = now + self.stat_cache_ttl;
        if let Some(inode) = self.inodes.get_mut(&ino) {
            inode.posix = metadata.posix();
            inode.metadata = Some(metadata);
            inode.stat_expiry = stat_expiry;
            inode.attrs_asked_at = now;
        }
    }

    /// A file's object was rewritten with the same bytes under another ETag (a rename's copy).
    pub fn set_etag(&mut self, ino: Ino, etag: ETag) {
        if let Some(inode) = self.inodes.get_mut(&ino) {
            if inode.kernel_cached_etag == inode.etag {
                inode.kernel_cached_etag = Some(etag.clone());
            }
            inode.etag = Some(etag);
        }
    }

    /// Forces every file under `prefix` that is not being written to be asked about again.
    pub fn expire_stats_under(&mut self, prefix: &str) {
        for inode in self.inodes.values_mut() {
            if inode.key.starts_with(prefix) && !inode.writing && inode.kind == FileKind::File {
                inode.stat_expiry = Instant::ZERO;
            }
        }
    }

    /// Forgets everything cached of the name `name` in `parent`, including that it was missing
    /// (something else now holds it in S3), so the next lookup asks S3.
    pub fn forget_name(&mut self, parent: Ino, name: &str) {
        // Something this mount did not make holds the name: the directory's names are no
        // longer all known.
        if let Some(dir) = self.inodes.get_mut(&parent) {
            dir.names_complete_until = Instant::ZERO;
        }
        self.detach(parent, name);
        self.negative.remove(&(parent, name.to_owned()));
    }

    /// Forgets what is cached of the name `name` in `parent` and remembers it as missing, even
    /// if it is being written (after this mount deleted it).
    pub fn remove_name(&mut self, parent: Ino, name: &str, now: Instant) {
        self.mark_unlinked(parent, name);
        self.detach(parent, name);
        if !self.negative_cache_ttl.is_zero() {
            let expiry = now + self.negative_cache_ttl;
            self.negative.insert((parent, name.to_owned()), NegativeEntry { asked_at: now, expiry });
        }
    }

    /// The attributes `stat` shows for an inode: what its metadata says, else the mount's
    /// defaults (`--file-mode`, `--dir-mode`, `--uid`, `--gid`; a symlink's mode is 0777). Without
    /// metadata times, all three times are the object's Last-Modified; ctime defaults to mtime.
    /// A file or directory this mount removed while it was held has no links.
    pub fn attr(&self, inode: &Inode, config: &CoreConfig) -> Attr {
        let (default_perm, linked_nlink, size_bytes) = match inode.kind {
            FileKind::Directory => (config.dir_mode, 2, 4096),
            FileKind::File => (config.file_mode, 1, inode.size_bytes),
            FileKind::Symlink => (0o777, 1, inode.size_bytes),
        };
        let nlink = if inode.unlinked { 0 } else { linked_nlink };
        let posix = &inode.posix;
        let mtime = posix.mtime.unwrap_or(inode.mtime);
        Attr {
            ino: inode.ino,
            size_bytes,
            blocks: size_bytes.div_ceil(512),
            atime: posix.atime.unwrap_or(mtime),
            mtime,
            ctime: posix.ctime.unwrap_or(mtime).max(mtime),
            kind: inode.kind,
            perm: posix.permissions().unwrap_or(default_perm),
            nlink,
            uid: posix.uid.unwrap_or(config.uid),
            gid: posix.gid.unwrap_or(config.gid),
            blksize: 4096,
        }
    }

    /// The entry `lookup` and `readdirplus` give the kernel.
    pub fn entry(&self, inode: &Inode, config: &CoreConfig) -> Entry {
        Entry {
            attr: self.attr(inode, config),
            entry_ttl: config.type_cache_ttl,
            attr_ttl: config.stat_cache_ttl,
            generation: 0,
        }
    }
}

/// Lays what S3 reported of an object over its inode. A listing (no `metadata`) keeps the
/// metadata known from an earlier HEAD while the object is the same version.
fn set_object_attrs(
    inode: &mut Inode,
    size_bytes: u64,
    etag: ETag,
    mtime: UnixNanos,
    metadata: Option<ObjectMetadata>,
) {
    match metadata {
        Some(metadata) => {
            inode.posix = metadata.posix();
            inode.metadata = Some(metadata);
        }
        None if inode.etag.as_ref() != Some(&etag) => {
            inode.metadata = None;
            inode.posix = PosixAttrs::default();
        }
        None => {}
    }
    inode.size_bytes = size_bytes;
    inode.etag = Some(etag);
    inode.mtime = mtime;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(ttl_secs: u64) -> InodeTable {
        let config = CoreConfig {
            stat_cache_ttl: Duration::from_secs(ttl_secs),
            type_cache_ttl: Duration::from_secs(ttl_secs),
            negative_cache_ttl: Duration::from_secs(ttl_secs),
            ..CoreConfig::default()
        };
        InodeTable::new(&config, UnixNanos(0))
    }

    fn file(etag: &str) -> ChildStat {
        ChildStat::File { size_bytes: 3, etag: ETag::new(etag), mtime: UnixNanos(0), metadata: None }
    }

    fn head(etag: &str) -> ObjectMeta {
        ObjectMeta {
            size_bytes: 3,
            etag: ETag::new(etag),
            last_modified: UnixNanos(0),
            content_type: None,
            metadata: Metadata::new(),
            storage_class: None,
        }
    }

    const T0: Instant = Instant::from_nanos(0);
    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn cached_entries_expire_at_their_absolute_deadline() {
        let mut t = table(60);
        let (ino, effect) = t.upsert_child(Ino::ROOT, "f", file("a"), Observation::local(T0));
        assert_eq!(effect, UpsertEffect::NewInode);
        assert_eq!(t.lookup_cached(Ino::ROOT, "f", Instant::from_nanos(59 * SECOND)), CachedLookup::Hit(ino));
        assert_eq!(t.lookup_cached(Ino::ROOT, "f", Instant::from_nanos(60 * SECOND)), CachedLookup::Miss);
    }

    #[test]
    fn zero_ttl_turns_every_cache_off() {
        let mut t = table(0);
        t.upsert_child(Ino::ROOT, "f", file("a"), Observation::local(T0));
        assert_eq!(t.lookup_cached(Ino::ROOT, "f", T0), CachedLookup::Miss);
        t.set_negative(Ino::ROOT, "g", Observation::local(T0));
        assert_eq!(t.lookup_cached(Ino::ROOT, "g", T0), CachedLookup::Miss);
    }

    #[test]
    fn negative_entries_answer_until_they_expire_or_the_name_appears() {
        let mut t = table(10);
        t.set_negative(Ino::ROOT, "g", Observation::local(T0));
        assert_eq!(t.lookup_cached(Ino::ROOT, "g", Instant::from_nanos(SECOND)), CachedLookup::Negative);
        assert_eq!(t.lookup_cached(Ino::ROOT, "g", Instant::from_nanos(10 * SECOND)), CachedLookup::Miss);
        t.set_negative(Ino::ROOT, "g", Observation::local(T0));
        let (ino, _) = t.upsert_child(Ino::ROOT, "g", file("a"), Observation::local(T0));
        assert_eq!(t.lookup_cached(Ino::ROOT, "g", T0), CachedLookup::Hit(ino));
    }

    #[test]
    fn a_changed_etag_is_reported_and_a_changed_kind_gets_a_new_inode() {
        let mut t = table(60);
        let (ino, _) = t.upsert_child(Ino::ROOT, "x", file("a"), Observation::local(T0));
        assert_eq!(t.upsert_child(Ino::ROOT, "x", file("a"), Observation::local(T0)), (ino, UpsertEffect::Unchanged));
        assert_eq!(
            t.upsert_child(Ino::ROOT, "x", file("b"), Observation::local(T0)),
            (ino, UpsertEffect::ContentChanged)
        );
        let (dir, effect) = t.upsert_child(Ino::ROOT, "x", ChildStat::Directory, Observation::local(T0));
        assert_ne!(dir, ino);
        assert_eq!(effect, UpsertEffect::Replaced);
        assert!(t.get(ino).is_none(), "the unreferenced file inode is dropped");
        assert_eq!(t.get(dir).unwrap().key, "x/");
    }

    #[test]
    fn inodes_live_while_the_kernel_or_a_handle_refers_to_them() {
        let mut t = table(60);
        let (ino, _) = t.upsert_child(Ino::ROOT, "f", file("a"), Observation::local(T0));
        t.add_lookup(ino);
        t.open_handle(ino);
        t.detach(Ino::ROOT, "f");
        t.forget(ino, 1);
        assert!(t.get(ino).is_some(), "an open handle keeps the inode");
        t.close_handle(ino);
        assert!(t.get(ino).is_none());
        t.forget(Ino::ROOT, 5);
        assert!(t.get(Ino::ROOT).is_some(), "the root is never forgotten");
    }

    #[test]
    fn sweep_drops_only_expired_unreferenced_inodes() {
        let mut t = table(5);
        let (listed, _) = t.upsert_child(Ino::ROOT, "listed", file("a"), Observation::local(T0));
        let (held, _) = t.upsert_child(Ino::ROOT, "held", file("a"), Observation::local(T0));
        t.add_lookup(held);
        t.sweep(Instant::from_nanos(SECOND));
        assert!(t.get(listed).is_some());
        t.sweep(Instant::from_nanos(5 * SECOND));
        assert!(t.get(listed).is_none());
        assert!(t.get(held).is_some());
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn an_older_observation_never_overwrites_a_newer_one() {
        let mut t = table(60);
        let later = Instant::from_nanos(10 * SECOND);
        let (ino, _) = t.upsert_child(Ino::ROOT, "f", file("new"), Observation::local(later));
        // A listing page from before the lookup releases its entry late.
        let (same, effect) = t.upsert_child(Ino::ROOT, "f", file("old"), Observation::local(T0));
        assert_eq!((same, effect), (ino, UpsertEffect::Unchanged));
        assert_eq!(t.get(ino).unwrap().etag, Some(ETag::new("new")));
        // The old page said "directory": its entry gets an inode, the name keeps the newer file.
        let (dir, _) = t.upsert_child(Ino::ROOT, "f", ChildStat::Directory, Observation::local(T0));
        assert_ne!(dir, ino);
        assert_eq!(t.lookup_cached(Ino::ROOT, "f", later), CachedLookup::Hit(ino));
        // A newer "missing" is not undone by an older listing either.
        t.set_negative(Ino::ROOT, "g", Observation::local(later));
        t.upsert_child(Ino::ROOT, "g", file("old"), Observation::local(T0));
        assert_eq!(t.lookup_cached(Ino::ROOT, "g", later), CachedLookup::Negative);
    }

    /// Found by seed 9051: a getattr's HEAD asked before another client's PUT answered after a
    /// lookup's HEAD asked after it; whichever order they are applied in, the answer to the
    /// later question wins.
    #[test]
    fn an_answer_to_an_earlier_question_never_replaces_attributes_from_a_later_one() {
        let at = |secs: u64| Instant::from_nanos(secs * SECOND);
        let getattr = Observation { asked_at: at(2), answered_at: at(5) };
        let lookup = Observation { asked_at: at(3), answered_at: at(4) };
        // The lookup is applied first.
        let mut t = table(0);
        let (ino, _) = t.upsert_child(Ino::ROOT, "f", file("old"), Observation::local(T0));
        assert_eq!(t.upsert_child(Ino::ROOT, "f", file("new"), lookup), (ino, UpsertEffect::ContentChanged));
        assert_eq!(t.refresh_file(ino, &head("old"), getattr), UpsertEffect::Unchanged);
        assert_eq!(t.get(ino).unwrap().etag, Some(ETag::new("new")));
        // A listing asked even earlier does not replace it either.
        let listing = Observation { asked_at: at(1), answered_at: at(6) };
        t.upsert_child(Ino::ROOT, "f", file("old"), listing);
        assert_eq!(t.get(ino).unwrap().etag, Some(ETag::new("new")));
        // The getattr is applied first (the lookup waited for its second probe).
        let mut t = table(0);
        let (ino, _) = t.upsert_child(Ino::ROOT, "f", file("old"), Observation::local(T0));
        t.refresh_file(ino, &head("old"), getattr);
        assert_eq!(t.upsert_child(Ino::ROOT, "f", file("new"), lookup), (ino, UpsertEffect::ContentChanged));
        assert_eq!(t.get(ino).unwrap().etag, Some(ETag::new("new")));
    }
}
