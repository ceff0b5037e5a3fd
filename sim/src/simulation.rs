//! The discrete-event simulation: the real core, an in-memory S3, faults, a kernel model with
//! processes running system calls, another client changing the bucket, and a checker.
//!
//! Problems this module solves:
//! - Running the production core against many interleavings deterministically: one event
//!   queue ordered by (time, sequence number), one seeded PRNG, no threads and no clocks.
//! - Driving the core as the kernel would: processes turn system calls (stat, cat, ls, random
//!   reads) into FUSE requests, one at a time each, several processes at once, with interrupts.
//! - Checking every reply against the reference ([`crate::checker`]) as it arrives, and every
//!   request getting exactly one reply.
//! - Two phases, as in TigerBeetle's VOPR: a safety phase with faults and concurrent changes,
//!   then a liveness phase without faults in which everything must finish, a final walk of the
//!   whole tree must match the reference exactly, and shutdown must leave nothing in flight.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ffi::OsString;
use std::fmt::Write;
use std::time::Duration;

use bytes::Bytes;
use goofys_core::fuse_types::{FileKind, FuseOp, FuseReply, OpenFlags};
use goofys_core::namespace::{dir_prefix, file_key};
use goofys_core::s3_types::{GetObjectOutput, S3Error, S3ErrorCode, S3Request, S3Response, S3Result, TransportError};
use goofys_core::{Core, Errno, FileHandle, FuseReqId, Ino, Input, Instant, Output, S3ReqId, UnixNanos};

use crate::checker::{self, ListingSoFar};
use crate::faults::{FaultDecision, FaultInjector, FaultKind, FaultPlan};
use crate::history::{History, Version, Window};
use crate::rng::{Entropy, SimRng, derive_seed};
use crate::s3_model::{ModelLimits, S3Model};
use crate::scenario::{Mutation, RandomRead, Scenario, Syscall};
use crate::trace::Trace;

mod own_changes;

/// Wall-clock time of the simulation's start.
const EPOCH: UnixNanos = UnixNanos::from_secs(1_700_000_000);

/// How often a ranged GET streams part of its body as chunks before its result.
const STREAMED_GET_PER_MILLION: u32 = 500_000;

fn is_ranged_get(request: &S3Request) -> bool {
    matches!(request, S3Request::GetObject { range: Some(_), .. })
}

/// How a finished run went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    /// Hash of every input and output; the same scenario and faults give the same hash.
    pub trace_hash: u64,
    pub operations: usize,
    pub fuse_requests: u64,
    pub s3_requests: u64,
    pub faults_injected: u64,
    pub interrupts: u64,
    pub simulated_time: Duration,
}

/// A failed check, with where and what led to it.
#[derive(Clone, Debug)]
pub struct SimFailure {
    pub message: String,
    pub at: Instant,
    /// The last trace lines before the failure.
    pub recent_trace: String,
}

impl std::fmt::Display for SimFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "at {:?}: {}\nlast events:\n{}", self.at, self.message, self.recent_trace)
    }
}

/// Limits of one run.
#[derive(Clone, Copy, Debug)]
pub struct RunLimits {
    /// A run whose simulated time passes this has not quiesced: a liveness failure.
    pub max_simulated_time: Duration,
    /// The same for the number of events.
    pub max_events: u64,
}

impl Default for RunLimits {
    fn default() -> Self {
        RunLimits { max_simulated_time: Duration::from_secs(7 * 24 * 3600), max_events: 50_000_000 }
    }
}

/// Runs a scenario with a fault plan and checks it.
pub fn run(scenario: &Scenario, plan: FaultPlan) -> Result<Report, SimFailure> {
    run_with_limits(scenario, plan, RunLimits::default())
}

pub fn run_with_limits(scenario: &Scenario, plan: FaultPlan, limits: RunLimits) -> Result<Report, SimFailure> {
    let mut sim = Sim::new(scenario, plan, limits);
    match sim.run() {
        Ok(()) => Ok(sim.report()),
        Err(message) => Err(SimFailure { message, at: sim.now, recent_trace: sim.trace.recent() }),
    }
}

type Checked = Result<(), String>;

#[derive(Clone, Debug)]
enum Event {
    /// A process is ready to start its next system call.
    ProcessWake(usize),
    /// The other client makes its next change.
    External(usize),
    /// An S3 request reaches the bucket.
    S3Arrive { id: S3ReqId, request: S3Request, decision: FaultDecision },
    /// An S3 result reaches the core.
    S3Respond { id: S3ReqId, result: S3Result },
    /// A chunk of a streamed GET body reaches the core, before its result.
    S3BodyChunk { id: S3ReqId, output: GetObjectOutput },
    /// The kernel interrupts a FUSE request.
    Interrupt(FuseReqId),
    /// The final walk of the liveness phase starts.
    StartWalk,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Safety,
    Liveness,
    Walk,
    ShuttingDown,
}

/// A system call with its path resolved.
#[derive(Clone, Debug)]
struct Action {
    syscall: Syscall,
    path: Vec<String>,
}

#[derive(Clone, Debug)]
enum Step {
    Lookup,
    GetAttr,
    Open,
    Read {
        fh: FileHandle,
        next_read: usize,
        offset: u64,
        size: u32,
    },
    Release,
    OpenDir,
    ReadDir {
        fh: FileHandle,
        offset: u64,
        rewound: bool,
        buffer_bytes: u32,
        plus: bool,
    },
    ReleaseDir,
    StatFs,
    /// A step of a change of the process's own names.
    Own(own_changes::OwnStep),
}

#[derive(Clone, Debug)]
struct Running {
    action: Action,
    resolved: Vec<Ino>,
    step: Step,
    /// State of a change of the process's own names.
    own: Option<own_changes::OwnState>,
}

#[derive(Clone, Debug, Default)]
struct Process {
    script: VecDeque<Action>,
    running: Option<Running>,
    finished: bool,
}

/// A key (or a directory prefix, ending in `/`) a process of this mount is changing.
#[derive(Clone, Debug)]
struct LocalActivity {
    key: String,
    from: Instant,
    to: Option<Instant>,
    /// The change unlinks, renames or replaces the name (not a write, truncate or chmod of
    /// the file in place).
    replaces: bool,
}

