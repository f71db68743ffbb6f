//! shipment-sync: closes the order loop in the shop.
//! - Schedule: ERP shipments done since a cursor -> one shop fulfilment each, with its
//!   quantities (partial dispatches, back orders) and tracking.
//! - Shipments queue: courier tracking events (from courier-webhook) -> fulfilment events,
//!   or needs-attention when the parcel will not arrive.

pub mod schedule_handler;
pub mod sqs_handler;

use std::collections::HashMap;

use erpsync_aws::batch::BatchRunner;
use erpsync_aws::dynamo::DynamoStore;
use erpsync_connectors::shopify::ShopifyAdmin;
use erpsync_core::config::Config;
use erpsync_core::ports::ErpShipments;

/// What invokes the function: the shipments queue or the schedule.
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub enum Trigger {
    Queue(aws_lambda_events::event::sqs::SqsEvent),
    Schedule(aws_lambda_events::event::eventbridge::EventBridgeEvent<serde_json::Value>),
}

pub struct Deps {
    pub config: Config,
    pub store: DynamoStore,
    pub erp: Box<dyn ErpShipments>,
    /// Channel id -> its Admin API client, built at cold start.
    pub channels: HashMap<String, ShopifyAdmin>,
    pub runner: BatchRunner,
}
