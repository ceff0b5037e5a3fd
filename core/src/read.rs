//! Reading open files: sequential prefetch, random reads, and resuming truncated bodies.
//!
//! Problems this module solves:
//! - Streaming a large object fast needs several large ranged GETs in flight ahead of the
//!   reader; a random reader must not pay for bytes it will never read. A read that continues
//!   where the last one ended (or lands in what is already being fetched, or skips forward by
//!   at most `prefetch_initial_window_bytes`) is sequential and doubles the prefetch window,
//!   from `prefetch_initial_window_bytes` up to `prefetch_max_window_bytes`, split into GETs of
//!   at most `read_part_size_bytes`. Any other read is random: the window resets and only the
//!   requested bytes are fetched.
//! - Every GET carries `If-Match` with the ETag seen at open. If the object changed, S3 answers
//!   412 (404 if it was deleted) and every read of the handle fails with ESTALE from then on,
//!   never mixing versions.
//! - A GET body may arrive in chunks (a streaming transport hands frames on as they come):
//!   each chunk is kept as it is and answers the reads it completes, so a reader does not wait
//!   for the last byte of an 8 MiB part. A body that ends early keeps the bytes that arrived
//!   and the GET resumes at the next offset (see `Core::handle_get_body`); progress restarts
//!   its retry budget.
//! - Memory stays bounded: bytes behind the reader are dropped once no waiting read needs them,
//!   and read-ahead of all handles together stays within `max_read_buffer_bytes` (past it a
//!   reader gets what it asks for and no more, until buffers drain).

use std::collections::BTreeMap;

use bytes::{Bytes, BytesMut};

use crate::calls::{CallId, Purpose};
use crate::errno::{Errno, errno_for_s3_error};
use crate::fuse_types::{FuseReply, OpenFlags, OpenReplyFlags};
use crate::ids::{FileHandle, FuseReqId, Ino};
use crate::io::Output;
use crate::lookup::unexpected_response;
use crate::machine::{Core, Waiting};
use crate::s3_types::{Body, ByteRange, ETag, ObjectMeta, S3Error, S3ErrorCode, S3Request, S3Response, S3Result};
use crate::time::Instant;

/// A read waiting for bytes of the object: `[start, end)` from S3, answered as
/// `[start, reply_end)` once the file's unwritten bytes (if any) are laid over it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct PendingRead {
    id: FuseReqId,
    start: u64,
    end: u64,
    reply_end: u64,
}

/// The sequential-access detector.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Stream {
    /// Where the last read ended.
    next_offset: u64,
    /// How far ahead of the reader to fetch.
    window_bytes: u64,
    /// The end of what the prefetcher has asked for.
    prefetched_until: u64,
    /// Consecutive sequential reads.
    sequential_reads: u64,
}

/// The state of one open file handle.
#[derive(Debug)]
pub(crate) struct FileReader {
    pub(crate) ino: Ino,
    pub(crate) key: String,
    /// The version every GET asks for (`None` for a file that does not exist in S3 yet).
    pub(crate) etag: Option<ETag>,
    /// Size of that version.
    pub(crate) size_bytes: u64,
    /// Opened for writing.
    pub(crate) writable: bool,
    /// Opened with `O_APPEND`: every write goes to the end.
    pub(crate) append: bool,
    /// The object changed since open: every read fails with ESTALE.
    stale: bool,
    /// A GET found another version (or none) while this mount was changing the object (a
    /// commit, a copy onto itself with new metadata, a rename): the change may have overtaken
    /// the GET. The reads wait for the change, which rebases the handle onto the new version if
    /// it succeeds and leaves it stale if it fails.
    overtaken_by_change: bool,
    /// Bytes that arrived, by offset, never overlapping.
    chunks: BTreeMap<u64, Bytes>,
    /// The total length of `chunks` (a streamed body arrives in many small chunks, and the
    /// budget is checked at every read).
    chunk_bytes: u64,
    /// Ranges being fetched: start → (end, call).
    inflight: BTreeMap<u64, (u64, CallId)>,
    pending: Vec<PendingRead>,
    stream: Stream,
}

impl FileReader {
    /// Forgets waiting reads (at shutdown, after they were answered).
    pub(crate) fn forget_pending_reads(&mut self) {
        self.pending.clear();
    }

    /// Bytes of the object held for this handle (arrived, not yet dropped).
    pub(crate) fn buffered_bytes(&self) -> u64 {
        self.chunk_bytes
    }

