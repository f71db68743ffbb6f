//! The Shopify connector against the simulated Admin API: catalogue-wide reads as bulk
//! operations (every variant and location, however many), targeted reads paged within the
//! single-query limit, and the bulk operations' failures.

use std::collections::BTreeSet;

use erpsync_connectors::shopify::ShopifyAdmin;
use erpsync_core::ErrorClass;
use erpsync_core::model::ids::Sku;
use erpsync_core::ports::{
    ChannelFulfilment, ChannelInventory, ChannelPrices, FulfilLine, Tracking,
};
use sandbox::bulk::BulkErrorCode;
use sandbox::shopify::{Location, Product, Variant};
use sandbox::{Plan, Sandbox, ShopSetup};
use secrecy::SecretString;
use serde_json::json;

const SHOP: &str = "big.myshopify.com";

/// One product of `variants` variants stocked at `locations` locations (more than one page
/// of each for the targeted reads).
fn big_shop(variants: usize, locations: usize) -> ShopSetup {
    ShopSetup {
        domain: SHOP.to_owned(),
        access_token: format!("shpat_{SHOP}"),
        products: vec![Product {
            id: "gid://shopify/Product/1".to_owned(),
            title: "Many".to_owned(),
            variants: (0..variants)
                .map(|n| Variant {
                    id: format!("gid://shopify/ProductVariant/{n}"),
                    sku: format!("SKU-{n:04}"),
                    price: "1.00".to_owned(),
                    compare_at_price: None,
                    inventory_item_id: format!("gid://shopify/InventoryItem/{n}"),
                })
                .collect(),
        }],
        locations: (0..locations)
            .map(|n| Location {
                id: format!("gid://shopify/Location/{n}"),
                name: format!("L{n}"),
            })
            .collect(),
        maximum_available: Plan::Standard.bucket_size(),
        restore_rate: Plan::Standard.restore_rate(),
    }
}

