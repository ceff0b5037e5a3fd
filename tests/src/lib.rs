//! Integration tests of goofys-rs, and the harness they share: real servers started on
//! 127.0.0.1 for the duration of a test binary ([`seaweedfs`]), a fault-injecting proxy in front
//! of them ([`fault_proxy`], failing requests as a [`fault_schedule`] says), in-process FUSE
//! mounts ([`mount`]), the `goofys-rs` binary and its mountpoints ([`binary`]), direct bucket
//! access by another S3 client ([`bucket`]), a hand-made bucket for keys no real server stores
//! ([`listing_server`]), what tests that use files need ([`files`]), the soak's worker
//! ([`soak`]), and a fuzz runner for stable Rust ([`fuzz_runner`]).

pub mod binary;
pub mod bucket;
pub mod fault_proxy;
pub mod fault_schedule;
pub mod files;
pub mod fuzz_runner;
pub mod listing_server;
pub mod loopback_http;
pub mod mount;
pub mod plan_ops;
pub mod seaweedfs;
pub mod soak;
