//! A Shopify store's Admin GraphQL API, as documented: products and variants, inventory
//! items and locations, `inventorySetQuantities` (250-item cap, `changeFromQuantity`
//! compare-and-set, `@idempotent(key:)`), `productVariantsBulkUpdate`, and the `orders`
//! query, behind the cost-based leaky bucket (`extensions.cost.throttleStatus`, THROTTLED).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_graphql::{
    Context, CustomDirective, Directive, EmptySubscription, Enum, InputObject, Object, Schema,
    SimpleObject,
};
use serde::{Deserialize, Serialize};

/// The most items one mutation takes: Shopify caps input arrays ("Shopify API limits").
pub const MAX_INPUT_ITEMS: usize = 250;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    pub title: String,
    pub variants: Vec<Variant>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Variant {
    pub id: String,
    pub sku: String,
    pub price: String,
    pub compare_at_price: Option<String>,
    pub inventory_item_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Location {
    pub id: String,
    pub name: String,
}

/// An order as the sandbox keeps it: the REST resource the webhooks carry, plus its id and
/// update time for the `orders` query.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredOrder {
    pub id: u64,
    pub name: String,
    pub updated_at: String,
    pub body: serde_json::Value,
}

/// One store's data.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Store {
    pub products: Vec<Product>,
    pub locations: Vec<Location>,
    /// (inventory item id, location id) -> available.
    #[serde(skip)]
    pub available: HashMap<(String, String), i64>,
    pub orders: Vec<StoredOrder>,
    /// Inventory mutations applied (not replays, not refused): what tests count.
    #[serde(skip)]
    pub inventory_mutations: u64,
    #[serde(skip)]
    pub idempotency: HashMap<String, serde_json::Value>,
    pub fulfillment_orders: Vec<crate::fulfilment::FulfillmentOrder>,
    pub fulfillments: Vec<crate::fulfilment::Fulfillment>,
    /// The last id handed out to a fulfilment object.
    pub next_id: u64,
    #[serde(skip)]
    pub bulk: crate::bulk::BulkState,
}

impl Store {
    pub fn variant_by_sku(&self, sku: &str) -> Option<&Variant> {
        self.products
            .iter()
            .flat_map(|p| &p.variants)
            .find(|v| v.sku == sku)
    }
}

pub type SharedStore = Arc<Mutex<Store>>;

pub type ShopSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

pub fn schema(store: SharedStore) -> ShopSchema {
    Schema::build(QueryRoot, MutationRoot, EmptySubscription)
        .data(store)
        .directive(idempotent)
        .finish()
}

struct IdempotentDirective;

impl CustomDirective for IdempotentDirective {}

/// `@idempotent(key:)` on inventory mutations (API 2026-04 and later). The key is read by the
/// mutation itself; the directive only has to exist for the query to validate.
#[Directive(location = "Field")]
fn idempotent(key: String) -> impl CustomDirective {
    let _ = key;
    IdempotentDirective
}

pub(crate) fn lock<'a>(
    ctx: &Context<'a>,
) -> async_graphql::Result<std::sync::MutexGuard<'a, Store>> {
    ctx.data::<SharedStore>()?
        .lock()
        .map_err(|_| async_graphql::Error::new("store lock poisoned"))
}

#[derive(SimpleObject, Clone)]
pub(crate) struct PageInfo {
    has_next_page: bool,
    end_cursor: Option<String>,
    /// Where the page starts: the cursor of its first edge.
    #[graphql(skip)]
    start: usize,
}

/// `edges { cursor node }` beside `nodes`: Shopify's connections answer both.
macro_rules! edges {
    ($connection:ident, $edge:ident, $node:ty, $name:literal) => {
        #[derive(SimpleObject, Clone)]
        #[graphql(name = $name)]
        struct $edge {
            cursor: String,
            node: $node,
        }

        #[async_graphql::ComplexObject]
        impl $connection {
            async fn edges(&self) -> Vec<$edge> {
                self.nodes
                    .iter()
                    .enumerate()
                    .map(|(i, node)| $edge {
                        cursor: (self.page_info.start + i).to_string(),
                        node: node.clone(),
                    })
                    .collect()
            }
        }
    };
}

