//! What a refund asks of the ERP, decided from the refund, the original sale and what
//! order-sync already took off it: nothing, a return sale with its lines, or a person.

use rust_decimal::Decimal;

use crate::config::{ChannelConfig, Config};
use crate::error::SyncError;
use crate::mapping::{bundle_shares, lines_for_total};
use crate::model::ids::{CurrencyCode, Sku};
use crate::model::refund::{Refund, RefundedItem, RestockType};
use crate::model::state::OrderBasis;
use crate::ports::{ErpSaleDetails, ErpSaleState};
use crate::ports::{ReturnDraft, ReturnLine, ReturnProduct};

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
            reference: crate::mapping::return_reference(order_reference, &refund.id),
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
