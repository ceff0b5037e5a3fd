//! Integration tests of goofys-rs, and the harness they share: real servers started on
//! 127.0.0.1 for the duration of a test binary ([`seaweedfs`]), a fault-injecting proxy in front
//! of them ([`fault_proxy`]), in-process FUSE mounts ([`mount`]), the `goofys-rs` binary and its
//! mountpoints ([`binary`]), direct bucket access by another S3 client ([`bucket`]), and what
//! tests that use files need ([`files`]).

pub mod binary;
pub mod bucket;
pub mod fault_proxy;
pub mod files;
pub mod mount;
pub mod plan_ops;
pub mod seaweedfs;
