//! The mount's own figures: S3 requests by kind and outcome with their latency, retries, bytes
//! in and out, FUSE operations with latency histograms, and memory in use. They are served in
//! Prometheus' text format on a loopback address when asked for (`--metrics-addr`) and
//! summed up in one log line at unmount.
//!
//! The core only counts (see `goofys_core::counters`); timing with real clocks happens here,
//! in the driver task, which records every S3 request and FUSE reply as it passes.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use goofys_core::counters::CoreCounters;
use goofys_core::s3_types::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, TransportError};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// Upper bounds of the latency buckets, in seconds (100 µs to 10 s).
const LATENCY_BUCKETS_S: [f64; 16] =
    [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// A latency histogram with Prometheus' buckets.
#[derive(Clone, Debug, Default, PartialEq)]
struct Histogram {
    /// Observations per bucket (not cumulative); the last slot counts those above every bound.
    buckets: [u64; LATENCY_BUCKETS_S.len() + 1],
    count: u64,
    sum_s: f64,
}

impl Histogram {
    fn observe(&mut self, latency: Duration) {
        let seconds = latency.as_secs_f64();
        let slot = LATENCY_BUCKETS_S.iter().position(|&bound| seconds <= bound).unwrap_or(LATENCY_BUCKETS_S.len());
        self.buckets[slot] += 1;
        self.count += 1;
        self.sum_s += seconds;
    }

    /// The bound under which at least `quantile` of the observations fall.
    fn quantile_bound_s(&self, quantile: f64) -> f64 {
        let wanted = (self.count as f64 * quantile).ceil() as u64;
        let mut seen = 0;
        for (slot, &count) in self.buckets.iter().enumerate() {
            seen += count;
            if seen >= wanted {
                return LATENCY_BUCKETS_S.get(slot).copied().unwrap_or(f64::INFINITY);
            }
        }
        f64::INFINITY
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS_S.iter().zip(self.buckets) {
            cumulative += count;
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum_s);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

/// A counter family labelled by a name (`label`) and an outcome, in Prometheus' text format.
fn write_outcome_counters(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    counts: &BTreeMap<(&'static str, &'static str), u64>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
    for ((value, outcome), count) in counts {
        let _ = writeln!(out, "{name}{{{label}=\"{value}\",outcome=\"{outcome}\"}} {count}");
    }
}

/// A histogram family labelled by `label`, in Prometheus' text format.
fn write_histograms(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    histograms: &BTreeMap<&'static str, Histogram>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
    for (value, histogram) in histograms {
        histogram.render(out, name, &format!("{label}=\"{value}\""));
    }
}

#[derive(Debug, Default)]
struct Figures {
    /// (kind, outcome) → count.
    s3_requests: BTreeMap<(&'static str, &'static str), u64>,
    s3_latency: BTreeMap<&'static str, Histogram>,
    s3_bytes_in: u64,
    s3_bytes_out: u64,
    /// (op, outcome) → count.
    fuse_ops: BTreeMap<(&'static str, &'static str), u64>,
    fuse_latency: BTreeMap<&'static str, Histogram>,
    core: CoreCounters,
}

/// The mount's metrics; shared between the driver (which records) and the endpoint.
#[derive(Debug, Default)]
pub struct Metrics {
    figures: Mutex<Figures>,
}

/// How an S3 request ended, as a label.
pub fn s3_outcome(result: &S3Result) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(S3Error::Service(service)) if service.code == S3ErrorCode::SlowDown => "throttled",
        Err(S3Error::Service(service)) if service.status >= 500 => "server_error",
        Err(S3Error::Service(_)) => "client_error",
        Err(S3Error::Transport(TransportError::Timeout)) => "timeout",
        Err(S3Error::Transport(TransportError::Truncated { .. })) => "truncated",
        Err(S3Error::Transport(_)) => "network_error",
    }
}

/// Body bytes a request sends.
pub fn request_bytes_out(request: &S3Request) -> u64 {
    match request {
        S3Request::PutObject { body, .. } | S3Request::UploadPart { body, .. } => body.len_bytes(),
        _ => 0,
    }
}

fn result_bytes_in(result: &S3Result) -> u64 {
    match result {
        Ok(S3Response::GetObject(output)) => output.body.0.len() as u64,
        Err(S3Error::Transport(TransportError::Truncated { received })) => received.0.len() as u64,
        _ => 0,
    }
}

impl Metrics {
    fn figures(&self) -> std::sync::MutexGuard<'_, Figures> {
        self.figures.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An S3 request of `kind` finished after `latency` (sending `bytes_out`).
    pub fn s3_finished(&self, kind: &'static str, result: &S3Result, latency: Duration, bytes_out: u64) {
        let mut figures = self.figures();
        *figures.s3_requests.entry((kind, s3_outcome(result))).or_default() += 1;
        figures.s3_latency.entry(kind).or_default().observe(latency);
        figures.s3_bytes_in += result_bytes_in(result);
        figures.s3_bytes_out += bytes_out;
    }

    /// Bytes of a streamed GET body arrived (its result then carries none).
    pub fn s3_body_arrived(&self, bytes: u64) {
        self.figures().s3_bytes_in += bytes;
    }

    /// An S3 request the core no longer wanted was aborted.
    pub fn s3_cancelled(&self, kind: &'static str) {
        *self.figures().s3_requests.entry((kind, "cancelled")).or_default() += 1;
    }

    /// The kernel got the reply to a FUSE `op` after `latency`.
    pub fn fuse_replied(&self, op: &'static str, failed: bool, latency: Duration) {
        let mut figures = self.figures();
        *figures.fuse_ops.entry((op, if failed { "error" } else { "ok" })).or_default() += 1;
        figures.fuse_latency.entry(op).or_default().observe(latency);
    }

    /// The core's own counters, as last read.
    pub fn set_core(&self, counters: CoreCounters) {
        self.figures().core = counters;
    }

    /// Everything, in Prometheus' text format.
    pub fn prometheus_text(&self) -> String {
        let figures = self.figures();
        let mut out = String::new();
        let s3_requests = "goofys_s3_requests_total";
        write_outcome_counters(
            &mut out,
            s3_requests,
            "S3 requests (attempts) by kind and outcome.",
            "kind",
            &figures.s3_requests,
        );
        let s3_latency = "goofys_s3_request_duration_seconds";
        write_histograms(
            &mut out,
            s3_latency,
            "Latency of S3 requests that got an answer.",
            "kind",
            &figures.s3_latency,
        );
        let counters = [
            ("goofys_s3_retries_total", "S3 attempts sent again after a retryable failure.", figures.core.retries),
            ("goofys_s3_resumed_bodies_total", "Truncated GET bodies resumed.", figures.core.resumed_bodies),
            ("goofys_s3_received_bytes_total", "Object bytes received from S3.", figures.s3_bytes_in),
            ("goofys_s3_sent_bytes_total", "Object bytes sent to S3.", figures.s3_bytes_out),
        ];
        for (name, help, value) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        }
        let fuse_ops = "goofys_fuse_ops_total";
        write_outcome_counters(
            &mut out,
            fuse_ops,
            "FUSE requests answered, by operation and outcome.",
            "op",
            &figures.fuse_ops,
        );
        let fuse_latency = "goofys_fuse_op_duration_seconds";
        write_histograms(&mut out, fuse_latency, "Time from a FUSE request to its reply.", "op", &figures.fuse_latency);
        let gauges = [
            ("goofys_memory_resident_bytes", "Resident memory of the process.", resident_bytes()),
            ("goofys_read_buffer_bytes", "Object bytes held for open readers.", figures.core.read_buffer_bytes),
            ("goofys_dirty_bytes", "Memory held for written data not yet in S3.", figures.core.dirty_bytes),
            ("goofys_open_files", "Open file handles.", figures.core.open_files),
        ];
        for (name, help, value) in gauges {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        }
        out
    }

    /// One line for the log at unmount.
    pub fn summary(&self) -> String {
        let figures = self.figures();
        let mut by_kind: BTreeMap<&str, u64> = BTreeMap::new();
        let mut failed = 0;
        for (&(kind, outcome), &count) in &figures.s3_requests {
            *by_kind.entry(kind).or_default() += count;
            if outcome != "ok" && outcome != "cancelled" {
                failed += count;
            }
        }
        let requests: Vec<String> = by_kind.iter().map(|(kind, count)| format!("{kind} {count}")).collect();
        let mut ops: Vec<(&str, &Histogram)> = figures.fuse_latency.iter().map(|(op, h)| (*op, h)).collect();
        ops.sort_by_key(|(_, histogram)| std::cmp::Reverse(histogram.count));
        let ops: Vec<String> = ops
            .iter()
            .take(6)
            .map(|(op, h)| {
                format!(
                    "{op} {} (p50 ≤{} ms, p99 ≤{} ms)",
                    h.count,
                    ms(h.quantile_bound_s(0.5)),
                    ms(h.quantile_bound_s(0.99))
                )
            })
            .collect();
        format!(
            "S3 requests: {} [{}], failed {failed}, retries {}; received {} MB, sent {} MB; FUSE ops: {}; peak resident memory {} MiB",
            by_kind.values().sum::<u64>(),
            requests.join(", "),
            figures.core.retries,
            figures.s3_bytes_in / 1_000_000,
            figures.s3_bytes_out / 1_000_000,
            if ops.is_empty() { "none".into() } else { ops.join(", ") },
            peak_resident_bytes() >> 20,
        )
    }
}