    /// Keeps bytes that arrived from `start`.
    fn insert_chunk(&mut self, start: u64, bytes: Bytes) {
        self.chunk_bytes += bytes.len() as u64;
        if let Some(replaced) = self.chunks.insert(start, bytes) {
            self.chunk_bytes -= replaced.len() as u64;
        }
    }

    /// Drops every byte that arrived.
    fn clear_chunks(&mut self) {
        self.chunks.clear();
        self.chunk_bytes = 0;
    }

    /// Bytes held or on their way for this handle.
    fn committed_bytes(&self) -> u64 {
        self.buffered_bytes() + self.inflight.iter().map(|(&start, &(end, _))| end - start).sum::<u64>()
    }

    /// The end of the data or fetch that covers `offset`, if any.
    fn covered_until(&self, offset: u64) -> Option<u64> {
        let chunk_end = self
            .chunks
            .range(..=offset)
            .next_back()
            .map(|(&start, bytes)| start + bytes.len() as u64)
            .filter(|&end| end > offset);
        let fetch_end =
            self.inflight.range(..=offset).next_back().map(|(_, &(end, _))| end).filter(|&end| end > offset);
        chunk_end.max(fetch_end)
    }

    /// The start of the next chunk or fetch after `offset`.
    fn next_covered_start(&self, offset: u64) -> Option<u64> {
        let chunk = self.chunks.range(offset..).next().map(|(&start, _)| start);
        let fetch = self.inflight.range(offset..).next().map(|(&start, _)| start);
        match (chunk, fetch) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The byte ranges in `[start, end)` that are neither here nor being fetched.
    fn gaps(&self, start: u64, end: u64) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        let mut at = start;
        while at < end {
            if let Some(covered_end) = self.covered_until(at) {
                at = covered_end;
                continue;
            }
            let gap_end = self.next_covered_start(at).map_or(end, |next| next.min(end));
            gaps.push((at, gap_end));
            at = gap_end;
        }
        gaps
    }

    /// Drops bytes that no waiting read needs and that are not ahead of the reader within the
    /// prefetch window.
    ///
    /// Only chunks wholly behind the reader or past the window are looked at: this runs at every
    /// chunk of a streamed body, and the window may hold thousands of chunks.
    fn evict(&mut self, keep_ahead_bytes: u64) {
        let ahead_start = self.stream.next_offset;
        let ahead_end = ahead_start.saturating_add(keep_ahead_bytes);
        let behind =
            self.chunks.range(..ahead_start).filter(|&(&start, bytes)| start + bytes.len() as u64 <= ahead_start);
        let beyond = self.chunks.range(ahead_end..);
        let unneeded: Vec<u64> = behind
            .chain(beyond)
            .filter(|&(&start, bytes)| {
                let end = start + bytes.len() as u64;
                !self.pending.iter().any(|read| read.start < end && start < read.end)
            })
            .map(|(&start, _)| start)
            .collect();
        for start in unneeded {
            if let Some(dropped) = self.chunks.remove(&start) {
                self.chunk_bytes -= dropped.len() as u64;
            }
        }
    }
}

impl Core {
    /// Opens a handle on a file inode whose attributes are fresh (or that exists only here).
    pub(crate) fn open_file_handle(&mut self, now: Instant, id: FuseReqId, ino: Ino, flags: OpenFlags) {
        let inode = self.inodes.get_mut(ino).expect("opening a known inode");
        let direct_io = flags.has(OpenFlags::O_DIRECT);
        let keep_cache = !direct_io && inode.etag.is_some() && inode.kernel_cached_etag == inode.etag;
        inode.kernel_cached_etag = inode.etag.clone();
        let fh = self.allocate_handle();
        self.insert_handle(fh, ino, flags, flags.has(OpenFlags::O_APPEND));
        if flags.writes() {
            self.attach_writer(now, ino, flags.has(OpenFlags::O_TRUNC));
        }
        self.reply(id, FuseReply::Opened { fh, flags: OpenReplyFlags { keep_cache, direct_io } });
    }

