//! The FUSE adapter and tokio driver of goofys-rs.
