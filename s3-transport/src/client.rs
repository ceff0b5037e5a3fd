//! [`S3Client`]: executes the core's S3 requests over HTTP(S), one attempt each.
//!
//! The pure halves ([`build_request`], [`sign_request`], [`parse_response`]) are joined here
//! with IO: credentials from the cache, the pooled connection, the request timeout, and reading
//! the reply body with a check that all of it arrived. A short body becomes
//! [`TransportError::Truncated`] carrying what did arrive. Nothing is retried: the core owns
//! retry policy, where it is deterministic and simulated.
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
    S3Error, S3ErrorCode, S3Request, S3Result, ServiceError, TransportError,
};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use tracing::Instrument as _;

use crate::config::TransportConfig;
use crate::connector::{ConnectorError, HttpClient, build_http_client};
use crate::credentials::{CredentialLoadError, Signer, error_chain};
use crate::endpoint::{BucketEndpoint, DEFAULT_REGION, EndpointError};
use crate::request::{BuildError, build_request};
use crate::response::{BUCKET_REGION_HEADER, parse_response};
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
    #[error(
        "bucket `{bucket}` does not exist at {url}: check the bucket name, --endpoint and --region"
    )]
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
    CredentialsRejected {
        url: String,
        code: String,
        fix: &'static str,
    },
    #[error(
        "cannot reach {url}: {reason}; check --endpoint, the network, and that the server is running"
    )]
    Unreachable { url: String, reason: String },
    #[error(
        "TLS with {url} failed: {reason}; for a server with a private CA give its certificate with --ca-bundle"
    )]
    Tls { url: String, reason: String },
    #[error(
        "bucket `{bucket}` is in another region than {region} and the server did not say which ({code}); give it with --region"
    )]
    WrongRegion {
        bucket: String,
        region: String,
        code: String,
    },
    #[error("checking bucket `{bucket}` at {url} failed: {error}")]
    Other {
        bucket: String,
        url: String,
        error: String,
    },
}

