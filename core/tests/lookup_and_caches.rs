//! Lookup, getattr and the three caches, driven by hand-written S3 answers.

mod harness;

use std::time::Duration;

use goofys_core::fuse_types::{FileKind, FuseOp, FuseReply};
use goofys_core::s3_types::{S3Error, S3ErrorCode, S3Request, S3Response};
use goofys_core::{CoreConfig, Errno, Ino, Output};
use harness::*;

#[test]
fn lookup_asks_head_and_a_one_key_listing_together() {
    let mut h = Harness::new(CoreConfig::default());
    h.lookup(Ino::ROOT, "name");
    let requests: Vec<S3Request> = h.take_requests().into_iter().map(|(_, r)| r).collect();
    assert_eq!(
        requests,
        vec![
            S3Request::HeadObject { key: "name".into() },
            S3Request::ListObjectsV2 {
                prefix: "name/".into(),
                delimiter: Some("/".into()),
                continuation_token: None,
                start_after: None,
                max_keys: 1
            },
        ]
    );
}

#[test]
fn a_directory_answers_at_once_and_wins_over_a_file_of_the_same_name() {
    let mut h = Harness::new(CoreConfig::default());
    let id = h.lookup(Ino::ROOT, "both");
    let requests = h.take_requests();
    let (list_id, _) = requests.iter().find(|(_, r)| matches!(r, S3Request::ListObjectsV2 { .. })).unwrap().clone();
    let (head_id, _) = requests.iter().find(|(_, r)| matches!(r, S3Request::HeadObject { .. })).unwrap().clone();
    h.s3(list_id, Ok(list_page(&[("both/x", 1)], &[], None)));
    let entry = h.entry(id);
    assert_eq!(entry.attr.kind, FileKind::Directory);
    assert_eq!(h.take_cancels(), vec![head_id], "the HEAD is no longer needed");
    // Its late answer is ignored.
    h.s3(head_id, Ok(S3Response::HeadObject(meta(3, "e"))));
    assert!(h.outputs.is_empty(), "{:?}", h.outputs);
}

#[test]
fn a_file_is_known_once_the_directory_probe_finds_nothing() {
    let mut h = Harness::new(CoreConfig::default());
    let entry = h.lookup_file(Ino::ROOT, "f", meta(1234, "e1"));
    assert_eq!(entry.attr.kind, FileKind::File);
    assert_eq!(entry.attr.size_bytes, 1234);
    assert_eq!(entry.attr.perm, 0o644);
    assert_eq!(entry.attr.blocks, 3);
    assert_eq!(entry.entry_ttl, Duration::from_secs(60));
}

#[test]
fn a_missing_name_is_negatively_cached_until_its_ttl() {
    let config = CoreConfig { negative_cache_ttl: Duration::from_secs(5), ..CoreConfig::default() };
    let mut h = Harness::new(config);
    let id = h.lookup(Ino::ROOT, "nope");
    for (s3_id, request) in h.take_requests() {
        match request {
            S3Request::HeadObject { .. } => h.s3(s3_id, not_found()),
            _ => h.s3(s3_id, Ok(list_page(&[], &[], None))),
        }
    }
    assert_eq!(h.reply(id), FuseReply::Error(Errno::ENOENT));

    h.advance(Duration::from_secs(4));
    let again = h.lookup(Ino::ROOT, "nope");
    assert_eq!(h.reply(again), FuseReply::Error(Errno::ENOENT));
    assert!(h.take_requests().is_empty(), "answered from the negative cache");

    h.advance(Duration::from_secs(1));
    h.lookup(Ino::ROOT, "nope");
    assert_eq!(h.take_requests().len(), 2, "the negative entry expired at its deadline");
}

#[test]
fn cached_entries_need_no_s3_until_the_stat_ttl_and_zero_turns_caching_off() {
    let mut h = Harness::new(CoreConfig::default());
    let entry = h.lookup_file(Ino::ROOT, "f", meta(10, "e1"));
    h.advance(Duration::from_secs(59));
    let id = h.lookup(Ino::ROOT, "f");
    assert_eq!(h.entry(id).attr.ino, entry.attr.ino);
    assert!(h.take_requests().is_empty());
    let id = h.fuse(FuseOp::GetAttr { ino: entry.attr.ino, fh: None });
    assert_eq!(h.attr(id).size_bytes, 10);
    assert!(h.take_requests().is_empty());

    h.advance(Duration::from_secs(1));
    let id = h.fuse(FuseOp::GetAttr { ino: entry.attr.ino, fh: None });
    let (head, request) = h.take_one_request();
    assert_eq!(request, S3Request::HeadObject { key: "f".into() });
    h.s3(head, Ok(S3Response::HeadObject(meta(20, "e2"))));
    assert_eq!(h.attr(id).size_bytes, 20);
    assert!(
        h.outputs.contains(&Output::InvalidateInode { ino: entry.attr.ino }),
        "a new version drops the kernel's cached pages"
    );

    let mut uncached = Harness::new(CoreConfig {
        stat_cache_ttl: Duration::ZERO,
        type_cache_ttl: Duration::ZERO,
        negative_cache_ttl: Duration::ZERO,
        ..CoreConfig::default()
    });
    uncached.lookup_file(Ino::ROOT, "f", meta(10, "e1"));
    uncached.lookup(Ino::ROOT, "f");
    assert_eq!(uncached.take_requests().len(), 2, "with TTL 0 every lookup asks S3");
}

