//! The month-end reading finance signs: per order, what the ERP invoiced and credited against
//! the money recorded (payments in, refunds out), with every variance named and explained,
//! and totals per channel and currency. Pure: the tools read the ERP and sync state.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::Serialize;

use crate::model::state::SyncState;
use crate::ports::{ErpPaymentState, InvoiceState, PaymentKind, SaleMoney, SaleWithMoney};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum VarianceKind {
    /// Invoiced, and no money recorded against it.
    MissingPayment,
    /// Money recorded differs from what was invoiced or credited.
    AmountDiffers,
    /// Paid in full, yet the invoice or credit note does not read paid.
    Unsettled,
    /// Paid in full, yet the invoice is still a draft.
    InvoiceNotPosted,
    /// A credit note with no refund payment against it.
    RefundNotPaid,
    /// A payment that did not reach succeeded.
    PaymentNotSucceeded,
    /// Money erpsync could not book: sync state says a person must look.
    NeedsAttention,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variance {
    pub kind: VarianceKind,
    pub explanation: String,
}

/// One order's money, both sides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderMoney {
    pub channel: String,
    pub order: String,
    pub sale: Option<String>,
    pub currency: String,
    pub invoiced: Decimal,
    pub received: Decimal,
    pub credited: Decimal,
    pub paid_back: Decimal,
    pub variances: Vec<Variance>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    pub orders: usize,
    pub invoiced: Decimal,
    pub received: Decimal,
    pub credited: Decimal,
    pub paid_back: Decimal,
    pub variances: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FinanceReport {
    pub orders: Vec<OrderMoney>,
    /// Per (channel, currency).
    pub totals: BTreeMap<String, Totals>,
}

impl FinanceReport {
    pub fn variances(&self) -> usize {
        self.orders.iter().map(|o| o.variances.len()).sum()
    }
}

fn succeeded(money: &SaleMoney, kind: PaymentKind) -> Decimal {
    money
        .payments
        .iter()
        .filter(|p| p.kind == kind && p.state == ErpPaymentState::Succeeded)
        .map(|p| p.amount)
        .sum()
}

/// The order a sale reference belongs to: a return's reference is its order's plus
/// `/refund/<id>`.
fn order_reference(reference: &str) -> &str {
    reference
        .split_once("/refund/")
        .map_or(reference, |(order, _)| order)
}

/// Reads one channel's sales (orders and their returns) and the payment states a person must
/// look at into the report's orders.
pub fn report_channel(
    channel: &str,
    sales: &[SaleWithMoney],
    attention: &[SyncState],
    report: &mut FinanceReport,
) {
    let mut by_order: BTreeMap<&str, Vec<&SaleWithMoney>> = BTreeMap::new();
    for sale in sales {
        by_order
            .entry(order_reference(&sale.reference))
            .or_default()
            .push(sale);
    }
    let mut orders: BTreeMap<String, Vec<&SaleWithMoney>> = by_order
        .into_iter()
        .map(|(reference, sales)| {
            let order = reference
                .strip_prefix(&format!("{channel}/"))
                .unwrap_or(reference)
                .to_owned();
            (order, sales)
        })
        .collect();
    // Money erpsync could not book is reported whether or not its order reached the ERP
    // (a payment for an order never booked has no sale to read).
    for state in attention {
        let order = state
            .entity
            .entity_id
            .split('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        orders.entry(order).or_default();
    }
    for (order, sales) in orders {
        let mut row = order_money(channel, &order, &sales);
        for state in attention
            .iter()
            .filter(|s| s.entity.entity_id.starts_with(&format!("{order}/")))
        {
            row.variances.push(Variance {
                kind: VarianceKind::NeedsAttention,
                explanation: format!(
                    "{}: {}",
                    state.entity.entity_id,
                    state
                        .last_error
                        .as_ref()
                        .map(|e| e.message.as_str())
                        .or(state.note.as_deref())
                        .unwrap_or("needs a person (erpsync exceptions)")
                ),
            });
        }
        if row.invoiced.is_zero()
            && row.credited.is_zero()
            && row.received.is_zero()
            && row.paid_back.is_zero()
            && row.variances.is_empty()
        {
            continue;
        }
        let totals = report
            .totals
            .entry(format!("{channel} {}", row.currency))
            .or_default();
        totals.orders += 1;
        totals.invoiced += row.invoiced;
        totals.received += row.received;
        totals.credited += row.credited;
        totals.paid_back += row.paid_back;
        totals.variances += row.variances.len();
        report.orders.push(row);
    }
}

fn order_money(channel: &str, order: &str, sales: &[&SaleWithMoney]) -> OrderMoney {
    let mut row = OrderMoney {
        channel: channel.to_owned(),
        order: order.to_owned(),
        sale: sales
            .iter()
            .find(|s| !s.reference.contains("/refund/"))
            .and_then(|s| s.number.clone()),
        currency: sales
            .iter()
            .find_map(|s| s.money.currency.clone())
            .unwrap_or_default(),
        invoiced: Decimal::ZERO,
        received: Decimal::ZERO,
        credited: Decimal::ZERO,
        paid_back: Decimal::ZERO,
        variances: Vec::new(),
    };
    let mut note = |kind, explanation: String| row_variance(&mut row.variances, kind, explanation);
    let mut invoiced = Decimal::ZERO;
    let mut credited = Decimal::ZERO;
    let mut received = Decimal::ZERO;
    let mut paid_back = Decimal::ZERO;
    for sale in sales {
        let number = sale.number.as_deref().unwrap_or(&sale.reference);
        received += succeeded(&sale.money, PaymentKind::Receivable);
        paid_back += succeeded(&sale.money, PaymentKind::Payable);
        for payment in &sale.money.payments {
            if payment.state != ErpPaymentState::Succeeded {
                note(
                    VarianceKind::PaymentNotSucceeded,
                    format!(
                        "payment {} of {} on sale {number} is {:?}",
                        payment.reference.as_deref().unwrap_or("?"),
                        payment.amount,
                        payment.state
                    ),
                );
            }
        }
        for invoice in &sale.money.invoices {
            if invoice.state == InvoiceState::Cancelled {
                continue;
            }
            if invoice.total > Decimal::ZERO {
                invoiced += invoice.total;
            } else {
                credited -= invoice.total;
            }
        }
    }
    let invoices: Vec<_> = sales
        .iter()
        .flat_map(|s| s.money.invoices.iter())
        .filter(|i| i.state != InvoiceState::Cancelled && !i.total.is_zero())
        .collect();
    let name =
        |i: &crate::ports::ErpInvoice| i.number.clone().unwrap_or_else(|| format!("#{}", i.id));
    if invoiced > Decimal::ZERO && received.is_zero() {
        note(
            VarianceKind::MissingPayment,
            format!("{invoiced} invoiced and no payment recorded"),
        );
    } else if received != invoiced {
        note(
            VarianceKind::AmountDiffers,
            format!(
                "{received} received against {invoiced} invoiced ({} {})",
                (received - invoiced).abs(),
                if received > invoiced { "over" } else { "short" }
            ),
        );
    }
    if received == invoiced && invoiced > Decimal::ZERO {
        for invoice in invoices.iter().filter(|i| i.total > Decimal::ZERO) {
            match invoice.state {
                InvoiceState::Paid => {}
                InvoiceState::Draft | InvoiceState::Validated => note(
                    VarianceKind::InvoiceNotPosted,
                    format!("invoice {} is paid for but still a draft", name(invoice)),
                ),
                _ => note(
                    VarianceKind::Unsettled,
                    format!(
                        "invoice {} is paid for but reads {:?} ({} to pay)",
                        name(invoice),
                        invoice.state,
                        invoice.amount_to_pay
                    ),
                ),
            }
        }
    }
    if credited > Decimal::ZERO && paid_back.is_zero() {
        note(
            VarianceKind::RefundNotPaid,
            format!("{credited} credited and no refund payment recorded"),
        );
    } else if paid_back != credited {
        note(
            VarianceKind::AmountDiffers,
            format!("{paid_back} paid back against {credited} credited"),
        );
    } else if credited > Decimal::ZERO {
        for invoice in invoices
            .iter()
            .filter(|i| i.total < Decimal::ZERO && i.state != InvoiceState::Paid)
        {
            note(
                VarianceKind::Unsettled,
                format!(
                    "credit note {} is paid back but reads {:?}",
                    name(invoice),
                    invoice.state
                ),
            );
        }
    }
    row.invoiced = invoiced;
    row.received = received;
    row.credited = credited;
    row.paid_back = paid_back;
    row
}

fn row_variance(variances: &mut Vec<Variance>, kind: VarianceKind, explanation: String) {
    variances.push(Variance { kind, explanation });
}

#[cfg(test)]
mod tests;
