//! price-sync: on a schedule, the ERP's prices (price list, currency) to every channel with
//! a `[channels.prices]` section; only changed variants are written.

pub mod schedule_handler;

use std::collections::HashMap;

use erpsync_aws::dynamo::DynamoStore;
use erpsync_connectors::shopify::ShopifyAdmin;
use erpsync_core::config::Config;
use erpsync_core::prices::ErpPrices;

pub struct Deps {
    pub config: Config,
    pub store: DynamoStore,
    pub erp: Box<dyn ErpPrices>,
    pub channels: HashMap<String, ShopifyAdmin>,
}
