//! The SQS batch runner every queue-triggered function uses: one span per message, a partial
//! batch response always, FIFO order kept by stopping at a group's first failure, permanent
//! failures parked in the dead-letter queue at once, retryable ones backed off.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use erpsync_core::SyncError;
use erpsync_core::config::RetryPolicy;
use erpsync_core::model::state::{EntityRef, ErrorReport, SyncStatus};
use erpsync_core::ports::SyncStateStore;
use erpsync_core::runtime::batch::{Disposition, MessageFailure, disposition};
use time::OffsetDateTime;
use tracing::{Instrument, error, info, info_span, warn};

use crate::sqs::{OutgoingMessage, Queue, attr, dead_letter_attributes, source_attributes};

#[async_trait]
pub trait MessageProcessor: Send + Sync {
    async fn process(&self, message: &SqsMessage) -> Result<(), MessageFailure>;
    /// The entity a message is about, known without processing it (the orders queue's
    /// group is the order): a message parked unattempted marks it as needing attention.
    fn entity(&self, _message: &SqsMessage) -> Option<EntityRef> {
        None
    }
    /// The version of its entity a message carries, known without processing it: a message
    /// parked unattempted records it as the version that failed.
    fn version(&self, _message: &SqsMessage) -> Option<OffsetDateTime> {
        None
    }
}

/// A message held back behind a down dependency is attempted on its last receive only when
/// the invocation has at least this long left: one attempt at a dependency that hangs costs up
/// to the ERP's request timeout (30 s by default), and an invocation that times out loses its
/// whole batch response.
pub const HELD_ATTEMPT_MARGIN: Duration = Duration::from_secs(35);

pub struct BatchRunner {
    pub flow: &'static str,
    pub source: Queue,
    pub dead_letter: Queue,
    pub retry: RetryPolicy,
    /// The source queue's maxReceiveCount: on that receive a failure is parked by the runner,
    /// with its reason, instead of being moved silently by the redrive policy.
    pub max_receives: Option<u32>,
    /// Where an entity whose retries ran out is marked as needing attention.
    pub state: Option<Arc<dyn SyncStateStore>>,
}

impl BatchRunner {
    /// The runner of a queue-triggered function, from the environment the template gives
    /// it: `<QUEUE>_QUEUE_URL`, `<QUEUE>_DLQ_URL` and `MAX_RECEIVE_COUNT`.
    pub fn from_env(
        flow: &'static str,
        queue: &str,
        sqs: &aws_sdk_sqs::Client,
        retry: RetryPolicy,
        state: Arc<dyn SyncStateStore>,
    ) -> anyhow::Result<Self> {
        use anyhow::Context;
        let max_receives = crate::env::required("MAX_RECEIVE_COUNT")?
            .parse::<u32>()
            .context("MAX_RECEIVE_COUNT is not a number")?;
        Ok(Self {
            flow,
            source: Queue::new(
                sqs.clone(),
                crate::env::required(&format!("{queue}_QUEUE_URL"))?,
            ),
            dead_letter: Queue::new(
                sqs.clone(),
                crate::env::required(&format!("{queue}_DLQ_URL"))?,
            ),
            retry,
            max_receives: Some(max_receives),
            state: Some(state),
        })
    }

