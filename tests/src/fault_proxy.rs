//! A small HTTP proxy on 127.0.0.1 in front of a real S3 server, for fault injection in
//! end-to-end tests.
//!
//! It forwards every request unchanged (the `Host` header too, so SigV4 signatures made for
//! the proxy's address still hold), records each exchange with the S3 operation it was, and,
//! once told to, answers chosen operations itself with `503 ServiceUnavailable` (a retryable
//! error: the client retries it until its attempts run out) instead of forwarding them. What
//! it refuses never reaches the server, so a test can refuse writes while aborts, reads and
//! listings still go through, and then check what the bucket holds.
//!
//! Given a [`FaultSchedule`], it also fails a seeded share of all requests the ways a flaky
//! network or a throttling store does (503 SlowDown, 500, a reset before or after forwarding, a
//! body cut short, a stall past the client's timeout, a delay), and records which.

use std::collections::{BTreeMap, BTreeSet};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;

pub use crate::fault_schedule::{Fault, FaultSchedule};
use crate::loopback_http::serve_on_loopback;

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
    /// The answer's status; 0 when the client got no whole answer (a reset, a stall, a body
    /// cut short).
    pub status: u16,
    /// The proxy answered it itself instead of forwarding it.
    pub refused: bool,
    /// The fault the proxy's [`FaultSchedule`] put on it.
    pub fault: Option<Fault>,
}

#[derive(Debug, Default)]
struct State {
    refused: Mutex<BTreeSet<Operation>>,
    schedule: Mutex<Option<FaultSchedule>>,
    requests_seen: AtomicU64,
    log: Mutex<Vec<Exchange>>,
}

/// A running proxy; stopped (with its connections) on drop.
#[derive(Debug)]
pub struct FaultProxy {
    port: u16,
    state: Arc<State>,
    task: JoinHandle<()>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type ProxyBody = BoxBody<Bytes, BoxError>;

impl FaultProxy {
    /// Starts a proxy on a free loopback port that forwards to `127.0.0.1:upstream_port`. Call
    /// it inside a tokio runtime; it serves on that runtime.
    pub async fn start(upstream_port: u16) -> FaultProxy {
        let state = Arc::new(State::default());
        // No Nagle on either side: small requests and answers must not wait for delayed ACKs.
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new()).build(connector);
        let serving = Arc::clone(&state);
        let (port, task) = serve_on_loopback("the proxy", move || {
            let (state, client) = (Arc::clone(&serving), client.clone());
            hyper::service::service_fn(move |request| {
                forward(Arc::clone(&state), client.clone(), upstream_port, request)
            })
        })
        .await;
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

    /// From now on, fails requests as `schedule` says (on top of any refused operations).
    pub fn inject(&self, schedule: FaultSchedule) {
        *self.state.schedule.lock().expect("proxy state") = Some(schedule);
    }

    /// From now on, forwards everything again: no refused operations, no scheduled faults.
    pub fn heal(&self) {
        self.state.refused.lock().expect("proxy state").clear();
        *self.state.schedule.lock().expect("proxy state") = None;
    }

