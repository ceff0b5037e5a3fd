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
//! servers ignore the parameter.

use bytes::Bytes;
use goofys_core::s3_types::{
    DeleteFailure, ETag, GetObjectOutput, ListPage, Metadata, ObjectMeta, ObjectSummary, S3Error,
    S3ErrorCode, S3Request, S3Response, S3Result, ServiceError, TransportError, UploadId,
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
pub fn parse_response(
    request: &S3Request,
    status: StatusCode,
    headers: &HeaderMap,
    body: Bytes,
) -> S3Result {
    if !status.is_success() {
        return Err(S3Error::Service(service_error(
            request, status, headers, &body,
        )));
    }
    match request {
        S3Request::ListObjectsV2 { .. } => parse_list_page(&xml_reply(status, headers, &body)?),
        S3Request::HeadObject { .. } => Ok(S3Response::HeadObject(object_meta(headers, None)?)),
        S3Request::GetObject { .. } => get_output(status, headers, body),
        S3Request::PutObject { .. } => Ok(S3Response::PutObject {
            etag: etag_header(headers)?,
        }),
        S3Request::UploadPart { .. } => Ok(S3Response::UploadPart {
            etag: etag_header(headers)?,
        }),
        S3Request::CreateMultipartUpload { .. } => {
            let root = xml_reply(status, headers, &body)?;
            let upload_id = required_text(&root, "UploadId")?;
            Ok(S3Response::CreateMultipartUpload {
                upload_id: UploadId(upload_id.to_owned()),
            })
        }
        S3Request::UploadPartCopy { .. } => Ok(S3Response::UploadPartCopy {
            etag: etag_element(&xml_reply(status, headers, &body)?)?,
        }),
        S3Request::CompleteMultipartUpload { .. } => Ok(S3Response::CompleteMultipartUpload {
            etag: etag_element(&xml_reply(status, headers, &body)?)?,
        }),
        S3Request::CopyObject { .. } => Ok(S3Response::CopyObject {
            etag: etag_element(&xml_reply(status, headers, &body)?)?,
        }),
        S3Request::AbortMultipartUpload { .. } => Ok(S3Response::AbortMultipartUpload),
        S3Request::DeleteObject { .. } => Ok(S3Response::DeleteObject),
        S3Request::DeleteObjects { .. } => parse_delete_result(&xml_reply(status, headers, &body)?),
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
    element
        .child_text(name)
        .ok_or_else(|| malformed(format_args!("<{}> has no <{name}>", element.name)))
}

fn etag_element(root: &Element) -> Result<ETag, S3Error> {
    Ok(ETag::new(required_text(root, "ETag")?))
}

fn header_text<'h>(
    headers: &'h HeaderMap,
    name: impl http::header::AsHeaderName,
) -> Option<&'h str> {
    headers.get(name).and_then(|value| value.to_str().ok())
}

fn etag_header(headers: &HeaderMap) -> Result<ETag, S3Error> {
    header_text(headers, ETAG)
        .map(ETag::new)
        .ok_or_else(|| malformed("no ETag header"))
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
            metadata.insert(
                short.to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            );
        }
    }
    Ok(ObjectMeta {
        size_bytes,
        etag: etag_header(headers)?,
        last_modified,
        content_type: header_text(headers, CONTENT_TYPE).map(str::to_owned),
        metadata,
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
    let (range_start, total_size_bytes) = if status == StatusCode::PARTIAL_CONTENT {
        let text = header_text(headers, CONTENT_RANGE)
            .ok_or_else(|| malformed("206 without Content-Range"))?;
        let (first, total) = parse_content_range(text)
            .ok_or_else(|| malformed(format_args!("Content-Range `{text}`")))?;
        (first, Some(total))
    } else {
        (0, Some(body.len() as u64))
    };
    Ok(S3Response::GetObject(GetObjectOutput {
        meta: object_meta(headers, total_size_bytes)?,
        range_start,
        body: body.into(),
    }))
}

/// A listed key or prefix, decoded when the reply says it was url-encoded.
fn listed_name(text: &str, url_encoded: bool) -> Result<String, S3Error> {
    if url_encoded {
        decode_listed(text).ok_or_else(|| malformed(format_args!("undecodable key `{text}`")))
    } else {
        Ok(text.to_owned())
    }
}

fn parse_list_page(root: &Element) -> S3Result {
    if root.name != "ListBucketResult" {
        return Err(malformed(format_args!(
            "<{}> instead of <ListBucketResult>",
            root.name
        )));
    }
    let url_encoded = root.child_text("EncodingType") == Some("url");
    let mut page = ListPage::default();
    for contents in root.children_named("Contents") {
        let size_text = required_text(contents, "Size")?;
        let modified_text = required_text(contents, "LastModified")?;
        page.objects.push(ObjectSummary {
            key: listed_name(required_text(contents, "Key")?, url_encoded)?,
            size_bytes: size_text
                .trim()
                .parse()
                .map_err(|_| malformed(format_args!("Size `{size_text}`")))?,
            etag: etag_element(contents)?,
            last_modified: parse_timestamp(
                modified_text,
                aws_smithy_types::date_time::Format::DateTime,
            )
            .ok_or_else(|| malformed(format_args!("LastModified `{modified_text}`")))?,
        });
    }
    for common in root.children_named("CommonPrefixes") {
        page.common_prefixes
            .push(listed_name(required_text(common, "Prefix")?, url_encoded)?);
    }
    if root.child_text("IsTruncated").map(str::trim) == Some("true") {
        let token = required_text(root, "NextContinuationToken")?;
        page.next_continuation_token = Some(token.to_owned());
    }
    Ok(S3Response::ListObjectsV2(page))
}

fn parse_delete_result(root: &Element) -> S3Result {
    if root.name != "DeleteResult" {
        return Err(malformed(format_args!(
            "<{}> instead of <DeleteResult>",
            root.name
        )));
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
        request_id: root
            .child_text("RequestId")
            .or_else(|| header_text(headers, REQUEST_ID_HEADER))
            .map(str::to_owned),
    }
}

/// The error of a non-2xx reply: from its XML body when it has one, otherwise from the
/// `x-amz-error-code` header some servers send with HEAD, otherwise from the status alone.
fn service_error(
    request: &S3Request,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> ServiceError {
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
        message: header_text(headers, "x-amz-error-message")
            .unwrap_or_default()
            .to_owned(),
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
        404 if matches!(
            request,
            S3Request::ListObjectsV2 { .. } | S3Request::DeleteObjects { .. }
        ) =>
        {
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
