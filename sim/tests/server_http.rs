//! The embedded S3 server over real HTTP: SigV4-signed requests from an independent signer
//! (aws-sigv4) through hyper, checked against S3's wire behaviour.

use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings, UriPathNormalizationMode,
    sign,
};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use goofys_sim::s3_model::{ModelLimits, S3Model};
use goofys_sim::server::ServerHandle;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use md5::{Digest, Md5};

const BUCKET: &str = "demo";
const ACCESS_KEY: &str = "demo-access-key";
const SECRET_KEY: &str = "demo-secret-key";
const PART_BYTES: usize = 16;

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|value| value.to_str().ok()).unwrap_or("")
    }
}

/// Signs requests the way an S3 SDK does (SigV4 in headers, signed payload hash).
struct SignedClient {
    endpoint: String,
    access_key: String,
    secret_key: String,
    http: Client<HttpConnector, Full<Bytes>>,
}

impl SignedClient {
    fn new(endpoint: &str, access_key: &str, secret_key: &str) -> Self {
        SignedClient {
            endpoint: endpoint.to_owned(),
            access_key: access_key.to_owned(),
            secret_key: secret_key.to_owned(),
            http: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// `path_and_query` is already URL-encoded, e.g. `/demo/key?uploads`.
    async fn send(&self, method: Method, path_and_query: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        let uri = format!("{}{}", self.endpoint, path_and_query);
        let mut request = http::Request::builder().method(method.clone()).uri(&uri);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let mut request = request.body(Full::new(Bytes::copy_from_slice(body))).expect("a valid request");
        let identity = Credentials::new(&self.access_key, &self.secret_key, None, None, "test").into();
        let mut settings = SigningSettings::default();
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("s3")
            .time(SystemTime::now())
            .settings(settings)
            .build()
            .expect("signing parameters")
            .into();
        let header_pairs: Vec<(&str, &str)> = headers.to_vec();
        let signable =
            SignableRequest::new(method.as_str(), uri.as_str(), header_pairs.into_iter(), SignableBody::Bytes(body))
                .expect("a signable request");
        let (instructions, _signature) = sign(signable, &params).expect("signing").into_parts();
        instructions.apply_to_request_http1x(&mut request);
        self.send_unsigned(request).await
    }

    async fn send_unsigned(&self, request: http::Request<Full<Bytes>>) -> Reply {
        let response = self.http.request(request).await.expect("an HTTP reply");
        let (parts, body) = response.into_parts();
        let body = body.collect().await.expect("a whole body").to_bytes();
        Reply { status: parts.status, headers: parts.headers, body }
    }
}

/// The text of every `<tag>...</tag>` in `xml`, in order.
fn xml_values(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    let mut values = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        let after = &rest[start + open.len()..];
        let end = after.find(&close).expect("a closed tag");
        values.push(after[..end].to_owned());
        rest = &after[end + close.len()..];
    }
    values
}

fn quoted_md5(bytes: &[u8]) -> String {
    let digest = Md5::digest(bytes);
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("\"{hex}\"")
}

async fn start_server() -> (ServerHandle, Arc<Mutex<S3Model>>) {
    let model = Arc::new(Mutex::new(S3Model::with_limits(ModelLimits {
        min_part_size_bytes: PART_BYTES as u64,
        ..ModelLimits::default()
    })));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a loopback port");
    let server =
        ServerHandle::spawn(listener, BUCKET, ACCESS_KEY, SECRET_KEY, Arc::clone(&model)).expect("the server starts");
    (server, model)
}

#[tokio::test]
async fn objects_round_trip_over_signed_http() {
    let (server, model) = start_server().await;
    let client = SignedClient::new(&server.endpoint_url(), ACCESS_KEY, SECRET_KEY);

    // PUT with metadata and content type; the ETag is the quoted MD5.
    let body = b"0123456789abcdef";
    let put = client
        .send(
            Method::PUT,
            "/demo/dir/with%20space.txt",
            &[("content-type", "text/plain"), ("x-amz-meta-mtime", "12345")],
            body,
        )
        .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text());
    assert_eq!(put.header("etag"), quoted_md5(body));
    let stored = model.lock().expect("model").object("dir/with space.txt").cloned();
    assert_eq!(stored.expect("the model holds the object").body, Bytes::from_static(body));

