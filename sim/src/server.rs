//! An S3 HTTP server in front of the in-memory model, for trying goofys-rs without a cloud account.
//!
//! `goofys-rs demo` and the HTTP tests need a real S3 endpoint on 127.0.0.1: real HTTP, real
//! SigV4, real XML, and the same semantics the simulator checks the core against. This module
//! serves one fixed bucket, backed by an [`S3Model`] behind a mutex, through the `s3s` crate
//! (which parses requests, verifies signatures and writes replies). Every object operation is
//! turned into one [`S3Request`] and applied to the model; the model's errors become S3 error
//! replies with the same status and code. Other buckets get `NoSuchBucket`; operations the model
//! does not have (ListObjects v1, versioning, ACLs, ...) get s3s's `NotImplemented`, and so do
//! request headers the model cannot honour, never a silent success.
//!
//! This is the IO edge: wall time for the model comes from the system clock here, while
//! [`S3Model::apply`] itself still takes `now` as an argument. Conditions the model's requests do
//! not carry (If-None-Match, If-Modified-Since and If-Unmodified-Since on GET and HEAD, If-Match
//! on HEAD) are evaluated here, under the same lock as the read, so they see the same object.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use goofys_core::UnixNanos;
use goofys_core::s3_types::{
    ByteRange, CompletedPart, ETag, Metadata, MetadataDirective, ObjectMeta, S3Error, S3Request, S3Response,
};
use hyper_util::rt::TokioIo;
use md5::{Digest, Md5};
use s3s::auth::{S3Auth, SecretKey};
use s3s::dto;
use s3s::service::{S3Service, S3ServiceBuilder};
use s3s::{S3ErrorCode as HttpErrorCode, s3_error};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

use crate::s3_model::{MAX_KEYS_PER_DELETE, S3Model, check_if_match};

/// The largest body one PutObject or UploadPart may carry (AWS: 5 GiB).
const MAX_UPLOAD_BODY_BYTES: usize = 5 * 1024 * 1024 * 1024;

/// The content type S3 reports for an object stored without one.
const DEFAULT_CONTENT_TYPE: &str = "binary/octet-stream";

/// Serves `bucket` from `model` on `listener` until an accept error that is not transient.
/// Requests must be signed (SigV4) with `access_key` and `secret_key`.
pub async fn serve(
    listener: TcpListener,
    bucket: &str,
    access_key: &str,
    secret_key: &str,
    model: Arc<Mutex<S3Model>>,
) -> anyhow::Result<()> {
    serve_until(listener, bucket, access_key, secret_key, model, std::future::pending()).await
}

/// Like [`serve`], but stops accepting and closes every connection when `shutdown` completes.
pub async fn serve_until(
    listener: TcpListener,
    bucket: &str,
    access_key: &str,
    secret_key: &str,
    model: Arc<Mutex<S3Model>>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let service = build_service(bucket, access_key, secret_key, model);
    let mut shutdown = std::pin::pin!(shutdown);
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(error) => {
                        // Running out of file descriptors or a connection aborted before it was
                        // accepted: wait a little rather than spin, then go on.
                        tracing::warn!(%error, "cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let service = service.clone();
                connections.spawn(async move {
                    let connection = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service);
                    if let Err(error) = connection.await {
                        tracing::debug!(%error, "connection ended with an error");
                    }
                });
            }
            Some(_finished) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    connections.shutdown().await;
    Ok(())
}

