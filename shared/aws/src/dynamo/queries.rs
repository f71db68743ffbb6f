//! State reads beyond the port's: batches, scans for reports, and what needs a person.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use erpsync_core::SyncError;
use erpsync_core::model::state::{EntityRef, Flow, SyncState, SyncStatus};

use super::state::state_from_item;
use super::{ATTENTION_INDEX, DynamoStore, attention_pk, s, state_pk, store_error};

impl DynamoStore {
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
