//! [`S3Client`]: executes the core's S3 requests over HTTP(S), one attempt each.
//!
//! The pure halves ([`build_request`], [`sign_request`], [`parse_response`]) are joined here
//! with IO: credentials from the cache, the pooled connection, the request timeout, and reading
//! the reply body with a check that all of it arrived. A short body becomes
//! [`TransportError::Truncated`] carrying what did arrive. Nothing is retried: the core owns
//! retry policy, where it is deterministic and simulated.
//!
//! A ranged GET's body can be streamed instead of collected
//! ([`S3Client::execute_streaming`]): each frame is handed on as it comes off the wire, without a
//! copy, so the core answers reads before the last byte of a part arrived and no body is held
//! twice (frames and the collected buffer).
//!
//! The bucket's region is learnt from replies: when the configuration names none, the first
//! reply carrying `x-amz-bucket-region` (AWS sends it with the 301 of a wrong region) switches
//! the region for later requests. [`S3Client::check_bucket`] uses this at mount, and turns the
//! usual mount failures into a [`BucketCheckError`] whose message names the cause and the fix.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Bytes, BytesMut};
use goofys_core::s3_types::{
    Body, GetObjectOutput, RequestBody, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, ServiceError,
    TransportError,
};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tracing::Instrument as _;

use crate::config::TransportConfig;
use crate::connector::{ChunkedBody, ConnectorError, HttpClient, build_http_client};
use crate::credentials::{CredentialLoadError, Signer, error_chain};
use crate::endpoint::{BucketEndpoint, DEFAULT_REGION, EndpointError};
use crate::request::{BuildError, build_request};
use crate::response::{BUCKET_REGION_HEADER, get_head, parse_response};
use crate::signing::{PayloadSigning, sign_request};

/// Bodies larger than this are not preallocated in full from Content-Length: a lying or huge
/// header must not reserve gigabytes before any byte arrived.
const PREALLOCATE_MAX_BYTES: u64 = 256 * 1024 * 1024;

/// Why an [`S3Client`] could not be created.
#[derive(Debug, thiserror::Error)]
pub enum ClientBuildError {
    #[error(transparent)]
    Endpoint(#[from] EndpointError),
    #[error(transparent)]
    Connector(#[from] ConnectorError),
    #[error(transparent)]
    Credentials(#[from] CredentialLoadError),
}

/// Why the bucket cannot be mounted. Each message is one line that names the cause and the fix.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum BucketCheckError {
    #[error("bucket `{bucket}` does not exist at {url}: check the bucket name, --endpoint and --region")]
    NoSuchBucket { bucket: String, url: String },
    #[error(
        "access to bucket `{bucket}` denied ({code}): these credentials may not list it; check the bucket policy and IAM permissions, or choose other credentials with --profile"
    )]
    AccessDenied { bucket: String, code: String },
    #[error(
        "access to bucket `{bucket}` denied: no AWS credentials were found, so requests were sent unsigned; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use --profile"
    )]
    AnonymousAccessDenied { bucket: String },
    #[error("the server at {url} rejected the credentials ({code}): {fix}")]
    CredentialsRejected { url: String, code: String, fix: &'static str },
    #[error("cannot reach {url}: {reason}; check --endpoint, the network, and that the server is running")]
    Unreachable { url: String, reason: String },
    #[error("TLS with {url} failed: {reason}; for a server with a private CA give its certificate with --ca-bundle")]
    Tls { url: String, reason: String },
    #[error(
        "bucket `{bucket}` is in another region than {region} and the server did not say which ({code}); give it with --region"
    )]
    WrongRegion { bucket: String, region: String, code: String },
    #[error("checking bucket `{bucket}` at {url} failed: {error}")]
    Other { bucket: String, url: String, error: String },
}

/// A reply as it came off the wire.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
    /// A GET whose body was streamed: the result, with no bytes (they were handed on) and
    /// `range_start` where the body ended.
    streamed: Option<GetObjectOutput>,
}

/// Takes the frames of a streamed GET body, each from its offset in the object.
pub type BodyChunkSink<'a> = &'a mut (dyn FnMut(GetObjectOutput) + Send);

/// Where a reply's body goes.
enum BodyDestination<'a> {
    /// Read whole into one buffer.
    Collect,
    /// A successful reply's body is handed on frame by frame.
    Stream(BodyChunkSink<'a>),
}

/// Executes S3 requests for one bucket. Cheap to share: wrap it in an `Arc` and call
/// [`execute`](S3Client::execute) from many tasks; connections are pooled.
#[derive(Debug)]
pub struct S3Client {
    config: TransportConfig,
    http: HttpClient,
    signer: Signer,
    endpoint: RwLock<BucketEndpoint>,
    connections_opened: Arc<AtomicU64>,
}

