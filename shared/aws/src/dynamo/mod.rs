//! The idempotency and sync-state ports on one DynamoDB table (pk, sk; a sparse GSI
//! `attention` for what needs a person; TTL on `expires_at`).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::DisplayErrorContext;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{
    AttributeValue, KeysAndAttributes, Put, PutRequest, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update, WriteRequest,
};
use erpsync_core::SyncError;
use erpsync_core::changes::Cursors;
use erpsync_core::fulfilment::{FulfilmentRef, TrackingIndex};
use erpsync_core::ids::{ChannelId, Sku};
use erpsync_core::ports::{
    ArchivedPayload, Completion, IdempotencyStore, PayloadArchive, SyncStateStore,
};
use erpsync_core::state::{
    Claim, ClaimToken, EntityRef, ErrorReport, IdempotencyKey, OrderBasis, PayloadHash, SyncRecord,
    SyncState, SyncStatus,
};
use erpsync_core::stock::StockLedger;
use erpsync_core::{ErrorClass, state::Flow};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const IN_PROGRESS: &str = "INPROGRESS";
const COMPLETED: &str = "COMPLETED";
pub const ATTENTION_INDEX: &str = "attention";

/// How long a completed claim is replayed. Shopify retries a delivery for 4 hours; past
/// this the flow still finds the sale by reference, so expiry never causes a duplicate.
const COMPLETED_TTL: Duration = Duration::from_secs(24 * 3600);

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

    /// Every state row in `status` (a scan: for reports, not for the hot path).
    pub async fn states_with_status(
        &self,
        status: SyncStatus,
    ) -> Result<Vec<SyncState>, SyncError> {
        self.scan_states(Some(status)).await
    }

    /// The states of `entities` in consistent batch reads (100 keys a request): each entity
    /// read, with its state or `None` when it has none. Keys DynamoDB leaves unprocessed after
    /// a retry are left out, for the caller to read one by one.
    pub async fn get_many(
        &self,
        entities: &[EntityRef],
    ) -> Result<HashMap<EntityRef, Option<SyncState>>, SyncError> {
        let mut read = HashMap::new();
        let mut seen = std::collections::HashSet::new();
        let unique: Vec<&EntityRef> = entities.iter().filter(|e| seen.insert(*e)).collect();
        for chunk in unique.chunks(100) {
            let mut pending: Vec<HashMap<String, AttributeValue>> = chunk
                .iter()
                .map(|e| Self::key(state_pk(e), "STATE"))
                .collect();
            for _attempt in 0..2 {
                if pending.is_empty() {
                    break;
                }
                let keys = KeysAndAttributes::builder()
                    .set_keys(Some(pending.clone()))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| SyncError::permanent("store_request", e.to_string()))?;
                let output = self
                    .client
                    .batch_get_item()
                    .request_items(&self.table, keys)
                    .send()
                    .await
                    .map_err(|e| store_error("BatchGetItem", e))?;
                let unprocessed: Vec<HashMap<String, AttributeValue>> = output
                    .unprocessed_keys()
                    .and_then(|u| u.get(&self.table))
                    .map(|k| k.keys().to_vec())
                    .unwrap_or_default();
                let found: Vec<SyncState> = output
                    .responses()
                    .and_then(|r| r.get(&self.table))
                    .into_iter()
                    .flatten()
                    .filter_map(state_from_item)
                    .collect();
                for key in &pending {
                    if unprocessed.contains(key) {
                        continue;
                    }
                    let pk = key.get("pk").and_then(|v| v.as_s().ok());
                    if let Some(entity) = chunk.iter().find(|e| Some(&state_pk(e)) == pk) {
                        let state = found.iter().find(|s| &s.entity == *entity).cloned();
                        read.insert((*entity).clone(), state);
                    }
                }
                pending = unprocessed;
            }
        }
        Ok(read)
    }

    /// Every state row (a scan: for `erpsync status`, not for the hot path).
    pub async fn all_states(&self) -> Result<Vec<SyncState>, SyncError> {
        self.scan_states(None).await
    }

    async fn scan_states(&self, status: Option<SyncStatus>) -> Result<Vec<SyncState>, SyncError> {
        let mut states = Vec::new();
        let mut start = None;
        loop {
            let mut scan = self
                .client
                .scan()
                .table_name(&self.table)
                .expression_attribute_values(":state", s("STATE"))
                .set_exclusive_start_key(start);
            scan = match status {
                Some(status) => scan
                    .filter_expression("sk = :state AND #status = :status")
                    .expression_attribute_names("#status", "status")
                    .expression_attribute_values(":status", s(status.as_str())),
                None => scan.filter_expression("sk = :state"),
            };
            let page = scan.send().await.map_err(|e| store_error("Scan", e))?;
            states.extend(page.items().iter().filter_map(state_from_item));
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(states);
            }
        }
    }

    /// The change-feed cursors and where each stands (a scan, for reports).
    pub async fn cursors(&self) -> Result<Vec<(String, OffsetDateTime)>, SyncError> {
        let mut cursors = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .scan()
                .table_name(&self.table)
                .filter_expression("sk = :cursor")
                .expression_attribute_values(":cursor", s("CURSOR"))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| store_error("Scan", e))?;
            for item in page.items() {
                let name = item
                    .get("pk")
                    .and_then(|v| v.as_s().ok())
                    .and_then(|pk| pk.strip_prefix("CURSOR#"));
                let at = item
                    .get("at_ns")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse::<i128>().ok())
                    .and_then(|n| OffsetDateTime::from_unix_timestamp_nanos(n).ok());
                if let (Some(name), Some(at)) = (name, at) {
                    cursors.push((name.to_owned(), at));
                }
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(cursors);
            }
        }
    }

    /// Everything needing a person, newest first: the query behind `erpsync exceptions`.
    pub async fn needing_attention(&self, flow: Flow) -> Result<Vec<SyncState>, SyncError> {
        let mut states = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(ATTENTION_INDEX)
                .key_condition_expression("gsi1pk = :pk")
                .expression_attribute_values(":pk", s(attention_pk(flow)))
                .scan_index_forward(false)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| store_error("Query", e))?;
            for item in page.items() {
                if let Some(state) = state_from_item(item) {
                    states.push(state);
                }
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(states);
            }
        }
    }
}

