//! Multipart uploads whose abort failed: a failed write must not leave its parts in the
//! bucket (S3 bills them and keeps them until a lifecycle rule, if any, removes them).
//!
//! Problems this module solves:
//! - An `AbortMultipartUpload` that still fails after every retry (the store was down for
//!   longer than the retry budget) would leave the upload behind for good. Every failed abort,
//!   whatever sent it (a failed commit, the clean-up after a lost reply, a rename), is
//!   remembered here and sent again later: first after [`LEFTOVER_ABORT_FIRST_DELAY`], then at
//!   doubling intervals up to [`LEFTOVER_ABORT_MAX_DELAY`], and once more at unmount.
//! - An abort answered `NoSuchUpload` (404) is done: an earlier attempt, or someone else,
//!   removed the upload.
//! - At unmount the remaining aborts are sent at once; one that fails then is logged with its
//!   key and upload id, so an operator can remove it.

use std::time::Duration;

use crate::calls::{CallId, Purpose};
use crate::machine::Core;
use crate::s3_types::{S3Error, S3ErrorCode, S3Request, S3Result, UploadId};
use crate::time::Instant;

/// How long after its last failure a leftover upload's abort is first sent again.
pub const LEFTOVER_ABORT_FIRST_DELAY: Duration = Duration::from_secs(30);
/// The longest wait between two attempts to abort a leftover upload.
pub const LEFTOVER_ABORT_MAX_DELAY: Duration = Duration::from_secs(15 * 60);

/// An upload this mount failed to abort.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct LeftoverUpload {
    /// When to send the abort again.
    next_attempt_at: Instant,
    /// The wait before the attempt after that one.
    next_delay: Duration,
    /// The abort in flight, if any.
    call: Option<CallId>,
}

/// Whether `result` says the upload an abort named is gone (aborted now or before).
fn upload_is_gone(result: &S3Result) -> bool {
    match result {
        Ok(_) => true,
        Err(S3Error::Service(service)) => service.code == S3ErrorCode::NoSuchUpload || service.status == 404,
        Err(_) => false,
    }
}

impl Core {
    /// Sees every final answer to an `AbortMultipartUpload`: one that failed is remembered
    /// and sent again later.
    pub(crate) fn note_abort_result(&mut self, now: Instant, request: &S3Request, result: &S3Result) {
        let S3Request::AbortMultipartUpload { key, upload_id } = request else { return };
        let slot = (key.clone(), upload_id.clone());
        if upload_is_gone(result) {
            self.leftover_uploads.remove(&slot);
            return;
        }
        if self.shutting_down() {
            tracing::error!(
                key,
                upload_id = upload_id.0,
                "could not abort a multipart upload before unmounting: it is left in the bucket \
                 (abort it with any S3 client, or let a lifecycle rule remove incomplete uploads)"
            );
            self.leftover_uploads.remove(&slot);
            return;
        }
        let next_delay = match self.leftover_uploads.get(&slot) {
            Some(leftover) => leftover.next_delay,
            None => LEFTOVER_ABORT_FIRST_DELAY,
        };
        tracing::warn!(key, upload_id = upload_id.0, retry_in = ?next_delay, "aborting a multipart upload failed; will try again");
        let leftover = LeftoverUpload {
            next_attempt_at: now + next_delay,
            next_delay: (next_delay * 2).min(LEFTOVER_ABORT_MAX_DELAY),
            call: None,
        };
        self.leftover_uploads.insert(slot, leftover);
    }

    /// When the next leftover abort is due, if one waits.
    pub(crate) fn next_leftover_abort(&self) -> Option<Instant> {
        self.leftover_uploads
            .values()
            .filter(|leftover| leftover.call.is_none())
            .map(|leftover| leftover.next_attempt_at)
            .min()
    }

    /// Sends the aborts that are due (all of them at unmount).
    pub(crate) fn send_due_leftover_aborts(&mut self, now: Instant) {
        let everything = self.shutting_down();
        let due: Vec<(String, UploadId)> = self
            .leftover_uploads
            .iter()
            .filter(|(_, leftover)| leftover.call.is_none() && (everything || leftover.next_attempt_at <= now))
            .map(|(slot, _)| slot.clone())
            .collect();
        for (key, upload_id) in due {
            tracing::info!(key, upload_id = upload_id.0, "aborting a multipart upload an earlier abort left behind");
            let request = S3Request::AbortMultipartUpload { key: key.clone(), upload_id: upload_id.clone() };
            let call = self.start_call(now, Purpose::LeftoverAbort, request);
            if let Some(leftover) = self.leftover_uploads.get_mut(&(key, upload_id)) {
                leftover.call = Some(call);
            }
        }
    }

    /// How many failed aborts wait to be sent again.
    pub fn leftover_upload_count(&self) -> usize {
        self.leftover_uploads.len()
    }
}
