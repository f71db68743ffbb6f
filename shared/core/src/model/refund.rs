//! A refund as the shop reports it: the refunded items with what happens to their goods,
//! shipping, discrepancies and the money that moved back. Amounts are in shop money.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::model::ids::{CurrencyCode, ExternalOrderId, Sku};

/// A refund as the shop reports it. Amounts are in shop money (the shop's currency), as the
/// ERP books them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub id: String,
    pub order_id: ExternalOrderId,
    pub note: Option<String>,
    pub items: Vec<RefundedItem>,
    /// Shipping refunded, net, and its tax.
    pub shipping: Decimal,
    #[serde(default)]
    pub shipping_tax: Decimal,
    /// Order adjustments other than shipping (refund discrepancies: a restocking fee, a
    /// rounding), signed as Shopify signs them: the calculated refund less the money refunded,
    /// so positive means less money back than the items are worth.
    pub discrepancy: Decimal,
    /// Successful refund transactions: the money that moved back.
    pub paid: Vec<Paid>,
    /// Refund transactions still pending: the money has not moved yet.
    pub pending: usize,
    /// The shop's currency as the refund's money sets name it (none when it has no sets).
    pub shop_currency: Option<String>,
}

/// A successful refund transaction (REST: its amount in the currency it names, which for a
/// multi-currency order is the customer's, not the shop's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paid {
    pub amount: Decimal,
    pub currency: Option<String>,
    /// The refund transaction's id: the ERP payment that pays the credit note is recorded
    /// under it, once.
    #[serde(default)]
    pub transaction_id: Option<String>,
    /// The gateway the money went back through (the payment journal is chosen by it).
    #[serde(default)]
    pub gateway: Option<String>,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub processed_at: Option<time::OffsetDateTime>,
}

impl Refund {
    /// The money paid back in the shop's currency (the refund's own sets say which, else the
    /// channel's), and what was paid in others (which it cannot count).
    pub fn refunded_in(&self, channel_currency: &CurrencyCode) -> (Decimal, Vec<String>) {
        let shop = self
            .shop_currency
            .as_deref()
            .unwrap_or(channel_currency.as_str());
        let mut refunded = Decimal::ZERO;
        let mut foreign = Vec::new();
        for paid in &self.paid {
            match paid.currency.as_deref() {
                Some(other) if other != shop => {
                    foreign.push(format!("{} {other}", paid.amount));
                }
                _ => refunded += paid.amount,
            }
        }
        (refunded, foreign)
    }
}

/// What happens to a refunded unit's goods (Shopify's `restock_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestockType {
    /// Refunded before fulfilment ("use this when restocking unfulfilled line items").
    Cancel,
    /// Fulfilled, and coming back into stock.
    Return,
    /// Not restocked: kept by the customer, or refunded before fulfilment without restock.
    NoRestock,
    /// Deprecated: restocked, without saying whether returned or cancelled.
    LegacyRestock,
    /// A type this version does not know: taken as money back without goods, like
    /// `no_restock`, so a new value never stops the order or the refund.
    #[serde(other)]
    Unknown,
}

/// How far the refunded item's order line had been fulfilled when the refund was made, as
/// the refund's own copy of the line says (`fulfillment_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LineFulfilment {
    /// Nothing of it (`null`).
    Unfulfilled,
    /// Some units (`partial`): which of the refunded ones had shipped is the order's to say.
    Partial,
    /// Every unit not refunded before (`fulfilled`).
    Fulfilled,
    /// The refund does not say.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundedItem {
    pub line_item_id: String,
    pub sku: Option<Sku>,
    pub quantity: u32,
    pub restock_type: RestockType,
    pub line_fulfilment: LineFulfilment,
    /// The refund's own amounts for these units, net of discounts (with the tax in it when
    /// the order's prices include tax), and their tax.
    pub subtotal: Decimal,
    pub tax: Decimal,
}

impl RefundedItem {
    /// What the units were worth to the customer, tax and all.
    pub fn gross(&self, taxes_included: bool) -> Decimal {
        if taxes_included {
            self.subtotal
        } else {
            self.subtotal + self.tax
        }
    }

    /// Their amount before tax, as an ERP line is priced.
    pub fn net(&self, taxes_included: bool) -> Decimal {
        if taxes_included {
            self.subtotal - self.tax
        } else {
            self.subtotal
        }
    }

    /// The goods come back into stock, on the return shipment.
    pub fn restocks(&self) -> bool {
        matches!(
            self.restock_type,
            RestockType::Return | RestockType::LegacyRestock
        )
    }

    /// How many of its units were refunded before fulfilment, from the refund alone (the
    /// same rule order-sync applies with the order's fulfilments); None when the line was
    /// partly fulfilled, so only the order can say.
    pub fn before_fulfilment_by_itself(&self) -> Option<u32> {
        match (self.restock_type, self.line_fulfilment) {
            // The deprecated `legacy_restock` ("restocked"; refused on new refunds) is read as
            // returned, as order-sync reads it: only refunds from before 2019 carry it.
            (RestockType::Return | RestockType::LegacyRestock, _) => Some(0),
            (RestockType::Cancel, _) => Some(self.quantity),
            (_, LineFulfilment::Unfulfilled) => Some(self.quantity),
            (_, LineFulfilment::Fulfilled) => Some(0),
            (_, LineFulfilment::Partial | LineFulfilment::Unknown) => None,
        }
    }

    /// These units split in two: `units` of them, and the rest, the refund's amounts shared
    /// pro rata (the remainder to the rest, so the two add up to the refund's).
    pub fn split(&self, units: u32, currency: &CurrencyCode) -> (Option<Self>, Option<Self>) {
        if units == 0 {
            return (None, Some(self.clone()));
        }
        if units >= self.quantity {
            return (Some(self.clone()), None);
        }
        let share = |amount: Decimal| {
            currency.round(amount * Decimal::from(units) / Decimal::from(self.quantity))
        };
        let part = Self {
            quantity: units,
            subtotal: share(self.subtotal),
            tax: share(self.tax),
            ..self.clone()
        };
        let rest = Self {
            quantity: self.quantity - units,
            subtotal: self.subtotal - part.subtotal,
            tax: self.tax - part.tax,
            ..self.clone()
        };
        (Some(part), Some(rest))
    }
}
