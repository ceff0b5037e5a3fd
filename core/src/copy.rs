//! Server-side copies of one object, keeping its metadata or replacing it.
//!
//! Problems this module solves:
//! - S3 copies an object of up to 5 GiB with one CopyObject; a larger one needs a multipart
//!   upload of UploadPartCopy parts. Every read of the source is pinned to its ETag, so a copy
//!   never mixes two versions.
//! - A copy keeps the source's content type and user metadata (POSIX attributes, xattrs), or
//!   replaces them (chmod, chown, utimes, setxattr are metadata-only copies onto the object
//!   itself). CopyObject can keep them by itself; a multipart copy and a rewritten directory
//!   marker cannot, so they read the source's metadata with HEAD first when it is not known.
//! - A directory marker is rewritten with PutObject rather than copied: some stores keep
//!   markers as real directories that cannot be copied, and a marker holds no bytes.
//!
//! [`ObjectCopy`] is a small sans-IO machine: the caller asks it for the requests to send
//! ([`ObjectCopy::poll_requests`]), tells it the call ids they got ([`ObjectCopy::sent`]) and
//! feeds it the answers ([`ObjectCopy::answered`]) until it is done or has failed.

use std::collections::BTreeMap;

use crate::calls::CallId;
use crate::config::CoreConfig;
use crate::errno::{Errno, errno_for_s3_error};
use crate::inode::ObjectMetadata;
use crate::s3_types::{
    ByteRange, CompletedPart, ETag, MetadataDirective, RequestBody, S3Error, S3ErrorCode, S3Request, S3Response,
    S3Result, UploadId,
};

/// The largest object one CopyObject can copy (S3's limit); larger ones are copied in parts.
pub const COPY_OBJECT_MAX_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// The content type S3 tools give directory markers.
pub const MARKER_CONTENT_TYPE: &str = "application/x-directory";

/// What the copy's metadata will be.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) enum CopyMetadata {
    /// The source's; `None` while unknown (read with HEAD first when the copy needs it).
    Source(Option<ObjectMetadata>),
    /// These, whatever the source had.
    Replace(ObjectMetadata),
}

/// One object being copied.
#[derive(Clone, Debug)]
pub(crate) struct ObjectCopy {
    pub source: String,
    pub target: String,
    pub size_bytes: u64,
    /// The source version every read is pinned to.
    pub etag: ETag,
    pub metadata: CopyMetadata,
    state: CopyState,
}

#[derive(Clone, Debug)]
enum CopyState {
    Waiting,
    Heading(Option<CallId>),
    Copying(Option<CallId>),
    Creating(Option<CallId>),
    Parts { upload_id: UploadId, parts: BTreeMap<u32, PartCopy> },
    Completing { upload_id: UploadId, call: Option<CallId> },
    Done { etag: ETag },
}

#[derive(Clone, Debug)]
enum PartCopy {
    Waiting(ByteRange),
    Copying(CallId),
    Done(ETag),
}

/// Which request of a copy a call is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum CopyStep {
    Head,
    Copy,
    Create,
    Part(u32),
    Complete,
}

impl ObjectCopy {
    pub fn new(source: String, target: String, size_bytes: u64, etag: ETag, metadata: CopyMetadata) -> Self {
        ObjectCopy { source, target, size_bytes, etag, metadata, state: CopyState::Waiting }
    }

    fn is_marker(&self) -> bool {
        self.source.ends_with('/') && self.size_bytes == 0
    }

    /// The copy's metadata, if the requests need it spelled out and it is known.
    fn needs_metadata(&self) -> bool {
        matches!(self.metadata, CopyMetadata::Source(None))
            && (self.is_marker() || self.size_bytes > COPY_OBJECT_MAX_BYTES)
    }

    fn written_metadata(&self) -> ObjectMetadata {
        match &self.metadata {
            CopyMetadata::Source(metadata) => metadata.clone().unwrap_or_default(),
            CopyMetadata::Replace(metadata) => metadata.clone(),
        }
    }

