use super::*;
use crate::model::ids::{CurrencyCode, ExternalOrderId, Sku};
use crate::model::refund::{LineFulfilment, Paid, RefundedItem, RestockType};
use crate::model::state::OrderBasis;
use crate::ports::{
    ErpAddress, ErpSale, ErpSaleDetails, ErpSaleLine, ErpSaleState, ReturnDraft, ReturnProduct,
};

fn config() -> Config {
    Config::from_toml(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/erpsync.example.toml"
    )))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn sku(text: &str) -> Sku {
    Sku::parse(text).unwrap_or_else(|e| panic!("{e}"))
}

fn line(id: i64, code: &str, quantity: i64, price: &str) -> ErpSaleLine {
    ErpSaleLine {
        id,
        sku: Some(sku(code)),
        product_id: Some(id * 10),
        unit_id: Some(1),
        quantity: Decimal::from(quantity),
        unit_price: price.parse().unwrap_or_default(),
        description: None,
        tax_rates: vec![Decimal::new(20, 2)],
    }
}

fn original() -> ErpSaleDetails {
    ErpSaleDetails {
        sale: ErpSale {
            id: 7,
            number: Some("SO7".to_owned()),
            state: ErpSaleState::Processing,
        },
        customer_id: 3,
        invoice_address_id: 4,
        shipment_address: ErpAddress {
            id: 4,
            street: None,
            postal_code: None,
            city: None,
            country: None,
        },
        lines: vec![
            line(1, "IPOD2008RED", 2, "165.83"),
            line(2, "IPOD2008GREEN", 1, "165.83"),
            line(3, "WOOL-SOCKS", 2, "10.42"),
            line(4, "SHIPPING", 1, "4.17"),
        ],
        fulfilment_started: true,
        invoiced: false,
        draft_amendment_since: None,
    }
}

fn refund(items: Vec<RefundedItem>, shipping: &str, refunded: &str) -> Refund {
    Refund {
        id: "929361472".to_owned(),
        order_id: ExternalOrderId::parse("450789469").unwrap_or_else(|e| panic!("{e}")),
        note: Some("wrong size".to_owned()),
        items,
        shipping: dec(shipping),
        shipping_tax: Decimal::ZERO,
        discrepancy: Decimal::ZERO,
        paid: vec![Paid {
            amount: dec(refunded),
            currency: Some("GBP".to_owned()),
            transaction_id: Some("1068278526".to_owned()),
            gateway: Some("shopify_payments".to_owned()),
            processed_at: None,
        }],
        pending: 0,
        shop_currency: None,
    }
}

fn dec(text: &str) -> Decimal {
    text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn usd() -> CurrencyCode {
    CurrencyCode::parse("USD").unwrap_or_else(|e| panic!("{e}"))
}

/// `quantity` units of a fulfilled line, refunded at `subtotal` (and 20 % tax).
fn item(code: &str, quantity: u32, restock: RestockType, subtotal: &str) -> RefundedItem {
    RefundedItem {
        line_item_id: "1".to_owned(),
        sku: Some(sku(code)),
        quantity,
        restock_type: restock,
        line_fulfilment: LineFulfilment::Fulfilled,
        subtotal: dec(subtotal),
        tax: (dec(subtotal) * dec("0.2")).round_dp(2),
    }
}

fn plan(refund: &Refund) -> Result<ReturnPlan, SyncError> {
    plan_on(refund, false, None)
}

/// As order-sync recorded the order: its tax basis, and the units it took off the sale
/// for this refund, per line (None: a row from before that was kept).
fn plan_on(
    refund: &Refund,
    taxes_included: bool,
    taken_off: Option<&[(&str, u32)]>,
) -> Result<ReturnPlan, SyncError> {
    let config = config();
    let basis = OrderBasis {
        taxes_included,
        refunded_before_fulfilment: taken_off.map(|lines| {
            std::collections::BTreeMap::from([(
                refund.id.clone(),
                lines.iter().map(|(l, u)| ((*l).to_owned(), *u)).collect(),
            )])
        }),
        booked: None,
    };
    plan_return(
        &config,
        &config.channels[0],
        refund,
        &original(),
        "uk-shop/450789469",
        Some(&basis),
    )
}

fn booked(refund: &Refund) -> (ReturnDraft, Option<Decimal>) {
    match plan(refund).unwrap_or_else(|e| panic!("{e}")) {
        ReturnPlan::Book {
            draft,
            expected_credit,
        } => (draft, expected_credit),
        ReturnPlan::Nothing { why, .. } => panic!("nothing booked: {why}"),
    }
}

#[test]
fn the_documented_refund_parses_in_shop_money() {
    let refund = crate::channels::shopify::parse_refund(include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/shopify-refunds-create.json"
    )))
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(refund.id, "929361472");
    assert_eq!(refund.order_id.as_str(), "450789469");
    assert_eq!(
        refund.items,
        [RefundedItem {
            line_item_id: "518995019".to_owned(),
            sku: Some(sku("IPOD2008RED")),
            quantity: 1,
            restock_type: RestockType::NoRestock,
            line_fulfilment: LineFulfilment::Unfulfilled,
            subtotal: Decimal::ZERO,
            tax: Decimal::ZERO,
        }]
    );
    assert_eq!(refund.refunded_in(&usd()), (dec("41.94"), Vec::new()));
    assert_eq!(refund.shipping, Decimal::ZERO);
}

