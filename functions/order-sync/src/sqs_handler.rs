//! SQS batch of order messages -> the order flow, one message at a time, partial failures
//! reported.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use erpsync_aws::batch::MessageProcessor;
use erpsync_aws::sqs::{attr, order_of_group, string_attribute};
use erpsync_core::SyncError;
use erpsync_core::flows::orders::{OrderMessage, OrderSyncDeps, sync_order};
use erpsync_core::model::ids::ChannelId;
use erpsync_core::model::order::OrderTopic;
use erpsync_core::model::state::EntityRef;
use erpsync_core::ports::{GatheredStockMoves, PrefetchedStates, StockSignal};
use erpsync_core::runtime::batch::MessageFailure;
use lambda_runtime::LambdaEvent;
use time::OffsetDateTime;
use tracing::{info, instrument, warn};

use crate::Deps;

/// Lease on a claim when the invocation carries no deadline (local runs).
const DEFAULT_LEASE: Duration = Duration::from_secs(60);

struct OrderProcessor<'a> {
    deps: &'a Deps,
    lease_until: OffsetDateTime,
    stock_moves: &'a GatheredStockMoves,
    states: &'a PrefetchedStates<'a>,
}

fn order_message(message: &SqsMessage) -> Result<OrderMessage, MessageFailure> {
    let missing = |name: &str| {
        MessageFailure::unattributed(SyncError::permanent(
            "invalid_message",
            format!(
                "message attribute {name:?} is missing or invalid; it was not enqueued by shop-webhook"
            ),
        ))
    };
    let channel = string_attribute(message, attr::CHANNEL)
        .and_then(|c| ChannelId::parse(c).ok())
        .ok_or_else(|| missing(attr::CHANNEL))?;
    let topic = string_attribute(message, attr::TOPIC)
        .and_then(OrderTopic::parse)
        .ok_or_else(|| missing(attr::TOPIC))?;
    // Shopify writes it RFC 3339 with nanoseconds; an unreadable one only loses the
    // tie-break between two versions of one second (the content hash still decides).
    let triggered_at = string_attribute(message, attr::TRIGGERED_AT).and_then(|text| {
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
    });
    Ok(OrderMessage {
        channel,
        topic,
        body: message.body.clone().unwrap_or_default().into_bytes(),
        triggered_at,
    })
}

#[async_trait]
impl MessageProcessor for OrderProcessor<'_> {
    /// The order, from the message's group (`channel:order`).
    fn entity(&self, message: &SqsMessage) -> Option<EntityRef> {
        message
            .attributes
            .get("MessageGroupId")
            .and_then(|group| order_of_group(group))
    }

    fn version(&self, message: &SqsMessage) -> Option<OffsetDateTime> {
        order_message(message).ok()?.version_in(&self.deps.config)
    }

    async fn process(&self, message: &SqsMessage) -> Result<(), MessageFailure> {
        let order = order_message(message)?;
        let deps = OrderSyncDeps {
            config: &self.deps.config,
            idempotency: &self.deps.store,
            state: self.states,
            erp: self.deps.erp.as_ref(),
            stock: self
                .deps
                .stock_refresh
                .as_ref()
                .map(|_| self.stock_moves as &dyn StockSignal),
            availability: self.deps.availability.as_deref(),
            archive: Some(&self.deps.store),
        };
        let outcome =
            sync_order(&deps, &order, OffsetDateTime::now_utc(), self.lease_until).await?;
        info!(channel = %order.channel, topic = order.topic.as_str(), outcome = %outcome.summary(), "order message done");
        Ok(())
    }
}

#[instrument(skip_all, fields(request_id = %event.context.request_id, messages = event.payload.records.len()))]
pub async fn handle(deps: &Deps, event: LambdaEvent<SqsEvent>) -> SqsBatchResponse {
    let deadline = event.context.deadline();
    let lease = if deadline > SystemTime::now() {
        deadline
    } else {
        SystemTime::now() + DEFAULT_LEASE
    };
    // The batch's sync states in one read rather than one per message (a FIFO group's
    // messages reach one consumer at a time, so they stay current within the batch).
    let orders: Vec<EntityRef> = event
        .payload
        .records
        .iter()
        .filter_map(|m| m.attributes.get("MessageGroupId"))
        .filter_map(|group| order_of_group(group))
        .collect();
    let ahead = match deps.store.get_many(&orders).await {
        Ok(ahead) => ahead,
        Err(error) => {
            warn!(error = %error, "could not read the batch's states ahead; reading one by one");
            HashMap::new()
        }
    };
    let states = PrefetchedStates::new(&deps.store, ahead);
    let stock_moves = GatheredStockMoves::default();
    let processor = OrderProcessor {
        deps,
        lease_until: OffsetDateTime::from(lease),
        stock_moves: &stock_moves,
        states: &states,
    };
    // A local run's context has no deadline (the epoch): no time budget then.
    let budget = (deadline > SystemTime::now()).then_some(deadline);
    let response = deps.runner.run(event.payload, &processor, budget).await;
    // One stock refresh for the whole batch's sales.
    let skus = stock_moves.take();
    if let Some(queue) = &deps.stock_refresh
        && !skus.is_empty()
        && let Err(error) = queue.stock_moved(&skus).await
    {
        warn!(error = %error, "could not signal the stock change; the scheduled run will catch up");
    }
    response
}
