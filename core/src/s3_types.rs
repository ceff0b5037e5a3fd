//! The S3 requests the core emits and the typed results it accepts.
//!
//! These are the contract between the core and whatever executes S3 requests: the real
//! transport (`goofys-s3`) and the simulator's in-memory model (`goofys-sim`). Every type is a
//! closed, cloneable, comparable value, so the same request can be retried, recorded in a
//! trace and compared in tests. Bodies are reference-counted [`Bytes`] and never copied.
//!
//! Keys are full bucket keys (the mount prefix included). The bucket itself is configuration of
//! the executor, not part of a request.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Deref;

use bytes::Bytes;

use crate::time::UnixNanos;

/// An entity tag, without the surrounding double quotes that HTTP puts on the wire.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ETag(String);

impl ETag {
    /// Builds an ETag from a header or XML value, stripping the quotes if present.
    pub fn new(value: impl AsRef<str>) -> Self {
        let value = value.as_ref().trim();
        let unquoted = value.strip_prefix('"').and_then(|rest| rest.strip_suffix('"')).unwrap_or(value);
        ETag(unquoted.to_owned())
    }

    /// The tag without quotes.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The tag as it goes on the wire: in double quotes.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Debug for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// An object body or a part of one. Its `Debug` shows the length, never the bytes, so traces
/// stay small and a body cannot leak into a log.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Body(pub Bytes);

impl Body {
    pub fn len_bytes(&self) -> u64 {
        self.0.len() as u64
    }
}

impl Deref for Body {
    type Target = Bytes;

    fn deref(&self) -> &Bytes {
        &self.0
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        Body(bytes)
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Body(Bytes::from(bytes))
    }
}

impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Self {
        Body(Bytes::from_static(bytes))
    }
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

/// The body of a PUT or UploadPart: one or more chunks sent back to back, so a part built from
/// a file's written extents goes out as the extents' own bytes instead of a copy of them. Equal
/// when the bytes are, however they are chunked; `Debug` shows the length only, as [`Body`].
#[derive(Clone, Default)]
pub struct RequestBody {
    chunks: Vec<Bytes>,
    len_bytes: u64,
}

impl RequestBody {
    /// The chunks in order; empty ones are left out.
    pub fn from_chunks(chunks: impl IntoIterator<Item = Bytes>) -> Self {
        let chunks: Vec<Bytes> = chunks.into_iter().filter(|chunk| !chunk.is_empty()).collect();
        let len_bytes = chunks.iter().map(|chunk| chunk.len() as u64).sum();
        RequestBody { chunks, len_bytes }
    }

    pub fn chunks(&self) -> &[Bytes] {
        &self.chunks
    }

    pub fn into_chunks(self) -> Vec<Bytes> {
        self.chunks
    }

    pub fn len_bytes(&self) -> u64 {
        self.len_bytes
    }

    /// The bytes in one piece: the chunk itself when there is one, else a copy (for the
    /// simulator and tests; the transport sends the chunks as they are).
    pub fn to_bytes(&self) -> Bytes {
        match self.chunks.as_slice() {
            [] => Bytes::new(),
            [one] => one.clone(),
            many => Bytes::from(many.concat()),
        }
    }
}

impl PartialEq for RequestBody {
    fn eq(&self, other: &Self) -> bool {
        self.len_bytes == other.len_bytes
            && self.chunks.iter().flat_map(|chunk| chunk.iter()).eq(other.chunks.iter().flat_map(|chunk| chunk.iter()))
    }
}

impl Eq for RequestBody {}

impl From<Bytes> for RequestBody {
    fn from(bytes: Bytes) -> Self {
        RequestBody::from_chunks([bytes])
    }
}

impl From<Body> for RequestBody {
    fn from(body: Body) -> Self {
        RequestBody::from(body.0)
    }
}

impl From<Vec<u8>> for RequestBody {
    fn from(bytes: Vec<u8>) -> Self {
        RequestBody::from(Bytes::from(bytes))
    }
}

impl From<&'static [u8]> for RequestBody {
    fn from(bytes: &'static [u8]) -> Self {
        RequestBody::from(Bytes::from_static(bytes))
    }
}

impl fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<{} bytes>", self.len_bytes)
    }
}

