//! Reading open files: prefetch, random reads, truncated bodies, changed objects, retries.

mod harness;

use std::time::Duration;

use goofys_core::fuse_types::{FuseOp, FuseReply};
use goofys_core::s3_types::{Body, ByteRange, ETag, S3Error, S3ErrorCode, S3Request, TransportError};
use goofys_core::{CoreConfig, Errno, Ino, Input, Output};
use harness::*;

const KIB: u64 = 1024;
const MIB: u64 = 1024 * 1024;

#[test]
fn a_sequential_reader_gets_a_growing_prefetch_window_with_several_gets_in_flight() {
    let config = CoreConfig {
        prefetch_initial_window_bytes: MIB,
        prefetch_max_window_bytes: 64 * MIB,
        read_part_size_bytes: 8 * MIB,
        ..CoreConfig::default()
    };
    let mut h = Harness::new(config);
    let file = content((200 * MIB) as usize);
    let (ino, fh) = h.open_file("big", &file);

    let mut offset = 0;
    let mut requested_until = 0;
    let mut most_in_flight = 0;
    let mut gets = 0;
    let mut in_flight = Vec::new();
    while offset < 100 * MIB {
        let id = h.read(ino, fh, offset, (128 * KIB) as u32);
        for (s3_id, request) in h.take_requests() {
            let range = range_of(&request);
            assert_eq!(range.start, requested_until, "fetches are contiguous, never repeated");
            assert!(range.len_bytes() <= 8 * MIB);
            if range.start >= 64 * MIB {
                assert_eq!(range.len_bytes(), 8 * MIB, "once the window is full, it is refilled in whole parts");
            }
            gets += 1;
            assert!(matches!(&request, S3Request::GetObject { if_match: Some(tag), .. } if *tag == ETag::new("v1")));
            requested_until = range.end;
            in_flight.push((s3_id, range));
        }
        most_in_flight = most_in_flight.max(in_flight.len());
        // S3 answers the oldest request.
        while h
            .take_reply(id)
            .map(|reply| {
                assert_eq!(reply, FuseReply::Data(Body(file.slice(offset as usize..(offset + 128 * KIB) as usize))))
            })
            .is_none()
        {
            let (s3_id, range) = in_flight.remove(0);
            h.s3(s3_id, get_reply(&file, range, "v1"));
        }
        offset += 128 * KIB;
    }
    assert!(requested_until >= offset + 56 * MIB, "the 64 MiB window stays full but for one part");
    assert!(requested_until <= offset + 64 * MIB, "and no more than the window");
    assert!(most_in_flight >= 7, "a full window's parts in flight at once ({most_in_flight})");
    // 800 kernel reads of 128 KiB: a few small GETs while the window grows, then 8 MiB parts.
    assert!(gets <= 30, "{gets} GETs for {} MiB", requested_until / MIB);
}

#[test]
fn reads_that_arrive_out_of_order_within_the_prefetch_neither_cancel_nor_refetch() {
    let mut h = Harness::new(CoreConfig::default());
    let file = content((64 * MIB) as usize);
    let (ino, fh) = h.open_file("f", &file);
    let first = h.read(ino, fh, 0, (128 * KIB) as u32);
    let requests = h.take_requests();
    // The kernel's async readahead overtakes the read before it.
    let ahead = h.read(ino, fh, 256 * KIB, (128 * KIB) as u32);
    let behind = h.read(ino, fh, 128 * KIB, (128 * KIB) as u32);
    let later = h.take_requests();
    assert!(h.take_cancels().is_empty(), "no prefetch is cancelled");
    assert!(later.iter().all(|(_, request)| range_of(request).start >= range_of(&requests[0].1).end), "{later:?}");
    for (s3_id, request) in requests.into_iter().chain(later) {
        h.s3(s3_id, get_reply(&file, range_of(&request), "v1"));
    }
    assert_eq!(h.data(first), file.slice(0..(128 * KIB) as usize));
    assert_eq!(h.data(behind), file.slice((128 * KIB) as usize..(256 * KIB) as usize));
    assert_eq!(h.data(ahead), file.slice((256 * KIB) as usize..(384 * KIB) as usize));
}

