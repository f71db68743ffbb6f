//! order-sync: the orders FIFO queue -> confirmed ERP sales, exactly once.

pub mod sqs_handler;

use erpsync_aws::batch::BatchRunner;
use erpsync_aws::dynamo::DynamoStore;
use erpsync_connectors::TrytonClient;
use erpsync_core::config::Config;

pub struct Deps {
    pub config: Config,
    pub store: DynamoStore,
    pub erp: TrytonClient,
    pub runner: BatchRunner,
}
