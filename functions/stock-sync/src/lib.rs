//! stock-sync: on a schedule (or on demand), the ERP's available stock to every channel
//! that has a `[channels.stock]` section; and, for channels that keep it real-time, as soon
//! as order-sync announces that sales moved it or a frequent poll sees the ERP move it.

pub mod schedule_handler;
pub mod sqs_handler;

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use erpsync_aws::dynamo::DynamoStore;
use erpsync_connectors::shopify::ShopifyAdmin;
use erpsync_core::config::{ChannelConfig, Config};
use erpsync_core::flows::stock::{StockDeps, StockOutcome, sync_stock};
use erpsync_core::model::ids::Sku;
use erpsync_core::model::state::{EntityRef, Flow};
use erpsync_core::ports::record_run;
use erpsync_core::ports::{ErpChangeFeed, ErpStock};
use serde::Serialize;
use tracing::error;

/// What invokes the function: the refresh queue or the schedule.
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub enum Trigger {
    Queue(aws_lambda_events::event::sqs::SqsEvent),
    Schedule(aws_lambda_events::event::eventbridge::EventBridgeEvent<serde_json::Value>),
}

/// The ERP as stock-sync uses it: available stock, and what moved it lately.
pub trait StockErp: ErpStock + ErpChangeFeed {}
impl<T: ErpStock + ErpChangeFeed> StockErp for T {}

pub struct Deps {
    pub config: Config,
    pub store: DynamoStore,
    pub erp: Box<dyn StockErp>,
    /// Channel id -> its Admin API client, built at cold start.
    pub channels: HashMap<String, ShopifyAdmin>,
}

#[derive(Debug, Serialize)]
pub struct ChannelRun {
    pub channel: String,
    pub outcome: Option<StockOutcome>,
    pub error: Option<String>,
}

impl ChannelRun {
    pub fn failed(channel: &str, error: impl ToString) -> Self {
        Self {
            channel: channel.to_owned(),
            outcome: None,
            error: Some(error.to_string()),
        }
    }
}

/// One channel's run (all its items, or only those drawing on `only`), recorded in sync
/// state for people to see.
pub async fn run_channel(
    deps: &Deps,
    channel: &ChannelConfig,
    run_id: &str,
    only: Option<&BTreeSet<Sku>>,
    deadline: Option<Instant>,
) -> Option<ChannelRun> {
    let admin = deps.channels.get(channel.id.as_str())?;
    let stock_deps = StockDeps {
        erp: deps.erp.as_ref(),
        channel: admin,
        ledger: &deps.store,
        deadline,
    };
    let result = sync_stock(&stock_deps, channel, run_id, only).await;
    let entity = EntityRef {
        flow: Flow::StockSync,
        channel: channel.id.clone(),
        entity_id: "stock".to_owned(),
    };
    let recorded = record_run(&deps.store, &entity, result.as_ref().map(summary)).await;
    if let Err(state_error) = recorded {
        error!(channel = %channel.id, error = %state_error, "could not record the stock run");
    }
    Some(ChannelRun {
        channel: channel.id.to_string(),
        error: result.as_ref().err().map(ToString::to_string),
        outcome: result.ok(),
    })
}

fn summary(outcome: &StockOutcome) -> String {
    if outcome.drift.is_empty() && outcome.unknown.is_empty() {
        return format!(
            "{} quantities set, {} unchanged",
            outcome.pushed, outcome.unchanged
        );
    }
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
