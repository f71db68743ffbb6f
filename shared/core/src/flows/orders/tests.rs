//! The flow's decisions on in-memory fakes of the ports. The real adapters are tested
//! against DynamoDB (moto) and Tryton in tests/.

use time::{Duration, OffsetDateTime};

use super::*;
use crate::error::ErrorClass;
use crate::fakes::{FakeErp, FakeStore};
use crate::model::ids::{Email, Sku};
use crate::ports::{ErpAddress, ErpCustomer, ErpSaleState, NewSale};
use crate::ports::{IdempotencyStore, SalesErp, SyncStateStore};
use crate::runtime::batch::MessageFailure;

mod changes;

const ORDER: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/shopify-orders-create-multiline-discount-tax.json"
));
const CONFIG: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../config/erpsync.example.toml"
));

struct World {
    config: Config,
    store: FakeStore,
    erp: FakeErp,
}

impl World {
    fn new() -> Self {
        Self {
            config: Config::from_toml(CONFIG).unwrap_or_else(|e| panic!("{e}")),
            store: FakeStore::default(),
            erp: FakeErp::with_products(&[
                "IPOD2008GREEN",
                "IPOD2008RED",
                "IPOD2008BLACK",
                "SHIPPING",
                "ROUNDING",
            ]),
        }
    }

    async fn deliver(&self, body: &str) -> Result<OrderOutcome, MessageFailure> {
        self.deliver_topic(OrderTopic::Create, body).await
    }

    async fn deliver_topic(
        &self,
        topic: OrderTopic,
        body: &str,
    ) -> Result<OrderOutcome, MessageFailure> {
        self.deliver_through(&self.store, topic, body, None).await
    }

    /// A delivery whose sync state is read through `state`, triggered at `triggered_at`.
    async fn deliver_through(
        &self,
        state: &dyn crate::ports::SyncStateStore,
        topic: OrderTopic,
        body: &str,
        triggered_at: Option<OffsetDateTime>,
    ) -> Result<OrderOutcome, MessageFailure> {
        let deps = OrderSyncDeps {
            config: &self.config,
            idempotency: &self.store,
            state,
            erp: &self.erp,
            stock: None,
            availability: None,
            archive: None,
        };
        let message = OrderMessage {
            channel: ChannelId::parse("uk-shop").unwrap_or_else(|e| panic!("{e}")),
            topic,
            body: body.as_bytes().to_vec(),
            triggered_at,
        };
        let now = OffsetDateTime::now_utc();
        sync_order(&deps, &message, now, now + Duration::seconds(60)).await
    }
}

#[tokio::test]
async fn an_order_becomes_one_confirmed_sale_and_a_redelivery_replays() {
    let world = World::new();
    let first = world.deliver(ORDER).await;
    assert!(
        matches!(first, Ok(OrderOutcome::Synced { created: true, .. })),
        "{first:?}"
    );
    let again = world.deliver(ORDER).await;
    assert!(
        matches!(again, Ok(OrderOutcome::Replayed { .. })),
        "{again:?}"
    );
    let sales = world.erp.sales();
    assert_eq!(sales.len(), 1);
    assert_eq!(sales[0].0, "uk-shop/450789469");
    assert_eq!(sales[0].1.state, ErpSaleState::Processing);
    let completed = world
        .store
        .completed
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].status, SyncStatus::Synced);
    assert_eq!(completed[0].erp_id, Some(sales[0].1.id));
}

#[tokio::test]
async fn an_unknown_sku_needs_attention_names_the_sku_and_writes_nothing() {
    let world = World::new();
    let body = ORDER.replace("IPOD2008RED", "IPOD-NOT-IN-ERP");
    let failure = world
        .deliver(&body)
        .await
        .err()
        .unwrap_or_else(|| panic!("expected a failure"));
    assert_eq!(failure.error.class, ErrorClass::Permanent);
    assert_eq!(failure.error.kind, "unknown_sku");
    assert!(failure.error.message.contains("IPOD-NOT-IN-ERP"));
    assert_eq!(world.erp.writes(), 0);
    let failures = world
        .store
        .failures
        .lock()
        .map(|f| f.clone())
        .unwrap_or_default();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].1, SyncStatus::NeedsAttention);
    // The claim was released: once the SKU exists, a redrive runs the order.
    assert!(
        world
            .store
            .records
            .lock()
            .map(|r| r.is_empty())
            .unwrap_or(false)
    );
}

