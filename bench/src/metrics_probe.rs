//! Reads goofys-rs' Prometheus endpoint between steps, so the report can say how many S3
//! requests of each kind a step cost (e.g. requests per `ls -l`).

use std::collections::BTreeMap;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::Context as _;

/// The counter of S3 requests, labelled by `kind` and `outcome`.
pub const REQUESTS_METRIC: &str = "goofys_s3_requests_total";

#[derive(Clone, Debug)]
pub struct MetricsProbe {
    /// `127.0.0.1:PORT`.
    pub address: String,
}

impl MetricsProbe {
    /// S3 requests so far by kind (all outcomes).
    pub fn requests(&self) -> anyhow::Result<BTreeMap<String, f64>> {
        Ok(requests_by_kind(&self.scrape()?))
    }

    fn scrape(&self) -> anyhow::Result<String> {
        let mut stream =
            TcpStream::connect(&self.address).with_context(|| format!("connecting to {}", self.address))?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(stream, "GET /metrics HTTP/1.0\r\nHost: {}\r\n\r\n", self.address)?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        Ok(body.to_owned())
    }

    /// What changed between two readings (kinds that did not change are left out).
    pub fn delta(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>) -> BTreeMap<String, f64> {
        after
            .iter()
            .map(|(kind, &count)| (kind.clone(), count - before.get(kind).copied().unwrap_or(0.0)))
            .filter(|&(_, count)| count > 0.0)
            .collect()
    }
}

/// Sums `goofys_s3_requests_total{kind="...",...} N` lines by kind.
fn requests_by_kind(text: &str) -> BTreeMap<String, f64> {
    let mut counts = BTreeMap::new();
    for line in text.lines().filter(|line| line.starts_with(REQUESTS_METRIC)) {
        let Some((labels, value)) = line.rsplit_once(' ') else { continue };
        let Some(kind) = labels.split("kind=\"").nth(1).and_then(|rest| rest.split('"').next()) else { continue };
        if let Ok(value) = value.parse::<f64>() {
            *counts.entry(kind.to_owned()).or_insert(0.0) += value;
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_summed_by_kind_over_outcomes() {
        let text = "# TYPE goofys_s3_requests_total counter\n\
                    goofys_s3_requests_total{kind=\"GetObject\",outcome=\"ok\"} 12\n\
                    goofys_s3_requests_total{kind=\"GetObject\",outcome=\"cancelled\"} 3\n\
                    goofys_s3_requests_total{kind=\"ListObjectsV2\",outcome=\"ok\"} 1\n\
                    goofys_fuse_ops_total{op=\"read\"} 99\n";
        let counts = requests_by_kind(text);
        assert_eq!(counts["GetObject"], 15.0);
        assert_eq!(counts["ListObjectsV2"], 1.0);
        let later = BTreeMap::from([("GetObject".to_owned(), 20.0), ("ListObjectsV2".to_owned(), 1.0)]);
        assert_eq!(MetricsProbe::delta(&counts, &later), BTreeMap::from([("GetObject".to_owned(), 5.0)]));
    }
}
