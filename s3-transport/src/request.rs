//! Turns the core's [`S3Request`] into an unsigned HTTP request: method, URL with the key
//! percent-encoded, query, headers (conditions, metadata, encryption, storage class, ACL,
//! requester-pays, bucket owner) and body.
//!
//! Pure and deterministic: the same request and configuration always give the same bytes, which
//! the snapshot tests pin down. Signing is a separate step ([`crate::signing`]). Bodies are
//! reference-counted [`Bytes`], moved into the request without a copy.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use goofys_core::s3_types::{ByteRange, ETag, Metadata, MetadataDirective, RequestBody, S3Request, UploadId};
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderName, HeaderValue, IF_MATCH, IF_NONE_MATCH, RANGE};
use http::{HeaderMap, Method};
use md5::{Digest as _, Md5};

use crate::config::{ServerSideEncryption, SseCustomerKey, TransportConfig};
use crate::endpoint::BucketEndpoint;
use crate::key_encoding::{encode_path, encode_query_value};
use crate::xml::escape_text;

/// The product token sent as User-Agent.
pub const USER_AGENT: &str = concat!("goofys-rs/", env!("CARGO_PKG_VERSION"));

/// Why a request cannot be sent as asked. These are the caller's mistakes or values S3 cannot
/// carry; nothing was sent.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
pub enum BuildError {
    /// An empty key would address the bucket itself (DELETE of "" is DeleteBucket).
    #[error("{operation} needs a non-empty key")]
    EmptyKey { operation: &'static str },
    /// S3 keys are at most 1024 bytes of UTF-8.
    #[error("key of {length_bytes} bytes is longer than S3's 1024")]
    KeyTooLong { length_bytes: usize },
    /// A metadata name or value, or a Content-Type, that an HTTP header cannot carry unchanged:
    /// names must be lower-case tokens; values printable ASCII without surrounding spaces.
    #[error("header {name} cannot carry the value given (printable ASCII without leading or trailing spaces only)")]
    UnsendableHeader { name: String },
    /// DeleteObjects sends keys in XML, which cannot carry C0 control characters other than
    /// CR, LF and TAB; delete such a key with DeleteObject.
    #[error("key cannot be written in XML (control character); use DeleteObject for it")]
    KeyNotRepresentableInXml,
    /// DeleteObjects takes 1 to 1000 keys.
    #[error("DeleteObjects takes 1 to 1000 keys, not {count}")]
    DeleteBatchSize { count: usize },
}

const MAX_KEY_BYTES: usize = 1024;
const MAX_DELETE_BATCH: usize = 1000;

const X_AMZ_ACL: &str = "x-amz-acl";
const X_AMZ_COPY_SOURCE: &str = "x-amz-copy-source";
const X_AMZ_COPY_SOURCE_IF_MATCH: &str = "x-amz-copy-source-if-match";
const X_AMZ_COPY_SOURCE_RANGE: &str = "x-amz-copy-source-range";
const X_AMZ_EXPECTED_BUCKET_OWNER: &str = "x-amz-expected-bucket-owner";
const X_AMZ_SOURCE_EXPECTED_BUCKET_OWNER: &str = "x-amz-source-expected-bucket-owner";
const X_AMZ_METADATA_DIRECTIVE: &str = "x-amz-metadata-directive";
const X_AMZ_REQUEST_PAYER: &str = "x-amz-request-payer";
const X_AMZ_SSE: &str = "x-amz-server-side-encryption";
const X_AMZ_SSE_KMS_KEY_ID: &str = "x-amz-server-side-encryption-aws-kms-key-id";
const X_AMZ_STORAGE_CLASS: &str = "x-amz-storage-class";
const X_AMZ_META_PREFIX: &str = "x-amz-meta-";

/// The SSE-C header triple, for the object itself and for the source of a copy.
struct SseCustomerHeaders {
    algorithm: &'static str,
    key: &'static str,
    key_md5: &'static str,
}

const SSE_C: SseCustomerHeaders = SseCustomerHeaders {
    algorithm: "x-amz-server-side-encryption-customer-algorithm",
    key: "x-amz-server-side-encryption-customer-key",
    key_md5: "x-amz-server-side-encryption-customer-key-md5",
};

const SSE_C_COPY_SOURCE: SseCustomerHeaders = SseCustomerHeaders {
    algorithm: "x-amz-copy-source-server-side-encryption-customer-algorithm",
    key: "x-amz-copy-source-server-side-encryption-customer-key",
    key_md5: "x-amz-copy-source-server-side-encryption-customer-key-md5",
};

/// A request being assembled.
struct Draft<'a> {
    config: &'a TransportConfig,
    method: Method,
    /// `None` addresses the bucket; otherwise the raw key.
    key: Option<&'a str>,
    /// Query parameters; a `None` value is sent as a bare name (`?uploads`).
    query: Vec<(&'static str, Option<String>)>,
    headers: HeaderMap,
    body: RequestBody,
}

impl<'a> Draft<'a> {
    fn new(config: &'a TransportConfig, method: Method, key: Option<&'a str>) -> Self {
        Draft { config, method, key, query: Vec::new(), headers: HeaderMap::new(), body: RequestBody::default() }
    }

