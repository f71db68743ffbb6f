//! `erpsync demo`: the whole local stack with the functions under `cargo lambda watch`,
//! signed Shopify webhooks through the function URL, the emulated SQS trigger, a real
//! Tryton; then a report of what happened, read back from the ERP, the table and the DLQ.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use erpsync_aws::dynamo::DynamoStore;
use erpsync_aws::sqs::attr;
use erpsync_core::config::Config;
use erpsync_core::model::ids::ChannelId;
use erpsync_core::model::state::EntityRef;
use erpsync_core::ports::SyncStateStore;
use erpsync_tools::desk::ErpDesk;
use erpsync_tools::local::{COURIER_SECRET, Functions, LocalDeployment, LocalStack, SHOPS, SKUS};
use erpsync_tools::queues;
use erpsync_tools::stack::{project_root, stack_dir};
use erpsync_tools::template::Template;
use sandbox::Sandbox;
use sandbox::webhooks;
use secrecy::SecretString;
use serde_json::{Value, json};

struct Delivery {
    label: &'static str,
    channel: &'static str,
    topic: &'static str,
    webhook_id: &'static str,
    body: String,
    /// Sign with this instead of the channel's secret (the forged delivery).
    forged_with: Option<&'static str>,
    order_id: String,
}

fn fixture(root: &Path, name: &str) -> anyhow::Result<Value> {
    let path = root.join("tests/fixtures").join(name);
    Ok(serde_json::from_str(
        &std::fs::read_to_string(&path).with_context(|| path.display().to_string())?,
    )?)
}

fn deliveries(root: &Path) -> anyhow::Result<Vec<Delivery>> {
    let multiline = fixture(root, "shopify-orders-create-multiline-discount-tax.json")?;
    let discount = fixture(root, "shopify-orders-create-discount-code.json")?;
    // A third order for the EU store: the documented order, in EUR, from a new customer in Berlin.
    let mut eu = multiline.clone();
    eu["id"] = json!(450789470u64);
    eu["name"] = json!("#1003");
    eu["currency"] = json!("EUR");
    eu["email"] = json!("klara.schmidt@example.de");
    eu["customer"]["email"] = json!("klara.schmidt@example.de");
    eu["customer"]["first_name"] = json!("Klara");
    eu["customer"]["last_name"] = json!("Schmidt");
    for address in ["billing_address", "shipping_address"] {
        eu[address] = json!({"first_name": "Klara", "last_name": "Schmidt", "name": "Klara Schmidt",
            "address1": "Torstraße 1", "city": "Berlin", "zip": "10119", "country_code": "DE", "country": "Germany"});
    }
    if let Some(lines) = eu["line_items"].as_array_mut() {
        for line in lines {
            line["tax_lines"] = json!([{"title": "MwSt", "rate": 0.19, "price": "37.81"}]);
        }
    }
    eu["shipping_lines"][0]["code"] = json!("DHL Paket");
    eu["shipping_lines"][0]["title"] = json!("DHL Paket");
    let mut unknown_sku = discount.clone();
    unknown_sku["id"] = json!(1073459999u64);
    unknown_sku["name"] = json!("#1004");
    unknown_sku["line_items"][0]["sku"] = json!("IPOD2099GOLD");
    let id = |order: &Value| order["id"].to_string();
    Ok(vec![
        Delivery {
            label: "3 lines, order discount, existing customer",
            channel: "uk-shop",
            topic: "orders/create",
            webhook_id: "demo-wh-1",
            body: multiline.to_string(),
            forged_with: None,
            order_id: id(&multiline),
        },
        Delivery {
            label: "discount code, new customer",
            channel: "uk-shop",
            topic: "orders/create",
            webhook_id: "demo-wh-2",
            body: discount.to_string(),
            forged_with: None,
            order_id: id(&discount),
        },
        Delivery {
            label: "EU store in EUR, new customer",
            channel: "eu-shop",
            topic: "orders/create",
            webhook_id: "demo-wh-3",
            body: eu.to_string(),
            forged_with: None,
            order_id: id(&eu),
        },
        Delivery {
            label: "duplicate delivery of the first",
            channel: "uk-shop",
            topic: "orders/create",
            webhook_id: "demo-wh-1",
            body: multiline.to_string(),
            forged_with: None,
            order_id: id(&multiline),
        },
        Delivery {
            label: "forged signature",
            channel: "uk-shop",
            topic: "orders/create",
            webhook_id: "demo-wh-5",
            body: discount.to_string(),
            forged_with: Some("an-attackers-guess"),
            order_id: id(&discount),
        },
        Delivery {
            label: "unknown SKU IPOD2099GOLD",
            channel: "uk-shop",
            topic: "orders/create",
            webhook_id: "demo-wh-6",
            body: unknown_sku.to_string(),
            forged_with: None,
            order_id: id(&unknown_sku),
        },
    ])
}