/// A half-open byte range `[start, end)`. On the wire it is `Range: bytes=start-(end-1)`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// A range of `len` bytes from `start`. `len` must be at least 1: HTTP cannot ask for none.
    pub fn new(start: u64, end: u64) -> Self {
        assert!(start < end, "empty or inverted byte range {start}..{end}");
        ByteRange { start, end }
    }

    pub fn len_bytes(&self) -> u64 {
        self.end - self.start
    }
}

impl fmt::Debug for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// User metadata (`x-amz-meta-*`), names lower-case and without the prefix.
pub type Metadata = BTreeMap<String, String>;

/// An upload id returned by CreateMultipartUpload.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct UploadId(pub String);

/// One part named in CompleteMultipartUpload.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct CompletedPart {
    pub part_number: u32,
    pub etag: ETag,
}

/// What CopyObject does with the metadata of the source.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum MetadataDirective {
    /// Keep the source's content type and user metadata.
    Copy,
    /// Replace them with these.
    Replace { content_type: Option<String>, metadata: Metadata },
}

/// Every S3 request the core can emit.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum S3Request {
    /// ListObjectsV2. `max_keys` is at most 1000 on real servers.
    ListObjectsV2 {
        prefix: String,
        delimiter: Option<String>,
        continuation_token: Option<String>,
        start_after: Option<String>,
        max_keys: u32,
    },
    HeadObject {
        key: String,
    },
    GetObject {
        key: String,
        range: Option<ByteRange>,
        if_match: Option<ETag>,
    },
    PutObject {
        key: String,
        body: RequestBody,
        content_type: Option<String>,
        metadata: Metadata,
        /// Overwrite only if the current object has this ETag.
        if_match: Option<ETag>,
        /// Create only if no object exists (`If-None-Match: *`).
        if_none_match_any: bool,
    },
    CreateMultipartUpload {
        key: String,
        content_type: Option<String>,
        metadata: Metadata,
    },
    UploadPart {
        key: String,
        upload_id: UploadId,
        part_number: u32,
        body: RequestBody,
    },
    UploadPartCopy {
        key: String,
        upload_id: UploadId,
        part_number: u32,
        source_key: String,
        source_range: Option<ByteRange>,
        source_if_match: Option<ETag>,
    },
    CompleteMultipartUpload {
        key: String,
        upload_id: UploadId,
        parts: Vec<CompletedPart>,
    },
    AbortMultipartUpload {
        key: String,
        upload_id: UploadId,
    },
    CopyObject {
        source_key: String,
        key: String,
        metadata_directive: MetadataDirective,
        source_if_match: Option<ETag>,
    },
    DeleteObject {
        key: String,
    },
    /// Deletes up to 1000 keys in one request.
    DeleteObjects {
        keys: Vec<String>,
    },
    /// Multipart uploads in progress whose keys start with `prefix` (one page, up to 1000).
    ListMultipartUploads {
        prefix: String,
    },
}

impl S3Request {
    /// The operation's name, as S3 documents it. Used in logs and metrics.
    pub fn operation_name(&self) -> &'static str {
        match self {
            S3Request::ListObjectsV2 { .. } => "ListObjectsV2",
            S3Request::HeadObject { .. } => "HeadObject",
            S3Request::GetObject { .. } => "GetObject",
            S3Request::PutObject { .. } => "PutObject",
            S3Request::CreateMultipartUpload { .. } => "CreateMultipartUpload",
            S3Request::UploadPart { .. } => "UploadPart",
            S3Request::UploadPartCopy { .. } => "UploadPartCopy",
            S3Request::CompleteMultipartUpload { .. } => "CompleteMultipartUpload",
            S3Request::AbortMultipartUpload { .. } => "AbortMultipartUpload",
            S3Request::CopyObject { .. } => "CopyObject",
            S3Request::DeleteObject { .. } => "DeleteObject",
            S3Request::DeleteObjects { .. } => "DeleteObjects",
            S3Request::ListMultipartUploads { .. } => "ListMultipartUploads",
        }
    }
}

/// One object in a listing page.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ObjectSummary {
    pub key: String,
    pub size_bytes: u64,
    pub etag: ETag,
    pub last_modified: UnixNanos,
}

/// One page of ListObjectsV2.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub struct ListPage {
    /// Objects directly matched, in UTF-8 byte order of their keys.
    pub objects: Vec<ObjectSummary>,
    /// Common prefixes (each ends with the delimiter), in UTF-8 byte order.
    pub common_prefixes: Vec<String>,
    /// Present when more pages follow.
    pub next_continuation_token: Option<String>,
}

