//! The payload archive: each entity's latest payload, compressed when large, for replays
//! by hand.

use std::io::{Read, Write};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;
use erpsync_core::SyncError;
use erpsync_core::model::state::EntityRef;
use erpsync_core::ports::{ArchivedPayload, PayloadArchive};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{DynamoStore, n, s, state_pk, store_error, timestamp};

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
