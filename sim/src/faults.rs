//! Fault injection for simulated S3 requests: latency, errors, resets, truncation, stalls.
//!
//! Every S3 request the core emits gets one [`FaultDecision`], either drawn at random from a
//! [`FaultConfig`] (seeded, so a run replays) or taken from a script (so proptest can shrink a
//! failing run toward "no faults"). The decisions model what real networks and servers do:
//! - latency on the way there and back, which reorders completions;
//! - 503 SlowDown and 500 InternalError, answered without touching the bucket;
//! - a connection reset before the request reached S3, or after S3 applied it (the ambiguous
//!   case that catches non-idempotent retries);
//! - a GET body cut short;
//! - a stall: no answer at all, until the core's request timeout fires (a ranged GET may have
//!   streamed part of its body first).

use std::collections::{BTreeMap, VecDeque};
use std::time::Duration;

use goofys_core::Instant;
use goofys_core::s3_types::S3Request;

use crate::rng::Entropy;

/// What happens to one S3 request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FaultKind {
    None,
    SlowDown,
    InternalError,
    ResetBeforeApply,
    ResetAfterApply,
    /// A GET body is cut after `per_million / 1e6` of its length (other requests: no fault).
    TruncateBody {
        per_million: u32,
    },
    Stall,
}

impl FaultKind {
    /// Whether the request fails (the core will have to try again).
    pub fn fails(self) -> bool {
        !matches!(self, FaultKind::None)
    }
}

/// The fate of one S3 request.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FaultDecision {
    pub kind: FaultKind,
    /// Time from the core's output to S3 applying the request.
    pub request_latency: Duration,
    /// Time from S3 applying it to the core seeing the result.
    pub response_latency: Duration,
}

impl FaultDecision {
    pub const CLEAN: FaultDecision =
        FaultDecision { kind: FaultKind::None, request_latency: Duration::ZERO, response_latency: Duration::ZERO };
}

/// Probabilities (per million requests) and latencies of the random fault model.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FaultConfig {
    pub latency_min: Duration,
    pub latency_mean: Duration,
    pub slowdown_per_million: u32,
    pub internal_error_per_million: u32,
    pub reset_before_per_million: u32,
    pub reset_after_per_million: u32,
    pub truncate_per_million: u32,
    pub stall_per_million: u32,
}

impl FaultConfig {
    /// No faults, a little latency.
    pub fn none() -> Self {
        FaultConfig {
            latency_min: Duration::from_micros(200),
            latency_mean: Duration::from_millis(2),
            slowdown_per_million: 0,
            internal_error_per_million: 0,
            reset_before_per_million: 0,
            reset_after_per_million: 0,
            truncate_per_million: 0,
            stall_per_million: 0,
        }
    }

    /// About one request in twenty fails somehow.
    pub fn flaky() -> Self {
        FaultConfig {
            slowdown_per_million: 10_000,
            internal_error_per_million: 10_000,
            reset_before_per_million: 10_000,
            reset_after_per_million: 10_000,
            truncate_per_million: 10_000,
            stall_per_million: 2_000,
            ..FaultConfig::none()
        }
    }

    /// A store that throttles one request in five.
    pub fn throttled() -> Self {
        FaultConfig { slowdown_per_million: 200_000, latency_mean: Duration::from_millis(10), ..FaultConfig::none() }
    }

    /// Everything at once, often, with long and variable latency.
    pub fn chaos() -> Self {
        FaultConfig {
            latency_min: Duration::from_millis(1),
            latency_mean: Duration::from_millis(50),
            slowdown_per_million: 40_000,
            internal_error_per_million: 40_000,
            reset_before_per_million: 40_000,
            reset_after_per_million: 40_000,
            truncate_per_million: 60_000,
            stall_per_million: 10_000,
        }
    }

