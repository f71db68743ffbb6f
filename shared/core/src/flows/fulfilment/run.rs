//! The scheduled shipment run: every ERP shipment done since each channel's cursor becomes its
//! shop fulfilment, once.
//!
//! - Each channel keeps its own cursor, so one store's trouble (a revoked Admin token, an
//!   outage) holds only that store's shipments; the others move on.
//! - The ERP is read a page at a time, oldest change first, for as long as the invocation has
//!   time; a run that stops early leaves each cursor at the last shipment it handled, and the
//!   next run goes on from there.
//! - A shipment that fails [`MAX_SHIPMENT_ATTEMPTS`] runs in a row, or that the shop refuses
//!   (a permanent failure), is parked for a person: its sync state says needs-attention with
//!   the shipment, the order and the error, and a message naming it waits in the shipments'
//!   dead-letter queue, so `erpsync dlq redrive` sends it through again once the cause is
//!   fixed. Its channel's cursor then moves past it.
//! - A store that is down (or refuses the token) is tried once a run: the first shipment it
//!   holds is attempted and the rest of its shipments wait behind it, not attempted. None of
//!   them is parked for it: down for its `admin_api.down_alert_minutes` (an hour by default,
//!   about 30 runs at the template's schedule) the *store* needs attention (one
//!   cause, one exception, [`store_entity`]), its shipments keep waiting, and the exception
//!   clears itself on the first run the store answers again. A shipment whose failure reads
//!   as the store being down (an access error, a timeout) while the store answers a probe
//!   fails on its own, and is parked after its attempts like any other.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use serde::Serialize;
use time::OffsetDateTime;
use tracing::{info, warn};

use crate::ErrorClass;
use crate::error::SyncError;
use crate::flows::fulfilment::{
    ShipmentDeps, ShipmentOutcome, parse_sale_reference, shipment_entity, sync_shipment,
};
use crate::model::ids::ChannelId;
use crate::model::state::{EntityRef, ErrorReport, SyncState, SyncStatus};
use crate::ports::ParkedShipments;
use crate::ports::note_failure;
use crate::ports::{Cursors, ErpShipment, ErpShipments};
use crate::runtime::changes::{next_cursor, window_start};

/// The cursor every channel shared before each had its own: a channel without a cursor of its
/// own starts from it, so an upgrade neither re-reads nor skips anything.
pub const SHARED_CURSOR: &str = "shipments-done";

/// A channel's cursor name in the state store.
pub fn channel_cursor(channel: &ChannelId) -> String {
    format!("{SHARED_CURSOR}#{channel}")
}

/// Runs in a row a shipment may fail before a person is asked (about an hour at the
/// template's 2-minute schedule).
pub const MAX_SHIPMENT_ATTEMPTS: u32 = 30;

/// The exception a store that stays down is recorded under (one per channel).
pub fn store_entity(channel: &ChannelId) -> EntityRef {
    EntityRef {
        flow: crate::model::state::Flow::ShipmentSync,
        channel: channel.clone(),
        entity_id: "store".to_owned(),
    }
}

/// Rows read from the ERP at a time.
pub const PAGE_ROWS: usize = 100;

/// A shipment is started only with this long left in the invocation: its shop calls (an
/// order read, the fulfilment, each with the client's timeout) must finish inside it.
pub const SHIPMENT_MARGIN: Duration = Duration::from_secs(30);

pub struct ShipmentRunDeps<'a> {
    pub shipment: ShipmentDeps<'a>,
    pub erp: &'a dyn ErpShipments,
    pub cursors: &'a dyn Cursors,
    pub parked: &'a dyn ParkedShipments,
}

#[derive(Debug, Default, Serialize)]
pub struct ShipmentRun {
    /// Shipments handled this run (those of channels erpsync serves).
    pub shipments: usize,
    pub fulfilled: usize,
    pub already: usize,
    /// Parked for a person: `shipment (order): reason`.
    pub needs_attention: Vec<String>,
    /// Channels whose shipments wait for the next run, with why.
    pub held: Vec<String>,
    /// The run stopped for time before reading everything; the next run goes on.
    pub unfinished: bool,
    /// The ERP or the state store failed: no cursor moved.
    pub error: Option<String>,
}