pub async fn run() -> anyhow::Result<()> {
    let root = project_root();
    let run_dir = stack_dir().join(format!("demo-{}", std::process::id()));
    std::fs::create_dir_all(&run_dir)?;
    println!(
        "erpsync demo: starting moto, Tryton and the functions (cargo lambda watch) on loopback..."
    );
    let result = match LocalStack::start(&root, &run_dir, "demo").await {
        Ok(mut stack) => {
            let result = demo(&root, &run_dir, &mut stack).await;
            stack.stop().await;
            result
        }
        Err(error) => Err(error),
    };
    if result.is_ok() {
        println!("\nDone: the stack is stopped.");
    }
    match &result {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&run_dir);
        }
        Err(_) => eprintln!("logs kept in {}", run_dir.display()),
    }
    result
}

async fn demo(root: &Path, run_dir: &Path, stack: &mut LocalStack) -> anyhow::Result<()> {
    let LocalDeployment {
        sdk,
        sandbox,
        config,
        resources,
        webhook_secrets: secrets,
        ..
    } = &stack.deployment;
    let functions = &stack.functions;
    let desk = ErpDesk::new(&stack.tryton.url, &stack.tryton.api_key);
    let outcome = match drive(root, sdk, stack, config, resources, secrets, sandbox).await {
        Ok(()) => match catalogue(functions, sandbox).await {
            Ok(()) => close_the_loop(root, stack, secrets, sandbox, &desk).await,
            Err(error) => Err(error),
        },
        Err(error) => Err(error),
    };
    stack.functions.stop().await;
    outcome?;
    // A refusal a function swallowed (a fallback, a warning) would not show above.
    let refused = erpsync_tools::stack::iam_denials(run_dir, "demo");
    if !refused.is_empty() {
        bail!(
            "IAM refused calls the template should grant:\n  {}",
            refused.join("\n  ")
        );
    }
    println!("\nIAM: every call ran under its function's role from the template; none refused.");
    Ok(())
}

