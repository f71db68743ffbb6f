use super::*;
use crate::channels::shopify::parse_order;
use crate::config::Config;

fn dec(text: &str) -> Decimal {
    text.parse().unwrap_or_default()
}

fn currency(code: &str) -> CurrencyCode {
    CurrencyCode::parse(code).unwrap_or_else(|e| panic!("{e}"))
}

fn gbp() -> CurrencyCode {
    currency("GBP")
}

/// ¥1,000 over three equal components was 333.33 / 333.33 / 333.34, and Tryton's whole-yen
/// lines summed to ¥999; 3 x 0.125 KWD was 0.38.
#[test]
fn amounts_are_made_in_the_currency_s_own_minor_unit() {
    let three = |sku: &str| crate::config::BundleComponent {
        sku: Sku::parse(sku).unwrap_or_else(|e| panic!("{e}")),
        quantity: 1,
        share: None,
    };
    let bundle = Bundle {
        components: vec![three("A"), three("B"), three("C")],
    };
    let shares = bundle_shares(dec("1000"), &bundle, &currency("JPY"));
    assert_eq!(
        shares.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["333", "333", "334"]
    );
    assert_eq!(
        lines_for_total(dec("1000"), 3, &currency("JPY")),
        [(2, dec("333")), (1, dec("334"))]
    );
    assert_eq!(
        lines_for_total(dec("0.375"), 3, &currency("KWD")),
        [(3, dec("0.125"))]
    );
    let kwd = net_unit_prices(dec("0.125"), 3, Decimal::ZERO, &currency("KWD")).unwrap_or_default();
    assert_eq!(lines_total(&kwd), dec("0.375"));
    // Half away from zero, not to even: 2.485 is 2.49.
    assert_eq!(lines_for_total(dec("2.485"), 1, &gbp()), [(1, dec("2.49"))]);
}

fn lines_total(lines: &[(u32, Decimal)]) -> Decimal {
    lines.iter().map(|(q, p)| Decimal::from(*q) * p).sum()
}

#[test]
fn an_even_discount_gives_one_line() {
    assert_eq!(
        net_unit_prices(dec("199.00"), 1, dec("3.34"), &gbp()),
        Ok(vec![(1, dec("195.66"))])
    );
    assert_eq!(
        net_unit_prices(dec("10.00"), 4, dec("2.00"), &gbp()),
        Ok(vec![(4, dec("9.50"))])
    );
}

#[test]
fn an_uneven_discount_is_split_to_keep_the_total_to_the_penny() {
    let lines = net_unit_prices(dec("10.00"), 3, dec("1.00"), &gbp()).unwrap_or_default();
    assert_eq!(lines, vec![(2, dec("9.66")), (1, dec("9.68"))]);
    assert_eq!(lines_total(&lines), dec("29.00"));
    for quantity in 1..200u32 {
        let lines = net_unit_prices(dec("7.33"), quantity, dec("0.17"), &gbp()).unwrap_or_default();
        assert_eq!(
            lines_total(&lines),
            dec("7.33") * Decimal::from(quantity) - dec("0.17")
        );
    }
}

#[test]
fn a_discount_above_the_line_is_refused() {
    assert!(net_unit_prices(dec("5.00"), 1, dec("6.00"), &gbp()).is_err());
}