impl S3Client {
    /// Resolves the endpoint, loads credentials (asking the chain once; see
    /// [`CredentialSource`](crate::CredentialSource)) and builds the connection pool. Sends no
    /// request; call [`check_bucket`](S3Client::check_bucket) next.
    pub async fn new(config: TransportConfig) -> Result<Self, ClientBuildError> {
        let region = config.region.as_deref().unwrap_or(DEFAULT_REGION);
        let endpoint = BucketEndpoint::resolve(&config, region)?;
        let (http, connections_opened) = build_http_client(&config, endpoint.is_https())?;
        let signer = Signer::resolve(&config.credentials, config.region.as_deref()).await?;
        Ok(S3Client { config, http, signer, endpoint: RwLock::new(endpoint), connections_opened })
    }

    /// The region requests are signed for now.
    pub fn region(&self) -> String {
        self.current_endpoint().region().to_owned()
    }

    /// The bucket's URL, for messages.
    pub fn bucket_url(&self) -> String {
        self.current_endpoint().bucket_url()
    }

    /// How many TCP connections the pool has opened so far.
    pub fn connections_opened(&self) -> u64 {
        self.connections_opened.load(Ordering::Relaxed)
    }

    /// Whether requests go unsigned.
    pub fn is_anonymous(&self) -> bool {
        self.signer.is_anonymous()
    }

    fn current_endpoint(&self) -> BucketEndpoint {
        self.endpoint.read().expect("endpoint lock poisoned").clone()
    }

    /// Sends `request` once and returns its typed result.
    pub async fn execute(&self, request: &S3Request) -> S3Result {
        self.execute_to(request, BodyDestination::Collect).await
    }

    /// Sends `request` once. The body of a successful ranged GetObject goes to `on_body_chunk`
    /// frame by frame as it arrives, and the result then holds no bytes: a whole body gives a
    /// `GetObject` whose empty body starts where the streamed one ended, a cut-short body a
    /// [`TransportError::Truncated`] with nothing received. Any other request is as
    /// [`execute`](S3Client::execute).
    pub async fn execute_streaming(&self, request: &S3Request, on_body_chunk: BodyChunkSink<'_>) -> S3Result {
        let destination = if matches!(request, S3Request::GetObject { range: Some(_), .. }) {
            BodyDestination::Stream(on_body_chunk)
        } else {
            BodyDestination::Collect
        };
        self.execute_to(request, destination).await
    }

    async fn execute_to(&self, request: &S3Request, destination: BodyDestination<'_>) -> S3Result {
        let span = tracing::debug_span!("s3", op = request.operation_name());
        async {
            let started = Instant::now();
            let endpoint = self.current_endpoint();
            let http_request = build_request(request, &self.config, &endpoint).map_err(rejected_before_sending)?;
            let reply = self.send(http_request, &endpoint, destination).await;
            let elapsed_ms = started.elapsed().as_millis();
            let result = reply.and_then(|reply| match reply.streamed {
                Some(output) => Ok(S3Response::GetObject(output)),
                None => parse_response(request, reply.status, &reply.headers, reply.body),
            });
            match &result {
                Ok(_) => tracing::debug!(elapsed_ms, "ok"),
                Err(error) => tracing::debug!(elapsed_ms, %error, "failed"),
            }
            result
        }
        .instrument(span)
        .await
    }

