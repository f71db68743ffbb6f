//! Shopify's Admin GraphQL API: the catalogue with what each location shows,
//! `inventorySetQuantities`, prices, orders and fulfilments. Rate-limit aware: it reads
//! `extensions.cost.throttleStatus` and waits for the bucket to refill instead of failing.
//!
//! Every query fits Shopify's 1,000-point single-query limit under the documented cost
//! rules (connection = 2 + first x one node, object 1, scalar 0, mutation 10); each constant
//! below carries its requested cost worked out. Catalogue-wide reads are bulk operations,
//! which have no cost limit; nested connections of targeted reads page with their own
//! cursors, so nothing is skipped.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use erpsync_core::SyncError;
use erpsync_core::answers::Answer;
use erpsync_core::config::{ChannelConfig, Config};
use erpsync_core::fulfilment::{
    ChannelFulfilment, FulfilLine, FulfilmentEvent, OpenLine, ShopFulfilment, Tracking,
};
use erpsync_core::ids::{ExternalOrderId, Sku};
use erpsync_core::prices::{ChannelPrices, ChannelVariant};
use erpsync_core::reconcile::{ChannelOrders, OrderPage, ShopOrderRef};
use erpsync_core::stock::{ChannelInventory, ChannelItem, StockChange};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Mutex;
use tracing::{debug, warn};

use crate::http::retry_after;

/// How long one call may wait for the bucket in all before the run gives up (and resumes
/// at the next run).
const MAX_THROTTLE_WAIT: Duration = Duration::from_secs(120);

/// How long a bulk read may wait, for a free slot and for its operation, before the run
/// gives up (retryable: the next run starts another). With the download's time it stays
/// inside stock-sync's and price-sync's 300 s timeout, leaving a minute for the writes.
const MAX_BULK_WAIT: Duration = Duration::from_secs(150);

/// How long a bulk operation's file may take to download.
const BULK_DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(90);

pub struct ShopifyAdmin {
    http: reqwest::Client,
    endpoint: String,
    token: SecretString,
    /// The last throttle status seen: (currently available, restore rate).
    budget: Mutex<Option<(f64, f64)>>,
}

/// Admin API clients for the channels `wanted` selects (and that have an Admin API), each
/// with the token `token` fetches by secret name: what every Admin-API function wires at
/// cold start.
pub async fn admin_clients<F, Fut, E>(
    config: &Config,
    wanted: impl Fn(&ChannelConfig) -> bool,
    token: F,
) -> Result<HashMap<String, ShopifyAdmin>, E>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<SecretString, E>>,
    E: From<reqwest::Error>,
{
    let mut clients = HashMap::new();
    for channel in config.channels.iter().filter(|c| wanted(c)) {
        if let Some(api) = &channel.admin_api {
            let secret = token(api.access_token_secret.clone()).await?;
            clients.insert(
                channel.id.to_string(),
                ShopifyAdmin::new(&api.url, &api.version, secret)?,
            );
        }
    }
    Ok(clients)
}

/// SKUs per search: the targeted read's page holds one search's worth.
const SKUS_PER_SEARCH: usize = 50;

/// Levels read with each item; an item stocked at more locations pages the rest (LEVELS).
const LEVELS_PER_ITEM: u32 = 5;

