//! price-sync: on a schedule, the ERP's prices (price list, currency) to every channel with
//! a `[channels.prices]` section; only changed variants are written. Channels that keep
//! prices real-time are also refreshed soon after the ERP changes what prices depend on.

pub mod schedule_handler;

use std::collections::HashMap;

use erpsync_aws::dynamo::DynamoStore;
use erpsync_connectors::shopify::ShopifyAdmin;
use erpsync_core::config::Config;
use erpsync_core::ports::{ErpChangeFeed, ErpPrices};

/// The ERP as price-sync uses it: prices, and whether anything they depend on changed.
pub trait PriceErp: ErpPrices + ErpChangeFeed {}
impl<T: ErpPrices + ErpChangeFeed> PriceErp for T {}

pub struct Deps {
    pub config: Config,
    pub store: DynamoStore,
    pub erp: Box<dyn PriceErp>,
    pub channels: HashMap<String, ShopifyAdmin>,
}