impl LocalActivity {
    /// Whether the change covers `key` (itself or a directory above it) at some time of `window`.
    fn covers(&self, key: &str, window: Window) -> bool {
        let active = self.key.as_str();
        let names_key = active == key
            || (active.ends_with('/') && (key.starts_with(active) || active.trim_end_matches('/') == key));
        names_key && self.from <= window.to && self.to.is_none_or(|to| to >= window.from)
    }
}

/// An inode the kernel model holds references to.
#[derive(Clone, Debug)]
struct Known {
    path: Vec<String>,
    kind: FileKind,
    nlookup: u64,
    pinned: u32,
}

#[derive(Clone, Debug)]
struct Outstanding {
    process: usize,
    op: FuseOp,
    issued_at: Instant,
    interrupted: bool,
}

#[derive(Clone, Debug)]
struct FileCheck {
    key: String,
    candidates: Vec<Version>,
    window_from: Instant,
    /// Another process of this mount writes the file: its bytes are not checked.
    unchecked: bool,
}

#[derive(Clone, Debug)]
struct DirCheck {
    ino: Ino,
    prefix: String,
    opened_at: Instant,
    so_far: ListingSoFar,
    checked_complete: bool,
}

/// How old a cached answer may be when it is given: its cache's TTL plus the time a reply
/// takes to come back (the cache deadline counts from when the reply was handled, the data is
/// from when S3 answered). A cache with TTL 0 serves nothing: answers are fresh.
#[derive(Clone, Copy, Debug)]
struct Staleness {
    /// A file entry: the shorter of the stat and type TTLs.
    lookup_file: Duration,
    lookup_directory: Duration,
    lookup_missing: Duration,
    /// Attributes of a known inode (getattr, open).
    stat: Duration,
    longest: Duration,
}

impl Staleness {
    fn new(config: &goofys_core::CoreConfig, max_response_latency: Duration) -> Self {
        let age = |ttl: Duration| {
            if ttl.is_zero() { Duration::ZERO } else { ttl + max_response_latency }
        };
        let lookup_file = age(config.stat_cache_ttl.min(config.type_cache_ttl));
        let lookup_directory = age(config.type_cache_ttl);
        let lookup_missing = age(config.negative_cache_ttl);
        let stat = age(config.stat_cache_ttl);
        let longest = lookup_file.max(lookup_directory).max(lookup_missing).max(stat);
        Staleness { lookup_file, lookup_directory, lookup_missing, stat, longest }
    }
}

struct Sim<'a> {
    scenario: &'a Scenario,
    core: Core,
    model: S3Model,
    history: History,
    injector: FaultInjector,
    rng: SimRng,
    now: Instant,
    events: BTreeMap<(Instant, u64), Event>,
    next_seq: u64,
    events_processed: u64,
    limits: RunLimits,
    cancelled: BTreeSet<S3ReqId>,
    processes: Vec<Process>,
    external_done: bool,
    outstanding: BTreeMap<FuseReqId, Outstanding>,
    /// FUSE requests sent by processes, fed to the core in order before the next event.
    inbox: VecDeque<Input>,
    next_fuse: u64,
    known: BTreeMap<Ino, Known>,
    files: BTreeMap<FileHandle, FileCheck>,
    dirs: BTreeMap<FileHandle, DirCheck>,
    staleness: Staleness,
    /// When the other client changed each key.
    external_changes: BTreeMap<String, Vec<Instant>>,
    /// Keys (and directory prefixes, ending in `/`) that a process of this mount is changing,
    /// from when to when: other processes may see this mount's unwritten view of them.
    local_activity: Vec<LocalActivity>,
    phase: Phase,
    done: bool,
    trace: Trace,
    fuse_requests: u64,
    s3_requests: u64,
    interrupts: u64,
}

impl<'a> Sim<'a> {
    fn new(scenario: &'a Scenario, plan: FaultPlan, limits: RunLimits) -> Self {
        let config = scenario.config.clone();
        let max_response_latency = match &plan {
            FaultPlan::Random(faults) => faults.latency_min + faults.latency_mean * 10,
            FaultPlan::Scripted(script) => script.iter().map(|d| d.response_latency).max().unwrap_or_default(),
        };
        let staleness = Staleness::new(&config, max_response_latency);
        // Faults stay below the retry budget, so none can surface as EIO (see FaultInjector).
        let retry_horizon = (config.s3_request_timeout + config.retry_max_backoff + max_response_latency * 2)
            * config.retry_max_attempts;
        let injector = FaultInjector::new(plan, config.retry_max_attempts.saturating_sub(1), retry_horizon);

        let model_limits =
            ModelLimits { min_part_size_bytes: config.multipart_min_part_size_bytes, ..ModelLimits::default() };
        let mut model = S3Model::with_limits(model_limits);
        let mut history = History::default();
        for object in &scenario.objects {
            let body = content(object.size_bytes, object.content_seed);
            let etag = model.put_object(EPOCH, &object.key, body.clone());
            history.record(Instant::ZERO, &object.key, Some(Version { etag, body, metadata: Default::default() }));
        }

        let paths = scenario.paths();
        let processes = scenario
            .processes
            .iter()
            .map(|script| Process {
                script: script
                    .iter()
                    .map(|syscall| {
                        let path = match syscall {
                            Syscall::Stat { path }
                            | Syscall::Cat { path, .. }
                            | Syscall::ReadAt { path, .. }
                            | Syscall::List { path, .. }
                            | Syscall::Own { dir: path, .. } => scenario.path(&paths, *path),
                            _ => Vec::new(),
                        };
                        Action { syscall: syscall.clone(), path }
                    })
                    .collect(),
                running: None,
                finished: false,
            })
            .collect();

        let core = Core::new(config, EPOCH, derive_seed(scenario.timing_seed, 1));
        let mut known = BTreeMap::new();
        known.insert(Ino::ROOT, Known { path: Vec::new(), kind: FileKind::Directory, nlookup: 1, pinned: 1 });
        Sim {
            scenario,
            core,
            model,
            history,
            injector,
            rng: SimRng::new(derive_seed(scenario.timing_seed, 2)),
            now: Instant::ZERO,
            events: BTreeMap::new(),
            next_seq: 0,
            events_processed: 0,
            limits,
            cancelled: BTreeSet::new(),
            processes,
            external_done: scenario.external.is_empty(),
            outstanding: BTreeMap::new(),
            inbox: VecDeque::new(),
            next_fuse: 1,
            known,
            files: BTreeMap::new(),
            dirs: BTreeMap::new(),
            staleness,
            external_changes: BTreeMap::new(),
            local_activity: Vec::new(),
            phase: Phase::Safety,
            done: false,
            trace: Trace::default(),
            fuse_requests: 0,
            s3_requests: 0,
            interrupts: 0,
        }
    }

