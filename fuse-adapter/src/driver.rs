//! The driver: one tokio task that owns the core, feeds it kernel requests, S3 results and
//! timeouts, and carries out what it asks for.
//!
//! Problems this module solves:
//! - The core is a pure state machine; something must run its S3 requests concurrently, feed
//!   the results back, wake it at its deadlines and send its replies. That is this loop, and it
//!   is the only place the core is touched, so the core needs no locks.
//! - Cancelled S3 requests are aborted; results of aborted or finished requests that still
//!   arrive are harmless (the core ignores unknown ids).
//! - A ranged GET's body reaches the core frame by frame as it arrives, so reads are answered
//!   before the whole part is here. Each request's task sends its chunks and then its result
//!   through one channel, so the core sees them in order.
//! - Kernel-cache invalidations must not be sent from the task that answers requests: the
//!   kernel may hold a lock that a pending request needs, and waiting on it would deadlock. They
//!   go to a thread of their own.
//! - Unmounting: on `destroy` or a signal the core gets `Shutdown`, finishes what it must and
//!   says `Done`; the loop then ends.
//! - Metrics: every S3 request and FUSE reply passes through here, so this loop times them
//!   (see [`crate::metrics`]) and copies the core's counters now and then.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;

use goofys_core::fuse_types::FuseReply;
use goofys_core::s3_types::{GetObjectOutput, S3Request, S3Result};
use goofys_core::{Core, Errno, FuseReqId, Input, Output, S3ReqId};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use crate::adapter::{Envelope, PendingReply, file_attr, file_type, fopen_flags, generation};
use crate::metrics::{Metrics, request_bytes_out};

/// How often the core's counters are copied into the metrics.
const CORE_COUNTERS_EVERY: std::time::Duration = std::time::Duration::from_millis(200);

/// Runs S3 requests. [`goofys_s3::S3Client`] is the real one.
pub trait S3Executor: Send + Sync + 'static {
    /// Sends `request` once. A ranged GET may hand its body to `on_body_chunk` as it arrives;
    /// the result then carries only what was not handed on (see [`Input::S3BodyChunk`]).
    fn execute(
        &self,
        request: S3Request,
        on_body_chunk: goofys_s3::BodyChunkSink<'_>,
    ) -> impl Future<Output = S3Result> + Send;
}

impl S3Executor for goofys_s3::S3Client {
    async fn execute(&self, request: S3Request, on_body_chunk: goofys_s3::BodyChunkSink<'_>) -> S3Result {
        goofys_s3::S3Client::execute_streaming(self, &request, on_body_chunk).await
    }
}

/// What a request's task reports, in order: chunks of its body, then its result.
enum S3Event {
    BodyChunk(S3ReqId, GetObjectOutput),
    Finished(S3ReqId, S3Result),
}

/// A kernel-cache invalidation, sent from its own thread.
#[derive(Debug)]
pub enum Invalidation {
    Inode(goofys_core::Ino),
    Entry(goofys_core::Ino, std::ffi::OsString),
}

/// Something that delivers invalidations to the kernel (fuser's `Notifier`, or nothing in
/// tests without a kernel).
pub trait InvalidationSink: Send + 'static {
    fn invalidate(&self, invalidation: &Invalidation) -> std::io::Result<()>;
}

impl InvalidationSink for fuser::Notifier {
    fn invalidate(&self, invalidation: &Invalidation) -> std::io::Result<()> {
        match invalidation {
            Invalidation::Inode(ino) => self.inval_inode(fuser::INodeNo(ino.0), 0, 0),
            Invalidation::Entry(parent, name) => self.inval_entry(fuser::INodeNo(parent.0), name),
        }
    }
}

/// Starts the thread that sends invalidations; returns its queue.
pub fn spawn_invalidator(sink: impl InvalidationSink) -> std_mpsc::Sender<Invalidation> {
    let (tx, rx) = std_mpsc::channel::<Invalidation>();
    std::thread::Builder::new()
        .name("goofys-invalidate".into())
        .spawn(move || {
            for invalidation in rx {
                // ENOENT means the kernel no longer caches it: nothing to drop.
                if let Err(error) = sink.invalidate(&invalidation)
                    && error.raw_os_error() != Some(libc::ENOENT)
                {
                    tracing::debug!(?invalidation, %error, "kernel cache invalidation failed");
                }
            }
        })
        .expect("spawning the invalidation thread");
    tx
}

