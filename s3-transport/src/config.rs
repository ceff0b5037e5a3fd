//! What the transport needs to know that is not in a request: which bucket, where it is, who we
//! are, how new objects are stored, and how long to wait.
//!
//! The CLI (another crate) fills a [`TransportConfig`] from goofys' options. Every field that
//! holds a secret has a `Debug` that prints its length or a placeholder, never the value, so a
//! config can be logged whole.

use std::fmt;
use std::path::PathBuf;

use aws_credential_types::Credentials;
use aws_credential_types::provider::SharedCredentialsProvider;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use md5::{Digest as _, Md5};

/// How the bucket appears in request URLs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum AddressingStyle {
    /// `https://endpoint/bucket/key`: the default for `--endpoint`.
    Path,
    /// `https://bucket.endpoint/key`: the default for AWS, and `--subdomain` for other endpoints.
    VirtualHosted,
}

/// Where credentials come from.
#[derive(Clone, Debug)]
pub enum CredentialSource {
    /// The standard AWS chain: environment variables, `~/.aws/credentials` and `~/.aws/config`
    /// (with `profile`, including SSO, `credential_process` and assume-role profiles), web
    /// identity, ECS container credentials and EC2 IMDSv2. When the chain finds nothing at all,
    /// requests go unsigned, as goofys does, so public buckets mount without configuration.
    DefaultChain {
        /// `--profile`; `None` uses `AWS_PROFILE` or `default`.
        profile: Option<String>,
    },
    /// Fixed keys given by the caller. `Credentials`' `Debug` redacts the secret.
    Static(Credentials),
    /// Any provider, refreshed through the same cache as the chain.
    Provider(SharedCredentialsProvider),
    /// `--no-sign-request`: every request goes unsigned.
    Anonymous,
}

/// A 256-bit SSE-C key. Its `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct SseCustomerKey {
    key: [u8; 32],
}

impl SseCustomerKey {
    /// Wraps raw key bytes; they must be exactly 32 bytes (AES-256).
    pub fn from_bytes(key: &[u8]) -> Result<Self, SseKeyError> {
        let key: [u8; 32] = key.try_into().map_err(|_| SseKeyError::WrongLength { length_bytes: key.len() })?;
        Ok(SseCustomerKey { key })
    }

    /// Reads a key as goofys' `--sse-c` takes it: 32 raw bytes, or their base64 (44 characters),
    /// surrounding whitespace ignored. Used for a key from a file, an environment variable or the
    /// command line alike (the CLI warns in the last case).
    pub fn parse(text: &[u8]) -> Result<Self, SseKeyError> {
        let trimmed = text.trim_ascii();
        if trimmed.len() == 32 {
            return Self::from_bytes(trimmed);
        }
        let decoded = BASE64.decode(trimmed).map_err(|_| SseKeyError::NotBase64)?;
        Self::from_bytes(&decoded)
    }

    /// The key in base64, as the `x-amz-server-side-encryption-customer-key` header carries it.
    pub(crate) fn base64_key(&self) -> String {
        BASE64.encode(self.key)
    }

    /// The base64 of the key's MD5, as `...-customer-key-MD5` carries it.
    pub(crate) fn base64_key_md5(&self) -> String {
        BASE64.encode(Md5::digest(self.key))
    }
}

impl fmt::Debug for SseCustomerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SseCustomerKey(** redacted **)")
    }
}

/// Why an SSE-C key was refused.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum SseKeyError {
    #[error("an SSE-C key must be 32 bytes (AES-256), this one has {length_bytes}")]
    WrongLength { length_bytes: usize },
    #[error("an SSE-C key must be 32 raw bytes or their base64 encoding")]
    NotBase64,
}

/// Server-side encryption of the objects the transport writes.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub enum ServerSideEncryption {
    /// Whatever the bucket's default is.
    #[default]
    BucketDefault,
    /// `--sse`: SSE-S3 (`AES256`).
    S3Managed,
    /// `--sse-kms [key-id]`: SSE-KMS with the given key, or the account's default KMS key.
    Kms { key_id: Option<String> },
    /// `--sse-c`: a key the caller holds. It is sent with every read and write of an object,
    /// including the source of copies.
    CustomerKey(SseCustomerKey),
}