fn attention_pk(flow: Flow) -> String {
    format!("ATTENTION#{}", flow.as_str())
}

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn claim(
        &self,
        key: &IdempotencyKey,
        hash: &PayloadHash,
        in_progress_until: OffsetDateTime,
    ) -> Result<Claim, SyncError> {
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let lease = in_progress_until.unix_timestamp();
        let token = ClaimToken::new(format!("{:032x}", rand::random::<u128>()));
        let mut item = Self::key(idempotency_pk(key), "IDEMPOTENCY");
        item.insert("status".to_owned(), s(IN_PROGRESS));
        item.insert("owner".to_owned(), s(token.as_str()));
        item.insert("hash".to_owned(), s(hash.as_str()));
        item.insert("in_progress_expiry".to_owned(), n(lease));
        item.insert(
            "expires_at".to_owned(),
            n(lease.max(now) + COMPLETED_TTL.as_secs() as i64),
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            // New, expired (TTL deletes late, so expiry is checked here), or a lease that ran out.
            .condition_expression(
                "attribute_not_exists(pk) OR expires_at < :now OR (#status = :in_progress AND in_progress_expiry < :now)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(_) => Ok(Claim::Start(token)),
            Err(error) => match error.into_service_error() {
                PutItemError::ConditionalCheckFailedException(failed) => {
                    let old = failed.item().cloned().unwrap_or_default();
                    let text = |name: &str| old.get(name).and_then(|v| v.as_s().ok()).cloned();
                    if text("status").as_deref() == Some(COMPLETED) {
                        let outcome = text("outcome")
                            .and_then(|o| serde_json::from_str(&o).ok())
                            .unwrap_or(serde_json::Value::Null);
                        Ok(Claim::AlreadyDone {
                            outcome,
                            same_payload: text("hash").as_deref() == Some(hash.as_str()),
                        })
                    } else {
                        Ok(Claim::InProgress)
                    }
                }
                other => Err(store_error("PutItem (claim)", other)),
            },
        }
    }

    async fn complete(
        &self,
        key: &IdempotencyKey,
        token: &ClaimToken,
        hash: &PayloadHash,
        outcome: &serde_json::Value,
        record: &SyncRecord,
    ) -> Result<Completion, SyncError> {
        let now = OffsetDateTime::now_utc();
        let mut item = Self::key(idempotency_pk(key), "IDEMPOTENCY");
        item.insert("status".to_owned(), s(COMPLETED));
        item.insert("owner".to_owned(), s(token.as_str()));
        item.insert("hash".to_owned(), s(hash.as_str()));
        item.insert("outcome".to_owned(), s(outcome.to_string()));
        item.insert(
            "expires_at".to_owned(),
            n(now.unix_timestamp() + COMPLETED_TTL.as_secs() as i64),
        );
        // Only our own claim (or one TTL deleted, which nobody took over) is completed.
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(OWN_CLAIM)
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(token.as_str()))
            .build()
            .map_err(|e| build_error("TransactWriteItems (build)", e))?;
        let update = record_update(&self.table, record, now)
            .build()
            .map_err(|e| build_error("TransactWriteItems (build)", e))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put.clone()).build())
            .transact_items(TransactWriteItem::builder().update(update).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(Completion::Recorded),
            Err(error) => match error.into_service_error() {
                // Only the state's version guard refused: a newer version is recorded (an
                // attempt at an older one finished late). The claim is still completed, so
                // the work is never redone; the state is left as it is.
                TransactWriteItemsError::TransactionCanceledException(cancelled)
                    if refused_by_claim_owner(&cancelled) =>
                {
                    tracing::warn!(entity = %record.entity, "the claim ran out and another worker took it over; nothing written");
                    Ok(Completion::TakenOver)
                }
                TransactWriteItemsError::TransactionCanceledException(cancelled)
                    if refused_only_by_version_guard(&cancelled) =>
                {
                    tracing::info!(entity = %record.entity, "a newer version is recorded; the claim is completed without touching the state");
                    let result = self
                        .client
                        .put_item()
                        .table_name(&self.table)
                        .set_item(Some(put.item().clone()))
                        .condition_expression(OWN_CLAIM)
                        .expression_attribute_names("#owner", "owner")
                        .expression_attribute_values(":owner", s(token.as_str()))
                        .send()
                        .await;
                    match result {
                        Ok(_) => Ok(Completion::StateNewer),
                        Err(error) => match error.into_service_error() {
                            PutItemError::ConditionalCheckFailedException(_) => {
                                Ok(Completion::TakenOver)
                            }
                            other => Err(store_error("PutItem (complete)", other)),
                        },
                    }
                }
                other => Err(store_error("TransactWriteItems (complete)", other)),
            },
        }
    }

    async fn release(&self, key: &IdempotencyKey, token: &ClaimToken) -> Result<(), SyncError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(idempotency_pk(key), "IDEMPOTENCY")))
            // Never delete a completed record, nor a claim another worker took over.
            .condition_expression(
                "attribute_not_exists(pk) OR (#status = :in_progress AND #owner = :owner)",
            )
            .expression_attribute_names("#status", "status")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":in_progress", s(IN_PROGRESS))
            .expression_attribute_values(":owner", s(token.as_str()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error) => match error.into_service_error() {
                // Someone took it over or completed it after our lease ran out: nothing of
                // ours to give up.
                DeleteItemError::ConditionalCheckFailedException(_) => Ok(()),
                other => Err(store_error("DeleteItem (release)", other)),
            },
        }
    }
}

