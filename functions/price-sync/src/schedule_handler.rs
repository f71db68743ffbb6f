//! EventBridge schedule -> one price run per channel, recorded in sync state.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use erpsync_core::ids::ChannelId;
use erpsync_core::ports::record_run;
use erpsync_core::prices::{PriceOutcome, sync_prices};
use erpsync_core::state::{EntityRef, Flow};
use serde::Serialize;
use tracing::{error, instrument};

use crate::Deps;

#[derive(Debug, Serialize)]
pub struct ChannelRun {
    pub channel: String,
    pub outcome: Option<PriceOutcome>,
    pub error: Option<String>,
}

#[instrument(skip_all)]
pub async fn handle(deps: &Deps, _event: EventBridgeEvent<serde_json::Value>) -> Vec<ChannelRun> {
    let mut runs = Vec::new();
    for channel in deps.config.channels.iter().filter(|c| c.prices.is_some()) {
        let Some(shop) = deps.channels.get(channel.id.as_str()) else {
            continue;
        };
        let result = sync_prices(deps.erp.as_ref(), shop, channel).await;
        record(deps, &channel.id, &result).await;
        runs.push(ChannelRun {
            channel: channel.id.to_string(),
            error: result.as_ref().err().map(ToString::to_string),
            outcome: result.ok(),
        });
    }
    runs
}

async fn record(
    deps: &Deps,
    channel: &ChannelId,
    result: &Result<PriceOutcome, erpsync_core::SyncError>,
) {
    let entity = EntityRef {
        flow: Flow::PriceSync,
        channel: channel.clone(),
        entity_id: "prices".to_owned(),
    };
    let summary = result.as_ref().map(|outcome| {
        format!(
            "{} prices updated, {} unchanged",
            outcome.updated.len(),
            outcome.unchanged
        )
    });
    if let Err(state_error) = record_run(&deps.store, &entity, summary).await {
        error!(channel = %channel, error = %state_error, "could not record the price run");
    }
}
