//! The tracking index: which fulfilment carries a tracking number, for courier events.

use async_trait::async_trait;
use erpsync_core::SyncError;
use erpsync_core::model::ids::ChannelId;
use time::OffsetDateTime;

use super::{DynamoStore, s, store_error, timestamp};
use erpsync_core::ports::{FulfilmentRef, TrackingIndex};

/// Tracking number -> the fulfilment that carries it, for courier events.
#[async_trait]
impl TrackingIndex for DynamoStore {
    async fn remember(&self, tracking_number: &str, at: &FulfilmentRef) -> Result<(), SyncError> {
        let mut item = Self::key(format!("TRACKING#{tracking_number}"), "TRACKING");
        item.insert("channel".to_owned(), s(at.channel.as_str()));
        item.insert("order_id".to_owned(), s(&at.order_id));
        item.insert("fulfilment_id".to_owned(), s(&at.fulfilment_id));
        item.insert("shipment".to_owned(), s(&at.shipment));
        item.insert(
            "remembered_at".to_owned(),
            s(timestamp(OffsetDateTime::now_utc())),
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| store_error("PutItem (tracking)", e))?;
        Ok(())
    }

    async fn find(&self, tracking_number: &str) -> Result<Option<FulfilmentRef>, SyncError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(
                format!("TRACKING#{tracking_number}"),
                "TRACKING",
            )))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem (tracking)", e))?;
        let Some(item) = output.item() else {
            return Ok(None);
        };
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        Ok(
            match (
                text("channel").and_then(|c| ChannelId::parse(&c).ok()),
                text("order_id"),
                text("fulfilment_id"),
            ) {
                (Some(channel), Some(order_id), Some(fulfilment_id)) => Some(FulfilmentRef {
                    channel,
                    order_id,
                    fulfilment_id,
                    shipment: text("shipment").unwrap_or_default(),
                }),
                _ => None,
            },
        )
    }
}
