//! The money corpus (issue 14): seeded, reproducible orders through the whole order path into
//! the real Tryton, each checked to the minor unit: the ERP sale's total (with its own taxes)
//! is what the shop charged, and nothing needs a person. GBP and EUR stores, tax-inclusive and
//! exclusive, 1-8 lines at random prices and quantities, line and shipping discounts, a
//! bundle, an alias and tips. `MONEY_ORDERS` (24 in make test; `make money N=1000`) and
//! `MONEY_SEED` (printed, so a failure replays exactly).
//!
//! Not yet in it: currencies of 0 and 3 decimals (Tryton's currencies need their ISO rounding
//! first; `erpsync audit` reports it), edits and refunds.

use erpsync_core::state::SyncStatus;
use erpsync_e2e::{World, decimal, fresh_order};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// One store of the example config as the corpus uses it.
struct Store {
    channel: &'static str,
    currency: &'static str,
    /// Destination country, its tax's title and rate in percent, and a postcode.
    country: &'static str,
    tax: &'static str,
    rate_percent: i64,
    zip: &'static str,
    /// SKUs it sells (aliases and bundles where it maps them).
    skus: &'static [&'static str],
    tips: bool,
}

const STORES: [Store; 3] = [
    Store {
        channel: "uk-shop",
        currency: "GBP",
        country: "GB",
        tax: "GB VAT",
        rate_percent: 20,
        zip: "SW1Y 4JH",
        skus: &[
            "IPOD2008GREEN",
            "IPOD2008RED",
            "IPOD-BLACK-LEGACY",
            "IPOD-TRIO",
            "WOOL-SOCKS",
        ],
        tips: true,
    },
    Store {
        channel: "eu-shop",
        currency: "EUR",
        country: "DE",
        tax: "MwSt",
        rate_percent: 19,
        zip: "10115",
        skus: &["IPOD2008RED", "IPOD2008BLACK"],
        tips: false,
    },
    Store {
        channel: "eu-shop",
        currency: "EUR",
        country: "FR",
        tax: "TVA",
        rate_percent: 20,
        zip: "75001",
        skus: &["IPOD2008RED", "IPOD2008BLACK"],
        tips: false,
    },
];

/// `cents` as the shops write money.
fn money(cents: i64) -> String {
    format!(
        "{}{}.{:02}",
        if cents < 0 { "-" } else { "" },
        cents.abs() / 100,
        cents.abs() % 100
    )
}

/// `value x numerator / denominator` to the cent, half away from zero (as shops round tax).
fn share(value: i64, numerator: i64, denominator: i64) -> i64 {
    let doubled = 2 * value * numerator;
    (doubled + denominator * doubled.signum()) / (2 * denominator)
}

/// The tax a shop charges on an amount: on top of it, or within it.
fn tax_of(amount: i64, rate_percent: i64, included: bool) -> i64 {
    if included {
        share(amount, rate_percent, 100 + rate_percent)
    } else {
        share(amount, rate_percent, 100)
    }
}

