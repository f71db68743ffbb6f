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
async fn run_at(fakes: &Fakes, deadline: Option<SystemTime>, now: OffsetDateTime) -> ShipmentRun {
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
        flagged.needs_attention[0].contains("401") && flagged.needs_attention[0].contains("SH1"),
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
