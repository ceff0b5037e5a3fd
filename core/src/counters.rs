//! What the core can tell about itself as plain numbers, for the mount's metrics: retries,
//! resumed bodies, memory held for readers and writers, open handles and calls in flight.
//!
//! The core only counts (it has no clock); the driver reads [`Core::counters`] when it likes
//! and does all timing with real clocks.

use crate::machine::Core;

/// A snapshot of the core's counters and gauges.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct CoreCounters {
    /// S3 attempts sent again after a retryable failure or a missed deadline, since mount.
    pub retries: u64,
    /// Truncated GET bodies resumed at the next offset, since mount.
    pub resumed_bodies: u64,
    /// Object bytes held for open readers (prefetched or waiting to be read).
    pub read_buffer_bytes: u64,
    /// Memory held for written data not yet in S3, across files: the written bytes and the
    /// part bodies built from them.
    pub dirty_bytes: u64,
    /// Open file handles.
    pub open_files: u64,
}

impl Core {
    /// The counters now. Costs a walk over open handles; call it at most every few
    /// milliseconds, not per input.
    pub fn counters(&self) -> CoreCounters {
        CoreCounters {
            retries: self.calls.retries,
            resumed_bodies: self.calls.resumes,
            read_buffer_bytes: self.files.values().map(|reader| reader.buffered_bytes()).sum(),
            dirty_bytes: self.dirty_bytes_total(),
            open_files: self.files.len() as u64,
        }
    }
}
