//! What happens to each message of a queue batch, decided from the failure's class alone.

use std::time::Duration;

use crate::backoff::retry_delay;
use crate::config::RetryPolicy;
use crate::error::{ErrorClass, SyncError};
use crate::state::EntityRef;

/// A failed message, with the entity it was about when that much could be read.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageFailure {
    pub error: SyncError,
    pub entity: Option<EntityRef>,
}

impl MessageFailure {
    pub fn unattributed(error: SyncError) -> Self {
        Self {
            error,
            entity: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Move it to the dead-letter queue now, with its reason: retrying cannot help.
    DeadLetter,
    /// Leave it on the queue, invisible for `delay`; the redrive policy moves it to the
    /// dead-letter queue once its receives run out.
    Retry { delay: Duration },
}

/// `receive_count` is SQS's ApproximateReceiveCount; `jitter` a random number in [0, 1).
pub fn disposition(
    error: &SyncError,
    receive_count: u32,
    policy: &RetryPolicy,
    jitter: f64,
) -> Disposition {
    match error.class {
        ErrorClass::Permanent => Disposition::DeadLetter,
        ErrorClass::Retryable => Disposition::Retry {
            delay: retry_delay(policy, receive_count, error.retry_after, jitter),
        },
        // The holder finishes within its lease; a short wait is enough.
        ErrorClass::InFlight => Disposition::Retry {
            delay: retry_delay(policy, 1, None, jitter),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_class_gets_its_disposition() {
        let policy = RetryPolicy::default();
        let permanent = SyncError::permanent("unknown_sku", "x");
        assert_eq!(
            disposition(&permanent, 1, &policy, 0.5),
            Disposition::DeadLetter
        );
        let retryable = SyncError::dependency_down("erp_unavailable", "x");
        assert!(matches!(
            disposition(&retryable, 3, &policy, 0.0),
            Disposition::Retry { delay } if delay == Duration::from_secs(10)
        ));
        let held = SyncError::in_flight("x");
        assert!(matches!(
            disposition(&held, 7, &policy, 0.0),
            Disposition::Retry { delay } if delay <= policy.base()
        ));
    }
}