/// Cursor paging over a list the way Shopify's connections page: `first` and `after`; a
/// bulk operation reads whole connections without `first`.
pub(crate) fn page<T: Clone>(
    ctx: &Context<'_>,
    items: &[T],
    first: Option<i32>,
    after: Option<&str>,
) -> async_graphql::Result<(Vec<T>, PageInfo)> {
    let first = match first {
        Some(first) if (1..=250).contains(&first) => first as usize,
        Some(_) => return Err(async_graphql::Error::new("first must be between 1 and 250")),
        None if ctx.data_opt::<crate::bulk::BulkMode>().is_some() => usize::MAX,
        None => {
            return Err(async_graphql::Error::new(
                "you must provide one of first or last",
            ));
        }
    };
    let start = match after {
        Some(cursor) => {
            cursor
                .parse::<usize>()
                .map_err(|_| async_graphql::Error::new("invalid cursor"))?
                + 1
        }
        None => 0,
    };
    let end = start.saturating_add(first).min(items.len());
    let slice = items.get(start..end).map(<[T]>::to_vec).unwrap_or_default();
    Ok((
        slice,
        PageInfo {
            has_next_page: end < items.len(),
            end_cursor: (end > start).then(|| (end - 1).to_string()),
            start,
        },
    ))
}

#[derive(SimpleObject, Clone)]
struct InventoryItemRef {
    id: String,
}

#[derive(Clone)]
struct VariantNode(Variant);

#[Object(name = "ProductVariant")]
impl VariantNode {
    async fn id(&self) -> &str {
        &self.0.id
    }
    async fn sku(&self) -> &str {
        &self.0.sku
    }
    async fn price(&self) -> &str {
        &self.0.price
    }
    async fn compare_at_price(&self) -> Option<&str> {
        self.0.compare_at_price.as_deref()
    }
    async fn inventory_item(&self) -> InventoryItemRef {
        InventoryItemRef {
            id: self.0.inventory_item_id.clone(),
        }
    }
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "ProductVariantConnection", complex)]
struct VariantConnection {
    nodes: Vec<VariantNode>,
    page_info: PageInfo,
}

edges!(
    VariantConnection,
    VariantEdge,
    VariantNode,
    "ProductVariantEdge"
);

#[derive(Clone)]
struct ProductNode(Product);

#[Object(name = "Product")]
impl ProductNode {
    async fn id(&self) -> &str {
        &self.0.id
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn variants(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<VariantConnection> {
        let variants: Vec<VariantNode> = self.0.variants.iter().cloned().map(VariantNode).collect();
        let (nodes, page_info) = page(ctx, &variants, first, after.as_deref())?;
        Ok(VariantConnection { nodes, page_info })
    }
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "ProductConnection", complex)]
struct ProductConnection {
    nodes: Vec<ProductNode>,
    page_info: PageInfo,
}

edges!(ProductConnection, ProductEdge, ProductNode, "ProductEdge");

#[derive(SimpleObject, Clone)]
#[graphql(name = "Location")]
struct LocationNode {
    id: String,
    name: String,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "LocationConnection", complex)]
struct LocationConnection {
    nodes: Vec<LocationNode>,
    page_info: PageInfo,
}

edges!(
    LocationConnection,
    LocationEdge,
    LocationNode,
    "LocationEdge"
);

#[derive(SimpleObject, Clone)]
#[graphql(name = "InventoryQuantity")]
struct QuantityNode {
    name: String,
    quantity: i64,
}

#[derive(Clone)]
struct LevelNode {
    location: LocationNode,
    available: i64,
}

#[Object(name = "InventoryLevel")]
impl LevelNode {
    async fn location(&self) -> &LocationNode {
        &self.location
    }
    /// The named quantities; the sandbox keeps `available` (others read as 0).
    async fn quantities(&self, names: Vec<String>) -> Vec<QuantityNode> {
        names
            .into_iter()
            .map(|name| QuantityNode {
                quantity: if name == "available" {
                    self.available
                } else {
                    0
                },
                name,
            })
            .collect()
    }
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "InventoryLevelConnection", complex)]
struct LevelConnection {
    nodes: Vec<LevelNode>,
    page_info: PageInfo,
}

