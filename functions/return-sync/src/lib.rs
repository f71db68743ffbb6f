//! return-sync: the returns FIFO queue (refunds from shop-webhook) -> ERP return sales and
//! credit notes, once per refund.

pub mod sqs_handler;

use erpsync_aws::batch::BatchRunner;
use erpsync_aws::dynamo::DynamoStore;
use erpsync_core::config::Config;
use erpsync_core::ports::ReturnsErp;

pub struct Deps {
    pub config: Config,
    pub store: DynamoStore,
    pub erp: Box<dyn ReturnsErp>,
    pub runner: BatchRunner,
}