    /// A random mix, different for every seed (TigerBeetle's swarm testing): some seeds get
    /// only one kind of fault, some many, some none.
    pub fn swarm(entropy: &mut impl Entropy) -> Self {
        let mut knob = |max: u64| {
            if entropy.chance(500_000) { entropy.below(max + 1) as u32 } else { 0 }
        };
        let (slowdown, internal, reset_before, reset_after, truncate, stall) =
            (knob(100_000), knob(50_000), knob(50_000), knob(50_000), knob(100_000), knob(10_000));
        FaultConfig {
            latency_min: Duration::from_micros(entropy.below(2_000)),
            latency_mean: Duration::from_micros(entropy.between(100, 50_000)),
            slowdown_per_million: slowdown,
            internal_error_per_million: internal,
            reset_before_per_million: reset_before,
            reset_after_per_million: reset_after,
            truncate_per_million: truncate,
            stall_per_million: stall,
        }
    }

    /// Draws one decision.
    pub fn decide(&self, entropy: &mut impl Entropy) -> FaultDecision {
        let mut roll = entropy.below(1_000_000) as u32;
        let mut kind = FaultKind::None;
        for (per_million, candidate) in [
            (self.slowdown_per_million, FaultKind::SlowDown),
            (self.internal_error_per_million, FaultKind::InternalError),
            (self.reset_before_per_million, FaultKind::ResetBeforeApply),
            (self.reset_after_per_million, FaultKind::ResetAfterApply),
            (self.truncate_per_million, FaultKind::TruncateBody { per_million: 0 }),
            (self.stall_per_million, FaultKind::Stall),
        ] {
            if roll < per_million {
                kind = candidate;
                break;
            }
            roll -= per_million.min(roll);
        }
        if let FaultKind::TruncateBody { .. } = kind {
            kind = FaultKind::TruncateBody { per_million: entropy.below(1_000_000) as u32 };
        }
        let min = self.latency_min.as_nanos() as u64;
        let mean = self.latency_mean.as_nanos() as u64;
        FaultDecision {
            kind,
            request_latency: Duration::from_nanos(min + entropy.exponential_nanos(mean)),
            response_latency: Duration::from_nanos(min + entropy.exponential_nanos(mean)),
        }
    }
}

/// Where decisions come from.
#[derive(Clone, Debug)]
pub enum FaultPlan {
    /// Drawn from a config with the run's entropy.
    Random(FaultConfig),
    /// Taken in order, one per request; once used up, requests see no faults and no latency.
    Scripted(Vec<FaultDecision>),
}

/// Hands out decisions, and makes sure faults can be masked by retries: a request identity
/// fails at most `max_failures` times within `retry_horizon`, the longest time one call can
/// spend retrying. Every attempt of one call falls within that horizon, so no call can see
/// more failures than its retry budget allows, however many identical calls run at once.
/// Without this cap a run could end in EIO by bad luck, and the checker could not tell luck
/// from a bug. Faults that exhaust retries are tested on their own.
#[derive(Clone, Debug)]
pub struct FaultInjector {
    plan: FaultPlan,
    next_scripted: usize,
    max_failures: u32,
    retry_horizon: Duration,
    failures_by_request: BTreeMap<String, VecDeque<Instant>>,
    pub faults_injected: u64,
}

impl FaultInjector {
    pub fn new(plan: FaultPlan, max_failures: u32, retry_horizon: Duration) -> Self {
        FaultInjector {
            plan,
            next_scripted: 0,
            max_failures,
            retry_horizon,
            failures_by_request: BTreeMap::new(),
            faults_injected: 0,
        }
    }

    /// Turns faults off (the liveness phase); latency stays.
    pub fn disable_faults(&mut self) {
        self.max_failures = 0;
    }

