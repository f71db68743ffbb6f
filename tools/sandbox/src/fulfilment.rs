//! Fulfilment as the Admin GraphQL API documents it: each order gets a fulfilment order
//! whose line items say what remains to ship; `fulfillmentCreate` ships quantities of them
//! (a partial dispatch ships part) with tracking info; `fulfillmentEventCreate` adds
//! delivery progress to a fulfilment. The order's `displayFulfillmentStatus` follows.

use async_graphql::{ComplexObject, Context, InputObject, SimpleObject};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::shopify::{OrderNode, PageInfo, Store, lock, page};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FulfillmentOrder {
    pub id: String,
    pub order_id: u64,
    pub line_items: Vec<FulfillmentOrderLine>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FulfillmentOrderLine {
    pub id: String,
    pub line_item_id: u64,
    pub sku: Option<String>,
    pub total_quantity: u32,
    pub remaining_quantity: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fulfillment {
    pub id: String,
    pub order_id: u64,
    pub tracking: Vec<TrackingInfo>,
    /// (fulfilment-order line item id, quantity)
    pub line_items: Vec<(String, u32)>,
    pub events: Vec<FulfillmentEventRecord>,
}

#[derive(Debug, Clone, Serialize, Deserialize, SimpleObject)]
pub struct TrackingInfo {
    pub company: Option<String>,
    pub number: Option<String>,
    pub url: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, SimpleObject)]
#[graphql(name = "FulfillmentEvent")]
pub struct FulfillmentEventRecord {
    pub id: String,
    pub status: String,
    pub message: Option<String>,
    pub happened_at: Option<String>,
}

/// The documented FulfillmentEventStatus values.
const EVENT_STATUSES: [&str; 11] = [
    "ATTEMPTED_DELIVERY",
    "CARRIER_PICKED_UP",
    "CONFIRMED",
    "DELAYED",
    "DELIVERED",
    "FAILURE",
    "IN_TRANSIT",
    "LABEL_PRINTED",
    "LABEL_PURCHASED",
    "OUT_FOR_DELIVERY",
    "READY_FOR_PICKUP",
];

impl Store {
    /// A placed order gets one fulfilment order covering its shippable lines.
    pub fn open_fulfillment_order(&mut self, order_id: u64, body: &Value) {
        self.fulfillment_orders.retain(|fo| fo.order_id != order_id);
        let lines = body["line_items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|line| line["requires_shipping"].as_bool().unwrap_or(true))
            .filter_map(|line| {
                // A new order ships all it holds now (the documentation's examples carry
                // fulfillable quantities of orders already shipped in part).
                let quantity = line["current_quantity"]
                    .as_u64()
                    .or_else(|| line["quantity"].as_u64())?;
                let quantity = u32::try_from(quantity).ok().filter(|q| *q > 0)?;
                self.next_id += 1;
                Some(FulfillmentOrderLine {
                    id: format!("gid://shopify/FulfillmentOrderLineItem/{}", self.next_id),
                    line_item_id: line["id"].as_u64()?,
                    sku: line["sku"]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned),
                    total_quantity: quantity,
                    remaining_quantity: quantity,
                })
            })
            .collect();
        self.next_id += 1;
        self.fulfillment_orders.push(FulfillmentOrder {
            id: format!("gid://shopify/FulfillmentOrder/{}", self.next_id),
            order_id,
            line_items: lines,
        });
    }

    /// `UNFULFILLED`, `PARTIALLY_FULFILLED` or `FULFILLED`, from what remains.
    pub fn display_fulfillment_status(&self, order_id: u64) -> &'static str {
        let lines: Vec<&FulfillmentOrderLine> = self
            .fulfillment_orders
            .iter()
            .filter(|fo| fo.order_id == order_id)
            .flat_map(|fo| &fo.line_items)
            .collect();
        let total: u32 = lines.iter().map(|l| l.total_quantity).sum();
        let remaining: u32 = lines.iter().map(|l| l.remaining_quantity).sum();
        match (remaining, total) {
            (0, t) if t > 0 => "FULFILLED",
            (r, t) if r < t => "PARTIALLY_FULFILLED",
            _ => "UNFULFILLED",
        }
    }

    pub fn fulfillments_of(&self, order_id: u64) -> Vec<Fulfillment> {
        self.fulfillments
            .iter()
            .filter(|f| f.order_id == order_id)
            .cloned()
            .collect()
    }
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "LineItem")]
struct LineItemRef {
    id: String,
    sku: Option<String>,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "FulfillmentOrderLineItem")]
