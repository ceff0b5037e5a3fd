//! A deterministic simulator for goofys-core: an in-memory S3, fault injection and a reference model.

pub mod s3_model;
#[cfg(feature = "server")]
pub mod server;