    fn report(&self) -> Report {
        Report {
            trace_hash: self.trace.hash(),
            operations: self.scenario.operation_count(),
            fuse_requests: self.fuse_requests,
            s3_requests: self.s3_requests,
            faults_injected: self.injector.faults_injected,
            interrupts: self.interrupts,
            simulated_time: self.now - Instant::ZERO,
        }
    }

    fn schedule(&mut self, at: Instant, event: Event) {
        self.events.insert((at, self.next_seq), event);
        self.next_seq += 1;
    }

    fn think_time(&mut self) -> Duration {
        Duration::from_micros(self.rng.below(5_000))
    }

    // ---- the loop ------------------------------------------------------------------------

    fn run(&mut self) -> Checked {
        for process in 0..self.processes.len() {
            self.schedule(Instant::ZERO, Event::ProcessWake(process));
        }
        if !self.scenario.external.is_empty() {
            let first = self.scenario.external[0].wait;
            self.schedule(Instant::ZERO + first, Event::External(0));
        }
        while !self.done {
            if let Some(input) = self.inbox.pop_front() {
                self.core_input(input)?;
                continue;
            }
            self.events_processed += 1;
            if self.events_processed > self.limits.max_events
                || self.now - Instant::ZERO > self.limits.max_simulated_time
            {
                return Err(format!(
                    "liveness: not finished after {} events and {:?} simulated ({:?} phase, {} FUSE requests unanswered, S3 calls in progress: {})",
                    self.events_processed,
                    self.now - Instant::ZERO,
                    self.phase,
                    self.outstanding.len(),
                    self.core.has_calls_in_progress()
                ));
            }
            let next_event = self.events.first_key_value().map(|(&(at, _), _)| at);
            let next_timer = self.core.poll_timeout();
            match (next_event, next_timer) {
                (None, None) => self.advance_phase()?,
                (Some(event), Some(timer)) if event < timer => self.next_event()?,
                (Some(_), None) => self.next_event()?,
                (_, Some(timer)) => {
                    self.now = self.now.max(timer);
                    self.core_input(Input::Timeout)?;
                }
            }
            if self.phase == Phase::Safety && self.processes.iter().all(|p| p.finished) && self.external_done {
                self.phase = Phase::Liveness;
                self.injector.disable_faults();
            }
        }
        self.final_checks()
    }

    fn next_event(&mut self) -> Checked {
        let ((at, _), event) = self.events.pop_first().expect("an event is scheduled");
        self.now = self.now.max(at);
        self.handle_event(event)
    }

    /// Nothing is scheduled and no timer is set: move to the next phase, or fail if work is
    /// stuck.
    fn advance_phase(&mut self) -> Checked {
        if !self.outstanding.is_empty() {
            return Err(format!(
                "liveness: {} FUSE requests will never be answered: {:?}",
                self.outstanding.len(),
                self.outstanding.values().map(|o| &o.op).collect::<Vec<_>>()
            ));
        }
        match self.phase {
            Phase::Safety => Err("safety phase stalled with processes unfinished".into()),
            Phase::Liveness => {
                let at = self.now + self.staleness.longest + Duration::from_secs(1);
                self.schedule(at, Event::StartWalk);
                self.phase = Phase::Walk;
                Ok(())
            }
            Phase::Walk => {
                self.forget_everything();
                self.phase = Phase::ShuttingDown;
                self.core_input(Input::Shutdown)
            }
            Phase::ShuttingDown => Err("shutdown did not finish with Done".into()),
        }
    }

    fn handle_event(&mut self, event: Event) -> Checked {
        match event {
            Event::ProcessWake(process) => self.start_next_syscall(process),
            Event::External(step) => {
                self.apply_external(step);
                Ok(())
            }
            Event::S3Arrive { id, request, decision } => {
                self.s3_arrive(id, request, decision);
                Ok(())
            }
            Event::S3Respond { id, result } => self.core_input(Input::S3 { id, result }),
            Event::S3BodyChunk { id, output } => self.core_input(Input::S3BodyChunk { id, output }),
            Event::Interrupt(id) => match self.outstanding.get_mut(&id) {
                Some(outstanding) => {
                    outstanding.interrupted = true;
                    self.interrupts += 1;
                    self.core_input(Input::Interrupt { id })
                }
                None => Ok(()),
            },
            Event::StartWalk => {
                self.start_walk();
                Ok(())
            }
        }
    }

    fn final_checks(&mut self) -> Checked {
        if !self.outstanding.is_empty() {
            return Err(format!("{} FUSE requests unanswered at Done", self.outstanding.len()));
        }
        if self.core.has_calls_in_progress() {
            return Err("S3 calls still in progress after Done".into());
        }
        if self.model.uploads_in_progress() != 0 {
            return Err(format!("{} multipart uploads left behind", self.model.uploads_in_progress()));
        }
        Ok(())
    }

    // ---- the core ------------------------------------------------------------------------

    fn core_input(&mut self, input: Input) -> Checked {
        let now = self.now;
        self.trace.record(|line| write!(line, "{now:?} in {input:?}"));
        self.core.handle_input(now, input);
        while let Some(output) = self.core.poll_output() {
            self.trace.record(|line| write!(line, "  out {output:?}"));
            self.handle_output(output)?;
        }
        Ok(())
    }

