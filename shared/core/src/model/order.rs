//! The canonical order: what every channel's payload becomes at the edge, and all the flows
//! after it see. Amounts are exact decimals in the order's currency.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::ids::{ChannelId, CountryCode, CurrencyCode, Email, ExternalOrderId, Sku};

/// Per refund id, per order line id: the units refunded before they were fulfilled, which
/// leave the sale (the order's amendment) and are never credited. Every refund the order
/// carries has an entry, empty when all its units had been fulfilled. Order-sync decides it
/// from the order's fulfilments; return-sync follows it, so a unit is never both taken off
/// the sale and credited.
pub type RefundedBeforeFulfilment = BTreeMap<String, BTreeMap<String, u32>>;

/// The webhook topics the order flow acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum OrderTopic {
    #[serde(rename = "orders/create")]
    Create,
    #[serde(rename = "orders/paid")]
    Paid,
    #[serde(rename = "orders/updated")]
    Updated,
    #[serde(rename = "orders/cancelled")]
    Cancelled,
}

impl OrderTopic {
    pub fn parse(topic: &str) -> Option<Self> {
        match topic.trim() {
            "orders/create" => Some(Self::Create),
            "orders/paid" => Some(Self::Paid),
            "orders/updated" => Some(Self::Updated),
            "orders/cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "orders/create",
            Self::Paid => "orders/paid",
            Self::Updated => "orders/updated",
            Self::Cancelled => "orders/cancelled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelOrder {
    pub channel: ChannelId,
    pub external_id: ExternalOrderId,
    /// What people call the order in the shop, e.g. `#1001`.
    pub name: String,
    pub currency: CurrencyCode,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    pub email: Option<Email>,
    pub customer: Option<Customer>,
    pub billing_address: Option<Address>,
    pub shipping_address: Option<Address>,
    pub lines: Vec<OrderLine>,
    pub shipping_lines: Vec<ShippingLine>,
    pub taxes_included: bool,
    pub cancelled: bool,
    /// The shop location that took the order, when the channel says (a point of sale).
    pub location: Option<String>,
    /// What the order charges beyond products and shipping: tips, gift cards sold, custom
    /// items, duties, fees.
    pub charges: Vec<Charge>,
    #[serde(default)]
    pub refunded_before_fulfilment: RefundedBeforeFulfilment,
}

/// A charge on the order that is no product the ERP stocks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Charge {
    pub kind: ChargeKind,
    /// What the shop calls it (the line's title, the fee's name).
    pub title: String,
    /// Net of its discounts, in the order's currency; negative for a fee given as a discount.
    pub amount: Decimal,
    pub taxes: Vec<TaxLine>,
}

/// The kinds of charges, each mapped per channel to an ERP service product
/// (`[channels.charges]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChargeKind {
    /// A tip (Shopify: a line item with a tip payment gateway).
    Tip,
    /// A gift card sold (a liability until it is spent, not revenue).
    GiftCard,
    /// A line with no SKU: a custom item.
    Custom,
    /// Import duties charged at checkout.
    Duty,
    /// A fee (WooCommerce fee lines, negative ones too).
    Fee,
}

impl ChargeKind {
    /// Its key under `[channels.charges]`.
    pub fn key(self) -> &'static str {
        match self {
            Self::Tip => "tip",
            Self::GiftCard => "gift_card",
            Self::Custom => "custom",
            Self::Duty => "duty",
            Self::Fee => "fee",
        }
    }
}

impl ChannelOrder {
    /// What the customer is charged for what the sale holds, in the order's currency: lines
    /// and shipping less their discounts, plus the shop's tax unless prices include it.
    pub fn total(&self) -> Decimal {
        let lines: Decimal = self
            .lines
            .iter()
            .map(|l| l.unit_price * Decimal::from(l.quantity) - l.discount)
            .sum();
        let shipping: Decimal = self
            .shipping_lines
            .iter()
            .map(|s| s.price - s.discount)
            .sum();
        let charges: Decimal = self.charges.iter().map(|c| c.amount).sum();
        let tax: Decimal = self
            .lines
            .iter()
            .flat_map(|l| &l.taxes)
            .chain(self.shipping_lines.iter().flat_map(|s| &s.taxes))
            .chain(self.charges.iter().flat_map(|c| &c.taxes))
            .map(|t| t.amount)
            .sum();
        let total = if self.taxes_included {
            lines + shipping + charges
        } else {
            lines + shipping + charges + tax
        };
        self.currency.round(total)
    }

    /// The customer's e-mail: the customer record's, else the order's.
    pub fn customer_email(&self) -> Option<&Email> {
        self.customer
            .as_ref()
            .and_then(|c| c.email.as_ref())
            .or(self.email.as_ref())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub email: Option<Email>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub name: String,
    pub company: Option<String>,
    pub street: String,
    pub postal_code: Option<String>,
    pub city: Option<String>,
    pub country: CountryCode,
    pub phone: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLine {
    pub line_id: String,
    pub sku: Sku,
    pub title: String,
    pub quantity: u32,
    /// Price of one unit before discounts.
    pub unit_price: Decimal,
    /// Sum of the discounts allocated to this line (all units).
    pub discount: Decimal,
    pub taxes: Vec<TaxLine>,
}

/// A tax the shop charged on a line, as the shop names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaxLine {
    pub title: String,
    pub rate: Option<Decimal>,
    pub amount: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippingLine {
    pub title: String,
    pub code: Option<String>,
    pub price: Decimal,
    pub discount: Decimal,
    pub taxes: Vec<TaxLine>,
}