/// A random order for `store` and what the shop charged for it, in cents.
fn generate(rng: &mut StdRng, store: &Store) -> (Value, String, i64) {
    let (mut order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let included = rng.random_bool(0.5);
    for address in ["billing_address", "shipping_address"] {
        order[address]["country_code"] = json!(store.country);
        order[address]["zip"] = json!(store.zip);
    }
    let email = format!("money.{id}@example.com");
    order["email"] = json!(email);
    order["customer"]["email"] = json!(email);
    order["currency"] = json!(store.currency);
    order["taxes_included"] = json!(included);
    let mut charged = 0;
    let mut lines = Vec::new();
    for index in 0..rng.random_range(1..=8) {
        let sku = store.skus[rng.random_range(0..store.skus.len())];
        let quantity: i64 = rng.random_range(1..=4);
        let price: i64 = rng.random_range(1..=30_000);
        let gross = price * quantity;
        let discount = if rng.random_bool(0.3) {
            rng.random_range(0..=gross)
        } else {
            0
        };
        let tax = tax_of(gross - discount, store.rate_percent, included);
        charged += gross - discount + if included { 0 } else { tax };
        lines.push(json!({
            "id": 1000 + index, "sku": sku, "title": sku, "quantity": quantity,
            "current_quantity": quantity, "price": money(price),
            "discount_allocations": if discount > 0 { json!([{"amount": money(discount)}]) } else { json!([]) },
            "tax_lines": [{"title": store.tax, "rate": store.rate_percent as f64 / 100.0, "price": money(tax)}]
        }));
    }
    if store.tips && rng.random_bool(0.3) {
        let tip: i64 = rng.random_range(1..=2_000);
        charged += tip;
        lines.push(json!({
            "id": 999, "sku": null, "title": "Tip", "quantity": 1, "current_quantity": 1,
            "price": money(tip), "tip_payment_gateway": "shopify_payments",
            "discount_allocations": [], "tax_lines": []
        }));
    }
    order["line_items"] = json!(lines);
    let shipping: i64 = rng.random_range(0..=1_500);
    let shipping_discount = if rng.random_bool(0.2) { shipping } else { 0 };
    let shipping_tax = tax_of(shipping - shipping_discount, store.rate_percent, included);
    charged += shipping - shipping_discount + if included { 0 } else { shipping_tax };
    order["shipping_lines"][0]["price"] = json!(money(shipping));
    order["shipping_lines"][0]["discount_allocations"] = if shipping_discount > 0 {
        json!([{"amount": money(shipping_discount)}])
    } else {
        json!([])
    };
    order["shipping_lines"][0]["tax_lines"] = json!([
        {"title": store.tax, "rate": store.rate_percent as f64 / 100.0, "price": money(shipping_tax)}
    ]);
    (order, id, charged)
}

#[tokio::test]
async fn the_erp_books_what_the_shop_charged_to_the_minor_unit() {
    let orders: usize = std::env::var("MONEY_ORDERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(24);
    let seed: u64 = std::env::var("MONEY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    println!("money corpus: {orders} orders, MONEY_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    // A Tryton of its own: the corpus sells hundreds of units, which would leave the shared
    // ERP's stock short for every other test (their sales would be backordered).
    let stack = erpsync_e2e::Stack::from_env().unwrap_or_else(|e| panic!("{e:#}"));
    let mut tryton = erpsync_e2e::Tryton::start(
        &stack.venv,
        &stack.tryton_template,
        &stack
            .run_dir
            .join(format!("money-{}", uuid::Uuid::new_v4().simple())),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let world = World::start_custom(&tryton.url, &tryton.api_key, |_| {}).await;
    let mut wrong = Vec::new();
    for number in 0..orders {
        let store = &STORES[rng.random_range(0..STORES.len())];
        let (order, id, charged) = generate(&mut rng, store);
        world
            .deliver(
                store.channel,
                "orders/create",
                &format!("wh-money-{id}"),
                &order,
            )
            .await;
        let state = world.state(store.channel, &id).await;
        let sales = world.erp_sales(&format!("{}/{id}", store.channel)).await;
        let booked = sales.first().map(|sale| decimal(&sale["total_amount"]));
        let what = format!(
            "order {number} ({}, {}, taxes {}): the shop charged {}",
            store.channel,
            store.country,
            if order["taxes_included"] == true {
                "included"
            } else {
                "on top"
            },
            money(charged)
        );
        match (state.map(|s| (s.status, s.note, s.last_error)), booked) {
            // Backordered is a sale taken in full whose stock is still to come: no person.
            (Some((SyncStatus::Synced | SyncStatus::Backordered, _, _)), Some(booked))
                if booked == money(charged) => {}
            (state, booked) => wrong.push(format!("{what}, the ERP booked {booked:?}; {state:?}")),
        }
    }
    tryton.stop().await;
    assert!(
        wrong.is_empty(),
        "MONEY_SEED={seed}: {} of {orders} orders wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
