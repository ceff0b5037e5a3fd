//! The fuzzing entry point of the reply parsers: a server's answer is the least trusted input
//! the mount reads (a proxy, a buggy server or a hostile one writes it), so no answer may
//! panic, loop or allocate without bound; it may only be an error. [`parse_reply_input`] turns
//! arbitrary bytes into a request kind, a status, headers and a body and runs them through
//! [`parse_response`], [`parse_document`] and [`decode_listed`]. The cargo-fuzz target
//! `s3_xml` in `sim/fuzz` and the stable runner `goofys-fuzz` call it; [`seed_replies`] are
//! well-formed answers for a fuzzer to start from.

use bytes::Bytes;
use goofys_core::s3_types::{ByteRange, CompletedPart, ETag, MetadataDirective, S3Request, UploadId};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use crate::key_encoding::decode_listed;
use crate::response::parse_response;
use crate::xml::parse_document;

/// The request kinds whose replies are parsed, chosen by the input's first byte.
fn request(kind: u8) -> S3Request {
    let key = "k".to_owned();
    let upload_id = UploadId("u".into());
    match kind % 14 {
        0 => S3Request::ListObjectsV2 {
            prefix: String::new(),
            delimiter: Some("/".into()),
            continuation_token: None,
            start_after: None,
            max_keys: 1000,
        },
        1 => S3Request::HeadObject { key },
        2 => S3Request::GetObject { key, range: Some(ByteRange::new(0, 99)), if_match: None },
        3 => S3Request::GetObject { key, range: None, if_match: Some(ETag::new("\"e\"")) },
        4 => S3Request::PutObject {
            key,
            body: Default::default(),
            content_type: None,
            metadata: Default::default(),
            if_match: None,
            if_none_match_any: true,
        },
        5 => S3Request::CreateMultipartUpload { key, content_type: None, metadata: Default::default() },
        6 => S3Request::UploadPart { key, upload_id, part_number: 1, body: Default::default() },
        7 => S3Request::UploadPartCopy {
            key: key.clone(),
            upload_id,
            part_number: 2,
            source_key: key,
            source_range: Some(ByteRange::new(0, 5 << 20)),
            source_if_match: None,
        },
        8 => S3Request::CompleteMultipartUpload {
            key,
            upload_id,
            parts: vec![CompletedPart { part_number: 1, etag: ETag::new("\"p\"") }],
        },
        9 => S3Request::AbortMultipartUpload { key, upload_id },
        10 => S3Request::CopyObject {
            source_key: key.clone(),
            key,
            metadata_directive: MetadataDirective::Copy,
            source_if_match: None,
        },
        11 => S3Request::DeleteObject { key },
        12 => S3Request::DeleteObjects { keys: vec![key, "other".into()] },
        _ => S3Request::ListMultipartUploads { prefix: String::new() },
    }
}

const STATUSES: [u16; 12] = [200, 200, 200, 206, 204, 301, 307, 400, 403, 404, 412, 503];

/// Header names a reply's parser reads.
const HEADER_NAMES: [&str; 8] = [
    "etag",
    "content-length",
    "content-range",
    "last-modified",
    "content-type",
    "x-amz-meta-mode",
    "x-amz-bucket-region",
    "x-amz-request-id",
];

/// Runs one input through the parsers. Layout: byte 0 picks the request, byte 1 the status,
/// byte 2 how many header lines follow (each `name-index value\n`), the rest is the body.
/// Panics only if a parser does.
pub fn parse_reply_input(data: &[u8]) {
    let (Some(&kind), Some(&status)) = (data.first(), data.get(1)) else { return };
    let header_lines = data.get(2).copied().unwrap_or(0) % 6;
    let mut rest = data.get(3..).unwrap_or_default();
    let mut headers = HeaderMap::new();
    for _ in 0..header_lines {
        let (line, after) = match rest.iter().position(|&byte| byte == b'\n') {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => (rest, &[][..]),
        };
        rest = after;
        let Some((&name, value)) = line.split_first() else { continue };
        let name = HeaderName::from_static(HEADER_NAMES[usize::from(name) % HEADER_NAMES.len()]);
        if let Ok(value) = HeaderValue::from_bytes(value) {
            headers.append(name, value);
        }
    }
    let status = StatusCode::from_u16(STATUSES[usize::from(status) % STATUSES.len()]).expect("a valid status");
    let body = Bytes::copy_from_slice(rest);
    let _ = parse_response(&request(kind), status, &headers, body);
    let _ = parse_document(rest);
    if let Ok(text) = std::str::from_utf8(rest) {
        let _ = decode_listed(text);
    }
}