/// Everything the transport needs besides the requests themselves.
///
/// Build it with struct-update syntax: `TransportConfig { bucket: "b".into(), ..Default::default() }`.
#[derive(Clone, Debug)]
pub struct TransportConfig {
    /// The bucket every request goes to. Keys in requests are relative to it.
    pub bucket: String,
    /// `--endpoint`: the base URL of an S3-compatible service, such as `http://127.0.0.1:8333`.
    /// `None` means AWS S3 at `https://s3.<region>.amazonaws.com`.
    pub endpoint: Option<String>,
    /// `--region`. `None` means: detect the bucket's region from the `x-amz-bucket-region`
    /// header of the first reply that names it (a 301 from AWS does), starting from `us-east-1`.
    pub region: Option<String>,
    /// `None` picks virtual-hosted addressing for AWS and path-style for other endpoints;
    /// `--subdomain` sets `VirtualHosted`. Buckets whose names cannot be a host name label (dots
    /// over HTTPS, upper case, underscores) always use path-style.
    pub addressing: Option<AddressingStyle>,
    /// Where credentials come from.
    pub credentials: CredentialSource,
    /// Encryption of new objects (and the SSE-C key for reading them).
    pub encryption: ServerSideEncryption,
    /// `--storage-class`, such as `STANDARD_IA`, for new objects.
    pub storage_class: Option<String>,
    /// `--acl`: a canned ACL such as `private` or `bucket-owner-full-control` for new objects.
    pub canned_acl: Option<String>,
    /// `--requester-pays`: acknowledge that the requester pays for requests and transfer.
    pub requester_pays: bool,
    /// `--expected-bucket-owner`: the account id that must own the bucket, or the request fails.
    pub expected_bucket_owner: Option<String>,
    /// `--use-content-type`: when a write names no Content-Type, derive it from the key's file
    /// extension (`.html` → `text/html`).
    pub use_content_type: bool,
    /// `--ca-bundle`: a PEM file of CA certificates trusted in addition to the system's roots.
    pub ca_bundle: Option<PathBuf>,
    /// Time allowed to open a TCP connection (TLS handshake included in `request_timeout_ms`).
    pub connect_timeout_ms: u64,
    /// `--http-timeout`: time allowed for one request from sending to the last byte of the
    /// reply body.
    pub request_timeout_ms: u64,
    /// How long an unused connection stays in the pool.
    pub idle_connection_timeout_ms: u64,
    /// How many idle connections the pool keeps per host; sized for the prefetcher's parallel
    /// ranged GETs plus concurrent multipart uploads.
    pub idle_connections_max_per_host: usize,
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            bucket: String::new(),
            endpoint: None,
            region: None,
            addressing: None,
            credentials: CredentialSource::DefaultChain { profile: None },
            encryption: ServerSideEncryption::default(),
            storage_class: None,
            canned_acl: None,
            requester_pays: false,
            expected_bucket_owner: None,
            use_content_type: false,
            ca_bundle: None,
            connect_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
            idle_connection_timeout_ms: 60_000,
            idle_connections_max_per_host: 128,
        }
    }
}

impl TransportConfig {
    /// The SSE-C key, if objects are encrypted with one.
    pub(crate) fn customer_key(&self) -> Option<&SseCustomerKey> {
        match &self.encryption {
            ServerSideEncryption::CustomerKey(key) => Some(key),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_c_keys_are_32_raw_bytes_or_their_base64() {
        let raw = [7u8; 32];
        let from_raw = SseCustomerKey::parse(&raw).unwrap();
        let from_base64 = SseCustomerKey::parse(format!(" {}\n", BASE64.encode(raw)).as_bytes()).unwrap();
        assert_eq!(from_raw, from_base64);
        assert_eq!(SseCustomerKey::parse(b"short"), Err(SseKeyError::NotBase64));
        assert_eq!(
            SseCustomerKey::parse(BASE64.encode([1u8; 16]).as_bytes()),
            Err(SseKeyError::WrongLength { length_bytes: 16 })
        );
        // The MD5 header is the MD5 of the raw key, not of its base64.
        assert_eq!(from_raw.base64_key_md5(), BASE64.encode(Md5::digest(raw)));
    }
}