/// A server running in a tokio task, stopped by [`ServerHandle::shutdown`].
#[derive(Debug)]
pub struct ServerHandle {
    local_addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl ServerHandle {
    /// Starts serving `bucket` on `listener` in a new task of the current tokio runtime.
    pub fn spawn(
        listener: TcpListener,
        bucket: &str,
        access_key: &str,
        secret_key: &str,
        model: Arc<Mutex<S3Model>>,
    ) -> anyhow::Result<ServerHandle> {
        let local_addr = listener.local_addr().context("the listener has no local address")?;
        let (stop, stopped) = oneshot::channel::<()>();
        let (bucket, access_key, secret_key) = (bucket.to_owned(), access_key.to_owned(), secret_key.to_owned());
        let task = tokio::spawn(async move {
            let stopped = async {
                // A dropped handle stops the server too.
                let _ = stopped.await;
            };
            serve_until(listener, &bucket, &access_key, &secret_key, model, stopped).await
        });
        Ok(ServerHandle { local_addr, stop, task })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The endpoint to give an S3 client (path-style addressing).
    pub fn endpoint_url(&self) -> String {
        format!("http://{}", self.local_addr)
    }

    /// Stops accepting, closes the connections and waits for the server task.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        self.task.await.context("the server task panicked")?
    }
}

fn build_service(bucket: &str, access_key: &str, secret_key: &str, model: Arc<Mutex<S3Model>>) -> S3Service {
    let bucket = ModelBucket { bucket: bucket.to_owned(), model, created: SystemTime::now() };
    let mut builder = S3ServiceBuilder::new(bucket);
    builder.set_auth(SingleKeyAuth { access_key: access_key.to_owned(), secret_key: SecretKey::from(secret_key) });
    builder.build()
}

/// One access key. Unlike s3s's `SimpleAuth` (`NotSignedUp`), an unknown key gets AWS's
/// `InvalidAccessKeyId`, which the core maps on its own.
struct SingleKeyAuth {
    access_key: String,
    secret_key: SecretKey,
}

#[async_trait::async_trait]
impl S3Auth for SingleKeyAuth {
    async fn get_secret_key(&self, access_key: &str) -> s3s::S3Result<SecretKey> {
        if access_key == self.access_key {
            Ok(self.secret_key.clone())
        } else {
            Err(s3_error!(InvalidAccessKeyId, "The AWS Access Key Id you provided does not exist in our records."))
        }
    }
}

/// The s3s implementation: one bucket, backed by the model.
#[derive(Debug, Clone)]
struct ModelBucket {
    bucket: String,
    model: Arc<Mutex<S3Model>>,
    created: SystemTime,
}

type HttpResult<T> = s3s::S3Result<s3s::S3Response<T>>;

impl ModelBucket {
    fn check_bucket(&self, bucket: &str) -> s3s::S3Result<()> {
        if bucket == self.bucket {
            Ok(())
        } else {
            Err(s3_error!(NoSuchBucket, "This server only serves the bucket {}", self.bucket))
        }
    }

    fn lock(&self) -> MutexGuard<'_, S3Model> {
        // A panic in another request cannot leave the model half-updated: `apply` only commits
        // a change as its last step.
        self.model.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn apply(&self, request: &S3Request) -> s3s::S3Result<S3Response> {
        apply(&mut self.lock(), request)
    }