/// A claim is this worker's to complete: its token, or gone (TTL deleted it) and so taken by
/// nobody. Claims written before tokens existed have no owner: theirs completes as before.
const OWN_CLAIM: &str =
    "attribute_not_exists(pk) OR attribute_not_exists(#owner) OR #owner = :owner";

/// The transaction was cancelled by the claim's owner condition (item 0): another worker took
/// the claim over.
fn refused_by_claim_owner(
    cancelled: &aws_sdk_dynamodb::types::error::TransactionCanceledException,
) -> bool {
    cancelled
        .cancellation_reasons()
        .first()
        .is_some_and(|reason| reason.code() == Some("ConditionalCheckFailed"))
}

/// The transaction was cancelled by the state update's condition (item 1) alone, not by
/// a conflict or a capacity error.
fn refused_only_by_version_guard(
    cancelled: &aws_sdk_dynamodb::types::error::TransactionCanceledException,
) -> bool {
    let codes: Vec<Option<&str>> = cancelled
        .cancellation_reasons()
        .iter()
        .map(|reason| reason.code())
        .collect();
    matches!(
        codes.as_slice(),
        [None | Some("None"), Some("ConditionalCheckFailed")]
    )
}

/// The guard of every versioned write of an entity's state (outcomes and failures alike):
/// the state never moves backwards (no version recorded yet, or one no newer than
/// `version`; rows written before `version_ns` existed compare by their RFC 3339 text, UTC,
/// so it orders as the times do within a second), and no failure of a newer version is
/// recorded, so an older version (a replay, or one delivered late) can neither mark an order
/// synced nor hide a failure while its latest version is parked or retrying.
const OUTCOME_GUARD: &str = "((attribute_not_exists(version_ns) AND (attribute_not_exists(version) OR version <= :guard_text)) \
     OR version_ns <= :guard_ns) AND (attribute_not_exists(failed_version_ns) OR failed_version_ns <= :guard_ns)";

