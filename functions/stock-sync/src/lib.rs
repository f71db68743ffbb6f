//! stock-sync: on a schedule (or on demand), the ERP's available stock to every channel
//! that has a `[channels.stock]` section; and, for channels that keep it real-time, as soon
//! as order-sync announces that sales moved it.

pub mod schedule_handler;
pub mod sqs_handler;

use std::collections::HashMap;

use erpsync_aws::dynamo::DynamoStore;
use erpsync_connectors::shopify::ShopifyAdmin;
use erpsync_core::config::Config;
use erpsync_core::stock::ErpStock;

/// What invokes the function: the refresh queue or the schedule.
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub enum Trigger {
    Queue(aws_lambda_events::event::sqs::SqsEvent),
    Schedule(aws_lambda_events::event::eventbridge::EventBridgeEvent<serde_json::Value>),
}

pub struct Deps {
    pub config: Config,
    pub store: DynamoStore,
    pub erp: Box<dyn ErpStock>,
    /// Channel id -> its Admin API client, built at cold start.
    pub channels: HashMap<String, ShopifyAdmin>,
}