/// One channel's place in the run.
struct ChannelProgress {
    cursor: Option<OffsetDateTime>,
    start: OffsetDateTime,
    /// The change stamp of its earliest shipment left for a later run.
    held_at: Option<OffsetDateTime>,
    /// The store is down or refuses us: its other shipments are not attempted.
    down: Option<String>,
    /// It answered this run (anything but "down": a fulfilment, a refusal, a probe).
    answered: bool,
}

pub async fn run_shipments(
    deps: &ShipmentRunDeps<'_>,
    now: OffsetDateTime,
    deadline: Option<SystemTime>,
) -> ShipmentRun {
    let mut run = ShipmentRun::default();
    let mut channels = match progress_of(deps, now).await {
        Ok(channels) => channels,
        Err(error) => {
            run.error = Some(error.to_string());
            return run;
        }
    };
    let Some(start) = channels.values().map(|c| c.start).min() else {
        return run;
    };
    let margin = crate::runtime::deadline::margin(deadline, SHIPMENT_MARGIN);
    let time_left = || crate::runtime::deadline::leaves(deadline, margin);
    // Every row up to this stamp was handled (or left for a later run on its channel).
    let mut handled_to: Option<OffsetDateTime> = None;
    let mut after = None;
    'pages: loop {
        if !time_left() {
            run.unfinished = true;
            break;
        }
        let page = match deps.erp.shipments_done_since(start, after, PAGE_ROWS).await {
            Ok(page) => page,
            Err(error) => {
                // What was handled stands; each cursor moves to it below.
                warn!(error = %error, "could not read the ERP's shipments; the next run goes on");
                run.error = Some(error.to_string());
                run.unfinished = true;
                break;
            }
        };
        // The page's shipment states in one batch read, not one read per shipment.
        let entities: Vec<EntityRef> = page
            .shipments
            .iter()
            .filter_map(|shipment| {
                let (channel, order_id) = parse_sale_reference(&shipment.sale_reference)?;
                channels
                    .contains_key(&channel)
                    .then(|| shipment_entity(&channel, &order_id, &shipment.number))
            })
            .collect();
        let known = deps
            .shipment
            .state
            .get_many(&entities)
            .await
            .unwrap_or_default();
        for shipment in &page.shipments {
            if !time_left() {
                run.unfinished = true;
                break 'pages;
            }
            handle(deps, &mut channels, shipment, &known, &mut run).await;
            handled_to = handled_to.max(Some(shipment.changed_at));
        }
        handled_to = handled_to.max(page.last.map(|last| last.changed_at));
        after = page.last;
        if page.rows < PAGE_ROWS || after.is_none() {
            break;
        }
    }
    let mut slowest: Option<OffsetDateTime> = None;
    for (channel, progress) in &channels {
        let next = match progress.held_at {
            // Read again from its first shipment left (the window starts an overlap before).
            Some(held_at) => held_at,
            None if run.unfinished => match handled_to {
                Some(handled_to) => next_cursor(progress.cursor, Some(handled_to), start),
                None => continue,
            },
            None => next_cursor(progress.cursor, handled_to, progress.start),
        };
        if let Some(down) = &progress.down {
            run.held.push(format!("{channel}: {down}"));
        }
        store_exception(deps, channel, progress, now, &mut run).await;
        slowest = Some(slowest.map_or(next, |slowest| slowest.min(next)));
        if let Err(error) = deps
            .cursors
            .set_cursor(&channel_cursor(channel), next)
            .await
        {
            run.error = Some(error.to_string());
        }
    }
    // A channel added later starts where the slowest one stands, not from the first run.
    if let Some(slowest) = slowest
        && let Err(error) = deps.cursors.set_cursor(SHARED_CURSOR, slowest).await
    {
        run.error = Some(error.to_string());
    }
    info!(
        shipments = run.shipments,
        fulfilled = run.fulfilled,
        parked = run.needs_attention.len(),
        unfinished = run.unfinished,
        "shipment run done"
    );
    run
}

/// Each served channel's cursor and where its window starts.
async fn progress_of(
    deps: &ShipmentRunDeps<'_>,
    now: OffsetDateTime,
) -> Result<HashMap<ChannelId, ChannelProgress>, SyncError> {
    let shared = deps.cursors.cursor(SHARED_CURSOR).await?;
    let mut channels = HashMap::new();
    for channel in &deps.shipment.config.channels {
        if deps.shipment.shops.shop(&channel.id).is_none() {
            continue;
        }
        let cursor = deps
            .cursors
            .cursor(&channel_cursor(&channel.id))
            .await?
            .or(shared);
        channels.insert(
            channel.id.clone(),
            ChannelProgress {
                cursor,
                start: window_start(cursor, now),
                held_at: None,
                down: None,
                answered: false,
            },
        );
    }
    Ok(channels)
}

