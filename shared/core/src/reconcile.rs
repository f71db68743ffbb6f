//! Webhooks are not guaranteed to arrive: reconciliation asks the shop which orders changed
//! lately and enqueues, as if their webhook had come, those sync state does not know at
//! that version. The order flow's exactly-once rules make a false alarm harmless.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::info;

use crate::config::{ChannelConfig, Config};
use crate::error::SyncError;
use crate::ids::ExternalOrderId;
use crate::ports::SyncStateStore;
use crate::shadow::SalesReview;
use crate::state::{EntityRef, ErrorReport, SyncStatus};
use crate::{inbound, mapping};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopOrderRef {
    pub id: ExternalOrderId,
    pub updated_at: OffsetDateTime,
}

#[async_trait]
pub trait ChannelOrders: Send + Sync {
    async fn updated_since(&self, since: OffsetDateTime) -> Result<Vec<ShopOrderRef>, SyncError>;
    /// The order resource, in the shape its webhooks carry.
    async fn order_body(&self, id: &ExternalOrderId) -> Result<String, SyncError>;
}

#[async_trait]
pub trait FoundOrders: Send + Sync {
    /// Puts the order on the orders queue as its webhook would have, marked as found by
    /// reconciliation.
    async fn enqueue(
        &self,
        channel: &ChannelConfig,
        order: &ShopOrderRef,
        body: String,
    ) -> Result<(), SyncError>;
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileOutcome {
    pub checked: usize,
    /// Orders enqueued because sync state did not know them at their latest version.
    pub enqueued: Vec<String>,
    /// Synced orders whose ERP sale no longer adds up to what the shop sold.
    pub flagged: Vec<String>,
}

pub struct ReconcileDeps<'a> {
    pub config: &'a Config,
    pub shop: &'a dyn ChannelOrders,
    pub state: &'a dyn SyncStateStore,
    pub queue: &'a dyn FoundOrders,
    pub erp: &'a dyn SalesReview,
}

/// The shop's net total for the order (as the mapping sends it) against the ERP sale's
/// untaxed amount: a difference means someone changed one side by hand.
async fn totals_disagree(
    deps: &ReconcileDeps<'_>,
    channel: &ChannelConfig,
    order: &ShopOrderRef,
) -> Result<Option<String>, SyncError> {
    let body = deps.shop.order_body(&order.id).await?;
    let Ok(parsed) = inbound::parse_order(channel.platform, &channel.id, body.as_bytes()) else {
        return Ok(None);
    };
    if parsed.cancelled {
        return Ok(None);
    }
    let Ok(draft) = mapping::sale_draft(&parsed, channel, &deps.config.erp) else {
        return Ok(None);
    };
    let live: Vec<_> = deps
        .erp
        .sales_by_reference(&draft.reference)
        .await?
        .into_iter()
        .filter(|sale| sale.state != "cancelled")
        .collect();
    if live.len() > 1 {
        let numbers: Vec<&str> = live
            .iter()
            .map(|s| s.number.as_deref().unwrap_or("(draft)"))
            .collect();
        return Ok(Some(format!(
            "{} has {} live ERP sales ({}): keep the one that was confirmed, cancel the others",
            parsed.name,
            live.len(),
            numbers.join(", ")
        )));
    }
    let Some(sale) = live.into_iter().next() else {
        return Ok(None);
    };
    let shop_total = draft.total().round_dp(2);
    let erp_total = sale.untaxed_amount.round_dp(2);
    Ok((shop_total != erp_total).then(|| {
        format!(
            "{} totals {shop_total} net in the shop but ERP sale {} totals {erp_total}: check which side was changed by hand and correct it",
            parsed.name,
            sale.number.as_deref().unwrap_or("?")
        )
    }))
}

pub async fn reconcile(
    deps: &ReconcileDeps<'_>,
    channel: &ChannelConfig,
    since: OffsetDateTime,
) -> Result<ReconcileOutcome, SyncError> {
    let mut outcome = ReconcileOutcome::default();
    for order in deps.shop.updated_since(since).await? {
        outcome.checked += 1;
        let state = deps
            .state
            .get(&EntityRef::order(&channel.id, order.id.as_str()))
            .await?;
        let known = state.is_some_and(|s| {
            // A version already applied, skipped or parked for a person is accounted for;
            // so is an order a person closed (its message discarded, with a reason).
            s.status == SyncStatus::Resolved
                || s.version.is_some_and(|v| v >= order.updated_at)
                    && matches!(
                        s.status,
                        SyncStatus::Synced
                            | SyncStatus::Backordered
                            | SyncStatus::Skipped
                            | SyncStatus::Shadow
                            | SyncStatus::NeedsAttention
                    )
        });
        if known {
            if let Some(flag) = totals_disagree(deps, channel, &order).await? {
                let entity = EntityRef::order(&channel.id, order.id.as_str());
                let error = SyncError::permanent("totals_disagree", flag.clone());
                deps.state
                    .record_failure(
                        &entity,
                        SyncStatus::NeedsAttention,
                        &ErrorReport::new(&error, OffsetDateTime::now_utc()),
                    )
                    .await?;
                outcome.flagged.push(flag);
            }
            continue;
        }
        let body = deps.shop.order_body(&order.id).await?;
        deps.queue.enqueue(channel, &order, body).await?;
        info!(channel = %channel.id, order = %order.id, "order found by reconciliation enqueued");
        outcome.enqueued.push(order.id.to_string());
    }
    Ok(outcome)
}