fn guard_values(version: OffsetDateTime) -> [(&'static str, AttributeValue); 2] {
    [
        (":guard_ns", n(version.unix_timestamp_nanos())),
        (":guard_text", s(timestamp(version))),
    ]
}

/// The update that writes an outcome into an entity's state row; attempts are kept, the
/// attention index entry is removed. With a version it is guarded by [`OUTCOME_GUARD`].
fn record_update(
    table: &str,
    record: &SyncRecord,
    now: OffsetDateTime,
) -> aws_sdk_dynamodb::types::builders::UpdateBuilder {
    let mut sets = vec![
        "#status = :status",
        "flow = :flow",
        "channel = :channel",
        "entity_id = :entity_id",
        "updated_at = :updated_at",
    ];
    let mut removes = vec!["gsi1pk", "gsi1sk"];
    let mut builder = Update::builder()
        .table_name(table)
        .set_key(Some(DynamoStore::key(state_pk(&record.entity), "STATE")))
        .expression_attribute_names("#status", "status")
        .expression_attribute_values(":status", s(record.status.as_str()))
        .expression_attribute_values(":flow", s(record.entity.flow.as_str()))
        .expression_attribute_values(":channel", s(record.entity.channel.as_str()))
        .expression_attribute_values(":entity_id", s(&record.entity.entity_id))
        .expression_attribute_values(":updated_at", s(timestamp(now)));
    for (name, value) in [
        ("erp_id", record.erp_id.map(n)),
        ("erp_number", record.erp_number.clone().map(s)),
        ("version", record.version.map(|v| s(timestamp(v)))),
        (
            "version_ns",
            record.version.map(|v| n(v.unix_timestamp_nanos())),
        ),
        ("note", record.note.clone().map(s)),
        (
            "order_basis",
            record
                .basis
                .as_ref()
                .and_then(|b| serde_json::to_string(b).ok())
                .map(s),
        ),
    ] {
        match value {
            Some(value) => {
                sets.push(match name {
                    "erp_id" => "erp_id = :erp_id",
                    "erp_number" => "erp_number = :erp_number",
                    "version" => "version = :version",
                    "version_ns" => "version_ns = :version_ns",
                    "order_basis" => "order_basis = :order_basis",
                    _ => "note = :note",
                });
                builder = builder.expression_attribute_values(format!(":{name}"), value);
            }
            // A note from an earlier outcome would mislead; ids and versions are kept.
            None if name == "note" => removes.push("note"),
            None => {}
        }
    }
    if let Some(version) = record.version {
        builder = builder.condition_expression(OUTCOME_GUARD);
        for (name, value) in guard_values(version) {
            builder = builder.expression_attribute_values(name, value);
        }
        // The version that failed is applied now, or superseded.
        removes.push("failed_version_ns");
    }
    builder.update_expression(format!(
        "SET {} REMOVE {}",
        sets.join(", "),
        removes.join(", ")
    ))
}

#[async_trait]
impl SyncStateStore for DynamoStore {
    async fn record(&self, record: &SyncRecord) -> Result<(), SyncError> {
        let update = record_update(&self.table, record, OffsetDateTime::now_utc());
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(update.get_key().clone())
            .set_update_expression(update.get_update_expression().clone())
            .set_condition_expression(update.get_condition_expression().clone())
            .set_expression_attribute_names(update.get_expression_attribute_names().clone())
            .set_expression_attribute_values(update.get_expression_attribute_values().clone())
            .send()
            .await;
        guarded("UpdateItem (record)", &record.entity, result)
    }

    async fn record_failure(
        &self,
        entity: &EntityRef,
        status: SyncStatus,
        error: &ErrorReport,
        version: Option<OffsetDateTime>,
    ) -> Result<(), SyncError> {
        let now = timestamp(OffsetDateTime::now_utc());
        let sets = "#status = :status, flow = :flow, channel = :channel, entity_id = :entity_id, \
                    updated_at = :now, last_error_class = :class, last_error_kind = :kind, \
                    last_error_message = :message, last_error_at = :at";
        let mut request = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(state_pk(entity), "STATE")))
            .expression_attribute_names("#status", "status")
            .expression_attribute_values(":status", s(status.as_str()))
            .expression_attribute_values(":flow", s(entity.flow.as_str()))
            .expression_attribute_values(":channel", s(entity.channel.as_str()))
            .expression_attribute_values(":entity_id", s(&entity.entity_id))
            .expression_attribute_values(":now", s(&now))
            .expression_attribute_values(":class", s(error.class.as_str()))
            .expression_attribute_values(":kind", s(&error.kind))
            .expression_attribute_values(":message", s(&error.message))
            .expression_attribute_values(":at", s(timestamp(error.at)))
            .expression_attribute_values(":one", n(1));
        let mut sets = sets.to_owned();
        if let Some(version) = version {
            // Not over a newer version applied, nor over a newer version's failure: an older
            // version failing must neither lower `failed_version_ns` (then its own outcome
            // could clear the state while the newer one is parked) nor hide the newer one's
            // needs-attention.
            request = request.condition_expression(OUTCOME_GUARD);
            for (name, value) in guard_values(version) {
                request = request.expression_attribute_values(name, value);
            }
            // Which version failed: until one at least as new is applied, an older one's
            // outcome may not clear the failure.
            sets.push_str(", failed_version_ns = :guard_ns");
        }
        request = if status == SyncStatus::NeedsAttention {
            request
                .update_expression(format!(
                    "SET {sets}, gsi1pk = :gsi1pk, gsi1sk = :now ADD attempts :one"
                ))
                .expression_attribute_values(":gsi1pk", s(attention_pk(entity.flow)))
        } else {
            request.update_expression(format!(
                "SET {sets} REMOVE gsi1pk, gsi1sk ADD attempts :one"
            ))
        };
        guarded("UpdateItem (record_failure)", entity, request.send().await)
    }

    async fn get_many(
        &self,
        entities: &[EntityRef],
    ) -> Result<HashMap<EntityRef, Option<SyncState>>, SyncError> {
        DynamoStore::get_many(self, entities).await
    }

    async fn get(&self, entity: &EntityRef) -> Result<Option<SyncState>, SyncError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(state_pk(entity), "STATE")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem", e))?;
        Ok(output.item().and_then(state_from_item))
    }
}