#[test]
fn only_successful_refunds_in_shop_money_count_as_money_back() {
    let mut body: serde_json::Value = serde_json::from_slice(include_bytes!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/shopify-refunds-create.json"
    )))
    .unwrap_or_default();
    let paid = body["transactions"][0].clone();
    let mut pending = paid.clone();
    pending["status"] = "pending".into();
    let mut errored = paid.clone();
    errored["status"] = "error".into();
    let mut foreign = paid.clone();
    foreign["currency"] = "CAD".into();
    body["transactions"] = serde_json::json!([paid, pending, errored, foreign]);
    let refund = crate::channels::shopify::parse_refund(body.to_string().as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        refund.refunded_in(&usd()),
        (dec("41.94"), vec!["41.94 CAD".to_owned()])
    );
    assert_eq!(refund.pending, 1);
    // Pending money is booked once it has moved.
    let pending = plan(&refund).err().map(|e| e.kind);
    assert_eq!(pending.as_deref(), Some("refund_pending"));
}

#[test]
fn credits_take_the_refund_s_own_amounts_returned_goods_restock_and_kept_ones_do_not() {
    // The sale's line says 165.83 a unit; the refund says what was paid for these.
    let refund = refund(
        vec![
            item("IPOD2008RED", 1, RestockType::Return, "160.00"),
            item("IPOD2008GREEN", 3, RestockType::NoRestock, "100.00"),
        ],
        "4.17",
        "316.17",
    );
    let (draft, expected) = booked(&refund);
    assert_eq!(draft.reference, "uk-shop/450789469/refund/929361472");
    assert!(draft.restocks());
    let summary: Vec<(ReturnProduct, String, String, Option<i64>)> = draft
        .lines
        .iter()
        .map(|l| {
            (
                l.product.clone(),
                l.quantity.to_string(),
                l.unit_price.to_string(),
                l.like_line,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                ReturnProduct::Goods,
                "-1".to_owned(),
                "160.00".to_owned(),
                Some(1)
            ),
            // 100.00 over three units, to the penny.
            (
                ReturnProduct::Service(sku("REFUND")),
                "-2".to_owned(),
                "33.33".to_owned(),
                Some(2)
            ),
            (
                ReturnProduct::Service(sku("REFUND")),
                "-1".to_owned(),
                "33.34".to_owned(),
                Some(2)
            ),
            (
                ReturnProduct::Service(sku("SHIPPING")),
                "-1".to_owned(),
                "4.17".to_owned(),
                Some(4)
            ),
        ]
    );
    assert_eq!(expected, Some(dec("316.17")));
}

