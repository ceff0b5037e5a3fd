//! Turns an HTTP reply into the core's typed result: listing pages, object metadata from
//! headers, ranged bodies with their Content-Range, ETags from XML, and error replies into
//! [`S3Error::Service`] with S3's code.
//!
//! Three S3 habits need care. HEAD replies have no body, so a HEAD error's code comes from its
//! status (404 → NoSuchKey, 403 → AccessDenied, 412 → PreconditionFailed). CopyObject,
//! UploadPartCopy and CompleteMultipartUpload can answer `200 OK` with an `<Error>` body when they
//! fail after the reply has started; that is an error, reported with the status 200 it came
//! with and the code from the body. Listing keys arrive url-encoded because we ask for
//! `encoding-type=url`; they are decoded only when the reply says it encoded them, since some
//! servers ignore the parameter. A listed key that does not decode to UTF-8 (no S3 key can be
//! such; a broken or hostile server can send one) is left out of the page with a warning, so
//! one bad key cannot make a whole directory unlistable.

use bytes::Bytes;
use goofys_core::s3_types::{
    DeleteFailure, ETag, GetObjectOutput, ListPage, Metadata, MultipartUploadSummary, ObjectMeta, ObjectSummary,
    S3Error, S3ErrorCode, S3Request, S3Response, S3Result, ServiceError, TransportError, UploadId,
};
use goofys_core::time::UnixNanos;
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, LAST_MODIFIED};
use http::{HeaderMap, StatusCode};

use crate::key_encoding::decode_listed;
use crate::xml::{Element, parse_document};

/// The header S3 uses to name the bucket's region, on errors and redirects too.
pub const BUCKET_REGION_HEADER: &str = "x-amz-bucket-region";
const REQUEST_ID_HEADER: &str = "x-amz-request-id";
const META_PREFIX: &str = "x-amz-meta-";

/// Parses the reply to `request`.
pub fn parse_response(request: &S3Request, status: StatusCode, headers: &HeaderMap, body: Bytes) -> S3Result {
    if !status.is_success() {
        return Err(S3Error::Service(service_error(request, status, headers, &body)));
    }
    match request {
        S3Request::ListObjectsV2 { .. } => parse_list_page(&xml_reply(status, headers, &body)?),
        S3Request::HeadObject { .. } => Ok(S3Response::HeadObject(object_meta(headers, None)?)),
        S3Request::GetObject { .. } => get_output(status, headers, body),
        S3Request::PutObject { .. } => Ok(S3Response::PutObject { etag: etag_header(headers)? }),
        S3Request::UploadPart { .. } => Ok(S3Response::UploadPart { etag: etag_header(headers)? }),
        S3Request::CreateMultipartUpload { .. } => {
            let root = xml_reply(status, headers, &body)?;
            let upload_id = required_text(&root, "UploadId")?;
            Ok(S3Response::CreateMultipartUpload { upload_id: UploadId(upload_id.to_owned()) })
        }
        S3Request::UploadPartCopy { .. } => {
            Ok(S3Response::UploadPartCopy { etag: etag_element(&xml_reply(status, headers, &body)?)? })
        }
        S3Request::CompleteMultipartUpload { .. } => {
            Ok(S3Response::CompleteMultipartUpload { etag: etag_element(&xml_reply(status, headers, &body)?)? })
        }
        S3Request::CopyObject { .. } => {
            Ok(S3Response::CopyObject { etag: etag_element(&xml_reply(status, headers, &body)?)? })
        }
        S3Request::AbortMultipartUpload { .. } => Ok(S3Response::AbortMultipartUpload),
        S3Request::DeleteObject { .. } => Ok(S3Response::DeleteObject),
        S3Request::DeleteObjects { .. } => parse_delete_result(&xml_reply(status, headers, &body)?),
        S3Request::ListMultipartUploads { .. } => parse_uploads(&xml_reply(status, headers, &body)?),
    }
}