#[test]
fn read_ahead_of_all_handles_stays_within_the_read_buffer_budget() {
    let config = CoreConfig { max_read_buffer_bytes: 20 * MIB, ..CoreConfig::default() };
    let mut h = Harness::new(config);
    let file = content((256 * MIB) as usize);
    let (ino, first) = h.open_file("f", &file);
    let open = h.open(ino);
    let second = h.opened(open);
    let mut requested = 0;
    for handle in [first, second] {
        let mut offset = 0;
        while offset < 16 * MIB {
            h.read(ino, handle, offset, MIB as u32);
            offset += MIB;
        }
        requested += h.take_requests().iter().map(|(_, request)| range_of(request).len_bytes()).sum::<u64>();
    }
    assert!(requested <= 20 * MIB + 16 * MIB, "{} MiB requested", requested / MIB);
    assert!(requested >= 32 * MIB, "every read still gets its bytes ({} MiB)", requested / MIB);
}

#[test]
fn the_first_read_asks_for_about_a_mebibyte() {
    let mut h = Harness::new(CoreConfig::default());
    let file = content((10 * MIB) as usize);
    let (ino, fh) = h.open_file("f", &file);
    h.read(ino, fh, 0, 4096);
    let (_, request) = h.take_one_request();
    assert_eq!(range_of(&request).end, 4096 + MIB);
}

#[test]
fn a_random_read_fetches_only_what_it_needs() {
    let mut h = Harness::new(CoreConfig::default());
    let file = content((50 * MIB) as usize);
    let (ino, fh) = h.open_file("f", &file);
    let id = h.read(ino, fh, 20 * MIB, 4096);
    let (s3_id, request) = h.take_one_request();
    assert_eq!(range_of(&request).start, 20 * MIB);
    assert_eq!(range_of(&request).len_bytes(), 4096);
    h.s3(s3_id, get_reply(&file, range_of(&request), "v1"));
    assert_eq!(h.data(id), file.slice((20 * MIB) as usize..(20 * MIB + 4096) as usize));
}

/// The kernel reads back a file it wrote in unaligned pieces one partly cached page at a time:
/// 4 KiB reads at rising offsets with whole pages skipped between them. They are a stream with
/// short skips, served by a few prefetch GETs, not one GET per page.
#[test]
fn page_reads_that_skip_a_few_pages_forward_stream_with_a_few_gets() {
    let mut h = Harness::new(CoreConfig::default());
    let file = content((9 * MIB) as usize);
    let (ino, fh) = h.open_file("tarred", &file);
    let mut gets = 0;
    let mut offset = 4 * KIB;
    while offset + 4 * KIB <= 9 * MIB {
        let id = h.read(ino, fh, offset, 4096);
        for (s3_id, request) in h.take_requests() {
            gets += 1;
            h.s3(s3_id, get_reply(&file, range_of(&request), "v1"));
        }
        assert_eq!(h.data(id), file.slice(offset as usize..(offset + 4 * KIB) as usize));
        // tar's 10 KiB records leave every second or third page partly written.
        offset += if (offset / (4 * KIB)).is_multiple_of(2) { 8 * KIB } else { 12 * KIB };
    }
    assert!(gets <= 12, "{gets} GETs for 9 MiB read page by page with skips");
}

/// Reads further apart than the first prefetch window stay random: only their bytes are asked.
#[test]
fn reads_that_jump_further_than_the_first_window_fetch_only_their_bytes() {
    let config = CoreConfig { prefetch_initial_window_bytes: MIB, ..CoreConfig::default() };
    let mut h = Harness::new(config);
    let file = content((50 * MIB) as usize);
    let (ino, fh) = h.open_file("f", &file);
    for offset in [3 * MIB, 5 * MIB, 7 * MIB] {
        let id = h.read(ino, fh, offset, 4096);
        let (s3_id, request) = h.take_one_request();
        assert_eq!((range_of(&request).start, range_of(&request).len_bytes()), (offset, 4096));
        h.s3(s3_id, get_reply(&file, range_of(&request), "v1"));
        assert_eq!(h.data(id).len(), 4096);
    }
}

