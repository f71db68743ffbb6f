//! An order webhook (`orders/create`, `orders/updated`, …) into the canonical order, with
//! what its refunds and edits took off each line.

use rust_decimal::Decimal;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::raw::{
    RawAddress, RawDiscountAllocation, RawFulfillment, RawLine, RawOrder, RawOrderId, RawRefund,
    RawTaxLine, non_negative, shop_amount,
};
use crate::channels::json::from_json;
use crate::error::ParseError;
use crate::model::ids::{ChannelId, CountryCode, CurrencyCode, Email, ExternalOrderId, Sku};
use crate::model::order::{
    Address, ChannelOrder, Charge, ChargeKind, Customer, OrderLine, ShippingLine, TaxLine,
};

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