/// Targeted read (real-time SKUs): one inventory level is 1 (itself) + 1 (location) + 1
/// (quantities); one item 1 + (2 + 5 x 3) = 18; the page 2 + 50 x 18 = 902 points.
const ITEMS: &str = "query Items($first: Int!, $after: String, $query: String, $levels: Int!) {
  inventoryItems(first: $first, after: $after, query: $query) {
    nodes {
      id
      sku
      inventoryLevels(first: $levels) {
        nodes { location { id } quantities(names: [\"available\"]) { name quantity } }
        pageInfo { hasNextPage endCursor }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}";
const ITEMS_COST: f64 = 902.0;

/// The rest of one item's levels: 1 (item) + 2 + 50 x 3 = 153 points.
const LEVELS: &str = "query Levels($id: ID!, $after: String) {
  inventoryItem(id: $id) {
    inventoryLevels(first: 50, after: $after) {
      nodes { location { id } quantities(names: [\"available\"]) { name quantity } }
      pageInfo { hasNextPage endCursor }
    }
  }
}";
const LEVELS_COST: f64 = 153.0;

/// Full read of every item and its levels at every location, as a bulk operation.
const ITEMS_BULK: &str = "{ inventoryItems { edges { node { id sku inventoryLevels { edges { node { location { id } quantities(names: [\"available\"]) { name quantity } } } } } } } }";

/// Starts a bulk query: a mutation, 10 points.
const BULK_RUN: &str = "mutation Bulk($query: String!) {
  bulkOperationRunQuery(query: $query) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}";

/// A bulk operation's status: one object, 1 point (`bulkOperation(id:)`, API 2026-01 on).
const BULK_STATUS: &str = "query BulkStatus($id: ID!) {
  bulkOperation(id: $id) { id status errorCode objectCount url }
}";

const SET: &str = "mutation Set($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { reason }
    userErrors { code field message }
  }
}";

impl ShopifyAdmin {
    pub fn new(
        admin_url: &str,
        api_version: &str,
        token: SecretString,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(30))
                .build()?,
            endpoint: format!(
                "{}/admin/api/{api_version}/graphql.json",
                admin_url.trim_end_matches('/')
            ),
            token,
            budget: Mutex::new(None),
        })
    }

    /// One GraphQL call: waits first if the last throttle status says the bucket cannot take
    /// `expected_cost`, and again whenever Shopify answers THROTTLED.
    async fn graphql(
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

/// An inventory level's location and available quantity.
fn level(level: &Value) -> Option<(String, i64)> {
    let location = level["location"]["id"].as_str()?.to_owned();
    let available = level["quantities"]
        .as_array()?
        .iter()
        .find(|q| q["name"] == "available")?["quantity"]
        .as_i64()?;
    Some((location, available))
}

fn nodes(connection: &Value) -> &[Value] {
    connection["nodes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The cursor to read the next page from, if there is one.
fn next_page(connection: &Value) -> Option<String> {
    (connection["pageInfo"]["hasNextPage"] == true)
        .then(|| {
            connection["pageInfo"]["endCursor"]
                .as_str()
                .map(str::to_owned)
        })
        .flatten()
}

impl ShopifyAdmin {
    /// The inventory items matching a search `query`, each with all its levels.
    async fn inventory_items(&self, query: String) -> Result<Vec<ChannelItem>, SyncError> {
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let variables = json!({"first": SKUS_PER_SEARCH, "after": after, "query": query,
                                   "levels": LEVELS_PER_ITEM});
            let data = self.graphql(ITEMS, variables, ITEMS_COST).await?;
            let page = &data["inventoryItems"];
            for node in nodes(page) {
                let Some(sku) = node["sku"].as_str().and_then(|s| Sku::parse(s).ok()) else {
                    continue;
                };
                let id = node["id"].as_str().unwrap_or_default().to_owned();
                let mut levels: HashMap<String, i64> = nodes(&node["inventoryLevels"])
                    .iter()
                    .filter_map(level)
                    .collect();
                let mut more = next_page(&node["inventoryLevels"]);
                while let Some(cursor) = more {
                    let data = self
                        .graphql(LEVELS, json!({"id": id, "after": cursor}), LEVELS_COST)
                        .await?;
                    let connection = &data["inventoryItem"]["inventoryLevels"];
                    levels.extend(nodes(connection).iter().filter_map(level));
                    more = next_page(connection);
                }
                items.push(ChannelItem {
                    sku,
                    inventory_item: id,
                    levels,
                });
            }
            match next_page(page) {
                Some(cursor) => after = Some(cursor),
                None => return Ok(items),
            }
        }
    }

    /// Runs a bulk query and hands `each` its JSONL lines as they download (a catalogue's
    /// file is tens of MB: it is never held whole), waiting while the shop already runs as
    /// many bulk operations as it may.
    async fn bulk_read(
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

#[async_trait]
impl ChannelInventory for ShopifyAdmin {
    /// The whole catalogue: a bulk operation, whatever its size.
    async fn items(&self) -> Result<Vec<ChannelItem>, SyncError> {
        // Items, then each one's levels by `__parentId` (Shopify does not promise children
        // follow their parent), kept as they arrive in their compact form.
        let mut roots: Vec<(Sku, String)> = Vec::new();
        let mut levels: HashMap<String, HashMap<String, i64>> = HashMap::new();
        self.bulk_read(ITEMS_BULK, |line| match line["__parentId"].as_str() {
            Some(parent) => {
                if let Some(level) = level(&line) {
                    levels.entry(parent.to_owned()).or_default().extend([level]);
                }
            }
            None => {
                let sku = line["sku"].as_str().and_then(|s| Sku::parse(s).ok());
                if let (Some(sku), Some(id)) = (sku, line["id"].as_str()) {
                    roots.push((sku, id.to_owned()));
                }
            }
        })
        .await?;
        Ok(roots
            .into_iter()
            .map(|(sku, id)| ChannelItem {
                sku,
                levels: levels.remove(&id).unwrap_or_default(),
                inventory_item: id,
            })
            .collect())
    }

    async fn items_with_skus(&self, skus: &[Sku]) -> Result<Vec<ChannelItem>, SyncError> {
        let mut items = Vec::new();
        // Shopify's search syntax; a page of terms per query keeps the query string short.
        for chunk in skus.chunks(SKUS_PER_SEARCH) {
            let query = chunk
                .iter()
                .map(|sku| format!("sku:'{}'", sku.as_str().replace('\'', "\\'")))
                .collect::<Vec<_>>()
                .join(" OR ");
            items.extend(self.inventory_items(query).await?);
        }
        // The search matches loosely (prefixes, case): keep the exact SKUs asked for.
        items.retain(|item| skus.contains(&item.sku));
        Ok(items)
    }

    async fn set_available(
        &self,
        changes: &[StockChange],
        idempotency_key: &str,
    ) -> Result<Vec<usize>, SyncError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let quantities: Vec<Value> = changes
            .iter()
            .map(|c| {
                json!({"inventoryItemId": c.inventory_item, "locationId": c.location, "quantity": c.quantity,
                       "changeFromQuantity": c.change_from})
            })
            .collect();
        let input = json!({"name": "available", "reason": "correction",
                           "referenceDocumentUri": format!("erpsync://stock-sync/{idempotency_key}"), "quantities": quantities});
        let data = self
            .graphql(SET, json!({"input": input, "key": idempotency_key}), 10.0)
            .await?;
        let errors = data["inventorySetQuantities"]["userErrors"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut stale = Vec::new();
        for error in &errors {
            let index = error["field"]
                .as_array()
                .and_then(|f| f.get(2))
                .and_then(|i| i.as_str()?.parse::<usize>().ok());
            match (error["code"].as_str(), index) {
                (Some("CHANGE_FROM_QUANTITY_STALE"), Some(index)) => stale.push(index),
                _ => {
                    return Err(SyncError::permanent(
                        "channel_rejected",
                        format!(
                            "Shopify refused the stock update: {}",
                            error["message"].as_str().unwrap_or("(no message)")
                        ),
                    ));
                }
            }
        }
        Ok(stale)
    }
}

/// 2 + 100 x 1 = 102 points.
/// Orders updated after a time, oldest update first (`sortKey: UPDATED_AT`; the default, ID,
/// would not let a run that stops early resume where it was). 100 a page: 102 points.
const ORDERS: &str = "query Orders($first: Int!, $after: String, $query: String) {
  orders(first: $first, after: $after, query: $query, sortKey: UPDATED_AT) {
    nodes { legacyResourceId updatedAt }
    pageInfo { hasNextPage endCursor }
  }
}";

#[async_trait]
impl ChannelOrders for ShopifyAdmin {
    async fn updated_page(
        &self,
        since: OffsetDateTime,
        after: Option<&str>,
    ) -> Result<OrderPage, SyncError> {
        // Whole seconds, as Shopify's search syntax shows dates (no fractions documented);
        // rounding down only widens the window.
        let since = since
            .replace_nanosecond(0)
            .unwrap_or(since)
            .to_offset(time::UtcOffset::UTC)
            .format(&Rfc3339)
            .map_err(|e| SyncError::permanent("invalid_time", e.to_string()))?;
        let variables =
            json!({"first": 100, "after": after, "query": format!("updated_at:>'{since}'")});
        let data = self.graphql(ORDERS, variables, 102.0).await?;
        let page = &data["orders"];
        let orders = page["nodes"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|node| {
                let id = node["legacyResourceId"]
                    .as_str()
                    .and_then(|id| ExternalOrderId::parse(id).ok())?;
                let updated_at = node["updatedAt"]
                    .as_str()
                    .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok())?;
                Some(ShopOrderRef { id, updated_at })
            })
            .collect();
        let next = (page["pageInfo"]["hasNextPage"] == true)
            .then(|| page["pageInfo"]["endCursor"].as_str().map(str::to_owned))
            .flatten();
        Ok(OrderPage { orders, next })
    }

    async fn order_body(&self, id: &ExternalOrderId) -> Result<String, SyncError> {
        // The REST order resource is the exact shape of the order webhooks.
        let url = self
            .endpoint
            .replace("graphql.json", &format!("orders/{id}.json"));
        let mut throttled = 0;
        loop {
            let response = self
                .http
                .get(&url)
                .header("X-Shopify-Access-Token", self.token.expose_secret())
                .send()
                .await
                .map_err(|e| {
                    SyncError::dependency_down(
                        "channel_unavailable",
                        format!("Shopify did not answer for order {id}: {e}"),
                    )
                })?;
            let status = response.status();
            let delay = retry_after(response.headers());
            // REST is a leaky bucket of requests (40, leaking 2 a second on Standard:
            // shopify.dev/docs/api/admin-rest/usage/rate-limits): answered 429, wait as told
            // and go again, a few times, before the run gives the store up for now.
            if status.as_u16() == 429 && throttled < REST_THROTTLED_RETRIES {
                throttled += 1;
                tokio::time::sleep(delay.unwrap_or(Duration::from_secs(1))).await;
                continue;
            }
            if !status.is_success() {
                return Err(Answer::of_status(status.as_u16()).error(
                    format!("Shopify answered HTTP {} for order {id}", status.as_u16()),
                    delay,
                ));
            }
            // Nearly full: let a request leak out first, so the next one is not refused.
            if let Some((used, size)) = call_limit(response.headers())
                && used + 1 >= size
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            let body: Value = response.json().await.map_err(|e| {
                SyncError::retryable("channel_unexpected", format!("order {id} is not JSON: {e}"))
            })?;
            return Ok(body["order"].to_string());
        }
    }
}

/// How often a REST call answered 429 is made again before the store is given up for now.
const REST_THROTTLED_RETRIES: u32 = 5;

/// `X-Shopify-Shop-Api-Call-Limit: 32/40`: the REST bucket's fill and size.
fn call_limit(headers: &reqwest::header::HeaderMap) -> Option<(u32, u32)> {
    let text = headers
        .get("x-shopify-shop-api-call-limit")?
        .to_str()
        .ok()?;
    let (used, size) = text.split_once('/')?;
    Some((used.trim().parse().ok()?, size.trim().parse().ok()?))
}

/// Every product's variants (all of them: up to 2,048 a product), as a bulk operation.
const VARIANTS_BULK: &str =
    "{ products { edges { node { id variants { edges { node { id sku price } } } } } } }";

/// A mutation: 10 points.
const UPDATE_PRICES: &str =
    "mutation Prices($productId: ID!, $variants: [ProductVariantsBulkInput!]!) {
  productVariantsBulkUpdate(productId: $productId, variants: $variants) {
    productVariants { id price }
    userErrors { field message }
  }
}";

#[async_trait]
impl ChannelPrices for ShopifyAdmin {
    async fn variants(&self) -> Result<Vec<ChannelVariant>, SyncError> {
        // Variants are the lines with a parent (their product); products add nothing more.
        let mut variants = Vec::new();
        self.bulk_read(VARIANTS_BULK, |line| {
            let Some(product_id) = line["__parentId"].as_str() else {
                return;
            };
            let sku = line["sku"].as_str().and_then(|s| Sku::parse(s).ok());
            let price = line["price"]
                .as_str()
                .and_then(|p| p.parse::<rust_decimal::Decimal>().ok());
            if let (Some(sku), Some(price), Some(variant_id)) = (sku, price, line["id"].as_str()) {
                variants.push(ChannelVariant {
                    product_id: product_id.to_owned(),
                    variant_id: variant_id.to_owned(),
                    sku,
                    price,
                });
            }
        })
        .await?;
        Ok(variants)
    }

    async fn update_prices(
        &self,
        product_id: &str,
        prices: &[(String, rust_decimal::Decimal)],
    ) -> Result<(), SyncError> {
        let variants: Vec<Value> = prices
            .iter()
            .map(|(id, price)| json!({"id": id, "price": price.to_string()}))
            .collect();
        let data = self
            .graphql(
                UPDATE_PRICES,
                json!({"productId": product_id, "variants": variants}),
                10.0,
            )
            .await?;
        let errors = data["productVariantsBulkUpdate"]["userErrors"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        match errors.first() {
            None => Ok(()),
            Some(error) => Err(SyncError::permanent(
                erpsync_core::prices::REJECTED,
                format!(
                    "Shopify refused the prices of {product_id}: {}",
                    error["message"].as_str().unwrap_or("(no message)")
                ),
            )),
        }
    }
}

/// One order's fulfilment orders, a page of 5, each with up to 50 lines and 10 fulfilments
/// (more of either page with the two queries below). A fulfilment's tracking numbers are
/// listed up to 5: erpsync gives each of its fulfilments one.
/// One fulfilment order: 1 + (2 + 50 x (1 + 1)) + (2 + 10 x (1 + 5 x 1)) = 1 + 102 + 62 = 165;
/// the query: 1 (order) + 2 + 5 x 165 = 828 points.
const FULFILMENT: &str = "query Fulfilment($id: ID!, $after: String) {
  order(id: $id) {
    displayFulfillmentStatus
    fulfillmentOrders(first: 5, after: $after) {
      nodes {
        id
        status
        lineItems(first: 50) {
          nodes { id sku remainingQuantity lineItem { sku } }
          pageInfo { hasNextPage endCursor }
        }
        fulfillments(first: 10) {
          nodes { trackingInfo(first: 5) { number } }
          pageInfo { hasNextPage endCursor }
        }
      }
      pageInfo { hasNextPage endCursor }
    }
  }
}";
/// The store's own id: a query every app may make (no access scope), costing 1 point.
const SHOP_ID: &str = "query ShopId { shop { id } }";
const SHOP_ID_COST: f64 = 1.0;

const FULFILMENT_COST: f64 = 828.0;

/// The rest of one fulfilment order's lines: 1 + 2 + 100 x (1 + 1) = 203 points.
const FULFILMENT_LINES: &str = "query Lines($id: ID!, $after: String) {
  fulfillmentOrder(id: $id) {
    lineItems(first: 100, after: $after) {
      nodes { id sku remainingQuantity lineItem { sku } }
      pageInfo { hasNextPage endCursor }
    }
  }
}";
const FULFILMENT_LINES_COST: f64 = 203.0;

/// The rest of one fulfilment order's fulfilments: 1 + 2 + 50 x (1 + 5 x 1) = 303 points.
const FULFILMENTS_MADE: &str = "query Made($id: ID!, $after: String) {
  fulfillmentOrder(id: $id) {
    fulfillments(first: 50, after: $after) {
      nodes { trackingInfo(first: 5) { number } }
      pageInfo { hasNextPage endCursor }
    }
  }
}";
const FULFILMENTS_MADE_COST: f64 = 303.0;

