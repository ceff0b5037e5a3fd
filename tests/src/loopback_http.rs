//! Serving HTTP/1 on a free loopback port from a test: the accept loop the fault proxy and the
//! hand-made listing server share, with its connections stopped when the task is aborted.

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Binds a free port on 127.0.0.1 (panicking with `what` if it cannot) and serves each
/// connection with the service `service_for_connection` makes. Returns the port and the task;
/// aborting the task stops its connections too.
pub async fn serve_on_loopback<S, B>(
    what: &str,
    service_for_connection: impl Fn() -> S + Send + 'static,
) -> (u16, JoinHandle<()>)
where
    S: Service<Request<Incoming>, Response = Response<B>> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError>,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("cannot bind {what}'s port: {e}"));
    let port = listener.local_addr().expect("a bound address").port();
    let task = tokio::spawn(async move {
        // Connections live in this set, so stopping the task stops them too.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            // No Nagle: small requests and answers must not wait for delayed ACKs.
            let _ = stream.set_nodelay(true);
            let service = service_for_connection();
            connections.spawn(async move {
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
            while connections.try_join_next().is_some() {}
        }
    });
    (port, task)
}
