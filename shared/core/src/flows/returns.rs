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
use crate::mapping::{bundle_shares, lines_for_total, sale_reference};
use crate::model::ids::{CurrencyCode, Sku};
use crate::model::refund::{Refund, RefundedItem, RestockType};
use crate::model::state::{
    EntityRef, Flow, IdempotencyKey, OrderBasis, PayloadHash, SyncRecord, SyncStatus,
};
use crate::ports::confirm;
use crate::ports::{
    ErpSaleDetails, ErpSaleState, IdempotencyStore, Once, SyncStateStore, keep_one_sale,
    note_failure, once,
};
use crate::ports::{ReturnDraft, ReturnLine, ReturnProduct, ReturnsErp};

/// The refund's items split into the units refunded before fulfilment (the order's
/// amendment takes them off the sale) and the rest (credited). `recorded`: what order-sync
/// took off the sale for this refund, per line, which rules when it has seen the refund;
/// without it the refund's own fulfilment status decides, and a partly fulfilled line waits
/// for the order.
fn split_by_fulfilment(
    refund: &Refund,
    recorded: Option<&std::collections::BTreeMap<String, u32>>,
    currency: &CurrencyCode,
) -> Result<(Vec<RefundedItem>, Vec<RefundedItem>), SyncError> {
    let mut left: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    // Cancelled units first: order-sync takes them off before the ones kept unrestocked. The
    // items keep the refund's order in the credit note.
    let mut items: Vec<(usize, &RefundedItem)> = refund.items.iter().enumerate().collect();
    items.sort_by_key(|(_, i)| match i.restock_type {
        RestockType::Cancel => 0,
        RestockType::Return | RestockType::LegacyRestock => 2,
        RestockType::NoRestock | RestockType::Unknown => 1,
    });
    let mut parts = Vec::with_capacity(items.len());
    for (position, item) in items {
        let units = match recorded {
            Some(recorded) if !item.restocks() => {
                let left = left.entry(&item.line_item_id).or_insert_with(|| {
                    recorded.get(&item.line_item_id).copied().unwrap_or(0)
                });
                let units = item.quantity.min(*left);
                *left -= units;
                units
            }
            Some(_) => 0,
            None => item.before_fulfilment_by_itself().ok_or_else(|| {
                SyncError::retryable(
                    "refund_awaits_order",
                    format!(
                        "refund {} refunds {} unit(s) of line item {} of order {}, which it gives as partly fulfilled (or not at all): which of them had shipped is read from the order's update that carries the refund, so it waits for order-sync to sync that update. If it never does (the update needs a person, or never came): settle the order's exception first (its change applied to the ERP sale by hand), then erpsync replay the order, then redrive this refund",
                        refund.id, item.quantity, item.line_item_id, refund.order_id
                    ),
                )
            })?,
        };
        parts.push((position, item.split(units, currency)));
    }
    parts.sort_by_key(|(position, _)| *position);
    let (before, after): (Vec<_>, Vec<_>) = parts.into_iter().map(|(_, parts)| parts).unzip();
    Ok((
        before.into_iter().flatten().collect(),
        after.into_iter().flatten().collect(),
    ))
}

/// What a refund asks of the ERP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReturnPlan {
    /// A return sale whose credit note should total `expected_credit` (money, positive).
    Book {
        draft: ReturnDraft,
        expected_credit: Option<Decimal>,
    },
    /// Nothing to book, and why; `attention`: the money paid back is not what the units
    /// and shipping were worth (a fee kept, say), which a person must book.
    Nothing { why: String, attention: bool },
}

