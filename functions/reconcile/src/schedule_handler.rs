//! EventBridge schedule -> one reconciliation per channel with an Admin API.

use std::time::SystemTime;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use erpsync_core::flows::reconcile::{MARGIN, ReconcileDeps, ReconcileOutcome, reconcile};
use erpsync_core::model::state::{EntityRef, Flow};
use erpsync_core::ports::record_run;
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

/// Each channel in turn, within the invocation's `deadline`, each given an equal share of the
/// time left (a busy store cannot starve the next): a channel whose run stopped for time goes
/// on from its cursor next time.
#[instrument(skip_all)]
pub async fn handle(
    deps: &Deps,
    _event: EventBridgeEvent<serde_json::Value>,
    deadline: Option<SystemTime>,
) -> Vec<ChannelRun> {
    let deadline = erpsync_core::runtime::deadline::given(deadline);
    let now = OffsetDateTime::now_utc();
    let mut runs = Vec::new();
    let served: Vec<_> = deps
        .config
        .channels
        .iter()
        .filter_map(|channel| Some((channel, deps.channels.get(channel.id.as_str())?)))
        .collect();
    let count = served.len();
    for (index, (channel, shop)) in served.into_iter().enumerate() {
        // The time to work in (what is left less the margin every run keeps) is shared:
        // this channel's deadline is its share plus that margin.
        let share = deadline.map(|deadline| {
            let usable = deadline
                .duration_since(SystemTime::now())
                .unwrap_or_default()
                .saturating_sub(MARGIN);
            let channels_left = u32::try_from(count - index).unwrap_or(1).max(1);
            SystemTime::now() + usable / channels_left + MARGIN
        });
        let reconcile_deps = ReconcileDeps {
            config: &deps.config,
            erp: &deps.erp,
            sales: &deps.erp,
            shop,
            state: &deps.store,
            archive: &deps.store,
            queue: &deps.orders,
            cursors: &deps.store,
        };
        let result = reconcile(&reconcile_deps, channel, now, deps.lookback, share).await;
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
