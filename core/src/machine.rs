//! The [`Core`]: the state machine that owns every table and routes inputs to them.
//!
//! Problems this module solves:
//! - One entry point for every input, with the due timers fired first, so a driver that is
//!   late with [`Input::Timeout`] cannot reorder events.
//! - Routing each S3 result to whatever waits for it, through the call table, and deciding
//!   between taking a GET body in pieces (streamed, or cut short and resumed), retry with
//!   backoff, and failure.
//! - Exactly one reply per FUSE request, including after interrupts and at shutdown.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use bytes::Bytes;
use rand_core::SeedableRng;
use rand_pcg::Pcg64Mcg;

use crate::attrs::MetaChange;
use crate::calls::{CallId, Calls, DueTimer, Purpose};
use crate::config::CoreConfig;
use crate::errno::Errno;
use crate::fetch::Fetch;
use crate::fuse_types::{FileKind, FuseOp, FuseReply, StatFs};
use crate::ids::{FileHandle, FuseReqId, Ino, S3ReqId};
use crate::inode::{InodeTable, UpsertEffect};
use crate::io::{Input, Output};
use crate::leftovers::LeftoverUpload;
use crate::lookup::LookupOp;
use crate::mutate::Mutation;
use crate::read::FileReader;
use crate::readdir::DirHandle;
use crate::retry::{backoff_delay, is_retryable};
use crate::s3_types::{
    Body, GetObjectOutput, ObjectMeta, S3Error, S3Request, S3Response, S3Result, TransportError, UploadId,
};
use crate::time::{Instant, UnixNanos};
use crate::unlinked::PendingUnlink;
use crate::write::WriteFile;

/// What a FUSE request that has not been answered yet is waiting for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Waiting {
    /// A lookup, getattr or open waiting for S3 (see [`LookupOp`]).
    Lookup,
    /// A read waiting for bytes of this handle.
    Read(FileHandle),
    /// A readdir waiting for a listing page of this handle.
    ReadDir(FileHandle),
    /// A request waiting for a one-shot read (see [`crate::fetch`]).
    Fetch,
}

/// Bytes of a ranged GET's body, from `start` in the object, with the object's metadata when
/// the reply carried it.
struct GetBody {
    start: u64,
    data: Bytes,
    meta: Option<ObjectMeta>,
}

/// Whether more of a GET's body may follow.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum BodyEnd {
    /// A chunk of a body still streaming.
    More,
    /// The reply is over (whole, or cut short).
    Ended,
}

/// The goofys-rs filesystem as a pure state machine. See the crate docs for the contract.
#[derive(Debug)]
pub struct Core {
    pub(crate) config: CoreConfig,
    pub(crate) inodes: InodeTable,
    pub(crate) calls: Calls,
    pub(crate) lookups: BTreeMap<FuseReqId, LookupOp>,
    pub(crate) files: BTreeMap<FileHandle, FileReader>,
    pub(crate) dirs: BTreeMap<FileHandle, DirHandle>,
    /// Files with writers or unwritten data.
    pub(crate) writes: BTreeMap<Ino, WriteFile>,
    /// Truncations of files nobody had open, waiting for their commit: they answer with
    /// attributes.
    pub(crate) setattr_waiters: BTreeMap<FuseReqId, Ino>,
    /// Requests whose file was just revalidated and that run again: not a second time.
    pub(crate) revalidated: BTreeSet<FuseReqId>,
    /// Namespace changes in progress.
    pub(crate) mutations: BTreeMap<FuseReqId, Mutation>,
    /// Metadata changes in progress, by number.
    pub(crate) meta_changes: BTreeMap<u64, MetaChange>,
    pub(crate) next_meta_change: u64,
    /// Objects unlinked while open, by key, deleted when their last handle closes.
    pub(crate) pending_unlinks: BTreeMap<String, PendingUnlink>,
    /// Multipart uploads whose abort failed, by key and upload id, to abort again later.
    pub(crate) leftover_uploads: BTreeMap<(String, UploadId), LeftoverUpload>,
    /// One-shot reads requests wait for.
    pub(crate) fetches: BTreeMap<FuseReqId, Fetch>,
    /// The clock and wall time at the first input, to derive wall times.
    epoch: Option<(Instant, UnixNanos)>,
    mount_wall: UnixNanos,
    /// Unanswered FUSE requests, so interrupts and shutdown can answer them.
    pub(crate) waiting: BTreeMap<FuseReqId, Waiting>,
    next_fh: u64,
    outputs: VecDeque<Output>,
    pub(crate) rng: Pcg64Mcg,
    shutting_down: bool,
    shutdown_deadline: Option<Instant>,
    /// No more retries (the unmount grace period is over).
    retries_over: bool,
    done_sent: bool,
    inputs_since_sweep: usize,
}

