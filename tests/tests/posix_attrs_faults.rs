//! Every POSIX metadata operation under random S3 faults (throttling, 500s, resets before and
//! after S3 applied the request, stalls past the deadline, cut bodies), against the
//! simulator's S3 model: with fewer faults than the retry budget, each operation succeeds and
//! the bucket holds exactly its effect, never a half-made one and never a duplicate.

use goofys_core::fuse_types::{FileKind, FuseOp, FuseReply, OpenFlags, SetAttrChanges, SetTime};
use goofys_core::{CoreConfig, Ino, UnixNanos};
use goofys_sim::faults::FaultKind;
use goofys_sim::plan::PlanDriver;
use goofys_tests::plan_ops::{ino_of, open};
use proptest::prelude::*;

fn fault() -> impl Strategy<Value = FaultKind> {
    prop_oneof![
        Just(FaultKind::None),
        Just(FaultKind::SlowDown),
        Just(FaultKind::InternalError),
        Just(FaultKind::ResetBeforeApply),
        Just(FaultKind::ResetAfterApply),
        Just(FaultKind::Stall),
        (1..1_000_000u32).prop_map(|per_million| FaultKind::TruncateBody { per_million }),
    ]
}

/// One operation and what the bucket must hold after it.
#[derive(Clone, Copy, Debug)]
enum Operation {
    Chmod,
    Chown,
    Utimes,
    ChmodDir,
    Symlink,
    SetXattr,
    RemoveXattr,
    Mknod,
    UnlinkWhileOpen,
}

fn operation() -> impl Strategy<Value = Operation> {
    prop_oneof![
        Just(Operation::Chmod),
        Just(Operation::Chown),
        Just(Operation::Utimes),
        Just(Operation::ChmodDir),
        Just(Operation::Symlink),
        Just(Operation::SetXattr),
        Just(Operation::RemoveXattr),
        Just(Operation::Mknod),
        Just(Operation::UnlinkWhileOpen),
    ]
}

fn setattr(driver: &mut PlanDriver, ino: Ino, changes: SetAttrChanges) -> FuseReply {
    driver.run(FuseOp::SetAttr { ino, fh: None, changes })
}

fn run(operation: Operation, faults: Vec<FaultKind>) -> Result<(), TestCaseError> {
    let mut driver = PlanDriver::new(CoreConfig::default());
    driver.put("d/f", &b"the bytes"[..]);
    let dir = ino_of(&mut driver, Ino::ROOT, "d");
    let file = ino_of(&mut driver, dir, "f");
    if let Operation::RemoveXattr = operation {
        let set = FuseOp::SetXattr { ino: file, name: "user.k".into(), value: b"v".to_vec(), flags: 0 };
        prop_assert_eq!(driver.run(set), FuseReply::Empty);
    }
    driver.inject(faults);
    let object = |driver: &PlanDriver, key: &str| driver.model.object(key).cloned();
    match operation {
        Operation::Chmod | Operation::Chown | Operation::Utimes => {
            let changes = match operation {
                Operation::Chmod => SetAttrChanges { mode: Some(0o600), ..SetAttrChanges::default() },
                Operation::Chown => SetAttrChanges { uid: Some(42), gid: Some(43), ..SetAttrChanges::default() },
                _ => SetAttrChanges {
                    mtime: Some(SetTime::At(UnixNanos::from_secs(1_234_567_890))),
                    ..SetAttrChanges::default()
                },
            };
            let reply = setattr(&mut driver, file, changes);
            prop_assert!(matches!(reply, FuseReply::Attr { .. }), "{:?}\n{}", reply, driver.plan());
            let stored = object(&driver, "d/f").expect("the file stays");
            prop_assert_eq!(&stored.body[..], b"the bytes");
            let (name, value) = match operation {
                Operation::Chmod => ("mode", "33152"),
                Operation::Chown => ("uid", "42"),
                _ => ("mtime", "1234567890"),
            };
            prop_assert_eq!(stored.metadata.get(name).map(String::as_str), Some(value));
        }
        Operation::ChmodDir => {
            let reply = setattr(&mut driver, dir, SetAttrChanges { mode: Some(0o700), ..SetAttrChanges::default() });
            prop_assert!(matches!(reply, FuseReply::Attr { .. }), "{:?}\n{}", reply, driver.plan());
            let marker = object(&driver, "d/").expect("a marker");
            prop_assert_eq!(marker.metadata.get("mode").map(String::as_str), Some("16832"));
        }
        Operation::Symlink => {
            let op = FuseOp::Symlink { parent: dir, name: "l".into(), target: "f".into(), uid: 0, gid: 0 };
            let reply = driver.run(op);
            let FuseReply::Entry(entry) = reply else { return Err(TestCaseError::fail(format!("{reply:?}"))) };
            prop_assert_eq!(entry.attr.kind, FileKind::Symlink);
            let stored = object(&driver, "d/l").expect("a link object");
            prop_assert_eq!(&stored.body[..], b"f");
            let readlink = driver.run(FuseOp::ReadLink { ino: entry.attr.ino });
            prop_assert_eq!(readlink, FuseReply::Data(b"f".to_vec().into()));
        }
        Operation::SetXattr => {
            let set = FuseOp::SetXattr { ino: file, name: "user.k".into(), value: b"v".to_vec(), flags: 0 };
            prop_assert_eq!(driver.run(set), FuseReply::Empty, "{}", driver.plan());
            let stored = object(&driver, "d/f").expect("the file stays");
            prop_assert_eq!(stored.metadata.get("k").map(String::as_str), Some("v"));
            prop_assert_eq!(&stored.body[..], b"the bytes");
        }
        Operation::RemoveXattr => {
            let remove = FuseOp::RemoveXattr { ino: file, name: "user.k".into() };
            prop_assert_eq!(driver.run(remove), FuseReply::Empty, "{}", driver.plan());
            prop_assert!(!object(&driver, "d/f").expect("the file stays").metadata.contains_key("k"));
        }
        Operation::Mknod => {
            let op = FuseOp::Mknod { parent: dir, name: "n".into(), mode: 0o100_600, uid: 0, gid: 0 };
            let reply = driver.run(op);
            prop_assert!(matches!(reply, FuseReply::Entry(_)), "{:?}\n{}", reply, driver.plan());
            let stored = object(&driver, "d/n").expect("an empty object");
            prop_assert!(stored.body.is_empty());
        }
        Operation::UnlinkWhileOpen => {
            let fh = open(&mut driver, file, OpenFlags::O_RDONLY);
            let unlink = FuseOp::Unlink { parent: dir, name: "f".into() };
            prop_assert_eq!(driver.run(unlink), FuseReply::Empty);
            let read = driver.run(FuseOp::Read { ino: file, fh, offset: 0, size: 64 });
            prop_assert_eq!(read, FuseReply::Data(b"the bytes".to_vec().into()), "{}", driver.plan());
            prop_assert_eq!(driver.run(FuseOp::Release { ino: file, fh }), FuseReply::Empty);
            driver.settle();
            prop_assert!(object(&driver, "d/f").is_none(), "{}", driver.plan());
        }
    }
    prop_assert_eq!(driver.model.uploads_in_progress(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn each_metadata_operation_survives_faults_below_the_retry_budget(
        operation in operation(),
        faults in proptest::collection::vec(fault(), 0..6),
    ) {
        run(operation, faults)?;
    }
}