    fn handle_output(&mut self, output: Output) -> Checked {
        match output {
            Output::S3Request { id, request } => {
                self.s3_requests += 1;
                let decision = self.injector.decide(&request, self.now, &mut self.rng);
                match decision.kind {
                    // A stalled ranged GET may stream part of its body first.
                    FaultKind::Stall if !is_ranged_get(&request) => {}
                    FaultKind::ResetBeforeApply => {
                        let result = Err(S3Error::Transport(TransportError::ConnectionReset));
                        self.schedule(self.now + decision.request_latency, Event::S3Respond { id, result });
                    }
                    _ => self.schedule(self.now + decision.request_latency, Event::S3Arrive { id, request, decision }),
                }
                Ok(())
            }
            Output::CancelS3 { id } => {
                self.cancelled.insert(id);
                Ok(())
            }
            Output::FuseReply { id, reply } => self.handle_reply(id, reply),
            Output::InvalidateInode { .. } | Output::InvalidateEntry { .. } => Ok(()),
            Output::Done => {
                if self.phase != Phase::ShuttingDown {
                    return Err("Done before shutdown".into());
                }
                self.done = true;
                Ok(())
            }
        }
    }

    // ---- S3 ------------------------------------------------------------------------------

    fn s3_arrive(&mut self, id: S3ReqId, request: S3Request, decision: FaultDecision) {
        if self.cancelled.contains(&id) {
            // The client gave up; the request may still reach S3, but nobody hears back.
            if self.rng.chance(500_000) {
                let _unseen = self.apply_to_model(&request);
            }
            return;
        }
        // Ranged GETs stream part of their bodies, as the real transport does, so reads are
        // answered from chunks and a cut-short or stalled body has delivered some already.
        let streamed = is_ranged_get(&request) && self.rng.chance(STREAMED_GET_PER_MILLION);
        let latency = decision.response_latency;
        let result = match decision.kind {
            FaultKind::SlowDown => Err(S3Error::service(503, S3ErrorCode::SlowDown)),
            FaultKind::InternalError => Err(S3Error::service(500, S3ErrorCode::InternalError)),
            FaultKind::ResetAfterApply => {
                let _lost_in_transit = self.apply_to_model(&request);
                Err(S3Error::Transport(TransportError::ConnectionReset))
            }
            FaultKind::TruncateBody { per_million } => match self.apply_to_model(&request) {
                Ok(S3Response::GetObject(mut output)) if !output.body.is_empty() => {
                    let len = output.body.len() as u64;
                    let cut = (len * u64::from(per_million) / 1_000_000).min(len - 1) as usize;
                    output.body = output.body.slice(..cut).into();
                    if streamed {
                        output = self.stream_body(id, output, latency);
                    }
                    Err(S3Error::Transport(TransportError::Truncated { received: output.body }))
                }
                other => other,
            },
            FaultKind::Stall => {
                // Only ranged GETs arrive when stalled: part of the body, then silence until the
                // core's deadline.
                if let Ok(S3Response::GetObject(mut output)) = self.apply_to_model(&request) {
                    let cut = self.rng.below(output.body.len() as u64 + 1) as usize;
                    output.body = output.body.slice(..cut).into();
                    self.stream_body(id, output, latency);
                }
                return;
            }
            FaultKind::None | FaultKind::ResetBeforeApply => match self.apply_to_model(&request) {
                Ok(S3Response::GetObject(output)) if streamed => {
                    Ok(S3Response::GetObject(self.stream_body(id, output, latency)))
                }
                other => other,
            },
        };
        self.schedule(self.now + decision.response_latency, Event::S3Respond { id, result });
    }

    /// Sends the first pieces of a GET body (one to three, at random places, possibly empty) as
    /// chunks within `latency`; returns the rest.
    fn stream_body(&mut self, id: S3ReqId, mut output: GetObjectOutput, latency: Duration) -> GetObjectOutput {
        let pieces = self.rng.between(1, 3) as u32;
        let len = output.body.len() as u64;
        let mut cuts: Vec<usize> = (0..pieces).map(|_| self.rng.below(len + 1) as usize).collect();
        cuts.sort_unstable();
        let mut at = 0;
        for (number, cut) in (1..).zip(cuts) {
            let chunk = GetObjectOutput {
                meta: output.meta.clone(),
                range_start: output.range_start + at as u64,
                body: output.body.slice(at..cut).into(),
            };
            self.schedule(self.now + latency * number / (pieces + 1), Event::S3BodyChunk { id, output: chunk });
            at = cut;
        }
        output.range_start += at as u64;
        output.body = output.body.slice(at..).into();
        output
    }

    /// Applies a request to the bucket and records what it changed in the history.
    fn apply_to_model(&mut self, request: &S3Request) -> S3Result {
        let wall = EPOCH.add_duration(self.now - Instant::ZERO);
        let result = self.model.apply(wall, request);
        for key in changed_keys(request) {
            let state = self.model.object(key).map(|o| Version {
                etag: o.etag.clone(),
                body: o.body.clone(),
                metadata: o.metadata.clone(),
            });
            self.history.record(self.now, key, state);
        }
        result
    }

    fn apply_external(&mut self, step: usize) {
        let mutation = &self.scenario.external[step].mutation;
        let now = self.now;
        self.trace.record(|line| write!(line, "{now:?} other client {mutation:?}"));
        match mutation {
            Mutation::Put { key, size_bytes, content_seed } => {
                let body = content(*size_bytes, *content_seed);
                let etag = self.model.put_object(EPOCH.add_duration(now - Instant::ZERO), key, body.clone());
                self.history.record(now, key, Some(Version { etag, body, metadata: Default::default() }));
                self.external_changes.entry(key.clone()).or_default().push(now);
            }
            Mutation::Delete { key } => {
                self.model.delete_object(key);
                self.history.record(now, key, None);
                self.external_changes.entry(key.clone()).or_default().push(now);
            }
        }
        match self.scenario.external.get(step + 1) {
            Some(next) => {
                let at = now + next.wait;
                self.schedule(at, Event::External(step + 1));
            }
            None => self.external_done = true,
        }
    }

    // ---- processes -----------------------------------------------------------------------

