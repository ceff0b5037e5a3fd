//! The FUSE requests the core accepts and the replies it gives, as owned values.
//!
//! The adapter copies names and data out of the kernel's buffers into these types, so the core
//! never borrows from FUSE and a request can wait for S3 as long as it needs to. None of this
//! depends on `fuser`; the adapter converts.

use std::ffi::OsString;
use std::time::Duration;

use crate::ids::{FileHandle, Ino};
use crate::s3_types::Body;
use crate::time::UnixNanos;

/// What kind of file an inode is.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum FileKind {
    File,
    Directory,
    Symlink,
}

/// File attributes, as `stat` shows them.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Attr {
    pub ino: Ino,
    pub size_bytes: u64,
    /// Allocated size in 512-byte blocks.
    pub blocks: u64,
    pub atime: UnixNanos,
    pub mtime: UnixNanos,
    pub ctime: UnixNanos,
    pub kind: FileKind,
    /// Permission bits (`0o644`), without the file type.
    pub perm: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    /// Preferred I/O size.
    pub blksize: u32,
}

/// The open(2) flags the core looks at.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct OpenFlags(pub i32);

impl OpenFlags {
    pub const O_ACCMODE: i32 = 0o3;
    pub const O_RDONLY: i32 = 0o0;
    pub const O_WRONLY: i32 = 0o1;
    pub const O_RDWR: i32 = 0o2;
    pub const O_CREAT: i32 = 0o100;
    pub const O_EXCL: i32 = 0o200;
    pub const O_TRUNC: i32 = 0o1000;
    pub const O_APPEND: i32 = 0o2000;
    pub const O_DIRECT: i32 = 0o40000;

    /// Opened for writing (write-only or read-write).
    pub fn writes(self) -> bool {
        matches!(self.0 & Self::O_ACCMODE, Self::O_WRONLY | Self::O_RDWR)
    }

    pub fn has(self, flag: i32) -> bool {
        self.0 & flag == flag
    }
}

/// A time given to `setattr`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SetTime {
    Now,
    At(UnixNanos),
}

/// The attribute changes of `setattr`; `None` leaves a field alone.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct SetAttrChanges {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size_bytes: Option<u64>,
    pub atime: Option<SetTime>,
    pub mtime: Option<SetTime>,
}

/// A FUSE request, with everything it needs copied in.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FuseOp {
    Lookup {
        parent: Ino,
        name: OsString,
    },
    /// The kernel drops `nlookup` references. Gets no reply.
    Forget {
        ino: Ino,
        nlookup: u64,
    },
    GetAttr {
        ino: Ino,
        fh: Option<FileHandle>,
    },
    SetAttr {
        ino: Ino,
        fh: Option<FileHandle>,
        changes: SetAttrChanges,
    },
    Open {
        ino: Ino,
        flags: OpenFlags,
    },
    Read {
        ino: Ino,
        fh: FileHandle,
        offset: u64,
        size: u32,
    },
    Write {
        ino: Ino,
        fh: FileHandle,
        offset: u64,
        data: Body,
    },
    Flush {
        ino: Ino,
        fh: FileHandle,
    },
    Fsync {
        ino: Ino,
        fh: FileHandle,
        datasync: bool,
    },
    Release {
        ino: Ino,
        fh: FileHandle,
    },
    /// `mode` has the umask applied; `uid` and `gid` are the caller's.
    Create {
        parent: Ino,
        name: OsString,
        mode: u32,
        uid: u32,
        gid: u32,
        flags: OpenFlags,
    },
    Mkdir {
        parent: Ino,
        name: OsString,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Unlink {
        parent: Ino,
        name: OsString,
    },
    Rmdir {
        parent: Ino,
        name: OsString,
    },
    Rename {
        parent: Ino,
        name: OsString,
        new_parent: Ino,
        new_name: OsString,
        flags: u32,
    },
    OpenDir {
        ino: Ino,
    },
    /// `size_bytes` is the kernel's buffer; the core packs entries to fit it exactly.
    ReadDir {
        ino: Ino,
        fh: FileHandle,
        offset: u64,
        size_bytes: u32,
        plus: bool,
    },
    ReleaseDir {
        ino: Ino,
        fh: FileHandle,
    },
    StatFs {
        ino: Ino,
    },
    /// `uid` and `gid` are the caller's.
    Symlink {
        parent: Ino,
        name: OsString,
        target: OsString,
        uid: u32,
        gid: u32,
    },
    ReadLink {
        ino: Ino,
    },
    /// `mode` has the umask applied and holds the file type.
    Mknod {
        parent: Ino,
        name: OsString,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    Link {
        ino: Ino,
        new_parent: Ino,
        new_name: OsString,
    },
    /// `size` 0 asks for the value's size only.
    GetXattr {
        ino: Ino,
        name: OsString,
        size: u32,
    },
    /// `size` 0 asks for the list's size only.
    ListXattr {
        ino: Ino,
        size: u32,
    },
    SetXattr {
        ino: Ino,
        name: OsString,
        value: Vec<u8>,
        flags: u32,
    },
    RemoveXattr {
        ino: Ino,
        name: OsString,
    },
}

impl FuseOp {
    /// The operation's name, for logs and traces.
    pub fn name(&self) -> &'static str {
        match self {
            FuseOp::Lookup { .. } => "lookup",
            FuseOp::Forget { .. } => "forget",
            FuseOp::GetAttr { .. } => "getattr",
            FuseOp::SetAttr { .. } => "setattr",
            FuseOp::Open { .. } => "open",
            FuseOp::Read { .. } => "read",
            FuseOp::Write { .. } => "write",
            FuseOp::Flush { .. } => "flush",
            FuseOp::Fsync { .. } => "fsync",
            FuseOp::Release { .. } => "release",
            FuseOp::Create { .. } => "create",
            FuseOp::Mkdir { .. } => "mkdir",
            FuseOp::Unlink { .. } => "unlink",
            FuseOp::Rmdir { .. } => "rmdir",
            FuseOp::Rename { .. } => "rename",
            FuseOp::OpenDir { .. } => "opendir",
            FuseOp::ReadDir { plus: false, .. } => "readdir",
            FuseOp::ReadDir { plus: true, .. } => "readdirplus",
            FuseOp::ReleaseDir { .. } => "releasedir",
            FuseOp::StatFs { .. } => "statfs",
            FuseOp::Symlink { .. } => "symlink",
            FuseOp::ReadLink { .. } => "readlink",
            FuseOp::Mknod { .. } => "mknod",
            FuseOp::Link { .. } => "link",
            FuseOp::GetXattr { .. } => "getxattr",
            FuseOp::ListXattr { .. } => "listxattr",
            FuseOp::SetXattr { .. } => "setxattr",
            FuseOp::RemoveXattr { .. } => "removexattr",
        }
    }

    /// Whether the kernel expects a reply (all but `forget`).
    pub fn expects_reply(&self) -> bool {
        !matches!(self, FuseOp::Forget { .. })
    }
}

