//! A step-by-step driver that records the S3 request plan of FUSE operations, for snapshot
//! tests of hand-written scenarios ("listing a 3-page directory", "a SlowDown retried").
//!
//! It runs the real core against the S3 model with scripted faults, answers every request as
//! soon as it is sent (in order), fires timers as they come due, and writes one line per event
//! in simulated milliseconds, so the text is deterministic and short.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use bytes::Bytes;
use goofys_core::fuse_types::{FuseOp, FuseReply};
use goofys_core::s3_types::{S3Error, S3ErrorCode, S3Request, S3Response, S3Result, TransportError};
use goofys_core::{Core, CoreConfig, FuseReqId, Input, Instant, Output, UnixNanos};

use crate::faults::FaultKind;
use crate::s3_model::S3Model;

/// Drives one core against one model and records what happens.
#[derive(Debug)]
pub struct PlanDriver {
    pub core: Core,
    pub model: S3Model,
    now: Instant,
    next_fuse: u64,
    /// Faults for the coming S3 requests, in order; then none.
    faults: Vec<FaultKind>,
    /// Faults for the next request of an operation (by S3 name), used once each.
    targeted: Vec<(&'static str, FaultKind)>,
    /// Operations S3 refuses with 403 after letting this many through.
    refusals: BTreeMap<&'static str, u32>,
    /// Requests sent and not answered yet; answered in order, also across operations.
    pending: Vec<(goofys_core::S3ReqId, S3Request)>,
    plan: String,
}

impl PlanDriver {
    pub fn new(config: CoreConfig) -> Self {
        Self::with_model(config, S3Model::new())
    }

    /// A driver over a given bucket (e.g. one with small part limits).
    pub fn with_model(config: CoreConfig, model: S3Model) -> Self {
        PlanDriver {
            core: Core::new(config, UnixNanos::from_secs(1_700_000_000), 7),
            model,
            now: Instant::ZERO,
            next_fuse: 1,
            faults: Vec::new(),
            targeted: Vec::new(),
            refusals: BTreeMap::new(),
            pending: Vec::new(),
            plan: String::new(),
        }
    }

    /// Puts an object in the bucket before the scenario.
    pub fn put(&mut self, key: &str, body: impl Into<Bytes>) {
        self.model.put_object(UnixNanos::from_secs(1_700_000_000), key, body.into());
    }

    /// The next S3 requests meet these faults, one each.
    pub fn inject(&mut self, faults: impl IntoIterator<Item = FaultKind>) {
        self.faults.extend(faults);
    }

    /// The next request of `operation` (S3's name, e.g. `CompleteMultipartUpload`) meets
    /// `fault`.
    pub fn fail_next(&mut self, operation: &'static str, fault: FaultKind) {
        self.targeted.push((operation, fault));
    }

    /// S3 answers `operation` with 403 AccessDenied after letting `after` of them through
    /// (`u32::MAX`: never).
    pub fn refuse(&mut self, operation: &'static str, after: u32) {
        self.refusals.insert(operation, after);
    }

    /// Runs one FUSE operation to its reply and returns the reply.
    pub fn run(&mut self, op: FuseOp) -> FuseReply {
        let id = FuseReqId(self.next_fuse);
        self.next_fuse += 1;
        let _ = writeln!(self.plan, "{} {}", self.clock(), describe_op(&op));
        let mut reply = None;
        self.feed(Input::Fuse { id, op }, &mut reply, id);
        loop {
            if let Some(reply) = reply.take() {
                // S3 keeps answering what was sent (uploads started by a write, a listing
                // started by opendir) while the caller goes on.
                while !self.pending.is_empty() {
                    let (s3_id, request) = self.pending.remove(0);
                    if let Some(result) = self.execute(&request) {
                        let mut late = None;
                        self.feed(Input::S3 { id: s3_id, result }, &mut late, id);
                    }
                }
                return reply;
            }
            if !self.pending.is_empty() {
                let (s3_id, request) = self.pending.remove(0);
                if let Some(result) = self.execute(&request) {
                    self.feed(Input::S3 { id: s3_id, result }, &mut reply, id);
                }
                continue;
            }
            let Some(at) = self.core.poll_timeout() else {
                panic!("no reply, nothing in flight and no timer:\n{}", self.plan);
            };
            self.now = self.now.max(at);
            self.feed(Input::Timeout, &mut reply, id);
        }
    }