    /// Creates the configured bucket (in the endpoint's default location). The filesystem never
    /// does this; tests and setup tools do.
    pub async fn create_bucket(&self) -> Result<(), S3Error> {
        let endpoint = self.current_endpoint();
        let mut request = http::Request::new(RequestBody::default());
        *request.method_mut() = Method::PUT;
        *request.uri_mut() = endpoint
            .url(None, "")
            .parse()
            .map_err(|e| S3Error::Transport(TransportError::Other(format!("bucket URL: {e}"))))?;
        request.headers_mut().insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(0));
        let reply = self.send(request, &endpoint, BodyDestination::Collect).await?;
        if reply.status.is_success() {
            return Ok(());
        }
        let probe = S3Request::ListObjectsV2 {
            prefix: String::new(),
            delimiter: None,
            continuation_token: None,
            start_after: None,
            max_keys: 0,
        };
        parse_response(&probe, reply.status, &reply.headers, reply.body).map(|_| ())
    }

    /// Checks at mount that the bucket exists and can be listed under `prefix` with these
    /// credentials, learning the bucket's region on the way when none was configured.
    pub async fn check_bucket(&self, prefix: &str) -> Result<(), BucketCheckError> {
        let probe = S3Request::ListObjectsV2 {
            prefix: prefix.to_owned(),
            delimiter: Some("/".into()),
            continuation_token: None,
            start_after: None,
            max_keys: 1,
        };
        let mut last_error = None;
        // A wrong region costs one attempt; the reply names the right one. A passing fault
        // (a reset, a 5xx, throttling) costs one attempt after a short pause; a refused
        // connection or a timeout is answered at once (the endpoint is wrong or down).
        for attempt in 0..BUCKET_CHECK_ATTEMPTS {
            let region_before = self.region();
            match self.execute(&probe).await {
                Ok(_) => return Ok(()),
                Err(error) if is_wrong_region(&error) && self.region() != region_before => {
                    tracing::info!(region = %self.region(), "the bucket is in another region; retrying there");
                    last_error = Some(error);
                }
                Err(error) if is_passing_fault(&error) => {
                    tracing::info!(%error, "checking the bucket failed; trying again");
                    tokio::time::sleep(BUCKET_CHECK_PAUSE * (1 << attempt)).await;
                    last_error = Some(error);
                }
                Err(error) => return Err(self.explain(error)),
            }
        }
        Err(self.explain(last_error.expect("the loop ran")))
    }

    fn explain(&self, error: S3Error) -> BucketCheckError {
        let bucket = self.config.bucket.clone();
        let url = self.bucket_url();
        let service = match &error {
            S3Error::Service(service) => service,
            S3Error::Transport(TransportError::Connect(reason)) => {
                return BucketCheckError::Unreachable { url, reason: reason.clone() };
            }
            S3Error::Transport(TransportError::Timeout) => {
                return BucketCheckError::Unreachable {
                    url,
                    reason: format!("no reply within {} ms", self.config.request_timeout_ms),
                };
            }
            S3Error::Transport(TransportError::Tls(reason)) => {
                return BucketCheckError::Tls { url, reason: reason.clone() };
            }
            S3Error::Transport(_) => {
                return BucketCheckError::Other { bucket, url, error: error.to_string() };
            }
        };
        let code = service.code.as_str().to_owned();
        let rejected = |fix| BucketCheckError::CredentialsRejected { url: url.clone(), code: code.clone(), fix };
        match &service.code {
            S3ErrorCode::NoSuchBucket => BucketCheckError::NoSuchBucket { bucket, url },
            S3ErrorCode::AccessDenied if self.is_anonymous() => BucketCheckError::AnonymousAccessDenied { bucket },
            S3ErrorCode::AccessDenied => BucketCheckError::AccessDenied { bucket, code },
            S3ErrorCode::SignatureDoesNotMatch => rejected(
                "the secret access key is wrong; check AWS_SECRET_ACCESS_KEY or the profile chosen with --profile",
            ),
            S3ErrorCode::InvalidAccessKeyId => {
                rejected("the access key id is unknown here; check AWS_ACCESS_KEY_ID, --profile and --endpoint")
            }
            S3ErrorCode::ExpiredToken => {
                rejected("the session token has expired; renew the credentials (for SSO: aws sso login)")
            }
            other if is_wrong_region_code(other) => {
                BucketCheckError::WrongRegion { bucket, region: self.region(), code }
            }
            _ => BucketCheckError::Other { bucket, url, error: error.to_string() },
        }
    }

    /// Signs and sends one request within the request timeout, and reads the whole reply.
    async fn send(
        &self,
        mut request: http::Request<RequestBody>,
        endpoint: &BucketEndpoint,
        destination: BodyDestination<'_>,
    ) -> Result<Reply, S3Error> {
        if let Signer::Signed(cache) = &self.signer {
            let credentials = cache.credentials(SystemTime::now()).await.map_err(|error| {
                S3Error::Transport(TransportError::Other(format!(
                    "cannot load AWS credentials: {}",
                    error_chain(&error)
                )))
            })?;
            sign_request(
                &mut request,
                &credentials,
                endpoint.region(),
                SystemTime::now(),
                PayloadSigning::for_transport(endpoint.is_https()),
            )
            .map_err(|e| S3Error::Transport(TransportError::Other(e.to_string())))?;
        }
        tracing::trace!(method = %request.method(), uri = %request.uri(), "sending");
        let timeout = Duration::from_millis(self.config.request_timeout_ms);
        let reply = tokio::time::timeout(timeout, self.exchange(request, destination))
            .await
            .map_err(|_elapsed| S3Error::Transport(TransportError::Timeout))??;
        self.learn_region(&reply.headers);
        Ok(reply)
    }

    async fn exchange(
        &self,
        request: http::Request<RequestBody>,
        destination: BodyDestination<'_>,
    ) -> Result<Reply, S3Error> {
        let is_head = request.method() == Method::HEAD;
        let (parts, body) = request.into_parts();
        let response = self
            .http
            .request(http::Request::from_parts(parts, ChunkedBody::from(body)))
            .await
            .map_err(|error| classify_request_error(&error))?;
        let (parts, incoming) = response.into_parts();
        let has_body = !is_head && parts.status != StatusCode::NO_CONTENT && parts.status != StatusCode::NOT_MODIFIED;
        let declared_len_bytes = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.parse::<u64>().ok());
        let mut streamed = None;
        let body = match destination {
            // A whole-object reply needs its length for the object's size.
            BodyDestination::Stream(on_body_chunk)
                if has_body
                    && parts.status.is_success()
                    && (parts.status == StatusCode::PARTIAL_CONTENT || declared_len_bytes.is_some()) =>
            {
                let (meta, range_start) = get_head(parts.status, &parts.headers, declared_len_bytes.unwrap_or(0))?;
                let end = stream_body(incoming, declared_len_bytes, &meta, range_start, on_body_chunk).await?;
                streamed = Some(GetObjectOutput { meta, range_start: end, body: Body::default() });
                Bytes::new()
            }
            _ if has_body => collect_body(incoming, declared_len_bytes).await?,
            _ => Bytes::new(),
        };
        tracing::trace!(status = parts.status.as_u16(), body_bytes = body.len(), "received");
        Ok(Reply { status: parts.status, headers: parts.headers, body, streamed })
    }

    /// Switches to the region a reply names, unless the configuration fixed one.
    fn learn_region(&self, headers: &HeaderMap) {
        if self.config.region.is_some() {
            return;
        }
        let Some(named) = headers.get(BUCKET_REGION_HEADER).and_then(|v| v.to_str().ok()) else {
            return;
        };
        let mut endpoint = self.endpoint.write().expect("endpoint lock poisoned");
        if named.is_empty() || named == endpoint.region() {
            return;
        }
        match BucketEndpoint::resolve(&self.config, named) {
            Ok(resolved) => {
                tracing::info!(from = endpoint.region(), to = named, "switching to the bucket's region");
                *endpoint = resolved;
            }
            Err(error) => {
                tracing::warn!(%error, region = named, "ignoring the region a reply named")
            }
        }
    }
}