    /// Runs the batch; `deadline` is the invocation's (see [`HELD_ATTEMPT_MARGIN`]).
    pub async fn run(
        &self,
        event: SqsEvent,
        processor: &dyn MessageProcessor,
        deadline: Option<SystemTime>,
    ) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        // A failed group's (or a down dependency's) retry delay: what its held-back messages
        // wait too, so they come back together instead of after the queue's full timeout.
        let mut failed_groups: HashMap<String, Duration> = HashMap::new();
        let mut dependency_down: Option<(Duration, SyncError)> = None;
        for message in &event.records {
            let id = message.message_id.clone().unwrap_or_default();
            let group = message.attributes.get("MessageGroupId").cloned();
            let span =
                info_span!("message", message_id = %id, group = group.as_deref().unwrap_or(""));
            let receive_count = message
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|c| c.parse().ok())
                .unwrap_or(1);
            let last_receive = self.max_receives.is_some_and(|max| receive_count >= max);
            // Behind a failed message of its group: held, to keep the group's order. On its
            // last receive, returning it would let the redrive policy move it without a
            // reason: it is parked behind the one before it, in the group's order.
            if let Some(delay) = group.as_ref().and_then(|g| failed_groups.get(g).copied()) {
                if last_receive {
                    let parked = MessageFailure {
                        error: SyncError::permanent(
                            "retries_exhausted",
                            format!(
                                "held back on its {receive_count} receives behind a failed message of its group (parked before it, with its reason). Fix that cause, then redrive both"
                            ),
                        ),
                        entity: processor.entity(message),
                        version: processor.version(message),
                    };
                    self.park_unattempted(message, &parked, receive_count, &span, &mut response)
                        .await;
                    continue;
                }
                span.in_scope(|| info!(retry_in_s = delay.as_secs(), "held back behind its group"));
                self.delay(message, delay, &span).await;
                response.add_failure(id);
                continue;
            }
            if let Some((delay, down)) = &dependency_down {
                // Returned unattempted on its last receive, the redrive policy would move it
                // without a reason and leave its state "retrying". So it is attempted, and a
                // failure parked with its reason, as every last attempt is; without the time
                // for an attempt (a dependency that hangs), it is parked with the
                // dependency's failure as its reason.
                let time_left = deadline
                    .and_then(|d| d.duration_since(SystemTime::now()).ok())
                    .is_none_or(|left| left > HELD_ATTEMPT_MARGIN);
                if !last_receive {
                    span.in_scope(|| info!(retry_in_s = delay.as_secs(), "held back"));
                    self.delay(message, *delay, &span).await;
                    response.add_failure(id);
                    continue;
                }
                if !time_left {
                    let parked = MessageFailure {
                        error: SyncError::permanent(
                            "retries_exhausted",
                            format!(
                                "held back on all its {receive_count} receives while a dependency was down; the last failure was {}: {}. Fix the cause, then redrive",
                                down.kind, down.message
                            ),
                        ),
                        entity: processor.entity(message),
                        version: processor.version(message),
                    };
                    self.park_unattempted(message, &parked, receive_count, &span, &mut response)
                        .await;
                    continue;
                }
            }
            let outcome = processor.process(message).instrument(span.clone()).await;
            let Err(failure) = outcome else { continue };
            let jitter: f64 = rand::random();
            let decided = disposition(
                &failure.error,
                receive_count,
                self.max_receives,
                &self.retry,
                jitter,
            );
            let retry_delay = match decided {
                Disposition::DeadLetter(reason) => {
                    let exhausted = reason.class != failure.error.class;
                    let parked = MessageFailure {
                        error: reason,
                        entity: failure.entity.clone(),
                        version: failure.version,
                    };
                    match self.park(message, &parked, receive_count).await {
                        Ok(()) => {
                            span.in_scope(|| {
                                warn!(kind = %parked.error.kind, reason = %parked.error.message, "parked in the dead-letter queue")
                            });
                            if exhausted {
                                self.needs_attention(&parked, &span).await;
                            }
                            None
                        }
                        Err(park_error) => {
                            span.in_scope(|| error!(error = %park_error, "could not park the message; it stays on the queue"));
                            Some(self.retry.base())
                        }
                    }
                }
                Disposition::Retry { delay } => {
                    span.in_scope(|| {
                        warn!(kind = %failure.error.kind, error = %failure.error.message, class = failure.error.class.as_str(),
                            retry_in_s = delay.as_secs(), receive_count, "will retry")
                    });
                    self.delay(message, delay, &span).await;
                    if failure.error.dependency_down {
                        dependency_down = Some((delay, failure.error.clone()));
                    }
                    Some(delay)
                }
            };
            if let Some(delay) = retry_delay {
                response.add_failure(id);
                if let Some(group) = group {
                    failed_groups.insert(group, delay);
                }
            }
        }
        response
    }

    /// Parks a message the runner gives up on without attempting it, as it parks attempted
    /// ones: with its reason, and its entity (when known) marked as needing attention.
    async fn park_unattempted(
        &self,
        message: &SqsMessage,
        parked: &MessageFailure,
        receive_count: u32,
        span: &tracing::Span,
        response: &mut SqsBatchResponse,
    ) {
        match self.park(message, parked, receive_count).await {
            Ok(()) => {
                span.in_scope(|| {
                    warn!(kind = %parked.error.kind, reason = %parked.error.message, "parked in the dead-letter queue")
                });
                self.needs_attention(parked, span).await;
            }
            Err(error) => {
                span.in_scope(
                    || error!(error = %error, "could not park the message; it stays on the queue"),
                );
                response.add_failure(message.message_id.clone().unwrap_or_default());
            }
        }
    }

    /// The flow recorded "retrying"; now that the runner gave up, a person must act.
    async fn needs_attention(&self, parked: &MessageFailure, span: &tracing::Span) {
        let (Some(state), Some(entity)) = (&self.state, &parked.entity) else {
            return;
        };
        let report = ErrorReport::new(&parked.error, OffsetDateTime::now_utc());
        if let Err(error) = state
            .record_failure(entity, SyncStatus::NeedsAttention, &report, parked.version)
            .await
        {
            span.in_scope(
                || warn!(error = %error, "could not mark the entity as needing attention"),
            );
        }
    }

    /// Sets when the message comes back; if that fails the queue's visibility timeout applies.
    async fn delay(&self, message: &SqsMessage, delay: Duration, span: &tracing::Span) {
        if let Some(receipt) = message.receipt_handle.as_deref()
            && let Err(error) = self.source.change_visibility(receipt, delay).await
        {
            span.in_scope(|| warn!(error = %error, "could not set the retry delay; the queue's visibility timeout applies"));
        }
    }

    async fn park(
        &self,
        message: &SqsMessage,
        failure: &MessageFailure,
        attempts: u32,
    ) -> Result<(), erpsync_core::SyncError> {
        let source = source_attributes(message);
        let mut attributes = dead_letter_attributes(self.flow, failure, attempts, &source);
        // The first attempt is when the queue first handed the message out.
        if let Some(first) = message
            .attributes
            .get("ApproximateFirstReceiveTimestamp")
            .and_then(|ms| ms.parse::<i128>().ok())
            .and_then(|ms| OffsetDateTime::from_unix_timestamp_nanos(ms * 1_000_000).ok())
            .and_then(|at| {
                at.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
        {
            attributes.insert(attr::FIRST_FAILED_AT.to_owned(), first);
        }
        self.dead_letter
            .send(OutgoingMessage {
                body: message.body.clone().unwrap_or_default(),
                group_id: source
                    .get("group_id")
                    .cloned()
                    .or_else(|| Some(self.flow.to_owned())),
                deduplication_id: message.message_id.clone(),
                attributes,
            })
            .await
            .map(|_| ())
    }
}