/// A reply as it came off the wire.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
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
        Ok(S3Client {
            config,
            http,
            signer,
            endpoint: RwLock::new(endpoint),
            connections_opened,
        })
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
        self.endpoint
            .read()
            .expect("endpoint lock poisoned")
            .clone()
    }

    /// Sends `request` once and returns its typed result.
    pub async fn execute(&self, request: &S3Request) -> S3Result {
        let span = tracing::debug_span!("s3", op = request.operation_name());
        async {
            let started = Instant::now();
            let endpoint = self.current_endpoint();
            let http_request =
                build_request(request, &self.config, &endpoint).map_err(rejected_before_sending)?;
            let reply = self.send(http_request, &endpoint).await;
            let elapsed_ms = started.elapsed().as_millis();
            let result = reply.and_then(|reply| {
                parse_response(request, reply.status, &reply.headers, reply.body)
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
        let mut request = http::Request::new(Bytes::new());
        *request.method_mut() = Method::PUT;
        *request.uri_mut() = endpoint
            .url(None, "")
            .parse()
            .map_err(|e| S3Error::Transport(TransportError::Other(format!("bucket URL: {e}"))))?;
        request
            .headers_mut()
            .insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(0));
        let reply = self.send(request, &endpoint).await?;
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
        // A wrong region costs one attempt; the reply names the right one.
        for _attempt in 0..3 {
            let region_before = self.region();
            match self.execute(&probe).await {
                Ok(_) => return Ok(()),
                Err(error) if is_wrong_region(&error) && self.region() != region_before => {
                    tracing::info!(region = %self.region(), "the bucket is in another region; retrying there");
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
                return BucketCheckError::Unreachable {
                    url,
                    reason: reason.clone(),
                };
            }
            S3Error::Transport(TransportError::Timeout) => {
                return BucketCheckError::Unreachable {
                    url,
                    reason: format!("no reply within {} ms", self.config.request_timeout_ms),
                };
            }
            S3Error::Transport(TransportError::Tls(reason)) => {
                return BucketCheckError::Tls {
                    url,
                    reason: reason.clone(),
                };
            }
            S3Error::Transport(_) => {
                return BucketCheckError::Other {
                    bucket,
                    url,
                    error: error.to_string(),
                };
            }
        };
        let code = service.code.as_str().to_owned();
        let rejected = |fix| BucketCheckError::CredentialsRejected {
            url: url.clone(),
            code: code.clone(),
            fix,
        };
        match &service.code {
            S3ErrorCode::NoSuchBucket => BucketCheckError::NoSuchBucket { bucket, url },
            S3ErrorCode::AccessDenied if self.is_anonymous() => {
                BucketCheckError::AnonymousAccessDenied { bucket }
            }
            S3ErrorCode::AccessDenied => BucketCheckError::AccessDenied { bucket, code },
            S3ErrorCode::SignatureDoesNotMatch => rejected(
                "the secret access key is wrong; check AWS_SECRET_ACCESS_KEY or the profile chosen with --profile",
            ),
            S3ErrorCode::InvalidAccessKeyId => rejected(
                "the access key id is unknown here; check AWS_ACCESS_KEY_ID, --profile and --endpoint",
            ),
            S3ErrorCode::ExpiredToken => rejected(
                "the session token has expired; renew the credentials (for SSO: aws sso login)",
            ),
            other if is_wrong_region_code(other) => BucketCheckError::WrongRegion {
                bucket,
                region: self.region(),
                code,
            },
            _ => BucketCheckError::Other {
                bucket,
                url,
                error: error.to_string(),
            },
        }
    }

    /// Signs and sends one request within the request timeout, and reads the whole reply.
    async fn send(
        &self,
        mut request: http::Request<Bytes>,
        endpoint: &BucketEndpoint,
    ) -> Result<Reply, S3Error> {
        if let Signer::Signed(cache) = &self.signer {
            let credentials = cache
                .credentials(SystemTime::now())
                .await
                .map_err(|error| {
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
        let reply = tokio::time::timeout(timeout, self.exchange(request))
            .await
            .map_err(|_elapsed| S3Error::Transport(TransportError::Timeout))??;
        self.learn_region(&reply.headers);
        Ok(reply)
    }

    async fn exchange(&self, request: http::Request<Bytes>) -> Result<Reply, S3Error> {
        let is_head = request.method() == Method::HEAD;
        let (parts, body) = request.into_parts();
        let response = self
            .http
            .request(http::Request::from_parts(parts, Full::new(body)))
            .await
            .map_err(|error| classify_request_error(&error))?;
        let (parts, incoming) = response.into_parts();
        let has_body = !is_head
            && parts.status != StatusCode::NO_CONTENT
            && parts.status != StatusCode::NOT_MODIFIED;
        let body = if has_body {
            let declared_len_bytes = parts
                .headers
                .get(http::header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok())
                .and_then(|text| text.parse::<u64>().ok());
            collect_body(incoming, declared_len_bytes).await?
        } else {
            Bytes::new()
        };
        tracing::trace!(
            status = parts.status.as_u16(),
            body_bytes = body.len(),
            "received"
        );
        Ok(Reply {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    /// Switches to the region a reply names, unless the configuration fixed one.
    fn learn_region(&self, headers: &HeaderMap) {
        if self.config.region.is_some() {
            return;
        }
        let Some(named) = headers
            .get(BUCKET_REGION_HEADER)
            .and_then(|v| v.to_str().ok())
        else {
            return;
        };
        let mut endpoint = self.endpoint.write().expect("endpoint lock poisoned");
        if named.is_empty() || named == endpoint.region() {
            return;
        }
        match BucketEndpoint::resolve(&self.config, named) {
            Ok(resolved) => {
                tracing::info!(
                    from = endpoint.region(),
                    to = named,
                    "switching to the bucket's region"
                );
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
async fn collect_body(
    mut body: Incoming,
    declared_len_bytes: Option<u64>,
) -> Result<Bytes, S3Error> {
    let mut first: Option<Bytes> = None;
    let mut buffer = BytesMut::new();
    let received =
        |first: Option<Bytes>, buffer: BytesMut| first.unwrap_or_else(|| buffer.freeze());
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(frame) => frame,
            Err(error) => {
                let received = received(first, buffer);
                tracing::debug!(error = %error_chain(&error), received_bytes = received.len(), "reply body cut short");
                return Err(S3Error::Transport(TransportError::Truncated {
                    received: received.into(),
                }));
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
            buffer.reserve(
                usize::try_from(expected)
                    .unwrap_or(0)
                    .max(first.len() + data.len()),
            );
            buffer.extend_from_slice(&first);
        }
        buffer.extend_from_slice(&data);
    }
    let received = received(first, buffer);
    match declared_len_bytes {
        Some(declared) if (received.len() as u64) < declared => {
            Err(S3Error::Transport(TransportError::Truncated {
                received: received.into(),
            }))
        }
        _ => Ok(received),
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
            "AuthorizationHeaderMalformed"
                | "TemporaryRedirect"
                | "IllegalLocationConstraintException"
                | "HTTP307"
        ),
        _ => false,
    }
}

fn is_wrong_region(error: &S3Error) -> bool {
    matches!(error, S3Error::Service(ServiceError { code, .. }) if is_wrong_region_code(code))
}

/// Sorts a failure to get a reply into the core's transport error kinds.
fn classify_request_error(error: &hyper_util::client::legacy::Error) -> S3Error {
    let text = error_chain(error);
    let causes = || {
        std::iter::successors(Some(error as &(dyn std::error::Error + 'static)), |e| {
            e.source()
        })
    };
    let is_tls = causes().any(|cause| {
        cause.is::<rustls::Error>()
            || cause
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .is_some_and(|inner| inner.is::<rustls::Error>())
    });
    if is_tls {
        return S3Error::Transport(TransportError::Tls(text));
    }
    if error.is_connect() {
        return S3Error::Transport(TransportError::Connect(text));
    }
    let is_reset = causes().any(|cause| {
        cause
            .downcast_ref::<hyper::Error>()
            .is_some_and(|e| e.is_incomplete_message() || e.is_closed())
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
