//! Sale prices under a channel's price list and currency, and the change feed: which
//! products' stock moved, and whether any price may have changed, since a time.

use std::collections::HashMap;

use async_trait::async_trait;
use erpsync_core::SyncError;
use erpsync_core::model::ids::{CurrencyCode, Sku};
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::TrytonClient;
use super::transport::encode;
use super::values::{bool_of, datetime_value, decimal_of, stamp_of, text_of};
use erpsync_core::ports::{ErpChangeFeed, ErpChanges, ErpPrices};

#[async_trait]
impl ErpPrices for TrytonClient {
    async fn prices(
        &self,
        skus: &[Sku],
        currency: &CurrencyCode,
        price_list: Option<&str>,
        gross: bool,
    ) -> Result<HashMap<Sku, Decimal>, SyncError> {
        let refs = self.references().await?;
        let currency_id = *refs.currencies.get(currency.as_str()).ok_or_else(|| {
            SyncError::permanent(
                "unknown_currency",
                format!("currency {currency} is not set up in the ERP"),
            )
        })?;
        let mut context = json!({"company": refs.company, "currency": currency_id, "quantity": 1});
        if let Some(name) = price_list {
            let id = self
                .id_by_name(
                    "product.price_list",
                    "name",
                    name,
                    "[channels.prices] price_list",
                )
                .await?;
            // With no taxes in the context Tryton gives a Tax Included list's own (gross)
            // result (sale_price_list: reverse_compute only when taxes are given).
            if gross
                && !bool_of(
                    &self
                        .read("product.price_list", id, &["tax_included"])
                        .await?["tax_included"],
                )
            {
                return Err(SyncError::permanent(
                    "price_list_not_gross",
                    format!(
                        "price list {name:?} gives net prices, but the channel's prices include tax: set Tax Included on it in Tryton (its formula then gives gross prices), or name one that has it"
                    ),
                ));
            }
            context["price_list"] = json!(id);
        } else if gross {
            return Err(SyncError::permanent(
                "price_list_not_gross",
                "the channel's prices include tax but it names no price list: list prices are net",
            ));
        }
        // Tryton computes the sale price under the context: price list, then currency rate.
        let context = encode(&context);
        let mut prices = HashMap::with_capacity(skus.len());
        for chunk in skus.chunks(500) {
            let codes: Vec<&str> = chunk.iter().map(Sku::as_str).collect();
            let rows = self
                .search_in(
                    "product.product",
                    json!([["code", "in", codes]]),
                    &["code", "sale_price_uom"],
                    None,
                    Some(&context),
                )
                .await?;
            for row in rows {
                let (Some(sku), Some(price)) = (
                    text_of(&row, "code").and_then(|c| Sku::parse(&c).ok()),
                    decimal_of(&row["sale_price_uom"]),
                ) else {
                    continue;
                };
                prices.insert(sku, price);
            }
        }
        Ok(prices)
    }
}

impl TrytonClient {
    /// Records of `model` created or changed at or after `since`, with `fields` and their stamps.
    async fn changed_since(
        &self,
        model: &str,
        since: time::OffsetDateTime,
        fields: &[&str],
    ) -> Result<Vec<Value>, SyncError> {
        let since = datetime_value(since);
        let mut wanted = vec!["create_date", "write_date"];
        wanted.extend_from_slice(fields);
        self.search(
            model,
            json!([
                "OR",
                ["create_date", ">=", since],
                ["write_date", ">=", since]
            ]),
            &wanted,
            None,
        )
        .await
    }
}

#[async_trait]
impl ErpChangeFeed for TrytonClient {
    async fn stock_moved_since(
        &self,
        since: time::OffsetDateTime,
    ) -> Result<ErpChanges, SyncError> {
        // Every change to stock goes through moves: receipts, adjustments (inventories),
        // returns, sales reserving and releasing, shipments done.
        let moves = self
            .changed_since("stock.move", since, &["product.code"])
            .await?;
        let mut changes = ErpChanges::default();
        for row in &moves {
            changes.latest = changes.latest.max(stamp_of(row));
            if let Some(sku) = row["product"]["code"]
                .as_str()
                .and_then(|c| Sku::parse(c).ok())
            {
                changes.skus.insert(sku);
            }
        }
        Ok(changes)
    }

    async fn prices_changed_since(
        &self,
        since: time::OffsetDateTime,
    ) -> Result<Option<time::OffsetDateTime>, SyncError> {
        let mut latest = None;
        for model in [
            "product.template",
            "product.product",
            "product.price_list",
            "product.price_list.line",
            "currency.currency.rate",
        ] {
            for row in self.changed_since(model, since, &[]).await? {
                latest = latest.max(stamp_of(&row));
            }
        }
        Ok(latest)
    }
}