/// A state write refused by the version guard was about an older version than the one
/// recorded: not made, and not an error.
fn guarded<T>(
    operation: &str,
    entity: &EntityRef,
    result: Result<T, aws_sdk_dynamodb::error::SdkError<UpdateItemError>>,
) -> Result<(), SyncError> {
    match result {
        Ok(_) => Ok(()),
        Err(error) => match error.into_service_error() {
            UpdateItemError::ConditionalCheckFailedException(_) => {
                tracing::info!(entity = %entity, "a newer version is recorded; the state write of an older one was not made");
                Ok(())
            }
            other => Err(store_error(operation, other)),
        },
    }
}

/// The order's basis as order-sync recorded it; rows from before the refunds' split was kept
/// give only `taxes_included`.
fn order_basis(item: &HashMap<String, AttributeValue>) -> Option<OrderBasis> {
    if let Some(json) = item.get("order_basis").and_then(|v| v.as_s().ok()) {
        match serde_json::from_str(json) {
            Ok(basis) => return Some(basis),
            Err(error) => {
                tracing::warn!(%error, "an order_basis that does not read back is ignored")
            }
        }
    }
    item.get("taxes_included")
        .and_then(|v| v.as_bool().ok())
        .map(|&taxes_included| OrderBasis {
            taxes_included,
            refunded_before_fulfilment: None,
            booked: None,
        })
}