/// Reads a reply body into one buffer. An error or an early end after `declared_len_bytes` was
/// promised is a truncation, reported with the bytes that did arrive. A body that arrives in
/// one frame is passed on without a copy.
async fn collect_body(mut body: Incoming, declared_len_bytes: Option<u64>) -> Result<Bytes, S3Error> {
    let mut first: Option<Bytes> = None;
    let mut buffer = BytesMut::new();
    let received = |first: Option<Bytes>, buffer: BytesMut| first.unwrap_or_else(|| buffer.freeze());
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => {
                let received = received(first, buffer);
                tracing::debug!(error = %error_chain(&error), received_bytes = received.len(), "reply body cut short");
                return Err(S3Error::Transport(TransportError::Truncated { received: received.into() }));
            }
        };
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if first.is_none() && buffer.is_empty() {
            first = Some(data);
            continue;
        }
        if let Some(first) = first.take() {
            let expected = declared_len_bytes.unwrap_or(0).min(PREALLOCATE_MAX_BYTES);
            buffer.reserve(usize::try_from(expected).unwrap_or(0).max(first.len() + data.len()));
            buffer.extend_from_slice(&first);
        }
        buffer.extend_from_slice(&data);
    }
    let received = received(first, buffer);
    match declared_len_bytes {
        Some(declared) if (received.len() as u64) < declared => {
            Err(S3Error::Transport(TransportError::Truncated { received: received.into() }))
        }
        _ => Ok(received),
    }
}

/// Hands a GET body on frame by frame (no copy), each chunk from its offset in the object;
/// returns the offset where it ended. An error or an early end after `declared_len_bytes` was
/// promised is a truncation with nothing received: every byte that arrived was handed on.
async fn stream_body(
    mut body: Incoming,
    declared_len_bytes: Option<u64>,
    meta: &goofys_core::s3_types::ObjectMeta,
    range_start: u64,
    on_body_chunk: BodyChunkSink<'_>,
) -> Result<u64, S3Error> {
    let truncated = || S3Error::Transport(TransportError::Truncated { received: Body::default() });
    let mut at = range_start;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|error| {
            tracing::debug!(error = %error_chain(&error), received_bytes = at - range_start, "reply body cut short");
            truncated()
        })?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers
        };
        if data.is_empty() {
            continue;
        }
        let chunk_start = at;
        at += data.len() as u64;
        on_body_chunk(GetObjectOutput { meta: meta.clone(), range_start: chunk_start, body: data.into() });
    }
    match declared_len_bytes {
        Some(declared) if at - range_start < declared => Err(truncated()),
        _ => Ok(at),
    }
}

/// A request that could not be built is refused like S3 refuses an invalid request, with the
/// reason; it was never sent, and retrying cannot help.
fn rejected_before_sending(error: BuildError) -> S3Error {
    S3Error::Service(ServiceError {
        status: 400,
        code: S3ErrorCode::InvalidRequest,
        message: format!("not sent: {error}"),
        request_id: None,
    })
}

fn is_wrong_region_code(code: &S3ErrorCode) -> bool {
    match code {
        S3ErrorCode::PermanentRedirect => true,
        S3ErrorCode::Other(other) => matches!(
            other.as_str(),
            "AuthorizationHeaderMalformed" | "TemporaryRedirect" | "IllegalLocationConstraintException" | "HTTP307"
        ),
        _ => false,
    }
}

fn is_wrong_region(error: &S3Error) -> bool {
    matches!(error, S3Error::Service(ServiceError { code, .. }) if is_wrong_region_code(code))
}

/// Attempts of the bucket check at mount, and the pause after the first failed one (doubling).
const BUCKET_CHECK_ATTEMPTS: u32 = 5;
const BUCKET_CHECK_PAUSE: Duration = Duration::from_millis(100);

