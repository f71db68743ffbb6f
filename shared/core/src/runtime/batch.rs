//! What happens to each message of a queue batch, decided from the failure's class alone.

use std::time::Duration;

use crate::config::RetryPolicy;
use crate::error::{ErrorClass, SyncError};
use crate::model::state::EntityRef;
use crate::runtime::backoff::retry_delay;

/// A failed message, with the entity it was about when that much could be read, and the
/// entity's version it carried (so that giving up on a stale message does not mark a newer
/// state as needing attention).
#[derive(Debug, Clone, PartialEq)]
pub struct MessageFailure {
    pub error: SyncError,
    pub entity: Option<EntityRef>,
    pub version: Option<time::OffsetDateTime>,
}

impl MessageFailure {
    pub fn unattributed(error: SyncError) -> Self {
        Self {
            error,
            entity: None,
            version: None,
        }
    }

    /// A failure about an entity that has no version (shipments, refunds).
    pub fn of(entity: EntityRef, error: SyncError) -> Self {
        Self {
            error,
            entity: Some(entity),
            version: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Move it to the dead-letter queue now, with this reason: retrying cannot help, or
    /// this was the last receive the queue allows.
    DeadLetter(SyncError),
    /// Leave it on the queue, invisible for `delay`; the redrive policy moves it to the
    /// dead-letter queue once its receives run out.
    Retry { delay: Duration },
}

/// `receive_count` is SQS's ApproximateReceiveCount and `max_receives` the queue's
/// maxReceiveCount, when known; `jitter` a random number in [0, 1).
///
/// On the last receive a retryable failure is parked by us rather than left to the redrive
/// policy, which would move it without a reason and leave its state at "retrying".
pub fn disposition(
    error: &SyncError,
    receive_count: u32,
    max_receives: Option<u32>,
    policy: &RetryPolicy,
    jitter: f64,
) -> Disposition {
    let last_receive = max_receives.is_some_and(|max| receive_count >= max);
    match error.class {
        ErrorClass::Permanent => Disposition::DeadLetter(error.clone()),
        _ if last_receive => Disposition::DeadLetter(SyncError::permanent(
            "retries_exhausted",
            format!(
                "gave up after {receive_count} attempts; the last failure was {}: {}. Fix the cause, then redrive",
                error.kind, error.message
            ),
        )),
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
            disposition(&permanent, 1, Some(10), &policy, 0.5),
            Disposition::DeadLetter(permanent.clone())
        );
        let retryable = SyncError::dependency_down("erp_unavailable", "connection refused");
        assert!(matches!(
            disposition(&retryable, 3, Some(10), &policy, 0.0),
            Disposition::Retry { delay } if delay == Duration::from_secs(10)
        ));
        let held = SyncError::in_flight("x");
        assert!(matches!(
            disposition(&held, 7, None, &policy, 0.0),
            Disposition::Retry { delay } if delay <= policy.base()
        ));
    }

    #[test]
    fn the_last_receive_of_a_retryable_failure_is_parked_with_its_history() {
        let policy = RetryPolicy::default();
        let outage = SyncError::dependency_down("erp_unavailable", "connection refused");
        match disposition(&outage, 10, Some(10), &policy, 0.5) {
            Disposition::DeadLetter(reason) => {
                assert_eq!(reason.class, ErrorClass::Permanent);
                assert_eq!(reason.kind, "retries_exhausted");
                assert!(reason.message.contains("10 attempts"), "{}", reason.message);
                assert!(
                    reason
                        .message
                        .contains("erp_unavailable: connection refused")
                );
            }
            other => panic!("expected the dead-letter queue, got {other:?}"),
        }
    }
}
