//! return-sync: the returns FIFO queue, the money after an order (refunds and payment
//! transactions from shop-webhook, grouped by order) -> ERP return sales with their credit
//! notes, and payments settling invoices and credit notes; once per refund and transaction.

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
