//! The idempotency and sync-state ports on one DynamoDB table (pk, sk; a sparse GSI
//! `attention` for what needs a person; TTL on `expires_at`).
//!
//! One file per concern: `idempotency` (claims), `state` (sync-state records, their version
//! guard, and a state row read back), `queries` (state reads for reports and batches),
//! `stock` (the stock ledger), `cursors` (change-feed cursors), `tracking` (the tracking
//! index) and `payloads` (the payload archive).

mod cursors;
mod idempotency;
mod payloads;
mod queries;
mod state;
mod stock;
mod tracking;

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::types::AttributeValue;
use erpsync_core::SyncError;
use erpsync_core::model::state::{EntityRef, Flow, IdempotencyKey};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub const ATTENTION_INDEX: &str = "attention";

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

fn store_error<E>(operation: &str, error: E) -> SyncError
where
    E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata,
{
    if let Some(denied) = crate::error::access_denied("DynamoDB", operation, &error) {
        return denied;
    }
    build_error(operation, error)
}

/// A request the SDK could not build (or another failure without AWS error metadata).
fn build_error(operation: &str, error: impl std::error::Error) -> SyncError {
    SyncError::dependency_down(
        "state_store_unavailable",
        format!("DynamoDB {operation}: {}", DisplayErrorContext(error)),
    )
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl ToString) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

/// RFC 3339 in UTC, so that stored times read and compare the same everywhere.
fn timestamp(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .unwrap_or_default()
}

pub fn idempotency_pk(key: &IdempotencyKey) -> String {
    format!("IDEMPOTENCY#{key}")
}

pub fn state_pk(entity: &EntityRef) -> String {
    format!(
        "STATE#{}#{}#{}",
        entity.flow.as_str(),
        entity.channel,
        entity.entity_id
    )
}

impl DynamoStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    fn key(pk: String, sk: &str) -> HashMap<String, AttributeValue> {
        HashMap::from([("pk".to_owned(), s(pk)), ("sk".to_owned(), s(sk))])
    }
}

fn attention_pk(flow: Flow) -> String {
    format!("ATTENTION#{}", flow.as_str())
}
