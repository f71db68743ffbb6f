//! Wiring: config, the ERP key from Secrets Manager, DynamoDB, the returns queues, tracing;
//! then the runtime loop.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use erpsync_aws::batch::BatchRunner;
use erpsync_aws::dynamo::DynamoStore;
use erpsync_aws::secrets::SecretCache;
use erpsync_aws::{env, telemetry};
use erpsync_connectors::TrytonClient;
use lambda_runtime::{LambdaEvent, service_fn};
use return_sync::{Deps, sqs_handler};

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
    let erp = TrytonClient::new(&env::required("ERP_URL")?, erp_key, config.erp.clone())?
        .with_key_source(secrets.credential(&config.erp.api_key_secret));
    erp.warm_up().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&sdk),
        env::required("TABLE_NAME")?,
    );
    let deps = Deps {
        store: store.clone(),
        erp: Box::new(erp),
        runner: BatchRunner::from_env(
            "return-sync",
            "RETURNS",
            &sqs,
            config.retry.clone(),
            Arc::new(store),
        )?,
        config,
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = Some(event.context.deadline());
        Ok::<_, lambda_runtime::Error>(sqs_handler::handle(deps, event.payload, deadline).await)
    }))
    .await
}
