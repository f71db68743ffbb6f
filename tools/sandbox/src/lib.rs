//! Simulators of the systems erpsync cannot run here: Shopify stores' Admin GraphQL API
//! (`/{shop}/admin/api/{version}/graphql.json`), with the documented cost-based leaky
//! bucket, fulfilment orders and fault injection per store (the connector talks to it
//! exactly as to Shopify), the shop's signed webhooks, and the courier's signed EasyPost
//! tracking events.
//!
//! Cost model: Shopify's documented one (`cost`): requested cost up front, refunded down to
//! the actual cost, 1,000 points at most per query, 10 per mutation; catalogue-wide reads
//! go through bulk operations (`bulk`), whose JSONL the sandbox serves itself.

pub mod bulk;
pub mod cost;
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

use async_graphql::Variables;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::cost::{Costing, MAX_QUERY_COST};
use crate::shopify::{Location, Product, SharedStore, ShopSchema, Store};

/// A store's plan, as "GraphQL Admin API rate limits" lists them
/// (https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits): the restore rate in
/// points per second. The page gives no bucket sizes; a bucket holds 20 seconds of restore,
/// as the documented 1,000-point bucket did at the former 50 points/s (and as stores answer
/// `maximumAvailable: 2000` at 100 points/s).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Plan {
    Standard,
    Advanced,
    Plus,
    Enterprise,
}

/// Seconds of restore a bucket holds.
const BUCKET_SECONDS: f64 = 20.0;

impl Plan {
    pub fn restore_rate(self) -> f64 {
        match self {
            Plan::Standard => 100.0,
            Plan::Advanced => 200.0,
            Plan::Plus => 1000.0,
            Plan::Enterprise => 2000.0,
        }
    }