/// A reply we cannot make sense of. The request may have taken effect.
fn malformed(what: impl std::fmt::Display) -> S3Error {
    S3Error::Transport(TransportError::Other(format!("malformed S3 reply: {what}")))
}

/// The XML root of a successful reply, or the error an `<Error>` root reports.
fn xml_reply(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> Result<Element, S3Error> {
    let root = parse_document(body).map_err(malformed)?;
    if root.name == "Error" {
        return Err(S3Error::Service(error_from_xml(status, headers, &root)));
    }
    Ok(root)
}

fn required_text<'e>(element: &'e Element, name: &str) -> Result<&'e str, S3Error> {
    element.child_text(name).ok_or_else(|| malformed(format_args!("<{}> has no <{name}>", element.name)))
}

fn etag_element(root: &Element) -> Result<ETag, S3Error> {
    Ok(ETag::new(required_text(root, "ETag")?))
}

fn header_text(headers: &HeaderMap, name: impl http::header::AsHeaderName) -> Option<&str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn etag_header(headers: &HeaderMap) -> Result<ETag, S3Error> {
    header_text(headers, ETAG).map(ETag::new).ok_or_else(|| malformed("no ETag header"))
}

fn parse_timestamp(text: &str, format: aws_smithy_types::date_time::Format) -> Option<UnixNanos> {
    let time = aws_smithy_types::DateTime::from_str(text.trim(), format).ok()?;
    let nanos = i128::from(time.secs()) * 1_000_000_000 + i128::from(time.subsec_nanos());
    i64::try_from(nanos).ok().map(UnixNanos)
}

