//! reconcile: on a schedule, each Shopify channel's orders changed in the last hours that
//! sync state does not know at their version go on the orders queue, as their webhook would.

pub mod schedule_handler;

use std::collections::HashMap;

use erpsync_aws::dynamo::DynamoStore;
use erpsync_aws::sqs::FoundOrdersQueue;
use erpsync_connectors::TrytonClient;
use erpsync_connectors::shopify::ShopifyAdmin;
use erpsync_core::config::Config;

pub struct Deps {
    pub config: Config,
    pub store: DynamoStore,
    pub orders: FoundOrdersQueue,
    pub channels: HashMap<String, ShopifyAdmin>,
    /// Reads ERP sales to check their totals against the shop's.
    pub erp: TrytonClient,
    /// How far back each run looks: longer than the gap between runs, so nothing slips.
    pub lookback: time::Duration,
}
