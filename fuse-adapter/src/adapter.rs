//! The fuser side: each kernel request becomes an owned [`FuseOp`] and travels, with the reply
//! object that answers it, to the driver task.
//!
//! Problems this module solves:
//! - fuser hands us borrowed names and data and expects a reply object to be used exactly once,
//!   possibly later and from another thread. The adapter copies what it needs, keeps the reply
//!   in a [`PendingReply`], and never waits for S3 on a fuser thread.
//! - A bounded channel gives the kernel backpressure when the driver falls behind.
//! - Conversions between the core's types and fuser's (attributes, kinds, errnos, flags) live
//!   here and nowhere else.
//! - Kernel features are negotiated at init: 1 MiB reads and writes, async reads, readdirplus,
//!   parallel directory operations and a raised background-request limit.

use std::ffi::OsStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use fuser::{
    FileAttr, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, ReplyAttr, ReplyCreate,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite,
    ReplyXattr, Request, TimeOrNow,
};
use goofys_core::fuse_types::{Attr, FileKind, FuseOp, OpenFlags, SetAttrChanges, SetTime};
use goofys_core::s3_types::Body;
use goofys_core::{Errno, FileHandle, FuseReqId, Ino, UnixNanos};
use tokio::sync::mpsc;

/// The largest read and write the kernel sends in one request.
pub const MAX_IO_BYTES: u32 = 1024 * 1024;
/// How many requests the kernel may have outstanding in the background (async reads,
/// readahead). The kernel's default is 12.
pub const MAX_BACKGROUND_REQUESTS: u16 = 64;
/// The readdir buffer the core packs entries for. fuser 0.18 does not tell the filesystem the
/// kernel's buffer size; every kernel offers at least one page, and entries that do not fit
/// are asked for again at the next offset.
pub const READDIR_BUFFER_BYTES: u32 = 4096;

/// A reply object waiting for the core's answer.
#[derive(Debug)]
pub enum PendingReply {
    Entry(ReplyEntry),
    Attr(ReplyAttr),
    Open(ReplyOpen),
    Create(ReplyCreate),
    Data(ReplyData),
    Write(ReplyWrite),
    Empty(ReplyEmpty),
    Dir(ReplyDirectory),
    DirPlus(ReplyDirectoryPlus),
    StatFs(ReplyStatfs),
    Xattr(ReplyXattr),
}

impl PendingReply {
    /// Answers with an error, whatever kind of reply this is.
    pub fn error(self, errno: Errno) {
        let errno = to_fuser_errno(errno);
        match self {
            PendingReply::Entry(reply) => reply.error(errno),
            PendingReply::Attr(reply) => reply.error(errno),
            PendingReply::Open(reply) => reply.error(errno),
            PendingReply::Create(reply) => reply.error(errno),
            PendingReply::Data(reply) => reply.error(errno),
            PendingReply::Write(reply) => reply.error(errno),
            PendingReply::Empty(reply) => reply.error(errno),
            PendingReply::Dir(reply) => reply.error(errno),
            PendingReply::DirPlus(reply) => reply.error(errno),
            PendingReply::StatFs(reply) => reply.error(errno),
            PendingReply::Xattr(reply) => reply.error(errno),
        }
    }
}

/// What the adapter sends the driver.
#[derive(Debug)]
pub enum Envelope {
    /// A request and, unless it is a `forget`, the reply object that answers it.
    Request { id: FuseReqId, op: FuseOp, reply: Option<PendingReply> },
    /// The kernel ended the session (unmount).
    Destroyed,
}

/// The fuser filesystem: forwards every request to the driver.
#[derive(Debug)]
pub struct FuseAdapter {
    tx: mpsc::Sender<Envelope>,
    next_id: AtomicU64,
}

impl FuseAdapter {
    pub fn new(tx: mpsc::Sender<Envelope>) -> Self {
        FuseAdapter { tx, next_id: AtomicU64::new(1) }
    }

    fn send(&self, op: FuseOp, reply: Option<PendingReply>) {
        let id = FuseReqId(self.next_id.fetch_add(1, Ordering::Relaxed));
        // If the driver is gone (shutting down), answer rather than leave the caller hanging.
        if let Err(mpsc::error::SendError(Envelope::Request { reply: Some(reply), .. })) =
            self.tx.blocking_send(Envelope::Request { id, op, reply })
        {
            reply.error(Errno::EIO);
        }
    }
}

