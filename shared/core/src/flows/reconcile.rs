//! Webhooks are not guaranteed to arrive: reconciliation asks the shop which orders changed
//! since it last looked and enqueues, as if their webhook had come, those sync state does not
//! know at that version. The order flow's exactly-once rules make a false alarm harmless.
//!
//! At volume (thousands of orders an hour) it reads sync state first, a page of 100 in one
//! batch, and calls the shop only for the orders sync state cannot vouch for. It keeps a
//! cursor per channel (the last order it checked, oldest update first), so a run that runs
//! out of time stops, says so, and the next run goes on from there; one order's error is
//! reported in the run's note and the run goes on. ERP sales of the orders it vouched for are
//! checked against the totals order-sync recorded when it booked them, a hundred in one ERP
//! search, so a sale changed by hand is flagged without a shop call.

use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::config::{ChannelConfig, Config};
use crate::error::SyncError;
use crate::model::state::{BookedTotals, EntityRef, ErrorReport, SyncState, SyncStatus};
use crate::ports::{ChannelOrders, FoundOrders, ShopOrderRef};
use crate::ports::{Cursors, ErpSaleView, SalesReview};
use crate::ports::{PayloadArchive, SalesErp, SyncStateStore};
use crate::runtime::changes::next_cursor;
use crate::{channels, mapping};

/// Each run reads again this far behind its cursor: the shop's order search is eventually
/// consistent, so an order can be found a little after its `updated_at`.
pub const OVERLAP: time::Duration = time::Duration::minutes(15);

/// A shop page or an order's fetch is started only with this long left in the invocation.
pub const MARGIN: Duration = Duration::from_secs(30);