/// The rest of the order's life: the warehouse ships #1001 with a tracking number,
/// shipment-sync's schedule makes the fulfilment, the courier reports delivery, the customer
/// sends the item back and Shopify's refund becomes a return and a credit note.
async fn close_the_loop(
    root: &Path,
    stack: &LocalStack,
    secrets: &HashMap<String, String>,
    sandbox: &Sandbox,
    desk: &ErpDesk,
) -> anyhow::Result<()> {
    let functions = &stack.functions;
    let http = reqwest::Client::new();
    let order = fixture(root, "shopify-orders-create-multiline-discount-tax.json")?;
    let order_id = order["id"].to_string();
    let reference = format!("uk-shop/{order_id}");
    let (uk, _) = SHOPS[0];
    let shop = sandbox.shops.get(uk).context("the UK sandbox store")?;
    pay(stack, secrets, desk, &http, &reference).await?;
    println!(
        "\nThe warehouse ships #1001 (tracking RM123456785GB); shipment-sync's schedule fires:"
    );
    desk.dispatch_part(&reference, &[], Some("RM123456785GB"))
        .await?;
    let schedules = Template::project()?.schedules()?;
    let shipments = schedules
        .iter()
        .find(|s| s.function == "shipment-sync")
        .context("the template has no shipment-sync schedule")?;
    let run = shipments
        .fire(&http, functions.base(&shipments.function)?)
        .await?;
    println!("  {}: {run}", shipments.name);

    let courier_url = functions.url("courier-webhook")?;
    let event = sandbox::courier::tracker_updated(
        "evt_demo_delivered",
        &sandbox::courier::TrackerUpdate {
            tracking_code: "RM123456785GB",
            carrier: "RoyalMail",
            status: "delivered",
            message: "Delivered to the front door",
            at: "2026-11-29T12:00:00Z",
        },
    );
    let status = sandbox::courier::send(
        &http,
        &courier_url,
        &event.to_string(),
        &SecretString::from(COURIER_SECRET.to_owned()),
    )
    .await?;
    println!("  the courier (EasyPost simulator) reports delivery -> HTTP {status}");
    stack
        .mapping("ShipmentsQueue")
        .await?
        .drain(Duration::from_secs(120))
        .await
        .context("draining ShipmentsQueue")?;
    let order_number: u64 = order_id.parse()?;
    for fulfilment in shop.fulfillments(order_number) {
        let tracking = fulfilment.tracking.first();
        println!(
            "  fulfilment {} ({} item(s)), {} {}, events: {}",
            fulfilment.id,
            fulfilment.line_items.iter().map(|(_, q)| q).sum::<u32>(),
            tracking.and_then(|t| t.company.as_deref()).unwrap_or("-"),
            tracking.and_then(|t| t.url.as_deref()).unwrap_or("-"),
            fulfilment
                .events
                .iter()
                .map(|e| e.status.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    println!(
        "  the store shows the order {}",
        shop.fulfillment_status(order_number).unwrap_or_default()
    );

    println!("\nThe customer returns the red iPod; Shopify sends refunds/create:");
    let mut refund = fixture(root, "shopify-refunds-create.json")?;
    // After dispatch, at what the red iPod cost (199.00 less its 3.33 discount) and the 6 % on it.
    let returned = &mut refund["refund_line_items"][0];
    returned["restock_type"] = json!("return");
    returned["line_item"]["fulfillment_status"] = json!("fulfilled");
    returned["subtotal_set"]["shop_money"]["amount"] = json!("195.67");
    returned["total_tax_set"]["shop_money"]["amount"] = json!("11.74");
    refund["transactions"][0]["amount"] = json!("207.41");
    let delivery = webhooks::Delivery {
        shop_domain: uk,
        topic: "refunds/create",
        webhook_id: "demo-wh-refund",
        body: &refund.to_string(),
    };
    let status = webhooks::deliver(
        &http,
        &functions.url("shop-webhook")?,
        &delivery,
        &SecretString::from(secrets.get("uk-shop").cloned().unwrap_or_default()),
    )
    .await?;
    println!("  refund {} -> HTTP {status}", refund["id"]);
    stack
        .mapping("ReturnsQueue")
        .await?
        .drain(Duration::from_secs(120))
        .await
        .context("draining ReturnsQueue")?;
    let returns = desk
        .search(
            "sale.sale",
            json!([[
                "reference",
                "=",
                format!("{reference}/refund/{}", refund["id"])
            ]]),
            &[
                "number",
                "state",
                "shipment_returns.state",
                "invoices.number",
                "invoices.state",
                "invoices.total_amount",
            ],
        )
        .await?;
    for sale in &returns {
        println!(
            "  return sale {} ({}), goods back: {}, credit note {} {} ({})",
            sale["number"].as_str().unwrap_or("?"),
            sale["state"].as_str().unwrap_or("?"),
            sale["shipment_returns"][0]["state"].as_str().unwrap_or("-"),
            sale["invoices"][0]["number"].as_str().unwrap_or("-"),
            sale["invoices"][0]["total_amount"]["decimal"]
                .as_str()
                .unwrap_or("?"),
            sale["invoices"][0]["state"].as_str().unwrap_or("?"),
        );
    }
    if returns.len() != 1 {
        bail!("the refund made {} return sales", returns.len());
    }
    finance(stack).await
}

/// The money: #1001 paid partly with a gift card and the rest by card (the card's transaction
/// delivered twice, as Shopify may), #1002 by card; each an `order_transactions/create`.
async fn pay(
    stack: &LocalStack,
    secrets: &HashMap<String, String>,
    desk: &ErpDesk,
    http: &reqwest::Client,
    reference: &str,
) -> anyhow::Result<()> {
    let (uk, _) = SHOPS[0];
    let sales = desk
        .search(
            "sale.sale",
            json!([["reference", "like", "uk-shop/%"]]),
            &["reference", "number", "total_amount"],
        )
        .await?;
    println!("\nThe customers paid at checkout; Shopify sends order_transactions/create:");
    let mut transactions = Vec::new();
    for (index, sale) in sales.iter().enumerate() {
        let sale_reference = sale["reference"].as_str().unwrap_or_default();
        let order_id: u64 = sale_reference
            .strip_prefix("uk-shop/")
            .and_then(|id| id.parse().ok())
            .context("a uk-shop sale reference")?;
        let total: rust_decimal::Decimal = sale["total_amount"]["decimal"]
            .as_str()
            .unwrap_or("0")
            .parse()?;
        let id = 7_000_000_000 + 10 * index as u64;
        if sale_reference == reference {
            let gift = rust_decimal::Decimal::new(5000, 2);
            transactions.push((order_id, id, "gift_card", gift));
            transactions.push((order_id, id + 1, "shopify_payments", total - gift));
            transactions.push((order_id, id + 1, "shopify_payments", total - gift));
        } else {
            transactions.push((order_id, id, "shopify_payments", total));
        }
    }
    for (delivery, (order_id, id, gateway, amount)) in transactions.iter().enumerate() {
        let body = json!({
            "id": id, "order_id": order_id, "kind": "sale", "gateway": gateway,
            "status": "success", "amount": amount.to_string(), "currency": "USD",
            "processed_at": "2026-11-28T10:00:00Z", "test": false,
            "admin_graphql_api_id": format!("gid://shopify/OrderTransaction/{id}")
        });
        let webhook_id = format!("demo-wh-txn-{delivery}");
        let status = webhooks::deliver(
            http,
            &stack.functions.url("shop-webhook")?,
            &webhooks::Delivery {
                shop_domain: uk,
                topic: "order_transactions/create",
                webhook_id: &webhook_id,
                body: &body.to_string(),
            },
            &SecretString::from(secrets.get("uk-shop").cloned().unwrap_or_default()),
        )
        .await?;
        println!("  order {order_id}: {amount} via {gateway} (transaction {id}) -> HTTP {status}");
    }
    stack
        .mapping("ReturnsQueue")
        .await?
        .drain(Duration::from_secs(120))
        .await
        .context("draining ReturnsQueue")?;
    let invoiced = desk
        .search(
            "sale.sale",
            json!([["reference", "like", "uk-shop/%"]]),
            &[
                "number",
                "total_amount",
                "invoices.number",
                "invoices.state",
                "payments.amount",
                "payments.journal.name",
            ],
        )
        .await?;
    for sale in &invoiced {
        let payments: Vec<String> = sale["payments"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                format!(
                    "{} {}",
                    p["amount"]["decimal"].as_str().unwrap_or("?"),
                    p["journal"]["name"].as_str().unwrap_or("?")
                )
            })
            .collect();
        println!(
            "  sale {} ({}): payments [{}], invoice {} {}",
            sale["number"].as_str().unwrap_or("?"),
            sale["total_amount"]["decimal"].as_str().unwrap_or("?"),
            payments.join(", "),
            sale["invoices"][0]["number"].as_str().unwrap_or("-"),
            sale["invoices"][0]["state"].as_str().unwrap_or("-"),
        );
        if sale["invoices"][0]["state"] != "paid" {
            bail!("sale {} is not paid", sale["number"]);
        }
    }
    Ok(())
}

/// Finance's month-end reading of the period: clean, or the demo fails.
async fn finance(stack: &LocalStack) -> anyhow::Result<()> {
    let deployment = &stack.deployment;
    let erp = erpsync_connectors::TrytonClient::new(
        &stack.tryton.url,
        SecretString::from(stack.tryton.api_key.clone()),
        deployment.config.erp.clone(),
    )?;
    let store = DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&deployment.sdk),
        deployment.resources.table.clone(),
    );
    let today = time::OffsetDateTime::now_utc().date();
    println!("\nerpsync finance report --from {today} --to {today}:");
    let report = erpsync_tools::finance::report(
        &deployment.config,
        &erp,
        &store,
        None,
        today,
        today,
        &|_| {},
    )
    .await?;
    for line in erpsync_tools::finance::render(&report).lines() {
        println!("  {line}");
    }
    if report.variances() > 0 {
        bail!(
            "the finance report found {} variance(s)",
            report.variances()
        );
    }
    Ok(())
}

