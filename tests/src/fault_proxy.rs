//! A small HTTP proxy on 127.0.0.1 in front of a real S3 server, for fault injection in
//! end-to-end tests.
//!
//! It forwards every request unchanged (the `Host` header too, so SigV4 signatures made for
//! the proxy's address still hold), records each exchange with the S3 operation it was, and,
//! once told to, answers chosen operations itself with `503 ServiceUnavailable` (a retryable
//! error: the client retries it until its attempts run out) instead of forwarding them. What
//! it refuses never reaches the server, so a test can refuse writes while aborts, reads and
//! listings still go through, and then check what the bucket holds.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The S3 operation an HTTP request is, as far as the proxy tells them apart.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Operation {
    ListObjectsV2,
    ListMultipartUploads,
    HeadObject,
    GetObject,
    PutObject,
    CopyObject,
    CreateMultipartUpload,
    UploadPart,
    UploadPartCopy,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    DeleteObject,
    DeleteObjects,
    /// Anything else (bucket requests).
    Other,
}

impl Operation {
    /// Every operation that creates or changes an object.
    pub const WRITES: [Operation; 6] = [
        Operation::PutObject,
        Operation::CopyObject,
        Operation::CreateMultipartUpload,
        Operation::UploadPart,
        Operation::UploadPartCopy,
        Operation::CompleteMultipartUpload,
    ];

    /// Every operation: refusing them all is a server that is down.
    pub const ALL: [Operation; 14] = [
        Operation::ListObjectsV2,
        Operation::ListMultipartUploads,
        Operation::HeadObject,
        Operation::GetObject,
        Operation::PutObject,
        Operation::CopyObject,
        Operation::CreateMultipartUpload,
        Operation::UploadPart,
        Operation::UploadPartCopy,
        Operation::CompleteMultipartUpload,
        Operation::AbortMultipartUpload,
        Operation::DeleteObject,
        Operation::DeleteObjects,
        Operation::Other,
    ];

    fn classify(method: &Method, query: &str, copy_source: bool) -> Operation {
        let has = |name: &str| query.split('&').any(|pair| pair == name || pair.starts_with(&format!("{name}=")));
        match *method {
            Method::HEAD => Operation::HeadObject,
            Method::GET if has("uploads") => Operation::ListMultipartUploads,
            Method::GET if has("list-type") => Operation::ListObjectsV2,
            Method::GET => Operation::GetObject,
            Method::PUT if has("partNumber") && copy_source => Operation::UploadPartCopy,
            Method::PUT if has("partNumber") => Operation::UploadPart,
            Method::PUT if copy_source => Operation::CopyObject,
            Method::PUT => Operation::PutObject,
            Method::POST if has("uploads") => Operation::CreateMultipartUpload,
            Method::POST if has("uploadId") => Operation::CompleteMultipartUpload,
            Method::POST if has("delete") => Operation::DeleteObjects,
            Method::DELETE if has("uploadId") => Operation::AbortMultipartUpload,
            Method::DELETE => Operation::DeleteObject,
            _ => Operation::Other,
        }
    }
}

/// One request that reached the proxy and how it was answered.
#[derive(Clone, Debug)]
pub struct Exchange {
    pub operation: Operation,
    /// The request path (`/bucket/key`, still percent-encoded).
    pub path: String,
    /// Bytes of the request body, from its `Content-Length`.
    pub body_bytes: u64,
    pub status: u16,
    /// The proxy answered it itself instead of forwarding it.
    pub refused: bool,
}

#[derive(Debug, Default)]
struct State {
    refused: Mutex<BTreeSet<Operation>>,
    log: Mutex<Vec<Exchange>>,
}

/// A running proxy; stopped (with its connections) on drop.
#[derive(Debug)]
pub struct FaultProxy {
    port: u16,
    state: Arc<State>,
    task: JoinHandle<()>,
}

type ProxyBody = BoxBody<Bytes, hyper::Error>;