fn state_from_item(item: &HashMap<String, AttributeValue>) -> Option<SyncState> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let number = |name: &str| item.get(name).and_then(|v| v.as_n().ok()).cloned();
    let flow = Flow::parse(&text("flow")?)?;
    let entity = EntityRef {
        flow,
        channel: erpsync_core::ids::ChannelId::parse(&text("channel")?).ok()?,
        entity_id: text("entity_id")?,
    };
    let parse_time = |t: Option<String>| t.and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok());
    let last_error = match (
        text("last_error_class"),
        text("last_error_kind"),
        text("last_error_message"),
    ) {
        (Some(class), Some(kind), Some(message)) => Some(ErrorReport {
            class: match class.as_str() {
                "retryable" => ErrorClass::Retryable,
                "in_flight" => ErrorClass::InFlight,
                _ => ErrorClass::Permanent,
            },
            kind,
            message,
            at: parse_time(text("last_error_at")).unwrap_or(OffsetDateTime::UNIX_EPOCH),
        }),
        _ => None,
    };
    Some(SyncState {
        basis: order_basis(item),
        entity,
        status: SyncStatus::parse(&text("status")?)?,
        erp_id: number("erp_id").and_then(|v| v.parse().ok()),
        erp_number: text("erp_number"),
        version: parse_time(text("version")),
        note: text("note"),
        attempts: number("attempts").and_then(|v| v.parse().ok()).unwrap_or(0),
        last_error,
        updated_at: parse_time(text("updated_at")).unwrap_or(OffsetDateTime::UNIX_EPOCH),
    })
}

/// DynamoDB's item limit, 400 KB with attribute names ("Service, account, and table
/// quotas in Amazon DynamoDB"), less room for the item's other attributes.
const MAX_ARCHIVED_BODY_BYTES: usize = 400 * 1024 - 2 * 1024;

/// A body past this is kept gzip-compressed (orders are JSON and shrink tenfold or so).
const COMPRESS_ABOVE_BYTES: usize = 64 * 1024;

/// The attribute a payload's body is kept in: as text, or compressed when large; a body that
/// does not fit one item even compressed is refused with the reason.
fn archived_body(
    entity: &EntityRef,
    body: &str,
) -> Result<(&'static str, AttributeValue), SyncError> {
    if body.len() <= COMPRESS_ABOVE_BYTES {
        return Ok(("body", s(body)));
    }
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    let compressed = encoder
        .write_all(body.as_bytes())
        .and_then(|()| encoder.finish())
        .map_err(|e| {
            SyncError::permanent(
                "payload_not_kept",
                format!("compressing the payload of {entity}: {e}"),
            )
        })?;
    if compressed.len() > MAX_ARCHIVED_BODY_BYTES {
        return Err(SyncError::permanent(
            "payload_too_large_to_keep",
            format!(
                "the payload of {entity} is {} bytes ({} compressed), over DynamoDB's 400 KB item limit, so it is not kept for `erpsync replay`; reconciliation reads the order from the shop again",
                body.len(),
                compressed.len()
            ),
        ));
    }
    Ok((
        "body_gz",
        AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(compressed)),
    ))
}

