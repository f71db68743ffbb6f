//! The simulated Admin API behaves as documented: shapes, compare-and-set, idempotency,
//! input caps, the leaky bucket and injected faults.

use sandbox::shopify::{Location, Product, Variant};
use sandbox::{Faults, Sandbox, ShopSetup};
use serde_json::{Value, json};

const SHOP: &str = "erpsync-uk.myshopify.com";

fn setup(maximum: f64, restore_rate: f64) -> ShopSetup {
    let variant = |n: u32, sku: &str| Variant {
        id: format!("gid://shopify/ProductVariant/{n}"),
        sku: sku.to_owned(),
        price: "199.00".to_owned(),
        compare_at_price: None,
        inventory_item_id: format!("gid://shopify/InventoryItem/{n}"),
    };
    ShopSetup {
        domain: SHOP.to_owned(),
        access_token: "shpat_test".to_owned(),
        products: vec![Product {
            id: "gid://shopify/Product/1".to_owned(),
            title: "iPod Nano".to_owned(),
            variants: vec![variant(1, "IPOD2008RED"), variant(2, "IPOD2008BLACK")],
        }],
        locations: vec![Location {
            id: "gid://shopify/Location/1".to_owned(),
            name: "London".to_owned(),
        }],
        maximum_available: maximum,
        restore_rate,
    }
}

async fn call(sandbox: &Sandbox, query: &str, variables: Value) -> (u16, Value) {
    call_at(sandbox, "2026-07", query, variables).await
}

async fn call_at(sandbox: &Sandbox, version: &str, query: &str, variables: Value) -> (u16, Value) {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/admin/api/{version}/graphql.json",
            sandbox.admin_url(SHOP)
        ))
        .header("X-Shopify-Access-Token", "shpat_test")
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

const SET: &str = "mutation Set($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { changes { name delta quantityAfterChange } }
    userErrors { code field message }
  }
}";

fn set_input(quantity: i64, change_from: Option<i64>) -> Value {
    json!({"name": "available", "reason": "correction", "referenceDocumentUri": "erpsync://stock-sync/run/1",
           "quantities": [{"inventoryItemId": "gid://shopify/InventoryItem/1", "locationId": "gid://shopify/Location/1",
                           "quantity": quantity, "changeFromQuantity": change_from}]})
}