#[test]
fn names_that_cannot_be_keys_are_refused_without_asking_s3() {
    let mut h = Harness::new(CoreConfig::default());
    let long = h.lookup(Ino::ROOT, &"x".repeat(256));
    assert_eq!(h.reply(long), FuseReply::Error(Errno::ENAMETOOLONG));
    let dot = h.lookup(Ino::ROOT, "..");
    assert_eq!(h.reply(dot), FuseReply::Error(Errno::ENOENT));
    assert!(h.take_requests().is_empty());
}

#[test]
fn a_prefix_mount_looks_keys_up_under_its_prefix() {
    let mut h = Harness::new(CoreConfig::default().with_mount_prefix("data/2024"));
    h.lookup(Ino::ROOT, "f");
    let keys: Vec<S3Request> = h.take_requests().into_iter().map(|(_, r)| r).collect();
    assert_eq!(keys[0], S3Request::HeadObject { key: "data/2024/f".into() });
    assert!(matches!(&keys[1], S3Request::ListObjectsV2 { prefix, .. } if prefix == "data/2024/f/"));
}

#[test]
fn access_denied_is_not_retried_and_becomes_eacces() {
    let mut h = Harness::new(CoreConfig::default());
    let id = h.lookup(Ino::ROOT, "secret");
    for (s3_id, request) in h.take_requests() {
        match request {
            S3Request::HeadObject { .. } => h.s3(s3_id, Err(S3Error::service(403, S3ErrorCode::AccessDenied))),
            _ => h.s3(s3_id, Ok(list_page(&[], &[], None))),
        }
    }
    assert_eq!(h.reply(id), FuseReply::Error(Errno::EACCES));
    assert!(h.core.poll_timeout().is_none(), "no retry is scheduled");
}

#[test]
fn forget_drops_an_inode_once_the_kernel_and_caches_are_done_with_it() {
    let mut h = Harness::new(CoreConfig::default());
    let entry = h.lookup_file(Ino::ROOT, "f", meta(1, "e"));
    let before = h.core.inode_count();
    h.fuse(FuseOp::Forget { ino: entry.attr.ino, nlookup: 1 });
    assert!(h.outputs.is_empty(), "forget gets no reply");
    // Unreferenced but still named and fresh: kept for the next lookup until its TTL.
    assert_eq!(h.core.inode_count(), before);
    h.advance(Duration::from_secs(61));
    for _ in 0..1100 {
        h.advance(Duration::from_millis(1));
    }
    assert_eq!(h.core.inode_count(), before - 1, "swept after expiry");
}

/// Found by simulator seed 206: when the HEAD answered long before the directory probe, the
/// entry was cached from the probe's time, so attributes could outlive their TTL.
#[test]
fn regression_a_slow_lookup_caches_from_its_first_answer() {
    let config = CoreConfig {
        stat_cache_ttl: Duration::from_secs(5),
        type_cache_ttl: Duration::from_secs(5),
        ..CoreConfig::default()
    };
    let mut h = Harness::new(config);
    let id = h.lookup(Ino::ROOT, "f");
    let requests = h.take_requests();
    let (head_id, _) = requests.iter().find(|(_, r)| matches!(r, S3Request::HeadObject { .. })).unwrap().clone();
    let (list_id, _) = requests.iter().find(|(_, r)| matches!(r, S3Request::ListObjectsV2 { .. })).unwrap().clone();
    h.s3(head_id, Ok(S3Response::HeadObject(meta(3, "e1"))));
    h.advance(Duration::from_secs(4));
    h.s3(list_id, Ok(list_page(&[], &[], None)));
    h.entry(id);
    // Five seconds after the HEAD answered, the attributes have expired.
    h.advance(Duration::from_secs(1));
    h.lookup(Ino::ROOT, "f");
    assert_eq!(h.take_requests().len(), 2, "the cached entry expired five seconds after the HEAD");
}