/// A failure the core would retry that says nothing about the endpoint being wrong or down:
/// a reset or cut-short answer, a 5xx, throttling.
fn is_passing_fault(error: &S3Error) -> bool {
    let says_unreachable = matches!(error, S3Error::Transport(TransportError::Connect(_) | TransportError::Timeout));
    goofys_core::retry::is_retryable(error) && !says_unreachable
}

/// Every error in `error`'s chain, including those wrapped inside `io::Error`s (whose
/// `source()` skips the error they wrap, where rustls' errors hide).
fn causes<'e>(error: &'e (dyn std::error::Error + 'static)) -> Vec<&'e (dyn std::error::Error + 'static)> {
    let mut found = Vec::new();
    let mut pending = vec![error];
    while let Some(cause) = pending.pop() {
        found.push(cause);
        if let Some(next) = cause.source() {
            pending.push(next);
        }
        if let Some(inner) = cause.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            pending.push(inner);
        }
    }
    found
}

/// Sorts a failure to get a reply into the core's transport error kinds.
fn classify_request_error(error: &hyper_util::client::legacy::Error) -> S3Error {
    let text = error_chain(error);
    let causes = causes(error);
    if causes.iter().any(|cause| cause.is::<rustls::Error>()) {
        return S3Error::Transport(TransportError::Tls(text));
    }
    if error.is_connect() {
        return S3Error::Transport(TransportError::Connect(text));
    }
    let is_reset = causes.iter().any(|cause| {
        cause.downcast_ref::<hyper::Error>().is_some_and(|e| e.is_incomplete_message() || e.is_closed())
            || cause.downcast_ref::<std::io::Error>().is_some_and(|io| {
                matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::BrokenPipe
                        | std::io::ErrorKind::UnexpectedEof
                )
            })
    });
    if is_reset {
        return S3Error::Transport(TransportError::ConnectionReset);
    }
    S3Error::Transport(TransportError::Other(text))
}

#[cfg(test)]
mod tests {
    use aws_credential_types::Credentials;
    use goofys_core::s3_types::{Body, ByteRange, Metadata};

    use super::*;
    use crate::config::{CredentialSource, ServerSideEncryption, SseCustomerKey};
    use crate::test_support::{LogCapture, ScriptedReply, ScriptedServer, private_ca_tls, set_dispatch};

    const LIST_REPLY: &str = "<ListBucketResult><IsTruncated>false</IsTruncated></ListBucketResult>";

    async fn client_for(server: &ScriptedServer, config: TransportConfig) -> S3Client {
        S3Client::new(TransportConfig {
            bucket: "bucket".into(),
            endpoint: Some(server.endpoint()),
            credentials: CredentialSource::Static(Credentials::new("AKIDTEST", "SECRETTEST", None, None, "test")),
            ..config
        })
        .await
        .unwrap()
    }

    fn get(key: &str) -> S3Request {
        S3Request::GetObject { key: key.into(), range: None, if_match: None }
    }

    fn list() -> S3Request {
        S3Request::ListObjectsV2 {
            prefix: String::new(),
            delimiter: None,
            continuation_token: None,
            start_after: None,
            max_keys: 10,
        }
    }

    #[tokio::test]
    async fn a_short_body_is_reported_as_truncated_with_what_arrived() {
        let server = ScriptedServer::start(vec![ScriptedReply::Send {
            bytes: b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\netag: \"e\"\r\n\r\n0123456789".to_vec(),
            close: true,
        }])
        .await;
        let client = client_for(&server, TransportConfig::default()).await;
        let result = client.execute(&get("k")).await;
        assert_eq!(
            result,
            Err(S3Error::Transport(TransportError::Truncated { received: Body::from(b"0123456789".as_slice()) }))
        );
    }

    fn ranged_get(start: u64, end: u64) -> S3Request {
        S3Request::GetObject { key: "k".into(), range: Some(ByteRange::new(start, end)), if_match: None }
    }

    /// Streams `request`, returning the chunks handed on (as offset and bytes) and the result.
    async fn stream(client: &S3Client, request: &S3Request) -> (Vec<(u64, Vec<u8>)>, S3Result) {
        let mut chunks = Vec::new();
        let mut on_body_chunk = |output: GetObjectOutput| chunks.push((output.range_start, output.body.to_vec()));
        let result = client.execute_streaming(request, &mut on_body_chunk).await;
        (chunks, result)
    }

    #[tokio::test]
    async fn a_streamed_ranged_get_hands_its_body_on_and_ends_with_no_bytes_left() {
        let headers = [("etag", "\"e\""), ("content-range", "bytes 100-109/1000")];
        let server =
            ScriptedServer::start(vec![ScriptedReply::ok("206 Partial Content", &headers, b"0123456789")]).await;
        let client = client_for(&server, TransportConfig::default()).await;
        let (chunks, result) = stream(&client, &ranged_get(100, 110)).await;
        let streamed: Vec<u8> = chunks.iter().flat_map(|(_, bytes)| bytes.clone()).collect();
        assert_eq!(streamed, b"0123456789");
        assert_eq!(chunks[0].0, 100, "chunks carry their offsets in the object");
        let Ok(S3Response::GetObject(output)) = result else { panic!("expected a GET result, got {result:?}") };
        assert_eq!((output.range_start, output.body.len(), output.meta.size_bytes), (110, 0, 1000));
    }

