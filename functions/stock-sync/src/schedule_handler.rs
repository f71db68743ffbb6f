//! EventBridge schedules (or a manual invocation with `{"detail": {...}}`):
//! - `{"mode": "full"}` (the default): every item of every channel with stock;
//! - `{"mode": "changes"}` (every minute): for real-time channels, only the SKUs the ERP
//!   moved since the last poll: receipts, adjustments, returns, cancelled sales.
//!
//! `channels` limits either mode to those channels. Each channel's result is recorded in
//! sync state.

use std::time::Instant;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use erpsync_core::config::ChannelConfig;
use erpsync_core::runtime::changes::{STOCK_CURSOR, next_cursor, window_start};
use serde::Deserialize;
use time::OffsetDateTime;
use tracing::{info, instrument};

use crate::{ChannelRun, Deps, run_channel};
use erpsync_core::ports::Cursors;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    #[default]
    Full,
    Changes,
}

/// What a run may be asked: only these channels (default: every channel with stock).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockRequest {
    #[serde(default)]
    pub channels: Vec<String>,
    #[serde(default)]
    pub mode: RunMode,
}

impl StockRequest {
    fn wants(&self, channel: &ChannelConfig) -> bool {
        self.channels.is_empty() || self.channels.iter().any(|c| c == channel.id.as_str())
    }
}

#[instrument(skip_all)]
/// `deadline`: when the invocation times out; runs stop cleanly before it.
pub async fn handle(
    deps: &Deps,
    event: EventBridgeEvent<serde_json::Value>,
    deadline: Option<Instant>,
) -> Vec<ChannelRun> {
    let request: StockRequest = match event.detail {
        serde_json::Value::Null => StockRequest::default(),
        detail => match serde_json::from_value(detail) {
            Ok(request) => request,
            Err(error) => {
                return vec![ChannelRun::failed(
                    "*",
                    format!("the schedule's detail is not a stock request: {error}"),
                )];
            }
        },
    };
    let run_id = uuid::Uuid::new_v4().to_string();
    match request.mode {
        RunMode::Full => full_run(deps, &request, &run_id, deadline).await,
        RunMode::Changes => changes_run(deps, &request, &run_id, deadline).await,
    }
}

async fn full_run(
    deps: &Deps,
    request: &StockRequest,
    run_id: &str,
    deadline: Option<Instant>,
) -> Vec<ChannelRun> {
    let mut runs = Vec::new();
    for channel in deps.config.channels.iter().filter(|c| c.stock.is_some()) {
        if request.wants(channel)
            && let Some(run) = run_channel(deps, channel, run_id, None, deadline).await
        {
            runs.push(run);
        }
    }
    runs
}

/// The cursor moves only when every real-time channel took the changes: a failed channel
/// sees them again at the next poll (the others then find nothing to send).
async fn changes_run(
    deps: &Deps,
    request: &StockRequest,
    run_id: &str,
    deadline: Option<Instant>,
) -> Vec<ChannelRun> {
    let realtime: Vec<&ChannelConfig> = deps
        .config
        .channels
        .iter()
        .filter(|c| c.stock.as_ref().is_some_and(|s| s.realtime) && request.wants(c))
        .collect();
    if realtime.is_empty() {
        return Vec::new();
    }
    let cursor = match deps.store.cursor(STOCK_CURSOR).await {
        Ok(cursor) => cursor,
        Err(error) => return vec![ChannelRun::failed("*", error)],
    };
    let start = window_start(cursor, OffsetDateTime::now_utc());
    let moved = match deps.erp.stock_moved_since(start).await {
        Ok(moved) => moved,
        Err(error) => return vec![ChannelRun::failed("*", error)],
    };
    let mut runs = Vec::new();
    if !moved.skus.is_empty() {
        info!(
            skus = moved.skus.len(),
            "the ERP moved stock since the last poll"
        );
        for channel in realtime {
            if let Some(run) = run_channel(deps, channel, run_id, Some(&moved.skus), deadline).await
            {
                runs.push(run);
            }
        }
    }
    let all_taken = runs
        .iter()
        .all(|r| r.outcome.as_ref().is_some_and(|o| o.complete));
    if all_taken
        && let Err(error) = deps
            .store
            .set_cursor(STOCK_CURSOR, next_cursor(cursor, moved.latest, start))
            .await
    {
        runs.push(ChannelRun::failed("*", error));
    }
    runs
}