impl Core {
    /// A core for a fresh mount. `wall_now` is the wall-clock time of the mount (directories
    /// show it as their times); `seed` seeds retry jitter.
    pub fn new(config: CoreConfig, wall_now: UnixNanos, seed: u64) -> Self {
        let inodes = InodeTable::new(&config, wall_now);
        Core {
            config,
            inodes,
            calls: Calls::default(),
            lookups: BTreeMap::new(),
            files: BTreeMap::new(),
            dirs: BTreeMap::new(),
            writes: BTreeMap::new(),
            setattr_waiters: BTreeMap::new(),
            revalidated: BTreeSet::new(),
            mutations: BTreeMap::new(),
            meta_changes: BTreeMap::new(),
            next_meta_change: 0,
            fetches: BTreeMap::new(),
            pending_unlinks: BTreeMap::new(),
            leftover_uploads: BTreeMap::new(),
            epoch: None,
            mount_wall: wall_now,
            waiting: BTreeMap::new(),
            next_fh: 1,
            outputs: VecDeque::new(),
            rng: Pcg64Mcg::seed_from_u64(seed),
            shutting_down: false,
            shutdown_deadline: None,
            retries_over: false,
            done_sent: false,
            inputs_since_sweep: 0,
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    /// Feeds one input. Never blocks, never fails; drain [`Core::poll_output`] afterwards.
    pub fn handle_input(&mut self, now: Instant, input: Input) {
        if self.epoch.is_none() {
            self.epoch = Some((now, self.mount_wall));
        }
        self.fire_due_timers(now);
        self.shutdown_grace_over(now);
        self.send_due_leftover_aborts(now);
        match input {
            Input::Fuse { id, op } => self.handle_fuse(now, id, op),
            Input::S3 { id, result } => self.handle_s3_result(now, id, result),
            Input::S3BodyChunk { id, output } => self.handle_body_chunk(now, id, output),
            Input::Timeout => {}
            Input::Interrupt { id } => self.handle_interrupt(id),
            Input::Shutdown => self.begin_shutdown(now),
        }
        self.maybe_sweep(now);
        self.maybe_finish_shutdown();
    }

    /// The next output, if any. Call until `None` after every input.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.outputs.pop_front()
    }

    /// When to call [`Core::handle_input`] with [`Input::Timeout`] if nothing else happens.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let grace = self.shutdown_deadline.filter(|_| !self.retries_over);
        [self.calls.next_timer(), grace, self.next_leftover_abort()].into_iter().flatten().min()
    }

    /// Whether any S3 request is in flight or waiting for a retry.
    pub fn has_calls_in_progress(&self) -> bool {
        !self.calls.is_empty()
    }

    /// Number of inodes in the table (the root included).
    pub fn inode_count(&self) -> usize {
        self.inodes.len()
    }

    /// The wall-clock time at `now`.
    pub(crate) fn wall_time(&self, now: Instant) -> UnixNanos {
        match self.epoch {
            Some((start, wall)) => wall.add_duration(now - start),
            None => self.mount_wall,
        }
    }

    // ---- outputs -------------------------------------------------------------------------

    pub(crate) fn reply(&mut self, id: FuseReqId, reply: FuseReply) {
        self.waiting.remove(&id);
        self.revalidated.remove(&id);
        self.outputs.push_back(Output::FuseReply { id, reply });
    }

    pub(crate) fn reply_error(&mut self, id: FuseReqId, errno: Errno) {
        self.reply(id, FuseReply::Error(errno));
    }