    #[tokio::test]
    async fn a_streamed_body_cut_short_is_truncated_after_handing_on_what_arrived() {
        let server = ScriptedServer::start(vec![ScriptedReply::Send {
            bytes: b"HTTP/1.1 206 Partial Content\r\ncontent-length: 100\r\netag: \"e\"\r\ncontent-range: bytes 0-99/100\r\n\r\n0123456789".to_vec(),
            close: true,
        }])
        .await;
        let client = client_for(&server, TransportConfig::default()).await;
        let (chunks, result) = stream(&client, &ranged_get(0, 100)).await;
        let streamed: Vec<u8> = chunks.into_iter().flat_map(|(_, bytes)| bytes).collect();
        assert_eq!(streamed, b"0123456789");
        assert_eq!(result, Err(S3Error::Transport(TransportError::Truncated { received: Body::default() })));
    }

    #[tokio::test]
    async fn a_streamed_error_reply_is_collected_and_parsed_as_usual() {
        let body = b"<Error><Code>PreconditionFailed</Code></Error>";
        let server = ScriptedServer::start(vec![ScriptedReply::ok("412 Precondition Failed", &[], body)]).await;
        let client = client_for(&server, TransportConfig::default()).await;
        let (chunks, result) = stream(&client, &ranged_get(0, 100)).await;
        assert!(chunks.is_empty());
        assert!(matches!(result, Err(S3Error::Service(service)) if service.code == S3ErrorCode::PreconditionFailed));
    }