    // GET whole and ranged.
    let get = client.send(Method::GET, "/demo/dir/with%20space.txt", &[], b"").await;
    assert_eq!((get.status, get.body.as_ref()), (StatusCode::OK, &body[..]));
    let ranged = client.send(Method::GET, "/demo/dir/with%20space.txt", &[("range", "bytes=2-5")], b"").await;
    assert_eq!(ranged.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(ranged.body.as_ref(), b"2345");
    assert_eq!(ranged.header("content-range"), "bytes 2-5/16");
    let past_end = client.send(Method::GET, "/demo/dir/with%20space.txt", &[("range", "bytes=16-20")], b"").await;
    assert_eq!(past_end.status, StatusCode::RANGE_NOT_SATISFIABLE);
    assert!(past_end.text().contains("<Code>InvalidRange</Code>"), "{}", past_end.text());

    // HEAD reports size, ETag, content type and metadata.
    let head = client.send(Method::HEAD, "/demo/dir/with%20space.txt", &[], b"").await;
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.header("content-length"), "16");
    assert_eq!(head.header("etag"), quoted_md5(body));
    assert_eq!(head.header("content-type"), "text/plain");
    assert_eq!(head.header("x-amz-meta-mtime"), "12345");

    // Conditions and missing keys.
    let stale = client.send(Method::GET, "/demo/dir/with%20space.txt", &[("if-match", "\"0000\"")], b"").await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    let stale_head = client.send(Method::HEAD, "/demo/dir/with%20space.txt", &[("if-match", "\"0000\"")], b"").await;
    assert_eq!(stale_head.status, StatusCode::PRECONDITION_FAILED);
    let etag = quoted_md5(body);
    let unchanged = client.send(Method::GET, "/demo/dir/with%20space.txt", &[("if-none-match", &etag)], b"").await;
    assert_eq!(unchanged.status, StatusCode::NOT_MODIFIED);
    let create_only = client.send(Method::PUT, "/demo/dir/with%20space.txt", &[("if-none-match", "*")], b"x").await;
    assert_eq!(create_only.status, StatusCode::PRECONDITION_FAILED);
    let missing = client.send(Method::GET, "/demo/missing", &[], b"").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert!(missing.text().contains("<Code>NoSuchKey</Code>"), "{}", missing.text());
    let missing_head = client.send(Method::HEAD, "/demo/missing", &[], b"").await;
    assert_eq!(missing_head.status, StatusCode::NOT_FOUND);

    // Another bucket does not exist here.
    let other = client.send(Method::GET, "/other/key", &[], b"").await;
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert!(other.text().contains("<Code>NoSuchBucket</Code>"), "{}", other.text());
    let head_bucket = client.send(Method::HEAD, "/demo", &[], b"").await;
    assert_eq!(head_bucket.status, StatusCode::OK);

    // Delete is idempotent.
    for _ in 0..2 {
        let delete = client.send(Method::DELETE, "/demo/dir/with%20space.txt", &[], b"").await;
        assert_eq!(delete.status, StatusCode::NO_CONTENT, "{}", delete.text());
    }
    assert_eq!(model.lock().expect("model").objects().count(), 0);

    server.shutdown().await.expect("a clean shutdown");
}

#[tokio::test]
async fn listing_pages_with_delimiter_and_continuation_tokens() {
    let (server, _model) = start_server().await;
    let client = SignedClient::new(&server.endpoint_url(), ACCESS_KEY, SECRET_KEY);
    for key in ["a/1", "a/2", "b", "c/1", "d"] {
        let put = client.send(Method::PUT, &format!("/demo/{key}"), &[], b"x").await;
        assert_eq!(put.status, StatusCode::OK, "{}", put.text());
    }
    let mut keys = Vec::new();
    let mut prefixes = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut query = "/demo?list-type=2&delimiter=%2F&max-keys=2".to_owned();
        if let Some(token) = &token {
            query.push_str(&format!("&continuation-token={token}"));
        }
        let page = client.send(Method::GET, &query, &[], b"").await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text());
        let xml = page.text();
        pages += 1;
        keys.extend(xml_values(&xml, "Key"));
        prefixes.extend(xml_values(&xml, "Prefix").into_iter().filter(|p| !p.is_empty()));
        assert_eq!(xml_values(&xml, "KeyCount"), ["2"]);
        token = xml_values(&xml, "NextContinuationToken").pop();
        let truncated = xml_values(&xml, "IsTruncated");
        assert_eq!(truncated, [if token.is_some() { "true" } else { "false" }]);
        if token.is_none() {
            break;
        }
    }
    assert_eq!(pages, 2);
    assert_eq!(keys, ["b", "d"]);
    assert_eq!(prefixes, ["a/", "c/"]);
    server.shutdown().await.expect("a clean shutdown");
}