/// Fires the stock and price schedules of infra/template.yaml once each (the full runs, then
/// the minute's change polls), as EventBridge Scheduler would, and shows the stores.
async fn catalogue(functions: &Functions, sandbox: &Sandbox) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let schedules = Template::project()?.schedules()?;
    println!("\nSchedules of infra/template.yaml, fired once each as EventBridge Scheduler would:");
    for schedule in schedules
        .iter()
        .filter(|s| s.function == "stock-sync" || s.function == "price-sync")
    {
        let answer = schedule
            .fire(&http, functions.base(&schedule.function)?)
            .await?;
        let failed: Vec<&Value> = answer
            .as_array()
            .into_iter()
            .flatten()
            .filter(|run| !run["error"].is_null())
            .collect();
        if !failed.is_empty() || !answer.is_array() {
            bail!("{} did not run cleanly: {answer}", schedule.name);
        }
        println!(
            "  fired {:<32} (every {:>4} s): {} channel run(s)",
            schedule.name,
            schedule.every.as_secs(),
            answer.as_array().map_or(0, Vec::len)
        );
    }
    println!("\nStock and prices the ERP pushed to the stores (the Shopify sandbox):");
    println!(
        "  {:<15} {:>10} {:>10} {:>12} {:>12}",
        "SKU", "UK stock", "EU stock", "UK GBP", "EU EUR"
    );
    for sku in SKUS {
        let [(uk, uk_location), (eu, eu_location)] = SHOPS;
        let show = |domain: &str, location: &str| {
            let shop = sandbox.shops.get(domain);
            let stock = shop
                .as_ref()
                .and_then(|s| s.available(sku, location))
                .map(|q| q.to_string());
            let price = shop
                .as_ref()
                .and_then(|s| s.price(sku))
                .filter(|p| p != "0.00");
            (
                stock.unwrap_or_else(|| "-".to_owned()),
                price.unwrap_or_else(|| "(shop's)".to_owned()),
            )
        };
        let ((uk_stock, uk_price), (eu_stock, eu_price)) =
            (show(uk, uk_location), show(eu, eu_location));
        println!("  {sku:<15} {uk_stock:>10} {eu_stock:>10} {uk_price:>12} {eu_price:>12}");
    }
    println!(
        "  (UK holds back a safety buffer of 2; the trio bundle follows its scarcest component;"
    );
    println!(
        "   UK prices come from the ERP's \"UK retail\" price list in GBP, EU prices are list prices in EUR)"
    );
    Ok(())
}