/// Runs the core until it is done. `requests` carries the kernel's requests; `shutdown`
/// resolves when the mount should end (a signal); after `Destroyed` or `shutdown` the core
/// finishes and the loop returns.
pub async fn run<E: S3Executor>(
    mut core: Core,
    executor: Arc<E>,
    mut requests: mpsc::Receiver<Envelope>,
    invalidations: Option<std_mpsc::Sender<Invalidation>>,
    shutdown: impl Future<Output = ()>,
    metrics: Arc<Metrics>,
) {
    let clock = std::time::Instant::now();
    let now = || goofys_core::Instant::from_nanos(u64::try_from(clock.elapsed().as_nanos()).unwrap_or(u64::MAX));
    let mut replies: HashMap<FuseReqId, PendingReply> = HashMap::new();
    let (s3_events_tx, mut s3_events) = mpsc::unbounded_channel::<S3Event>();
    let mut aborts: HashMap<S3ReqId, AbortHandle> = HashMap::new();
    // What each request in flight is, since when: S3 (kind, bytes sent) and FUSE (operation).
    let mut s3_started: HashMap<S3ReqId, (&'static str, std::time::Instant, u64)> = HashMap::new();
    let mut fuse_started: HashMap<FuseReqId, (&'static str, std::time::Instant)> = HashMap::new();
    let mut counters_copied = std::time::Instant::now();
    let mut shutting_down = false;
    let mut requests_open = true;
    tokio::pin!(shutdown);

    loop {
        let deadline = core.poll_timeout();
        let input = tokio::select! {
            biased;
            envelope = requests.recv(), if requests_open => match envelope {
                Some(Envelope::Request { id, op, reply }) => {
                    if let Some(reply) = reply {
                        replies.insert(id, reply);
                        fuse_started.insert(id, (op.name(), std::time::Instant::now()));
                    }
                    Input::Fuse { id, op }
                }
                Some(Envelope::Destroyed) | None => {
                    requests_open = false;
                    if shutting_down { continue; }
                    shutting_down = true;
                    Input::Shutdown
                }
            },
            // The driver holds a sender, so the channel never closes.
            Some(event) = s3_events.recv() => match event {
                S3Event::BodyChunk(id, output) => {
                    metrics.s3_body_arrived(output.body.len_bytes());
                    Input::S3BodyChunk { id, output }
                }
                S3Event::Finished(id, result) => {
                    aborts.remove(&id);
                    if let Some((kind, started, bytes_out)) = s3_started.remove(&id) {
                        metrics.s3_finished(kind, &result, started.elapsed(), bytes_out);
                    }
                    Input::S3 { id, result }
                }
            },
            () = &mut shutdown, if !shutting_down => {
                shutting_down = true;
                Input::Shutdown
            },
            () = sleep_until(deadline, clock) => Input::Timeout,
        };
        core.handle_input(now(), input);
        let mut done = false;
        while let Some(output) = core.poll_output() {
            match output {
                Output::S3Request { id, request } => {
                    s3_started
                        .insert(id, (request.operation_name(), std::time::Instant::now(), request_bytes_out(&request)));
                    let executor = Arc::clone(&executor);
                    let events = s3_events_tx.clone();
                    let task = tokio::spawn(async move {
                        let chunk_events = events.clone();
                        let mut on_body_chunk =
                            move |output: GetObjectOutput| drop(chunk_events.send(S3Event::BodyChunk(id, output)));
                        let result = executor.execute(request, &mut on_body_chunk).await;
                        drop(events.send(S3Event::Finished(id, result)));
                    });
                    aborts.insert(id, task.abort_handle());
                }
                Output::CancelS3 { id } => {
                    if let Some(abort) = aborts.remove(&id) {
                        abort.abort();
                    }
                    if let Some((kind, _, _)) = s3_started.remove(&id) {
                        metrics.s3_cancelled(kind);
                    }
                }
                Output::FuseReply { id, reply } => match replies.remove(&id) {
                    Some(pending) => {
                        let failed = matches!(reply, FuseReply::Error(_));
                        send_reply(pending, reply);
                        if let Some((op, started)) = fuse_started.remove(&id) {
                            metrics.fuse_replied(op, failed, started.elapsed());
                        }
                    }
                    None => tracing::error!(?id, "the core answered a request nobody waits for"),
                },
                Output::InvalidateInode { ino } => {
                    if let Some(tx) = &invalidations {
                        let _ = tx.send(Invalidation::Inode(ino));
                    }
                }
                Output::InvalidateEntry { parent, name } => {
                    if let Some(tx) = &invalidations {
                        let _ = tx.send(Invalidation::Entry(parent, name));
                    }
                }
                Output::Done => done = true,
            }
        }
        if counters_copied.elapsed() >= CORE_COUNTERS_EVERY {
            metrics.set_core(core.counters());
            counters_copied = std::time::Instant::now();
        }
        if done {
            break;
        }
    }
    metrics.set_core(core.counters());
    for abort in aborts.values() {
        abort.abort();
    }
    // Anything still unanswered (there should be nothing) gets an error, not silence.
    for (_, pending) in replies.drain() {
        pending.error(Errno::EIO);
    }
}

async fn sleep_until(deadline: Option<goofys_core::Instant>, clock: std::time::Instant) {
    match deadline {
        Some(at) => tokio::time::sleep_until((clock + std::time::Duration::from_nanos(at.as_nanos())).into()).await,
        None => std::future::pending().await,
    }
}

/// Hands the core's reply to the fuser reply object it belongs to.
fn send_reply(pending: PendingReply, reply: FuseReply) {
    match (pending, reply) {
        (pending, FuseReply::Error(errno)) => pending.error(errno),
        (PendingReply::Entry(out), FuseReply::Entry(entry)) => out.entry_with_ttls(
            &entry.attr_ttl,
            &entry.entry_ttl,
            &file_attr(&entry.attr),
            generation(entry.generation),
        ),
        (PendingReply::Attr(out), FuseReply::Attr { attr, ttl }) => out.attr(&ttl, &file_attr(&attr)),
        (PendingReply::Open(out), FuseReply::Opened { fh, flags }) => {
            out.opened(fuser::FileHandle(fh.0), fopen_flags(flags))
        }
        (PendingReply::Create(out), FuseReply::Created { entry, fh, flags }) => out.created(
            &entry.entry_ttl,
            &file_attr(&entry.attr),
            generation(entry.generation),
            fuser::FileHandle(fh.0),
            fopen_flags(flags),
        ),
        (PendingReply::Data(out), FuseReply::Data(data)) => out.data(&data),
        (PendingReply::Xattr(out), FuseReply::Data(data)) => out.data(&data),
        (PendingReply::Xattr(out), FuseReply::XattrSize(size)) => out.size(size),
        (PendingReply::Write(out), FuseReply::Written { size }) => out.written(size),
        (PendingReply::Empty(out), FuseReply::Empty) => out.ok(),
        (PendingReply::Dir(mut out), FuseReply::Dir(entries)) => {
            for entry in entries {
                let ino = fuser::INodeNo(entry.ino.0);
                if out.add(ino, entry.next_offset, file_type(entry.kind), &entry.name) {
                    // The kernel's buffer is full: it asks again from the last offset it got.
                    break;
                }
            }
            out.ok();
        }
        (PendingReply::DirPlus(mut out), FuseReply::DirPlus(entries)) => {
            for entry in entries {
                let attr = file_attr(&entry.entry.attr);
                let ino = fuser::INodeNo(entry.dirent.ino.0);
                let ttl = entry.entry.entry_ttl;
                let generation = generation(entry.entry.generation);
                if out.add(ino, entry.dirent.next_offset, &entry.dirent.name, &ttl, &attr, generation) {
                    break;
                }
            }
            out.ok();
        }
        (PendingReply::StatFs(out), FuseReply::StatFs(stat)) => out.statfs(
            stat.blocks,
            stat.blocks_free,
            stat.blocks_available,
            stat.files,
            stat.files_free,
            stat.block_size,
            stat.name_max_bytes,
            stat.fragment_size,
        ),
        (pending, reply) => {
            debug_assert!(false, "reply {reply:?} does not fit {pending:?}");
            tracing::error!(?reply, "the core's reply does not fit the request; answering EIO");
            pending.error(Errno::EIO);
        }
    }
}