impl Filesystem for FuseAdapter {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let wanted = InitFlags::FUSE_ASYNC_READ
            | InitFlags::FUSE_BIG_WRITES
            | InitFlags::FUSE_MAX_PAGES
            | InitFlags::FUSE_DO_READDIRPLUS
            | InitFlags::FUSE_READDIRPLUS_AUTO
            | InitFlags::FUSE_PARALLEL_DIROPS
            // open(O_TRUNC) arrives as one request instead of a truncate then an open.
            | InitFlags::FUSE_ATOMIC_O_TRUNC;
        if let Err(unsupported) = config.add_capabilities(wanted) {
            tracing::info!(?unsupported, "the kernel does not offer every FUSE capability we ask for");
            let _ = config.add_capabilities(wanted - unsupported);
        }
        if let Err(nearest) = config.set_max_write(MAX_IO_BYTES) {
            let _ = config.set_max_write(nearest);
        }
        if let Err(nearest) = config.set_max_readahead(MAX_IO_BYTES) {
            let _ = config.set_max_readahead(nearest);
        }
        if let Err(nearest) = config.set_max_background(MAX_BACKGROUND_REQUESTS) {
            let _ = config.set_max_background(nearest);
        }
        Ok(())
    }

    fn destroy(&mut self) {
        let _ = self.tx.blocking_send(Envelope::Destroyed);
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.send(FuseOp::Lookup { parent: ino(parent), name: name.to_owned() }, Some(PendingReply::Entry(reply)));
    }

    fn forget(&self, _req: &Request, ino_no: INodeNo, nlookup: u64) {
        self.send(FuseOp::Forget { ino: ino(ino_no), nlookup }, None);
    }

    fn getattr(&self, _req: &Request, ino_no: INodeNo, fh: Option<fuser::FileHandle>, reply: ReplyAttr) {
        self.send(FuseOp::GetAttr { ino: ino(ino_no), fh: fh.map(handle) }, Some(PendingReply::Attr(reply)));
    }

    fn setattr(
        &self,
        _req: &Request,
        ino_no: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<fuser::FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let changes =
            SetAttrChanges { mode, uid, gid, size_bytes: size, atime: atime.map(set_time), mtime: mtime.map(set_time) };
        self.send(FuseOp::SetAttr { ino: ino(ino_no), fh: fh.map(handle), changes }, Some(PendingReply::Attr(reply)));
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        let op = FuseOp::Mkdir {
            parent: ino(parent),
            name: name.to_owned(),
            mode: mode & !umask,
            uid: req.uid(),
            gid: req.gid(),
        };
        self.send(op, Some(PendingReply::Entry(reply)));
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &std::path::Path, reply: ReplyEntry) {
        let op = FuseOp::Symlink {
            parent: ino(parent),
            name: link_name.to_owned(),
            target: target.as_os_str().to_owned(),
            uid: req.uid(),
            gid: req.gid(),
        };
        self.send(op, Some(PendingReply::Entry(reply)));
    }

    fn readlink(&self, _req: &Request, ino_no: INodeNo, reply: ReplyData) {
        self.send(FuseOp::ReadLink { ino: ino(ino_no) }, Some(PendingReply::Data(reply)));
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let op = FuseOp::Mknod {
            parent: ino(parent),
            name: name.to_owned(),
            mode: mode & !umask,
            uid: req.uid(),
            gid: req.gid(),
        };
        self.send(op, Some(PendingReply::Entry(reply)));
    }

    fn link(&self, _req: &Request, ino_no: INodeNo, new_parent: INodeNo, new_name: &OsStr, reply: ReplyEntry) {
        let op = FuseOp::Link { ino: ino(ino_no), new_parent: ino(new_parent), new_name: new_name.to_owned() };
        self.send(op, Some(PendingReply::Entry(reply)));
    }

    fn getxattr(&self, _req: &Request, ino_no: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        let op = FuseOp::GetXattr { ino: ino(ino_no), name: name.to_owned(), size };
        self.send(op, Some(PendingReply::Xattr(reply)));
    }

    fn listxattr(&self, _req: &Request, ino_no: INodeNo, size: u32, reply: ReplyXattr) {
        self.send(FuseOp::ListXattr { ino: ino(ino_no), size }, Some(PendingReply::Xattr(reply)));
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino_no: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        position: u32,
        reply: ReplyEmpty,
    ) {
        if position != 0 {
            // Only macOS resource forks use a position.
            return reply.error(fuser::Errno::EINVAL);
        }
        let op =
            FuseOp::SetXattr { ino: ino(ino_no), name: name.to_owned(), value: value.to_vec(), flags: flags as u32 };
        self.send(op, Some(PendingReply::Empty(reply)));
    }

    fn removexattr(&self, _req: &Request, ino_no: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.send(FuseOp::RemoveXattr { ino: ino(ino_no), name: name.to_owned() }, Some(PendingReply::Empty(reply)));
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.send(FuseOp::Unlink { parent: ino(parent), name: name.to_owned() }, Some(PendingReply::Empty(reply)));
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.send(FuseOp::Rmdir { parent: ino(parent), name: name.to_owned() }, Some(PendingReply::Empty(reply)));
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        new_parent: INodeNo,
        new_name: &OsStr,
        flags: fuser::RenameFlags,
        reply: ReplyEmpty,
    ) {
        let op = FuseOp::Rename {
            parent: ino(parent),
            name: name.to_owned(),
            new_parent: ino(new_parent),
            new_name: new_name.to_owned(),
            flags: flags.bits(),
        };
        self.send(op, Some(PendingReply::Empty(reply)));
    }

    fn open(&self, _req: &Request, ino_no: INodeNo, flags: fuser::OpenFlags, reply: ReplyOpen) {
        self.send(FuseOp::Open { ino: ino(ino_no), flags: OpenFlags(flags.0) }, Some(PendingReply::Open(reply)));
    }

    fn read(
        &self,
        _req: &Request,
        ino_no: INodeNo,
        fh: fuser::FileHandle,
        offset: u64,
        size: u32,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyData,
    ) {
        let op = FuseOp::Read { ino: ino(ino_no), fh: handle(fh), offset, size };
        self.send(op, Some(PendingReply::Data(reply)));
    }

    fn write(
        &self,
        _req: &Request,
        ino_no: INodeNo,
        fh: fuser::FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: fuser::WriteFlags,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        reply: ReplyWrite,
    ) {
        let data = Body(Bytes::copy_from_slice(data));
        let op = FuseOp::Write { ino: ino(ino_no), fh: handle(fh), offset, data };
        self.send(op, Some(PendingReply::Write(reply)));
    }

    fn flush(
        &self,
        _req: &Request,
        ino_no: INodeNo,
        fh: fuser::FileHandle,
        _lock_owner: fuser::LockOwner,
        reply: ReplyEmpty,
    ) {
        self.send(FuseOp::Flush { ino: ino(ino_no), fh: handle(fh) }, Some(PendingReply::Empty(reply)));
    }

    fn release(
        &self,
        _req: &Request,
        ino_no: INodeNo,
        fh: fuser::FileHandle,
        _flags: fuser::OpenFlags,
        _lock_owner: Option<fuser::LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.send(FuseOp::Release { ino: ino(ino_no), fh: handle(fh) }, Some(PendingReply::Empty(reply)));
    }

    fn fsync(&self, _req: &Request, ino_no: INodeNo, fh: fuser::FileHandle, datasync: bool, reply: ReplyEmpty) {
        self.send(FuseOp::Fsync { ino: ino(ino_no), fh: handle(fh), datasync }, Some(PendingReply::Empty(reply)));
    }

    fn opendir(&self, _req: &Request, ino_no: INodeNo, _flags: fuser::OpenFlags, reply: ReplyOpen) {
        self.send(FuseOp::OpenDir { ino: ino(ino_no) }, Some(PendingReply::Open(reply)));
    }

    fn readdir(&self, _req: &Request, ino_no: INodeNo, fh: fuser::FileHandle, offset: u64, reply: ReplyDirectory) {
        let op =
            FuseOp::ReadDir { ino: ino(ino_no), fh: handle(fh), offset, size_bytes: READDIR_BUFFER_BYTES, plus: false };
        self.send(op, Some(PendingReply::Dir(reply)));
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino_no: INodeNo,
        fh: fuser::FileHandle,
        offset: u64,
        reply: ReplyDirectoryPlus,
    ) {
        let op =
            FuseOp::ReadDir { ino: ino(ino_no), fh: handle(fh), offset, size_bytes: READDIR_BUFFER_BYTES, plus: true };
        self.send(op, Some(PendingReply::DirPlus(reply)));
    }

    fn releasedir(
        &self,
        _req: &Request,
        ino_no: INodeNo,
        fh: fuser::FileHandle,
        _flags: fuser::OpenFlags,
        reply: ReplyEmpty,
    ) {
        self.send(FuseOp::ReleaseDir { ino: ino(ino_no), fh: handle(fh) }, Some(PendingReply::Empty(reply)));
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: fuser::FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // Directories hold no unwritten state: every change reaches S3 before it returns.
        reply.ok();
    }

    fn statfs(&self, _req: &Request, ino_no: INodeNo, reply: ReplyStatfs) {
        self.send(FuseOp::StatFs { ino: ino(ino_no) }, Some(PendingReply::StatFs(reply)));
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let op = FuseOp::Create {
            parent: ino(parent),
            name: name.to_owned(),
            mode: mode & !umask,
            uid: req.uid(),
            gid: req.gid(),
            flags: OpenFlags(flags),
        };
        self.send(op, Some(PendingReply::Create(reply)));
    }
}

