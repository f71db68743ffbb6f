//! SQS batch of refunds -> the return flow, one message at a time, partial failures
//! reported. A refund whose order is still on its way is retried; one for an order the
//! integration never saw is parked with its reason and needs a person.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use erpsync_aws::batch::MessageProcessor;
use erpsync_aws::sqs::{attr, string_attribute};
use erpsync_core::SyncError;
use erpsync_core::channels::shopify::parse_refund;
use erpsync_core::flows::returns::{ReturnDeps, refund_entity, sync_refund};
use erpsync_core::model::ids::ChannelId;
use erpsync_core::runtime::batch::MessageFailure;
use time::OffsetDateTime;
use tracing::{info, instrument};

use crate::Deps;

/// Lease on a claim when the invocation carries no deadline (local runs).
const DEFAULT_LEASE: Duration = Duration::from_secs(60);

struct RefundProcessor<'a> {
    deps: &'a Deps,
    lease_until: OffsetDateTime,
}

#[async_trait]
impl MessageProcessor for RefundProcessor<'_> {
    async fn process(&self, message: &SqsMessage) -> Result<(), MessageFailure> {
        let invalid = |reason: String| {
            MessageFailure::unattributed(SyncError::permanent("invalid_message", reason))
        };
        let channel = string_attribute(message, attr::CHANNEL)
            .and_then(|c| ChannelId::parse(c).ok())
            .and_then(|id| self.deps.config.channel(&id))
            .ok_or_else(|| {
                invalid(
                    "message attribute \"channel\" is missing or names no configured channel"
                        .to_owned(),
                )
            })?;
        let refund = parse_refund(message.body.as_deref().unwrap_or_default().as_bytes())
            .map_err(|e| invalid(format!("not a refund: {e}")))?;
        let deps = ReturnDeps {
            config: &self.deps.config,
            idempotency: &self.deps.store,
            state: &self.deps.store,
            erp: self.deps.erp.as_ref(),
            lease_until: self.lease_until,
        };
        let outcome = sync_refund(&deps, channel, &refund)
            .await
            .map_err(|error| MessageFailure::of(refund_entity(channel, &refund), error))?;
        info!(channel = %channel.id, refund = %refund.id, ?outcome, "refund done");
        Ok(())
    }
}

#[instrument(skip_all, fields(messages = event.records.len()))]
pub async fn handle(
    deps: &Deps,
    event: SqsEvent,
    deadline: Option<SystemTime>,
) -> SqsBatchResponse {
    let lease = deadline
        .filter(|d| *d > SystemTime::now())
        .unwrap_or_else(|| SystemTime::now() + DEFAULT_LEASE);
    let processor = RefundProcessor {
        deps,
        lease_until: OffsetDateTime::from(lease),
    };
    deps.runner.run(event, &processor, deadline).await
}
