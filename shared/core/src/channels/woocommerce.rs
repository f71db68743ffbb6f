//! WooCommerce's order payload (REST API v3 order resource, the body of the `order.*`
//! webhooks) into the canonical order. Errors name the JSON path of the bad field.

use rust_decimal::Decimal;
use serde::Deserialize;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::json::{amount, from_json};
use crate::error::ParseError;
use crate::model::ids::{ChannelId, CountryCode, CurrencyCode, Email, ExternalOrderId, Sku};
use crate::model::order::{
    Address, ChannelOrder, Charge, ChargeKind, Customer, OrderLine, OrderTopic, ShippingLine,
    TaxLine,
};

/// WooCommerce's webhook topic -> the canonical one; `None` for topics not routed.
pub fn topic(text: &str) -> Option<OrderTopic> {
    match text.trim() {
        "order.created" => Some(OrderTopic::Create),
        "order.updated" | "order.restored" => Some(OrderTopic::Updated),
        "order.deleted" => Some(OrderTopic::Cancelled),
        _ => None,
    }
}

#[derive(Debug, Deserialize)]
struct RawOrder {
    id: u64,
    number: Option<String>,
    status: String,
    currency: String,
    date_created_gmt: Option<String>,
    date_modified_gmt: Option<String>,
    billing: Option<RawAddress>,
    shipping: Option<RawAddress>,
    line_items: Vec<RawLine>,
    #[serde(default)]
    shipping_lines: Vec<RawShippingLine>,
    #[serde(default)]
    tax_lines: Vec<RawOrderTax>,
    #[serde(default)]
    fee_lines: Vec<RawFeeLine>,
}

/// A fee on the order (negative ones are discounts given as fees).
#[derive(Debug, Deserialize)]
struct RawFeeLine {
    name: Option<String>,
    total: String,
    #[serde(default)]
    taxes: Vec<RawLineTax>,
}

/// The order's taxes: what a line's `taxes[].id` refers to.
#[derive(Debug, Deserialize)]
struct RawOrderTax {
    rate_id: u64,
    rate_code: Option<String>,
    label: Option<String>,
    rate_percent: Option<f64>,
}

#[derive(Debug, Deserialize)]
struct RawLineTax {
    id: u64,
    total: String,
}