#[tokio::test]
async fn multipart_upload_completes_with_an_md5_of_md5s_etag() {
    let (server, model) = start_server().await;
    let client = SignedClient::new(&server.endpoint_url(), ACCESS_KEY, SECRET_KEY);
    let create = client.send(Method::POST, "/demo/big?uploads", &[], b"").await;
    assert_eq!(create.status, StatusCode::OK, "{}", create.text());
    let upload_id = xml_values(&create.text(), "UploadId").pop().expect("an upload id");

    let parts: [&[u8]; 2] = [&[b'a'; PART_BYTES], b"tail"];
    let mut etags = Vec::new();
    for (number, part) in (1..).zip(parts) {
        let path = format!("/demo/big?partNumber={number}&uploadId={upload_id}");
        let reply = client.send(Method::PUT, &path, &[], part).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reply.header("etag"), quoted_md5(part));
        etags.push(reply.header("etag").to_owned());
    }
    assert_eq!(model.lock().expect("model").uploads_in_progress(), 1);

    let mut complete_xml = String::from("<CompleteMultipartUpload>");
    for (number, etag) in (1..).zip(&etags) {
        complete_xml.push_str(&format!("<Part><PartNumber>{number}</PartNumber><ETag>{etag}</ETag></Part>"));
    }
    complete_xml.push_str("</CompleteMultipartUpload>");
    let path = format!("/demo/big?uploadId={upload_id}");
    let complete = client.send(Method::POST, &path, &[], complete_xml.as_bytes()).await;
    assert_eq!(complete.status, StatusCode::OK, "{}", complete.text());
    let mut binary_md5s = Vec::new();
    for part in parts {
        binary_md5s.extend_from_slice(&Md5::digest(part));
    }
    let expected = quoted_md5(&binary_md5s).replace("\"", "");
    let completed_etag = xml_values(&complete.text(), "ETag").pop().expect("an ETag");
    assert_eq!(completed_etag.replace("&quot;", "").replace('"', ""), format!("{expected}-2"));

    let get = client.send(Method::GET, "/demo/big", &[], b"").await;
    assert_eq!(get.body.len(), PART_BYTES + 4);

    // The upload is gone: a retried complete or a late part is NoSuchUpload.
    let retried = client.send(Method::POST, &path, &[], complete_xml.as_bytes()).await;
    assert_eq!(retried.status, StatusCode::NOT_FOUND);
    assert!(retried.text().contains("<Code>NoSuchUpload</Code>"), "{}", retried.text());
    server.shutdown().await.expect("a clean shutdown");
}

#[tokio::test]
async fn requests_without_the_right_signature_are_rejected() {
    let (server, model) = start_server().await;
    let endpoint = server.endpoint_url();

    let wrong_secret = SignedClient::new(&endpoint, ACCESS_KEY, "not-the-secret");
    let listed = wrong_secret.send(Method::GET, "/demo?list-type=2", &[], b"").await;
    assert_eq!(listed.status, StatusCode::FORBIDDEN);
    assert!(listed.text().contains("SignatureDoesNotMatch"), "{}", listed.text());
    let put = wrong_secret.send(Method::PUT, "/demo/evil", &[], b"x").await;
    assert_eq!(put.status, StatusCode::FORBIDDEN);

    let unknown_key = SignedClient::new(&endpoint, "nobody", SECRET_KEY);
    let listed = unknown_key.send(Method::GET, "/demo?list-type=2", &[], b"").await;
    assert_eq!(listed.status, StatusCode::FORBIDDEN);

    let anonymous = http::Request::builder()
        .method(Method::PUT)
        .uri(format!("{endpoint}/demo/evil"))
        .body(Full::new(Bytes::from_static(b"x")))
        .expect("a valid request");
    let reply = wrong_secret.send_unsigned(anonymous).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);

    assert_eq!(model.lock().expect("model").objects().count(), 0, "nothing was stored");
    server.shutdown().await.expect("a clean shutdown");
}

