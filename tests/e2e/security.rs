//! Security at the edges, checked end to end: the secret values of a run never appear in a
//! log line, an error, a parked message or sync state; a rotation accepts the old and the
//! new secret, then only the new; unsigned requests are refused by both function URLs.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
use erpsync_aws::secrets::SecretCache;
use erpsync_connectors::TrytonClient;
use erpsync_core::ports::SalesErp;
use erpsync_e2e::{World, fresh_order};
use erpsync_tools::queues;
use erpsync_tools::stack::put_secret;
use secrecy::SecretString;
use serde_json::json;

/// Every log line, as the functions write them (JSON), kept for inspection.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut kept) = self.0.lock() {
            kept.extend_from_slice(bytes);
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        self.0
            .lock()
            .map(|kept| String::from_utf8_lossy(&kept).into_owned())
            .unwrap_or_default()
    }
}

/// Every log line of the test from here on, as the functions write them (JSON): our crates at
/// debug, more than production's info; the HTTP stacks at info. The test runtime is
/// single-threaded, so the subscriber sees every task of the test while the guard lives.
fn capture_logs() -> (Captured, tracing::subscriber::DefaultGuard) {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter(tracing_subscriber::EnvFilter::new(
            "debug,aws_smithy_runtime=info,aws_smithy_runtime_api=info,aws_config=info,hyper=info,hyper_util=info,h2=info,rustls=info,reqwest=info",
        ))
        .with_writer(captured.clone())
        .finish();
    (captured, tracing::subscriber::set_default(subscriber))
}

