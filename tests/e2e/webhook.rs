//! shop-webhook's edge: signatures, rotation, size, unreadable bodies.

use erpsync_aws::sqs::attr;
use erpsync_e2e::{World, attribute, fresh_order};
use erpsync_tools::stack::put_secret;

#[tokio::test]
async fn forged_missing_or_unconfigured_signatures_and_unknown_shops_get_401_and_nothing_is_queued()
{
    let world = World::start().await;
    let (order, _) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let body = order.to_string();

    let forged = world.shopify_request(
        "uk-shop",
        "orders/create",
        "wh-1",
        &body,
        Some("not-the-secret"),
    );
    assert_eq!(world.post(forged).await, 401);

    let missing = world.shopify_request("uk-shop", "orders/create", "wh-2", &body, None);
    assert_eq!(world.post(missing).await, 401);

    // Validly signed, but with the other channel's secret: not configured for this shop.
    let eu_secret = world.webhook_secrets.get("eu-shop").cloned();
    let crossed = world.shopify_request(
        "uk-shop",
        "orders/create",
        "wh-3",
        &body,
        eu_secret.as_deref(),
    );
    assert_eq!(world.post(crossed).await, 401);

    let mut tampered = world.signed("uk-shop", "orders/create", "wh-4", &body);
    tampered.body = Some(body.replace("IPOD2008RED", "IPOD2008BLACK"));
    assert_eq!(world.post(tampered).await, 401);

    let mut unknown_shop = world.signed("uk-shop", "orders/create", "wh-5", &body);
    unknown_shop.headers.insert(
        "x-shopify-shop-domain",
        http::HeaderValue::from_static("someone-else.myshopify.com"),
    );
    assert_eq!(world.post(unknown_shop.clone()).await, 401);

    // One answer whatever the reason: a caller cannot tell a known shop from an unknown one.
    let body_of = |request| async {
        shop_webhook::http_handler::handle(&world.webhook, request)
            .await
            .body
    };
    let unknown_answer = body_of(unknown_shop).await;
    let forged = world.shopify_request("uk-shop", "orders/create", "wh-6", &body, Some("x"));
    assert_eq!(body_of(forged).await, unknown_answer);
    assert_eq!(
        unknown_answer.as_deref(),
        Some(r#"{"message":"unauthorized"}"#)
    );

    assert_eq!(world.queue_depth("OrdersQueue").await, 0);
    assert_eq!(world.queue_depth("OrdersDeadLetterQueue").await, 0);
}

#[tokio::test]
async fn during_a_rotation_both_configured_secrets_are_accepted() {
    let world = World::start().await;
    let name = world.config.channels[0].webhook_secret.clone();
    let old = world.webhook_secrets["uk-shop"].clone();
    let new = format!("{old}-rotated");
    put_secret(
        &world.sdk,
        &name,
        &serde_json::json!([new, old]).to_string(),
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));

    let (order, _) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let body = order.to_string();
    let with_old = world.shopify_request("uk-shop", "orders/create", "wh-old", &body, Some(&old));
    assert_eq!(world.post(with_old).await, 200);
    let with_new = world.shopify_request("uk-shop", "orders/create", "wh-new", &body, Some(&new));
    assert_eq!(world.post(with_new).await, 200);
    let with_neither =
        world.shopify_request("uk-shop", "orders/create", "wh-x", &body, Some("retired"));
    assert_eq!(world.post(with_neither).await, 401);
}

/// The order at exactly `size` bytes, by its note.
fn padded_to(order: &serde_json::Value, size: usize) -> String {
    let mut order = order.clone();
    order["note"] = serde_json::json!("");
    let bare = order.to_string().len();
    order["note"] = serde_json::json!("x".repeat(size.saturating_sub(bare)));
    order.to_string()
}

