//! The ERP's catalogue as the audit compares it with the shops': product codes, customers'
//! e-mails, tax rates and currency roundings.

use std::collections::HashMap;

use async_trait::async_trait;
use erpsync_core::SyncError;
use serde_json::json;

use super::TrytonClient;
use super::values::{decimal_of, id_of, text_of};
use erpsync_core::ports::{ErpCatalogue, ErpContact};

#[async_trait]
impl ErpCatalogue for TrytonClient {
    async fn product_codes(&self) -> Result<Vec<String>, SyncError> {
        Ok(self
            .search_all("product.product", json!([["code", "!=", null]]), &["code"])
            .await?
            .iter()
            .filter_map(|row| text_of(row, "code"))
            .collect())
    }

    async fn customer_emails(&self) -> Result<Vec<ErpContact>, SyncError> {
        Ok(self
            .search_all(
                "party.contact_mechanism",
                json!([["type", "=", "email"]]),
                &["value", "party", "party.name"],
            )
            .await?
            .iter()
            .filter_map(|row| {
                Some(ErpContact {
                    party_id: row["party"]["id"]
                        .as_i64()
                        .or_else(|| id_of(row, "party"))?,
                    party_name: row["party"]["name"].as_str().unwrap_or_default().to_owned(),
                    email: text_of(row, "value")?,
                })
            })
            .collect())
    }

    async fn tax_rates(&self) -> Result<HashMap<String, Option<rust_decimal::Decimal>>, SyncError> {
        // Tryton's `rate` is a fraction (0.2 for 20 %), set only on percentage taxes.
        Ok(self
            .search_all("account.tax", json!([]), &["name", "type", "rate"])
            .await?
            .iter()
            .filter_map(|row| {
                let rate = (row["type"] == "percentage")
                    .then(|| decimal_of(&row["rate"]))
                    .flatten();
                Some((text_of(row, "name")?, rate))
            })
            .collect())
    }

    async fn currency_roundings(
        &self,
    ) -> Result<HashMap<String, rust_decimal::Decimal>, SyncError> {
        Ok(self
            .search_all("currency.currency", json!([]), &["code", "rounding"])
            .await?
            .iter()
            .filter_map(|row| Some((text_of(row, "code")?, decimal_of(&row["rounding"])?)))
            .collect())
    }
}
