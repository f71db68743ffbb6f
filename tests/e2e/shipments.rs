//! Dispatches and tracking close the loop: Tryton's shipments (done by its own workflow,
//! partial ones leaving Tryton's back order) become fulfilments in the Shopify sandbox;
//! EasyPost events signed by the courier simulator become fulfilment events. Each test has
//! a Tryton of its own: shipment-sync reads every shipment done since its cursor.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use erpsync_connectors::shopify::ShopifyAdmin;
use erpsync_core::model::ids::ChannelId;
use erpsync_core::model::state::{EntityRef, Flow, SyncStatus};
use erpsync_core::ports::SyncStateStore;
use erpsync_e2e::{Tryton, World, courier_request, fresh_order, set_quantity};
use sandbox::courier::{TrackerUpdate, tracker_updated};
use sandbox::{Sandbox, ShopSetup};
use secrecy::SecretString;
use serde_json::Value;

const UK: &str = "erpsync-uk.myshopify.com";
/// EasyPost signs with the NFKD form of the secret: one with an accent tests that.
const COURIER_SECRET: &str = "sécret-sandbox";

struct ShipWorld {
    world: World,
    tryton: Tryton,
    sandbox: Sandbox,
    deps: Arc<shipment_sync::Deps>,
    courier: courier_webhook::Deps,
}

