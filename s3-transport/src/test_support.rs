//! Helpers shared by the unit tests: fixed requests of every kind, tracing captures, and a
//! scripted HTTP server on 127.0.0.1 that can send short or no replies.

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use goofys_core::s3_types::{ByteRange, CompletedPart, ETag, Metadata, MetadataDirective, S3Request, UploadId};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt as _};

use crate::config::TransportConfig;

/// The bucket of AWS's published SigV4 examples, on AWS, virtual-hosted.
pub fn snapshot_config() -> TransportConfig {
    TransportConfig { bucket: "examplebucket".into(), ..Default::default() }
}

/// One request of every kind, named for snapshot files, with keys that need encoding.
pub fn every_request_kind() -> Vec<(&'static str, S3Request)> {
    let metadata: Metadata = [("mtime".to_owned(), "1700000000".to_owned())].into();
    let upload_id = UploadId("VXBsb2FkIElE+/=".into());
    vec![
        (
            "list_objects_v2",
            S3Request::ListObjectsV2 {
                prefix: "dir with space/".into(),
                delimiter: Some("/".into()),
                continuation_token: Some("1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=".into()),
                start_after: Some("dir with space/a+b".into()),
                max_keys: 1000,
            },
        ),
        ("head_object", S3Request::HeadObject { key: "photos/2024/é.jpg".into() }),
        (
            "get_object_range_if_match",
            S3Request::GetObject {
                key: "a?b#c&d=e%f".into(),
                range: Some(ByteRange::new(0, 1024)),
                if_match: Some(ETag::new("9b2cf535f27731c974343645a3985328")),
            },
        ),
        (
            "put_object",
            S3Request::PutObject {
                key: "test$file.text".into(),
                body: b"Welcome to Amazon S3.".as_slice().into(),
                content_type: Some("text/plain".into()),
                metadata: metadata.clone(),
                if_match: None,
                if_none_match_any: true,
            },
        ),
        (
            "create_multipart_upload",
            S3Request::CreateMultipartUpload {
                key: "big/object.bin".into(),
                content_type: None,
                metadata: metadata.clone(),
            },
        ),
        (
            "upload_part",
            S3Request::UploadPart {
                key: "big/object.bin".into(),
                upload_id: upload_id.clone(),
                part_number: 7,
                body: b"part bytes".as_slice().into(),
            },
        ),
        (
            "upload_part_copy",
            S3Request::UploadPartCopy {
                key: "big/object.bin".into(),
                upload_id: upload_id.clone(),
                part_number: 2,
                source_key: "source key+1".into(),
                source_range: Some(ByteRange::new(5_242_880, 10_485_760)),
                source_if_match: Some(ETag::new("\"abc\"")),
            },
        ),
        (
            "complete_multipart_upload",
            S3Request::CompleteMultipartUpload {
                key: "big/object.bin".into(),
                upload_id: upload_id.clone(),
                parts: vec![
                    CompletedPart { part_number: 1, etag: ETag::new("aaa") },
                    CompletedPart { part_number: 2, etag: ETag::new("bbb") },
                ],
            },
        ),
        ("abort_multipart_upload", S3Request::AbortMultipartUpload { key: "big/object.bin".into(), upload_id }),
        (
            "copy_object_replace",
            S3Request::CopyObject {
                source_key: "from/a b".into(),
                key: "to/a b".into(),
                metadata_directive: MetadataDirective::Replace {
                    content_type: Some("application/json".into()),
                    metadata,
                },
                source_if_match: Some(ETag::new("abc")),
            },
        ),
        (
            "copy_object_copy",
            S3Request::CopyObject {
                source_key: "from/x".into(),
                key: "to/x".into(),
                metadata_directive: MetadataDirective::Copy,
                source_if_match: None,
            },
        ),
        ("delete_object", S3Request::DeleteObject { key: "line\r\nbreak".into() }),
        ("delete_objects", S3Request::DeleteObjects { keys: vec!["a".into(), "b&c<d>".into(), "cr\rlf\n".into()] }),
    ]
}

/// Runs `f` with `dispatch` as this thread's subscriber, every callsite's interest evaluated
/// afresh first. With a single live dispatcher, tracing-core evaluates a callsite's interest
/// with the subscriber of the thread that hits it first; if that thread was signing (tracing
/// silenced), the callsite is cached as disabled for every thread until the next rebuild.
pub fn with_dispatch<T>(dispatch: &tracing::Dispatch, f: impl FnOnce() -> T) -> T {
    tracing::dispatcher::with_default(dispatch, || {
        tracing::callsite::rebuild_interest_cache();
        f()
    })
}

/// As [`with_dispatch`], for async tests on a current-thread runtime: the dispatch stays this
/// thread's subscriber until the guard is dropped.
pub fn set_dispatch(dispatch: &tracing::Dispatch) -> tracing::dispatcher::DefaultGuard {
    let guard = tracing::dispatcher::set_default(dispatch);
    tracing::callsite::rebuild_interest_cache();
    guard
}

/// Records the fields of every event, by name (the last value wins).
#[derive(Clone, Default)]
pub struct FieldCapture {
    fields: Arc<Mutex<BTreeMap<String, String>>>,
}

impl FieldCapture {
    pub fn dispatch(&self) -> tracing::Dispatch {
        tracing::Dispatch::new(tracing_subscriber::registry().with(self.clone()))
    }

    pub fn all(&self) -> BTreeMap<String, String> {
        self.fields.lock().unwrap().clone()
    }

    pub fn field(&self, name: &str) -> Option<String> {
        self.fields.lock().unwrap().get(name).cloned()
    }
}

struct FieldVisitor<'a>(&'a mut BTreeMap<String, String>);

