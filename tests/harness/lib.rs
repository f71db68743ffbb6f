//! The end-to-end harness: a World per test, on the shared moto server and Tryton that
//! `erpsync stack run` (make test) started. Each World has its own stage: its own queues,
//! table and secrets, built from infra/template.yaml, so tests run side by side.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::Message;
use erpsync_aws::batch::BatchRunner;
use erpsync_aws::dynamo::DynamoStore;
use erpsync_aws::secrets::SecretCache;
use erpsync_aws::sqs::{Queue, StockRefreshQueue};
use erpsync_connectors::TrytonClient;
use erpsync_core::SyncError;
use erpsync_core::channels::signature::sign_base64_hmac_sha256;
use erpsync_core::config::Config;
use erpsync_core::mapping::CustomerDraft;
use erpsync_core::model::ids::{ChannelId, Email, Sku};
use erpsync_core::model::order::Address;
use erpsync_core::model::state::{EntityRef, SyncState};
use erpsync_core::ports::{
    ErpAddress, ErpCustomer, ErpProduct, ErpSale, ErpSaleDetails, NewSale, SaleAmendment, SalesErp,
    SyncStateStore,
};
use erpsync_tools::desk::ErpDesk;
use erpsync_tools::esm::{EventSourceMapping, Invoker};
use erpsync_tools::queues;
use erpsync_tools::roles::{OPERATOR, StageRoles, create_roles};
use erpsync_tools::stack::{LocalResources, create_resources, put_secret, sdk_config};
use erpsync_tools::template::Template;
use secrecy::SecretString;
use serde_json::{Value, json};

pub use erpsync_tools::stack::Tryton;

mod builder;
pub use builder::{Built, WorldBuilder};

/// The shared services, from the environment `erpsync stack run` sets.
pub struct Stack {
    pub aws_endpoint: String,
    pub tryton_url: String,
    pub tryton_key: String,
    pub venv: PathBuf,
    pub tryton_template: PathBuf,
    pub run_dir: PathBuf,
}

impl Stack {
    pub fn from_env() -> anyhow::Result<Self> {
        let var = |name: &str| {
            std::env::var(name).with_context(|| {
                format!("{name} is not set: run the end-to-end tests with `make test` (or `erpsync stack run -- cargo test`)")
            })
        };
        Ok(Self {
            aws_endpoint: var("ERPSYNC_TEST_AWS_ENDPOINT")?,
            tryton_url: var("ERPSYNC_TEST_TRYTON_URL")?,
            tryton_key: var("ERPSYNC_TEST_TRYTON_KEY")?,
            venv: var("ERPSYNC_VENV")?.into(),
            tryton_template: var("ERPSYNC_TRYTON_TEMPLATE")?.into(),
            run_dir: var("ERPSYNC_RUN_DIR")?.into(),
        })
    }
}

fn init_logs() {
    // Tests log to a sink unless asked (RUST_LOG=info cargo test ...).
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

pub fn fixture(name: &str) -> Value {
    let path = erpsync_tools::project_root()
        .join("tests/fixtures")
        .join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("fixture {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// Every test ends with nothing refused by IAM but what it asked for.
impl Drop for World {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            self.assert_nothing_refused();
        }
    }
}

/// A documented order with a fresh id, so that tests sharing one ERP never collide.
pub fn fresh_order(name: &str) -> (Value, String) {
    let mut order = fixture(name);
    let id = (uuid::Uuid::new_v4().as_u128() % 9_000_000_000_000 + 1_000_000_000_000) as u64;
    order["id"] = json!(id);
    (order, id.to_string())
}

pub struct InProcess(pub Arc<order_sync::Deps>);

#[async_trait]
impl Invoker for InProcess {
    async fn invoke(&self, event: SqsEvent) -> anyhow::Result<SqsBatchResponse> {
        let context = lambda_runtime::Context::default();
        Ok(order_sync::sqs_handler::handle(
            &self.0,
            lambda_runtime::LambdaEvent::new(event, context),
        )
        .await)
    }
}

/// order-sync's dependencies as its main.rs wires them, with AWS reached through `sdk`.
fn order_sync_deps(
    sdk: &SdkConfig,
    template: &Template,
    resources: &LocalResources,
    config: &Config,
    erp: Box<dyn SalesErp>,
    erp_url: &str,
    erp_key: &str,
) -> anyhow::Result<order_sync::Deps> {
    let sqs = aws_sdk_sqs::Client::new(sdk);
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), &resources.table);
    let environment = template.function_environment("OrderSyncFunction", &resources.resolver)?;
    let max_receives = environment
        .get("MAX_RECEIVE_COUNT")
        .and_then(|m| m.parse().ok());
    Ok(order_sync::Deps {
        config: config.clone(),
        store: store.clone(),
        erp,
        runner: BatchRunner {
            flow: "order-sync",
            source: Queue::new(sqs.clone(), resources.queue_url("OrdersQueue")?),
            dead_letter: Queue::new(sqs.clone(), resources.queue_url("OrdersDeadLetterQueue")?),
            retry: config.retry.clone(),
            max_receives,
            state: Some(Arc::new(store)),
        },
        stock_refresh: resources
            .queue_url("StockRefreshQueue")
            .ok()
            .map(|url| StockRefreshQueue(Queue::new(sqs.clone(), url))),
        availability: Some(Box::new(TrytonClient::new(
            erp_url,
            SecretString::from(erp_key.to_owned()),
            config.erp.clone(),
        )?)),
    })
}

