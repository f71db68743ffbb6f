//! Wiring: config, secrets cache, queues, tracing; then the runtime loop.

use std::time::Duration;

use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
use erpsync_aws::secrets::SecretCache;
use erpsync_aws::sqs::Queue;
use erpsync_aws::{env, telemetry};
use lambda_runtime::{LambdaEvent, service_fn};
use shop_webhook::{Deps, http_handler};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let config = env::load_config()?;
    let sdk = env::sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let secrets = SecretCache::new(
        aws_sdk_secretsmanager::Client::new(&sdk),
        Duration::from_secs(60),
    );
    // Read every channel's secret now: the first webhook must not pay for it.
    for channel in &config.channels {
        if let Err(error) = secrets.get(&channel.webhook_secret).await {
            tracing::warn!(channel = %channel.id, error = %error, "webhook secret not loaded at start");
        }
    }
    let deps = Deps {
        config,
        secrets,
        orders: Queue::new(sqs.clone(), env::required("ORDERS_QUEUE_URL")?),
        orders_dead_letter: Queue::new(sqs.clone(), env::required("ORDERS_DLQ_URL")?),
        returns: Queue::new(sqs.clone(), env::required("RETURNS_QUEUE_URL")?),
        returns_dead_letter: Queue::new(sqs, env::required("RETURNS_DLQ_URL")?),
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<LambdaFunctionUrlRequest>| async move {
            Ok::<_, lambda_runtime::Error>(http_handler::handle(deps, event.payload).await)
        },
    ))
    .await
}