/// A channel's cursor name in the state store.
pub fn reconcile_cursor(channel: &ChannelConfig) -> String {
    format!("reconcile#{}", channel.id)
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
    /// Orders whose ERP sale was checked against what was booked.
    #[serde(default)]
    pub reviewed: usize,
    /// One order's trouble (deleted meanwhile, unreadable), each with why: the run went on.
    #[serde(default)]
    pub errors: Vec<String>,
    /// The run stopped for time before it had checked every order; the next goes on.
    #[serde(default)]
    pub unfinished: bool,
    /// Shop and ERP requests the run made (pages, order fetches, ERP searches).
    #[serde(default)]
    pub requests: Requests,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requests {
    pub shop_pages: usize,
    pub shop_orders: usize,
    pub state_batches: usize,
    pub erp_searches: usize,
}

impl ReconcileOutcome {
    /// One line for the run's sync-state note and for people.
    pub fn summary(&self) -> String {
        let mut summary = format!(
            "{} orders checked, {} enqueued, {} flagged, {} with orphan drafts deleted, {} ERP sales reviewed",
            self.checked,
            self.enqueued.len(),
            self.flagged.len(),
            self.tidied.len(),
            self.reviewed
        );
        if self.unfinished {
            summary.push_str("; stopped for time, the next run goes on");
        }
        if !self.errors.is_empty() {
            summary.push_str(&format!(
                "; {} order(s) could not be checked: {}",
                self.errors.len(),
                self.errors.join("; ")
            ));
        }
        summary
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
    /// Where each channel's run stands.
    pub cursors: &'a dyn Cursors,
}

/// What the ERP holds for an order sync state knows.
#[derive(Debug, Default)]
struct Review {
    /// Why a person must look, if they must.
    flag: Option<String>,
    tidied: Option<String>,
}

/// What a sale must add up to: the shop's net total (as the mapping sends it) and what it
/// charged with tax; or, for a cancelled order, only that no sale is left live.
struct Expected<'a> {
    name: &'a str,
    reference: &'a str,
    totals: Option<&'a BookedTotals>,
}

/// The ERP's sales of one order against what they must add up to: a difference means
/// someone changed one side by hand. Beforehand, a draft beside the sale sync state records
/// (moved on, so never what a retry would pick up) is an orphan from a create that committed
/// late: it is deleted, and said so.
async fn review_sales(
    deps: &ReconcileDeps<'_>,
    expected: &Expected<'_>,
    mut sales: Vec<ErpSaleView>,
    recorded_sale: Option<i64>,
) -> Result<Review, SyncError> {
    let mut review = Review::default();
    let name = expected.name;
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
            .drop_duplicate_drafts(expected.reference, kept.id)
            .await?;
        if !dropped.is_empty() {
            warn!(reference = %expected.reference, kept = %kept_number, ?dropped, "orphan draft sales deleted");
            review.tidied = Some(format!(
                "{name}: deleted {} orphan draft sale(s) (ids {}) beside {kept_number}",
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
    let Some(totals) = expected.totals.filter(|t| !t.cancelled) else {
        return Ok(review);
    };
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
            "{name} has {} live ERP sales ({}): keep the one that was confirmed, cancel the others",
            live.len(),
            numbers.join(", ")
        ));
        return Ok(review);
    }
    let Some(sale) = live.into_iter().next() else {
        return Ok(review);
    };
    let currency = &totals.currency;
    let shop_total = currency.round(totals.net);
    let erp_total = currency.round(sale.untaxed_amount);
    let number = sale.number.as_deref().unwrap_or("?");
    let charged = totals.gross;
    let booked = sale.total_amount.map(|total| currency.round(total));
    review.flag = if shop_total != erp_total {
        Some(format!(
            "{name} totals {shop_total} net in the shop but ERP sale {number} totals {erp_total}: check which side was changed by hand and correct it"
        ))
    } else {
        // The same net, another gross: the ERP's tax (its rate or its rounding) is not what
        // the shop charged.
        booked.filter(|booked| *booked != charged).map(|booked| format!(
            "{name} charged {charged} with tax in the shop but ERP sale {number} totals {booked} with its taxes: check the tax mapping's rate and the ERP's tax rounding, and correct the invoice"
        ))
    };
    Ok(review)
}

/// An order whose state holds no booked totals (booked before they were kept): what it must
/// add up to is read from the shop.
async fn review_from_shop(
    deps: &ReconcileDeps<'_>,
    channel: &ChannelConfig,
    order: &ShopOrderRef,
    recorded_sale: Option<i64>,
    requests: &mut Requests,
) -> Result<Review, SyncError> {
    requests.shop_orders += 1;
    let body = deps.shop.order_body(&order.id).await?;
    let Ok(parsed) = channels::parse_order(channel.platform, &channel.id, body.as_bytes()) else {
        return Ok(Review::default());
    };
    let Ok(draft) = mapping::sale_draft(&parsed, channel, &deps.config.erp) else {
        return Ok(Review::default());
    };
    requests.erp_searches += 1;
    let sales = deps.erp.sales_by_reference(&draft.reference).await?;
    let totals = BookedTotals {
        currency: draft.currency.clone(),
        net: draft.currency.round(draft.total()),
        gross: parsed.total(),
        cancelled: parsed.cancelled,
    };
    let expected = Expected {
        name: &parsed.name,
        reference: &draft.reference,
        totals: Some(&totals),
    };
    review_sales(deps, &expected, sales, recorded_sale).await
}

/// Sync state's word on an order at the shop's version: applied (or parked, skipped, closed
/// for a person) at that version or a newer one, so nothing needs enqueueing.
async fn vouched_for(
    deps: &ReconcileDeps<'_>,
    entity: &EntityRef,
    order: &ShopOrderRef,
    state: Option<&SyncState>,
) -> Result<bool, SyncError> {
    let Some(state) = state else {
        return Ok(false);
    };
    // A version already applied, skipped or parked for a person is accounted for; so is an
    // order a person closed (its message discarded, with a reason).
    let known = state.status == SyncStatus::Resolved
        || state.version.is_some_and(|v| v >= order.updated_at)
            && matches!(
                state.status,
                SyncStatus::Synced
                    | SyncStatus::Backordered
                    | SyncStatus::Skipped
                    | SyncStatus::Shadow
                    | SyncStatus::NeedsAttention
            );
    if known || state.status != SyncStatus::NeedsAttention {
        return Ok(known);
    }
    // Parked at this version (its failed payload kept says which): enqueueing it again
    // would only park it again, once per run, until a person acts.
    Ok(deps
        .archive
        .latest(entity)
        .await?
        .is_some_and(|kept| kept.version >= order.updated_at))
}

/// An order vouched for whose ERP sale is to be checked.
struct ToReview {
    order: ShopOrderRef,
    entity: EntityRef,
    state: SyncState,
}

/// Whether the run may start more work: `MARGIN` left, or a quarter of what was left when it
/// began if that is less (`deadline::margin`).
fn time_left(deadline: Option<SystemTime>, margin: Duration) -> bool {
    crate::runtime::deadline::leaves(deadline, margin)
}

/// One channel's run: the orders updated since its cursor (the first run: the last
/// `lookback`), page by page, while `deadline` leaves time.
pub async fn reconcile(
    deps: &ReconcileDeps<'_>,
    channel: &ChannelConfig,
    now: OffsetDateTime,
    lookback: time::Duration,
    deadline: Option<SystemTime>,
) -> Result<ReconcileOutcome, SyncError> {
    let margin = crate::runtime::deadline::margin(deadline, MARGIN);
    let cursor_name = reconcile_cursor(channel);
    let cursor = deps.cursors.cursor(&cursor_name).await?;
    let since = cursor.map_or(now - lookback, |cursor| cursor - OVERLAP);
    let mut outcome = ReconcileOutcome::default();
    let mut checked_to: Option<OffsetDateTime> = None;
    let mut to_review: Vec<ToReview> = Vec::new();
    let mut after: Option<String> = None;
    let stopped: Option<SyncError> = 'pages: loop {
        if !time_left(deadline, margin) {
            outcome.unfinished = true;
            break None;
        }
        outcome.requests.shop_pages += 1;
        let page = match deps.shop.updated_page(since, after.as_deref()).await {
            Ok(page) => page,
            Err(error) => break Some(error),
        };
        let entities: Vec<EntityRef> = page
            .orders
            .iter()
            .map(|order| EntityRef::order(&channel.id, order.id.as_str()))
            .collect();
        outcome.requests.state_batches += 1;
        let mut states = match deps.state.get_many(&entities).await {
            Ok(states) => states,
            Err(error) => break Some(error),
        };
        for (order, entity) in page.orders.iter().zip(entities) {
            let state = match states.remove(&entity) {
                Some(state) => state,
                None => match deps.state.get(&entity).await {
                    Ok(state) => state,
                    Err(error) => break 'pages Some(error),
                },
            };
            match vouched_for(deps, &entity, order, state.as_ref()).await {
                Ok(true) => {
                    if let Some(state) = state.filter(|s| {
                        matches!(s.status, SyncStatus::Synced | SyncStatus::Backordered)
                    }) {
                        to_review.push(ToReview {
                            order: order.clone(),
                            entity,
                            state,
                        });
                    }
                }
                Ok(false) => {
                    if !time_left(deadline, margin) {
                        outcome.unfinished = true;
                        break 'pages None;
                    }
                    outcome.requests.shop_orders += 1;
                    // Before the fetch: a change made while it is answered is newer.
                    let fetched_at = OffsetDateTime::now_utc();
                    let found = match deps.shop.order_body(&order.id).await {
                        Ok(body) => deps.queue.enqueue(channel, order, body, fetched_at).await,
                        Err(error) => Err(error),
                    };
                    match found {
                        Ok(()) => {
                            info!(channel = %channel.id, order = %order.id, "order found by reconciliation enqueued");
                            outcome.enqueued.push(order.id.to_string());
                        }
                        // The shop (or the queue) is down: the run stops here, and the next
                        // one goes on from this order.
                        Err(error) if error.dependency_down => break 'pages Some(error),
                        // Passed by the cursor, so a person must see it: the run's note and
                        // the order's sync state (needs attention, with the shop's answer).
                        Err(error) => {
                            outcome
                                .errors
                                .push(format!("order {}: {}", order.id, error.message));
                            let report = ErrorReport::new(&error, OffsetDateTime::now_utc());
                            if let Err(state_error) = deps
                                .state
                                .record_failure(
                                    &entity,
                                    SyncStatus::NeedsAttention,
                                    &report,
                                    Some(order.updated_at),
                                )
                                .await
                            {
                                warn!(entity = %entity, error = %state_error, "could not record the order reconciliation could not check");
                            }
                        }
                    }
                }
                Err(error) => break 'pages Some(error),
            }
            outcome.checked += 1;
            checked_to = checked_to.max(Some(order.updated_at));
        }
        match page.next {
            Some(next) => after = Some(next),
            None => break None,
        }
    };
    if stopped.is_none() {
        review(deps, channel, &to_review, deadline, margin, &mut outcome).await;
    }
    // A run that read every page has seen every order updated until it began.
    let reached = if stopped.is_none() && !outcome.unfinished {
        checked_to.max(Some(now))
    } else {
        checked_to
    };
    if let Some(reached) = reached {
        deps.cursors
            .set_cursor(&cursor_name, next_cursor(cursor, Some(reached), since))
            .await?;
    }
    match stopped {
        Some(error) => Err(error),
        None => Ok(outcome),
    }
}