/// Well-formed replies in [`parse_reply_input`]'s layout: the starting corpus.
pub fn seed_replies() -> Vec<Vec<u8>> {
    let reply = |kind: u8, status: u8, headers: &[(u8, &str)], body: &str| {
        let mut input = vec![kind, status, headers.len() as u8];
        for (name, value) in headers {
            input.push(*name);
            input.extend_from_slice(value.as_bytes());
            input.push(b'\n');
        }
        input.extend_from_slice(body.as_bytes());
        input
    };
    vec![
        reply(
            0,
            0,
            &[],
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult><Name>b</Name><Prefix></Prefix>\
             <EncodingType>url</EncodingType><KeyCount>2</KeyCount><MaxKeys>1000</MaxKeys>\
             <IsTruncated>true</IsTruncated><NextContinuationToken>tok</NextContinuationToken>\
             <Contents><Key>a%20b%2Bc</Key><LastModified>2024-05-01T12:00:00.000Z</LastModified>\
             <ETag>&quot;abc&quot;</ETag><Size>12</Size></Contents>\
             <CommonPrefixes><Prefix>dir%2F</Prefix></CommonPrefixes></ListBucketResult>",
        ),
        reply(1, 0, &[(0, "\"etag\""), (1, "42"), (3, "Wed, 01 May 2024 12:00:00 GMT"), (5, "33188")], ""),
        reply(2, 3, &[(0, "\"etag\""), (1, "100"), (2, "bytes 0-99/1000")], "0123456789"),
        reply(4, 0, &[(0, "\"put\"")], ""),
        reply(
            5,
            0,
            &[],
            "<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>xyz</UploadId>\
             </InitiateMultipartUploadResult>",
        ),
        reply(7, 0, &[], "<CopyPartResult><ETag>\"p\"</ETag><LastModified>2024</LastModified></CopyPartResult>"),
        reply(8, 0, &[], "<CompleteMultipartUploadResult><ETag>\"c-2\"</ETag></CompleteMultipartUploadResult>"),
        reply(8, 0, &[], "<Error><Code>InternalError</Code><Message>in a 200</Message></Error>"),
        reply(
            12,
            0,
            &[],
            "<DeleteResult><Deleted><Key>k</Key></Deleted><Error><Key>other</Key><Code>AccessDenied</Code>\
             <Message>no</Message></Error></DeleteResult>",
        ),
        reply(
            13,
            0,
            &[],
            "<ListMultipartUploadsResult><EncodingType>url</EncodingType><Upload><Key>a%2Fb</Key>\
             <UploadId>u1</UploadId><Initiated>2024-05-01T12:00:00.000Z</Initiated></Upload>\
             </ListMultipartUploadsResult>",
        ),
        reply(
            1,
            9,
            &[(7, "req-1")],
            "<Error><Code>NoSuchKey</Code><Message>gone</Message><RequestId>r</RequestId></Error>",
        ),
        reply(0, 5, &[(6, "eu-west-1")], "<Error><Code>PermanentRedirect</Code><Endpoint>x</Endpoint></Error>"),
        reply(0, 11, &[], "<Error><Code>SlowDown</Code><![CDATA[<x>]]><!-- c --></Error>"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_and_its_prefixes_parse_without_a_panic() {
        for seed in seed_replies() {
            for end in 0..=seed.len() {
                parse_reply_input(&seed[..end]);
            }
        }
    }
}
