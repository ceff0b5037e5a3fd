//! A hand-made S3 bucket on 127.0.0.1, for keys no real server will store: `..` segments, empty
//! segments, components over 255 bytes, keys whose listed (url-encoded) form is not UTF-8, and
//! 100,000 keys that would take minutes to PUT.
//!
//! It answers just what a read-only mount asks: ListObjectsV2 (prefix, `/` delimiter, pages of
//! at most 1,000 with continuation tokens, keys and prefixes always url-encoded as S3 does for
//! `encoding-type=url`), HeadObject and GetObject (with a byte range) of the keys it holds, and
//! an empty ListMultipartUploads. Anything else is `501 NotImplemented`. Keys are raw bytes, so
//! the listing can carry what S3 itself never would. Signatures are not checked. Every request
//! is counted by kind, so a test can tell what the mount asked.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::task::JoinHandle;

use crate::loopback_http::serve_on_loopback;

/// The most keys one listing page holds, whatever `max-keys` asks (S3's cap).
const PAGE_KEYS_MAX: usize = 1000;
/// Every object's Last-Modified.
const LAST_MODIFIED_ISO: &str = "2024-05-01T12:00:00.000Z";
const LAST_MODIFIED_HTTP: &str = "Wed, 01 May 2024 12:00:00 GMT";

/// One stored object.
#[derive(Clone, Debug)]
struct Object {
    body: Bytes,
    etag: String,
}

#[derive(Debug)]
struct Bucket {
    name: String,
    /// Keys in byte order, as S3 lists them.
    keys: Vec<Vec<u8>>,
    objects: BTreeMap<Vec<u8>, Object>,
    requests: Mutex<BTreeMap<&'static str, u64>>,
}

/// A running server; stopped (with its connections) on drop.
#[derive(Debug)]
pub struct ListingServer {
    port: u16,
    bucket: Arc<Bucket>,
    task: JoinHandle<()>,
}

impl ListingServer {
    /// Serves `objects` (raw key bytes and body) as bucket `bucket` on a free loopback port.
    /// Call it inside a tokio runtime; it serves on that runtime.
    pub async fn start(bucket: &str, objects: Vec<(Vec<u8>, Bytes)>) -> ListingServer {
        let objects: BTreeMap<Vec<u8>, Object> = objects
            .into_iter()
            .map(|(key, body)| {
                let etag = format!("\"{:016x}{:016x}\"", fnv1a(&body), fnv1a(&key));
                (key, Object { body, etag })
            })
            .collect();
        let bucket = Arc::new(Bucket {
            name: bucket.to_owned(),
            keys: objects.keys().cloned().collect(),
            objects,
            requests: Mutex::new(BTreeMap::new()),
        });
        let serving = Arc::clone(&bucket);
        let (port, task) = serve_on_loopback("the listing server", move || {
            let bucket = Arc::clone(&serving);
            hyper::service::service_fn(move |request| answer(Arc::clone(&bucket), request))
        })
        .await;
        ListingServer { port, bucket, task }
    }

    /// `http://127.0.0.1:<port>`, for `--endpoint` (path-style).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn bucket(&self) -> &str {
        &self.bucket.name
    }

    /// How many requests of `kind` ("ListObjectsV2", "HeadObject", "GetObject", "other") came.
    pub fn requests_of(&self, kind: &str) -> u64 {
        self.bucket.requests.lock().expect("server state").get(kind).copied().unwrap_or(0)
    }
}

impl Drop for ListingServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Reply = Response<Full<Bytes>>;

