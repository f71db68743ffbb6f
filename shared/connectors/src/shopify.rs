//! Shopify's Admin GraphQL API for the stock flow: the catalogue with what each location
//! shows, and `inventorySetQuantities`. Rate-limit aware: it reads
//! `extensions.cost.throttleStatus` and waits for the bucket to refill instead of failing.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use erpsync_core::SyncError;
use erpsync_core::config::{ChannelConfig, Config};
use erpsync_core::fulfilment::{
    ChannelFulfilment, FulfilLine, FulfilmentEvent, OpenLine, ShopFulfilment, Tracking,
};
use erpsync_core::ids::{ExternalOrderId, Sku};
use erpsync_core::prices::{ChannelPrices, ChannelVariant};
use erpsync_core::reconcile::{ChannelOrders, ShopOrderRef};
use erpsync_core::stock::{ChannelInventory, ChannelItem, StockChange};
use reqwest::StatusCode;
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

const ITEMS: &str = "query Items($first: Int!, $after: String, $query: String) {
  inventoryItems(first: $first, after: $after, query: $query) {
    nodes {
      id
      sku
      inventoryLevels(first: 50) { nodes { location { id } quantities(names: [\"available\"]) { name quantity } } }
    }
    pageInfo { hasNextPage endCursor }
  }
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
            let error = match status {
                s if s.is_success() => None,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    Some(SyncError::dependency_down(
                        "channel_auth",
                        format!(
                            "Shopify refused the Admin API token (HTTP {}): check the channel's access_token_secret",
                            status.as_u16()
                        ),
                    ))
                }
                s => Some(SyncError::dependency_down(
                    "channel_unavailable",
                    format!("Shopify answered HTTP {}", s.as_u16()),
                )),
            };
            if let Some(error) = error {
                return Err(match delay {
                    Some(delay) => error.with_retry_after(delay),
                    None => error,
                });
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
            if let Some(errors) = body["errors"].as_array() {
                let messages: Vec<&str> = errors
                    .iter()
                    .filter_map(|e| e["message"].as_str())
                    .collect();
                return Err(SyncError::permanent(
                    "channel_rejected",
                    format!("Shopify refused the request: {}", messages.join("; ")),
                ));
            }
            return Ok(body["data"].clone());
        }
    }
}

impl ShopifyAdmin {
    /// Every inventory item with its levels, or those matching a search `query`.
    async fn inventory_items(&self, query: Option<String>) -> Result<Vec<ChannelItem>, SyncError> {
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        let first = 100;
        loop {
            let data = self
                .graphql(
                    ITEMS,
                    json!({"first": first, "after": after, "query": query}),
                    1.0 + 150.0 * 1.0,
                )
                .await?;
            let page = &data["inventoryItems"];
            for node in page["nodes"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let Some(sku) = node["sku"].as_str().and_then(|s| Sku::parse(s).ok()) else {
                    continue;
                };
                let levels: HashMap<String, i64> = node["inventoryLevels"]["nodes"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|level| {
                        let location = level["location"]["id"].as_str()?.to_owned();
                        let available = level["quantities"]
                            .as_array()?
                            .iter()
                            .find(|q| q["name"] == "available")?["quantity"]
                            .as_i64()?;
                        Some((location, available))
                    })
                    .collect();
                items.push(ChannelItem {
                    sku,
                    inventory_item: node["id"].as_str().unwrap_or_default().to_owned(),
                    levels,
                });
            }
            if page["pageInfo"]["hasNextPage"] != true {
                return Ok(items);
            }
            after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
        }
    }
}

#[async_trait]
impl ChannelInventory for ShopifyAdmin {
    async fn items(&self) -> Result<Vec<ChannelItem>, SyncError> {
        self.inventory_items(None).await
    }

    async fn items_with_skus(&self, skus: &[Sku]) -> Result<Vec<ChannelItem>, SyncError> {
        let mut items = Vec::new();
        // Shopify's search syntax; a page of terms per query keeps the query string short.
        for chunk in skus.chunks(50) {
            let query = chunk
                .iter()
                .map(|sku| format!("sku:'{}'", sku.as_str().replace('\'', "\\'")))
                .collect::<Vec<_>>()
                .join(" OR ");
            items.extend(self.inventory_items(Some(query)).await?);
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
            .graphql(
                SET,
                json!({"input": input, "key": idempotency_key}),
                10.0 + changes.len() as f64,
            )
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

const ORDERS: &str = "query Orders($first: Int!, $after: String, $query: String) {
  orders(first: $first, after: $after, query: $query) {
    nodes { legacyResourceId updatedAt }
    pageInfo { hasNextPage endCursor }
  }
}";

#[async_trait]
impl ChannelOrders for ShopifyAdmin {
    async fn updated_since(&self, since: OffsetDateTime) -> Result<Vec<ShopOrderRef>, SyncError> {
        let since = since
            .to_offset(time::UtcOffset::UTC)
            .format(&Rfc3339)
            .map_err(|e| SyncError::permanent("invalid_time", e.to_string()))?;
        let mut orders = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let variables =
                json!({"first": 100, "after": after, "query": format!("updated_at:>'{since}'")});
            let data = self.graphql(ORDERS, variables, 101.0).await?;
            let page = &data["orders"];
            for node in page["nodes"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let id = node["legacyResourceId"]
                    .as_str()
                    .and_then(|id| ExternalOrderId::parse(id).ok());
                let updated_at = node["updatedAt"]
                    .as_str()
                    .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
                if let (Some(id), Some(updated_at)) = (id, updated_at) {
                    orders.push(ShopOrderRef { id, updated_at });
                }
            }
            if page["pageInfo"]["hasNextPage"] != true {
                return Ok(orders);
            }
            after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
        }
    }

    async fn order_body(&self, id: &ExternalOrderId) -> Result<String, SyncError> {
        // The REST order resource is the exact shape of the order webhooks.
        let url = self
            .endpoint
            .replace("graphql.json", &format!("orders/{id}.json"));
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
        if !status.is_success() {
            return Err(SyncError::dependency_down(
                "channel_unavailable",
                format!("Shopify answered HTTP {} for order {id}", status.as_u16()),
            ));
        }
        let body: Value = response.json().await.map_err(|e| {
            SyncError::retryable("channel_unexpected", format!("order {id} is not JSON: {e}"))
        })?;
        Ok(body["order"].to_string())
    }
}

const VARIANTS: &str = "query Variants($first: Int!, $after: String) {
  products(first: $first, after: $after) {
    nodes { id variants(first: 100) { nodes { id sku price } } }
    pageInfo { hasNextPage endCursor }
  }
}";

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
        let mut variants = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let data = self
                .graphql(
                    VARIANTS,
                    json!({"first": 50, "after": after}),
                    1.0 + 50.0 + 100.0,
                )
                .await?;
            let page = &data["products"];
            for product in page["nodes"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let product_id = product["id"].as_str().unwrap_or_default();
                for variant in product["variants"]["nodes"]
                    .as_array()
                    .map(Vec::as_slice)
                    .unwrap_or_default()
                {
                    let sku = variant["sku"].as_str().and_then(|s| Sku::parse(s).ok());
                    let price = variant["price"]
                        .as_str()
                        .and_then(|p| p.parse::<rust_decimal::Decimal>().ok());
                    if let (Some(sku), Some(price)) = (sku, price) {
                        variants.push(ChannelVariant {
                            product_id: product_id.to_owned(),
                            variant_id: variant["id"].as_str().unwrap_or_default().to_owned(),
                            sku,
                            price,
                        });
                    }
                }
            }
            if page["pageInfo"]["hasNextPage"] != true {
                return Ok(variants);
            }
            after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
        }
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
                "channel_rejected",
                format!(
                    "Shopify refused the prices of {product_id}: {}",
                    error["message"].as_str().unwrap_or("(no message)")
                ),
            )),
        }
    }
}