/// The return sale for a refund, line by line. Units refunded before fulfilment are left to
/// the order's amendment (they leave the sale); the rest is credited at the refund's own
/// amounts, net of tax (`taxes_included`: the order's, and so the refund's, amounts include
/// it). Errors name what cannot be matched.
pub fn plan_return(
    config: &Config,
    channel: &ChannelConfig,
    refund: &Refund,
    original: &ErpSaleDetails,
    order_reference: &str,
    basis: Option<&OrderBasis>,
) -> Result<ReturnPlan, SyncError> {
    let currency = &channel.currency;
    // Without the order's basis (rows from before it was recorded) the amounts are taken as
    // tax on top, no rounding line is guessed, and a credit note that differs is flagged.
    let taxes_included = basis.is_some_and(|b| b.taxes_included);
    let recorded = basis
        .and_then(|b| b.refunded_before_fulfilment.as_ref())
        .and_then(|split| split.get(&refund.id));
    let sale_number = original.sale.number.as_deref().unwrap_or(order_reference);
    if refund.pending > 0 {
        return Err(SyncError::retryable(
            "refund_pending",
            format!(
                "refund {} has a refund transaction still pending: booked once the money has moved",
                refund.id
            ),
        ));
    }
    let (refunded, foreign) = refund.refunded_in(currency);
    let (shipping_net, shipping_gross) = if taxes_included {
        (refund.shipping - refund.shipping_tax, refund.shipping)
    } else {
        (refund.shipping, refund.shipping + refund.shipping_tax)
    };
    let (before, after) = split_by_fulfilment(refund, recorded, currency)?;
    // Nothing is booked for units that leave the sale: what they were worth (and shipping)
    // should be exactly the money paid back, or the difference is a person's to book.
    let nothing = |why: String| {
        let worth: Decimal = refund
            .items
            .iter()
            .map(|i| i.gross(taxes_included))
            .sum::<Decimal>()
            + shipping_gross;
        let differs = !foreign.is_empty() || currency.round(worth) != currency.round(refunded);
        let why = if differs {
            format!(
                "{why}. But the shop paid back {refunded}{} for what was worth {}: book the difference by hand",
                if foreign.is_empty() {
                    String::new()
                } else {
                    format!(" (and {})", foreign.join(", "))
                },
                currency.round(worth)
            )
        } else {
            why
        };
        Ok(ReturnPlan::Nothing {
            why,
            attention: differs,
        })
    };
    if original.sale.state == ErpSaleState::Cancelled {
        return nothing(format!(
            "refund {}: ERP sale {sale_number} is cancelled, so nothing was invoiced to credit",
            refund.id
        ));
    }
    // Everything the ERP sale still holds was refunded before dispatch: the order was
    // cancelled (its orders/cancelled cancels the sale), shipping refund and all.
    if after.is_empty() && !before.is_empty() && covers_the_sale(config, channel, &before, original)
    {
        return nothing(format!(
            "refund {}: every unit of ERP sale {sale_number} was refunded before dispatch; the order's cancellation removes them, with nothing to credit",
            refund.id
        ));
    }
    let mut lines = Vec::new();
    let original_line = |sku: &Sku| {
        original
            .lines
            .iter()
            .find(|l| l.sku.as_ref() == Some(sku) && l.quantity > Decimal::ZERO)
    };
    for item in &after {
        let Some(sku) = &item.sku else {
            return Err(SyncError::permanent(
                "refund_line_unmatched",
                format!(
                    "refund {} returns line item {} which has no SKU: book that part of the return in the ERP by hand",
                    refund.id, item.line_item_id
                ),
            ));
        };
        // A bundle comes back as its components, its amount shared as the sale shared it.
        let net = item.net(taxes_included);
        let components: Vec<(Sku, u32, Decimal)> = match channel.bundles.get(sku) {
            Some(bundle) => bundle
                .components
                .iter()
                .zip(bundle_shares(net, bundle, currency))
                .map(|(c, share)| (c.sku.clone(), item.quantity * c.quantity.max(1), share))
                .collect(),
            None => vec![(channel.erp_sku(sku).clone(), item.quantity, net)],
        };
        for (erp_sku, quantity, amount) in components {
            let line = original_line(&erp_sku).ok_or_else(|| {
                SyncError::permanent(
                    "refund_line_unmatched",
                    format!(
                        "refund {} returns {erp_sku}, which ERP sale {sale_number} does not hold: check the order, then book the return by hand or discard",
                        refund.id
                    ),
                )
            })?;
            let (product, description) = if item.restocks() {
                (ReturnProduct::Goods, format!("{erp_sku} returned"))
            } else {
                (
                    ReturnProduct::Service(config.erp.refund_sku.clone()),
                    format!("{erp_sku} x{quantity} refunded, not returned"),
                )
            };
            for (units, unit_price) in lines_for_total(amount, quantity, currency) {
                lines.push(ReturnLine {
                    product: product.clone(),
                    quantity: -Decimal::from(units),
                    unit_price,
                    like_line: Some(line.id),
                    description: description.clone(),
                });
            }
        }
    }
    if refund.shipping > Decimal::ZERO {
        let shipping_line = original_line(&config.erp.shipping_sku);
        lines.push(ReturnLine {
            product: ReturnProduct::Service(config.erp.shipping_sku.clone()),
            quantity: -Decimal::ONE,
            unit_price: currency.round(shipping_net),
            like_line: shipping_line.map(|l| l.id),
            description: "shipping refunded".to_owned(),
        });
    }
    if !foreign.is_empty() && (lines.is_empty() || !refund.discrepancy.is_zero()) {
        return Err(SyncError::permanent(
            "refund_foreign_currency",
            format!(
                "refund {} paid back {} in another currency than the shop's {currency}: book its credit note by hand, then discard",
                refund.id,
                foreign.join(", ")
            ),
        ));
    }
    if lines.is_empty() {
        if before.is_empty() && refunded > Decimal::ZERO {
            // Goodwill: money back, nothing returned.
            lines.push(ReturnLine {
                product: ReturnProduct::Service(config.erp.refund_sku.clone()),
                quantity: -Decimal::ONE,
                unit_price: currency.round(refunded),
                like_line: None,
                description: format!(
                    "goodwill refund{}",
                    refund
                        .note
                        .as_ref()
                        .map(|n| format!(": {n}"))
                        .unwrap_or_default()
                ),
            });
        } else if before.is_empty() {
            return Err(SyncError::permanent(
                "refund_empty",
                format!(
                    "refund {} returns nothing and pays nothing back: nothing to book; discard",
                    refund.id
                ),
            ));
        } else {
            return nothing(format!(
                "refund {}: its units were refunded before dispatch; the order's amendment removes them from ERP sale {sale_number}",
                refund.id
            ));
        }
    } else if !refund.discrepancy.is_zero() {
        // Shopify's discrepancy is the calculated refund less the money refunded: a positive
        // one (a restocking fee) keeps money back, a negative one pays more.
        lines.push(ReturnLine {
            product: ReturnProduct::Service(config.erp.refund_sku.clone()),
            quantity: if refund.discrepancy.is_sign_positive() {
                Decimal::ONE
            } else {
                -Decimal::ONE
            },
            unit_price: currency.round(refund.discrepancy.abs()),
            like_line: None,
            description: "refund adjusted in the shop".to_owned(),
        });
    }
    // The money for units refunded before dispatch is not credited: the sale loses them.
    let not_credited: Decimal = before.iter().map(|i| i.gross(taxes_included)).sum();
    let expected_credit = foreign
        .is_empty()
        .then(|| currency.round(refunded - not_credited));
    if let (Some(expected), Some(rounding_sku), Some(_)) =
        (expected_credit, &config.erp.rounding_sku, basis)
    {
        rounding_line(
            config,
            original,
            &mut lines,
            expected,
            rounding_sku,
            currency,
        );
    }
    Ok(ReturnPlan::Book {
        draft: ReturnDraft {
            reference: format!("{order_reference}/refund/{}", refund.id),
            description: format!(
                "refund {} of {sale_number}{}",
                refund.id,
                refund
                    .note
                    .as_ref()
                    .map(|n| format!(" ({n})"))
                    .unwrap_or_default()
            ),
            original_sale: original.sale.id,
            lines,
        },
        expected_credit,
    })
}