#[test]
fn units_refunded_before_dispatch_are_not_credited_and_a_cancelled_order_books_nothing() {
    // Part of the order refunded before dispatch: the amendment removes it.
    let early = refund(
        vec![item("IPOD2008GREEN", 1, RestockType::Cancel, "165.83")],
        "0",
        "199.00",
    );
    assert!(matches!(
        plan(&early),
        Ok(ReturnPlan::Nothing {
            attention: false,
            ..
        })
    ));
    // The whole order refunded before dispatch, shipping too: the cancellation.
    let all = refund(
        vec![
            item("IPOD2008RED", 2, RestockType::Cancel, "331.66"),
            item("IPOD2008GREEN", 1, RestockType::Cancel, "165.83"),
            item("WOOL-SOCKS", 2, RestockType::Cancel, "20.84"),
        ],
        "4.17",
        "626.17",
    );
    assert!(matches!(
        plan(&all),
        Ok(ReturnPlan::Nothing {
            attention: false,
            ..
        })
    ));
    // The shop kept 10.00 of it (a fee): the sale loses the units, and a person books
    // the kept money, told both amounts.
    let kept = refund(
        vec![item("IPOD2008GREEN", 1, RestockType::Cancel, "165.83")],
        "0",
        "189.00",
    );
    match plan(&kept) {
        Ok(ReturnPlan::Nothing { why, attention }) => {
            assert!(attention);
            assert!(
                why.contains("paid back 189.00") && why.contains("worth 199.00"),
                "{why}"
            );
        }
        other => panic!("{other:?}"),
    }
    // A no_restock refund of a line nothing of which was fulfilled is the same.
    let mut unfulfilled = item("IPOD2008GREEN", 1, RestockType::NoRestock, "165.83");
    unfulfilled.line_fulfilment = LineFulfilment::Unfulfilled;
    assert!(matches!(
        plan(&refund(vec![unfulfilled.clone()], "0", "199.00")),
        Ok(ReturnPlan::Nothing {
            attention: false,
            ..
        })
    ));
    // Beside a return, the early unit's money is not part of the credit.
    let mixed = refund(
        vec![
            unfulfilled,
            item("IPOD2008RED", 1, RestockType::Return, "160.00"),
        ],
        "0",
        "391.00",
    );
    let (draft, expected) = booked(&mixed);
    assert_eq!(draft.lines.len(), 1);
    assert_eq!(
        expected,
        Some(dec("192.00")),
        "391.00 less 165.83 + 33.17 tax"
    );
}

#[test]
fn a_bundle_comes_back_as_its_components_and_goodwill_is_a_credit_only() {
    let trio = refund(
        vec![item("IPOD-TRIO", 1, RestockType::Return, "199.00")],
        "0",
        "238.80",
    );
    let (draft, _) = booked(&trio);
    let quantities: Vec<(Option<i64>, String)> = draft
        .lines
        .iter()
        .map(|l| (l.like_line, l.quantity.to_string()))
        .collect();
    assert_eq!(
        quantities,
        [
            (Some(2), "-1".to_owned()),
            (Some(1), "-1".to_owned()),
            (Some(3), "-2".to_owned())
        ]
    );
    let shared: Decimal = draft.lines.iter().map(|l| -l.quantity * l.unit_price).sum();
    assert_eq!(shared, dec("199.00"), "the bundle's amount, to the penny");

    let goodwill = refund(Vec::new(), "0", "15.00");
    let (draft, expected) = booked(&goodwill);
    assert!(!draft.restocks());
    assert_eq!(draft.lines.len(), 1);
    assert_eq!(draft.lines[0].unit_price, dec("15.00"));
    assert_eq!(draft.lines[0].description, "goodwill refund: wrong size");
    assert_eq!(expected, Some(dec("15.00")));
}

/// A store whose prices include tax refunds 199.00 of which 33.17 is VAT, shipping 4.99
/// of which 0.83: the credit lines are the nets (Tryton adds the tax back), and the credit
/// note must total the 203.99 paid back, not that plus the tax again.
#[test]
fn a_tax_inclusive_refund_is_credited_net_of_its_tax() {
    let mut refund = refund(
        vec![item("IPOD2008RED", 1, RestockType::Return, "199.00")],
        "4.99",
        "203.99",
    );
    refund.items[0].tax = dec("33.17");
    refund.shipping_tax = dec("0.83");
    let plan = plan_on(&refund, true, Some(&[]));
    let Ok(ReturnPlan::Book {
        draft,
        expected_credit,
    }) = plan
    else {
        panic!("{plan:?}");
    };
    let prices: Vec<String> = draft
        .lines
        .iter()
        .map(|l| l.unit_price.to_string())
        .collect();
    assert_eq!(prices, ["165.83", "4.16"]);
    assert_eq!(expected_credit, Some(dec("203.99")));
}

