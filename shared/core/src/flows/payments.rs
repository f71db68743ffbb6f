//! Money into the ERP: each successful sale or capture the shop took becomes one payment
//! against the order's sale, and each refund's money one payment settling its credit note,
//! in Tryton's own payment modules (`account_payment`, `account_payment_clearing`,
//! `sale_payment`). The sale's invoice is posted once its payments cover it, so it reads
//! paid; a credit note is posted before its refund is paid against it.
//!
//! Why those modules and not journal entries written here: a payment is a document the
//! accountant already knows (journal per gateway, a clearing account the payout statement
//! empties), `sale_payment` links and reconciles it when the invoice is posted, and Tryton's
//! own Shopify module records transactions the same way, so a customer's reports read alike.
//!
//! Every amount is compared to the currency's minor unit; a difference is a person's.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::info;

use crate::config::ChannelConfig;
use crate::error::SyncError;
use crate::mapping::{return_reference, sale_reference};
use crate::model::ids::CurrencyCode;
use crate::model::payment::{Transaction, TransactionKind, TransactionStatus, payment_reference};
use crate::model::refund::Refund;
use crate::model::state::{EntityRef, Flow, IdempotencyKey, PayloadHash, SyncRecord, SyncStatus};
use crate::ports::{
    ErpInvoice, ErpPaymentState, ErpSaleState, IdempotencyStore, InvoiceState, NewPayment, Once,
    PaymentKind, PaymentsErp, SaleMoney, SyncStateStore, note_failure, once, sale_awaited,
};

/// How long a refund whose order is not in the ERP waits before it looks again.
const REFUND_WAIT: std::time::Duration = std::time::Duration::from_secs(30 * 60);

pub struct PaymentDeps<'a> {
    pub idempotency: &'a dyn IdempotencyStore,
    pub state: &'a dyn SyncStateStore,
    pub erp: &'a dyn PaymentsErp,
    pub lease_until: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum PaymentOutcome {
    Recorded {
        payments: Vec<i64>,
        note: String,
    },
    /// Nothing moved (a pending or failed transaction, an authorisation, a void) or it is
    /// recorded elsewhere (a refund's money, with its refund).
    NothingToRecord {
        why: String,
    },
    Replayed,
}

/// What a transaction asks of the ERP, decided from the transaction and the config alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransactionPlan {
    /// Money in through `gateway`, booked on its journal in the sale's currency.
    Receive {
        gateway: String,
        amount: Decimal,
    },
    Nothing {
        why: String,
    },
}

/// The entity a transaction is recorded under.
pub fn transaction_entity(channel: &ChannelConfig, transaction: &Transaction) -> EntityRef {
    EntityRef {
        flow: Flow::PaymentSync,
        channel: channel.id.clone(),
        entity_id: format!("{}/txn-{}", transaction.order_id, transaction.id),
    }
}

/// The entity a refund's money is recorded under.
pub fn refund_money_entity(channel: &ChannelConfig, refund: &Refund) -> EntityRef {
    EntityRef {
        flow: Flow::PaymentSync,
        channel: channel.id.clone(),
        entity_id: format!("{}/refund-{}", refund.order_id, refund.id),
    }
}

/// The payment journal of a gateway for money in `currency` (the name's `{currency}` is
/// that code), or a person's error naming the gateway and the key.
fn journal_of(
    channel: &ChannelConfig,
    gateway: &str,
    currency: &CurrencyCode,
) -> Result<String, SyncError> {
    channel
        .payments
        .get(gateway)
        .map(|name| name.replace("{currency}", currency.as_str()))
        .ok_or_else(|| {
            SyncError::permanent(
                "unmapped_gateway",
                format!(
                    "payment gateway {gateway:?} of {} is not mapped to an ERP payment journal: add it under [channels.payments] ({gateway:?} = \"<journal name>\"), then redrive",
                    channel.id
                ),
            )
        })
}

