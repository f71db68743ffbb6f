//! Fulfilment: whether the store answers, an order's open lines and tracking numbers, a
//! fulfilment made with its tracking, and its events.

use async_trait::async_trait;
use erpsync_core::SyncError;
use erpsync_core::model::ids::Sku;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;

use super::ShopifyAdmin;
use super::transport::{next_page, nodes};
use erpsync_core::ports::{
    ChannelFulfilment, FulfilLine, FulfilmentEvent, OpenLine, ShopFulfilment, Tracking,
};

/// One order's fulfilment orders, a page of 5, each with up to 50 lines and 10 fulfilments
/// (more of either page with the two queries below). A fulfilment's tracking numbers are
/// listed up to 5: erpsync gives each of its fulfilments one.
/// One fulfilment order: 1 + (2 + 50 x (1 + 1)) + (2 + 10 x (1 + 5 x 1)) = 1 + 102 + 62 = 165;
/// the query: 1 (order) + 2 + 5 x 165 = 828 points.
pub(super) const FULFILMENT: &str = "query Fulfilment($id: ID!, $after: String) {
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
pub(super) const SHOP_ID: &str = "query ShopId { shop { id } }";
pub(super) const SHOP_ID_COST: f64 = 1.0;

pub(super) const FULFILMENT_COST: f64 = 828.0;

/// The rest of one fulfilment order's lines: 1 + 2 + 100 x (1 + 1) = 203 points.
pub(super) const FULFILMENT_LINES: &str = "query Lines($id: ID!, $after: String) {
  fulfillmentOrder(id: $id) {
    lineItems(first: 100, after: $after) {
      nodes { id sku remainingQuantity lineItem { sku } }
      pageInfo { hasNextPage endCursor }
    }
  }
}";
pub(super) const FULFILMENT_LINES_COST: f64 = 203.0;

/// The rest of one fulfilment order's fulfilments: 1 + 2 + 50 x (1 + 5 x 1) = 303 points.
pub(super) const FULFILMENTS_MADE: &str = "query Made($id: ID!, $after: String) {
  fulfillmentOrder(id: $id) {
    fulfillments(first: 50, after: $after) {
      nodes { trackingInfo(first: 5) { number } }
      pageInfo { hasNextPage endCursor }
    }
  }
}";
pub(super) const FULFILMENTS_MADE_COST: f64 = 303.0;

/// Mutations: 10 points each.
pub(super) const FULFIL: &str = "mutation Fulfil($fulfillment: FulfillmentInput!) {
  fulfillmentCreate(fulfillment: $fulfillment) {
    fulfillment { id status }
    userErrors { field message }
  }
}";

pub(super) const EVENT: &str = "mutation Event($event: FulfillmentEventInput!) {
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
