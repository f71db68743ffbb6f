//! The ERP sale an order becomes: created (or found) and confirmed, amended by the order's
//! edits, or cancelled; short stock flagged.

use time::OffsetDateTime;
use tracing::{info, warn};

use super::customers::{address_for, ensure_customer};
use crate::config::{ChannelConfig, Mode, Owner};
use crate::error::SyncError;
use crate::mapping::SaleDraft;
use crate::model::ids::Sku;
use crate::model::state::EntityRef;
use crate::ports::ErpStock;
use crate::ports::confirm;
use crate::ports::{ErpCustomer, ErpSale, ErpSaleState, NewSale, SaleAmendment, keep_one_sale};

use super::outcome::{OrderOutcome, OrderSyncDeps};
/// A sale this attempt created (and kept): confirmed, and flagged if short of stock.
pub(super) async fn synced_new(
    deps: &OrderSyncDeps<'_>,
    sale: ErpSale,
    reference: &str,
    skus: &[Sku],
    refused: Option<String>,
) -> Result<OrderOutcome, SyncError> {
    let sale = confirm(deps.erp, sale, reference).await?;
    let backordered = match deps.availability {
        Some(stock) => shortage(stock, &deps.config.erp.warehouse, skus).await,
        None => None,
    };
    Ok(OrderOutcome::Synced {
        erp_id: sale.id,
        erp_number: sale.number,
        created: true,
        refused,
        backordered,
    })
}

/// After a sale is confirmed its reservation is counted: a SKU whose available stock is now
/// below zero is short by that much. A failed check only loses the flag, never the order.
pub(super) async fn shortage(
    stock: &dyn ErpStock,
    warehouse: &str,
    skus: &[Sku],
) -> Option<String> {
    match stock.available(skus, warehouse).await {
        Ok(available) => {
            let mut short: Vec<String> = available
                .iter()
                .filter(|(_, quantity)| **quantity < 0)
                .map(|(sku, quantity)| format!("{sku} short by {}", -quantity))
                .collect();
            short.sort();
            (!short.is_empty()).then(|| {
                format!(
                    "backordered: {}; the rest ships when stock arrives",
                    short.join(", ")
                )
            })
        }
        Err(error) => {
            warn!(error = %error, "could not check the sale's stock; back order not flagged");
            None
        }
    }
}

pub(super) async fn apply(
    deps: &OrderSyncDeps<'_>,
    channel: &ChannelConfig,
    order_name: &str,
    draft: &SaleDraft,
    entity: &EntityRef,
) -> Result<OrderOutcome, SyncError> {
    let erp = deps.erp;
    let skus = draft.skus();
    let existing = erp.find_sale_by_reference(&draft.reference).await?;
    let products = erp.products_by_sku(&skus).await?;
    let missing: Vec<&Sku> = skus.iter().filter(|s| !products.contains_key(*s)).collect();
    if !missing.is_empty() {
        return Err(unknown_skus(channel, &missing));
    }
    if channel.mode == Mode::Shadow {
        return Ok(OrderOutcome::Shadow {
            request: Box::new(draft.clone()),
        });
    }
    let sale = match existing {
        Some(sale) => sale,
        None => {
            let customer =
                ensure_customer(erp, &draft.customer, deps.config.ownership.customers).await?;
            let created = erp
                .create_sale(&NewSale {
                    draft,
                    customer_id: customer.id,
                    invoice_address_id: customer.invoice_address_id,
                    shipment_address_id: customer.shipment_address_id,
                    products: &products,
                })
                .await?;
            info!(entity = %entity, erp_id = created.id, "sale created in the ERP");
            let kept = keep_one_sale(erp, &draft.reference, created.clone()).await?;
            if kept.id != created.id {
                // Another attempt's sale was kept, perhaps made from another version of the
                // order: bring it up to this version below, as any existing sale.
                kept
            } else {
                return synced_new(deps, kept, &draft.reference, &skus, customer.refused).await;
            }
        }
    };
    // A sale left by an interrupted attempt is moved on first, then brought up to date.
    let sale = keep_one_sale(erp, &draft.reference, sale).await?;
    let sale = confirm(erp, sale, &draft.reference).await?;
    // Tryton processes a sale after its confirmation commits; when that did not run (the
    // ERP failed between the two), the sale stays confirmed and cannot be amended: process it.
    let sale = match sale.state {
        ErpSaleState::Confirmed => erp.process_sale(sale.id).await?,
        _ => sale,
    };
    let details = erp.sale_details(sale.id).await?;
    // An amendment an earlier attempt made may still be applying (its answer was lost and
    // its message parked, so this version came next): the sale read now may not be the sale
    // it leaves. Look again once that request must have ended.
    let settle = std::time::Duration::from_secs(deps.config.erp.request_timeout_seconds.into());
    if let Some(since) = details.draft_amendment_since
        && OffsetDateTime::now_utc() - since < settle
    {
        return Err(SyncError::retryable(
            "amendment_in_flight",
            format!(
                "sale {} has an amendment an earlier attempt made {} s ago that may still be applying; looked at again once it must have ended",
                sale.number.as_deref().unwrap_or("?"),
                (OffsetDateTime::now_utc() - since).whole_seconds()
            ),
        )
        .with_retry_after(settle));
    }
    let Some(plan) = super::edits::plan_edit(order_name, &details, draft, &products)? else {
        info!(entity = %entity, erp_id = sale.id, "sale already in the ERP and up to date");
        return Ok(OrderOutcome::Synced {
            erp_id: sale.id,
            erp_number: sale.number,
            created: false,
            refused: None,
            backordered: None,
        });
    };
    if deps.config.ownership.orders == Owner::Erp {
        return Ok(OrderOutcome::Skipped {
            reason: format!(
                "ownership: {order_name} changed in the shop ({}); orders are owned by the ERP, so sale {} was not changed",
                plan.changes.join("; "),
                sale.number.as_deref().unwrap_or("?")
            ),
        });
    }
    let shipment_address_id = if plan.shipment_address_changed {
        let customer = ErpCustomer {
            id: details.customer_id,
            name: None,
            addresses: Vec::new(),
        };
        Some(address_for(erp, &customer, &draft.customer.shipment_address).await?)
    } else {
        None
    };
    let amended = erp
        .amend_sale(
            sale.id,
            &SaleAmendment {
                description: format!(
                    "{order_name} changed in the shop: {}",
                    plan.changes.join("; ")
                ),
                lines: plan.lines,
                shipment_address_id,
            },
        )
        .await?;
    info!(entity = %entity, erp_id = sale.id, changes = ?plan.changes, "sale amended");
    Ok(OrderOutcome::Amended {
        erp_id: amended.id,
        erp_number: amended.number.or(sale.number),
        changes: plan.changes,
    })
}