    pub(crate) fn emit(&mut self, output: Output) {
        self.outputs.push_back(output);
    }

    /// Tells the kernel what an [`InodeTable::upsert_child`] changed.
    pub(crate) fn notify_upsert(&mut self, parent: Ino, name: &str, ino: Ino, effect: UpsertEffect) {
        match effect {
            UpsertEffect::Unchanged | UpsertEffect::NewInode => {}
            UpsertEffect::Replaced => {
                self.emit(Output::InvalidateEntry { parent, name: name.into() });
            }
            UpsertEffect::ContentChanged => self.emit(Output::InvalidateInode { ino }),
        }
    }

    pub(crate) fn allocate_handle(&mut self) -> FileHandle {
        let fh = FileHandle(self.next_fh);
        self.next_fh += 1;
        fh
    }

    // ---- S3 calls ------------------------------------------------------------------------

    pub(crate) fn start_call(&mut self, now: Instant, purpose: Purpose, request: S3Request) -> CallId {
        self.calls.start(now, self.config.s3_request_timeout, purpose, request, &mut self.outputs)
    }

    pub(crate) fn cancel_call(&mut self, call_id: CallId) {
        self.calls.cancel(call_id, &mut self.outputs);
    }

    fn fire_due_timers(&mut self, now: Instant) {
        while let Some(due) = self.calls.fire_next_due(now, self.config.s3_request_timeout, &mut self.outputs) {
            match due {
                DueTimer::Deadline(call_id) => {
                    tracing::debug!(?call_id, "S3 request timed out");
                    self.handle_call_error(now, call_id, S3Error::Transport(TransportError::Timeout));
                }
                DueTimer::Resent(call_id) => tracing::debug!(?call_id, "S3 request retried"),
            }
        }
    }

    fn handle_s3_result(&mut self, now: Instant, id: S3ReqId, result: S3Result) {
        let Some(call_id) = self.calls.accept_result(id) else {
            tracing::trace!(?id, "ignoring a result nobody waits for");
            return;
        };
        if let Some(wanted_start) = self.streamable_get_start(call_id) {
            match result {
                Ok(S3Response::GetObject(output)) => {
                    let body = GetBody { start: output.range_start, data: output.body.0, meta: Some(output.meta) };
                    return self.handle_get_body(now, call_id, body, BodyEnd::Ended);
                }
                Err(S3Error::Transport(TransportError::Truncated { received })) => {
                    let body = GetBody { start: wanted_start, data: received.0, meta: None };
                    return self.handle_get_body(now, call_id, body, BodyEnd::Ended);
                }
                _ => {}
            }
        }
        match result {
            Ok(response) => {
                let call = self.calls.finish(call_id).expect("accepted call exists");
                self.deliver(now, call_id, call.purpose, &call.request, call.attempt, Ok(response));
            }
            Err(error) => self.handle_call_error(now, call_id, error),
        }
    }

    /// A chunk of a streamed GET body: the request goes on.
    fn handle_body_chunk(&mut self, now: Instant, id: S3ReqId, output: GetObjectOutput) {
        let Some(call_id) = self.calls.in_flight(id) else {
            tracing::trace!(?id, "ignoring a body chunk nobody waits for");
            return;
        };
        if self.streamable_get_start(call_id).is_none() {
            debug_assert!(false, "a body chunk of a request that cannot be streamed");
            tracing::error!(?id, "ignoring a body chunk of a request that is not a ranged GET of a file");
            return;
        }
        let body = GetBody { start: output.range_start, data: output.body.0, meta: Some(output.meta) };
        self.handle_get_body(now, call_id, body, BodyEnd::More);
    }

    /// Where the bytes still wanted by a ranged GET for a read or a commit start: such GETs take
    /// their bodies in pieces (streamed, or cut short and resumed).
    fn streamable_get_start(&self, call_id: CallId) -> Option<u64> {
        let call = self.calls.get(call_id)?;
        match (&call.purpose, &call.request) {
            (Purpose::ReadRange { .. } | Purpose::WriteGet { .. }, S3Request::GetObject { range: Some(range), .. }) => {
                Some(range.start)
            }
            _ => None,
        }
    }