pub struct World {
    pub stage: String,
    /// The stack's own identity: creates things and reads them back for assertions. What a
    /// function or the operator CLI does runs under its role ([`World::sdk_of`]).
    pub sdk: SdkConfig,
    pub aws_endpoint: String,
    /// Where the shared moto keeps its logs (and the IAM refusals).
    moto_log_dir: PathBuf,
    refusals_expected: AtomicBool,
    pub resources: LocalResources,
    /// The stage's IAM roles, as the template declares them, assumed.
    pub roles: StageRoles,
    role_sdks: HashMap<String, SdkConfig>,
    pub config: Config,
    /// The webhook signing secret each channel is configured with.
    pub webhook_secrets: HashMap<String, String>,
    pub webhook: Arc<shop_webhook::Deps>,
    pub orders: Arc<order_sync::Deps>,
    pub erp_url: String,
    pub erp_key: String,
    /// The payments user's password (config [erp.rpc]).
    pub erp_rpc_password: String,
    /// The ERP's own client: what the warehouse and back office do by hand.
    pub desk: ErpDesk,
    pub http: reqwest::Client,
    /// A Tryton client of its own for the reports (the flow's may be fault-injected).
    pub reviewer: TrytonClient,
}

impl World {
    /// The one way to build a world; the `start*` below are its common shapes.
    pub fn builder<'a>() -> WorldBuilder<'a> {
        WorldBuilder::default()
    }

    /// A world on the shared Tryton.
    pub async fn start() -> Self {
        Self::builder().start().await.world
    }

    /// A world whose ERP port is `wrap`ped around the Tryton client (fault injection).
    pub async fn start_with(
        erp_url: &str,
        erp_key: &str,
        wrap: impl FnOnce(TrytonClient) -> Box<dyn SalesErp>,
    ) -> Self {
        Self::builder()
            .wrap_erp(wrap)
            .start_on(erp_url, erp_key)
            .await
    }

    /// As `start_with`, with template parameters set (e.g. OrdersMaxReceiveCount).
    pub async fn start_with_parameters(
        erp_url: &str,
        erp_key: &str,
        wrap: impl FnOnce(TrytonClient) -> Box<dyn SalesErp>,
        parameters: &[(&str, &str)],
    ) -> Self {
        Self::builder()
            .wrap_erp(wrap)
            .parameters(parameters)
            .start_on(erp_url, erp_key)
            .await
    }

    /// A world on the given ERP whose config is changed by `configure`.
    pub async fn start_custom(
        erp_url: &str,
        erp_key: &str,
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        Self::builder()
            .configure(configure)
            .start_on(erp_url, erp_key)
            .await
    }

    /// A world on the given ERP with template parameters and a config of its own.
    pub async fn start_on(
        erp_url: &str,
        erp_key: &str,
        parameters: &[(&str, &str)],
        configure: impl FnOnce(&mut Config),
    ) -> Self {
        Self::builder()
            .parameters(parameters)
            .configure(configure)
            .start_on(erp_url, erp_key)
            .await
    }

    /// A world on the shared Tryton whose config is changed by `configure` (modes, mappings).
    pub async fn start_configured(configure: impl FnOnce(&mut Config)) -> Self {
        Self::builder().configure(configure).start().await.world
    }

    pub(crate) async fn build(
        erp_url: &str,
        erp_key: &str,
        wrap: impl FnOnce(TrytonClient) -> Box<dyn SalesErp>,
        parameters: &[(&str, &str)],
        configure: impl FnOnce(&mut Config),
    ) -> anyhow::Result<Self> {
        let stack = Stack::from_env()?;
        let stage = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let sdk = sdk_config(&stack.aws_endpoint).await;
        let template = Template::project()?;
        let mut parameters: HashMap<String, String> = parameters
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        parameters.insert("Stage".to_owned(), stage.clone());
        parameters.insert("ErpUrl".to_owned(), erp_url.to_owned());
        // Each test's secrets under its own prefix, as the template grants them by name.
        parameters.insert("SecretsPrefix".to_owned(), format!("erpsync/{stage}"));
        let resources = create_resources(&sdk, &template, parameters).await?;
        let roles = create_roles(&sdk, &resources).await?;
        let mut role_sdks = HashMap::new();
        for (name, credentials) in &roles.by_name {
            role_sdks.insert(
                name.clone(),
                credentials.sdk_config(&stack.aws_endpoint).await,
            );
        }
        let role_sdk = |name: &str| {
            role_sdks
                .get(name)
                .cloned()
                .with_context(|| format!("the template declares no role for {name}"))
        };
        let mut config = Config::from_toml(&std::fs::read_to_string(
            erpsync_tools::project_root().join("config/erpsync.example.toml"),
        )?)?;
        configure(&mut config);
        config.retry.base_seconds = 1;
        config.retry.max_seconds = 2;
        config.erp.api_key_secret = format!("erpsync/{stage}/erp-api-key");
        put_secret(&sdk, &config.erp.api_key_secret, erp_key).await?;
        // Every Tryton of the tests is a copy of the one template, with its payments user.
        let erp_rpc_password = std::fs::read_to_string(stack.tryton_template.join("rpc-password"))
            .context("the Tryton template's rpc-password (run `make setup`)")?
            .trim()
            .to_owned();
        if let Some(rpc) = &mut config.erp.rpc {
            rpc.password_secret = format!("erpsync/{stage}/erp-rpc-password");
            put_secret(&sdk, &rpc.password_secret, &erp_rpc_password).await?;
        }
        let mut webhook_secrets = HashMap::new();
        for channel in &mut config.channels {
            channel.webhook_secret = format!("erpsync/{stage}/{}/webhook", channel.id);
            let secret = format!("shpss_{}_{stage}", channel.id);
            put_secret(&sdk, &channel.webhook_secret, &secret).await?;
            webhook_secrets.insert(channel.id.to_string(), secret);
        }
        let webhook_sdk = role_sdk("ShopWebhookFunction")?;
        let sqs = aws_sdk_sqs::Client::new(&webhook_sdk);
        let orders_url = resources.queue_url("OrdersQueue")?.to_owned();
        let dlq_url = resources.queue_url("OrdersDeadLetterQueue")?.to_owned();
        let webhook = Arc::new(shop_webhook::Deps {
            config: config.clone(),
            secrets: SecretCache::new(
                aws_sdk_secretsmanager::Client::new(&webhook_sdk),
                Duration::from_secs(60),
            ),
            orders: Queue::new(sqs.clone(), &orders_url),
            orders_dead_letter: Queue::new(sqs.clone(), &dlq_url),
            returns: Queue::new(sqs.clone(), resources.queue_url("ReturnsQueue")?),
            returns_dead_letter: Queue::new(
                sqs.clone(),
                resources.queue_url("ReturnsDeadLetterQueue")?,
            ),
        });
        let erp = TrytonClient::new(
            erp_url,
            SecretString::from(erp_key.to_owned()),
            config.erp.clone(),
        )?;
        let orders = Arc::new(order_sync_deps(
            &role_sdk("OrderSyncFunction")?,
            &template,
            &resources,
            &config,
            wrap(erp),
            erp_url,
            erp_key,
        )?);
        let reviewer = TrytonClient::new(
            erp_url,
            SecretString::from(erp_key.to_owned()),
            config.erp.clone(),
        )?;
        Ok(Self {
            stage,
            sdk,
            aws_endpoint: stack.aws_endpoint.clone(),
            moto_log_dir: stack.run_dir.clone(),
            refusals_expected: AtomicBool::new(false),
            resources,
            roles,
            role_sdks,
            config,
            webhook_secrets,
            webhook,
            orders,
            erp_url: erp_url.to_owned(),
            erp_key: erp_key.to_owned(),
            erp_rpc_password,
            desk: ErpDesk::new(erp_url, erp_key),
            http: reqwest::Client::new(),
            reviewer,
        })
    }