    #[tokio::test]
    async fn a_server_that_never_answers_times_out() {
        let server = ScriptedServer::start(vec![ScriptedReply::Hang]).await;
        let client = client_for(&server, TransportConfig { request_timeout_ms: 300, ..Default::default() }).await;
        let started = Instant::now();
        assert_eq!(client.execute(&get("k")).await, Err(S3Error::Transport(TransportError::Timeout)));
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[tokio::test]
    async fn a_connection_closed_before_any_reply_is_a_reset() {
        let server = ScriptedServer::start(vec![ScriptedReply::Send { bytes: vec![], close: true }]).await;
        let client = client_for(&server, TransportConfig::default()).await;
        assert_eq!(client.execute(&get("k")).await, Err(S3Error::Transport(TransportError::ConnectionReset)));
    }

    #[tokio::test]
    async fn a_refused_connection_is_a_connect_error_and_check_bucket_says_unreachable() {
        let closed_port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let client = S3Client::new(TransportConfig {
            bucket: "bucket".into(),
            endpoint: Some(format!("http://127.0.0.1:{closed_port}")),
            credentials: CredentialSource::Anonymous,
            ..Default::default()
        })
        .await
        .unwrap();
        assert!(matches!(client.execute(&get("k")).await, Err(S3Error::Transport(TransportError::Connect(_)))));
        let error = client.check_bucket("").await.unwrap_err();
        assert!(matches!(error, BucketCheckError::Unreachable { .. }), "{error:?}");
        let message = error.to_string();
        assert!(message.contains(&format!("127.0.0.1:{closed_port}")) && message.contains("--endpoint"), "{message}");
    }

    #[tokio::test]
    async fn https_trusts_a_private_ca_given_with_ca_bundle_and_refuses_it_otherwise() {
        let (tls, ca_pem) = private_ca_tls();
        let server =
            ScriptedServer::start_tls(vec![ScriptedReply::ok("200 OK", &[], LIST_REPLY.as_bytes())], tls).await;
        let dir = tempfile::tempdir().unwrap();
        let bundle = dir.path().join("ca.pem");
        std::fs::write(&bundle, ca_pem).unwrap();
        let config = |ca_bundle| TransportConfig { ca_bundle, ..Default::default() };
        let trusting = client_for(&server, config(Some(bundle))).await;
        trusting.check_bucket("").await.unwrap();
        assert!(
            server.request_heads()[0].contains("x-amz-content-sha256: UNSIGNED-PAYLOAD"),
            "over TLS the body is not hashed: {}",
            server.request_heads()[0]
        );

        let distrusting = client_for(&server, config(None)).await;
        let result = distrusting.execute(&list()).await;
        assert!(matches!(result, Err(S3Error::Transport(TransportError::Tls(_)))), "{result:?}");
        let error = distrusting.check_bucket("").await.unwrap_err();
        assert!(matches!(error, BucketCheckError::Tls { .. }) && error.to_string().contains("--ca-bundle"), "{error}");
    }

    #[tokio::test]
    async fn sequential_requests_reuse_one_connection() {
        let replies = (0..5).map(|_| ScriptedReply::ok("200 OK", &[], LIST_REPLY.as_bytes())).collect();
        let server = ScriptedServer::start(replies).await;
        let client = client_for(&server, TransportConfig::default()).await;
        for _ in 0..5 {
            client.execute(&list()).await.unwrap();
        }
        assert_eq!(server.connections_accepted(), 1);
        assert_eq!(client.connections_opened(), 1);
    }

    #[tokio::test]
    async fn a_reply_naming_another_region_moves_later_requests_there() {
        let redirect = "<Error><Code>PermanentRedirect</Code><Message>use the right endpoint</Message></Error>";
        let server = ScriptedServer::start(vec![
            ScriptedReply::ok("301 Moved Permanently", &[("x-amz-bucket-region", "eu-west-1")], redirect.as_bytes()),
            ScriptedReply::ok("200 OK", &[], LIST_REPLY.as_bytes()),
        ])
        .await;
        let client = client_for(&server, TransportConfig::default()).await;
        assert_eq!(client.region(), "us-east-1");
        client.check_bucket("").await.unwrap();
        assert_eq!(client.region(), "eu-west-1");
        let heads = server.request_heads();
        assert!(heads[0].contains("/us-east-1/s3/aws4_request"), "{}", heads[0]);
        assert!(heads[1].contains("/eu-west-1/s3/aws4_request"), "{}", heads[1]);
    }

    #[tokio::test]
    async fn a_configured_region_is_never_switched() {
        let server = ScriptedServer::start(vec![ScriptedReply::ok(
            "301 Moved Permanently",
            &[("x-amz-bucket-region", "eu-west-1")],
            b"<Error><Code>PermanentRedirect</Code></Error>",
        )])
        .await;
        let client =
            client_for(&server, TransportConfig { region: Some("ap-south-1".into()), ..Default::default() }).await;
        let error = client.check_bucket("").await.unwrap_err();
        assert!(matches!(error, BucketCheckError::WrongRegion { .. }), "{error:?}");
        assert!(error.to_string().contains("--region"), "{error}");
        assert_eq!(client.region(), "ap-south-1");
    }

    #[tokio::test]
    async fn check_bucket_names_the_cause_and_the_fix() {
        let error_reply = |status: &str, code: &str| {
            ScriptedReply::ok(status, &[], format!("<Error><Code>{code}</Code><Message>m</Message></Error>").as_bytes())
        };
        let server = ScriptedServer::start(vec![
            error_reply("404 Not Found", "NoSuchBucket"),
            error_reply("403 Forbidden", "SignatureDoesNotMatch"),
            error_reply("403 Forbidden", "InvalidAccessKeyId"),
            error_reply("403 Forbidden", "AccessDenied"),
        ])
        .await;
        let client = client_for(&server, TransportConfig::default()).await;
        let mut messages = Vec::new();
        for _ in 0..4 {
            messages.push(client.check_bucket("").await.unwrap_err().to_string());
        }
        assert!(messages[0].contains("does not exist") && messages[0].contains("bucket name"), "{}", messages[0]);
        assert!(messages[1].contains("secret access key is wrong"), "{}", messages[1]);
        assert!(messages[2].contains("access key id is unknown"), "{}", messages[2]);
        assert!(messages[3].contains("denied") && messages[3].contains("--profile"), "{}", messages[3]);
        assert!(messages.iter().all(|m| !m.contains('\n')));
    }

    #[tokio::test]
    async fn check_bucket_outlasts_a_reset_a_500_and_throttling_on_a_flaky_network() {
        let empty_listing =
            b"<ListBucketResult><IsTruncated>false</IsTruncated><KeyCount>0</KeyCount></ListBucketResult>";
        let server = ScriptedServer::start(vec![
            ScriptedReply::Send { bytes: vec![], close: true },
            ScriptedReply::ok("500 Internal Server Error", &[], b"<Error><Code>InternalError</Code></Error>"),
            ScriptedReply::ok("503 Slow Down", &[], b"<Error><Code>SlowDown</Code></Error>"),
            ScriptedReply::ok("200 OK", &[], empty_listing),
        ])
        .await;
        let client = client_for(&server, TransportConfig::default()).await;
        assert_eq!(client.check_bucket("").await, Ok(()));
        assert_eq!(server.request_heads().len(), 4);
    }

    #[tokio::test]
    async fn anonymous_access_denied_says_no_credentials_were_found() {
        let server = ScriptedServer::start(vec![ScriptedReply::ok(
            "403 Forbidden",
            &[],
            b"<Error><Code>AccessDenied</Code></Error>",
        )])
        .await;
        let client =
            client_for(&server, TransportConfig { credentials: CredentialSource::Anonymous, ..Default::default() })
                .await;
        // client_for overrides the credentials; build an anonymous one by hand.
        let anonymous =
            S3Client::new(TransportConfig { credentials: CredentialSource::Anonymous, ..client.config.clone() })
                .await
                .unwrap();
        assert!(anonymous.is_anonymous());
        let error = anonymous.check_bucket("").await.unwrap_err();
        assert!(matches!(error, BucketCheckError::AnonymousAccessDenied { .. }), "{error:?}");
        assert!(!server.request_heads()[0].to_ascii_lowercase().contains("authorization"));
    }

    /// The secrets of one configuration, each as it could leak: raw, and as sent on the wire.
    struct Secrets {
        secret_key: &'static str,
        session_token: &'static str,
        sse_c_key_raw: &'static str,
        sse_c_key_base64: String,
        sse_c_key_md5: String,
    }

    fn secret_config(endpoint: String) -> (TransportConfig, Secrets) {
        let key = SseCustomerKey::from_bytes(b"sse-c-key-0123456789-ABCDEFGHIJK").unwrap();
        let secrets = Secrets {
            secret_key: "wJalrXUtnFEMI-K7MDENG-bPxRfiCYSECRETKEY",
            session_token: "FwoGZXIvYXdzEXAMPLESESSIONTOKEN0123456789",
            sse_c_key_raw: "sse-c-key-0123456789-ABCDEFGHIJK",
            sse_c_key_base64: key.base64_key(),
            sse_c_key_md5: key.base64_key_md5(),
        };
        let config = TransportConfig {
            bucket: "bucket".into(),
            endpoint: Some(endpoint),
            credentials: CredentialSource::Static(Credentials::new(
                "AKIDPUBLIC",
                secrets.secret_key,
                Some(secrets.session_token.to_owned()),
                None,
                "test",
            )),
            encryption: ServerSideEncryption::CustomerKey(key),
            ..Default::default()
        };
        (config, secrets)
    }

    fn assert_no_secret(text: &str, secrets: &Secrets, signatures: &[String], what: &str) {
        let forbidden = [
            secrets.secret_key,
            secrets.session_token,
            secrets.sse_c_key_raw,
            &secrets.sse_c_key_base64,
            &secrets.sse_c_key_md5,
        ];
        for secret in forbidden.iter().copied().chain(signatures.iter().map(String::as_str)) {
            assert!(!text.contains(secret), "{what} shows a secret ({secret}):\n{text}");
        }
    }

    #[tokio::test]
    async fn no_secret_reaches_debug_display_errors_or_trace_logs() {
        let put = S3Request::PutObject {
            key: "k".into(),
            body: RequestBody::from(b"body".as_slice()),
            content_type: None,
            metadata: Metadata::new(),
            if_match: None,
            if_none_match_any: false,
        };
        let ranged_get = S3Request::GetObject { key: "k".into(), range: Some(ByteRange::new(0, 2)), if_match: None };
        let server = ScriptedServer::start(vec![
            ScriptedReply::ok("200 OK", &[("etag", "\"e\"")], b""),
            ScriptedReply::ok("206 Partial Content", &[("etag", "\"e\""), ("content-range", "bytes 0-1/4")], b"bo"),
            ScriptedReply::ok("403 Forbidden", &[], b"<Error><Code>SignatureDoesNotMatch</Code></Error>"),
        ])
        .await;
        let (config, secrets) = secret_config(server.endpoint());
        let logs = LogCapture::default();
        let dispatch = logs.dispatch();
        let guard = set_dispatch(&dispatch);
        let client = S3Client::new(config.clone()).await.unwrap();
        let put_result = client.execute(&put).await;
        let get_result = client.execute(&ranged_get).await;
        let check_error = client.check_bucket("").await.unwrap_err();
        drop(guard);

        // What the server saw: the secrets really were sent (so the search below is meaningful).
        let heads = server.request_heads();
        assert!(heads[0].contains(&secrets.sse_c_key_base64) && heads[0].contains(secrets.session_token));
        let signatures: Vec<String> = heads
            .iter()
            .map(|head| head.rsplit_once("Signature=").unwrap().1.lines().next().unwrap().trim().to_owned())
            .collect();

        let log_text = logs.text();
        assert!(log_text.contains("sending") && log_text.contains("TRACE"), "logs were not captured:\n{log_text}");
        assert_no_secret(&log_text, &secrets, &signatures, "the TRACE log");

        let endpoint = BucketEndpoint::resolve(&config, "us-east-1").unwrap();
        let mut signed = build_request(&put, &config, &endpoint).unwrap();
        let CredentialSource::Static(credentials) = &config.credentials else { unreachable!() };
        sign_request(&mut signed, credentials, "us-east-1", SystemTime::now(), PayloadSigning::Sha256).unwrap();
        let formatted = [
            format!("{config:?}"),
            format!("{:?}", config.credentials),
            format!("{:?}", config.encryption),
            format!("{credentials:?}"),
            format!("{client:?}"),
            format!("{put:?} {ranged_get:?}"),
            format!("{signed:?}"),
            format!("{:?}", signed.headers()),
            format!("{put_result:?} {get_result:?}"),
            format!("{check_error:?} {check_error}"),
        ];
        for text in &formatted {
            assert_no_secret(text, &secrets, &signatures, "a Debug or Display");
        }
    }
}
