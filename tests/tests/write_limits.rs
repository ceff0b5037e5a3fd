//! S3's limits on one object, against the S3 model: a multipart upload holds at most 10,000
//! parts, so the core's part sizes must grow fast enough for the largest file it accepts, and a
//! file that would need part 10,001 must fail at the write that needs it (EFBIG), not at close
//! with an upload the store refuses.
//!
//! The parts here are 1 byte and double every 1,000 parts (1, 2, 4 … 512 bytes), so 10,000
//! parts hold 1,023,000 bytes and the whole schedule runs in a second.

use bytes::Bytes;
use goofys_core::fuse_types::{FuseOp, FuseReply, OpenFlags};
use goofys_core::s3_types::Body;
use goofys_core::{CoreConfig, Errno, Ino};
use goofys_sim::plan::PlanDriver;
use goofys_sim::s3_model::{ModelLimits, S3Model};
use goofys_tests::plan_ops::{close, create, open, write};

const CHUNK_BYTES: usize = 64 * 1024;

/// The core writes parts of 1 byte, doubling every 1,000 parts; the model takes parts of any
/// size and at most 10,000 of them, as S3 does.
fn tiny_growing_parts() -> (PlanDriver, CoreConfig) {
    let model = S3Model::with_limits(ModelLimits { min_part_size_bytes: 1, ..ModelLimits::default() });
    let config = CoreConfig {
        write_part_size_bytes: 1,
        write_part_size_step_parts: 1000,
        multipart_min_part_size_bytes: 1,
        part_uploads_inflight_max: 64,
        ..CoreConfig::default()
    };
    assert_eq!(model.limits().max_parts, 10_000, "the model holds S3's part limit");
    (PlanDriver::with_model(config.clone(), model), config)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8).wrapping_mul(29).wrapping_add((i >> 13) as u8)).collect()
}

fn write_reply(driver: &mut PlanDriver, ino: Ino, fh: goofys_core::FileHandle, offset: u64, data: &[u8]) -> FuseReply {
    driver.run(FuseOp::Write { ino, fh, offset, data: Body(Bytes::copy_from_slice(data)) })
}

#[test]
fn a_file_of_exactly_ten_thousand_growing_parts_completes_and_one_byte_more_is_efbig_at_its_write() {
    let (mut driver, config) = tiny_growing_parts();
    let capacity = config.max_file_size_bytes();
    assert_eq!(capacity, 1_023_000, "10,000 parts of 1, 2, 4 … 512 bytes");
    let data = pattern(capacity as usize);
    let (ino, fh) = create(&mut driver, Ino::ROOT, "huge.bin");
    for (index, chunk) in data.chunks(CHUNK_BYTES).enumerate() {
        write(&mut driver, ino, fh, (index * CHUNK_BYTES) as u64, chunk);
    }
    // The byte after the 10,000th part would need part 10,001: refused at once, and the file
    // stays as it was.
    assert_eq!(write_reply(&mut driver, ino, fh, capacity, b"x"), FuseReply::Error(Errno::EFBIG));
    assert_eq!(write_reply(&mut driver, ino, fh, capacity - 1, b"yz"), FuseReply::Error(Errno::EFBIG));
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Empty, "the 10,000-part file commits");

    let stored = driver.model.object("huge.bin").expect("committed");
    assert!(stored.body == data, "the object holds every byte written");
    assert!(stored.etag.as_str().trim_matches('"').ends_with("-10000"), "etag {}", stored.etag.as_str());
    assert_eq!(driver.model.uploads_in_progress(), 0);
    let parts = driver.plan().matches("-> UploadPart {").count();
    assert_eq!(parts, 10_000, "one request per part, none past the limit");

    // Reopened, the file cannot grow past the limit either: not by a write, not by truncate.
    let fh = open(&mut driver, ino, OpenFlags::O_WRONLY);
    assert_eq!(write_reply(&mut driver, ino, fh, capacity, b"more"), FuseReply::Error(Errno::EFBIG));
    let grow = FuseOp::SetAttr {
        ino,
        fh: Some(fh),
        changes: goofys_core::fuse_types::SetAttrChanges { size_bytes: Some(capacity + 1), ..Default::default() },
    };
    assert_eq!(driver.run(grow), FuseReply::Error(Errno::EFBIG));
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Empty);
    assert!(driver.model.object("huge.bin").expect("still there").body == data, "the object is unchanged");
    assert_eq!(driver.model.uploads_in_progress(), 0, "no upload is left behind");
}

#[test]
fn without_the_growing_schedule_the_limit_is_ten_thousand_equal_parts() {
    // Parts that never grow: 10,000 of 8 bytes; the write that needs part 10,001 is refused
    // although it is far below max_object_size_bytes.
    let model = S3Model::with_limits(ModelLimits { min_part_size_bytes: 1, ..ModelLimits::default() });
    let config = CoreConfig {
        write_part_size_bytes: 8,
        write_part_size_step_parts: 20_000,
        multipart_min_part_size_bytes: 1,
        part_uploads_inflight_max: 64,
        ..CoreConfig::default()
    };
    assert_eq!(config.max_file_size_bytes(), 80_000);
    let mut driver = PlanDriver::with_model(config, model);
    let (ino, fh) = create(&mut driver, Ino::ROOT, "flat.bin");
    let data = pattern(80_000);
    write(&mut driver, ino, fh, 0, &data);
    assert_eq!(write_reply(&mut driver, ino, fh, 80_000, b"!"), FuseReply::Error(Errno::EFBIG));
    assert_eq!(close(&mut driver, ino, fh), FuseReply::Empty);
    let stored = driver.model.object("flat.bin").expect("committed");
    assert!(stored.body == data);
    assert!(stored.etag.as_str().trim_matches('"').ends_with("-10000"), "etag {}", stored.etag.as_str());
}
