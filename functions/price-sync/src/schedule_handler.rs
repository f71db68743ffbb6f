//! EventBridge schedules -> price runs, each channel's recorded in sync state:
//! - `{"mode": "full"}` (the default, hourly): every channel with prices;
//! - `{"mode": "changes"}` (every minute): channels with `realtime = true`, and only when
//!   the ERP changed a list price, a price list or a currency rate since the last poll.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use erpsync_core::config::ChannelConfig;
use erpsync_core::flows::prices::{PriceOutcome, sync_prices};
use erpsync_core::model::ids::ChannelId;
use erpsync_core::model::state::{EntityRef, Flow};
use erpsync_core::ports::record_run;
use erpsync_core::runtime::changes::{PRICE_CURSOR, next_cursor, window_start};
use serde::{Deserialize, Serialize};
use std::time::Instant;
use time::OffsetDateTime;
use tracing::{error, info, instrument};

use crate::Deps;
use erpsync_core::ports::Cursors;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    #[default]
    Full,
    Changes,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceRequest {
    #[serde(default)]
    pub mode: RunMode,
}

#[derive(Debug, Serialize)]
pub struct ChannelRun {
    pub channel: String,
    pub outcome: Option<PriceOutcome>,
    pub error: Option<String>,
}

impl ChannelRun {
    fn failed(error: impl ToString) -> Self {
        Self {
            channel: "*".to_owned(),
            outcome: None,
            error: Some(error.to_string()),
        }
    }
}

/// `deadline`: when the invocation times out; runs stop cleanly before it and the next one
/// resumes.
#[instrument(skip_all)]
pub async fn handle(
    deps: &Deps,
    event: EventBridgeEvent<serde_json::Value>,
    deadline: Option<Instant>,
) -> Vec<ChannelRun> {
    let request: PriceRequest = match event.detail {
        serde_json::Value::Null => PriceRequest::default(),
        detail => match serde_json::from_value(detail) {
            Ok(request) => request,
            Err(error) => {
                return vec![ChannelRun::failed(format!(
                    "the schedule's detail is not a price request: {error}"
                ))];
            }
        },
    };
    match request.mode {
        RunMode::Full => {
            run(
                deps,
                deps.config.channels.iter().filter(|c| c.prices.is_some()),
                deadline,
            )
            .await
        }
        RunMode::Changes => changes_run(deps, deadline).await,
    }
}

/// Channels run side by side: each store has its own API budget, and one channel's long run
/// must not leave the next to start at the deadline.
async fn run<'a>(
    deps: &Deps,
    channels: impl Iterator<Item = &'a ChannelConfig>,
    deadline: Option<Instant>,
) -> Vec<ChannelRun> {
    let runs = channels.filter_map(|channel| {
        let shop = deps.channels.get(channel.id.as_str())?;
        Some(async move {
            let result = sync_prices(deps.erp.as_ref(), shop, channel, deadline).await;
            record(deps, &channel.id, &result).await;
            ChannelRun {
                channel: channel.id.to_string(),
                error: result.as_ref().err().map(ToString::to_string),
                outcome: result.ok(),
            }
        })
    });
    futures::future::join_all(runs).await
}

/// The cursor moves only when every real-time channel took all the new prices.
async fn changes_run(deps: &Deps, deadline: Option<Instant>) -> Vec<ChannelRun> {
    let realtime = || {
        deps.config
            .channels
            .iter()
            .filter(|c| c.prices.as_ref().is_some_and(|p| p.realtime))
    };
    if realtime().next().is_none() {
        return Vec::new();
    }
    let cursor = match deps.store.cursor(PRICE_CURSOR).await {
        Ok(cursor) => cursor,
        Err(error) => return vec![ChannelRun::failed(error)],
    };
    let start = window_start(cursor, OffsetDateTime::now_utc());
    let latest = match deps.erp.prices_changed_since(start).await {
        Ok(latest) => latest,
        Err(error) => return vec![ChannelRun::failed(error)],
    };
    let mut runs = Vec::new();
    if latest.is_some() {
        info!(?latest, "the ERP changed prices since the last poll");
        runs = run(deps, realtime(), deadline).await;
    }
    if runs
        .iter()
        .all(|r| r.error.is_none() && r.outcome.as_ref().is_none_or(|o| o.complete))
        && let Err(error) = deps
            .store
            .set_cursor(PRICE_CURSOR, next_cursor(cursor, latest, start))
            .await
    {
        runs.push(ChannelRun::failed(error));
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
    // Products the shop refused make the run need a person, naming them.
    let refused = result
        .as_ref()
        .ok()
        .filter(|o| !o.rejected.is_empty())
        .map(|o| {
            erpsync_core::SyncError::permanent(
                erpsync_core::flows::prices::REJECTED,
                format!(
                    "{} prices updated; the shop refused {} product(s): {}",
                    o.updated.len(),
                    o.rejected.len(),
                    o.rejected.join("; ")
                ),
            )
        });
    let summary = match (result, &refused) {
        (_, Some(refused)) => Err(refused),
        (Err(error), None) => Err(error),
        (Ok(outcome), None) => Ok(format!(
            "{} prices updated, {} unchanged{}",
            outcome.updated.len(),
            outcome.unchanged,
            if outcome.complete {
                ""
            } else {
                "; stopped before the function's timeout, the next run writes the rest"
            }
        )),
    };
    if let Err(state_error) = record_run(&deps.store, &entity, summary).await {
        error!(channel = %channel, error = %state_error, "could not record the price run");
    }
}
