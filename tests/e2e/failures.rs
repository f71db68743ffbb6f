//! Failures end where they should: a person's queue for what retrying cannot fix, the retry
//! path for outages, and never a second sale.

use std::time::Duration;

use erpsync_aws::sqs::attr;
use erpsync_core::model::state::{Flow, SyncStatus};
use erpsync_e2e::{
    Fault, FaultyErp, Stack, World, attribute, fresh_order, order_event, parked_reasons,
};

const DRAIN: Duration = Duration::from_secs(60);

/// A call the deployment's IAM does not grant is a clear, permanent error: parked at once
/// with a reason naming the action and the resource, never a retry loop.
#[tokio::test]
async fn a_call_the_role_is_not_granted_parks_the_order_as_access_denied_at_once() {
    let world = World::start().await;
    let (order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let body = order.to_string();
    assert_eq!(
        world
            .post(world.signed("uk-shop", "orders/create", "wh-denied", &body))
            .await,
        200
    );
    // order-sync's role as the template declares it, less the claim's PutItem.
    let esm = world.order_sync_without("dynamodb:PutItem").await;
    assert_eq!(
        esm.poll_once(Duration::from_secs(2))
            .await
            .unwrap_or_else(|e| panic!("{e:#}")),
        1
    );
    assert_eq!(
        world.queue_depth("OrdersQueue").await,
        0,
        "handled on its first receive, not left to retry"
    );

    let parked = world.dead_letters().await;
    assert_eq!(parked.len(), 1, "{parked:?}");
    assert_eq!(attribute(&parked[0], attr::ERROR_KIND), "access_denied");
    assert_eq!(attribute(&parked[0], attr::ERROR_CLASS), "permanent");
    assert_eq!(attribute(&parked[0], attr::ATTEMPTS), "1");
    let reason = attribute(&parked[0], attr::REASON);
    let table = format!("table/{}", world.resources.table);
    assert!(
        reason.contains("dynamodb:PutItem") && reason.contains(&table),
        "names the action and the resource: {reason}"
    );
    let state = world
        .state("uk-shop", &id)
        .await
        .unwrap_or_else(|| panic!("no sync state"));
    assert_eq!(state.status, SyncStatus::NeedsAttention);
    assert_eq!(
        state.last_error.map(|e| e.kind).as_deref(),
        Some("access_denied")
    );
    assert!(world.erp_sales(&format!("uk-shop/{id}")).await.is_empty());
}

#[tokio::test]
async fn an_unknown_sku_is_dead_lettered_with_a_reason_naming_it_and_needs_attention() {
    let world = World::start().await;
    let (order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let body = order.to_string().replace("IPOD2008RED", "IPOD2099GOLD");
    assert_eq!(
        world
            .post(world.signed("uk-shop", "orders/create", "wh-sku", &body))
            .await,
        200
    );
    world.drain(DRAIN).await;

    let parked = world.dead_letters().await;
    assert_eq!(parked.len(), 1, "{parked:?}");
    let reason = attribute(&parked[0], attr::REASON);
    assert!(reason.contains("IPOD2099GOLD"), "{reason}");
    assert_eq!(attribute(&parked[0], attr::ERROR_KIND), "unknown_sku");
    assert_eq!(attribute(&parked[0], attr::ERROR_CLASS), "permanent");
    assert_eq!(attribute(&parked[0], attr::FLOW), "order-sync");
    assert_eq!(
        attribute(&parked[0], attr::ENTITY),
        format!("order-sync/uk-shop/{id}")
    );
    assert_eq!(
        parked[0].body(),
        Some(body.as_str()),
        "the original payload is kept for the redrive"
    );

    let state = world
        .state("uk-shop", &id)
        .await
        .unwrap_or_else(|| panic!("no sync state"));
    assert_eq!(state.status, SyncStatus::NeedsAttention);
    let error = state.last_error.unwrap_or_else(|| panic!("no last error"));
    assert_eq!(error.kind, "unknown_sku");
    assert!(error.message.contains("IPOD2099GOLD"));
    // What `erpsync exceptions` lists, read as the operator (order-sync may not query).
    let attention = world
        .store_of(erpsync_tools::roles::OPERATOR)
        .needing_attention(Flow::OrderSync)
        .await
        .unwrap_or_default();
    assert!(attention.iter().any(|s| s.entity.entity_id == id));

    assert!(world.erp_sales(&format!("uk-shop/{id}")).await.is_empty());
}

#[tokio::test]
async fn an_erp_outage_is_retried_not_dead_lettered_and_ends_in_one_sale() {
    let (world, mut tryton) = World::builder()
        .own_tryton("outage")
        .start()
        .await
        .with_tryton();
    tryton.stop().await;

    let (order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    assert_eq!(
        world
            .post(world.signed("uk-shop", "orders/create", "wh-down", &order.to_string()))
            .await,
        200
    );
    let esm = world.event_source();
    for _ in 0..4 {
        let _ = esm.poll_once(Duration::from_secs(2)).await;
    }
    let state = world
        .state("uk-shop", &id)
        .await
        .unwrap_or_else(|| panic!("no sync state"));
    assert_eq!(state.status, SyncStatus::Retrying);
    assert!(state.attempts >= 1);
    assert_eq!(
        state.last_error.map(|e| e.kind).as_deref(),
        Some("erp_unavailable")
    );
    assert!(
        world.dead_letters().await.is_empty(),
        "an outage is not a reason for the DLQ"
    );
    assert_eq!(
        world.queue_depth("OrdersQueue").await,
        1,
        "the order waits on the queue"
    );

    tryton.resume().await.unwrap_or_else(|e| panic!("{e:#}"));
    world.drain(DRAIN).await;
    assert_eq!(world.erp_sales(&format!("uk-shop/{id}")).await.len(), 1);
    assert!(world.dead_letters().await.is_empty());
    assert_eq!(
        world.state("uk-shop", &id).await.map(|s| s.status),
        Some(SyncStatus::Synced)
    );
    tryton.stop().await;
}

#[tokio::test]
async fn a_failure_after_the_erp_create_is_recovered_by_reference_without_a_second_sale() {
    let stack = Stack::from_env().unwrap_or_else(|e| panic!("{e:#}"));
    let world = World::start_with(&stack.tryton_url, &stack.tryton_key, |erp| {
        Box::new(FaultyErp::new(erp, vec![Fault::AfterCreate]))
    })
    .await;
    let (order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    assert_eq!(
        world
            .post(world.signed("uk-shop", "orders/create", "wh-crash", &order.to_string()))
            .await,
        200
    );
    world.drain(DRAIN).await;

    let sales = world.erp_sales(&format!("uk-shop/{id}")).await;
    assert_eq!(sales.len(), 1, "{sales:?}");
    assert_eq!(
        sales[0]["state"], "processing",
        "the draft left behind was quoted and confirmed"
    );
    let state = world
        .state("uk-shop", &id)
        .await
        .unwrap_or_else(|| panic!("no sync state"));
    assert_eq!(state.status, SyncStatus::Synced);
    assert_eq!(state.erp_id, sales[0]["id"].as_i64());
    assert!(state.attempts >= 1, "the failed attempt is on record");
}

#[tokio::test]
async fn an_address_the_erp_cannot_take_needs_attention_naming_the_field() {
    let world = World::start().await;
    let (mut order, id) = fresh_order("shopify-orders-create-discount-code.json");
    let email = format!("nowhere.{id}@example.com");
    order["email"] = email.clone().into();
    order["customer"]["email"] = email.into();
    order["shipping_address"]["country_code"] = "XX".into();
    assert_eq!(
        world
            .post(world.signed("uk-shop", "orders/create", "wh-xx", &order.to_string()))
            .await,
        200
    );
    world.drain(DRAIN).await;

    let parked = world.dead_letters().await;
    assert_eq!(parked.len(), 1);
    assert_eq!(attribute(&parked[0], attr::ERROR_KIND), "unknown_country");
    let reason = attribute(&parked[0], attr::REASON);
    assert!(
        reason.contains("shipping_address") && reason.contains("XX"),
        "{reason}"
    );
    assert_eq!(
        world.state("uk-shop", &id).await.map(|s| s.status),
        Some(SyncStatus::NeedsAttention)
    );
    assert!(world.erp_sales(&format!("uk-shop/{id}")).await.is_empty());
}

#[tokio::test]
async fn a_failure_holds_back_the_rest_of_its_fifo_group_but_not_other_groups() {
    let stack = Stack::from_env().unwrap_or_else(|e| panic!("{e:#}"));
    let (first, first_id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let (other, other_id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let failing_reference = format!("uk-shop/{first_id}");
    let world = World::start_with(&stack.tryton_url, &stack.tryton_key, |erp| {
        Box::new(FaultyErp::new(
            erp,
            vec![Fault::LookupFails(failing_reference)],
        ))
    })
    .await;
    let group = format!("uk-shop:{first_id}");
    let mut event = order_event(&world, &first.to_string(), "m-1", &group, "orders/create");
    let mut update = order_event(&world, &first.to_string(), "m-2", &group, "orders/updated");
    let mut elsewhere = order_event(
        &world,
        &other.to_string(),
        "m-3",
        &format!("uk-shop:{other_id}"),
        "orders/create",
    );
    event.records.append(&mut update.records);
    event.records.append(&mut elsewhere.records);

    let response = order_sync::sqs_handler::handle(
        &world.orders,
        lambda_runtime::LambdaEvent::new(event.clone(), lambda_runtime::Context::default()),
    )
    .await;
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(
        failed,
        ["m-1", "m-2"],
        "the update waits behind its create; the other order goes on"
    );
    assert!(
        world
            .erp_sales(&format!("uk-shop/{first_id}"))
            .await
            .is_empty()
    );
    assert_eq!(
        world.erp_sales(&format!("uk-shop/{other_id}")).await.len(),
        1
    );

    // Redelivered, the group goes through in order; the other order replays.
    let again = order_sync::sqs_handler::handle(
        &world.orders,
        lambda_runtime::LambdaEvent::new(event, lambda_runtime::Context::default()),
    )
    .await;
    assert!(again.batch_item_failures.is_empty(), "{again:?}");
    assert_eq!(
        world.erp_sales(&format!("uk-shop/{first_id}")).await.len(),
        1
    );
    assert_eq!(
        world.erp_sales(&format!("uk-shop/{other_id}")).await.len(),
        1
    );
}

/// A world whose ERP never answers (nothing listens on its port), its order messages given
/// three receives.
async fn world_without_erp() -> World {
    let stack = Stack::from_env().unwrap_or_else(|e| panic!("{e:#}"));
    let closed = format!(
        "http://127.0.0.1:{}",
        erpsync_tools::stack::free_port().unwrap_or(9)
    );
    World::start_with_parameters(
        &closed,
        &stack.tryton_key,
        |erp| Box::new(erp),
        &[("OrdersMaxReceiveCount", "3")],
    )
    .await
}

#[tokio::test]
async fn when_retries_run_out_the_message_is_parked_with_its_history_and_needs_attention() {
    let world = world_without_erp().await;
    let (order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    assert_eq!(
        world
            .post(world.signed("uk-shop", "orders/create", "wh-gone", &order.to_string()))
            .await,
        200
    );
    world.drain(DRAIN).await;

    let parked = world.dead_letters().await;
    assert_eq!(
        parked.len(),
        1,
        "parked once, by order-sync, not again by the redrive policy"
    );
    assert_eq!(attribute(&parked[0], attr::ERROR_KIND), "retries_exhausted");
    assert_eq!(attribute(&parked[0], attr::ATTEMPTS), "3");
    let reason = attribute(&parked[0], attr::REASON);
    assert!(reason.contains("erp_unavailable"), "{reason}");
    let state = world
        .state("uk-shop", &id)
        .await
        .unwrap_or_else(|| panic!("no sync state"));
    assert_eq!(state.status, SyncStatus::NeedsAttention);
    assert_eq!(
        state.last_error.map(|e| e.kind).as_deref(),
        Some("retries_exhausted")
    );
}

/// A long outage: every batch's first order finds the ERP down and the others are held back
/// behind it, unattempted. On their last receive they are attempted too, so each is parked
/// with its reason and needs attention; returned unattempted, the redrive policy moved them
/// with no reason and left no state a person would see.
#[tokio::test]
async fn messages_held_back_through_an_outage_are_parked_with_a_reason_not_moved_silently() {
    let world = world_without_erp().await;
    let mut ids = Vec::new();
    for n in 0..3 {
        let (order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
        assert_eq!(
            world
                .post(world.signed(
                    "uk-shop",
                    "orders/create",
                    &format!("wh-{n}"),
                    &order.to_string()
                ))
                .await,
            200
        );
        ids.push(id);
    }
    world.drain(DRAIN).await;

    let parked = world.dead_letters().await;
    assert_eq!(parked.len(), 3, "{:?}", parked_reasons(&world).await);
    for message in &parked {
        assert_eq!(attribute(message, attr::ERROR_KIND), "retries_exhausted");
        assert!(
            attribute(message, attr::REASON).contains("erp_unavailable"),
            "{}",
            attribute(message, attr::REASON)
        );
    }
    for id in &ids {
        let state = world.state("uk-shop", id).await;
        assert_eq!(
            state.map(|s| s.status),
            Some(SyncStatus::NeedsAttention),
            "order {id}"
        );
    }
}

/// Two versions of one order (one FIFO group) while the ERP is down: each is parked with its
/// reason, none moved by the queue without one. Received in one batch, the second is held
/// behind the first and parked behind it on the same last receive (before, it was returned
/// for the redrive policy to move silently: the outage chaos run met it); received after the
/// first is gone (moto hands a group's messages out one at a time), it is attempted itself.
#[tokio::test]
async fn two_versions_of_an_order_held_through_an_outage_are_both_parked_with_their_reason() {
    let world = world_without_erp().await;
    let (order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let update = erpsync_e2e::at_version(&order, "2026-11-29T16:00:00Z");
    for (topic, webhook, body) in [
        ("orders/create", "wh-c", &order),
        ("orders/updated", "wh-u", &update),
    ] {
        assert_eq!(
            world
                .post(world.signed("uk-shop", topic, webhook, &body.to_string()))
                .await,
            200
        );
    }
    world.drain(DRAIN).await;
    let parked = world.dead_letters().await;
    assert_eq!(parked.len(), 2, "{:?}", parked_reasons(&world).await);
    let kinds: Vec<String> = parked
        .iter()
        .map(|m| attribute(m, attr::ERROR_KIND).to_owned())
        .collect();
    assert_eq!(kinds, ["retries_exhausted", "retries_exhausted"]);
    for message in &parked {
        let reason = attribute(message, attr::REASON);
        assert!(
            reason.contains("erp_unavailable") || reason.contains("behind a failed message"),
            "{reason}"
        );
    }
    assert_eq!(
        world.state("uk-shop", &id).await.map(|s| s.status),
        Some(SyncStatus::NeedsAttention)
    );
}

#[tokio::test]
async fn a_read_refused_at_once_is_tried_again_and_a_refused_write_is_not() {
    use erpsync_core::ports::SalesErp;
    use sandbox::proxy::{FaultProxy, ProxyFaults};

    let world = World::start().await;
    let proxy = FaultProxy::start(&world.erp_url, ProxyFaults::default())
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let erp = erpsync_connectors::TrytonClient::new(
        &proxy.url,
        secrecy::SecretString::from(world.erp_key.clone()),
        world.config.erp.clone(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    erp.warm_up().await;

    // Two 503s in a row: the read's own retries ride them out.
    proxy.fail_next(2);
    let found = erp.find_sale_by_reference("uk-shop/no-such-order").await;
    assert_eq!(found.map(|s| s.is_none()), Ok(true));
    assert_eq!(proxy.counts().error_before, 2);

    // Three: the read gives up and says the ERP is unavailable.
    proxy.fail_next(3);
    let failed = erp.find_sale_by_reference("uk-shop/no-such-order").await;
    assert_eq!(
        failed.err().map(|e| e.kind),
        Some("erp_unavailable".to_owned())
    );

    // A write is never repeated by the client: the flow checks what a lost answer did.
    proxy.fail_next(1);
    let before = proxy.counts();
    // (confirm: quoting first reads the sale's gift-card lines, a read of its own)
    let refused = erp.confirm_sale(1).await;
    assert_eq!(
        refused.err().map(|e| e.kind),
        Some("erp_unavailable".to_owned())
    );
    let after = proxy.counts();
    assert_eq!(after.error_before - before.error_before, 1);
    assert_eq!(
        after.forwarded, before.forwarded,
        "the write was not sent again"
    );
}

#[tokio::test]
async fn a_read_of_a_sale_deleted_meanwhile_is_a_retryable_conflict_not_a_person_s_problem() {
    use erpsync_core::error::ErrorClass;
    use erpsync_core::ports::SalesErp;

    let world = World::start().await;
    let (order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    world
        .deliver("uk-shop", "orders/create", "wh-read", &order)
        .await;
    let reference = format!("uk-shop/{id}");
    let synced = world.erp_sales(&reference).await[0].clone();
    let kept = synced["id"].as_i64().unwrap_or_default();
    // Another attempt's duplicate draft, deleted by that attempt while this one reads it.
    let draft = world
        .erp_create(
            "sale.sale",
            serde_json::json!({"party": synced["party"], "reference": reference}),
        )
        .await;
    let dropped = world
        .reviewer
        .drop_duplicate_drafts(&reference, kept)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(dropped, vec![draft]);

    let read = world.reviewer.sale_details(draft).await;
    let error = read.err().unwrap_or_else(|| panic!("the sale is gone"));
    assert_eq!(error.kind, "erp_conflict", "{error}");
    assert_eq!(error.class, ErrorClass::Retryable, "{error}");
}

/// The ERP key rotated under a running function: Tryton refuses the key in use; the client
/// reads the secret again (at most once a minute) and goes on with the new one, so a
/// rotation needs no redeploy. Before, every order was retried with the old key until the
/// function happened to restart.
#[tokio::test]
async fn a_rotated_erp_key_is_read_again_when_tryton_refuses_the_one_in_use() {
    use erpsync_core::ports::SalesErp;
    let stack = Stack::from_env().unwrap_or_else(|e| panic!("{e:#}"));
    let world = World::start().await;
    let revoked = || secrecy::SecretString::from("a-key-since-revoked".to_owned());
    let stale = erpsync_connectors::TrytonClient::new(
        &stack.tryton_url,
        revoked(),
        world.config.erp.clone(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let refused = stale.find_sale_by_reference("uk-shop/none").await.err();
    assert_eq!(
        refused.as_ref().map(|e| e.kind.as_str()),
        Some("erp_auth"),
        "{refused:?}"
    );

    let secrets = std::sync::Arc::new(erpsync_aws::secrets::SecretCache::new(
        aws_sdk_secretsmanager::Client::new(world.sdk_of("OrderSyncFunction")),
        Duration::from_secs(300),
    ));
    let rotated = erpsync_connectors::TrytonClient::new(
        &stack.tryton_url,
        revoked(),
        world.config.erp.clone(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
    .with_key_source(secrets.credential(&world.config.erp.api_key_secret));
    let found = rotated.find_sale_by_reference("uk-shop/none").await;
    assert!(matches!(found, Ok(None)), "{found:?}");
}
