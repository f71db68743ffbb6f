//! Wiring: config, secrets, DynamoDB, the ERP client and the stock channels' Admin API
//! clients (erpsync-wiring), tracing; then the runtime loop.

use erpsync_aws::telemetry;
use erpsync_wiring::Wiring;
use lambda_runtime::{LambdaEvent, service_fn};
use stock_sync::{Deps, Trigger, schedule_handler, sqs_handler};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let wiring = Wiring::from_env().await?;
    let deps = Deps {
        store: wiring.store()?,
        erp: Box::new(wiring.erp().await?),
        channels: wiring.admin_clients(|c| c.stock.is_some()).await?,
        config: wiring.config,
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Trigger>| async move {
        // Runs stop before the invocation times out (a local runtime's epoch deadline is none).
        let deadline = erpsync_core::runtime::deadline::of_invocation(event.context.deadline());
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
