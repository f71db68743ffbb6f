//! Canonical order -> the sale the ERP should hold: ERP SKUs after aliases, net unit prices
//! after discounts (to the penny), shipping as a service line, the customer and addresses.

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::config::{ChannelConfig, ErpConfig};
use crate::error::ParseError;
use crate::ids::{ChannelId, CurrencyCode, Email, ExternalOrderId, Sku};
use crate::order::{Address, ChannelOrder};

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

    pub fn total(&self) -> Decimal {
        self.lines
            .iter()
            .map(|l| l.unit_price * Decimal::from(l.quantity))
            .sum()
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
    pub unit_price: Decimal,
}

pub fn sale_draft(
    order: &ChannelOrder,
    channel: &ChannelConfig,
    erp: &ErpConfig,
) -> Result<SaleDraft, ParseError> {
    let mut lines = Vec::with_capacity(order.lines.len() + order.shipping_lines.len());
    for (index, line) in order.lines.iter().enumerate() {
        let field = format!("line_items[{index}]");
        let sku = channel.erp_sku(&line.sku).clone();
        for (quantity, unit_price) in net_unit_prices(line.unit_price, line.quantity, line.discount)
            .map_err(|reason| ParseError::new(format!("{field}.discount_allocations"), reason))?
        {
            lines.push(SaleLineDraft {
                sku: sku.clone(),
                description: line.title.clone(),
                quantity,
                unit_price,
            });
        }
    }
    for (index, shipping) in order.shipping_lines.iter().enumerate() {
        let field = format!("shipping_lines[{index}]");
        for (quantity, unit_price) in net_unit_prices(shipping.price, 1, shipping.discount)
            .map_err(|reason| ParseError::new(format!("{field}.discount_allocations"), reason))?
        {
            lines.push(SaleLineDraft {
                sku: erp.shipping_sku.clone(),
                description: shipping.title.clone(),
                quantity,
                unit_price,
            });
        }
    }
    Ok(SaleDraft {
        reference: sale_reference(&order.channel, &order.external_id),
        description: format!("{} order {}", order.channel, order.name),
        currency: order.currency.clone(),
        customer: customer_draft(order)?,
        lines,
    })
}

fn customer_draft(order: &ChannelOrder) -> Result<CustomerDraft, ParseError> {
    let (invoice_address, shipment_address) = match (
        &order.billing_address,
        &order.shipping_address,
    ) {
        (Some(billing), Some(shipping)) => (billing.clone(), shipping.clone()),
        (Some(only), None) | (None, Some(only)) => (only.clone(), only.clone()),
        (None, None) => {
            return Err(ParseError::new(
                "shipping_address",
                "the order has neither a shipping nor a billing address; the ERP needs one to invoice and ship",
            ));
        }
    };
    let customer_name = order.customer.as_ref().and_then(|c| {
        let joined = [c.first_name.as_deref(), c.last_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        (!joined.is_empty()).then_some(joined)
    });
    let name = customer_name
        .or_else(|| invoice_address.company.clone())
        .unwrap_or_else(|| invoice_address.name.clone());
    Ok(CustomerDraft {
        email: order.customer_email().cloned(),
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

/// Splits `quantity` units priced `unit_price` less `discount` (for all units) into
/// (quantity, net unit price) lines whose amounts add up to the exact net total in cents.
/// One line when the net divides evenly; otherwise all units but one at the net price
/// rounded down to the cent, and the last unit carrying the remainder.
pub fn net_unit_prices(
    unit_price: Decimal,
    quantity: u32,
    discount: Decimal,
) -> Result<Vec<(u32, Decimal)>, String> {
    let net = (unit_price * Decimal::from(quantity) - discount).round_dp(2);
    if net.is_sign_negative() && !net.is_zero() {
        return Err(format!(
            "the discount {discount} is larger than the line's {quantity} x {unit_price}"
        ));
    }
    if quantity == 0 {
        return Ok(Vec::new());
    }
    let units = Decimal::from(quantity);
    let even = cents((net / units).round_dp(2));
    if even * units == net {
        return Ok(vec![(quantity, even)]);
    }
    let base = cents((net / units).round_dp_with_strategy(2, RoundingStrategy::ToZero));
    let last = cents(net - base * Decimal::from(quantity - 1));
    Ok(vec![(quantity - 1, base), (1, last)])
}

/// An amount written with exactly two decimals, as the ERP and people expect to read it.
fn cents(mut amount: Decimal) -> Decimal {
    amount.rescale(2);
    amount
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::shopify::parse_order;

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap_or_default()
    }

    fn lines_total(lines: &[(u32, Decimal)]) -> Decimal {
        lines.iter().map(|(q, p)| Decimal::from(*q) * p).sum()
    }

    #[test]
    fn an_even_discount_gives_one_line() {
        assert_eq!(
            net_unit_prices(dec("199.00"), 1, dec("3.34")),
            Ok(vec![(1, dec("195.66"))])
        );
        assert_eq!(
            net_unit_prices(dec("10.00"), 4, dec("2.00")),
            Ok(vec![(4, dec("9.50"))])
        );
    }

    #[test]
    fn an_uneven_discount_is_split_to_keep_the_total_to_the_penny() {
        let lines = net_unit_prices(dec("10.00"), 3, dec("1.00")).unwrap_or_default();
        assert_eq!(lines, vec![(2, dec("9.66")), (1, dec("9.68"))]);
        assert_eq!(lines_total(&lines), dec("29.00"));
        for quantity in 1..200u32 {
            let lines = net_unit_prices(dec("7.33"), quantity, dec("0.17")).unwrap_or_default();
            assert_eq!(
                lines_total(&lines),
                dec("7.33") * Decimal::from(quantity) - dec("0.17")
            );
        }
    }

    #[test]
    fn a_discount_above_the_line_is_refused() {
        assert!(net_unit_prices(dec("5.00"), 1, dec("6.00")).is_err());
    }

    #[test]
    fn the_documented_order_maps_to_erp_lines_with_aliases_and_shipping() {
        let config = Config::from_toml(include_str!("../../../config/erpsync.example.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let channel = &config.channels[0];
        let body = include_str!(
            "../../../tests/fixtures/shopify-orders-create-multiline-discount-tax.json"
        )
        .replace("IPOD2008BLACK", "IPOD-BLACK-LEGACY");
        let order = parse_order(&channel.id, body.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let draft = sale_draft(&order, channel, &config.erp).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(draft.reference, "uk-shop/450789469");
        let skus: Vec<_> = draft.lines.iter().map(|l| l.sku.as_str()).collect();
        assert_eq!(
            skus,
            ["IPOD2008GREEN", "IPOD2008RED", "IPOD2008BLACK", "SHIPPING"]
        );
        // 3 x 199.00 less the 10.00 order discount, free shipping: Shopify's subtotal 587.00.
        assert_eq!(draft.total(), dec("587.00"));
        assert_eq!(
            draft.customer.email.as_ref().map(Email::as_str),
            Some("bob.norman@mail.example.com")
        );
        assert_eq!(draft.customer.name, "Bob Norman");
    }
}
