//! Wiring: config, secrets, DynamoDB and the ERP clients (erpsync-wiring), the queues,
//! tracing; then the runtime loop.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use erpsync_aws::batch::BatchRunner;
use erpsync_aws::sqs::{Queue, StockRefreshQueue};
use erpsync_aws::telemetry;
use erpsync_wiring::Wiring;
use lambda_runtime::{LambdaEvent, service_fn};
use order_sync::{Deps, sqs_handler};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let wiring = Wiring::from_env().await?;
    let erp = wiring.erp().await?;
    erp.warm_up().await;
    // A second client for stock checks: its own reference cache, the same key.
    let availability = wiring.erp().await?;
    let sqs = wiring.sqs();
    let store = wiring.store()?;
    // Set when a channel keeps stock real-time: sales that move stock are announced there.
    let stock_refresh = std::env::var("STOCK_REFRESH_QUEUE_URL")
        .ok()
        .filter(|url| !url.is_empty())
        .map(|url| StockRefreshQueue(Queue::new(sqs.clone(), url)));
    let deps = Deps {
        stock_refresh,
        availability: Some(Box::new(availability)),
        store: store.clone(),
        erp: Box::new(erp),
        runner: BatchRunner::from_env(
            "order-sync",
            "ORDERS",
            &sqs,
            wiring.config.retry.clone(),
            Arc::new(store),
        )?,
        config: wiring.config,
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, lambda_runtime::Error>(sqs_handler::handle(deps, event).await)
    }))
    .await
}