/// A directory entry that `lookup` or `readdirplus` hands to the kernel.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Entry {
    pub attr: Attr,
    /// How long the kernel may cache the name → inode mapping.
    pub entry_ttl: Duration,
    /// How long the kernel may cache the attributes.
    pub attr_ttl: Duration,
    pub generation: u64,
}

/// One entry of a `readdir` reply.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DirEntry {
    pub ino: Ino,
    /// The offset to pass to the next `readdir` to continue after this entry.
    pub next_offset: u64,
    pub kind: FileKind,
    pub name: OsString,
}

/// One entry of a `readdirplus` reply: the dirent and the attributes of a lookup.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DirEntryPlus {
    pub dirent: DirEntry,
    pub entry: Entry,
}

/// Open-reply flags for the kernel.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct OpenReplyFlags {
    /// The page cache from an earlier open is still valid (the object did not change).
    pub keep_cache: bool,
    /// Bypass the page cache.
    pub direct_io: bool,
}

/// What `statfs` reports.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct StatFs {
    pub blocks: u64,
    pub blocks_free: u64,
    pub blocks_available: u64,
    pub files: u64,
    pub files_free: u64,
    pub block_size: u32,
    pub name_max_bytes: u32,
    pub fragment_size: u32,
}

/// A reply to one FUSE request.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum FuseReply {
    Entry(Entry),
    Attr {
        attr: Attr,
        ttl: Duration,
    },
    Opened {
        fh: FileHandle,
        flags: OpenReplyFlags,
    },
    Created {
        entry: Entry,
        fh: FileHandle,
        flags: OpenReplyFlags,
    },
    /// Read data; `Debug` shows its length only.
    Data(Body),
    Written {
        size: u32,
    },
    Dir(Vec<DirEntry>),
    DirPlus(Vec<DirEntryPlus>),
    StatFs(StatFs),
    /// The size an xattr value or list would take (a get or list with size 0).
    XattrSize(u32),
    Empty,
    Error(crate::errno::Errno),
}

/// Bytes one entry takes in the kernel's readdir buffer: `struct fuse_dirent` (24 bytes) plus
/// the name, padded to 8 bytes.
pub fn dirent_size_bytes(name_len: usize) -> usize {
    (24 + name_len).next_multiple_of(8)
}

/// Bytes one entry takes in the kernel's readdirplus buffer: `struct fuse_entry_out`
/// (128 bytes) before the dirent.
pub fn direntplus_size_bytes(name_len: usize) -> usize {
    128 + dirent_size_bytes(name_len)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirent_sizes_match_the_kernel_layout() {
        assert_eq!(dirent_size_bytes(1), 32);
        assert_eq!(dirent_size_bytes(8), 32);
        assert_eq!(dirent_size_bytes(9), 40);
        assert_eq!(direntplus_size_bytes(1), 160);
    }

    #[test]
    fn open_flags_tell_writers_apart() {
        assert!(!OpenFlags(OpenFlags::O_RDONLY).writes());
        assert!(OpenFlags(OpenFlags::O_WRONLY).writes());
        assert!(OpenFlags(OpenFlags::O_RDWR | OpenFlags::O_APPEND).writes());
        assert!(OpenFlags(OpenFlags::O_RDWR | OpenFlags::O_APPEND).has(OpenFlags::O_APPEND));
    }
}