edges!(LevelConnection, LevelEdge, LevelNode, "InventoryLevelEdge");

#[derive(Clone)]
struct InventoryItemNode {
    id: String,
    sku: String,
}

#[Object(name = "InventoryItem")]
impl InventoryItemNode {
    async fn id(&self) -> &str {
        &self.id
    }
    async fn sku(&self) -> &str {
        &self.sku
    }
    /// The item's levels at the locations that stock it.
    async fn inventory_levels(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<LevelConnection> {
        let store = lock(ctx)?;
        let levels: Vec<LevelNode> = store
            .locations
            .iter()
            .filter_map(|location| {
                let available = *store
                    .available
                    .get(&(self.id.clone(), location.id.clone()))?;
                Some(LevelNode {
                    location: LocationNode {
                        id: location.id.clone(),
                        name: location.name.clone(),
                    },
                    available,
                })
            })
            .collect();
        let (nodes, page_info) = page(ctx, &levels, first, after.as_deref())?;
        Ok(LevelConnection { nodes, page_info })
    }
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "InventoryItemConnection", complex)]
struct InventoryItemConnection {
    nodes: Vec<InventoryItemNode>,
    page_info: PageInfo,
}

edges!(
    InventoryItemConnection,
    InventoryItemEdge,
    InventoryItemNode,
    "InventoryItemEdge"
);

#[derive(SimpleObject, Clone)]
#[graphql(name = "Order", complex)]
pub(crate) struct OrderNode {
    id: String,
    legacy_resource_id: String,
    name: String,
    updated_at: String,
}

impl OrderNode {
    fn of(order: &StoredOrder) -> Self {
        Self {
            id: format!("gid://shopify/Order/{}", order.id),
            legacy_resource_id: order.id.to_string(),
            name: order.name.clone(),
            updated_at: order.updated_at.clone(),
        }
    }

    pub(crate) fn order_id(&self) -> u64 {
        self.legacy_resource_id.parse().unwrap_or_default()
    }
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "OrderConnection", complex)]
struct OrderConnection {
    nodes: Vec<OrderNode>,
    page_info: PageInfo,
}

edges!(OrderConnection, OrderEdge, OrderNode, "OrderEdge");

/// `Shop`: the fields erpsync reads.
#[derive(SimpleObject)]
#[graphql(name = "Shop")]
pub struct ShopNode {
    id: async_graphql::ID,
}

pub struct QueryRoot;

