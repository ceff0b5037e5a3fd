//! A tiny driver for scenario tests: feeds inputs, collects outputs, answers S3 by hand.

#![allow(dead_code)]

use std::ffi::OsString;
use std::time::Duration;

use bytes::Bytes;
use goofys_core::fuse_types::{Attr, Entry, FuseOp, FuseReply, OpenFlags};
use goofys_core::s3_types::{
    Body, ByteRange, ETag, GetObjectOutput, ListPage, ObjectMeta, ObjectSummary, S3Error, S3ErrorCode, S3Request,
    S3Response, S3Result,
};
use goofys_core::{Core, CoreConfig, FileHandle, FuseReqId, Ino, Input, Instant, Output, S3ReqId, UnixNanos};

#[derive(Debug)]
pub struct Harness {
    pub core: Core,
    pub now: Instant,
    pub outputs: Vec<Output>,
    next_fuse: u64,
}

impl Harness {
    pub fn new(config: CoreConfig) -> Self {
        Harness {
            core: Core::new(config, UnixNanos::from_secs(1_700_000_000), 42),
            now: Instant::ZERO,
            outputs: Vec::new(),
            next_fuse: 1,
        }
    }

    pub fn input(&mut self, input: Input) {
        self.core.handle_input(self.now, input);
        while let Some(output) = self.core.poll_output() {
            self.outputs.push(output);
        }
    }

    /// Sends a FUSE op and returns its id.
    pub fn fuse(&mut self, op: FuseOp) -> FuseReqId {
        let id = FuseReqId(self.next_fuse);
        self.next_fuse += 1;
        self.input(Input::Fuse { id, op });
        id
    }

    pub fn s3(&mut self, id: S3ReqId, result: S3Result) {
        self.input(Input::S3 { id, result });
    }

    /// Streams `content[start..end)` of version `etag` as a chunk of GET `id`'s body.
    pub fn s3_chunk(&mut self, id: S3ReqId, content: &Bytes, start: u64, end: u64, etag: &str) {
        let output = GetObjectOutput {
            meta: meta(content.len() as u64, etag),
            range_start: start,
            body: Body(content.slice(start as usize..end as usize)),
        };
        self.input(Input::S3BodyChunk { id, output });
    }

    /// Ends a streamed GET `id` whose body ended at `end`: a result with no bytes left.
    pub fn s3_streamed_end(&mut self, id: S3ReqId, content: &Bytes, end: u64, etag: &str) {
        let output =
            GetObjectOutput { meta: meta(content.len() as u64, etag), range_start: end, body: Body::default() };
        self.s3(id, Ok(S3Response::GetObject(output)));
    }

    /// Moves time forward and fires timers that came due.
    pub fn advance(&mut self, by: Duration) {
        self.now = self.now + by;
        self.input(Input::Timeout);
    }

    /// Moves time to the next timer and fires it.
    pub fn advance_to_timer(&mut self) {
        let at = self.core.poll_timeout().expect("a timer is set");
        self.now = self.now.max(at);
        self.input(Input::Timeout);
    }

    /// Removes and returns the S3 requests emitted so far.
    pub fn take_requests(&mut self) -> Vec<(S3ReqId, S3Request)> {
        let mut taken = Vec::new();
        self.outputs.retain(|output| match output {
            Output::S3Request { id, request } => {
                taken.push((*id, request.clone()));
                false
            }
            _ => true,
        });
        taken
    }

    pub fn take_one_request(&mut self) -> (S3ReqId, S3Request) {
        let mut requests = self.take_requests();
        assert_eq!(requests.len(), 1, "expected one request, got {requests:#?}");
        requests.pop().unwrap()
    }

    pub fn take_cancels(&mut self) -> Vec<S3ReqId> {
        let mut taken = Vec::new();
        self.outputs.retain(|output| match output {
            Output::CancelS3 { id } => {
                taken.push(*id);
                false
            }
            _ => true,
        });
        taken
    }

    /// Removes and returns the reply to `id`, if it was given.
    pub fn take_reply(&mut self, id: FuseReqId) -> Option<FuseReply> {
        let position = self
            .outputs
            .iter()
            .position(|output| matches!(output, Output::FuseReply { id: reply_id, .. } if *reply_id == id))?;
        let Output::FuseReply { reply, .. } = self.outputs.remove(position) else { unreachable!() };
        assert!(
            !self.outputs.iter().any(|o| matches!(o, Output::FuseReply { id: other, .. } if *other == id)),
            "two replies to {id:?}"
        );
        Some(reply)
    }