fn ino(ino: INodeNo) -> Ino {
    Ino(ino.0)
}

fn handle(fh: fuser::FileHandle) -> FileHandle {
    FileHandle(fh.0)
}

fn set_time(time: TimeOrNow) -> SetTime {
    match time {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(at) => SetTime::At(unix_nanos(at)),
    }
}

/// Wall-clock time as the core represents it.
pub fn unix_nanos(time: SystemTime) -> UnixNanos {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => UnixNanos(i64::try_from(after.as_nanos()).unwrap_or(i64::MAX)),
        Err(before) => UnixNanos(-i64::try_from(before.duration().as_nanos()).unwrap_or(i64::MAX)),
    }
}

fn system_time(time: UnixNanos) -> SystemTime {
    if time.0 >= 0 {
        UNIX_EPOCH + Duration::from_nanos(time.0 as u64)
    } else {
        UNIX_EPOCH - Duration::from_nanos(time.0.unsigned_abs())
    }
}

/// fuser's attributes from the core's.
pub fn file_attr(attr: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(attr.ino.0),
        size: attr.size_bytes,
        blocks: attr.blocks,
        atime: system_time(attr.atime),
        mtime: system_time(attr.mtime),
        ctime: system_time(attr.ctime),
        crtime: system_time(attr.mtime),
        kind: file_type(attr.kind),
        perm: attr.perm,
        nlink: attr.nlink,
        uid: attr.uid,
        gid: attr.gid,
        rdev: 0,
        blksize: attr.blksize,
        flags: 0,
    }
}