#[tokio::test]
async fn the_secret_values_of_a_run_never_appear_in_logs_errors_dead_letters_or_state() {
    let (captured, _guard) = capture_logs();

    let world = World::start().await;
    // A good order, a forged one, one that fails (unknown SKU, parked), one by WooCommerce.
    let (order, _) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    world
        .deliver("uk-shop", "orders/create", "wh-sec-1", &order)
        .await;
    let (forged, _) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let request = world.shopify_request(
        "uk-shop",
        "orders/create",
        "wh-sec-2",
        &forged.to_string(),
        Some("a-guess"),
    );
    assert_eq!(world.post(request).await, 401);
    let (mut poison, _) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    poison["line_items"][1]["sku"] = json!("NO-SUCH-SKU");
    world
        .deliver("uk-shop", "orders/create", "wh-sec-3", &poison)
        .await;
    // The ERP refuses a wrong key: the error names the secret, never a value.
    let wrong_key = "wrong-key-0f9d8c7b6a5e";
    let refused = TrytonClient::new(
        &world.erp_url,
        SecretString::from(wrong_key.to_owned()),
        world.config.erp.clone(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .find_sale_by_reference("uk-shop/1")
    .await
    .err()
    .unwrap_or_else(|| panic!("a wrong key is refused"));
    tracing::warn!(error = %refused, "as a function would log it");
    assert!(
        refused.message.contains(&world.config.erp.api_key_secret),
        "names the secret to check: {refused}"
    );

    let mut secrets: Vec<String> = world.webhook_secrets.values().cloned().collect();
    secrets.push(world.erp_key.clone());
    secrets.push(wrong_key.to_owned());
    let logs = captured.text();
    assert!(logs.lines().count() > 20, "the run was logged: {logs}");
    let sqs = aws_sdk_sqs::Client::new(&world.sdk);
    let parked = queues::peek(&sqs, &world.queue("OrdersDeadLetterQueue"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(parked.len(), 1);
    let parked_text = format!("{parked:?}");
    let state_text = format!(
        "{:?}",
        world
            .store_of(erpsync_tools::roles::OPERATOR)
            .all_states()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    );
    for secret in &secrets {
        for (place, text) in [
            ("log lines", &logs),
            ("errors", &refused.to_string()),
            ("the dead-letter queue", &parked_text),
            ("sync state", &state_text),
        ] {
            assert!(
                !text.contains(secret.as_str()),
                "a secret value is in {place}"
            );
        }
    }
}

#[tokio::test]
async fn after_a_rotation_only_the_new_secret_is_accepted() {
    let world = World::start().await;
    let name = world.config.channels[0].webhook_secret.clone();
    let old = world.webhook_secrets["uk-shop"].clone();
    let new = format!("{old}-next");
    // A function started after the rotation ended (or one whose cache is stale).
    let fresh = |world: &World| shop_webhook::Deps {
        config: world.config.clone(),
        secrets: SecretCache::new(
            aws_sdk_secretsmanager::Client::new(world.sdk_of("ShopWebhookFunction")),
            Duration::ZERO,
        ),
        orders: world.webhook.orders.clone(),
        orders_dead_letter: world.webhook.orders_dead_letter.clone(),
        returns: world.webhook.returns.clone(),
        returns_dead_letter: world.webhook.returns_dead_letter.clone(),
    };
    let (order, _) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let body = order.to_string();
    let send = |deps: shop_webhook::Deps, id: &str, secret: &str| {
        let request = world.shopify_request("uk-shop", "orders/create", id, &body, Some(secret));
        async move {
            shop_webhook::http_handler::handle(&deps, request)
                .await
                .status_code
        }
    };
    put_secret(&world.sdk, &name, &json!([new, old]).to_string())
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(send(fresh(&world), "wh-r1", &old).await, 200);
    assert_eq!(send(fresh(&world), "wh-r2", &new).await, 200);
    put_secret(&world.sdk, &name, &new)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(
        send(fresh(&world), "wh-r3", &old).await,
        401,
        "the old one retired"
    );
    assert_eq!(send(fresh(&world), "wh-r4", &new).await, 200);
}

#[tokio::test]
async fn both_function_urls_refuse_unsigned_requests() {
    let world = World::start().await;
    let (order, _) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let unsigned = world.shopify_request(
        "uk-shop",
        "orders/create",
        "wh-unsigned",
        &order.to_string(),
        None,
    );
    assert_eq!(world.post(unsigned).await, 401);
    assert_eq!(world.queue_depth("OrdersQueue").await, 0);

    let secret_name = format!("erpsync/{}/easypost-webhook", world.stage);
    put_secret(&world.sdk, &secret_name, "courier-secret")
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let sqs = world.sqs_of("CourierWebhookFunction");
    let courier = courier_webhook::Deps {
        secret_name,
        secrets: SecretCache::new(
            aws_sdk_secretsmanager::Client::new(world.sdk_of("CourierWebhookFunction")),
            Duration::from_secs(60),
        ),
        shipments: erpsync_aws::sqs::Queue::new(sqs.clone(), world.queue("ShipmentsQueue")),
        shipments_dead_letter: erpsync_aws::sqs::Queue::new(
            sqs,
            world.queue("ShipmentsDeadLetterQueue"),
        ),
    };
    let mut request = LambdaFunctionUrlRequest::default();
    request.request_context.http.method = Some("POST".to_owned());
    request.body = Some(
        std::fs::read_to_string(
            erpsync_tools::project_root()
                .join("tests/fixtures/easypost-tracker-updated-delivered.json"),
        )
        .unwrap_or_else(|e| panic!("{e}")),
    );
    let answer = courier_webhook::http_handler::handle(&courier, request).await;
    assert_eq!(answer.status_code, 401);
    assert_eq!(world.queue_depth("ShipmentsQueue").await, 0);
}

/// The order with a customer whose every personal detail is a marker to look for.
fn with_personal_details(mut order: serde_json::Value) -> serde_json::Value {
    order["email"] = json!("zebediah.quill@pii-marker.example");
    order["phone"] = json!("+447700900123");
    for person in ["customer", "billing_address", "shipping_address"] {
        // Only what the order has: an address made up here would not parse.
        let Some(details) = order[person].as_object_mut() else {
            continue;
        };
        for (field, value) in [
            ("email", "zebediah.quill@pii-marker.example"),
            ("first_name", "Zebediah"),
            ("last_name", "Quillfeather"),
            ("name", "Zebediah Quillfeather"),
            ("phone", "+447700900123"),
            ("address1", "17 Larkspur Mews"),
        ] {
            if details.contains_key(field) {
                details.insert(field.to_owned(), json!(value));
            }
        }
    }
    order
}

/// Logs carry ids and outcomes; never a customer's name, e-mail, phone or address — in live
/// mode, in shadow mode (which records what it would send), when an order is amended to a
/// new address, or parked.
#[tokio::test]
async fn no_personal_detail_of_a_customer_reaches_the_logs() {
    let (captured, _guard) = capture_logs();
    let world = World::start().await;
    let (order, _) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let order = with_personal_details(order);
    world
        .deliver("uk-shop", "orders/create", "wh-pii-1", &order)
        .await;
    let mut moved = erpsync_e2e::at_version(&order, "2027-01-05T10:00:00Z");
    moved["shipping_address"]["address1"] = json!("4 Wrenfield Close");
    world
        .deliver("uk-shop", "orders/updated", "wh-pii-2", &moved)
        .await;
    let (mut poison, _) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    poison["line_items"][1]["sku"] = json!("NO-SUCH-SKU");
    world
        .deliver(
            "uk-shop",
            "orders/create",
            "wh-pii-3",
            &with_personal_details(poison),
        )
        .await;
    let shadow = World::start_configured(|config| {
        config.channels[0].mode = erpsync_core::config::Mode::Shadow;
    })
    .await;
    let (shadowed, _) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    shadow
        .deliver(
            "uk-shop",
            "orders/create",
            "wh-pii-4",
            &with_personal_details(shadowed),
        )
        .await;

    let logs = captured.text();
    assert!(logs.lines().count() > 20, "the run was logged");
    for detail in [
        "zebediah",
        "quillfeather",
        "pii-marker",
        "7700900123",
        "larkspur",
        "wrenfield",
    ] {
        let leaks: Vec<&str> = logs
            .lines()
            .filter(|line| line.to_lowercase().contains(detail))
            .collect();
        assert!(leaks.is_empty(), "{detail:?} is logged: {leaks:#?}");
    }
}
