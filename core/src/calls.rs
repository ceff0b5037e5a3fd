//! The table of S3 calls in progress: one call is one logical request that may take several
//! attempts.
//!
//! Problems this module solves:
//! - A request is retried under a new [`S3ReqId`] after a backoff; results for an old id (late,
//!   duplicated, or after a cancel) must be recognised and ignored.
//! - Every attempt has a deadline; a request that never answers is cancelled and retried.
//! - The earliest deadline or backoff end is what [`Core::poll_timeout`](crate::Core::poll_timeout)
//!   reports, so the timers are kept ordered.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use crate::ids::{FileHandle, FuseReqId, Ino, S3ReqId};
use crate::io::Output;
use crate::s3_types::S3Request;
use crate::time::Instant;

/// A logical S3 request, stable across its attempts.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub(crate) struct CallId(pub u64);

/// What a call's result is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Purpose {
    /// The HeadObject half of a lookup (or the revalidation of getattr and open).
    LookupHead {
        op: FuseReqId,
    },
    /// The one-key ListObjectsV2 half of a lookup: is the name a directory?
    LookupList {
        op: FuseReqId,
    },
    /// A page of a directory listing.
    ListPage {
        fh: FileHandle,
    },
    /// A HEAD confirming the attributes of a listing's entries (or of the directory itself).
    Confirm {
        fh: FileHandle,
    },
    /// A ranged GET for an open file.
    ReadRange {
        fh: FileHandle,
    },
    /// A GET of base bytes for a commit of `ino`: for part `part` (0: the single PUT).
    WriteGet {
        ino: Ino,
        part: u32,
    },
    WriteCreateUpload {
        ino: Ino,
    },
    /// An UploadPart or UploadPartCopy.
    WritePart {
        ino: Ino,
        part: u32,
    },
    WritePut {
        ino: Ino,
    },
    /// HEAD before completing an upload, or after an ambiguous answer.
    WriteHead {
        ino: Ino,
    },
    WriteComplete {
        ino: Ino,
    },
    WriteAbort {
        ino: Ino,
    },
    /// Listing and aborting uploads a lost reply may have left behind.
    WriteCleanup {
        ino: Ino,
    },
    /// The copy of a just-written object onto itself that gives it the file's current
    /// attributes.
    WriteRelabel {
        ino: Ino,
    },
    /// A request of metadata change `change` (setattr, xattrs, a directory hint).
    MetaChange {
        change: u64,
    },
    /// A one-shot read FUSE request `op` waits for (a marker's metadata, a symlink's target).
    Fetch {
        op: FuseReqId,
    },
    /// The check and delete of an object unlinked while open (see [`crate::unlinked`]).
    UnlinkedDelete,
    /// Another try at aborting an upload whose abort failed (see [`crate::leftovers`]).
    LeftoverAbort,
    /// A step of a namespace change (mkdir, unlink, rmdir, rename) of FUSE request `op`.
    Mutate {
        op: FuseReqId,
    },
}