/// Cancels the ERP sale while nothing has left the warehouse (a posted invoice is credited by
/// Tryton); after that a person must decide (return, credit note).
pub(super) async fn cancel(
    deps: &OrderSyncDeps<'_>,
    order_name: &str,
    reference: &str,
) -> Result<OrderOutcome, SyncError> {
    let erp = deps.erp;
    let Some(sale) = erp.find_sale_by_reference(reference).await? else {
        return Ok(OrderOutcome::Cancelled {
            erp_id: None,
            erp_number: None,
        });
    };
    let sale = keep_one_sale(erp, reference, sale).await?;
    let number = sale.number.clone().unwrap_or_else(|| sale.id.to_string());
    if deps.config.ownership.orders == Owner::Erp && sale.state != ErpSaleState::Cancelled {
        return Ok(OrderOutcome::Skipped {
            reason: format!(
                "ownership: {order_name} was cancelled in the shop; orders are owned by the ERP, so sale {number} was not cancelled"
            ),
        });
    }
    let cancelled = match sale.state {
        ErpSaleState::Cancelled => sale.clone(),
        ErpSaleState::Draft | ErpSaleState::Quotation | ErpSaleState::Confirmed => {
            erp.cancel_sale(sale.id).await?
        }
        ErpSaleState::Processing => {
            let details = erp.sale_details(sale.id).await?;
            if details.fulfilment_started {
                return Err(SyncError::permanent(
                    "cancelled_after_dispatch",
                    format!(
                        "{order_name} was cancelled in the shop after the ERP started dispatching sale {number}: \
                         stop the shipment if you still can, otherwise book the return and credit note, then discard this message"
                    ),
                ));
            }
            // An invoice already posted (its payments covered it) stays: the amendment to
            // zero makes Tryton credit it, and the refund's money settles that credit note.
            // Tryton has no cancel for a processing sale; an amendment to zero withdraws
            // its shipments and draft invoices, which is what cancelling means here.
            let lines = details
                .lines
                .iter()
                .filter(|l| l.quantity > rust_decimal::Decimal::ZERO)
                .map(|l| crate::ports::AmendedLine {
                    line_id: l.id,
                    product_id: l.product_id.unwrap_or_default(),
                    unit_id: l.unit_id.unwrap_or_default(),
                    quantity: rust_decimal::Decimal::ZERO,
                    unit_price: l.unit_price,
                    description: l.description.clone().unwrap_or_default(),
                })
                .collect();
            erp.amend_sale(
                sale.id,
                &SaleAmendment {
                    description: format!("{order_name} cancelled in the shop"),
                    lines,
                    shipment_address_id: None,
                },
            )
            .await?
        }
        // Done with every line at zero: an earlier attempt's amendment to zero went
        // through (its answer was lost). The cancellation is made; nothing more to do.
        ErpSaleState::Done
            if erp
                .sale_details(sale.id)
                .await?
                .lines
                .iter()
                .all(|l| l.quantity.is_zero()) =>
        {
            sale.clone()
        }
        ErpSaleState::Done | ErpSaleState::Other(_) => {
            return Err(SyncError::permanent(
                "cancelled_after_dispatch",
                format!(
                    "{order_name} was cancelled in the shop but ERP sale {number} is already {:?}: book the return and credit note, then discard this message",
                    sale.state
                ),
            ));
        }
    };
    Ok(OrderOutcome::Cancelled {
        erp_id: Some(cancelled.id),
        erp_number: cancelled.number.or(sale.number),
    })
}

pub(super) fn unknown_skus(channel: &ChannelConfig, missing: &[&Sku]) -> SyncError {
    let list = missing
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    SyncError::permanent(
        "unknown_sku",
        format!(
            "SKU {list} (channel {}) is not a product in the ERP: create it in the ERP or map it under [channels.sku_aliases] for {}, then redrive",
            channel.id, channel.id
        ),
    )
}