    fn send(&mut self, process: usize, op: FuseOp) -> Checked {
        let id = FuseReqId(self.next_fuse);
        self.next_fuse += 1;
        self.fuse_requests += 1;
        let expects_reply = op.expects_reply();
        if expects_reply {
            self.outstanding
                .insert(id, Outstanding { process, op: op.clone(), issued_at: self.now, interrupted: false });
            if self.phase == Phase::Safety && self.rng.chance(self.scenario.interrupt_per_million) {
                let delay = Duration::from_nanos(self.rng.exponential_nanos(2_000_000));
                self.schedule(self.now + delay, Event::Interrupt(id));
            }
        }
        // Queued, not fed at once: a reply that leads to the next request would otherwise
        // recurse through the core once per request of a long system call.
        self.inbox.push_back(Input::Fuse { id, op });
        Ok(())
    }

    fn start_next_syscall(&mut self, process: usize) -> Checked {
        let Some(action) = self.processes[process].script.pop_front() else {
            self.processes[process].finished = true;
            return Ok(());
        };
        match &action.syscall {
            Syscall::Sleep { duration } => {
                let at = self.now + *duration;
                self.schedule(at, Event::ProcessWake(process));
                Ok(())
            }
            Syscall::Forget { per_million } => {
                self.forget_some(*per_million)?;
                self.finish_syscall(process);
                Ok(())
            }
            Syscall::StatFs => {
                self.processes[process].running =
                    Some(Running { action, resolved: Vec::new(), step: Step::StatFs, own: None });
                self.send(process, FuseOp::StatFs { ino: Ino::ROOT })
            }
            Syscall::Stat { .. }
            | Syscall::Cat { .. }
            | Syscall::ReadAt { .. }
            | Syscall::List { .. }
            | Syscall::Own { .. } => {
                self.processes[process].running =
                    Some(Running { action, resolved: Vec::new(), step: Step::Lookup, own: None });
                self.continue_syscall(process)
            }
        }
    }

    /// Issues the next FUSE request of a process's running syscall after path resolution.
    fn continue_syscall(&mut self, process: usize) -> Checked {
        let running = self.processes[process].running.as_mut().expect("running");
        if running.resolved.len() < running.action.path.len() {
            let parent = running.resolved.last().copied().unwrap_or(Ino::ROOT);
            let name = OsString::from(&running.action.path[running.resolved.len()]);
            running.step = Step::Lookup;
            return self.send(process, FuseOp::Lookup { parent, name });
        }
        let ino = running.resolved.last().copied().unwrap_or(Ino::ROOT);
        let (step, op) = match running.action.syscall {
            Syscall::Stat { .. } => (Step::GetAttr, FuseOp::GetAttr { ino, fh: None }),
            Syscall::Cat { .. } | Syscall::ReadAt { .. } => {
                (Step::Open, FuseOp::Open { ino, flags: OpenFlags(OpenFlags::O_RDONLY) })
            }
            Syscall::List { .. } => (Step::OpenDir, FuseOp::OpenDir { ino }),
            Syscall::Own { .. } => return self.start_own(process, ino),
            _ => unreachable!("only path syscalls resolve"),
        };
        running.step = step;
        self.send(process, op)
    }

    fn finish_syscall(&mut self, process: usize) {
        if let Some(running) = self.processes[process].running.take() {
            for ino in running.resolved {
                if let Some(known) = self.known.get_mut(&ino) {
                    known.pinned -= 1;
                }
            }
        }
        let at = self.now + self.think_time();
        self.schedule(at, Event::ProcessWake(process));
    }

    /// Whether a process of this mount changed `key` (or a directory above it) during `window`.
    fn locally_active(&self, key: &str, window: Window) -> bool {
        self.local_activity.iter().any(|activity| activity.covers(key, window))
    }

    /// Whether a process of this mount unlinked, renamed or replaced `key` (or a directory
    /// above it) during `window`: a handle of the object it named may be left without it.
    fn locally_replaced(&self, key: &str, window: Window) -> bool {
        self.local_activity.iter().any(|activity| activity.replaces && activity.covers(key, window))
    }