/// Shop and ERP round tax their own ways (the shop per refund line, Tryton per credit note by
/// default): when the credit note the ERP will make of `lines` misses `expected` by rounding
/// alone, an untaxed line on the rounding product makes up the difference, as the sale's own
/// rounding line does. More than rounding is left for the credit check to flag.
fn rounding_line(
    config: &Config,
    original: &ErpSaleDetails,
    lines: &mut Vec<ReturnLine>,
    expected: Decimal,
    rounding_sku: &Sku,
    currency: &CurrencyCode,
) {
    let rates = |like: Option<i64>| -> Vec<(String, Decimal)> {
        original
            .lines
            .iter()
            .find(|l| Some(l.id) == like)
            .map(|l| {
                l.tax_rates
                    .iter()
                    .map(|rate| (rate.to_string(), *rate))
                    .collect()
            })
            .unwrap_or_default()
    };
    // The credit note's total as money owed back: each line's amount is -quantity x price.
    let predicted = crate::mapping::tryton_total(
        lines
            .iter()
            .map(|l| (-l.quantity * l.unit_price, rates(l.like_line))),
        config.erp.tax_rounding,
        currency,
    );
    let difference = currency.round(expected - predicted);
    // Rounding alone moves the two apart by at most half a minor unit for each taxed amount
    // the shop rounded (its refunded items and shipping) and each tax amount the ERP rounds
    // (per line, or per tax over the document); more is a person's to see.
    let taxed: Vec<&ReturnLine> = lines
        .iter()
        .filter(|l| !rates(l.like_line).is_empty())
        .collect();
    let shop_rounded = taxed
        .iter()
        .map(|l| (&l.description, l.like_line))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let erp_rounded = match config.erp.tax_rounding {
        crate::config::TaxRounding::Line => taxed.len(),
        crate::config::TaxRounding::Document => taxed
            .iter()
            .flat_map(|l| rates(l.like_line))
            .map(|(name, _)| name)
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
    };
    let bound = Decimal::new(1, currency.minor_units())
        * Decimal::from((shop_rounded + erp_rounded).max(2))
        / Decimal::TWO;
    if difference.is_zero() || taxed.is_empty() || difference.abs() > bound {
        return;
    }
    lines.push(ReturnLine {
        product: ReturnProduct::Service(rounding_sku.clone()),
        quantity: if difference.is_sign_positive() {
            -Decimal::ONE
        } else {
            Decimal::ONE
        },
        unit_price: difference.abs(),
        like_line: None,
        description: "tax rounding: the money the shop paid back".to_owned(),
    });
}