    /// Bytes of a ranged GET arrived: a chunk of a body still streaming, the whole (rest of
    /// the) body, or what came before it was cut short. The call's range moves past them, so a
    /// retry asks only for what is missing. A body that ends before the range does is resumed
    /// at once from where it stopped if this attempt brought bytes (progress restarts the retry
    /// budget), or retried with backoff if it brought none; bytes outside what is still wanted
    /// are never delivered.
    fn handle_get_body(&mut self, now: Instant, call_id: CallId, body: GetBody, end: BodyEnd) {
        let call = self.calls.get_mut(call_id).expect("a streamable call exists");
        let purpose = call.purpose;
        let S3Request::GetObject { range: Some(range), .. } = &mut call.request else {
            unreachable!("checked by streamable_get_start")
        };
        let (wanted_start, range_end) = (range.start, range.end);
        let body_end = body.start + body.data.len() as u64;
        let useful = if body.start <= wanted_start && body_end > wanted_start {
            body.data.slice((wanted_start - body.start) as usize..(body_end.min(range_end) - body.start) as usize)
        } else {
            if !body.data.is_empty() && body.start > wanted_start {
                tracing::warn!(?call_id, body_start = body.start, wanted_start, "GET body skipped bytes; ignoring it");
            }
            Bytes::new()
        };
        let arrived_until = wanted_start + useful.len() as u64;
        range.start = arrived_until;
        call.progressed |= !useful.is_empty();
        let complete = arrived_until >= range_end;
        if complete {
            self.calls.finish(call_id);
        } else if end == BodyEnd::Ended {
            // Resumed at once if this attempt brought bytes, else retried after a backoff.
            let error = S3Error::Transport(TransportError::Truncated { received: Body::default() });
            self.handle_call_error(now, call_id, error);
        }
        match purpose {
            Purpose::ReadRange { fh } => self.read_data_arrived(now, fh, call_id, wanted_start, useful, body.meta),
            Purpose::WriteGet { ino, part } if complete || !useful.is_empty() => {
                self.write_data_arrived(now, ino, part, call_id, wanted_start, useful, complete, range_end)
            }
            _ => {}
        }
    }

    /// Retries a failed call if the error allows and attempts remain; otherwise reports it.
    fn handle_call_error(&mut self, now: Instant, call_id: CallId, error: S3Error) {
        let Some(call) = self.calls.get(call_id) else {
            return;
        };
        if call.progressed && is_retryable(&error) && !self.retries_over {
            // Body bytes arrived in this attempt (a streamed GET that then stalled or broke): it
            // resumes at once from where it stopped, with a fresh retry budget, as a body cut
            // short does.
            tracing::debug!(?call_id, %error, "GET body stopped after progress; resuming");
            self.calls.resend_now(call_id, now, self.config.s3_request_timeout, &mut self.outputs);
            return;
        }
        if is_retryable(&error) && call.attempt < self.config.retry_max_attempts && !self.retries_over {
            let delay = backoff_delay(
                call.attempt,
                self.config.retry_initial_backoff,
                self.config.retry_max_backoff,
                &mut self.rng,
            );
            tracing::debug!(?call_id, attempt = call.attempt, ?delay, %error, "S3 request failed; will retry");
            self.calls.retry_after(call_id, now, delay);
            return;
        }
        let call = self.calls.finish(call_id).expect("call exists");
        // A 404 or 412 is an answer (a lookup's HEAD of a directory name, a conflict check),
        // and whoever asked logs what it means; anything else is a failure worth a warning.
        let expected = matches!(&error, S3Error::Service(service) if matches!(service.status, 404 | 412));
        if expected {
            tracing::debug!(operation = call.request.operation_name(), %error, "S3 answered with an error status");
        } else {
            tracing::warn!(operation = call.request.operation_name(), attempts = call.attempt, %error, "S3 request failed");
        }
        self.deliver(now, call_id, call.purpose, &call.request, call.attempt, Err(error));
    }