#[test]
fn a_read_past_the_end_is_empty_and_a_read_across_it_is_short() {
    let mut h = Harness::new(CoreConfig::default());
    let file = content(1000);
    let (ino, fh) = h.open_file("f", &file);
    let past = h.read(ino, fh, 5000, 100);
    assert_eq!(h.data(past).len(), 0);
    let across = h.read(ino, fh, 900, 4096);
    let (s3_id, request) = h.take_one_request();
    assert_eq!(range_of(&request).end, 1000, "never asks past the end");
    h.s3(s3_id, get_reply(&file, range_of(&request), "v1"));
    assert_eq!(h.data(across), file.slice(900..));
}

#[test]
fn a_truncated_body_keeps_what_arrived_and_resumes_at_the_next_offset() {
    let mut h = Harness::new(CoreConfig { prefetch_initial_window_bytes: 0, ..CoreConfig::default() });
    let file = content(100_000);
    let (ino, fh) = h.open_file("f", &file);
    let id = h.read(ino, fh, 0, 100_000);
    let (s3_id, request) = h.take_one_request();
    assert_eq!(range_of(&request).len_bytes(), 100_000);
    let received = Body(file.slice(0..30_000));
    h.s3(s3_id, Err(S3Error::Transport(TransportError::Truncated { received })));
    let (resumed_id, resumed) = h.take_one_request();
    assert_eq!(range_of(&resumed).start, 30_000, "resumes where the body stopped");
    assert_eq!(range_of(&resumed).end, 100_000);
    h.s3(resumed_id, get_reply(&file, range_of(&resumed), "v1"));
    assert_eq!(h.data(id), file);
}

#[test]
fn a_changed_object_fails_reads_with_estale_never_mixed_bytes() {
    let mut h = Harness::new(CoreConfig::default());
    let file = content(10_000);
    let (ino, fh) = h.open_file("f", &file);
    let id = h.read(ino, fh, 0, 4096);
    let (s3_id, _) = h.take_one_request();
    h.s3(s3_id, Err(S3Error::service(412, S3ErrorCode::PreconditionFailed)));
    assert_eq!(h.reply(id), FuseReply::Error(Errno::ESTALE));
    assert!(h.outputs.contains(&Output::InvalidateInode { ino }));
    let later = h.read(ino, fh, 4096, 4096);
    assert_eq!(h.reply(later), FuseReply::Error(Errno::ESTALE));
    assert!(h.take_requests().is_empty());
}

#[test]
fn a_server_that_ignores_if_match_still_cannot_mix_versions() {
    let mut h = Harness::new(CoreConfig::default());
    let file = content(10_000);
    let (ino, fh) = h.open_file("f", &file);
    let id = h.read(ino, fh, 0, 4096);
    let (s3_id, request) = h.take_one_request();
    h.s3(s3_id, get_reply(&file, range_of(&request), "v2"));
    assert_eq!(h.reply(id), FuseReply::Error(Errno::ESTALE));
}

#[test]
fn slowdown_is_retried_after_a_jittered_backoff_under_a_new_request_id() {
    let mut h = Harness::new(CoreConfig::default());
    let file = content(5000);
    let (ino, fh) = h.open_file("f", &file);
    let id = h.read(ino, fh, 0, 5000);
    let (first, request) = h.take_one_request();
    h.s3(first, Err(S3Error::service(503, S3ErrorCode::SlowDown)));
    assert!(h.take_requests().is_empty(), "not resent before the backoff");
    let retry_at = h.core.poll_timeout().expect("a backoff timer");
    assert!(retry_at <= h.now + Duration::from_millis(100), "first backoff is at most 100 ms");
    h.advance_to_timer();
    let (second, again) = h.take_one_request();
    assert_ne!(second, first);
    assert_eq!(again, request);
    h.s3(first, get_reply(&file, range_of(&request), "v1"));
    assert!(h.take_reply(id).is_none(), "a result for the abandoned attempt is ignored");
    h.s3(second, get_reply(&file, range_of(&request), "v1"));
    assert_eq!(h.data(id), file);
    h.s3(second, get_reply(&file, range_of(&request), "v1"));
    assert!(h.outputs.is_empty(), "a duplicate result is ignored");
}

