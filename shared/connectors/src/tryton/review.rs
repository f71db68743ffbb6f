//! Sales as the shadow review compares them with the shop's orders: by reference, and a
//! customer's within a span of dates.

use async_trait::async_trait;
use erpsync_core::SyncError;
use erpsync_core::model::ids::{Email, Sku};
use serde_json::{Value, json};

use super::TrytonClient;
use super::values::{date_value, decimal_of, id_of, text_of};
use erpsync_core::ports::{ErpSaleView as ReviewedSale, SalesReview};

const REVIEW_FIELDS: &[&str] = &[
    "number",
    "state",
    "reference",
    "sale_date",
    "currency.code",
    "untaxed_amount",
    "total_amount",
    "party.name",
    "party.contact_mechanisms.type",
    "party.contact_mechanisms.value",
    "lines.type",
    "lines.product.code",
    "lines.quantity",
    "lines.unit_price",
];

fn sale_view(sale: &Value) -> Option<ReviewedSale> {
    let sale_date = sale.get("sale_date").and_then(|d| {
        let month = time::Month::try_from(u8::try_from(d.get("month")?.as_u64()?).ok()?).ok()?;
        time::Date::from_calendar_date(
            i32::try_from(d.get("year")?.as_i64()?).ok()?,
            month,
            u8::try_from(d.get("day")?.as_u64()?).ok()?,
        )
        .ok()
    });
    let party = &sale["party"];
    Some(ReviewedSale {
        id: id_of(sale, "id")?,
        state: text_of(sale, "state").unwrap_or_default(),
        number: text_of(sale, "number"),
        reference: text_of(sale, "reference"),
        customer_name: text_of(party, "name").unwrap_or_default(),
        customer_emails: party["contact_mechanisms"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|m| m["type"] == "email")
            .filter_map(|m| m["value"].as_str().and_then(|v| Email::parse(v).ok()))
            .collect(),
        currency: sale["currency"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        sale_date,
        lines: sale["lines"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|l| l["type"] == "line")
            .filter_map(|l| {
                Some((
                    Sku::parse(l["product"]["code"].as_str()?).ok()?,
                    decimal_of(&l["quantity"])?,
                    decimal_of(&l["unit_price"])?,
                ))
            })
            .collect(),
        untaxed_amount: decimal_of(&sale["untaxed_amount"]).unwrap_or_default(),
        total_amount: decimal_of(&sale["total_amount"]),
    })
}

#[async_trait]
impl SalesReview for TrytonClient {
    async fn sales_by_reference(&self, reference: &str) -> Result<Vec<ReviewedSale>, SyncError> {
        let reference = reference.to_owned();
        Ok(self
            .sales_by_references(std::slice::from_ref(&reference))
            .await?
            .remove(&reference)
            .unwrap_or_default())
    }

    async fn sales_by_references(
        &self,
        references: &[String],
    ) -> Result<std::collections::BTreeMap<String, Vec<ReviewedSale>>, SyncError> {
        let mut found: std::collections::BTreeMap<String, Vec<ReviewedSale>> = references
            .iter()
            .map(|reference| (reference.clone(), Vec::new()))
            .collect();
        if references.is_empty() {
            return Ok(found);
        }
        let rows = self
            .search(
                "sale.sale",
                json!([["reference", "in", references]]),
                REVIEW_FIELDS,
                Some(json!([["id", "ASC"]])),
            )
            .await?;
        for sale in rows.iter().filter_map(sale_view) {
            if let Some(sales) = sale.reference.as_ref().and_then(|r| found.get_mut(r)) {
                sales.push(sale);
            }
        }
        Ok(found)
    }

    async fn sales_of_customer(
        &self,
        email: &Email,
        from: time::Date,
        to: time::Date,
    ) -> Result<Vec<ReviewedSale>, SyncError> {
        let parties: Vec<i64> = self
            .parties_with_email(email)
            .await?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        if parties.is_empty() {
            return Ok(Vec::new());
        }
        // A hand-entered sale has a sale date once confirmed, a quotation date once quoted,
        // and only its creation time while a draft.
        let created = |date: time::Date| {
            json!({"__class__": "datetime", "year": date.year(), "month": u8::from(date.month()), "day": date.day(),
                   "hour": 0, "minute": 0, "second": 0, "microsecond": 0})
        };
        let domain = json!([
            ["party", "in", parties],
            ["state", "!=", "cancelled"],
            [
                "OR",
                [
                    ["sale_date", ">=", date_value(from)],
                    ["sale_date", "<=", date_value(to)]
                ],
                [
                    ["sale_date", "=", null],
                    ["quotation_date", ">=", date_value(from)],
                    ["quotation_date", "<=", date_value(to)]
                ],
                [
                    ["sale_date", "=", null],
                    ["quotation_date", "=", null],
                    ["create_date", ">=", created(from)],
                    ["create_date", "<", created(to + time::Duration::days(1))]
                ]
            ]
        ]);
        let rows = self
            .search(
                "sale.sale",
                domain,
                REVIEW_FIELDS,
                Some(json!([["id", "ASC"]])),
            )
            .await?;
        Ok(rows.iter().filter_map(sale_view).collect())
    }
}
