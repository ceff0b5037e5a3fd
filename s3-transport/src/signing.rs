//! AWS Signature Version 4 for built requests, through `aws-sigv4`, with the time passed in so
//! that signatures are reproducible in tests.
//!
//! S3 differs from other AWS services in two ways that matter here: the path is encoded once,
//! not twice, and it is not normalised (`a//b` and `a/./b` are distinct keys). Both are settings
//! below. aws-sigv4 traces the request it signs with every header in the clear (the SSE-C key
//! among them) at TRACE level, so signing runs with tracing silenced.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings, UriPathNormalizationMode,
    sign,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use goofys_core::s3_types::RequestBody;
use sha2::{Digest, Sha256};

/// The service name in the credential scope.
const SERVICE: &str = "s3";

/// How the body is covered by the signature.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PayloadSigning {
    /// `x-amz-content-sha256` is the body's SHA-256: the server can detect a body changed in
    /// transit. Used over plain HTTP, where nothing else protects it.
    Sha256,
    /// `x-amz-content-sha256: UNSIGNED-PAYLOAD`: TLS already protects the body, and hashing
    /// every uploaded byte would cost CPU for nothing.
    Unsigned,
}

impl PayloadSigning {
    /// The choice for an endpoint: unsigned over TLS, hashed over plain HTTP.
    pub fn for_transport(https: bool) -> Self {
        if https { PayloadSigning::Unsigned } else { PayloadSigning::Sha256 }
    }
}

/// Why a request could not be signed.
#[derive(Clone, PartialEq, Eq, Debug, thiserror::Error)]
#[error("cannot sign the request: {0}")]
pub struct SignError(String);

/// The hex SHA-256 of a body sent in several chunks (aws-sigv4 hashes only contiguous bodies).
fn sha256_hex(chunks: &[bytes::Bytes]) -> String {
    let mut hasher = Sha256::new();
    for chunk in chunks {
        hasher.update(chunk);
    }
    hasher.finalize().iter().map(|byte| format!("{byte:02x}")).collect()
}

/// Signs `request` in place for `region` at `time`, adding `Authorization`, `x-amz-date`,
/// `x-amz-content-sha256` and, for temporary credentials, `x-amz-security-token` (marked
/// sensitive, like the signature).
pub fn sign_request(
    request: &mut http::Request<RequestBody>,
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
    payload: PayloadSigning,
) -> Result<(), SignError> {
    tracing::dispatcher::with_default(&tracing::Dispatch::none(), || {
        sign_traced(request, credentials, region, time, payload)
    })
}