#[test]
fn the_counters_show_retries_buffered_read_bytes_and_open_files() {
    let mut h = Harness::new(CoreConfig::default());
    let file = content((4 * MIB) as usize);
    let (ino, fh) = h.open_file("f", &file);
    assert_eq!(h.core.counters().open_files, 1);
    let id = h.read(ino, fh, 0, 4096);
    let (first, request) = h.take_one_request();
    h.s3(first, Err(S3Error::service(503, S3ErrorCode::SlowDown)));
    h.advance_to_timer();
    let (second, _) = h.take_one_request();
    assert_eq!(h.core.counters().retries, 1);
    h.s3(second, get_reply(&file, range_of(&request), "v1"));
    h.data(id);
    let counters = h.core.counters();
    assert_eq!(counters.read_buffer_bytes, range_of(&request).len_bytes(), "the prefetched bytes are held");
    assert_eq!(counters.dirty_bytes, 0);
}

#[test]
fn retries_stop_after_the_configured_attempts_with_eio() {
    let mut h = Harness::new(CoreConfig { retry_max_attempts: 4, ..CoreConfig::default() });
    let file = content(5000);
    let (ino, fh) = h.open_file("f", &file);
    let id = h.read(ino, fh, 0, 100);
    for attempt in 1..=4 {
        let (s3_id, _) = h.take_one_request();
        h.s3(s3_id, Err(S3Error::service(500, S3ErrorCode::InternalError)));
        if attempt < 4 {
            assert!(h.take_reply(id).is_none());
            h.advance_to_timer();
        }
    }
    assert_eq!(h.reply(id), FuseReply::Error(Errno::EIO));
    assert!(h.core.poll_timeout().is_none());
}

#[test]
fn a_request_that_never_answers_is_cancelled_at_its_deadline_and_retried() {
    let mut h = Harness::new(CoreConfig { s3_request_timeout: Duration::from_secs(30), ..CoreConfig::default() });
    let file = content(5000);
    let (ino, fh) = h.open_file("f", &file);
    let id = h.read(ino, fh, 0, 5000);
    let (stalled, request) = h.take_one_request();
    assert_eq!(h.core.poll_timeout(), Some(h.now + Duration::from_secs(30)));
    h.advance(Duration::from_secs(30));
    assert_eq!(h.take_cancels(), vec![stalled]);
    h.advance_to_timer();
    let (retry, _) = h.take_one_request();
    h.s3(retry, get_reply(&file, range_of(&request), "v1"));
    assert_eq!(h.data(id), file);
}

