//! Refunds from the shop to the ERP: a refund becomes a return sale in the ERP (negative
//! quantities) whose invoice is the credit note. Goods the refund restocks come back on the
//! return shipment, received at once; items the customer keeps, shipping refunds and
//! goodwill are credited through service lines, so stock is not touched. Every line is
//! priced and taxed as the original sale line was: the credit note mirrors the invoice.

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use tracing::info;

use crate::config::{ChannelConfig, Config};
use crate::error::SyncError;
use crate::flows::order_sync::confirm;
use crate::ids::{ExternalOrderId, Sku};
use crate::mapping::sale_reference;
use crate::ports::{
    ErpSaleDetails, IdempotencyStore, Once, SalesErp, SyncStateStore, note_failure, once,
};
use crate::state::{EntityRef, Flow, IdempotencyKey, PayloadHash, SyncRecord, SyncStatus};

/// A refund as the shop reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub id: String,
    pub order_id: ExternalOrderId,
    pub note: Option<String>,
    pub items: Vec<RefundedItem>,
    /// Shipping refunded, net.
    pub shipping: Decimal,
    /// Money paid back (successful refund transactions).
    pub refunded: Decimal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundedItem {
    pub line_item_id: String,
    pub sku: Option<Sku>,
    pub quantity: u32,
    /// The goods come back into stock.
    pub restock: bool,
}

/// A line of the return sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnLine {
    /// Goods coming back: the original line's product; otherwise a service product.
    pub product: ReturnProduct,
    /// Negative: a return.
    pub quantity: Decimal,
    pub unit_price: Decimal,
    /// The original sale line whose taxes (and, for goods, product and unit) it takes.
    pub like_line: Option<i64>,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReturnProduct {
    Goods,
    Service(Sku),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReturnDraft {
    pub reference: String,
    pub description: String,
    pub original_sale: i64,
    pub lines: Vec<ReturnLine>,
}

impl ReturnDraft {
    pub fn restocks(&self) -> bool {
        self.lines.iter().any(|l| l.product == ReturnProduct::Goods)
    }
}

/// What the ERP booked: the return sale and its credit note.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettledReturn {
    pub credit_note: Option<String>,
    /// Negative: money owed back to the customer.
    pub credit_total: Decimal,
    pub restocked: bool,
}

#[async_trait]
pub trait ReturnsErp: SalesErp {
    /// Creates the return sale (draft).
    async fn create_return(&self, draft: &ReturnDraft) -> Result<crate::ports::ErpSale, SyncError>;
    /// After confirmation: receives the goods coming back (when `restock`) and posts the
    /// credit note.
    async fn settle_return(&self, sale_id: i64, restock: bool) -> Result<SettledReturn, SyncError>;
}

