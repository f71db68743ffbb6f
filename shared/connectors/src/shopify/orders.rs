//! Orders: the pages of those updated since a time (GraphQL), and one order's body as the
//! order webhooks carry it (REST).

use std::time::Duration;

use async_trait::async_trait;
use erpsync_core::SyncError;
use erpsync_core::model::ids::ExternalOrderId;
use erpsync_core::runtime::answers::Answer;
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::ShopifyAdmin;
use crate::http::retry_after;
use erpsync_core::ports::{ChannelOrders, OrderPage, ShopOrderRef};

/// 2 + 100 x 1 = 102 points.
/// Orders updated after a time, oldest update first (`sortKey: UPDATED_AT`; the default, ID,
/// would not let a run that stops early resume where it was). 100 a page: 102 points.
pub(super) const ORDERS: &str = "query Orders($first: Int!, $after: String, $query: String) {
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