    /// Registers handle `fh` of `ino`.
    pub(crate) fn insert_handle(&mut self, fh: FileHandle, ino: Ino, flags: OpenFlags, append: bool) {
        let initial_window = self.config.prefetch_initial_window_bytes;
        let inode = self.inodes.get(ino).expect("a known inode");
        // The handle reads the object: while this mount writes the file, the inode's size is
        // the writer's, and fetching up to it would ask S3 for bytes the object does not have.
        let object_size_bytes = self.written_base_size(ino).unwrap_or(inode.size_bytes);
        let reader = FileReader {
            ino,
            key: inode.key.clone(),
            etag: inode.etag.clone(),
            size_bytes: object_size_bytes,
            writable: flags.writes(),
            append,
            stale: false,
            overtaken_by_change: false,
            chunks: BTreeMap::new(),
            chunk_bytes: 0,
            inflight: BTreeMap::new(),
            pending: Vec::new(),
            stream: Stream { next_offset: 0, window_bytes: initial_window, prefetched_until: 0, sequential_reads: 0 },
        };
        self.inodes.open_handle(ino);
        self.files.insert(fh, reader);
    }

    pub(crate) fn read(&mut self, now: Instant, id: FuseReqId, fh: FileHandle, offset: u64, size: u32) {
        let Some(reader) = self.files.get(&fh) else {
            return self.reply_error(id, Errno::EBADF);
        };
        if reader.stale {
            return self.reply_error(id, Errno::ESTALE);
        }
        let ino = reader.ino;
        // What comes from the object, and how long the reply is: a file being written may be
        // longer than its object, and its unwritten bytes are laid over the object's.
        let (end, reply_end) = if self.writes.contains_key(&ino) {
            match self.plan_read_while_writing(now, id, fh, ino, offset, size) {
                Some(plan) => plan,
                None => return,
            }
        } else {
            let end = offset.saturating_add(u64::from(size)).min(reader.size_bytes);
            (end, end)
        };
        if offset >= reply_end {
            return self.reply(id, FuseReply::Data(Body::default()));
        }
        if offset >= end {
            return self.finish_read(ino, id, offset, reply_end, Bytes::new());
        }
        let config = &self.config;
        // Read-ahead shares one budget across handles; what it may still add now.
        let committed_bytes: u64 = self.files.values().map(FileReader::committed_bytes).sum();
        let read_ahead_allowance_bytes = config.max_read_buffer_bytes.saturating_sub(committed_bytes);
        let reader = self.files.get_mut(&fh).expect("checked above");

        // A read behind the reader's position over bytes that are here or on their way (the
        // kernel sends readahead and async reads out of order) is served without moving the
        // stream: it neither grows the window nor counts as a jump.
        let behind_but_covered = offset < reader.stream.next_offset && reader.covered_until(offset).is_some();
        let stream = &mut reader.stream;
        // A short skip forward is still a stream: the kernel asks only for the pages it does
        // not hold, so reading back a file just written in unaligned pieces (tar's 10 KiB
        // records) skips the whole pages it kept.
        let short_skip =
            offset > stream.next_offset && offset - stream.next_offset <= config.prefetch_initial_window_bytes;
        let sequential = behind_but_covered
            || offset == stream.next_offset
            || short_skip
            || (offset > stream.next_offset && offset < stream.prefetched_until);
        let fetch_end = if behind_but_covered {
            end
        } else if sequential {
            if stream.sequential_reads > 0 {
                stream.window_bytes = (stream.window_bytes * 2).min(config.prefetch_max_window_bytes);
            }
            stream.sequential_reads += 1;
            let refill_until = refill_end(stream, end, config.read_part_size_bytes, reader.size_bytes)
                .min(stream.prefetched_until.max(end).saturating_add(read_ahead_allowance_bytes));
            stream.prefetched_until = stream.prefetched_until.max(refill_until);
            refill_until.max(end)
        } else {
            stream.window_bytes = config.prefetch_initial_window_bytes;
            stream.sequential_reads = 0;
            stream.prefetched_until = end;
            end
        };
        if !behind_but_covered {
            stream.next_offset = end;
        }
        reader.pending.push(PendingRead { id, start: offset, end, reply_end });
        self.waiting.insert(id, Waiting::Read(fh));

        if !sequential {
            self.cancel_unneeded_fetches(fh);
        }
        self.fetch_gaps(now, fh, offset, fetch_end);
        self.serve_reads(fh);
    }

