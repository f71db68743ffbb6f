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
mod tests {
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
        let kwd =
            net_unit_prices(dec("0.125"), 3, Decimal::ZERO, &currency("KWD")).unwrap_or_default();
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
            let lines =
                net_unit_prices(dec("7.33"), quantity, dec("0.17"), &gbp()).unwrap_or_default();
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
        let order = parse_order(&channel.id, order.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
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
            error.message.contains("tip \"Tip\"")
                && error.message.contains("[channels.charges] tip"),
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
}
