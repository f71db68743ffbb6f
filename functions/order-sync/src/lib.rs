//! order-sync: the orders FIFO queue -> confirmed ERP sales, exactly once.

pub mod sqs_handler;

use erpsync_aws::batch::BatchRunner;
use erpsync_aws::dynamo::DynamoStore;
use erpsync_aws::sqs::StockRefreshQueue;
use erpsync_core::config::Config;
use erpsync_core::ports::ErpStock;
use erpsync_core::ports::SalesErp;

pub struct Deps {
    pub config: Config,
    pub store: DynamoStore,
    /// The ERP port: Tryton in production; tests may wrap it to inject faults.
    pub erp: Box<dyn SalesErp>,
    pub runner: BatchRunner,
    /// Where sales that move stock are announced, when a channel wants stock real-time.
    pub stock_refresh: Option<StockRefreshQueue>,
    /// The ERP's stock, to flag new sales that are short as backordered.
    pub availability: Option<Box<dyn ErpStock>>,
}

#[cfg(test)]
mod tests {
    use aws_lambda_events::event::sqs::SqsEvent;

    #[test]
    fn the_sample_batch_is_an_sqs_event_of_shop_webhook_messages() {
        let event: SqsEvent =
            serde_json::from_str(include_str!("../../../events/order-sync/orders-batch.json"))
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(event.records.len(), 2);
        for record in &event.records {
            let channel = record
                .message_attributes
                .get("channel")
                .and_then(|a| a.string_value.as_deref());
            assert_eq!(channel, Some("uk-shop"));
            assert!(record.attributes.contains_key("MessageGroupId"));
        }
    }
}