/// Size, ETag, times, type and user metadata from the headers of a HEAD or GET reply. A GET of
/// a range passes the object's total size from Content-Range.
fn object_meta(headers: &HeaderMap, total_size_bytes: Option<u64>) -> Result<ObjectMeta, S3Error> {
    let size_bytes = match total_size_bytes {
        Some(size) => size,
        None => header_text(headers, CONTENT_LENGTH)
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| malformed("no Content-Length"))?,
    };
    let last_modified = match header_text(headers, LAST_MODIFIED) {
        Some(text) => parse_timestamp(text, aws_smithy_types::date_time::Format::HttpDate)
            .ok_or_else(|| malformed(format_args!("Last-Modified `{text}`")))?,
        None => UnixNanos::default(),
    };
    let mut metadata = Metadata::new();
    for (name, value) in headers {
        if let Some(short) = name.as_str().strip_prefix(META_PREFIX) {
            metadata.insert(short.to_owned(), String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
    }
    Ok(ObjectMeta {
        size_bytes,
        etag: etag_header(headers)?,
        last_modified,
        content_type: header_text(headers, CONTENT_TYPE).map(str::to_owned),
        metadata,
        storage_class: header_text(headers, "x-amz-storage-class").map(str::to_owned),
    })
}

/// `bytes first-last/total` → (first, total).
fn parse_content_range(text: &str) -> Option<(u64, u64)> {
    let rest = text.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (first, _last) = range.split_once('-')?;
    Some((first.trim().parse().ok()?, total.trim().parse().ok()?))
}

fn get_output(status: StatusCode, headers: &HeaderMap, body: Bytes) -> S3Result {
    let (meta, range_start) = get_head(status, headers, body.len() as u64)?;
    Ok(S3Response::GetObject(GetObjectOutput { meta, range_start, body: body.into() }))
}

/// What the headers of a successful GetObject reply say: the object's metadata and the offset
/// of the body's first byte (for a ranged reply, from Content-Range). `body_len_bytes` is the
/// body's length (Content-Length when the body is streamed): a whole-object reply's size.
pub fn get_head(status: StatusCode, headers: &HeaderMap, body_len_bytes: u64) -> Result<(ObjectMeta, u64), S3Error> {
    let (range_start, total_size_bytes) = if status == StatusCode::PARTIAL_CONTENT {
        let text = header_text(headers, CONTENT_RANGE).ok_or_else(|| malformed("206 without Content-Range"))?;
        let (first, total) =
            parse_content_range(text).ok_or_else(|| malformed(format_args!("Content-Range `{text}`")))?;
        (first, Some(total))
    } else {
        (0, Some(body_len_bytes))
    };
    Ok((object_meta(headers, total_size_bytes)?, range_start))
}

/// A listed key or prefix, decoded when the reply says it was url-encoded; `None` (and a
/// warning) when it does not decode to UTF-8.
fn listed_name(text: &str, url_encoded: bool) -> Option<String> {
    if !url_encoded {
        return Some(text.to_owned());
    }
    let decoded = decode_listed(text);
    if decoded.is_none() {
        tracing::warn!(key = text, "the server listed a key that is not UTF-8; leaving it out");
    }
    decoded
}

fn parse_list_page(root: &Element) -> S3Result {
    if root.name != "ListBucketResult" {
        return Err(malformed(format_args!("<{}> instead of <ListBucketResult>", root.name)));
    }
    let url_encoded = root.child_text("EncodingType") == Some("url");
    let mut page = ListPage::default();
    for contents in root.children_named("Contents") {
        let size_text = required_text(contents, "Size")?;
        let modified_text = required_text(contents, "LastModified")?;
        let Some(key) = listed_name(required_text(contents, "Key")?, url_encoded) else { continue };
        page.objects.push(ObjectSummary {
            key,
            size_bytes: size_text.trim().parse().map_err(|_| malformed(format_args!("Size `{size_text}`")))?,
            etag: etag_element(contents)?,
            last_modified: parse_timestamp(modified_text, aws_smithy_types::date_time::Format::DateTime)
                .ok_or_else(|| malformed(format_args!("LastModified `{modified_text}`")))?,
        });
    }
    for common in root.children_named("CommonPrefixes") {
        page.common_prefixes.extend(listed_name(required_text(common, "Prefix")?, url_encoded));
    }
    if root.child_text("IsTruncated").map(str::trim) == Some("true") {
        let token = required_text(root, "NextContinuationToken")?;
        page.next_continuation_token = Some(token.to_owned());
    }
    Ok(S3Response::ListObjectsV2(page))
}

fn parse_uploads(root: &Element) -> S3Result {
    if root.name != "ListMultipartUploadsResult" {
        return Err(malformed(format_args!("<{}> instead of <ListMultipartUploadsResult>", root.name)));
    }
    let url_encoded = root.child_text("EncodingType") == Some("url");
    let mut uploads = Vec::new();
    for upload in root.children_named("Upload") {
        let upload_id = UploadId(required_text(upload, "UploadId")?.to_owned());
        // An upload of a key that is not UTF-8 cannot be one of ours.
        if let Some(key) = listed_name(required_text(upload, "Key")?, url_encoded) {
            uploads.push(MultipartUploadSummary { key, upload_id });
        }
    }
    Ok(S3Response::ListMultipartUploads { uploads })
}

fn parse_delete_result(root: &Element) -> S3Result {
    if root.name != "DeleteResult" {
        return Err(malformed(format_args!("<{}> instead of <DeleteResult>", root.name)));
    }
    let failed = root
        .children_named("Error")
        .map(|error| {
            Ok(DeleteFailure {
                key: required_text(error, "Key")?.to_owned(),
                code: S3ErrorCode::from_code(error.child_text("Code").unwrap_or_default()),
                message: error.child_text("Message").unwrap_or_default().to_owned(),
            })
        })
        .collect::<Result<_, S3Error>>()?;
    Ok(S3Response::DeleteObjects { failed })
}

fn error_from_xml(status: StatusCode, headers: &HeaderMap, root: &Element) -> ServiceError {
    ServiceError {
        status: status.as_u16(),
        code: S3ErrorCode::from_code(root.child_text("Code").unwrap_or_default()),
        message: root.child_text("Message").unwrap_or_default().to_owned(),
        request_id: root.child_text("RequestId").or_else(|| header_text(headers, REQUEST_ID_HEADER)).map(str::to_owned),
    }
}

/// The error of a non-2xx reply: from its XML body when it has one, otherwise from the
/// `x-amz-error-code` header some servers send with HEAD, otherwise from the status alone.
fn service_error(request: &S3Request, status: StatusCode, headers: &HeaderMap, body: &[u8]) -> ServiceError {
    if let Ok(root) = parse_document(body)
        && root.name == "Error"
    {
        return error_from_xml(status, headers, &root);
    }
    let code = match header_text(headers, "x-amz-error-code") {
        Some(code) => S3ErrorCode::from_code(code),
        None => code_from_status(request, status),
    };
    ServiceError {
        status: status.as_u16(),
        code,
        message: header_text(headers, "x-amz-error-message").unwrap_or_default().to_owned(),
        request_id: header_text(headers, REQUEST_ID_HEADER).map(str::to_owned),
    }
}

/// The code S3 would have put in the body, for replies that have none.
fn code_from_status(request: &S3Request, status: StatusCode) -> S3ErrorCode {
    match status.as_u16() {
        301 => S3ErrorCode::PermanentRedirect,
        304 => S3ErrorCode::NotModified,
        400 => S3ErrorCode::InvalidRequest,
        403 => S3ErrorCode::AccessDenied,
        404 if matches!(request, S3Request::ListObjectsV2 { .. } | S3Request::DeleteObjects { .. }) => {
            S3ErrorCode::NoSuchBucket
        }
        404 => S3ErrorCode::NoSuchKey,
        412 => S3ErrorCode::PreconditionFailed,
        416 => S3ErrorCode::InvalidRange,
        500 => S3ErrorCode::InternalError,
        503 => S3ErrorCode::SlowDown,
        other => S3ErrorCode::Other(format!("HTTP{other}")),
    }
}

#[cfg(test)]
mod tests {
    use goofys_core::s3_types::{Body, ByteRange, MetadataDirective, RequestBody};

    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        map
    }

    fn list() -> S3Request {
        S3Request::ListObjectsV2 {
            prefix: String::new(),
            delimiter: Some("/".into()),
            continuation_token: None,
            start_after: None,
            max_keys: 1000,
        }
    }

    fn head() -> S3Request {
        S3Request::HeadObject { key: "k".into() }
    }

    fn get(range: Option<ByteRange>) -> S3Request {
        S3Request::GetObject { key: "k".into(), range, if_match: None }
    }

    fn copy() -> S3Request {
        S3Request::CopyObject {
            source_key: "a".into(),
            key: "b".into(),
            metadata_directive: MetadataDirective::Copy,
            source_if_match: None,
        }
    }

    fn parse(request: &S3Request, status: u16, header_pairs: &[(&str, &str)], body: &'static str) -> S3Result {
        parse_response(
            request,
            StatusCode::from_u16(status).unwrap(),
            &headers(header_pairs),
            Bytes::from_static(body.as_bytes()),
        )
    }

    const LIST_PAGE_URL_ENCODED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Name>examplebucket</Name>
  <Prefix>photos%2F</Prefix>
  <KeyCount>4</KeyCount>
  <MaxKeys>3</MaxKeys>
  <Delimiter>%2F</Delimiter>
  <IsTruncated>true</IsTruncated>
  <EncodingType>url</EncodingType>
  <ContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</ContinuationToken>
  <NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwN=</NextContinuationToken>
  <Contents>
    <Key>photos/a+b%2Bc.jpg</Key>
    <LastModified>2009-10-12T17:50:30.000Z</LastModified>
    <ETag>&quot;fba9dede5f27731c9771645a39863328&quot;</ETag>
    <Size>434234</Size>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
  <Contents>
    <Key>photos/cr%0Dlf%0A%25%C3%A9</Key>
    <LastModified>2024-02-29T23:59:59.123Z</LastModified>
    <ETag>"3857f8b6d4f2b5cac1a84bcbb2b5d9e3-12"</ETag>
    <Size>0</Size>
    <StorageClass>STANDARD</StorageClass>
  </Contents>
  <CommonPrefixes><Prefix>photos/2006%2F</Prefix></CommonPrefixes>
  <CommonPrefixes><Prefix>photos/with+space/</Prefix></CommonPrefixes>
</ListBucketResult>"#;

    #[test]
    fn list_page_with_url_encoded_keys_prefixes_and_a_continuation_token() {
        insta::assert_debug_snapshot!(parse(&list(), 200, &[], LIST_PAGE_URL_ENCODED));
    }

    #[test]
    fn list_page_from_a_server_that_ignored_encoding_type_is_taken_literally() {
        let page = parse(
            &list(),
            200,
            &[],
            r#"<ListBucketResult><IsTruncated>false</IsTruncated>
<Contents><Key>a+b%20c</Key><LastModified>2024-01-01T00:00:00Z</LastModified><ETag>"x"</ETag><Size>1</Size></Contents>
</ListBucketResult>"#,
        );
        let Ok(S3Response::ListObjectsV2(page)) = page else {
            panic!("{page:?}");
        };
        assert_eq!(page.objects[0].key, "a+b%20c");
        assert_eq!(page.next_continuation_token, None);
    }

    #[test]
    fn a_listed_key_or_prefix_that_is_not_utf8_is_left_out_not_the_whole_page() {
        let page = parse(
            &list(),
            200,
            &[],
            r#"<ListBucketResult><IsTruncated>false</IsTruncated><EncodingType>url</EncodingType>
<Contents><Key>d/bad%FF%FE</Key><LastModified>2024-01-01T00:00:00Z</LastModified><ETag>"x"</ETag><Size>1</Size></Contents>
<Contents><Key>d/good%C3%A9</Key><LastModified>2024-01-01T00:00:00Z</LastModified><ETag>"y"</ETag><Size>2</Size></Contents>
<CommonPrefixes><Prefix>d/%C0%AF/</Prefix></CommonPrefixes>
<CommonPrefixes><Prefix>d/sub/</Prefix></CommonPrefixes>
</ListBucketResult>"#,
        );
        let Ok(S3Response::ListObjectsV2(page)) = page else {
            panic!("{page:?}");
        };
        let keys: Vec<&str> = page.objects.iter().map(|object| object.key.as_str()).collect();
        assert_eq!(keys, ["d/good\u{e9}"]);
        assert_eq!(page.common_prefixes, ["d/sub/"]);
    }

    #[test]
    fn a_truncated_list_without_a_token_is_malformed_not_the_end() {
        let result = parse(&list(), 200, &[], "<ListBucketResult><IsTruncated>true</IsTruncated></ListBucketResult>");
        assert!(matches!(result, Err(S3Error::Transport(TransportError::Other(_)))), "{result:?}");
    }

    #[test]
    fn head_reply_headers_become_object_metadata() {
        insta::assert_debug_snapshot!(parse(
            &head(),
            200,
            &[
                ("content-length", "434234"),
                ("etag", "\"fba9dede5f27731c9771645a39863328\""),
                ("last-modified", "Wed, 12 Oct 2009 17:50:00 GMT"),
                ("content-type", "image/jpeg"),
                ("x-amz-meta-mtime", "1700000000"),
                ("x-amz-meta-mode", "0644"),
                ("x-amz-request-id", "318BC8BC148832E5"),
            ],
            ""
        ));
    }

    #[test]
    fn ranged_get_takes_offset_and_total_size_from_content_range() {
        let result = parse_response(
            &get(Some(ByteRange::new(10, 20))),
            StatusCode::PARTIAL_CONTENT,
            &headers(&[
                ("content-length", "10"),
                ("content-range", "bytes 10-19/1048576"),
                ("etag", "\"abc-3\""),
                ("last-modified", "Wed, 12 Oct 2009 17:50:00 GMT"),
            ]),
            Bytes::from_static(b"0123456789"),
        );
        let Ok(S3Response::GetObject(output)) = result else {
            panic!("{result:?}");
        };
        assert_eq!(output.range_start, 10);
        assert_eq!(output.meta.size_bytes, 1_048_576);
        assert_eq!(output.meta.etag.as_str(), "abc-3");
        assert_eq!(output.body, Body::from(b"0123456789".as_slice()));
    }

    #[test]
    fn whole_get_reports_the_body_length_as_size() {
        let result = parse(&get(None), 200, &[("content-length", "3"), ("etag", "\"e\"")], "abc");
        let Ok(S3Response::GetObject(output)) = result else {
            panic!("{result:?}");
        };
        assert_eq!((output.range_start, output.meta.size_bytes), (0, 3));
    }

    #[test]
    fn multipart_and_copy_results_carry_their_etags() {
        let create =
            S3Request::CreateMultipartUpload { key: "k".into(), content_type: None, metadata: Metadata::new() };
        let complete =
            S3Request::CompleteMultipartUpload { key: "k".into(), upload_id: UploadId("u".into()), parts: vec![] };
        let part_copy = S3Request::UploadPartCopy {
            key: "k".into(),
            upload_id: UploadId("u".into()),
            part_number: 1,
            source_key: "s".into(),
            source_range: None,
            source_if_match: None,
        };
        insta::assert_debug_snapshot!([
            parse(
                &create,
                200,
                &[],
                r#"<?xml version="1.0" encoding="UTF-8"?>
<InitiateMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Bucket>example-bucket</Bucket>
  <Key>example-object</Key>
  <UploadId>VXBsb2FkIElEIGZvciA2aWWpbmcncyBteS1tb3ZpZS5tMnRzIHVwbG9hZA</UploadId>
</InitiateMultipartUploadResult>"#
            ),
            parse(
                &complete,
                200,
                &[],
                r#"<?xml version="1.0" encoding="UTF-8"?>
<CompleteMultipartUploadResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Location>http://Example-Bucket.s3.amazonaws.com/Example-Object</Location>
  <Bucket>Example-Bucket</Bucket>
  <Key>Example-Object</Key>
  <ETag>"3858f62230ac3c915f300c664312c11f-9"</ETag>
</CompleteMultipartUploadResult>"#
            ),
            parse(
                &copy(),
                200,
                &[],
                r#"<CopyObjectResult>
   <LastModified>2009-10-12T17:50:30.000Z</LastModified>
   <ETag>"9b2cf535f27731c974343645a3985328"</ETag>
</CopyObjectResult>"#
            ),
            parse(
                &part_copy,
                200,
                &[],
                r#"<CopyPartResult>
   <LastModified>2009-10-28T22:32:00</LastModified>
   <ETag>"9b2cf535f27731c974343645a3985328"</ETag>
</CopyPartResult>"#
            ),
        ]);
    }

    #[test]
    fn an_error_inside_a_200_reply_to_a_copy_is_an_error() {
        let result = parse(
            &copy(),
            200,
            &[],
            r#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message><RequestId>656c76696e6727732072657175657374</RequestId></Error>"#,
        );
        insta::assert_debug_snapshot!(result);
    }

    #[test]
    fn delete_objects_result_lists_the_keys_that_failed() {
        let request = S3Request::DeleteObjects { keys: vec!["sample1.txt".into(), "sample2.txt".into()] };
        insta::assert_debug_snapshot!(parse(
            &request,
            200,
            &[],
            r#"<?xml version="1.0" encoding="UTF-8"?>
<DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
  <Deleted><Key>sample1.txt</Key></Deleted>
  <Error>
    <Key>sample2.txt</Key>
    <Code>AccessDenied</Code>
    <Message>Access Denied</Message>
  </Error>
  <Error>
    <Key>a&amp;b</Key>
    <Code>InternalError</Code>
    <Message>We encountered an internal error. Please try again.</Message>
  </Error>
</DeleteResult>"#
        ));
    }

    #[test]
    fn error_bodies_become_typed_service_errors() {
        let error_body = |code: &str, message: &str| {
            format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>{message}</Message>\
                 <Resource>/mybucket/myfoto.jpg</Resource><RequestId>4442587FB7D0A2F9</RequestId></Error>"
            )
        };
        let cases = [
            (404, "NoSuchKey", "The specified key does not exist."),
            (404, "NoSuchBucket", "The specified bucket does not exist"),
            (404, "NoSuchUpload", "The specified upload does not exist."),
            (403, "AccessDenied", "Access Denied"),
            (
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            ),
            (403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records."),
            (400, "ExpiredToken", "The provided token has expired."),
            (412, "PreconditionFailed", "At least one of the preconditions you specified did not hold."),
            (416, "InvalidRange", "The requested range is not satisfiable"),
            (503, "SlowDown", "Please reduce your request rate."),
            (500, "InternalError", "We encountered an internal error. Please try again."),
            (400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed object size."),
            (
                301,
                "PermanentRedirect",
                "The bucket you are attempting to access must be addressed using the specified endpoint.",
            ),
            (400, "AuthorizationHeaderMalformed", "the region 'us-east-1' is wrong; expecting 'eu-west-1'"),
        ];
        let parsed: Vec<_> = cases
            .iter()
            .map(|(status, code, message)| {
                parse_response(
                    &get(None),
                    StatusCode::from_u16(*status).unwrap(),
                    &HeaderMap::new(),
                    Bytes::from(error_body(code, message)),
                )
            })
            .collect();
        insta::assert_debug_snapshot!(parsed);
    }

    #[test]
    fn bodiless_head_errors_take_their_code_from_the_status() {
        let codes: Vec<_> = [404u16, 403, 412, 304, 416, 503, 500, 400, 301, 418]
            .into_iter()
            .map(|status| match parse(&head(), status, &[("x-amz-request-id", "R1")], "") {
                Err(S3Error::Service(error)) => (status, error.code, error.request_id),
                other => panic!("{other:?}"),
            })
            .collect();
        insta::assert_debug_snapshot!(codes);
        // A bodiless 404 to a listing means the bucket is missing.
        assert!(matches!(
            parse(&list(), 404, &[], ""),
            Err(S3Error::Service(ServiceError { code: S3ErrorCode::NoSuchBucket, .. }))
        ));
        // Some servers name the code in a header.
        assert!(matches!(
            parse(&head(), 404, &[("x-amz-error-code", "NoSuchBucket")], ""),
            Err(S3Error::Service(ServiceError { code: S3ErrorCode::NoSuchBucket, .. }))
        ));
    }

    #[test]
    fn a_non_xml_error_page_still_gives_a_typed_error() {
        let result = parse(&get(None), 502, &[("content-type", "text/html")], "<html><body>Bad Gateway</body></html>");
        assert!(
            matches!(
                result,
                Err(S3Error::Service(ServiceError { status: 502, code: S3ErrorCode::Other(ref code), .. })) if code == "HTTP502"
            ),
            "{result:?}"
        );
    }

    #[test]
    fn replies_missing_what_the_operation_returns_are_malformed() {
        let put = S3Request::PutObject {
            key: "k".into(),
            body: RequestBody::default(),
            content_type: None,
            metadata: Metadata::new(),
            if_match: None,
            if_none_match_any: false,
        };
        for (request, body) in [(put, ""), (copy(), "<CopyObjectResult/>"), (list(), "not xml")] {
            let result = parse(&request, 200, &[], body);
            assert!(matches!(result, Err(S3Error::Transport(TransportError::Other(_)))), "{result:?}");
        }
    }
}