/// Mutations: 10 points each.
const FULFIL: &str = "mutation Fulfil($fulfillment: FulfillmentInput!) {
  fulfillmentCreate(fulfillment: $fulfillment) {
    fulfillment { id status }
    userErrors { field message }
  }
}";

const EVENT: &str = "mutation Event($event: FulfillmentEventInput!) {
  fulfillmentEventCreate(fulfillmentEvent: $event) {
    fulfillmentEvent { id status }
    userErrors { field message }
  }
}";

/// The tracking numbers of a page of fulfilments.
fn tracking(fulfilments: &Value) -> impl Iterator<Item = String> + '_ {
    nodes(fulfilments)
        .iter()
        .flat_map(|f| {
            f["trackingInfo"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
        })
        .filter_map(|t| t["number"].as_str().map(str::to_owned))
}

fn open_line(fulfilment_order: &str, line: &Value) -> OpenLine {
    OpenLine {
        fulfilment_order: fulfilment_order.to_owned(),
        line_item: line["id"].as_str().unwrap_or_default().to_owned(),
        sku: line["sku"]
            .as_str()
            .or_else(|| line["lineItem"]["sku"].as_str())
            .and_then(|s| Sku::parse(s).ok()),
        remaining: line["remainingQuantity"]
            .as_u64()
            .and_then(|q| u32::try_from(q).ok())
            .unwrap_or(0),
    }
}