#[test]
fn open_revalidates_expired_attributes_and_keeps_the_page_cache_of_an_unchanged_object() {
    let mut h = Harness::new(CoreConfig::default());
    let entry = h.lookup_file(Ino::ROOT, "f", meta(100, "v1"));
    let ino = entry.attr.ino;
    let first = h.open(ino);
    let fh = match h.reply(first) {
        FuseReply::Opened { fh, flags } => {
            assert!(!flags.keep_cache, "nothing cached at the first open");
            fh
        }
        other => panic!("{other:?}"),
    };
    h.fuse(FuseOp::Release { ino, fh });
    h.advance(Duration::from_secs(61));
    let second = h.open(ino);
    let (head, request) = h.take_one_request();
    assert_eq!(request, S3Request::HeadObject { key: "f".into() });
    h.s3(head, Ok(goofys_core::s3_types::S3Response::HeadObject(meta(100, "v1"))));
    match h.reply(second) {
        FuseReply::Opened { flags, .. } => {
            assert!(flags.keep_cache, "same ETag: the kernel may keep its pages")
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_interrupted_read_gets_eintr_and_exactly_one_reply() {
    let mut h = Harness::new(CoreConfig::default());
    let file = content(5000);
    let (ino, fh) = h.open_file("f", &file);
    let id = h.read(ino, fh, 0, 5000);
    let (s3_id, request) = h.take_one_request();
    h.input(Input::Interrupt { id });
    assert_eq!(h.reply(id), FuseReply::Error(Errno::EINTR));
    h.s3(s3_id, get_reply(&file, range_of(&request), "v1"));
    assert!(h.take_reply(id).is_none());
}

#[test]
fn shutdown_answers_everything_cancels_everything_and_is_done() {
    let mut h = Harness::new(CoreConfig::default());
    let file = content(5000);
    let (ino, fh) = h.open_file("f", &file);
    let read = h.read(ino, fh, 0, 5000);
    let lookup = h.lookup(Ino::ROOT, "other");
    let in_flight = h.take_requests().len();
    h.input(Input::Shutdown);
    assert_eq!(h.reply(read), FuseReply::Error(Errno::EIO));
    assert_eq!(h.reply(lookup), FuseReply::Error(Errno::EIO));
    assert_eq!(h.take_cancels().len(), in_flight);
    assert_eq!(h.outputs, vec![Output::Done]);
    assert!(!h.core.has_calls_in_progress());
}

/// Found by simulator seed 15: GET If-Match on a deleted object answers 404, which reached
/// the reader as ENOENT; the handle's version is gone, as for a replaced object.
#[test]
fn regression_a_read_of_a_deleted_object_is_estale() {
    let mut h = Harness::new(CoreConfig::default());
    let file = content(10_000);
    let (ino, fh) = h.open_file("f", &file);
    let id = h.read(ino, fh, 0, 4096);
    let (s3_id, _) = h.take_one_request();
    h.s3(s3_id, not_found());
    assert_eq!(h.reply(id), FuseReply::Error(Errno::ESTALE));
}

/// Found by simulator seed 472: a GET that failed, then was truncated and resumed, kept
/// counting its old failures, so the resumed request got fewer retries than configured.
#[test]
fn regression_a_resumed_get_gets_a_fresh_retry_budget() {
    let mut h =
        Harness::new(CoreConfig { retry_max_attempts: 3, prefetch_initial_window_bytes: 0, ..CoreConfig::default() });
    let file = content(10_000);
    let (ino, fh) = h.open_file("f", &file);
    let id = h.read(ino, fh, 0, 10_000);
    // Two failed attempts, then a body cut short: progress.
    for _ in 0..2 {
        let (s3_id, _) = h.take_one_request();
        h.s3(s3_id, Err(S3Error::Transport(TransportError::ConnectionReset)));
        h.advance_to_timer();
    }
    let (s3_id, _) = h.take_one_request();
    h.s3(s3_id, Err(S3Error::Transport(TransportError::Truncated { received: Body(file.slice(..100)) })));
    // The resumed request may fail twice more and still succeed on its third attempt.
    for _ in 0..2 {
        let (s3_id, _) = h.take_one_request();
        h.s3(s3_id, Err(S3Error::Transport(TransportError::ConnectionReset)));
        assert!(h.take_reply(id).is_none());
        h.advance_to_timer();
    }
    let (s3_id, request) = h.take_one_request();
    h.s3(s3_id, get_reply(&file, range_of(&request), "v1"));
    assert_eq!(h.data(id), file);
}

#[test]
fn a_streamed_body_answers_reads_before_the_whole_get_arrived() {
    let mut h = Harness::new(CoreConfig::default());
    let file = content((4 * MIB) as usize);
    let (ino, fh) = h.open_file("f", &file);
    let first = h.read(ino, fh, 0, 4096);
    let (s3_id, request) = h.take_one_request();
    let range = range_of(&request);
    assert!(range.len_bytes() >= 64 * KIB, "the first read asks for more than it needs");
    h.s3_chunk(s3_id, &file, 0, 16 * KIB, "v1");
    assert_eq!(h.data(first), file.slice(0..4096), "answered from the first chunk");
    let second = h.read(ino, fh, 4096, 8192);
    assert_eq!(h.data(second), file.slice(4096..12_288), "answered from what arrived, no new GET");
    let third = h.read(ino, fh, 12_288, 8192);
    assert!(h.take_reply(third).is_none(), "waits for the bytes it needs");
    h.s3_chunk(s3_id, &file, 16 * KIB, 40 * KIB, "v1");
    assert_eq!(h.data(third), file.slice(12_288..20_480), "a read across two chunks");
    h.s3_chunk(s3_id, &file, 40 * KIB, range.end, "v1");
    h.s3_streamed_end(s3_id, &file, range.end, "v1");
    let resent: Vec<_> = h.take_requests().into_iter().filter(|(id, _)| *id == s3_id).collect();
    assert!(resent.is_empty());
    let fourth = h.read(ino, fh, 20_480, 4096);
    assert_eq!(h.data(fourth), file.slice(20_480..24_576));
    assert!(
        h.take_requests().iter().all(|(_, request)| range_of(request).start >= range.end),
        "nothing that arrived is asked for again"
    );
}

#[test]
fn a_streamed_body_cut_short_resumes_from_where_it_stopped() {
    let mut h = Harness::new(CoreConfig { prefetch_initial_window_bytes: 0, ..CoreConfig::default() });
    let file = content(100_000);
    let (ino, fh) = h.open_file("f", &file);
    let id = h.read(ino, fh, 0, 100_000);
    let (s3_id, _) = h.take_one_request();
    h.s3_chunk(s3_id, &file, 0, 30_000, "v1");
    h.s3(s3_id, Err(S3Error::Transport(TransportError::Truncated { received: Body::default() })));
    let (resumed_id, resumed) = h.take_one_request();
    assert_eq!((range_of(&resumed).start, range_of(&resumed).end), (30_000, 100_000), "resumed at once, from 30,000");
    h.s3_chunk(resumed_id, &file, 30_000, 70_000, "v1");
    h.s3(resumed_id, get_reply(&file, ByteRange::new(70_000, 100_000), "v1"));
    assert_eq!(h.data(id), file);
    assert_eq!(h.core.counters().resumed_bodies, 1);
}

#[test]
fn a_streamed_body_that_stops_coming_fails_the_read_with_eio_after_the_retries_never_wrong_bytes() {
    let config = CoreConfig { prefetch_initial_window_bytes: 0, retry_max_attempts: 3, ..CoreConfig::default() };
    let mut h = Harness::new(config);
    let file = content(100_000);
    let (ino, fh) = h.open_file("f", &file);
    let id = h.read(ino, fh, 0, 100_000);
    let (mut s3_id, _) = h.take_one_request();
    h.s3_chunk(s3_id, &file, 0, 10_000, "v1");
    // The deadline passes: the attempt is cancelled and resumed at once from where the body
    // stopped, with a fresh retry budget (it made progress).
    h.advance_to_timer();
    assert_eq!(h.take_cancels(), vec![s3_id]);
    let (resumed_id, resumed) = h.take_one_request();
    assert_eq!(range_of(&resumed).start, 10_000);
    // A late chunk of the abandoned attempt, even one holding other bytes, is ignored.
    let other = content(200_000).slice(50_000..150_000);
    h.s3_chunk(s3_id, &other, 10_000, 20_000, "v1");
    s3_id = resumed_id;
    for attempt in 1..=3 {
        if attempt > 1 {
            h.advance_to_timer();
            let (next_id, request) = h.take_one_request();
            assert_eq!(range_of(&request).start, 10_000, "attempt {attempt} asks only for what is missing");
            s3_id = next_id;
        }
        h.s3(s3_id, Err(S3Error::Transport(TransportError::Truncated { received: Body::default() })));
    }
    assert_eq!(h.reply(id), FuseReply::Error(Errno::EIO));
    let again = h.read(ino, fh, 0, 10_000);
    assert_eq!(h.data(again), file.slice(0..10_000), "what did arrive is still right");
}

#[test]
fn a_streamed_chunk_of_another_version_fails_reads_with_estale() {
    let mut h = Harness::new(CoreConfig::default());
    let file = content(10_000);
    let (ino, fh) = h.open_file("f", &file);
    let id = h.read(ino, fh, 0, 4096);
    let (s3_id, _) = h.take_one_request();
    h.s3_chunk(s3_id, &file, 0, 5000, "v2");
    assert_eq!(h.reply(id), FuseReply::Error(Errno::ESTALE));
}
