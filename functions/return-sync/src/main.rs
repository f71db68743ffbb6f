//! Wiring: config, secrets, DynamoDB and the ERP client with its payments login
//! (erpsync-wiring), the returns
//! queues, tracing; then the runtime loop.

use std::sync::Arc;

use aws_lambda_events::event::sqs::SqsEvent;
use erpsync_aws::batch::BatchRunner;
use erpsync_aws::telemetry;
use erpsync_wiring::Wiring;
use lambda_runtime::{LambdaEvent, service_fn};
use return_sync::{Deps, sqs_handler};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init();
    let wiring = Wiring::from_env().await?;
    let erp = wiring.payments_erp().await?;
    erp.warm_up().await;
    let store = wiring.store()?;
    let deps = Deps {
        store: store.clone(),
        erp: Box::new(erp),
        runner: BatchRunner::from_env(
            "return-sync",
            "RETURNS",
            &wiring.sqs(),
            wiring.config.retry.clone(),
            Arc::new(store),
        )?,
        config: wiring.config,
    };
    let deps = &deps;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = Some(event.context.deadline());
        Ok::<_, lambda_runtime::Error>(sqs_handler::handle(deps, event.payload, deadline).await)
    }))
    .await
}
