//! EventBridge schedule -> one reconciliation per channel with an Admin API.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use erpsync_core::ports::record_run;
use erpsync_core::reconcile::{ReconcileDeps, ReconcileOutcome, reconcile};
use erpsync_core::state::{EntityRef, Flow};
use serde::Serialize;
use time::OffsetDateTime;
use tracing::{error, instrument};

use crate::Deps;

#[derive(Debug, Serialize)]
pub struct ChannelRun {
    pub channel: String,
    pub outcome: Option<ReconcileOutcome>,
    pub error: Option<String>,
}

#[instrument(skip_all)]
pub async fn handle(deps: &Deps, _event: EventBridgeEvent<serde_json::Value>) -> Vec<ChannelRun> {
    let since = OffsetDateTime::now_utc() - deps.lookback;
    let mut runs = Vec::new();
    for channel in &deps.config.channels {
        let Some(shop) = deps.channels.get(channel.id.as_str()) else {
            continue;
        };
        let reconcile_deps = ReconcileDeps {
            config: &deps.config,
            erp: &deps.erp,
            sales: &deps.erp,
            shop,
            state: &deps.store,
            archive: &deps.store,
            queue: &deps.orders,
        };
        let result = reconcile(&reconcile_deps, channel, since).await;
        let entity = EntityRef {
            flow: Flow::Reconcile,
            channel: channel.id.clone(),
            entity_id: "run".to_owned(),
        };
        let summary = result.as_ref().map(ReconcileOutcome::summary);
        if let Err(state_error) = record_run(&deps.store, &entity, summary).await {
            error!(channel = %channel.id, error = %state_error, "could not record the reconciliation run");
        }
        runs.push(ChannelRun {
            channel: channel.id.to_string(),
            error: result.as_ref().err().map(ToString::to_string),
            outcome: result.ok(),
        });
    }
    runs
}
