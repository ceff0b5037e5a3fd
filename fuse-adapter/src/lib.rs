//! # goofys-fuse: the mount and the `goofys-rs` command
//!
//! Connects the kernel (through fuser) and S3 (through `goofys-s3`) to the pure core:
//! [`adapter`] turns kernel requests into the core's inputs, [`driver`] runs the core on
//! tokio and carries out its outputs, [`mount`] mounts, serves and unmounts.
//!
//! The command line: [`cli`] parses goofys' flags, [`mount_helper`] turns mount(8)'s and
//! fstab's forms into them, [`plan`] maps them onto the transport, core and mount
//! configurations, [`checks`] checks the host, [`daemon`] forks and reports readiness,
//! [`logging`] sets up tracing, [`run`] ties it together, and [`demo`] mounts an in-memory
//! bucket served over HTTP.

pub mod adapter;
pub mod checks;
pub mod cli;
pub mod daemon;
#[cfg(feature = "demo")]
pub mod demo;
pub mod driver;
pub mod logging;
pub mod metrics;
pub mod mount;
pub mod mount_helper;
pub mod plan;
pub mod run;
