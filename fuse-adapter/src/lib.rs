//! # goofys-fuse: the mount
//!
//! Connects the kernel (through fuser) and S3 (through `goofys-s3`) to the pure core:
//! [`adapter`] turns kernel requests into the core's inputs, [`driver`] runs the core on
//! tokio and carries out its outputs, [`mount`] mounts, serves and unmounts.

pub mod adapter;
pub mod driver;
pub mod mount;