/// What HeadObject reports (and GetObject, for the whole object).
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ObjectMeta {
    pub size_bytes: u64,
    pub etag: ETag,
    pub last_modified: UnixNanos,
    pub content_type: Option<String>,
    pub metadata: Metadata,
    /// `x-amz-storage-class` (S3 omits it for STANDARD).
    pub storage_class: Option<String>,
}

/// The result of GetObject.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct GetObjectOutput {
    /// The object's total size and identity (for a ranged GET, from Content-Range).
    pub meta: ObjectMeta,
    /// Offset in the object of the first byte of `body`.
    pub range_start: u64,
    pub body: Body,
}

/// A multipart upload in progress.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct MultipartUploadSummary {
    pub key: String,
    pub upload_id: UploadId,
}

/// A key DeleteObjects could not delete.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct DeleteFailure {
    pub key: String,
    pub code: S3ErrorCode,
    pub message: String,
}

/// A successful result, one variant per request kind.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum S3Response {
    ListObjectsV2(ListPage),
    HeadObject(ObjectMeta),
    GetObject(GetObjectOutput),
    PutObject { etag: ETag },
    CreateMultipartUpload { upload_id: UploadId },
    UploadPart { etag: ETag },
    UploadPartCopy { etag: ETag },
    CompleteMultipartUpload { etag: ETag },
    AbortMultipartUpload,
    CopyObject { etag: ETag },
    DeleteObject,
    DeleteObjects { failed: Vec<DeleteFailure> },
    ListMultipartUploads { uploads: Vec<MultipartUploadSummary> },
}

/// S3's error codes that the core distinguishes. Anything else is kept as `Other`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub enum S3ErrorCode {
    NoSuchKey,
    NoSuchBucket,
    NoSuchUpload,
    AccessDenied,
    InvalidAccessKeyId,
    SignatureDoesNotMatch,
    ExpiredToken,
    PreconditionFailed,
    NotModified,
    InvalidRange,
    SlowDown,
    InternalError,
    ServiceUnavailable,
    RequestTimeout,
    EntityTooSmall,
    EntityTooLarge,
    InvalidPart,
    InvalidPartOrder,
    InvalidRequest,
    PermanentRedirect,
    Other(String),
}

impl S3ErrorCode {
    /// Parses the `<Code>` of an S3 error body.
    pub fn from_code(code: &str) -> Self {
        match code {
            "NoSuchKey" => S3ErrorCode::NoSuchKey,
            "NoSuchBucket" => S3ErrorCode::NoSuchBucket,
            "NoSuchUpload" => S3ErrorCode::NoSuchUpload,
            "AccessDenied" => S3ErrorCode::AccessDenied,
            "InvalidAccessKeyId" => S3ErrorCode::InvalidAccessKeyId,
            "SignatureDoesNotMatch" => S3ErrorCode::SignatureDoesNotMatch,
            "ExpiredToken" | "TokenRefreshRequired" => S3ErrorCode::ExpiredToken,
            "PreconditionFailed" => S3ErrorCode::PreconditionFailed,
            "NotModified" => S3ErrorCode::NotModified,
            "InvalidRange" => S3ErrorCode::InvalidRange,
            "SlowDown" | "Throttling" | "ThrottlingException" | "RequestLimitExceeded" | "TooManyRequests" => {
                S3ErrorCode::SlowDown
            }
            "InternalError" => S3ErrorCode::InternalError,
            "ServiceUnavailable" => S3ErrorCode::ServiceUnavailable,
            "RequestTimeout" => S3ErrorCode::RequestTimeout,
            "EntityTooSmall" => S3ErrorCode::EntityTooSmall,
            "EntityTooLarge" => S3ErrorCode::EntityTooLarge,
            "InvalidPart" => S3ErrorCode::InvalidPart,
            "InvalidPartOrder" => S3ErrorCode::InvalidPartOrder,
            "InvalidRequest" => S3ErrorCode::InvalidRequest,
            "PermanentRedirect" => S3ErrorCode::PermanentRedirect,
            other => S3ErrorCode::Other(other.to_owned()),
        }
    }

