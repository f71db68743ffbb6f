//! One GraphQL call: paced by the cost bucket's last throttle status, waiting while Shopify
//! answers THROTTLED, and Shopify's refusals as errors; and reading a connection's pages.

use std::time::Duration;

use erpsync_core::SyncError;
use erpsync_core::runtime::answers::Answer;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tracing::{debug, warn};

use super::ShopifyAdmin;
use crate::http::retry_after;

/// How long one call may wait for the bucket in all before the run gives up (and resumes
/// at the next run).
const MAX_THROTTLE_WAIT: Duration = Duration::from_secs(120);

impl ShopifyAdmin {
    /// One GraphQL call: waits first if the last throttle status says the bucket cannot take
    /// `expected_cost`, and again whenever Shopify answers THROTTLED.
    pub(super) async fn graphql(
        &self,
        query: &str,
        variables: Value,
        expected_cost: f64,
    ) -> Result<Value, SyncError> {
        let mut waited = Duration::ZERO;
        loop {
            if let Some((available, rate)) = *self.budget.lock().await
                && available < expected_cost
                && rate > 0.0
            {
                let pause = Duration::from_secs_f64((expected_cost - available) / rate);
                debug!(
                    pause_ms = pause.as_millis() as u64,
                    "pacing for the API budget"
                );
                tokio::time::sleep(pause).await;
                waited += pause;
            }
            let response = self
                .http
                .post(&self.endpoint)
                .header("X-Shopify-Access-Token", self.token.expose_secret())
                .json(&json!({"query": query, "variables": variables}))
                .send()
                .await
                .map_err(|e| {
                    SyncError::dependency_down(
                        "channel_unavailable",
                        format!("Shopify at {} did not answer: {e}", self.endpoint),
                    )
                })?;
            let status = response.status();
            let delay = retry_after(response.headers());
            let body: Value = response.json().await.unwrap_or(Value::Null);
            if !status.is_success() {
                // No GraphQL endpoint there (a wrong shop domain or API version): every call
                // fails alike, so the batch waits for the config rather than parking each.
                let answer = match Answer::of_status(status.as_u16()) {
                    Answer::Refused if status == reqwest::StatusCode::NOT_FOUND => {
                        Answer::Unavailable
                    }
                    answer => answer,
                };
                let message = match answer {
                    Answer::AuthRefused => format!(
                        "Shopify refused the Admin API token (HTTP {}): check the channel's access_token_secret",
                        status.as_u16()
                    ),
                    _ => format!(
                        "Shopify answered HTTP {}{}",
                        status.as_u16(),
                        graphql_messages(&body)
                            .map(|m| format!(": {m}"))
                            .unwrap_or_default()
                    ),
                };
                return Err(answer.error(message, delay));
            }
            let throttle = &body["extensions"]["cost"]["throttleStatus"];
            let available = throttle["currentlyAvailable"].as_f64();
            let rate = throttle["restoreRate"].as_f64();
            if let (Some(available), Some(rate)) = (available, rate) {
                *self.budget.lock().await = Some((available, rate));
            }
            let throttled = body["errors"].as_array().is_some_and(|errors| {
                errors
                    .iter()
                    .any(|e| e["extensions"]["code"] == "THROTTLED")
            });
            if throttled {
                let requested = body["extensions"]["cost"]["requestedQueryCost"]
                    .as_f64()
                    .unwrap_or(expected_cost);
                if throttle["maximumAvailable"]
                    .as_f64()
                    .is_some_and(|maximum| requested > maximum)
                {
                    return Err(SyncError::permanent(
                        "channel_query_too_costly",
                        format!(
                            "a request costing {requested} points can never fit this store's bucket; lower the page or batch size"
                        ),
                    ));
                }
                let pause = match (available, rate) {
                    (Some(available), Some(rate)) if rate > 0.0 => {
                        Duration::from_secs_f64(((requested - available) / rate).max(0.05))
                    }
                    _ => Duration::from_secs(1),
                };
                if waited + pause > MAX_THROTTLE_WAIT {
                    return Err(SyncError::retryable(
                        "channel_throttled",
                        "Shopify kept throttling; the next run resumes",
                    ));
                }
                warn!(
                    pause_ms = pause.as_millis() as u64,
                    "throttled by Shopify; waiting for the bucket"
                );
                tokio::time::sleep(pause).await;
                waited += pause;
                continue;
            }
            if let Some(cost) = body["errors"].as_array().and_then(|errors| {
                errors
                    .iter()
                    .find(|e| e["extensions"]["code"] == "MAX_COST_EXCEEDED")
            }) {
                return Err(SyncError::permanent(
                    "channel_query_too_costly",
                    format!(
                        "Shopify refused a query costing {} points (the limit is {})",
                        cost["extensions"]["cost"], cost["extensions"]["maxCost"]
                    ),
                ));
            }
            if let Some(errors) = body["errors"].as_array().filter(|e| !e.is_empty()) {
                // The most hopeful class among them: one transient error makes it worth a retry.
                let answer = errors
                    .iter()
                    .map(|e| {
                        Answer::of_graphql_code(e["extensions"]["code"].as_str().unwrap_or(""))
                    })
                    .min_by_key(|answer| match answer {
                        Answer::Busy => 0,
                        Answer::Unavailable => 1,
                        Answer::AuthRefused => 2,
                        Answer::Refused => 3,
                    })
                    .unwrap_or(Answer::Refused);
                return Err(answer.error(
                    format!(
                        "Shopify refused the request: {}",
                        graphql_messages(&body).unwrap_or_default()
                    ),
                    delay,
                ));
            }
            return Ok(body["data"].clone());
        }
    }
}

/// The messages of a GraphQL answer's `errors`, if it has any.
fn graphql_messages(body: &Value) -> Option<String> {
    let messages: Vec<&str> = body["errors"]
        .as_array()?
        .iter()
        .filter_map(|e| e["message"].as_str())
        .collect();
    (!messages.is_empty()).then(|| messages.join("; "))
}

pub(super) fn nodes(connection: &Value) -> &[Value] {
    connection["nodes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The cursor to read the next page from, if there is one.
pub(super) fn next_page(connection: &Value) -> Option<String> {
    (connection["pageInfo"]["hasNextPage"] == true)
        .then(|| {
            connection["pageInfo"]["endCursor"]
                .as_str()
                .map(str::to_owned)
        })
        .flatten()
}
