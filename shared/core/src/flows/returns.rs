//! Refunds from the shop to the ERP: a refund becomes a return sale in the ERP (negative
//! quantities) whose invoice is the credit note. Goods the refund restocks come back on the
//! return shipment, received at once; items the customer keeps, shipping refunds and
//! goodwill are credited through service lines, so stock is not touched. Every line is
//! priced and taxed as the original sale line was: the credit note mirrors the invoice.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::info;

use crate::config::{ChannelConfig, Config};
use crate::error::SyncError;
use crate::mapping::sale_reference;
use crate::model::refund::Refund;
use crate::model::state::{EntityRef, Flow, IdempotencyKey, PayloadHash, SyncRecord, SyncStatus};
use crate::ports::ReturnsErp;
use crate::ports::confirm;
use crate::ports::{
    IdempotencyStore, Once, SyncStateStore, keep_one_sale, note_failure, once, sale_awaited,
};

mod plan;
pub use plan::{ReturnPlan, plan_return};
pub struct ReturnDeps<'a> {
    pub config: &'a Config,
    pub idempotency: &'a dyn IdempotencyStore,
    pub state: &'a dyn SyncStateStore,
    pub erp: &'a dyn ReturnsErp,
    pub lease_until: OffsetDateTime,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum ReturnOutcome {
    Booked {
        return_sale: Option<String>,
        credit_note: Option<String>,
        credit_total: Decimal,
        restocked: bool,
    },
    /// The refund's units left the sale before dispatch (or the sale was cancelled): no
    /// return sale, no credit note.
    NothingToBook,
    Replayed,
}

/// The entity a refund is recorded under.
pub fn refund_entity(channel: &ChannelConfig, refund: &Refund) -> EntityRef {
    EntityRef {
        flow: Flow::ReturnSync,
        channel: channel.id.clone(),
        entity_id: format!("{}/refund-{}", refund.order_id, refund.id),
    }
}

/// One refund into the ERP, once per refund id.
pub async fn sync_refund(
    deps: &ReturnDeps<'_>,
    channel: &ChannelConfig,
    refund: &Refund,
) -> Result<ReturnOutcome, SyncError> {
    let key = IdempotencyKey::new(
        Flow::ReturnSync,
        &channel.id,
        &format!("refund-{}", refund.id),
    );
    let hash = PayloadHash::of(refund);
    let what = format!("refund {}", refund.id);
    match once(
        deps.idempotency,
        &key,
        &hash,
        deps.lease_until,
        &what,
        book(deps, channel, refund),
    )
    .await
    {
        Ok(Once::Ran(outcome)) => Ok(outcome),
        Ok(Once::Replayed) => Ok(ReturnOutcome::Replayed),
        Err(error) => {
            note_failure(
                deps.state,
                &refund_entity(channel, refund),
                &error,
                None,
                OffsetDateTime::now_utc(),
            )
            .await;
            Err(error)
        }
    }
}

async fn book(
    deps: &ReturnDeps<'_>,
    channel: &ChannelConfig,
    refund: &Refund,
) -> Result<(ReturnOutcome, SyncRecord), SyncError> {
    let order_reference = sale_reference(&channel.id, &refund.order_id);
    let Some(original) = deps.erp.find_sale_by_reference(&order_reference).await? else {
        let paid_back = refund.refunded_in(&channel.currency).0;
        let what = format!(
            "refund {} ({paid_back} paid back) is for order {} of {}",
            refund.id, refund.order_id, channel.id
        );
        return Err(sale_awaited(
            deps.state,
            &channel.id,
            &refund.order_id,
            "refund",
            &what,
            std::time::Duration::from_secs(30 * 60),
        )
        .await);
    };
    let details = deps.erp.sale_details(original.id).await?;
    // The refund reads on the order's basis, which order-sync records when it books the
    // order. The sale is in the ERP before that record is: until it is, wait. A row that
    // finished long ago without one predates it.
    let order_state = deps
        .state
        .get(&EntityRef::order(&channel.id, refund.order_id.as_str()))
        .await?;
    let basis = order_state.as_ref().and_then(|s| s.basis.clone());
    let finished = order_state.as_ref().is_some_and(|s| {
        matches!(
            s.status,
            SyncStatus::Synced
                | SyncStatus::Backordered
                | SyncStatus::Skipped
                | SyncStatus::Shadow
                | SyncStatus::Resolved
        )
    });
    if basis.is_none() && !finished {
        return Err(SyncError::retryable(
            "order_basis_pending",
            format!(
                "refund {} is for order {}, whose booking in the ERP is not recorded yet (tax basis, units refunded before dispatch); retried once it is",
                refund.id, refund.order_id
            ),
        ));
    }
    let (draft, expected_credit) = match plan_return(
        deps.config,
        channel,
        refund,
        &details,
        &order_reference,
        basis.as_ref(),
    )? {
        ReturnPlan::Book {
            draft,
            expected_credit,
        } => (draft, expected_credit),
        ReturnPlan::Nothing { why, attention } => {
            info!(refund = %refund.id, attention, "nothing to book");
            let record = SyncRecord {
                basis: None,
                entity: refund_entity(channel, refund),
                status: if attention {
                    SyncStatus::NeedsAttention
                } else {
                    SyncStatus::Synced
                },
                erp_id: None,
                erp_number: None,
                version: None,
                note: Some(why),
            };
            return Ok((ReturnOutcome::NothingToBook, record));
        }
    };
    // A return left by an interrupted attempt is moved on, not made twice; a draft a lost
    // create left beside it is deleted (before confirming, and again once settled: such a
    // create can land late).
    let sale = match deps.erp.find_sale_by_reference(&draft.reference).await? {
        Some(sale) => sale,
        None => deps.erp.create_return(&draft).await?,
    };
    let sale = keep_one_sale(deps.erp, &draft.reference, sale).await?;
    let sale = confirm(deps.erp, sale, &draft.reference).await?;
    let settled = deps.erp.settle_return(sale.id, draft.restocks()).await?;
    keep_one_sale(deps.erp, &draft.reference, sale.clone()).await?;
    info!(refund = %refund.id, return_sale = ?sale.number, credit_note = ?settled.credit_note, "refund booked");
    let note = format!(
        "refund {}: return sale {}, credit note {} ({}){}; the shop paid back {}",
        refund.id,
        sale.number.as_deref().unwrap_or("?"),
        settled.credit_note.as_deref().unwrap_or("(none)"),
        settled.credit_total,
        if settled.restocked {
            ", goods back in stock"
        } else {
            ", nothing restocked"
        },
        refund.refunded_in(&channel.currency).0
    );
    // The credit note must pay back what the shop paid back, to the minor unit; a difference
    // is a person's to settle, never silent.
    let differs = expected_credit
        .filter(|expected| channel.currency.round(settled.credit_total.abs()) != *expected);
    let (status, note) = match differs {
        Some(expected) => (
            SyncStatus::NeedsAttention,
            format!(
                "{note}. The credit note totals {} but the shop paid back {expected} for what it credits: correct the credit note or the refund by hand",
                settled.credit_total.abs()
            ),
        ),
        None => (SyncStatus::Synced, note),
    };
    let record = SyncRecord {
        basis: None,
        entity: refund_entity(channel, refund),
        status,
        erp_id: Some(sale.id),
        erp_number: sale.number.clone(),
        version: None,
        note: Some(note),
    };
    Ok((
        ReturnOutcome::Booked {
            return_sale: sale.number,
            credit_note: settled.credit_note,
            credit_total: settled.credit_total,
            restocked: settled.restocked,
        },
        record,
    ))
}

#[cfg(test)]
mod tests;
