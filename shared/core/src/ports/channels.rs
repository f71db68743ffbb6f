//! The channels: inventory, prices, fulfilments and their tracking events.

use std::collections::HashMap;

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::SyncError;
use crate::model::ids::ExternalOrderId;
use crate::model::ids::{ChannelId, Sku};

/// A channel's stocked item and what it shows at each location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelItem {
    pub sku: Sku,
    pub inventory_item: String,
    /// Location id -> available.
    pub levels: HashMap<String, i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockChange {
    pub sku: Sku,
    pub inventory_item: String,
    pub location: String,
    pub quantity: i64,
    /// What the channel showed when read: the write fails if it changed since.
    pub change_from: Option<i64>,
}

#[async_trait]
pub trait ChannelInventory: Send + Sync {
    /// Every item with its levels at every location, however large the catalogue (a full
    /// run: on Shopify a bulk operation).
    async fn items(&self) -> Result<Vec<ChannelItem>, SyncError>;
    /// The items with these SKUs only (a real-time refresh of a few among many: paged
    /// queries), each with all its levels.
    async fn items_with_skus(&self, skus: &[Sku]) -> Result<Vec<ChannelItem>, SyncError>;
    /// Sets absolute quantities; answers the indexes whose `change_from` was stale.
    async fn set_available(
        &self,
        changes: &[StockChange],
        idempotency_key: &str,
    ) -> Result<Vec<usize>, SyncError>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelVariant {
    pub product_id: String,
    pub variant_id: String,
    pub sku: Sku,
    pub price: Decimal,
}

#[async_trait]
pub trait ChannelPrices: Send + Sync {
    /// Every variant of every product (on Shopify a bulk operation: a product has up to
    /// 2,048 variants).
    async fn variants(&self) -> Result<Vec<ChannelVariant>, SyncError>;
    /// New prices for some variants of one product.
    async fn update_prices(
        &self,
        product_id: &str,
        prices: &[(String, Decimal)],
    ) -> Result<(), SyncError>;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tracking {
    pub company: Option<String>,
    pub number: String,
    pub url: Option<String>,
}

/// A fulfilment-order line item of a shop order, with what is left to fulfil.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenLine {
    pub fulfilment_order: String,
    pub line_item: String,
    pub sku: Option<Sku>,
    pub remaining: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfilLine {
    pub fulfilment_order: String,
    pub line_item: String,
    pub quantity: u32,
}

/// The shop's view of an order's fulfilment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopFulfilment {
    pub lines: Vec<OpenLine>,
    /// Tracking numbers of the fulfilments already made.
    pub tracking_numbers: Vec<String>,
    /// `UNFULFILLED`, `PARTIALLY_FULFILLED`, `FULFILLED`, ...
    pub status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfilmentEvent {
    /// Shopify's FulfillmentEventStatus: `IN_TRANSIT`, `OUT_FOR_DELIVERY`, `DELIVERED`, ...
    pub status: String,
    pub message: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub happened_at: Option<OffsetDateTime>,
}

#[async_trait]
pub trait ChannelFulfilment: Send + Sync {
    /// The cheapest call the store answers (its own id): whether it is there for us at all,
    /// to tell a store that is down from one shipment's failure.
    async fn answers(&self) -> Result<(), SyncError>;
    /// None when the shop does not know the order.
    async fn fulfilment(&self, order_id: &str) -> Result<Option<ShopFulfilment>, SyncError>;
    /// Creates one fulfilment; answers its id.
    async fn fulfil(
        &self,
        lines: &[FulfilLine],
        tracking: Option<&Tracking>,
    ) -> Result<String, SyncError>;
    async fn add_event(
        &self,
        fulfilment_id: &str,
        event: &FulfilmentEvent,
    ) -> Result<(), SyncError>;
}

/// Each channel's shop, by channel id (those with an Admin API).
pub trait FulfilmentChannels: Send + Sync {
    fn shop(&self, channel: &ChannelId) -> Option<&dyn ChannelFulfilment>;
}

impl<T: ChannelFulfilment> FulfilmentChannels for HashMap<String, T> {
    fn shop(&self, channel: &ChannelId) -> Option<&dyn ChannelFulfilment> {
        self.get(channel.as_str())
            .map(|shop| shop as &dyn ChannelFulfilment)
    }
}

/// Where a tracking number's fulfilment is: courier events find it here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfilmentRef {
    pub channel: ChannelId,
    pub order_id: String,
    pub fulfilment_id: String,
    pub shipment: String,
}

#[async_trait]
pub trait TrackingIndex: Send + Sync {
    async fn remember(&self, tracking_number: &str, at: &FulfilmentRef) -> Result<(), SyncError>;
    async fn find(&self, tracking_number: &str) -> Result<Option<FulfilmentRef>, SyncError>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShopOrderRef {
    pub id: ExternalOrderId,
    pub updated_at: OffsetDateTime,
}

/// One page of the shop's orders updated after a time, oldest update first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderPage {
    pub orders: Vec<ShopOrderRef>,
    /// Where the next page starts; none on the last page.
    pub next: Option<String>,
}

#[async_trait]
pub trait ChannelOrders: Send + Sync {
    /// The page of orders updated after `since` that follows `after` (the first: none).
    async fn updated_page(
        &self,
        since: OffsetDateTime,
        after: Option<&str>,
    ) -> Result<OrderPage, SyncError>;
    /// The order resource, in the shape its webhooks carry.
    async fn order_body(&self, id: &ExternalOrderId) -> Result<String, SyncError>;
    /// Every order updated after `since` (for reports; a run reads page by page).
    async fn updated_since(&self, since: OffsetDateTime) -> Result<Vec<ShopOrderRef>, SyncError> {
        let mut orders = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.updated_page(since, after.as_deref()).await?;
            orders.extend(page.orders);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(orders),
            }
        }
    }
}
