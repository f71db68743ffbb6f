//! Go-live one channel at a time: off, shadow (dual running with a report), live.

use erpsync_core::config::Mode;
use erpsync_core::flows::shadow::MatchedBy;
use erpsync_core::model::state::SyncStatus;
use erpsync_e2e::{World, at_version, fresh_order};
use serde_json::json;

#[tokio::test]
async fn a_channel_switched_off_accepts_webhooks_and_records_them_as_skipped() {
    let world = World::start_configured(|config| config.channels[0].mode = Mode::Off).await;
    let (order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    world
        .deliver("uk-shop", "orders/create", "wh-off", &order)
        .await;
    let state = world
        .state("uk-shop", &id)
        .await
        .unwrap_or_else(|| panic!("no state"));
    assert_eq!(state.status, SyncStatus::Skipped);
    assert!(state.note.unwrap_or_default().contains("off"));
    assert!(world.erp_sales(&format!("uk-shop/{id}")).await.is_empty());
    assert!(world.dead_letters().await.is_empty());
}

#[tokio::test]
async fn a_shadow_channel_writes_nothing_and_its_report_finds_a_difference_in_the_hand_entered_sale()
 {
    let world = World::start_configured(|config| config.channels[0].mode = Mode::Shadow).await;
    let (order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let email = format!("shadow.{id}@example.com");
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut order = at_version(&order, &now);
    order["email"] = email.clone().into();
    order["customer"]["email"] = email.clone().into();
    world
        .deliver("uk-shop", "orders/create", "wh-shadow", &order)
        .await;
    let state = world
        .state("uk-shop", &id)
        .await
        .unwrap_or_else(|| panic!("no state"));
    assert_eq!(state.status, SyncStatus::Shadow);
    assert!(
        world.erp_sales(&format!("uk-shop/{id}")).await.is_empty(),
        "shadow mode writes nothing"
    );

    // During dual running a person keys the order into the ERP by hand, without the shop's
    // reference and with one quantity wrong.
    let countries = world
        .erp_search("country.country", json!([["code", "=", "US"]]), &["id"])
        .await
        .unwrap_or_default();
    let party = world
        .erp_create(
            "party.party",
            json!({"name": "Bob Norman", "contact_mechanisms": [["create", [{"type": "email", "value": email}]]],
                   "addresses": [["create", [{"street_unstructured": "Chestnut Street 92", "postal_code": "40202",
                   "city": "Louisville", "country": countries[0]["id"]}]]]}),
        )
        .await;
    let address = world
        .erp_search("party.address", json!([["party", "=", party]]), &["id"])
        .await
        .unwrap_or_default()[0]["id"]
        .clone();
    let products = world
        .erp_search(
            "product.product",
            json!([[
                "code",
                "in",
                ["IPOD2008GREEN", "IPOD2008RED", "IPOD2008BLACK"]
            ]]),
            &["code"],
        )
        .await
        .unwrap_or_default();
    let product = |code: &str| {
        products
            .iter()
            .find(|p| p["code"] == code)
            .map(|p| p["id"].clone())
            .unwrap_or_default()
    };
    let line = |code: &str, quantity: u32, price: &str| json!({"type": "line", "product": product(code), "unit": 1, "quantity": quantity, "unit_price": price});
    let sale = world
        .erp_create(
            "sale.sale",
            json!({"party": party, "invoice_address": address, "shipment_address": address, "currency": 1,
                   "warehouse": 5, "payment_term": 10, "shipment_cost_method": null,
                   "lines": [["create", [line("IPOD2008GREEN", 1, "195.66"), line("IPOD2008RED", 2, "195.67"),
                                         line("IPOD2008BLACK", 1, "195.67")]]]}),
        )
        .await;
    world.erp_action("sale.sale", sale, "quote").await;

    // `erpsync shadow report`: the operator's command, under the operator's role.
    let operator = world.store_of(erpsync_tools::roles::OPERATOR);
    let comparisons = erpsync_tools::shadow::report(&operator, world.review(), None)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mine = comparisons
        .iter()
        .find(|c| c.order_id == id)
        .unwrap_or_else(|| panic!("order not in the report"));
    let matched = mine
        .erp_sale
        .as_ref()
        .unwrap_or_else(|| panic!("no match: {mine:?}"));
    assert_eq!(matched.id, sale);
    assert_eq!(matched.matched_by, MatchedBy::CustomerDateAndLines);
    let red = mine
        .differences
        .iter()
        .find(|d| d.field == "lines[IPOD2008RED].quantity");
    assert_eq!(
        red.map(|d| (d.shadow.as_str(), d.erp.as_str())),
        Some(("1", "2")),
        "{:?}",
        mine.differences
    );
    assert!(erpsync_tools::shadow::render(&comparisons).contains("DIFFERENT"));
}