async fn handle(
    deps: &ShipmentRunDeps<'_>,
    channels: &mut HashMap<ChannelId, ChannelProgress>,
    shipment: &ErpShipment,
    known: &HashMap<EntityRef, Option<SyncState>>,
    run: &mut ShipmentRun,
) {
    let Some((channel, order_id)) = parse_sale_reference(&shipment.sale_reference) else {
        return;
    };
    let Some(progress) = channels.get_mut(&channel) else {
        return;
    };
    // Before its channel's window: an earlier run handled it.
    if shipment.changed_at < progress.start {
        return;
    }
    if progress.down.is_some() {
        progress.held_at = earliest(progress.held_at, shipment.changed_at);
        return;
    }
    let entity = shipment_entity(&channel, &order_id, &shipment.number);
    // Parked (or closed) by an earlier run: a person owns it now, and a redrive sends it
    // through the queue; the overlap re-reading it must not park it again.
    let state = match known.get(&entity) {
        Some(state) => Ok(state.clone()),
        // Left out of the batch read: read on its own.
        None => deps.shipment.state.get(&entity).await,
    };
    if let Ok(Some(state)) = state
        && matches!(
            state.status,
            SyncStatus::NeedsAttention | SyncStatus::Resolved
        )
    {
        return;
    }
    run.shipments += 1;
    let failure = match sync_shipment(&deps.shipment, shipment).await {
        Ok(ShipmentOutcome::Fulfilled { .. }) => {
            run.fulfilled += 1;
            progress.answered = true;
            return;
        }
        Ok(ShipmentOutcome::NotFromAChannel) => return,
        Ok(_) => {
            run.already += 1;
            progress.answered = true;
            return;
        }
        Err(failure) => failure,
    };
    if !failure.dependency_down {
        progress.answered = true;
    }
    let now = OffsetDateTime::now_utc();
    let attempts = match failure.class {
        ErrorClass::Permanent => None,
        // Another worker (a redrive on the queue) has it: the next run sees it done.
        ErrorClass::InFlight => {
            progress.held_at = earliest(progress.held_at, shipment.changed_at);
            return;
        }
        ErrorClass::Retryable => {
            note_failure(deps.shipment.state, &entity, &failure, None, now).await;
            match deps.shipment.state.get(&entity).await {
                Ok(state) => Some(state.map_or(1, |s| s.attempts)),
                // Not knowing how often it failed, it waits: never parked on a guess.
                Err(_) => Some(0),
            }
        }
    };
    // The store itself down or refusing us: its shipments wait, none is parked for it (the
    // store is the exception once it has been down long enough, at the end of the run).
    // Past the attempts, a probe tells a store that is down from a shipment that fails on
    // its own: that one is parked below.
    if let Some(attempts) = attempts.filter(|_| failure.dependency_down) {
        let store_answers = attempts >= MAX_SHIPMENT_ATTEMPTS
            && match deps.shipment.shops.shop(&channel) {
                Some(shop) => shop.answers().await.is_ok(),
                None => false,
            };
        if store_answers {
            progress.answered = true;
        } else {
            warn!(shipment = %shipment.number, attempts, error = %failure, "the store is down; its shipments wait for the next run");
            progress.held_at = earliest(progress.held_at, shipment.changed_at);
            progress.down = Some(format!(
                "shipment {} of order {order_id}: {}",
                shipment.number, failure.message
            ));
            return;
        }
    }
    if let Some(attempts) = attempts.filter(|a| *a < MAX_SHIPMENT_ATTEMPTS) {
        warn!(shipment = %shipment.number, attempts, error = %failure, "shipment not synced; the next run retries it");
        progress.held_at = earliest(progress.held_at, shipment.changed_at);
        return;
    }
    let attempts = attempts.unwrap_or(1);
    let reason = if failure.class == ErrorClass::Permanent {
        format!(
            "shipment {} of order {order_id}: {}",
            shipment.number, failure.message
        )
    } else {
        format!(
            "shipment {} of order {order_id} failed {attempts} runs in a row: {}; fix the cause, then erpsync dlq redrive sends it again",
            shipment.number, failure.message
        )
    };
    let parked_error = SyncError {
        message: reason.clone(),
        ..failure.clone()
    };
    warn!(shipment = %shipment.number, error = %parked_error, "shipment parked for a person");
    if let Err(error) = deps
        .parked
        .park(shipment, &entity, &parked_error, attempts)
        .await
    {
        // Not parked: it must not be passed over, so it waits for the next run.
        warn!(shipment = %shipment.number, error = %error, "could not park the shipment; the next run retries it");
        progress.held_at = earliest(progress.held_at, shipment.changed_at);
        return;
    }
    let report = ErrorReport::new(&parked_error, now);
    if let Err(error) = deps
        .shipment
        .state
        .record_failure(&entity, SyncStatus::NeedsAttention, &report, None)
        .await
    {
        warn!(entity = %entity, error = %error, "could not mark the shipment as needing attention");
    }
    run.needs_attention.push(reason);
}