fn ms(seconds: f64) -> String {
    if seconds.is_finite() { format!("{}", seconds * 1e3) } else { "∞".into() }
}

/// Resident memory of this process, from /proc/self/statm.
fn resident_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|field| field.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// Peak resident memory of this process (VmHWM).
fn peak_resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// Binds the metrics endpoint's address (before mounting, so a taken port stops the mount).
pub async fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(address).await
}

/// Reads a request's head (up to the blank line, 4 KiB at most), however the client split it
/// into writes; `None` if the connection ends first.
async fn read_head(stream: &mut tokio::net::TcpStream) -> Option<Vec<u8>> {
    const HEAD_BYTES_MAX: usize = 4096;
    let mut head = Vec::with_capacity(HEAD_BYTES_MAX);
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") && head.len() < HEAD_BYTES_MAX {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return None,
            Ok(read) => head.extend_from_slice(&buffer[..read]),
        }
    }
    Some(head)
}

/// Serves `metrics` over HTTP on `listener` (a loopback address; checked by the plan) until
/// the runtime ends. Any path but `/metrics` and `/` is 404.
pub fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    if let Ok(address) = listener.local_addr() {
        tracing::info!(%address, "serving Prometheus metrics at /metrics");
    }
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let metrics = Arc::clone(&metrics);
            tokio::spawn(async move {
                let Ok(Some(head)) = tokio::time::timeout(Duration::from_secs(5), read_head(&mut stream)).await else {
                    return;
                };
                let request = String::from_utf8_lossy(&head);
                let path = request.split_whitespace().nth(1).unwrap_or("");
                let (status, body) = if path == "/metrics" || path == "/" {
                    ("200 OK", metrics.prometheus_text())
                } else {
                    ("404 Not Found", "not found: ask for /metrics\n".to_owned())
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(reply.as_bytes()).await;
                let _ = stream.shutdown().await;
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use goofys_core::s3_types::{RequestBody, ServiceError};

    use super::*;

    #[test]
    fn histograms_are_cumulative_and_quantiles_give_bucket_bounds() {
        let mut histogram = Histogram::default();
        for micros in [50, 80, 300, 2000] {
            histogram.observe(Duration::from_micros(micros));
        }
        let mut out = String::new();
        histogram.render(&mut out, "x", "op=\"read\"");
        assert!(out.contains("x_bucket{op=\"read\",le=\"0.0001\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{op=\"read\",le=\"0.0025\"} 4\n"), "{out}");
        assert!(out.contains("x_count{op=\"read\"} 4\n"), "{out}");
        assert_eq!(histogram.quantile_bound_s(0.5), 0.0001);
        assert_eq!(histogram.quantile_bound_s(0.99), 0.0025);
    }

    #[test]
    fn requests_are_counted_by_kind_and_outcome_with_bytes() {
        let metrics = Metrics::default();
        let put = S3Request::PutObject {
            key: "k".into(),
            body: RequestBody::from(b"12345".as_slice()),
            content_type: None,
            metadata: Default::default(),
            if_match: None,
            if_none_match_any: false,
        };
        metrics.s3_finished(
            "PutObject",
            &Ok(S3Response::DeleteObject),
            Duration::from_millis(2),
            request_bytes_out(&put),
        );
        let slow = Err(S3Error::Service(ServiceError {
            status: 503,
            code: S3ErrorCode::SlowDown,
            message: String::new(),
            request_id: None,
        }));
        metrics.s3_finished("GetObject", &slow, Duration::from_millis(1), 0);
        metrics.s3_cancelled("GetObject");
        metrics.fuse_replied("read", false, Duration::from_micros(700));
        metrics.set_core(CoreCounters { retries: 1, ..CoreCounters::default() });
        let text = metrics.prometheus_text();
        for line in [
            "goofys_s3_requests_total{kind=\"PutObject\",outcome=\"ok\"} 1",
            "goofys_s3_requests_total{kind=\"GetObject\",outcome=\"throttled\"} 1",
            "goofys_s3_requests_total{kind=\"GetObject\",outcome=\"cancelled\"} 1",
            "goofys_s3_sent_bytes_total 5",
            "goofys_s3_retries_total 1",
            "goofys_fuse_ops_total{op=\"read\",outcome=\"ok\"} 1",
        ] {
            assert!(text.contains(line), "missing {line} in\n{text}");
        }
        let summary = metrics.summary();
        assert!(summary.contains("S3 requests: 3 [GetObject 2, PutObject 1], failed 1, retries 1"), "{summary}");
        assert!(!summary.contains('\n'));
    }

    /// Sends `GET path` to the endpoint and returns the whole answer.
    async fn get(address: SocketAddr, path: &str) -> String {
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        stream.write_all(format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n\r\n").as_bytes()).await.unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        answer
    }

    #[tokio::test]
    async fn the_endpoint_serves_prometheus_text_at_metrics_and_404_elsewhere() {
        let metrics = Arc::new(Metrics::default());
        metrics.fuse_replied("lookup", false, Duration::from_micros(300));
        let listener = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let address = listener.local_addr().unwrap();
        serve(listener, Arc::clone(&metrics));

        let answer = get(address, "/metrics").await;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Type: text/plain; version=0.0.4"), "{head}");
        assert!(head.contains(&format!("Content-Length: {}", body.len())), "{head}");
        assert!(body.contains("# TYPE goofys_fuse_ops_total counter\n"), "{body}");
        assert!(body.contains("goofys_fuse_ops_total{op=\"lookup\",outcome=\"ok\"} 1\n"), "{body}");
        assert!(body.contains("goofys_fuse_op_duration_seconds_count{op=\"lookup\"} 1\n"), "{body}");
        assert!(body.contains("# TYPE goofys_memory_resident_bytes gauge\n"), "{body}");
        // Every line is a comment or `name{labels} value`, as Prometheus parses it.
        for line in body.lines().filter(|line| !line.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').unwrap();
            assert!(value.parse::<f64>().is_ok(), "not a sample: {line}");
        }
        // Figures recorded later show on the next scrape.
        metrics.fuse_replied("lookup", true, Duration::from_micros(300));
        assert!(get(address, "/metrics").await.contains("goofys_fuse_ops_total{op=\"lookup\",outcome=\"error\"} 1\n"));

        assert!(get(address, "/other").await.starts_with("HTTP/1.1 404 Not Found\r\n"));

        // A request head that arrives in pieces is read whole.
        let mut stream = tokio::net::TcpStream::connect(address).await.unwrap();
        for piece in ["GET ", "/metrics", " HTTP/1.1\r\n", "Host: x\r\n", "\r\n"] {
            stream.write_all(piece.as_bytes()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    }
}