    fn query(&mut self, name: &'static str, value: impl Into<String>) -> &mut Self {
        self.query.push((name, Some(value.into())));
        self
    }

    fn query_flag(&mut self, name: &'static str) -> &mut Self {
        self.query.push((name, None));
        self
    }

    fn header(&mut self, name: &str, value: &str) -> Result<&mut Self, BuildError> {
        let unsendable = || BuildError::UnsendableHeader { name: name.to_owned() };
        let is_token = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&c);
        if name.is_empty() || !name.bytes().all(is_token) {
            return Err(unsendable());
        }
        let printable = value.bytes().all(|b| (b' '..=b'~').contains(&b));
        if !printable || value.trim() != value {
            return Err(unsendable());
        }
        let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| unsendable())?;
        let value = HeaderValue::from_str(value).map_err(|_| unsendable())?;
        self.headers.insert(name, value);
        Ok(self)
    }

    /// A header whose value must never be shown: `Debug` of the request prints `Sensitive`.
    fn secret_header(&mut self, name: &'static str, value: &str) {
        let mut value = HeaderValue::from_str(value).expect("base64 is a valid header value");
        value.set_sensitive(true);
        self.headers.insert(HeaderName::from_static(name), value);
    }

    fn body(&mut self, body: impl Into<RequestBody>) -> &mut Self {
        self.body = body.into();
        self
    }

    fn if_match(&mut self, name: &str, etag: Option<&ETag>) -> Result<&mut Self, BuildError> {
        if let Some(etag) = etag {
            self.header(name, &etag.quoted())?;
        }
        Ok(self)
    }

    /// Content-Type and `x-amz-meta-*` of a new object.
    fn object_attributes(&mut self, content_type: Option<&str>, metadata: &Metadata) -> Result<&mut Self, BuildError> {
        let guessed;
        let content_type = match (content_type, self.key) {
            (Some(given), _) => Some(given),
            (None, Some(key)) if self.config.use_content_type => {
                guessed = mime_guess::from_path(key).first_raw();
                guessed
            }
            (None, _) => None,
        };
        if let Some(content_type) = content_type {
            self.header(CONTENT_TYPE.as_str(), content_type)?;
        }
        for (name, value) in metadata {
            self.header(&format!("{X_AMZ_META_PREFIX}{name}"), value)?;
        }
        Ok(self)
    }

    /// Encryption, storage class and ACL of a new object (PutObject, CreateMultipartUpload,
    /// CopyObject).
    fn new_object_options(&mut self) -> Result<&mut Self, BuildError> {
        let config = self.config;
        match &config.encryption {
            ServerSideEncryption::BucketDefault | ServerSideEncryption::CustomerKey(_) => {}
            ServerSideEncryption::S3Managed => {
                self.header(X_AMZ_SSE, "AES256")?;
            }
            ServerSideEncryption::Kms { key_id } => {
                self.header(X_AMZ_SSE, "aws:kms")?;
                if let Some(key_id) = key_id {
                    self.header(X_AMZ_SSE_KMS_KEY_ID, key_id)?;
                }
            }
        }
        if let Some(class) = &config.storage_class {
            self.header(X_AMZ_STORAGE_CLASS, class)?;
        }
        if let Some(acl) = &config.canned_acl {
            self.header(X_AMZ_ACL, acl)?;
        }
        self.customer_key(&SSE_C);
        Ok(self)
    }

    /// The SSE-C key headers, when objects are encrypted with a customer key.
    fn customer_key(&mut self, names: &SseCustomerHeaders) -> &mut Self {
        if let Some(key) = self.config.customer_key() {
            self.customer_key_headers(names, key);
        }
        self
    }

    fn customer_key_headers(&mut self, names: &SseCustomerHeaders, key: &SseCustomerKey) {
        self.headers.insert(HeaderName::from_static(names.algorithm), HeaderValue::from_static("AES256"));
        self.secret_header(names.key, &key.base64_key());
        self.secret_header(names.key_md5, &key.base64_key_md5());
    }

    /// Addresses one part of a multipart upload (UploadPart, UploadPartCopy); an SSE-C
    /// upload needs its key with every part.
    fn part(&mut self, upload_id: &UploadId, part_number: u32) -> &mut Self {
        self.query("partNumber", part_number.to_string()).query("uploadId", upload_id.0.as_str()).customer_key(&SSE_C)
    }

    /// `x-amz-copy-source` and its conditions; the source is in the same bucket.
    fn copy_source(&mut self, source_key: &str, source_if_match: Option<&ETag>) -> Result<&mut Self, BuildError> {
        check_key(source_key, "copy source")?;
        let bucket = encode_path(&self.config.bucket);
        self.header(X_AMZ_COPY_SOURCE, &format!("/{bucket}/{}", encode_path(source_key)))?;
        self.if_match(X_AMZ_COPY_SOURCE_IF_MATCH, source_if_match)?;
        if let Some(owner) = &self.config.expected_bucket_owner {
            self.header(X_AMZ_SOURCE_EXPECTED_BUCKET_OWNER, owner)?;
        }
        self.customer_key(&SSE_C_COPY_SOURCE);
        Ok(self)
    }

    fn finish(mut self, endpoint: &BucketEndpoint) -> Result<http::Request<RequestBody>, BuildError> {
        if self.config.requester_pays {
            self.header(X_AMZ_REQUEST_PAYER, "requester")?;
        }
        if let Some(owner) = &self.config.expected_bucket_owner {
            self.header(X_AMZ_EXPECTED_BUCKET_OWNER, owner)?;
        }
        self.headers.insert(http::header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
        if self.method == Method::PUT || self.method == Method::POST {
            self.headers.insert(CONTENT_LENGTH, HeaderValue::from(self.body.len_bytes()));
        }
        self.query.sort_by(|a, b| a.0.cmp(b.0));
        let query = self
            .query
            .iter()
            .map(|(name, value)| match value {
                Some(value) => format!("{name}={}", encode_query_value(value)),
                None => (*name).to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&");
        let encoded_key = self.key.map(encode_path);
        let url = endpoint.url(encoded_key.as_deref(), &query);
        let mut request = http::Request::builder()
            .method(self.method)
            .uri(url)
            .body(self.body)
            .expect("an encoded URL and checked headers always make a request");
        *request.headers_mut() = self.headers;
        Ok(request)
    }
}

fn check_key<'k>(key: &'k str, operation: &'static str) -> Result<&'k str, BuildError> {
    if key.is_empty() {
        return Err(BuildError::EmptyKey { operation });
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(BuildError::KeyTooLong { length_bytes: key.len() });
    }
    Ok(key)
}

/// `Range: bytes=first-last` of a half-open range.
fn range_header(range: &ByteRange) -> String {
    format!("bytes={}-{}", range.start, range.end - 1)
}

fn object_draft<'a>(
    config: &'a TransportConfig,
    method: Method,
    key: &'a str,
    operation: &'static str,
) -> Result<Draft<'a>, BuildError> {
    Ok(Draft::new(config, method, Some(check_key(key, operation)?)))
}

