//! Bulk operations: started when the shop has a free slot, awaited, and their JSONL file
//! handed over line by line as it downloads.

use std::time::Duration;

use erpsync_core::SyncError;
use serde_json::{Value, json};
use tracing::debug;

use super::ShopifyAdmin;

/// How long a bulk read may wait, for a free slot and for its operation, before the run
/// gives up (retryable: the next run starts another). With the download's time it stays
/// inside stock-sync's and price-sync's 300 s timeout, leaving a minute for the writes.
const MAX_BULK_WAIT: Duration = Duration::from_secs(150);

/// How long a bulk operation's file may take to download.
const BULK_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(90);

/// Starts a bulk query: a mutation, 10 points.
pub(super) const BULK_RUN: &str = "mutation Bulk($query: String!) {
  bulkOperationRunQuery(query: $query) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}";

/// A bulk operation's status: one object, 1 point (`bulkOperation(id:)`, API 2026-01 on).
pub(super) const BULK_STATUS: &str = "query BulkStatus($id: ID!) {
  bulkOperation(id: $id) { id status errorCode objectCount url }
}";

impl ShopifyAdmin {
    /// Runs a bulk query and hands `each` its JSONL lines as they download (a catalogue's
    /// file is tens of MB: it is never held whole), waiting while the shop already runs as
    /// many bulk operations as it may.
    pub(super) async fn bulk_read(
        &self,
        query: &str,
        mut each: impl FnMut(Value) + Send,
    ) -> Result<(), SyncError> {
        let started = tokio::time::Instant::now();
        let mut pause = Duration::from_millis(100);
        let id = loop {
            let data = self
                .graphql(BULK_RUN, json!({"query": query}), 10.0)
                .await?;
            let payload = &data["bulkOperationRunQuery"];
            let errors = payload["userErrors"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            if let Some(id) = payload["bulkOperation"]["id"].as_str()
                && errors.is_empty()
            {
                break id.to_owned();
            }
            let busy = errors
                .iter()
                .any(|e| e["code"] == "LIMIT_REACHED" || e["code"] == "OPERATION_IN_PROGRESS");
            let messages = errors
                .iter()
                .map(|e| e["message"].as_str().unwrap_or("(no message)"))
                .collect::<Vec<_>>()
                .join("; ");
            if !busy {
                return Err(SyncError::permanent(
                    "channel_rejected",
                    format!("Shopify refused the bulk query: {messages}"),
                ));
            }
            if started.elapsed() + pause > MAX_BULK_WAIT {
                return Err(SyncError::retryable(
                    "channel_bulk_busy",
                    format!("the shop kept running other bulk operations: {messages}"),
                ));
            }
            debug!(
                pause_ms = pause.as_millis() as u64,
                "bulk operations busy; waiting for a slot"
            );
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(5));
        };
        let mut pause = Duration::from_millis(50);
        let url = loop {
            tokio::time::sleep(pause).await;
            let data = self.graphql(BULK_STATUS, json!({"id": id}), 1.0).await?;
            let operation = &data["bulkOperation"];
            match operation["status"].as_str().unwrap_or_default() {
                // No objects: Shopify gives no file.
                "COMPLETED" => break operation["url"].as_str().map(str::to_owned),
                "CREATED" | "RUNNING" | "CANCELING" => {}
                // The app lacks a scope the query needs: retrying cannot help.
                "FAILED" if operation["errorCode"] == "ACCESS_DENIED" => {
                    return Err(SyncError::permanent(
                        "channel_access_denied",
                        format!(
                            "bulk operation {id} was denied access: grant the app the scopes the stock and price reads need (read_inventory, read_products)"
                        ),
                    ));
                }
                status => {
                    return Err(SyncError::retryable(
                        "channel_bulk_failed",
                        format!(
                            "bulk operation {id} ended {status} (errorCode {})",
                            operation["errorCode"].as_str().unwrap_or("none")
                        ),
                    ));
                }
            }
            if started.elapsed() + pause > MAX_BULK_WAIT {
                return Err(SyncError::retryable(
                    "channel_bulk_slow",
                    format!("bulk operation {id} was still running after {MAX_BULK_WAIT:?}"),
                ));
            }
            pause = (pause * 2).min(Duration::from_secs(2));
        };
        let Some(url) = url else {
            return Ok(());
        };
        // The url is a signed download: the Admin API token is not sent with it. The client's
        // 30 s covers a whole answer; a large file gets what is left of the function's time.
        let response = self
            .http
            .get(&url)
            .timeout(BULK_DOWNLOAD_TIMEOUT)
            .send()
            .await
            .map_err(|e| {
                SyncError::dependency_down(
                    "channel_unavailable",
                    format!("the result of bulk operation {id} did not download: {e}"),
                )
            })?;
        if !response.status().is_success() {
            return Err(SyncError::retryable(
                "channel_bulk_failed",
                format!(
                    "the result of bulk operation {id} answered HTTP {}",
                    response.status().as_u16()
                ),
            ));
        }
        let mut response = response;
        let mut pending: Vec<u8> = Vec::new();
        let mut hand_over = |line: &[u8]| -> Result<(), SyncError> {
            if line.iter().all(u8::is_ascii_whitespace) {
                return Ok(());
            }
            let value = serde_json::from_slice(line).map_err(|e| {
                SyncError::retryable(
                    "channel_unexpected",
                    format!("a line of bulk operation {id} is not JSON: {e}"),
                )
            })?;
            each(value);
            Ok(())
        };
        loop {
            let chunk = response.chunk().await.map_err(|e| {
                SyncError::retryable(
                    "channel_bulk_failed",
                    format!("the result of bulk operation {id} broke off: {e}"),
                )
            })?;
            let Some(chunk) = chunk else { break };
            pending.extend_from_slice(&chunk);
            let mut start = 0;
            while let Some(end) = pending[start..].iter().position(|b| *b == b'\n') {
                hand_over(&pending[start..start + end])?;
                start += end + 1;
            }
            pending.drain(..start);
        }
        hand_over(&pending)
    }
}