    pub fn decide(&mut self, request: &S3Request, now: Instant, entropy: &mut impl Entropy) -> FaultDecision {
        let mut decision = match &mut self.plan {
            FaultPlan::Random(config) => config.decide(entropy),
            FaultPlan::Scripted(script) => {
                let decision = script.get(self.next_scripted).copied().unwrap_or(FaultDecision::CLEAN);
                self.next_scripted += 1;
                decision
            }
        };
        if matches!(decision.kind, FaultKind::TruncateBody { .. }) && !matches!(request, S3Request::GetObject { .. }) {
            decision.kind = FaultKind::None;
        }
        if !decision.kind.fails() {
            return decision;
        }
        let failures = self.failures_by_request.entry(request_identity(request)).or_default();
        while failures.front().is_some_and(|&at| now.saturating_duration_since(at) > self.retry_horizon) {
            failures.pop_front();
        }
        if failures.len() < self.max_failures as usize {
            failures.push_back(now);
            self.faults_injected += 1;
        } else {
            decision.kind = FaultKind::None;
        }
        decision
    }
}

/// A compact identity of a request: retries of the same request share it.
fn request_identity(request: &S3Request) -> String {
    format!("{request:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SimRng;

    fn get() -> S3Request {
        S3Request::GetObject { key: "k".into(), range: None, if_match: None }
    }

    fn at(secs: u64) -> Instant {
        Instant::from_nanos(secs * 1_000_000_000)
    }

    #[test]
    fn failures_of_one_request_are_capped_within_the_retry_horizon() {
        let always_stall = FaultConfig { stall_per_million: 1_000_000, ..FaultConfig::none() };
        let mut injector = FaultInjector::new(FaultPlan::Random(always_stall), 3, Duration::from_secs(10));
        let mut rng = SimRng::new(1);
        let kinds: Vec<FaultKind> = (0..5).map(|i| injector.decide(&get(), at(i), &mut rng).kind).collect();
        assert_eq!(kinds, [FaultKind::Stall, FaultKind::Stall, FaultKind::Stall, FaultKind::None, FaultKind::None]);
        assert_eq!(injector.decide(&get(), at(11), &mut rng).kind, FaultKind::Stall, "the first failure aged out");
        let other = S3Request::HeadObject { key: "k".into() };
        assert_eq!(injector.decide(&other, at(5), &mut rng).kind, FaultKind::Stall, "each request has its own budget");
    }

    #[test]
    fn scripted_faults_are_used_in_order_then_requests_are_clean() {
        let script = vec![
            FaultDecision { kind: FaultKind::SlowDown, ..FaultDecision::CLEAN },
            FaultDecision { kind: FaultKind::TruncateBody { per_million: 500_000 }, ..FaultDecision::CLEAN },
        ];
        let mut injector = FaultInjector::new(FaultPlan::Scripted(script), 9, Duration::from_secs(60));
        let mut rng = SimRng::new(1);
        let head = S3Request::HeadObject { key: "k".into() };
        assert_eq!(injector.decide(&head, at(0), &mut rng).kind, FaultKind::SlowDown);
        assert_eq!(injector.decide(&head, at(0), &mut rng).kind, FaultKind::None, "only GET bodies are truncated");
        assert_eq!(injector.decide(&get(), at(0), &mut rng), FaultDecision::CLEAN);
    }

    #[test]
    fn presets_inject_roughly_their_rates() {
        let mut rng = SimRng::new(3);
        let config = FaultConfig::flaky();
        let failures = (0..100_000).filter(|_| config.decide(&mut rng).kind.fails()).count();
        assert!((4_000..=6_500).contains(&failures), "flaky fails about 5%: {failures}");
        assert!((0..1000).all(|_| !FaultConfig::none().decide(&mut rng).kind.fails()));
    }

    #[test]
    fn disabled_faults_let_everything_through() {
        let mut injector = FaultInjector::new(FaultPlan::Random(FaultConfig::chaos()), 5, Duration::from_secs(60));
        injector.disable_faults();
        let mut rng = SimRng::new(4);
        assert!((0..1000).all(|i| !injector.decide(&get(), at(i), &mut rng).kind.fails()));
    }
}