    /// How many requests each kind of fault has hit so far (see [`requests_failed`]).
    pub fn faults_injected(&self) -> BTreeMap<Fault, u64> {
        let mut counts = BTreeMap::new();
        for fault in self.exchanges().iter().filter_map(|exchange| exchange.fault) {
            *counts.entry(fault).or_insert(0) += 1;
        }
        counts
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
) -> Result<Response<ProxyBody>, BoxError> {
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
    let request_index = state.requests_seen.fetch_add(1, Ordering::Relaxed);
    let refused = state.refused.lock().expect("proxy state").contains(&operation);
    let schedule = state.schedule.lock().expect("proxy state").clone();
    let fault = if refused { None } else { schedule.as_ref().and_then(|schedule| schedule.fault_for(request_index)) };
    let record = |status: u16| {
        let exchange = Exchange { operation, path: path.clone(), body_bytes, status, refused, fault };
        state.log.lock().expect("proxy state").push(exchange);
    };
    let closed = |what: &str| -> BoxError { format!("the fault proxy {what}").into() };

    if refused {
        // Drain the body, as a server would, so the client sees the answer and not a reset.
        let _ = request.into_body().collect().await;
        record(503);
        return Ok(s3_error(StatusCode::SERVICE_UNAVAILABLE, "ServiceUnavailable", &path));
    }
    match fault {
        Some(Fault::SlowDown) => {
            let _ = request.into_body().collect().await;
            record(503);
            return Ok(s3_error(StatusCode::SERVICE_UNAVAILABLE, "SlowDown", &path));
        }
        Some(Fault::InternalError) => {
            let _ = request.into_body().collect().await;
            record(500);
            return Ok(s3_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", &path));
        }
        Some(Fault::ResetBeforeForwarding) => {
            record(0);
            return Err(closed("reset the connection before forwarding"));
        }
        Some(Fault::Stall) => {
            record(0);
            let stall = schedule.as_ref().map(|schedule| schedule.stall).unwrap_or_default();
            tokio::time::sleep(stall).await;
            return Err(closed("stalled, then reset the connection"));
        }
        Some(Fault::Delay) => {
            let delay = schedule.as_ref().map(|schedule| schedule.delay_for(request_index)).unwrap_or_default();
            tokio::time::sleep(delay).await;
        }
        Some(Fault::ResetAfterForwarding | Fault::CutBodyShort) | None => {}
    }

    let (mut parts, body) = request.into_parts();
    let path_and_query = parts.uri.path_and_query().map(|p| p.as_str().to_owned()).unwrap_or_else(|| "/".into());
    parts.uri = format!("http://127.0.0.1:{upstream_port}{path_and_query}").parse().expect("a valid upstream URI");
    let response = match client.request(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(error) => {
            record(502);
            return Ok(error_response(StatusCode::BAD_GATEWAY, format!("the upstream failed: {error}")));
        }
    };
    let status = response.status().as_u16();
    match fault {
        Some(fault @ (Fault::ResetAfterForwarding | Fault::CutBodyShort)) => {
            // The server has answered: read all of it, so its work is done, then fail the client.
            let (parts, body) = response.into_parts();
            let body = body.collect().await.map(|collected| collected.to_bytes()).unwrap_or_default();
            // The server's status is not what the client got: it got no whole answer.
            record(0);
            if fault == Fault::ResetAfterForwarding || body.is_empty() {
                return Err(closed("reset the connection after forwarding"));
            }
            let head = body.slice(..body.len() / 2);
            Ok(Response::from_parts(parts, CutShortBody { head: Some(head) }.boxed()))
        }
        _ => {
            record(status);
            Ok(response.map(|body| body.map_err(BoxError::from).boxed()))
        }
    }
}

/// A body that yields its head, then fails: with the original `Content-Length` kept, the client
/// sees an answer cut short.
struct CutShortBody {
    head: Option<Bytes>,
}

impl hyper::body::Body for CutShortBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Ready(Some(match self.head.take() {
            Some(head) => Ok(Frame::data(head)),
            None => Err("the fault proxy cut the body short".into()),
        }))
    }
}

/// An S3 error answer with `code`, as a server would send it.
fn s3_error(status: StatusCode, code: &str, path: &str) -> Response<ProxyBody> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>failed by the test's fault proxy</Message><Resource>{path}</Resource></Error>"
    );
    error_response(status, body)
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

    /// [`ProxiedBucket::new`] whose proxy behaves as `network` from the start.
    pub async fn on(server: &crate::seaweedfs::SeaweedFs, prefix: &str, network: Network) -> ProxiedBucket {
        let bucket = ProxiedBucket::new(server, prefix).await;
        if let Some(schedule) = network.schedule() {
            bucket.proxy.inject(schedule);
        }
        bucket
    }

    /// Panics if an upload the mount started is still open in the bucket.
    pub async fn assert_no_upload_left(&self) {
        let left = crate::bucket::multipart_uploads(&self.direct, "").await;
        assert!(left.is_empty(), "multipart uploads left behind: {left:?}");
    }

    /// After the test's mount is gone: prints the faults injected and panics if an upload was
    /// left behind.
    pub async fn finish(&self) {
        eprintln!("{}", self.describe_faults());
        self.assert_no_upload_left().await;
    }

    /// A line for the test's output: the faults the proxy injected, by kind.
    pub fn describe_faults(&self) -> String {
        let exchanges = self.proxy.exchanges().len();
        let faults = self.proxy.faults_injected();
        format!("{exchanges} requests, {} failed by the proxy: {faults:?}", requests_failed(&faults))
    }
}

/// How the network between a test's mount and its server behaves.
#[derive(Clone, Copy, Debug)]
pub enum Network {
    /// Every request is forwarded as it is.
    Clean,
    /// One request in [`Network::FAULTY_ONE_IN`] fails, in every way [`Fault`] names, drawn from
    /// `seed`.
    Faulty { seed: u64 },
    /// One request in [`Network::FAULTY_ONE_IN`] fails, always in the way `fault` names.
    FailingOnly { fault: Fault, seed: u64 },
}