    pub fn reply(&mut self, id: FuseReqId) -> FuseReply {
        self.take_reply(id).unwrap_or_else(|| panic!("no reply to {id:?}; outputs: {:#?}", self.outputs))
    }

    pub fn lookup(&mut self, parent: Ino, name: &str) -> FuseReqId {
        self.fuse(FuseOp::Lookup { parent, name: OsString::from(name) })
    }

    pub fn entry(&mut self, id: FuseReqId) -> Entry {
        match self.reply(id) {
            FuseReply::Entry(entry) => entry,
            other => panic!("expected an entry, got {other:?}"),
        }
    }

    pub fn attr(&mut self, id: FuseReqId) -> Attr {
        match self.reply(id) {
            FuseReply::Attr { attr, .. } => attr,
            other => panic!("expected attributes, got {other:?}"),
        }
    }

    pub fn opened(&mut self, id: FuseReqId) -> FileHandle {
        match self.reply(id) {
            FuseReply::Opened { fh, .. } => fh,
            other => panic!("expected an open handle, got {other:?}"),
        }
    }

    pub fn data(&mut self, id: FuseReqId) -> Bytes {
        match self.reply(id) {
            FuseReply::Data(bytes) => bytes.0,
            other => panic!("expected data, got {other:?}"),
        }
    }

    pub fn open(&mut self, ino: Ino) -> FuseReqId {
        self.fuse(FuseOp::Open { ino, flags: OpenFlags(OpenFlags::O_RDONLY) })
    }

    pub fn read(&mut self, ino: Ino, fh: FileHandle, offset: u64, size: u32) -> FuseReqId {
        self.fuse(FuseOp::Read { ino, fh, offset, size })
    }

    /// Looks up a file, answering HEAD with `meta` and the directory probe with nothing.
    pub fn lookup_file(&mut self, parent: Ino, name: &str, meta: ObjectMeta) -> Entry {
        let id = self.lookup(parent, name);
        for (s3_id, request) in self.take_requests() {
            match request {
                S3Request::HeadObject { .. } => self.s3(s3_id, Ok(S3Response::HeadObject(meta.clone()))),
                S3Request::ListObjectsV2 { .. } => self.s3(s3_id, Ok(list_page(&[], &[], None))),
                other => panic!("unexpected {other:?}"),
            }
        }
        self.entry(id)
    }

    /// Looks up and opens a file of `content`, returning its inode and handle.
    pub fn open_file(&mut self, name: &str, content: &Bytes) -> (Ino, FileHandle) {
        let entry = self.lookup_file(Ino::ROOT, name, meta(content.len() as u64, "v1"));
        let open = self.open(entry.attr.ino);
        (entry.attr.ino, self.opened(open))
    }
}

pub fn meta(size_bytes: u64, etag: &str) -> ObjectMeta {
    ObjectMeta {
        size_bytes,
        etag: ETag::new(etag),
        last_modified: UnixNanos::from_secs(1_600_000_000),
        content_type: None,
        metadata: Default::default(),
        storage_class: None,
    }
}

pub fn list_page(objects: &[(&str, u64)], prefixes: &[&str], token: Option<&str>) -> S3Response {
    S3Response::ListObjectsV2(ListPage {
        objects: objects
            .iter()
            .map(|(key, size)| ObjectSummary {
                key: key.to_string(),
                size_bytes: *size,
                etag: ETag::new(format!("etag-{key}")),
                last_modified: UnixNanos::from_secs(1_600_000_000),
            })
            .collect(),
        common_prefixes: prefixes.iter().map(|p| p.to_string()).collect(),
        next_continuation_token: token.map(str::to_owned),
    })
}

/// Answers a ranged GET of `content` (version `etag`).
pub fn get_reply(content: &Bytes, range: ByteRange, etag: &str) -> S3Result {
    Ok(S3Response::GetObject(GetObjectOutput {
        meta: meta(content.len() as u64, etag),
        range_start: range.start,
        body: Body(content.slice(range.start as usize..range.end as usize)),
    }))
}

pub fn not_found() -> S3Result {
    Err(S3Error::service(404, S3ErrorCode::NoSuchKey))
}

pub fn range_of(request: &S3Request) -> ByteRange {
    match request {
        S3Request::GetObject { range: Some(range), .. } => *range,
        other => panic!("expected a ranged GET, got {other:?}"),
    }
}

/// Deterministic test content.
pub fn content(len: usize) -> Bytes {
    (0..len).map(|i| (i.wrapping_mul(7) ^ (i >> 8)) as u8).collect::<Vec<u8>>().into()
}
