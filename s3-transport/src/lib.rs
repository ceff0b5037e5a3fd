//! # goofys-s3: the S3 transport of goofys-rs
//!
//! Turns the core's [`S3Request`](goofys_core::s3_types::S3Request)s into signed HTTP requests
//! and the replies back into typed [`S3Result`](goofys_core::s3_types::S3Result)s. It works
//! against AWS S3 and S3-compatible stores.
//!
//! The work is split into pure, separately tested halves and one IO shell:
//!
//! - [`build_request`]: request → unsigned `http::Request<Bytes>` (keys percent-encoded,
//!   conditions, metadata, encryption and storage options as headers);
//! - [`sign_request`]: SigV4 through `aws-sigv4`, the time passed in;
//! - [`parse_response`]: status, headers and body → `S3Result`, S3 error codes typed;
//! - [`S3Client`]: credentials ([`CredentialSource`]), the connection pool, timeouts, reading
//!   bodies with truncation detected, region learning and the mount-time
//!   [`check_bucket`](S3Client::check_bucket).
//!
//! The transport never retries; the core decides what to retry. Secrets (secret keys, session
//! tokens, SSE-C keys, signatures) never appear in `Debug`, `Display`, logs or errors.

pub mod client;
pub mod config;
pub mod connector;
pub mod credentials;
pub mod endpoint;
pub mod fuzz;
pub mod key_encoding;
pub mod request;
pub mod response;
pub mod signing;
pub mod xml;

#[cfg(test)]
mod test_support;

pub use client::{BodyChunkSink, BucketCheckError, ClientBuildError, S3Client};
pub use config::{
    AddressingStyle, CredentialSource, ServerSideEncryption, SseCustomerKey, SseKeyError, TransportConfig,
};
pub use endpoint::BucketEndpoint;
pub use request::{BuildError, build_request};
pub use response::parse_response;
pub use signing::{PayloadSigning, sign_request};