impl Purpose {
    /// Work that only serves a waiting reader (lookups, listings, reads): abandoned at unmount.
    pub fn is_read_side(self) -> bool {
        matches!(
            self,
            Purpose::LookupHead { .. }
                | Purpose::LookupList { .. }
                | Purpose::ListPage { .. }
                | Purpose::Confirm { .. }
                | Purpose::ReadRange { .. }
                | Purpose::Fetch { .. }
        )
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum CallState {
    InFlight { id: S3ReqId, deadline: Instant },
    Backoff { until: Instant },
}

impl CallState {
    fn timer(self) -> Instant {
        match self {
            CallState::InFlight { deadline, .. } => deadline,
            CallState::Backoff { until } => until,
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct Call {
    pub purpose: Purpose,
    pub request: S3Request,
    /// The attempt in flight or about to be sent, counting from 1.
    pub attempt: u32,
    /// Body bytes of the attempt in flight have arrived (a streamed GET made progress).
    pub progressed: bool,
    state: CallState,
}

/// A timer that came due.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum DueTimer {
    /// The attempt in flight took too long; it has been cancelled.
    Deadline(CallId),
    /// The backoff is over; the call has been sent again.
    Resent(CallId),
}

#[derive(Debug, Default)]
pub(crate) struct Calls {
    calls: BTreeMap<CallId, Call>,
    by_request: BTreeMap<S3ReqId, CallId>,
    timers: BTreeSet<(Instant, CallId)>,
    next_call: u64,
    next_request: u64,
    /// Attempts sent again after a failure or a missed deadline (counted, for metrics).
    pub retries: u64,
    /// Truncated bodies resumed at the next offset.
    pub resumes: u64,
}

impl Calls {
    /// Starts a call and emits its first attempt.
    pub fn start(
        &mut self,
        now: Instant,
        timeout: Duration,
        purpose: Purpose,
        request: S3Request,
        out: &mut VecDeque<Output>,
    ) -> CallId {
        let call_id = CallId(self.next_call);
        self.next_call += 1;
        let placeholder = CallState::Backoff { until: now };
        self.calls.insert(call_id, Call { purpose, request, attempt: 1, progressed: false, state: placeholder });
        self.send(call_id, now, timeout, out);
        call_id
    }

    /// Emits the call's request under a fresh id, with a deadline.
    fn send(&mut self, call_id: CallId, now: Instant, timeout: Duration, out: &mut VecDeque<Output>) {
        let id = S3ReqId(self.next_request);
        self.next_request += 1;
        let call = self.calls.get_mut(&call_id).expect("sending an unknown call");
        self.timers.remove(&(call.state.timer(), call_id));
        let deadline = now + timeout;
        call.state = CallState::InFlight { id, deadline };
        call.progressed = false;
        self.timers.insert((deadline, call_id));
        self.by_request.insert(id, call_id);
        out.push_back(Output::S3Request { id, request: call.request.clone() });
    }

    /// Sends the call again at once as a fresh request, e.g. to resume a truncated GET at a new
    /// range: it made progress, so its retry budget starts over.
    pub fn resend_now(&mut self, call_id: CallId, now: Instant, timeout: Duration, out: &mut VecDeque<Output>) {
        self.calls.get_mut(&call_id).expect("resending an unknown call").attempt = 1;
        self.resumes += 1;
        self.send(call_id, now, timeout, out);
    }

    /// Sends the call again after `delay`, as attempt `attempt + 1`.
    pub fn retry_after(&mut self, call_id: CallId, now: Instant, delay: Duration) {
        self.retries += 1;
        let call = self.calls.get_mut(&call_id).expect("retrying an unknown call");
        self.timers.remove(&(call.state.timer(), call_id));
        call.attempt += 1;
        call.state = CallState::Backoff { until: now + delay };
        self.timers.insert((now + delay, call_id));
    }

    /// Abandons a call: the request in flight, if any, is cancelled.
    pub fn cancel(&mut self, call_id: CallId, out: &mut VecDeque<Output>) {
        if let Some(call) = self.calls.remove(&call_id) {
            self.timers.remove(&(call.state.timer(), call_id));
            if let CallState::InFlight { id, .. } = call.state {
                self.by_request.remove(&id);
                out.push_back(Output::CancelS3 { id });
            }
        }
    }

    /// Matches a result to its call. `None` for results nobody waits for any more.
    pub fn accept_result(&mut self, id: S3ReqId) -> Option<CallId> {
        let call_id = self.by_request.remove(&id)?;
        let call = self.calls.get(&call_id).expect("request of an unknown call");
        self.timers.remove(&(call.state.timer(), call_id));
        Some(call_id)
    }

    /// The call whose attempt in flight is `id`, which goes on (a body chunk arrived).
    pub fn in_flight(&self, id: S3ReqId) -> Option<CallId> {
        self.by_request.get(&id).copied()
    }

    pub fn get(&self, call_id: CallId) -> Option<&Call> {
        self.calls.get(&call_id)
    }

    pub fn get_mut(&mut self, call_id: CallId) -> Option<&mut Call> {
        self.calls.get_mut(&call_id)
    }

    /// Forgets a finished call.
    pub fn finish(&mut self, call_id: CallId) -> Option<Call> {
        let call = self.calls.remove(&call_id)?;
        self.timers.remove(&(call.state.timer(), call_id));
        if let CallState::InFlight { id, .. } = call.state {
            self.by_request.remove(&id);
        }
        Some(call)
    }

    /// The earliest deadline or backoff end.
    pub fn next_timer(&self) -> Option<Instant> {
        self.timers.first().map(|&(at, _)| at)
    }

    /// Fires the first timer due at `now`, if any: a deadline cancels the attempt in flight
    /// (the caller treats it as a timeout), a backoff end sends the call again.
    pub fn fire_next_due(&mut self, now: Instant, timeout: Duration, out: &mut VecDeque<Output>) -> Option<DueTimer> {
        let &(at, call_id) = self.timers.first()?;
        if at > now {
            return None;
        }
        let state = self.calls[&call_id].state;
        match state {
            CallState::InFlight { id, .. } => {
                self.timers.remove(&(at, call_id));
                self.by_request.remove(&id);
                out.push_back(Output::CancelS3 { id });
                Some(DueTimer::Deadline(call_id))
            }
            CallState::Backoff { .. } => {
                self.send(call_id, now, timeout, out);
                Some(DueTimer::Resent(call_id))
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.calls.is_empty()
    }

    /// Every call in progress, in id order.
    pub fn ids(&self) -> Vec<CallId> {
        self.calls.keys().copied().collect()
    }
}
