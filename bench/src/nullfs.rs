//! The null filesystem: the FUSE ceiling. It serves the benchmark's data set from memory (large
//! files read as zeros, small files as their bytes), accepts writes without keeping large data,
//! and negotiates the same kernel features as goofys-rs (1 MiB requests, async reads), so the
//! gap between it and goofys-rs is what S3 and the core cost, not FUSE.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    MountOption, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyWrite,
    Request, TimeOrNow,
};

use crate::layout::{Layout, SMALL_BODY};

const TTL: Duration = Duration::from_secs(60);
/// Files up to this size keep their bytes; larger ones read back as zeros.
const KEPT_BYTES_MAX: u64 = 64 * 1024;
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

#[derive(Debug)]
enum Node {
    Dir { parent: u64, children: BTreeMap<OsString, u64> },
    File { size: u64, bytes: Option<Vec<u8>> },
}

#[derive(Debug)]
struct Tree {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
}

impl Tree {
    fn new() -> Tree {
        let root = Node::Dir { parent: 1, children: BTreeMap::new() };
        Tree { nodes: HashMap::from([(1, root)]), next_ino: 2 }
    }

    fn child(&self, parent: u64, name: &OsStr) -> Option<u64> {
        match self.nodes.get(&parent)? {
            Node::Dir { children, .. } => children.get(name).copied(),
            Node::File { .. } => None,
        }
    }

    fn insert(&mut self, parent: u64, name: &OsStr, node: Node) -> Option<u64> {
        let ino = self.next_ino;
        let Some(Node::Dir { children, .. }) = self.nodes.get_mut(&parent) else { return None };
        children.insert(name.to_owned(), ino);
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        Some(ino)
    }

    /// Creates `path`'s directories and the file at its end.
    fn add_file(&mut self, path: &str, size: u64, bytes: Option<Vec<u8>>) {
        let mut parent = 1;
        let parts: Vec<&str> = path.split('/').collect();
        for dir in &parts[..parts.len() - 1] {
            parent = match self.child(parent, OsStr::new(dir)) {
                Some(existing) => existing,
                None => self
                    .insert(parent, OsStr::new(dir), Node::Dir { parent, children: BTreeMap::new() })
                    .expect("parent is a directory"),
            };
        }
        self.insert(parent, OsStr::new(parts[parts.len() - 1]), Node::File { size, bytes });
    }

    fn attr(&self, ino: u64) -> Option<FileAttr> {
        let (kind, size, perm, nlink) = match self.nodes.get(&ino)? {
            Node::Dir { .. } => (FileType::Directory, 4096, 0o755, 2),
            Node::File { size, .. } => (FileType::RegularFile, *size, 0o644, 1),
        };
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        Some(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks: size.div_ceil(512),
            atime: now,
            mtime: now,
            ctime: now,
            crtime: now,
            kind,
            perm,
            nlink,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }
}

/// The filesystem, pre-filled with `layout`'s data set.
#[derive(Debug)]
pub struct NullFs {
    tree: Mutex<Tree>,
}

impl NullFs {
    pub fn new(layout: &Layout) -> NullFs {
        let mut tree = Tree::new();
        for key in layout.big_keys() {
            tree.add_file(&key, layout.big_file_bytes, None);
        }
        for key in layout.ls_keys().into_iter().chain(layout.tree_keys()) {
            tree.add_file(&key, SMALL_BODY.len() as u64, Some(SMALL_BODY.to_vec()));
        }
        NullFs { tree: Mutex::new(tree) }
    }

