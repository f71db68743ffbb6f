//! Sync-state records: outcomes and failures written under the version guard, and a state
//! row read back.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Update};
use erpsync_core::ErrorClass;
use erpsync_core::SyncError;
use erpsync_core::model::state::Flow;
use erpsync_core::model::state::{
    EntityRef, ErrorReport, OrderBasis, SyncRecord, SyncState, SyncStatus,
};
use erpsync_core::ports::SyncStateStore;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{DynamoStore, attention_pk, n, s, state_pk, store_error, timestamp};

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
pub(super) fn record_update(
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

pub(super) fn state_from_item(item: &HashMap<String, AttributeValue>) -> Option<SyncState> {
    let text = |name: &str| item.get(name).and_then(|v| v.as_s().ok()).cloned();
    let number = |name: &str| item.get(name).and_then(|v| v.as_n().ok()).cloned();
    let flow = Flow::parse(&text("flow")?)?;
    let entity = EntityRef {
        flow,
        channel: erpsync_core::model::ids::ChannelId::parse(&text("channel")?).ok()?,
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
