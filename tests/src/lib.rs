//! Integration tests of goofys-rs, and the harness they share: real servers started on
//! 127.0.0.1 for the duration of a test binary ([`seaweedfs`]), in-process mounts
//! ([`mount`]), the `goofys-rs` binary and its mountpoints ([`binary`]), and test objects
//! written by another S3 client ([`objects`]).

pub mod binary;
pub mod mount;
pub mod objects;
pub mod seaweedfs;
