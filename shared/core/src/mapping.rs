//! Canonical order -> the sale the ERP should hold: ERP SKUs after aliases, net unit prices
//! after discounts (to the currency's minor unit), shipping as a service line, the customer
//! and addresses.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::config::{Bundle, ChannelConfig, ErpConfig, TaxMiss, TaxRounding};
use crate::error::{ParseError, SyncError};
use crate::model::ids::{ChannelId, CountryCode, CurrencyCode, Email, ExternalOrderId, Sku};
use crate::model::order::{Address, ChannelOrder, TaxLine};
use std::collections::BTreeSet;

/// The ERP sale's `reference`: the channel and the channel's order id. It is how a sale is
/// found again, so it must never change for an order.
pub fn sale_reference(channel: &ChannelId, order: &ExternalOrderId) -> String {
    format!("{channel}/{order}")
}

/// A refund's return sale's `reference`: its order's sale reference and the refund id.
pub fn return_reference(order_reference: &str, refund_id: &str) -> String {
    format!("{order_reference}/refund/{refund_id}")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleDraft {
    pub reference: String,
    pub description: String,
    pub currency: CurrencyCode,
    pub customer: CustomerDraft,
    /// ERP carrier (party name) for the shop's delivery method, when the channel maps them.
    pub carrier: Option<String>,
    pub lines: Vec<SaleLineDraft>,
}

impl SaleDraft {
    /// The ERP SKUs the sale needs, without repeats, in line order.
    pub fn skus(&self) -> Vec<Sku> {
        let mut skus: Vec<Sku> = Vec::new();
        for line in &self.lines {
            if !skus.contains(&line.sku) {
                skus.push(line.sku.clone());
            }
        }
        skus
    }

    /// The net total of the lines (before the ERP adds its taxes).
    pub fn total(&self) -> Decimal {
        self.lines
            .iter()
            .map(|l| l.unit_price * Decimal::from(l.quantity))
            .sum()
    }

    /// The ERP taxes the sale needs, without repeats.
    pub fn tax_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for name in self.lines.iter().flat_map(|l| &l.taxes) {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        names
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CustomerDraft {
    pub email: Option<Email>,
    pub name: String,
    pub phone: Option<String>,
    pub invoice_address: Address,
    pub shipment_address: Address,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleLineDraft {
    pub sku: Sku,
    pub description: String,
    pub quantity: u32,
    /// Net of discounts, and of tax when the shop's prices include it.
    pub unit_price: Decimal,
    /// ERP taxes (names) on this line.
    pub taxes: Vec<String>,
}

pub fn sale_draft(
    order: &ChannelOrder,
    channel: &ChannelConfig,
    erp: &ErpConfig,
) -> Result<SaleDraft, SyncError> {
    // Taxes follow the goods: the shipping address, else the billing address, else the
    // configured customer's (a point of sale's own address).
    let customer = customer_draft(order, channel)?;
    let destination = Some(&customer.shipment_address.country);
    let mut lines = Vec::with_capacity(order.lines.len() + order.shipping_lines.len());
    for (index, line) in order.lines.iter().enumerate() {
        let field = format!("line_items[{index}]");
        let what = format!("line {:?} ({})", line.title, line.sku);
        let taxes = erp_taxes(channel, order, &line.taxes, destination, &what)?;
        let net = net_amount(
            order,
            channel,
            line.unit_price * Decimal::from(line.quantity),
            line.discount,
            &line.taxes,
            &what,
        )
        .map_err(|reason| ParseError::new(format!("{field}.discount_allocations"), reason))?;
        match channel.bundles.get(&line.sku) {
            Some(bundle) => {
                let shares = bundle_shares(net, bundle, &order.currency);
                for (component, share) in bundle.components.iter().zip(shares) {
                    let quantity = line.quantity.saturating_mul(component.quantity);
                    for (units, unit_price) in lines_for_total(share, quantity, &order.currency) {
                        lines.push(SaleLineDraft {
                            sku: component.sku.clone(),
                            description: format!("{} ({})", line.title, component.sku),
                            quantity: units,
                            unit_price,
                            taxes: taxes.clone(),
                        });
                    }
                }
            }
            None => {
                let sku = channel.erp_sku(&line.sku).clone();
                for (quantity, unit_price) in lines_for_total(net, line.quantity, &order.currency) {
                    lines.push(SaleLineDraft {
                        sku: sku.clone(),
                        description: line.title.clone(),
                        quantity,
                        unit_price,
                        taxes: taxes.clone(),
                    });
                }
            }
        }
    }
    let mut carrier = None;
    for (index, shipping) in order.shipping_lines.iter().enumerate() {
        let field = format!("shipping_lines[{index}]");
        let what = format!("shipping {:?}", shipping.title);
        let taxes = erp_taxes(channel, order, &shipping.taxes, destination, &what)?;
        let net = net_amount(
            order,
            channel,
            shipping.price,
            shipping.discount,
            &shipping.taxes,
            &what,
        )
        .map_err(|reason| ParseError::new(format!("{field}.discount_allocations"), reason))?;
        if !channel.delivery_methods.is_empty() {
            let mapped = channel
                .carrier_for(shipping.code.as_deref(), &shipping.title)
                .ok_or_else(|| {
                    SyncError::permanent(
                        "unmapped_delivery_method",
                        format!(
                            "delivery method {:?}{} of order {} has no ERP carrier for channel {}: add it under [channels.delivery_methods] of {}, then redrive",
                            shipping.title,
                            shipping.code.as_deref().map(|c| format!(" (code {c:?})")).unwrap_or_default(),
                            order.name,
                            channel.id,
                            channel.id
                        ),
                    )
                })?;
            carrier.get_or_insert_with(|| mapped.clone());
        }
        for (quantity, unit_price) in lines_for_total(net, 1, &order.currency) {
            lines.push(SaleLineDraft {
                sku: erp.shipping_sku.clone(),
                description: shipping.title.clone(),
                quantity,
                unit_price,
                taxes: taxes.clone(),
            });
        }
    }
    for charge in &order.charges {
        let what = format!("{} {:?}", charge.kind.key().replace('_', " "), charge.title);
        let sku = channel.charges.get(&charge.kind).ok_or_else(|| {
            SyncError::permanent(
                "unmapped_charge",
                format!(
                    "{what} on order {} has no ERP product for channel {}: set [channels.charges] {} = \"<service SKU>\" in the config, then redrive",
                    order.name,
                    channel.id,
                    charge.kind.key()
                ),
            )
        })?;
        let taxes = erp_taxes(channel, order, &charge.taxes, destination, &what)?;
        let mut net = order.currency.round(charge.amount);
        if order.taxes_included {
            net -= charge.taxes.iter().map(|t| t.amount).sum::<Decimal>();
        }
        lines.push(SaleLineDraft {
            sku: sku.clone(),
            description: charge.title.clone(),
            quantity: 1,
            unit_price: net,
            taxes,
        });
    }
    // Shop and ERP round tax their own ways (Shopify per line, Tryton per sale by default),
    // whether prices include it or not: the rounding line keeps the totals equal.
    if !channel.tax_codes.is_empty()
        && let Some(rounding_sku) = &erp.rounding_sku
    {
        let erp_total = erp_gross(&lines, channel, erp.tax_rounding, &order.currency);
        let difference = order.total() - erp_total;
        // Rounding alone moves the totals apart by at most half a minor unit for each taxed
        // amount the shop rounded and each tax the ERP rounded; more is a tax the shop did not
        // charge at the mapped rate (an exemption, an override), which a person must see.
        let taxed = lines.iter().filter(|l| !l.taxes.is_empty()).count() + draft_tax_count(&lines);
        let bound = Decimal::new(1, order.currency.minor_units()) * Decimal::from(taxed.max(2))
            / Decimal::TWO;
        let beyond_rounding = difference.abs() > bound;
        if beyond_rounding && order.taxes_included {
            // The net prices were made from the shop's tax: a wrong tax makes them wrong.
            return Err(SyncError::permanent(
                "tax_differs",
                format!(
                    "order {} charged {} with tax included, but its net prices taxed at the mapped rates make {erp_total} in the ERP: more than rounding, so a tax was charged otherwise (an exemption or an override); book it by hand or correct the order, then redrive",
                    order.name,
                    order.total()
                ),
            ));
        }
        // With tax on top the nets are the shop's whatever its tax; a tax beyond rounding is
        // not absorbed here but left to reconciliation, which compares the totals with tax
        // and asks a person. The line is always there, even at 0.00: an amendment of a
        // confirmed sale can reprice a line but not add one.
        let difference = if beyond_rounding {
            Decimal::ZERO
        } else {
            difference
        };
        lines.push(SaleLineDraft {
            sku: rounding_sku.clone(),
            description: "tax rounding: the shop's total with tax".to_owned(),
            quantity: 1,
            unit_price: order.currency.round(difference),
            taxes: Vec::new(),
        });
    }
    Ok(SaleDraft {
        reference: sale_reference(&order.channel, &order.external_id),
        description: format!("{} order {}", order.channel, order.name),
        currency: order.currency.clone(),
        customer,
        carrier,
        lines,
    })
}

/// How many distinct ERP taxes the lines carry.
fn draft_tax_count(lines: &[SaleLineDraft]) -> usize {
    let mut names: Vec<&String> = lines.iter().flat_map(|l| &l.taxes).collect();
    names.sort();
    names.dedup();
    names.len()
}

/// The total the ERP makes of these lines: their net amounts, and each ERP tax at its mapped
/// rate on them, rounded as the ERP rounds.
fn erp_gross(
    lines: &[SaleLineDraft],
    channel: &ChannelConfig,
    rounding: TaxRounding,
    currency: &CurrencyCode,
) -> Decimal {
    let rate = |name: &str| {
        channel
            .tax_codes
            .iter()
            .find(|code| code.erp_tax == name)
            .map_or(Decimal::ZERO, |code| {
                code.rate_percent / Decimal::ONE_HUNDRED
            })
    };
    tryton_total(
        lines.iter().map(|line| {
            (
                line.unit_price * Decimal::from(line.quantity),
                line.taxes
                    .iter()
                    .map(|name| (name.as_str(), rate(name)))
                    .collect(),
            )
        }),
        rounding,
        currency,
    )
}

/// What Tryton totals lines to, each given as its net amount and its taxes (a key per tax,
/// and its rate): the nets, plus the taxes rounded half to even, per line or per tax over
/// the document (`[erp] tax_rounding`).
pub(crate) fn tryton_total<K: Ord>(
    lines: impl IntoIterator<Item = (Decimal, Vec<(K, Decimal)>)>,
    rounding: TaxRounding,
    currency: &CurrencyCode,
) -> Decimal {
    let half_even = |amount: Decimal| {
        amount.round_dp_with_strategy(
            currency.minor_units(),
            rust_decimal::RoundingStrategy::MidpointNearestEven,
        )
    };
    let mut net = Decimal::ZERO;
    let mut tax = Decimal::ZERO;
    let mut per_tax: std::collections::BTreeMap<K, Decimal> = Default::default();
    for (amount, taxes) in lines {
        net += amount;
        for (key, rate) in taxes {
            match rounding {
                TaxRounding::Line => tax += half_even(amount * rate),
                TaxRounding::Document => *per_tax.entry(key).or_default() += amount * rate,
            }
        }
    }
    tax += per_tax.into_values().map(half_even).sum::<Decimal>();
    net + tax
}

/// The line's amount net of discounts, and of the shop's tax when prices include it.
fn net_amount(
    order: &ChannelOrder,
    channel: &ChannelConfig,
    gross: Decimal,
    discount: Decimal,
    taxes: &[TaxLine],
    what: &str,
) -> Result<Decimal, String> {
    let mut net = order.currency.round(gross - discount);
    if net.is_sign_negative() && !net.is_zero() {
        return Err(format!(
            "the discount {discount} is larger than {what}'s {gross}"
        ));
    }
    if order.taxes_included && !taxes.is_empty() {
        if channel.tax_codes.is_empty() {
            return Err(format!(
                "{what} has a tax-inclusive price but channel {} maps no taxes, so its net price is unknown: add [[channels.tax_codes]]",
                channel.id
            ));
        }
        let tax: Decimal = taxes.iter().map(|t| t.amount).sum();
        net -= tax;
        if net.is_sign_negative() && !net.is_zero() {
            return Err(format!(
                "{what}'s tax {tax} is more than its price {gross} less the discount {discount}"
            ));
        }
    }
    Ok(net)
}

/// The ERP taxes for a line's shop taxes, for the order's destination.
fn erp_taxes(
    channel: &ChannelConfig,
    order: &ChannelOrder,
    taxes: &[TaxLine],
    destination: Option<&CountryCode>,
    what: &str,
) -> Result<Vec<String>, SyncError> {
    if channel.tax_codes.is_empty() {
        return Ok(Vec::new());
    }
    taxes
        .iter()
        .map(|tax| {
            let rate = |r: Decimal| format!("{}%", (r * Decimal::ONE_HUNDRED).normalize());
            channel
                .erp_tax_for(&tax.title, tax.rate, destination)
                .map(str::to_owned)
                .map_err(|miss| {
                    let charged = tax.rate.map(|r| format!(" at {}", rate(r))).unwrap_or_default();
                    let destination = destination.map(CountryCode::as_str).unwrap_or("unknown");
                    let message = match miss {
                        TaxMiss::Unmapped => format!(
                            "tax {:?}{charged} on {what} of order {} (destination {destination}) has no ERP tax for channel {}: add a [[channels.tax_codes]] entry with shop_tax = {:?}, then redrive",
                            tax.title, order.name, channel.id, tax.title
                        ),
                        TaxMiss::OtherRate(mapped) => format!(
                            "tax {:?} on {what} of order {} (destination {destination}) was charged{charged}, but channel {} maps {:?} there only at {}: add a [[channels.tax_codes]] entry for the rate charged (and its ERP tax), then redrive",
                            tax.title,
                            order.name,
                            channel.id,
                            tax.title,
                            mapped
                                .iter()
                                .map(|p| format!("{}%", p.normalize()))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        TaxMiss::RateUnknown(mapped) => format!(
                            "tax {:?} on {what} of order {} (destination {destination}) came without its rate, and channel {} maps {:?} there at {}: which ERP tax applies is a guess; book the order by hand or map the title once, then redrive",
                            tax.title,
                            order.name,
                            channel.id,
                            tax.title,
                            mapped
                                .iter()
                                .map(|p| format!("{}%", p.normalize()))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    SyncError::permanent("unmapped_tax", message)
                })
        })
        .collect()
}

/// A bundle line's net amount shared among its components by weight, to the currency's minor
/// unit; the last component takes the rounding remainder.
pub fn bundle_shares(net: Decimal, bundle: &Bundle, currency: &CurrencyCode) -> Vec<Decimal> {
    let total_weight: Decimal = bundle.components.iter().map(|c| c.weight()).sum();
    let mut shares = Vec::with_capacity(bundle.components.len());
    let mut allocated = Decimal::ZERO;
    for (index, component) in bundle.components.iter().enumerate() {
        let share = if index + 1 == bundle.components.len() || total_weight.is_zero() {
            net - allocated
        } else {
            currency.round(net * component.weight() / total_weight)
        };
        allocated += share;
        shares.push(currency.round(share));
    }
    shares
}

fn customer_draft(
    order: &ChannelOrder,
    channel: &ChannelConfig,
) -> Result<CustomerDraft, ParseError> {
    let mut fallback_email = None;
    let (invoice_address, shipment_address) = match (
        &order.billing_address,
        &order.shipping_address,
    ) {
        (Some(billing), Some(shipping)) => (billing.clone(), shipping.clone()),
        (Some(only), None) | (None, Some(only)) => (only.clone(), only.clone()),
        (None, None) => {
            // A point-of-sale sale, digital goods: the location's or the channel's customer.
            let fallback = order
                .location
                .as_ref()
                .and_then(|location| channel.pos_customers.get(location))
                .or(channel.default_customer.as_ref())
                .ok_or_else(|| {
                    let pos = order
                        .location
                        .as_ref()
                        .map(|l| format!(" (or [channels.pos_customers.\"{l}\"] for its location)"))
                        .unwrap_or_default();
                    ParseError::new(
                        "shipping_address",
                        format!(
                            "the order has neither a shipping nor a billing address and channel {} has no customer for such orders: set [channels.default_customer]{pos} in the config, then redrive",
                            channel.id
                        ),
                    )
                })?;
            fallback_email = fallback.email.clone();
            (fallback.address.clone(), fallback.address.clone())
        }
    };
    for (field, address) in [
        ("billing_address", &invoice_address),
        ("shipping_address", &shipment_address),
    ] {
        if address.postal_code.is_none() && needs_postcode(&address.country) {
            return Err(ParseError::new(
                format!("{field}.zip"),
                format!(
                    "{} addresses need a postcode and this one has none; correct the order's address in the shop",
                    address.country
                ),
            ));
        }
    }
    let person = order.customer.as_ref().and_then(|c| {
        let joined = [c.first_name.as_deref(), c.last_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        (!joined.is_empty()).then_some(joined)
    });
    // A company on the invoice address is a business customer: the party is the company,
    // the person stays on the addresses as the contact.
    let name = invoice_address
        .company
        .clone()
        .or(person)
        .unwrap_or_else(|| invoice_address.name.clone());
    Ok(CustomerDraft {
        email: order.customer_email().cloned().or(fallback_email),
        phone: order
            .customer
            .as_ref()
            .and_then(|c| c.phone.clone())
            .or_else(|| invoice_address.phone.clone()),
        name,
        invoice_address,
        shipment_address,
    })
}

/// Countries whose addresses cannot be delivered to without a postcode.
fn needs_postcode(country: &CountryCode) -> bool {
    const REQUIRED: &[&str] = &[
        "AT", "AU", "BE", "BR", "CA", "CH", "CN", "CZ", "DE", "DK", "ES", "FI", "FR", "GB", "GR",
        "HU", "IN", "IT", "JP", "LU", "MX", "NL", "NO", "NZ", "PL", "PT", "RO", "SE", "SK", "US",
    ];
    REQUIRED.contains(&country.as_str())
}

/// Splits `quantity` units priced `unit_price` less `discount` (for all units) into
/// (quantity, net unit price) lines whose amounts add up to the exact net total in the
/// currency's minor unit.
pub fn net_unit_prices(
    unit_price: Decimal,
    quantity: u32,
    discount: Decimal,
    currency: &CurrencyCode,
) -> Result<Vec<(u32, Decimal)>, String> {
    let net = currency.round(unit_price * Decimal::from(quantity) - discount);
    if net.is_sign_negative() && !net.is_zero() {
        return Err(format!(
            "the discount {discount} is larger than the line's {quantity} x {unit_price}"
        ));
    }
    Ok(lines_for_total(net, quantity, currency))
}

/// (quantity, unit price) lines for `quantity` units that together cost exactly `total`:
/// one line when it divides evenly to the minor unit; otherwise all units but one at the
/// price cut down to the minor unit, and the last unit carrying the remainder. Amounts are
/// written with exactly the currency's decimals, as the ERP and people expect to read them.
pub fn lines_for_total(
    total: Decimal,
    quantity: u32,
    currency: &CurrencyCode,
) -> Vec<(u32, Decimal)> {
    if quantity == 0 {
        return Vec::new();
    }
    let total = currency.round(total);
    let units = Decimal::from(quantity);
    let even = currency.round(total / units);
    if even * units == total {
        return vec![(quantity, even)];
    }
    let base = currency.truncate(total / units);
    let last = currency.round(total - base * Decimal::from(quantity - 1));
    vec![(quantity - 1, base), (1, last)]
}

/// The ERP SKUs a channel SKU draws on: itself or its alias, or a bundle's components.
pub fn erp_skus(channel: &ChannelConfig, sku: &Sku) -> Vec<Sku> {
    match channel.bundles.get(sku) {
        Some(bundle) => bundle.components.iter().map(|c| c.sku.clone()).collect(),
        None => vec![channel.erp_sku(sku).clone()],
    }
}

/// The channel SKUs whose stock depends on these ERP SKUs: themselves, their aliases, and
/// the bundles they are part of.
pub fn channel_skus_drawing_on(channel: &ChannelConfig, erp: &BTreeSet<Sku>) -> Vec<Sku> {
    let mut skus: BTreeSet<Sku> = erp.clone();
    skus.extend(
        channel
            .sku_aliases
            .iter()
            .filter(|(_, target)| erp.contains(*target))
            .map(|(alias, _)| alias.clone()),
    );
    skus.extend(
        channel
            .bundles
            .iter()
            .filter(|(_, bundle)| bundle.components.iter().any(|c| erp.contains(&c.sku)))
            .map(|(sku, _)| sku.clone()),
    );
    skus.into_iter().collect()
}

#[cfg(test)]
mod tests;