async fn answer(bucket: Arc<Bucket>, request: Request<Incoming>) -> Result<Reply, std::convert::Infallible> {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = parse_query(request.uri().query().unwrap_or_default());
    let range = request.headers().get(hyper::header::RANGE).and_then(|value| value.to_str().ok()).map(str::to_owned);
    let _ = request.into_body().collect().await;
    let Some(rest) = path.strip_prefix('/').and_then(|rest| rest.strip_prefix(bucket.name.as_str())) else {
        return Ok(error(StatusCode::NOT_FOUND, "NoSuchBucket", &path));
    };
    let key = rest.strip_prefix('/').map(percent_decode);
    let kind = match (&method, &key) {
        (&Method::GET, None | Some(_)) if query.contains_key("list-type") => "ListObjectsV2",
        (&Method::GET, _) if query.contains_key("uploads") => "ListMultipartUploads",
        (&Method::HEAD, Some(key)) if !key.is_empty() => "HeadObject",
        (&Method::GET, Some(key)) if !key.is_empty() => "GetObject",
        _ => "other",
    };
    *bucket.requests.lock().expect("server state").entry(kind).or_default() += 1;
    Ok(match kind {
        "ListObjectsV2" => list(&bucket, &query),
        "ListMultipartUploads" => xml(format!(
            "<ListMultipartUploadsResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Bucket>{}</Bucket>\
             <IsTruncated>false</IsTruncated></ListMultipartUploadsResult>",
            bucket.name
        )),
        "HeadObject" | "GetObject" => {
            let key = key.expect("an object request has a key");
            match bucket.objects.get(&key) {
                Some(object) => object_reply(object, kind == "GetObject", range.as_deref()),
                None if kind == "HeadObject" => empty(StatusCode::NOT_FOUND),
                None => error(StatusCode::NOT_FOUND, "NoSuchKey", &path),
            }
        }
        _ => error(StatusCode::NOT_IMPLEMENTED, "NotImplemented", &path),
    })
}

/// One ListObjectsV2 page.
fn list(bucket: &Bucket, query: &BTreeMap<String, Vec<u8>>) -> Reply {
    let prefix = query.get("prefix").cloned().unwrap_or_default();
    let delimiter = query.get("delimiter").cloned().filter(|d| !d.is_empty());
    let max_keys = query
        .get("max-keys")
        .and_then(|value| std::str::from_utf8(value).ok()?.parse::<usize>().ok())
        .unwrap_or(PAGE_KEYS_MAX)
        .min(PAGE_KEYS_MAX);
    // A token is the hex of what the last page ended with: `k` and a key, or `p` and a prefix.
    let token = query.get("continuation-token").and_then(|token| hex_decode(token));
    let start_after = query.get("start-after").cloned().unwrap_or_default();
    let after = match &token {
        Some(token) => token[1..].to_vec(),
        None => start_after,
    };
    let mut index = bucket.keys.partition_point(|key| key.as_slice() <= after.as_slice());
    if let Some(common) = token.as_ref().filter(|token| token[0] == b'p').map(|token| &token[1..]) {
        // The last page ended with a common prefix: resume after every key under it.
        index = bucket.keys.partition_point(|key| key.as_slice() < common || key.starts_with(common));
    }
    index = index.max(bucket.keys.partition_point(|key| key.as_slice() < prefix.as_slice()));
    let mut entries = String::new();
    let mut count = 0;
    let mut last: Option<Vec<u8>> = None;
    let mut truncated = false;
    while index < bucket.keys.len() {
        let key = &bucket.keys[index];
        if !key.starts_with(&prefix) {
            break;
        }
        if count == max_keys {
            truncated = true;
            break;
        }
        let rest = &key[prefix.len()..];
        let common = delimiter.as_ref().and_then(|delimiter| {
            rest.windows(delimiter.len())
                .position(|window| window == delimiter.as_slice())
                .map(|at| key[..prefix.len() + at + delimiter.len()].to_vec())
        });
        match common {
            Some(common) => {
                entries.push_str(&format!("<CommonPrefixes><Prefix>{}</Prefix></CommonPrefixes>", url_encode(&common)));
                index =
                    bucket.keys.partition_point(|key| key.starts_with(&common) || key.as_slice() < common.as_slice());
                let mut token = vec![b'p'];
                token.extend_from_slice(&common);
                last = Some(token);
            }
            None => {
                let object = &bucket.objects[key];
                entries.push_str(&format!(
                    "<Contents><Key>{}</Key><LastModified>{LAST_MODIFIED_ISO}</LastModified><ETag>{}</ETag>\
                     <Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
                    url_encode(key),
                    object.etag.replace('"', "&quot;"),
                    object.body.len()
                ));
                let mut token = vec![b'k'];
                token.extend_from_slice(key);
                last = Some(token);
                index += 1;
            }
        }
        count += 1;
    }
    // (`max-keys=0` lists nothing and is not truncated: there is no token to continue from.)
    let next = match (truncated, last) {
        (true, Some(last)) => format!("<NextContinuationToken>{}</NextContinuationToken>", hex_encode(&last)),
        _ => {
            truncated = false;
            String::new()
        }
    };
    let delimiter_element = delimiter.map(|d| format!("<Delimiter>{}</Delimiter>", url_encode(&d))).unwrap_or_default();
    xml(format!(
        "<ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>{}</Name>\
         <Prefix>{}</Prefix>{delimiter_element}<EncodingType>url</EncodingType><MaxKeys>{max_keys}</MaxKeys>\
         <KeyCount>{count}</KeyCount><IsTruncated>{truncated}</IsTruncated>{next}{entries}</ListBucketResult>",
        bucket.name,
        url_encode(&prefix),
    ))
}

