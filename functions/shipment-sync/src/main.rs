//! Wiring: config, secrets, DynamoDB, the ERP client and the channels' Admin API clients
//! (erpsync-wiring), the shipments queues, tracing; then the runtime loop.

use std::sync::Arc;

use erpsync_aws::batch::BatchRunner;
use erpsync_aws::telemetry;
use erpsync_wiring::Wiring;
use lambda_runtime::{LambdaEvent, service_fn};
use shipment_sync::{Deps, Trigger, schedule_handler, sqs_handler};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let wiring = Wiring::from_env().await?;
    let store = wiring.store()?;
    let deps = Deps {
        store: store.clone(),
        erp: Box::new(wiring.erp().await?),
        channels: wiring.admin_clients(|c| c.admin_api.is_some()).await?,
        runner: BatchRunner::from_env(
            "shipment-sync",
            "SHIPMENTS",
            &wiring.sqs(),
            wiring.config.retry.clone(),
            Arc::new(store),
        )?,
        config: wiring.config,
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Trigger>| async move {
        let deadline = Some(event.context.deadline());
        let answer = match event.payload {
            Trigger::Queue(batch) => {
                serde_json::to_value(sqs_handler::handle(deps, batch, deadline).await)?
            }
            Trigger::Schedule(_) => {
                serde_json::to_value(schedule_handler::handle(deps, deadline).await)?
            }
        };
        Ok::<_, lambda_runtime::Error>(answer)
    }))
    .await
}
