//! What a warehouse has available to sell, per product.

use std::collections::HashMap;

use async_trait::async_trait;
use erpsync_core::SyncError;
use erpsync_core::model::ids::Sku;
use serde_json::json;

use super::TrytonClient;
use super::transport::encode;
use super::values::text_of;
use erpsync_core::ports::ErpStock;

#[async_trait]
impl ErpStock for TrytonClient {
    async fn available(
        &self,
        skus: &[Sku],
        warehouse: &str,
    ) -> Result<HashMap<Sku, i64>, SyncError> {
        let refs = self.references().await?;
        let warehouse_id = self.cached_id("stock.location", "code", warehouse).await?.ok_or_else(|| {
            SyncError::permanent(
                "erp_setup",
                format!("[channels.stock.locations] names warehouse {warehouse:?}, which the ERP does not have"),
            )
        })?;
        // Quantities are computed for the locations in the context: this warehouse only.
        let context = encode(&json!({"company": refs.company, "locations": [warehouse_id]}));
        let mut available = HashMap::with_capacity(skus.len());
        for chunk in skus.chunks(500) {
            let codes: Vec<&str> = chunk.iter().map(Sku::as_str).collect();
            let rows = self
                .search_in(
                    "product.product",
                    json!([["code", "in", codes]]),
                    &["code", "quantity", "forecast_quantity"],
                    None,
                    Some(&context),
                )
                .await?;
            for row in rows {
                let Some(sku) = text_of(&row, "code").and_then(|c| Sku::parse(&c).ok()) else {
                    continue;
                };
                let on_hand = row["quantity"].as_f64().unwrap_or(0.0);
                // Forecast is on hand less what open sales reserve (plus incoming): the lower
                // of the two is what may be sold now.
                let forecast = row["forecast_quantity"].as_f64().unwrap_or(on_hand);
                available.insert(sku, on_hand.min(forecast).floor() as i64);
            }
        }
        Ok(available)
    }
}
