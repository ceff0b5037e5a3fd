//! The core's inputs and outputs: the whole of its contact with the world.

use std::ffi::OsString;

use crate::fuse_types::{FuseOp, FuseReply};
use crate::ids::{FuseReqId, Ino, S3ReqId};
use crate::s3_types::{GetObjectOutput, S3Request, S3Result};

/// Something that happened outside the core.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Input {
    /// A FUSE request. Every op but `Forget` gets exactly one [`Output::FuseReply`].
    Fuse { id: FuseReqId, op: FuseOp },
    /// The result of an S3 request the core emitted. Late, duplicate and cancelled ids are
    /// ignored.
    S3 { id: S3ReqId, result: S3Result },
    /// Bytes of the body of ranged GetObject request `id`, which goes on: a transport that
    /// streams bodies hands them on as they arrive, so reads are answered before the whole range
    /// is here. `output.body` starts at `output.range_start` in the object. Chunks of one request
    /// come in order, before its [`Input::S3`], whose body (or truncated body) then holds only
    /// the bytes after the last chunk. Chunks of an unknown, finished or cancelled request are
    /// ignored. Only ranged GETs may be streamed.
    S3BodyChunk { id: S3ReqId, output: GetObjectOutput },
    /// The time from [`Core::poll_timeout`](crate::Core::poll_timeout) has been reached.
    Timeout,
    /// The kernel interrupted a FUSE request (the caller got a signal).
    Interrupt { id: FuseReqId },
    /// Unmount: finish or abandon what is in flight, then emit [`Output::Done`].
    Shutdown,
}

/// Something the core wants done.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Output {
    /// Send this request; report its result with the same id.
    S3Request { id: S3ReqId, request: S3Request },
    /// The result of this request is no longer wanted; abort it if possible.
    CancelS3 { id: S3ReqId },
    /// Reply to a FUSE request.
    FuseReply { id: FuseReqId, reply: FuseReply },
    /// Drop the kernel's cached data and attributes of an inode.
    InvalidateInode { ino: Ino },
    /// Drop the kernel's cached name → inode entry.
    InvalidateEntry { parent: Ino, name: OsString },
    /// After [`Input::Shutdown`]: nothing is left in flight.
    Done,
}
