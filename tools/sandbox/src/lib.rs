//! Simulators of the systems erpsync cannot run here: Shopify stores' Admin GraphQL API
//! (`/{shop}/admin/api/{version}/graphql.json`), with the documented cost-based leaky
//! bucket, fulfilment orders and fault injection per store (the connector talks to it
//! exactly as to Shopify), the shop's signed webhooks, and the courier's signed EasyPost
//! tracking events.
//!
//! Cost model (the sandbox's, stated so benchmarks can derive their minimum): a query costs
//! 1 plus the `first` of every connection it asks for; a mutation costs 10 per root field,
//! and `inventorySetQuantities` 10 plus one point per item.

pub mod courier;
pub mod fulfilment;
pub mod lambda;
pub mod proxy;
pub mod shopify;
pub mod webhooks;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_graphql::parser::types::{
    DocumentOperations, Field, OperationType, Selection, SelectionSet,
};
use async_graphql::{Name, Value as GqlValue, Variables};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::shopify::{Location, Product, SharedStore, ShopSchema, Store};

/// The leaky bucket a store's API budget drains from.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub maximum: f64,
    pub restore_rate: f64,
    available: f64,
    updated: Instant,
}

impl Bucket {
    pub fn new(maximum: f64, restore_rate: f64) -> Self {
        Self {
            maximum,
            restore_rate,
            available: maximum,
            updated: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let elapsed = self.updated.elapsed().as_secs_f64();
        self.available = (self.available + elapsed * self.restore_rate).min(self.maximum);
        self.updated = Instant::now();
    }

    /// Takes `cost` if the bucket holds it; either way, what is left.
    fn take(&mut self, cost: f64) -> Result<f64, f64> {
        self.refill();
        if cost <= self.available {
            self.available -= cost;
            Ok(self.available)
        } else {
            Err(self.available)
        }
    }
}

/// Faults to inject into a store's next requests.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// The next this many requests answer HTTP 500.
    pub server_errors: u32,
    /// The next this many requests answer HTTP 503 with Retry-After: 1.
    pub unavailable: u32,
    /// Every request waits this long first.
    pub latency: Duration,
    /// The next this many requests lose their connection without any answer.
    pub drop_connections: u32,
    /// This many requests pass untouched before the faults above start.
    pub pass_first: u32,
}

pub struct Shop {
    pub store: SharedStore,
    schema: ShopSchema,
    pub access_token: String,
    pub bucket: Mutex<Bucket>,
    pub faults: Mutex<Faults>,
    /// Requests refused as THROTTLED, for tests and reports.
    pub throttled: Mutex<u64>,
}

impl Shop {
    /// What the store shows as available for a SKU at a location.
    pub fn available(&self, sku: &str, location: &str) -> Option<i64> {
        let store = self.store.lock().ok()?;
        let item = store.variant_by_sku(sku)?.inventory_item_id.clone();
        store.available.get(&(item, location.to_owned())).copied()
    }

    /// A change made in the shop's own admin (what the ERP, as owner, must overwrite).
    pub fn set_available(&self, sku: &str, location: &str, quantity: i64) {
        if let Ok(mut store) = self.store.lock()
            && let Some(item) = store
                .variant_by_sku(sku)
                .map(|v| v.inventory_item_id.clone())
        {
            store
                .available
                .insert((item, location.to_owned()), quantity);
        }
    }

    /// A variant's price as the store shows it.
    pub fn price(&self, sku: &str) -> Option<String> {
        Some(self.store.lock().ok()?.variant_by_sku(sku)?.price.clone())
    }

    pub fn inventory_mutations(&self) -> u64 {
        self.store
            .lock()
            .map(|s| s.inventory_mutations)
            .unwrap_or_default()
    }

    pub fn throttled(&self) -> u64 {
        self.throttled.lock().map(|t| *t).unwrap_or_default()
    }