/// [`sign_request`] without silencing aws-sigv4's own tracing; tests use it to read the
/// canonical request aws-sigv4 computed.
fn sign_traced(
    request: &mut http::Request<RequestBody>,
    credentials: &Credentials,
    region: &str,
    time: SystemTime,
    payload: PayloadSigning,
) -> Result<(), SignError> {
    let identity: Identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.percent_encoding_mode = PercentEncodingMode::Single;
    settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(SERVICE)
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| SignError(e.to_string()))?
        .into();
    let instructions = {
        let headers = request
            .headers()
            .iter()
            .map(|(name, value)| {
                value
                    .to_str()
                    .map(|value| (name.as_str(), value))
                    .map_err(|_| SignError(format!("header {name} is not ASCII")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let body = match payload {
            PayloadSigning::Sha256 => match request.body().chunks() {
                [] => SignableBody::Bytes(&[]),
                [one] => SignableBody::Bytes(one),
                many => SignableBody::Precomputed(sha256_hex(many)),
            },
            PayloadSigning::Unsigned => SignableBody::UnsignedPayload,
        };
        let uri = request.uri().to_string();
        let signable = SignableRequest::new(request.method().as_str(), uri, headers.into_iter(), body)
            .map_err(|e| SignError(e.to_string()))?;
        let (instructions, _signature) = sign(signable, &params).map_err(|e| SignError(e.to_string()))?.into_parts();
        instructions
    };
    instructions.apply_to_request_http1x(request);
    // aws-sigv4 marks only the session token; the signature is as much a secret to logs.
    for secret in [http::header::AUTHORIZATION.as_str(), "x-amz-security-token"] {
        if let Some(value) = request.headers_mut().get_mut(secret) {
            value.set_sensitive(true);
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use std::time::Duration;

    use goofys_core::s3_types::S3Request;

    use super::*;
    use crate::config::TransportConfig;
    use crate::endpoint::BucketEndpoint;
    use crate::request::build_request;
    use crate::test_support::{FieldCapture, every_request_kind, render_request, snapshot_config, with_dispatch};

    /// 2013-05-24T00:00:00Z, the date of AWS's published SigV4 examples.
    pub(crate) fn fixed_time() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_369_353_600)
    }

    pub(crate) fn fixed_credentials() -> Credentials {
        Credentials::new("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", None, None, "fixed")
    }

    /// Signs `request` and renders the canonical request aws-sigv4 computed, then the signed
    /// request (the Authorization header is sensitive, so its signature is shown separately).
    fn signed_rendering(request: &S3Request, config: &TransportConfig, payload: PayloadSigning) -> String {
        let endpoint = BucketEndpoint::resolve(config, "us-east-1").unwrap();
        let mut http_request = build_request(request, config, &endpoint).unwrap();
        let capture = FieldCapture::default();
        with_dispatch(&capture.dispatch(), || {
            sign_traced(&mut http_request, &fixed_credentials(), "us-east-1", fixed_time(), payload)
        })
        .unwrap();
        let canonical = capture
            .field("canonical_request")
            .unwrap_or_else(|| panic!("aws-sigv4 traces the canonical request; captured {:?}", capture.all()));
        let authorization = http_request.headers()["authorization"].to_str().unwrap();
        format!(
            "--- canonical request\n{canonical}\n--- signed request\n{}--- authorization\n{authorization}\n",
            render_request(&http_request)
        )
    }

    #[test]
    fn canonical_requests_and_signatures_of_every_operation() {
        let config = snapshot_config();
        for (name, request) in every_request_kind() {
            insta::assert_snapshot!(
                format!("sign_{name}"),
                signed_rendering(&request, &config, PayloadSigning::Sha256)
            );
        }
    }

    #[test]
    fn unsigned_payload_over_tls_is_declared_in_the_signature() {
        let config = TransportConfig { bucket: "examplebucket".into(), ..Default::default() };
        let request = S3Request::PutObject {
            key: "test$file.text".into(),
            body: b"Welcome to Amazon S3.".as_slice().into(),
            content_type: None,
            metadata: Default::default(),
            if_match: None,
            if_none_match_any: false,
        };
        let rendered = signed_rendering(&request, &config, PayloadSigning::Unsigned);
        assert!(rendered.contains("x-amz-content-sha256: UNSIGNED-PAYLOAD"), "{rendered}");
        insta::assert_snapshot!(rendered);
    }

    #[test]
    fn a_body_in_chunks_is_signed_as_the_same_bytes_in_one_piece() {
        let uri = "http://127.0.0.1:9000/bucket/key";
        let headers = [("host", "127.0.0.1:9000"), ("content-length", "11")];
        let whole = signature_of("PUT", uri, &headers, b"hello world");
        let parts = ["hel", "lo", " ", "world"].map(|part| bytes::Bytes::from_static(part.as_bytes()));
        let chunked = RequestBody::from_chunks(parts);
        assert_eq!(chunked.chunks().len(), 4);
        assert_eq!(signature_of_chunks("PUT", uri, &headers, chunked), whole);
        assert_ne!(signature_of("PUT", uri, &headers, b"hello worle"), whole, "the body is signed");
    }

    /// Signs a hand-made request and returns the signature.
    fn signature_of(method: &str, uri: &str, headers: &[(&str, &str)], body: &'static [u8]) -> String {
        signature_of_chunks(method, uri, headers, RequestBody::from(body))
    }

    fn signature_of_chunks(method: &str, uri: &str, headers: &[(&str, &str)], body: RequestBody) -> String {
        let mut builder = http::Request::builder().method(method).uri(uri);
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        let mut request = builder.body(body).unwrap();
        sign_request(&mut request, &fixed_credentials(), "us-east-1", fixed_time(), PayloadSigning::Sha256).unwrap();
        let authorization = request.headers()["authorization"].to_str().unwrap();
        authorization.rsplit_once("Signature=").unwrap().1.to_owned()
    }

    /// The three examples of AWS's "Signature Calculations for the Authorization Header"
    /// page for S3, an oracle independent of our own snapshots.
    #[test]
    fn signatures_match_the_examples_aws_publishes_for_s3() {
        assert_eq!(
            signature_of("GET", "https://examplebucket.s3.amazonaws.com/test.txt", &[("range", "bytes=0-9")], b""),
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41"
        );
        assert_eq!(
            signature_of(
                "PUT",
                "https://examplebucket.s3.amazonaws.com/test%24file.text",
                &[("date", "Fri, 24 May 2013 00:00:00 GMT"), ("x-amz-storage-class", "REDUCED_REDUNDANCY"),],
                b"Welcome to Amazon S3."
            ),
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd"
        );
        assert_eq!(
            signature_of("GET", "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J", &[], b""),
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"
        );
    }

    #[test]
    fn session_tokens_are_signed_and_marked_sensitive() {
        let config = snapshot_config();
        let endpoint = BucketEndpoint::resolve(&config, "us-east-1").unwrap();
        let mut request = build_request(&S3Request::HeadObject { key: "k".into() }, &config, &endpoint).unwrap();
        let credentials = Credentials::new("AKID", "SECRET", Some("TOKEN".into()), None, "t");
        sign_request(&mut request, &credentials, "us-east-1", fixed_time(), PayloadSigning::Sha256).unwrap();
        let token = request.headers().get("x-amz-security-token").unwrap();
        assert_eq!(token, "TOKEN");
        assert!(token.is_sensitive());
        assert!(request.headers().get("authorization").unwrap().is_sensitive());
        let authorization = request.headers().get("authorization").unwrap().to_str().unwrap();
        assert!(authorization.contains("x-amz-security-token"), "{authorization}");
    }
}
