//! Stock full resync at scale: N SKUs x 2 channels against the Shopify sandbox (a separate
//! process, so the figures are the hub's), at the sandbox's cost model and a restore rate
//! of 1,000 points/s. Reports mutations, elapsed time against the throttle-bound minimum the
//! cost model implies, and the hub's peak memory.
//!
//! The ERP side is a deterministic stock source and the ledger stays in memory: this bench
//! measures the channel path (paging, batching, pacing); ERP and DynamoDB throughput are
//! measured on their own.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use erpsync_connectors::shopify::ShopifyAdmin;
use erpsync_core::SyncError;
use erpsync_core::config::{AdminApi, ChannelConfig, Config, StockConfig, StockLocation};
use erpsync_core::ids::Sku;
use erpsync_core::stock::{ErpStock, StockDeps, StockLedger, StockOutcome, sync_stock};
use secrecy::SecretString;
use serde_json::json;
use tokio::io::AsyncBufReadExt;

const RESTORE_RATE: f64 = 1000.0;
const MAXIMUM: f64 = 2000.0;
const PAGE: f64 = 100.0;
const LEVELS: f64 = 50.0;
const BATCH: usize = 250;

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
                format!("{d}:{skus}:{MAXIMUM}:{RESTORE_RATE}"),
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

    // The sandbox's cost model: a catalogue page costs 1 + 100 + 50 points, a mutation
    // 10 + one per item. Each channel has its own bucket, so the two run in parallel.
    let pages = (skus as f64 / PAGE).ceil();
    let mutations = (skus as f64 / BATCH as f64).ceil();
    let points = pages * (1.0 + PAGE + LEVELS) + mutations * 10.0 + skus as f64;
    let minimum = Duration::from_secs_f64(((points - MAXIMUM) / RESTORE_RATE).max(0.0));
    let report = json!({
        "skus_per_channel": skus,
        "channels": 2,
        "restore_rate_points_per_s": RESTORE_RATE,
        "bucket_maximum": MAXIMUM,
        "mutations": results.iter().map(|o| o.mutations).sum::<usize>(),
        "quantities_set": results.iter().map(|o| o.pushed).sum::<usize>(),
        "points_per_channel": points,
        "throttle_bound_minimum_s": minimum.as_secs_f64(),
        "elapsed_s": elapsed.as_secs_f64(),
        "ratio_to_minimum": elapsed.as_secs_f64() / minimum.as_secs_f64().max(f64::EPSILON),
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
