//! Stock full resync at scale: N SKUs x 2 channels against the Shopify sandbox (a separate
//! process, so the figures are the hub's), at Shopify's documented cost model and a plan's
//! bucket and restore rate (`stock-bench [SKUS] [OUT_DIR] [standard|advanced|plus]`, Plus by
//! default). Reports mutations, elapsed time against the throttle-bound minimum the cost
//! model implies, and the hub's peak memory.
//!
//! The minimum, per channel (each has its own bucket, so the two run side by side): the
//! catalogue is one bulk operation, whose read costs no points beyond `bulkOperationRunQuery`
//! (a mutation, 10) and its status look-ups (1 each, at least one); the writes are
//! ceil(N / 250) `inventorySetQuantities` calls at 10 points each. The bucket starts full, so
//! its size is spent before the restore rate binds: minimum = max(0, points - bucket) /
//! restore rate. `points_at_restore_rate_s` (points / restore rate) is the same run with
//! the bucket empty at the start, e.g. right after another run.
//!
//! The ERP side is a deterministic stock source and the ledger stays in memory: this bench
//! measures the channel path (paging, batching, pacing); ERP and DynamoDB throughput are
//! measured on their own.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::Context;
use async_trait::async_trait;
use erpsync_connectors::shopify::ShopifyAdmin;
use erpsync_core::SyncError;
use erpsync_core::config::{AdminApi, ChannelConfig, Config, StockConfig, StockLocation};
use erpsync_core::ids::Sku;
use erpsync_core::stock::{ErpStock, StockDeps, StockLedger, StockOutcome, sync_stock};
use sandbox::Plan;
use secrecy::SecretString;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

const BATCH: usize = 250;
/// Points of a bulk read: the mutation that starts it and one status look-up (the sandbox's
/// operation is complete by the first look).
const BULK_READ_POINTS: f64 = 10.0 + 1.0;
const MUTATION_POINTS: f64 = 10.0;

struct StockSource;

#[async_trait]
impl ErpStock for StockSource {
    async fn available(
        &self,
        skus: &[Sku],
        _warehouse: &str,
    ) -> Result<HashMap<Sku, i64>, SyncError> {
        Ok(skus
            .iter()
            .enumerate()
            .map(|(i, sku)| (sku.clone(), 1 + (i as i64 * 7919) % 500))
            .collect())
    }
}

#[derive(Default)]
struct Ledger(Mutex<HashMap<(Sku, String), i64>>);

#[async_trait]
impl StockLedger for Ledger {
    async fn pushed(&self, _channel: &str) -> Result<HashMap<(Sku, String), i64>, SyncError> {
        Ok(self.0.lock().map(|l| l.clone()).unwrap_or_default())
    }
    async fn record(&self, _channel: &str, pushed: &[(Sku, String, i64)]) -> Result<(), SyncError> {
        if let Ok(mut ledger) = self.0.lock() {
            for (sku, location, quantity) in pushed {
                ledger.insert((sku.clone(), location.clone()), *quantity);
            }
        }
        Ok(())
    }
}

fn channel(config: &Config, id: &str, url: String) -> anyhow::Result<ChannelConfig> {
    let mut channel = config
        .channels
        .iter()
        .find(|c| c.id.as_str() == id)
        .cloned()
        .context("example channel")?;
    channel.bundles.clear();
    channel.sku_aliases.clear();
    channel.admin_api = Some(AdminApi {
        url,
        version: "2026-07".to_owned(),
        access_token_secret: "unused".to_owned(),
    });
    channel.stock = Some(StockConfig {
        safety_buffer: 0,
        batch_size: BATCH as u32,
        realtime: false,
        locations: vec![StockLocation {
            warehouse: "WH".to_owned(),
            location: "gid://shopify/Location/1".to_owned(),
        }],
    });
    Ok(channel)
}

/// The hub's peak resident memory so far, from the kernel.
#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let skus: usize = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(50_000);
    let out_dir = PathBuf::from(
        std::env::args()
            .nth(2)
            .unwrap_or_else(|| "bench".to_owned()),
    );
    let plan = match std::env::args().nth(3) {
        Some(name) => <Plan as clap::ValueEnum>::from_str(&name, true)
            .map_err(|e| anyhow::anyhow!("plan {name:?}: {e}"))?,
        None => Plan::Plus,
    };
    let (maximum, restore_rate) = (plan.bucket_size(), plan.restore_rate());
    let sandbox_bin =
        std::env::var("SANDBOX_BIN").unwrap_or_else(|_| "target/release/sandbox".to_owned());
    std::fs::create_dir_all(&out_dir)?;
    let domains = ["bench-uk.myshopify.com", "bench-eu.myshopify.com"];
    // The sandbox generates the stores itself: this process holds only the hub's data.
    let mut child = tokio::process::Command::new(&sandbox_bin)
        .args(["--bind", "127.0.0.1:0"])
        .args(domains.iter().flat_map(|d| {
            [
                "--synthetic".to_owned(),
                format!("{d}:{skus}:{maximum}:{restore_rate}"),
            ]
        }))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {sandbox_bin}"))?;
    let mut lines =
        tokio::io::BufReader::new(child.stdout.take().context("sandbox stdout")?).lines();
    let mut urls = Vec::new();
    while let Some(line) = lines.next_line().await? {
        if line.starts_with("sandbox listening") {
            break;
        }
        urls.push(line);
    }
    let config = Config::from_toml(include_str!("../../../config/erpsync.example.toml"))?;
    let channels = [
        channel(&config, "uk-shop", urls[0].clone())?,
        channel(&config, "eu-shop", urls[1].clone())?,
    ];
    let started = Instant::now();
    // Each channel has its own bucket: the two run side by side.
    let (uk, eu) = tokio::join!(
        resync(&channels[0], domains[0]),
        resync(&channels[1], domains[1])
    );
    let results = [uk?, eu?];
    let elapsed = started.elapsed();
    let _ = child.kill().await;

    // The derivation at the top of this file.
    let mutations = (skus as f64 / BATCH as f64).ceil();
    let points = BULK_READ_POINTS + mutations * MUTATION_POINTS;
    let minimum = ((points - maximum) / restore_rate).max(0.0);
    let report = json!({
        "skus_per_channel": skus,
        "channels": 2,
        "plan": format!("{plan:?}"),
        "restore_rate_points_per_s": restore_rate,
        "bucket_maximum": maximum,
        "mutations": results.iter().map(|o| o.mutations).sum::<usize>(),
        "quantities_set": results.iter().map(|o| o.pushed).sum::<usize>(),
        "points_per_channel": points,
        "throttle_bound_minimum_s": minimum,
        "points_at_restore_rate_s": points / restore_rate,
        "elapsed_s": elapsed.as_secs_f64(),
        // None when the bucket covers the whole run: no throttle bound to compare with.
        "ratio_to_minimum": (minimum > 0.0).then(|| elapsed.as_secs_f64() / minimum),
        "peak_rss_mib": erpsync_bench::peak_rss_mib(None).unwrap_or(0.0),
    });
    std::fs::write(
        out_dir.join("stock.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn resync(channel: &ChannelConfig, domain: &str) -> anyhow::Result<StockOutcome> {
    let api = channel.admin_api.as_ref().context("admin api")?;
    let admin = ShopifyAdmin::new(
        &api.url,
        &api.version,
        SecretString::from(format!("shpat_{domain}")),
    )?;
    let ledger = Ledger::default();
    let deps = StockDeps {
        erp: &StockSource,
        channel: &admin,
        ledger: &ledger,
        deadline: None,
    };
    Ok(sync_stock(&deps, channel, "bench", None).await?)
}