/// The ERP sales of the orders vouched for, against what order-sync booked: a hundred in one
/// ERP search. Orders booked before the totals were kept are read from the shop, while the
/// run has time. A review that fails is the run's note, not its end.
async fn review(
    deps: &ReconcileDeps<'_>,
    channel: &ChannelConfig,
    orders: &[ToReview],
    deadline: Option<SystemTime>,
    margin: Duration,
    outcome: &mut ReconcileOutcome,
) {
    let (booked, legacy): (Vec<&ToReview>, Vec<&ToReview>) = orders
        .iter()
        .partition(|o| o.state.basis.as_ref().is_some_and(|b| b.booked.is_some()));
    for chunk in booked.chunks(100) {
        if !time_left(deadline, margin) {
            outcome.unfinished = true;
            return;
        }
        let references: Vec<String> = chunk
            .iter()
            .map(|o| mapping::sale_reference(&channel.id, &o.order.id))
            .collect();
        outcome.requests.erp_searches += 1;
        let mut sales = match deps.erp.sales_by_references(&references).await {
            Ok(sales) => sales,
            Err(error) => {
                outcome
                    .errors
                    .push(format!("ERP sales not reviewed: {}", error.message));
                return;
            }
        };
        for (item, reference) in chunk.iter().zip(&references) {
            let name = format!("order {}", item.order.id);
            let expected = Expected {
                name: &name,
                reference,
                totals: item.state.basis.as_ref().and_then(|b| b.booked.as_ref()),
            };
            let found = sales.remove(reference).unwrap_or_default();
            let result = review_sales(deps, &expected, found, item.state.erp_id).await;
            settle(deps, item, result, outcome).await;
        }
    }
    for item in legacy {
        if !time_left(deadline, margin) {
            outcome.unfinished = true;
            return;
        }
        let result = review_from_shop(
            deps,
            channel,
            &item.order,
            item.state.erp_id,
            &mut outcome.requests,
        )
        .await;
        settle(deps, item, result, outcome).await;
    }
}