#[tokio::test]
async fn queries_return_the_documented_shapes_with_their_cost() {
    let sandbox = Sandbox::start("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sandbox.shops.add(setup(2000.0, 100.0));
    let (status, body) = call(
        &sandbox,
        "query($n: Int!) { products(first: $n) { nodes { id variants(first: 10) { nodes { sku inventoryItem { id } } } } pageInfo { hasNextPage endCursor } } }",
        json!({"n": 5}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"]["products"]["nodes"][0]["variants"]["nodes"][1]["sku"],
        "IPOD2008BLACK"
    );
    assert_eq!(
        body["extensions"]["cost"]["requestedQueryCost"], 117,
        "2 + 5 x (1 + 2 + 10 x (1 + 1))"
    );
    assert_eq!(
        body["extensions"]["cost"]["actualQueryCost"], 9,
        "one product of two variants: 2 + (1 + 2 + 2 x 2)"
    );
    let shop = sandbox.shops.get(SHOP).unwrap_or_else(|| panic!("no shop"));
    assert!(
        shop.points_available() >= 2000.0 - 9.0,
        "charged 117 up front, refunded down to 9"
    );
    assert_eq!(
        body["extensions"]["cost"]["throttleStatus"]["restoreRate"],
        100.0
    );
    let (status, _) = reqwest::Client::new()
        .post(format!(
            "{}/admin/api/2026-07/graphql.json",
            sandbox.admin_url(SHOP)
        ))
        .json(&json!({"query": "{ locations(first: 1) { nodes { id } } }"}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), ()))
        .unwrap_or((0, ()));
    assert_eq!(status, 401, "no access token");
}

#[tokio::test]
async fn set_quantities_compares_and_sets_and_replays_an_idempotency_key() {
    let sandbox = Sandbox::start("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sandbox.shops.add(setup(2000.0, 100.0));
    let (_, applied) = call(
        &sandbox,
        SET,
        json!({"input": set_input(7, Some(0)), "key": "k1"}),
    )
    .await;
    assert_eq!(
        applied["data"]["inventorySetQuantities"]["inventoryAdjustmentGroup"]["changes"][0]["delta"],
        7
    );
    let (_, replayed) = call(
        &sandbox,
        SET,
        json!({"input": set_input(7, Some(0)), "key": "k1"}),
    )
    .await;
    assert_eq!(
        replayed["data"]["inventorySetQuantities"]["inventoryAdjustmentGroup"]["changes"][0]["quantityAfterChange"],
        7
    );
    let (_, stale) = call(
        &sandbox,
        SET,
        json!({"input": set_input(9, Some(3)), "key": "k2"}),
    )
    .await;
    assert_eq!(
        stale["data"]["inventorySetQuantities"]["userErrors"][0]["code"],
        "CHANGE_FROM_QUANTITY_STALE"
    );
    let shop = sandbox.shops.get(SHOP).unwrap_or_else(|| panic!("no shop"));
    let store = shop.store.lock().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        store.inventory_mutations, 1,
        "the replay and the stale write changed nothing"
    );
}

#[tokio::test]
async fn more_than_250_items_are_refused() {
    let sandbox = Sandbox::start("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sandbox.shops.add(setup(100_000.0, 1000.0));
    let mut input = set_input(1, None);
    input["quantities"] = Value::Array(vec![input["quantities"][0].clone(); 251]);
    let (_, body) = call(&sandbox, SET, json!({"input": input, "key": "big"})).await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("maximum allowed of 250"),
        "{body}"
    );
}

#[tokio::test]
async fn an_empty_bucket_answers_throttled_until_it_refills() {
    let sandbox = Sandbox::start("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sandbox.shops.add(setup(50.0, 50.0));
    let (_, first) = call(
        &sandbox,
        SET,
        json!({"input": set_input(1, None), "key": "a"}),
    )
    .await;
    assert!(first["errors"].is_null(), "{first}");
    let mut throttled = false;
    for attempt in 0..10 {
        let (_, body) = call(
            &sandbox,
            SET,
            json!({"input": set_input(2 + attempt, None), "key": format!("b{attempt}")}),
        )
        .await;
        if body["errors"][0]["extensions"]["code"] == "THROTTLED" {
            assert!(
                body["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"]
                    .as_f64()
                    .unwrap_or(99.0)
                    < 10.0
            );
            throttled = true;
            break;
        }
    }
    assert!(
        throttled,
        "a 50-point bucket cannot take ten 10-point mutations at once"
    );
}

#[tokio::test]
async fn injected_server_errors_come_first_then_normal_answers() {
    let sandbox = Sandbox::start("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sandbox.shops.add(setup(2000.0, 100.0));
    let shop = sandbox.shops.get(SHOP).unwrap_or_else(|| panic!("no shop"));
    if let Ok(mut faults) = shop.faults.lock() {
        *faults = Faults {
            server_errors: 1,
            unavailable: 1,
            ..Faults::default()
        };
    }
    let query = "{ locations(first: 1) { nodes { id } } }";
    assert_eq!(call(&sandbox, query, json!({})).await.0, 500);
    assert_eq!(call(&sandbox, query, json!({})).await.0, 503);
    assert_eq!(call(&sandbox, query, json!({})).await.0, 200);
}

#[tokio::test]
async fn the_sandbox_delivers_webhooks_signed_as_shopify_signs_them() {
    use axum::http::HeaderMap;
    use erpsync_core::channels::signature::verify_base64_hmac_sha256;
    use sandbox::webhooks::{Delivery, deliver};
    use secrecy::SecretString;
    use std::sync::{Arc, Mutex};

    let received: Arc<Mutex<Vec<(HeaderMap, String)>>> = Arc::default();
    let sink = received.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let sink = sink.clone();
            async move {
                if let Ok(mut received) = sink.lock() {
                    received.push((headers, body));
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let address = listener.local_addr().unwrap_or_else(|e| panic!("{e}"));
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let secret = SecretString::from("test_secret_key".to_owned());
    let delivery = Delivery {
        shop_domain: SHOP,
        topic: "orders/create",
        webhook_id: "w-1",
        body: "{\"foo\": \"bar\"}",
    };
    let status = deliver(
        &reqwest::Client::new(),
        &format!("http://{address}/hook"),
        &delivery,
        &secret,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status, 200);
    let received = received.lock().map(|r| r.clone()).unwrap_or_default();
    let (headers, body) = &received[0];
    let signature = headers
        .get("x-shopify-hmac-sha256")
        .and_then(|v| v.to_str().ok());
    // Shopify's published test vector for this body and secret.
    assert_eq!(
        signature,
        Some("B23tXN681gZ0qIWNRrgtzBE9XSDo5yaUu6wfmhu3a7g=")
    );
    assert_eq!(
        verify_base64_hmac_sha256(body.as_bytes(), signature, &[secret]),
        Ok(())
    );
    assert_eq!(
        headers.get("x-shopify-topic").and_then(|v| v.to_str().ok()),
        Some("orders/create")
    );
    server.abort();
}

#[tokio::test]
async fn an_injected_dropped_connection_gets_no_answer_and_the_next_request_does() {
    let sandbox = Sandbox::start("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sandbox.shops.add(setup(2000.0, 100.0));
    let shop = sandbox.shops.get(SHOP).unwrap_or_else(|| panic!("no shop"));
    shop.inject(Faults {
        drop_connections: 1,
        ..Faults::default()
    });
    let request = || {
        reqwest::Client::new()
            .post(format!(
                "{}/admin/api/2026-07/graphql.json",
                sandbox.admin_url(SHOP)
            ))
            .header("X-Shopify-Access-Token", "shpat_test")
            .json(&json!({"query": "{ locations(first: 1) { nodes { id } } }"}))
            .send()
    };
    assert!(
        request().await.is_err(),
        "the connection closes without a response"
    );
    assert_eq!(request().await.map(|r| r.status().as_u16()).ok(), Some(200));
}

const ORDER: &str = "query Order($id: ID!) {
  order(id: $id) {
    displayFulfillmentStatus
    fulfillmentOrders(first: 5) { nodes { id status lineItems(first: 10) { nodes { id sku totalQuantity remainingQuantity lineItem { id } } } } }
    fulfillments(first: 5) { id status trackingInfo(first: 1) { company number url } events(first: 5) { nodes { status message } } }
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

#[tokio::test]
async fn fulfilment_orders_take_partial_fulfilments_and_refuse_what_is_not_open() {
    let sandbox = Sandbox::start("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sandbox.shops.add(setup(2000.0, 1000.0));
    let shop = sandbox.shops.get(SHOP).unwrap_or_else(|| panic!("no shop"));
    shop.place_order(
        json!({"id": 77, "name": "#1077", "updated_at": "2026-11-29T10:00:00Z",
        "line_items": [{"id": 1, "sku": "IPOD2008RED", "quantity": 3, "current_quantity": 3},
                       {"id": 2, "sku": "GIFT-CARD", "quantity": 1, "requires_shipping": false}]}),
    );
    let (_, order) = call(&sandbox, ORDER, json!({"id": "gid://shopify/Order/77"})).await;
    let order = &order["data"]["order"];
    assert_eq!(order["displayFulfillmentStatus"], "UNFULFILLED");
    let fulfilment_order = &order["fulfillmentOrders"]["nodes"][0];
    assert_eq!(fulfilment_order["status"], "OPEN");
    let lines = fulfilment_order["lineItems"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(lines.len(), 1, "nothing to ship for a gift card: {lines:?}");
    assert_eq!(lines[0]["lineItem"]["id"], "gid://shopify/LineItem/1");
    let fulfil = |quantity: i64| {
        json!({"fulfillment": {"lineItemsByFulfillmentOrder": [{
            "fulfillmentOrderId": fulfilment_order["id"],
            "fulfillmentOrderLineItems": [{"id": lines[0]["id"], "quantity": quantity}]}],
            "trackingInfo": {"company": "Royal Mail", "number": "RM1", "url": "https://example.com/RM1"},
            "notifyCustomer": true}})
    };

    let (_, first) = call(&sandbox, FULFIL, fulfil(2)).await;
    let fulfilment = first["data"]["fulfillmentCreate"]["fulfillment"]["id"].clone();
    assert!(fulfilment.is_string(), "{first}");
    let (_, too_many) = call(&sandbox, FULFIL, fulfil(2)).await;
    let errors = &too_many["data"]["fulfillmentCreate"]["userErrors"];
    assert!(
        errors[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("1 remaining"),
        "{too_many}"
    );
    let (_, order) = call(&sandbox, ORDER, json!({"id": "gid://shopify/Order/77"})).await;
    assert_eq!(
        order["data"]["order"]["displayFulfillmentStatus"],
        "PARTIALLY_FULFILLED"
    );
    assert_eq!(
        order["data"]["order"]["fulfillmentOrders"]["nodes"][0]["status"],
        "IN_PROGRESS"
    );

    let (_, event) = call(
        &sandbox,
        EVENT,
        json!({"event": {"fulfillmentId": fulfilment, "status": "DELIVERED"}}),
    )
    .await;
    assert_eq!(
        event["data"]["fulfillmentEventCreate"]["fulfillmentEvent"]["status"],
        "DELIVERED"
    );
    let (_, bad) = call(
        &sandbox,
        EVENT,
        json!({"event": {"fulfillmentId": fulfilment, "status": "TELEPORTED"}}),
    )
    .await;
    assert!(
        bad["data"]["fulfillmentEventCreate"]["fulfillmentEvent"].is_null(),
        "{bad}"
    );

    call(&sandbox, FULFIL, fulfil(1)).await;
    let (_, order) = call(&sandbox, ORDER, json!({"id": "gid://shopify/Order/77"})).await;
    let order = &order["data"]["order"];
    assert_eq!(order["displayFulfillmentStatus"], "FULFILLED");
    assert_eq!(order["fulfillments"].as_array().map(Vec::len), Some(2));
    assert_eq!(order["fulfillments"][0]["trackingInfo"][0]["number"], "RM1");
    assert_eq!(
        order["fulfillments"][0]["events"]["nodes"][0]["status"],
        "DELIVERED"
    );
    let (_, unknown) = call(&sandbox, ORDER, json!({"id": "gid://shopify/Order/78"})).await;
    assert!(unknown["data"]["order"].is_null());
}

#[tokio::test]
async fn a_query_over_1000_points_is_refused_before_it_runs_and_changes_nothing() {
    let sandbox = Sandbox::start("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sandbox.shops.add(setup(20_000.0, 1000.0));
    let shop = sandbox.shops.get(SHOP).unwrap_or_else(|| panic!("no shop"));
    // 2 + 100 x (1 + 2 + 50 x 3): the stock read erpsync used to send.
    let (status, body) = call(
        &sandbox,
        "{ inventoryItems(first: 100) { nodes { id sku inventoryLevels(first: 50) { nodes { location { id } quantities(names: [\"available\"]) { name quantity } } } } } }",
        json!({}),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "MAX_COST_EXCEEDED",
        "{body}"
    );
    assert_eq!(body["errors"][0]["extensions"]["cost"], 15302);
    assert_eq!(body["errors"][0]["extensions"]["maxCost"], 1000);
    assert!(body["data"].is_null(), "{body}");
    // 101 mutations in one document: 1,010 points, so none of them runs.
    let fields: String = (0..101)
        .map(|n| format!("m{n}: inventorySetQuantities(input: $input) @idempotent(key: \"k{n}\") {{ userErrors {{ message }} }} "))
        .collect();
    let (_, body) = call(
        &sandbox,
        &format!("mutation($input: InventorySetQuantitiesInput!) {{ {fields} }}"),
        json!({"input": set_input(5, None)}),
    )
    .await;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "MAX_COST_EXCEEDED",
        "{body}"
    );
    assert_eq!(body["errors"][0]["extensions"]["cost"], 1010);
    assert_eq!(shop.inventory_mutations(), 0);
    assert_eq!(
        shop.available("IPOD2008RED", "gid://shopify/Location/1"),
        None
    );
    assert!(
        shop.points_available() >= 20_000.0 - 0.5,
        "the bucket was not charged"
    );
}

const BULK: &str = "mutation($query: String!) { bulkOperationRunQuery(query: $query) { bulkOperation { id status } userErrors { code field message } } }";
const STATUS: &str = "query($id: ID!) { bulkOperation(id: $id) { id status errorCode objectCount rootObjectCount url } }";
const CATALOGUE: &str =
    "{ products { edges { node { id variants { edges { node { id sku price } } } } } } }";

async fn start_bulk(sandbox: &Sandbox, version: &str) -> Value {
    call_at(sandbox, version, BULK, json!({"query": CATALOGUE}))
        .await
        .1["data"]["bulkOperationRunQuery"]
        .clone()
}

#[tokio::test]
async fn a_bulk_query_completes_with_its_jsonl_at_the_url_children_under_their_parent() {
    let sandbox = Sandbox::start("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sandbox.shops.add(setup(2000.0, 100.0));
    let (_, body) = call(&sandbox, BULK, json!({"query": CATALOGUE})).await;
    assert_eq!(
        body["extensions"]["cost"]["requestedQueryCost"], 10,
        "a mutation"
    );
    let created = &body["data"]["bulkOperationRunQuery"]["bulkOperation"];
    assert_eq!(created["status"], "CREATED");
    let (_, status) = call(&sandbox, STATUS, json!({"id": created["id"]})).await;
    let operation = &status["data"]["bulkOperation"];
    assert_eq!(operation["status"], "COMPLETED", "{status}");
    assert_eq!(operation["objectCount"], "3");
    assert_eq!(operation["rootObjectCount"], "1");
    let url = operation["url"]
        .as_str()
        .unwrap_or_else(|| panic!("no url: {status}"));
    let jsonl = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(lines[0], json!({"id": "gid://shopify/Product/1"}));
    assert_eq!(
        lines[2],
        json!({"id": "gid://shopify/ProductVariant/2", "sku": "IPOD2008BLACK", "price": "199.00",
               "__parentId": "gid://shopify/Product/1"})
    );
    let (_, current) = call(
        &sandbox,
        "{ currentBulkOperation { id status } }",
        json!({}),
    )
    .await;
    assert_eq!(current["data"]["currentBulkOperation"]["id"], created["id"]);
}

#[tokio::test]
async fn five_bulk_queries_run_at_once_from_2026_01_and_one_before() {
    let sandbox = Sandbox::start("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sandbox.shops.add(setup(2000.0, 100.0));
    let shop = sandbox.shops.get(SHOP).unwrap_or_else(|| panic!("no shop"));
    shop.bulk_faults(|f| f.hold = true);
    for _ in 0..5 {
        let started = start_bulk(&sandbox, "2026-07").await;
        assert!(
            started["userErrors"].as_array().is_some_and(Vec::is_empty),
            "{started}"
        );
    }
    let sixth = start_bulk(&sandbox, "2026-07").await;
    assert_eq!(sixth["userErrors"][0]["code"], "LIMIT_REACHED", "{sixth}");
    assert!(sixth["bulkOperation"].is_null());
    let older = start_bulk(&sandbox, "2025-10").await;
    assert_eq!(
        older["userErrors"][0]["code"], "OPERATION_IN_PROGRESS",
        "{older}"
    );
    shop.bulk_faults(|f| f.hold = false);
    let again = start_bulk(&sandbox, "2026-07").await;
    assert!(
        again["userErrors"].as_array().is_some_and(Vec::is_empty),
        "{again}"
    );
}

#[tokio::test]
async fn an_injected_bulk_failure_or_expiry_shows_in_the_operation_status() {
    let sandbox = Sandbox::start("127.0.0.1:0")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sandbox.shops.add(setup(2000.0, 100.0));
    let shop = sandbox.shops.get(SHOP).unwrap_or_else(|| panic!("no shop"));
    shop.bulk_faults(|f| f.fail_next = Some(sandbox::bulk::BulkErrorCode::Timeout));
    let failed = start_bulk(&sandbox, "2026-07").await;
    let (_, status) = call(
        &sandbox,
        STATUS,
        json!({"id": failed["bulkOperation"]["id"]}),
    )
    .await;
    assert_eq!(status["data"]["bulkOperation"]["status"], "FAILED");
    assert_eq!(status["data"]["bulkOperation"]["errorCode"], "TIMEOUT");
    assert!(status["data"]["bulkOperation"]["url"].is_null());
    shop.bulk_faults(|f| f.expire_next = true);
    let expired = start_bulk(&sandbox, "2026-07").await;
    let (_, status) = call(
        &sandbox,
        STATUS,
        json!({"id": expired["bulkOperation"]["id"]}),
    )
    .await;
    assert_eq!(status["data"]["bulkOperation"]["status"], "EXPIRED");
    assert!(status["data"]["bulkOperation"]["url"].is_null());
    let (_, refused) = call(&sandbox, BULK, json!({"query": "{ shop { id } }"})).await;
    assert_eq!(
        refused["data"]["bulkOperationRunQuery"]["userErrors"][0]["code"], "INVALID",
        "a bulk query needs a connection"
    );
}