/// The return sale for a refund, line by line. Errors name what cannot be matched.
pub fn plan_return(
    config: &Config,
    channel: &ChannelConfig,
    refund: &Refund,
    original: &ErpSaleDetails,
    order_reference: &str,
) -> Result<ReturnDraft, SyncError> {
    let mut lines = Vec::new();
    let original_line = |sku: &Sku| {
        original
            .lines
            .iter()
            .find(|l| l.sku.as_ref() == Some(sku) && l.quantity > Decimal::ZERO)
    };
    for item in &refund.items {
        let Some(sku) = &item.sku else {
            return Err(SyncError::permanent(
                "refund_line_unmatched",
                format!(
                    "refund {} returns line item {} which has no SKU: book that part of the return in the ERP by hand",
                    refund.id, item.line_item_id
                ),
            ));
        };
        // A bundle comes back as its components.
        let components: Vec<(Sku, u32)> = match channel.bundles.get(sku) {
            Some(bundle) => bundle
                .components
                .iter()
                .map(|c| (c.sku.clone(), item.quantity * c.quantity.max(1)))
                .collect(),
            None => vec![(channel.erp_sku(sku).clone(), item.quantity)],
        };
        for (erp_sku, quantity) in components {
            let line = original_line(&erp_sku).ok_or_else(|| {
                SyncError::permanent(
                    "refund_line_unmatched",
                    format!(
                        "refund {} returns {erp_sku}, which ERP sale {} does not hold: check the order, then book the return by hand or discard",
                        refund.id,
                        original.sale.number.as_deref().unwrap_or("?")
                    ),
                )
            })?;
            let (product, description) = if item.restock {
                (ReturnProduct::Goods, format!("{erp_sku} returned"))
            } else {
                (
                    ReturnProduct::Service(config.erp.refund_sku.clone()),
                    format!("{erp_sku} x{quantity} refunded, not returned"),
                )
            };
            lines.push(ReturnLine {
                product,
                quantity: -Decimal::from(quantity),
                unit_price: line.unit_price,
                like_line: Some(line.id),
                description,
            });
        }
    }
    if refund.shipping > Decimal::ZERO {
        let shipping_line = original_line(&config.erp.shipping_sku);
        lines.push(ReturnLine {
            product: ReturnProduct::Service(config.erp.shipping_sku.clone()),
            quantity: -Decimal::ONE,
            unit_price: refund.shipping,
            like_line: shipping_line.map(|l| l.id),
            description: "shipping refunded".to_owned(),
        });
    }
    if lines.is_empty() {
        if refund.refunded <= Decimal::ZERO {
            return Err(SyncError::permanent(
                "refund_empty",
                format!(
                    "refund {} returns nothing and pays nothing back: nothing to book; discard",
                    refund.id
                ),
            ));
        }
        // Goodwill: money back, nothing returned.
        lines.push(ReturnLine {
            product: ReturnProduct::Service(config.erp.refund_sku.clone()),
            quantity: -Decimal::ONE,
            unit_price: refund.refunded,
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
    }
    Ok(ReturnDraft {
        reference: format!("{order_reference}/refund/{}", refund.id),
        description: format!(
            "refund {} of {}{}",
            refund.id,
            original.sale.number.as_deref().unwrap_or(order_reference),
            refund
                .note
                .as_ref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        ),
        original_sale: original.sale.id,
        lines,
    })
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
        // An order still on its way (pending, retrying) gets its refund later; one the
        // integration never saw needs a person.
        let order_state = deps
            .state
            .get(&EntityRef::order(&channel.id, refund.order_id.as_str()))
            .await?;
        return Err(match order_state.map(|s| s.status) {
            Some(SyncStatus::Pending | SyncStatus::Retrying) => SyncError::retryable(
                "order_not_in_erp_yet",
                format!(
                    "refund {} is for order {} which is not in the ERP yet; retried once it is",
                    refund.id, refund.order_id
                ),
            ),
            _ => SyncError::permanent(
                "refund_for_unknown_order",
                format!(
                    "refund {} ({} paid back) is for order {} of {}, which the ERP does not have: bring the order in (erpsync replay) and redrive, or book the credit note by hand and discard",
                    refund.id, refund.refunded, refund.order_id, channel.id
                ),
            ),
        });
    };
    let details = deps.erp.sale_details(original.id).await?;
    let draft = plan_return(deps.config, channel, refund, &details, &order_reference)?;
    // A return left by an interrupted attempt is moved on, not made twice.
    let sale = match deps.erp.find_sale_by_reference(&draft.reference).await? {
        Some(sale) => sale,
        None => deps.erp.create_return(&draft).await?,
    };
    let sale = confirm(deps.erp, sale, &draft.reference).await?;
    let settled = deps.erp.settle_return(sale.id, draft.restocks()).await?;
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
        refund.refunded
    );
    let record = SyncRecord {
        entity: refund_entity(channel, refund),
        status: SyncStatus::Synced,
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
    use crate::ports::{ErpAddress, ErpSale, ErpSaleLine, ErpSaleState};

    fn config() -> Config {
        Config::from_toml(include_str!("../../../config/erpsync.example.toml"))
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
            shipping: shipping.parse().unwrap_or_default(),
            refunded: refunded.parse().unwrap_or_default(),
        }
    }

    fn item(code: &str, quantity: u32, restock: bool) -> RefundedItem {
        RefundedItem {
            line_item_id: "1".to_owned(),
            sku: Some(sku(code)),
            quantity,
            restock,
        }
    }

    #[test]
    fn the_documented_refund_parses() {
        let refund = crate::shopify::parse_refund(include_bytes!(
            "../../../tests/fixtures/shopify-refunds-create.json"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(refund.id, "929361472");
        assert_eq!(refund.order_id.as_str(), "450789469");
        assert_eq!(
            refund.items,
            [RefundedItem {
                line_item_id: "518995019".to_owned(),
                sku: Some(sku("IPOD2008RED")),
                quantity: 1,
                restock: false,
            }]
        );
        assert_eq!(refund.refunded, "41.94".parse().unwrap_or_default());
        assert_eq!(refund.shipping, Decimal::ZERO);
    }

    #[test]
    fn returned_goods_mirror_the_sale_and_kept_items_are_credited_without_stock() {
        let config = config();
        let refund = refund(
            vec![
                item("IPOD2008RED", 1, true),
                item("IPOD2008GREEN", 1, false),
            ],
            "4.17",
            "400.00",
        );
        let draft = plan_return(
            &config,
            &config.channels[0],
            &refund,
            &original(),
            "uk-shop/450789469",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(draft.reference, "uk-shop/450789469/refund/929361472");
        assert!(draft.restocks());
        let summary: Vec<(ReturnProduct, String, Option<i64>)> = draft
            .lines
            .iter()
            .map(|l| (l.product.clone(), l.quantity.to_string(), l.like_line))
            .collect();
        assert_eq!(
            summary,
            [
                (ReturnProduct::Goods, "-1".to_owned(), Some(1)),
                (
                    ReturnProduct::Service(sku("REFUND")),
                    "-1".to_owned(),
                    Some(2)
                ),
                (
                    ReturnProduct::Service(sku("SHIPPING")),
                    "-1".to_owned(),
                    Some(4)
                ),
            ]
        );
        assert_eq!(
            draft.lines[0].unit_price,
            "165.83".parse().unwrap_or_default()
        );
    }

    #[test]
    fn a_bundle_comes_back_as_its_components_and_goodwill_is_a_credit_only() {
        let config = config();
        let trio = refund(vec![item("IPOD-TRIO", 1, true)], "0", "199.00");
        let draft = plan_return(&config, &config.channels[0], &trio, &original(), "r")
            .unwrap_or_else(|e| panic!("{e}"));
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

        let goodwill = refund(Vec::new(), "0", "15.00");
        let draft = plan_return(&config, &config.channels[0], &goodwill, &original(), "r")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!draft.restocks());
        assert_eq!(draft.lines.len(), 1);
        assert_eq!(
            draft.lines[0].unit_price,
            "15.00".parse().unwrap_or_default()
        );
        assert_eq!(draft.lines[0].description, "goodwill refund: wrong size");
    }

    #[test]
    fn a_refund_for_goods_the_sale_does_not_hold_names_them() {
        let config = config();
        let refund = refund(vec![item("IPOD2009BLACK", 1, true)], "0", "199");
        let error = plan_return(&config, &config.channels[0], &refund, &original(), "r")
            .err()
            .unwrap_or_else(|| panic!("refused"));
        assert_eq!(error.kind, "refund_line_unmatched");
        assert!(error.message.contains("IPOD2009BLACK"), "{error}");
    }
}
