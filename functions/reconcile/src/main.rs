//! Wiring: config, secrets, DynamoDB, the ERP client and every channel's Admin API client
//! (erpsync-wiring), the orders queue, tracing; then the runtime loop.

use anyhow::Context;
use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use erpsync_aws::sqs::{FoundOrdersQueue, Queue};
use erpsync_aws::{env, telemetry};
use erpsync_wiring::Wiring;
use lambda_runtime::{LambdaEvent, service_fn};
use reconcile::{Deps, schedule_handler};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let wiring = Wiring::from_env().await?;
    let lookback_hours: i64 = env::required("LOOKBACK_HOURS")?
        .parse()
        .context("LOOKBACK_HOURS is not a number")?;
    let deps = Deps {
        store: wiring.store()?,
        orders: FoundOrdersQueue(Queue::new(wiring.sqs(), env::required("ORDERS_QUEUE_URL")?)),
        channels: wiring.admin_clients(|_| true).await?,
        erp: wiring.erp().await?,
        lookback: time::Duration::hours(lookback_hours),
        config: wiring.config,
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