    /// Starts GETs for whatever of `[start, end)` is neither here nor on its way.
    fn fetch_gaps(&mut self, now: Instant, fh: FileHandle, start: u64, end: u64) {
        let part_size = self.config.read_part_size_bytes.max(1);
        let reader = &self.files[&fh];
        let (key, etag) = (reader.key.clone(), reader.etag.clone());
        for (gap_start, gap_end) in reader.gaps(start, end) {
            let mut at = gap_start;
            while at < gap_end {
                let piece_end = (at + part_size).min(gap_end);
                let request = S3Request::GetObject {
                    key: key.clone(),
                    range: Some(ByteRange::new(at, piece_end)),
                    if_match: etag.clone(),
                };
                let call = self.start_call(now, Purpose::ReadRange { fh }, request);
                self.files.get_mut(&fh).expect("reader exists").inflight.insert(at, (piece_end, call));
                at = piece_end;
            }
        }
    }

    /// After a jump, cancels prefetches that no waiting read overlaps.
    fn cancel_unneeded_fetches(&mut self, fh: FileHandle) {
        let reader = self.files.get_mut(&fh).expect("reader exists");
        let pending = &reader.pending;
        let unneeded: Vec<(u64, CallId)> = reader
            .inflight
            .iter()
            .filter(|&(&start, &(end, _))| !pending.iter().any(|read| read.start < end && start < read.end))
            .map(|(&start, &(_, call))| (start, call))
            .collect();
        for &(start, _) in &unneeded {
            reader.inflight.remove(&start);
        }
        for (_, call) in unneeded {
            self.cancel_call(call);
        }
    }

    /// Answers every waiting read whose bytes have all arrived.
    fn serve_reads(&mut self, fh: FileHandle) {
        let keep_ahead_bytes = self.config.prefetch_max_window_bytes + self.config.read_part_size_bytes;
        let Some(reader) = self.files.get_mut(&fh) else {
            return;
        };
        let ino = reader.ino;
        let mut ready = Vec::new();
        reader.pending.retain(|read| match assemble(&reader.chunks, read.start, read.end) {
            Some(bytes) => {
                ready.push((read.id, read.start, read.reply_end, bytes));
                false
            }
            None => true,
        });
        reader.evict(keep_ahead_bytes);
        for (id, start, reply_end, bytes) in ready {
            self.finish_read(ino, id, start, reply_end, bytes);
        }
    }

    /// Answers a read with the object's bytes from `start`, laid under the unwritten bytes of
    /// the file if it is being written.
    fn finish_read(&mut self, ino: Ino, id: FuseReqId, start: u64, reply_end: u64, object_bytes: Bytes) {
        let data = match self.writes.get(&ino) {
            None if object_bytes.len() as u64 == reply_end - start => object_bytes,
            _ => self.compose_read(ino, start, reply_end, object_bytes),
        };
        self.reply(id, FuseReply::Data(Body(data)));
    }

    pub(crate) fn read_range_done(
        &mut self,
        now: Instant,
        fh: FileHandle,
        call_id: CallId,
        request: &S3Request,
        result: S3Result,
    ) {
        let S3Request::GetObject { range: Some(range), .. } = request else {
            unreachable!("read calls are ranged GETs")
        };
        match result {
            Ok(S3Response::GetObject(output)) => {
                self.read_data_arrived(now, fh, call_id, output.range_start, output.body.0, Some(output.meta))
            }
            Ok(other) => self.read_range_failed(fh, call_id, range.start, unexpected_response("GetObject", &other)),
            Err(error) => self.read_range_failed(fh, call_id, range.start, error),
        }
    }

    /// Bytes of a ranged GET arrived, starting at `data_start` in the object.
    pub(crate) fn read_data_arrived(
        &mut self,
        _now: Instant,
        fh: FileHandle,
        call_id: CallId,
        data_start: u64,
        data: Bytes,
        meta: Option<ObjectMeta>,
    ) {
        let Some(reader) = self.files.get_mut(&fh) else {
            return;
        };
        if let Some(meta) = &meta
            && Some(&meta.etag) != reader.etag.as_ref()
        {
            // A server that ignored If-Match: the bytes are of another version.
            return self.version_changed(fh, call_id);
        }
        if data.is_empty() {
            return;
        }
        let Some((&fetch_start, &(fetch_end, _))) = reader.inflight.iter().find(|&(_, &(_, call))| call == call_id)
        else {
            return;
        };
        reader.inflight.remove(&fetch_start);
        let data_end = data_start + data.len() as u64;
        let useful_end = data_end.min(fetch_end);
        if data_start <= fetch_start && useful_end > fetch_start {
            let slice = data.slice((fetch_start - data_start) as usize..(useful_end - data_start) as usize);
            reader.insert_chunk(fetch_start, slice);
            if useful_end < fetch_end {
                reader.inflight.insert(useful_end, (fetch_end, call_id));
            }
        } else {
            tracing::warn!(?fh, data_start, fetch_start, "GET returned bytes outside the requested range");
            reader.inflight.insert(fetch_start, (fetch_end, call_id));
            return;
        }
        self.serve_reads(fh);
    }