    /// Lets the work that goes on after replies (retries, deferred deletes, hints) finish:
    /// answers and fires timers until no S3 call is left.
    pub fn settle(&mut self) {
        self.run_background(|driver| driver.core.has_calls_in_progress());
    }

    /// Lets `duration` of simulated time pass with no FUSE request: timers due meanwhile
    /// fire, and what they send is answered.
    pub fn wait(&mut self, duration: Duration) {
        let until = self.now + duration;
        let _ = writeln!(self.plan, "{} wait {duration:?}", self.clock());
        self.run_background(|driver| driver.core.poll_timeout().is_some_and(|at| at <= until));
        self.now = self.now.max(until);
    }

    /// Unmounts: the core finishes what it has to (commits, deferred deletes, aborts) and
    /// says `Done`.
    pub fn unmount(&mut self) {
        let _ = writeln!(self.plan, "{} unmount", self.clock());
        let mut ignored = None;
        self.feed(Input::Shutdown, &mut ignored, FuseReqId(0));
        self.run_background(|driver| driver.core.has_calls_in_progress());
    }

    /// Answers requests and fires timers while `more` says there is more to do.
    fn run_background(&mut self, more: impl Fn(&PlanDriver) -> bool) {
        let nobody = FuseReqId(0);
        let mut ignored = None;
        while !self.pending.is_empty() || more(self) {
            if !self.pending.is_empty() {
                let (s3_id, request) = self.pending.remove(0);
                if let Some(result) = self.execute(&request) {
                    self.feed(Input::S3 { id: s3_id, result }, &mut ignored, nobody);
                }
                continue;
            }
            let Some(at) = self.core.poll_timeout() else { break };
            self.now = self.now.max(at);
            self.feed(Input::Timeout, &mut ignored, nobody);
        }
    }

    /// The plan so far.
    pub fn plan(&self) -> &str {
        &self.plan
    }

    fn clock(&self) -> String {
        format!("[{:>7.1} ms]", (self.now - Instant::ZERO).as_secs_f64() * 1000.0)
    }

    fn feed(&mut self, input: Input, reply: &mut Option<FuseReply>, waiting_for: FuseReqId) {
        self.core.handle_input(self.now, input);
        while let Some(output) = self.core.poll_output() {
            match output {
                Output::S3Request { id, request } => {
                    let _ = writeln!(self.plan, "{}   -> {}", self.clock(), describe_request(&request));
                    self.pending.push((id, request));
                }
                Output::CancelS3 { id } => {
                    self.pending.retain(|(pending_id, _)| *pending_id != id);
                    let _ = writeln!(self.plan, "{}   cancel", self.clock());
                }
                Output::FuseReply { id, reply: r } => {
                    let _ = writeln!(self.plan, "{} reply {}", self.clock(), describe_reply(&r));
                    if id == waiting_for {
                        *reply = Some(r);
                    }
                }
                Output::InvalidateInode { .. } | Output::InvalidateEntry { .. } | Output::Done => {}
            }
        }
    }

