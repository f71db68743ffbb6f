//! Wiring: config, secrets cache, queues, tracing; then the runtime loop.

use std::time::Duration;

use anyhow::Context;
use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
use courier_webhook::{Deps, http_handler};
use erpsync_aws::secrets::SecretCache;
use erpsync_aws::sqs::Queue;
use erpsync_aws::{env, telemetry};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let config = env::load_config()?;
    let secret_name = config
        .courier
        .as_ref()
        .map(|c| c.webhook_secret.clone())
        .context("the config has no [courier] section naming the webhook secret")?;
    let sdk = env::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let secrets = SecretCache::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        Duration::from_secs(60),
    );
    // Read the secret now: the first event must not pay for it.
    if let Err(error) = secrets.get(&secret_name).await {
        tracing::warn!(error = %error, "courier webhook secret not loaded at start");
    }
    let deps = Deps {
        secret_name,
        secrets,
        shipments: Queue::new(sqs.clone(), env::required("SHIPMENTS_QUEUE_URL")?),
        shipments_dead_letter: Queue::new(sqs, env::required("SHIPMENTS_DLQ_URL")?),
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<LambdaFunctionUrlRequest>| async move {
            Ok::<_, lambda_runtime::Error>(http_handler::handle(deps, event.payload).await)
        },
    ))
    .await
}
