//! stock-sync: on a schedule (or on demand), the ERP's available stock to every channel
//! that has a `[channels.stock]` section.

pub mod schedule_handler;

use std::collections::HashMap;

use erpsync_aws::dynamo::DynamoStore;
use erpsync_connectors::shopify::ShopifyAdmin;
use erpsync_core::config::Config;
use erpsync_core::stock::ErpStock;

pub struct Deps {
    pub config: Config,
    pub store: DynamoStore,
    pub erp: Box<dyn ErpStock>,
    /// Channel id -> its Admin API client, built at cold start.
    pub channels: HashMap<String, ShopifyAdmin>,
}