#[Object]
impl QueryRoot {
    async fn products(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<ProductConnection> {
        let store = lock(ctx)?;
        let products: Vec<ProductNode> = store.products.iter().cloned().map(ProductNode).collect();
        let (nodes, page_info) = page(ctx, &products, first, after.as_deref())?;
        Ok(ProductConnection { nodes, page_info })
    }

    async fn locations(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<LocationConnection> {
        let store = lock(ctx)?;
        let locations: Vec<LocationNode> = store
            .locations
            .iter()
            .map(|l| LocationNode {
                id: l.id.clone(),
                name: l.name.clone(),
            })
            .collect();
        let (nodes, page_info) = page(ctx, &locations, first, after.as_deref())?;
        Ok(LocationConnection { nodes, page_info })
    }

    /// `query` takes Shopify's search syntax for the filter stock-sync uses:
    /// `sku:'A' OR sku:'B'` (exact SKUs here; Shopify's match is looser).
    async fn inventory_items(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        query: Option<String>,
    ) -> async_graphql::Result<InventoryItemConnection> {
        let skus = query.as_deref().map(sku_terms).transpose()?;
        let store = lock(ctx)?;
        let items: Vec<InventoryItemNode> = store
            .products
            .iter()
            .flat_map(|p| &p.variants)
            .filter(|v| skus.as_ref().is_none_or(|skus| skus.contains(&v.sku)))
            .map(|v| InventoryItemNode {
                id: v.inventory_item_id.clone(),
                sku: v.sku.clone(),
            })
            .collect();
        let (nodes, page_info) = page(ctx, &items, first, after.as_deref())?;
        Ok(InventoryItemConnection { nodes, page_info })
    }

    /// One inventory item by its GraphQL id.
    async fn inventory_item(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<Option<InventoryItemNode>> {
        let store = lock(ctx)?;
        Ok(store
            .products
            .iter()
            .flat_map(|p| &p.variants)
            .find(|v| v.inventory_item_id == id)
            .map(|v| InventoryItemNode {
                id: v.inventory_item_id.clone(),
                sku: v.sku.clone(),
            }))
    }

    async fn fulfillment_order(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<Option<crate::fulfilment::FulfillmentOrderNode>> {
        let store = lock(ctx)?;
        Ok(crate::fulfilment::fulfillment_order(&store, &id))
    }

    async fn bulk_operation(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<Option<crate::bulk::BulkOperationNode>> {
        crate::bulk::by_id(ctx, &id)
    }

    /// The app's most recent bulk query (`type` QUERY, the default, is all the sandbox runs).
    async fn current_bulk_operation(
        &self,
        ctx: &Context<'_>,
        #[graphql(name = "type")] kind: Option<String>,
    ) -> async_graphql::Result<Option<crate::bulk::BulkOperationNode>> {
        let _ = kind;
        crate::bulk::current(ctx)
    }

    /// The store the token belongs to (shopify.dev/docs/api/admin-graphql/latest/queries/shop:
    /// "the Shop resource corresponding to the access token used in the request"; no access
    /// scope needed). The sandbox's stores have one shop each.
    async fn shop(&self) -> ShopNode {
        ShopNode {
            id: async_graphql::ID::from("gid://shopify/Shop/1"),
        }
    }

    /// One order by its GraphQL id (`gid://shopify/Order/N`).
    async fn order(
        &self,
        ctx: &Context<'_>,
        id: String,
    ) -> async_graphql::Result<Option<OrderNode>> {
        let store = lock(ctx)?;
        Ok(store
            .orders
            .iter()
            .find(|o| format!("gid://shopify/Order/{}", o.id) == id)
            .map(OrderNode::of))
    }

    /// Orders in `sortKey` order (Shopify's default is ID; UPDATED_AT is modelled too).
    /// `query` takes Shopify's search syntax for the one filter reconciliation needs:
    /// `updated_at:>'2026-11-29T10:00:00Z'` (also `>=`).
    async fn orders(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        query: Option<String>,
        #[graphql(default_with = "OrderSortKeys::Id")] sort_key: OrderSortKeys,
        #[graphql(default)] reverse: bool,
    ) -> async_graphql::Result<OrderConnection> {
        let store = lock(ctx)?;
        let since = query.as_deref().and_then(updated_since);
        let since = match since {
            Some((at, inclusive)) => Some((
                updated_instant(&at).ok_or_else(|| {
                    async_graphql::Error::new(format!("updated_at {at:?} is not a time"))
                })?,
                inclusive,
            )),
            None => None,
        };
        // Compared as times: orders carry their shop's offset, the filter is UTC.
        let mut orders: Vec<&StoredOrder> = store
            .orders
            .iter()
            .filter(|o| {
                since.as_ref().is_none_or(|(at, inclusive)| {
                    let updated = updated_instant(&o.updated_at);
                    if *inclusive {
                        updated >= Some(*at)
                    } else {
                        updated > Some(*at)
                    }
                })
            })
            .collect();
        match sort_key {
            OrderSortKeys::Id => orders.sort_by_key(|o| o.id),
            // Ties (one second) in id order, so pages never skip or repeat an order.
            OrderSortKeys::UpdatedAt => orders.sort_by(|a, b| {
                updated_instant(&a.updated_at)
                    .cmp(&updated_instant(&b.updated_at))
                    .then(a.id.cmp(&b.id))
            }),
        }
        if reverse {
            orders.reverse();
        }
        let nodes: Vec<OrderNode> = orders.iter().map(|o| OrderNode::of(o)).collect();
        let (nodes, page_info) = page(ctx, &nodes, first, after.as_deref())?;
        Ok(OrderConnection { nodes, page_info })
    }
}

/// `OrderSortKeys` (shopify.dev/docs/api/admin-graphql/latest/enums/OrderSortKeys): the two
/// keys the sandbox models; a query using another is refused as an unknown value.
#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(name = "OrderSortKeys")]
enum OrderSortKeys {
    #[graphql(name = "ID")]
    Id,
    #[graphql(name = "UPDATED_AT")]
    UpdatedAt,
}

/// An `updated_at` as an instant (orders carry their shop's offset: `-05:00`), so they sort
/// as times; unreadable ones first.
fn updated_instant(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

/// `sku:'A' OR sku:B` -> the SKUs; any other filter is refused rather than ignored.
fn sku_terms(query: &str) -> async_graphql::Result<Vec<String>> {
    query
        .split(" OR ")
        .map(|term| {
            term.trim()
                .strip_prefix("sku:")
                .map(|sku| {
                    sku.trim_matches(|c| c == '\'' || c == '"')
                        .replace("\\'", "'")
                })
                .ok_or_else(|| {
                    async_graphql::Error::new(format!(
                        "the sandbox filters inventory items by sku only, not {term:?}"
                    ))
                })
        })
        .collect()
}

/// `updated_at:>'T'` or `updated_at:>=T` -> (T, inclusive).
fn updated_since(query: &str) -> Option<(String, bool)> {
    let rest = query.trim().strip_prefix("updated_at:")?;
    let (inclusive, value) = match rest.strip_prefix(">=") {
        Some(value) => (true, value),
        None => (false, rest.strip_prefix('>')?),
    };
    Some((
        value
            .trim()
            .trim_matches(|c| c == '\'' || c == '"')
            .to_owned(),
        inclusive,
    ))
}

#[derive(InputObject)]
struct InventoryQuantityInput {
    inventory_item_id: String,
    location_id: String,
    quantity: i64,
    /// Compare-and-set: the quantity the caller believes is there; null opts out.
    change_from_quantity: Option<i64>,
}

#[derive(InputObject)]
struct InventorySetQuantitiesInput {
    name: String,
    reason: String,
    reference_document_uri: Option<String>,
    quantities: Vec<InventoryQuantityInput>,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq)]
#[graphql(name = "InventorySetQuantitiesUserErrorCode")]
enum InventoryErrorCode {
    ChangeFromQuantityStale,
    InvalidInventoryItem,
    InvalidLocation,
    InvalidName,
    InvalidQuantityTooLow,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "InventorySetQuantitiesUserError")]
struct InventoryUserError {
    code: Option<InventoryErrorCode>,
    field: Vec<String>,
    message: String,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "InventoryChange")]
struct InventoryChange {
    name: String,
    delta: i64,
    quantity_after_change: i64,
    item_id: String,
    location_id: String,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "InventoryAdjustmentGroup")]
struct AdjustmentGroup {
    reason: String,
    reference_document_uri: Option<String>,
    changes: Vec<InventoryChange>,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "InventorySetQuantitiesPayload")]
struct InventorySetQuantitiesPayload {
    inventory_adjustment_group: Option<AdjustmentGroup>,
    user_errors: Vec<InventoryUserError>,
}

#[derive(InputObject)]
#[graphql(name = "ProductVariantsBulkInput")]
struct VariantInput {
    id: String,
    price: Option<String>,
    compare_at_price: Option<String>,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "ProductVariantsBulkUpdateUserError")]
