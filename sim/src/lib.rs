//! # goofys-sim: the deterministic simulator
//!
//! Runs the production core (`goofys-core`) against an in-memory S3 with a real server's
//! semantics ([`s3_model`]), injected faults ([`faults`]), a kernel model whose processes turn
//! system calls into FUSE requests, another client changing the bucket, and a reference model
//! ([`history`]) that every reply is checked against ([`checker`]). One seed replays one run
//! exactly ([`vopr`]); proptest runs the same harness with scenarios and faults as data, so
//! failures shrink; the fuzzer feeds it bytes ([`fuzz`]).

pub mod checker;
pub mod faults;
pub mod fuzz;
pub mod history;
pub mod plan;
pub mod rng;
pub mod s3_model;
pub mod scenario;
#[cfg(feature = "server")]
pub mod server;
pub mod simulation;
pub mod trace;
pub mod vopr;