#[test]
fn the_documented_order_maps_to_erp_lines_with_aliases_and_shipping() {
    let config = Config::from_toml(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/erpsync.example.toml"
    )))
    .unwrap_or_else(|e| panic!("{e}"));
    let channel = &config.channels[0];
    let body = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/shopify-orders-create-multiline-discount-tax.json"
    ))
    .replace("IPOD2008BLACK", "IPOD-BLACK-LEGACY");
    let order = parse_order(&channel.id, body.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let draft = sale_draft(&order, channel, &config.erp).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(draft.reference, "uk-shop/450789469");
    let skus: Vec<_> = draft.lines.iter().map(|l| l.sku.as_str()).collect();
    assert_eq!(
        skus,
        [
            "IPOD2008GREEN",
            "IPOD2008RED",
            "IPOD2008BLACK",
            "SHIPPING",
            "ROUNDING"
        ]
    );
    // 3 x 199.00 less the 10.00 order discount, free shipping: Shopify's subtotal 587.00.
    // The documented 3.98 of tax a line is not 6 % of 195.67: beyond rounding, so the
    // rounding line stays 0.00 and reconciliation flags the tax.
    assert_eq!(draft.total(), dec("587.00"));
    assert_eq!(draft.lines.last().map(|l| l.unit_price), Some(dec("0.00")));
    assert_eq!(
        draft.customer.email.as_ref().map(Email::as_str),
        Some("bob.norman@mail.example.com")
    );
    assert_eq!(draft.customer.name, "Bob Norman");
}

fn config() -> Config {
    Config::from_toml(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/erpsync.example.toml"
    )))
    .unwrap_or_else(|e| panic!("{e}"))
}

fn documented() -> serde_json::Value {
    serde_json::from_str(include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/shopify-orders-create-multiline-discount-tax.json"
    )))
    .unwrap_or_default()
}

