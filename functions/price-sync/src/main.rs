//! Wiring: config, secrets, DynamoDB, the ERP client and the price channels' Admin API
//! clients (erpsync-wiring), tracing; then the runtime loop.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use erpsync_aws::telemetry;
use erpsync_wiring::Wiring;
use lambda_runtime::{LambdaEvent, service_fn};
use price_sync::{Deps, schedule_handler};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let wiring = Wiring::from_env().await?;
    let deps = Deps {
        store: wiring.store()?,
        erp: Box::new(wiring.erp().await?),
        channels: wiring.admin_clients(|c| c.prices.is_some()).await?,
        config: wiring.config,
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<EventBridgeEvent<serde_json::Value>>| async move {
            // Runs stop before the invocation times out (a local runtime's epoch deadline is none).
            let deadline = erpsync_core::runtime::deadline::of_invocation(event.context.deadline());
            Ok::<_, lambda_runtime::Error>(
                schedule_handler::handle(deps, event.payload, deadline).await,
            )
        },
    ))
    .await
}