    fn read_range_failed(&mut self, fh: FileHandle, call_id: CallId, fetch_start: u64, error: S3Error) {
        let Some(reader) = self.files.get_mut(&fh) else {
            return;
        };
        // The object was replaced (412), shrank (416) or deleted (404) since open: the handle's
        // version is gone.
        if let S3Error::Service(service) = &error
            && matches!(
                service.code,
                S3ErrorCode::PreconditionFailed | S3ErrorCode::InvalidRange | S3ErrorCode::NoSuchKey
            )
        {
            return self.version_changed(fh, call_id);
        }
        let errno = errno_for_s3_error(&error);
        let Some((fetch_end, _)) = reader.inflight.remove(&fetch_start) else {
            return;
        };
        let mut failed = Vec::new();
        reader.pending.retain(|read| {
            let overlaps = read.start < fetch_end && fetch_start < read.end;
            if overlaps {
                failed.push(read.id);
            }
            !overlaps
        });
        for id in failed {
            self.reply_error(id, errno);
        }
    }

    /// GET `call_id` of handle `fh` found another version of the object than the handle's, or
    /// none. If this mount is changing the object (committing its bytes, copying it onto
    /// itself with new metadata, or renaming it), the change may have reached S3 before the
    /// GET did (a page fault's read-around GET overtaken by an msync's PUT): the GET's reads
    /// wait for the change (see [`FileReader::overtaken_by_change`]). Otherwise another client
    /// changed the object.
    fn version_changed(&mut self, fh: FileHandle, call_id: CallId) {
        let ino = self.files.get(&fh).expect("reader exists").ino;
        if !self.is_committing(ino) && !self.is_changing_metadata(ino) && !self.is_renaming(ino) {
            return self.mark_stale(fh);
        }
        let reader = self.files.get_mut(&fh).expect("reader exists");
        tracing::debug!(key = %reader.key, "a GET found another version during this mount's change of it; its reads wait for the change");
        reader.overtaken_by_change = true;
        reader.inflight.retain(|_, &mut (_, call)| call != call_id);
        self.cancel_call(call_id);
    }

    /// This mount's change of `ino` failed: handles whose GETs found another version during it
    /// saw another client's object, and fail their reads with ESTALE.
    pub(crate) fn stale_if_overtaken(&mut self, ino: Ino) {
        let overtaken: Vec<FileHandle> = self
            .files
            .iter()
            .filter(|(_, reader)| reader.ino == ino && reader.overtaken_by_change)
            .map(|(&fh, _)| fh)
            .collect();
        for fh in overtaken {
            self.mark_stale(fh);
        }
    }

    /// The object changed since open: fail every read of the handle with ESTALE, now and later.
    fn mark_stale(&mut self, fh: FileHandle) {
        let reader = self.files.get_mut(&fh).expect("reader exists");
        tracing::info!(key = %reader.key, "object changed while open; reads fail with ESTALE");
        reader.stale = true;
        reader.overtaken_by_change = false;
        reader.clear_chunks();
        let ino = reader.ino;
        let calls: Vec<CallId> = reader.inflight.values().map(|&(_, call)| call).collect();
        reader.inflight.clear();
        let pending: Vec<FuseReqId> = reader.pending.drain(..).map(|read| read.id).collect();
        for call in calls {
            self.cancel_call(call);
        }
        for id in pending {
            self.reply_error(id, Errno::ESTALE);
        }
        self.inodes.expire_stat(ino);
        self.emit(Output::InvalidateInode { ino });
    }

    pub(crate) fn release(&mut self, now: Instant, id: FuseReqId, fh: FileHandle) {
        let Some(mut reader) = self.files.remove(&fh) else {
            return self.reply_error(id, Errno::EBADF);
        };
        for &(_, call) in reader.inflight.values() {
            self.cancel_call(call);
        }
        for read in reader.pending.drain(..) {
            self.reply_error(read.id, Errno::EBADF);
        }
        if reader.writable {
            self.detach_writer(now, reader.ino);
        }
        self.inodes.close_handle(reader.ino);
        self.finish_unlink_if_unheld(now, reader.ino);
        self.reply(id, FuseReply::Empty);
    }

