//! An in-memory S3 bucket with a real server's semantics, for the simulator and the demo server.
//!
//! The simulator needs an S3 that answers every [`S3Request`] the core can emit exactly as AWS S3
//! would (status codes, error codes, ETags, listing order and paging), yet is pure, synchronous
//! and deterministic so that a run replays bit for bit from its seed. [`S3Model::apply`] is that
//! S3: it takes the time as an argument, reads no clock, does no IO and never iterates a
//! `HashMap`. The behaviour follows S3Proxy's in-memory store, with AWS S3 as the authority where
//! the two differ.
//!
//! The rules, each checked by a unit test named after it:
//! - Objects live in a `BTreeMap`, so listings come out in UTF-8 byte order (Rust's `String`
//!   order). A "directory" is only a key prefix: nothing of it survives its last object, as on
//!   AWS. (SeaweedFS differs: its filer keeps empty directories and still lists the prefix.)
//! - ListObjectsV2: prefix, delimiter and CommonPrefixes, `max_keys` counting objects and common
//!   prefixes together, `start_after`, and opaque but deterministic continuation tokens. A page
//!   carries a token exactly when more entries remain. Listings seek in the map; they never scan
//!   keys outside the page.
//! - GetObject: a range is served as a slice of the stored body (no copy); a range starting at or
//!   past the end is 416 `InvalidRange`; a range running past the end is clipped. `If-Match`
//!   that does not hold is 412, checked before the range.
//! - PutObject: `If-None-Match: *` on an existing key is 412; `If-Match` that does not hold is
//!   412, and `If-Match` on a missing key is 404 `NoSuchKey`.
//! - ETags: the hex MD5 of the body for PutObject and CopyObject; `hex(md5(part md5s))-N` for a
//!   multipart upload of N parts. MD5 is computed on writes only.
//! - Multipart uploads: deterministic upload ids; a part number is 1..=`max_parts` and
//!   re-uploading it replaces it; CompleteMultipartUpload checks ascending order
//!   (`InvalidPartOrder`), that every named part exists with that ETag (`InvalidPart`) and that
//!   every part but the last has at least `min_part_size_bytes` (`EntityTooSmall`). A completed
//!   or aborted upload is gone: later calls with its id get 404 `NoSuchUpload` (so a retried
//!   CompleteMultipartUpload that already succeeded fails, which the simulator relies on).
//! - CopyObject copies or replaces the metadata, honours `x-amz-copy-source-if-match`, and
//!   refuses to copy an object onto itself without a metadata change (400 `InvalidRequest`).
//! - DeleteObject is idempotent; DeleteObjects takes at most 1000 keys and reports missing keys
//!   as deleted.
//!
//! HeadObject in [`S3Request`] carries no `If-Match`; [`check_if_match`] is the rule the HTTP
//! front applies to a HEAD that does.
//!
//! Where servers disagree, the model does what AWS does:
//! - A prefix vanishes with its last object (SeaweedFS keeps it).
//! - Conditional PUT is enforced (Garage ignores `If-None-Match`/`If-Match` on PUT).
//! - Non-last parts under the minimum are refused (Garage and ministack accept them).
//! - UploadPart after AbortMultipartUpload is `NoSuchUpload` (moto answers 500, s3s-fs 403).
//! - `x-amz-copy-source-if-match` is honoured (moto ignores it).
//! - A multipart object's Last-Modified is the time its upload was initiated, as AWS documents;
//!   S3Proxy and most local servers use the completion time.
//! - A copy-source range past the source's end is 400 `InvalidArgument` (some servers say 416).
//! - Part numbers in CompleteMultipartUpload must be strictly ascending: a repeated number is
//!   `InvalidPartOrder`.
//! - A retried CompleteMultipartUpload of a completed upload is `NoSuchUpload` (S3Proxy; AWS may
//!   briefly repeat the success, which a client cannot rely on either way).
//! - `max_keys = 0` gives an empty page with no continuation token.
//! - The content type is stored as sent (`None` if absent); the HTTP front reports S3's default.
//!
//! One choice is not confirmed against AWS: a `start_after` inside a common prefix (`d/1`, with
//! `d/2` stored) still reports that prefix (`d/`), because the keys after `start_after` are
//! what gets grouped; moto instead drops a common prefix that sorts before `start_after`.

use std::collections::BTreeMap;
use std::ops::Bound;

