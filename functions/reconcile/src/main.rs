//! Wiring: config, each channel's Admin API token from Secrets Manager, DynamoDB, the orders
//! queue, tracing; then the runtime loop.

use std::time::Duration;

use anyhow::Context;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use erpsync_aws::dynamo::DynamoStore;
use erpsync_aws::secrets::SecretCache;
use erpsync_aws::sqs::{FoundOrdersQueue, Queue};
use erpsync_aws::{env, telemetry};
use erpsync_connectors::TrytonClient;
use erpsync_connectors::shopify::admin_clients;
use lambda_runtime::{LambdaEvent, service_fn};
use reconcile::{Deps, schedule_handler};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let config = env::load_config()?;
    let sdk = env::sdk_config().await;
    let secrets = std::sync::Arc::new(SecretCache::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        Duration::from_secs(300),
    ));
    let tokens = &secrets;
    let channels = admin_clients(
        &config,
        |_| true,
        |name| async move { tokens.current(&name).await.map_err(anyhow::Error::from) },
    )
    .await?;
    let erp_key = secrets.current(&config.erp.api_key_secret).await?;
    let erp = TrytonClient::new(&env::required("ERP_URL")?, erp_key, config.erp.clone())?
        .with_key_source(secrets.credential(&config.erp.api_key_secret));
    let lookback_hours: i64 = env::required("LOOKBACK_HOURS")?
        .parse()
        .context("LOOKBACK_HOURS is not a number")?;
    let deps = Deps {
        store: DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            env::required("TABLE_NAME")?,
        ),
        orders: FoundOrdersQueue(Queue::new(
            aws_sdk_sqs::Client::new(&sdk),
            env::required("ORDERS_QUEUE_URL")?,
        )),
        channels,
        erp,
        lookback: time::Duration::hours(lookback_hours),
        config,
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            let deadline = Some(event.context.deadline());
            Ok::<_, lambda_runtime::Error>(
                schedule_handler::handle(deps, event.payload, deadline).await,
            )
        },
    ))
    .await
}
