//! Wiring: config, the ERP key from Secrets Manager, DynamoDB, queues, the ERP client,
//! tracing; then the runtime loop.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use erpsync_aws::batch::BatchRunner;
use erpsync_aws::dynamo::DynamoStore;
use erpsync_aws::secrets::SecretCache;
use erpsync_aws::sqs::{Queue, StockRefreshQueue};
use erpsync_aws::{env, telemetry};
use erpsync_connectors::TrytonClient;
use lambda_runtime::{LambdaEvent, service_fn};
use order_sync::{Deps, sqs_handler};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let config = env::load_config()?;
    let sdk = env::sdk_config().await;
    let secrets = std::sync::Arc::new(SecretCache::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        std::time::Duration::from_secs(300),
    ));
    let erp_key = secrets.current(&config.erp.api_key_secret).await?;
    let erp_url = env::required("ERP_URL")?;
    let erp = TrytonClient::new(&erp_url, erp_key.clone(), config.erp.clone())?
        .with_key_source(secrets.credential(&config.erp.api_key_secret));
    erp.warm_up().await;
    // A second client for stock checks: its own reference cache, the same key.
    let availability = TrytonClient::new(&erp_url, erp_key, config.erp.clone())?
        .with_key_source(secrets.credential(&config.erp.api_key_secret));
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        env::required("TABLE_NAME")?,
    );
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
            config.retry.clone(),
            Arc::new(store),
        )?,
        config,
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<_, lambda_runtime::Error>(sqs_handler::handle(deps, event).await)
    }))
    .await
}
