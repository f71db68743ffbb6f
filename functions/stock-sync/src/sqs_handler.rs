//! Stock refresh requests from order-sync (`{"skus": [...]}`) -> one run limited to those
//! SKUs for every channel that keeps stock real-time. The batch succeeds or returns whole:
//! a refresh is cheap to repeat.

use std::collections::BTreeSet;
use std::time::Instant;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use erpsync_core::model::ids::Sku;
use serde::Deserialize;
use tracing::{instrument, warn};

use crate::{Deps, run_channel};

#[derive(Deserialize)]
struct Refresh {
    skus: Vec<Sku>,
}

#[instrument(skip_all, fields(messages = event.records.len()))]
pub async fn handle(deps: &Deps, event: SqsEvent, deadline: Option<Instant>) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut skus = BTreeSet::new();
    for message in &event.records {
        match serde_json::from_str::<Refresh>(message.body.as_deref().unwrap_or_default()) {
            Ok(refresh) => skus.extend(refresh.skus),
            // Returned alone: after the queue's receive limit it rests in the DLQ.
            Err(error) => {
                warn!(message_id = ?message.message_id, error = %error, "not a stock refresh request");
                response.add_failure(message.message_id.clone().unwrap_or_default());
            }
        }
    }
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
        let Some(run) = run_channel(deps, channel, &run_id, Some(&skus), deadline).await else {
            continue;
        };
        if let Some(error) = &run.error {
            warn!(channel = %channel.id, error = %error, "real-time stock refresh failed; the batch returns to the queue");
            failed = true;
        }
    }
    if failed {
        response.batch_item_failures.clear();
        for message in &event.records {
            response.add_failure(message.message_id.clone().unwrap_or_default());
        }
    }
    response
}