    /// An order placed in the shop (whose webhook may or may not be delivered).
    pub fn place_order(&self, body: Value) {
        let id = body["id"].as_u64().unwrap_or_default();
        let order = shopify::StoredOrder {
            id,
            name: body["name"].as_str().unwrap_or_default().to_owned(),
            updated_at: body["updated_at"].as_str().unwrap_or_default().to_owned(),
            body,
        };
        if let Ok(mut store) = self.store.lock() {
            // A new order opens its fulfilment order; a new version of it keeps what shipped.
            if !store.orders.iter().any(|o| o.id == id) {
                store.open_fulfillment_order(id, &order.body);
            }
            store.orders.retain(|o| o.id != id);
            store.orders.push(order);
        }
    }

    /// `UNFULFILLED`, `PARTIALLY_FULFILLED` or `FULFILLED`, as the order shows it.
    pub fn fulfillment_status(&self, order_id: u64) -> Option<String> {
        let store = self.store.lock().ok()?;
        store.orders.iter().find(|o| o.id == order_id)?;
        Some(store.display_fulfillment_status(order_id).to_owned())
    }

    /// The fulfilments made for an order, with their tracking and events.
    pub fn fulfillments(&self, order_id: u64) -> Vec<fulfilment::Fulfillment> {
        self.store
            .lock()
            .map(|s| s.fulfillments_of(order_id))
            .unwrap_or_default()
    }

    pub fn inject(&self, faults: Faults) {
        if let Ok(mut current) = self.faults.lock() {
            *current = faults;
        }
    }
}

/// A store to create: its catalogue, locations and API budget.
#[derive(Debug, Clone, Deserialize)]
pub struct ShopSetup {
    pub domain: String,
    pub access_token: String,
    pub products: Vec<Product>,
    pub locations: Vec<Location>,
    #[serde(default = "default_maximum")]
    pub maximum_available: f64,
    #[serde(default = "default_restore_rate")]
    pub restore_rate: f64,
}

impl ShopSetup {
    /// A store selling one variant per SKU, not yet priced (`0.00`), with one location,
    /// its access token `shpat_<domain>`: what the demo, the tests and the bench use.
    pub fn with_skus<S: AsRef<str>>(
        domain: &str,
        location: &str,
        skus: &[S],
        maximum_available: f64,
        restore_rate: f64,
    ) -> Self {
        Self {
            domain: domain.to_owned(),
            access_token: format!("shpat_{domain}"),
            products: skus
                .iter()
                .enumerate()
                .map(|(n, sku)| Product {
                    id: format!("gid://shopify/Product/{n}"),
                    title: sku.as_ref().to_owned(),
                    variants: vec![shopify::Variant {
                        id: format!("gid://shopify/ProductVariant/{n}"),
                        sku: sku.as_ref().to_owned(),
                        price: "0.00".to_owned(),
                        compare_at_price: None,
                        inventory_item_id: format!("gid://shopify/InventoryItem/{n}"),
                    }],
                })
                .collect(),
            locations: vec![Location {
                id: location.to_owned(),
                name: "Main".to_owned(),
            }],
            maximum_available,
            restore_rate,
        }
    }
}

fn default_maximum() -> f64 {
    2000.0
}

fn default_restore_rate() -> f64 {
    100.0
}

#[derive(Default)]
pub struct Shops(Mutex<HashMap<String, Arc<Shop>>>);

impl Shops {
    pub fn add(&self, setup: ShopSetup) {
        let store: SharedStore = Arc::new(Mutex::new(Store {
            products: setup.products,
            locations: setup.locations,
            ..Store::default()
        }));
        let shop = Shop {
            schema: shopify::schema(store.clone()),
            store,
            access_token: setup.access_token,
            bucket: Mutex::new(Bucket::new(setup.maximum_available, setup.restore_rate)),
            faults: Mutex::new(Faults::default()),
            throttled: Mutex::new(0),
        };
        if let Ok(mut shops) = self.0.lock() {
            shops.insert(setup.domain, Arc::new(shop));
        }
    }

    pub fn get(&self, domain: &str) -> Option<Arc<Shop>> {
        self.0.lock().ok()?.get(domain).cloned()
    }
}

/// A running sandbox.
pub struct Sandbox {
    pub address: SocketAddr,
    pub shops: Arc<Shops>,
    server: tokio::task::JoinHandle<()>,
}