struct FulfillmentOrderLineNode {
    id: String,
    sku: Option<String>,
    total_quantity: i32,
    remaining_quantity: i32,
    line_item: LineItemRef,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "FulfillmentOrderLineItemConnection")]
struct FulfillmentOrderLineConnection {
    nodes: Vec<FulfillmentOrderLineNode>,
    page_info: PageInfo,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "FulfillmentOrder", complex)]
pub struct FulfillmentOrderNode {
    id: String,
    status: String,
    #[graphql(skip)]
    lines: Vec<FulfillmentOrderLineNode>,
}

impl FulfillmentOrderNode {
    fn of(fo: &FulfillmentOrder) -> Self {
        FulfillmentOrderNode {
            id: fo.id.clone(),
            status: if fo.line_items.iter().all(|l| l.remaining_quantity == 0) {
                "CLOSED".to_owned()
            } else if fo
                .line_items
                .iter()
                .any(|l| l.remaining_quantity < l.total_quantity)
            {
                "IN_PROGRESS".to_owned()
            } else {
                "OPEN".to_owned()
            },
            lines: fo
                .line_items
                .iter()
                .map(|l| FulfillmentOrderLineNode {
                    id: l.id.clone(),
                    sku: l.sku.clone(),
                    total_quantity: i32::try_from(l.total_quantity).unwrap_or(i32::MAX),
                    remaining_quantity: i32::try_from(l.remaining_quantity).unwrap_or(i32::MAX),
                    line_item: LineItemRef {
                        id: format!("gid://shopify/LineItem/{}", l.line_item_id),
                        sku: l.sku.clone(),
                    },
                })
                .collect(),
        }
    }
}

/// `fulfillmentOrder(id:)`.
pub fn fulfillment_order(store: &Store, id: &str) -> Option<FulfillmentOrderNode> {
    store
        .fulfillment_orders
        .iter()
        .find(|fo| fo.id == id)
        .map(FulfillmentOrderNode::of)
}

#[ComplexObject]
impl FulfillmentOrderNode {
    /// The fulfilments that shipped lines of this fulfilment order (a connection, unlike the
    /// order's `fulfillments` list).
    async fn fulfillments(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<FulfillmentConnection> {
        let store = lock(ctx)?;
        let fulfillments: Vec<FulfillmentNode> = store
            .fulfillments
            .iter()
            .filter(|f| {
                f.line_items
                    .iter()
                    .any(|(line, _)| self.lines.iter().any(|l| l.id == *line))
            })
            .map(FulfillmentNode::from)
            .collect();
        let (nodes, page_info) = page(ctx, &fulfillments, first, after.as_deref())?;
        Ok(FulfillmentConnection { nodes, page_info })
    }

    async fn line_items(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<FulfillmentOrderLineConnection> {
        let (nodes, page_info) = page(ctx, &self.lines, first, after.as_deref())?;
        Ok(FulfillmentOrderLineConnection { nodes, page_info })
    }
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "FulfillmentOrderConnection")]
struct FulfillmentOrderConnection {
    nodes: Vec<FulfillmentOrderNode>,
    page_info: PageInfo,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "FulfillmentConnection")]
struct FulfillmentConnection {
    nodes: Vec<FulfillmentNode>,
    page_info: PageInfo,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "FulfillmentEventConnection")]
struct FulfillmentEventConnection {
    nodes: Vec<FulfillmentEventRecord>,
    page_info: PageInfo,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "Fulfillment", complex)]
pub struct FulfillmentNode {
    id: String,
    status: String,
    display_status: String,
    #[graphql(skip)]
    tracking: Vec<TrackingInfo>,
    #[graphql(skip)]
    events: Vec<FulfillmentEventRecord>,
}