use bytes::{Bytes, BytesMut};
use goofys_core::UnixNanos;
use goofys_core::s3_types::{
    Body, ByteRange, CompletedPart, ETag, GetObjectOutput, ListPage, Metadata, MetadataDirective,
    MultipartUploadSummary, ObjectMeta, ObjectSummary, S3Error, S3ErrorCode, S3Request, S3Response, S3Result,
    ServiceError, UploadId,
};
use md5::{Digest, Md5};

/// The longest key S3 accepts, in bytes of UTF-8.
pub const MAX_KEY_LEN_BYTES: usize = 1024;

/// The most keys one DeleteObjects request may name.
pub const MAX_KEYS_PER_DELETE: usize = 1000;

/// The limits a real S3 server enforces. Tests may lower them to keep bodies small.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModelLimits {
    /// The smallest size of every part but the last of a multipart upload (AWS: 5 MiB).
    pub min_part_size_bytes: u64,
    /// The highest part number, and so the most parts of one upload (AWS: 10,000).
    pub max_parts: u32,
    /// The most entries (objects and common prefixes) of one listing page (AWS: 1000).
    pub max_keys_per_page: u32,
}

impl Default for ModelLimits {
    fn default() -> Self {
        ModelLimits { min_part_size_bytes: 5 * 1024 * 1024, max_parts: 10_000, max_keys_per_page: 1000 }
    }
}

/// One object in the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    pub body: Bytes,
    pub etag: ETag,
    pub last_modified: UnixNanos,
    pub content_type: Option<String>,
    pub metadata: Metadata,
}

impl StoredObject {
    pub fn size_bytes(&self) -> u64 {
        self.body.len() as u64
    }

    fn meta(&self) -> ObjectMeta {
        ObjectMeta {
            size_bytes: self.size_bytes(),
            etag: self.etag.clone(),
            last_modified: self.last_modified,
            content_type: self.content_type.clone(),
            metadata: self.metadata.clone(),
            storage_class: None,
        }
    }

    fn summary(&self, key: &str) -> ObjectSummary {
        ObjectSummary {
            key: key.to_owned(),
            size_bytes: self.size_bytes(),
            etag: self.etag.clone(),
            last_modified: self.last_modified,
        }
    }
}

/// A part uploaded to a multipart upload. The binary MD5 is kept for the final ETag.
#[derive(Clone, Debug)]
struct UploadedPart {
    body: Bytes,
    md5: [u8; 16],
    etag: ETag,
}

impl UploadedPart {
    fn new(body: Bytes) -> Self {
        let md5 = md5_of(&body);
        UploadedPart { body, etag: ETag::new(hex(&md5)), md5 }
    }
}

/// A multipart upload between CreateMultipartUpload and Complete/Abort.
#[derive(Clone, Debug)]
struct MultipartUpload {
    key: String,
    content_type: Option<String>,
    metadata: Metadata,
    /// AWS gives the completed object the time the upload was initiated as its Last-Modified.
    initiated: UnixNanos,
    parts: BTreeMap<u32, UploadedPart>,
}

/// An in-memory S3 bucket. See the module documentation for the rules it follows.
#[derive(Clone, Debug, Default)]
pub struct S3Model {
    limits: ModelLimits,
    objects: BTreeMap<String, StoredObject>,
    /// Uploads in progress, by upload id.
    uploads: BTreeMap<String, MultipartUpload>,
    /// How many uploads were ever created; the next upload id is derived from it.
    uploads_created: u64,
}

impl S3Model {
    /// An empty bucket with AWS's limits.
    pub fn new() -> Self {
        Self::with_limits(ModelLimits::default())
    }

    /// An empty bucket with the given limits.
    pub fn with_limits(limits: ModelLimits) -> Self {
        S3Model { limits, ..S3Model::default() }
    }

    pub fn limits(&self) -> ModelLimits {
        self.limits
    }