/// The money must be in the sale's currency (a multi-currency order's transactions name
/// the customer's; the ERP sale is in the shop's) and exact to its minor unit: rounding it
/// would make the ERP differ from the shop without anyone knowing.
fn bookable(
    amount: Decimal,
    currency: Option<&str>,
    sale_currency: &CurrencyCode,
    what: &str,
) -> Result<(), SyncError> {
    if let Some(other) = currency.filter(|c| !c.eq_ignore_ascii_case(sale_currency.as_str())) {
        return Err(SyncError::permanent(
            "payment_currency",
            format!(
                "{what} is in {other}, but the ERP sale is in {sale_currency}: record it by hand at the rate the gateway settled, then discard"
            ),
        ));
    }
    if sale_currency.round(amount) != amount {
        return Err(SyncError::permanent(
            "payment_amount_precision",
            format!(
                "{what}: {amount} is finer than {sale_currency}'s minor unit; record it by hand as the gateway settled it, then discard"
            ),
        ));
    }
    Ok(())
}

/// The ERP sale's currency, as the ERP says, else the channel's.
fn sale_currency(money: &SaleMoney, channel: &ChannelConfig) -> CurrencyCode {
    money
        .currency
        .as_deref()
        .and_then(|code| CurrencyCode::parse(code).ok())
        .unwrap_or_else(|| channel.currency.clone())
}

pub fn plan_transaction(
    channel: &ChannelConfig,
    transaction: &Transaction,
) -> Result<TransactionPlan, SyncError> {
    let nothing = |why: String| Ok(TransactionPlan::Nothing { why });
    let what = format!(
        "transaction {} ({:?}, {} {} via {:?})",
        transaction.id,
        transaction.kind,
        transaction.amount,
        transaction.currency.as_deref().unwrap_or("?"),
        transaction.gateway
    );
    if channel.payments.is_empty() {
        return nothing(format!(
            "{what}: {} records no payments (no [channels.payments])",
            channel.id
        ));
    }
    // Off and shadow channels write nothing to the ERP; their orders are not there.
    if channel.mode != crate::config::Mode::Live {
        return nothing(format!(
            "{what}: {} is {:?}, so no payment is recorded",
            channel.id, channel.mode
        ));
    }
    match transaction.status {
        TransactionStatus::Pending => {
            return nothing(format!(
                "{what} is pending: no money moved yet (its success comes as a new transaction or a capture)"
            ));
        }
        TransactionStatus::Failed => {
            return nothing(format!("{what} failed: no money moved"));
        }
        TransactionStatus::Success => {}
    }
    match &transaction.kind {
        TransactionKind::Sale | TransactionKind::Capture => {}
        TransactionKind::Authorization | TransactionKind::Void => {
            return nothing(format!("{what}: an authorisation or void moves no money"));
        }
        // A card reader's authorisation and a refund Shopify only suggests move no money.
        TransactionKind::Other(kind)
            if kind == "emv_authorization" || kind == "suggested_refund" =>
        {
            return nothing(format!("{what}: a {kind} moves no money"));
        }
        TransactionKind::Refund => {
            return nothing(format!(
                "{what}: a refund's money is recorded with its refund, on its credit note"
            ));
        }
        TransactionKind::Change | TransactionKind::Other(_) => {
            return Err(SyncError::permanent(
                "unsupported_transaction",
                format!(
                    "{what} is of a kind erpsync does not book (cash change, or a kind newer than it knows): record it by hand, then discard"
                ),
            ));
        }
    }
    if transaction.amount <= Decimal::ZERO {
        return nothing(format!("{what}: no amount"));
    }
    if !channel.payments.contains_key(&transaction.gateway) {
        journal_of(channel, &transaction.gateway, &channel.currency)?;
    }
    Ok(TransactionPlan::Receive {
        gateway: transaction.gateway.clone(),
        amount: transaction.amount,
    })
}