/// The quantities stock-sync last wrote to a channel: one item per (SKU, location) under
/// the channel's partition, so a run reads them back with one query.
#[async_trait]
impl StockLedger for DynamoStore {
    async fn pushed(&self, channel: &str) -> Result<HashMap<(Sku, String), i64>, SyncError> {
        let mut pushed = HashMap::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("pk = :pk")
                .expression_attribute_values(":pk", s(format!("STOCK#{channel}")))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| store_error("Query (stock ledger)", e))?;
            for item in page.items() {
                let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
                let quantity = item
                    .get("quantity")
                    .and_then(|v| v.as_n().ok())
                    .and_then(|n| n.parse::<i64>().ok());
                if let (Some(sku), Some(location), Some(quantity)) =
                    (text("sku"), text("location"), quantity)
                    && let Ok(sku) = Sku::parse(&sku)
                {
                    pushed.insert((sku, location), quantity);
                }
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(pushed);
            }
        }
    }

    async fn record(&self, channel: &str, pushed: &[(Sku, String, i64)]) -> Result<(), SyncError> {
        let now = timestamp(OffsetDateTime::now_utc());
        for chunk in pushed.chunks(25) {
            let mut requests = Vec::with_capacity(chunk.len());
            for (sku, location, quantity) in chunk {
                let item = HashMap::from([
                    ("pk".to_owned(), s(format!("STOCK#{channel}"))),
                    ("sk".to_owned(), s(format!("{sku}@{location}"))),
                    ("sku".to_owned(), s(sku.as_str())),
                    ("location".to_owned(), s(location)),
                    ("quantity".to_owned(), n(quantity)),
                    ("pushed_at".to_owned(), s(&now)),
                ]);
                let put = PutRequest::builder()
                    .set_item(Some(item))
                    .build()
                    .map_err(|e| build_error("BatchWriteItem (build)", e))?;
                requests.push(WriteRequest::builder().put_request(put).build());
            }
            // DynamoDB may hand some writes back under load; they are sent again.
            for _ in 0..5 {
                let output = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, requests)
                    .send()
                    .await
                    .map_err(|e| store_error("BatchWriteItem (stock ledger)", e))?;
                requests = output
                    .unprocessed_items()
                    .and_then(|u| u.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if requests.is_empty() {
                    break;
                }
            }
            if !requests.is_empty() {
                return Err(SyncError::retryable(
                    "state_store_busy",
                    "DynamoDB kept back stock ledger writes",
                ));
            }
        }
        Ok(())
    }
}

/// Change-feed cursors: one item each, as nanoseconds since the epoch so the condition can
/// compare them; a cursor only moves forwards, whichever of two concurrent runs ends last.
#[async_trait]
impl Cursors for DynamoStore {
    async fn cursor(&self, name: &str) -> Result<Option<OffsetDateTime>, SyncError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(format!("CURSOR#{name}"), "CURSOR")))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem (cursor)", e))?;
        Ok(output
            .item()
            .and_then(|item| item.get("at_ns"))
            .and_then(|v| v.as_n().ok())
            .and_then(|n| n.parse::<i128>().ok())
            .and_then(|n| OffsetDateTime::from_unix_timestamp_nanos(n).ok()))
    }

    async fn set_cursor(&self, name: &str, at: OffsetDateTime) -> Result<(), SyncError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(format!("CURSOR#{name}"), "CURSOR")))
            .update_expression("SET at_ns = :at, #at = :text")
            .condition_expression("attribute_not_exists(at_ns) OR at_ns < :at")
            .expression_attribute_names("#at", "at")
            .expression_attribute_values(":at", n(at.unix_timestamp_nanos()))
            .expression_attribute_values(":text", s(timestamp(at)))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(error) => Err(store_error("UpdateItem (cursor)", error)),
        }
    }
}