/// The shop refunded 0.53 with 0.10 tax (its own rounding); Tryton taxes 0.53 at 20 % as
/// 0.11. A rounding line takes the cent back, so the credit note is the 0.63 paid back.
#[test]
fn a_credit_note_the_erp_would_round_otherwise_gets_a_rounding_line() {
    let mut refund = refund(
        vec![item("IPOD2008RED", 1, RestockType::NoRestock, "0.53")],
        "0",
        "0.63",
    );
    refund.items[0].tax = dec("0.10");
    let Ok(ReturnPlan::Book { draft, .. }) = plan(&refund) else {
        panic!("not booked");
    };
    let last = draft.lines.last().map(|l| {
        (
            l.product.clone(),
            l.quantity.to_string(),
            l.unit_price.to_string(),
        )
    });
    assert_eq!(
        last,
        Some((
            ReturnProduct::Service(sku("ROUNDING")),
            "1".to_owned(),
            "0.01".to_owned()
        ))
    );
}

#[test]
fn a_refund_discrepancy_is_its_own_line() {
    let mut fee = refund(
        vec![item("IPOD2008RED", 1, RestockType::Return, "100.00")],
        "0",
        "110.00",
    );
    // A 10.00 restocking fee kept back: 120.00 calculated, 110.00 paid.
    fee.discrepancy = dec("10.00");
    let (draft, expected) = booked(&fee);
    let last = draft.lines.last().map(|l| (l.quantity, l.unit_price));
    assert_eq!(last, Some((Decimal::ONE, dec("10.00"))));
    assert_eq!(expected, Some(dec("110.00")));
}

#[test]
fn a_refund_for_goods_the_sale_does_not_hold_names_them() {
    let refund = refund(
        vec![item("IPOD2009BLACK", 1, RestockType::Return, "199")],
        "0",
        "199",
    );
    let error = plan(&refund).err().unwrap_or_else(|| panic!("refused"));
    assert_eq!(error.kind, "refund_line_unmatched");
    assert!(error.message.contains("IPOD2009BLACK"), "{error}");
}

/// Two units of a line one of which had shipped, refunded without restock: order-sync took
/// the unshipped one off the sale, so only the shipped one is credited, and the credit is
/// the money paid back less the unshipped unit's share. Before order-sync has read the
/// refund, the refund alone cannot tell which units had shipped: it waits, never guesses.
#[test]
fn a_partly_fulfilled_line_is_credited_only_for_what_had_shipped() {
    let mut both = item("IPOD2008RED", 2, RestockType::NoRestock, "331.66");
    both.line_fulfilment = LineFulfilment::Partial;
    let refund = refund(vec![both], "0", "397.99");
    let waiting = plan_on(&refund, false, None)
        .err()
        .unwrap_or_else(|| panic!("a partly fulfilled line waits for the order"));
    assert_eq!(waiting.kind, "refund_awaits_order");
    assert_eq!(waiting.class, crate::error::ErrorClass::Retryable);

    let Ok(ReturnPlan::Book {
        draft,
        expected_credit,
    }) = plan_on(&refund, false, Some(&[("1", 1)]))
    else {
        panic!("one unit is credited");
    };
    let credited: Vec<(String, String)> = draft
        .lines
        .iter()
        .filter(|l| l.like_line == Some(1))
        .map(|l| (l.quantity.to_string(), l.unit_price.to_string()))
        .collect();
    assert_eq!(credited, [("-1".to_owned(), "165.83".to_owned())]);
    assert_eq!(
        expected_credit,
        Some(dec("198.99")),
        "397.99 paid back less the unshipped unit's 165.83 + 33.17"
    );

    // Seen by order-sync with nothing taken off: both had shipped.
    let Ok(ReturnPlan::Book { draft, .. }) = plan_on(&refund, false, Some(&[])) else {
        panic!("both units are credited");
    };
    let units: Decimal = draft
        .lines
        .iter()
        .filter(|l| l.like_line == Some(1))
        .map(|l| -l.quantity)
        .sum();
    assert_eq!(units, Decimal::TWO);
}