struct VariantUserError {
    field: Vec<String>,
    message: String,
}

#[derive(SimpleObject, Clone)]
#[graphql(name = "ProductVariantsBulkUpdatePayload")]
struct VariantsBulkUpdatePayload {
    product_variants: Vec<VariantNode>,
    user_errors: Vec<VariantUserError>,
}

pub struct MutationRoot;

fn user_error(
    code: InventoryErrorCode,
    index: usize,
    field: &str,
    message: String,
) -> InventoryUserError {
    InventoryUserError {
        code: Some(code),
        field: vec![
            "input".to_owned(),
            "quantities".to_owned(),
            index.to_string(),
            field.to_owned(),
        ],
        message,
    }
}

#[Object]
impl MutationRoot {
    /// Sets absolute quantities, all or nothing: any stale `changeFromQuantity` or unknown
    /// item refuses the whole input with user errors. Replays of an `@idempotent` key return
    /// the first answer without applying anything.
    async fn inventory_set_quantities(
        &self,
        ctx: &Context<'_>,
        input: InventorySetQuantitiesInput,
    ) -> async_graphql::Result<InventorySetQuantitiesPayload> {
        if input.quantities.len() > MAX_INPUT_ITEMS {
            return Err(async_graphql::Error::new(format!(
                "The input array size of {} is greater than the maximum allowed of {MAX_INPUT_ITEMS}.",
                input.quantities.len()
            )));
        }
        let key = ctx
            .field()
            .directives()?
            .into_iter()
            .find(|d| d.name.node.as_str() == "idempotent")
            .and_then(|d| {
                d.get_argument("key")
                    .map(|k| k.node.to_string().trim_matches('"').to_owned())
            });
        let mut store = lock(ctx)?;
        if let Some(key) = &key
            && let Some(previous) = store.idempotency.get(key)
        {
            return Ok(payload_from_json(previous));
        }
        let mut errors = Vec::new();
        if input.name != "available" && input.name != "on_hand" {
            errors.push(InventoryUserError {
                code: Some(InventoryErrorCode::InvalidName),
                field: vec!["input".to_owned(), "name".to_owned()],
                message: format!("The quantity name {:?} is not valid.", input.name),
            });
        }
        let known_items: Vec<String> = store
            .products
            .iter()
            .flat_map(|p| &p.variants)
            .map(|v| v.inventory_item_id.clone())
            .collect();
        for (index, item) in input.quantities.iter().enumerate() {
            if !known_items.contains(&item.inventory_item_id) {
                errors.push(user_error(
                    InventoryErrorCode::InvalidInventoryItem,
                    index,
                    "inventoryItemId",
                    "The specified inventory item could not be found.".to_owned(),
                ));
            }
            if !store.locations.iter().any(|l| l.id == item.location_id) {
                errors.push(user_error(
                    InventoryErrorCode::InvalidLocation,
                    index,
                    "locationId",
                    "The specified location could not be found.".to_owned(),
                ));
            }
            if item.quantity < 0 {
                errors.push(user_error(
                    InventoryErrorCode::InvalidQuantityTooLow,
                    index,
                    "quantity",
                    "The quantity can't be negative.".to_owned(),
                ));
            }
            let current = store
                .available
                .get(&(item.inventory_item_id.clone(), item.location_id.clone()))
                .copied()
                .unwrap_or(0);
            if let Some(expected) = item.change_from_quantity
                && expected != current
            {
                errors.push(user_error(
                    InventoryErrorCode::ChangeFromQuantityStale,
                    index,
                    "changeFromQuantity",
                    format!("The compare quantity {expected} does not match the current quantity {current}."),
                ));
            }
        }
        let payload = if errors.is_empty() {
            let mut changes = Vec::with_capacity(input.quantities.len());
            for item in &input.quantities {
                let level = store
                    .available
                    .entry((item.inventory_item_id.clone(), item.location_id.clone()))
                    .or_insert(0);
                let delta = item.quantity - *level;
                *level = item.quantity;
                changes.push(InventoryChange {
                    name: input.name.clone(),
                    delta,
                    quantity_after_change: item.quantity,
                    item_id: item.inventory_item_id.clone(),
                    location_id: item.location_id.clone(),
                });
            }
            store.inventory_mutations += 1;
            InventorySetQuantitiesPayload {
                inventory_adjustment_group: Some(AdjustmentGroup {
                    reason: input.reason,
                    reference_document_uri: input.reference_document_uri,
                    changes,
                }),
                user_errors: Vec::new(),
            }
        } else {
            InventorySetQuantitiesPayload {
                inventory_adjustment_group: None,
                user_errors: errors,
            }
        };
        if let Some(key) = key {
            store.idempotency.insert(key, payload_to_json(&payload));
        }
        Ok(payload)
    }

