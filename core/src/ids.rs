//! Identifiers that cross the core's boundary.
//!
//! FUSE request ids are chosen by the driver; S3 request ids, inode numbers and handle numbers
//! are chosen by the core from monotonic counters, so the same inputs give the same ids.

use std::fmt;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!($prefix, "{}"), self.0)
            }
        }
    };
}

id_type!(
    /// A FUSE request, as numbered by the driver. Every request but `forget` gets exactly one reply.
    FuseReqId,
    "fuse#"
);
id_type!(
    /// An S3 request emitted by the core. A result for an unknown or cancelled id is ignored.
    S3ReqId,
    "s3#"
);
id_type!(
    /// An inode number. Numbers are never reused during a mount.
    Ino,
    "ino"
);
id_type!(
    /// An open file or directory handle.
    FileHandle,
    "fh"
);

impl Ino {
    /// The mount's root directory.
    pub const ROOT: Ino = Ino(1);
}
