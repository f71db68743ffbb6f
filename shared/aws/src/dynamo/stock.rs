//! The stock ledger: what stock-sync last wrote to each channel.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{PutRequest, WriteRequest};
use erpsync_core::SyncError;
use erpsync_core::model::ids::Sku;
use time::OffsetDateTime;

use super::{DynamoStore, build_error, n, s, store_error, timestamp};
use erpsync_core::ports::StockLedger;

/// The quantities stock-sync last wrote to a channel: one item per (SKU, location) under
/// the channel's partition, so a run reads them back with one query.
#[async_trait]
impl StockLedger for DynamoStore {
    async fn pushed(&self, channel: &str) -> Result<HashMap<(Sku, String), i64>, SyncError> {
        let mut pushed = HashMap::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(format!("STOCK#{channel}")))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| store_error("Query (stock ledger)", e))?;
            for item in page.items() {
                let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
                let quantity = item
                    .get("quantity")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse::<i64>().ok());
                if let (Some(sku), Some(location), Some(quantity)) =
                    (text("sku"), text("location"), quantity)
                    && let Ok(sku) = Sku::parse(&sku)
                {
                    pushed.insert((sku, location), quantity);
                }
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(pushed);
            }
        }
    }

    async fn record(&self, channel: &str, pushed: &[(Sku, String, i64)]) -> Result<(), SyncError> {
        let now = timestamp(OffsetDateTime::now_utc());
        for chunk in pushed.chunks(25) {
            let mut requests = Vec::with_capacity(chunk.len());
            for (sku, location, quantity) in chunk {
                let item = HashMap::from([
                    ("pk".to_owned(), s(format!("STOCK#{channel}"))),
                    ("sk".to_owned(), s(format!("{sku}@{location}"))),
                    ("sku".to_owned(), s(sku.as_str())),
                    ("location".to_owned(), s(location)),
                    ("quantity".to_owned(), n(quantity)),
                    ("pushed_at".to_owned(), s(&now)),
                ]);
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(|e| build_error("BatchWriteItem (build)", e))?;
                requests.push(WriteRequest::builder().put_request(put).build());
            }
            // DynamoDB may hand some writes back under load; they are sent again.
            for _ in 0..5 {
                let output = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(|e| store_error("BatchWriteItem (stock ledger)", e))?;
                requests = output
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
            }
            if !requests.is_empty() {
                return Err(SyncError::retryable(
                    "state_store_busy",
                    "DynamoDB kept back stock ledger writes",
                ));
            }
        }
        Ok(())
    }
}
