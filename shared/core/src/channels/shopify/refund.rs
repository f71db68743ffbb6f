//! A `refunds/create` body (the REST refund resource) into the canonical refund.

use rust_decimal::Decimal;
use serde::Deserialize;

use super::raw::{Amount, Id, RawMoneySet, non_negative, shop_amount};
use super::transaction::RawTransaction;
use crate::channels::json::from_json;
use crate::error::ParseError;
use crate::model::ids::{ExternalOrderId, Sku};

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
struct RawAdjustment {
    kind: String,
    amount: Amount,
    amount_set: Option<RawMoneySet>,
    /// A `shipping_refund` adjustment's tax (older versions' shipping refunds), negative.
    tax_amount: Option<Amount>,
    tax_amount_set: Option<RawMoneySet>,
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
                transaction_id: transaction.id_text(),
                gateway: Some(transaction.gateway()).filter(|g| !g.is_empty()),
                processed_at: transaction.processed_at(&format!("transactions[{index}]."))?,
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