/// One transaction into the ERP, once per transaction id.
pub async fn sync_transaction(
    deps: &PaymentDeps<'_>,
    channel: &ChannelConfig,
    transaction: &Transaction,
) -> Result<PaymentOutcome, SyncError> {
    let entity = transaction_entity(channel, transaction);
    let key = IdempotencyKey::new(
        Flow::PaymentSync,
        &channel.id,
        &format!("txn-{}", transaction.id),
    );
    let what = format!("transaction {}", transaction.id);
    let work = receive(deps, channel, transaction, &entity);
    let hash = PayloadHash::of(transaction);
    finish(
        deps,
        &entity,
        once(deps.idempotency, &key, &hash, deps.lease_until, &what, work).await,
    )
    .await
}

async fn finish(
    deps: &PaymentDeps<'_>,
    entity: &EntityRef,
    result: Result<Once<PaymentOutcome>, SyncError>,
) -> Result<PaymentOutcome, SyncError> {
    match result {
        Ok(Once::Ran(outcome)) => Ok(outcome),
        Ok(Once::Replayed) => Ok(PaymentOutcome::Replayed),
        Err(error) => {
            note_failure(deps.state, entity, &error, None, OffsetDateTime::now_utc()).await;
            Err(error)
        }
    }
}

fn record(entity: &EntityRef, status: SyncStatus, erp_id: Option<i64>, note: String) -> SyncRecord {
    SyncRecord {
        basis: None,
        entity: entity.clone(),
        status,
        erp_id,
        erp_number: None,
        version: None,
        note: Some(note),
    }
}

async fn receive(
    deps: &PaymentDeps<'_>,
    channel: &ChannelConfig,
    transaction: &Transaction,
    entity: &EntityRef,
) -> Result<(PaymentOutcome, SyncRecord), SyncError> {
    let (gateway, amount) = match plan_transaction(channel, transaction)? {
        TransactionPlan::Receive { gateway, amount } => (gateway, amount),
        TransactionPlan::Nothing { why } => {
            info!(transaction = %transaction.id, %why, "nothing to record");
            let outcome = PaymentOutcome::NothingToRecord { why: why.clone() };
            return Ok((outcome, record(entity, SyncStatus::Synced, None, why)));
        }
    };
    let order_reference = sale_reference(&channel.id, &transaction.order_id);
    let what = format!(
        "payment {} ({amount} {} via {gateway}) is for order {} of {}",
        transaction.id,
        transaction.currency.as_deref().unwrap_or("?"),
        transaction.order_id,
        channel.id
    );
    let Some(sale) = deps.erp.find_sale_by_reference(&order_reference).await? else {
        // A payment comes with its order (the two webhooks fire together, on two queues):
        // it looks again in a couple of minutes, not at the refunds' half hour.
        return Err(sale_awaited(
            deps.state,
            &channel.id,
            &transaction.order_id,
            "payment",
            &what,
            std::time::Duration::from_secs(120),
        )
        .await);
    };
    match sale.state {
        // Order-sync is still at it; a payment on a draft sale would confirm it early.
        ErpSaleState::Draft | ErpSaleState::Quotation => {
            return Err(SyncError::retryable(
                "order_not_confirmed_yet",
                format!("{what}, whose ERP sale is not confirmed yet"),
            ));
        }
        ErpSaleState::Cancelled => {
            return Err(SyncError::permanent(
                "payment_for_cancelled_sale",
                format!(
                    "{what}, whose ERP sale {} is cancelled: the money was taken, so reinstate the sale or record the payment and its refund by hand, then discard",
                    sale.number.as_deref().unwrap_or("?")
                ),
            ));
        }
        _ => {}
    }
    let before = deps.erp.sale_money(sale.id).await?;
    let currency = sale_currency(&before, channel);
    bookable(amount, transaction.currency.as_deref(), &currency, &what)?;
    let journal = journal_of(channel, &gateway, &currency)?;
    let reference = payment_reference(&channel.id, &transaction.id);
    // An invoice a person posted already takes the payment on its line; otherwise the
    // invoice takes the sale's payments when it is posted.
    let line = open_invoice_line(&before.invoices, amount, &currency);
    let date = transaction
        .processed_at
        .unwrap_or_else(OffsetDateTime::now_utc)
        .date();
    let payment = deps
        .erp
        .record_payment(&NewPayment {
            reference: &reference,
            sale_id: sale.id,
            journal: &journal,
            kind: PaymentKind::Receivable,
            amount,
            date,
            line,
        })
        .await?;
    let after = deps.erp.sale_money(sale.id).await?;
    let (status, note) = settle_invoice(deps.erp, sale.id, after, &currency).await?;
    let note = format!(
        "{amount} {currency} received via {gateway} ({journal}) on sale {}: {note}",
        sale.number.as_deref().unwrap_or("?")
    );
    info!(transaction = %transaction.id, payment = payment.id, %note, "payment recorded");
    Ok((
        PaymentOutcome::Recorded {
            payments: vec![payment.id],
            note: note.clone(),
        },
        record(entity, status, Some(payment.id), note),
    ))
}