impl Network {
    /// How often a faulty network fails a request: one in this many.
    pub const FAULTY_ONE_IN: u64 = 10;
    /// The mount's S3 request timeout on a faulty network: a stall costs this much, so it is
    /// kept short; a loaded machine still answers any request of the tests well within it.
    pub const FAULTY_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

    /// A faulty network seeded from a test's name, so each test meets its own faults, the same
    /// in every run.
    pub fn faulty_for(test_name: &str) -> Network {
        Network::Faulty { seed: seed_from_name(test_name) }
    }

    /// A network failing one request in ten in the way `fault` names, seeded from a test's name.
    pub fn failing_only(fault: Fault, test_name: &str) -> Network {
        Network::FailingOnly { fault, seed: seed_from_name(test_name) }
    }

    /// The fault schedule of this network, if it fails requests; a stall outlasts the mount's
    /// request timeout.
    pub fn schedule(self) -> Option<FaultSchedule> {
        match self {
            Network::Clean => None,
            Network::Faulty { seed } => Some(FaultSchedule::every_kind(
                seed,
                Network::FAULTY_ONE_IN,
                Network::FAULTY_REQUEST_TIMEOUT + Duration::from_secs(1),
            )),
            Network::FailingOnly { fault, seed } => Some(FaultSchedule {
                kinds: vec![fault],
                ..Network::Faulty { seed }.schedule().expect("a faulty network's schedule")
            }),
        }
    }

    /// `config` with the request timeout this network needs.
    pub fn core_config(self, config: goofys_core::CoreConfig) -> goofys_core::CoreConfig {
        match self {
            Network::Clean => config,
            Network::Faulty { .. } | Network::FailingOnly { .. } => {
                goofys_core::CoreConfig { s3_request_timeout: Network::FAULTY_REQUEST_TIMEOUT, ..config }
            }
        }
    }
}

/// How many requests `faults` (from [`FaultProxy::faults_injected`]) failed: all but the
/// delayed ones, which succeeded late.
pub fn requests_failed(faults: &BTreeMap<Fault, u64>) -> u64 {
    faults.iter().filter(|(fault, _)| **fault != Fault::Delay).map(|(_, count)| count).sum()
}

/// An FNV-1a hash of a test's name, as its faults' seed.
fn seed_from_name(test_name: &str) -> u64 {
    test_name
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |hash, byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}

/// Runs each of the named tests (`async fn name(network: Network)`) twice: `clean::*` on a clean network, `under_faults::*` with one request
/// in ten failed by the proxy (503 SlowDown, 500, resets before and after forwarding, bodies cut
/// short, stalls past the request timeout, delays); the test asserts the same things on both.
#[macro_export]
macro_rules! on_both_networks {
    ($($test:ident),* $(,)?) => {
        mod clean {
            use $crate::fault_proxy::Network;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(Network::Clean).await;
                }
            )*
        }
        mod under_faults {
            use $crate::fault_proxy::Network;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(Network::faulty_for(stringify!($test))).await;
                }
            )*
        }
    };
}

/// Runs each of the named tests (`async fn name(network: Network)`) once per kind of fault, with
/// one request in ten failing in that way alone: `each_fault_alone::slow_down::*`,
/// `::internal_error::*`, `::reset_before_forwarding::*`, `::reset_after_forwarding::*`,
/// `::cut_body_short::*`, `::stall::*`, `::delay::*`.
#[macro_export]
macro_rules! in_each_fault_alone {
    ($($test:ident),* $(,)?) => {
        mod each_fault_alone {
            $crate::__tests_failing_only!(slow_down, SlowDown, $($test),*);
            $crate::__tests_failing_only!(internal_error, InternalError, $($test),*);
            $crate::__tests_failing_only!(reset_before_forwarding, ResetBeforeForwarding, $($test),*);
            $crate::__tests_failing_only!(reset_after_forwarding, ResetAfterForwarding, $($test),*);
            $crate::__tests_failing_only!(cut_body_short, CutBodyShort, $($test),*);
            $crate::__tests_failing_only!(stall, Stall, $($test),*);
            $crate::__tests_failing_only!(delay, Delay, $($test),*);
        }
    };
}

/// One module of [`in_each_fault_alone`].
#[doc(hidden)]
#[macro_export]
macro_rules! __tests_failing_only {
    ($module:ident, $fault:ident, $($test:ident),*) => {
        mod $module {
            use $crate::fault_proxy::{Fault, Network};
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::super::$test(Network::failing_only(Fault::$fault, stringify!($test))).await;
                }
            )*
        }
    };
}
