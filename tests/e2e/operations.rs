//! The operator's tools against the local stack, with dead letters made by failing flows:
//! list, show, redrive (effect once), discard (recorded), status and exceptions; and the
//! `erpsync` binary itself, finding the stage's resources by name.

use erpsync_core::model::state::{EntityRef, SyncStatus};
use erpsync_core::ports::SyncStateStore;
use erpsync_e2e::{Stack, World, fresh_order};
use erpsync_tools::ops::{self, Deployment, Selection};
use serde_json::{Value, json};

/// The operator's tools under the operator's role (the template's OperatorPolicy).
fn deployment(world: &World) -> Deployment {
    world.operator()
}

/// An order for a SKU nobody has set up yet: parked by order-sync, needing a person.
async fn order_for_a_new_product(world: &World, webhook_id: &str) -> (Value, String, String) {
    let (mut order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let sku = format!("NEW-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]).to_uppercase();
    order["line_items"][1]["sku"] = json!(sku);
    world
        .deliver("uk-shop", "orders/create", webhook_id, &order)
        .await;
    (order, id, sku)
}

/// The product is created in the ERP, as the reason says to.
async fn create_product(world: &World, sku: &str) {
    let category = world
        .erp_search("product.category", json!([["name", "=", "Goods"]]), &[])
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    world
        .erp_create(
            "product.template",
            json!({"name": sku, "code": sku, "type": "goods", "default_uom": 1, "sale_uom": 1, "salable": true,
                   "list_price": "10", "account_category": category[0]["id"],
                   "products": [["create", [{}]]]}),
        )
        .await;
}

#[tokio::test]
async fn a_parked_order_is_listed_shown_and_redriven_to_one_sale_once_fixed() {
    let world = World::start().await;
    let deployment = deployment(&world);
    let (order, id, sku) = order_for_a_new_product(&world, "wh-cli-1").await;

    let letters = ops::dead_letters(&deployment, Some("order-sync"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(letters.len(), 1, "{letters:?}");
    let letter = &letters[0];
    assert_eq!(letter.entity, format!("order-sync/uk-shop/{id}"));
    assert_eq!(
        (letter.error_class.as_str(), letter.error_kind.as_str()),
        ("permanent", "unknown_sku")
    );
    assert!(letter.reason.contains(&sku), "{}", letter.reason);
    assert!(!letter.first_failure.is_empty() && !letter.last_failure.is_empty());
    assert_eq!(letter.source_queue, "OrdersQueue");
    assert!(
        ops::dead_letters(&deployment, Some("return-sync"))
            .await
            .unwrap_or_default()
            .is_empty(),
        "filtered by flow"
    );
    let shown = ops::dead_letter(&deployment, &letter.id)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
        .unwrap_or_else(|| panic!("not found"));
    assert_eq!(
        serde_json::from_str::<Value>(&shown.body).unwrap_or_default(),
        order
    );
    assert_eq!(
        shown.group_id.as_deref(),
        Some(format!("uk-shop:{id}").as_str())
    );

    create_product(&world, &sku).await;
    let moved = ops::redrive(&deployment, Selection::All { flow: None }, &|_| {})
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(moved, std::slice::from_ref(&letter.id));
    world.drain(std::time::Duration::from_secs(60)).await;
    assert!(
        world.dead_letters().await.is_empty(),
        "{:?}",
        erpsync_e2e::parked_reasons(&world).await
    );
    let reference = format!("uk-shop/{id}");
    assert_eq!(world.erp_sales(&reference).await.len(), 1);
    // In the ERP now; the new product has no stock yet, so the order waits backordered.
    let state = world
        .state("uk-shop", &id)
        .await
        .unwrap_or_else(|| panic!("no state"));
    assert_eq!(state.status, SyncStatus::Backordered, "{state:?}");
    assert!(
        state
            .note
            .unwrap_or_default()
            .contains(&format!("{sku} short by 1"))
    );
    // The shop's retry of the original delivery changes nothing.
    world
        .deliver("uk-shop", "orders/create", "wh-cli-1-retry", &order)
        .await;
    assert_eq!(world.erp_sales(&reference).await.len(), 1, "one sale, once");
}

#[tokio::test]
async fn a_discarded_message_is_gone_and_sync_state_says_who_closed_it_and_why() {
    let world = World::start().await;
    let deployment = deployment(&world);
    let (_, id, _) = order_for_a_new_product(&world, "wh-cli-2").await;
    let letter = ops::dead_letters(&deployment, None)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
        .pop()
        .unwrap_or_else(|| panic!("nothing parked"));
    ops::discard(
        &deployment,
        &letter.id,
        "test order, never shipped",
        "ops-lead",
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(
        ops::dead_letters(&deployment, None)
            .await
            .unwrap_or_default()
            .is_empty()
    );
    let state = world
        .state("uk-shop", &id)
        .await
        .unwrap_or_else(|| panic!("no state"));
    assert_eq!(state.status, SyncStatus::Resolved);
    let note = state.note.unwrap_or_default();
    assert!(
        note.contains("ops-lead") && note.contains("test order, never shipped"),
        "{note}"
    );
    assert!(
        ops::discard(&deployment, &letter.id, "again", "ops-lead")
            .await
            .is_err(),
        "a message is discarded once"
    );
}

#[tokio::test]
async fn status_and_exceptions_after_a_mixed_run() {
    let world = World::start().await;
    let deployment = deployment(&world);
    let (good, good_id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    world
        .deliver("uk-shop", "orders/create", "wh-good", &good)
        .await;
    let (_, bad_id, sku) = order_for_a_new_product(&world, "wh-bad").await;

    let status = ops::status(&deployment)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let orders = &status.counts["order-sync"];
    assert_eq!(orders.get("synced"), Some(&1), "{orders:?}");
    assert_eq!(orders.get("needs-attention"), Some(&1), "{orders:?}");
    assert_eq!(status.needs_attention, 1);
    let dead = status
        .queues
        .iter()
        .find(|q| q.queue == "OrdersDeadLetterQueue")
        .unwrap_or_else(|| panic!("{:?}", status.queues));
    assert_eq!(dead.depth, 1);
    assert!(dead.oldest.is_some());
    assert_eq!(ops::parked(&status, &deployment), 1);

    let exceptions = ops::exceptions(&deployment)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(exceptions.len(), 1, "{exceptions:?}");
    assert_eq!(exceptions[0].entity, format!("order-sync/uk-shop/{bad_id}"));
    assert_eq!(exceptions[0].error_kind.as_deref(), Some("unknown_sku"));
    let action = exceptions[0].note.clone().unwrap_or_default();
    assert!(
        action.contains(&sku) && action.contains("redrive"),
        "says what to do: {action}"
    );
    let good_state = world
        .orders
        .store
        .get(&EntityRef::order(
            &erpsync_core::model::ids::ChannelId::parse("uk-shop")
                .unwrap_or_else(|e| panic!("{e}")),
            &good_id,
        ))
        .await
        .ok()
        .flatten();
    assert_eq!(good_state.map(|s| s.status), Some(SyncStatus::Synced));
}

/// The binary finds the stage's queues and table by the names SAM gives them.
#[tokio::test]
async fn the_cli_binary_reports_with_exit_codes_a_script_can_use() {
    let world = World::start().await;
    let stack = Stack::from_env().unwrap_or_else(|e| panic!("{e:#}"));
    order_for_a_new_product(&world, "wh-cli-bin").await;
    let binary = erpsync_tools::project_root().join("target/debug/erpsync");
    // The binary as an operator runs it: the operator role's credentials, no more.
    let environment = erpsync_tools::stack::aws_environment(
        &stack.aws_endpoint,
        world
            .roles
            .get(erpsync_tools::roles::OPERATOR)
            .unwrap_or_else(|e| panic!("{e:#}"))
            .environment(),
    );
    let run = |args: &[&str]| {
        let output = std::process::Command::new(&binary)
            .args(["--stage", &world.stage])
            .args(args)
            .envs(environment.clone())
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", binary.display()));
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, out, err) = run(&["dlq", "list", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let listed: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{out}");
    let id = listed[0]["id"].as_str().unwrap_or_default().to_owned();

    let (code, out, _) = run(&["dlq", "show", &id]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("unknown_sku") && out.contains("payload"),
        "{out}"
    );
    let (code, _, _) = run(&["dlq", "show", "no-such-message"]);
    assert_eq!(code, Some(1));

    let (code, out, _) = run(&["status"]);
    assert_eq!(code, Some(1), "something needs a person: {out}");
    assert!(out.contains("OrdersDeadLetterQueue"), "{out}");
    let (code, out, _) = run(&["exceptions", "--json"]);
    assert_eq!(code, Some(1));
    assert!(out.contains("unknown_sku"), "{out}");

    let (code, _, err) = run(&["dlq", "discard", &id, "--reason", "duplicate test order"]);
    assert_eq!(code, Some(0), "{err}");
    let (code, out, _) = run(&["exceptions"]);
    assert_eq!((code, out.trim()), (Some(0), "nothing needs attention"));
    // Another stage's queues are not the operator's to read.
    world.expect_refusals();
    let output = std::process::Command::new(&binary)
        .args(["--stage", "no-such-stage", "status"])
        .envs(environment)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "cannot run: {err}");
    assert!(err.contains("no-such-stage"), "says why: {err}");
}

#[tokio::test]
async fn the_audit_finds_planted_duplicates_unknown_skus_unmapped_methods_and_customers() {
    use sandbox::ShopSetup;
    const UK: &str = "erpsync-uk.myshopify.com";
    // The store sells one SKU twice over, and one the ERP has never heard of.
    let built = World::builder()
        .own_tryton("audit")
        .shop(
            "uk-shop",
            ShopSetup::with_skus(
                UK,
                "gid://shopify/Location/1",
                &[
                    "IPOD2008RED",
                    "IPOD2008RED",
                    "GHOST-SKU",
                    "IPOD-BLACK-LEGACY",
                    "IPOD-TRIO",
                ],
                2000.0,
                1000.0,
            ),
        )
        .configure(|config| {
            // Mapped at a rate its ERP tax does not charge (the ERP's UK VAT is 20 %).
            if let Some(vat) = config.channels[0]
                .tax_codes
                .iter_mut()
                .find(|t| t.shop_tax == "GB VAT")
            {
                vat.rate_percent = rust_decimal::Decimal::from(21);
            }
        })
        .start()
        .await;
    let (world, mut tryton, sandbox) = built.parts();
    // A second product whose code differs from an existing one only by case, and two
    // customers under one e-mail.
    create_product(&world, "wool-socks").await;
    for (name, email) in [
        ("Twin One", "Twin@Example.com"),
        ("Twin Two", " twin@example.com"),
    ] {
        world
            .erp_create(
                "party.party",
                json!({"name": name, "contact_mechanisms": [["create", [{"type": "email", "value": email}]]]}),
            )
            .await;
    }
    // A recent order by carrier pigeon, taxed with a tax nobody mapped.
    let (mut order, _) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    order["updated_at"] = json!(
        time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default()
    );
    order["shipping_lines"][0]["code"] = json!("Carrier Pigeon");
    order["shipping_lines"][0]["title"] = json!("Carrier Pigeon");
    order["line_items"][1]["tax_lines"] =
        json!([{"title": "Moon Tax", "rate": 0.5, "price": "10.00"}]);
    sandbox
        .shops
        .get(UK)
        .unwrap_or_else(|| panic!("no shop"))
        .place_order(order);

    let erp = erpsync_connectors::TrytonClient::new(
        &tryton.url,
        secrecy::SecretString::from(tryton.api_key.clone()),
        world.config.erp.clone(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let admin = erpsync_connectors::shopify::ShopifyAdmin::new(
        &sandbox.admin_url(UK),
        "2026-07",
        secrecy::SecretString::from(format!("shpat_{UK}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let shops = std::collections::HashMap::from([("uk-shop".to_owned(), admin)]);
    let report = erpsync_tools::audit::audit(
        &world.config,
        &erp,
        &shops,
        time::OffsetDateTime::now_utc() - time::Duration::days(1),
        &|_| {},
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));
    let rendered = erpsync_tools::audit::render(&report);

    assert!(
        report
            .erp_duplicate_skus
            .iter()
            .any(|d| d.value == "WOOL-SOCKS" && d.count == 2 && d.spellings.len() == 2),
        "{rendered}"
    );
    assert!(
        report
            .duplicate_customers
            .iter()
            .any(|g| g.email == "twin@example.com" && g.parties.len() == 2),
        "{rendered}"
    );
    let uk = report
        .channels
        .iter()
        .find(|c| c.channel == "uk-shop")
        .unwrap_or_else(|| panic!("{rendered}"));
    assert_eq!(uk.duplicate_skus.len(), 1, "{rendered}");
    assert_eq!(uk.duplicate_skus[0].value, "IPOD2008RED");
    let unknown: Vec<&str> = uk.unknown_skus.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        unknown,
        ["GHOST-SKU"],
        "aliases and bundles are known: {rendered}"
    );
    assert_eq!(uk.orders_checked, 1);
    assert!(
        uk.unmapped.delivery_methods.contains_key("Carrier Pigeon"),
        "{rendered}"
    );
    assert!(
        uk.unmapped.taxes.keys().any(|k| k.starts_with("Moon Tax")),
        "{rendered}"
    );
    assert_eq!(
        uk.tax_rates,
        [r#""GB VAT" (GB, 21%) -> "UK VAT 20%": the ERP tax charges 20%"#],
        "{rendered}"
    );
    assert!(report.findings() >= 7, "{rendered}");
    assert!(
        rendered.contains("[channels.delivery_methods]"),
        "says what to do: {rendered}"
    );
    tryton.stop().await;
}

#[tokio::test]
async fn a_discarded_order_is_replayed_from_its_kept_payload_once_fixed_and_only_once() {
    let world = World::start().await;
    let deployment = deployment(&world);
    let (_, id, sku) = order_for_a_new_product(&world, "wh-replay").await;
    let letter = ops::dead_letters(&deployment, None)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
        .pop()
        .unwrap_or_else(|| panic!("nothing parked"));
    ops::discard(
        &deployment,
        &letter.id,
        "product not set up yet",
        "ops-lead",
    )
    .await
    .unwrap_or_else(|e| panic!("{e:#}"));

    create_product(&world, &sku).await;
    let channel =
        erpsync_core::model::ids::ChannelId::parse("uk-shop").unwrap_or_else(|e| panic!("{e}"));
    for _ in 0..2 {
        let sent = ops::replay(&deployment, &channel, &id)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(sent.is_some());
        world.drain(std::time::Duration::from_secs(60)).await;
    }
    assert_eq!(
        world.erp_sales(&format!("uk-shop/{id}")).await.len(),
        1,
        "replayed twice, one sale"
    );
    assert_ne!(
        world.state("uk-shop", &id).await.map(|s| s.status),
        Some(SyncStatus::Resolved),
        "the order is in the ERP now"
    );
    assert_eq!(
        ops::replay(&deployment, &channel, "no-such-order")
            .await
            .unwrap_or_else(|e| panic!("{e:#}")),
        None
    );
}

#[tokio::test]
async fn redrive_all_moves_every_parked_message_of_a_fifo_queue_beyond_the_first_ten_and_behind_group_heads()
 {
    let world = World::start().await;
    let deployment = deployment(&world);
    let sku = format!("NEW-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]).to_uppercase();
    // Twelve orders for a product nobody has set up, each delivered under two topics: two
    // parked messages per FIFO group, the second behind the first.
    let mut ids = Vec::new();
    for i in 0..12 {
        let (mut order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
        order["line_items"][1]["sku"] = json!(sku);
        world
            .deliver("uk-shop", "orders/create", &format!("wh-many-{i}"), &order)
            .await;
        world
            .deliver(
                "uk-shop",
                "orders/paid",
                &format!("wh-many-paid-{i}"),
                &order,
            )
            .await;
        ids.push(id);
    }
    let letters = ops::dead_letters(&deployment, Some("order-sync"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let mut entities: Vec<&str> = letters.iter().map(|l| l.entity.as_str()).collect();
    entities.sort_unstable();
    entities.dedup();
    assert_eq!(
        entities.len(),
        12,
        "every parked order listed, not only the first ten messages: {entities:?}"
    );

    create_product(&world, &sku).await;
    let moved = ops::redrive(&deployment, Selection::All { flow: None }, &|_| {})
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(moved.len(), 24, "both messages of every group: {moved:?}");
    world.drain(std::time::Duration::from_secs(60)).await;
    assert!(
        world.dead_letters().await.is_empty(),
        "{:?}",
        erpsync_e2e::parked_reasons(&world).await
    );
    for id in &ids {
        assert_eq!(
            world.erp_sales(&format!("uk-shop/{id}")).await.len(),
            1,
            "order {id} once"
        );
    }
}
