//! Courier tracking events (EasyPost `tracker.updated`) to the shop: progress becomes a
//! fulfilment event on the fulfilment that carries the tracking number; a failure or a
//! return to sender needs a person, with the courier's message.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::channels::easypost::TrackerUpdate;
use crate::error::SyncError;
use crate::model::ids::ChannelId;
use crate::model::state::{EntityRef, Flow, IdempotencyKey, PayloadHash, SyncRecord, SyncStatus};
use crate::ports::{FulfilmentChannels, FulfilmentEvent, FulfilmentRef, TrackingIndex};
use crate::ports::{IdempotencyStore, Once, once};

/// The FIFO group of a parcel's tracking events: applied in the order they came.
pub fn tracking_group_id(tracking_code: &str) -> String {
    let code: String = tracking_code
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.".contains(*c))
        .take(100)
        .collect();
    format!("tracking:{code}")
}

pub struct TrackingDeps<'a> {
    pub idempotency: &'a dyn IdempotencyStore,
    pub index: &'a dyn TrackingIndex,
    pub shops: &'a dyn FulfilmentChannels,
    pub lease_until: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum TrackingOutcome {
    EventAdded { status: String },
    NeedsAttention,
    Ignored,
    Replayed,
}

/// The entity a tracking number's problems are filed under before its fulfilment is known:
/// the pseudo-channel `courier`.
pub fn unknown_tracking_entity(update: &TrackerUpdate) -> Option<EntityRef> {
    Some(EntityRef {
        flow: Flow::Tracking,
        channel: ChannelId::parse("courier").ok()?,
        entity_id: update.tracking_code.clone(),
    })
}

/// Applies one tracker update, once per EasyPost event.
pub async fn apply_tracking(
    deps: &TrackingDeps<'_>,
    update: &TrackerUpdate,
) -> Result<TrackingOutcome, SyncError> {
    let Some(found) = deps.index.find(&update.tracking_code).await? else {
        // The dispatch may not have synced yet: retried with backoff, then parked.
        return Err(SyncError::retryable(
            "tracking_unknown",
            format!(
                "no fulfilment carries tracking number {} ({}) yet: if the dispatch never syncs, check the ERP shipment's reference",
                update.tracking_code,
                update.carrier.as_deref().unwrap_or("carrier unknown")
            ),
        ));
    };
    let key = IdempotencyKey::new(Flow::Tracking, &found.channel, &update.event_id);
    let hash = PayloadHash::of(update);
    let what = format!("tracking event {}", update.event_id);
    let ran = once(
        deps.idempotency,
        &key,
        &hash,
        deps.lease_until,
        &what,
        apply(deps, update, &found),
    )
    .await?;
    Ok(match ran {
        Once::Ran(outcome) => outcome,
        Once::Replayed => TrackingOutcome::Replayed,
    })
}

async fn apply(
    deps: &TrackingDeps<'_>,
    update: &TrackerUpdate,
    found: &FulfilmentRef,
) -> Result<(TrackingOutcome, SyncRecord), SyncError> {
    let shop = deps.shops.shop(&found.channel).ok_or_else(|| {
        SyncError::permanent(
            "not_configured",
            format!("channel {} has no Admin API configured", found.channel),
        )
    })?;
    let courier_says = update
        .message
        .clone()
        .or_else(|| update.status_detail.clone())
        .unwrap_or_default();
    let mut outcome = TrackingOutcome::Ignored;
    if let Some(status) = update.status.shop_event() {
        shop.add_event(
            &found.fulfilment_id,
            &FulfilmentEvent {
                status: status.to_owned(),
                message: update.message.clone(),
                happened_at: update.happened_at,
            },
        )
        .await?;
        outcome = TrackingOutcome::EventAdded {
            status: status.to_owned(),
        };
    }
    let (status, note) = if update.status.needs_a_person() {
        outcome = TrackingOutcome::NeedsAttention;
        (
            SyncStatus::NeedsAttention,
            format!(
                "courier {:?} for {} (order {}, shipment {}): {courier_says} — contact the courier or the customer, then book a return or a re-dispatch",
                update.status, update.tracking_code, found.order_id, found.shipment
            ),
        )
    } else {
        (
            SyncStatus::Synced,
            format!(
                "{:?}: {courier_says} (tracking {})",
                update.status, update.tracking_code
            ),
        )
    };
    let record = SyncRecord {
        basis: None,
        entity: EntityRef {
            flow: Flow::Tracking,
            channel: found.channel.clone(),
            entity_id: found.order_id.clone(),
        },
        status,
        erp_id: None,
        erp_number: Some(found.shipment.clone()),
        version: update.happened_at,
        note: Some(note),
    };
    Ok((outcome, record))
}
