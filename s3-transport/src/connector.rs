//! The HTTP client under the transport: a keep-alive connection pool over TCP and rustls, with
//! the system's root certificates plus `--ca-bundle`, and a count of the connections opened so
//! that connection reuse can be observed (a test) and reported (a metric).
//!
//! hyper-util's pooled client is used directly rather than through reqwest: reqwest parses every
//! URL by the WHATWG URL rules, which remove `.` and `..` path segments (also spelt `%2E`), so
//! the keys `a/./b` and `a/../b` could not be addressed at all. `http::Uri` keeps the path as
//! built. It also leaves redirects alone, which S3 clients must not follow unsigned.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use goofys_core::s3_types::RequestBody;
use http::Uri;
use hyper::body::{Frame, SizeHint};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;
use tower_service::Service;

use crate::config::TransportConfig;

/// The size of each connection's read buffer. A streamed GET body's frames are slices of these
/// buffers, kept by the core until read, so a buffer is freed on another thread once its last
/// frame is dropped; one fixed size (hyper would otherwise vary it up to ~400 KiB) lets the
/// allocator hand a freed buffer to the next connection that needs one.
const READ_BUFFER_BYTES: usize = 256 * 1024;

/// The pooled HTTP/1.1 client the transport sends through.
pub type HttpClient = Client<HttpsConnector<CountingConnector>, ChunkedBody>;

/// A request body sent as its chunks, one frame each, with its exact length known up front
/// (`Content-Length`): a part built from a file's extents goes to the socket as they are, in
/// one vectored write, never copied into one buffer first.
#[derive(Debug, Default)]
pub struct ChunkedBody {
    chunks: VecDeque<Bytes>,
    remaining_bytes: u64,
}

impl From<RequestBody> for ChunkedBody {
    fn from(body: RequestBody) -> Self {
        ChunkedBody { remaining_bytes: body.len_bytes(), chunks: body.into_chunks().into() }
    }
}

impl hyper::body::Body for ChunkedBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _context: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let chunk = self.chunks.pop_front();
        if let Some(chunk) = &chunk {
            self.remaining_bytes -= chunk.len() as u64;
        }
        Poll::Ready(chunk.map(|chunk| Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.chunks.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.remaining_bytes)
    }
}

/// Why the HTTP client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    #[error("cannot read the CA bundle {path}: {reason}; give a PEM file of CA certificates to --ca-bundle")]
    CaBundle { path: String, reason: String },
    #[error("no trusted root certificates: the system has none and no --ca-bundle was given")]
    NoRootCertificates,
}

/// A TCP connector that counts the connections it opens.
#[derive(Clone, Debug)]
pub struct CountingConnector {
    inner: HttpConnector,
    opened: Arc<AtomicU64>,
}

impl Service<Uri> for CountingConnector {
    type Response = <HttpConnector as Service<Uri>>::Response;
    type Error = <HttpConnector as Service<Uri>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = self.inner.call(uri);
        let opened = Arc::clone(&self.opened);
        Box::pin(async move {
            let connection = connecting.await?;
            let total = opened.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::debug!(connections_opened = total, "opened a connection");
            Ok(connection)
        })
    }
}

/// The system's root certificates plus those of `--ca-bundle`.
fn root_certificates(config: &TransportConfig, https: bool) -> Result<RootCertStore, ConnectorError> {
    let mut roots = RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for error in &native.errors {
        tracing::debug!(%error, "skipped a system certificate location");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "loaded system root certificates");
    if let Some(path) = &config.ca_bundle {
        let bundle_error = |reason: String| ConnectorError::CaBundle { path: path.display().to_string(), reason };
        let certificates = CertificateDer::pem_file_iter(path)
            .map_err(|e| bundle_error(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bundle_error(e.to_string()))?;
        if certificates.is_empty() {
            return Err(bundle_error("it holds no PEM certificate".into()));
        }
        let (added, _ignored) = roots.add_parsable_certificates(certificates);
        if added == 0 {
            return Err(bundle_error("none of its certificates is a usable CA".into()));
        }
    }
    if https && roots.is_empty() {
        return Err(ConnectorError::NoRootCertificates);
    }
    Ok(roots)
}

/// Builds the pooled client and returns it with its count of connections opened.
pub fn build_http_client(
    config: &TransportConfig,
    https: bool,
) -> Result<(HttpClient, Arc<AtomicU64>), ConnectorError> {
    let roots = root_certificates(config, https)?;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_keepalive(Some(Duration::from_secs(30)));
    tcp.set_connect_timeout(Some(Duration::from_millis(config.connect_timeout_ms)));
    let opened = Arc::new(AtomicU64::new(0));
    let counting = CountingConnector { inner: tcp, opened: Arc::clone(&opened) };
    let connector =
        HttpsConnectorBuilder::new().with_tls_config(tls).https_or_http().enable_http1().wrap_connector(counting);
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_millis(config.idle_connection_timeout_ms))
        .pool_max_idle_per_host(config.idle_connections_max_per_host)
        .http1_read_buf_exact_size(READ_BUFFER_BYTES)
        .build(connector);
    Ok((client, opened))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_bundle_without_certificates_is_refused_with_the_option_named() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let config = TransportConfig { ca_bundle: Some(empty), ..Default::default() };
        let error = build_http_client(&config, true).unwrap_err();
        assert!(error.to_string().contains("--ca-bundle"), "{error}");
        let missing = TransportConfig { ca_bundle: Some(dir.path().join("missing.pem")), ..Default::default() };
        assert!(matches!(build_http_client(&missing, true), Err(ConnectorError::CaBundle { .. })));
    }
}