    /// The new object's ETag once the copy is done.
    pub fn done(&self) -> Option<&ETag> {
        match &self.state {
            CopyState::Done { etag } => Some(etag),
            _ => None,
        }
    }

    /// Whether the target may exist now (a failed copy must remove it).
    pub fn may_have_made_target(&self) -> bool {
        matches!(self.state, CopyState::Done { .. } | CopyState::Completing { .. } | CopyState::Copying(_))
    }

    pub fn owns(&self, call_id: CallId) -> bool {
        self.calls_in_flight().contains(&call_id)
    }

    pub fn calls_in_flight(&self) -> Vec<CallId> {
        match &self.state {
            CopyState::Heading(call) | CopyState::Copying(call) | CopyState::Creating(call) => {
                call.iter().copied().collect()
            }
            CopyState::Completing { call, .. } => call.iter().copied().collect(),
            CopyState::Parts { parts, .. } => parts
                .values()
                .filter_map(|part| match part {
                    PartCopy::Copying(call) => Some(*call),
                    _ => None,
                })
                .collect(),
            CopyState::Waiting | CopyState::Done { .. } => Vec::new(),
        }
    }

    /// A multipart upload the copy created and did not complete: abort it if the copy is
    /// abandoned.
    pub fn upload_to_abort(&self) -> Option<(String, UploadId)> {
        match &self.state {
            CopyState::Parts { upload_id, .. } | CopyState::Completing { upload_id, .. } => {
                Some((self.target.clone(), upload_id.clone()))
            }
            _ => None,
        }
    }

    /// The requests to send now; at most `parts_inflight` part copies are in flight.
    pub fn poll_requests(&mut self, config: &CoreConfig) -> Vec<(CopyStep, S3Request)> {
        if matches!(self.state, CopyState::Waiting) {
            return vec![self.first_request()];
        }
        let CopyState::Parts { upload_id, parts } = &mut self.state else { return Vec::new() };
        if parts.values().all(|part| matches!(part, PartCopy::Done(_))) {
            let completed = parts
                .iter()
                .map(|(&part_number, part)| match part {
                    PartCopy::Done(etag) => CompletedPart { part_number, etag: etag.clone() },
                    _ => unreachable!("all parts are done"),
                })
                .collect();
            let request = S3Request::CompleteMultipartUpload {
                key: self.target.clone(),
                upload_id: upload_id.clone(),
                parts: completed,
            };
            self.state = CopyState::Completing { upload_id: upload_id.clone(), call: None };
            return vec![(CopyStep::Complete, request)];
        }
        let limit = config.part_uploads_inflight_max.max(1) as usize;
        let busy = parts.values().filter(|part| matches!(part, PartCopy::Copying(_))).count();
        parts
            .iter()
            .filter_map(|(&number, part)| match part {
                PartCopy::Waiting(range) => Some((number, *range)),
                _ => None,
            })
            .take(limit.saturating_sub(busy))
            .map(|(number, range)| {
                let request = S3Request::UploadPartCopy {
                    key: self.target.clone(),
                    upload_id: upload_id.clone(),
                    part_number: number,
                    source_key: self.source.clone(),
                    source_range: Some(range),
                    source_if_match: Some(self.etag.clone()),
                };
                (CopyStep::Part(number), request)
            })
            .collect()
    }

