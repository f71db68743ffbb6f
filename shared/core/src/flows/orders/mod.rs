//! The order intake flow: a channel's order message -> exactly one confirmed ERP sale.
//!
//! Exactly once rests on three things, each covering the others' gaps: the idempotency claim
//! (replays and concurrent duplicates), the look-up of the sale by its reference before
//! creating it (a crash between the ERP write and the state write), and the confirm step
//! that resumes from whatever state the sale is in.

mod customers;
pub mod edits;
mod outcome;
mod sale;

use outcome::record_of;
pub use outcome::{OrderOutcome, OrderSyncDeps};
use sale::{apply, cancel};

use serde::Serialize;
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::channels;
use crate::config::{ChannelConfig, Config, Mode};
use crate::error::SyncError;
use crate::mapping::{self, SaleDraft};
use crate::model::ids::ChannelId;
use crate::model::order::{ChannelOrder, OrderTopic};
use crate::model::state::{
    Claim, ClaimToken, EntityRef, Flow, IdempotencyKey, PayloadHash, SyncRecord, SyncState,
    SyncStatus, payload_version,
};
use crate::ports::{ArchivedPayload, Completion, note_failure};
use crate::runtime::batch::MessageFailure;

/// An order message as it comes off the orders queue.
#[derive(Debug, Clone)]
pub struct OrderMessage {
    pub channel: ChannelId,
    pub topic: OrderTopic,
    pub body: Vec<u8>,
    /// When the platform triggered the delivery (Shopify's `X-Shopify-Triggered-At`;
    /// reconciliation's fetch): orders two versions of one second.
    pub triggered_at: Option<OffsetDateTime>,
}

impl OrderMessage {
    /// Which version of the order this payload is ([`payload_version`]).
    fn version(&self, order: &ChannelOrder) -> OffsetDateTime {
        payload_version(order.updated_at, self.triggered_at, &self.body)
    }

    /// Its version without processing it (a message parked unattempted records which version
    /// failed, so an older one applied later cannot clear the failure); None: unreadable.
    pub fn version_in(&self, config: &Config) -> Option<OffsetDateTime> {
        let channel = config.channels.iter().find(|c| c.id == self.channel)?;
        let order = channels::parse_order(channel.platform, &channel.id, &self.body).ok()?;
        Some(self.version(&order))
    }
}

pub async fn sync_order(
    deps: &OrderSyncDeps<'_>,
    message: &OrderMessage,
    now: OffsetDateTime,
    lease_until: OffsetDateTime,
) -> Result<OrderOutcome, MessageFailure> {
    let unattributed = MessageFailure::unattributed;
    let channel = deps.config.channel(&message.channel).ok_or_else(|| {
        unattributed(SyncError::permanent(
            "unknown_channel",
            format!(
                "channel {:?} is not in the config; add it or discard the message",
                message.channel.as_str()
            ),
        ))
    })?;
    let order_id =
        channels::order_id(channel.platform, &message.body).map_err(|e| unattributed(e.into()))?;
    let entity = EntityRef::order(&channel.id, order_id.as_str());
    let order = channels::parse_order(channel.platform, &channel.id, &message.body);
    let version = order.as_ref().ok().map(|o| message.version(o));
    match run(deps, channel, message, &order, &entity, lease_until).await {
        Ok(outcome) => Ok(outcome),
        Err(error) => {
            note_failure(deps.state, &entity, &error, version, now).await;
            if let Ok(order) = &order {
                keep_for_replay(deps, message, order, &entity).await;
            }
            Err(MessageFailure {
                error,
                entity: Some(entity),
                version,
            })
        }
    }
}

/// A failed order's payload is kept so a person can replay it once the cause is fixed
/// (`erpsync replay`), even after its message is discarded. Only failures pay for it: a
/// version that took effect has nothing to replay. Losing it must not hold the order up.
async fn keep_for_replay(
    deps: &OrderSyncDeps<'_>,
    message: &OrderMessage,
    order: &ChannelOrder,
    entity: &EntityRef,
) {
    let Some(archive) = deps.archive else {
        return;
    };
    let payload = ArchivedPayload {
        topic: message.topic.as_str().to_owned(),
        version: message.version(order),
        triggered_at: message.triggered_at,
        body: String::from_utf8_lossy(&message.body).into_owned(),
    };
    if let Err(error) = archive.keep(entity, &payload).await {
        warn!(entity = %entity, error = %error, "could not keep the payload for replays");
    }
}

/// What the shop wants the ERP to hold for this version of the order.
#[derive(Debug, Clone, PartialEq, Serialize)]
enum Wanted {
    Sale(Box<SaleDraft>),
    Cancelled { reference: String },
}