    /// Executes one request at time `now`, with the whole of S3's semantics.
    pub fn apply(&mut self, now: UnixNanos, request: &S3Request) -> S3Result {
        match request {
            S3Request::ListObjectsV2 { prefix, delimiter, continuation_token, start_after, max_keys } => self
                .list_objects_v2(
                    prefix,
                    delimiter.as_deref(),
                    continuation_token.as_deref(),
                    start_after.as_deref(),
                    *max_keys,
                )
                .map(S3Response::ListObjectsV2),
            S3Request::HeadObject { key } => Ok(S3Response::HeadObject(self.existing(key)?.meta())),
            S3Request::GetObject { key, range, if_match } => {
                self.get_object(key, *range, if_match.as_ref()).map(S3Response::GetObject)
            }
            S3Request::PutObject { key, body, content_type, metadata, if_match, if_none_match_any } => {
                validate_key(key)?;
                if let Some(condition) = if_match {
                    check_if_match(Some(condition), &self.existing(key)?.etag)?;
                }
                if *if_none_match_any && self.objects.contains_key(key) {
                    return Err(precondition_failed());
                }
                let etag = self.store_single_part(now, key, body.to_bytes(), content_type.clone(), metadata.clone());
                Ok(S3Response::PutObject { etag })
            }
            S3Request::CreateMultipartUpload { key, content_type, metadata } => {
                validate_key(key)?;
                self.uploads_created += 1;
                let upload_id = format!("upload-{:08}", self.uploads_created);
                let upload = MultipartUpload {
                    key: key.clone(),
                    content_type: content_type.clone(),
                    metadata: metadata.clone(),
                    initiated: now,
                    parts: BTreeMap::new(),
                };
                self.uploads.insert(upload_id.clone(), upload);
                Ok(S3Response::CreateMultipartUpload { upload_id: UploadId(upload_id) })
            }
            S3Request::UploadPart { key, upload_id, part_number, body } => {
                let part = UploadedPart::new(body.to_bytes());
                let etag = self.store_part(key, upload_id, *part_number, part)?;
                Ok(S3Response::UploadPart { etag })
            }
            S3Request::UploadPartCopy { key, upload_id, part_number, source_key, source_range, source_if_match } => {
                self.upload(key, upload_id)?;
                let source = self.existing(source_key)?;
                check_if_match(source_if_match.as_ref(), &source.etag)?;
                let body = match source_range {
                    None => source.body.clone(),
                    Some(range) => {
                        if range.end > source.size_bytes() {
                            return Err(invalid_argument(format!(
                                "Range specified is not valid for source object of size: {}",
                                source.size_bytes()
                            )));
                        }
                        source.body.slice(range.start as usize..range.end as usize)
                    }
                };
                let part = UploadedPart::new(body);
                let etag = self.store_part(key, upload_id, *part_number, part)?;
                Ok(S3Response::UploadPartCopy { etag })
            }
            S3Request::CompleteMultipartUpload { key, upload_id, parts } => self
                .complete_multipart_upload(key, upload_id, parts)
                .map(|etag| S3Response::CompleteMultipartUpload { etag }),
            S3Request::AbortMultipartUpload { key, upload_id } => {
                self.upload(key, upload_id)?;
                self.uploads.remove(&upload_id.0);
                Ok(S3Response::AbortMultipartUpload)
            }
            S3Request::CopyObject { source_key, key, metadata_directive, source_if_match } => self
                .copy_object(now, source_key, key, metadata_directive, source_if_match.as_ref())
                .map(|etag| S3Response::CopyObject { etag }),
            S3Request::DeleteObject { key } => {
                self.objects.remove(key);
                Ok(S3Response::DeleteObject)
            }
            S3Request::ListMultipartUploads { prefix } => {
                // Ordered by key, then by upload id (uploads of one key in creation order), as
                // AWS orders them; one page of up to 1000.
                let mut uploads: Vec<MultipartUploadSummary> = self
                    .uploads
                    .iter()
                    .filter(|(_, upload)| upload.key.starts_with(prefix.as_str()))
                    .map(|(id, upload)| MultipartUploadSummary {
                        key: upload.key.clone(),
                        upload_id: UploadId(id.clone()),
                    })
                    .collect();
                uploads.sort_by(|a, b| (&a.key, &a.upload_id.0).cmp(&(&b.key, &b.upload_id.0)));
                uploads.truncate(1000);
                Ok(S3Response::ListMultipartUploads { uploads })
            }
            S3Request::DeleteObjects { keys } => {
                if keys.is_empty() || keys.len() > MAX_KEYS_PER_DELETE {
                    return Err(malformed_xml());
                }
                for key in keys {
                    self.objects.remove(key);
                }
                Ok(S3Response::DeleteObjects { failed: Vec::new() })
            }
        }
    }

    /// Another client puts an object (no content type, no metadata). Returns its ETag.
    pub fn put_object(&mut self, now: UnixNanos, key: &str, body: Bytes) -> ETag {
        self.store_single_part(now, key, body, None, Metadata::new())
    }

