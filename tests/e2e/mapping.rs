//! Mapping per channel and territory on the real ERP: bundles, delivery methods, taxes,
//! tax-inclusive prices, and what happens when something is not mapped.

use erpsync_aws::sqs::attr;
use erpsync_core::model::state::SyncStatus;
use erpsync_e2e::{World, attribute, decimal, fresh_order, parked_reasons};
use serde_json::{Value, json};

fn ship_to(order: &mut Value, country: &str, zip: &str, city: &str) {
    for address in ["billing_address", "shipping_address"] {
        order[address]["country_code"] = country.into();
        order[address]["zip"] = zip.into();
        order[address]["city"] = city.into();
        order[address]["address1"] = "1 High Street".into();
    }
    let email = format!("{}.{}@example.com", country.to_lowercase(), order["id"]);
    order["email"] = email.clone().into();
    order["customer"]["email"] = email.into();
}

fn taxes_of(sale: &Value, sku: &str) -> Vec<String> {
    sale["lines"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|l| l["product"]["code"] == sku)
        .flat_map(|l| l["taxes"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn a_uk_order_in_gbp_with_vat_inclusive_prices_reaches_the_erp_net_with_uk_vat() {
    let world = World::start().await;
    let (mut order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    ship_to(&mut order, "GB", "SW1Y 4JH", "London");
    order["currency"] = "GBP".into();
    order["taxes_included"] = true.into();
    order["line_items"] = json!([{
        "id": 1, "sku": "IPOD2008RED", "title": "iPod Nano red", "quantity": 2, "current_quantity": 2,
        "price": "120.00", "discount_allocations": [],
        "tax_lines": [{"title": "GB VAT", "rate": 0.2, "price": "40.00"}]
    }]);
    order["shipping_lines"] = json!([{
        "id": 2, "code": "Express", "title": "Express", "price": "6.00", "discount_allocations": [],
        "tax_lines": [{"title": "GB VAT", "rate": 0.2, "price": "1.00"}]
    }]);
    world
        .deliver("uk-shop", "orders/create", "wh-uk", &order)
        .await;

    let sales = world.erp_sales(&format!("uk-shop/{id}")).await;
    assert_eq!(sales.len(), 1, "{:?}", parked_reasons(&world).await);
    let sale = &sales[0];
    assert_eq!(sale["currency"]["code"], "GBP");
    assert_eq!(sale["carrier"]["party"]["name"], "DHL Express");
    // 2 x 120.00 incl. VAT is 200.00 net; 6.00 shipping incl. VAT is 5.00 net.
    assert_eq!(decimal(&sale["untaxed_amount"]), "205.00");
    assert_eq!(decimal(&sale["tax_amount"]), "41.00");
    assert_eq!(
        decimal(&sale["total_amount"]),
        "246.00",
        "what the customer paid"
    );
    assert_eq!(taxes_of(sale, "IPOD2008RED"), vec!["UK VAT 20%".to_owned()]);
}

#[tokio::test]
async fn an_eu_order_in_eur_gets_the_destinations_tax_and_its_carrier() {
    let world = World::start().await;
    let (mut order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    ship_to(&mut order, "DE", "10119", "Berlin");
    order["currency"] = "EUR".into();
    for line in order["line_items"].as_array_mut().into_iter().flatten() {
        line["tax_lines"] = json!([{"title": "MwSt", "rate": 0.19, "price": "37.81"}]);
    }
    order["shipping_lines"][0]["code"] = "DHL Paket".into();
    order["shipping_lines"][0]["title"] = "DHL Paket".into();
    world
        .deliver("eu-shop", "orders/create", "wh-eu", &order)
        .await;

    let sales = world.erp_sales(&format!("eu-shop/{id}")).await;
    assert_eq!(sales.len(), 1, "{:?}", parked_reasons(&world).await);
    assert_eq!(sales[0]["currency"]["code"], "EUR");
    assert_eq!(sales[0]["carrier"]["party"]["name"], "DHL Express");
    assert_eq!(
        taxes_of(&sales[0], "IPOD2008RED"),
        vec!["DE USt 19%".to_owned()]
    );
    assert_eq!(decimal(&sales[0]["tax_amount"]), "111.53", "19 % of 587.00");
}

#[tokio::test]
async fn a_bundle_becomes_its_components_with_the_total_kept_to_the_penny() {
    let world = World::start().await;
    let (mut order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    order["line_items"] = json!([{
        "id": 1, "sku": "IPOD-TRIO", "title": "iPod trio", "quantity": 3, "current_quantity": 3,
        "price": "99.99", "discount_allocations": [{"amount": "1.00"}],
        "tax_lines": [{"title": "State Tax", "rate": 0.06, "price": "17.94"}]
    }]);
    world
        .deliver("uk-shop", "orders/create", "wh-bundle", &order)
        .await;

    let sales = world.erp_sales(&format!("uk-shop/{id}")).await;
    assert_eq!(sales.len(), 1, "{:?}", parked_reasons(&world).await);
    let sale = &sales[0];
    assert_eq!(
        decimal(&sale["untaxed_amount"]),
        "298.97",
        "3 x 99.99 less 1.00, to the penny"
    );
    let skus: Vec<_> = sale["lines"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|l| l["product"]["code"].as_str().map(str::to_owned))
        .collect();
    for component in ["IPOD2008GREEN", "IPOD2008RED", "WOOL-SOCKS"] {
        assert!(
            skus.iter().any(|s| s == component),
            "{component} in {skus:?}"
        );
    }
}

#[tokio::test]
async fn an_unmapped_delivery_method_or_tax_needs_attention_naming_it() {
    let world = World::start().await;
    let (mut pigeon, pigeon_id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    pigeon["shipping_lines"][0]["code"] = "Carrier Pigeon".into();
    pigeon["shipping_lines"][0]["title"] = "Carrier Pigeon".into();
    world
        .deliver("uk-shop", "orders/create", "wh-pigeon", &pigeon)
        .await;
    let (mut untaxed, untaxed_id) =
        fresh_order("shopify-orders-create-multiline-discount-tax.json");
    ship_to(&mut untaxed, "FR", "75001", "Paris");
    world
        .deliver("uk-shop", "orders/create", "wh-fr", &untaxed)
        .await;

    let parked = world.dead_letters().await;
    let reason_for = |id: &str| {
        parked
            .iter()
            .find(|m| attribute(m, attr::ENTITY).ends_with(id))
            .map(|m| (attribute(m, attr::ERROR_KIND), attribute(m, attr::REASON)))
            .unwrap_or_default()
    };
    let (kind, reason) = reason_for(&pigeon_id);
    assert_eq!(kind, "unmapped_delivery_method");
    assert!(
        reason.contains("Carrier Pigeon") && reason.contains("uk-shop"),
        "{reason}"
    );
    let (kind, reason) = reason_for(&untaxed_id);
    assert_eq!(kind, "unmapped_tax");
    assert!(
        reason.contains("State Tax") && reason.contains("FR") && reason.contains("uk-shop"),
        "{reason}"
    );
    for id in [&pigeon_id, &untaxed_id] {
        assert_eq!(
            world.state("uk-shop", id).await.map(|s| s.status),
            Some(SyncStatus::NeedsAttention)
        );
        assert!(world.erp_sales(&format!("uk-shop/{id}")).await.is_empty());
    }
}

/// The same £2.49 with the rounding line: the ERP sale totals what the shop charged, and its
/// net is the shop's net less nothing but the penny Tryton's own tax takes.
#[tokio::test]
async fn a_tax_inclusive_order_totals_in_the_erp_what_the_shop_charged() {
    let world = World::start().await;
    let (mut order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    ship_to(&mut order, "GB", "SW1Y 4JH", "London");
    order["currency"] = "GBP".into();
    order["taxes_included"] = true.into();
    order["line_items"] = json!([{
        "id": 1, "sku": "IPOD2008RED", "title": "iPod red", "quantity": 1, "current_quantity": 1,
        "price": "2.49", "discount_allocations": [],
        "tax_lines": [{"title": "GB VAT", "rate": 0.2, "price": "0.42"}]
    }]);
    order["shipping_lines"][0]["price"] = "0.00".into();
    order["shipping_lines"][0]["tax_lines"] = json!([]);
    world
        .deliver("uk-shop", "orders/create", "wh-penny", &order)
        .await;
    let sales = world.erp_sales(&format!("uk-shop/{id}")).await;
    assert_eq!(sales.len(), 1, "{sales:?}");
    let totals = world
        .erp_search(
            "sale.sale",
            json!([["id", "=", sales[0]["id"]]]),
            &["total_amount", "untaxed_amount", "lines.product.code"],
        )
        .await
        .unwrap_or_default();
    assert_eq!(decimal(&totals[0]["total_amount"]), "2.49", "{totals:?}");
    assert_eq!(
        decimal(&totals[0]["untaxed_amount"]),
        "2.08",
        "2.07 + the 0.01 rounding line"
    );
}

/// A tip and a custom item (no SKU) on a shop order: each a line of its mapped service
/// product, and the ERP's untaxed total the shop's. They parked the order before.
#[tokio::test]
async fn a_tip_and_a_custom_item_reach_the_erp_as_their_mapped_products() {
    let world = World::start().await;
    let (mut order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let mut tip = order["line_items"][1].clone();
    tip["id"] = json!(9001);
    tip["sku"] = Value::Null;
    tip["title"] = json!("Tip");
    tip["price"] = json!("5.00");
    tip["quantity"] = json!(1);
    tip["current_quantity"] = json!(1);
    tip["tip_payment_gateway"] = json!("shopify_payments");
    tip["discount_allocations"] = json!([]);
    tip["tax_lines"] = json!([]);
    let mut custom = tip.clone();
    custom["id"] = json!(9002);
    custom["title"] = json!("Engraving");
    custom["price"] = json!("12.00");
    custom["tip_payment_gateway"] = Value::Null;
    if let Some(lines) = order["line_items"].as_array_mut() {
        lines.extend([tip, custom]);
    }
    world
        .deliver("uk-shop", "orders/create", "wh-charges", &order)
        .await;
    let sales = world.erp_sales(&format!("uk-shop/{id}")).await;
    assert_eq!(sales.len(), 1, "{:?}", world.dead_letters().await);
    let sale = &sales[0];
    let codes: Vec<&str> = sale["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l["product"]["code"].as_str())
        .collect();
    assert!(
        codes.contains(&"TIP") && codes.contains(&"CUSTOM-ITEM"),
        "{codes:?}"
    );
    // The documented order's 587.00 net, and the 17.00 of charges.
    assert_eq!(decimal(&sale["untaxed_amount"]), "604.00");
}