    fn tree(&self) -> std::sync::MutexGuard<'_, Tree> {
        self.tree.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn reply_entry(&self, ino: Option<u64>, reply: ReplyEntry) {
        match ino.and_then(|ino| self.tree().attr(ino)) {
            Some(attr) => reply.entry(&TTL, &attr, Generation(0)),
            None => reply.error(Errno::ENOENT),
        }
    }
}

/// Mounts the null filesystem on `mountpoint` and serves it until it is unmounted.
pub fn serve(layout: &Layout, mountpoint: &Path) -> std::io::Result<()> {
    let mut config = fuser::Config::default();
    config.mount_options =
        vec![MountOption::FSName("null-fuse".into()), MountOption::DefaultPermissions, MountOption::RW];
    config.acl = fuser::SessionACL::RootAndOwner;
    fuser::mount(NullFs::new(layout), mountpoint, &config)
}

impl Filesystem for NullFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let wanted = InitFlags::FUSE_ASYNC_READ
            | InitFlags::FUSE_BIG_WRITES
            | InitFlags::FUSE_MAX_PAGES
            | InitFlags::FUSE_PARALLEL_DIROPS
            | InitFlags::FUSE_ATOMIC_O_TRUNC;
        if let Err(unsupported) = config.add_capabilities(wanted) {
            let _ = config.add_capabilities(wanted - unsupported);
        }
        let io_bytes = 1 << 20;
        if let Err(nearest) = config.set_max_write(io_bytes) {
            let _ = config.set_max_write(nearest);
        }
        if let Err(nearest) = config.set_max_readahead(io_bytes) {
            let _ = config.set_max_readahead(nearest);
        }
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let ino = self.tree().child(parent.0, name);
        self.reply_entry(ino, reply);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.tree().attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        _mode: Option<u32>,
        _uid: Option<u32>,
        _gid: Option<u32>,
        size: Option<u64>,
        _atime: Option<TimeOrNow>,
        _mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let mut tree = self.tree();
        if let (Some(new_size), Some(Node::File { size, bytes })) = (size, tree.nodes.get_mut(&ino.0)) {
            *size = new_size;
            if let Some(kept) = bytes {
                kept.resize(usize::try_from(new_size).unwrap_or(usize::MAX).min(KEPT_BYTES_MAX as usize), 0);
            }
        }
        match tree.attr(ino.0) {
            Some(attr) => reply.attr(&TTL, &attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn mkdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, _mode: u32, _umask: u32, reply: ReplyEntry) {
        let ino = {
            let mut tree = self.tree();
            match tree.child(parent.0, name) {
                Some(_) => return reply.error(Errno::EEXIST),
                None => tree.insert(parent.0, name, Node::Dir { parent: parent.0, children: BTreeMap::new() }),
            }
        };
        self.reply_entry(ino, reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut tree = self.tree();
        let Some(ino) = tree.child(parent.0, name) else { return reply.error(Errno::ENOENT) };
        if let Some(Node::Dir { children, .. }) = tree.nodes.get_mut(&parent.0) {
            children.remove(name);
        }
        tree.nodes.remove(&ino);
        reply.ok();
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        let mut tree = self.tree();
        let Some(ino) = tree.child(parent.0, name) else { return reply.error(Errno::ENOENT) };
        if matches!(tree.nodes.get(&ino), Some(Node::Dir { children, .. }) if !children.is_empty()) {
            return reply.error(Errno::ENOTEMPTY);
        }
        if let Some(Node::Dir { children, .. }) = tree.nodes.get_mut(&parent.0) {
            children.remove(name);
        }
        tree.nodes.remove(&ino);
        reply.ok();
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: fuser::OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let tree = self.tree();
        let Some(Node::File { size: file_size, bytes }) = tree.nodes.get(&ino.0) else {
            return reply.error(Errno::EISDIR);
        };
        let end = offset.saturating_add(u64::from(size)).min(*file_size);
        let len = usize::try_from(end.saturating_sub(offset)).unwrap_or(0);
        match bytes {
            Some(kept) => {
                let start = usize::try_from(offset).unwrap_or(usize::MAX).min(kept.len());
                reply.data(&kept[start..(start + len).min(kept.len())]);
            }
            None => reply.data(&ZEROS[..len.min(ZEROS.len())]),
        }
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let mut tree = self.tree();
        let Some(Node::File { size, bytes }) = tree.nodes.get_mut(&ino.0) else {
            return reply.error(Errno::EISDIR);
        };
        let end = offset + data.len() as u64;
        *size = (*size).max(end);
        match bytes {
            Some(kept) if end <= KEPT_BYTES_MAX => {
                if kept.len() < end as usize {
                    kept.resize(end as usize, 0);
                }
                kept[offset as usize..end as usize].copy_from_slice(data);
            }
            _ => *bytes = None,
        }
        reply.written(u32::try_from(data.len()).unwrap_or(u32::MAX));
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: fuser::LockOwner, reply: ReplyEmpty) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: fuser::OpenFlags, reply: ReplyOpen) {
        reply.opened(FileHandle(0), FopenFlags::empty());
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let tree = self.tree();
        let Some(Node::Dir { parent, children }) = tree.nodes.get(&ino.0) else {
            return reply.error(Errno::ENOTDIR);
        };
        let dots = [(ino.0, FileType::Directory, OsString::from(".")), (*parent, FileType::Directory, "..".into())];
        let entries = dots.into_iter().chain(children.iter().map(|(name, &child)| {
            let kind = match tree.nodes.get(&child) {
                Some(Node::Dir { .. }) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            (child, kind, name.clone())
        }));
        for (index, (child, kind, name)) in entries.enumerate().skip(usize::try_from(offset).unwrap_or(usize::MAX)) {
            if reply.add(INodeNo(child), index as u64 + 1, kind, &name) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _flags: fuser::OpenFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn create(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        _mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let mut tree = self.tree();
        let ino = match tree.child(parent.0, name) {
            Some(existing) => Some(existing),
            None => tree.insert(parent.0, name, Node::File { size: 0, bytes: Some(Vec::new()) }),
        };
        match ino.and_then(|ino| tree.attr(ino)) {
            Some(attr) => reply.created(&TTL, &attr, Generation(0), FileHandle(0), FopenFlags::empty()),
            None => reply.error(Errno::ENOENT),
        }
    }
}