/// The units refunded before dispatch cover every product unit left on the ERP sale.
fn covers_the_sale(
    config: &Config,
    channel: &ChannelConfig,
    refunded: &[RefundedItem],
    original: &ErpSaleDetails,
) -> bool {
    let mut units: std::collections::HashMap<Sku, Decimal> = std::collections::HashMap::new();
    for item in refunded {
        let Some(sku) = &item.sku else { return false };
        for (erp_sku, quantity) in match channel.bundles.get(sku) {
            Some(bundle) => bundle
                .components
                .iter()
                .map(|c| (c.sku.clone(), item.quantity * c.quantity.max(1)))
                .collect(),
            None => vec![(channel.erp_sku(sku).clone(), item.quantity)],
        } {
            *units.entry(erp_sku).or_default() += Decimal::from(quantity);
        }
    }
    original
        .lines
        .iter()
        .filter(|l| l.quantity > Decimal::ZERO)
        .filter_map(|l| l.sku.as_ref().map(|sku| (sku, l.quantity)))
        // Service lines (shipping, rounding, charges) go with the goods.
        .filter(|(sku, _)| {
            *sku != &config.erp.shipping_sku
                && Some(*sku) != config.erp.rounding_sku.as_ref()
                && !channel.charges.values().any(|charge| charge == *sku)
        })
        .all(|(sku, quantity)| units.get(sku).is_some_and(|u| *u >= quantity))
}

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
        // A refund can overtake its order (a backlog on the orders queue, a webhook lost and
        // brought in by reconciliation every 30 minutes): while the order is on its way it
        // waits, at the retry policy's longest delay, while its receives last, then a person
        // is told. An order parked for a person, or booked but gone from the ERP, or never to
        // be booked (skipped, shadow), is a person's at once.
        let order_state = deps
            .state
            .get(&EntityRef::order(&channel.id, refund.order_id.as_str()))
            .await?;
        let paid_back = refund.refunded_in(&channel.currency).0;
        let what = format!(
            "refund {} ({paid_back} paid back) is for order {} of {}",
            refund.id, refund.order_id, channel.id
        );
        return Err(match order_state.map(|s| s.status) {
            None | Some(SyncStatus::Pending | SyncStatus::Retrying) => SyncError::retryable(
                "order_not_in_erp_yet",
                format!(
                    "{what}, which is not in the ERP yet: retried while the order may still arrive; if it never does, bring the order in (erpsync replay) and redrive"
                ),
            )
            .with_retry_after(std::time::Duration::from_secs(30 * 60)),
            Some(SyncStatus::NeedsAttention) => SyncError::permanent(
                "refund_for_parked_order",
                format!(
                    "{what}, which waits for a person (erpsync exceptions): settle the order first, then redrive this refund"
                ),
            ),
            Some(status) => SyncError::permanent(
                "refund_for_unknown_order",
                format!(
                    "{what}, whose ERP sale cannot be found (its state is {}): book the credit note by hand and discard, or bring the order in (erpsync replay) and redrive",
                    status.as_str()
                ),
            ),
        });
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
mod tests {
    use super::*;
    use crate::model::ids::ExternalOrderId;
    use crate::model::refund::{LineFulfilment, Paid};
    use crate::ports::{ErpAddress, ErpSale, ErpSaleLine, ErpSaleState};