/// A store's downtime, on its own sync state row ([`store_entity`]): its `version` is the
/// moment the downtime counts from (the first run of the streak that found it down). Down for
/// its channel's `admin_api.down_alert_minutes`, it needs attention, once, naming since when
/// and its answer; the first run it answers clears it.
async fn store_exception(
    deps: &ShipmentRunDeps<'_>,
    channel: &ChannelId,
    progress: &ChannelProgress,
    now: OffsetDateTime,
    run: &mut ShipmentRun,
) {
    let down = progress.down.as_ref().filter(|_| !progress.answered);
    if down.is_none() && !progress.answered {
        // Not called this run (nothing to ship): it says nothing either way.
        return;
    }
    let entity = store_entity(channel);
    let state = deps.shipment.state;
    let current = match state.get(&entity).await {
        Ok(current) => current,
        Err(error) => {
            warn!(entity = %entity, error = %error, "could not read the store's downtime; the next run looks again");
            return;
        }
    };
    let streak = current
        .as_ref()
        .filter(|s| matches!(s.status, SyncStatus::Retrying | SyncStatus::NeedsAttention));
    let record = |status: SyncStatus, note: String| crate::model::state::SyncRecord {
        entity: entity.clone(),
        status,
        erp_id: None,
        erp_number: None,
        version: Some(now),
        note: Some(note),
        basis: None,
    };
    let at = |t: OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    };
    let written = match (down, streak) {
        // It answered: a downtime ends (an exception a person saw becomes resolved).
        (None, Some(streak)) => {
            let status = if streak.status == SyncStatus::NeedsAttention {
                SyncStatus::Resolved
            } else {
                SyncStatus::Synced
            };
            state
                .record(&record(
                    status,
                    format!(
                        "the store answered again at {}; its waiting shipments went on",
                        at(now)
                    ),
                ))
                .await
        }
        (None, None) => Ok(()),
        // The first run of a downtime: it counts from now.
        (Some(down), None) => {
            state
                .record(&record(
                    SyncStatus::Retrying,
                    format!("down since {}: {down}", at(now)),
                ))
                .await
        }
        (Some(down), Some(streak)) => {
            let since = streak.version.unwrap_or(now);
            let limit = deps
                .shipment
                .config
                .channels
                .iter()
                .find(|c| &c.id == channel)
                .and_then(|c| c.admin_api.as_ref())
                .map_or(60, |api| api.down_alert_minutes);
            if streak.status == SyncStatus::NeedsAttention
                || now - since < time::Duration::minutes(i64::from(limit))
            {
                return;
            }
            let reason = format!(
                "store {channel} has failed every shipment run since {}: {down}. Its shipments wait (none is parked) and go on the first run it answers: fix the cause (the app's access, the Admin token in Secrets Manager)",
                at(since)
            );
            run.needs_attention.push(reason.clone());
            let error = SyncError::dependency_down("store_down", reason);
            state
                .record_failure(
                    &entity,
                    SyncStatus::NeedsAttention,
                    &ErrorReport::new(&error, now),
                    None,
                )
                .await
        }
    };
    if let Err(error) = written {
        warn!(entity = %entity, error = %error, "could not record the store's downtime");
    }
}

fn earliest(held_at: Option<OffsetDateTime>, at: OffsetDateTime) -> Option<OffsetDateTime> {
    Some(held_at.map_or(at, |held| held.min(at)))
}

#[cfg(test)]
mod tests;