impl ShipWorld {
    async fn start() -> Self {
        let built = World::builder()
            .own_tryton("ship")
            .shop(
                "uk-shop",
                ShopSetup::with_skus(
                    UK,
                    "gid://shopify/Location/1",
                    &["IPOD2008GREEN", "IPOD2008RED", "IPOD2008BLACK"],
                    2000.0,
                    1000.0,
                ),
            )
            .configure(|config| {
                if let Some(api) = config.channels[0].admin_api.as_mut() {
                    // A store down is a person's from its second failed run: no hour to wait.
                    api.down_alert_minutes = 0;
                }
            })
            .start()
            .await;
        let (world, tryton, sandbox) = built.parts();
        let admin = ShopifyAdmin::new(
            &sandbox.admin_url(UK),
            "2026-07",
            SecretString::from(format!("shpat_{UK}")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let deps = world.shipment_sync(
            &tryton.url,
            &tryton.api_key,
            world.config.erp.clone(),
            HashMap::from([("uk-shop".to_owned(), admin)]),
        );
        let courier = world.courier(COURIER_SECRET).await;
        Self {
            world,
            tryton,
            sandbox,
            deps,
            courier,
        }
    }

    /// An order placed in the shop and brought into the ERP by its webhook; its id.
    async fn order(&self, edit: impl FnOnce(&mut Value)) -> (String, Value) {
        let (mut order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
        edit(&mut order);
        self.shop().place_order(order.clone());
        self.world
            .deliver("uk-shop", "orders/create", &format!("wh-{id}"), &order)
            .await;
        (id, order)
    }

    fn shop(&self) -> Arc<sandbox::Shop> {
        self.sandbox
            .shops
            .get(UK)
            .unwrap_or_else(|| panic!("no sandbox shop"))
    }

    async fn ship(&self) -> erpsync_core::flows::fulfilment::run::ShipmentRun {
        shipment_sync::schedule_handler::handle(&self.deps, None).await
    }

    fn fulfilments(&self, order_id: &str) -> Vec<sandbox::fulfilment::Fulfillment> {
        self.shop()
            .fulfillments(order_id.parse().unwrap_or_default())
    }

    fn status(&self, order_id: &str) -> String {
        self.shop()
            .fulfillment_status(order_id.parse().unwrap_or_default())
            .unwrap_or_default()
    }

    /// The shipment-sync rows of an order's shipments (one per shipment).
    async fn shipment_states(&self, order_id: &str) -> Vec<erpsync_core::model::state::SyncState> {
        let prefix = format!("{order_id}/");
        // Read as the operator (a scan: the functions may not).
        self.world
            .store_of(erpsync_tools::roles::OPERATOR)
            .all_states()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .filter(|s| {
                s.entity.flow == Flow::ShipmentSync && s.entity.entity_id.starts_with(&prefix)
            })
            .collect()
    }

    async fn state(
        &self,
        flow: Flow,
        order_id: &str,
    ) -> Option<erpsync_core::model::state::SyncState> {
        let entity = EntityRef {
            flow,
            channel: ChannelId::parse("uk-shop").unwrap_or_else(|e| panic!("{e}")),
            entity_id: order_id.to_owned(),
        };
        self.world.orders.store.get(&entity).await.ok().flatten()
    }

    /// The courier simulator sends a signed (or forged) event to courier-webhook.
    async fn courier_event(&self, event_id: &str, update: &TrackerUpdate<'_>, secret: &str) -> i64 {
        let body = tracker_updated(event_id, update).to_string();
        courier_webhook::http_handler::handle(&self.courier, courier_request(&body, secret))
            .await
            .status_code
    }

    /// One round of the shipments queue's event source mapping; messages handed over.
    async fn poll_tracking(&self) -> usize {
        let esm = self.world.tracking_source(&self.deps);
        esm.poll_once(Duration::from_secs(1)).await.unwrap_or(0)
    }
}

fn update<'a>(tracking_code: &'a str, status: &'a str, message: &'a str) -> TrackerUpdate<'a> {
    TrackerUpdate {
        tracking_code,
        carrier: "RoyalMail",
        status,
        message,
        at: "2026-11-29T12:00:00Z",
    }
}

#[tokio::test]
async fn a_full_dispatch_with_tracking_is_one_fulfilment_and_a_rerun_duplicates_nothing() {
    let mut ship = ShipWorld::start().await;
    let (order_id, _) = ship.order(|_| {}).await;
    assert_eq!(ship.status(&order_id), "UNFULFILLED");
    ship.world
        .dispatch_part(&format!("uk-shop/{order_id}"), &[], Some("RM123456785GB"))
        .await;

    let run = ship.ship().await;
    assert_eq!((run.fulfilled, run.error.as_deref()), (1, None), "{run:?}");
    let fulfilments = ship.fulfilments(&order_id);
    assert_eq!(fulfilments.len(), 1);
    let tracking = &fulfilments[0].tracking[0];
    assert_eq!(tracking.number.as_deref(), Some("RM123456785GB"));
    // The order ships by Royal Mail ("Free Shipping" in the config): its name and page.
    assert_eq!(tracking.company.as_deref(), Some("Royal Mail"));
    assert_eq!(
        tracking.url.as_deref(),
        Some("https://www.royalmail.com/track-your-item#/tracking-results/RM123456785GB")
    );
    assert_eq!(
        fulfilments[0]
            .line_items
            .iter()
            .map(|(_, q)| q)
            .sum::<u32>(),
        1,
        "the documented order holds one red iPod still (the others were edited out)"
    );
    assert_eq!(ship.status(&order_id), "FULFILLED");

    // The next runs see the same shipment (the cursor's overlap): nothing is sent twice.
    let again = ship.ship().await;
    assert_eq!((again.fulfilled, again.already), (0, 1), "{again:?}");
    assert_eq!(ship.fulfilments(&order_id).len(), 1);
    let states = ship.shipment_states(&order_id).await;
    assert_eq!(
        states.iter().map(|s| s.status).collect::<Vec<_>>(),
        [SyncStatus::Synced],
        "one row for the one shipment"
    );
    ship.tryton.stop().await;
}

/// A store that fails every call past its `down_alert_minutes` (before: one shipment parked
/// an hour, each an exception of its own) is one exception, for the store; its shipments
/// wait, none is parked, and go through with the exception cleared on the first run it
/// answers.
#[tokio::test]
async fn a_store_failing_for_hours_is_one_exception_and_its_shipments_go_through_when_it_answers() {
    use erpsync_core::flows::fulfilment::run::store_entity;
    use erpsync_tools::ops;
    let mut ship = ShipWorld::start().await;
    let (first, _) = ship.order(|_| {}).await;
    let (second, _) = ship.order(|_| {}).await;
    for (order_id, tracking) in [(&first, "RM123456785GB"), (&second, "RM000000001GB")] {
        ship.world
            .dispatch_part(&format!("uk-shop/{order_id}"), &[], Some(tracking))
            .await;
    }
    // The store answers every call with a server error: the first run starts its downtime,
    // the next (past the channel's 0 minutes) makes it a person's, the ones after say nothing
    // new.
    if let Ok(mut faults) = ship.shop().faults.lock() {
        faults.server_errors = u32::MAX;
    }
    let first_run = ship.ship().await;
    assert!(
        first_run.fulfilled == 0
            && first_run.needs_attention.is_empty()
            && !first_run.held.is_empty(),
        "{first_run:?}"
    );
    let last = ship.ship().await;
    assert_eq!(last.needs_attention.len(), 1, "{last:?}");
    assert!(
        last.needs_attention[0].contains("uk-shop") && last.needs_attention[0].contains("HTTP 500"),
        "{last:?}"
    );
    let again = ship.ship().await;
    assert!(
        again.needs_attention.is_empty() && again.fulfilled == 0,
        "{again:?}"
    );
    // What the operator sees: the store, once; no shipment parked.
    let deployment = ship.world.operator();
    let exceptions = ops::exceptions(&deployment)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let channel = ChannelId::parse("uk-shop").unwrap_or_else(|e| panic!("{e}"));
    let store = store_entity(&channel).to_string();
    assert_eq!(
        exceptions
            .iter()
            .map(|e| e.entity.clone())
            .collect::<Vec<_>>(),
        [store],
        "{exceptions:?}"
    );
    assert!(ship.world.dead_letters().await.is_empty());

    // The store is back: both shipments go through on the next run, the exception clears.
    if let Ok(mut faults) = ship.shop().faults.lock() {
        faults.server_errors = 0;
    }
    let back = ship.ship().await;
    assert_eq!(back.fulfilled, 2, "{back:?}");
    for order_id in [&first, &second] {
        assert_eq!(ship.fulfilments(order_id).len(), 1);
    }
    let exceptions = ops::exceptions(&deployment)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(exceptions.is_empty(), "{exceptions:?}");
    ship.tryton.stop().await;
}

/// A shipment the shop refuses (the order is not in the store) is parked at once with its
/// reason; once the cause is fixed, a redrive fulfils it, once.
#[tokio::test]
async fn a_shipment_the_shop_refuses_is_parked_with_its_reason_and_a_redrive_fulfils_it() {
    use erpsync_tools::ops::{self, Selection};
    let mut ship = ShipWorld::start().await;
    // Its webhook came, but the store does not have the order (created in another store's
    // admin, say).
    let (order, order_id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    ship.world
        .deliver(
            "uk-shop",
            "orders/create",
            &format!("wh-{order_id}"),
            &order,
        )
        .await;
    ship.world
        .dispatch_part(&format!("uk-shop/{order_id}"), &[], Some("RM123456785GB"))
        .await;
    let run = ship.ship().await;
    assert_eq!(run.needs_attention.len(), 1, "{run:?}");
    assert!(run.needs_attention[0].contains(&order_id), "{run:?}");
    let states = ship.shipment_states(&order_id).await;
    assert_eq!(states.len(), 1, "{states:?}");
    assert_eq!(states[0].status, SyncStatus::NeedsAttention);
    // What the operator sees: the parked shipment with its reason, in the shipments' DLQ.
    let deployment = ship.world.operator();
    let letters = ops::dead_letters(&deployment, Some("shipment-sync"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].entity, states[0].entity.to_string());
    assert!(
        letters[0].reason.contains("does not have"),
        "{:?}",
        letters[0].reason
    );
    // Parked, it is not attempted again by the runs that re-read it.
    let after = ship.ship().await;
    assert_eq!(after.shipments, 0, "{after:?}");

    // The order is in the store now; the operator redrives: one fulfilment, with its tracking.
    ship.shop().place_order(order);
    let moved = ops::redrive(&deployment, Selection::All { flow: None }, &|_| {})
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(moved.len(), 1);
    assert_eq!(ship.poll_tracking().await, 1);
    let fulfilments = ship.fulfilments(&order_id);
    assert_eq!(fulfilments.len(), 1, "{fulfilments:?}");
    assert_eq!(
        fulfilments[0].tracking[0].number.as_deref(),
        Some("RM123456785GB")
    );
    let states = ship.shipment_states(&order_id).await;
    assert_eq!(states[0].status, SyncStatus::Synced, "{states:?}");
    assert!(ship.world.dead_letters().await.is_empty());
    // Later runs find it done.
    let again = ship.ship().await;
    assert_eq!(
        (again.fulfilled, again.needs_attention.len()),
        (0, 0),
        "{again:?}"
    );
    assert_eq!(ship.fulfilments(&order_id).len(), 1);
    ship.tryton.stop().await;
}

#[tokio::test]
async fn two_partial_dispatches_are_two_fulfilments_and_the_back_order_clears() {
    let mut ship = ShipWorld::start().await;
    // Three red iPods: two ship now, the third is Tryton's back order.
    let (order_id, _) = ship.order(|order| set_quantity(order, 1, 3)).await;
    let reference = format!("uk-shop/{order_id}");
    ship.world
        .dispatch_part(&reference, &[("IPOD2008RED", 2.0)], Some("TRACK-PART-1"))
        .await;
    let run = ship.ship().await;
    assert_eq!(run.fulfilled, 1, "{run:?}");
    assert_eq!(ship.status(&order_id), "PARTIALLY_FULFILLED");
    let order_state = ship
        .state(Flow::OrderSync, &order_id)
        .await
        .unwrap_or_else(|| panic!("no order state"));
    assert_eq!(
        order_state.status,
        SyncStatus::Backordered,
        "{order_state:?}"
    );
    let backordered = ship
        .world
        .store_of(erpsync_tools::roles::OPERATOR)
        .states_with_status(SyncStatus::Backordered)
        .await
        .unwrap_or_default();
    assert!(
        backordered.iter().any(|s| s.entity.entity_id == order_id),
        "listed as backordered"
    );

    ship.world
        .dispatch_part(&reference, &[], Some("TRACK-PART-2"))
        .await;
    let run = ship.ship().await;
    assert_eq!(run.fulfilled, 1, "{run:?}");
    let fulfilments = ship.fulfilments(&order_id);
    assert_eq!(fulfilments.len(), 2);
    let shipped: Vec<u32> = fulfilments
        .iter()
        .map(|f| f.line_items.iter().map(|(_, q)| q).sum())
        .collect();
    assert_eq!(shipped, [2, 1], "two of the reds, then the last one");
    assert_eq!(ship.status(&order_id), "FULFILLED");
    let order_state = ship
        .state(Flow::OrderSync, &order_id)
        .await
        .unwrap_or_else(|| panic!("no order state"));
    assert_eq!(order_state.status, SyncStatus::Synced, "{order_state:?}");
    assert!(
        order_state
            .note
            .unwrap_or_default()
            .contains("back order cleared")
    );
    ship.tryton.stop().await;
}

#[tokio::test]
async fn an_order_for_more_than_is_in_stock_is_taken_backordered_then_cleared() {
    let mut ship = ShipWorld::start().await;
    // 150 green iPods; the warehouse holds 100.
    let (order_id, _) = ship.order(|order| set_quantity(order, 0, 150)).await;
    let state = ship
        .state(Flow::OrderSync, &order_id)
        .await
        .unwrap_or_else(|| panic!("no order state"));
    assert_eq!(state.status, SyncStatus::Backordered, "{state:?}");
    assert!(
        state
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("IPOD2008GREEN short by 50"),
        "{state:?}"
    );
    assert!(state.erp_id.is_some(), "the ERP took the order");

    // Stock arrives; the warehouse ships everything.
    ship.world.count_stock("IPOD2008GREEN", 200).await;
    ship.world
        .dispatch_part(&format!("uk-shop/{order_id}"), &[], Some("TRACK-BIG"))
        .await;
    let run = ship.ship().await;
    assert_eq!(run.fulfilled, 1, "{run:?}");
    assert_eq!(ship.status(&order_id), "FULFILLED");
    let state = ship
        .state(Flow::OrderSync, &order_id)
        .await
        .unwrap_or_else(|| panic!("no order state"));
    assert_eq!(state.status, SyncStatus::Synced, "{state:?}");
    ship.tryton.stop().await;
}

#[tokio::test]
async fn courier_events_become_fulfilment_events_and_exceptions_need_a_person() {
    let mut ship = ShipWorld::start().await;
    let (order_id, _) = ship.order(|_| {}).await;
    ship.world
        .dispatch_part(&format!("uk-shop/{order_id}"), &[], Some("RM000000001GB"))
        .await;
    ship.ship().await;

    for (event, status, message) in [
        (
            "evt_transit",
            "in_transit",
            "Item received at the mail centre",
        ),
        ("evt_delivered", "delivered", "Delivered to the front door"),
    ] {
        let answer = ship
            .courier_event(
                event,
                &update("RM000000001GB", status, message),
                COURIER_SECRET,
            )
            .await;
        assert_eq!(answer, 200);
    }
    // A retried delivery of the same event: deduplicated.
    ship.courier_event(
        "evt_delivered",
        &update("RM000000001GB", "delivered", "Delivered to the front door"),
        COURIER_SECRET,
    )
    .await;
    while ship.poll_tracking().await > 0 {}
    let events: Vec<String> = ship.fulfilments(&order_id)[0]
        .events
        .iter()
        .map(|e| e.status.clone())
        .collect();
    assert_eq!(events, ["IN_TRANSIT", "DELIVERED"]);
    let state = ship
        .state(Flow::Tracking, &order_id)
        .await
        .unwrap_or_else(|| panic!("no tracking state"));
    assert_eq!(state.status, SyncStatus::Synced);

    // The parcel comes back: the shop hears of the failure and a person is asked to act.
    ship.courier_event(
        "evt_returned",
        &update("RM000000001GB", "return_to_sender", "Addressee gone away"),
        COURIER_SECRET,
    )
    .await;
    while ship.poll_tracking().await > 0 {}
    let state = ship
        .state(Flow::Tracking, &order_id)
        .await
        .unwrap_or_else(|| panic!("no tracking state"));
    assert_eq!(state.status, SyncStatus::NeedsAttention);
    assert!(
        state
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("Addressee gone away"),
        "{state:?}"
    );
    assert_eq!(
        ship.fulfilments(&order_id)[0]
            .events
            .last()
            .map(|e| e.status.as_str()),
        Some("FAILURE")
    );
    ship.tryton.stop().await;
}

#[tokio::test]
async fn a_courier_event_before_its_dispatch_synced_is_applied_once_it_has() {
    let mut ship = ShipWorld::start().await;
    let (order_id, _) = ship.order(|_| {}).await;
    ship.world
        .dispatch_part(&format!("uk-shop/{order_id}"), &[], Some("RM000000002GB"))
        .await;
    // The courier is faster than the next shipment-sync run.
    let answer = ship
        .courier_event(
            "evt_early",
            &update("RM000000002GB", "in_transit", "Collected"),
            COURIER_SECRET,
        )
        .await;
    assert_eq!(answer, 200);
    assert_eq!(ship.poll_tracking().await, 1);
    assert_eq!(
        ship.world.queue_depth("ShipmentsQueue").await,
        1,
        "kept for a retry, not lost"
    );

    ship.ship().await;
    // The retry comes back after its backoff (1-2 s in tests).
    let started = std::time::Instant::now();
    while ship.fulfilments(&order_id)[0].events.is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the early event was never applied"
        );
        ship.poll_tracking().await;
    }
    let events = &ship.fulfilments(&order_id)[0].events;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].status, "IN_TRANSIT");
    ship.tryton.stop().await;
}

#[tokio::test]
async fn a_forged_courier_signature_is_refused_and_nothing_is_queued() {
    let mut ship = ShipWorld::start().await;
    let answer = ship
        .courier_event(
            "evt_forged",
            &update("RM000000003GB", "delivered", "Delivered"),
            "not-the-secret",
        )
        .await;
    assert_eq!(answer, 401);
    // The secret as people type it composed (NFC) is the same secret to EasyPost.
    let composed = "s\u{e9}cret-sandbox";
    let answer = ship
        .courier_event(
            "evt_composed",
            &update("RM000000003GB", "delivered", "Delivered"),
            composed,
        )
        .await;
    assert_eq!(answer, 200);
    assert_eq!(ship.world.queue_depth("ShipmentsQueue").await, 1);
    ship.tryton.stop().await;
}