fn object_reply(object: &Object, with_body: bool, range: Option<&str>) -> Reply {
    let size = object.body.len() as u64;
    let builder = Response::builder()
        .header("ETag", &object.etag)
        .header("Last-Modified", LAST_MODIFIED_HTTP)
        .header("Content-Type", "application/octet-stream");
    let requested = range.and_then(|range| range.strip_prefix("bytes=")).and_then(|range| {
        let (start, end) = range.split_once('-')?;
        let start: u64 = start.parse().ok()?;
        let end: u64 = if end.is_empty() { size.saturating_sub(1) } else { end.parse().ok()? };
        Some((start, end.min(size.saturating_sub(1))))
    });
    match requested {
        Some((start, _)) if start >= size && with_body => error(StatusCode::RANGE_NOT_SATISFIABLE, "InvalidRange", ""),
        Some((start, end)) if with_body => builder
            .status(StatusCode::PARTIAL_CONTENT)
            .header("Content-Range", format!("bytes {start}-{end}/{size}"))
            .header("Content-Length", end - start + 1)
            .body(Full::new(object.body.slice(start as usize..=end as usize)))
            .expect("a valid response"),
        _ => builder
            .header("Content-Length", size)
            .body(Full::new(if with_body { object.body.clone() } else { Bytes::new() }))
            .expect("a valid response"),
    }
}

fn xml(body: String) -> Reply {
    Response::builder()
        .header("Content-Type", "application/xml")
        .body(Full::new(Bytes::from(format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n{body}"))))
        .expect("a valid response")
}

fn empty(status: StatusCode) -> Reply {
    Response::builder().status(status).body(Full::new(Bytes::new())).expect("a valid response")
}

fn error(status: StatusCode, code: &str, resource: &str) -> Reply {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{code}</Message>\
         <Resource>{}</Resource></Error>",
        resource.replace('&', "&amp;").replace('<', "&lt;")
    );
    Response::builder()
        .status(status)
        .header("Content-Type", "application/xml")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

/// Query parameters, values percent-decoded to bytes (a flag has an empty value).
fn parse_query(query: &str) -> BTreeMap<String, Vec<u8>> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (String::from_utf8_lossy(&percent_decode(name)).into_owned(), percent_decode(value))
        })
        .collect()
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let hex = bytes.get(at + 1..at + 3).and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (bytes[at], hex) {
            (b'%', Some(byte)) => {
                decoded.push(byte);
                at += 3;
            }
            (byte, _) => {
                decoded.push(byte);
                at += 1;
            }
        }
    }
    decoded
}

/// S3's `encoding-type=url` form: every byte but unreserved characters and `/` as `%XX`.
fn url_encode(bytes: &[u8]) -> String {
    let mut encoded = String::with_capacity(bytes.len());
    for &byte in bytes {
        if byte.is_ascii_alphanumeric() || b"-_.~/".contains(&byte) {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn hex_encode(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn hex_decode(text: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(text).ok()?;
    let decoded: Option<Vec<u8>> =
        (0..text.len()).step_by(2).map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok()).collect();
    decoded.filter(|decoded| !decoded.is_empty())
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3))
}
