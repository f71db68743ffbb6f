//! Shopify's JSON as it comes: amounts and ids in either form, money sets, and the order's
//! raw resource, read into the model by `order` and `refund`.

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::error::ParseError;

/// Shopify sends money as decimal strings; a few API versions and apps send numbers.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Amount {
    Text(String),
    Number(serde_json::Number),
}

impl Amount {
    pub(super) fn parse(&self, field: &str) -> Result<Decimal, ParseError> {
        let text = match self {
            Amount::Text(text) => text.clone(),
            Amount::Number(number) => number.to_string(),
        };
        crate::channels::json::amount(&text, field)
    }
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum Id {
    Number(u64),
    Text(String),
}

impl Id {
    pub(super) fn text(&self) -> String {
        match self {
            Id::Number(n) => n.to_string(),
            Id::Text(t) => t.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RawMoneySet {
    pub(super) shop_money: RawMoney,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawMoney {
    pub(super) amount: Amount,
    pub(super) currency_code: Option<String>,
}

/// A money set's shop amount, else the plain (shop currency) amount beside it.
pub(super) fn shop_amount(
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

pub(super) fn non_negative(amount: Decimal, field: &str) -> Result<Decimal, ParseError> {
    if amount.is_sign_negative() && !amount.is_zero() {
        Err(ParseError::new(field, format!("{amount} is negative")))
    } else {
        Ok(amount)
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct RawOrder {
    pub(super) id: Id,
    pub(super) name: Option<String>,
    pub(super) email: Option<String>,
    pub(super) contact_email: Option<String>,
    pub(super) currency: String,
    pub(super) updated_at: Option<String>,
    pub(super) created_at: Option<String>,
    #[serde(default)]
    pub(super) taxes_included: bool,
    pub(super) cancelled_at: Option<String>,
    pub(super) customer: Option<RawCustomer>,
    pub(super) billing_address: Option<RawAddress>,
    pub(super) shipping_address: Option<RawAddress>,
    pub(super) line_items: Vec<RawLine>,
    #[serde(default)]
    pub(super) shipping_lines: Vec<RawShippingLine>,
    #[serde(default)]
    pub(super) refunds: Vec<RawRefund>,
    /// The location that took the order (point of sale).
    pub(super) location_id: Option<Id>,
    #[serde(default)]
    pub(super) fulfillments: Vec<RawFulfillment>,
    /// Extra costs of an international parcel that are neither duties nor taxes (API
    /// 2023-04 on); REST gives their totals only ("Additional fees fields for Orders",
    /// shopify.dev/changelog/additional-fees-fields-for-orders). The original, as duties: a
    /// fee refunded later is the refund's to credit, not the sale's to drop (both would pay
    /// it back twice).
    pub(super) original_total_additional_fees_set: Option<RawMoneySet>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawRefund {
    pub(super) id: Option<Id>,
    pub(super) created_at: Option<String>,
    #[serde(default)]
    pub(super) refund_line_items: Vec<RawRefundLine>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawRefundLine {
    pub(super) line_item_id: Id,
    pub(super) quantity: u32,
    pub(super) restock_type: Option<crate::model::refund::RestockType>,
    pub(super) subtotal: Option<Amount>,
    pub(super) subtotal_set: Option<RawMoneySet>,
    pub(super) total_tax: Option<Amount>,
    pub(super) total_tax_set: Option<RawMoneySet>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawFulfillment {
    pub(super) status: Option<String>,
    pub(super) created_at: Option<String>,
    #[serde(default)]
    pub(super) line_items: Vec<RawFulfilledLine>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawFulfilledLine {
    pub(super) id: Id,
    pub(super) quantity: u32,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawCustomer {
    pub(super) email: Option<String>,
    pub(super) first_name: Option<String>,
    pub(super) last_name: Option<String>,
    pub(super) phone: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawAddress {
    pub(super) first_name: Option<String>,
    pub(super) last_name: Option<String>,
    pub(super) name: Option<String>,
    pub(super) company: Option<String>,
    pub(super) address1: Option<String>,
    pub(super) address2: Option<String>,
    pub(super) city: Option<String>,
    pub(super) zip: Option<String>,
    pub(super) country_code: Option<String>,
    pub(super) phone: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawLine {
    pub(super) id: Id,
    pub(super) sku: Option<String>,
    #[serde(default)]
    pub(super) gift_card: bool,
    /// Present only on tips.
    pub(super) tip_payment_gateway: Option<String>,
    #[serde(default)]
    pub(super) duties: Vec<RawDuty>,
    pub(super) title: Option<String>,
    pub(super) name: Option<String>,
    pub(super) quantity: u32,
    /// After order edits: what is left of the line (0 when removed).
    pub(super) current_quantity: Option<u32>,
    pub(super) price: Amount,
    #[serde(default)]
    pub(super) discount_allocations: Vec<RawDiscountAllocation>,
    #[serde(default)]
    pub(super) tax_lines: Vec<RawTaxLine>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawDuty {
    pub(super) price_set: Option<RawMoneySet>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawShippingLine {
    pub(super) title: Option<String>,
    pub(super) code: Option<String>,
    pub(super) price: Amount,
    #[serde(default)]
    pub(super) discount_allocations: Vec<RawDiscountAllocation>,
    #[serde(default)]
    pub(super) tax_lines: Vec<RawTaxLine>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawTaxLine {
    pub(super) title: Option<String>,
    pub(super) rate: Option<Amount>,
    pub(super) price: Amount,
}

#[derive(Debug, Deserialize)]
pub(super) struct RawDiscountAllocation {
    pub(super) amount: Amount,
}

/// Just enough of an order to route it: its id. Used where the rest may not parse.
#[derive(Debug, Deserialize)]
pub(super) struct RawOrderId {
    pub(super) id: Id,
}
