//! order-sync: the orders FIFO queue -> confirmed ERP sales, exactly once.

pub mod sqs_handler;

use erpsync_aws::batch::BatchRunner;
use erpsync_aws::dynamo::DynamoStore;
use erpsync_core::config::Config;
use erpsync_core::ports::SalesErp;

pub struct Deps {
    pub config: Config,
    pub store: DynamoStore,
    /// The ERP port: Tryton in production; tests may wrap it to inject faults.
    pub erp: Box<dyn SalesErp>,
    pub runner: BatchRunner,
}