    /// Hands a call's final result to whatever waits for it; `attempts` says how many times
    /// the request was sent (more than one: an earlier attempt may have taken effect).
    fn deliver(
        &mut self,
        now: Instant,
        call_id: CallId,
        purpose: Purpose,
        request: &S3Request,
        attempts: u32,
        result: S3Result,
    ) {
        self.note_abort_result(now, request, &result);
        match purpose {
            Purpose::LookupHead { op } => self.lookup_head_done(now, op, result),
            Purpose::LookupList { op } => self.lookup_list_done(now, op, result),
            Purpose::ListPage { fh } => self.list_page_done(now, fh, result),
            Purpose::Confirm { fh } => self.confirm_done(now, fh, call_id, result),
            Purpose::ReadRange { fh } => self.read_range_done(now, fh, call_id, request, result),
            Purpose::Mutate { op } => self.mutation_step_done(now, op, call_id, request, attempts, result),
            Purpose::MetaChange { change } => self.meta_change_done(now, change, call_id, attempts, result),
            Purpose::Fetch { op } => self.fetch_done(now, op, call_id, result),
            Purpose::UnlinkedDelete => self.unlinked_delete_done(now, call_id, result),
            Purpose::LeftoverAbort => {}
            write => self.write_call_done(now, write, call_id, request, attempts, result),
        }
    }

    // ---- FUSE requests -------------------------------------------------------------------

    pub(crate) fn handle_fuse(&mut self, now: Instant, id: FuseReqId, op: FuseOp) {
        if self.shutting_down {
            if op.expects_reply() {
                self.reply_error(id, Errno::EIO);
            }
            return;
        }
        match op {
            FuseOp::Lookup { parent, name } => self.lookup(now, id, parent, &name),
            FuseOp::Forget { ino, nlookup } => self.inodes.forget(ino, nlookup),
            FuseOp::GetAttr { ino, .. } => self.getattr(now, id, ino),
            FuseOp::Open { ino, flags } => self.open(now, id, ino, flags),
            FuseOp::Read { fh, offset, size, .. } => self.read(now, id, fh, offset, size),
            FuseOp::Release { fh, .. } => self.release(now, id, fh),
            FuseOp::Flush { fh, .. } | FuseOp::Fsync { fh, .. } => self.flush(now, id, fh),
            FuseOp::Write { fh, offset, data, .. } => self.write(now, id, fh, offset, data),
            FuseOp::SetAttr { ino, changes, .. } => self.setattr(now, id, ino, changes),
            FuseOp::Create { parent, name, mode, uid, gid, flags } => {
                let attrs = self.new_entry_attrs(FileKind::File, mode, uid, gid);
                self.create(now, id, parent, &name, flags, attrs)
            }
            FuseOp::Mkdir { parent, name, mode, uid, gid } => {
                let attrs = self.new_entry_attrs(FileKind::Directory, mode, uid, gid);
                self.mkdir(now, id, parent, &name, attrs)
            }
            FuseOp::Unlink { parent, name } => self.unlink(now, id, parent, &name),
            FuseOp::Rmdir { parent, name } => self.rmdir(now, id, parent, &name),
            FuseOp::Rename { parent, name, new_parent, new_name, flags } => {
                self.rename(now, id, parent, &name, new_parent, &new_name, flags)
            }
            FuseOp::OpenDir { ino } => self.opendir(now, id, ino),
            FuseOp::ReadDir { fh, offset, size_bytes, plus, .. } => self.readdir(id, fh, offset, size_bytes, plus),
            FuseOp::ReleaseDir { fh, .. } => self.releasedir(id, fh),
            FuseOp::StatFs { .. } => self.reply(id, FuseReply::StatFs(synthetic_statfs())),
            FuseOp::Symlink { parent, name, target, uid, gid } => {
                let attrs = self.new_entry_attrs(FileKind::Symlink, 0o777, uid, gid);
                self.symlink(now, id, parent, &name, &target, attrs)
            }
            FuseOp::ReadLink { ino } => self.readlink(now, id, ino),
            FuseOp::Mknod { parent, name, mode, uid, gid } => {
                let attrs = self.new_entry_attrs(FileKind::File, mode, uid, gid);
                self.mknod(now, id, parent, &name, mode, attrs)
            }
            FuseOp::Link { .. } => self.link(id),
            FuseOp::GetXattr { ino, name, size } => self.getxattr(now, id, ino, &name, size),
            FuseOp::ListXattr { ino, size } => self.listxattr(now, id, ino, size),
            FuseOp::SetXattr { ino, name, value, flags } => self.setxattr(now, id, ino, &name, &value, flags),
            FuseOp::RemoveXattr { ino, name } => self.removexattr(now, id, ino, &name),
        }
    }