    /// HEAD and GET: evaluates every condition and the range against one state of the object.
    fn read_object(&self, read: ObjectRead) -> s3s::S3Result<ObjectReadOutput> {
        let mut model = self.lock();
        let head = S3Request::HeadObject { key: read.key.clone() };
        let S3Response::HeadObject(meta) = apply(&mut model, &head)? else {
            return Err(unexpected_response("HeadObject"));
        };
        evaluate_read_conditions(&read, &meta)?;
        let range = read.range.map(|range| byte_range(&range, meta.size_bytes)).transpose()?;
        let get =
            S3Request::GetObject { key: read.key, range, if_match: read.if_match.as_ref().map(etag_of_condition) };
        let S3Response::GetObject(output) = apply(&mut model, &get)? else {
            return Err(unexpected_response("GetObject"));
        };
        let content_range = range.map(|_| {
            let start = output.range_start;
            let last = start + output.body.len_bytes() - 1;
            format!("bytes {start}-{last}/{}", output.meta.size_bytes)
        });
        Ok(ObjectReadOutput { meta: output.meta, content_range, body: output.body.0 })
    }
}

/// What HEAD and GET ask for.
struct ObjectRead {
    key: String,
    range: Option<dto::Range>,
    if_match: Option<dto::ETagCondition>,
    if_none_match: Option<dto::ETagCondition>,
    if_modified_since: Option<dto::Timestamp>,
    if_unmodified_since: Option<dto::Timestamp>,
}

/// An [`ObjectRead`] from a HeadObjectInput or a GetObjectInput, which have the same fields but
/// no common type. Refuses what the model cannot read (parts, versions).
macro_rules! object_read {
    ($input:expr) => {{
        let input = $input;
        refuse_if_present(&input.part_number, "partNumber")?;
        refuse_if_present(&input.version_id, "versionId")?;
        ObjectRead {
            key: input.key,
            range: input.range,
            if_match: input.if_match,
            if_none_match: input.if_none_match,
            if_modified_since: input.if_modified_since,
            if_unmodified_since: input.if_unmodified_since,
        }
    }};
}

/// A HeadObjectOutput or GetObjectOutput from an [`ObjectReadOutput`], plus extra fields.
macro_rules! object_output {
    ($output:ident { $read:ident $(, $field:ident: $value:expr)* $(,)? }) => {
        dto::$output {
            accept_ranges: Some("bytes".into()),
            content_length: i64::try_from($read.body.len()).ok(),
            content_range: $read.content_range.clone(),
            content_type: Some(
                $read
                    .meta
                    .content_type
                    .clone()
                    .unwrap_or_else(|| DEFAULT_CONTENT_TYPE.into()),
            ),
            e_tag: Some(http_etag(&$read.meta.etag)),
            last_modified: Some(timestamp($read.meta.last_modified)),
            metadata: http_metadata($read.meta.metadata.clone()),
            $($field: $value,)*
            ..Default::default()
        }
    };
}

struct ObjectReadOutput {
    meta: ObjectMeta,
    /// `Content-Range` for a ranged read.
    content_range: Option<String>,
    body: Bytes,
}

fn apply(model: &mut S3Model, request: &S3Request) -> s3s::S3Result<S3Response> {
    model.apply(wall_clock_now(), request).map_err(to_http_error)
}

/// RFC 9110 §13.2.2: If-Match, else If-Unmodified-Since (412); then If-None-Match, else
/// If-Modified-Since (304). HTTP dates have whole seconds, so times compare in seconds.
fn evaluate_read_conditions(read: &ObjectRead, meta: &ObjectMeta) -> s3s::S3Result<()> {
    let modified_secs = meta.last_modified.secs();
    match (&read.if_match, &read.if_unmodified_since) {
        (Some(condition), _) => {
            check_if_match(Some(&etag_of_condition(condition)), &meta.etag).map_err(to_http_error)?;
        }
        (None, Some(since)) if modified_secs > unix_secs(since) => {
            return Err(s3_error!(PreconditionFailed));
        }
        _ => {}
    }
    let not_modified = match (&read.if_none_match, &read.if_modified_since) {
        (Some(condition), _) => match condition {
            dto::ETagCondition::Any => true,
            dto::ETagCondition::ETag(etag) => etag.value() == meta.etag.as_str(),
        },
        (None, Some(since)) => modified_secs <= unix_secs(since),
        (None, None) => false,
    };
    if not_modified {
        return Err(s3_error!(NotModified));
    }
    Ok(())
}

fn unix_secs(timestamp: &dto::Timestamp) -> i64 {
    time::OffsetDateTime::from(timestamp.clone()).unix_timestamp()
}

/// The model's half-open range for an HTTP `Range`. Suffix ranges need the object's size.
fn byte_range(range: &dto::Range, size_bytes: u64) -> s3s::S3Result<ByteRange> {
    match *range {
        dto::Range::Int { first, last } => {
            // s3s's parser guarantees first <= last <= i64::MAX.
            let end = last.map_or(u64::MAX, |last| last + 1);
            Ok(ByteRange::new(first, end))
        }
        dto::Range::Suffix { length } => {
            if length == 0 || size_bytes == 0 {
                return Err(s3_error!(InvalidRange, "The requested range is not satisfiable"));
            }
            Ok(ByteRange::new(size_bytes - length.min(size_bytes), size_bytes))
        }
    }
}

/// A copy-source range: `bytes=first-last`, both ends given.
fn copy_source_range(header: &str) -> s3s::S3Result<ByteRange> {
    match dto::Range::parse(header) {
        Ok(dto::Range::Int { first, last: Some(last) }) => Ok(ByteRange::new(first, last + 1)),
        _ => Err(s3_error!(InvalidArgument, "The x-amz-copy-source-range value must be of the form bytes=first-last")),
    }
}

fn etag_of_condition(condition: &dto::ETagCondition) -> ETag {
    match condition {
        dto::ETagCondition::Any => ETag::new("*"),
        dto::ETagCondition::ETag(etag) => ETag::new(etag.value()),
    }
}

fn http_etag(etag: &ETag) -> dto::ETag {
    dto::ETag::Strong(etag.as_str().to_owned())
}

fn timestamp(time: UnixNanos) -> dto::Timestamp {
    let nanos = i128::from(time.0);
    time::OffsetDateTime::from_unix_timestamp_nanos(nanos).unwrap_or(time::OffsetDateTime::UNIX_EPOCH).into()
}

fn wall_clock_now() -> UnixNanos {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    UnixNanos(i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX))
}

