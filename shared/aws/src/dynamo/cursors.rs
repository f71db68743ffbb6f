//! Change-feed cursors: read, moved forwards, and listed for reports.

use async_trait::async_trait;
use erpsync_core::SyncError;
use time::OffsetDateTime;

use super::{DynamoStore, n, s, store_error, timestamp};
use erpsync_core::ports::Cursors;

impl DynamoStore {
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