    fn handle_interrupt(&mut self, id: FuseReqId) {
        let Some(waiting) = self.waiting.get(&id).copied() else {
            return;
        };
        match waiting {
            Waiting::Lookup => self.abandon_lookup(id),
            Waiting::Read(fh) => self.abandon_read(id, fh),
            Waiting::ReadDir(fh) => self.abandon_readdir(id, fh),
            Waiting::Fetch => self.abandon_fetch(id),
        }
        self.reply_error(id, Errno::EINTR);
    }

    /// Unmount: requests that wait for S3 reads are answered with EIO and their S3 work is
    /// cancelled; files being written are committed (their uploads finish or are aborted);
    /// after `shutdown_grace` nothing is retried any more. `Done` when nothing is left.
    fn begin_shutdown(&mut self, now: Instant) {
        if self.shutting_down {
            return;
        }
        self.shutting_down = true;
        self.shutdown_deadline = Some(now + self.config.shutdown_grace);
        for call_id in self.calls.ids() {
            if self.calls.get(call_id).is_some_and(|call| call.purpose.is_read_side()) {
                self.cancel_call(call_id);
            }
        }
        let unanswered: Vec<FuseReqId> = self.waiting.keys().copied().collect();
        for id in unanswered {
            self.reply_error(id, Errno::EIO);
        }
        for id in self.fail_blocked() {
            self.reply_error(id, Errno::EIO);
        }
        self.lookups.clear();
        self.fetches.clear();
        for reader in self.files.values_mut() {
            reader.forget_pending_reads();
        }
        for dir in self.dirs.values_mut() {
            dir.forget_waiting_readdirs();
        }
        self.commit_all(now);
        self.finish_all_unlinks(now);
        self.send_due_leftover_aborts(now);
    }

    pub(crate) fn shutting_down(&self) -> bool {
        self.shutting_down
    }

    /// The shutdown grace is over: stop retrying, so what is left ends soon.
    fn shutdown_grace_over(&mut self, now: Instant) {
        if let Some(deadline) = self.shutdown_deadline
            && now >= deadline
            && !self.retries_over
        {
            tracing::warn!("unmount grace period over: abandoning what is still being written");
            self.retries_over = true;
        }
    }

    fn maybe_finish_shutdown(&mut self) {
        if self.shutting_down
            && !self.done_sent
            && self.calls.is_empty()
            && self.waiting.is_empty()
            && self.mutations.is_empty()
            && !self.writes_in_progress()
        {
            self.done_sent = true;
            self.outputs.push_back(Output::Done);
        }
    }

    /// Sweeps expired unreferenced inodes once per table-size inputs, so the cost stays
    /// constant per input on average.
    fn maybe_sweep(&mut self, now: Instant) {
        self.inputs_since_sweep += 1;
        if self.inputs_since_sweep >= self.inodes.len().max(1024) {
            self.inputs_since_sweep = 0;
            self.inodes.sweep(now);
        }
    }
}

/// goofys' answer to `df`: a petabyte, mostly free, and a billion inodes.
fn synthetic_statfs() -> StatFs {
    const BLOCK_SIZE: u32 = 4096;
    const PETABYTE_BLOCKS: u64 = (1 << 50) / BLOCK_SIZE as u64;
    StatFs {
        blocks: PETABYTE_BLOCKS,
        blocks_free: PETABYTE_BLOCKS,
        blocks_available: PETABYTE_BLOCKS,
        files: 1_000_000_000,
        files_free: 1_000_000_000,
        block_size: BLOCK_SIZE,
        name_max_bytes: crate::namespace::NAME_MAX_BYTES as u32,
        fragment_size: BLOCK_SIZE,
    }
}