    pub fn bucket_size(self) -> f64 {
        self.restore_rate() * BUCKET_SECONDS
    }
}

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

    pub fn of(plan: Plan) -> Self {
        Self::new(plan.bucket_size(), plan.restore_rate())
    }

    /// Gives back what a query was charged above its actual cost.
    fn refund(&mut self, points: f64) -> f64 {
        self.refill();
        self.available = (self.available + points).min(self.maximum);
        self.available
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

/// The REST Admin API's bucket for a store whose GraphQL restores `graphql_rate` points a
/// second: REST leaks 2 / 4 / 20 / 40 requests a second on Standard / Advanced / Plus /
/// Enterprise (shopify.dev/docs/api/admin-rest/usage/rate-limits, one fiftieth of the
/// GraphQL rate on every plan) and holds 20 seconds of it (40 requests on Standard, as
/// `X-Shopify-Shop-Api-Call-Limit: n/40` reads).
fn rest_bucket(graphql_rate: f64) -> Bucket {
    let rate = (graphql_rate / 50.0).max(1.0);
    Bucket::new(rate * BUCKET_SECONDS, rate)
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
    /// The next this many requests answer HTTP 200 with a GraphQL error whose
    /// `extensions.code` is `INTERNAL_SERVER_ERROR` ("an internal error occurred while
    /// processing the request", shopify.dev/docs/api/usage/response-codes).
    pub internal_errors: u32,
    /// This many requests pass untouched before the faults above start.
    pub pass_first: u32,
}

pub struct Shop {
    pub store: SharedStore,
    schema: ShopSchema,
    pub access_token: String,
    /// The token revoked (the app's access withdrawn in the store's admin): every Admin API
    /// call answers 401 until it is granted again, as Shopify answers a missing or invalid
    /// token (shopify.dev/docs/api/usage/response-codes: "401 Unauthorized: The client doesn't
    /// have correct authentication credentials").
    revoked: std::sync::atomic::AtomicBool,
    pub bucket: Mutex<Bucket>,
    pub faults: Mutex<Faults>,
    /// Requests refused as THROTTLED, for tests and reports.
    pub throttled: Mutex<u64>,
    /// The REST Admin API's own leaky bucket of requests.
    pub rest_bucket: Mutex<Bucket>,
    /// REST requests answered, and those refused with 429, for tests and reports.
    pub rest_requests: Mutex<(u64, u64)>,
}

impl Shop {
    /// Whether `token` opens this store's Admin API now.
    fn admits(&self, token: Option<&str>) -> bool {
        token == Some(self.access_token.as_str())
            && !self.revoked.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The store withdraws (`true`) or grants again (`false`) the app's access token.
    pub fn revoke_access(&self, revoked: bool) {
        self.revoked
            .store(revoked, std::sync::atomic::Ordering::Relaxed);
    }

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

    /// Every fulfilment the store holds, of any order.
    pub fn all_fulfillments(&self) -> Vec<fulfilment::Fulfillment> {
        self.store
            .lock()
            .map(|s| s.fulfillments.clone())
            .unwrap_or_default()
    }

    /// Fault hooks for bulk operations: fail or expire the next, hold them running.
    pub fn bulk_faults(&self, change: impl FnOnce(&mut bulk::BulkFaults)) {
        if let Ok(mut store) = self.store.lock() {
            change(store.bulk_faults());
        }
    }

    /// What the bucket holds now.
    pub fn points_available(&self) -> f64 {
        self.bucket
            .lock()
            .map(|mut b| {
                b.refill();
                b.available
            })
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

impl ShopSetup {
    /// The same variants sold as products of `per_product` variants each (sizes and colours),
    /// as a catalogue of that shape is priced one product per `productVariantsBulkUpdate`.
    pub fn grouped(mut self, per_product: usize) -> Self {
        let per_product = per_product.max(1);
        let variants: Vec<shopify::Variant> = self
            .products
            .drain(..)
            .flat_map(|product| product.variants)
            .collect();
        self.products = variants
            .chunks(per_product)
            .enumerate()
            .map(|(n, variants)| Product {
                id: format!("gid://shopify/Product/{n}"),
                title: variants.first().map(|v| v.sku.clone()).unwrap_or_default(),
                variants: variants.to_vec(),
            })
            .collect();
        self
    }
}

fn default_maximum() -> f64 {
    Plan::Standard.bucket_size()
}

fn default_restore_rate() -> f64 {
    Plan::Standard.restore_rate()
}

#[derive(Default)]
pub struct Shops {
    shops: Mutex<HashMap<String, Arc<Shop>>>,
    /// Where the sandbox serves, for the URLs it hands out (bulk operation results).
    base_url: Mutex<String>,
}

impl Shops {
    fn base_url(&self) -> String {
        self.base_url.lock().map(|u| u.clone()).unwrap_or_default()
    }

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
            revoked: std::sync::atomic::AtomicBool::new(false),
            bucket: Mutex::new(Bucket::new(setup.maximum_available, setup.restore_rate)),
            faults: Mutex::new(Faults::default()),
            throttled: Mutex::new(0),
            rest_bucket: Mutex::new(rest_bucket(setup.restore_rate)),
            rest_requests: Mutex::new((0, 0)),
        };
        if let Ok(mut shops) = self.shops.lock() {
            shops.insert(setup.domain, Arc::new(shop));
        }
    }

    pub fn get(&self, domain: &str) -> Option<Arc<Shop>> {
        self.shops.lock().ok()?.get(domain).cloned()
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
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let address = listener.local_addr()?;
        let shops = Arc::new(Shops {
            base_url: Mutex::new(format!("http://{address}")),
            ..Shops::default()
        });
        let app = Router::new()
            .route("/{shop}/admin/api/{version}/graphql.json", post(graphql))
            .route(
                "/{shop}/admin/api/{version}/orders/{id}",
                axum::routing::get(rest_order),
            )
            .route("/bulk/{shop}/{file}", axum::routing::get(bulk_result))
            .with_state(shops.clone());
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
    Path((domain, version)): Path<(String, String)>,
    headers: HeaderMap,
    Json(body): Json<GraphqlBody>,
) -> Response {
    let Some(shop) = shops.get(&domain) else {
        return error_response(StatusCode::NOT_FOUND, "Not Found");
    };
    let token = headers
        .get("x-shopify-access-token")
        .and_then(|v| v.to_str().ok());
    if !shop.admits(token) {
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
                if now.unavailable == 0 {
                    f.internal_errors = f.internal_errors.saturating_sub(1);
                }
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
    if faults.internal_errors > 0 {
        return (
            StatusCode::OK,
            Json(json!({"errors": [{
                "message": "Internal error. Looks like something went wrong on our end.",
                "extensions": {"code": "INTERNAL_SERVER_ERROR"}
            }]})),
        )
            .into_response();
    }
    let variables = Variables::from_json(body.variables.clone().unwrap_or(Value::Null));
    let costing = match Costing::parse(&body.query, body.operation_name.as_deref(), &variables) {
        Ok(costing) => costing,
        Err(message) => {
            return (
                StatusCode::OK,
                Json(json!({"errors": [{"message": message}]})),
            )
                .into_response();
        }
    };
    let requested = costing.requested();
    if requested > MAX_QUERY_COST {
        // Refused before it runs and before the bucket is touched, in the shape Shopify
        // answers (message, extensions.code/cost/maxCost); the rate-limits page's
        // "Single query limit".
        return Json(json!({"errors": [{
            "message": format!("Query cost is {requested}, which exceeds the single query max cost limit ({MAX_QUERY_COST}).\n\nSee https://shopify.dev/concepts/about-apis/rate-limits for more information on how the\ncost of a query is calculated.\n\nTo query larger amounts of data with fewer limits, bulk operations should be used instead.\nSee https://shopify.dev/api/usage/bulk-operations/queries for usage details.\n"),
            "extensions": {"code": "MAX_COST_EXCEEDED", "cost": requested, "maxCost": MAX_QUERY_COST,
                           "documentation": "https://shopify.dev/api/usage/rate-limits"}
        }]}))
        .into_response();
    }
    let (maximum, restore_rate, taken) = match shop.bucket.lock() {
        Ok(mut bucket) => (
            bucket.maximum,
            bucket.restore_rate,
            bucket.take(requested as f64),
        ),
        Err(_) => {
            return error_response(StatusCode::INTERNAL_SERVER_ERROR, "sandbox state poisoned");
        }
    };
    let throttle_status = |available: f64| json!({"maximumAvailable": maximum, "currentlyAvailable": available.floor(), "restoreRate": restore_rate});
    if let Err(available) = taken {
        if let Ok(mut throttled) = shop.throttled.lock() {
            *throttled += 1;
        }
        return Json(json!({
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"}}],
            "extensions": {"cost": {"requestedQueryCost": requested, "actualQueryCost": null, "throttleStatus": throttle_status(available)}}
        }))
        .into_response();
    }
    let mut request = async_graphql::Request::new(body.query)
        .variables(variables)
        .data(bulk::ApiVersion(version));
    if let Some(name) = body.operation_name {
        request = request.operation_name(name);
    }
    let response = shop.schema.execute(request).await;
    let mut answer = serde_json::to_value(&response).unwrap_or_else(|_| json!({}));
    // Charged the requested cost up front, refunded down to what was returned.
    let actual = costing.actual(&answer["data"]).min(requested);
    let available = match shop.bucket.lock() {
        Ok(mut bucket) => bucket.refund((requested - actual) as f64),
        Err(_) => 0.0,
    };
    bulk::run_pending(&shop.store, &shop.schema, &shops.base_url(), &domain).await;
    answer["extensions"] = json!({"cost": {"requestedQueryCost": requested, "actualQueryCost": actual, "throttleStatus": throttle_status(available)}});
    Json(answer).into_response()
}

/// A bulk operation's JSONL, at the `url` the operation gave (no token: Shopify's is a
/// signed storage URL).
async fn bulk_result(
    State(shops): State<Arc<Shops>>,
    Path((shop, file)): Path<(String, String)>,
) -> Response {
    let Some(shop) = shops.get(&shop) else {
        return error_response(StatusCode::NOT_FOUND, "Not Found");
    };
    match bulk::result(&shop.store, file.trim_end_matches(".jsonl")) {
        Some(jsonl) => (
            [(axum::http::header::CONTENT_TYPE, "application/jsonl")],
            jsonl,
        )
            .into_response(),
        None => error_response(StatusCode::NOT_FOUND, "Not Found"),
    }
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
    if !shop.admits(
        headers
            .get("x-shopify-access-token")
            .and_then(|v| v.to_str().ok()),
    ) {
        return error_response(
            StatusCode::UNAUTHORIZED,
            "[API] Invalid API key or access token",
        );
    }
    // One request from the REST bucket; an empty bucket is 429 with Retry-After (seconds,
    // as Shopify writes it: "2.0").
    let taken = shop.rest_bucket.lock().ok().map(|mut bucket| {
        let maximum = bucket.maximum;
        (bucket.take(1.0), maximum)
    });
    let Some((taken, maximum)) = taken else {
        return error_response(StatusCode::INTERNAL_SERVER_ERROR, "sandbox lock poisoned");
    };
    let used =
        |available: f64| format!("{}/{}", (maximum - available).ceil() as u64, maximum as u64);
    let call_limit = match taken {
        Ok(available) => used(available),
        Err(available) => {
            if let Ok(mut counts) = shop.rest_requests.lock() {
                counts.1 += 1;
            }
            let mut response = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                "Exceeded 2 calls per second for api client. Reduce request rates to resume uninterrupted service.",
            );
            for (name, value) in [
                ("retry-after", "2.0".to_owned()),
                ("x-shopify-shop-api-call-limit", used(available)),
            ] {
                if let Ok(value) = axum::http::HeaderValue::from_str(&value) {
                    response.headers_mut().insert(name, value);
                }
            }
            return response;
        }
    };
    if let Ok(mut counts) = shop.rest_requests.lock() {
        counts.0 += 1;
    }
    let id = id.trim_end_matches(".json");
    let order = shop.store.lock().ok().and_then(|store| {
        store
            .orders
            .iter()
            .find(|o| o.id.to_string() == id)
            .map(|o| o.body.clone())
    });
    let mut response = match order {
        Some(body) => Json(json!({"order": body})).into_response(),
        None => error_response(StatusCode::NOT_FOUND, "Not Found"),
    };
    if let Ok(value) = axum::http::HeaderValue::from_str(&call_limit) {
        response
            .headers_mut()
            .insert("x-shopify-shop-api-call-limit", value);
    }
    response
}
