//! # goofys-core: the filesystem as a pure state machine
//!
//! The core decides everything goofys-rs does: how S3 keys become a directory tree, what is
//! cached and for how long, when to prefetch, when to retry. It does no IO. The contract, in
//! the sans-IO style of quinn-proto and str0m:
//!
//! - **Inputs go in** with [`Core::handle_input`]: FUSE requests, S3 results, timeouts,
//!   interrupts and shutdown. It never blocks and never fails.
//! - **Drain after every input.** Call [`Core::poll_output`] until it returns `None`. Outputs
//!   are S3 requests to send, cancellations, FUSE replies, kernel-cache invalidations and `Done`.
//! - **Time is an input.** Every call takes `now`; [`Core::poll_timeout`] says when to call
//!   again with [`Input::Timeout`] if nothing else happens. The core never reads a clock.
//! - **Randomness is seeded.** Retry jitter comes from a portable PRNG seeded in
//!   [`Core::new`], so the same inputs give the same outputs, bit for bit.
//! - **No IO, no threads, no environment.** `core/clippy.toml` forbids them and a test checks
//!   the dependency tree.

pub mod config;
pub mod errno;
pub mod fuse_types;
pub mod ids;
pub mod io;
pub mod s3_types;
pub mod time;

pub use config::CoreConfig;
pub use errno::Errno;
pub use ids::{FileHandle, FuseReqId, Ino, S3ReqId};
pub use io::{Input, Output};
pub use time::{Instant, UnixNanos};

pub mod attrs;
mod calls;
mod copy;
pub mod counters;
mod extents;
mod fetch;
mod inode;
mod leftovers;
mod links;
mod lookup;
mod machine;
mod mutate;
pub mod namespace;
pub mod posix;
mod read;
mod readdir;
pub mod retry;
mod unlinked;
pub mod write;
pub mod xattr;

pub use machine::Core;
