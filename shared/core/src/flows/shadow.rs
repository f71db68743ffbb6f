//! Dual running: what shadow mode would have sent, compared with the sale people entered in
//! the ERP by hand, field by field. This is how a channel proves itself before going live.

use std::collections::BTreeMap;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::mapping::SaleDraft;
use crate::model::ids::{Email, Sku};
use crate::ports::ErpSaleView;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchedBy {
    Reference,
    CustomerDateAndLines,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Difference {
    pub field: String,
    pub shadow: String,
    pub erp: String,
}

/// The sale among `candidates` that shares the most product lines with the shadow request.
pub fn best_match<'a>(draft: &SaleDraft, candidates: &'a [ErpSaleView]) -> Option<&'a ErpSaleView> {
    candidates
        .iter()
        .map(|sale| {
            let common = draft
                .lines
                .iter()
                .filter(|line| sale.lines.iter().any(|(sku, _, _)| sku == &line.sku))
                .count();
            (common, sale)
        })
        .filter(|(common, _)| *common > 0)
        .max_by_key(|(common, sale)| (*common, std::cmp::Reverse(sale.id)))
        .map(|(_, sale)| sale)
}

/// Field-by-field differences between what shadow mode would have sent and the ERP's sale.
pub fn compare(draft: &SaleDraft, sale: &ErpSaleView) -> Vec<Difference> {
    let mut differences = Vec::new();
    let mut differ = |field: String, shadow: String, erp: String| {
        if shadow != erp {
            differences.push(Difference { field, shadow, erp });
        }
    };
    if let Some(email) = &draft.customer.email
        && !sale.customer_emails.contains(email)
    {
        differ(
            "customer.email".to_owned(),
            email.to_string(),
            sale.customer_emails
                .iter()
                .map(Email::as_str)
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    differ(
        "currency".to_owned(),
        draft.currency.to_string(),
        sale.currency.clone(),
    );
    let totals = |lines: &mut dyn Iterator<Item = (Sku, Decimal, Decimal)>| {
        let mut by_sku: BTreeMap<Sku, (Decimal, Decimal)> = BTreeMap::new();
        for (sku, quantity, price) in lines {
            let entry = by_sku.entry(sku).or_default();
            entry.0 += quantity;
            entry.1 += quantity * price;
        }
        by_sku
    };
    let shadow_lines = totals(
        &mut draft
            .lines
            .iter()
            .map(|l| (l.sku.clone(), Decimal::from(l.quantity), l.unit_price)),
    );
    let erp_lines = totals(&mut sale.lines.iter().cloned());
    let skus: std::collections::BTreeSet<&Sku> =
        shadow_lines.keys().chain(erp_lines.keys()).collect();
    for sku in skus {
        let absent = (Decimal::ZERO, Decimal::ZERO);
        let (shadow_quantity, shadow_amount) = shadow_lines.get(sku).copied().unwrap_or(absent);
        let (erp_quantity, erp_amount) = erp_lines.get(sku).copied().unwrap_or(absent);
        differ(
            format!("lines[{sku}].quantity"),
            shadow_quantity.normalize().to_string(),
            erp_quantity.normalize().to_string(),
        );
        differ(
            format!("lines[{sku}].amount"),
            draft.currency.round(shadow_amount).to_string(),
            draft.currency.round(erp_amount).to_string(),
        );
    }
    differ(
        "untaxed_total".to_owned(),
        draft.currency.round(draft.total()).to_string(),
        draft.currency.round(sale.untaxed_amount).to_string(),
    );
    differences
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::{CustomerDraft, SaleLineDraft};
    use crate::model::ids::{CountryCode, CurrencyCode};
    use crate::model::order::Address;

    fn sku(text: &str) -> Sku {
        Sku::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn draft() -> SaleDraft {
        let address = Address {
            name: "Bob".to_owned(),
            company: None,
            street: "1 Road".to_owned(),
            postal_code: Some("1".to_owned()),
            city: None,
            country: CountryCode::parse("GB").unwrap_or_else(|e| panic!("{e}")),
            phone: None,
        };
        SaleDraft {
            reference: "uk-shop/1".to_owned(),
            description: String::new(),
            currency: CurrencyCode::parse("GBP").unwrap_or_else(|e| panic!("{e}")),
            customer: CustomerDraft {
                email: Email::parse("bob@example.com").ok(),
                name: "Bob".to_owned(),
                phone: None,
                invoice_address: address.clone(),
                shipment_address: address,
            },
            carrier: None,
            lines: vec![
                SaleLineDraft {
                    sku: sku("A"),
                    description: String::new(),
                    quantity: 2,
                    unit_price: Decimal::new(1000, 2),
                    taxes: vec![],
                },
                SaleLineDraft {
                    sku: sku("B"),
                    description: String::new(),
                    quantity: 1,
                    unit_price: Decimal::new(500, 2),
                    taxes: vec![],
                },
            ],
        }
    }

    fn sale(lines: Vec<(&str, i64, i64)>) -> ErpSaleView {
        let lines: Vec<_> = lines
            .into_iter()
            .map(|(s, q, p)| (sku(s), Decimal::from(q), Decimal::new(p, 2)))
            .collect();
        let untaxed_amount = lines.iter().map(|(_, q, p)| q * p).sum();
        ErpSaleView {
            id: 1,
            number: Some("S1".to_owned()),
            reference: None,
            customer_name: "Bob".to_owned(),
            customer_emails: Email::parse("bob@example.com").into_iter().collect(),
            currency: "GBP".to_owned(),
            sale_date: None,
            lines,
            untaxed_amount,
            total_amount: Some(untaxed_amount),
            state: "processing".to_owned(),
        }
    }

    #[test]
    fn the_same_sale_has_no_differences() {
        assert_eq!(
            compare(&draft(), &sale(vec![("A", 2, 1000), ("B", 1, 500)])),
            vec![]
        );
    }

    #[test]
    fn a_different_quantity_and_a_missing_line_are_reported_field_by_field() {
        let differences = compare(&draft(), &sale(vec![("A", 3, 1000)]));
        let fields: Vec<_> = differences.iter().map(|d| d.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "lines[A].quantity",
                "lines[A].amount",
                "lines[B].quantity",
                "lines[B].amount",
                "untaxed_total"
            ]
        );
        assert_eq!(
            (differences[0].shadow.as_str(), differences[0].erp.as_str()),
            ("2", "3")
        );
    }

    #[test]
    fn the_best_match_shares_the_most_lines() {
        let mut other = sale(vec![("C", 1, 100)]);
        other.id = 2;
        let candidates = vec![other, sale(vec![("A", 2, 1000)])];
        assert_eq!(best_match(&draft(), &candidates).map(|s| s.id), Some(1));
    }
}
