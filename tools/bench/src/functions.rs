//! `fn-bench`: the functions' own figures, from their release binaries run as Lambda runs them
//! (a Runtime API per process, `sandbox::lambda`), on the local stack (moto, a real Tryton,
//! the Shopify sandbox) with the environment the template gives each function:
//! - init: exec -> first poll of `/invocation/next`, N times per function;
//! - peak memory (VmHWM) of one warm process after its batch of 10 — ten orders, ten
//!   dispatches, ten courier events, ten refunds, or ten scheduled runs, chained as in
//!   production so every function does real work;
//! - the order path: the hub's throughput (webhook -> SQS -> five order-sync processes ->
//!   Tryton) against the ERP's own at the same concurrency (the same ERP calls, the AWS side
//!   in memory), and the AWS requests per order, counted by a proxy in front of moto.
//!
//! Writes `functions.json` to the output folder; `report.sh` renders it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::Parser;
use erpsync_bench::{Spread, peak_rss_mib};
use erpsync_connectors::TrytonClient;
use erpsync_core::fakes::FakeStore;
use erpsync_core::flows::orders::{OrderMessage, OrderSyncDeps, sync_order};
use erpsync_core::model::ids::ChannelId;
use erpsync_core::model::order::OrderTopic;
use erpsync_core::model::state::{Flow, SyncStatus};
use erpsync_tools::desk::ErpDesk;
use erpsync_tools::esm::{EventSourceMapping, HttpInvoker, drain};
use erpsync_tools::local::{COURIER_SECRET, LocalDeployment, SHOPS};
use erpsync_tools::queues;
use erpsync_tools::stack::{Moto, Tryton, project_root, sdk_config, stack_dir};
use erpsync_tools::template::Template;
use sandbox::lambda::LocalLambda;
use sandbox::proxy::{FaultProxy, ProxyCounts, ProxyFaults};
use sandbox::webhooks;
use secrecy::SecretString;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

