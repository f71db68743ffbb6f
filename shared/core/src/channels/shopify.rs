//! Shopify's order payload (the REST order resource, which is the body of the `orders/*`
//! webhooks) into the canonical order. Every error names the JSON path of the bad field.

use rust_decimal::Decimal;
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::json::from_json;
use crate::error::ParseError;
use crate::model::ids::{ChannelId, CountryCode, CurrencyCode, Email, ExternalOrderId, Sku};
use crate::model::order::{
    Address, ChannelOrder, Charge, ChargeKind, Customer, OrderLine, ShippingLine, TaxLine,
};

/// Shopify sends money as decimal strings; a few API versions and apps send numbers.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Amount {
    Text(String),
    Number(serde_json::Number),
}

impl Amount {
    fn parse(&self, field: &str) -> Result<Decimal, ParseError> {
        let text = match self {
            Amount::Text(text) => text.clone(),
            Amount::Number(number) => number.to_string(),
        };
        super::json::amount(&text, field)
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Id {
    Number(u64),
    Text(String),
}

impl Id {
    fn text(&self) -> String {
        match self {
            Id::Number(n) => n.to_string(),
            Id::Text(t) => t.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct RawOrder {
    id: Id,
    name: Option<String>,
    email: Option<String>,
    contact_email: Option<String>,
    currency: String,
    updated_at: Option<String>,
    created_at: Option<String>,
    #[serde(default)]
    taxes_included: bool,
    cancelled_at: Option<String>,
    customer: Option<RawCustomer>,
    billing_address: Option<RawAddress>,
    shipping_address: Option<RawAddress>,
    line_items: Vec<RawLine>,
    #[serde(default)]
    shipping_lines: Vec<RawShippingLine>,
    #[serde(default)]
    refunds: Vec<RawRefund>,
    /// The location that took the order (point of sale).
    location_id: Option<Id>,
    #[serde(default)]
    fulfillments: Vec<RawFulfillment>,
    /// Extra costs of an international parcel that are neither duties nor taxes (API
    /// 2023-04 on); REST gives their totals only ("Additional fees fields for Orders",
    /// shopify.dev/changelog/additional-fees-fields-for-orders). The original, as duties: a
    /// fee refunded later is the refund's to credit, not the sale's to drop (both would pay
    /// it back twice).
    original_total_additional_fees_set: Option<RawMoneySet>,
}

#[derive(Debug, Deserialize)]
struct RawRefund {
    id: Option<Id>,
    created_at: Option<String>,
    #[serde(default)]
    refund_line_items: Vec<RawRefundLine>,
}

#[derive(Debug, Deserialize)]
struct RawRefundLine {
    line_item_id: Id,
    quantity: u32,
    restock_type: Option<crate::model::refund::RestockType>,
    subtotal: Option<Amount>,
    subtotal_set: Option<RawMoneySet>,
    total_tax: Option<Amount>,
    total_tax_set: Option<RawMoneySet>,
}

#[derive(Debug, Deserialize)]
struct RawFulfillment {
    status: Option<String>,
    created_at: Option<String>,
    #[serde(default)]
    line_items: Vec<RawFulfilledLine>,
}

#[derive(Debug, Deserialize)]
struct RawFulfilledLine {
    id: Id,
    quantity: u32,
}

#[derive(Debug, Deserialize)]
struct RawCustomer {
    email: Option<String>,
    first_name: Option<String>,
    last_name: Option<String>,
    phone: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawAddress {
    first_name: Option<String>,
    last_name: Option<String>,
    name: Option<String>,
    company: Option<String>,
    address1: Option<String>,
    address2: Option<String>,
    city: Option<String>,
    zip: Option<String>,
    country_code: Option<String>,
    phone: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawLine {
    id: Id,
    sku: Option<String>,
    #[serde(default)]
    gift_card: bool,
    /// Present only on tips.
    tip_payment_gateway: Option<String>,
    #[serde(default)]
    duties: Vec<RawDuty>,
    title: Option<String>,
    name: Option<String>,
    quantity: u32,
    /// After order edits: what is left of the line (0 when removed).
    current_quantity: Option<u32>,
    price: Amount,
    #[serde(default)]
    discount_allocations: Vec<RawDiscountAllocation>,
    #[serde(default)]
    tax_lines: Vec<RawTaxLine>,
}

#[derive(Debug, Deserialize)]
struct RawDuty {
    price_set: Option<RawMoneySet>,
}

#[derive(Debug, Deserialize)]
struct RawShippingLine {
    title: Option<String>,
    code: Option<String>,
    price: Amount,
    #[serde(default)]
    discount_allocations: Vec<RawDiscountAllocation>,
    #[serde(default)]
    tax_lines: Vec<RawTaxLine>,
}

#[derive(Debug, Deserialize)]
struct RawTaxLine {
    title: Option<String>,
    rate: Option<Amount>,
    price: Amount,
}

#[derive(Debug, Deserialize)]
struct RawDiscountAllocation {
    amount: Amount,
}

/// Just enough of an order to route it: its id. Used where the rest may not parse.
#[derive(Debug, Deserialize)]
struct RawOrderId {
    id: Id,
}

pub fn order_id(body: &[u8]) -> Result<ExternalOrderId, ParseError> {
    let raw: RawOrderId = from_json(body)?;
    ExternalOrderId::parse(&raw.id.text()).map_err(|e| e.within("id"))
}

pub fn parse_order(channel: &ChannelId, body: &[u8]) -> Result<ChannelOrder, ParseError> {
    let raw: RawOrder = from_json(body)?;
    let external_id =
        ExternalOrderId::parse(&raw.id.text()).map_err(|e| ParseError::new("id", e.reason))?;
    let currency =
        CurrencyCode::parse(&raw.currency).map_err(|e| ParseError::new("currency", e.reason))?;
    let updated_at = raw
        .updated_at
        .as_deref()
        .or(raw.created_at.as_deref())
        .ok_or_else(|| ParseError::new("updated_at", "is missing (and so is created_at)"))
        .and_then(|text| {
            OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
                ParseError::new("updated_at", format!("{text:?} is not an RFC 3339 time"))
            })
        })?;
    let email = optional_email(
        raw.email.as_deref().or(raw.contact_email.as_deref()),
        "email",
    )?;
    let customer = raw
        .customer
        .map(|c| -> Result<Customer, ParseError> {
            Ok(Customer {
                email: optional_email(c.email.as_deref(), "customer.email")?,
                first_name: non_empty(c.first_name),
                last_name: non_empty(c.last_name),
                phone: non_empty(c.phone),
            })
        })
        .transpose()?;
    let billing_address = raw
        .billing_address
        .map(|a| address(a, "billing_address"))
        .transpose()?;
    let shipping_address = raw
        .shipping_address
        .map(|a| address(a, "shipping_address"))
        .transpose()?;
    if raw.line_items.is_empty() {
        return Err(ParseError::new("line_items", "the order has no lines"));
    }
    let cancelled_at = raw.cancelled_at.clone();
    // current_quantity drops for edits and for refunds alike. A unit refunded after it was
    // fulfilled (returned, or kept by the customer) stays sold: the return flow books its
    // return and credit. A unit refunded before fulfilment (restock type `cancel`, or
    // `no_restock` beyond what was fulfilled) leaves the sale, as an edit does, so it is
    // neither shipped nor credited on its own.
    let (mut refunded, refunded_before_fulfilment) =
        refunds_by_line(&raw.refunds, &raw.fulfillments, &currency)?;
    // Duties stay charged whatever becomes of their line: a refund that gives them back is
    // the refund's to credit (as additional fees).
    let mut duties = Decimal::ZERO;
    for (index, line) in raw.line_items.iter().enumerate() {
        for (number, duty) in line.duties.iter().enumerate() {
            duties += shop_amount(
                duty.price_set.as_ref(),
                None,
                &format!("line_items[{index}].duties[{number}].price"),
            )?;
        }
    }
    let kept: Vec<(usize, RawLine, LineRefunds)> = raw
        .line_items
        .into_iter()
        .enumerate()
        .map(|(index, mut line)| {
            let refunds = refunded.remove(&line.id.text()).unwrap_or_default();
            if let Some(current) = line.current_quantity {
                line.current_quantity = Some(
                    current
                        .saturating_add(refunds.after_fulfilment)
                        .min(line.quantity),
                );
            }
            (index, line, refunds)
        })
        .filter(|(_, line, _)| line.current_quantity != Some(0))
        .collect();
    let (lines, mut charges) = lines_and_charges(kept, &currency)?;
    if !duties.is_zero() {
        charges.push(Charge {
            kind: ChargeKind::Duty,
            title: "Duties".to_owned(),
            amount: duties,
            taxes: Vec::new(),
        });
    }
    let additional_fees = shop_amount(
        raw.original_total_additional_fees_set.as_ref(),
        None,
        "original_total_additional_fees",
    )?;
    if !additional_fees.is_zero() {
        charges.push(Charge {
            kind: ChargeKind::Fee,
            title: "Additional fees".to_owned(),
            amount: non_negative(additional_fees, "original_total_additional_fees_set")?,
            taxes: Vec::new(),
        });
    }
    if lines.is_empty() && charges.is_empty() && cancelled_at.is_none() {
        return Err(ParseError::new(
            "line_items",
            "every line was removed from the order",
        ));
    }
    let shipping_lines = raw
        .shipping_lines
        .into_iter()
        .enumerate()
        .map(|(index, line)| {
            let field = format!("shipping_lines[{index}]");
            Ok(ShippingLine {
                title: non_empty(line.title).unwrap_or_else(|| "Shipping".to_owned()),
                code: non_empty(line.code),
                price: non_negative(
                    line.price.parse(&format!("{field}.price"))?,
                    &format!("{field}.price"),
                )?,
                discount: discounts(&line.discount_allocations, &field)?,
                taxes: taxes(&line.tax_lines, &field)?,
            })
        })
        .collect::<Result<Vec<_>, ParseError>>()?;
    Ok(ChannelOrder {
        channel: channel.clone(),
        name: non_empty(raw.name).unwrap_or_else(|| format!("#{external_id}")),
        external_id,
        currency,
        updated_at,
        email,
        customer,
        billing_address,
        shipping_address,
        lines,
        shipping_lines,
        taxes_included: raw.taxes_included,
        cancelled: cancelled_at.is_some(),
        location: raw.location_id.map(|id| id.text()),
        charges,
        refunded_before_fulfilment,
    })
}

/// What the order's refunds took from one of its lines.
#[derive(Debug, Default)]
struct LineRefunds {
    /// Units refunded after they were fulfilled: they stay sold (the return flow credits them).
    after_fulfilment: u32,
    /// Units refunded before fulfilment: they leave the sale, with the refund's own amounts.
    before_fulfilment: u32,
    subtotal: Decimal,
    tax: Decimal,
    /// Every refund line behind `before_fulfilment` gave its amounts.
    priced: bool,
}

/// Per order line: the refunded units that had been fulfilled, and those refunded before
/// fulfilment with what the refunds said they were worth; and per refund, the units it took
/// off the sale. Refunds are read in the order they were made, each against the fulfilments
/// made before it, so a later dispatch never turns an earlier refund into one after dispatch.
/// Returns were fulfilled; `cancel` units were not; `no_restock` and unknown types were as
/// far as the line's fulfilled units reach beyond those already refunded. The deprecated
/// `legacy_restock` ("restocked, without identifying return or cancelation"; not accepted on
/// new refunds since restock types came in) is read as returned, as return-sync reads it:
/// only refunds from before 2019 carry it, of orders long dispatched.
fn refunds_by_line(
    refunds: &[RawRefund],
    fulfillments: &[RawFulfillment],
    currency: &CurrencyCode,
) -> Result<
    (
        std::collections::HashMap<String, LineRefunds>,
        crate::model::order::RefundedBeforeFulfilment,
    ),
    ParseError,
> {
    use crate::model::refund::RestockType;
    use std::collections::HashMap;
    let returned = |restock: Option<RestockType>| {
        matches!(
            restock,
            Some(RestockType::Return | RestockType::LegacyRestock)
        )
    };
    let made = |at: Option<&String>, field: String| {
        at.map(|at| {
            OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                .map_err(|e| ParseError::new(field, format!("not an RFC 3339 time: {e}")))
        })
        .transpose()
    };
    let mut shipped = Vec::new();
    for (index, fulfillment) in fulfillments.iter().enumerate() {
        if matches!(fulfillment.status.as_deref(), Some("success") | None) {
            let at = made(
                fulfillment.created_at.as_ref(),
                format!("fulfillments[{index}].created_at"),
            )?;
            shipped.push((at, fulfillment));
        }
    }
    let mut chronological = Vec::with_capacity(refunds.len());
    for (index, refund) in refunds.iter().enumerate() {
        let at = made(
            refund.created_at.as_ref(),
            format!("refunds[{index}].created_at"),
        )?;
        chronological.push((at, index, refund));
    }
    // Undated refunds come after the dated ones, in the list's order (oldest first).
    chronological.sort_by_key(|(at, index, _)| (at.is_none(), *at, *index));
    let mut by_line: HashMap<String, LineRefunds> = HashMap::new();
    let mut split = crate::model::order::RefundedBeforeFulfilment::new();
    for (at, index, refund) in chronological {
        // Units of the line fulfilled when this refund was made (an undated one counts).
        let fulfilled_by_then = |line: &str| -> u32 {
            shipped
                .iter()
                .filter(|(made, _)| match (made, at) {
                    (Some(made), Some(at)) => *made <= at,
                    _ => true,
                })
                .flat_map(|(_, f)| &f.line_items)
                .filter(|l| l.id.text() == line)
                .map(|l| l.quantity)
                .sum()
        };
        let taken = refund
            .id
            .as_ref()
            .map(|id| split.entry(id.text()).or_default());
        let mut taken_here: HashMap<String, u32> = HashMap::new();
        // Returns first: they take up fulfilled units before kept ones do.
        let lines = &refund.refund_line_items;
        let order = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| returned(l.restock_type))
            .chain(
                lines
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| !returned(l.restock_type)),
            );
        for (item, line) in order {
            let id = line.line_item_id.text();
            let tally = by_line.entry(id.clone()).or_default();
            let before = match line.restock_type.unwrap_or(RestockType::NoRestock) {
                RestockType::Return | RestockType::LegacyRestock => 0,
                RestockType::Cancel => line.quantity,
                RestockType::NoRestock | RestockType::Unknown => {
                    let open = fulfilled_by_then(&id).saturating_sub(tally.after_fulfilment);
                    line.quantity - line.quantity.min(open)
                }
            };
            tally.after_fulfilment += line.quantity - before;
            if before == 0 {
                continue;
            }
            *taken_here.entry(id.clone()).or_default() += before;
            let field = format!("refunds[{index}].refund_line_items[{item}]");
            let has_amounts = (line.subtotal_set.is_some() || line.subtotal.is_some())
                && (line.total_tax_set.is_some() || line.total_tax.is_some());
            let share = |amount: Decimal| {
                currency.round(amount * Decimal::from(before) / Decimal::from(line.quantity))
            };
            let subtotal = shop_amount(
                line.subtotal_set.as_ref(),
                line.subtotal.as_ref(),
                &format!("{field}.subtotal"),
            )?;
            let tax = shop_amount(
                line.total_tax_set.as_ref(),
                line.total_tax.as_ref(),
                &format!("{field}.total_tax"),
            )?;
            tally.priced = (tally.before_fulfilment == 0 || tally.priced) && has_amounts;
            tally.before_fulfilment += before;
            tally.subtotal += share(subtotal);
            tally.tax += share(tax);
        }
        if let Some(taken) = taken {
            taken.extend(taken_here);
        }
    }
    Ok((by_line, split))
}

/// The product lines, and the lines that are charges: gift cards sold, tips, lines with no
/// SKU (custom items).
fn lines_and_charges(
    kept: Vec<(usize, RawLine, LineRefunds)>,
    currency: &CurrencyCode,
) -> Result<(Vec<OrderLine>, Vec<Charge>), ParseError> {
    let mut lines = Vec::with_capacity(kept.len());
    let mut charges = Vec::new();
    for (index, line, refunds) in kept {
        let field = format!("line_items[{index}]");
        let kind = if line.gift_card {
            Some(ChargeKind::GiftCard)
        } else if line.tip_payment_gateway.is_some() {
            Some(ChargeKind::Tip)
        } else if line.sku.as_deref().is_none_or(|s| s.trim().is_empty()) {
            Some(ChargeKind::Custom)
        } else {
            None
        };
        let amounts = line_amounts(&line, &refunds, &field, currency)?;
        match kind {
            None => lines.push(OrderLine {
                line_id: line.id.text(),
                sku: Sku::parse(line.sku.as_deref().unwrap_or_default().trim())
                    .map_err(|e| ParseError::new(format!("{field}.sku"), e.reason))?,
                title: amounts.title,
                quantity: amounts.quantity,
                unit_price: amounts.unit_price,
                discount: amounts.discount,
                taxes: amounts.taxes,
            }),
            Some(kind) => charges.push(Charge {
                kind,
                amount: amounts.unit_price * Decimal::from(amounts.quantity) - amounts.discount,
                title: amounts.title,
                taxes: amounts.taxes,
            }),
        }
    }
    Ok((lines, charges))
}

/// A line's amounts as the sale holds them: what is left of it after edits, its price, and
/// its discounts and taxes for what is left.
struct LineAmounts {
    title: String,
    quantity: u32,
    unit_price: Decimal,
    discount: Decimal,
    taxes: Vec<TaxLine>,
}

fn line_amounts(
    line: &RawLine,
    refunds: &LineRefunds,
    field: &str,
    currency: &CurrencyCode,
) -> Result<LineAmounts, ParseError> {
    let title = non_empty(line.title.clone())
        .or(non_empty(line.name.clone()))
        .unwrap_or_else(|| "(untitled)".to_owned());
    if line.quantity == 0 {
        return Err(ParseError::new(
            format!("{field}.quantity"),
            "must be at least 1",
        ));
    }
    let quantity = line.current_quantity.unwrap_or(line.quantity);
    let unit_price = non_negative(
        line.price.parse(&format!("{field}.price"))?,
        &format!("{field}.price"),
    )?;
    let mut discount = discounts(&line.discount_allocations, field)?;
    let mut taxes = taxes(&line.tax_lines, field)?;
    let mut ordered = line.quantity;
    // Units refunded before fulfilment leave at the refund's own amounts, so the sale keeps
    // exactly what the shop still charges (its current total), to the minor unit. Amounts
    // beyond the line's (more discount or tax than it has) cannot be taken off it: the
    // units then leave pro rata, and the totals' check asks a person about the difference.
    let refunded = refunds.before_fulfilment.min(ordered);
    let discount_refunded = unit_price * Decimal::from(refunded) - refunds.subtotal;
    let line_tax: Decimal = taxes.iter().map(|t| t.amount).sum();
    if refunds.priced && refunded > 0 && discount_refunded <= discount && refunds.tax <= line_tax {
        discount -= discount_refunded;
        take_tax(&mut taxes, refunds.tax, currency);
        ordered -= refunded;
    }
    if quantity < ordered {
        // Allocations and tax lines are for the ordered quantity; what was edited away takes
        // its share of both.
        let kept = |amount: Decimal| {
            currency.round(amount * Decimal::from(quantity) / Decimal::from(ordered))
        };
        discount = kept(discount);
        for tax in &mut taxes {
            tax.amount = kept(tax.amount);
        }
    }
    Ok(LineAmounts {
        title,
        quantity,
        unit_price,
        discount,
        taxes,
    })
}

/// Takes `refunded` tax (at most the lines' total) off a line's tax lines, each its share,
/// the last the remainder.
fn take_tax(taxes: &mut [TaxLine], refunded: Decimal, currency: &CurrencyCode) {
    let total: Decimal = taxes.iter().map(|t| t.amount).sum();
    if total.is_zero() {
        return;
    }
    let mut left = refunded;
    let count = taxes.len();
    for (index, tax) in taxes.iter_mut().enumerate() {
        let part = if index + 1 == count {
            left
        } else {
            currency.round(refunded * tax.amount / total).min(left)
        };
        let part = part.min(tax.amount);
        tax.amount -= part;
        left -= part;
    }
}

fn taxes(lines: &[RawTaxLine], field: &str) -> Result<Vec<TaxLine>, ParseError> {
    lines
        .iter()
        .enumerate()
        .map(|(index, tax)| {
            let name = format!("{field}.tax_lines[{index}]");
            Ok(TaxLine {
                title: non_empty(tax.title.clone()).unwrap_or_else(|| "Tax".to_owned()),
                rate: tax
                    .rate
                    .as_ref()
                    .map(|r| r.parse(&format!("{name}.rate")))
                    .transpose()?,
                amount: non_negative(
                    tax.price.parse(&format!("{name}.price"))?,
                    &format!("{name}.price"),
                )?,
            })
        })
        .collect()
}

fn discounts(allocations: &[RawDiscountAllocation], field: &str) -> Result<Decimal, ParseError> {
    allocations
        .iter()
        .enumerate()
        .try_fold(Decimal::ZERO, |sum, (index, allocation)| {
            let name = format!("{field}.discount_allocations[{index}].amount");
            Ok(sum + non_negative(allocation.amount.parse(&name)?, &name)?)
        })
}

fn address(raw: RawAddress, field: &str) -> Result<Address, ParseError> {
    let name = non_empty(raw.name)
        .or_else(|| {
            let joined = [raw.first_name.as_deref(), raw.last_name.as_deref()]
                .into_iter()
                .flatten()
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            non_empty(Some(joined))
        })
        .ok_or_else(|| ParseError::new(format!("{field}.name"), "the address has no name"))?;
    let street = [raw.address1, raw.address2]
        .into_iter()
        .filter_map(non_empty)
        .collect::<Vec<_>>()
        .join("\n");
    if street.is_empty() {
        return Err(ParseError::new(
            format!("{field}.address1"),
            "the address has no street",
        ));
    }
    let country = match non_empty(raw.country_code) {
        Some(code) => CountryCode::parse(&code)
            .map_err(|e| ParseError::new(format!("{field}.country_code"), e.reason))?,
        None => {
            return Err(ParseError::new(
                format!("{field}.country_code"),
                "is missing",
            ));
        }
    };
    Ok(Address {
        name,
        company: non_empty(raw.company),
        street,
        postal_code: non_empty(raw.zip),
        city: non_empty(raw.city),
        country,
        phone: non_empty(raw.phone),
    })
}

fn optional_email(value: Option<&str>, field: &str) -> Result<Option<Email>, ParseError> {
    match value.map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => Email::parse(text)
            .map(Some)
            .map_err(|e| ParseError::new(field, e.reason)),
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn non_negative(amount: Decimal, field: &str) -> Result<Decimal, ParseError> {
    if amount.is_sign_negative() && !amount.is_zero() {
        Err(ParseError::new(field, format!("{amount} is negative")))
    } else {
        Ok(amount)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let order =
            parse_order(&channel(), DISCOUNT_CODE.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
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
        let order = parse_order(&channel(), edited.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
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
        let order = parse_order(&channel(), returned.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
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
            let refund =
                parse_refund(body.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"));
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
}

#[derive(Debug, Deserialize)]
struct RawRefundBody {
    id: Id,
    order_id: Id,
    note: Option<String>,
    #[serde(default)]
    refund_line_items: Vec<RawRefundedItem>,
    #[serde(default)]
    refund_shipping_lines: Vec<RawRefundShipping>,
    #[serde(default)]
    order_adjustments: Vec<RawAdjustment>,
    #[serde(default)]
    transactions: Vec<RawTransaction>,
}

#[derive(Debug, Deserialize)]
struct RawRefundedItem {
    line_item_id: Id,
    quantity: u32,
    restock_type: Option<crate::model::refund::RestockType>,
    line_item: Option<RawRefundedLineItem>,
    subtotal_set: Option<RawMoneySet>,
    total_tax_set: Option<RawMoneySet>,
}

#[derive(Debug, Deserialize)]
struct RawRefundedLineItem {
    sku: Option<String>,
    /// null while nothing of the line is fulfilled.
    fulfillment_status: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawRefundShipping {
    subtotal_amount_set: Option<RawMoneySet>,
    tax_amount_set: Option<RawMoneySet>,
}

#[derive(Debug, Deserialize)]
struct RawMoneySet {
    shop_money: RawMoney,
}

#[derive(Debug, Deserialize)]
struct RawMoney {
    amount: Amount,
    currency_code: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawAdjustment {
    kind: String,
    amount: Amount,
    amount_set: Option<RawMoneySet>,
    /// A `shipping_refund` adjustment's tax (older versions' shipping refunds), negative.
    tax_amount: Option<Amount>,
    tax_amount_set: Option<RawMoneySet>,
}

#[derive(Debug, Deserialize)]
struct RawTransaction {
    kind: String,
    status: Option<String>,
    amount: Amount,
    currency: Option<String>,
}

/// A money set's shop amount, else the plain (shop currency) amount beside it.
fn shop_amount(
    set: Option<&RawMoneySet>,
    plain: Option<&Amount>,
    field: &str,
) -> Result<Decimal, ParseError> {
    match (set, plain) {
        (Some(set), _) => set
            .shop_money
            .amount
            .parse(&format!("{field}_set.shop_money.amount")),
        (None, Some(plain)) => plain.parse(field),
        (None, None) => Ok(Decimal::ZERO),
    }
}

/// A `refunds/create` body (the REST refund resource) into the canonical refund, in shop money.
pub fn parse_refund(body: &[u8]) -> Result<crate::model::refund::Refund, ParseError> {
    use crate::model::refund::{LineFulfilment, Paid, Refund, RefundedItem, RestockType};
    let raw: RawRefundBody = from_json(body)?;
    let order_id = ExternalOrderId::parse(&raw.order_id.text())
        .map_err(|e| ParseError::new("order_id", e.reason))?;
    let mut items = Vec::with_capacity(raw.refund_line_items.len());
    for (index, item) in raw.refund_line_items.iter().enumerate() {
        let field = format!("refund_line_items[{index}]");
        let sku = item
            .line_item
            .as_ref()
            .and_then(|l| l.sku.as_deref())
            .filter(|s| !s.trim().is_empty())
            .map(Sku::parse)
            .transpose()
            .map_err(|e| e.within(&field))?;
        if item.quantity == 0 {
            return Err(ParseError::new(
                format!("{field}.quantity"),
                "a refunded item of quantity 0",
            ));
        }
        items.push(RefundedItem {
            line_item_id: item.line_item_id.text(),
            sku,
            quantity: item.quantity,
            // Left out only by API versions older than restock types: money back, no goods.
            restock_type: item.restock_type.unwrap_or(RestockType::NoRestock),
            line_fulfilment: match item
                .line_item
                .as_ref()
                .map(|l| l.fulfillment_status.as_deref())
            {
                Some(None) => LineFulfilment::Unfulfilled,
                Some(Some("partial")) => LineFulfilment::Partial,
                Some(Some("fulfilled")) => LineFulfilment::Fulfilled,
                // Older values ("restocked") and a refund without its lines cannot say.
                _ => LineFulfilment::Unknown,
            },
            subtotal: non_negative(
                shop_amount(
                    item.subtotal_set.as_ref(),
                    None,
                    &format!("{field}.subtotal"),
                )?,
                &format!("{field}.subtotal_set"),
            )?,
            tax: non_negative(
                shop_amount(
                    item.total_tax_set.as_ref(),
                    None,
                    &format!("{field}.total_tax"),
                )?,
                &format!("{field}.total_tax_set"),
            )?,
        });
    }
    // Shipping refunded: `refund_shipping_lines` (2024-10 on), and beside them, as in every
    // version, a `shipping_refund` order adjustment "created automatically to account for"
    // it (shopify.dev/docs/api/admin-rest/latest/resources/refund): the lines when there are
    // any, the adjustments otherwise, never both. The adjustments' tax counts where the
    // lines carry none.
    let mut lines = (Decimal::ZERO, Decimal::ZERO);
    let mut lines_taxed = false;
    for (index, line) in raw.refund_shipping_lines.iter().enumerate() {
        lines.0 += shop_amount(
            line.subtotal_amount_set.as_ref(),
            None,
            &format!("refund_shipping_lines[{index}].subtotal_amount"),
        )?;
        lines_taxed |= line.tax_amount_set.is_some();
        lines.1 += shop_amount(
            line.tax_amount_set.as_ref(),
            None,
            &format!("refund_shipping_lines[{index}].tax_amount"),
        )?;
    }
    let mut adjusted = (Decimal::ZERO, Decimal::ZERO);
    let mut discrepancy = Decimal::ZERO;
    for (index, adjustment) in raw.order_adjustments.iter().enumerate() {
        let amount = shop_amount(
            adjustment.amount_set.as_ref(),
            Some(&adjustment.amount),
            &format!("order_adjustments[{index}].amount"),
        )?;
        if adjustment.kind == "shipping_refund" {
            // Negative: money going back. Its tax's sign is not documented; it goes with
            // the amount.
            let tax = shop_amount(
                adjustment.tax_amount_set.as_ref(),
                adjustment.tax_amount.as_ref(),
                &format!("order_adjustments[{index}].tax_amount"),
            )?;
            adjusted.0 -= amount;
            if amount.is_sign_negative() {
                adjusted.1 += tax.abs();
            } else if !amount.is_zero() {
                adjusted.1 -= tax.abs();
            }
        } else {
            discrepancy += amount;
        }
    }
    let (shipping, shipping_tax) = if raw.refund_shipping_lines.is_empty() {
        adjusted
    } else if lines_taxed {
        lines
    } else {
        (lines.0, adjusted.1)
    };
    let shop_currency = raw
        .refund_line_items
        .iter()
        .filter_map(|i| i.subtotal_set.as_ref())
        .chain(
            raw.order_adjustments
                .iter()
                .filter_map(|a| a.amount_set.as_ref()),
        )
        .chain(
            raw.refund_shipping_lines
                .iter()
                .filter_map(|l| l.subtotal_amount_set.as_ref()),
        )
        .find_map(|set| set.shop_money.currency_code.clone());
    let mut paid = Vec::new();
    let mut pending = 0;
    for (index, transaction) in raw.transactions.iter().enumerate() {
        // Only a successful refund moved money; a pending one has not yet, and failed or
        // errored ones never will.
        if transaction.kind != "refund" {
            continue;
        }
        match transaction.status.as_deref() {
            Some("success") => paid.push(Paid {
                amount: transaction
                    .amount
                    .parse(&format!("transactions[{index}].amount"))?,
                currency: transaction.currency.clone(),
            }),
            Some("pending") => pending += 1,
            _ => {}
        }
    }
    Ok(Refund {
        id: raw.id.text(),
        order_id,
        note: raw.note.filter(|n| !n.trim().is_empty()),
        items,
        shipping,
        shipping_tax,
        discrepancy,
        paid,
        pending,
        shop_currency,
    })
}
