//! Stock refresh requests from order-sync (`{"skus": [...]}`) -> one run limited to those
//! SKUs for every channel that keeps stock real-time. The batch succeeds or returns whole:
//! a refresh is cheap to repeat.

use std::collections::BTreeSet;
use std::time::Instant;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use erpsync_core::ids::Sku;
use erpsync_core::stock::{StockDeps, sync_stock};
use serde::Deserialize;
use tracing::{instrument, warn};

use crate::Deps;

#[derive(Deserialize)]
struct Refresh {
    skus: Vec<Sku>,
}

#[instrument(skip_all, fields(messages = event.records.len()))]
pub async fn handle(deps: &Deps, event: SqsEvent, deadline: Option<Instant>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let skus: BTreeSet<Sku> = event
        .records
        .iter()
        .filter_map(|m| serde_json::from_str::<Refresh>(m.body.as_deref()?).ok())
        .flat_map(|r| r.skus)
        .collect();
    let run_id = event
        .records
        .first()
        .and_then(|m| m.message_id.clone())
        .unwrap_or_default();
    let mut failed = false;
    for channel in deps
        .config
        .channels
        .iter()
        .filter(|c| c.stock.as_ref().is_some_and(|s| s.realtime))
    {
        let Some(admin) = deps.channels.get(channel.id.as_str()) else {
            continue;
        };
        let stock_deps = StockDeps {
            erp: deps.erp.as_ref(),
            channel: admin,
            ledger: &deps.store,
            deadline,
        };
        if let Err(error) = sync_stock(&stock_deps, channel, &run_id, Some(&skus)).await {
            warn!(channel = %channel.id, error = %error, "real-time stock refresh failed; the batch returns to the queue");
            failed = true;
        }
    }
    if failed {
        for message in &event.records {
            response.add_failure(message.message_id.clone().unwrap_or_default());
        }
    }
    response
}