impl Sandbox {
    /// Serves on `bind` (`127.0.0.1:0` for a free port).
    pub async fn start(bind: &str) -> anyhow::Result<Self> {
        let shops = Arc::new(Shops::default());
        let app = Router::new()
            .route("/{shop}/admin/api/{version}/graphql.json", post(graphql))
            .route(
                "/{shop}/admin/api/{version}/orders/{id}",
                axum::routing::get(rest_order),
            )
            .with_state(shops.clone());
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let address = listener.local_addr()?;
        let server = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                tracing::error!(error = %error, "sandbox server stopped");
            }
        });
        Ok(Self {
            address,
            shops,
            server,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The Admin API base of a store, as a channel's config names it.
    pub fn admin_url(&self, shop: &str) -> String {
        format!("{}/{shop}", self.url())
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.server.abort();
    }
}

#[derive(Deserialize)]
struct GraphqlBody {
    query: String,
    #[serde(default)]
    variables: Option<Value>,
    #[serde(rename = "operationName")]
    operation_name: Option<String>,
}

fn error_response(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"errors": [{"message": message}]}))).into_response()
}

async fn graphql(
    State(shops): State<Arc<Shops>>,
    Path((shop, _version)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<GraphqlBody>,
) -> Response {
    let Some(shop) = shops.get(&shop) else {
        return error_response(StatusCode::NOT_FOUND, "Not Found");
    };
    let token = headers
        .get("x-shopify-access-token")
        .and_then(|v| v.to_str().ok());
    if token != Some(shop.access_token.as_str()) {
        return error_response(
            StatusCode::UNAUTHORIZED,
            "[API] Invalid API key or access token (unrecognized login or wrong password)",
        );
    }
    let faults = shop
        .faults
        .lock()
        .map(|mut f| {
            if f.pass_first > 0 {
                f.pass_first -= 1;
                return Faults {
                    latency: f.latency,
                    ..Faults::default()
                };
            }
            let now = f.clone();
            if f.drop_connections > 0 {
                f.drop_connections -= 1;
                return Faults {
                    drop_connections: 1,
                    ..Faults::default()
                };
            }
            f.server_errors = f.server_errors.saturating_sub(1);
            if now.server_errors == 0 {
                f.unavailable = f.unavailable.saturating_sub(1);
            }
            Faults {
                drop_connections: 0,
                ..now
            }
        })
        .ok();
    let Some(faults) = faults else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "sandbox state poisoned");
    };
    if faults.drop_connections > 0 {
        // Unwinding the connection's task closes the socket with no answer at all, as a
        // network failure would; resume_unwind does not call the panic hook, so nothing is
        // printed, and the server itself carries on.
        std::panic::resume_unwind(Box::new("injected dropped connection"));
    }
    if !faults.latency.is_zero() {
        tokio::time::sleep(faults.latency).await;
    }
    if faults.server_errors > 0 {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error");
    }
    if faults.unavailable > 0 {
        let mut response = error_response(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
        response
            .headers_mut()
            .insert("retry-after", axum::http::HeaderValue::from_static("1"));
        return response;
    }
    let variables = Variables::from_json(body.variables.clone().unwrap_or(Value::Null));
    let cost = match query_cost(&body.query, body.operation_name.as_deref(), &variables) {
        Ok(cost) => cost,
        Err(message) => {
            return (
                StatusCode::OK,
                Json(json!({"errors": [{"message": message}]})),
            )
                .into_response();
        }
    };
    let (maximum, restore_rate, taken) = match shop.bucket.lock() {
        Ok(mut bucket) => (bucket.maximum, bucket.restore_rate, bucket.take(cost)),
        Err(_) => {
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "sandbox state poisoned");
        }
    };
    let throttle_status = |available: f64| json!({"maximumAvailable": maximum, "currentlyAvailable": available.floor(), "restoreRate": restore_rate});
    let available = match taken {
        Ok(available) => available,
        Err(available) => {
            if let Ok(mut throttled) = shop.throttled.lock() {
                *throttled += 1;
            }
            return Json(json!({
                "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
                "extensions": {"cost": {"requestedQueryCost": cost, "actualQueryCost": null, "throttleStatus": throttle_status(available)}}
            }))
            .into_response();
        }
    };
    let mut request = async_graphql::Request::new(body.query).variables(variables);
    if let Some(name) = body.operation_name {
        request = request.operation_name(name);
    }
    let response = shop.schema.execute(request).await;
    let mut answer = serde_json::to_value(&response).unwrap_or_else(|_| json!({}));
    answer["extensions"] = json!({"cost": {"requestedQueryCost": cost, "actualQueryCost": cost, "throttleStatus": throttle_status(available)}});
    Json(answer).into_response()
}