    /// Another client deletes an object. Returns whether it existed.
    pub fn delete_object(&mut self, key: &str) -> bool {
        self.objects.remove(key).is_some()
    }

    pub fn object(&self, key: &str) -> Option<&StoredObject> {
        self.objects.get(key)
    }

    /// Every object, in key (UTF-8 byte) order.
    pub fn objects(&self) -> impl Iterator<Item = (&str, &StoredObject)> {
        self.objects.iter().map(|(key, object)| (key.as_str(), object))
    }

    /// Multipart uploads neither completed nor aborted.
    pub fn uploads_in_progress(&self) -> usize {
        self.uploads.len()
    }

    fn existing(&self, key: &str) -> Result<&StoredObject, S3Error> {
        self.objects.get(key).ok_or_else(no_such_key)
    }

    fn store_single_part(
        &mut self,
        now: UnixNanos,
        key: &str,
        body: Bytes,
        content_type: Option<String>,
        metadata: Metadata,
    ) -> ETag {
        let etag = ETag::new(hex(&md5_of(&body)));
        self.insert_object(key, now, body, etag, content_type, metadata)
    }

    /// Stores an object (replacing any with that key) and returns its ETag.
    fn insert_object(
        &mut self,
        key: &str,
        last_modified: UnixNanos,
        body: Bytes,
        etag: ETag,
        content_type: Option<String>,
        metadata: Metadata,
    ) -> ETag {
        let object = StoredObject { body, etag: etag.clone(), last_modified, content_type, metadata };
        self.objects.insert(key.to_owned(), object);
        etag
    }