fn draft_of(channel: usize, order: &serde_json::Value) -> Result<SaleDraft, SyncError> {
    let config = config();
    let channel = &config.channels[channel];
    let order =
        parse_order(&channel.id, order.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    sale_draft(&order, channel, &config.erp)
}

fn to_gb(order: &mut serde_json::Value) {
    for address in ["billing_address", "shipping_address"] {
        order[address]["country_code"] = "GB".into();
        order[address]["zip"] = "SW1Y 4JH".into();
    }
}

/// A tip and a custom item were parked ("has no SKU") or vanished; now each is a line of
/// its mapped service product, and the ERP total is the shop's.
#[test]
fn charges_are_lines_of_their_mapped_products_and_an_unmapped_one_names_its_key() {
    let mut order = documented();
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
    let mut custom = tip.clone();
    custom["id"] = 9002.into();
    custom["title"] = "Engraving".into();
    custom["tip_payment_gateway"] = serde_json::Value::Null;
    custom["price"] = "12.00".into();
    if let Some(lines) = order["line_items"].as_array_mut() {
        lines.extend([tip, custom]);
    }
    let draft = draft_of(0, &order).unwrap_or_else(|e| panic!("{e}"));
    let charged: Vec<(&str, String)> = draft
        .lines
        .iter()
        .filter(|l| ["TIP", "CUSTOM-ITEM"].contains(&l.sku.as_str()))
        .map(|l| (l.sku.as_str(), l.unit_price.to_string()))
        .collect();
    assert_eq!(
        charged,
        [
            ("TIP", "5.00".to_owned()),
            ("CUSTOM-ITEM", "12.00".to_owned())
        ]
    );
    // The EU store maps no charges: the order waits, naming the line and the key.
    let error = draft_of(1, &order)
        .err()
        .unwrap_or_else(|| panic!("a tip vanished"));
    assert_eq!(error.kind, "unmapped_charge");
    assert!(
        error.message.contains("tip \"Tip\"") && error.message.contains("[channels.charges] tip"),
        "{}",
        error.message
    );
}

/// A point-of-sale or digital order carries no address: it was parked with "fix the
/// source record or the mapping", and there was no mapping to fix.
#[test]
fn an_order_without_an_address_goes_to_the_configured_customer_or_names_the_key() {
    let mut order = documented();
    order["billing_address"] = serde_json::Value::Null;
    order["shipping_address"] = serde_json::Value::Null;
    order["customer"] = serde_json::Value::Null;
    order["email"] = serde_json::Value::Null;
    order["contact_email"] = serde_json::Value::Null;
    // Sold over the counter in London: VAT, as the destination is the counter's.
    for lines in ["line_items", "shipping_lines"] {
        for line in order[lines].as_array_mut().into_iter().flatten() {
            line["tax_lines"] =
                serde_json::json!([{"title": "GB VAT", "rate": 0.2, "price": "1.00"}]);
        }
    }
    let draft = draft_of(0, &order).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(draft.customer.name, "Counter sales (UK shop)");
    assert_eq!(draft.tax_names(), ["UK VAT 20%"]);
    assert_eq!(
        draft.customer.email.as_ref().map(Email::as_str),
        Some("counter@erpsync-uk.example.com")
    );
    order["location_id"] = 655441491.into();
    let draft = draft_of(0, &order).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(draft.customer.name, "Covent Garden store");
    assert_eq!(draft.customer.invoice_address.street, "12 Long Acre");
    // The EU store has none: the reason names the key to set.
    let error = draft_of(1, &order)
        .err()
        .unwrap_or_else(|| panic!("an order with no address was booked"));
    assert!(
        error.message.contains("[channels.default_customer]")
            && error
                .message
                .contains("[channels.pos_customers.\"655441491\"]"),
        "{}",
        error.message
    );
}

#[test]
fn a_bundle_is_its_components_with_the_price_shared_to_the_penny() {
    let mut order = documented();
    order["line_items"] = serde_json::json!([{
        "id": 1, "sku": "IPOD-TRIO", "title": "iPod trio", "quantity": 3, "current_quantity": 3,
        "price": "99.99", "discount_allocations": [{"amount": "1.00"}], "tax_lines": []
    }]);
    let draft = draft_of(0, &order).unwrap_or_else(|e| panic!("{e}"));
    let products: Vec<_> = draft
        .lines
        .iter()
        .filter(|l| l.sku.as_str() != "SHIPPING")
        .collect();
    let skus: Vec<_> = products.iter().map(|l| l.sku.as_str()).collect();
    assert!(
        skus.contains(&"IPOD2008GREEN")
            && skus.contains(&"IPOD2008RED")
            && skus.contains(&"WOOL-SOCKS")
    );
    let socks: u32 = products
        .iter()
        .filter(|l| l.sku.as_str() == "WOOL-SOCKS")
        .map(|l| l.quantity)
        .sum();
    assert_eq!(socks, 6, "2 socks in each of 3 bundles");
    let total: Decimal = products
        .iter()
        .map(|l| l.unit_price * Decimal::from(l.quantity))
        .sum();
    assert_eq!(total, dec("298.97"), "3 x 99.99 less 1.00, to the penny");
}

#[test]
fn taxes_map_by_title_and_destination_and_shipping_maps_to_a_carrier() {
    let draft = draft_of(0, &documented()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(draft.carrier.as_deref(), Some("Royal Mail"));
    let product = draft.lines.iter().find(|l| l.sku.as_str() == "IPOD2008RED");
    assert_eq!(
        product.map(|l| l.taxes.clone()),
        Some(vec!["US Sales Tax 6%".to_owned()])
    );
    assert_eq!(draft.tax_names(), vec!["US Sales Tax 6%".to_owned()]);
}

#[test]
fn an_unmapped_tax_names_the_tax_the_destination_and_the_channel() {
    let mut order = documented();
    to_gb(&mut order);
    // The EU store has no mapping for a GB-bound "State Tax".
    let error = draft_of(1, &order)
        .err()
        .unwrap_or_else(|| panic!("expected an unmapped tax"));
    assert_eq!(error.kind, "unmapped_tax");
    assert!(
        error.message.contains("\"State Tax\"")
            && error.message.contains("GB")
            && error.message.contains("eu-shop"),
        "{}",
        error.message
    );
}

/// New York charges 8.875 % under the title "State Tax", which the example maps to 6 %.
#[test]
fn a_tax_charged_at_another_rate_than_mapped_names_both_rates() {
    let mut order = documented();
    for line in order["line_items"].as_array_mut().into_iter().flatten() {
        for tax in line["tax_lines"].as_array_mut().into_iter().flatten() {
            tax["rate"] = serde_json::json!(0.08875);
        }
    }
    let error = draft_of(0, &order)
        .err()
        .unwrap_or_else(|| panic!("booked at the wrong rate"));
    assert_eq!(error.kind, "unmapped_tax");
    assert!(
        error.message.contains("8.875%") && error.message.contains("only at 6%"),
        "{}",
        error.message
    );
    // At the mapped rate, float noise and all, it maps.
    for line in order["line_items"].as_array_mut().into_iter().flatten() {
        for tax in line["tax_lines"].as_array_mut().into_iter().flatten() {
            tax["rate"] = serde_json::json!(0.060000000000000005);
        }
    }
    assert!(draft_of(0, &order).is_ok());
}

#[test]
fn an_unmapped_delivery_method_names_it_and_the_channel() {
    let mut order = documented();
    order["shipping_lines"][0]["code"] = "Carrier Pigeon".into();
    order["shipping_lines"][0]["title"] = "Carrier Pigeon".into();
    let error = draft_of(0, &order)
        .err()
        .unwrap_or_else(|| panic!("expected an unmapped method"));
    assert_eq!(error.kind, "unmapped_delivery_method");
    assert!(
        error.message.contains("Carrier Pigeon") && error.message.contains("uk-shop"),
        "{}",
        error.message
    );
}

#[test]
fn tax_inclusive_prices_reach_the_erp_net_of_the_tax_the_shop_charged() {
    let mut order = documented();
    to_gb(&mut order);
    order["taxes_included"] = true.into();
    order["line_items"] = serde_json::json!([{
        "id": 1, "sku": "IPOD2008RED", "title": "iPod red", "quantity": 2, "current_quantity": 2,
        "price": "120.00", "discount_allocations": [],
        "tax_lines": [{"title": "GB VAT", "rate": 0.2, "price": "40.00"}]
    }]);
    let draft = draft_of(0, &order).unwrap_or_else(|e| panic!("{e}"));
    let red = draft
        .lines
        .iter()
        .find(|l| l.sku.as_str() == "IPOD2008RED")
        .unwrap_or_else(|| panic!("no line"));
    assert_eq!((red.quantity, red.unit_price), (2, dec("100.00")));
    assert_eq!(red.taxes, vec!["UK VAT 20%".to_owned()]);
}

/// £2.49 with 20 % VAT included: 0.42 VAT in the shop, 2.07 net; the ERP taxes 2.07 at
/// 20 % itself (0.41) and would book 2.48. The rounding line keeps the shop's 2.49.
#[test]
fn a_tax_inclusive_total_is_kept_to_the_minor_unit_by_a_rounding_line() {
    let mut order = documented();
    to_gb(&mut order);
    order["taxes_included"] = true.into();
    order["line_items"] = serde_json::json!([{
        "id": 1, "sku": "IPOD2008RED", "title": "iPod red", "quantity": 1, "current_quantity": 1,
        "price": "2.49", "discount_allocations": [],
        "tax_lines": [{"title": "GB VAT", "rate": 0.2, "price": "0.42"}]
    }]);
    order["shipping_lines"] = serde_json::json!([]);
    let draft = draft_of(0, &order).unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<(String, String, usize)> = draft
        .lines
        .iter()
        .map(|l| (l.sku.to_string(), l.unit_price.to_string(), l.taxes.len()))
        .collect();
    assert_eq!(
        lines,
        [
            ("IPOD2008RED".to_owned(), "2.07".to_owned(), 1),
            ("ROUNDING".to_owned(), "0.01".to_owned(), 0)
        ]
    );
    // Where the ERP's tax comes out as the shop's, the line is there at 0.00 (a later
    // amendment may need to reprice it, and cannot add it).
    order["line_items"][0]["price"] = "2.40".into();
    order["line_items"][0]["tax_lines"][0]["price"] = "0.40".into();
    let draft = draft_of(0, &order).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        draft
            .lines
            .last()
            .map(|l| (l.sku.as_str(), l.unit_price.to_string())),
        Some(("ROUNDING", "0.00".to_owned()))
    );
    // A tax the shop did not charge at the mapped rate is no rounding: a person sees it.
    order["line_items"][0]["tax_lines"][0]["price"] = "0.10".into();
    let error = draft_of(0, &order).err().map(|e| e.kind);
    assert_eq!(error.as_deref(), Some("tax_differs"));
}

/// Tax on top, two lines of 0.03 at 20 %: Shopify rounds each line's 0.006 up to 0.01
/// (0.02 in all), Tryton the sale's 0.012 down to 0.01. The rounding line keeps the cent.
#[test]
fn a_tax_exclusive_order_keeps_the_shop_s_per_line_tax_rounding() {
    let mut order = documented();
    to_gb(&mut order);
    let line = |id: u32| {
        serde_json::json!({
            "id": id, "sku": "WOOL-SOCKS", "title": "Socks", "quantity": 1, "current_quantity": 1,
            "price": "0.03", "discount_allocations": [],
            "tax_lines": [{"title": "GB VAT", "rate": 0.2, "price": "0.01"}]
        })
    };
    order["line_items"] = serde_json::json!([line(1), line(2)]);
    order["shipping_lines"] = serde_json::json!([]);
    let draft = draft_of(0, &order).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        draft
            .lines
            .last()
            .map(|l| (l.sku.as_str(), l.unit_price.to_string())),
        Some(("ROUNDING", "0.01".to_owned()))
    );
}

