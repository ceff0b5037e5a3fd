//! When an S3 failure is worth another attempt, and how long to wait before it.
//!
//! Retries live in the core, not the transport, so that they are deterministic and covered by
//! the simulator. Server errors, throttling, timeouts and broken connections are retried with
//! exponential backoff and full jitter (the AWS SDKs' "standard" policy); client errors (4xx)
//! are final.

use std::time::Duration;

use rand_core::Rng;

use crate::s3_types::{S3Error, S3ErrorCode, TransportError};

/// Whether `error` may succeed if the same request is sent again.
pub fn is_retryable(error: &S3Error) -> bool {
    match error {
        S3Error::Service(service) => {
            matches!(
                service.code,
                S3ErrorCode::SlowDown
                    | S3ErrorCode::InternalError
                    | S3ErrorCode::ServiceUnavailable
                    | S3ErrorCode::RequestTimeout
            ) || service.status >= 500
                || service.status == 429
                || service.status == 408
        }
        S3Error::Transport(transport) => match transport {
            TransportError::Timeout
            | TransportError::ConnectionReset
            | TransportError::Truncated { .. }
            | TransportError::Connect(_)
            | TransportError::Other(_) => true,
            // A certificate problem does not fix itself.
            TransportError::Tls(_) => false,
        },
    }
}

/// Full-jitter exponential backoff: a uniform random delay in
/// `[0, min(max_backoff, initial_backoff * 2^(attempt - 1))]`, where `attempt` is the number of
/// the attempt that just failed (1 for the first).
pub fn backoff_delay(attempt: u32, initial_backoff: Duration, max_backoff: Duration, rng: &mut impl Rng) -> Duration {
    let cap = backoff_cap(attempt, initial_backoff, max_backoff);
    let cap_nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
    if cap_nanos == 0 {
        return Duration::ZERO;
    }
    Duration::from_nanos(rng.next_u64() % (cap_nanos + 1))
}

/// The longest backoff after attempt `attempt` failed (see [`backoff_delay`]).
pub fn backoff_cap(attempt: u32, initial_backoff: Duration, max_backoff: Duration) -> Duration {
    let exponent = attempt.saturating_sub(1).min(31);
    initial_backoff.saturating_mul(1u32 << exponent).min(max_backoff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_core::SeedableRng;
    use rand_pcg::Pcg64Mcg;

    #[test]
    fn server_errors_and_network_failures_are_retried_client_errors_are_not() {
        assert!(is_retryable(&S3Error::service(503, S3ErrorCode::SlowDown)));
        assert!(is_retryable(&S3Error::service(500, S3ErrorCode::InternalError)));
        assert!(is_retryable(&S3Error::service(502, S3ErrorCode::Other("BadGateway".into()))));
        assert!(is_retryable(&S3Error::Transport(TransportError::ConnectionReset)));
        assert!(is_retryable(&S3Error::Transport(TransportError::Timeout)));
        assert!(!is_retryable(&S3Error::service(404, S3ErrorCode::NoSuchKey)));
        assert!(!is_retryable(&S3Error::service(403, S3ErrorCode::AccessDenied)));
        assert!(!is_retryable(&S3Error::service(412, S3ErrorCode::PreconditionFailed)));
        assert!(!is_retryable(&S3Error::Transport(TransportError::Tls("bad cert".into()))));
    }

    #[test]
    fn backoff_grows_exponentially_within_its_cap_and_is_jittered() {
        let mut rng = Pcg64Mcg::seed_from_u64(7);
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(20);
        for attempt in 1..=12 {
            let cap = (initial * 2u32.pow(attempt - 1)).min(max);
            for _ in 0..50 {
                assert!(backoff_delay(attempt, initial, max, &mut rng) <= cap);
            }
        }
        let delays: Vec<_> = (0..20).map(|_| backoff_delay(8, initial, max, &mut rng)).collect();
        assert!(delays.windows(2).any(|w| w[0] != w[1]), "jitter must vary the delay");
        assert!(backoff_delay(40, initial, max, &mut rng) <= max);
    }
}