fn user_errors(payload: &Value) -> Option<String> {
    let errors = payload["userErrors"].as_array()?;
    (!errors.is_empty()).then(|| {
        errors
            .iter()
            .map(|e| e["message"].as_str().unwrap_or("(no message)"))
            .collect::<Vec<_>>()
            .join("; ")
    })
}

#[async_trait]
impl ChannelFulfilment for ShopifyAdmin {
    async fn answers(&self) -> Result<(), SyncError> {
        self.graphql(SHOP_ID, json!({}), SHOP_ID_COST)
            .await
            .map(|_| ())
    }

    async fn fulfilment(&self, order_id: &str) -> Result<Option<ShopFulfilment>, SyncError> {
        let id = format!("gid://shopify/Order/{order_id}");
        let mut lines = Vec::new();
        let mut tracking_numbers: Vec<String> = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let data = self
                .graphql(
                    FULFILMENT,
                    json!({"id": id, "after": after}),
                    FULFILMENT_COST,
                )
                .await?;
            let order = &data["order"];
            if order.is_null() {
                return Ok(None);
            }
            for fulfilment_order in nodes(&order["fulfillmentOrders"]) {
                let Some(fulfilment_order_id) = fulfilment_order["id"].as_str() else {
                    continue;
                };
                let connection = &fulfilment_order["lineItems"];
                lines.extend(
                    nodes(connection)
                        .iter()
                        .map(|l| open_line(fulfilment_order_id, l)),
                );
                let mut more = next_page(connection);
                while let Some(cursor) = more {
                    let data = self
                        .graphql(
                            FULFILMENT_LINES,
                            json!({"id": fulfilment_order_id, "after": cursor}),
                            FULFILMENT_LINES_COST,
                        )
                        .await?;
                    let connection = &data["fulfillmentOrder"]["lineItems"];
                    lines.extend(
                        nodes(connection)
                            .iter()
                            .map(|l| open_line(fulfilment_order_id, l)),
                    );
                    more = next_page(connection);
                }
                let connection = &fulfilment_order["fulfillments"];
                tracking_numbers.extend(tracking(connection));
                let mut more = next_page(connection);
                while let Some(cursor) = more {
                    let data = self
                        .graphql(
                            FULFILMENTS_MADE,
                            json!({"id": fulfilment_order_id, "after": cursor}),
                            FULFILMENTS_MADE_COST,
                        )
                        .await?;
                    let connection = &data["fulfillmentOrder"]["fulfillments"];
                    tracking_numbers.extend(tracking(connection));
                    more = next_page(connection);
                }
            }
            if let Some(cursor) = next_page(&order["fulfillmentOrders"]) {
                after = Some(cursor);
                continue;
            }
            // A fulfilment spanning two fulfilment orders is listed under both.
            tracking_numbers.sort();
            tracking_numbers.dedup();
            return Ok(Some(ShopFulfilment {
                lines,
                tracking_numbers,
                status: order["displayFulfillmentStatus"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            }));
        }
    }

