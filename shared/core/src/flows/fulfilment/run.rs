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
mod tests {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use async_trait::async_trait;
    use time::macros::datetime;

    use super::*;
    use crate::config::Config;
    use crate::fakes::{FakeCursors, FakeStore, poisoned};
    use crate::model::ids::Sku;
    use crate::ports::SyncStateStore;
    use crate::ports::{
        ChannelFulfilment, FulfilLine, FulfilmentEvent, FulfilmentRef, OpenLine, ShopFulfilment,
        Tracking, TrackingIndex,
    };

    const CONFIG: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/erpsync.example.toml"
    ));
    const UK: &str = "uk-shop";
    const EU: &str = "eu-shop";

    /// A shop with one open unit of one line per order; it can be down, or not know orders.
    #[derive(Default)]
    struct Shop {
        down: Mutex<bool>,
        unknown: HashSet<String>,
        /// Orders whose reads fail (the store itself answers the rest).
        failing: HashSet<String>,
        /// Orders whose reads are refused as if the store were (a missing scope for a
        /// fulfilment order another app holds), while the store answers everything else.
        denied: HashSet<String>,
        fulfilled: Mutex<HashSet<String>>,
    }

    #[async_trait]
    impl ChannelFulfilment for Shop {
        async fn answers(&self) -> Result<(), SyncError> {
            if *self.down.lock().map_err(poisoned)? {
                return Err(SyncError::dependency_down(
                    "shop_unauthorized",
                    "the shop refused the Admin API token (401)",
                ));
            }
            Ok(())
        }

        async fn fulfilment(&self, order_id: &str) -> Result<Option<ShopFulfilment>, SyncError> {
            self.answers().await?;
            if self.denied.contains(order_id) {
                return Err(SyncError::dependency_down(
                    "shop_access_denied",
                    format!("ACCESS_DENIED reading order {order_id}"),
                ));
            }
            if self.unknown.contains(order_id) {
                return Ok(None);
            }
            if self.failing.contains(order_id) {
                return Err(SyncError::retryable(
                    "shop_busy",
                    format!("the shop timed out reading order {order_id}"),
                ));
            }
            let done = self.fulfilled.lock().map_err(poisoned)?.contains(order_id);
            Ok(Some(ShopFulfilment {
                lines: vec![OpenLine {
                    fulfilment_order: format!("fo-{order_id}"),
                    line_item: order_id.to_owned(),
                    sku: Sku::parse("IPOD2008GREEN").ok(),
                    remaining: u32::from(!done),
                }],
                tracking_numbers: Vec::new(),
                status: "UNFULFILLED".to_owned(),
            }))
        }
        async fn fulfil(
            &self,
            lines: &[FulfilLine],
            _tracking: Option<&Tracking>,
        ) -> Result<String, SyncError> {
            let mut fulfilled = self.fulfilled.lock().map_err(poisoned)?;
            for line in lines {
                fulfilled.insert(line.line_item.clone());
            }
            Ok(format!("fulfilment-{}", fulfilled.len()))
        }
        async fn add_event(&self, _: &str, _: &FulfilmentEvent) -> Result<(), SyncError> {
            Ok(())
        }
    }

    #[derive(Default)]
    struct Fakes {
        store: FakeStore,
        shops: HashMap<String, Shop>,
        shipments: Vec<ErpShipment>,
        cursors: FakeCursors,
        parked: Mutex<Vec<(i64, String)>>,
    }

    #[async_trait]
    impl ErpShipments for Fakes {
        async fn shipments_done_since(
            &self,
            since: OffsetDateTime,
            after: Option<crate::ports::ShipmentKey>,
            limit: usize,
        ) -> Result<crate::ports::ShipmentPage, SyncError> {
            let rows: Vec<ErpShipment> = self
                .shipments
                .iter()
                .filter(|s| s.changed_at >= since)
                .filter(|s| after.is_none_or(|a| (s.changed_at, s.id) > (a.changed_at, a.id)))
                .take(limit)
                .cloned()
                .collect();
            Ok(crate::ports::ShipmentPage {
                rows: rows.len(),
                last: rows.last().map(|s| crate::ports::ShipmentKey {
                    changed_at: s.changed_at,
                    id: s.id,
                }),
                shipments: rows,
            })
        }
        async fn shipment(&self, id: i64) -> Result<Option<ErpShipment>, SyncError> {
            Ok(self.shipments.iter().find(|s| s.id == id).cloned())
        }
    }

    #[async_trait]
    impl ParkedShipments for Fakes {
        async fn park(
            &self,
            shipment: &ErpShipment,
            _: &EntityRef,
            error: &SyncError,
            _: u32,
        ) -> Result<(), SyncError> {
            self.parked
                .lock()
                .map_err(poisoned)?
                .push((shipment.id, error.message.clone()));
            Ok(())
        }
    }

    #[async_trait]
    impl TrackingIndex for Fakes {
        async fn remember(&self, _: &str, _: &FulfilmentRef) -> Result<(), SyncError> {
            Ok(())
        }
        async fn find(&self, _: &str) -> Result<Option<FulfilmentRef>, SyncError> {
            Ok(None)
        }
    }

    const T0: OffsetDateTime = datetime!(2026-12-03 10:00 UTC);

    /// Shipments of `channel`'s orders, one a second from `from` seconds after T0.
    fn shipments(channel: &str, first_id: i64, count: i64, from: i64) -> Vec<ErpShipment> {
        (0..count)
            .map(|n| ErpShipment {
                id: first_id + n,
                number: format!("SH{}", first_id + n),
                sale_reference: format!("{channel}/{}", 1000 + first_id + n),
                moves: vec![(
                    Sku::parse("IPOD2008GREEN").unwrap_or_else(|e| panic!("{e}")),
                    1,
                )],
                tracking_number: None,
                carrier: None,
                sale_shipment_state: "sent".to_owned(),
                changed_at: T0 + time::Duration::seconds(from + n),
            })
            .collect()
    }

    fn fakes(mut shipments: Vec<ErpShipment>) -> Fakes {
        shipments.sort_by_key(|s| (s.changed_at, s.id));
        Fakes {
            shops: HashMap::from([
                (UK.to_owned(), Shop::default()),
                (EU.to_owned(), Shop::default()),
            ]),
            shipments,
            ..Fakes::default()
        }
    }

    async fn run(fakes: &Fakes, deadline: Option<SystemTime>) -> ShipmentRun {
        // The first run looks back from a minute after the last shipment.
        run_at(fakes, deadline, T0 + time::Duration::minutes(5)).await
    }

    /// The run the schedule starts at `now`.
    async fn run_at(
        fakes: &Fakes,
        deadline: Option<SystemTime>,
        now: OffsetDateTime,
    ) -> ShipmentRun {
        let config = Config::from_toml(CONFIG).unwrap_or_else(|e| panic!("{e}"));
        let deps = ShipmentRunDeps {
            shipment: ShipmentDeps {
                config: &config,
                idempotency: &fakes.store,
                state: &fakes.store,
                tracking: fakes,
                shops: &fakes.shops,
                lease_until: T0 + time::Duration::hours(1),
            },
            erp: fakes,
            cursors: &fakes.cursors,
            parked: fakes,
        };
        run_shipments(&deps, now, deadline).await
    }

    fn cursor(fakes: &Fakes, channel: &str) -> Option<OffsetDateTime> {
        let id = ChannelId::parse(channel).unwrap_or_else(|e| panic!("{e}"));
        fakes
            .cursors
            .0
            .lock()
            .ok()
            .and_then(|c| c.get(&channel_cursor(&id)).copied())
    }

    fn set_down(fakes: &Fakes, channel: &str, down: bool) {
        if let Some(mut flag) = fakes.shops.get(channel).and_then(|s| s.down.lock().ok()) {
            *flag = down;
        }
    }

    #[tokio::test]
    async fn one_store_s_trouble_holds_only_its_own_shipments_and_cursor() {
        let mut all = shipments(UK, 1, 3, 0);
        all.extend(shipments(EU, 100, 2, 10));
        let fakes = fakes(all);
        set_down(&fakes, UK, true);
        let first = run(&fakes, None).await;
        // The EU store's two are fulfilled; the UK store is tried once, its others wait.
        assert_eq!((first.fulfilled, first.shipments), (2, 3), "{first:?}");
        assert_eq!(first.held.len(), 1, "{first:?}");
        assert!(first.held[0].starts_with(UK), "{first:?}");
        assert_eq!(cursor(&fakes, UK), Some(T0), "at its first shipment left");
        assert_eq!(cursor(&fakes, EU), Some(T0 + time::Duration::seconds(11)));
        assert!(first.needs_attention.is_empty());

        set_down(&fakes, UK, false);
        let second = run(&fakes, None).await;
        assert_eq!(second.fulfilled, 3, "{second:?}");
        assert_eq!(cursor(&fakes, UK), Some(T0 + time::Duration::seconds(11)));
        assert!(
            second.held.is_empty() && second.error.is_none(),
            "{second:?}"
        );
    }

    #[tokio::test]
    async fn a_shipment_failing_run_after_run_is_parked_once_and_its_store_moves_on() {
        let mut fakes = fakes(shipments(UK, 1, 2, 0));
        if let Some(shop) = fakes.shops.get_mut(UK) {
            shop.failing.insert("1001".to_owned());
        }
        for attempt in 1..MAX_SHIPMENT_ATTEMPTS {
            let run = run(&fakes, None).await;
            assert!(run.needs_attention.is_empty(), "attempt {attempt}: {run:?}");
            assert_eq!(run.fulfilled, usize::from(attempt == 1), "{run:?}");
        }
        let last = run(&fakes, None).await;
        assert_eq!(last.needs_attention.len(), 1, "{last:?}");
        let reason = &last.needs_attention[0];
        assert!(
            reason.contains("SH1") && reason.contains("1001") && reason.contains("timed out"),
            "names the shipment, the order and the error: {reason}"
        );
        let parked = fakes.parked.lock().map(|p| p.clone()).unwrap_or_default();
        assert_eq!(parked.iter().map(|p| p.0).collect::<Vec<_>>(), [1]);
        let entity = shipment_entity(
            &ChannelId::parse(UK).unwrap_or_else(|e| panic!("{e}")),
            "1001",
            "SH1",
        );
        let state = fakes.store.get(&entity).await.ok().flatten();
        assert_eq!(
            state.as_ref().map(|s| (s.status, s.attempts)),
            Some((SyncStatus::NeedsAttention, MAX_SHIPMENT_ATTEMPTS + 1))
        );
        // The cursor passed it, and it is never parked again.
        assert_eq!(cursor(&fakes, UK), Some(T0 + time::Duration::seconds(1)));
        let after = run(&fakes, None).await;
        assert!(after.needs_attention.is_empty(), "{after:?}");
        assert_eq!(fakes.parked.lock().map(|p| p.len()).unwrap_or(0), 1);
    }

    /// A store down for hours parks none of its shipments (one an hour, before): the store is
    /// the one exception, once, and it clears when the store answers again.
    #[tokio::test]
    async fn a_store_down_for_hours_is_one_exception_and_parks_none_of_its_shipments() {
        let fakes = fakes(shipments(UK, 1, 3, 0));
        set_down(&fakes, UK, true);
        let store = store_entity(&ChannelId::parse(UK).unwrap_or_else(|e| panic!("{e}")));
        // Every 2 minutes, as the template schedules it: 30 runs make the hour.
        let at = |run: i64| T0 + time::Duration::minutes(5 + 2 * run);
        for n in 0..30 {
            let run = run_at(&fakes, None, at(n)).await;
            assert!(run.needs_attention.is_empty(), "run {n}: {run:?}");
            assert_eq!(run.held.len(), 1, "run {n}: {run:?}");
        }
        let flagged = run_at(&fakes, None, at(30)).await;
        assert_eq!(flagged.needs_attention.len(), 1, "{flagged:?}");
        assert!(
            flagged.needs_attention[0].contains("401")
                && flagged.needs_attention[0].contains("SH1"),
            "names the store's answer and the shipment: {:?}",
            flagged.needs_attention
        );
        // Once: later runs do not raise it again.
        let later = run_at(&fakes, None, at(31)).await;
        assert!(later.needs_attention.is_empty(), "{later:?}");
        assert!(fakes.parked.lock().map(|p| p.is_empty()).unwrap_or(false));
        let state = fakes.store.get(&store).await.ok().flatten();
        assert_eq!(state.map(|s| s.status), Some(SyncStatus::NeedsAttention));
        assert_eq!(cursor(&fakes, UK), Some(T0), "every shipment still waits");

        set_down(&fakes, UK, false);
        let back = run_at(&fakes, None, at(32)).await;
        assert_eq!(back.fulfilled, 3, "{back:?}");
        assert!(back.needs_attention.is_empty(), "{back:?}");
        let cleared = fakes.store.get(&store).await.ok().flatten();
        assert_eq!(cleared.map(|s| s.status), Some(SyncStatus::Resolved));
    }

    /// A shipment refused as though the store were down (an access error on its order
    /// alone), while the store answers: after its attempts it is parked like any shipment
    /// failing on its own, and the store's other shipments go on.
    #[tokio::test]
    async fn a_shipment_refused_while_its_store_answers_is_parked_after_its_attempts() {
        let mut fakes = fakes(shipments(UK, 1, 2, 0));
        if let Some(shop) = fakes.shops.get_mut(UK) {
            shop.denied.insert("1001".to_owned());
        }
        let at = |run: i64| T0 + time::Duration::minutes(5 + 2 * run);
        for n in 0..i64::from(MAX_SHIPMENT_ATTEMPTS) - 1 {
            let run = run_at(&fakes, None, at(n)).await;
            assert!(run.needs_attention.is_empty(), "run {n}: {run:?}");
            assert_eq!(run.fulfilled, 0, "held behind it: {run:?}");
        }
        let last = run_at(&fakes, None, at(30)).await;
        assert_eq!(last.needs_attention.len(), 1, "{last:?}");
        assert!(
            last.needs_attention[0].contains("SH1")
                && last.needs_attention[0].contains("ACCESS_DENIED"),
            "{last:?}"
        );
        assert_eq!(
            last.fulfilled, 1,
            "the store's next shipment went on: {last:?}"
        );
        let parked = fakes.parked.lock().map(|p| p.clone()).unwrap_or_default();
        assert_eq!(parked.iter().map(|p| p.0).collect::<Vec<_>>(), [1]);
    }

    #[tokio::test]
    async fn a_shipment_the_shop_refuses_is_parked_at_once_and_holds_nothing() {
        let mut fakes = fakes(shipments(UK, 1, 2, 0));
        if let Some(shop) = fakes.shops.get_mut(UK) {
            shop.unknown.insert("1001".to_owned());
        }
        let run = run(&fakes, None).await;
        assert_eq!(
            (run.fulfilled, run.needs_attention.len()),
            (1, 1),
            "{run:?}"
        );
        assert!(run.needs_attention[0].contains("does not have"), "{run:?}");
        assert_eq!(cursor(&fakes, UK), Some(T0 + time::Duration::seconds(1)));
    }

    #[tokio::test]
    async fn the_erp_is_read_a_page_at_a_time_and_a_run_out_of_time_moves_no_cursor() {
        let fakes = fakes(shipments(EU, 1, 250, 0));
        let short = SystemTime::now() - Duration::from_secs(1);
        let stopped = run(&fakes, Some(short)).await;
        assert!(stopped.unfinished && stopped.shipments == 0, "{stopped:?}");
        assert_eq!(cursor(&fakes, EU), None);
        let full = run(&fakes, None).await;
        assert_eq!(full.fulfilled, 250, "{full:?}");
        assert!(!full.unfinished);
        assert_eq!(cursor(&fakes, EU), Some(T0 + time::Duration::seconds(249)));
    }
}