    /// The code as S3 spells it.
    pub fn as_str(&self) -> &str {
        match self {
            S3ErrorCode::NoSuchKey => "NoSuchKey",
            S3ErrorCode::NoSuchBucket => "NoSuchBucket",
            S3ErrorCode::NoSuchUpload => "NoSuchUpload",
            S3ErrorCode::AccessDenied => "AccessDenied",
            S3ErrorCode::InvalidAccessKeyId => "InvalidAccessKeyId",
            S3ErrorCode::SignatureDoesNotMatch => "SignatureDoesNotMatch",
            S3ErrorCode::ExpiredToken => "ExpiredToken",
            S3ErrorCode::PreconditionFailed => "PreconditionFailed",
            S3ErrorCode::NotModified => "NotModified",
            S3ErrorCode::InvalidRange => "InvalidRange",
            S3ErrorCode::SlowDown => "SlowDown",
            S3ErrorCode::InternalError => "InternalError",
            S3ErrorCode::ServiceUnavailable => "ServiceUnavailable",
            S3ErrorCode::RequestTimeout => "RequestTimeout",
            S3ErrorCode::EntityTooSmall => "EntityTooSmall",
            S3ErrorCode::EntityTooLarge => "EntityTooLarge",
            S3ErrorCode::InvalidPart => "InvalidPart",
            S3ErrorCode::InvalidPartOrder => "InvalidPartOrder",
            S3ErrorCode::InvalidRequest => "InvalidRequest",
            S3ErrorCode::PermanentRedirect => "PermanentRedirect",
            S3ErrorCode::Other(code) => code,
        }
    }
}

/// An error reply from the S3 service.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct ServiceError {
    /// HTTP status.
    pub status: u16,
    pub code: S3ErrorCode,
    pub message: String,
    pub request_id: Option<String>,
}

/// A failure below the S3 protocol: the request may or may not have reached the server.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum TransportError {
    /// No complete reply within the time allowed.
    Timeout,
    /// The connection was reset or closed early.
    ConnectionReset,
    /// The reply's body ended before its declared length; `received` is what arrived.
    Truncated { received: Body },
    /// Could not connect (refused, unreachable, DNS).
    Connect(String),
    /// TLS handshake or certificate failure.
    Tls(String),
    /// Anything else, already rendered to text at the transport's edge.
    Other(String),
}

/// Why an S3 request failed.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum S3Error {
    Service(ServiceError),
    Transport(TransportError),
}

impl S3Error {
    /// A service error with no message or request id, as tests and the simulator build them.
    pub fn service(status: u16, code: S3ErrorCode) -> Self {
        S3Error::Service(ServiceError { status, code, message: String::new(), request_id: None })
    }
}

impl fmt::Display for S3Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            S3Error::Service(e) => {
                write!(f, "S3 error {} {}", e.status, e.code.as_str())?;
                if !e.message.is_empty() {
                    write!(f, ": {}", e.message)?;
                }
                if let Some(id) = &e.request_id {
                    write!(f, " (request id {id})")?;
                }
                Ok(())
            }
            S3Error::Transport(TransportError::Timeout) => write!(f, "S3 request timed out"),
            S3Error::Transport(TransportError::ConnectionReset) => write!(f, "connection reset"),
            S3Error::Transport(TransportError::Truncated { received }) => {
                write!(f, "reply body truncated after {} bytes", received.len())
            }
            S3Error::Transport(TransportError::Connect(why)) => write!(f, "cannot connect: {why}"),
            S3Error::Transport(TransportError::Tls(why)) => write!(f, "TLS failure: {why}"),
            S3Error::Transport(TransportError::Other(why)) => write!(f, "transport failure: {why}"),
        }
    }
}

/// The result of one S3 request.
pub type S3Result = Result<S3Response, S3Error>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_are_stored_without_quotes_and_sent_with_them() {
        let tag = ETag::new("\"abc-2\"");
        assert_eq!(tag.as_str(), "abc-2");
        assert_eq!(tag.quoted(), "\"abc-2\"");
        assert_eq!(ETag::new("abc"), ETag::new("\"abc\""));
    }

    #[test]
    fn body_debug_shows_length_not_content() {
        let body = Body::from(b"secret".as_slice());
        assert_eq!(format!("{body:?}"), "<6 bytes>");
    }

    #[test]
    fn error_codes_round_trip_and_throttling_codes_become_slowdown() {
        for code in ["NoSuchKey", "AccessDenied", "PreconditionFailed", "InvalidRange", "EntityTooSmall"] {
            assert_eq!(S3ErrorCode::from_code(code).as_str(), code);
        }
        assert_eq!(S3ErrorCode::from_code("Throttling"), S3ErrorCode::SlowDown);
        assert_eq!(S3ErrorCode::from_code("Odd"), S3ErrorCode::Other("Odd".into()));
    }
}