    /// Every call of this stage's roles that moto's IAM refused so far.
    pub fn iam_denials(&self) -> Vec<String> {
        erpsync_tools::stack::iam_denials(&self.moto_log_dir, &self.stage)
    }

    /// This test makes IAM refuse calls on purpose: no check that nothing was refused.
    pub fn expect_refusals(&self) {
        self.refusals_expected.store(true, Ordering::Relaxed);
    }

    /// A refusal a flow swallowed (a fallback, a warning) fails the test too.
    pub fn assert_nothing_refused(&self) {
        if self.refusals_expected.load(Ordering::Relaxed) {
            return;
        }
        let refused = self.iam_denials();
        assert!(
            refused.is_empty(),
            "IAM refused calls the template should grant: {refused:#?}"
        );
    }

    /// SDK configuration as `role` (a function's logical id, or `OPERATOR`) of this stage.
    pub fn sdk_of(&self, role: &str) -> &SdkConfig {
        self.role_sdks
            .get(role)
            .unwrap_or_else(|| panic!("the template declares no role for {role}"))
    }

    /// The orders queue's event source mapping into an order-sync whose role is the
    /// template's without `action`: what a deployment missing that grant does.
    pub async fn order_sync_without(&self, action: &str) -> EventSourceMapping {
        self.expect_refusals();
        let built: anyhow::Result<EventSourceMapping> = async {
            let declared = erpsync_tools::roles::declared_roles(
                erpsync_tools::roles::transformed_template()?,
            )?
            .into_iter()
            .find(|r| r.name == "OrderSyncFunction")
            .context("the template declares no order-sync role")?
            .without_action(action);
            let credentials = erpsync_tools::roles::create_role(
                &self.sdk,
                &self.resources,
                &declared,
                "OrderSyncFunction-narrowed",
            )
            .await?;
            let sdk = credentials.sdk_config(&self.aws_endpoint).await;
            let erp = TrytonClient::new(
                &self.erp_url,
                SecretString::from(self.erp_key.clone()),
                self.config.erp.clone(),
            )?;
            let deps = order_sync_deps(
                &sdk,
                &Template::project()?,
                &self.resources,
                &self.config,
                Box::new(erp),
                &self.erp_url,
                &self.erp_key,
            )?;
            Ok(EventSourceMapping {
                sqs: aws_sdk_sqs::Client::new(&sdk),
                invoker: Arc::new(InProcess(Arc::new(deps))),
                ..self.event_source()
            })
        }
        .await;
        built.unwrap_or_else(|e| panic!("an order-sync without {action}: {e:#}"))
    }

    /// The sync table as `role` sees it.
    pub fn store_of(&self, role: &str) -> DynamoStore {
        DynamoStore::new(
            aws_sdk_dynamodb::Client::new(self.sdk_of(role)),
            &self.resources.table,
        )
    }

