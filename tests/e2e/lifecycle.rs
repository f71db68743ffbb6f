//! The order after its creation: edits, cancellations, and versions arriving out of order,
//! on the real Tryton with its sale amendments.

use erpsync_aws::sqs::attr;
use erpsync_core::model::state::SyncStatus;
use erpsync_e2e::{
    World, at_version, attribute, decimal, fresh_order, parked_reasons, set_quantity,
};
use serde_json::Value;

fn quantity_of(sale: &Value, sku: &str) -> f64 {
    sale["lines"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|l| l["product"]["code"] == sku)
        .map(|l| l["quantity"].as_f64().unwrap_or_default())
        .sum()
}

#[tokio::test]
async fn an_edit_before_dispatch_reaches_the_erp_sale() {
    let world = World::start().await;
    let (order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let reference = format!("uk-shop/{id}");
    world
        .deliver(
            "uk-shop",
            "orders/create",
            "wh-1",
            &at_version(&order, "2026-11-29T10:00:00Z"),
        )
        .await;
    let mut edited = at_version(&order, "2026-11-29T10:05:00Z");
    set_quantity(&mut edited, 1, 2);
    world
        .deliver("uk-shop", "orders/updated", "wh-2", &edited)
        .await;

    let sales = world.erp_sales(&reference).await;
    assert_eq!(sales.len(), 1);
    assert_eq!(quantity_of(&sales[0], "IPOD2008RED"), 2.0);
    // 199.00 + 2 x 199.00 + 199.00 less the 10.00 discount.
    assert_eq!(decimal(&sales[0]["untaxed_amount"]), "786.00");
    let state = world
        .state("uk-shop", &id)
        .await
        .unwrap_or_else(|| panic!("no state"));
    assert_eq!(state.status, SyncStatus::Synced);
    assert!(state.note.unwrap_or_default().contains("IPOD2008RED"));
}

#[tokio::test]
async fn an_edit_after_dispatch_needs_attention_and_leaves_the_erp_alone() {
    let world = World::start().await;
    let (order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let reference = format!("uk-shop/{id}");
    world
        .deliver(
            "uk-shop",
            "orders/create",
            "wh-1",
            &at_version(&order, "2026-11-29T10:00:00Z"),
        )
        .await;
    world.dispatch(&reference).await;
    let mut edited = at_version(&order, "2026-11-29T10:05:00Z");
    set_quantity(&mut edited, 1, 2);
    world
        .deliver("uk-shop", "orders/updated", "wh-2", &edited)
        .await;

    assert_eq!(
        quantity_of(&world.erp_sales(&reference).await[0], "IPOD2008RED"),
        1.0
    );
    let parked = world.dead_letters().await;
    assert_eq!(parked.len(), 1);
    assert_eq!(
        attribute(&parked[0], attr::ERROR_KIND),
        "changed_after_dispatch"
    );
    assert!(attribute(&parked[0], attr::REASON).contains("by hand"));
    assert_eq!(
        world.state("uk-shop", &id).await.map(|s| s.status),
        Some(SyncStatus::NeedsAttention)
    );
}

#[tokio::test]
async fn a_cancel_before_dispatch_withdraws_the_erp_sale() {
    let world = World::start().await;
    let (order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let reference = format!("uk-shop/{id}");
    world
        .deliver(
            "uk-shop",
            "orders/create",
            "wh-1",
            &at_version(&order, "2026-11-29T10:00:00Z"),
        )
        .await;
    let mut cancelled = at_version(&order, "2026-11-29T10:05:00Z");
    cancelled["cancelled_at"] = "2026-11-29T10:05:00Z".into();
    world
        .deliver("uk-shop", "orders/cancelled", "wh-2", &cancelled)
        .await;

    let sales = world.erp_sales(&reference).await;
    assert_eq!(sales.len(), 1);
    assert_eq!(
        decimal(&sales[0]["untaxed_amount"]),
        "0.00",
        "nothing left to ship or invoice"
    );
    let state = world
        .state("uk-shop", &id)
        .await
        .unwrap_or_else(|| panic!("no state"));
    assert_eq!(state.status, SyncStatus::Synced);
    assert!(state.note.unwrap_or_default().contains("cancelled"));
    assert!(world.dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_cancel_after_dispatch_needs_attention_for_a_return() {
    let world = World::start().await;
    let (order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let reference = format!("uk-shop/{id}");
    world
        .deliver(
            "uk-shop",
            "orders/create",
            "wh-1",
            &at_version(&order, "2026-11-29T10:00:00Z"),
        )
        .await;
    world.dispatch(&reference).await;
    let mut cancelled = at_version(&order, "2026-11-29T10:05:00Z");
    cancelled["cancelled_at"] = "2026-11-29T10:05:00Z".into();
    world
        .deliver("uk-shop", "orders/cancelled", "wh-2", &cancelled)
        .await;

    let parked = world.dead_letters().await;
    assert_eq!(parked.len(), 1);
    assert_eq!(
        attribute(&parked[0], attr::ERROR_KIND),
        "cancelled_after_dispatch"
    );
    assert!(attribute(&parked[0], attr::REASON).contains("return"));
    assert_eq!(
        world.state("uk-shop", &id).await.map(|s| s.status),
        Some(SyncStatus::NeedsAttention)
    );
    assert_eq!(
        decimal(&world.erp_sales(&reference).await[0]["untaxed_amount"]),
        "587.00"
    );
}

#[tokio::test]
async fn a_cancel_after_a_partial_dispatch_still_needs_attention() {
    let world = World::start().await;
    let (mut order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    set_quantity(&mut order, 1, 3);
    let reference = format!("uk-shop/{id}");
    world
        .deliver(
            "uk-shop",
            "orders/create",
            "wh-1",
            &at_version(&order, "2026-11-29T10:00:00Z"),
        )
        .await;
    // Two of the three red iPods leave; the third waits as Tryton's back order.
    world
        .dispatch_part(&reference, &[("IPOD2008RED", 2.0)], Some("TRACK-PARTIAL"))
        .await;
    let mut cancelled = at_version(&order, "2026-11-29T10:05:00Z");
    cancelled["cancelled_at"] = "2026-11-29T10:05:00Z".into();
    world
        .deliver("uk-shop", "orders/cancelled", "wh-2", &cancelled)
        .await;

    let parked = world.dead_letters().await;
    assert_eq!(parked.len(), 1, "{:?}", parked_reasons(&world).await);
    assert_eq!(
        attribute(&parked[0], attr::ERROR_KIND),
        "cancelled_after_dispatch"
    );
    assert_eq!(
        world.state("uk-shop", &id).await.map(|s| s.status),
        Some(SyncStatus::NeedsAttention)
    );
    let sale = &world.erp_sales(&reference).await[0];
    assert_ne!(
        sale["state"], "cancelled",
        "the ERP sale is left for a person"
    );
}

#[tokio::test]
async fn an_update_arriving_before_its_create_makes_one_sale_of_the_latest_version() {
    let world = World::start().await;
    let (order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let mut update = at_version(&order, "2026-11-29T10:05:00Z");
    set_quantity(&mut update, 1, 3);
    world
        .deliver("uk-shop", "orders/updated", "wh-2", &update)
        .await;
    world
        .deliver(
            "uk-shop",
            "orders/create",
            "wh-1",
            &at_version(&order, "2026-11-29T10:00:00Z"),
        )
        .await;

    let sales = world.erp_sales(&format!("uk-shop/{id}")).await;
    assert_eq!(sales.len(), 1);
    assert_eq!(
        quantity_of(&sales[0], "IPOD2008RED"),
        3.0,
        "the late create did not regress it"
    );
    assert!(world.dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_stale_update_after_a_newer_one_is_skipped() {
    let world = World::start().await;
    let (order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    world
        .deliver(
            "uk-shop",
            "orders/create",
            "wh-1",
            &at_version(&order, "2026-11-29T10:00:00Z"),
        )
        .await;
    let mut newer = at_version(&order, "2026-11-29T10:09:00Z");
    set_quantity(&mut newer, 1, 2);
    world
        .deliver("uk-shop", "orders/updated", "wh-3", &newer)
        .await;
    let mut older = at_version(&order, "2026-11-29T10:04:00Z");
    set_quantity(&mut older, 1, 5);
    world
        .deliver("uk-shop", "orders/updated", "wh-2", &older)
        .await;

    let sales = world.erp_sales(&format!("uk-shop/{id}")).await;
    assert_eq!(quantity_of(&sales[0], "IPOD2008RED"), 2.0);
    let state = world
        .state("uk-shop", &id)
        .await
        .unwrap_or_else(|| panic!("no state"));
    // The version is its `updated_at` second (told apart within it: payload_version).
    assert_eq!(
        state.version.map(time::OffsetDateTime::unix_timestamp),
        Some(time::macros::datetime!(2026-11-29 10:09 UTC).unix_timestamp())
    );
}

#[tokio::test]
async fn a_cancel_that_overtakes_the_create_ends_cancelled_and_nothing_reaches_the_erp() {
    let world = World::start().await;
    let (order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let mut cancelled = at_version(&order, "2026-11-29T10:05:00Z");
    cancelled["cancelled_at"] = "2026-11-29T10:05:00Z".into();
    world
        .deliver("uk-shop", "orders/cancelled", "wh-2", &cancelled)
        .await;
    world
        .deliver(
            "uk-shop",
            "orders/create",
            "wh-1",
            &at_version(&order, "2026-11-29T10:00:00Z"),
        )
        .await;

    assert!(world.erp_sales(&format!("uk-shop/{id}")).await.is_empty());
    let state = world
        .state("uk-shop", &id)
        .await
        .unwrap_or_else(|| panic!("no state"));
    assert!(
        state.note.unwrap_or_default().contains("cancelled"),
        "the state says why there is no sale"
    );
}