    /// Starts a bulk query; `groupObjects` only changes line order in Shopify's file.
    async fn bulk_operation_run_query(
        &self,
        ctx: &Context<'_>,
        query: String,
        group_objects: Option<bool>,
    ) -> async_graphql::Result<crate::bulk::RunQueryPayload> {
        let _ = group_objects;
        crate::bulk::run_query(ctx, query)
    }

    async fn fulfillment_create(
        &self,
        ctx: &Context<'_>,
        fulfillment: crate::fulfilment::FulfillmentInput,
        message: Option<String>,
    ) -> async_graphql::Result<crate::fulfilment::FulfillmentCreatePayload> {
        let _ = message;
        let mut store = lock(ctx)?;
        Ok(crate::fulfilment::create(&mut store, fulfillment))
    }

    async fn fulfillment_event_create(
        &self,
        ctx: &Context<'_>,
        fulfillment_event: crate::fulfilment::FulfillmentEventInput,
    ) -> async_graphql::Result<crate::fulfilment::FulfillmentEventCreatePayload> {
        let mut store = lock(ctx)?;
        Ok(crate::fulfilment::add_event(&mut store, fulfillment_event))
    }

    async fn product_variants_bulk_update(
        &self,
        ctx: &Context<'_>,
        product_id: String,
        variants: Vec<VariantInput>,
    ) -> async_graphql::Result<VariantsBulkUpdatePayload> {
        // Input arrays are capped at 250 ("Shopify API limits", shopify.dev), this one too.
        if variants.len() > MAX_INPUT_ITEMS {
            return Err(async_graphql::Error::new(format!(
                "The input array size of {} is greater than the maximum allowed of {MAX_INPUT_ITEMS}.",
                variants.len()
            )));
        }
        let mut store = lock(ctx)?;
        let Some(product) = store.products.iter_mut().find(|p| p.id == product_id) else {
            return Ok(VariantsBulkUpdatePayload {
                product_variants: Vec::new(),
                user_errors: vec![VariantUserError {
                    field: vec!["productId".to_owned()],
                    message: "Product does not exist".to_owned(),
                }],
            });
        };
        let mut updated = Vec::new();
        let mut errors = Vec::new();
        for (index, change) in variants.into_iter().enumerate() {
            match product.variants.iter_mut().find(|v| v.id == change.id) {
                Some(variant) => {
                    if let Some(price) = change.price {
                        variant.price = price;
                    }
                    if change.compare_at_price.is_some() {
                        variant.compare_at_price = change.compare_at_price;
                    }
                    updated.push(VariantNode(variant.clone()));
                }
                None => errors.push(VariantUserError {
                    field: vec!["variants".to_owned(), index.to_string(), "id".to_owned()],
                    message: "Product variant does not exist".to_owned(),
                }),
            }
        }
        Ok(VariantsBulkUpdatePayload {
            product_variants: updated,
            user_errors: errors,
        })
    }
}

