//! Fuzz target: arbitrary bytes as an S3 reply (request kind, status, headers, body) through
//! the transport's parsers; only a panic is a failure.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| goofys_s3::fuzz::parse_reply_input(data));