    /// Answers a request, with the next scripted fault. `None` for a stall.
    fn execute(&mut self, request: &S3Request) -> Option<S3Result> {
        // Every round trip takes one simulated millisecond.
        self.now = self.now + Duration::from_millis(1);
        let name = request.operation_name();
        if let Some(allowed) = self.refusals.get_mut(name) {
            if *allowed == 0 {
                let result = Err(S3Error::service(403, S3ErrorCode::AccessDenied));
                let _ = writeln!(self.plan, "{}   <- {}", self.clock(), describe_result(&result));
                return Some(result);
            }
            *allowed = allowed.saturating_sub(1).max(if *allowed == u32::MAX { u32::MAX } else { 0 });
        }
        let fault = if let Some(index) = self.targeted.iter().position(|(operation, _)| *operation == name) {
            self.targeted.remove(index).1
        } else if self.faults.is_empty() {
            FaultKind::None
        } else {
            self.faults.remove(0)
        };
        let wall = UnixNanos::from_secs(1_700_000_000).add_duration(self.now - Instant::ZERO);
        let result = match fault {
            FaultKind::None => self.model.apply(wall, request),
            FaultKind::SlowDown => Err(S3Error::service(503, S3ErrorCode::SlowDown)),
            FaultKind::InternalError => Err(S3Error::service(500, S3ErrorCode::InternalError)),
            FaultKind::ResetBeforeApply => Err(S3Error::Transport(TransportError::ConnectionReset)),
            FaultKind::ResetAfterApply => {
                let _lost_in_transit = self.model.apply(wall, request);
                Err(S3Error::Transport(TransportError::ConnectionReset))
            }
            FaultKind::TruncateBody { per_million } => match self.model.apply(wall, request) {
                Ok(S3Response::GetObject(output)) => {
                    let cut = output.body.len() * per_million as usize / 1_000_000;
                    Err(S3Error::Transport(TransportError::Truncated { received: output.body.slice(..cut).into() }))
                }
                other => other,
            },
            FaultKind::Stall => {
                let _ = writeln!(self.plan, "{}   <- (no answer)", self.clock());
                return None;
            }
        };
        let _ = writeln!(self.plan, "{}   <- {}", self.clock(), describe_result(&result));
        Some(result)
    }
}

fn describe_op(op: &FuseOp) -> String {
    match op {
        FuseOp::Lookup { parent, name } => format!("lookup {parent:?} {name:?}"),
        FuseOp::Read { fh, offset, size, .. } => format!("read {fh:?} at {offset} for {size}"),
        FuseOp::ReadDir { fh, offset, size_bytes, plus, .. } => {
            format!("readdir{} {fh:?} from {offset} into {size_bytes} bytes", if *plus { "plus" } else { "" })
        }
        other => format!("{other:?}"),
    }
}

fn describe_request(request: &S3Request) -> String {
    match request {
        S3Request::ListObjectsV2 { prefix, continuation_token, max_keys, .. } => {
            format!("ListObjectsV2 prefix={prefix:?} token={continuation_token:?} max_keys={max_keys}")
        }
        S3Request::HeadObject { key } => format!("HeadObject {key:?}"),
        S3Request::GetObject { key, range, if_match } => {
            format!("GetObject {key:?} range={range:?} if_match={}", if_match.as_ref().map_or("-", |tag| tag.as_str()))
        }
        other => format!("{other:?}"),
    }
}

fn describe_result(result: &S3Result) -> String {
    match result {
        Ok(S3Response::ListObjectsV2(page)) => format!(
            "{} objects, {} prefixes, next token {:?}",
            page.objects.len(),
            page.common_prefixes.len(),
            page.next_continuation_token
        ),
        Ok(S3Response::HeadObject(meta)) => format!("{} bytes, etag {}", meta.size_bytes, meta.etag.as_str()),
        Ok(S3Response::GetObject(output)) => format!("{} bytes from {}", output.body.len(), output.range_start),
        Ok(other) => format!("{other:?}"),
        Err(S3Error::Service(error)) => format!("{} {}", error.status, error.code.as_str()),
        Err(S3Error::Transport(TransportError::Truncated { received })) => {
            format!("body cut after {} bytes", received.len())
        }
        Err(S3Error::Transport(error)) => format!("{error:?}"),
    }
}

fn describe_reply(reply: &FuseReply) -> String {
    match reply {
        FuseReply::Entry(entry) => {
            format!("entry {:?} {:?} {} bytes", entry.attr.ino, entry.attr.kind, entry.attr.size_bytes)
        }
        FuseReply::Opened { fh, .. } => format!("opened {fh:?}"),
        FuseReply::Data(data) => format!("{} bytes", data.len()),
        FuseReply::Dir(entries) => format!("{} entries", entries.len()),
        FuseReply::DirPlus(entries) => format!("{} entries with attributes", entries.len()),
        FuseReply::Error(errno) => format!("error {errno:?}"),
        other => format!("{other:?}"),
    }
}