/// The line of a posted, unpaid invoice that can take `amount` whole.
fn open_invoice_line(
    invoices: &[ErpInvoice],
    amount: Decimal,
    currency: &CurrencyCode,
) -> Option<i64> {
    invoices
        .iter()
        .filter(|i| i.state == InvoiceState::Posted && i.total > Decimal::ZERO)
        .find(|i| currency.round(i.amount_to_pay) >= amount)
        .and_then(|i| i.line_to_pay)
}

/// What to do with the sale's customer invoice now that its payments changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvoiceStep {
    /// The payments cover it exactly: post it, and the ERP settles it with them.
    Post { invoice: i64 },
    /// Nothing to do now (`attention`: a person must look).
    Wait { note: String, attention: bool },
}

/// Money received on the sale (successful receivable payments) against what it invoices.
pub fn invoice_step(money: &SaleMoney, currency: &CurrencyCode) -> InvoiceStep {
    let received: Decimal = money
        .payments
        .iter()
        .filter(|p| p.kind == PaymentKind::Receivable && p.state == ErpPaymentState::Succeeded)
        .map(|p| p.amount)
        .sum();
    let invoices: Vec<&ErpInvoice> = money
        .invoices
        .iter()
        .filter(|i| i.total > Decimal::ZERO && i.state != InvoiceState::Cancelled)
        .collect();
    let received = currency.round(received);
    if invoices.is_empty() {
        return InvoiceStep::Wait {
            note: format!(
                "{received} received; the sale has no invoice yet, which takes its payments when posted"
            ),
            attention: false,
        };
    }
    let invoiced = currency.round(invoices.iter().map(|i| i.total).sum());
    let drafts: Vec<&&ErpInvoice> = invoices
        .iter()
        .filter(|i| matches!(i.state, InvoiceState::Draft | InvoiceState::Validated))
        .collect();
    if received > invoiced {
        return InvoiceStep::Wait {
            note: format!(
                "{received} received but {invoiced} invoiced: {} more than the invoice; refund it in the shop or invoice the difference",
                received - invoiced
            ),
            attention: true,
        };
    }
    if received < invoiced {
        return InvoiceStep::Wait {
            note: format!(
                "{received} of {invoiced} received; the invoice is posted once the rest is"
            ),
            attention: false,
        };
    }
    match drafts.as_slice() {
        [] => InvoiceStep::Wait {
            note: format!("{received} received, the invoice is posted"),
            attention: false,
        },
        [draft] => InvoiceStep::Post { invoice: draft.id },
        _ => InvoiceStep::Wait {
            note: format!(
                "{received} received against {} draft invoices: post them in the ERP, which links the payments",
                drafts.len()
            ),
            attention: true,
        },
    }
}

