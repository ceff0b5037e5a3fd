//! Short forms of the FUSE operations tests run through a [`PlanDriver`] (the core against
//! the simulator's S3 model), each asserting that the operation succeeded.

use bytes::Bytes;
use goofys_core::fuse_types::{FuseOp, FuseReply, OpenFlags};
use goofys_core::s3_types::Body;
use goofys_core::{FileHandle, Ino};
use goofys_sim::plan::PlanDriver;

pub fn create(driver: &mut PlanDriver, parent: Ino, name: &str) -> (Ino, FileHandle) {
    let op = FuseOp::Create {
        parent,
        name: name.into(),
        mode: 0o644,
        uid: 0,
        gid: 0,
        flags: OpenFlags(OpenFlags::O_WRONLY | OpenFlags::O_CREAT),
    };
    match driver.run(op) {
        FuseReply::Created { entry, fh, .. } => (entry.attr.ino, fh),
        other => panic!("create {name}: {other:?}"),
    }
}

pub fn lookup(driver: &mut PlanDriver, parent: Ino, name: &str) -> FuseReply {
    driver.run(FuseOp::Lookup { parent, name: name.into() })
}

pub fn ino_of(driver: &mut PlanDriver, parent: Ino, name: &str) -> Ino {
    match lookup(driver, parent, name) {
        FuseReply::Entry(entry) => entry.attr.ino,
        other => panic!("lookup {name}: {other:?}"),
    }
}

pub fn open(driver: &mut PlanDriver, ino: Ino, flags: i32) -> FileHandle {
    match driver.run(FuseOp::Open { ino, flags: OpenFlags(flags) }) {
        FuseReply::Opened { fh, .. } => fh,
        other => panic!("open: {other:?}"),
    }
}

pub fn write(driver: &mut PlanDriver, ino: Ino, fh: FileHandle, offset: u64, data: &[u8]) {
    let reply = driver.run(FuseOp::Write { ino, fh, offset, data: Body(Bytes::copy_from_slice(data)) });
    assert_eq!(reply, FuseReply::Written { size: data.len() as u32 }, "write at {offset}");
}

pub fn read(driver: &mut PlanDriver, ino: Ino, fh: FileHandle, offset: u64, size: u32) -> Vec<u8> {
    match driver.run(FuseOp::Read { ino, fh, offset, size }) {
        FuseReply::Data(data) => data.to_vec(),
        other => panic!("read at {offset}: {other:?}"),
    }
}

pub fn close(driver: &mut PlanDriver, ino: Ino, fh: FileHandle) -> FuseReply {
    let flushed = driver.run(FuseOp::Flush { ino, fh });
    assert_eq!(driver.run(FuseOp::Release { ino, fh }), FuseReply::Empty);
    flushed
}
