//! Stock from the ERP to every channel: a Tryton of its own (so other tests' sales do not
//! move its stock), the Shopify sandbox for both stores, DynamoDB in moto for the ledger.

use erpsync_aws::dynamo::DynamoStore;
use erpsync_connectors::TrytonClient;
use erpsync_connectors::shopify::ShopifyAdmin;
use erpsync_core::SyncError;
use erpsync_core::config::ChannelConfig;
use erpsync_core::flows::prices::sync_prices;
use erpsync_core::flows::stock::{StockDeps, StockOutcome, sync_stock};
use erpsync_e2e::{Tryton, World};
use sandbox::{Faults, Sandbox, ShopSetup};
use secrecy::SecretString;
use serde_json::json;

const UK: &str = "erpsync-uk.myshopify.com";
const EU: &str = "erpsync-eu.myshopify.com";
const UK_LOCATION: &str = "gid://shopify/Location/1";
const EU_LOCATION: &str = "gid://shopify/Location/2";

struct StockWorld {
    world: World,
    tryton: Tryton,
    sandbox: Sandbox,
    erp: TrytonClient,
    store: DynamoStore,
}

impl StockWorld {
    async fn start(maximum: f64, restore_rate: f64, batch_size: u32) -> Self {
        let built = World::builder()
            .own_tryton("stock")
            .shop(
                "uk-shop",
                ShopSetup::with_skus(
                    UK,
                    UK_LOCATION,
                    &[
                        "IPOD2008GREEN",
                        "IPOD2008RED",
                        "IPOD2008BLACK",
                        "IPOD-TRIO",
                        "WOOL-SOCKS",
                    ],
                    maximum,
                    restore_rate,
                ),
            )
            .shop(
                "eu-shop",
                ShopSetup::with_skus(
                    EU,
                    EU_LOCATION,
                    &["IPOD2008RED", "IPOD2008BLACK"],
                    maximum,
                    restore_rate,
                ),
            )
            .configure(move |config| {
                for channel in &mut config.channels {
                    if let Some(stock) = channel.stock.as_mut() {
                        stock.batch_size = batch_size;
                    }
                }
            })
            .start()
            .await;
        let (world, tryton, sandbox) = built.parts();
        let erp = TrytonClient::new(
            &tryton.url,
            SecretString::from(tryton.api_key.clone()),
            world.config.erp.clone(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        // What stock-sync does runs under its role.
        let store = world.store_of("StockSyncFunction");
        Self {
            world,
            tryton,
            sandbox,
            erp,
            store,
        }
    }

    fn channel(&self, id: &str) -> &ChannelConfig {
        self.world
            .config
            .channels
            .iter()
            .find(|c| c.id.as_str() == id)
            .unwrap_or_else(|| panic!("no channel {id}"))
    }

    /// The channel's Admin API client, on the sandbox store the channel is pointed at.
    fn admin(&self, id: &str) -> ShopifyAdmin {
        let domain = if id == "uk-shop" { UK } else { EU };
        let api = self
            .channel(id)
            .admin_api
            .as_ref()
            .unwrap_or_else(|| panic!("no admin api config"));
        ShopifyAdmin::new(
            &api.url,
            &api.version,
            SecretString::from(format!("shpat_{domain}")),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    async fn sync(&self, id: &str) -> Result<StockOutcome, SyncError> {
        let channel = self.channel(id);
        let admin = self.admin(id);
        let deps = StockDeps {
            erp: &self.erp,
            channel: &admin,
            ledger: &self.store,
            deadline: None,
        };
        sync_stock(&deps, channel, &uuid::Uuid::new_v4().to_string(), None).await
    }

    fn shown(&self, domain: &str, sku: &str, location: &str) -> Option<i64> {
        self.sandbox.shops.get(domain)?.available(sku, location)
    }

    /// A customer order in the ERP reserves stock.
    async fn sell(&self, product_code: &str, quantity: u32) {
        let http = reqwest::Client::new();
        let base = format!("{}/erpsync/rest/model", self.tryton.url);
        let context = base64_context();
        let product = http
            .get(format!("{base}/product.product"))
            .bearer_auth(&self.tryton.api_key)
            .query(&[
                ("f", "id"),
                ("d", &base64_json(&json!([["code", "=", product_code]]))),
            ])
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .json::<serde_json::Value>()
            .await
            .unwrap_or_default()[0]["id"]
            .clone();
        let created: serde_json::Value = http
            .post(format!("{base}/sale.sale"))
            .bearer_auth(&self.tryton.api_key)
            .header("X-Tryton-Context", &context)
            .json(&json!({"party": 2, "invoice_address": 2, "shipment_address": 2, "currency": 1, "warehouse": 5,
                          "payment_term": 10, "shipment_cost_method": null,
                          "lines": [["create", [{"type": "line", "product": product, "unit": 1, "quantity": quantity, "unit_price": "10"}]]]}))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .json()
            .await
            .unwrap_or_default();
        let id = created["id"].as_i64().unwrap_or_default();
        for action in ["quote", "confirm"] {
            let status = http
                .post(format!("{base}/sale.sale/{id}/{action}"))
                .bearer_auth(&self.tryton.api_key)
                .header("X-Tryton-Context", &context)
                .json(&json!({}))
                .send()
                .await
                .map(|r| r.status())
                .unwrap_or_else(|e| panic!("{e}"));
            assert!(status.is_success(), "{action}: {status}");
        }
    }
}

impl StockWorld {
    fn stock_deps(&self) -> stock_sync::Deps {
        stock_sync::Deps {
            config: self.world.config.clone(),
            store: self.store.clone(),
            erp: Box::new(self.erp_client()),
            channels: ["uk-shop", "eu-shop"]
                .map(|id| (id.to_owned(), self.admin(id)))
                .into(),
        }
    }

    fn erp_client(&self) -> TrytonClient {
        TrytonClient::new(
            &self.tryton.url,
            SecretString::from(self.tryton.api_key.clone()),
            self.world.config.erp.clone(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The event a schedule sends (see infra/template.yaml), in the mode given.
fn schedule_event(
    mode: &str,
) -> aws_lambda_events::event::eventbridge::EventBridgeEvent<serde_json::Value> {
    serde_json::from_value(
        json!({"detail-type": "Scheduled Event", "source": "aws.scheduler",
                                  "detail": {"mode": mode}}),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn base64_json(value: &serde_json::Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE.encode(value.to_string())
}

fn base64_context() -> String {
    base64_json(&json!({"company": 1}))
}

#[tokio::test]
async fn erp_stock_reaches_both_channels_and_nothing_is_sent_when_nothing_changed() {
    let mut stock = StockWorld::start(2000.0, 1000.0, 250).await;
    let uk = stock
        .sync("uk-shop")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let eu = stock
        .sync("eu-shop")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // Seeded: 100 of each iPod, 500 socks. The UK store holds back a safety buffer of 2.
    assert_eq!(stock.shown(UK, "IPOD2008RED", UK_LOCATION), Some(98));
    assert_eq!(stock.shown(EU, "IPOD2008RED", EU_LOCATION), Some(100));
    // The trio bundle: 1 green, 1 red, 2 socks each -> min(100, 100, 250), less the buffer.
    assert_eq!(stock.shown(UK, "IPOD-TRIO", UK_LOCATION), Some(98));
    assert_eq!(uk.pushed, 5);
    assert_eq!(eu.pushed, 2);

    let before = stock.sandbox.shops.get(UK).map(|s| s.inventory_mutations());
    let again = stock
        .sync("uk-shop")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (again.pushed, again.mutations),
        (0, 0),
        "nothing changed, nothing sent"
    );
    assert_eq!(
        stock.sandbox.shops.get(UK).map(|s| s.inventory_mutations()),
        before
    );

    // A sale in the ERP reserves 3 red iPods: both stores follow.
    stock.sell("IPOD2008RED", 3).await;
    let uk = stock
        .sync("uk-shop")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    stock
        .sync("eu-shop")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stock.shown(UK, "IPOD2008RED", UK_LOCATION), Some(95));
    assert_eq!(stock.shown(EU, "IPOD2008RED", EU_LOCATION), Some(97));
    assert_eq!(
        stock.shown(UK, "IPOD-TRIO", UK_LOCATION),
        Some(95),
        "the bundle follows its scarcest component"
    );
    assert_eq!(uk.pushed, 2, "only the red iPod and the trio changed");
    stock.tryton.stop().await;
}

#[tokio::test]
async fn a_channel_side_change_is_overwritten_and_recorded_as_drift() {
    let mut stock = StockWorld::start(2000.0, 1000.0, 250).await;
    stock
        .sync("uk-shop")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    if let Some(shop) = stock.sandbox.shops.get(UK) {
        shop.set_available("IPOD2008BLACK", UK_LOCATION, 5);
    }
    let outcome = stock
        .sync("uk-shop")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(stock.shown(UK, "IPOD2008BLACK", UK_LOCATION), Some(98));
    assert_eq!(outcome.drift.len(), 1, "{:?}", outcome.drift);
    assert!(outcome.drift[0].contains("IPOD2008BLACK") && outcome.drift[0].contains("showed 5"));
    stock.tryton.stop().await;
}

#[tokio::test]
async fn throttling_slows_the_sync_but_loses_nothing() {
    // A 160-point bucket refilling at 20 a second: the catalogue read takes 151 of it, and
    // each one-item mutation costs 11, so the run must wait for the bucket again and again.
    let mut stock = StockWorld::start(160.0, 20.0, 1).await;
    let outcome = stock
        .sync("uk-shop")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.pushed, 5);
    for (sku, expected) in [
        ("IPOD2008GREEN", 98),
        ("IPOD2008RED", 98),
        ("IPOD2008BLACK", 98),
        ("WOOL-SOCKS", 498),
    ] {
        assert_eq!(stock.shown(UK, sku, UK_LOCATION), Some(expected), "{sku}");
    }
    let shop = stock
        .sandbox
        .shops
        .get(UK)
        .unwrap_or_else(|| panic!("no shop"));
    assert_eq!(
        shop.inventory_mutations(),
        5,
        "each item set once: paced, never failed, never repeated"
    );
    stock.tryton.stop().await;
}

#[tokio::test]
async fn a_server_error_mid_run_resumes_without_resending_what_succeeded() {
    let mut stock = StockWorld::start(2000.0, 1000.0, 1).await;
    let shop = stock
        .sandbox
        .shops
        .get(UK)
        .unwrap_or_else(|| panic!("no shop"));
    // The catalogue read (a bulk operation and one look at its status: the sandbox's
    // completes at once) and two mutations pass, then Shopify fails.
    shop.inject(Faults {
        pass_first: 4,
        server_errors: 1,
        ..Faults::default()
    });
    let failed = stock.sync("uk-shop").await;
    assert!(failed.is_err(), "the run stops at the 5xx");
    assert_eq!(shop.inventory_mutations(), 2);
    // Shopify's internal error answered with HTTP 200 is as transient as a 5xx: retried, not
    // a request a person must fix.
    shop.inject(Faults {
        internal_errors: 1,
        ..Faults::default()
    });
    let failed = stock.sync("uk-shop").await.err();
    assert_eq!(
        failed.as_ref().map(|e| (e.class, e.kind.as_str())),
        Some((erpsync_core::ErrorClass::Retryable, "channel_unavailable")),
        "{failed:?}"
    );
    let resumed = stock
        .sync("uk-shop")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resumed.pushed, 3, "only what the first run had not set");
    assert_eq!(shop.inventory_mutations(), 5, "no item was sent twice");
    stock.tryton.stop().await;
}

#[tokio::test]
async fn the_scheduled_function_syncs_every_stocked_channel_and_records_the_run() {
    let mut stock = StockWorld::start(2000.0, 1000.0, 250).await;
    let mut channels = std::collections::HashMap::new();
    for id in ["uk-shop", "eu-shop"] {
        channels.insert(id.to_owned(), stock.admin(id));
    }
    let erp = TrytonClient::new(
        &stock.tryton.url,
        SecretString::from(stock.tryton.api_key.clone()),
        stock.world.config.erp.clone(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let deps = stock_sync::Deps {
        config: stock.world.config.clone(),
        store: stock.store.clone(),
        erp: Box::new(erp),
        channels,
    };
    let event: aws_lambda_events::event::eventbridge::EventBridgeEvent<serde_json::Value> =
        serde_json::from_str(include_str!("../../events/stock-sync/schedule.json"))
            .unwrap_or_else(|e| panic!("{e}"));
    let runs = stock_sync::schedule_handler::handle(&deps, event, None).await;
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(runs.iter().all(|r| r.error.is_none()), "{runs:?}");
    assert_eq!(stock.shown(EU, "IPOD2008BLACK", EU_LOCATION), Some(100));
    let entity = erpsync_core::model::state::EntityRef {
        flow: erpsync_core::model::state::Flow::StockSync,
        channel: erpsync_core::model::ids::ChannelId::parse("uk-shop")
            .unwrap_or_else(|e| panic!("{e}")),
        entity_id: "stock".to_owned(),
    };
    use erpsync_core::ports::SyncStateStore;
    let state = stock
        .store
        .get(&entity)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("no state"));
    assert!(
        state
            .note
            .unwrap_or_default()
            .starts_with("5 quantities set")
    );
    stock.tryton.stop().await;
}

/// A store whose prices include VAT gets the gross price from a Tax Included price list, and
/// a net price list is refused for it (it sold some 16-20 % under the intended price).
#[tokio::test]
async fn a_tax_inclusive_channel_gets_gross_prices_and_never_a_net_list() {
    let mut stock = StockWorld::start(2000.0, 1000.0, 250).await;
    let uk_admin = stock.admin("uk-shop");
    let mut channel = stock.channel("uk-shop").clone();
    let mut prices = channel
        .prices
        .clone()
        .unwrap_or_else(|| panic!("no prices"));
    prices.taxes_included = true;
    channel.prices = Some(prices.clone());
    let refused = sync_prices(&stock.erp, &uk_admin, &channel, None)
        .await
        .err()
        .unwrap_or_else(|| panic!("a net price list was written as gross"));
    assert_eq!(refused.kind, "price_list_not_gross", "{refused}");
    assert!(refused.message.contains("UK retail"), "{refused}");

    prices.price_list = Some("UK retail incl. VAT".to_owned());
    channel.prices = Some(prices);
    sync_prices(&stock.erp, &uk_admin, &channel, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // 199.00 USD list, +10 %, +20 % VAT, in GBP at 0.79: 207.5172.
    let red = stock
        .sandbox
        .shops
        .get(UK)
        .and_then(|s| s.price("IPOD2008RED"));
    assert_eq!(red.as_deref(), Some("207.52"));
    stock.tryton.stop().await;
}

#[tokio::test]
async fn erp_prices_reach_each_channel_in_its_currency_and_only_changes_are_written() {
    let mut stock = StockWorld::start(2000.0, 1000.0, 250).await;
    let (uk_admin, eu_admin) = (stock.admin("uk-shop"), stock.admin("eu-shop"));
    let price =
        |domain: &str, sku: &str| stock.sandbox.shops.get(domain).and_then(|s| s.price(sku));

    let uk = sync_prices(&stock.erp, &uk_admin, stock.channel("uk-shop"), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    sync_prices(&stock.erp, &eu_admin, stock.channel("eu-shop"), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    // 199.00 USD list: the UK retail list (+10 %) in GBP at 0.79; the EU store's list price in EUR at 0.92.
    assert_eq!(price(UK, "IPOD2008RED").as_deref(), Some("172.93"));
    assert_eq!(price(EU, "IPOD2008RED").as_deref(), Some("183.08"));
    assert!(
        uk.not_priced.iter().any(|s| s.as_str() == "IPOD-TRIO"),
        "bundles are priced by the shop"
    );

    let again = sync_prices(&stock.erp, &uk_admin, stock.channel("uk-shop"), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(again.updated.is_empty(), "{again:?}");

    // The list price changes in the ERP: each currency follows, and only that variant is written.
    let template = stock
        .world
        .erp_search(
            "product.product",
            json!([["code", "=", "IPOD2008RED"]]),
            &["template"],
        )
        .await
        .unwrap_or_default()[0]["template"]
        .clone();
    let response = reqwest::Client::new()
        .put(format!(
            "{}/erpsync/rest/model/product.template/{template}",
            stock.tryton.url
        ))
        .bearer_auth(&stock.tryton.api_key)
        .header("X-Tryton-Context", base64_context())
        .json(&json!({"list_price": "209.00"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(response.status().is_success(), "{}", response.status());
    let uk = sync_prices(&stock.erp, &uk_admin, stock.channel("uk-shop"), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let eu = sync_prices(&stock.erp, &eu_admin, stock.channel("eu-shop"), None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (uk.updated.len(), eu.updated.len()),
        (1, 1),
        "{uk:?} {eu:?}"
    );
    assert_eq!(price(UK, "IPOD2008RED").as_deref(), Some("181.62"));
    assert_eq!(price(EU, "IPOD2008RED").as_deref(), Some("192.28"));
    stock.tryton.stop().await;
}

#[tokio::test]
async fn a_dropped_connection_mid_run_is_retryable_and_the_next_run_completes() {
    let mut stock = StockWorld::start(2000.0, 1000.0, 1).await;
    let shop = stock
        .sandbox
        .shops
        .get(UK)
        .unwrap_or_else(|| panic!("no shop"));
    // The catalogue read (bulk operation and status) and one mutation pass.
    shop.inject(Faults {
        pass_first: 3,
        drop_connections: 1,
        ..Faults::default()
    });
    let failed = stock
        .sync("uk-shop")
        .await
        .err()
        .unwrap_or_else(|| panic!("the run should stop"));
    assert_eq!(
        failed.class,
        erpsync_core::ErrorClass::Retryable,
        "{failed}"
    );
    let resumed = stock
        .sync("uk-shop")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(resumed.pushed, 4);
    assert_eq!(shop.inventory_mutations(), 5, "no item was sent twice");
    stock.tryton.stop().await;
}

struct StockInvoker(std::sync::Arc<stock_sync::Deps>);

#[async_trait::async_trait]
impl erpsync_tools::esm::Invoker for StockInvoker {
    async fn invoke(
        &self,
        event: aws_lambda_events::event::sqs::SqsEvent,
    ) -> anyhow::Result<aws_lambda_events::event::sqs::SqsBatchResponse> {
        Ok(stock_sync::sqs_handler::handle(&self.0, event, None).await)
    }
}

#[tokio::test]
async fn a_realtime_channel_hears_of_a_sale_at_once_not_at_the_next_schedule() {
    let built = World::builder()
        .own_tryton("realtime")
        .shop(
            "uk-shop",
            ShopSetup::with_skus(
                UK,
                UK_LOCATION,
                &["IPOD2008GREEN", "IPOD2008RED", "IPOD2008BLACK"],
                2000.0,
                1000.0,
            ),
        )
        .configure(|config| {
            if let Some(stock) = config.channels[0].stock.as_mut() {
                stock.realtime = true;
            }
        })
        .start()
        .await;
    let (world, mut tryton, sandbox) = built.parts();
    let erp = TrytonClient::new(
        &tryton.url,
        SecretString::from(tryton.api_key.clone()),
        world.config.erp.clone(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let admin = ShopifyAdmin::new(
        &sandbox.admin_url(UK),
        "2026-07",
        SecretString::from(format!("shpat_{UK}")),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let deps = std::sync::Arc::new(stock_sync::Deps {
        config: world.config.clone(),
        store: world.store_of("StockSyncFunction"),
        erp: Box::new(erp),
        channels: std::collections::HashMap::from([("uk-shop".to_owned(), admin)]),
    });
    let schedule: aws_lambda_events::event::eventbridge::EventBridgeEvent<serde_json::Value> =
        serde_json::from_str(include_str!("../../events/stock-sync/schedule.json"))
            .unwrap_or_else(|e| panic!("{e}"));
    stock_sync::schedule_handler::handle(&deps, schedule, None).await;
    let shown = |sku: &str| {
        sandbox
            .shops
            .get(UK)
            .and_then(|s| s.available(sku, UK_LOCATION))
    };
    assert_eq!(shown("IPOD2008RED"), Some(98));

    // A shop order reaches the ERP; order-sync announces the stock it moved.
    let (order, _) = erpsync_e2e::fresh_order("shopify-orders-create-multiline-discount-tax.json");
    world
        .deliver("uk-shop", "orders/create", "wh-rt", &order)
        .await;
    let refresh = erpsync_tools::esm::EventSourceMapping {
        sqs: world.sqs_of("StockSyncFunction"),
        queue_url: world.queue("StockRefreshQueue"),
        queue_arn: world
            .resources
            .queue_arn("StockRefreshQueue")
            .unwrap_or_default()
            .to_owned(),
        batch_size: 10,
        invoker: std::sync::Arc::new(StockInvoker(deps.clone())),
    };
    let handled = refresh
        .poll_once(std::time::Duration::from_secs(2))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(handled, 1, "one refresh for the one sale");
    // 100 less the one reserved by the sale, less the safety buffer of 2.
    assert_eq!(shown("IPOD2008RED"), Some(97));
    assert_eq!(shown("IPOD2008GREEN"), Some(97));
    assert_eq!(world.queue_depth("StockRefreshQueue").await, 0);
    tryton.stop().await;
}

#[tokio::test]
async fn a_stock_count_in_the_erp_reaches_realtime_channels_at_the_next_changes_poll() {
    let mut stock = StockWorld::start(2000.0, 1000.0, 250).await;
    let deps = stock.stock_deps();
    let runs = stock_sync::schedule_handler::handle(&deps, schedule_event("full"), None).await;
    assert!(runs.iter().all(|r| r.error.is_none()), "{runs:?}");
    // The first poll sets the cursor (the seed's moves are older than its look-back).
    let runs = stock_sync::schedule_handler::handle(&deps, schedule_event("changes"), None).await;
    assert!(runs.iter().all(|r| r.error.is_none()), "{runs:?}");

    // The warehouse counts 60 black iPods (100 were booked): a change made in the ERP alone.
    stock.world.count_stock("IPOD2008BLACK", 60).await;
    let runs = stock_sync::schedule_handler::handle(&deps, schedule_event("changes"), None).await;
    assert_eq!(runs.len(), 1, "only the real-time channel: {runs:?}");
    let uk = runs[0]
        .outcome
        .clone()
        .unwrap_or_else(|| panic!("{runs:?}"));
    assert_eq!(
        (runs[0].channel.as_str(), uk.pushed),
        ("uk-shop", 1),
        "{uk:?}"
    );
    assert_eq!(stock.shown(UK, "IPOD2008BLACK", UK_LOCATION), Some(58));
    assert_eq!(
        stock.shown(EU, "IPOD2008BLACK", EU_LOCATION),
        Some(100),
        "the scheduled channel waits for its schedule"
    );

    // Nothing new: the next poll sends nothing.
    let runs = stock_sync::schedule_handler::handle(&deps, schedule_event("changes"), None).await;
    assert!(
        runs.iter()
            .all(|r| r.outcome.as_ref().is_some_and(|o| o.pushed == 0)),
        "{runs:?}"
    );
    let runs = stock_sync::schedule_handler::handle(&deps, schedule_event("full"), None).await;
    assert!(runs.iter().all(|r| r.error.is_none()), "{runs:?}");
    assert_eq!(stock.shown(EU, "IPOD2008BLACK", EU_LOCATION), Some(60));
    stock.tryton.stop().await;
}

#[tokio::test]
async fn a_price_change_in_the_erp_reaches_realtime_channels_at_the_next_changes_poll() {
    let mut stock = StockWorld::start(2000.0, 1000.0, 250).await;
    let deps = price_sync::Deps {
        config: stock.world.config.clone(),
        store: stock.world.store_of("PriceSyncFunction"),
        erp: Box::new(stock.erp_client()),
        channels: ["uk-shop", "eu-shop"]
            .map(|id| (id.to_owned(), stock.admin(id)))
            .into(),
    };
    let price =
        |domain: &str, sku: &str| stock.sandbox.shops.get(domain).and_then(|s| s.price(sku));
    let runs = price_sync::schedule_handler::handle(&deps, schedule_event("full"), None).await;
    assert!(runs.iter().all(|r| r.error.is_none()), "{runs:?}");
    let runs = price_sync::schedule_handler::handle(&deps, schedule_event("changes"), None).await;
    assert!(runs.iter().all(|r| r.error.is_none()), "{runs:?}");
    assert_eq!(price(UK, "IPOD2008RED").as_deref(), Some("172.93"));

    let template = stock
        .world
        .erp_search(
            "product.product",
            json!([["code", "=", "IPOD2008RED"]]),
            &["template"],
        )
        .await
        .unwrap_or_default()[0]["template"]
        .clone();
    let response = reqwest::Client::new()
        .put(format!(
            "{}/erpsync/rest/model/product.template/{template}",
            stock.tryton.url
        ))
        .bearer_auth(&stock.tryton.api_key)
        .header("X-Tryton-Context", base64_context())
        .json(&json!({"list_price": "209.00"}))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(response.status().is_success(), "{}", response.status());

    let runs = price_sync::schedule_handler::handle(&deps, schedule_event("changes"), None).await;
    assert_eq!(runs.len(), 1, "only the real-time channel: {runs:?}");
    assert_eq!(runs[0].channel, "uk-shop");
    assert_eq!(price(UK, "IPOD2008RED").as_deref(), Some("181.62"));
    assert_eq!(
        price(EU, "IPOD2008RED").as_deref(),
        Some("183.08"),
        "the hourly channel waits for its schedule"
    );
    stock.tryton.stop().await;
}