// A replayed answer is kept as JSON: the payload types stay plain GraphQL objects.
fn payload_to_json(payload: &InventorySetQuantitiesPayload) -> serde_json::Value {
    serde_json::json!({
        "applied": payload.inventory_adjustment_group.as_ref().map(|g| g.changes.iter().map(|c| {
            serde_json::json!([c.item_id, c.location_id, c.delta, c.quantity_after_change])
        }).collect::<Vec<_>>()),
        "reason": payload.inventory_adjustment_group.as_ref().map(|g| g.reason.clone()),
        "errors": payload.user_errors.iter().map(|e| e.message.clone()).collect::<Vec<_>>(),
    })
}

fn payload_from_json(value: &serde_json::Value) -> InventorySetQuantitiesPayload {
    let changes = value["applied"].as_array().map(|changes| {
        changes
            .iter()
            .map(|c| InventoryChange {
                name: "available".to_owned(),
                item_id: c[0].as_str().unwrap_or_default().to_owned(),
                location_id: c[1].as_str().unwrap_or_default().to_owned(),
                delta: c[2].as_i64().unwrap_or_default(),
                quantity_after_change: c[3].as_i64().unwrap_or_default(),
            })
            .collect()
    });
    InventorySetQuantitiesPayload {
        inventory_adjustment_group: changes.map(|changes| AdjustmentGroup {
            reason: value["reason"].as_str().unwrap_or_default().to_owned(),
            reference_document_uri: None,
            changes,
        }),
        user_errors: value["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| InventoryUserError {
                code: None,
                field: Vec::new(),
                message: m.as_str().unwrap_or_default().to_owned(),
            })
            .collect(),
    }
}
