use rust_decimal::Decimal;

use super::*;
use crate::model::ids::{ChannelId, Email};
use crate::model::order::{ChannelOrder, ChargeKind};

const MULTILINE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/shopify-orders-create-multiline-discount-tax.json"
));
const DISCOUNT_CODE: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/shopify-orders-create-discount-code.json"
));
const EUR_NO_CUSTOMER: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../tests/fixtures/shopify-orders-create-eur-no-customer.json"
));

fn channel() -> ChannelId {
    ChannelId::parse("us-shop").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn documented_multiline_order_parses_into_the_canonical_model() {
    let order = parse_order(&channel(), MULTILINE.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(order.external_id.as_str(), "450789469");
    assert_eq!(order.name, "#1001");
    assert_eq!(order.currency.as_str(), "USD");
    assert_eq!(order.lines.len(), 3);
    let skus: Vec<_> = order.lines.iter().map(|l| l.sku.as_str()).collect();
    assert_eq!(skus, ["IPOD2008GREEN", "IPOD2008RED", "IPOD2008BLACK"]);
    assert_eq!(order.lines[0].discount, Decimal::new(334, 2));
    assert_eq!(order.lines[0].unit_price, Decimal::new(19900, 2));
    assert_eq!(
        order.customer_email().map(Email::as_str),
        Some("bob.norman@mail.example.com")
    );
    let shipping = order.shipping_address.as_ref().map(|a| a.country.as_str());
    assert_eq!(shipping, Some("US"));
    assert_eq!(order.shipping_lines.len(), 1);
    assert!(!order.cancelled);
}

#[test]
fn discount_code_order_parses() {
    let order = parse_order(&channel(), DISCOUNT_CODE.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(order.lines[0].discount, Decimal::new(1791, 2));
    assert_eq!(
        order
            .shipping_address
            .map(|a| a.country.as_str().to_owned())
            .as_deref(),
        Some("CA")
    );
}

#[test]
fn lines_that_are_not_products_become_charges() {
    // The documented order's only line has no SKU: a custom item.
    let order =
        parse_order(&channel(), EUR_NO_CUSTOMER.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert!(order.lines.is_empty());
    assert_eq!(
        order
            .charges
            .iter()
            .map(|c| (c.kind, c.title.as_str()))
            .collect::<Vec<_>>(),
        [(ChargeKind::Custom, "Big Brown Bear Boots")]
    );
    // A tip, a gift card sold and duties on a product line.
    let mut order: serde_json::Value = serde_json::from_str(MULTILINE).unwrap_or_default();
    let mut tip = order["line_items"][0].clone();
    tip["id"] = 9001.into();
    tip["sku"] = serde_json::Value::Null;
    tip["title"] = "Tip".into();
    tip["price"] = "5.00".into();
    tip["tip_payment_gateway"] = "shopify_payments".into();
    tip["quantity"] = 1.into();
    tip["current_quantity"] = 1.into();
    tip["discount_allocations"] = serde_json::json!([]);
    tip["tax_lines"] = serde_json::json!([]);
    let mut card = tip.clone();
    card["id"] = 9002.into();
    card["title"] = "Gift card".into();
    card["price"] = "25.00".into();
    card["tip_payment_gateway"] = serde_json::Value::Null;
    card["gift_card"] = true.into();
    card["sku"] = "GIFT-25".into();
    order["line_items"][1]["duties"] = serde_json::json!([
        {"price_set": {"shop_money": {"amount": "4.20", "currency_code": "USD"}}}
    ]);
    order["original_total_additional_fees_set"] =
        serde_json::json!({"shop_money": {"amount": "2.50", "currency_code": "USD"}});
    if let Some(lines) = order["line_items"].as_array_mut() {
        lines.extend([tip, card]);
    }
    let order =
        parse_order(&channel(), order.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let charges: Vec<(ChargeKind, String)> = order
        .charges
        .iter()
        .map(|c| (c.kind, c.amount.to_string()))
        .collect();
    assert_eq!(
        charges,
        [
            (ChargeKind::Tip, "5.00".to_owned()),
            (ChargeKind::GiftCard, "25.00".to_owned()),
            (ChargeKind::Duty, "4.20".to_owned()),
            (ChargeKind::Fee, "2.50".to_owned())
        ]
    );
    assert_eq!(order.lines.len(), 3, "the products stay lines");

    // Its line gone (every unit refunded before dispatch), the duties stay charged:
    // giving them back is a refund's to credit.
    let mut gone: serde_json::Value = serde_json::from_str(MULTILINE).unwrap_or_default();
    gone["line_items"][1]["duties"] = serde_json::json!([
        {"price_set": {"shop_money": {"amount": "4.20", "currency_code": "USD"}}}
    ]);
    gone["line_items"][1]["current_quantity"] = 0.into();
    let gone =
        parse_order(&channel(), gone.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let duties: Vec<String> = gone
        .charges
        .iter()
        .filter(|c| c.kind == ChargeKind::Duty)
        .map(|c| c.amount.to_string())
        .collect();
    assert_eq!(duties, ["4.20"]);
}

#[test]
fn a_wrong_type_names_the_json_path() {
    let mut order: serde_json::Value = serde_json::from_str(MULTILINE).unwrap_or_default();
    order["line_items"][0]["quantity"] = serde_json::json!("one");
    let body = order.to_string();
    let err = parse_order(&channel(), body.as_bytes())
        .err()
        .map(|e| e.field);
    assert_eq!(err.as_deref(), Some("line_items[0].quantity"));
}

#[test]
fn edited_quantities_are_what_is_left_and_removed_lines_are_gone() {
    let cancelled = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/shopify-orders-cancelled.json"
    ));
    let order = parse_order(&channel(), cancelled.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert!(order.cancelled);
    let skus: Vec<_> = order.lines.iter().map(|l| l.sku.as_str()).collect();
    // GREEN was refunded (no_restock) before any fulfilment of it succeeded: no longer sold.
    assert_eq!(skus, ["IPOD2008RED", "IPOD2008BLACK"]);
    let mut edited: serde_json::Value = serde_json::from_str(cancelled).unwrap_or_default();
    edited["line_items"][2]["current_quantity"] = serde_json::json!(0);
    let order =
        parse_order(&channel(), edited.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let skus: Vec<_> = order.lines.iter().map(|l| l.sku.as_str()).collect();
    assert_eq!(skus, ["IPOD2008RED"], "BLACK was edited away");
    // Had GREEN's fulfilment succeeded, the refunded unit was dispatched: still sold, and
    // the return flow credits it. So with a return, whatever the fulfilments say.
    let mut dispatched: serde_json::Value = serde_json::from_str(cancelled).unwrap_or_default();
    dispatched["fulfillments"][0]["status"] = "success".into();
    let order = parse_order(&channel(), dispatched.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        order.lines.first().map(|l| l.sku.as_str()),
        Some("IPOD2008GREEN")
    );
    let mut returned: serde_json::Value = serde_json::from_str(cancelled).unwrap_or_default();
    returned["refunds"][0]["refund_line_items"][0]["restock_type"] = "return".into();
    let order =
        parse_order(&channel(), returned.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        order.lines.first().map(|l| l.sku.as_str()),
        Some("IPOD2008GREEN")
    );
    // A cancel-type refund always leaves the sale.
    let mut cancelled_unit: serde_json::Value = dispatched.clone();
    cancelled_unit["refunds"][0]["refund_line_items"][0]["restock_type"] = "cancel".into();
    let order = parse_order(&channel(), cancelled_unit.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        order.lines.first().map(|l| l.sku.as_str()),
        Some("IPOD2008RED")
    );
}

/// 3 x 10.00 with 0.01 off and 6.00 tax; one unit refunded before dispatch, the refund
/// giving the cent back with it (9.99 and 2.00). The sale keeps 2 x 10.00 at no discount
/// and 4.00 tax: what the shop still charges. Shared pro rata it kept 0.01 off (a cent
/// short of the shop's current total), and with the refund's amounts absent it still does.
#[test]
fn units_refunded_before_dispatch_leave_at_the_refund_s_own_amounts() {
    let parsed = |amounts: bool, subtotal: &str| {
        let mut refund_line = serde_json::json!({
            "line_item_id": 1, "quantity": 1, "restock_type": "cancel"
        });
        if amounts {
            refund_line["subtotal_set"] =
                serde_json::json!({"shop_money": {"amount": subtotal, "currency_code": "USD"}});
            refund_line["total_tax_set"] =
                serde_json::json!({"shop_money": {"amount": "2.00", "currency_code": "USD"}});
        }
        let body = serde_json::json!({
            "id": 7, "currency": "USD", "email": "a@example.com",
            "updated_at": "2026-12-01T10:00:00Z",
            "line_items": [{
                "id": 1, "sku": "WOOL-SOCKS", "title": "Socks", "quantity": 3,
                "current_quantity": 2, "price": "10.00",
                "discount_allocations": [{"amount": "0.01"}],
                "tax_lines": [{"title": "VAT", "rate": 0.2, "price": "6.00"}]
            }],
            "refunds": [{"refund_line_items": [refund_line]}]
        });
        parse_order(&channel(), body.to_string().as_bytes())
    };
    let order = |amounts: bool| parsed(amounts, "9.99").unwrap_or_else(|e| panic!("{e}"));
    let kept = |order: &ChannelOrder| {
        order.lines.first().map(|l| {
            (
                l.quantity,
                l.discount.to_string(),
                l.taxes.first().map(|t| t.amount.to_string()),
            )
        })
    };
    assert_eq!(
        kept(&order(true)),
        Some((2, "0.00".to_owned(), Some("4.00".to_owned())))
    );
    assert_eq!(
        kept(&order(false)),
        Some((2, "0.01".to_owned(), Some("4.00".to_owned())))
    );
    // Refunded at 5.00 the unit carried 5.00 of a 0.01 discount, which the two left
    // cannot give back: they keep their share pro rata, not a clamped discount, and the
    // totals' check asks a person about the difference.
    assert_eq!(
        kept(&parsed(true, "5.00").unwrap_or_else(|e| panic!("{e}"))),
        Some((2, "0.01".to_owned(), Some("4.00".to_owned())))
    );
}

/// 3 socks: one refunded without restock before anything shipped, then two shipped, then
/// one of those refunded, not restocked either. Read in the
/// order they happened the first refund took a unit off the sale and the second did not;
/// counted against today's fulfilments both would look shipped and the sale would keep a
/// unit that never ships. Each refund's split is recorded for return-sync.
#[test]
fn refunds_are_read_against_the_fulfilments_made_before_them() {
    let refund = |id: u64, at: &str, restock: &str| {
        serde_json::json!({"id": id, "created_at": at, "refund_line_items": [{
            "line_item_id": 1, "quantity": 1, "restock_type": restock,
            "subtotal_set": {"shop_money": {"amount": "10.00", "currency_code": "USD"}},
            "total_tax_set": {"shop_money": {"amount": "2.00", "currency_code": "USD"}}
        }]})
    };
    let body = serde_json::json!({
        "id": 7, "currency": "USD", "email": "a@example.com",
        "updated_at": "2026-12-01T13:00:00Z",
        "line_items": [{
            "id": 1, "sku": "WOOL-SOCKS", "title": "Socks", "quantity": 3,
            "current_quantity": 1, "price": "10.00",
            "tax_lines": [{"title": "VAT", "rate": 0.2, "price": "6.00"}]
        }],
        "fulfillments": [{
            "status": "success", "created_at": "2026-12-01T11:00:00+01:00",
            "line_items": [{"id": 1, "quantity": 2}]
        }],
        "refunds": [
            refund(22, "2026-12-01T12:00:00Z", "no_restock"),
            refund(21, "2026-12-01T09:00:00Z", "no_restock")
        ]
    });
    let order =
        parse_order(&channel(), body.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let kept: Vec<(u32, String)> = order
        .lines
        .iter()
        .map(|l| {
            (
                l.quantity,
                l.taxes
                    .iter()
                    .map(|t| t.amount)
                    .sum::<Decimal>()
                    .to_string(),
            )
        })
        .collect();
    assert_eq!(kept, [(2, "4.00".to_owned())], "the shipped two stay sold");
    let split: Vec<(String, Vec<(String, u32)>)> = order
        .refunded_before_fulfilment
        .iter()
        .map(|(refund, lines)| {
            (
                refund.clone(),
                lines.iter().map(|(l, u)| (l.clone(), *u)).collect(),
            )
        })
        .collect();
    assert_eq!(
        split,
        [
            ("21".to_owned(), vec![("1".to_owned(), 1)]),
            ("22".to_owned(), Vec::new())
        ]
    );
}

/// A shipping refund is a `shipping_refund` order adjustment (negative, its tax beside it)
/// and, from 2024-10, a refund shipping line too: worth the one, never both.
#[test]
fn a_shipping_refund_counts_once_with_its_tax() {
    let mut body = serde_json::json!({
        "id": 5, "order_id": 7, "refund_line_items": [],
        "order_adjustments": [{
            "kind": "shipping_refund", "amount": "-5.00", "tax_amount": "1.00",
            "amount_set": {"shop_money": {"amount": "-5.00", "currency_code": "USD"}},
            "tax_amount_set": {"shop_money": {"amount": "1.00", "currency_code": "USD"}}
        }],
        "transactions": [{"kind": "refund", "status": "success", "amount": "6.00"}]
    });
    let shipping = |body: &serde_json::Value| {
        let refund = parse_refund(body.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        (refund.shipping.to_string(), refund.shipping_tax.to_string())
    };
    assert_eq!(shipping(&body), ("5.00".to_owned(), "1.00".to_owned()));
    body["refund_shipping_lines"] = serde_json::json!([{
        "subtotal_amount_set": {"shop_money": {"amount": "5.00", "currency_code": "USD"}}
    }]);
    assert_eq!(
        shipping(&body),
        ("5.00".to_owned(), "1.00".to_owned()),
        "the line and its adjustment are one shipping refund"
    );
}

#[test]
fn not_json_is_a_parse_error_not_a_panic() {
    assert!(parse_order(&channel(), b"<html>").is_err());
    assert!(order_id(b"{\"id\": 42}").is_ok());
    assert!(order_id(b"{}").is_err());
}
