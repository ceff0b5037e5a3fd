//! Integration tests of goofys-rs, and the harness they share: real servers started on
//! 127.0.0.1 for the duration of a test binary ([`seaweedfs`]).

pub mod mount;
pub mod seaweedfs;