#[tokio::test]
async fn the_largest_body_accepted_is_queued_and_parked_whole_and_one_byte_more_is_413() {
    use erpsync_aws::function_url::MAX_BODY_BYTES;
    let world = World::start().await;
    let (mut order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    // A SKU the ERP does not have, so the order is parked: the parked message is the
    // largest erpsync sends (the body, the original attributes and the reason).
    order["line_items"][0]["sku"] = serde_json::json!("NOT-IN-THE-ERP");
    let largest = padded_to(&order, MAX_BODY_BYTES);
    assert_eq!(largest.len(), MAX_BODY_BYTES);
    assert_eq!(
        world
            .post(world.signed("uk-shop", "orders/create", "wh-largest", &largest))
            .await,
        200
    );
    world.drain(std::time::Duration::from_secs(60)).await;
    let parked = world.dead_letters().await;
    assert_eq!(parked.len(), 1, "parked whole");
    assert_eq!(parked[0].body().map(str::len), Some(MAX_BODY_BYTES));
    assert_eq!(attribute(&parked[0], attr::ERROR_KIND), "unknown_sku");
    // Its payload is kept for a replay (compressed: over DynamoDB's item limit as text).
    let entity = erpsync_core::model::state::EntityRef::order(
        &erpsync_core::model::ids::ChannelId::parse("uk-shop").unwrap_or_else(|e| panic!("{e}")),
        &id,
    );
    let kept = erpsync_core::ports::PayloadArchive::latest(&world.orders.store, &entity)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("not kept"));
    assert_eq!(kept.body, largest);

    let too_large = padded_to(&order, MAX_BODY_BYTES + 1);
    assert_eq!(
        world
            .post(world.signed("uk-shop", "orders/create", "wh-too-large", &too_large))
            .await,
        413
    );
    assert_eq!(world.queue_depth("OrdersQueue").await, 0);
}

#[tokio::test]
async fn a_base64_encoded_body_is_verified_on_its_decoded_bytes() {
    use base64::Engine;
    let world = World::start().await;
    let (order, _) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let body = order.to_string();
    let mut request = world.signed("uk-shop", "orders/create", "wh-b64", &body);
    request.body = Some(base64::engine::general_purpose::STANDARD.encode(body.as_bytes()));
    request.is_base64_encoded = true;
    assert_eq!(world.post(request).await, 200);
    assert_eq!(world.queue_depth("OrdersQueue").await, 1);
}

#[tokio::test]
async fn a_validly_signed_body_that_is_not_an_order_is_accepted_and_parked_with_the_reason() {
    let world = World::start().await;
    let body = r#"{"note": "no id here"}"#;
    assert_eq!(
        world
            .post(world.signed("uk-shop", "orders/create", "wh-odd", body))
            .await,
        200
    );
    assert_eq!(world.queue_depth("OrdersQueue").await, 0);
    let parked = world.dead_letters().await;
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].body(), Some(body));
    assert!(
        attribute(&parked[0], attr::REASON).contains("id"),
        "{:?}",
        parked[0]
    );
    assert_eq!(attribute(&parked[0], attr::ERROR_CLASS), "permanent");
    assert!(attribute(&parked[0], attr::SOURCE).contains("wh-odd"));
}

#[tokio::test]
async fn when_the_queue_cannot_take_a_delivery_shopify_is_told_to_retry_with_503() {
    let world = World::start().await;
    // A queue that is not there is one the role may not send to either.
    world.expect_refusals();
    let sqs = world.sqs_of("ShopWebhookFunction");
    let missing = format!(
        "{}-gone.fifo",
        world.queue("OrdersQueue").trim_end_matches(".fifo")
    );
    let deps = shop_webhook::Deps {
        config: world.config.clone(),
        secrets: erpsync_aws::secrets::SecretCache::new(
            aws_sdk_secretsmanager::Client::new(world.sdk_of("ShopWebhookFunction")),
            std::time::Duration::from_secs(60),
        ),
        orders: erpsync_aws::sqs::Queue::new(sqs.clone(), missing),
        orders_dead_letter: erpsync_aws::sqs::Queue::new(
            sqs.clone(),
            world.queue("OrdersDeadLetterQueue"),
        ),
        returns: erpsync_aws::sqs::Queue::new(sqs.clone(), world.queue("ReturnsQueue")),
        returns_dead_letter: erpsync_aws::sqs::Queue::new(
            sqs,
            world.queue("ReturnsDeadLetterQueue"),
        ),
    };
    let (order, _) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let request = world.signed("uk-shop", "orders/create", "wh-503", &order.to_string());
    let response = shop_webhook::http_handler::handle(&deps, request).await;
    assert_eq!(response.status_code, 503);
}