impl Visit for FieldVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for FieldCapture {
    fn on_event(&self, event: &tracing::Event<'_>, _context: Context<'_, S>) {
        event.record(&mut FieldVisitor(&mut self.fields.lock().unwrap()));
    }
}

/// Everything a TRACE-level fmt subscriber writes, as text.
#[derive(Clone, Default)]
pub struct LogCapture {
    written: Arc<Mutex<Vec<u8>>>,
}

impl LogCapture {
    pub fn dispatch(&self) -> tracing::Dispatch {
        tracing::Dispatch::new(
            tracing_subscriber::fmt().with_max_level(tracing::Level::TRACE).with_writer(self.clone()).finish(),
        )
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.written.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.written.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogCapture {
    type Writer = LogCapture;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// What the scripted server does with the next request.
#[derive(Clone, Debug)]
pub enum ScriptedReply {
    /// Write these bytes; close the connection afterwards if `close`.
    Send { bytes: Vec<u8>, close: bool },
    /// Read the request and never answer.
    Hang,
}

impl ScriptedReply {
    /// A complete reply with a body, on a connection kept open.
    pub fn ok(status_line: &str, headers: &[(&str, &str)], body: &[u8]) -> Self {
        let mut bytes = format!("HTTP/1.1 {status_line}\r\ncontent-length: {}\r\n", body.len()).into_bytes();
        for (name, value) in headers {
            bytes.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        bytes.extend_from_slice(b"\r\n");
        bytes.extend_from_slice(body);
        ScriptedReply::Send { bytes, close: false }
    }
}

/// A private CA and a certificate it issued for 127.0.0.1: the server's TLS configuration and
/// the CA certificate as PEM (what `--ca-bundle` would name).
pub fn private_ca_tls() -> (rustls::ServerConfig, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let server_key = KeyPair::generate().unwrap();
    let server_cert =
        CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&server_key, &issuer).unwrap();
    let private_key = rustls::pki_types::PrivateKeyDer::try_from(server_key.serialize_der()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![server_cert.der().clone()], private_key)
        .unwrap();
    (config, ca_cert.pem())
}

/// An HTTP/1.1 server on 127.0.0.1 that answers requests, in arrival order, with scripted raw
/// replies, and records each request's head.
pub struct ScriptedServer {
    pub address: SocketAddr,
    https: bool,
    requests: Arc<Mutex<Vec<String>>>,
    accepted: Arc<Mutex<u32>>,
}

impl ScriptedServer {
    pub async fn start(replies: Vec<ScriptedReply>) -> Self {
        Self::start_with(replies, None).await
    }

    /// As [`start`](Self::start), speaking TLS with `tls`.
    pub async fn start_tls(replies: Vec<ScriptedReply>, tls: rustls::ServerConfig) -> Self {
        Self::start_with(replies, Some(tokio_rustls::TlsAcceptor::from(Arc::new(tls)))).await
    }

    async fn start_with(replies: Vec<ScriptedReply>, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let https = tls.is_some();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let replies = Arc::new(Mutex::new(VecDeque::from(replies)));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let accepted = Arc::new(Mutex::new(0));
        let (requests_log, accepted_count) = (Arc::clone(&requests), Arc::clone(&accepted));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                *accepted_count.lock().unwrap() += 1;
                let (replies, requests_log) = (Arc::clone(&replies), Arc::clone(&requests_log));
                match tls.clone() {
                    None => {
                        tokio::spawn(serve_connection(stream, replies, requests_log));
                    }
                    Some(acceptor) => {
                        tokio::spawn(async move {
                            // A client that rejects the certificate ends the handshake.
                            if let Ok(stream) = acceptor.accept(stream).await {
                                serve_connection(stream, replies, requests_log).await;
                            }
                        });
                    }
                }
            }
        });
        ScriptedServer { address, https, requests, accepted }
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.address)
    }

    /// The heads (request line and headers) of the requests received so far.
    pub fn request_heads(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }

    pub fn connections_accepted(&self) -> u32 {
        *self.accepted.lock().unwrap()
    }
}

async fn serve_connection(
    mut stream: impl tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    replies: Arc<Mutex<VecDeque<ScriptedReply>>>,
    requests: Arc<Mutex<Vec<String>>>,
) {
    let mut pending = Vec::new();
    loop {
        let head_end = loop {
            if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&pending[..head_end]).into_owned();
        let body_len: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        while pending.len() < head_end + body_len {
            let mut chunk = [0u8; 8192];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&chunk[..n]),
            }
        }
        pending.drain(..head_end + body_len);
        requests.lock().unwrap().push(head);
        let reply = replies.lock().unwrap().pop_front();
        match reply {
            Some(ScriptedReply::Send { bytes, close }) => {
                if stream.write_all(&bytes).await.is_err() {
                    return;
                }
                if close {
                    let _ = stream.shutdown().await;
                    return;
                }
            }
            Some(ScriptedReply::Hang) => {
                tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
                return;
            }
            None => return,
        }
    }
}

/// A request as text for snapshots: request line, headers in order (sensitive values shown as
/// `<sensitive N bytes>`), then the body if it is text.
pub fn render_request(request: &http::Request<goofys_core::s3_types::RequestBody>) -> String {
    let mut rendered = format!("{} {}\n", request.method(), request.uri());
    for (name, value) in request.headers() {
        let shown = if value.is_sensitive() {
            format!("<sensitive {} bytes>", value.len())
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        rendered.push_str(&format!("{name}: {shown}\n"));
    }
    let body = request.body().to_bytes();
    if !body.is_empty() {
        match std::str::from_utf8(&body) {
            Ok(text) => rendered.push_str(&format!("\n{text}\n")),
            Err(_) => rendered.push_str(&format!("\n<{} binary bytes>\n", body.len())),
        }
    }
    rendered
}