/// Posts the invoice when its payments cover it, then says whether it reads paid.
async fn settle_invoice(
    erp: &dyn PaymentsErp,
    sale_id: i64,
    money: SaleMoney,
    currency: &CurrencyCode,
) -> Result<(SyncStatus, String), SyncError> {
    let invoice = match invoice_step(&money, currency) {
        InvoiceStep::Post { invoice } => invoice,
        InvoiceStep::Wait { note, attention } => {
            let unpaid = money
                .invoices
                .iter()
                .find(|i| i.total > Decimal::ZERO && i.state == InvoiceState::Posted);
            return Ok(match (attention, unpaid) {
                (true, _) => (SyncStatus::NeedsAttention, note),
                (false, Some(invoice)) if note.ends_with("the invoice is posted") => (
                    SyncStatus::NeedsAttention,
                    format!(
                        "{note} but invoice {} still has {} to pay: reconcile it with the payments in the ERP",
                        invoice.number.as_deref().unwrap_or("?"),
                        invoice.amount_to_pay
                    ),
                ),
                (false, _) => (SyncStatus::Synced, note),
            });
        }
    };
    erp.post_invoice(invoice).await?;
    let after = erp.sale_money(sale_id).await?;
    let posted = after.invoices.iter().find(|i| i.id == invoice);
    Ok(match posted {
        Some(i) if i.state == InvoiceState::Paid => (
            SyncStatus::Synced,
            format!(
                "invoice {} posted and paid",
                i.number.as_deref().unwrap_or("?")
            ),
        ),
        Some(i) => (
            SyncStatus::NeedsAttention,
            format!(
                "invoice {} posted but not paid ({} to pay, state {:?}): reconcile it with the sale's payments in the ERP",
                i.number.as_deref().unwrap_or("?"),
                i.amount_to_pay,
                i.state
            ),
        ),
        None => (
            SyncStatus::NeedsAttention,
            format!("invoice {invoice} was posted but is no longer on the sale"),
        ),
    })
}

/// A refund's money into the ERP, once per refund: one payment per successful refund
/// transaction, settling the refund's credit note (posted first if it is still a draft).
/// Runs after the refund is booked (`returns::sync_refund`).
pub async fn sync_refund_money(
    deps: &PaymentDeps<'_>,
    channel: &ChannelConfig,
    refund: &Refund,
) -> Result<PaymentOutcome, SyncError> {
    let entity = refund_money_entity(channel, refund);
    let key = IdempotencyKey::new(
        Flow::PaymentSync,
        &channel.id,
        &format!("refund-{}", refund.id),
    );
    let what = format!("refund {}'s money", refund.id);
    let hash = PayloadHash::of(&refund.paid);
    let work = pay_back(deps, channel, refund, &entity);
    finish(
        deps,
        &entity,
        once(deps.idempotency, &key, &hash, deps.lease_until, &what, work).await,
    )
    .await
}