impl FaultProxy {
    /// Starts a proxy on a free loopback port that forwards to `127.0.0.1:upstream_port`. Call
    /// it inside a tokio runtime; it serves on that runtime.
    pub async fn start(upstream_port: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("cannot bind the proxy's port");
        let port = listener.local_addr().expect("a bound address").port();
        let state = Arc::new(State::default());
        // No Nagle on either side: small requests and answers must not wait for delayed ACKs.
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new()).build(connector);
        let serving = Arc::clone(&state);
        let task = tokio::spawn(async move {
            // Connections live in this set, so stopping the proxy stops them too.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let _ = stream.set_nodelay(true);
                let (state, client) = (Arc::clone(&serving), client.clone());
                let service = hyper::service::service_fn(move |request| {
                    forward(Arc::clone(&state), client.clone(), upstream_port, request)
                });
                connections.spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        FaultProxy { port, state, task }
    }

    /// The endpoint to give a client: `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// From now on, answers `operations` with 503 instead of forwarding them.
    pub fn refuse(&self, operations: &[Operation]) {
        self.state.refused.lock().expect("proxy state").extend(operations.iter().copied());
    }

    /// From now on, forwards everything again.
    pub fn heal(&self) {
        self.state.refused.lock().expect("proxy state").clear();
    }

    /// Every exchange so far, in the order they were answered.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.state.log.lock().expect("proxy state").clone()
    }

    /// Forgets the exchanges recorded so far.
    pub fn clear_exchanges(&self) {
        self.state.log.lock().expect("proxy state").clear();
    }

    /// The exchanges of `operation` so far.
    pub fn exchanges_of(&self, operation: Operation) -> Vec<Exchange> {
        self.exchanges().into_iter().filter(|exchange| exchange.operation == operation).collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    state: Arc<State>,
    client: Client<HttpConnector, Incoming>,
    upstream_port: u16,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, std::convert::Infallible> {
    let query = request.uri().query().unwrap_or_default().to_owned();
    let copy_source = request.headers().contains_key("x-amz-copy-source");
    let operation = Operation::classify(request.method(), &query, copy_source);
    let path = request.uri().path().to_owned();
    let body_bytes = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .unwrap_or(0);
    let refused = state.refused.lock().expect("proxy state").contains(&operation);
    let response = if refused {
        // Drain the body, as a server would, so the client sees the answer and not a reset.
        let _ = request.into_body().collect().await;
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>ServiceUnavailable</Code>\
             <Message>refused by the test's fault proxy</Message><Resource>{path}</Resource></Error>"
        );
        error_response(StatusCode::SERVICE_UNAVAILABLE, body)
    } else {
        let (mut parts, body) = request.into_parts();
        let path_and_query = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
        parts.uri = format!("http://127.0.0.1:{upstream_port}{path_and_query}").parse().expect("a valid upstream URI");
        match client.request(Request::from_parts(parts, body)).await {
            Ok(response) => response.map(BodyExt::boxed),
            Err(error) => error_response(StatusCode::BAD_GATEWAY, format!("the upstream failed: {error}")),
        }
    };
    let status = response.status().as_u16();
    state.log.lock().expect("proxy state").push(Exchange { operation, path, body_bytes, status, refused });
    Ok(response)
}

fn error_response(status: StatusCode, body: String) -> Response<ProxyBody> {
    let body = Full::new(Bytes::from(body)).map_err(|never| match never {}).boxed();
    Response::builder()
        .status(status)
        .header(hyper::header::CONTENT_TYPE, "application/xml")
        .body(body)
        .expect("a valid response")
}

/// A fresh bucket on a test server, with a proxy of its own in front of it.
#[derive(Debug)]
pub struct ProxiedBucket {
    pub proxy: Arc<FaultProxy>,
    /// A client that goes straight to the server, for setting up and checking.
    pub direct: Arc<goofys_s3::S3Client>,
    /// A client that goes through the proxy, for the mount under test.
    pub proxied: Arc<goofys_s3::S3Client>,
}

impl ProxiedBucket {
    /// Creates a bucket named after `prefix` on `server` and starts a proxy in front of it.
    pub async fn new(server: &crate::seaweedfs::SeaweedFs, prefix: &str) -> ProxiedBucket {
        let proxy = Arc::new(FaultProxy::start(server.s3_port()).await);
        let (bucket, direct) = server.new_named_bucket(prefix).await;
        let proxied = Arc::new(server.client_via(&bucket, &proxy.endpoint()).await);
        ProxiedBucket { proxy, direct: Arc::new(direct), proxied }
    }
}