/// User metadata as the model keeps it: names in lower case.
fn model_metadata(metadata: Option<dto::Metadata>) -> Metadata {
    metadata.unwrap_or_default().into_iter().map(|(name, value)| (name.to_ascii_lowercase(), value)).collect()
}

fn http_metadata(metadata: Metadata) -> Option<dto::Metadata> {
    (!metadata.is_empty()).then(|| metadata.into_iter().collect::<HashMap<_, _>>())
}

fn part_number(part_number: i32) -> s3s::S3Result<u32> {
    u32::try_from(part_number).map_err(|_| s3_error!(InvalidArgument, "Part number must be a positive integer"))
}

/// A request header the model cannot honour: refuse rather than ignore it.
fn refuse_if_present<T>(value: &Option<T>, header: &str) -> s3s::S3Result<()> {
    match value {
        Some(_) => Err(s3_error!(
            NotImplemented,
            "A header you provided implies functionality that is not implemented: {}",
            header
        )),
        None => Ok(()),
    }
}

/// The copy-source conditions the model's requests do not carry (it has only If-Match).
fn refuse_copy_source_conditions(
    if_none_match: &Option<dto::ETagCondition>,
    if_modified_since: &Option<dto::Timestamp>,
    if_unmodified_since: &Option<dto::Timestamp>,
) -> s3s::S3Result<()> {
    refuse_if_present(if_none_match, "x-amz-copy-source-if-none-match")?;
    refuse_if_present(if_modified_since, "x-amz-copy-source-if-modified-since")?;
    refuse_if_present(if_unmodified_since, "x-amz-copy-source-if-unmodified-since")
}

