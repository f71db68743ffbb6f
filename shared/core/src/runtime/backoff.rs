//! How long a retryable failure waits before its next attempt: exponential in the number of
//! receives, capped, with jitter so that a burst of failures does not come back as a burst.

use std::time::Duration;

use crate::config::RetryPolicy;

/// `jitter` is a random number in [0, 1): the wait is between half and all of the
/// exponential delay, and never shorter than what the other side asked for (Retry-After).
pub fn retry_delay(
    policy: &RetryPolicy,
    receive_count: u32,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let exponent = receive_count.saturating_sub(1).min(20);
    let ceiling = policy
        .base()
        .saturating_mul(1u32 << exponent)
        .min(policy.max());
    let jitter = jitter.clamp(0.0, 1.0);
    let delay = ceiling.mul_f64(0.5 + 0.5 * jitter);
    delay.max(retry_after.unwrap_or_default()).min(policy.max())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            base_seconds: 5,
            max_seconds: 900,
        }
    }

    #[test]
    fn delays_grow_exponentially_within_the_jitter_band_and_are_capped() {
        for (receive, low, high) in [
            (1, 2.5, 5.0),
            (2, 5.0, 10.0),
            (4, 20.0, 40.0),
            (30, 450.0, 900.0),
        ] {
            for jitter in [0.0, 0.5, 0.999] {
                let secs = retry_delay(&policy(), receive, None, jitter).as_secs_f64();
                assert!(secs >= low && secs <= high, "receive {receive}: {secs}");
            }
        }
    }

    #[test]
    fn retry_after_is_honoured_up_to_the_cap() {
        let asked = Duration::from_secs(120);
        assert_eq!(retry_delay(&policy(), 1, Some(asked), 0.0), asked);
        assert_eq!(
            retry_delay(&policy(), 1, Some(Duration::from_secs(5000)), 0.0),
            Duration::from_secs(900)
        );
    }
}
