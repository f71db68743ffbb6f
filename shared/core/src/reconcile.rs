//! Webhooks are not guaranteed to arrive: reconciliation asks the shop which orders changed
//! lately and enqueues, as if their webhook had come, those sync state does not know at
//! that version. The order flow's exactly-once rules make a false alarm harmless.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::config::{ChannelConfig, Config};
use crate::error::SyncError;
use crate::ids::ExternalOrderId;
use crate::ports::{PayloadArchive, SalesErp, SyncStateStore};
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
    /// Orphan draft sales deleted: left by a create that committed after its retry had
    /// made, and moved on, the sale sync state records.
    #[serde(default)]
    pub tidied: Vec<String>,
}

impl ReconcileOutcome {
    /// One line for the run's sync-state note and for people.
    pub fn summary(&self) -> String {
        format!(
            "{} orders checked, {} enqueued, {} flagged, {} with orphan drafts deleted",
            self.checked,
            self.enqueued.len(),
            self.flagged.len(),
            self.tidied.len()
        )
    }
}

pub struct ReconcileDeps<'a> {
    pub config: &'a Config,
    pub shop: &'a dyn ChannelOrders,
    pub state: &'a dyn SyncStateStore,
    /// The payloads kept of failed orders: says at which version an order was parked.
    pub archive: &'a dyn PayloadArchive,
    pub queue: &'a dyn FoundOrders,
    pub erp: &'a dyn SalesReview,
    /// Deletes orphan drafts (the same ERP client as `erp`).
    pub sales: &'a dyn SalesErp,
}

/// What the ERP holds for an order sync state knows.
#[derive(Debug, Default)]
struct Review {
    /// Why a person must look, if they must.
    flag: Option<String>,
    tidied: Option<String>,
}

/// The shop's net total for the order (as the mapping sends it) against the ERP sale's
/// untaxed amount: a difference means someone changed one side by hand. Beforehand, a draft
/// beside the sale sync state records (moved on, so never what a retry would pick up) is an
/// orphan from a create that committed late: it is deleted, and said so.
async fn review_known(
    deps: &ReconcileDeps<'_>,
    channel: &ChannelConfig,
    order: &ShopOrderRef,
    recorded_sale: Option<i64>,
) -> Result<Review, SyncError> {
    let mut review = Review::default();
    let body = deps.shop.order_body(&order.id).await?;
    let Ok(parsed) = inbound::parse_order(channel.platform, &channel.id, body.as_bytes()) else {
        return Ok(review);
    };
    let Ok(draft) = mapping::sale_draft(&parsed, channel, &deps.config.erp) else {
        return Ok(review);
    };
    let mut sales = deps.erp.sales_by_reference(&draft.reference).await?;
    let recorded = recorded_sale.and_then(|id| sales.iter().find(|sale| sale.id == id));
    if sales.len() > 1
        && let Some(kept) = recorded.filter(|sale| {
            matches!(
                sale.state.as_str(),
                "confirmed" | "processing" | "done" | "cancelled"
            )
        })
    {
        let kept_number = kept.number.clone().unwrap_or_else(|| kept.id.to_string());
        let dropped = deps
            .sales
            .drop_duplicate_drafts(&draft.reference, kept.id)
            .await?;
        if !dropped.is_empty() {
            warn!(reference = %draft.reference, kept = %kept_number, ?dropped, "orphan draft sales deleted");
            review.tidied = Some(format!(
                "{}: deleted {} orphan draft sale(s) (ids {}) beside {kept_number}",
                parsed.name,
                dropped.len(),
                dropped
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            sales.retain(|sale| !dropped.contains(&sale.id));
        }
    }
    if parsed.cancelled {
        return Ok(review);
    }
    let live: Vec<_> = sales
        .into_iter()
        .filter(|sale| sale.state != "cancelled")
        .collect();
    if live.len() > 1 {
        let numbers: Vec<&str> = live
            .iter()
            .map(|s| s.number.as_deref().unwrap_or("(draft)"))
            .collect();
        review.flag = Some(format!(
            "{} has {} live ERP sales ({}): keep the one that was confirmed, cancel the others",
            parsed.name,
            live.len(),
            numbers.join(", ")
        ));
        return Ok(review);
    }
    let Some(sale) = live.into_iter().next() else {
        return Ok(review);
    };
    let shop_total = draft.currency.round(draft.total());
    let erp_total = draft.currency.round(sale.untaxed_amount);
    let number = sale.number.as_deref().unwrap_or("?");
    let charged = parsed.total();
    let booked = sale.total_amount.map(|total| draft.currency.round(total));
    review.flag = if shop_total != erp_total {
        Some(format!(
            "{} totals {shop_total} net in the shop but ERP sale {number} totals {erp_total}: check which side was changed by hand and correct it",
            parsed.name
        ))
    } else if let Some(booked) = booked.filter(|booked| *booked != charged) {
        // The same net, another gross: the ERP's tax (its rate or its rounding) is not what
        // the shop charged.
        Some(format!(
            "{} charged {charged} with tax in the shop but ERP sale {number} totals {booked} with its taxes: check the tax mapping's rate and the ERP's tax rounding, and correct the invoice",
            parsed.name
        ))
    } else {
        None
    };
    Ok(review)
}

pub async fn reconcile(
    deps: &ReconcileDeps<'_>,
    channel: &ChannelConfig,
    since: OffsetDateTime,
) -> Result<ReconcileOutcome, SyncError> {
    let mut outcome = ReconcileOutcome::default();
    for order in deps.shop.updated_since(since).await? {
        outcome.checked += 1;
        let entity = EntityRef::order(&channel.id, order.id.as_str());
        let state = deps.state.get(&entity).await?;
        let recorded_sale = state.as_ref().and_then(|s| s.erp_id);
        // The version the flag is about: the one applied (finer than the shop's second).
        let applied = state.as_ref().and_then(|s| s.version);
        let parked = state
            .as_ref()
            .is_some_and(|s| s.status == SyncStatus::NeedsAttention);
        let mut known = state.is_some_and(|s| {
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
        if !known && parked {
            // Parked at this version (its failed payload kept says which): enqueueing it
            // again would only park it again, once per run, until a person acts.
            known = deps
                .archive
                .latest(&entity)
                .await?
                .is_some_and(|kept| kept.version >= order.updated_at);
        }
        if known {
            let review = review_known(deps, channel, &order, recorded_sale).await?;
            outcome.tidied.extend(review.tidied);
            if let Some(flag) = review.flag {
                let error = SyncError::permanent("totals_disagree", flag.clone());
                deps.state
                    .record_failure(
                        &entity,
                        SyncStatus::NeedsAttention,
                        &ErrorReport::new(&error, OffsetDateTime::now_utc()),
                        applied.or(Some(order.updated_at)),
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