async fn pay_back(
    deps: &PaymentDeps<'_>,
    channel: &ChannelConfig,
    refund: &Refund,
    entity: &EntityRef,
) -> Result<(PaymentOutcome, SyncRecord), SyncError> {
    let nothing = |why: String| {
        let outcome = PaymentOutcome::NothingToRecord { why: why.clone() };
        Ok((outcome, record(entity, SyncStatus::Synced, None, why)))
    };
    if channel.payments.is_empty() || channel.mode != crate::config::Mode::Live {
        return nothing(format!(
            "{} records no payments (no [channels.payments], or not live)",
            channel.id
        ));
    }
    if refund.paid.is_empty() {
        return nothing(format!("refund {} moved no money", refund.id));
    }
    let order_reference = sale_reference(&channel.id, &refund.order_id);
    // A return sale carries the credit note; without one (units refunded before dispatch,
    // a cancelled order) the credit note is the order sale's own, from its amendment.
    let sale = match deps
        .erp
        .find_sale_by_reference(&return_reference(&order_reference, &refund.id))
        .await?
    {
        Some(sale) => sale,
        None => match deps.erp.find_sale_by_reference(&order_reference).await? {
            Some(sale) => sale,
            None => {
                let what = format!(
                    "refund {}'s money is for order {} of {}",
                    refund.id, refund.order_id, channel.id
                );
                return Err(sale_awaited(
                    deps.state,
                    &channel.id,
                    &refund.order_id,
                    "refund",
                    &what,
                    REFUND_WAIT,
                )
                .await);
            }
        },
    };
    let money = deps.erp.sale_money(sale.id).await?;
    let currency = sale_currency(&money, channel);
    let mut legs = Vec::new();
    for paid in &refund.paid {
        let what = format!("refund {}'s money {}", refund.id, paid.amount);
        bookable(paid.amount, paid.currency.as_deref(), &currency, &what)?;
        let Some(transaction) = &paid.transaction_id else {
            return Err(SyncError::permanent(
                "refund_transaction_unnamed",
                format!("{what} names no transaction id: record it by hand, then discard"),
            ));
        };
        let gateway = paid.gateway.as_deref().unwrap_or_default();
        legs.push((transaction, journal_of(channel, gateway, &currency)?, paid));
    }
    let Some(credit_note) = money
        .invoices
        .iter()
        .filter(|i| i.total < Decimal::ZERO && i.state != InvoiceState::Cancelled)
        .max_by_key(|i| i.id)
        .cloned()
    else {
        let total: Decimal = refund.paid.iter().map(|p| p.amount).sum();
        let number = sale.number.as_deref().unwrap_or("?");
        let received: Decimal = money
            .payments
            .iter()
            .filter(|p| p.kind == PaymentKind::Receivable && p.state == ErpPaymentState::Succeeded)
            .map(|p| p.amount)
            .sum();
        if received.is_zero() {
            // No money of the order is in the ERP (it came before payments were recorded, or
            // its payment is still on its way): there is nothing to pay back against.
            let why = format!(
                "refund {} paid back {total} {currency}; sale {number} holds no payment and no credit note, so no refund payment is recorded",
                refund.id
            );
            return nothing(why);
        }
        // The money is in the ERP but the credit note is not yet: the units leave the sale
        // with the order's update or cancellation, which may still be on its way.
        return Err(SyncError::retryable(
            "credit_note_pending",
            format!(
                "refund {} paid back {total} {currency}, but sale {number}, which received {received}, has no credit note yet: retried until the order's update or cancellation makes it; if none comes, credit the sale in the ERP and redrive",
                refund.id
            ),
        ));
    };
    if matches!(
        credit_note.state,
        InvoiceState::Draft | InvoiceState::Validated
    ) {
        deps.erp.post_invoice(credit_note.id).await?;
    }
    let posted = deps.erp.sale_money(sale.id).await?;
    let line = posted
        .invoices
        .iter()
        .find(|i| i.id == credit_note.id)
        .and_then(|i| i.line_to_pay);
    let mut payments = Vec::new();
    for (transaction, journal, paid) in legs {
        let reference = payment_reference(&channel.id, transaction);
        let payment = deps
            .erp
            .record_payment(&NewPayment {
                reference: &reference,
                sale_id: sale.id,
                journal: &journal,
                kind: PaymentKind::Payable,
                amount: paid.amount,
                date: paid
                    .processed_at
                    .unwrap_or_else(OffsetDateTime::now_utc)
                    .date(),
                line,
            })
            .await?;
        payments.push(payment.id);
    }
    let settled = deps.erp.sale_money(sale.id).await?;
    let credit = settled.invoices.iter().find(|i| i.id == credit_note.id);
    let number = credit_note.number.clone().unwrap_or_else(|| "?".to_owned());
    let paid_back: Decimal = refund.paid.iter().map(|p| p.amount).sum();
    let (status, note) = match credit {
        Some(i) if i.state == InvoiceState::Paid => (
            SyncStatus::Synced,
            format!("{paid_back} {currency} paid back; credit note {number} settled"),
        ),
        Some(i) => (
            SyncStatus::NeedsAttention,
            format!(
                "{paid_back} {currency} paid back, but credit note {number} still has {} to pay (state {:?}): reconcile it with the refund payments in the ERP",
                i.amount_to_pay, i.state
            ),
        ),
        None => (
            SyncStatus::NeedsAttention,
            format!("credit note {number} is no longer on sale {}", sale.id),
        ),
    };
    Ok((
        PaymentOutcome::Recorded {
            payments: payments.clone(),
            note: note.clone(),
        },
        record(entity, status, payments.first().copied(), note),
    ))
}

#[cfg(test)]
mod tests;