async fn drive(
    root: &Path,
    sdk: &aws_config::SdkConfig,
    stack: &LocalStack,
    config: &Config,
    resources: &erpsync_tools::stack::LocalResources,
    secrets: &HashMap<String, String>,
    sandbox: &Sandbox,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let esm = stack.mapping("OrdersQueue").await?;
    let poller = tokio::spawn(esm.run(stopped));

    let url = stack.functions.url("shop-webhook")?;
    println!("\nWebhooks sent to {url}:");
    let deliveries = deliveries(root)?;
    let mut answers = Vec::new();
    for delivery in &deliveries {
        let channel = config
            .channels
            .iter()
            .find(|c| c.id.as_str() == delivery.channel)
            .context("demo channel missing from the config")?;
        let secret = delivery
            .forged_with
            .map(str::to_owned)
            .or_else(|| secrets.get(delivery.channel).cloned())
            .unwrap_or_default();
        // The shop holds the orders it sends (their fulfilment orders too).
        if delivery.forged_with.is_none()
            && let Some(shop) = sandbox.shops.get(&channel.shop_domain)
        {
            shop.place_order(serde_json::from_str(&delivery.body)?);
        }
        // The sandbox delivers as the shop does: signed raw body, Shopify's headers.
        let signed = webhooks::Delivery {
            shop_domain: &channel.shop_domain,
            topic: delivery.topic,
            webhook_id: delivery.webhook_id,
            body: &delivery.body,
        };
        let status = webhooks::deliver(&http, &url, &signed, &SecretString::from(secret))
            .await
            .context("posting to the function URL")?;
        println!(
            "  {:<44} {:<8} order {:<12} -> HTTP {status}",
            delivery.label, delivery.channel, delivery.order_id
        );
        answers.push(status);
    }

    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &resources.table);
    let expected: Vec<&Delivery> = deliveries
        .iter()
        .filter(|d| d.forged_with.is_none())
        .collect();
    let started = Instant::now();
    loop {
        let mut settled = queues::depth(&sqs, resources.queue_url("OrdersQueue")?).await? == 0;
        for delivery in &expected {
            let entity = EntityRef::order(&ChannelId::parse(delivery.channel)?, &delivery.order_id);
            settled &= store.get(&entity).await.ok().flatten().is_some();
        }
        if settled {
            break;
        }
        if started.elapsed() > Duration::from_secs(180) {
            let _ = stop.send(true);
            bail!("the flow did not settle within 3 minutes");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let _ = stop.send(true);
    let _ = poller.await;

    println!("\nOrders, as the ERP and the sync state see them:");
    println!(
        "  {:<10} {:<8} {:<12} {:<10} {:<12} {:<16} note",
        "order", "channel", "id", "ERP sale", "ERP state", "sync state"
    );
    let mut seen = Vec::new();
    for delivery in &expected {
        if seen.contains(&(delivery.channel, &delivery.order_id)) {
            continue;
        }
        seen.push((delivery.channel, &delivery.order_id));
        let reference = format!("{}/{}", delivery.channel, delivery.order_id);
        let sales = erp_sales(&http, resources, &reference).await?;
        let entity = EntityRef::order(&ChannelId::parse(delivery.channel)?, &delivery.order_id);
        let state = store.get(&entity).await.ok().flatten();
        let name = serde_json::from_str::<Value>(&delivery.body)?["name"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        let (number, erp_state) = match sales.as_slice() {
            [] => ("-".to_owned(), "-".to_owned()),
            [sale] => (
                sale["number"].as_str().unwrap_or("?").to_owned(),
                sale["state"].as_str().unwrap_or("?").to_owned(),
            ),
            many => (format!("{} SALES!", many.len()), "duplicate".to_owned()),
        };
        let note = state
            .as_ref()
            .and_then(|s| {
                s.last_error
                    .as_ref()
                    .filter(|_| s.status.as_str() == "needs-attention")
                    .map(|e| e.message.clone())
            })
            .unwrap_or_default();
        println!(
            "  {:<10} {:<8} {:<12} {:<10} {:<12} {:<16} {}",
            name,
            delivery.channel,
            delivery.order_id,
            number,
            erp_state,
            state.map(|s| s.status.as_str()).unwrap_or("(none)"),
            note
        );
    }
    let forged: Vec<_> = deliveries
        .iter()
        .zip(&answers)
        .filter(|(d, _)| d.forged_with.is_some())
        .collect();
    for (delivery, status) in forged {
        println!(
            "\nForged delivery ({}): HTTP {status}, not queued.",
            delivery.webhook_id
        );
    }

    println!("\nDead-letter queue (needs a person):");
    let parked = queues::peek(&sqs, resources.queue_url("OrdersDeadLetterQueue")?).await?;
    if parked.is_empty() {
        println!("  (empty)");
    }
    for message in &parked {
        let attribute = |name: &str| {
            message
                .message_attributes()
                .and_then(|a| a.get(name))
                .and_then(|v| v.string_value())
                .unwrap_or("")
                .to_owned()
        };
        println!(
            "  {}  [{} / {}]\n    reason: {}",
            attribute(attr::ENTITY),
            attribute(attr::ERROR_CLASS),
            attribute(attr::ERROR_KIND),
            attribute(attr::REASON)
        );
    }
    Ok(())
}

async fn erp_sales(
    http: &reqwest::Client,
    resources: &erpsync_tools::stack::LocalResources,
    reference: &str,
) -> anyhow::Result<Vec<Value>> {
    let url = resources
        .resolver
        .parameters
        .get("ErpUrl")
        .cloned()
        .unwrap_or_default();
    let key = std::fs::read_to_string(stack_dir().join("tryton-template/api-key"))?;
    let domain = URL_SAFE.encode(json!([["reference", "=", reference]]).to_string());
    let response = http
        .get(format!("{url}/erpsync/rest/model/sale.sale"))
        .bearer_auth(key.trim())
        .query(&[("f", "number"), ("f", "state"), ("d", domain.as_str())])
        .send()
        .await?;
    let sales: Value = response.json().await?;
    Ok(sales.as_array().cloned().unwrap_or_default())
}