    async fn fulfil(
        &self,
        lines: &[FulfilLine],
        tracking: Option<&Tracking>,
    ) -> Result<String, SyncError> {
        let mut groups: Vec<(String, Vec<Value>)> = Vec::new();
        for line in lines {
            let item = json!({"id": line.line_item, "quantity": line.quantity});
            match groups
                .iter_mut()
                .find(|(id, _)| *id == line.fulfilment_order)
            {
                Some((_, items)) => items.push(item),
                None => groups.push((line.fulfilment_order.clone(), vec![item])),
            }
        }
        let by_order: Vec<Value> = groups
            .into_iter()
            .map(
                |(id, items)| json!({"fulfillmentOrderId": id, "fulfillmentOrderLineItems": items}),
            )
            .collect();
        let fulfillment = json!({
            "lineItemsByFulfillmentOrder": by_order,
            "trackingInfo": tracking.map(|t| json!({"company": t.company, "number": t.number, "url": t.url})),
            "notifyCustomer": true,
        });
        let data = self
            .graphql(FULFIL, json!({"fulfillment": fulfillment}), 10.0)
            .await?;
        let payload = &data["fulfillmentCreate"];
        if let Some(errors) = user_errors(payload) {
            return Err(SyncError::permanent(
                "channel_rejected",
                format!("Shopify refused the fulfilment: {errors}"),
            ));
        }
        payload["fulfillment"]["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| {
                SyncError::retryable(
                    "channel_unexpected",
                    "fulfillmentCreate answered without a fulfilment",
                )
            })
    }

    async fn add_event(
        &self,
        fulfilment_id: &str,
        event: &FulfilmentEvent,
    ) -> Result<(), SyncError> {
        let happened_at = event
            .happened_at
            .and_then(|at| at.to_offset(time::UtcOffset::UTC).format(&Rfc3339).ok());
        let input = json!({"fulfillmentId": fulfilment_id, "status": event.status,
                           "message": event.message, "happenedAt": happened_at});
        let data = self.graphql(EVENT, json!({"event": input}), 10.0).await?;
        match user_errors(&data["fulfillmentEventCreate"]) {
            Some(errors) => Err(SyncError::permanent(
                "channel_rejected",
                format!("Shopify refused the fulfilment event: {errors}"),
            )),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sandbox::cost::{Costing, MAX_QUERY_COST};

    /// Every query and mutation sent, with the variables that size it: the requested cost
    /// under Shopify's documented rules is the one stated beside it, and within the limit.
    #[test]
    fn every_query_fits_the_single_query_limit_at_its_stated_cost() {
        let table: &[(&str, &str, Value, f64)] = &[
            (
                "ITEMS",
                ITEMS,
                json!({"first": SKUS_PER_SEARCH, "levels": LEVELS_PER_ITEM}),
                ITEMS_COST,
            ),
            ("LEVELS", LEVELS, json!({}), LEVELS_COST),
            ("ORDERS", ORDERS, json!({"first": 100}), 102.0),
            ("FULFILMENT", FULFILMENT, json!({}), FULFILMENT_COST),
            (
                "FULFILMENT_LINES",
                FULFILMENT_LINES,
                json!({}),
                FULFILMENT_LINES_COST,
            ),
            (
                "FULFILMENTS_MADE",
                FULFILMENTS_MADE,
                json!({}),
                FULFILMENTS_MADE_COST,
            ),
            ("BULK_STATUS", BULK_STATUS, json!({}), 1.0),
            ("SHOP_ID", SHOP_ID, json!({}), SHOP_ID_COST),
            ("BULK_RUN", BULK_RUN, json!({}), 10.0),
            ("SET", SET, json!({}), 10.0),
            ("UPDATE_PRICES", UPDATE_PRICES, json!({}), 10.0),
            ("FULFIL", FULFIL, json!({}), 10.0),
            ("EVENT", EVENT, json!({}), 10.0),
        ];
        for (name, query, variables, stated) in table {
            let requested =
                Costing::parse(query, None, &async_graphql_variables(variables.clone()))
                    .unwrap_or_else(|e| panic!("{name}: {e}"))
                    .requested();
            assert_eq!(requested as f64, *stated, "{name}");
            assert!(requested <= MAX_QUERY_COST, "{name} costs {requested}");
        }
    }

    fn async_graphql_variables(value: Value) -> sandbox::cost::Variables {
        sandbox::cost::Variables::from_json(value)
    }
}