/// 3 x £12 incl. £6 VAT edited down to 1 was sent as £6 net (the whole £6 taken off the
/// £12 left); 10 -> 1 as a negative price. The tax lines are for the ordered quantity.
#[test]
fn an_edit_down_keeps_the_tax_of_the_units_left() {
    let mut order = documented();
    to_gb(&mut order);
    order["taxes_included"] = true.into();
    for (ordered, tax) in [(3, "6.00"), (10, "20.00")] {
        order["line_items"] = serde_json::json!([{
            "id": 1, "sku": "IPOD2008RED", "title": "iPod red", "quantity": ordered,
            "current_quantity": 1, "price": "12.00", "discount_allocations": [],
            "tax_lines": [{"title": "GB VAT", "rate": 0.2, "price": tax}]
        }]);
        let draft = draft_of(0, &order).unwrap_or_else(|e| panic!("{e}"));
        let red = draft
            .lines
            .iter()
            .find(|l| l.sku.as_str() == "IPOD2008RED")
            .unwrap_or_else(|| panic!("no line"));
        assert_eq!(
            (red.quantity, red.unit_price),
            (1, dec("10.00")),
            "{ordered} -> 1"
        );
    }
}

#[test]
fn a_tax_above_the_discounted_price_is_refused_not_sent_negative() {
    let mut order = documented();
    to_gb(&mut order);
    order["taxes_included"] = true.into();
    order["line_items"] = serde_json::json!([{
        "id": 1, "sku": "IPOD2008RED", "title": "iPod red", "quantity": 1, "current_quantity": 1,
        "price": "12.00", "discount_allocations": [{"amount": "10.50"}],
        "tax_lines": [{"title": "GB VAT", "rate": 0.2, "price": "2.00"}]
    }]);
    let error = draft_of(0, &order)
        .err()
        .unwrap_or_else(|| panic!("a negative net price was accepted"));
    assert!(error.message.contains("tax 2.00"), "{}", error.message);
}

#[test]
fn a_company_on_the_invoice_address_makes_a_business_customer() {
    let mut order = documented();
    order["billing_address"]["company"] = "Norman Trading LLC".into();
    let draft = draft_of(0, &order).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(draft.customer.name, "Norman Trading LLC");
    assert_eq!(
        draft.customer.invoice_address.name, "Bob Norman",
        "the person stays the contact"
    );
}

#[test]
fn a_missing_postcode_where_the_country_needs_one_names_the_field() {
    let mut order = documented();
    order["shipping_address"]["zip"] = serde_json::Value::Null;
    let error = draft_of(0, &order)
        .err()
        .unwrap_or_else(|| panic!("expected a refusal"));
    assert_eq!(error.kind, "invalid_payload");
    assert!(
        error.message.starts_with("shipping_address.zip"),
        "{}",
        error.message
    );
}