const FULFILMENT: &str = "query Fulfilment($id: ID!) {
  order(id: $id) {
    displayFulfillmentStatus
    fulfillmentOrders(first: 5) {
      nodes { id status lineItems(first: 50) { nodes { id sku remainingQuantity lineItem { sku } } } }
    }
    fulfillments(first: 20) { trackingInfo(first: 3) { number } }
  }
}";

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
    async fn fulfilment(&self, order_id: &str) -> Result<Option<ShopFulfilment>, SyncError> {
        let data = self
            .graphql(
                FULFILMENT,
                json!({"id": format!("gid://shopify/Order/{order_id}")}),
                // Shopify's estimate multiplies nested connections' sizes.
                1.0 + 5.0 + 5.0 * 50.0 + 20.0 + 20.0 * 3.0,
            )
            .await?;
        let order = &data["order"];
        if order.is_null() {
            return Ok(None);
        }
        let mut lines = Vec::new();
        for fulfilment_order in order["fulfillmentOrders"]["nodes"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            let Some(fulfilment_order_id) = fulfilment_order["id"].as_str() else {
                continue;
            };
            for line in fulfilment_order["lineItems"]["nodes"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
            {
                let sku = line["sku"]
                    .as_str()
                    .or_else(|| line["lineItem"]["sku"].as_str())
                    .and_then(|s| Sku::parse(s).ok());
                lines.push(OpenLine {
                    fulfilment_order: fulfilment_order_id.to_owned(),
                    line_item: line["id"].as_str().unwrap_or_default().to_owned(),
                    sku,
                    remaining: line["remainingQuantity"]
                        .as_u64()
                        .and_then(|q| u32::try_from(q).ok())
                        .unwrap_or(0),
                });
            }
        }
        let tracking_numbers = order["fulfillments"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .flat_map(|f| f["trackingInfo"].as_array().cloned().unwrap_or_default())
            .filter_map(|t| t["number"].as_str().map(str::to_owned))
            .collect();
        Ok(Some(ShopFulfilment {
            lines,
            tracking_numbers,
            status: order["displayFulfillmentStatus"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        }))
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
