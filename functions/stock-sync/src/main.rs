//! Wiring: config, the ERP key and each channel's Admin API token from Secrets Manager,
//! DynamoDB, tracing; then the runtime loop.

use std::time::Duration;

use erpsync_aws::dynamo::DynamoStore;
use erpsync_aws::secrets::SecretCache;
use erpsync_aws::{env, telemetry};
use erpsync_connectors::TrytonClient;
use erpsync_connectors::shopify::admin_clients;
use lambda_runtime::{LambdaEvent, service_fn};
use stock_sync::{Deps, Trigger, schedule_handler, sqs_handler};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let config = env::load_config()?;
    let sdk = env::sdk_config().await;
    let secrets = std::sync::Arc::new(SecretCache::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        Duration::from_secs(300),
    ));
    let erp_key = secrets.current(&config.erp.api_key_secret).await?;
    let erp = TrytonClient::new(&env::required("ERP_URL")?, erp_key, config.erp.clone())?
        .with_key_source(secrets.credential(&config.erp.api_key_secret));
    let tokens = &secrets;
    let channels = admin_clients(
        &config,
        |c| c.stock.is_some(),
        |name| async move { tokens.current(&name).await.map_err(anyhow::Error::from) },
    )
    .await?;
    let deps = Deps {
        store: DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&sdk),
            env::required("TABLE_NAME")?,
        ),
        erp: Box::new(erp),
        channels,
        config,
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Trigger>| async move {
        // Runs stop before the invocation times out.
        let deadline = erpsync_core::runtime::deadline::monotonic(event.context.deadline());
        let answer = match event.payload {
            Trigger::Queue(batch) => {
                serde_json::to_value(sqs_handler::handle(deps, batch, deadline).await)?
            }
            Trigger::Schedule(schedule) => {
                serde_json::to_value(schedule_handler::handle(deps, schedule, deadline).await)?
            }
        };
        Ok::<_, lambda_runtime::Error>(answer)
    }))
    .await
}