/// Tracking number -> the fulfilment that carries it, for courier events.
#[async_trait]
impl TrackingIndex for DynamoStore {
    async fn remember(&self, tracking_number: &str, at: &FulfilmentRef) -> Result<(), SyncError> {
        let mut item = Self::key(format!("TRACKING#{tracking_number}"), "TRACKING");
        item.insert("channel".to_owned(), s(at.channel.as_str()));
        item.insert("order_id".to_owned(), s(&at.order_id));
        item.insert("fulfilment_id".to_owned(), s(&at.fulfilment_id));
        item.insert("shipment".to_owned(), s(&at.shipment));
        item.insert(
            "remembered_at".to_owned(),
            s(timestamp(OffsetDateTime::now_utc())),
        );
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| store_error("PutItem (tracking)", e))?;
        Ok(())
    }

    async fn find(&self, tracking_number: &str) -> Result<Option<FulfilmentRef>, SyncError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(
                format!("TRACKING#{tracking_number}"),
                "TRACKING",
            )))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem (tracking)", e))?;
        let Some(item) = output.item() else {
            return Ok(None);
        };
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        Ok(
            match (
                text("channel").and_then(|c| ChannelId::parse(&c).ok()),
                text("order_id"),
                text("fulfilment_id"),
            ) {
                (Some(channel), Some(order_id), Some(fulfilment_id)) => Some(FulfilmentRef {
                    channel,
                    order_id,
                    fulfilment_id,
                    shipment: text("shipment").unwrap_or_default(),
                }),
                _ => None,
            },
        )
    }
}

/// The latest payload of each entity, for replays by hand; kept 35 days.
#[async_trait]
impl PayloadArchive for DynamoStore {
    async fn keep(&self, entity: &EntityRef, payload: &ArchivedPayload) -> Result<(), SyncError> {
        let mut item = Self::key(format!("PAYLOAD#{}", state_pk(entity)), "PAYLOAD");
        item.insert("topic".to_owned(), s(&payload.topic));
        item.insert(
            "version_ns".to_owned(),
            n(payload.version.unix_timestamp_nanos()),
        );
        item.insert("version".to_owned(), s(timestamp(payload.version)));
        if let Some(triggered_at) = payload.triggered_at {
            item.insert("triggered_at".to_owned(), s(timestamp(triggered_at)));
        }
        let (name, body) = archived_body(entity, &payload.body)?;
        item.insert(name.to_owned(), body);
        item.insert(
            "expires_at".to_owned(),
            n((OffsetDateTime::now_utc() + Duration::from_secs(35 * 86_400)).unix_timestamp()),
        );
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk) OR version_ns <= :v")
            .expression_attribute_values(":v", n(payload.version.unix_timestamp_nanos()))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // A newer version is kept already.
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(error) => Err(store_error("PutItem (payload)", error)),
        }
    }

    async fn latest(&self, entity: &EntityRef) -> Result<Option<ArchivedPayload>, SyncError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(Self::key(
                format!("PAYLOAD#{}", state_pk(entity)),
                "PAYLOAD",
            )))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| store_error("GetItem (payload)", e))?;
        let Some(item) = output.item() else {
            return Ok(None);
        };
        let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
        let version = text("version").and_then(|v| OffsetDateTime::parse(&v, &Rfc3339).ok());
        let body = text("body").or_else(|| {
            let compressed = item.get("body_gz").and_then(|v| v.as_b().ok())?;
            let mut body = String::new();
            flate2::read::GzDecoder::new(compressed.as_ref())
                .read_to_string(&mut body)
                .ok()?;
            Some(body)
        });
        Ok(match (text("topic"), version, body) {
            (Some(topic), Some(version), Some(body)) => Some(ArchivedPayload {
                topic,
                version,
                triggered_at: text("triggered_at")
                    .and_then(|t| OffsetDateTime::parse(&t, &Rfc3339).ok()),
                body,
            }),
            _ => None,
        })
    }
}