/// REST `GET /orders/{id}.json`: the order resource, the same shape the webhooks carry.
async fn rest_order(
    State(shops): State<Arc<Shops>>,
    Path((shop, _version, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(shop) = shops.get(&shop) else {
        return error_response(StatusCode::NOT_FOUND, "Not Found");
    };
    if headers
        .get("x-shopify-access-token")
        .and_then(|v| v.to_str().ok())
        != Some(shop.access_token.as_str())
    {
        return error_response(
            StatusCode::UNAUTHORIZED,
            "[API] Invalid API key or access token",
        );
    }
    let id = id.trim_end_matches(".json");
    let order = shop.store.lock().ok().and_then(|store| {
        store
            .orders
            .iter()
            .find(|o| o.id.to_string() == id)
            .map(|o| o.body.clone())
    });
    match order {
        Some(body) => Json(json!({"order": body})).into_response(),
        None => error_response(StatusCode::NOT_FOUND, "Not Found"),
    }
}

/// The cost model stated at the top of this file.
fn query_cost(
    query: &str,
    operation_name: Option<&str>,
    variables: &Variables,
) -> Result<f64, String> {
    let document = async_graphql::parser::parse_query(query).map_err(|e| e.to_string())?;
    let operation = match (&document.operations, operation_name) {
        (DocumentOperations::Single(operation), _) => operation,
        (DocumentOperations::Multiple(operations), Some(name)) => operations
            .get(&Name::new(name))
            .ok_or_else(|| format!("no operation named {name}"))?,
        (DocumentOperations::Multiple(operations), None) if operations.len() == 1 => operations
            .values()
            .next()
            .ok_or_else(|| "no operation".to_owned())?,
        (DocumentOperations::Multiple(_), None) => {
            return Err("operationName is required".to_owned());
        }
    };
    let selection = &operation.node.selection_set.node;
    Ok(match operation.node.ty {
        OperationType::Mutation => selection
            .items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(field)
                    if field.node.name.node.as_str() == "inventorySetQuantities" =>
                {
                    let items = argument(&field.node, "input", variables)
                        .and_then(|input| match input {
                            GqlValue::Object(map) => map.get(&Name::new("quantities")).cloned(),
                            _ => None,
                        })
                        .map(|q| match q {
                            GqlValue::List(items) => items.len(),
                            _ => 0,
                        })
                        .unwrap_or(0);
                    10.0 + items as f64
                }
                _ => 10.0,
            })
            .sum(),
        _ => 1.0 + connection_cost(selection, variables),
    })
}

/// A field's argument, literal or variable, resolved.
fn argument(field: &Field, name: &str, variables: &Variables) -> Option<GqlValue> {
    field
        .get_argument(name)?
        .node
        .clone()
        .into_const_with(|variable| variables.get(&variable).cloned().ok_or(()))
        .ok()
}

fn connection_cost(selection: &SelectionSet, variables: &Variables) -> f64 {
    selection
        .items
        .iter()
        .map(|item| match &item.node {
            Selection::Field(field) => {
                let first = argument(&field.node, "first", variables)
                    .and_then(|v| match v {
                        GqlValue::Number(n) => n.as_f64(),
                        _ => None,
                    })
                    .unwrap_or(0.0);
                first + connection_cost(&field.node.selection_set.node, variables)
            }
            _ => 0.0,
        })
        .sum()
}