pub fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::File => FileType::RegularFile,
        FileKind::Directory => FileType::Directory,
        FileKind::Symlink => FileType::Symlink,
    }
}

pub fn to_fuser_errno(errno: Errno) -> fuser::Errno {
    fuser::Errno::from_i32(errno.code())
}

pub fn fopen_flags(flags: goofys_core::fuse_types::OpenReplyFlags) -> FopenFlags {
    let mut out = FopenFlags::empty();
    if flags.keep_cache {
        out |= FopenFlags::FOPEN_KEEP_CACHE;
    }
    if flags.direct_io {
        out |= FopenFlags::FOPEN_DIRECT_IO;
    }
    out
}

pub fn generation(generation: u64) -> Generation {
    Generation(generation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wall_times_convert_both_ways_including_before_the_epoch() {
        for nanos in [0i64, 1, 1_700_000_000_123_456_789, -5_000_000_001] {
            assert_eq!(unix_nanos(system_time(UnixNanos(nanos))), UnixNanos(nanos));
        }
    }

    #[test]
    fn errnos_keep_their_linux_numbers() {
        assert_eq!(i32::from(to_fuser_errno(Errno::ENOENT)), libc::ENOENT);
        assert_eq!(i32::from(to_fuser_errno(Errno::ESTALE)), libc::ESTALE);
        assert_eq!(i32::from(to_fuser_errno(Errno::ENOTSUP)), libc::ENOTSUP);
    }
}