    /// The request that starts a waiting copy (or the HEAD it needs first).
    fn first_request(&mut self) -> (CopyStep, S3Request) {
        if self.needs_metadata() {
            self.state = CopyState::Heading(None);
            return (CopyStep::Head, S3Request::HeadObject { key: self.source.clone() });
        }
        let metadata = self.written_metadata();
        if self.is_marker() {
            self.state = CopyState::Copying(None);
            let request = S3Request::PutObject {
                key: self.target.clone(),
                body: RequestBody::default(),
                content_type: Some(metadata.content_type.unwrap_or_else(|| MARKER_CONTENT_TYPE.to_owned())),
                metadata: metadata.user,
                if_match: None,
                if_none_match_any: false,
            };
            return (CopyStep::Copy, request);
        }
        if self.size_bytes > COPY_OBJECT_MAX_BYTES {
            self.state = CopyState::Creating(None);
            let request = S3Request::CreateMultipartUpload {
                key: self.target.clone(),
                content_type: metadata.content_type,
                metadata: metadata.user,
            };
            return (CopyStep::Create, request);
        }
        let metadata_directive = match &self.metadata {
            CopyMetadata::Source(_) => MetadataDirective::Copy,
            CopyMetadata::Replace(metadata) => MetadataDirective::Replace {
                content_type: metadata.content_type.clone(),
                metadata: metadata.user.clone(),
            },
        };
        self.state = CopyState::Copying(None);
        let request = S3Request::CopyObject {
            source_key: self.source.clone(),
            key: self.target.clone(),
            metadata_directive,
            source_if_match: Some(self.etag.clone()),
        };
        (CopyStep::Copy, request)
    }

    /// Records the call id a request from [`ObjectCopy::poll_requests`] got.
    pub fn sent(&mut self, step: CopyStep, call_id: CallId) {
        match (&mut self.state, step) {
            (CopyState::Heading(call), CopyStep::Head)
            | (CopyState::Copying(call), CopyStep::Copy)
            | (CopyState::Creating(call), CopyStep::Create)
            | (CopyState::Completing { call, .. }, CopyStep::Complete) => *call = Some(call_id),
            (CopyState::Parts { parts, .. }, CopyStep::Part(number)) => {
                parts.insert(number, PartCopy::Copying(call_id));
            }
            (state, step) => unreachable!("{step:?} sent in {state:?}"),
        }
    }

    /// Feeds the answer to one of the copy's calls. An error is the errno the copy failed
    /// with: ESTALE when the source changed or vanished.
    pub fn answered(&mut self, call_id: CallId, result: S3Result, config: &CoreConfig) -> Result<(), Errno> {
        let result = match result {
            Err(S3Error::Service(error))
                if error.code == S3ErrorCode::PreconditionFailed || error.code == S3ErrorCode::NoSuchKey =>
            {
                return Err(Errno::ESTALE);
            }
            Err(error) => return Err(errno_for_s3_error(&error)),
            Ok(response) => response,
        };
        match (&mut self.state, result) {
            (CopyState::Heading(_), S3Response::HeadObject(meta)) => {
                if meta.etag != self.etag {
                    return Err(Errno::ESTALE);
                }
                self.metadata = CopyMetadata::Source(Some(ObjectMetadata::of(&meta)));
                self.state = CopyState::Waiting;
            }
            (CopyState::Copying(_), S3Response::CopyObject { etag } | S3Response::PutObject { etag })
            | (CopyState::Completing { .. }, S3Response::CompleteMultipartUpload { etag }) => {
                self.state = CopyState::Done { etag };
            }
            (CopyState::Creating(_), S3Response::CreateMultipartUpload { upload_id }) => {
                let mut parts = BTreeMap::new();
                let (mut at, mut number) = (0, 1);
                while at < self.size_bytes {
                    let part = config.write_part_size(number).max(config.multipart_min_part_size_bytes);
                    let end = (at + part).min(self.size_bytes);
                    parts.insert(number, PartCopy::Waiting(ByteRange::new(at, end)));
                    at = end;
                    number += 1;
                }
                self.state = CopyState::Parts { upload_id, parts };
            }
            (CopyState::Parts { parts, .. }, S3Response::UploadPartCopy { etag }) => {
                for part in parts.values_mut() {
                    if matches!(part, PartCopy::Copying(call) if *call == call_id) {
                        *part = PartCopy::Done(etag.clone());
                    }
                }
            }
            (_, other) => {
                let error = crate::lookup::unexpected_response("a copy request", &other);
                return Err(errno_for_s3_error(&error));
            }
        }
        Ok(())
    }
}