#[tokio::test]
async fn copies_and_batch_deletes_over_http() {
    let (server, model) = start_server().await;
    let client = SignedClient::new(&server.endpoint_url(), ACCESS_KEY, SECRET_KEY);
    let source = b"0123456789abcdefghij";
    let put = client.send(Method::PUT, "/demo/src", &[("x-amz-meta-mtime", "1")], source).await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.text());

    // CreateBucket of the served bucket succeeds, as AWS us-east-1 answers its owner.
    let create = client.send(Method::PUT, "/demo", &[], b"").await;
    assert_eq!(create.status, StatusCode::OK, "{}", create.text());

    // CopyObject keeps or replaces metadata and honours the source If-Match.
    let copy = client.send(Method::PUT, "/demo/copy", &[("x-amz-copy-source", "/demo/src")], b"").await;
    assert_eq!(copy.status, StatusCode::OK, "{}", copy.text());
    let copied = client.send(Method::HEAD, "/demo/copy", &[], b"").await;
    assert_eq!(copied.header("x-amz-meta-mtime"), "1");
    let replaced = client
        .send(
            Method::PUT,
            "/demo/copy",
            &[("x-amz-copy-source", "/demo/src"), ("x-amz-metadata-directive", "REPLACE"), ("x-amz-meta-mtime", "2")],
            b"",
        )
        .await;
    assert_eq!(replaced.status, StatusCode::OK, "{}", replaced.text());
    let head = client.send(Method::HEAD, "/demo/copy", &[], b"").await;
    assert_eq!(head.header("x-amz-meta-mtime"), "2");
    let stale = client
        .send(
            Method::PUT,
            "/demo/copy2",
            &[("x-amz-copy-source", "/demo/src"), ("x-amz-copy-source-if-match", "\"0000\"")],
            b"",
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);

    // UploadPartCopy copies a source range into a part.
    let create = client.send(Method::POST, "/demo/assembled?uploads", &[], b"").await;
    let upload_id = xml_values(&create.text(), "UploadId").pop().expect("an upload id");
    let path = format!("/demo/assembled?partNumber=1&uploadId={upload_id}");
    let part = client
        .send(Method::PUT, &path, &[("x-amz-copy-source", "/demo/src"), ("x-amz-copy-source-range", "bytes=2-17")], b"")
        .await;
    assert_eq!(part.status, StatusCode::OK, "{}", part.text());
    let part_etag = xml_values(&part.text(), "ETag").pop().expect("a part ETag");
    assert_eq!(part_etag.replace("&quot;", "\""), quoted_md5(&source[2..18]));
    let complete_xml = format!(
        "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>{}</ETag></Part></CompleteMultipartUpload>",
        quoted_md5(&source[2..18])
    );
    let path = format!("/demo/assembled?uploadId={upload_id}");
    let complete = client.send(Method::POST, &path, &[], complete_xml.as_bytes()).await;
    assert_eq!(complete.status, StatusCode::OK, "{}", complete.text());
    let assembled = model.lock().expect("model").object("assembled").map(|o| o.body.clone());
    assert_eq!(assembled.as_deref(), Some(&source[2..18]));

    // DeleteObjects reports missing keys as deleted.
    let delete_xml = "<Delete><Object><Key>src</Key></Object><Object><Key>never</Key></Object></Delete>";
    let content_md5 = base64_md5(delete_xml.as_bytes());
    let deleted =
        client.send(Method::POST, "/demo?delete", &[("content-md5", &content_md5)], delete_xml.as_bytes()).await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text());
    let mut keys = xml_values(&deleted.text(), "Key");
    keys.sort();
    assert_eq!(keys, ["never", "src"]);
    assert!(model.lock().expect("model").object("src").is_none());
    server.shutdown().await.expect("a clean shutdown");
}

fn base64_md5(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let digest = Md5::digest(bytes);
    let bits: String = digest.iter().map(|byte| format!("{byte:08b}")).collect::<String>() + "00";
    let mut out: String = bits
        .as_bytes()
        .chunks(6)
        .map(|six| {
            let index = six.iter().fold(0, |acc, bit| acc * 2 + usize::from(bit - b'0'));
            char::from(ALPHABET[index])
        })
        .collect();
    out.push_str("==");
    out
}