async fn start(variants: usize, locations: usize) -> (Sandbox, ShopifyAdmin) {
    let sandbox = Sandbox::start("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sandbox.shops.add(big_shop(variants, locations));
    let shop = sandbox.shops.get(SHOP).unwrap_or_else(|| panic!("no shop"));
    for n in 0..variants {
        for l in 0..locations {
            shop.set_available(
                &format!("SKU-{n:04}"),
                &format!("gid://shopify/Location/{l}"),
                (n + l) as i64,
            );
        }
    }
    let admin = ShopifyAdmin::new(
        &sandbox.admin_url(SHOP),
        "2026-07",
        SecretString::from(format!("shpat_{SHOP}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    (sandbox, admin)
}

#[tokio::test]
async fn the_full_reads_see_every_variant_and_every_location() {
    // 150 variants on one product (over the 100 the old read stopped at), 7 locations.
    let (_sandbox, admin) = start(150, 7).await;
    let items = admin.items().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(items.len(), 150);
    assert!(items.iter().all(|i| i.levels.len() == 7));
    let last = items
        .iter()
        .find(|i| i.sku.as_str() == "SKU-0149")
        .unwrap_or_else(|| panic!("no SKU-0149"));
    assert_eq!(last.levels.get("gid://shopify/Location/6"), Some(&155));
    let variants = admin.variants().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(variants.len(), 150);
}

#[tokio::test]
async fn a_targeted_read_pages_each_items_levels_past_the_first_five() {
    let (_sandbox, admin) = start(60, 12).await;
    let wanted: Vec<Sku> = (0..60)
        .map(|n| Sku::parse(&format!("SKU-{n:04}")).unwrap_or_else(|e| panic!("{e}")))
        .collect();
    let items = admin
        .items_with_skus(&wanted)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let skus: BTreeSet<&str> = items.iter().map(|i| i.sku.as_str()).collect();
    assert_eq!(skus.len(), 60);
    assert!(items.iter().all(|i| i.levels.len() == 12), "every location");
}

#[tokio::test]
async fn a_failed_or_expired_bulk_operation_is_retryable_and_named() {
    let (sandbox, admin) = start(3, 1).await;
    let shop = sandbox.shops.get(SHOP).unwrap_or_else(|| panic!("no shop"));
    shop.bulk_faults(|f| f.fail_next = Some(BulkErrorCode::InternalServerError));
    let failed = admin
        .items()
        .await
        .err()
        .unwrap_or_else(|| panic!("the read should fail"));
    assert_eq!(failed.class, ErrorClass::Retryable, "{failed}");
    let message = failed.to_string();
    assert!(
        message.contains("gid://shopify/BulkOperation/1")
            && message.contains("INTERNAL_SERVER_ERROR"),
        "{message}"
    );
    shop.bulk_faults(|f| f.expire_next = true);
    let expired = admin
        .variants()
        .await
        .err()
        .unwrap_or_else(|| panic!("the read should fail"));
    assert_eq!(expired.class, ErrorClass::Retryable, "{expired}");
    assert!(expired.to_string().contains("EXPIRED"), "{expired}");
    assert_eq!(
        admin
            .items()
            .await
            .map(|i| i.len())
            .unwrap_or_else(|e| panic!("{e}")),
        3,
        "the next run reads"
    );
}

#[tokio::test]
async fn a_full_read_waits_for_a_slot_while_the_shop_runs_five_bulk_operations() {
    let (sandbox, admin) = start(3, 1).await;
    let shop = sandbox.shops.get(SHOP).unwrap_or_else(|| panic!("no shop"));
    shop.bulk_faults(|f| f.hold = true);
    let http = reqwest::Client::new();
    for _ in 0..5 {
        http.post(format!("{}/admin/api/2026-07/graphql.json", sandbox.admin_url(SHOP)))
            .header("X-Shopify-Access-Token", format!("shpat_{SHOP}"))
            .json(&json!({"query": "mutation { bulkOperationRunQuery(query: \"{ products { edges { node { id } } } }\") { userErrors { code } } }"}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let release = {
        let shop = shop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(800)).await;
            shop.bulk_faults(|f| f.hold = false);
        })
    };
    let items = admin.items().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        items.len(),
        3,
        "the run waited for a slot instead of failing"
    );
    release.await.unwrap_or_else(|e| panic!("{e}"));
}

#[tokio::test]
async fn an_orders_fulfilment_lines_and_fulfilments_past_their_first_page_are_all_read() {
    let (sandbox, admin) = start(1, 1).await;
    let shop = sandbox.shops.get(SHOP).unwrap_or_else(|| panic!("no shop"));
    let lines: Vec<serde_json::Value> = (0..130)
        .map(|n| json!({"id": 1000 + n, "sku": format!("SKU-{n:04}"), "quantity": 1, "requires_shipping": true}))
        .collect();
    shop.place_order(
        json!({"id": 42, "name": "#42", "updated_at": "2026-11-29T10:00:00Z", "line_items": lines}),
    );
    let fulfilment = admin
        .fulfilment("42")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no order"));
    assert_eq!(fulfilment.lines.len(), 130);
    // 25 dispatches of one line each: more fulfilments than the first page holds.
    for line in fulfilment.lines.iter().take(25) {
        let number = format!(
            "TRACK{}",
            line.line_item.rsplit('/').next().unwrap_or_default()
        );
        admin
            .fulfil(
                &[FulfilLine {
                    fulfilment_order: line.fulfilment_order.clone(),
                    line_item: line.line_item.clone(),
                    quantity: 1,
                }],
                Some(&Tracking {
                    company: None,
                    number,
                    url: None,
                }),
            )
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
    let after = admin
        .fulfilment("42")
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("no order"));
    assert_eq!(
        after.tracking_numbers.len(),
        25,
        "every fulfilment's tracking"
    );
    assert_eq!(after.lines.iter().filter(|l| l.remaining == 0).count(), 25);
}