#[derive(Parser)]
struct Args {
    /// Where the functions' release binaries are (cargo build --release).
    #[arg(long, default_value = "target/release")]
    binaries: PathBuf,
    /// Where cargo lambda put the arm64 packages (bootstrap.zip per function), if built.
    #[arg(long, default_value = "target/lambda")]
    packages: PathBuf,
    /// Where functions.json goes.
    #[arg(long, default_value = "bench")]
    out: PathBuf,
    /// Cold starts measured per function.
    #[arg(long, default_value_t = 20)]
    cold_starts: usize,
    /// Orders per throughput round; each side runs `rounds` rounds, alternating.
    #[arg(long, default_value_t = 100)]
    orders: usize,
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

/// The template's MaximumConcurrency for order-sync: five execution environments.
const CONCURRENCY: usize = 5;
const BATCH: usize = 10;

struct Function {
    logical_id: String,
    binary: String,
    timeout: Duration,
    memory_mb: u64,
}

fn functions(template: &Template) -> anyhow::Result<Vec<Function>> {
    template
        .resources_of("AWS::Serverless::Function")
        .into_iter()
        .map(|f| {
            let binary = f
                .metadata
                .get("BuildProperties")
                .and_then(|p| p.get("Binary"))
                .and_then(|b| b.as_str())
                .with_context(|| format!("{} has no BuildProperties.Binary", f.logical_id))?
                .to_owned();
            let number = |name: &str, default: u64| {
                template
                    .function_property(&f.logical_id, name)
                    .and_then(|v| v.as_u64())
                    .unwrap_or(default)
            };
            Ok(Function {
                timeout: Duration::from_secs(number("Timeout", 3)),
                memory_mb: number("MemorySize", 128),
                logical_id: f.logical_id,
                binary,
            })
        })
        .collect()
}

/// One function binary in its own emulated execution environment.
struct Running {
    lambda: LocalLambda,
    child: Child,
    init: Duration,
}

impl Running {
    async fn start(
        binaries: &Path,
        function: &Function,
        environment: &BTreeMap<String, String>,
        log: &Path,
    ) -> anyhow::Result<Self> {
        let lambda = LocalLambda::start(&function.binary, function.timeout).await?;
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)?;
        let mut command = Command::new(binaries.join(&function.binary));
        command
            .envs(environment)
            .env("AWS_LAMBDA_RUNTIME_API", &lambda.runtime_api)
            .env("AWS_LAMBDA_FUNCTION_NAME", &function.binary)
            .env(
                "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                function.memory_mb.to_string(),
            )
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env(
                "AWS_LAMBDA_LOG_GROUP_NAME",
                format!("/aws/lambda/{}", function.binary),
            )
            .stdin(std::process::Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true);
        let exec = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", binaries.join(&function.binary).display()))?;
        loop {
            if let Some(ready) = lambda.first_poll() {
                return Ok(Self {
                    init: ready.duration_since(exec),
                    lambda,
                    child,
                });
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "{} exited during init ({status}): {} (log: {})",
                    function.binary,
                    lambda.init_error().unwrap_or_default(),
                    log.display()
                );
            }
            ensure!(
                exec.elapsed() < Duration::from_secs(30),
                "{} did not finish init in 30 s (log: {})",
                function.binary,
                log.display()
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn peak_mib(&self) -> anyhow::Result<f64> {
        self.child
            .id()
            .and_then(|pid| peak_rss_mib(Some(pid)))
            .context("the function's process is gone")
    }

    fn invoker(&self, function: &str) -> Arc<HttpInvoker> {
        Arc::new(HttpInvoker::new(&self.lambda.url, function))
    }

    fn url(&self, function: &str) -> String {
        format!("{}/lambda-url/{function}/", self.lambda.url)
    }

    async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

#[derive(Serialize)]
struct FunctionFigures {
    function: String,
    logical_id: String,
    memory_mb: u64,
    init_ms: Spread,
    /// What the batch of 10 was.
    batch: String,
    peak_rss_mib: f64,
    binary_bytes: u64,
    arm64_binary_bytes: Option<u64>,
    arm64_zip_bytes: Option<u64>,
}

#[derive(Serialize)]
struct OrderPath {
    concurrency: usize,
    orders_per_round: usize,
    erp_alone_orders_per_s: Spread,
    hub_orders_per_s: Spread,
    hub_to_erp: f64,
    aws_requests_per_order: Spread,
    /// Over every hub round: requests per order by operation.
    aws_requests_per_order_by_operation: BTreeMap<String, f64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = project_root();
    let stack = stack_dir();
    let venv = stack.join("venv");
    let run_dir = stack.join(format!("fn-bench-{}", std::process::id()));
    std::fs::create_dir_all(&run_dir)?;
    let mut moto = Moto::start(&venv, &run_dir).await?;
    let mut tryton = Tryton::start(
        &venv,
        &stack.join("tryton-template"),
        &run_dir.join("tryton"),
    )
    .await?;
    let outcome = bench(&args, &root, &run_dir, &moto, &tryton).await;
    tryton.stop().await;
    moto.stop().await;
    match outcome {
        Ok(()) => {
            let _ = std::fs::remove_dir_all(&run_dir);
            Ok(())
        }
        Err(error) => {
            eprintln!("logs kept in {}", run_dir.display());
            Err(error)
        }
    }
}

async fn bench(
    args: &Args,
    root: &Path,
    run_dir: &Path,
    moto: &Moto,
    tryton: &Tryton,
) -> anyhow::Result<()> {
    // The functions reach AWS through a counting proxy; the bench itself goes to moto directly.
    let counter = FaultProxy::start(&moto.endpoint, ProxyFaults::default()).await?;
    let deployment = LocalDeployment::start(
        root,
        run_dir,
        sdk_config(&moto.endpoint).await,
        tryton,
        "bench",
    )
    .await?;
    let functions = functions(&deployment.template)?;
    let environment =
        |function: &Function| deployment.environment(&[function.logical_id.as_str()], &counter.url);
    let log = |name: &str| run_dir.join(format!("{name}.log"));

    // Cold starts: a new process each time, stopped once it asks for work.
    let mut init: HashMap<String, Spread> = HashMap::new();
    for function in &functions {
        let env = environment(function)?;
        let mut samples = Vec::new();
        for _ in 0..args.cold_starts {
            let running =
                Running::start(&args.binaries, function, &env, &log(&function.binary)).await?;
            samples.push(running.init.as_secs_f64() * 1000.0);
            running.stop().await;
        }
        let spread = Spread::of(&samples).context("no cold starts measured")?;
        println!(
            "{:<16} init {:>7.1} ms median ({:.1}-{:.1})",
            function.binary, spread.median, spread.min, spread.max
        );
        init.insert(function.binary.clone(), spread);
    }

    // Warm processes, each given its batch of 10, chained as in production.
    let mut running = HashMap::new();
    for function in &functions {
        let process = Running::start(
            &args.binaries,
            function,
            &environment(function)?,
            &log(&function.binary),
        )
        .await?;
        running.insert(function.binary.clone(), process);
    }
    let process = |name: &str| {
        running
            .get(name)
            .with_context(|| format!("the template has no function {name}"))
    };
    let mut peaks: HashMap<String, (String, f64)> = HashMap::new();
    let chain = Chain::new(root, &deployment, tryton)?;
    let ids: Vec<u64> = (0..BATCH as u64).map(|i| 8_100_000_000 + i).collect();

    let webhook = process("shop-webhook")?;
    chain
        .deliver_orders(&webhook.url("shop-webhook"), &ids, 1)
        .await?;
    peaks.insert(
        "shop-webhook".into(),
        (
            "10 signed orders/create deliveries".into(),
            webhook.peak_mib()?,
        ),
    );
    let sqs = aws_sdk_sqs::Client::new(&deployment.sdk);
    let resources = &deployment.resources;
    let limit = Duration::from_secs(180);
    let handed = drain(
        &sqs,
        resources,
        "OrdersQueue",
        process("order-sync")?.invoker("order-sync"),
        limit,
    )
    .await?;
    chain.expect_synced(&ids).await?;
    peaks.insert(
        "order-sync".into(),
        (
            format!("{handed} order messages from the queue (batch size 10)"),
            process("order-sync")?.peak_mib()?,
        ),
    );
    for name in ["stock-sync", "price-sync", "reconcile"] {
        let fired = chain
            .fire_schedules(name, &process(name)?.lambda.url)
            .await?;
        peaks.insert(name.into(), (fired, process(name)?.peak_mib()?));
    }
    // The warehouse ships the ten; shipment-sync's schedule makes the fulfilments; the
    // courier reports each delivered; shipment-sync applies the ten events.
    chain.dispatch(&ids).await?;
    let shipments = process("shipment-sync")?;
    chain
        .make_fulfilments(&shipments.lambda.url, ids.len())
        .await?;
    let courier = process("courier-webhook")?;
    chain
        .courier_events(&courier.url("courier-webhook"), &ids)
        .await?;
    peaks.insert(
        "courier-webhook".into(),
        (
            "10 signed EasyPost tracker events".into(),
            courier.peak_mib()?,
        ),
    );
    let handed = drain(
        &sqs,
        resources,
        "ShipmentsQueue",
        shipments.invoker("shipment-sync"),
        limit,
    )
    .await?;
    peaks.insert(
        "shipment-sync".into(),
        (
            format!("a scheduled run making 10 fulfilments, then {handed} courier events"),
            shipments.peak_mib()?,
        ),
    );
    chain.refunds(&webhook.url("shop-webhook"), &ids).await?;
    let handed = drain(
        &sqs,
        resources,
        "ReturnsQueue",
        process("return-sync")?.invoker("return-sync"),
        limit,
    )
    .await?;
    chain.expect_returns(&ids).await?;
    peaks.insert(
        "return-sync".into(),
        (
            format!("{handed} refunds -> return sales and posted credit notes"),
            process("return-sync")?.peak_mib()?,
        ),
    );

    // The order path's throughput, with the warm order-sync as one of five.
    let order_path = order_path(
        args,
        &functions,
        &environment,
        &log,
        &chain,
        &counter,
        process("order-sync")?,
        webhook,
    )
    .await?;

    let mut figures = Vec::new();
    for function in &functions {
        let binary = args.binaries.join(&function.binary);
        let package = args.packages.join(&function.binary);
        let (batch, peak) = peaks
            .remove(&function.binary)
            .with_context(|| format!("{} was given no batch", function.binary))?;
        figures.push(FunctionFigures {
            function: function.binary.clone(),
            logical_id: function.logical_id.clone(),
            memory_mb: function.memory_mb,
            init_ms: init
                .remove(&function.binary)
                .context("no cold starts measured")?,
            batch,
            peak_rss_mib: peak,
            binary_bytes: std::fs::metadata(&binary)?.len(),
            arm64_binary_bytes: std::fs::metadata(package.join("bootstrap"))
                .ok()
                .map(|m| m.len()),
            arm64_zip_bytes: std::fs::metadata(package.join("bootstrap.zip"))
                .ok()
                .map(|m| m.len()),
        });
    }
    for (_, process) in running {
        process.stop().await;
    }
    let report = json!({
        "cold_starts_per_function": args.cold_starts,
        "functions": figures,
        "order_path": order_path,
    });
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(
        args.out.join("functions.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

/// The chained events: orders, dispatches, courier events and refunds for the same orders.
struct Chain<'a> {
    deployment: &'a LocalDeployment,
    desk: ErpDesk,
    erp_key: String,
    http: reqwest::Client,
    order: Value,
    refund: Value,
    template: Template,
}

impl<'a> Chain<'a> {
    fn new(root: &Path, deployment: &'a LocalDeployment, tryton: &Tryton) -> anyhow::Result<Self> {
        let fixture = |name: &str| -> anyhow::Result<Value> {
            let path = root.join("tests/fixtures").join(name);
            Ok(serde_json::from_str(
                &std::fs::read_to_string(&path).with_context(|| path.display().to_string())?,
            )?)
        };
        Ok(Self {
            deployment,
            desk: ErpDesk::new(&tryton.url, &tryton.api_key),
            erp_key: tryton.api_key.clone(),
            http: reqwest::Client::new(),
            order: fixture("shopify-orders-create-multiline-discount-tax.json")?,
            refund: fixture("shopify-refunds-create.json")?,
            template: Template::project()?,
        })
    }

    fn order_body(&self, id: u64) -> Value {
        let mut order = self.order.clone();
        order["id"] = json!(id);
        order["name"] = json!(format!("#B{}", id % 100_000));
        order
    }

    /// Signed orders/create deliveries, `concurrency` at a time; every one must be accepted.
    async fn deliver_orders(
        &self,
        url: &str,
        ids: &[u64],
        concurrency: usize,
    ) -> anyhow::Result<()> {
        let (domain, _) = SHOPS[0];
        let shop = self.deployment.sandbox.shops.get(domain);
        let secret = SecretString::from(self.deployment.webhook_secret("uk-shop"));
        let next = AtomicUsize::new(0);
        let send = || async {
            loop {
                let Some(id) = ids.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return Ok::<(), anyhow::Error>(());
                };
                let body = self.order_body(*id);
                if let Some(shop) = &shop {
                    shop.place_order(body.clone());
                }
                let text = body.to_string();
                let webhook_id = format!("bench-{id}");
                let delivery = webhooks::Delivery {
                    shop_domain: domain,
                    topic: "orders/create",
                    webhook_id: &webhook_id,
                    body: &text,
                };
                let status = webhooks::deliver(&self.http, url, &delivery, &secret).await?;
                ensure!(status == 200, "order {id}: shop-webhook answered {status}");
            }
        };
        let senders: Vec<_> = (0..concurrency).map(|_| send()).collect();
        for result in futures::future::join_all(senders).await {
            result?;
        }
        Ok(())
    }

    async fn expect_synced(&self, ids: &[u64]) -> anyhow::Result<()> {
        let store = erpsync_aws::dynamo::DynamoStore::new(
            aws_sdk_dynamodb::Client::new(&self.deployment.sdk),
            &self.deployment.resources.table,
        );
        let states: HashMap<String, SyncStatus> = store
            .all_states()
            .await?
            .into_iter()
            .filter(|s| s.entity.flow == Flow::OrderSync && s.erp_id.is_some())
            .map(|s| (s.entity.entity_id, s.status))
            .collect();
        let missing: Vec<&u64> = ids
            .iter()
            .filter(|id| {
                !states
                    .get(&id.to_string())
                    .is_some_and(|s| *s != SyncStatus::NeedsAttention)
            })
            .collect();
        ensure!(missing.is_empty(), "orders not in the ERP: {missing:?}");
        Ok(())
    }

    /// Ten scheduled runs of `function`, round the template's schedules for it.
    async fn fire_schedules(&self, function: &str, url: &str) -> anyhow::Result<String> {
        let schedules: Vec<_> = self
            .template
            .schedules()?
            .into_iter()
            .filter(|s| s.function == function)
            .collect();
        ensure!(!schedules.is_empty(), "{function} has no schedule");
        for schedule in schedules.iter().cycle().take(BATCH) {
            let answer = schedule.fire(&self.http, url).await?;
            ensure!(
                !failed(&answer),
                "{} did not run cleanly: {answer}",
                schedule.name
            );
        }
        Ok(format!(
            "10 scheduled runs ({})",
            schedules
                .iter()
                .map(|s| s.name.rsplit('.').next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }

    /// shipment-sync's schedule once: every dispatched order must get its fulfilment.
    async fn make_fulfilments(&self, url: &str, expected: usize) -> anyhow::Result<()> {
        let schedules = self.template.schedules()?;
        let schedule = schedules
            .iter()
            .find(|s| s.function == "shipment-sync")
            .context("the template has no shipment-sync schedule")?;
        let answer = schedule.fire(&self.http, url).await?;
        ensure!(
            !failed(&answer) && answer["fulfilled"].as_u64() == Some(expected as u64),
            "{} should have made {expected} fulfilments: {answer}",
            schedule.name
        );
        Ok(())
    }

    fn tracking(id: u64) -> String {
        format!("RM{:09}GB", id % 1_000_000_000)
    }

    async fn dispatch(&self, ids: &[u64]) -> anyhow::Result<()> {
        for id in ids {
            self.desk
                .dispatch_part(&format!("uk-shop/{id}"), &[], Some(&Self::tracking(*id)))
                .await?;
        }
        Ok(())
    }

    async fn courier_events(&self, url: &str, ids: &[u64]) -> anyhow::Result<()> {
        let secret = SecretString::from(COURIER_SECRET.to_owned());
        for id in ids {
            let tracking = Self::tracking(*id);
            let event = sandbox::courier::tracker_updated(
                &format!("evt_bench_{id}"),
                &sandbox::courier::TrackerUpdate {
                    tracking_code: &tracking,
                    carrier: "RoyalMail",
                    status: "delivered",
                    message: "Delivered to the front door",
                    at: "2026-11-29T12:00:00Z",
                },
            );
            let status =
                sandbox::courier::send(&self.http, url, &event.to_string(), &secret).await?;
            ensure!(status == 200, "courier event for {id}: HTTP {status}");
        }
        Ok(())
    }

    async fn refunds(&self, url: &str, ids: &[u64]) -> anyhow::Result<()> {
        let (domain, _) = SHOPS[0];
        let secret = SecretString::from(self.deployment.webhook_secret("uk-shop"));
        for id in ids {
            let mut refund = self.refund.clone();
            refund["id"] = json!(id + 1_000);
            refund["transactions"][0]["id"] = json!(id + 2_000);
            refund["order_id"] = json!(id);
            refund["refund_line_items"][0]["restock_type"] = json!("return");
            let text = refund.to_string();
            let webhook_id = format!("bench-refund-{id}");
            let delivery = webhooks::Delivery {
                shop_domain: domain,
                topic: "refunds/create",
                webhook_id: &webhook_id,
                body: &text,
            };
            let status = webhooks::deliver(&self.http, url, &delivery, &secret).await?;
            ensure!(
                status == 200,
                "refund for {id}: shop-webhook answered {status}"
            );
        }
        Ok(())
    }

    async fn expect_returns(&self, ids: &[u64]) -> anyhow::Result<()> {
        for id in ids {
            let returns = self
                .desk
                .search(
                    "sale.sale",
                    json!([[
                        "reference",
                        "=",
                        format!("uk-shop/{id}/refund/{}", id + 1_000)
                    ]]),
                    &["state"],
                )
                .await?;
            ensure!(
                returns.len() == 1,
                "refund of {id}: {} return sale(s)",
                returns.len()
            );
        }
        Ok(())
    }
}

/// A scheduled run's answer reports an error (one run, or any of a list of runs per channel).
fn failed(answer: &Value) -> bool {
    match answer {
        Value::Array(runs) => runs.iter().any(failed),
        Value::Object(run) => run.get("error").is_some_and(|e| !e.is_null()),
        _ => true,
    }
}

#[allow(clippy::too_many_arguments)]
async fn order_path(
    args: &Args,
    functions: &[Function],
    environment: &dyn Fn(&Function) -> anyhow::Result<BTreeMap<String, String>>,
    log: &dyn Fn(&str) -> PathBuf,
    chain: &Chain<'_>,
    counter: &FaultProxy,
    warm: &Running,
    webhook: &Running,
) -> anyhow::Result<OrderPath> {
    let order_sync = functions
        .iter()
        .find(|f| f.binary == "order-sync")
        .context("the template has no order-sync")?;
    // Four more execution environments beside the warm one.
    let mut extra: Vec<Running> = Vec::new();
    while extra.len() + 1 < CONCURRENCY {
        extra.push(
            Running::start(
                &args.binaries,
                order_sync,
                &environment(order_sync)?,
                &log("order-sync"),
            )
            .await?,
        );
    }
    let deployment = chain.deployment;
    let config = &deployment.config;
    let erp_url = deployment
        .resources
        .resolver
        .parameters
        .get("ErpUrl")
        .cloned()
        .unwrap_or_default();
    let key = SecretString::from(chain.erp_key.clone());
    let erp = TrytonClient::new(&erp_url, key.clone(), config.erp.clone())?;
    let availability = TrytonClient::new(&erp_url, key, config.erp.clone())?;
    erp.warm_up().await;
    // The ESM's own SQS traffic is AWS requests too: it goes through the counter.
    let sqs = aws_sdk_sqs::Client::new(&sdk_config(&counter.url).await);
    let direct = aws_sdk_sqs::Client::new(&deployment.sdk);
    let orders_url = deployment.resources.queue_url("OrdersQueue")?.to_owned();
    let orders_arn = deployment.resources.queue_arn("OrdersQueue")?.to_owned();
    let channel = ChannelId::parse("uk-shop")?;

    let mut erp_rates = Vec::new();
    let mut hub_rates = Vec::new();
    let mut per_order = Vec::new();
    let mut by_operation: BTreeMap<String, u64> = BTreeMap::new();
    let mut next_id: u64 = 8_200_000_000;
    for round in 0..args.rounds {
        // The ERP's own: order-sync's decisions and ERP calls, sync state in memory.
        let ids: Vec<u64> = (next_id..next_id + args.orders as u64).collect();
        next_id += args.orders as u64;
        let store = FakeStore::default();
        let deps = OrderSyncDeps {
            config,
            idempotency: &store,
            state: &store,
            erp: &erp,
            stock: None,
            availability: Some(&availability),
            archive: None,
        };
        let next = AtomicUsize::new(0);
        let started = Instant::now();
        let work = || async {
            loop {
                let Some(id) = ids.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    return Ok::<(), anyhow::Error>(());
                };
                let message = OrderMessage {
                    channel: channel.clone(),
                    topic: OrderTopic::Create,
                    body: serde_json::to_vec(&chain.order_body(*id))?,
                    triggered_at: None,
                };
                let now = time::OffsetDateTime::now_utc();
                sync_order(&deps, &message, now, now + time::Duration::seconds(60))
                    .await
                    .map_err(|e| anyhow::anyhow!("order {id}: {e:?}"))?;
            }
        };
        for result in futures::future::join_all((0..CONCURRENCY).map(|_| work())).await {
            result?;
        }
        let erp_rate = ids.len() as f64 / started.elapsed().as_secs_f64();
        erp_rates.push(erp_rate);

        // The hub: the same orders' kind through shop-webhook, the queue and five order-syncs.
        let ids: Vec<u64> = (next_id..next_id + args.orders as u64).collect();
        next_id += args.orders as u64;
        let before = counter.counts();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let pollers: Vec<_> = std::iter::once(warm)
            .chain(&extra)
            .map(|worker| {
                let esm = EventSourceMapping {
                    sqs: sqs.clone(),
                    queue_url: orders_url.clone(),
                    queue_arn: orders_arn.clone(),
                    batch_size: BATCH as i32,
                    invoker: worker.invoker("order-sync"),
                };
                tokio::spawn(esm.run(stopped.clone()))
            })
            .collect();
        let started = Instant::now();
        chain
            .deliver_orders(&webhook.url("shop-webhook"), &ids, CONCURRENCY)
            .await?;
        while queues::depth(&direct, &orders_url).await? > 0 {
            ensure!(
                started.elapsed() < Duration::from_secs(600),
                "the hub did not drain {} orders in 10 minutes",
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let elapsed = started.elapsed();
        let _ = stop.send(true);
        for poller in pollers {
            let _ = poller.await;
        }
        let after = counter.counts();
        chain.expect_synced(&ids).await?;
        let hub_rate = ids.len() as f64 / elapsed.as_secs_f64();
        hub_rates.push(hub_rate);
        let requests = after.forwarded - before.forwarded;
        per_order.push(requests as f64 / ids.len() as f64);
        for (operation, count) in difference(&before, &after) {
            *by_operation.entry(operation).or_default() += count;
        }
        println!(
            "round {}: ERP alone {erp_rate:.2} orders/s, hub {hub_rate:.2} orders/s, {:.2} AWS requests per order",
            round + 1,
            requests as f64 / ids.len() as f64
        );
    }
    for worker in extra {
        worker.stop().await;
    }
    let erp_alone = Spread::of(&erp_rates).context("no rounds")?;
    let hub = Spread::of(&hub_rates).context("no rounds")?;
    let orders = (args.orders * args.rounds) as f64;
    Ok(OrderPath {
        concurrency: CONCURRENCY,
        orders_per_round: args.orders,
        hub_to_erp: hub.median / erp_alone.median,
        erp_alone_orders_per_s: erp_alone,
        hub_orders_per_s: hub,
        aws_requests_per_order: Spread::of(&per_order).context("no rounds")?,
        aws_requests_per_order_by_operation: by_operation
            .into_iter()
            .map(|(operation, count)| (operation, count as f64 / orders))
            .collect(),
    })
}

fn difference(before: &ProxyCounts, after: &ProxyCounts) -> BTreeMap<String, u64> {
    after
        .by_operation
        .iter()
        .map(|(operation, count)| {
            let earlier = before.by_operation.get(operation).copied().unwrap_or(0);
            (operation.clone(), count - earlier)
        })
        .filter(|(_, count)| *count > 0)
        .collect()
}
