//! Snapshots of the S3 request plans of hand-written scenarios: what the core asks S3, in
//! what order, and how it answers the kernel. A change to any of them shows up in review.

use bytes::Bytes;
use goofys_core::fuse_types::{FuseOp, FuseReply, OpenFlags};
use goofys_core::{CoreConfig, Ino};
use goofys_sim::faults::FaultKind;
use goofys_sim::plan::PlanDriver;

fn opened(reply: FuseReply) -> goofys_core::FileHandle {
    match reply {
        FuseReply::Opened { fh, .. } => fh,
        other => panic!("expected an open handle, got {other:?}"),
    }
}

fn ino_of(reply: FuseReply) -> Ino {
    match reply {
        FuseReply::Entry(entry) => entry.attr.ino,
        other => panic!("expected an entry, got {other:?}"),
    }
}

#[test]
fn listing_a_three_page_directory() {
    let mut driver = PlanDriver::new(CoreConfig { list_page_keys: 2, ..CoreConfig::default() });
    for name in ["d/a", "d/b", "d/c", "d/sub/x", "d/e"] {
        driver.put(name, Bytes::from_static(b"x"));
    }
    let dir = ino_of(driver.run(FuseOp::Lookup { parent: Ino::ROOT, name: "d".into() }));
    let fh = opened(driver.run(FuseOp::OpenDir { ino: dir }));
    let mut offset = 0;
    loop {
        let reply = driver.run(FuseOp::ReadDir { ino: dir, fh, offset, size_bytes: 4096, plus: false });
        let FuseReply::Dir(entries) = reply else { panic!("{reply:?}") };
        let Some(last) = entries.last() else { break };
        offset = last.next_offset;
    }
    driver.run(FuseOp::ReleaseDir { ino: dir, fh });
    insta::assert_snapshot!(driver.plan());
}

#[test]
fn a_slowdown_is_retried_with_backoff() {
    let mut driver = PlanDriver::new(CoreConfig::default());
    driver.put("f", Bytes::from_static(b"hello"));
    driver.inject([FaultKind::SlowDown, FaultKind::None, FaultKind::SlowDown]);
    let reply = driver.run(FuseOp::Lookup { parent: Ino::ROOT, name: "f".into() });
    assert!(matches!(reply, FuseReply::Entry(_)));
    insta::assert_snapshot!(driver.plan());
}

#[test]
fn a_truncated_get_resumes_at_the_next_offset() {
    let mut driver = PlanDriver::new(CoreConfig { prefetch_initial_window_bytes: 0, ..CoreConfig::default() });
    driver.put("big", Bytes::from(vec![7u8; 100_000]));
    let ino = ino_of(driver.run(FuseOp::Lookup { parent: Ino::ROOT, name: "big".into() }));
    let fh = opened(driver.run(FuseOp::Open { ino, flags: OpenFlags(OpenFlags::O_RDONLY) }));
    driver.inject([FaultKind::TruncateBody { per_million: 250_000 }, FaultKind::TruncateBody { per_million: 500_000 }]);
    let reply = driver.run(FuseOp::Read { ino, fh, offset: 0, size: 100_000 });
    assert_eq!(reply, FuseReply::Data(vec![7u8; 100_000].into()));
    insta::assert_snapshot!(driver.plan());
}