async fn run(
    deps: &OrderSyncDeps<'_>,
    channel: &ChannelConfig,
    message: &OrderMessage,
    order: &Result<ChannelOrder, crate::error::ParseError>,
    entity: &EntityRef,
    lease_until: OffsetDateTime,
) -> Result<OrderOutcome, SyncError> {
    if channel.mode == Mode::Off {
        return skip(deps, entity, None, format!("channel {} is off", channel.id)).await;
    }
    let order = order.as_ref().map_err(|e| SyncError::from(e.clone()))?;
    let version = message.version(order);
    // Shopify neither orders nor guarantees deliveries: a version older than the one the
    // ERP reflects must never regress it.
    let current = deps.state.get(entity).await?;
    if let Some(applied) = current.as_ref().and_then(|state| state.version)
        && version < applied
    {
        let reason = format!(
            "{} {} is older than the version already applied ({}); not applied",
            order.name,
            rfc3339(version),
            rfc3339(applied)
        );
        info!(entity = %entity, reason = %reason, "stale version skipped");
        return Ok(OrderOutcome::Skipped { reason });
    }
    let wanted = if order.cancelled || message.topic == OrderTopic::Cancelled {
        Wanted::Cancelled {
            reference: mapping::sale_reference(&channel.id, &order.external_id),
        }
    } else {
        Wanted::Sale(Box::new(mapping::sale_draft(
            order,
            channel,
            &deps.config.erp,
        )?))
    };
    // One claim per second of `updated_at` and content: the same content delivered again
    // in its second (orders/create, orders/paid, a retry, each triggered apart) is replayed,
    // not applied again; other content of that second is a version of its own.
    let hash = PayloadHash::of(&wanted);
    let key = IdempotencyKey::new(
        Flow::OrderSync,
        &channel.id,
        &format!(
            "{}@{}#{}",
            order.external_id,
            order.updated_at.unix_timestamp(),
            hash.as_str().get(..16).unwrap_or(hash.as_str())
        ),
    );
    match deps.idempotency.claim(&key, &hash, lease_until).await? {
        Claim::InProgress => Err(SyncError::in_flight(format!(
            "order {} is being synced by another worker",
            order.name
        ))),
        Claim::AlreadyDone { outcome, .. } => {
            let previous: OrderOutcome = serde_json::from_value(outcome).map_err(|e| {
                SyncError::permanent(
                    "corrupt_state",
                    format!("stored outcome for {key} does not read back: {e}"),
                )
            })?;
            info!(order = %order.name, "this version is already applied; replaying the stored outcome");
            restore_lagging_state(
                deps,
                current.as_ref(),
                &record_of(entity, &previous, version),
            )
            .await;
            Ok(OrderOutcome::Replayed {
                previous: Box::new(previous),
            })
        }
        Claim::Start(token) => {
            let result = match &wanted {
                Wanted::Sale(draft) => apply(deps, channel, &order.name, draft, entity).await,
                Wanted::Cancelled { reference } => cancel(deps, &order.name, reference).await,
            };
            match result {
                Ok(outcome) => {
                    let stored = serde_json::to_value(&outcome).unwrap_or_default();
                    let mut record = record_of(entity, &outcome, version);
                    // How its refunds read (return-sync follows it) and the totals booked
                    // (reconciliation compares the ERP's with them).
                    record.basis = Some(crate::model::state::OrderBasis {
                        taxes_included: order.taxes_included,
                        refunded_before_fulfilment: Some(refund_split(
                            order,
                            &outcome,
                            current.as_ref(),
                        )),
                        booked: booked_totals(order, &wanted, &outcome),
                    });
                    match deps
                        .idempotency
                        .complete(&key, &token, &hash, &stored, &record)
                        .await
                    {
                        Ok(Completion::Recorded) => {}
                        Ok(Completion::TakenOver) => {
                            warn!(entity = %entity, "this attempt's claim ran out and another worker took it over; its outcome stands");
                        }
                        Ok(Completion::StateNewer) => {
                            superseded(deps, entity, &order.name, &outcome, version).await;
                        }
                        Err(error) => {
                            release(deps, &key, &token).await;
                            return Err(error);
                        }
                    }
                    signal_stock(deps, &wanted, &outcome).await;
                    Ok(outcome)
                }
                Err(error) => {
                    release(deps, &key, &token).await;
                    Err(error)
                }
            }
        }
    }
}

/// What the ERP must now hold for the order, when this outcome put it there.
fn booked_totals(
    order: &ChannelOrder,
    wanted: &Wanted,
    outcome: &OrderOutcome,
) -> Option<crate::model::state::BookedTotals> {
    if matches!(
        outcome,
        OrderOutcome::Skipped { .. } | OrderOutcome::Shadow { .. }
    ) {
        return None;
    }
    Some(match wanted {
        Wanted::Sale(draft) => crate::model::state::BookedTotals {
            currency: draft.currency.clone(),
            net: draft.currency.round(draft.total()),
            gross: order.total(),
            cancelled: false,
        },
        Wanted::Cancelled { .. } => crate::model::state::BookedTotals {
            currency: order.currency.clone(),
            net: rust_decimal::Decimal::ZERO,
            gross: rust_decimal::Decimal::ZERO,
            cancelled: true,
        },
    })
}

