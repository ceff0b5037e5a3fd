//! Time as an input.
//!
//! The core never reads a clock. The driver (or the simulator) passes `now` with every input,
//! and every cache expiry, retry backoff and request deadline is stored as an absolute
//! [`Instant`] computed from it. This makes runs replayable from a seed and lets tests jump
//! time forward.

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

/// A point on the core's monotonic clock: nanoseconds since the driver's chosen origin.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant {
    nanos: u64,
}

impl Instant {
    /// The origin of the clock.
    pub const ZERO: Instant = Instant { nanos: 0 };

    pub const fn from_nanos(nanos: u64) -> Self {
        Instant { nanos }
    }

    pub const fn as_nanos(self) -> u64 {
        self.nanos
    }

    /// Time elapsed since `earlier`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.nanos.saturating_sub(earlier.nanos))
    }

    /// Time from `self` until `later`, or zero if `later` has passed.
    pub fn saturating_duration_until(self, later: Instant) -> Duration {
        later.saturating_duration_since(self)
    }
}

fn duration_nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Instant {
    type Output = Instant;

    /// Saturates at the far future rather than overflowing: a huge TTL means "never expires".
    fn add(self, rhs: Duration) -> Instant {
        Instant { nanos: self.nanos.saturating_add(duration_nanos(rhs)) }
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;

    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_duration_since(rhs)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "t+{}.{:09}s", self.nanos / 1_000_000_000, self.nanos % 1_000_000_000)
    }
}

/// Wall-clock time: nanoseconds since the Unix epoch (UTC). Used for file times.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct UnixNanos(pub i64);

impl UnixNanos {
    pub const fn from_secs(secs: i64) -> Self {
        UnixNanos(secs.saturating_mul(1_000_000_000))
    }

    pub const fn secs(self) -> i64 {
        self.0.div_euclid(1_000_000_000)
    }

    pub const fn subsec_nanos(self) -> u32 {
        self.0.rem_euclid(1_000_000_000) as u32
    }

    /// Wall time after `elapsed` has passed.
    pub fn add_duration(self, elapsed: Duration) -> Self {
        let nanos = i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX);
        UnixNanos(self.0.saturating_add(nanos))
    }
}

impl fmt::Debug for UnixNanos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unix:{}.{:09}", self.secs(), self.subsec_nanos())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instant_addition_saturates_instead_of_wrapping() {
        let t = Instant::from_nanos(u64::MAX - 5);
        assert_eq!(t + Duration::from_secs(1), Instant::from_nanos(u64::MAX));
        assert_eq!(Instant::ZERO + Duration::MAX, Instant::from_nanos(u64::MAX));
    }

    #[test]
    fn instant_difference_never_goes_negative() {
        let a = Instant::from_nanos(10);
        let b = Instant::from_nanos(30);
        assert_eq!(b - a, Duration::from_nanos(20));
        assert_eq!(a - b, Duration::ZERO);
        assert_eq!(a.saturating_duration_until(b), Duration::from_nanos(20));
    }

    #[test]
    fn unix_nanos_splits_seconds_for_times_before_the_epoch() {
        let t = UnixNanos(-1);
        assert_eq!(t.secs(), -1);
        assert_eq!(t.subsec_nanos(), 999_999_999);
        assert_eq!(UnixNanos::from_secs(3).add_duration(Duration::from_millis(5)).0, 3_005_000_000);
    }
}