async fn collect_body(body: Option<dto::StreamingBlob>, content_md5: Option<&str>) -> s3s::S3Result<Bytes> {
    let Some(body) = body else {
        return Ok(Bytes::new());
    };
    let mut body = s3s::Body::from(body);
    let bytes = body.store_all_limited(MAX_UPLOAD_BODY_BYTES).await.map_err(|error| {
        s3_error!(EntityTooLarge, "Your proposed upload exceeds the maximum allowed object size: {}", error)
    })?;
    if let Some(expected) = content_md5 {
        let actual = base64_encode(&Md5::digest(&bytes));
        if actual != expected.trim() {
            return Err(s3_error!(BadDigest, "The Content-MD5 you specified did not match what we received."));
        }
    }
    Ok(bytes)
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let triple = chunk.iter().enumerate().fold(0u32, |acc, (at, byte)| acc | u32::from(*byte) << (16 - 8 * at));
        for position in 0..4 {
            if position <= chunk.len() {
                let index = (triple >> (18 - 6 * position)) & 0x3f;
                out.push(char::from(ALPHABET[index as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A copy source in this bucket, as `(key)`; other buckets do not exist here.
fn copy_source_key(bucket: &ModelBucket, source: &dto::CopySource) -> s3s::S3Result<String> {
    match source {
        dto::CopySource::Bucket { bucket: source_bucket, key, version_id } => {
            bucket.check_bucket(source_bucket)?;
            refuse_if_present(version_id, "x-amz-copy-source versionId")?;
            Ok(key.to_string())
        }
        _ => Err(s3_error!(NotImplemented, "Only bucket/key copy sources are supported")),
    }
}

/// ListObjectsV2 with `encoding-type=url` returns keys URL-encoded, and SDKs decode them.
fn url_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn to_http_error(error: S3Error) -> s3s::S3Error {
    match error {
        S3Error::Service(error) => {
            let code =
                HttpErrorCode::from_bytes(error.code.as_str().as_bytes()).unwrap_or(HttpErrorCode::InternalError);
            let mut http_error = s3s::S3Error::with_message(code, error.message);
            if let Ok(status) = http::StatusCode::from_u16(error.status) {
                http_error.set_status_code(status);
            }
            http_error
        }
        S3Error::Transport(error) => {
            s3_error!(InternalError, "{}", S3Error::Transport(error))
        }
    }
}

fn unexpected_response(operation: &str) -> s3s::S3Error {
    s3_error!(InternalError, "the model answered {} with another operation's response", operation)
}

#[async_trait::async_trait]
impl s3s::S3 for ModelBucket {
    async fn list_buckets(
        &self,
        _request: s3s::S3Request<dto::ListBucketsInput>,
    ) -> HttpResult<dto::ListBucketsOutput> {
        let bucket = dto::Bucket {
            name: Some(self.bucket.clone()),
            creation_date: Some(self.created.into()),
            bucket_region: None,
        };
        Ok(s3s::S3Response::new(dto::ListBucketsOutput { buckets: Some(vec![bucket]), ..Default::default() }))
    }

    async fn head_bucket(&self, request: s3s::S3Request<dto::HeadBucketInput>) -> HttpResult<dto::HeadBucketOutput> {
        self.check_bucket(&request.input.bucket)?;
        Ok(s3s::S3Response::new(dto::HeadBucketOutput::default()))
    }

    async fn create_bucket(
        &self,
        request: s3s::S3Request<dto::CreateBucketInput>,
    ) -> HttpResult<dto::CreateBucketOutput> {
        if request.input.bucket == self.bucket {
            // AWS in us-east-1 (the region this server signs for) answers a CreateBucket of a
            // bucket the caller already owns with 200; elsewhere it is 409.
            Ok(s3s::S3Response::new(dto::CreateBucketOutput { location: Some(format!("/{}", self.bucket)) }))
        } else {
            Err(s3_error!(
                NotImplemented,
                "This server serves only the bucket {} and cannot create others",
                self.bucket
            ))
        }
    }

    async fn get_bucket_location(
        &self,
        request: s3s::S3Request<dto::GetBucketLocationInput>,
    ) -> HttpResult<dto::GetBucketLocationOutput> {
        self.check_bucket(&request.input.bucket)?;
        Ok(s3s::S3Response::new(dto::GetBucketLocationOutput::default()))
    }

    async fn list_objects_v2(
        &self,
        request: s3s::S3Request<dto::ListObjectsV2Input>,
    ) -> HttpResult<dto::ListObjectsV2Output> {
        let input = request.input;
        self.check_bucket(&input.bucket)?;
        let max_keys = input.max_keys.unwrap_or(1000);
        let max_keys =
            u32::try_from(max_keys).map_err(|_| s3_error!(InvalidArgument, "max-keys must not be negative"))?;
        let url_encoded = match &input.encoding_type {
            None => false,
            Some(encoding) if encoding.as_str() == dto::EncodingType::URL => true,
            Some(_) => return Err(s3_error!(InvalidArgument, "Invalid Encoding Method")),
        };
        let encode = |value: String| {
            if url_encoded { url_encode(&value) } else { value }
        };
        let list = S3Request::ListObjectsV2 {
            prefix: input.prefix.clone().unwrap_or_default(),
            delimiter: input.delimiter.clone(),
            continuation_token: input.continuation_token.clone(),
            start_after: input.start_after.clone(),
            max_keys,
        };
        let S3Response::ListObjectsV2(page) = self.apply(&list)? else {
            return Err(unexpected_response("ListObjectsV2"));
        };
        let key_count = page.objects.len() + page.common_prefixes.len();
        let contents = page
            .objects
            .into_iter()
            .map(|object| dto::Object {
                key: Some(encode(object.key)),
                size: i64::try_from(object.size_bytes).ok(),
                e_tag: Some(http_etag(&object.etag)),
                last_modified: Some(timestamp(object.last_modified)),
                storage_class: Some(dto::ObjectStorageClass::from_static(dto::ObjectStorageClass::STANDARD)),
                ..Default::default()
            })
            .collect();
        let common_prefixes =
            page.common_prefixes.into_iter().map(|prefix| dto::CommonPrefix { prefix: Some(encode(prefix)) }).collect();
        Ok(s3s::S3Response::new(dto::ListObjectsV2Output {
            name: Some(input.bucket),
            prefix: Some(encode(input.prefix.unwrap_or_default())),
            delimiter: input.delimiter.map(encode),
            start_after: input.start_after.map(encode),
            max_keys: Some(i32::try_from(max_keys).unwrap_or(i32::MAX)),
            key_count: Some(i32::try_from(key_count).unwrap_or(i32::MAX)),
            continuation_token: input.continuation_token,
            is_truncated: Some(page.next_continuation_token.is_some()),
            next_continuation_token: page.next_continuation_token,
            contents: Some(contents),
            common_prefixes: Some(common_prefixes),
            encoding_type: input.encoding_type,
            ..Default::default()
        }))
    }

    async fn head_object(&self, request: s3s::S3Request<dto::HeadObjectInput>) -> HttpResult<dto::HeadObjectOutput> {
        self.check_bucket(&request.input.bucket)?;
        let read = self.read_object(object_read!(request.input))?;
        let partial = read.content_range.is_some();
        let mut response = s3s::S3Response::new(object_output!(HeadObjectOutput { read }));
        if partial {
            response.status = Some(http::StatusCode::PARTIAL_CONTENT);
        }
        Ok(response)
    }

    async fn get_object(&self, request: s3s::S3Request<dto::GetObjectInput>) -> HttpResult<dto::GetObjectOutput> {
        self.check_bucket(&request.input.bucket)?;
        let read = self.read_object(object_read!(request.input))?;
        let body = dto::StreamingBlob::from(s3s::Body::from(read.body.clone()));
        Ok(s3s::S3Response::new(object_output!(GetObjectOutput { read, body: Some(body) })))
    }

    async fn put_object(&self, request: s3s::S3Request<dto::PutObjectInput>) -> HttpResult<dto::PutObjectOutput> {
        let input = request.input;
        self.check_bucket(&input.bucket)?;
        refuse_if_present(&input.write_offset_bytes, "x-amz-write-offset-bytes")?;
        let if_none_match_any = match &input.if_none_match {
            None => false,
            Some(dto::ETagCondition::Any) => true,
            Some(dto::ETagCondition::ETag(_)) => {
                return Err(s3_error!(NotImplemented, "If-None-Match on PutObject supports only *"));
            }
        };
        let body = collect_body(input.body, input.content_md5.as_deref()).await?;
        let put = S3Request::PutObject {
            key: input.key,
            body: body.into(),
            content_type: input.content_type,
            metadata: model_metadata(input.metadata),
            if_match: input.if_match.as_ref().map(etag_of_condition),
            if_none_match_any,
        };
        let S3Response::PutObject { etag } = self.apply(&put)? else {
            return Err(unexpected_response("PutObject"));
        };
        Ok(s3s::S3Response::new(dto::PutObjectOutput { e_tag: Some(http_etag(&etag)), ..Default::default() }))
    }

    async fn create_multipart_upload(
        &self,
        request: s3s::S3Request<dto::CreateMultipartUploadInput>,
    ) -> HttpResult<dto::CreateMultipartUploadOutput> {
        let input = request.input;
        self.check_bucket(&input.bucket)?;
        let create = S3Request::CreateMultipartUpload {
            key: input.key.clone(),
            content_type: input.content_type,
            metadata: model_metadata(input.metadata),
        };
        let S3Response::CreateMultipartUpload { upload_id } = self.apply(&create)? else {
            return Err(unexpected_response("CreateMultipartUpload"));
        };
        Ok(s3s::S3Response::new(dto::CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(upload_id.0),
            ..Default::default()
        }))
    }

    async fn upload_part(&self, request: s3s::S3Request<dto::UploadPartInput>) -> HttpResult<dto::UploadPartOutput> {
        let input = request.input;
        self.check_bucket(&input.bucket)?;
        let body = collect_body(input.body, input.content_md5.as_deref()).await?;
        let upload = S3Request::UploadPart {
            key: input.key,
            upload_id: goofys_core::s3_types::UploadId(input.upload_id),
            part_number: part_number(input.part_number)?,
            body: body.into(),
        };
        let S3Response::UploadPart { etag } = self.apply(&upload)? else {
            return Err(unexpected_response("UploadPart"));
        };
        Ok(s3s::S3Response::new(dto::UploadPartOutput { e_tag: Some(http_etag(&etag)), ..Default::default() }))
    }

    async fn upload_part_copy(
        &self,
        request: s3s::S3Request<dto::UploadPartCopyInput>,
    ) -> HttpResult<dto::UploadPartCopyOutput> {
        let input = request.input;
        self.check_bucket(&input.bucket)?;
        refuse_copy_source_conditions(
            &input.copy_source_if_none_match,
            &input.copy_source_if_modified_since,
            &input.copy_source_if_unmodified_since,
        )?;
        let copy = S3Request::UploadPartCopy {
            key: input.key,
            upload_id: goofys_core::s3_types::UploadId(input.upload_id),
            part_number: part_number(input.part_number)?,
            source_key: copy_source_key(self, &input.copy_source)?,
            source_range: input.copy_source_range.as_deref().map(copy_source_range).transpose()?,
            source_if_match: input.copy_source_if_match.as_ref().map(etag_of_condition),
        };
        let S3Response::UploadPartCopy { etag } = self.apply(&copy)? else {
            return Err(unexpected_response("UploadPartCopy"));
        };
        Ok(s3s::S3Response::new(dto::UploadPartCopyOutput {
            copy_part_result: Some(dto::CopyPartResult {
                e_tag: Some(http_etag(&etag)),
                last_modified: Some(timestamp(wall_clock_now())),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn complete_multipart_upload(
        &self,
        request: s3s::S3Request<dto::CompleteMultipartUploadInput>,
    ) -> HttpResult<dto::CompleteMultipartUploadOutput> {
        let input = request.input;
        self.check_bucket(&input.bucket)?;
        refuse_if_present(&input.if_match, "If-Match")?;
        refuse_if_present(&input.if_none_match, "If-None-Match")?;
        let parts = input
            .multipart_upload
            .and_then(|upload| upload.parts)
            .unwrap_or_default()
            .into_iter()
            .map(|part| match (part.part_number, part.e_tag) {
                (Some(number), Some(etag)) => {
                    Ok(CompletedPart { part_number: part_number(number)?, etag: ETag::new(etag.value()) })
                }
                _ => Err(s3_error!(MalformedXML, "Every part needs a PartNumber and an ETag")),
            })
            .collect::<s3s::S3Result<Vec<_>>>()?;
        let complete = S3Request::CompleteMultipartUpload {
            key: input.key.clone(),
            upload_id: goofys_core::s3_types::UploadId(input.upload_id),
            parts,
        };
        let S3Response::CompleteMultipartUpload { etag } = self.apply(&complete)? else {
            return Err(unexpected_response("CompleteMultipartUpload"));
        };
        Ok(s3s::S3Response::new(dto::CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(http_etag(&etag)),
            ..Default::default()
        }))
    }

    async fn abort_multipart_upload(
        &self,
        request: s3s::S3Request<dto::AbortMultipartUploadInput>,
    ) -> HttpResult<dto::AbortMultipartUploadOutput> {
        let input = request.input;
        self.check_bucket(&input.bucket)?;
        refuse_if_present(&input.if_match_initiated_time, "x-amz-if-match-initiated-time")?;
        let abort = S3Request::AbortMultipartUpload {
            key: input.key,
            upload_id: goofys_core::s3_types::UploadId(input.upload_id),
        };
        self.apply(&abort)?;
        Ok(s3s::S3Response::new(dto::AbortMultipartUploadOutput::default()))
    }

    async fn copy_object(&self, request: s3s::S3Request<dto::CopyObjectInput>) -> HttpResult<dto::CopyObjectOutput> {
        let input = request.input;
        self.check_bucket(&input.bucket)?;
        refuse_copy_source_conditions(
            &input.copy_source_if_none_match,
            &input.copy_source_if_modified_since,
            &input.copy_source_if_unmodified_since,
        )?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|directive| directive.as_str() == dto::MetadataDirective::REPLACE);
        let metadata_directive = if replace {
            MetadataDirective::Replace { content_type: input.content_type, metadata: model_metadata(input.metadata) }
        } else {
            MetadataDirective::Copy
        };
        let copy = S3Request::CopyObject {
            source_key: copy_source_key(self, &input.copy_source)?,
            key: input.key.clone(),
            metadata_directive,
            source_if_match: input.copy_source_if_match.as_ref().map(etag_of_condition),
        };
        // The copy's own Last-Modified, read under the same lock that wrote it.
        let (response, last_modified) = {
            let mut model = self.lock();
            let response = apply(&mut model, &copy)?;
            let last_modified = model.object(&input.key).map(|copy| copy.last_modified);
            (response, last_modified)
        };
        let S3Response::CopyObject { etag } = response else {
            return Err(unexpected_response("CopyObject"));
        };
        Ok(s3s::S3Response::new(dto::CopyObjectOutput {
            copy_object_result: Some(dto::CopyObjectResult {
                e_tag: Some(http_etag(&etag)),
                last_modified: last_modified.map(timestamp),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        request: s3s::S3Request<dto::DeleteObjectInput>,
    ) -> HttpResult<dto::DeleteObjectOutput> {
        let input = request.input;
        self.check_bucket(&input.bucket)?;
        refuse_if_present(&input.if_match, "If-Match")?;
        refuse_if_present(&input.version_id, "versionId")?;
        self.apply(&S3Request::DeleteObject { key: input.key })?;
        Ok(s3s::S3Response::new(dto::DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        request: s3s::S3Request<dto::DeleteObjectsInput>,
    ) -> HttpResult<dto::DeleteObjectsOutput> {
        let input = request.input;
        self.check_bucket(&input.bucket)?;
        let objects = input.delete.objects;
        if objects.len() > MAX_KEYS_PER_DELETE {
            return Err(s3_error!(MalformedXML, "DeleteObjects takes at most {} keys", MAX_KEYS_PER_DELETE));
        }
        for object in &objects {
            refuse_if_present(&object.version_id, "VersionId")?;
        }
        let keys: Vec<String> = objects.into_iter().map(|object| object.key).collect();
        let delete = S3Request::DeleteObjects { keys: keys.clone() };
        let S3Response::DeleteObjects { failed } = self.apply(&delete)? else {
            return Err(unexpected_response("DeleteObjects"));
        };
        let quiet = input.delete.quiet.unwrap_or(false);
        let deleted = keys
            .into_iter()
            .filter(|key| !failed.iter().any(|failure| &failure.key == key))
            .map(|key| dto::DeletedObject { key: Some(key), ..Default::default() })
            .collect();
        let errors = failed
            .into_iter()
            .map(|failure| dto::Error {
                code: Some(failure.code.as_str().to_owned()),
                key: Some(failure.key),
                message: Some(failure.message),
                ..Default::default()
            })
            .collect();
        Ok(s3s::S3Response::new(dto::DeleteObjectsOutput {
            deleted: (!quiet).then_some(deleted),
            errors: Some(errors),
            ..Default::default()
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_encoding_matches_rfc_4648_vectors() {
        let vectors: [(&[u8], &str); 5] =
            [(b"", ""), (b"f", "Zg=="), (b"fo", "Zm8="), (b"foo", "Zm9v"), (b"foobar", "Zm9vYmFy")];
        for (input, expected) in vectors {
            assert_eq!(base64_encode(input), expected);
        }
    }

    #[test]
    fn url_encoding_keeps_slashes_and_unreserved_characters() {
        assert_eq!(url_encode("a b+c/é~_.-"), "a%20b%2Bc/%C3%A9~_.-");
    }

    #[test]
    fn suffix_ranges_count_from_the_end_and_empty_ones_are_unsatisfiable() {
        let suffix = |length| dto::Range::Suffix { length };
        assert_eq!(byte_range(&suffix(5), 10).ok(), Some(ByteRange::new(5, 10)));
        assert_eq!(byte_range(&suffix(50), 10).ok(), Some(ByteRange::new(0, 10)));
        assert!(byte_range(&suffix(0), 10).is_err());
        assert!(byte_range(&suffix(5), 0).is_err());
    }
}
