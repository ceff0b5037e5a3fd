//! Which requests the fault proxy fails, and how: a seeded, per-request choice among the ways a
//! flaky network or a throttling store fails an S3 request, so a run with faults can be
//! replayed from its seed and its figures reported.
//!
//! The choice for the n-th request depends only on the seed and n (a SplitMix64 hash), not on a shared
//! random stream, so concurrent requests do not disturb each other's draws. Which request is
//! the n-th still depends on timing: a seed fixes the mix of faults, not their exact victims.

use std::time::Duration;

use goofys_sim::rng::derive_seed;

/// One way the proxy fails a request.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug, Hash)]
pub enum Fault {
    /// `503 SlowDown`, without forwarding: throttling.
    SlowDown,
    /// `500 InternalError`, without forwarding.
    InternalError,
    /// The connection is closed before the request is forwarded: the server never saw it.
    ResetBeforeForwarding,
    /// The request is forwarded and the server's whole answer read, then the connection is
    /// closed without answering: the server did the work, the client does not know it.
    ResetAfterForwarding,
    /// The server's answer is forwarded with its full `Content-Length` but only half of its
    /// body, then the connection is closed.
    CutBodyShort,
    /// Nothing is answered for [`FaultSchedule::stall`] (past the client's timeout), then the
    /// connection is closed; the request is never forwarded.
    Stall,
    /// The request is forwarded after a pause of up to [`FaultSchedule::delay_max`]; it then
    /// succeeds.
    Delay,
}

impl Fault {
    /// Every kind of fault.
    pub const ALL: [Fault; 7] = [
        Fault::SlowDown,
        Fault::InternalError,
        Fault::ResetBeforeForwarding,
        Fault::ResetAfterForwarding,
        Fault::CutBodyShort,
        Fault::Stall,
        Fault::Delay,
    ];
}

/// Which requests fail, and how.
#[derive(Clone, Debug)]
pub struct FaultSchedule {
    pub seed: u64,
    /// One request in this many is failed (1 fails them all).
    pub one_in: u64,
    /// The kinds of fault to choose from, equally likely.
    pub kinds: Vec<Fault>,
    /// How long a [`Fault::Stall`] holds the request before closing the connection.
    pub stall: Duration,
    /// The longest pause of a [`Fault::Delay`].
    pub delay_max: Duration,
}

impl FaultSchedule {
    /// One request in `one_in` failed in one of every way, a stall lasting `stall`.
    pub fn every_kind(seed: u64, one_in: u64, stall: Duration) -> FaultSchedule {
        FaultSchedule { seed, one_in, kinds: Fault::ALL.to_vec(), stall, delay_max: Duration::from_millis(300) }
    }

    /// The fault for the request numbered `request_index` (from 0), if it is one to fail.
    pub fn fault_for(&self, request_index: u64) -> Option<Fault> {
        if self.kinds.is_empty() || self.one_in == 0 {
            return None;
        }
        let draw = derive_seed(self.seed, request_index);
        if !draw.is_multiple_of(self.one_in) {
            return None;
        }
        let kind_draw = derive_seed(draw, 1);
        Some(self.kinds[(kind_draw % self.kinds.len() as u64) as usize])
    }

    /// How long the request numbered `request_index` waits under [`Fault::Delay`].
    pub fn delay_for(&self, request_index: u64) -> Duration {
        let max_ms = self.delay_max.as_millis().max(1) as u64;
        Duration::from_millis(derive_seed(self.seed.rotate_left(17), request_index) % max_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn about_one_request_in_n_fails_and_every_kind_is_drawn() {
        let schedule = FaultSchedule::every_kind(7, 10, Duration::from_secs(1));
        let faults: Vec<Fault> = (0..70_000).filter_map(|n| schedule.fault_for(n)).collect();
        assert!((6_000..8_000).contains(&faults.len()), "{} of 70,000 failed", faults.len());
        for kind in Fault::ALL {
            let count = faults.iter().filter(|&&fault| fault == kind).count();
            assert!((700..1_300).contains(&count), "{kind:?} drawn {count} times of {}", faults.len());
        }
    }

    #[test]
    fn the_same_seed_fails_the_same_requests_and_another_seed_others() {
        let draws = |seed| (0..1_000).map(move |n| FaultSchedule::every_kind(seed, 10, Duration::ZERO).fault_for(n));
        assert!(draws(1).eq(draws(1)));
        assert!(!draws(1).eq(draws(2)));
    }

    #[test]
    fn no_kinds_or_one_in_zero_fails_nothing() {
        let mut schedule = FaultSchedule::every_kind(3, 1, Duration::ZERO);
        assert!((0..100).all(|n| schedule.fault_for(n).is_some()));
        schedule.kinds.clear();
        assert!((0..100).all(|n| schedule.fault_for(n).is_none()));
        let schedule = FaultSchedule { one_in: 0, ..FaultSchedule::every_kind(3, 1, Duration::ZERO) };
        assert!((0..100).all(|n| schedule.fault_for(n).is_none()));
    }

    #[test]
    fn delays_stay_under_the_maximum() {
        let schedule = FaultSchedule::every_kind(5, 10, Duration::ZERO);
        assert!((0..1_000).all(|n| schedule.delay_for(n) < schedule.delay_max));
    }
}
