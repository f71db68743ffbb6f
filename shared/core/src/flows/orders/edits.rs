//! An order changed in the shop after its sale reached the ERP: what has to change in the
//! ERP, or why it cannot change there any more and what a person must do instead.

use std::collections::HashMap;

use rust_decimal::Decimal;

use super::customers::same_address;
use crate::error::SyncError;
use crate::mapping::SaleDraft;
use crate::model::ids::Sku;
use crate::ports::{AmendedLine, ErpProduct, ErpSaleDetails};

/// The amendment an edit needs, with a line per change for people to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EditPlan {
    pub lines: Vec<AmendedLine>,
    pub shipment_address_changed: bool,
    pub changes: Vec<String>,
}

/// `None` when the ERP already matches the order.
pub fn plan_edit(
    order_name: &str,
    details: &ErpSaleDetails,
    draft: &SaleDraft,
    products: &HashMap<Sku, ErpProduct>,
) -> Result<Option<EditPlan>, SyncError> {
    let mut amended = Vec::new();
    let mut changes = Vec::new();
    let mut added = Vec::new();
    let mut erp_left: Vec<_> = details
        .lines
        .iter()
        .filter(|l| l.quantity > Decimal::ZERO)
        .collect();
    for sku in draft.skus() {
        let wanted: Vec<(Decimal, Decimal, &str)> = draft
            .lines
            .iter()
            .filter(|l| l.sku == sku)
            .map(|l| {
                (
                    Decimal::from(l.quantity),
                    l.unit_price,
                    l.description.as_str(),
                )
            })
            .collect();
        let erp: Vec<_> = erp_left
            .iter()
            .copied()
            .filter(|l| l.sku.as_ref() == Some(&sku))
            .collect();
        erp_left.retain(|l| l.sku.as_ref() != Some(&sku));
        if erp.is_empty() {
            let quantity: Decimal = wanted.iter().map(|(q, _, _)| *q).sum();
            added.push(format!("{sku} x {quantity}"));
            continue;
        }
        // Pair the lines in order; when the shop now needs more lines of this SKU than the
        // sale has (a price split to the penny), the last sale line takes them all at their
        // average price, since Tryton cannot add lines to a confirmed sale.
        let pairs = wanted.len().min(erp.len());
        for (index, erp_line) in erp.iter().enumerate() {
            let target = if index + 1 < pairs {
                Some(wanted[index])
            } else if index + 1 == pairs {
                let rest = &wanted[index..];
                let quantity: Decimal = rest.iter().map(|(q, _, _)| *q).sum();
                let amount: Decimal = rest.iter().map(|(q, p, _)| q * p).sum();
                let price = if rest.len() == 1 {
                    rest[0].1
                } else {
                    (amount / quantity).round_dp(4)
                };
                Some((quantity, price, rest[0].2))
            } else {
                None
            };
            let (quantity, unit_price, description) =
                target.unwrap_or((Decimal::ZERO, erp_line.unit_price, ""));
            if erp_line.quantity == quantity && erp_line.unit_price == unit_price {
                continue;
            }
            changes.push(if quantity.is_zero() {
                format!("{sku}: removed")
            } else {
                format!(
                    "{sku}: {} x {} -> {} x {}",
                    erp_line.quantity.normalize(),
                    erp_line.unit_price,
                    quantity,
                    unit_price
                )
            });
            amended.push(AmendedLine {
                line_id: erp_line.id,
                product_id: erp_line
                    .product_id
                    .or_else(|| products.get(&sku).map(|p| p.id))
                    .unwrap_or_default(),
                unit_id: erp_line.unit_id.unwrap_or_default(),
                quantity,
                unit_price,
                description: if description.is_empty() {
                    erp_line.description.clone().unwrap_or_default()
                } else {
                    description.to_owned()
                },
            });
        }
    }
    for erp in erp_left {
        let Some(sku) = &erp.sku else { continue };
        changes.push(format!("{sku}: removed"));
        amended.push(AmendedLine {
            line_id: erp.id,
            product_id: erp
                .product_id
                .or_else(|| products.get(sku).map(|p| p.id))
                .unwrap_or_default(),
            unit_id: erp.unit_id.unwrap_or_default(),
            quantity: Decimal::ZERO,
            unit_price: erp.unit_price,
            description: erp.description.clone().unwrap_or_default(),
        });
    }
    let shipment_address_changed =
        !same_address(&details.shipment_address, &draft.customer.shipment_address);
    if shipment_address_changed {
        changes.push("shipping address changed".to_owned());
    }
    if amended.is_empty() && added.is_empty() && !shipment_address_changed {
        return Ok(None);
    }
    let sale = details
        .sale
        .number
        .clone()
        .unwrap_or_else(|| details.sale.id.to_string());
    let all_changes = changes
        .iter()
        .cloned()
        .chain(added.iter().map(|a| format!("added {a}")))
        .collect::<Vec<_>>()
        .join("; ");
    // An invoice already posted (its payments covered it) does not stop the change: the
    // amendment makes Tryton credit (or invoice) the difference in units, which the refund's
    // money then settles. Goods on their way do.
    if details.fulfilment_started {
        return Err(SyncError::permanent(
            "changed_after_dispatch",
            format!(
                "{order_name} changed in the shop ({all_changes}) after the ERP started dispatching sale {sale}: \
                 apply the change to sale {sale} by hand (or return and re-sell), then discard this message"
            ),
        ));
    }
    if !added.is_empty() {
        return Err(SyncError::permanent(
            "line_added_after_confirmation",
            format!(
                "{order_name} gained lines in the shop ({}) after sale {sale} was confirmed; Tryton cannot add lines \
                 to a confirmed sale: enter them as a new sale by hand, then discard this message",
                added.join(", ")
            ),
        ));
    }
    Ok(Some(EditPlan {
        lines: amended,
        shipment_address_changed,
        changes,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{CustomerDraft, SaleLineDraft};
    use crate::model::ids::{CountryCode, CurrencyCode};
    use crate::model::order::Address;
    use crate::ports::{ErpAddress, ErpSale, ErpSaleLine, ErpSaleState};

    fn sku(text: &str) -> Sku {
        Sku::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn address(street: &str) -> Address {
        Address {
            name: "Bob".to_owned(),
            company: None,
            street: street.to_owned(),
            postal_code: Some("40202".to_owned()),
            city: Some("Louisville".to_owned()),
            country: CountryCode::parse("US").unwrap_or_else(|e| panic!("{e}")),
            phone: None,
        }
    }

    fn draft(lines: &[(&str, u32, i64)], street: &str) -> SaleDraft {
        SaleDraft {
            reference: "uk-shop/1".to_owned(),
            description: "order".to_owned(),
            currency: CurrencyCode::parse("USD").unwrap_or_else(|e| panic!("{e}")),
            customer: CustomerDraft {
                email: None,
                name: "Bob".to_owned(),
                phone: None,
                invoice_address: address("Chestnut Street 92"),
                shipment_address: address(street),
            },
            carrier: None,
            lines: lines
                .iter()
                .map(|(s, q, cents)| SaleLineDraft {
                    sku: sku(s),
                    description: s.to_string(),
                    quantity: *q,
                    unit_price: Decimal::new(*cents, 2),
                    taxes: Vec::new(),
                })
                .collect(),
        }
    }

    fn details(lines: &[(i64, &str, u32, i64)], started: bool) -> ErpSaleDetails {
        ErpSaleDetails {
            sale: ErpSale {
                id: 9,
                number: Some("SO9".to_owned()),
                state: ErpSaleState::Processing,
            },
            customer_id: 1,
            invoice_address_id: 2,
            shipment_address: ErpAddress {
                id: 2,
                street: Some("Chestnut Street 92".to_owned()),
                postal_code: Some("40202".to_owned()),
                city: Some("Louisville".to_owned()),
                country: CountryCode::parse("US").ok(),
            },
            lines: lines
                .iter()
                .map(|(id, s, q, cents)| ErpSaleLine {
                    id: *id,
                    sku: Some(sku(s)),
                    product_id: Some(*id * 10),
                    unit_id: Some(1),
                    quantity: Decimal::from(*q),
                    unit_price: Decimal::new(*cents, 2),
                    description: None,
                    tax_rates: Vec::new(),
                })
                .collect(),
            fulfilment_started: started,
            invoiced: false,
            draft_amendment_since: None,
        }
    }

    #[test]
    fn an_unchanged_order_needs_nothing() {
        let plan = plan_edit(
            "#1",
            &details(&[(1, "A", 2, 1000)], false),
            &draft(&[("A", 2, 1000)], "Chestnut Street 92"),
            &HashMap::new(),
        );
        assert_eq!(plan, Ok(None));
    }

    #[test]
    fn quantity_changes_and_removals_become_amended_lines() {
        let plan = plan_edit(
            "#1",
            &details(&[(1, "A", 2, 1000), (2, "B", 1, 500)], false),
            &draft(&[("A", 3, 1000)], "Chestnut Street 92"),
            &HashMap::new(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("expected changes"));
        let amended: Vec<_> = plan.lines.iter().map(|l| (l.line_id, l.quantity)).collect();
        assert_eq!(amended, vec![(1, Decimal::from(3)), (2, Decimal::ZERO)]);
        assert!(!plan.shipment_address_changed);
        assert_eq!(plan.changes.len(), 2);
    }

    #[test]
    fn a_new_shipping_address_is_an_amendment() {
        let plan = plan_edit(
            "#1",
            &details(&[(1, "A", 2, 1000)], false),
            &draft(&[("A", 2, 1000)], "1 New Road"),
            &HashMap::new(),
        );
        assert!(matches!(
            plan,
            Ok(Some(EditPlan {
                shipment_address_changed: true,
                ..
            }))
        ));
    }

    #[test]
    fn after_dispatch_started_a_change_needs_a_person_and_says_what_changed() {
        let error = plan_edit(
            "#1001",
            &details(&[(1, "A", 2, 1000)], true),
            &draft(&[("A", 5, 1000)], "Chestnut Street 92"),
            &HashMap::new(),
        )
        .err()
        .unwrap_or_else(|| panic!("expected a refusal"));
        assert_eq!(error.kind, "changed_after_dispatch");
        assert!(
            error.message.contains("#1001")
                && error.message.contains("SO9")
                && error.message.contains("A: 2 x 10.00 -> 5 x 10.00"),
            "{}",
            error.message
        );
    }

    #[test]
    fn an_added_line_cannot_be_amended_in() {
        let error = plan_edit(
            "#1",
            &details(&[(1, "A", 2, 1000)], false),
            &draft(&[("A", 2, 1000), ("C", 1, 100)], "Chestnut Street 92"),
            &HashMap::new(),
        )
        .err()
        .map(|e| e.kind);
        assert_eq!(error.as_deref(), Some("line_added_after_confirmation"));
    }
}
