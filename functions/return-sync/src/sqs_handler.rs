//! SQS batch of an order's money (refunds, payment transactions) -> the return and payment
//! flows, one message at a time, partial failures reported. Money whose order is still on
//! its way is retried; money for an order the integration never saw is parked with its
//! reason and needs a person.

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use erpsync_aws::batch::MessageProcessor;
use erpsync_aws::sqs::{attr, string_attribute};
use erpsync_core::SyncError;
use erpsync_core::channels::shopify::{parse_refund, parse_transaction};
use erpsync_core::config::ChannelConfig;
use erpsync_core::flows::payments::{
    PaymentDeps, refund_money_entity, sync_refund_money, sync_transaction, transaction_entity,
};
use erpsync_core::flows::returns::{ReturnDeps, refund_entity, sync_refund};
use erpsync_core::model::ids::ChannelId;
use erpsync_core::runtime::batch::MessageFailure;
use time::OffsetDateTime;
use tracing::{info, instrument};

use crate::Deps;

/// Lease on a claim when the invocation carries no deadline (local runs).
const DEFAULT_LEASE: Duration = Duration::from_secs(60);

/// The topic of a payment transaction's message; any other (and none, as before there were
/// two) is a refund.
pub const TRANSACTIONS_TOPIC: &str = "order_transactions/create";

struct MoneyProcessor<'a> {
    deps: &'a Deps,
    lease_until: OffsetDateTime,
}

fn invalid(reason: String) -> MessageFailure {
    MessageFailure::unattributed(SyncError::permanent("invalid_message", reason))
}

impl MoneyProcessor<'_> {
    fn payments(&self) -> PaymentDeps<'_> {
        PaymentDeps {
            idempotency: &self.deps.store,
            state: &self.deps.store,
            erp: self.deps.erp.as_ref(),
            lease_until: self.lease_until,
        }
    }

    async fn refund(&self, channel: &ChannelConfig, body: &[u8]) -> Result<(), MessageFailure> {
        let refund = parse_refund(body).map_err(|e| invalid(format!("not a refund: {e}")))?;
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
        // The credit note is booked (or the refund needed none): now the money that went
        // back settles it. A failure here retries the message; the refund replays.
        let money = sync_refund_money(&self.payments(), channel, &refund)
            .await
            .map_err(|error| MessageFailure::of(refund_money_entity(channel, &refund), error))?;
        info!(channel = %channel.id, refund = %refund.id, ?money, "refund money done");
        Ok(())
    }

    async fn transaction(
        &self,
        channel: &ChannelConfig,
        body: &[u8],
    ) -> Result<(), MessageFailure> {
        let transaction =
            parse_transaction(body).map_err(|e| invalid(format!("not a transaction: {e}")))?;
        let outcome = sync_transaction(&self.payments(), channel, &transaction)
            .await
            .map_err(|error| {
                MessageFailure::of(transaction_entity(channel, &transaction), error)
            })?;
        info!(channel = %channel.id, transaction = %transaction.id, ?outcome, "transaction done");
        Ok(())
    }
}

#[async_trait]
impl MessageProcessor for MoneyProcessor<'_> {
    async fn process(&self, message: &SqsMessage) -> Result<(), MessageFailure> {
        let channel = string_attribute(message, attr::CHANNEL)
            .and_then(|c| ChannelId::parse(c).ok())
            .and_then(|id| self.deps.config.channel(&id))
            .ok_or_else(|| {
                invalid(
                    "message attribute \"channel\" is missing or names no configured channel"
                        .to_owned(),
                )
            })?;
        let body = message.body.as_deref().unwrap_or_default().as_bytes();
        match string_attribute(message, attr::TOPIC) {
            Some(TRANSACTIONS_TOPIC) => self.transaction(channel, body).await,
            _ => self.refund(channel, body).await,
        }
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
    let processor = MoneyProcessor {
        deps,
        lease_until: OffsetDateTime::from(lease),
    };
    deps.runner.run(event, &processor, deadline).await
}