    /// Points every handle of `ino` at a new version of its object (after this mount wrote it):
    /// fetched bytes of the old version are dropped and waiting reads fetch from the new one.
    pub(crate) fn rebase_readers(&mut self, now: Instant, ino: Ino, etag: ETag, size_bytes: u64) {
        let handles: Vec<FileHandle> =
            self.files.iter().filter(|(_, reader)| reader.ino == ino).map(|(&fh, _)| fh).collect();
        for fh in handles {
            let reader = self.files.get_mut(&fh).expect("listed");
            let calls: Vec<CallId> = reader.inflight.values().map(|&(_, call)| call).collect();
            reader.inflight.clear();
            reader.clear_chunks();
            reader.etag = Some(etag.clone());
            reader.size_bytes = size_bytes;
            reader.overtaken_by_change = false;
            // What was unwritten when these reads were planned is in the object now.
            let mut ranges = Vec::new();
            for read in &mut reader.pending {
                read.end = read.reply_end.min(size_bytes).max(read.start);
                ranges.push((read.start, read.end));
            }
            for call in calls {
                self.cancel_call(call);
            }
            for (start, end) in ranges {
                self.fetch_gaps(now, fh, start, end);
            }
            self.serve_reads(fh);
        }
    }

    /// An interrupted read: stop waiting for it (the prefetch goes on). The caller replies.
    pub(crate) fn abandon_read(&mut self, id: FuseReqId, fh: FileHandle) {
        if let Some(reader) = self.files.get_mut(&fh) {
            reader.pending.retain(|read| read.id != id);
        }
    }
}

/// Where a sequential reader's prefetch should reach after a read that ends at `read_end`.
///
/// The window is refilled in whole parts, as soon as a whole part fits (so a full window
/// keeps `window / part` GETs in flight, as a raw client does), or while it is smaller than two
/// parts, once half of it has been consumed: topping it up after every kernel read would send
/// one small GET per read (a 1 MiB read adding 1 MiB at the far end), hundreds of requests
/// where a few large ones do.
fn refill_end(stream: &Stream, read_end: u64, part_size_bytes: u64, size_bytes: u64) -> u64 {
    let part_size_bytes = part_size_bytes.max(1);
    let ahead_bytes = stream.prefetched_until.saturating_sub(read_end);
    let room_bytes = stream.window_bytes.saturating_sub(ahead_bytes);
    let room_needed_bytes =
        if stream.window_bytes >= 2 * part_size_bytes { part_size_bytes } else { stream.window_bytes / 2 };
    if room_bytes < room_needed_bytes {
        return stream.prefetched_until.min(size_bytes);
    }
    let from = stream.prefetched_until.max(read_end);
    let target = read_end.saturating_add(stream.window_bytes);
    let wanted_bytes = target.saturating_sub(from);
    let whole_parts_bytes =
        if wanted_bytes >= part_size_bytes { wanted_bytes / part_size_bytes * part_size_bytes } else { wanted_bytes };
    from.saturating_add(whole_parts_bytes).min(size_bytes)
}

/// The bytes of `[start, end)` if they have all arrived: a slice when one chunk holds them,
/// else one copy (checked first, so a read still waiting for chunks of a streamed body costs no
/// copy each time one arrives).
fn assemble(chunks: &BTreeMap<u64, Bytes>, start: u64, end: u64) -> Option<Bytes> {
    let (&first_start, first) = chunks.range(..=start).next_back()?;
    let first_end = first_start + first.len() as u64;
    if first_end >= end {
        return Some(first.slice((start - first_start) as usize..(end - first_start) as usize));
    }
    let pieces = || {
        let mut at = start;
        std::iter::from_fn(move || {
            if at >= end {
                return None;
            }
            let (&chunk_start, chunk) = chunks.range(..=at).next_back()?;
            let chunk_end = chunk_start + chunk.len() as u64;
            if chunk_end <= at {
                return None;
            }
            let take_end = chunk_end.min(end);
            let piece = &chunk[(at - chunk_start) as usize..(take_end - chunk_start) as usize];
            at = take_end;
            Some(piece)
        })
    };
    let covered_bytes: u64 = pieces().map(|piece| piece.len() as u64).sum();
    if covered_bytes < end - start {
        return None;
    }
    let mut out = BytesMut::with_capacity((end - start) as usize);
    pieces().for_each(|piece| out.extend_from_slice(piece));
    Some(out.freeze())
}