/// A review's outcome into the run's: a flag needs a person (sync state says why), a tidy
/// is reported, a failure is noted.
async fn settle(
    deps: &ReconcileDeps<'_>,
    item: &ToReview,
    result: Result<Review, SyncError>,
    outcome: &mut ReconcileOutcome,
) {
    let review = match result {
        Ok(review) => review,
        Err(error) => {
            outcome.errors.push(format!(
                "order {} not reviewed: {}",
                item.order.id, error.message
            ));
            return;
        }
    };
    outcome.reviewed += 1;
    outcome.tidied.extend(review.tidied);
    let Some(flag) = review.flag else {
        return;
    };
    let error = SyncError::permanent("totals_disagree", flag.clone());
    // The version the flag is about: the one applied (finer than the shop's second).
    let version = item.state.version.or(Some(item.order.updated_at));
    if let Err(state_error) = deps
        .state
        .record_failure(
            &item.entity,
            SyncStatus::NeedsAttention,
            &ErrorReport::new(&error, OffsetDateTime::now_utc()),
            version,
        )
        .await
    {
        outcome.errors.push(format!(
            "order {}: flag not recorded: {}",
            item.order.id, state_error.message
        ));
    }
    outcome.flagged.push(flag);
}

#[cfg(test)]
mod tests;