    fn list_objects_v2(
        &self,
        prefix: &str,
        delimiter: Option<&str>,
        continuation_token: Option<&str>,
        start_after: Option<&str>,
        max_keys: u32,
    ) -> Result<ListPage, S3Error> {
        // AWS treats an empty delimiter as none.
        let delimiter = delimiter.filter(|delimiter| !delimiter.is_empty());
        let page_size = max_keys.min(self.limits.max_keys_per_page) as usize;
        // The token, when present, decides where to resume; StartAfter is then ignored.
        let mut resume_at = match continuation_token {
            Some(token) => decode_continuation_token(token)?,
            None => start_after.map(key_successor).unwrap_or_default(),
        };
        if resume_at.as_str() < prefix {
            resume_at = prefix.to_owned();
        }
        let prefix_end = prefix_successor(prefix);
        let mut page = ListPage::default();
        if page_size == 0 {
            // AWS answers MaxKeys=0 with an empty, untruncated page.
            return Ok(page);
        }
        'seek: loop {
            if prefix_end.as_deref().is_some_and(|end| resume_at.as_str() >= end) {
                break;
            }
            let upper = prefix_end.as_deref().map_or(Bound::Unbounded, Bound::Excluded);
            let entries = self.objects.range::<str, _>((Bound::Included(resume_at.as_str()), upper));
            for (key, object) in entries {
                if page.objects.len() + page.common_prefixes.len() == page_size {
                    // `key` is the first entry of the next page (an object, or the first key of
                    // a common prefix), so resuming at it inclusively loses nothing.
                    page.next_continuation_token = Some(encode_continuation_token(key));
                    break 'seek;
                }
                match delimiter.and_then(|delimiter| common_prefix(key, prefix, delimiter)) {
                    Some(common) => {
                        page.common_prefixes.push(common.to_owned());
                        // Seek past every key under this common prefix.
                        match prefix_successor(common) {
                            Some(next) => {
                                resume_at = next;
                                continue 'seek;
                            }
                            None => break 'seek,
                        }
                    }
                    None => page.objects.push(object.summary(key)),
                }
            }
            break;
        }
        Ok(page)
    }

    fn get_object(
        &self,
        key: &str,
        range: Option<ByteRange>,
        if_match: Option<&ETag>,
    ) -> Result<GetObjectOutput, S3Error> {
        let object = self.existing(key)?;
        // Preconditions are evaluated before the range (RFC 9110 §13.2.2).
        check_if_match(if_match, &object.etag)?;
        let (range_start, body) = match range {
            None => (0, object.body.clone()),
            Some(range) => {
                if range.start >= object.size_bytes() {
                    return Err(service_error(
                        416,
                        S3ErrorCode::InvalidRange,
                        "The requested range is not satisfiable",
                    ));
                }
                let end = range.end.min(object.size_bytes());
                (range.start, object.body.slice(range.start as usize..end as usize))
            }
        };
        Ok(GetObjectOutput { meta: object.meta(), range_start, body: Body(body) })
    }

    /// The upload `upload_id`, if it is in progress and belongs to `key` (AWS answers a key that
    /// does not match the upload with `NoSuchUpload` too).
    fn upload(&self, key: &str, upload_id: &UploadId) -> Result<&MultipartUpload, S3Error> {
        self.uploads.get(&upload_id.0).filter(|upload| upload.key == key).ok_or_else(no_such_upload)
    }

    fn store_part(
        &mut self,
        key: &str,
        upload_id: &UploadId,
        part_number: u32,
        part: UploadedPart,
    ) -> Result<ETag, S3Error> {
        self.upload(key, upload_id)?;
        if part_number == 0 || part_number > self.limits.max_parts {
            return Err(part_number_out_of_range(self.limits.max_parts));
        }
        let etag = part.etag.clone();
        let upload = self.uploads.get_mut(&upload_id.0).expect("upload checked above");
        upload.parts.insert(part_number, part);
        Ok(etag)
    }

    fn complete_multipart_upload(
        &mut self,
        key: &str,
        upload_id: &UploadId,
        named_parts: &[CompletedPart],
    ) -> Result<ETag, S3Error> {
        let upload = self.upload(key, upload_id)?;
        if named_parts.is_empty() {
            return Err(malformed_xml());
        }
        if named_parts.len() > self.limits.max_parts as usize {
            return Err(part_number_out_of_range(self.limits.max_parts));
        }
        if named_parts.windows(2).any(|pair| pair[0].part_number >= pair[1].part_number) {
            return Err(service_error(
                400,
                S3ErrorCode::InvalidPartOrder,
                "The list of parts was not in ascending order. Parts must be ordered by part number.",
            ));
        }
        let mut parts = Vec::with_capacity(named_parts.len());
        for named in named_parts {
            match upload.parts.get(&named.part_number) {
                Some(part) if part.etag == named.etag => parts.push(part),
                _ => {
                    return Err(service_error(
                        400,
                        S3ErrorCode::InvalidPart,
                        format!(
                            "One or more of the specified parts could not be found: part {} with ETag {}",
                            named.part_number,
                            named.etag.as_str()
                        ),
                    ));
                }
            }
        }
        let (_last, all_but_last) = parts.split_last().expect("at least one part");
        if let Some(small) = all_but_last.iter().find(|part| (part.body.len() as u64) < self.limits.min_part_size_bytes)
        {
            return Err(service_error(
                400,
                S3ErrorCode::EntityTooSmall,
                format!(
                    "Your proposed upload is smaller than the minimum allowed size: a part of {} bytes, minimum {}",
                    small.body.len(),
                    self.limits.min_part_size_bytes
                ),
            ));
        }
        let total_bytes = parts.iter().map(|part| part.body.len()).sum();
        let mut body = BytesMut::with_capacity(total_bytes);
        let mut md5s = Vec::with_capacity(parts.len() * 16);
        for part in &parts {
            body.extend_from_slice(&part.body);
            md5s.extend_from_slice(&part.md5);
        }
        let etag = ETag::new(format!("{}-{}", hex(&md5_of(&md5s)), parts.len()));
        let (initiated, content_type, metadata) =
            (upload.initiated, upload.content_type.clone(), upload.metadata.clone());
        self.uploads.remove(&upload_id.0);
        Ok(self.insert_object(key, initiated, body.freeze(), etag, content_type, metadata))
    }

    fn copy_object(
        &mut self,
        now: UnixNanos,
        source_key: &str,
        key: &str,
        metadata_directive: &MetadataDirective,
        source_if_match: Option<&ETag>,
    ) -> Result<ETag, S3Error> {
        validate_key(key)?;
        let source = self.existing(source_key)?;
        check_if_match(source_if_match, &source.etag)?;
        let (content_type, metadata) = match metadata_directive {
            MetadataDirective::Copy => {
                if source_key == key {
                    return Err(service_error(
                        400,
                        S3ErrorCode::InvalidRequest,
                        "This copy request is illegal because it is trying to copy an object to \
                         itself without changing the object's metadata",
                    ));
                }
                (source.content_type.clone(), source.metadata.clone())
            }
            MetadataDirective::Replace { content_type, metadata } => (content_type.clone(), metadata.clone()),
        };
        let body = source.body.clone();
        // A copy is a single-part object: its ETag is the MD5 of the body. A single-part
        // source's ETag already is that MD5.
        let etag =
            if source.etag.as_str().contains('-') { ETag::new(hex(&md5_of(&body))) } else { source.etag.clone() };
        Ok(self.insert_object(key, now, body, etag, content_type, metadata))
    }
}