/// The units each refund took off the sale, for return-sync. An outcome that left the sale as
/// it was (the ERP owns orders, shadow mode) took none off, so every unit is credited. A
/// refund's entry, once recorded, stays as it was: return-sync may have booked by it, and a
/// fulfilment cancelled since must not move a unit it credited off the sale as well.
fn refund_split(
    order: &ChannelOrder,
    outcome: &OrderOutcome,
    current: Option<&SyncState>,
) -> crate::model::order::RefundedBeforeFulfilment {
    let applied = !matches!(
        outcome,
        OrderOutcome::Skipped { .. } | OrderOutcome::Shadow { .. }
    );
    let mut split: crate::model::order::RefundedBeforeFulfilment = order
        .refunded_before_fulfilment
        .iter()
        .map(|(refund, lines)| {
            let lines = if applied {
                lines.clone()
            } else {
                Default::default()
            };
            (refund.clone(), lines)
        })
        .collect();
    let recorded = current
        .and_then(|s| s.basis.as_ref())
        .and_then(|b| b.refunded_before_fulfilment.as_ref());
    for (refund, lines) in recorded.into_iter().flatten() {
        split.insert(refund.clone(), lines.clone());
    }
    split
}

/// This version was applied while a newer one was already recorded: only possible when two
/// attempts at one order overlap (FIFO groups prevent it; a replay beside the queue does not).
/// If this attempt changed the ERP it may have put an older version over the newer one: a
/// person checks, never silence. A newer version's failure recorded instead is left to it.
async fn superseded(
    deps: &OrderSyncDeps<'_>,
    entity: &EntityRef,
    order_name: &str,
    outcome: &OrderOutcome,
    version: OffsetDateTime,
) {
    let changed_the_erp = matches!(
        outcome,
        OrderOutcome::Synced { created: true, .. }
            | OrderOutcome::Amended { .. }
            | OrderOutcome::Cancelled {
                erp_id: Some(_),
                ..
            }
    );
    let recorded = match deps.state.get(entity).await {
        Ok(state) => state.and_then(|s| s.version),
        Err(error) => {
            warn!(entity = %entity, error = %error, "could not read the state of a superseded version");
            None
        }
    };
    let Some(newer) = recorded.filter(|newer| *newer > version && changed_the_erp) else {
        return;
    };
    let error = SyncError::permanent(
        "superseded_while_applied",
        format!(
            "{order_name} {} was applied to the ERP ({}) after the newer {} was: the ERP sale may hold the older version; compare it with the shop and replay the latest version (erpsync replay)",
            rfc3339(version),
            outcome.summary(),
            rfc3339(newer)
        ),
    );
    warn!(entity = %entity, kind = %error.kind, "an older version was applied after a newer one");
    note_failure(deps.state, entity, &error, None, OffsetDateTime::now_utc()).await;
}

/// A version already applied whose state row says otherwise (left behind by a write that
/// lost a race, or by an older release that did not guard its writes) is put right, so
/// status and reconciliation agree with the idempotency record. Best effort: the replay
/// itself stands either way.
async fn restore_lagging_state(
    deps: &OrderSyncDeps<'_>,
    current: Option<&SyncState>,
    applied: &SyncRecord,
) {
    let lags = match current {
        None => true,
        Some(state) => {
            state.version < applied.version
                || (state.version == applied.version && state.status != applied.status)
        }
    };
    if !lags {
        return;
    }
    match deps.state.record(applied).await {
        Ok(()) => {
            info!(entity = %applied.entity, status = applied.status.as_str(), "sync state restored to the applied version")
        }
        Err(error) => {
            warn!(entity = %applied.entity, error = %error, "could not restore the sync state of an applied version")
        }
    }
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// A new or amended sale reserves stock differently: real-time channels hear of it now.
/// A failure here loses nothing (the scheduled run catches up), so it is only logged.
async fn signal_stock(deps: &OrderSyncDeps<'_>, wanted: &Wanted, outcome: &OrderOutcome) {
    let (Some(stock), Wanted::Sale(draft)) = (deps.stock, wanted) else {
        return;
    };
    let moved = matches!(
        outcome,
        OrderOutcome::Synced { created: true, .. } | OrderOutcome::Amended { .. }
    );
    if moved && let Err(error) = stock.stock_moved(&draft.skus()).await {
        warn!(error = %error, "could not signal the stock change; the scheduled run will catch up");
    }
}

async fn release(deps: &OrderSyncDeps<'_>, key: &IdempotencyKey, token: &ClaimToken) {
    // If the release fails too, the claim's lease runs out and the retry takes it over.
    if let Err(error) = deps.idempotency.release(key, token).await {
        warn!(key = %key, error = %error, "could not release the idempotency claim");
    }
}

async fn skip(
    deps: &OrderSyncDeps<'_>,
    entity: &EntityRef,
    version: Option<OffsetDateTime>,
    reason: String,
) -> Result<OrderOutcome, SyncError> {
    info!(entity = %entity, reason = %reason, "skipped");
    deps.state
        .record(&SyncRecord {
            basis: None,
            entity: entity.clone(),
            status: SyncStatus::Skipped,
            erp_id: None,
            erp_number: None,
            version,
            note: Some(reason.clone()),
        })
        .await?;
    Ok(OrderOutcome::Skipped { reason })
}

#[cfg(test)]
mod tests;
