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
use std::sync::Mutex;
use std::time::Instant;

use async_trait::async_trait;
use erpsync_core::SyncError;
use erpsync_core::config::{ChannelConfig, StockConfig, StockLocation};
use erpsync_core::flows::stock::{StockDeps, StockOutcome, sync_stock};
use erpsync_core::model::ids::Sku;
use erpsync_core::ports::{ErpStock, StockLedger};
use serde_json::json;

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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = erpsync_bench::CatalogueArgs::from_env()?;
    let (skus, plan) = (args.skus, args.plan);
    let (maximum, restore_rate) = (plan.bucket_size(), plan.restore_rate());
    let (mut child, mut channels) =
        erpsync_bench::synthetic_stores(&skus.to_string(), plan).await?;
    for channel in &mut channels {
        channel.stock = Some(StockConfig {
            safety_buffer: 0,
            batch_size: BATCH as u32,
            realtime: false,
            locations: vec![StockLocation {
                warehouse: "WH".to_owned(),
                location: "gid://shopify/Location/1".to_owned(),
            }],
        });
    }
    let started = Instant::now();
    // Each channel has its own bucket: the two run side by side.
    let (uk, eu) = tokio::join!(resync(&channels[0]), resync(&channels[1]));
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
        args.out_dir.join("stock.json"),
        serde_json::to_vec_pretty(&report)?,
    )?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn resync(channel: &ChannelConfig) -> anyhow::Result<StockOutcome> {
    let admin = erpsync_bench::admin_client(channel)?;
    let ledger = Ledger::default();
    let deps = StockDeps {
        erp: &StockSource,
        channel: &admin,
        ledger: &ledger,
        deadline: None,
    };
    Ok(sync_stock(&deps, channel, "bench", None).await?)
}