/// Whether an `If-Match` condition holds for an object with ETag `current`: no condition, `*`,
/// or the same ETag. A condition that does not hold is 412 `PreconditionFailed`.
pub fn check_if_match(condition: Option<&ETag>, current: &ETag) -> Result<(), S3Error> {
    match condition {
        Some(expected) if expected.as_str() != "*" && expected != current => Err(precondition_failed()),
        _ => Ok(()),
    }
}

/// Keys S3 refuses to store: empty, or longer than 1024 bytes.
fn validate_key(key: &str) -> Result<(), S3Error> {
    if key.is_empty() {
        return Err(invalid_argument("An object key must not be empty"));
    }
    if key.len() > MAX_KEY_LEN_BYTES {
        return Err(service_error(400, S3ErrorCode::Other("KeyTooLongError".into()), "Your key is too long"));
    }
    Ok(())
}

/// The part of `key` after `prefix` up to and including the first `delimiter`, with the prefix.
fn common_prefix<'a>(key: &'a str, prefix: &str, delimiter: &str) -> Option<&'a str> {
    let rest = key.get(prefix.len()..)?;
    rest.find(delimiter).map(|at| &key[..prefix.len() + at + delimiter.len()])
}

/// The smallest string greater than `key`.
fn key_successor(key: &str) -> String {
    let mut next = String::with_capacity(key.len() + 1);
    next.push_str(key);
    next.push('\0');
    next
}

/// The smallest string greater than every string that starts with `prefix`, or `None` if there
/// is none (the prefix is empty or made only of `char::MAX`).
///
/// UTF-8 byte order is code point order and UTF-8 is prefix-free, so replacing the last
/// character with the next code point gives a string above all extensions of `prefix`, and no
/// string that does not start with `prefix` lies between.
fn prefix_successor(prefix: &str) -> Option<String> {
    let mut successor = prefix.to_owned();
    while let Some(last) = successor.pop() {
        let next = (u32::from(last) + 1..=u32::from(char::MAX)).find_map(char::from_u32);
        if let Some(next) = next {
            successor.push(next);
            return Some(successor);
        }
    }
    None
}

/// A continuation token names the first key the next page may return, hex-encoded so that it is
/// opaque to clients and safe in a URL.
fn encode_continuation_token(resume_at: &str) -> String {
    hex(resume_at.as_bytes())
}

fn decode_continuation_token(token: &str) -> Result<String, S3Error> {
    let invalid = || invalid_argument("The continuation token provided is incorrect");
    if !token.len().is_multiple_of(2) {
        return Err(invalid());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|at| token.get(at..at + 2).and_then(|pair| u8::from_str_radix(pair, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(invalid)?;
    String::from_utf8(bytes).map_err(|_| invalid())
}

fn md5_of(bytes: &[u8]) -> [u8; 16] {
    Md5::digest(bytes).into()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

fn service_error(status: u16, code: S3ErrorCode, message: impl Into<String>) -> S3Error {
    S3Error::Service(ServiceError { status, code, message: message.into(), request_id: None })
}

fn no_such_key() -> S3Error {
    service_error(404, S3ErrorCode::NoSuchKey, "The specified key does not exist.")
}

fn no_such_upload() -> S3Error {
    service_error(
        404,
        S3ErrorCode::NoSuchUpload,
        "The specified upload does not exist. The upload ID may be invalid, or the upload may \
         have been aborted or completed.",
    )
}

fn precondition_failed() -> S3Error {
    service_error(412, S3ErrorCode::PreconditionFailed, "At least one of the pre-conditions you specified did not hold")
}

fn invalid_argument(message: impl Into<String>) -> S3Error {
    service_error(400, S3ErrorCode::Other("InvalidArgument".into()), message)
}

fn part_number_out_of_range(max_parts: u32) -> S3Error {
    invalid_argument(format!("Part number must be an integer between 1 and {max_parts}, inclusive"))
}

fn malformed_xml() -> S3Error {
    service_error(
        400,
        S3ErrorCode::Other("MalformedXML".into()),
        "The XML you provided was not well-formed or did not validate against our published schema",
    )
}

#[cfg(test)]
mod tests;