#[ComplexObject]
impl FulfillmentNode {
    async fn tracking_info(&self, first: Option<i32>) -> Vec<TrackingInfo> {
        let first = first
            .and_then(|f| usize::try_from(f).ok())
            .unwrap_or(usize::MAX);
        self.tracking.iter().take(first).cloned().collect()
    }
    async fn events(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<FulfillmentEventConnection> {
        let (nodes, page_info) = page(ctx, &self.events, first, after.as_deref())?;
        Ok(FulfillmentEventConnection { nodes, page_info })
    }
}

impl From<&Fulfillment> for FulfillmentNode {
    fn from(f: &Fulfillment) -> Self {
        let display_status = f
            .events
            .last()
            .map(|e| e.status.clone())
            .unwrap_or_else(|| "FULFILLED".to_owned());
        Self {
            id: f.id.clone(),
            status: "SUCCESS".to_owned(),
            display_status,
            tracking: f.tracking.clone(),
            events: f.events.clone(),
        }
    }
}

#[ComplexObject]
impl OrderNode {
    async fn display_fulfillment_status(&self, ctx: &Context<'_>) -> async_graphql::Result<String> {
        let store = lock(ctx)?;
        Ok(store.display_fulfillment_status(self.order_id()).to_owned())
    }

    async fn fulfillment_orders(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<FulfillmentOrderConnection> {
        let store = lock(ctx)?;
        let orders: Vec<FulfillmentOrderNode> = store
            .fulfillment_orders
            .iter()
            .filter(|fo| fo.order_id == self.order_id())
            .map(FulfillmentOrderNode::of)
            .collect();
        let (nodes, page_info) = page(ctx, &orders, first, after.as_deref())?;
        Ok(FulfillmentOrderConnection { nodes, page_info })
    }

    async fn fulfillments(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
    ) -> async_graphql::Result<Vec<FulfillmentNode>> {
        let store = lock(ctx)?;
        let first = first
            .and_then(|f| usize::try_from(f).ok())
            .unwrap_or(usize::MAX);
        Ok(store
            .fulfillments_of(self.order_id())
            .iter()
            .take(first)
            .map(FulfillmentNode::from)
            .collect())
    }
}

#[derive(InputObject)]
pub struct FulfillmentOrderLineItemInput {
    id: String,
    quantity: i32,
}

#[derive(InputObject)]
pub struct FulfillmentOrderLineItemsInput {
    fulfillment_order_id: String,
    fulfillment_order_line_items: Option<Vec<FulfillmentOrderLineItemInput>>,
}

#[derive(InputObject)]
pub struct FulfillmentTrackingInput {
    company: Option<String>,
    number: Option<String>,
    url: Option<String>,
}

#[derive(InputObject)]
#[graphql(name = "FulfillmentInput")]
pub struct FulfillmentInput {
    line_items_by_fulfillment_order: Vec<FulfillmentOrderLineItemsInput>,
    tracking_info: Option<FulfillmentTrackingInput>,
    notify_customer: Option<bool>,
}

#[derive(SimpleObject, Clone)]
pub struct UserError {
    field: Vec<String>,
    message: String,
}

#[derive(SimpleObject)]
pub struct FulfillmentCreatePayload {
    fulfillment: Option<FulfillmentNode>,
    user_errors: Vec<UserError>,
}

#[derive(InputObject)]
pub struct FulfillmentEventInput {
    fulfillment_id: String,
    status: String,
    message: Option<String>,
    happened_at: Option<String>,
}

#[derive(SimpleObject)]
pub struct FulfillmentEventCreatePayload {
    fulfillment_event: Option<FulfillmentEventRecord>,
    user_errors: Vec<UserError>,
}

fn refused(field: &[&str], message: impl Into<String>) -> UserError {
    UserError {
        field: field.iter().map(|f| (*f).to_owned()).collect(),
        message: message.into(),
    }
}

/// `fulfillmentCreate`: all or nothing; quantities above what remains are refused.
pub fn create(store: &mut Store, input: FulfillmentInput) -> FulfillmentCreatePayload {
    let mut errors = Vec::new();
    let mut shipped: Vec<(usize, usize, u32)> = Vec::new();
    let mut order_id = None;
    for (g, group) in input.line_items_by_fulfillment_order.iter().enumerate() {
        let Some(fo_index) = store
            .fulfillment_orders
            .iter()
            .position(|fo| fo.id == group.fulfillment_order_id)
        else {
            errors.push(refused(
                &["fulfillment", "lineItemsByFulfillmentOrder", &g.to_string()],
                "Fulfillment order does not exist.",
            ));
            continue;
        };
        let fo = &store.fulfillment_orders[fo_index];
        if order_id.is_some_and(|id| id != fo.order_id) {
            errors.push(refused(
                &["fulfillment"],
                "All fulfillment orders must belong to the same order.",
            ));
        }
        order_id = Some(fo.order_id);
        match &group.fulfillment_order_line_items {
            // Without line items the whole fulfilment order ships.
            None => {
                for (l, line) in fo.line_items.iter().enumerate() {
                    if line.remaining_quantity > 0 {
                        shipped.push((fo_index, l, line.remaining_quantity));
                    }
                }
            }
            Some(items) => {
                for item in items {
                    let Some(l) = fo.line_items.iter().position(|line| line.id == item.id) else {
                        errors.push(refused(
                            &["fulfillment", "lineItemsByFulfillmentOrder"],
                            format!("Fulfillment order line item {} does not exist.", item.id),
                        ));
                        continue;
                    };
                    let quantity = u32::try_from(item.quantity).unwrap_or(0);
                    if quantity == 0 || quantity > fo.line_items[l].remaining_quantity {
                        errors.push(refused(
                            &["fulfillment", "lineItemsByFulfillmentOrder"],
                            format!(
                                "Invalid fulfillment order line item quantity requested: {} of {} remaining.",
                                item.quantity, fo.line_items[l].remaining_quantity
                            ),
                        ));
                        continue;
                    }
                    shipped.push((fo_index, l, quantity));
                }
            }
        }
    }
    let Some(order_id) = order_id.filter(|_| errors.is_empty() && !shipped.is_empty()) else {
        if errors.is_empty() {
            errors.push(refused(&["fulfillment"], "Nothing to fulfill."));
        }
        return FulfillmentCreatePayload {
            fulfillment: None,
            user_errors: errors,
        };
    };
    let mut line_items = Vec::new();
    for (fo_index, l, quantity) in shipped {
        let line = &mut store.fulfillment_orders[fo_index].line_items[l];
        line.remaining_quantity -= quantity;
        line_items.push((line.id.clone(), quantity));
    }
    store.next_id += 1;
    let fulfillment = Fulfillment {
        id: format!("gid://shopify/Fulfillment/{}", store.next_id),
        order_id,
        tracking: input
            .tracking_info
            .map(|t| TrackingInfo {
                company: t.company,
                number: t.number,
                url: t.url,
            })
            .into_iter()
            .collect(),
        line_items,
        events: Vec::new(),
    };
    let node = FulfillmentNode::from(&fulfillment);
    store.fulfillments.push(fulfillment);
    FulfillmentCreatePayload {
        fulfillment: Some(node),
        user_errors: Vec::new(),
    }
}

/// `fulfillmentEventCreate`.
pub fn add_event(store: &mut Store, input: FulfillmentEventInput) -> FulfillmentEventCreatePayload {
    let refuse = |error: UserError| FulfillmentEventCreatePayload {
        fulfillment_event: None,
        user_errors: vec![error],
    };
    if !EVENT_STATUSES.contains(&input.status.as_str()) {
        return refuse(refused(
            &["fulfillmentEvent", "status"],
            format!("{} is not a FulfillmentEventStatus.", input.status),
        ));
    }
    store.next_id += 1;
    let id = format!("gid://shopify/FulfillmentEvent/{}", store.next_id);
    let Some(fulfillment) = store
        .fulfillments
        .iter_mut()
        .find(|f| f.id == input.fulfillment_id)
    else {
        return refuse(refused(
            &["fulfillmentEvent", "fulfillmentId"],
            "Fulfillment does not exist.",
        ));
    };
    let event = FulfillmentEventRecord {
        id,
        status: input.status,
        message: input.message,
        happened_at: input.happened_at,
    };
    fulfillment.events.push(event.clone());
    FulfillmentEventCreatePayload {
        fulfillment_event: Some(event),
        user_errors: Vec::new(),
    }
}