    /// Names of a listing of `prefix` that this mount was changing during `window`.
    fn lenient_names<'n>(
        &self,
        prefix: &str,
        listed: impl Iterator<Item = &'n str>,
        window: Window,
    ) -> BTreeSet<String> {
        let mut names: BTreeSet<String> = BTreeSet::new();
        let candidates: BTreeSet<String> = listed
            .map(str::to_owned)
            .chain(self.history.children_during(prefix, window).into_keys())
            .chain(self.local_activity.iter().filter_map(|activity| {
                let rest = activity.key.strip_prefix(prefix)?;
                Some(rest.split('/').next().unwrap_or(rest).to_owned())
            }))
            .collect();
        for name in candidates {
            if self.locally_active(&format!("{prefix}{name}"), window)
                || self.locally_active(&format!("{prefix}{name}/"), window)
            {
                names.insert(name);
            }
        }
        names
    }

    /// The window for an answer that may be up to `age` old at `issued_at`.
    fn window(&self, issued_at: Instant, age: Duration) -> Window {
        let from = Instant::from_nanos(issued_at.as_nanos().saturating_sub(age.as_nanos() as u64));
        Window { from, to: self.now }
    }

    fn key_of(&self, path: &[String]) -> String {
        file_key(&self.scenario.config.mount_prefix, &path.join("/"))
    }

    fn prefix_of(&self, path: &[String]) -> String {
        if path.is_empty() {
            self.scenario.config.mount_prefix.clone()
        } else {
            dir_prefix(&self.scenario.config.mount_prefix, &path.join("/"))
        }
    }

    fn kind_of(&self, ino: Ino) -> FileKind {
        self.known.get(&ino).map_or(FileKind::Directory, |k| k.kind)
    }

    /// Checks a reply and moves its process on.
    fn handle_reply(&mut self, id: FuseReqId, reply: FuseReply) -> Checked {
        let Some(outstanding) = self.outstanding.remove(&id) else {
            return Err(format!("reply to {id:?}, which has no request waiting (a second reply?)"));
        };
        let process = outstanding.process;
        let own_change =
            matches!(self.processes.get(process).and_then(|p| p.running.as_ref()).map(|r| &r.step), Some(Step::Own(_)));
        // Changes of own names decide for themselves: a conflict with the other client may
        // lose an upload, which reaches the writer as EIO.
        if reply == FuseReply::Error(goofys_core::Errno::EIO) && !own_change {
            return Err(format!("{} got EIO, though every fault was within the retry budget", outstanding.op.name()));
        }
        let window = self.window(outstanding.issued_at, self.staleness.stat);
        let interrupted_here = outstanding.interrupted && reply == FuseReply::Error(goofys_core::Errno::EINTR);
        let running = self.processes[process].running.clone().expect("a reply for a running syscall");
        let op_name = outstanding.op.name();
        let context =
            |error: String| format!("{op_name} of {:?} ({:?}): {error}", running.action.path, running.action.syscall);

        match (&running.step, &outstanding.op) {
            (Step::Lookup, FuseOp::Lookup { parent, name }) => {
                let depth = running.resolved.len();
                let path = &running.action.path[..=depth];
                if !interrupted_here {
                    if self.kind_of(*parent) == FileKind::File {
                        if reply != FuseReply::Error(goofys_core::Errno::ENOTDIR) {
                            return Err(context(format!("lookup under a file gave {reply:?}, not ENOTDIR")));
                        }
                    } else {
                        let key = self.key_of(path);
                        let issued_at = outstanding.issued_at;
                        let windows = checker::LookupWindows {
                            file: self.window(issued_at, self.staleness.lookup_file),
                            directory: self.window(issued_at, self.staleness.lookup_directory),
                            missing: self.window(issued_at, self.staleness.lookup_missing),
                        };
                        if !self.locally_active(&key, self.window(issued_at, self.staleness.longest)) {
                            checker::check_lookup(&self.history, &key, &name.to_string_lossy(), &windows, &reply)
                                .map_err(context)?;
                        }
                    }
                }
                match reply {
                    FuseReply::Entry(entry) => {
                        let ino = entry.attr.ino;
                        let known = self.known.entry(ino).or_insert(Known {
                            path: path.to_vec(),
                            kind: entry.attr.kind,
                            nlookup: 0,
                            pinned: 0,
                        });
                        if known.path != path || known.kind != entry.attr.kind {
                            return Err(context(format!(
                                "inode {ino:?} was {:?} ({:?}) and is now {path:?} ({:?})",
                                known.path, known.kind, entry.attr.kind
                            )));
                        }
                        known.nlookup += 1;
                        known.pinned += 1;
                        self.processes[process].running.as_mut().expect("running").resolved.push(ino);
                        self.continue_syscall(process)
                    }
                    _ => {
                        self.finish_syscall(process);
                        Ok(())
                    }
                }
            }
            (Step::GetAttr, FuseOp::GetAttr { ino, .. }) => {
                if !interrupted_here {
                    if self.kind_of(*ino) == FileKind::Directory {
                        if !matches!(&reply, FuseReply::Attr { attr, .. } if attr.kind == FileKind::Directory) {
                            return Err(context(format!("getattr of a directory gave {reply:?}")));
                        }
                    } else {
                        let key = self.key_of(&running.action.path);
                        if !self.locally_active(&key, window) {
                            checker::check_file_attr(&self.history, &key, window, &reply).map_err(context)?;
                        }
                    }
                }
                self.finish_syscall(process);
                Ok(())
            }
            (Step::Open, FuseOp::Open { ino, .. }) => {
                if interrupted_here {
                    self.finish_syscall(process);
                    return Ok(());
                }
                if self.kind_of(*ino) == FileKind::Directory {
                    if reply != FuseReply::Error(goofys_core::Errno::EISDIR) {
                        return Err(context(format!("open of a directory gave {reply:?}")));
                    }
                    self.finish_syscall(process);
                    return Ok(());
                }
                let key = self.key_of(&running.action.path);
                // A file another process of this mount is writing shows its unwritten view.
                let unchecked = self.locally_active(&key, window);
                let candidates = if unchecked {
                    Vec::new()
                } else {
                    checker::check_open(&self.history, &key, window, &reply).map_err(context)?
                };
                let FuseReply::Opened { fh, .. } = reply else {
                    self.finish_syscall(process);
                    return Ok(());
                };
                let size_bytes =
                    if unchecked { 1 << 20 } else { candidates.iter().map(Version::size_bytes).max().unwrap_or(0) };
                self.files.insert(fh, FileCheck { key, candidates, window_from: window.from, unchecked });
                self.next_read(process, *ino, fh, 0, size_bytes)
            }
            (Step::Read { fh, next_read, offset, size }, FuseOp::Read { ino, .. }) => {
                let (fh, next_read, offset, size, ino) = (*fh, *next_read, *offset, *size, *ino);
                let file = &self.files[&fh];
                let open_window = Window { from: file.window_from, to: self.now };
                // A process of this mount started writing the file since it was opened: reads
                // through every handle see the writer's bytes from then on (found by seed 11029).
                let written_here = self.locally_active(&file.key, open_window);
                // This mount's own changes of the file (writes, truncation, chmod, a rename of
                // it) give it new versions that its handles follow: only another client or a
                // replacement of the name (unlink, a rename onto it) may leave a handle stale.
                if written_here
                    && reply == FuseReply::Error(Errno::ESTALE)
                    && !self.externally_changed(&file.key, open_window)
                    && !self.locally_replaced(&file.key, open_window)
                {
                    return Err(context(format!(
                        "read of {:?} got ESTALE, but only this mount changed it, in place",
                        file.key
                    )));
                }
                let file = self.files.get_mut(&fh).expect("an open file");
                file.unchecked |= written_here;
                let may_be_stale = self.history.file_states(&file.key, open_window).len() > 1;
                if !file.unchecked {
                    checker::check_read(
                        &mut file.candidates,
                        offset,
                        size,
                        may_be_stale,
                        outstanding.interrupted,
                        &reply,
                    )
                    .map_err(context)?;
                } else if !matches!(reply, FuseReply::Data(_) | FuseReply::Error(_)) {
                    return Err(context(format!("read gave {reply:?}")));
                }
                let size_bytes = file.candidates.iter().map(Version::size_bytes).max().unwrap_or(0);
                match reply {
                    FuseReply::Data(bytes) if matches!(running.action.syscall, Syscall::Cat { .. }) => {
                        if (bytes.len() as u64) < u64::from(size) {
                            self.release_file(process, ino, fh)
                        } else {
                            self.next_read(process, ino, fh, offset + bytes.len() as u64, size_bytes)
                        }
                    }
                    FuseReply::Data(_) => self.next_read_at(process, ino, fh, next_read, size_bytes),
                    _ => self.release_file(process, ino, fh),
                }
            }
            (Step::Release, FuseOp::Release { fh, .. }) => {
                if reply != FuseReply::Empty {
                    return Err(context(format!("release gave {reply:?}")));
                }
                self.files.remove(fh);
                self.finish_syscall(process);
                Ok(())
            }
            (Step::OpenDir, FuseOp::OpenDir { ino }) => {
                if interrupted_here {
                    self.finish_syscall(process);
                    return Ok(());
                }
                if self.kind_of(*ino) == FileKind::File {
                    if reply != FuseReply::Error(goofys_core::Errno::ENOTDIR) {
                        return Err(context(format!("opendir of a file gave {reply:?}")));
                    }
                    self.finish_syscall(process);
                    return Ok(());
                }
                let FuseReply::Opened { fh, .. } = reply else {
                    return Err(context(format!("opendir gave {reply:?}")));
                };
                let Syscall::List { buffer_bytes, plus, .. } = running.action.syscall else { unreachable!() };
                let prefix = self.prefix_of(&running.action.path);
                self.dirs.insert(
                    fh,
                    DirCheck {
                        ino: *ino,
                        prefix,
                        opened_at: outstanding.issued_at,
                        so_far: ListingSoFar::default(),
                        checked_complete: false,
                    },
                );
                self.read_dir(process, *ino, fh, 0, false, buffer_bytes, plus)
            }
            (Step::ReadDir { fh, offset, rewound, buffer_bytes, plus }, FuseOp::ReadDir { ino, .. }) => {
                let (fh, offset, rewound, buffer_bytes, plus, ino) =
                    (*fh, *offset, *rewound, *buffer_bytes, *plus, *ino);
                if interrupted_here {
                    return self.release_dir(process, ino, fh);
                }
                let dir = self.dirs.get_mut(&fh).expect("an open directory");
                checker::check_readdir_reply(&mut dir.so_far, offset, buffer_bytes, plus, dir.ino, &reply)
                    .map_err(context)?;
                let opened_at = dir.opened_at;
                if let FuseReply::DirPlus(entries) = &reply {
                    let listing_window = self.window(opened_at, self.staleness.stat);
                    for entry in entries.iter().filter(|e| e.dirent.next_offset > 2) {
                        self.learn_from_readdirplus(&running.action.path, entry, listing_window).map_err(context)?;
                    }
                }
                let dir = self.dirs.get_mut(&fh).expect("an open directory");
                let entries = match &reply {
                    FuseReply::Dir(entries) => entries.iter().map(|e| e.next_offset).collect::<Vec<_>>(),
                    FuseReply::DirPlus(entries) => entries.iter().map(|e| e.dirent.next_offset).collect(),
                    _ => Vec::new(),
                };
                if let Some(&next) = entries.last() {
                    if rewound {
                        return self.release_dir(process, ino, fh);
                    }
                    return self.read_dir(process, ino, fh, next, false, buffer_bytes, plus);
                }
                if !dir.checked_complete {
                    dir.checked_complete = true;
                    let window = Window { from: dir.opened_at, to: self.now };
                    let (prefix, so_far) = (dir.prefix.clone(), dir.so_far.clone());
                    let lenient = self.lenient_names(&prefix, so_far.entries.values().map(|e| e.0.as_str()), window);
                    checker::check_complete_listing(&self.history, &prefix, window, &so_far, &lenient)
                        .map_err(context)?;
                }
                let Syscall::List { rewind, .. } = running.action.syscall else { unreachable!() };
                if rewind && !rewound {
                    let back_to = self.rng.below(offset + 1);
                    return self.read_dir(process, ino, fh, back_to, true, buffer_bytes, plus);
                }
                self.release_dir(process, ino, fh)
            }
            (Step::ReleaseDir, FuseOp::ReleaseDir { fh, .. }) => {
                if reply != FuseReply::Empty {
                    return Err(context(format!("releasedir gave {reply:?}")));
                }
                self.dirs.remove(fh);
                self.finish_syscall(process);
                Ok(())
            }
            (Step::StatFs, FuseOp::StatFs { .. }) => {
                if !matches!(reply, FuseReply::StatFs(_)) && !interrupted_here {
                    return Err(context(format!("statfs gave {reply:?}")));
                }
                self.finish_syscall(process);
                Ok(())
            }
            (Step::Own(step), _) => {
                let step = *step;
                self.own_reply(process, step, outstanding, reply)
            }
            (step, op) => Err(format!("process {process} in step {step:?} got a reply to {op:?}")),
        }
    }

    /// A readdirplus entry is a lookup the kernel did: check it and count the reference.
    fn learn_from_readdirplus(
        &mut self,
        dir_path: &[String],
        entry: &goofys_core::fuse_types::DirEntryPlus,
        window: Window,
    ) -> Checked {
        let mut path = dir_path.to_vec();
        path.push(entry.dirent.name.to_string_lossy().into_owned());
        let ino = entry.dirent.ino;
        if entry.entry.attr.kind == FileKind::File && !self.locally_active(&self.key_of(&path), window) {
            let key = self.key_of(&path);
            let sizes: BTreeSet<u64> =
                self.history.file_states(&key, window).into_iter().flatten().map(Version::size_bytes).collect();
            if !sizes.contains(&entry.entry.attr.size_bytes) {
                return Err(format!(
                    "readdirplus gives {path:?} {} bytes; sizes in the window: {sizes:?}",
                    entry.entry.attr.size_bytes
                ));
            }
        }
        let known = self.known.entry(ino).or_insert(Known {
            path: path.clone(),
            kind: entry.entry.attr.kind,
            nlookup: 0,
            pinned: 0,
        });
        if known.path != path || known.kind != entry.entry.attr.kind {
            return Err(format!("readdirplus: inode {ino:?} was {:?} and is now {path:?}", known.path));
        }
        known.nlookup += 1;
        Ok(())
    }

    fn next_read(&mut self, process: usize, ino: Ino, fh: FileHandle, offset: u64, size_bytes: u64) -> Checked {
        let running = self.processes[process].running.as_ref().expect("running");
        match &running.action.syscall {
            Syscall::Cat { chunk_bytes, .. } => {
                let size = *chunk_bytes;
                self.processes[process].running.as_mut().expect("running").step =
                    Step::Read { fh, next_read: 0, offset, size };
                self.send(process, FuseOp::Read { ino, fh, offset, size })
            }
            Syscall::ReadAt { .. } => self.next_read_at(process, ino, fh, 0, size_bytes),
            _ => unreachable!("only reading syscalls read"),
        }
    }

    fn next_read_at(&mut self, process: usize, ino: Ino, fh: FileHandle, index: usize, size_bytes: u64) -> Checked {
        let running = self.processes[process].running.as_ref().expect("running");
        let Syscall::ReadAt { reads, .. } = &running.action.syscall else { unreachable!() };
        let Some(&RandomRead { offset_per_million, size_bytes: size }) = reads.get(index) else {
            return self.release_file(process, ino, fh);
        };
        let offset = size_bytes * u64::from(offset_per_million) / 1_000_000;
        self.processes[process].running.as_mut().expect("running").step =
            Step::Read { fh, next_read: index + 1, offset, size };
        self.send(process, FuseOp::Read { ino, fh, offset, size })
    }

    fn release_file(&mut self, process: usize, ino: Ino, fh: FileHandle) -> Checked {
        self.processes[process].running.as_mut().expect("running").step = Step::Release;
        self.send(process, FuseOp::Release { ino, fh })
    }

    #[allow(clippy::too_many_arguments)]
    fn read_dir(
        &mut self,
        process: usize,
        ino: Ino,
        fh: FileHandle,
        offset: u64,
        rewound: bool,
        buffer_bytes: u32,
        plus: bool,
    ) -> Checked {
        self.processes[process].running.as_mut().expect("running").step =
            Step::ReadDir { fh, offset, rewound, buffer_bytes, plus };
        self.send(process, FuseOp::ReadDir { ino, fh, offset, size_bytes: buffer_bytes, plus })
    }

    fn release_dir(&mut self, process: usize, ino: Ino, fh: FileHandle) -> Checked {
        self.processes[process].running.as_mut().expect("running").step = Step::ReleaseDir;
        self.send(process, FuseOp::ReleaseDir { ino, fh })
    }

    /// The kernel evicts some inodes nobody is using and forgets its references to them.
    fn forget_some(&mut self, per_million: u32) -> Checked {
        let candidates: Vec<Ino> =
            self.known.iter().filter(|(ino, k)| **ino != Ino::ROOT && k.pinned == 0).map(|(ino, _)| *ino).collect();
        for ino in candidates {
            if self.rng.chance(per_million) {
                let known = self.known.remove(&ino).expect("listed");
                self.send(usize::MAX, FuseOp::Forget { ino, nlookup: known.nlookup })?;
            }
        }
        Ok(())
    }

    fn forget_everything(&mut self) {
        let all: Vec<(Ino, u64)> =
            self.known.iter().filter(|(ino, _)| **ino != Ino::ROOT).map(|(ino, k)| (*ino, k.nlookup)).collect();
        for (ino, nlookup) in all {
            self.known.remove(&ino);
            let id = FuseReqId(self.next_fuse);
            self.next_fuse += 1;
            let now = self.now;
            let input = Input::Fuse { id, op: FuseOp::Forget { ino, nlookup } };
            self.trace.record(|line| write!(line, "{now:?} in {input:?}"));
            self.core.handle_input(now, input);
        }
    }

    /// The liveness phase's last act: one process walks the whole tree as it is now, listing
    /// every directory and reading every file. Nothing changes any more and every cache has
    /// expired, so every answer must be exactly the reference's.
    fn start_walk(&mut self) {
        let mut script = VecDeque::new();
        let mut dirs = vec![Vec::<String>::new()];
        while let Some(dir) = dirs.pop() {
            let prefix = self.prefix_of(&dir);
            let plus = self.rng.chance(500_000);
            script.push_back(Action {
                syscall: Syscall::List { path: crate::scenario::PathIndex(0), buffer_bytes: 4096, plus, rewind: false },
                path: dir.clone(),
            });
            for (name, kind) in self.history.children_at(&prefix, self.now) {
                let mut path = dir.clone();
                path.push(name);
                match kind {
                    FileKind::Directory => dirs.push(path),
                    _ => script.push_back(Action {
                        syscall: Syscall::Cat { path: crate::scenario::PathIndex(0), chunk_bytes: 1 << 20 },
                        path,
                    }),
                }
            }
        }
        self.processes.push(Process { script, running: None, finished: false });
        let walker = self.processes.len() - 1;
        self.schedule(self.now, Event::ProcessWake(walker));
    }
}

/// The keys a request may change.
fn changed_keys(request: &S3Request) -> Vec<&str> {
    match request {
        S3Request::PutObject { key, .. }
        | S3Request::CompleteMultipartUpload { key, .. }
        | S3Request::CopyObject { key, .. }
        | S3Request::DeleteObject { key } => vec![key.as_str()],
        S3Request::DeleteObjects { keys } => keys.iter().map(String::as_str).collect(),
        _ => Vec::new(),
    }
}

/// The deterministic content of an object.
pub fn content(size_bytes: u32, seed: u64) -> Bytes {
    let mut rng = SimRng::new(seed);
    let mut body = Vec::with_capacity(size_bytes as usize + 8);
    while body.len() < size_bytes as usize {
        body.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    body.truncate(size_bytes as usize);
    Bytes::from(body)
}