#[tokio::test]
async fn a_sale_left_by_a_crash_is_found_by_reference_and_confirmed_not_recreated() {
    let world = World::new();
    // The crashed attempt created the sale (in draft) and died before anything else.
    let channel = &world.config.channels[0];
    let order = crate::channels::shopify::parse_order(&channel.id, ORDER.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let draft = crate::mapping::sale_draft(&order, channel, &world.config.erp)
        .unwrap_or_else(|e| panic!("{e}"));
    let products = world
        .erp
        .products_by_sku(&draft.skus())
        .await
        .unwrap_or_default();
    let left = world
        .erp
        .create_sale(&NewSale {
            draft: &draft,
            customer_id: 42,
            invoice_address_id: 420,
            shipment_address_id: 420,
            products: &products,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(left.state, ErpSaleState::Draft);
    let outcome = world.deliver(ORDER).await;
    assert!(
        matches!(
            outcome,
            Ok(OrderOutcome::Synced {
                erp_id: 1,
                created: false,
                ..
            })
        ),
        "{outcome:?}"
    );
    assert_eq!(world.erp.sales().len(), 1);
    assert_eq!(world.erp.sales()[0].1.state, ErpSaleState::Processing);
}

#[tokio::test]
async fn a_claim_held_by_another_worker_is_in_flight_and_not_recorded_as_a_failure() {
    // The order's claim key, as a first delivery makes it.
    let key = {
        let first = World::new();
        assert!(first.deliver(ORDER).await.is_ok());
        let keys: Vec<String> = first
            .store
            .records
            .lock()
            .map(|r| r.keys().cloned().collect())
            .unwrap_or_default();
        assert_eq!(keys.len(), 1, "{keys:?}");
        IdempotencyKey::from_stored(keys[0].clone())
    };
    let world = World::new();
    let claimed = world
        .store
        .claim(&key, &PayloadHash::of(&"other"), OffsetDateTime::now_utc())
        .await;
    assert!(matches!(claimed, Ok(Claim::Start(_))), "{claimed:?}");
    let failure = world.deliver(ORDER).await.err().map(|f| f.error.class);
    assert_eq!(failure, Some(ErrorClass::InFlight));
    assert!(
        world
            .store
            .failures
            .lock()
            .map(|f| f.is_empty())
            .unwrap_or(false)
    );
    assert!(world.erp.sales().is_empty());
}

#[tokio::test]
async fn an_existing_customer_is_matched_on_normalised_email_and_its_address_reused() {
    let world = World::new();
    let us = |s: &str| CountryCode::parse(s).unwrap_or_else(|e| panic!("{e}"));
    if let Ok(mut customers) = world.erp.customers.lock() {
        customers.push((
            Email::parse("Bob.Norman@Mail.Example.com").ok(),
            ErpCustomer {
                id: 42,
                name: Some("Bob Norman".to_owned()),
                addresses: vec![ErpAddress {
                    id: 420,
                    street: Some("Chestnut  Street 92".to_owned()),
                    postal_code: Some("40202".to_owned()),
                    city: Some("louisville".to_owned()),
                    country: Some(us("US")),
                }],
            },
        ));
    }
    let outcome = world.deliver(ORDER).await;
    assert!(
        matches!(outcome, Ok(OrderOutcome::Synced { .. })),
        "{outcome:?}"
    );
    // One write: the sale. No new customer, no new address.
    assert_eq!(world.erp.writes(), 1);
}

#[tokio::test]
async fn shadow_mode_records_the_request_and_writes_nothing_to_the_erp() {
    let mut world = World::new();
    world.config.channels[0].mode = Mode::Shadow;
    let outcome = world.deliver(ORDER).await;
    match outcome {
        Ok(OrderOutcome::Shadow { request }) => assert_eq!(request.reference, "uk-shop/450789469"),
        other => panic!("expected shadow, got {other:?}"),
    }
    assert_eq!(world.erp.writes(), 0);
    let completed = world
        .store
        .completed
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default();
    assert_eq!(completed[0].status, SyncStatus::Shadow);
}

use crate::model::ids::CountryCode;

/// A line's quantity after an edit, as Shopify reports it (current_quantity).
fn set_quantity(order: &mut serde_json::Value, line: usize, quantity: u32) {
    order["line_items"][line]["quantity"] = quantity.into();
    order["line_items"][line]["current_quantity"] = quantity.into();
}

/// The documented order at another version, changed by `edit`.
fn version_of(updated_at: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut order: serde_json::Value = serde_json::from_str(ORDER).unwrap_or_default();
    order["updated_at"] = serde_json::json!(updated_at);
    edit(&mut order);
    order.to_string()
}

/// The units of the documented order's first line the fake ERP holds.
fn green_units(world: &World) -> rust_decimal::Decimal {
    let lines = world
        .erp
        .lines
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    lines
        .values()
        .flatten()
        .filter(|l| l.sku.as_ref().map(Sku::as_str) == Some("IPOD2008GREEN"))
        .map(|l| l.quantity)
        .sum()
}

#[tokio::test]
async fn a_lost_create_that_commits_late_leaves_one_sale_not_two() {
    let world = World::new();
    // The first attempt's create reached the ERP, but its answer was lost: from the flow's
    // side the create failed, and the retry's look-up ran before the ERP committed it.
    world.erp.lose_next_create_answer();
    assert!(world.deliver(ORDER).await.is_err());
    world.erp.hide_sales_from_next_lookup();
    let outcome = world.deliver(ORDER).await;
    assert!(
        matches!(outcome, Ok(OrderOutcome::Synced { .. })),
        "{outcome:?}"
    );
    let sales = world.erp.sales();
    assert_eq!(sales.len(), 1, "the younger draft was deleted: {sales:?}");
    assert_eq!(sales[0].1.state, ErpSaleState::Processing);
}

#[tokio::test]
async fn an_update_whose_new_sale_loses_to_the_creates_brings_that_sale_to_its_version() {
    let world = World::new();
    let create = version_of("2026-11-29T10:00:00Z", |_| {});
    let edit = version_of("2026-11-29T10:05:00Z", |o| set_quantity(o, 0, 2));
    let Ok(OrderOutcome::Synced { erp_id, .. }) = world.deliver(&create).await else {
        panic!("expected the create to sync");
    };
    // The update was attempted alongside the create: its look-up ran before the create's
    // sale committed, so it made a sale of its own; the create's, further along, is kept.
    world.erp.hide_sales_from_next_lookup();
    let outcome = world.deliver_topic(OrderTopic::Updated, &edit).await;
    match outcome {
        Ok(OrderOutcome::Amended {
            erp_id: amended,
            changes,
            ..
        }) => {
            assert_eq!(amended, erp_id, "the create's sale is the one kept");
            assert_eq!(
                changes,
                vec!["IPOD2008GREEN: 1 x 195.66 -> 2 x 197.33".to_owned()]
            );
        }
        other => panic!("expected the kept sale amended to the update, got {other:?}"),
    }
    let sales = world.erp.sales();
    assert_eq!(
        sales.len(),
        1,
        "the update's own draft was deleted: {sales:?}"
    );
    assert_eq!(sales[0].1.id, erp_id);
}

impl World {
    /// A delivery whose sync state was read before the store changed (`seen`): an attempt
    /// that overlapped a newer version's.
    async fn deliver_having_read(
        &self,
        seen: Option<SyncState>,
        topic: OrderTopic,
        body: &str,
    ) -> Result<OrderOutcome, MessageFailure> {
        let channel = ChannelId::parse("uk-shop").unwrap_or_else(|e| panic!("{e}"));
        let entity = EntityRef::order(&channel, "450789469");
        let states = crate::ports::PrefetchedStates::new(
            &self.store,
            std::collections::HashMap::from([(entity, seen)]),
        );
        self.deliver_through(&states, topic, body, None).await
    }

    fn order_state(&self) -> Option<SyncState> {
        let channel = ChannelId::parse("uk-shop").unwrap_or_else(|e| panic!("{e}"));
        let entity = EntityRef::order(&channel, "450789469");
        self.store
            .states
            .lock()
            .ok()
            .and_then(|states| states.get(&entity).cloned())
    }
}

#[tokio::test]
async fn a_failure_of_an_older_version_never_moves_the_state_of_a_newer_one_back() {
    let world = World::new();
    let update = version_of("2026-11-29T15:10:00Z", |o| set_quantity(o, 1, 2));
    let create = version_of("2026-11-29T10:05:00-05:00", |o| {
        o["line_items"][2]["sku"] = serde_json::json!("IPOD-NOT-IN-ERP");
    });
    assert!(matches!(
        world.deliver_topic(OrderTopic::Updated, &update).await,
        Ok(OrderOutcome::Synced { created: true, .. })
    ));
    // The create's attempt read the state before the update committed, then failed.
    let failed = world
        .deliver_having_read(None, OrderTopic::Create, &create)
        .await;
    let failure = failed.err().unwrap_or_else(|| panic!("the create fails"));
    // The version is the second of its `updated_at` (told apart within it: payload_version).
    assert_eq!(
        failure.version.map(OffsetDateTime::unix_timestamp),
        Some(time::macros::datetime!(2026-11-29 15:05 UTC).unix_timestamp())
    );
    let state = world.order_state().unwrap_or_else(|| panic!("no state"));
    assert_eq!(state.status, SyncStatus::Synced, "{state:?}");
    assert_eq!(
        state.version.map(OffsetDateTime::unix_timestamp),
        Some(time::macros::datetime!(2026-11-29 15:10 UTC).unix_timestamp())
    );
    assert_eq!(state.last_error, None);
}

#[tokio::test]
async fn a_replay_of_an_applied_version_restores_a_state_left_behind() {
    let world = World::new();
    assert!(matches!(
        world.deliver(ORDER).await,
        Ok(OrderOutcome::Synced { .. })
    ));
    let synced = world.order_state().unwrap_or_else(|| panic!("no state"));
    // A failure written without a version (as an older release did) left it behind.
    let error = crate::SyncError::retryable("erp_unavailable", "injected");
    let entity = synced.entity.clone();
    assert!(
        world
            .store
            .record_failure(
                &entity,
                SyncStatus::Retrying,
                &crate::model::state::ErrorReport::new(&error, OffsetDateTime::now_utc()),
                None,
            )
            .await
            .is_ok()
    );
    assert_eq!(
        world.order_state().map(|s| s.status),
        Some(SyncStatus::Retrying)
    );
    let replayed = world.deliver(ORDER).await;
    assert!(
        matches!(replayed, Ok(OrderOutcome::Replayed { .. })),
        "{replayed:?}"
    );
    let restored = world.order_state().unwrap_or_else(|| panic!("no state"));
    assert_eq!(restored.status, SyncStatus::Synced);
    assert_eq!(restored.version, synced.version);
    assert_eq!(restored.erp_id, synced.erp_id);
}

#[tokio::test]
async fn a_replay_of_an_older_version_never_hides_a_newer_one_that_is_parked() {
    let world = World::new();
    let first = version_of("2026-11-29T10:00:00Z", |_| {});
    let parked = version_of("2026-11-29T10:05:00Z", |o| {
        o["line_items"][2]["sku"] = serde_json::json!("IPOD-NOT-IN-ERP");
    });
    assert!(matches!(
        world.deliver(&first).await,
        Ok(OrderOutcome::Synced { .. })
    ));
    assert!(
        world
            .deliver_topic(OrderTopic::Updated, &parked)
            .await
            .is_err()
    );
    assert_eq!(
        world.order_state().map(|s| s.status),
        Some(SyncStatus::NeedsAttention)
    );
    // Shopify delivers the first version again (or a person replays it).
    assert!(matches!(
        world.deliver(&first).await,
        Ok(OrderOutcome::Replayed { .. })
    ));
    assert_eq!(
        world.order_state().map(|s| s.status),
        Some(SyncStatus::NeedsAttention),
        "the parked version still needs a person"
    );
}

#[tokio::test]
async fn an_older_version_applied_over_a_newer_one_needs_a_person() {
    let world = World::new();
    let newer = version_of("2026-11-29T15:10:00Z", |o| set_quantity(o, 1, 2));
    let older = version_of("2026-11-29T15:05:00Z", |_| {});
    assert!(matches!(
        world.deliver_topic(OrderTopic::Updated, &newer).await,
        Ok(OrderOutcome::Synced { .. })
    ));
    // An attempt at the older version that read the state before the newer one committed
    // (two attempts overlapping) amends the sale back.
    let late = world
        .deliver_having_read(None, OrderTopic::Create, &older)
        .await;
    assert!(matches!(late, Ok(OrderOutcome::Amended { .. })), "{late:?}");
    let state = world.order_state().unwrap_or_else(|| panic!("no state"));
    assert_eq!(state.status, SyncStatus::NeedsAttention);
    assert_eq!(
        state.last_error.map(|e| e.kind),
        Some("superseded_while_applied".to_owned())
    );
    assert_eq!(
        state.version.map(OffsetDateTime::unix_timestamp),
        Some(time::macros::datetime!(2026-11-29 15:10 UTC).unix_timestamp())
    );
}

/// What order-sync records of each refund for return-sync: a refund's split, once recorded,
/// stays (return-sync may have credited by it; a fulfilment cancelled since must not move a
/// credited unit off the sale too), and an outcome that left the sale alone (the ERP owns
/// orders) took nothing off it, so every unit is credited.
#[test]
fn a_refund_s_split_stays_as_recorded_and_a_sale_left_alone_lost_nothing() {
    let channel = ChannelId::parse("uk-shop").unwrap_or_else(|e| panic!("{e}"));
    let mut order = crate::channels::shopify::parse_order(&channel, ORDER.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let lines = |units: &[(&str, u32)]| -> std::collections::BTreeMap<String, u32> {
        units.iter().map(|(l, u)| ((*l).to_owned(), *u)).collect()
    };
    order.refunded_before_fulfilment = [
        ("r1".to_owned(), lines(&[("l1", 1)])),
        ("r2".to_owned(), lines(&[("l2", 2)])),
    ]
    .into();
    let current = SyncState {
        entity: EntityRef::order(&channel, "450789469"),
        status: SyncStatus::Synced,
        erp_id: Some(1),
        erp_number: None,
        version: None,
        note: None,
        attempts: 0,
        last_error: None,
        updated_at: OffsetDateTime::UNIX_EPOCH,
        basis: Some(crate::model::state::OrderBasis {
            taxes_included: false,
            refunded_before_fulfilment: Some([("r1".to_owned(), lines(&[]))].into()),
            booked: None,
        }),
    };
    let amended = OrderOutcome::Amended {
        erp_id: 1,
        erp_number: None,
        changes: Vec::new(),
    };
    let split = refund_split(&order, &amended, Some(&current));
    assert_eq!(split.get("r1"), Some(&lines(&[])), "r1 stays as recorded");
    assert_eq!(split.get("r2"), Some(&lines(&[("l2", 2)])));

    let skipped = OrderOutcome::Skipped {
        reason: "ownership".to_owned(),
    };
    let split = refund_split(&order, &skipped, None);
    assert!(
        split.values().all(|taken| taken.is_empty()) && split.len() == 2,
        "{split:?}"
    );
}

/// A message parked without being processed (held back behind a down ERP) records the
/// version it carries, read the way its sync would record it, so an older version applied
/// later cannot clear the failure (the outage chaos run met it: the later version parked, the
/// earlier one booked, and the order no longer among the exceptions).
#[tokio::test]
async fn a_message_s_version_read_without_processing_is_the_one_its_sync_records() {
    let world = World::new();
    let triggered_at = Some(time::macros::datetime!(2026-11-29 15:05:00.6 UTC));
    let message = OrderMessage {
        channel: ChannelId::parse("uk-shop").unwrap_or_else(|e| panic!("{e}")),
        topic: OrderTopic::Create,
        body: ORDER.as_bytes().to_vec(),
        triggered_at,
    };
    let read = message.version_in(&world.config);
    let synced = world
        .deliver_through(&world.store, OrderTopic::Create, ORDER, triggered_at)
        .await;
    assert!(synced.is_ok(), "{synced:?}");
    let recorded = world
        .store
        .completed
        .lock()
        .map(|c| c.iter().map(|r| r.version).collect::<Vec<_>>())
        .unwrap_or_default();
    assert_eq!(recorded, [read]);
    assert!(read.is_some());
    // A channel the config does not serve, or a body that is no order: no version.
    let elsewhere = OrderMessage {
        channel: ChannelId::parse("no-such-shop").unwrap_or_else(|e| panic!("{e}")),
        ..message
    };
    assert_eq!(elsewhere.version_in(&world.config), None);
    let garbled = OrderMessage {
        channel: ChannelId::parse("uk-shop").unwrap_or_else(|e| panic!("{e}")),
        body: b"{}".to_vec(),
        ..elsewhere
    };
    assert_eq!(garbled.version_in(&world.config), None);
}
