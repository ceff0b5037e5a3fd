//! Integration tests of goofys-rs.
