//! Files unlinked while open: POSIX lets the processes that hold them go on reading (and
//! writing) until they close them.
//!
//! Problems this module solves:
//! - Deleting the object at `unlink` would fail every later read of an open handle. Instead the
//!   name goes at once (lookups and listings of this mount no longer show it) and the object is
//!   deleted when the last handle closes, or at unmount. Other clients see the object until
//!   then.
//! - Between unlink and the last close another client may have written a new object under the
//!   name: the deferred delete first checks (HEAD) that the object is still the one unlinked,
//!   and leaves a newer one alone.
//! - A new file created under the name in this mount replaces the unlinked object with its
//!   first commit (conditional on its ETag), so nothing is deleted later.
//! - If the mount dies first, the object stays: nothing is lost that was not meant to be.

use crate::calls::{CallId, Purpose};
use crate::errno::{errno_for_s3_error, is_not_found};
use crate::ids::Ino;
use crate::machine::Core;
use crate::s3_types::{ETag, S3Request, S3Response, S3Result};
use crate::time::Instant;
use crate::write::Base;

/// An object whose name was unlinked while a handle held it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct PendingUnlink {
    ino: Ino,
    etag: ETag,
    size_bytes: u64,
    stage: DeleteStage,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum DeleteStage {
    /// Handles still hold the file.
    Held,
    /// Checking that the object is still the one unlinked.
    Checking(CallId),
    Deleting(CallId),
}

impl Core {
    /// Whether an open file handle (not a directory snapshot) holds `ino`.
    pub(crate) fn has_open_files(&self, ino: Ino) -> bool {
        self.files.values().any(|reader| reader.ino == ino)
    }

    /// `key` was unlinked while `ino` was open: delete it when the last handle closes.
    pub(crate) fn defer_unlink(&mut self, key: String, ino: Ino) {
        let Some(inode) = self.inodes.get(ino) else { return };
        let Some(etag) = inode.etag.clone() else { return };
        let pending = PendingUnlink { ino, etag, size_bytes: inode.size_bytes, stage: DeleteStage::Held };
        tracing::debug!(key, "unlinked while open: the object goes when the last handle closes");
        self.pending_unlinks.insert(key, pending);
    }

    /// Whether `key` at `etag` is an object this mount unlinked (and must not show).
    pub(crate) fn is_unlinked_object(&self, key: &str, etag: &ETag) -> bool {
        self.pending_unlinks.get(key).is_some_and(|pending| &pending.etag == etag)
    }

    /// A handle of `ino` closed: if it was the last one of an unlinked file, delete the object.
    pub(crate) fn finish_unlink_if_unheld(&mut self, now: Instant, ino: Ino) {
        if self.has_open_files(ino) {
            return;
        }
        let keys: Vec<String> = self
            .pending_unlinks
            .iter()
            .filter(|(_, pending)| pending.ino == ino && pending.stage == DeleteStage::Held)
            .map(|(key, _)| key.clone())
            .collect();
        for key in keys {
            self.check_before_delete(now, key);
        }
    }

    /// Unmount: every unlinked object goes now.
    pub(crate) fn finish_all_unlinks(&mut self, now: Instant) {
        let held: Vec<String> = self
            .pending_unlinks
            .iter()
            .filter(|(_, pending)| pending.stage == DeleteStage::Held)
            .map(|(key, _)| key.clone())
            .collect();
        for key in held {
            self.check_before_delete(now, key);
        }
    }

    fn check_before_delete(&mut self, now: Instant, key: String) {
        let call = self.start_call(now, Purpose::UnlinkedDelete, S3Request::HeadObject { key: key.clone() });
        if let Some(pending) = self.pending_unlinks.get_mut(&key) {
            pending.stage = DeleteStage::Checking(call);
        }
    }

    /// A file created in this mount under an unlinked object's key replaces that object: its
    /// first commit is conditional on the unlinked object's ETag, and nothing is deleted later.
    pub(crate) fn take_over_unlinked(&mut self, key: &str, ino: Ino) {
        let Some(pending) = self.pending_unlinks.get(key) else { return };
        if pending.stage != DeleteStage::Held {
            return;
        }
        let pending = self.pending_unlinks.remove(key).expect("checked");
        if let Some(file) = self.writes.get_mut(&ino) {
            file.replace_base(Base { etag: pending.etag, size_bytes: pending.size_bytes });
        }
    }

    pub(crate) fn unlinked_delete_done(&mut self, now: Instant, call_id: CallId, result: S3Result) {
        let Some((key, pending)) = self
            .pending_unlinks
            .iter()
            .find(|(_, pending)| matches!(pending.stage, DeleteStage::Checking(c) | DeleteStage::Deleting(c) if c == call_id))
            .map(|(key, pending)| (key.clone(), pending.clone()))
        else {
            return;
        };
        match (pending.stage, result) {
            (DeleteStage::Checking(_), Ok(S3Response::HeadObject(meta))) if meta.etag == pending.etag => {
                let call = self.start_call(now, Purpose::UnlinkedDelete, S3Request::DeleteObject { key: key.clone() });
                self.pending_unlinks.get_mut(&key).expect("found").stage = DeleteStage::Deleting(call);
            }
            (DeleteStage::Checking(_), Ok(_)) => {
                tracing::info!(key, "an unlinked file's name holds another object now; leaving it");
                self.pending_unlinks.remove(&key);
            }
            (_, Err(error)) if is_not_found(&error) => {
                self.pending_unlinks.remove(&key);
            }
            (DeleteStage::Deleting(_), Ok(_)) => {
                self.pending_unlinks.remove(&key);
            }
            (_, Err(error)) => {
                tracing::warn!(key, errno = ?errno_for_s3_error(&error), "could not delete a file unlinked while open; the object stays");
                self.pending_unlinks.remove(&key);
            }
            (DeleteStage::Held, Ok(_)) => {}
        }
    }
}