#[derive(Debug, Deserialize)]
struct RawAddress {
    first_name: Option<String>,
    last_name: Option<String>,
    company: Option<String>,
    address_1: Option<String>,
    address_2: Option<String>,
    city: Option<String>,
    postcode: Option<String>,
    country: Option<String>,
    email: Option<String>,
    phone: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawLine {
    id: u64,
    name: Option<String>,
    sku: Option<String>,
    quantity: u32,
    /// Before discounts, without tax (WooCommerce stores line amounts net of tax).
    subtotal: String,
    /// After discounts, without tax.
    total: String,
    #[serde(default)]
    taxes: Vec<RawLineTax>,
}

#[derive(Debug, Deserialize)]
struct RawShippingLine {
    method_title: Option<String>,
    method_id: Option<String>,
    total: String,
    #[serde(default)]
    taxes: Vec<RawLineTax>,
}

#[derive(Debug, Deserialize)]
struct RawOrderId {
    id: u64,
}

pub fn order_id(body: &[u8]) -> Result<ExternalOrderId, ParseError> {
    let raw: RawOrderId = from_json(body)?;
    ExternalOrderId::parse(&raw.id.to_string()).map_err(|e| e.within("id"))
}

/// WooCommerce's `_gmt` times carry no offset: they are UTC.
fn gmt_time(text: &str, field: &str) -> Result<OffsetDateTime, ParseError> {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    PrimitiveDateTime::parse(text, &format)
        .map(PrimitiveDateTime::assume_utc)
        .or_else(|_| OffsetDateTime::parse(text, &Rfc3339))
        .map_err(|_| ParseError::new(field, format!("{text:?} is not a GMT time")))
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn address(raw: &RawAddress, field: &str) -> Result<Option<Address>, ParseError> {
    let street = [raw.address_1.clone(), raw.address_2.clone()]
        .into_iter()
        .filter_map(non_empty)
        .collect::<Vec<_>>()
        .join("\n");
    if street.is_empty() {
        return Ok(None);
    }
    let name = [raw.first_name.clone(), raw.last_name.clone()]
        .into_iter()
        .filter_map(non_empty)
        .collect::<Vec<_>>()
        .join(" ");
    let company = non_empty(raw.company.clone());
    let name = non_empty(Some(name))
        .or_else(|| company.clone())
        .ok_or_else(|| ParseError::new(format!("{field}.first_name"), "the address has no name"))?;
    let country = non_empty(raw.country.clone())
        .ok_or_else(|| ParseError::new(format!("{field}.country"), "is missing"))
        .and_then(|c| {
            CountryCode::parse(&c)
                .map_err(|e| ParseError::new(format!("{field}.country"), e.reason))
        })?;
    Ok(Some(Address {
        name,
        company,
        street,
        postal_code: non_empty(raw.postcode.clone()),
        city: non_empty(raw.city.clone()),
        country,
        phone: non_empty(raw.phone.clone()),
    }))
}

/// A line's taxes, named by their rate code (`US-CA-STATE TAX`) from the order's tax lines.
fn taxes(raw: &RawOrder, taxes: &[RawLineTax], field: &str) -> Result<Vec<TaxLine>, ParseError> {
    taxes
        .iter()
        .enumerate()
        .map(|(index, tax)| {
            let order_tax = raw.tax_lines.iter().find(|t| t.rate_id == tax.id);
            let title = order_tax
                .and_then(|t| non_empty(t.rate_code.clone()).or_else(|| non_empty(t.label.clone())))
                .ok_or_else(|| {
                    ParseError::new(
                        format!("{field}.taxes[{index}].id"),
                        format!("tax rate {} is not among the order's tax_lines", tax.id),
                    )
                })?;
            Ok(TaxLine {
                title,
                rate: order_tax
                    .and_then(|t| t.rate_percent)
                    .and_then(|p| Decimal::from_f64_retain(p / 100.0))
                    .map(|r| r.round_dp(6)),
                amount: amount(&tax.total, &format!("{field}.taxes[{index}].total"))?,
            })
        })
        .collect()
}

pub fn parse_order(channel: &ChannelId, body: &[u8]) -> Result<ChannelOrder, ParseError> {
    let raw: RawOrder = from_json(body)?;
    let external_id = ExternalOrderId::parse(&raw.id.to_string()).map_err(|e| e.within("id"))?;
    let currency =
        CurrencyCode::parse(&raw.currency).map_err(|e| ParseError::new("currency", e.reason))?;
    let (version_field, version_text) = match (&raw.date_modified_gmt, &raw.date_created_gmt) {
        (Some(modified), _) => ("date_modified_gmt", modified.as_str()),
        (None, Some(created)) => ("date_created_gmt", created.as_str()),
        (None, None) => {
            return Err(ParseError::new(
                "date_modified_gmt",
                "is missing (and so is date_created_gmt)",
            ));
        }
    };
    let updated_at = gmt_time(version_text, version_field)?;
    let billing = raw
        .billing
        .as_ref()
        .map(|a| address(a, "billing"))
        .transpose()?
        .flatten();
    let shipping = raw
        .shipping
        .as_ref()
        .map(|a| address(a, "shipping"))
        .transpose()?
        .flatten();
    let email = match raw
        .billing
        .as_ref()
        .and_then(|b| non_empty(b.email.clone()))
    {
        Some(text) => {
            Some(Email::parse(&text).map_err(|e| ParseError::new("billing.email", e.reason))?)
        }
        None => None,
    };
    let customer = raw.billing.as_ref().map(|b| Customer {
        email: email.clone(),
        first_name: non_empty(b.first_name.clone()),
        last_name: non_empty(b.last_name.clone()),
        phone: non_empty(b.phone.clone()),
    });
    if raw.line_items.is_empty() {
        return Err(ParseError::new("line_items", "the order has no lines"));
    }
    let mut lines = Vec::with_capacity(raw.line_items.len());
    let mut charges = Vec::with_capacity(raw.fee_lines.len());
    for (index, fee) in raw.fee_lines.iter().enumerate() {
        let field = format!("fee_lines[{index}]");
        charges.push(Charge {
            kind: ChargeKind::Fee,
            title: non_empty(fee.name.clone()).unwrap_or_else(|| "Fee".to_owned()),
            amount: amount(&fee.total, &format!("{field}.total"))?,
            taxes: taxes(&raw, &fee.taxes, &field)?,
        });
    }
    for (index, line) in raw.line_items.iter().enumerate() {
        let field = format!("line_items[{index}]");
        let title = non_empty(line.name.clone()).unwrap_or_else(|| "(untitled)".to_owned());
        if line.quantity == 0 {
            continue;
        }
        let subtotal = amount(&line.subtotal, &format!("{field}.subtotal"))?;
        let total = amount(&line.total, &format!("{field}.total"))?;
        let Some(sku) = non_empty(line.sku.clone()) else {
            // A line with no SKU is a custom item: a charge, mapped per channel.
            charges.push(Charge {
                kind: ChargeKind::Custom,
                title,
                amount: total,
                taxes: taxes(&raw, &line.taxes, &field)?,
            });
            continue;
        };
        let sku =
            Sku::parse(&sku).map_err(|e| ParseError::new(format!("{field}.sku"), e.reason))?;
        lines.push(OrderLine {
            line_id: line.id.to_string(),
            sku,
            title,
            quantity: line.quantity,
            unit_price: subtotal / Decimal::from(line.quantity),
            discount: (subtotal - total).max(Decimal::ZERO),
            taxes: taxes(&raw, &line.taxes, &field)?,
        });
    }
    let shipping_lines = raw
        .shipping_lines
        .iter()
        .enumerate()
        .map(|(index, line)| {
            Ok(ShippingLine {
                title: non_empty(line.method_title.clone())
                    .unwrap_or_else(|| "Shipping".to_owned()),
                code: non_empty(line.method_id.clone()),
                price: amount(&line.total, &format!("shipping_lines[{index}].total"))?,
                discount: Decimal::ZERO,
                taxes: taxes(&raw, &line.taxes, &format!("shipping_lines[{index}]"))?,
            })
        })
        .collect::<Result<Vec<_>, ParseError>>()?;
    Ok(ChannelOrder {
        channel: channel.clone(),
        name: format!(
            "#{}",
            non_empty(raw.number).unwrap_or_else(|| external_id.to_string())
        ),
        external_id,
        currency,
        updated_at,
        email,
        customer,
        billing_address: billing,
        shipping_address: shipping,
        lines,
        shipping_lines,
        // Line and shipping totals in WooCommerce's order resource are always net of tax.
        taxes_included: false,
        cancelled: matches!(raw.status.as_str(), "cancelled" | "trash"),
        location: None,
        charges,
        // Its refunds are not read yet: none is taken off the sale.
        refunded_before_fulfilment: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOCUMENTED: &str = include_str!(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests/fixtures/woocommerce-order-created.json"
    ));

    fn channel() -> ChannelId {
        ChannelId::parse("woo-shop").unwrap_or_else(|e| panic!("{e}"))
    }

    fn with_skus() -> String {
        let mut order: serde_json::Value = serde_json::from_str(DOCUMENTED).unwrap_or_default();
        order["line_items"][0]["sku"] = serde_json::json!("WOOL-SOCKS");
        order.to_string()
    }

    #[test]
    fn the_documented_order_parses_into_the_canonical_model() {
        let order =
            parse_order(&channel(), with_skus().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(order.external_id.as_str(), "727");
        assert_eq!(order.name, "#727");
        assert_eq!(order.currency.as_str(), "USD");
        assert_eq!(
            order.updated_at,
            time::macros::datetime!(2017-03-22 19:28:08 UTC)
        );
        let lines: Vec<_> = order
            .lines
            .iter()
            .map(|l| (l.sku.as_str(), l.quantity, l.unit_price))
            .collect();
        assert_eq!(
            lines,
            vec![
                ("WOOL-SOCKS", 2, Decimal::new(3, 0)),
                ("Bar3", 1, Decimal::new(12, 0))
            ]
        );
        assert_eq!(order.shipping_lines[0].price, Decimal::new(1000, 2));
        assert_eq!(
            order.customer_email().map(Email::as_str),
            Some("john.doe@example.com")
        );
        assert_eq!(
            order
                .shipping_address
                .map(|a| a.country.to_string())
                .as_deref(),
            Some("US")
        );
        assert!(!order.cancelled);
    }

    #[test]
    fn a_line_without_sku_and_fee_lines_are_charges() {
        let mut order: serde_json::Value = serde_json::from_str(DOCUMENTED).unwrap_or_default();
        order["fee_lines"] = serde_json::json!([
            {"name": "Gift wrap", "total": "3.50", "taxes": []},
            {"name": "Loyalty discount", "total": "-2.00", "taxes": []}
        ]);
        let order =
            parse_order(&channel(), order.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let charges: Vec<(ChargeKind, &str, String)> = order
            .charges
            .iter()
            .map(|c| (c.kind, c.title.as_str(), c.amount.to_string()))
            .collect();
        assert_eq!(
            charges[0],
            (ChargeKind::Fee, "Gift wrap", "3.50".to_owned())
        );
        assert_eq!(
            charges[1],
            (ChargeKind::Fee, "Loyalty discount", "-2.00".to_owned())
        );
        assert_eq!(charges[2].0, ChargeKind::Custom);
        assert_eq!(charges[2].1, "Woo Single #1");
    }

    #[test]
    fn topics_map_to_the_canonical_ones() {
        assert_eq!(topic("order.created"), Some(OrderTopic::Create));
        assert_eq!(topic("order.deleted"), Some(OrderTopic::Cancelled));
        assert_eq!(topic("product.updated"), None);
    }
}