    /// SQS as `role`.
    pub fn sqs_of(&self, role: &str) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(self.sdk_of(role))
    }

    /// The operator CLI's view of this stage, under the operator's role.
    pub fn operator(&self) -> erpsync_tools::ops::Deployment {
        let template = Template::project().unwrap_or_else(|e| panic!("{e:#}"));
        erpsync_tools::ops::Deployment::local(self.sdk_of(OPERATOR), &template, &self.resources)
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub fn review(&self) -> &dyn erpsync_core::ports::SalesReview {
        &self.reviewer
    }

    pub fn shop_domain(&self, channel: &str) -> String {
        self.config
            .channels
            .iter()
            .find(|c| c.id.as_str() == channel)
            .map(|c| c.shop_domain.clone())
            .unwrap_or_else(|| panic!("no channel {channel}"))
    }

    /// A function URL request as Shopify sends it, signed with `secret`.
    pub fn shopify_request(
        &self,
        channel: &str,
        topic: &str,
        webhook_id: &str,
        body: &str,
        secret: Option<&str>,
    ) -> LambdaFunctionUrlRequest {
        let mut request = LambdaFunctionUrlRequest::default();
        request.request_context.http.method = Some("POST".to_owned());
        let headers = &mut request.headers;
        let mut put = |name: &'static str, value: String| {
            if let Ok(value) = http::HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        };
        put("content-type", "application/json".to_owned());
        put("x-shopify-shop-domain", self.shop_domain(channel));
        put("x-shopify-topic", topic.to_owned());
        put("x-shopify-webhook-id", webhook_id.to_owned());
        put("x-shopify-event-id", uuid::Uuid::new_v4().to_string());
        // Shopify triggers the delivery just after the change it reports: every delivery of
        // one payload carries the same time (retries repeat the headers).
        let triggered_at = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|order| {
                let updated = order.get("updated_at")?.as_str()?.to_owned();
                time::OffsetDateTime::parse(
                    &updated,
                    &time::format_description::well_known::Rfc3339,
                )
                .ok()
            })
            .map(|updated| updated + time::Duration::milliseconds(250))
            .and_then(|at| {
                at.to_offset(time::UtcOffset::UTC)
                    .format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| "2026-11-29T10:00:00Z".to_owned());
        put("x-shopify-triggered-at", triggered_at);
        put("x-shopify-api-version", "2026-07".to_owned());
        if let Some(secret) = secret {
            put(
                "x-shopify-hmac-sha256",
                sign_base64_hmac_sha256(body.as_bytes(), &SecretString::from(secret.to_owned())),
            );
        }
        request.body = Some(body.to_owned());
        request
    }

    /// A WooCommerce webhook request (`X-WC-Webhook-*` headers), signed with the channel's secret.
    pub fn signed_woo(
        &self,
        channel: &str,
        topic: &str,
        delivery_id: &str,
        body: &str,
    ) -> LambdaFunctionUrlRequest {
        let secret = self
            .webhook_secrets
            .get(channel)
            .cloned()
            .unwrap_or_default();
        let mut request = LambdaFunctionUrlRequest::default();
        request.request_context.http.method = Some("POST".to_owned());
        let source = format!("https://{}/", self.shop_domain(channel));
        let signature = sign_base64_hmac_sha256(body.as_bytes(), &SecretString::from(secret));
        for (name, value) in [
            ("content-type", "application/json".to_owned()),
            ("x-wc-webhook-source", source),
            ("x-wc-webhook-topic", topic.to_owned()),
            ("x-wc-webhook-resource", "order".to_owned()),
            (
                "x-wc-webhook-event",
                topic.rsplit('.').next().unwrap_or_default().to_owned(),
            ),
            ("x-wc-webhook-delivery-id", delivery_id.to_owned()),
            ("x-wc-webhook-signature", signature),
        ] {
            if let Ok(value) = http::HeaderValue::from_str(&value) {
                request.headers.insert(name, value);
            }
        }
        request.body = Some(body.to_owned());
        request
    }

    /// Signed with the channel's configured secret.
    pub fn signed(
        &self,
        channel: &str,
        topic: &str,
        webhook_id: &str,
        body: &str,
    ) -> LambdaFunctionUrlRequest {
        let secret = self.webhook_secrets.get(channel).cloned();
        self.shopify_request(channel, topic, webhook_id, body, secret.as_deref())
    }

    /// [`Self::signed`], triggered at `triggered_at` (RFC 3339): two deliveries of one second
    /// told apart as Shopify's `X-Shopify-Triggered-At` tells them.
    pub fn signed_at(
        &self,
        channel: &str,
        topic: &str,
        webhook_id: &str,
        body: &str,
        triggered_at: &str,
    ) -> LambdaFunctionUrlRequest {
        let mut request = self.signed(channel, topic, webhook_id, body);
        if let Ok(value) = http::HeaderValue::from_str(triggered_at) {
            request.headers.insert("x-shopify-triggered-at", value);
        }
        request
    }

    pub async fn post(&self, request: LambdaFunctionUrlRequest) -> i64 {
        shop_webhook::http_handler::handle(&self.webhook, request)
            .await
            .status_code
    }

    pub fn event_source(&self) -> EventSourceMapping {
        EventSourceMapping {
            // On AWS the event source mapping polls with the function's role.
            sqs: self.sqs_of("OrderSyncFunction"),
            queue_url: self.queue("OrdersQueue"),
            queue_arn: self
                .resources
                .queue_arn("OrdersQueue")
                .unwrap_or_default()
                .to_owned(),
            batch_size: 10,
            invoker: Arc::new(InProcess(self.orders.clone())),
        }
    }

    pub fn queue(&self, logical_id: &str) -> String {
        self.resources
            .queue_url(logical_id)
            .unwrap_or_default()
            .to_owned()
    }

    /// Visible + in flight + delayed messages on a queue.
    pub async fn queue_depth(&self, logical_id: &str) -> u64 {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        queues::depth(&sqs, &self.queue(logical_id))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Runs the event source mapping until the orders queue is empty.
    pub async fn drain(&self, timeout: Duration) {
        let esm = self.event_source();
        let started = Instant::now();
        loop {
            let handled = esm.poll_once(Duration::from_secs(1)).await.unwrap_or(0);
            if handled == 0 && self.queue_depth("OrdersQueue").await == 0 {
                self.assert_nothing_refused();
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "the orders queue did not drain within {timeout:?}"
            );
        }
    }

    /// What the dead-letter queue holds, without consuming it.
    pub async fn dead_letters(&self) -> Vec<Message> {
        let sqs = aws_sdk_sqs::Client::new(&self.sdk);
        queues::peek(&sqs, &self.queue("OrdersDeadLetterQueue"))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub async fn state(&self, channel: &str, order_id: &str) -> Option<SyncState> {
        let channel = ChannelId::parse(channel).ok()?;
        self.orders
            .store
            .get(&EntityRef::order(&channel, order_id))
            .await
            .ok()
            .flatten()
    }

    /// Sales with this reference, read from Tryton directly (not through the connector).
    pub async fn erp_sales(&self, reference: &str) -> Vec<Value> {
        self.erp_search(
            "sale.sale",
            json!([["reference", "=", reference]]),
            &[
                "number",
                "state",
                "reference",
                "party",
                "invoice_address",
                "shipment_address",
                "currency.code",
                "total_amount",
                "untaxed_amount",
                "tax_amount",
                "carrier.party.name",
                "lines.taxes.name",
                "lines.product.code",
                "lines.quantity",
                "lines.unit_price",
                "lines.description",
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("reading sales from Tryton: {e:#}"))
    }
}

/// A Tryton decimal (`{"__class__": "Decimal", "decimal": "1.00"}`) as text.
pub fn decimal(value: &Value) -> String {
    value
        .get("decimal")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| value.to_string())
}

/// What the dead-letter queue holds, as (entity, kind, reason): for assertion messages.
pub async fn parked_reasons(world: &World) -> Vec<(String, String, String)> {
    world
        .dead_letters()
        .await
        .iter()
        .map(|m| {
            (
                attribute(m, erpsync_aws::sqs::attr::ENTITY),
                attribute(m, erpsync_aws::sqs::attr::ERROR_KIND),
                attribute(m, erpsync_aws::sqs::attr::REASON),
            )
        })
        .collect()
}

/// A dead-letter message's string attribute.
pub fn attribute(message: &Message, name: &str) -> String {
    message
        .message_attributes()
        .and_then(|a| a.get(name))
        .and_then(|v| v.string_value())
        .unwrap_or_default()
        .to_owned()
}

/// An SQS event of one order message, as the event source mapping would deliver it.
pub fn order_event(
    world: &World,
    body: &str,
    message_id: &str,
    group: &str,
    topic: &str,
) -> SqsEvent {
    let mut message = SqsMessage::default();
    message.message_id = Some(message_id.to_owned());
    message.body = Some(body.to_owned());
    message.event_source_arn = Some(
        world
            .resources
            .queue_arn("OrdersQueue")
            .unwrap_or_default()
            .to_owned(),
    );
    message
        .attributes
        .insert("MessageGroupId".to_owned(), group.to_owned());
    message
        .attributes
        .insert("ApproximateReceiveCount".to_owned(), "1".to_owned());
    for (name, value) in [("channel", "uk-shop"), ("topic", topic)] {
        let mut attribute = SqsMessageAttribute::default();
        attribute.string_value = Some(value.to_owned());
        attribute.data_type = Some("String".to_owned());
        message
            .message_attributes
            .insert(name.to_owned(), attribute);
    }
    let mut event = SqsEvent::default();
    event.records = vec![message];
    event
}

/// A fault to inject once into the real ERP adapter.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// The worker "dies" right after the ERP created the sale, before anything else.
    AfterCreate,
    /// The look-up of this sale reference fails once with a retryable error.
    LookupFails(String),
}