    fn config() -> Config {
        Config::from_toml(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/erpsync.example.toml"
        )))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn sku(text: &str) -> Sku {
        Sku::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn line(id: i64, code: &str, quantity: i64, price: &str) -> ErpSaleLine {
        ErpSaleLine {
            id,
            sku: Some(sku(code)),
            product_id: Some(id * 10),
            unit_id: Some(1),
            quantity: Decimal::from(quantity),
            unit_price: price.parse().unwrap_or_default(),
            description: None,
            tax_rates: vec![Decimal::new(20, 2)],
        }
    }

    fn original() -> ErpSaleDetails {
        ErpSaleDetails {
            sale: ErpSale {
                id: 7,
                number: Some("SO7".to_owned()),
                state: ErpSaleState::Processing,
            },
            customer_id: 3,
            invoice_address_id: 4,
            shipment_address: ErpAddress {
                id: 4,
                street: None,
                postal_code: None,
                city: None,
                country: None,
            },
            lines: vec![
                line(1, "IPOD2008RED", 2, "165.83"),
                line(2, "IPOD2008GREEN", 1, "165.83"),
                line(3, "WOOL-SOCKS", 2, "10.42"),
                line(4, "SHIPPING", 1, "4.17"),
            ],
            fulfilment_started: true,
            invoiced: false,
        }
    }

    fn refund(items: Vec<RefundedItem>, shipping: &str, refunded: &str) -> Refund {
        Refund {
            id: "929361472".to_owned(),
            order_id: ExternalOrderId::parse("450789469").unwrap_or_else(|e| panic!("{e}")),
            note: Some("wrong size".to_owned()),
            items,
            shipping: dec(shipping),
            shipping_tax: Decimal::ZERO,
            discrepancy: Decimal::ZERO,
            paid: vec![Paid {
                amount: dec(refunded),
                currency: Some("GBP".to_owned()),
            }],
            pending: 0,
            shop_currency: None,
        }
    }

    fn dec(text: &str) -> Decimal {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn usd() -> CurrencyCode {
        CurrencyCode::parse("USD").unwrap_or_else(|e| panic!("{e}"))
    }

    /// `quantity` units of a fulfilled line, refunded at `subtotal` (and 20 % tax).
    fn item(code: &str, quantity: u32, restock: RestockType, subtotal: &str) -> RefundedItem {
        RefundedItem {
            line_item_id: "1".to_owned(),
            sku: Some(sku(code)),
            quantity,
            restock_type: restock,
            line_fulfilment: LineFulfilment::Fulfilled,
            subtotal: dec(subtotal),
            tax: (dec(subtotal) * dec("0.2")).round_dp(2),
        }
    }

    fn plan(refund: &Refund) -> Result<ReturnPlan, SyncError> {
        plan_on(refund, false, None)
    }

    /// As order-sync recorded the order: its tax basis, and the units it took off the sale
    /// for this refund, per line (None: a row from before that was kept).
    fn plan_on(
        refund: &Refund,
        taxes_included: bool,
        taken_off: Option<&[(&str, u32)]>,
    ) -> Result<ReturnPlan, SyncError> {
        let config = config();
        let basis = OrderBasis {
            taxes_included,
            refunded_before_fulfilment: taken_off.map(|lines| {
                std::collections::BTreeMap::from([(
                    refund.id.clone(),
                    lines.iter().map(|(l, u)| ((*l).to_owned(), *u)).collect(),
                )])
            }),
            booked: None,
        };
        plan_return(
            &config,
            &config.channels[0],
            refund,
            &original(),
            "uk-shop/450789469",
            Some(&basis),
        )
    }

    fn booked(refund: &Refund) -> (ReturnDraft, Option<Decimal>) {
        match plan(refund).unwrap_or_else(|e| panic!("{e}")) {
            ReturnPlan::Book {
                draft,
                expected_credit,
            } => (draft, expected_credit),
            ReturnPlan::Nothing { why, .. } => panic!("nothing booked: {why}"),
        }
    }

    #[test]
    fn the_documented_refund_parses_in_shop_money() {
        let refund = crate::channels::shopify::parse_refund(include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/shopify-refunds-create.json"
        )))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(refund.id, "929361472");
        assert_eq!(refund.order_id.as_str(), "450789469");
        assert_eq!(
            refund.items,
            [RefundedItem {
                line_item_id: "518995019".to_owned(),
                sku: Some(sku("IPOD2008RED")),
                quantity: 1,
                restock_type: RestockType::NoRestock,
                line_fulfilment: LineFulfilment::Unfulfilled,
                subtotal: Decimal::ZERO,
                tax: Decimal::ZERO,
            }]
        );
        assert_eq!(refund.refunded_in(&usd()), (dec("41.94"), Vec::new()));
        assert_eq!(refund.shipping, Decimal::ZERO);
    }

    #[test]
    fn only_successful_refunds_in_shop_money_count_as_money_back() {
        let mut body: serde_json::Value = serde_json::from_slice(include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/shopify-refunds-create.json"
        )))
        .unwrap_or_default();
        let paid = body["transactions"][0].clone();
        let mut pending = paid.clone();
        pending["status"] = "pending".into();
        let mut errored = paid.clone();
        errored["status"] = "error".into();
        let mut foreign = paid.clone();
        foreign["currency"] = "CAD".into();
        body["transactions"] = serde_json::json!([paid, pending, errored, foreign]);
        let refund = crate::channels::shopify::parse_refund(body.to_string().as_bytes())
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            refund.refunded_in(&usd()),
            (dec("41.94"), vec!["41.94 CAD".to_owned()])
        );
        assert_eq!(refund.pending, 1);
        // Pending money is booked once it has moved.
        let pending = plan(&refund).err().map(|e| e.kind);
        assert_eq!(pending.as_deref(), Some("refund_pending"));
    }

    #[test]
    fn credits_take_the_refund_s_own_amounts_returned_goods_restock_and_kept_ones_do_not() {
        // The sale's line says 165.83 a unit; the refund says what was paid for these.
        let refund = refund(
            vec![
                item("IPOD2008RED", 1, RestockType::Return, "160.00"),
                item("IPOD2008GREEN", 3, RestockType::NoRestock, "100.00"),
            ],
            "4.17",
            "316.17",
        );
        let (draft, expected) = booked(&refund);
        assert_eq!(draft.reference, "uk-shop/450789469/refund/929361472");
        assert!(draft.restocks());
        let summary: Vec<(ReturnProduct, String, String, Option<i64>)> = draft
            .lines
            .iter()
            .map(|l| {
                (
                    l.product.clone(),
                    l.quantity.to_string(),
                    l.unit_price.to_string(),
                    l.like_line,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    ReturnProduct::Goods,
                    "-1".to_owned(),
                    "160.00".to_owned(),
                    Some(1)
                ),
                // 100.00 over three units, to the penny.
                (
                    ReturnProduct::Service(sku("REFUND")),
                    "-2".to_owned(),
                    "33.33".to_owned(),
                    Some(2)
                ),
                (
                    ReturnProduct::Service(sku("REFUND")),
                    "-1".to_owned(),
                    "33.34".to_owned(),
                    Some(2)
                ),
                (
                    ReturnProduct::Service(sku("SHIPPING")),
                    "-1".to_owned(),
                    "4.17".to_owned(),
                    Some(4)
                ),
            ]
        );
        assert_eq!(expected, Some(dec("316.17")));
    }

    #[test]
    fn units_refunded_before_dispatch_are_not_credited_and_a_cancelled_order_books_nothing() {
        // Part of the order refunded before dispatch: the amendment removes it.
        let early = refund(
            vec![item("IPOD2008GREEN", 1, RestockType::Cancel, "165.83")],
            "0",
            "199.00",
        );
        assert!(matches!(
            plan(&early),
            Ok(ReturnPlan::Nothing {
                attention: false,
                ..
            })
        ));
        // The whole order refunded before dispatch, shipping too: the cancellation.
        let all = refund(
            vec![
                item("IPOD2008RED", 2, RestockType::Cancel, "331.66"),
                item("IPOD2008GREEN", 1, RestockType::Cancel, "165.83"),
                item("WOOL-SOCKS", 2, RestockType::Cancel, "20.84"),
            ],
            "4.17",
            "626.17",
        );
        assert!(matches!(
            plan(&all),
            Ok(ReturnPlan::Nothing {
                attention: false,
                ..
            })
        ));
        // The shop kept 10.00 of it (a fee): the sale loses the units, and a person books
        // the kept money, told both amounts.
        let kept = refund(
            vec![item("IPOD2008GREEN", 1, RestockType::Cancel, "165.83")],
            "0",
            "189.00",
        );
        match plan(&kept) {
            Ok(ReturnPlan::Nothing { why, attention }) => {
                assert!(attention);
                assert!(
                    why.contains("paid back 189.00") && why.contains("worth 199.00"),
                    "{why}"
                );
            }
            other => panic!("{other:?}"),
        }
        // A no_restock refund of a line nothing of which was fulfilled is the same.
        let mut unfulfilled = item("IPOD2008GREEN", 1, RestockType::NoRestock, "165.83");
        unfulfilled.line_fulfilment = LineFulfilment::Unfulfilled;
        assert!(matches!(
            plan(&refund(vec![unfulfilled.clone()], "0", "199.00")),
            Ok(ReturnPlan::Nothing {
                attention: false,
                ..
            })
        ));
        // Beside a return, the early unit's money is not part of the credit.
        let mixed = refund(
            vec![
                unfulfilled,
                item("IPOD2008RED", 1, RestockType::Return, "160.00"),
            ],
            "0",
            "391.00",
        );
        let (draft, expected) = booked(&mixed);
        assert_eq!(draft.lines.len(), 1);
        assert_eq!(
            expected,
            Some(dec("192.00")),
            "391.00 less 165.83 + 33.17 tax"
        );
    }

    #[test]
    fn a_bundle_comes_back_as_its_components_and_goodwill_is_a_credit_only() {
        let trio = refund(
            vec![item("IPOD-TRIO", 1, RestockType::Return, "199.00")],
            "0",
            "238.80",
        );
        let (draft, _) = booked(&trio);
        let quantities: Vec<(Option<i64>, String)> = draft
            .lines
            .iter()
            .map(|l| (l.like_line, l.quantity.to_string()))
            .collect();
        assert_eq!(
            quantities,
            [
                (Some(2), "-1".to_owned()),
                (Some(1), "-1".to_owned()),
                (Some(3), "-2".to_owned())
            ]
        );
        let shared: Decimal = draft.lines.iter().map(|l| -l.quantity * l.unit_price).sum();
        assert_eq!(shared, dec("199.00"), "the bundle's amount, to the penny");

        let goodwill = refund(Vec::new(), "0", "15.00");
        let (draft, expected) = booked(&goodwill);
        assert!(!draft.restocks());
        assert_eq!(draft.lines.len(), 1);
        assert_eq!(draft.lines[0].unit_price, dec("15.00"));
        assert_eq!(draft.lines[0].description, "goodwill refund: wrong size");
        assert_eq!(expected, Some(dec("15.00")));
    }

    /// A store whose prices include tax refunds 199.00 of which 33.17 is VAT, shipping 4.99
    /// of which 0.83: the credit lines are the nets (Tryton adds the tax back), and the credit
    /// note must total the 203.99 paid back, not that plus the tax again.
    #[test]
    fn a_tax_inclusive_refund_is_credited_net_of_its_tax() {
        let mut refund = refund(
            vec![item("IPOD2008RED", 1, RestockType::Return, "199.00")],
            "4.99",
            "203.99",
        );
        refund.items[0].tax = dec("33.17");
        refund.shipping_tax = dec("0.83");
        let plan = plan_on(&refund, true, Some(&[]));
        let Ok(ReturnPlan::Book {
            draft,
            expected_credit,
        }) = plan
        else {
            panic!("{plan:?}");
        };
        let prices: Vec<String> = draft
            .lines
            .iter()
            .map(|l| l.unit_price.to_string())
            .collect();
        assert_eq!(prices, ["165.83", "4.16"]);
        assert_eq!(expected_credit, Some(dec("203.99")));
    }

    /// The shop refunded 0.53 with 0.10 tax (its own rounding); Tryton taxes 0.53 at 20 % as
    /// 0.11. A rounding line takes the cent back, so the credit note is the 0.63 paid back.
    #[test]
    fn a_credit_note_the_erp_would_round_otherwise_gets_a_rounding_line() {
        let mut refund = refund(
            vec![item("IPOD2008RED", 1, RestockType::NoRestock, "0.53")],
            "0",
            "0.63",
        );
        refund.items[0].tax = dec("0.10");
        let Ok(ReturnPlan::Book { draft, .. }) = plan(&refund) else {
            panic!("not booked");
        };
        let last = draft.lines.last().map(|l| {
            (
                l.product.clone(),
                l.quantity.to_string(),
                l.unit_price.to_string(),
            )
        });
        assert_eq!(
            last,
            Some((
                ReturnProduct::Service(sku("ROUNDING")),
                "1".to_owned(),
                "0.01".to_owned()
            ))
        );
    }

    #[test]
    fn a_refund_discrepancy_is_its_own_line() {
        let mut fee = refund(
            vec![item("IPOD2008RED", 1, RestockType::Return, "100.00")],
            "0",
            "110.00",
        );
        // A 10.00 restocking fee kept back: 120.00 calculated, 110.00 paid.
        fee.discrepancy = dec("10.00");
        let (draft, expected) = booked(&fee);
        let last = draft.lines.last().map(|l| (l.quantity, l.unit_price));
        assert_eq!(last, Some((Decimal::ONE, dec("10.00"))));
        assert_eq!(expected, Some(dec("110.00")));
    }

    #[test]
    fn a_refund_for_goods_the_sale_does_not_hold_names_them() {
        let refund = refund(
            vec![item("IPOD2009BLACK", 1, RestockType::Return, "199")],
            "0",
            "199",
        );
        let error = plan(&refund).err().unwrap_or_else(|| panic!("refused"));
        assert_eq!(error.kind, "refund_line_unmatched");
        assert!(error.message.contains("IPOD2009BLACK"), "{error}");
    }

    /// Two units of a line one of which had shipped, refunded without restock: order-sync took
    /// the unshipped one off the sale, so only the shipped one is credited, and the credit is
    /// the money paid back less the unshipped unit's share. Before order-sync has read the
    /// refund, the refund alone cannot tell which units had shipped: it waits, never guesses.
    #[test]
    fn a_partly_fulfilled_line_is_credited_only_for_what_had_shipped() {
        let mut both = item("IPOD2008RED", 2, RestockType::NoRestock, "331.66");
        both.line_fulfilment = LineFulfilment::Partial;
        let refund = refund(vec![both], "0", "397.99");
        let waiting = plan_on(&refund, false, None)
            .err()
            .unwrap_or_else(|| panic!("a partly fulfilled line waits for the order"));
        assert_eq!(waiting.kind, "refund_awaits_order");
        assert_eq!(waiting.class, crate::error::ErrorClass::Retryable);

        let Ok(ReturnPlan::Book {
            draft,
            expected_credit,
        }) = plan_on(&refund, false, Some(&[("1", 1)]))
        else {
            panic!("one unit is credited");
        };
        let credited: Vec<(String, String)> = draft
            .lines
            .iter()
            .filter(|l| l.like_line == Some(1))
            .map(|l| (l.quantity.to_string(), l.unit_price.to_string()))
            .collect();
        assert_eq!(credited, [("-1".to_owned(), "165.83".to_owned())]);
        assert_eq!(
            expected_credit,
            Some(dec("198.99")),
            "397.99 paid back less the unshipped unit's 165.83 + 33.17"
        );

        // Seen by order-sync with nothing taken off: both had shipped.
        let Ok(ReturnPlan::Book { draft, .. }) = plan_on(&refund, false, Some(&[])) else {
            panic!("both units are credited");
        };
        let units: Decimal = draft
            .lines
            .iter()
            .filter(|l| l.like_line == Some(1))
            .map(|l| -l.quantity)
            .sum();
        assert_eq!(units, Decimal::TWO);
    }
}
