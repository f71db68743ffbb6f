//! EventBridge schedule (or a manual invocation with `{"detail": {"channels": [...]}}`) ->
//! one stock run per channel; each channel's result is recorded in sync state.

use std::time::Instant;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use erpsync_core::ports::record_run;
use erpsync_core::state::{EntityRef, Flow};
use erpsync_core::stock::{StockDeps, StockOutcome, sync_stock};
use serde::{Deserialize, Serialize};
use tracing::{error, instrument};

use crate::Deps;

/// What a run may be asked: only these channels (default: every channel with stock).
#[derive(Debug, Default, Deserialize)]
pub struct StockRequest {
    #[serde(default)]
    pub channels: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ChannelRun {
    pub channel: String,
    pub outcome: Option<StockOutcome>,
    pub error: Option<String>,
}

#[instrument(skip_all)]
/// `deadline`: when the invocation times out; runs stop cleanly before it.
pub async fn handle(
    deps: &Deps,
    event: EventBridgeEvent<serde_json::Value>,
    deadline: Option<Instant>,
) -> Vec<ChannelRun> {
    let request: StockRequest = serde_json::from_value(event.detail).unwrap_or_default();
    let run_id = uuid::Uuid::new_v4().to_string();
    let mut runs = Vec::new();
    for channel in deps.config.channels.iter().filter(|c| c.stock.is_some()) {
        if !request.channels.is_empty()
            && !request.channels.iter().any(|c| c == channel.id.as_str())
        {
            continue;
        }
        let Some(admin) = deps.channels.get(channel.id.as_str()) else {
            continue;
        };
        let stock_deps = StockDeps {
            erp: deps.erp.as_ref(),
            channel: admin,
            ledger: &deps.store,
            deadline,
        };
        let entity = EntityRef {
            flow: Flow::StockSync,
            channel: channel.id.clone(),
            entity_id: "stock".to_owned(),
        };
        let result = sync_stock(&stock_deps, channel, &run_id, None).await;
        let summary = result.as_ref().map(|outcome| {
            if outcome.drift.is_empty() && outcome.unknown.is_empty() {
                format!(
                    "{} quantities set, {} unchanged",
                    outcome.pushed, outcome.unchanged
                )
            } else {
                format!(
                    "{} quantities set; drift overwritten: {}; SKUs the ERP does not know: {}",
                    outcome.pushed,
                    outcome.drift.join(", "),
                    outcome
                        .unknown
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            }
        });
        let recorded = record_run(&deps.store, &entity, summary).await;
        if let Err(state_error) = recorded {
            error!(channel = %channel.id, error = %state_error, "could not record the stock run");
        }
        runs.push(ChannelRun {
            channel: channel.id.to_string(),
            error: result.as_ref().err().map(ToString::to_string),
            outcome: result.ok(),
        });
    }
    runs
}