/// The real Tryton adapter with faults injected, each once.
pub struct FaultyErp {
    inner: TrytonClient,
    faults: Mutex<Vec<Fault>>,
}

impl FaultyErp {
    pub fn new(inner: TrytonClient, faults: Vec<Fault>) -> Self {
        Self {
            inner,
            faults: Mutex::new(faults),
        }
    }

    fn take(&self, fault: &Fault) -> bool {
        let Ok(mut faults) = self.faults.lock() else {
            return false;
        };
        match faults.iter().position(|f| f == fault) {
            Some(index) => {
                faults.remove(index);
                true
            }
            None => false,
        }
    }
}

#[async_trait]
impl SalesErp for FaultyErp {
    async fn find_sale_by_reference(&self, reference: &str) -> Result<Option<ErpSale>, SyncError> {
        if self.take(&Fault::LookupFails(reference.to_owned())) {
            return Err(SyncError::retryable(
                "injected_fault",
                "the ERP look-up failed (injected)",
            ));
        }
        self.inner.find_sale_by_reference(reference).await
    }
    async fn drop_duplicate_drafts(
        &self,
        reference: &str,
        keep: i64,
    ) -> Result<Vec<i64>, SyncError> {
        self.inner.drop_duplicate_drafts(reference, keep).await
    }
    async fn products_by_sku(&self, skus: &[Sku]) -> Result<HashMap<Sku, ErpProduct>, SyncError> {
        self.inner.products_by_sku(skus).await
    }
    async fn find_customer_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<ErpCustomer>, SyncError> {
        self.inner.find_customer_by_email(email).await
    }
    async fn create_customer(&self, customer: &CustomerDraft) -> Result<ErpCustomer, SyncError> {
        self.inner.create_customer(customer).await
    }
    async fn add_address(
        &self,
        customer_id: i64,
        address: &Address,
    ) -> Result<ErpAddress, SyncError> {
        self.inner.add_address(customer_id, address).await
    }
    async fn rename_customer(&self, customer_id: i64, name: &str) -> Result<(), SyncError> {
        self.inner.rename_customer(customer_id, name).await
    }
    async fn create_sale(&self, sale: &NewSale<'_>) -> Result<ErpSale, SyncError> {
        let created = self.inner.create_sale(sale).await?;
        if self.take(&Fault::AfterCreate) {
            return Err(SyncError::retryable(
                "injected_crash",
                "the worker died after the ERP create (injected)",
            ));
        }
        Ok(created)
    }
    async fn quote_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError> {
        self.inner.quote_sale(sale_id).await
    }
    async fn confirm_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError> {
        self.inner.confirm_sale(sale_id).await
    }
    async fn process_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError> {
        self.inner.process_sale(sale_id).await
    }
    async fn sale_details(&self, sale_id: i64) -> Result<ErpSaleDetails, SyncError> {
        self.inner.sale_details(sale_id).await
    }
    async fn cancel_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError> {
        self.inner.cancel_sale(sale_id).await
    }
    async fn amend_sale(
        &self,
        sale_id: i64,
        amendment: &SaleAmendment,
    ) -> Result<ErpSale, SyncError> {
        self.inner.amend_sale(sale_id, amendment).await
    }
}