/// Builds the unsigned HTTP request for `request` against `endpoint`.
pub fn build_request<'r>(
    request: &'r S3Request,
    config: &'r TransportConfig,
    endpoint: &BucketEndpoint,
) -> Result<http::Request<RequestBody>, BuildError> {
    let operation = request.operation_name();
    let object = |method: Method, key: &'r str| object_draft(config, method, key, operation);
    let mut draft;
    match request {
        S3Request::ListObjectsV2 { prefix, delimiter, continuation_token, start_after, max_keys } => {
            draft = Draft::new(config, Method::GET, None);
            draft.query("list-type", "2").query("encoding-type", "url").query("max-keys", max_keys.to_string());
            if !prefix.is_empty() {
                draft.query("prefix", prefix.as_str());
            }
            if let Some(delimiter) = delimiter {
                draft.query("delimiter", delimiter.as_str());
            }
            if let Some(token) = continuation_token {
                draft.query("continuation-token", token.as_str());
            }
            if let Some(start_after) = start_after {
                draft.query("start-after", start_after.as_str());
            }
        }
        S3Request::HeadObject { key } => {
            draft = object(Method::HEAD, key)?;
            draft.customer_key(&SSE_C);
        }
        S3Request::GetObject { key, range, if_match } => {
            draft = object(Method::GET, key)?;
            if let Some(range) = range {
                draft.header(RANGE.as_str(), &range_header(range))?;
            }
            draft.if_match(IF_MATCH.as_str(), if_match.as_ref())?;
            draft.customer_key(&SSE_C);
        }
        S3Request::PutObject { key, body, content_type, metadata, if_match, if_none_match_any } => {
            draft = object(Method::PUT, key)?;
            draft
                .object_attributes(content_type.as_deref(), metadata)?
                .new_object_options()?
                .if_match(IF_MATCH.as_str(), if_match.as_ref())?
                .body(body.clone());
            if *if_none_match_any {
                draft.header(IF_NONE_MATCH.as_str(), "*")?;
            }
        }
        S3Request::CreateMultipartUpload { key, content_type, metadata } => {
            draft = object(Method::POST, key)?;
            draft.query_flag("uploads").object_attributes(content_type.as_deref(), metadata)?.new_object_options()?;
        }
        S3Request::UploadPart { key, upload_id, part_number, body } => {
            draft = object(Method::PUT, key)?;
            draft.part(upload_id, *part_number).body(body.clone());
        }
        S3Request::UploadPartCopy { key, upload_id, part_number, source_key, source_range, source_if_match } => {
            draft = object(Method::PUT, key)?;
            draft.part(upload_id, *part_number).copy_source(source_key, source_if_match.as_ref())?;
            if let Some(range) = source_range {
                draft.header(X_AMZ_COPY_SOURCE_RANGE, &range_header(range))?;
            }
        }
        S3Request::CompleteMultipartUpload { key, upload_id, parts } => {
            draft = object(Method::POST, key)?;
            let mut xml = String::from("<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">");
            for part in parts {
                let etag =
                    escape_text(&part.etag.quoted()).ok_or(BuildError::UnsendableHeader { name: "ETag".into() })?;
                xml.push_str(&format!("<Part><PartNumber>{}</PartNumber><ETag>{etag}</ETag></Part>", part.part_number));
            }
            xml.push_str("</CompleteMultipartUpload>");
            draft.query("uploadId", upload_id.0.as_str());
            draft.header(CONTENT_TYPE.as_str(), "application/xml")?;
            draft.body(Bytes::from(xml));
        }
        S3Request::AbortMultipartUpload { key, upload_id } => {
            draft = object(Method::DELETE, key)?;
            draft.query("uploadId", upload_id.0.as_str());
        }
        S3Request::CopyObject { source_key, key, metadata_directive, source_if_match } => {
            draft = object(Method::PUT, key)?;
            draft.copy_source(source_key, source_if_match.as_ref())?;
            match metadata_directive {
                MetadataDirective::Copy => {
                    draft.header(X_AMZ_METADATA_DIRECTIVE, "COPY")?;
                }
                MetadataDirective::Replace { content_type, metadata } => {
                    draft
                        .header(X_AMZ_METADATA_DIRECTIVE, "REPLACE")?
                        .object_attributes(content_type.as_deref(), metadata)?;
                }
            }
            draft.new_object_options()?;
        }
        S3Request::DeleteObject { key } => {
            draft = object(Method::DELETE, key)?;
        }
        S3Request::ListMultipartUploads { prefix } => {
            draft = Draft::new(config, Method::GET, None);
            draft.query_flag("uploads").query("encoding-type", "url");
            if !prefix.is_empty() {
                draft.query("prefix", prefix.as_str());
            }
        }
        S3Request::DeleteObjects { keys } => {
            if keys.is_empty() || keys.len() > MAX_DELETE_BATCH {
                return Err(BuildError::DeleteBatchSize { count: keys.len() });
            }
            let mut xml = String::from("<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>");
            for key in keys {
                check_key(key, operation)?;
                let escaped = escape_text(key).ok_or(BuildError::KeyNotRepresentableInXml)?;
                xml.push_str(&format!("<Object><Key>{escaped}</Key></Object>"));
            }
            xml.push_str("</Delete>");
            let body = Bytes::from(xml);
            draft = Draft::new(config, Method::POST, None);
            draft
                .query_flag("delete")
                .header(CONTENT_TYPE.as_str(), "application/xml")?
                .header("content-md5", &BASE64.encode(Md5::digest(&body)))?
                .body(body);
        }
    }
    draft.finish(endpoint)
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::config::SseCustomerKey;
    use crate::test_support::{every_request_kind, render_request};

    /// A custom endpoint with every object option set.
    fn all_options_config() -> TransportConfig {
        TransportConfig {
            bucket: "bucket".into(),
            endpoint: Some("http://127.0.0.1:8333".into()),
            encryption: ServerSideEncryption::CustomerKey(SseCustomerKey::from_bytes(&[0x42; 32]).unwrap()),
            storage_class: Some("STANDARD_IA".into()),
            canned_acl: Some("bucket-owner-full-control".into()),
            requester_pays: true,
            expected_bucket_owner: Some("111122223333".into()),
            use_content_type: true,
            ..Default::default()
        }
    }

    fn build(request: &S3Request, config: &TransportConfig) -> Result<http::Request<RequestBody>, BuildError> {
        let endpoint = BucketEndpoint::resolve(config, "us-east-1").unwrap();
        build_request(request, config, &endpoint)
    }

    fn url_of(key: &str) -> String {
        let config = TransportConfig {
            bucket: "b".into(),
            endpoint: Some("http://127.0.0.1:9000".into()),
            ..Default::default()
        };
        build(&S3Request::HeadObject { key: key.into() }, &config).unwrap().uri().to_string()
    }

    #[test]
    fn every_operation_with_every_option() {
        let config = all_options_config();
        for (name, request) in every_request_kind() {
            insta::assert_snapshot!(format!("build_{name}"), render_request(&build(&request, &config).unwrap()));
        }
    }

    #[test]
    fn keys_with_special_characters_are_encoded_once_in_the_path() {
        assert_eq!(url_of("sp ace"), "http://127.0.0.1:9000/b/sp%20ace");
        assert_eq!(url_of("a+b"), "http://127.0.0.1:9000/b/a%2Bb");
        assert_eq!(url_of("100%"), "http://127.0.0.1:9000/b/100%25");
        assert_eq!(url_of("q?x#y&z=w"), "http://127.0.0.1:9000/b/q%3Fx%23y%26z%3Dw");
        assert_eq!(url_of("é/中"), "http://127.0.0.1:9000/b/%C3%A9/%E4%B8%AD");
        assert_eq!(url_of("cr\rlf\n"), "http://127.0.0.1:9000/b/cr%0Dlf%0A");
        assert_eq!(url_of("/leading//double/"), "http://127.0.0.1:9000/b//leading//double/");
        // Dot segments are kept: http::Uri does not normalise them (the WHATWG URL parser would).
        assert_eq!(url_of("a/./b/../c"), "http://127.0.0.1:9000/b/a/./b/../c");
        let long = "k".repeat(1024);
        assert_eq!(url_of(&long), format!("http://127.0.0.1:9000/b/{long}"));
        assert_eq!(
            build(&S3Request::HeadObject { key: "k".repeat(1025) }, &all_options_config()).unwrap_err(),
            BuildError::KeyTooLong { length_bytes: 1025 }
        );
    }

    #[test]
    fn copy_sources_name_the_bucket_and_the_encoded_key() {
        let request = S3Request::CopyObject {
            source_key: "src/a b+c?".into(),
            key: "dst".into(),
            metadata_directive: MetadataDirective::Copy,
            source_if_match: None,
        };
        let built = build(&request, &all_options_config()).unwrap();
        assert_eq!(built.headers()[X_AMZ_COPY_SOURCE], "/bucket/src/a%20b%2Bc%3F");
    }

    #[test]
    fn an_empty_key_is_never_sent_because_it_would_address_the_bucket() {
        let config = all_options_config();
        for request in [
            S3Request::DeleteObject { key: String::new() },
            S3Request::HeadObject { key: String::new() },
            S3Request::DeleteObjects { keys: vec!["a".into(), String::new()] },
        ] {
            assert!(matches!(build(&request, &config), Err(BuildError::EmptyKey { .. })), "{request:?}");
        }
    }

    #[test]
    fn delete_batches_are_limited_and_keys_must_fit_in_xml() {
        let config = all_options_config();
        let batch = |keys: Vec<String>| build(&S3Request::DeleteObjects { keys }, &config);
        assert_eq!(batch(vec![]).unwrap_err(), BuildError::DeleteBatchSize { count: 0 });
        assert_eq!(
            batch((0..1001).map(|i| i.to_string()).collect()).unwrap_err(),
            BuildError::DeleteBatchSize { count: 1001 }
        );
        assert!(batch((0..1000).map(|i| i.to_string()).collect()).is_ok());
        assert_eq!(batch(vec!["bell\u{7}".into()]).unwrap_err(), BuildError::KeyNotRepresentableInXml);
    }

    #[test]
    fn delete_objects_carries_the_md5_of_its_body() {
        let built = build(&S3Request::DeleteObjects { keys: vec!["a".into()] }, &all_options_config()).unwrap();
        let md5 = BASE64.encode(Md5::digest(built.body().to_bytes()));
        assert_eq!(built.headers()["content-md5"], md5.as_str());
    }

    #[test]
    fn metadata_and_content_types_that_headers_cannot_carry_are_refused() {
        let put = |content_type: Option<&str>, name: &str, value: &str| S3Request::PutObject {
            key: "k".into(),
            body: RequestBody::default(),
            content_type: content_type.map(Into::into),
            metadata: [(name.to_owned(), value.to_owned())].into(),
            if_match: None,
            if_none_match_any: false,
        };
        let config = all_options_config();
        assert!(build(&put(None, "mtime", "1"), &config).is_ok());
        for (content_type, name, value) in [
            (None, "mtime", "line\nbreak"),
            (None, "mtime", " padded"),
            (None, "mtime", "é"),
            (None, "Upper", "x"),
            (None, "sp ace", "x"),
            (Some("text/plain\r\nx-evil: 1"), "mtime", "1"),
        ] {
            assert!(
                matches!(build(&put(content_type, name, value), &config), Err(BuildError::UnsendableHeader { .. })),
                "{content_type:?} {name:?} {value:?}"
            );
        }
    }

    #[test]
    fn content_type_is_guessed_from_the_extension_only_when_asked_and_not_given() {
        let put = |key: &str, content_type: Option<&str>| S3Request::PutObject {
            key: key.into(),
            body: RequestBody::default(),
            content_type: content_type.map(Into::into),
            metadata: Metadata::new(),
            if_match: None,
            if_none_match_any: false,
        };
        let guessing = all_options_config();
        let content_type = |request: &S3Request, config: &TransportConfig| {
            build(request, config).unwrap().headers().get(CONTENT_TYPE).map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(content_type(&put("a/index.html", None), &guessing).as_deref(), Some("text/html"));
        assert_eq!(content_type(&put("a/index.html", Some("x/y")), &guessing).as_deref(), Some("x/y"));
        assert_eq!(content_type(&put("a/no-extension", None), &guessing), None);
        let not_guessing = TransportConfig { use_content_type: false, ..guessing };
        assert_eq!(content_type(&put("a/index.html", None), &not_guessing), None);
    }

    #[test]
    fn sse_s3_and_kms_go_only_on_requests_that_create_objects() {
        let kms = TransportConfig {
            encryption: ServerSideEncryption::Kms { key_id: Some("arn:aws:kms:key/1".into()) },
            ..all_options_config()
        };
        for (name, request) in every_request_kind() {
            let built = build(&request, &kms).unwrap();
            let creates = matches!(
                request,
                S3Request::PutObject { .. } | S3Request::CreateMultipartUpload { .. } | S3Request::CopyObject { .. }
            );
            assert_eq!(built.headers().contains_key(X_AMZ_SSE), creates, "{name}");
            assert_eq!(built.headers().contains_key(X_AMZ_SSE_KMS_KEY_ID), creates, "{name}");
            assert!(!built.headers().contains_key(SSE_C.key), "{name}");
        }
        let sse_s3 = TransportConfig { encryption: ServerSideEncryption::S3Managed, ..all_options_config() };
        let put = &every_request_kind()[3].1;
        assert_eq!(build(put, &sse_s3).unwrap().headers()[X_AMZ_SSE], "AES256");
    }

    #[test]
    fn sse_c_keys_go_on_every_object_read_and_write_and_are_sensitive() {
        let config = all_options_config();
        for (name, request) in every_request_kind() {
            let built = build(&request, &config).unwrap();
            let needs_key = matches!(
                request,
                S3Request::HeadObject { .. }
                    | S3Request::GetObject { .. }
                    | S3Request::PutObject { .. }
                    | S3Request::CreateMultipartUpload { .. }
                    | S3Request::UploadPart { .. }
                    | S3Request::UploadPartCopy { .. }
                    | S3Request::CopyObject { .. }
            );
            assert_eq!(built.headers().contains_key(SSE_C.key), needs_key, "{name}");
            if let Some(key) = built.headers().get(SSE_C.key) {
                assert!(key.is_sensitive(), "{name}");
                assert!(built.headers()[SSE_C.key_md5].is_sensitive(), "{name}");
            }
            let copies = matches!(request, S3Request::UploadPartCopy { .. } | S3Request::CopyObject { .. });
            assert_eq!(built.headers().contains_key(SSE_C_COPY_SOURCE.key), copies, "{name}");
        }
    }
}