impl World {
    pub async fn erp_search(
        &self,
        model: &str,
        domain: Value,
        fields: &[&str],
    ) -> anyhow::Result<Vec<Value>> {
        self.desk.search(model, domain, fields).await
    }

    /// The warehouse ships everything of the sale with this reference.
    pub async fn dispatch(&self, reference: &str) {
        self.desk
            .dispatch(reference)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// The warehouse ships the sale's next shipment, `short` SKUs in part (see ErpDesk).
    pub async fn dispatch_part(
        &self,
        reference: &str,
        short: &[(&str, f64)],
        tracking: Option<&str>,
    ) -> i64 {
        self.desk
            .dispatch_part(reference, short, tracking)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub async fn count_stock(&self, product_code: &str, quantity: u32) {
        self.desk
            .count_stock(product_code, quantity)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Creates a record in Tryton directly, as a person would in the ERP's client; its id.
    pub async fn erp_create(&self, model: &str, body: Value) -> i64 {
        self.desk
            .create(model, body)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub async fn erp_write(&self, model: &str, id: i64, body: Value) {
        self.desk
            .write(model, id, body)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Presses a button on a record in Tryton (quote, confirm, ...).
    pub async fn erp_action(&self, model: &str, id: i64, action: &str) {
        self.desk
            .button(model, id, action)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
    }

    /// Posts a signed delivery and runs the queue dry.
    pub async fn deliver(&self, channel: &str, topic: &str, webhook_id: &str, order: &Value) {
        let status = self
            .post(self.signed(channel, topic, webhook_id, &order.to_string()))
            .await;
        assert_eq!(status, 200, "{topic} {webhook_id}");
        self.drain(Duration::from_secs(60)).await;
    }
}

/// return-sync as the template wires it, on this world's ERP and queues, behind the emulated
/// event source mapping.
pub struct ReturnSync(Arc<return_sync::Deps>);

#[async_trait]
impl Invoker for ReturnSync {
    async fn invoke(&self, event: SqsEvent) -> anyhow::Result<SqsBatchResponse> {
        Ok(return_sync::sqs_handler::handle(&self.0, event, None).await)
    }
}

impl ReturnSync {
    pub fn deps(&self) -> &Arc<return_sync::Deps> {
        &self.0
    }
}

impl World {
    pub fn return_sync(&self) -> Arc<ReturnSync> {
        let sqs = self.sqs_of("ReturnSyncFunction");
        let environment = Template::project()
            .and_then(|t| t.function_environment("ReturnSyncFunction", &self.resources.resolver))
            .unwrap_or_else(|e| panic!("{e:#}"));
        let erp = TrytonClient::new(
            &self.erp_url,
            SecretString::from(self.erp_key.clone()),
            self.config.erp.clone(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
        .with_rpc_login(SecretString::from(self.erp_rpc_password.clone()));
        Arc::new(ReturnSync(Arc::new(return_sync::Deps {
            config: self.config.clone(),
            store: self.store_of("ReturnSyncFunction"),
            erp: Box::new(erp),
            runner: BatchRunner {
                flow: "return-sync",
                source: Queue::new(sqs.clone(), self.queue("ReturnsQueue")),
                dead_letter: Queue::new(sqs, self.queue("ReturnsDeadLetterQueue")),
                retry: self.config.retry.clone(),
                max_receives: environment
                    .get("MAX_RECEIVE_COUNT")
                    .and_then(|m| m.parse().ok()),
                state: Some(Arc::new(self.store_of("ReturnSyncFunction"))),
            },
        })))
    }

    /// Delivers a refund as the shop does (signed `refunds/create`) and runs the returns
    /// queue dry through `returns`.
    pub async fn deliver_refund(
        &self,
        returns: &Arc<ReturnSync>,
        channel: &str,
        refund: &Value,
        webhook_id: &str,
    ) {
        self.deliver_refund_once(returns, channel, refund, webhook_id)
            .await;
        let esm = self.returns_source(returns);
        while esm.poll_once(Duration::from_secs(1)).await.unwrap_or(0) > 0 {}
    }

    /// Posts the refund's webhook and lets return-sync take it once: a refund that waits is
    /// left on the queue for its retry.
    pub async fn deliver_refund_once(
        &self,
        returns: &Arc<ReturnSync>,
        channel: &str,
        refund: &Value,
        webhook_id: &str,
    ) {
        let status = self
            .post(self.signed(channel, "refunds/create", webhook_id, &refund.to_string()))
            .await;
        assert_eq!(status, 200, "refunds/create {webhook_id}");
        let esm = self.returns_source(returns);
        let _ = esm.poll_once(Duration::from_secs(1)).await;
    }

    /// Posts an order transaction's webhook (`order_transactions/create`) as Shopify does and
    /// runs the returns queue dry.
    pub async fn deliver_transaction(
        &self,
        returns: &Arc<ReturnSync>,
        channel: &str,
        transaction: &Value,
        webhook_id: &str,
    ) {
        let status = self
            .post(self.signed(
                channel,
                "order_transactions/create",
                webhook_id,
                &transaction.to_string(),
            ))
            .await;
        assert_eq!(status, 200, "order_transactions/create {webhook_id}");
        let esm = self.returns_source(returns);
        while esm.poll_once(Duration::from_secs(1)).await.unwrap_or(0) > 0 {}
    }

    /// What sync state says of a transaction's payment.
    pub async fn payment_state(
        &self,
        channel: &str,
        order_id: &str,
        transaction_id: &str,
    ) -> Option<SyncState> {
        let entity = EntityRef {
            flow: erpsync_core::model::state::Flow::PaymentSync,
            channel: ChannelId::parse(channel).ok()?,
            entity_id: format!("{order_id}/txn-{transaction_id}"),
        };
        self.orders.store.get(&entity).await.ok().flatten()
    }

    /// Runs return-sync until the returns queue is empty, retries (a refund waiting for its
    /// order) included.
    pub async fn drain_returns(&self, returns: &Arc<ReturnSync>, timeout: Duration) {
        let esm = self.returns_source(returns);
        let started = Instant::now();
        loop {
            let handled = esm.poll_once(Duration::from_secs(1)).await.unwrap_or(0);
            if handled == 0 && self.queue_depth("ReturnsQueue").await == 0 {
                return;
            }
            assert!(
                started.elapsed() < timeout,
                "the returns queue did not drain within {timeout:?}"
            );
        }
    }

    pub async fn refund_state(
        &self,
        channel: &str,
        order_id: &str,
        refund_id: &str,
    ) -> Option<SyncState> {
        let entity = EntityRef {
            flow: erpsync_core::model::state::Flow::ReturnSync,
            channel: ChannelId::parse(channel).ok()?,
            entity_id: format!("{order_id}/refund-{refund_id}"),
        };
        self.orders.store.get(&entity).await.ok().flatten()
    }

    /// The return sales booked for a refund, with their returns and credit notes.
    pub async fn return_sales(&self, channel: &str, order_id: &str, refund_id: &str) -> Vec<Value> {
        self.erp_search(
            "sale.sale",
            json!([[
                "reference",
                "=",
                format!("{channel}/{order_id}/refund/{refund_id}")
            ]]),
            &[
                "state",
                "lines.product.code",
                "lines.quantity",
                "shipment_returns.state",
                "invoices.state",
                "invoices.total_amount",
            ],
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}"))
    }
}

/// An order transaction as Shopify's `order_transactions/create` sends it (the REST
/// transaction resource: https://shopify.dev/docs/api/admin-rest/latest/resources/transaction).
pub fn transaction(
    order_id: &str,
    id: u64,
    kind: &str,
    gateway: &str,
    amount: &str,
    currency: &str,
) -> Value {
    json!({
        "id": id, "order_id": order_id.parse::<u64>().unwrap_or_default(), "kind": kind,
        "gateway": gateway, "status": "success", "message": null,
        "created_at": "2026-12-01T11:00:00-05:00", "test": false,
        "authorization": "authorization-key", "location_id": null, "user_id": null,
        "parent_id": null, "processed_at": "2026-12-01T11:00:00-05:00", "device_id": null,
        "error_code": null, "source_name": "web", "receipt": {}, "amount": amount,
        "currency": currency, "payment_id": format!("c{id}.1"),
        "manual_payment_gateway": false,
        "admin_graphql_api_id": format!("gid://shopify/OrderTransaction/{id}")
    })
}

/// The order at a later version (`updated_at`), as Shopify sends it after a change.
pub fn at_version(order: &Value, updated_at: &str) -> Value {
    let mut order = order.clone();
    order["updated_at"] = json!(updated_at);
    order
}

/// Each line's tax as its rate makes it of the line's net, as a shop charges it and the ERP
/// books it (the documented order's 3.98 is not 6 % of 195.67): reconciliation compares
/// totals with tax, so an order whose tax disagrees with its rate is flagged.
pub fn tax_as_rated(order: &mut Value) {
    use rust_decimal::{Decimal, RoundingStrategy};
    let amount = |v: &Value| {
        v.as_str()
            .and_then(|t| t.parse::<Decimal>().ok())
            .unwrap_or_default()
    };
    for line in order["line_items"].as_array_mut().into_iter().flatten() {
        let discount: Decimal = line["discount_allocations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| amount(&d["amount"]))
            .sum();
        let quantity = Decimal::from(line["quantity"].as_u64().unwrap_or(0));
        let net = amount(&line["price"]) * quantity - discount;
        for tax in line["tax_lines"].as_array_mut().into_iter().flatten() {
            let rate = tax["rate"]
                .as_f64()
                .and_then(Decimal::from_f64_retain)
                .unwrap_or_default();
            // Two decimals: the orders this dresses are in the documented USD fixture's money.
            let charged =
                (net * rate).round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
            tax["price"] = json!(format!("{charged:.2}"));
        }
    }
}

/// A line's quantity after an order edit (Shopify reports it as current_quantity).
pub fn set_quantity(order: &mut Value, line: usize, quantity: u32) {
    order["line_items"][line]["quantity"] = json!(quantity);
    order["line_items"][line]["current_quantity"] = json!(quantity);
}

/// Refund line `index` as Shopify reports it after the line was fulfilled: its restock type,
/// its own shop-money subtotal and tax; the refund's transaction pays back `paid`.
pub fn priced(
    refund: &mut Value,
    index: usize,
    restock: &str,
    subtotal: &str,
    tax: &str,
    paid: &str,
) {
    let line = &mut refund["refund_line_items"][index];
    line["restock_type"] = json!(restock);
    line["line_item"]["fulfillment_status"] = json!("fulfilled");
    line["subtotal_set"]["shop_money"]["amount"] = json!(subtotal);
    line["total_tax_set"]["shop_money"]["amount"] = json!(tax);
    refund["transactions"][0]["amount"] = json!(paid);
}

/// shipment-sync's queue handler (courier events, redriven shipments) behind the emulated
/// event source mapping.
pub struct Tracking(pub Arc<shipment_sync::Deps>);

#[async_trait]
impl Invoker for Tracking {
    async fn invoke(&self, event: SqsEvent) -> anyhow::Result<SqsBatchResponse> {
        Ok(shipment_sync::sqs_handler::handle(&self.0, event, None).await)
    }
}

impl World {
    /// A queue of this world under `role`, as the template grants it.
    fn queue_as(&self, role: &str, logical_id: &str) -> Queue {
        Queue::new(self.sqs_of(role), self.queue(logical_id))
    }

    /// shipment-sync as the template wires it, under its role, on the ERP at `erp_url`
    /// (with the ERP settings `erp`), with each channel's Admin API client.
    pub fn shipment_sync(
        &self,
        erp_url: &str,
        erp_key: &str,
        erp: erpsync_core::config::ErpConfig,
        channels: HashMap<String, erpsync_connectors::shopify::ShopifyAdmin>,
    ) -> Arc<shipment_sync::Deps> {
        let environment = Template::project()
            .and_then(|t| t.function_environment("ShipmentSyncFunction", &self.resources.resolver))
            .unwrap_or_else(|e| panic!("{e:#}"));
        let erp = TrytonClient::new(erp_url, SecretString::from(erp_key.to_owned()), erp)
            .unwrap_or_else(|e| panic!("{e}"));
        Arc::new(shipment_sync::Deps {
            config: self.config.clone(),
            store: self.store_of("ShipmentSyncFunction"),
            erp: Box::new(erp),
            channels,
            runner: BatchRunner {
                flow: "shipment-sync",
                source: self.queue_as("ShipmentSyncFunction", "ShipmentsQueue"),
                dead_letter: self.queue_as("ShipmentSyncFunction", "ShipmentsDeadLetterQueue"),
                retry: self.config.retry.clone(),
                max_receives: environment
                    .get("MAX_RECEIVE_COUNT")
                    .and_then(|m| m.parse().ok()),
                state: Some(Arc::new(self.store_of("ShipmentSyncFunction"))),
            },
        })
    }

    /// courier-webhook under its role, with `secret` stored as the EasyPost webhook secret.
    pub async fn courier(&self, secret: &str) -> courier_webhook::Deps {
        let secret_name = format!("erpsync/{}/easypost-webhook", self.stage);
        put_secret(&self.sdk, &secret_name, secret)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        courier_webhook::Deps {
            secret_name,
            secrets: SecretCache::new(
                aws_sdk_secretsmanager::Client::new(self.sdk_of("CourierWebhookFunction")),
                Duration::from_secs(60),
            ),
            shipments: self.queue_as("CourierWebhookFunction", "ShipmentsQueue"),
            shipments_dead_letter: self
                .queue_as("CourierWebhookFunction", "ShipmentsDeadLetterQueue"),
        }
    }

    /// shipment-sync behind the shipments queue's event source mapping.
    pub fn tracking_source(&self, deps: &Arc<shipment_sync::Deps>) -> EventSourceMapping {
        EventSourceMapping {
            sqs: self.sqs_of("ShipmentSyncFunction"),
            queue_url: self.queue("ShipmentsQueue"),
            queue_arn: self
                .resources
                .queue_arn("ShipmentsQueue")
                .unwrap_or_default()
                .to_owned(),
            batch_size: 10,
            invoker: Arc::new(Tracking(deps.clone())),
        }
    }

    /// return-sync behind the returns queue's event source mapping.
    pub fn returns_source(&self, returns: &Arc<ReturnSync>) -> EventSourceMapping {
        EventSourceMapping {
            sqs: self.sqs_of("ReturnSyncFunction"),
            queue_url: self.queue("ReturnsQueue"),
            queue_arn: self
                .resources
                .queue_arn("ReturnsQueue")
                .unwrap_or_default()
                .to_owned(),
            batch_size: 10,
            invoker: returns.clone(),
        }
    }
}

/// The courier's signed (or forged) EasyPost event, as courier-webhook receives it.
pub fn courier_request(body: &str, secret: &str) -> LambdaFunctionUrlRequest {
    let mut request = LambdaFunctionUrlRequest::default();
    request.request_context.http.method = Some("POST".to_owned());
    request.headers.insert(
        "x-hmac-signature",
        http::HeaderValue::from_str(&erpsync_core::channels::signature::sign_easypost(
            body.as_bytes(),
            &SecretString::from(secret.to_owned()),
        ))
        .unwrap_or_else(|e| panic!("{e}")),
    );
    request.body = Some(body.to_owned());
    request
}
