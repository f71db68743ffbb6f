//! Price full resync at scale: N SKUs x 2 channels against the Shopify sandbox (a separate
//! process), every price changed, at Shopify's documented cost model and a plan's bucket and
//! restore rate (`price-bench [SKUS] [OUT_DIR] [standard|advanced|plus] [VARIANTS_PER_PRODUCT]`;
//! 50,000, bench, Plus, 10). Reports mutations, elapsed time against the throttle-bound minimum,
//! and the hub's peak memory.
//!
//! The minimum, per channel (each has its own bucket): the catalogue is one bulk operation
//! (`bulkOperationRunQuery`, a mutation, 10 points, and a status look-up, 1); the writes are one
//! `productVariantsBulkUpdate` (10 points) per product and 250 of its variants (Shopify takes one
//! product's variants per call and at most 250 in an input array). The bucket starts full:
//! minimum = max(0, points - bucket) / restore rate. Prices are written per product, so the
//! catalogue's shape decides the figure: a catalogue of single-variant products costs ten times
//! one of ten-variant products for the same number of SKUs.
//!
//! The ERP side is a deterministic price source: this bench measures the channel path (the bulk
//! read, grouping, pacing); the ERP's own price queries are measured on their own.

use std::collections::HashMap;
use std::time::Instant;

use async_trait::async_trait;
use erpsync_core::SyncError;
use erpsync_core::config::{ChannelConfig, PriceConfig};
use erpsync_core::flows::prices::{MAX_VARIANTS_PER_UPDATE, PriceOutcome, sync_prices};
use erpsync_core::model::ids::{CurrencyCode, Sku};
use erpsync_core::ports::ErpPrices;
use rust_decimal::Decimal;
use serde_json::json;

const BULK_READ_POINTS: f64 = 10.0 + 1.0;
const MUTATION_POINTS: f64 = 10.0;

/// A price per SKU between 5.00 and 94.99, never the sandbox's starting 0.00.
struct PriceSource;

#[async_trait]
impl ErpPrices for PriceSource {
    async fn prices(
        &self,
        skus: &[Sku],
        _currency: &CurrencyCode,
        _price_list: Option<&str>,
        _gross: bool,
    ) -> Result<HashMap<Sku, Decimal>, SyncError> {
        Ok(skus
            .iter()
            .enumerate()
            .map(|(i, sku)| (sku.clone(), Decimal::new(500 + (i as i64 * 7919) % 9000, 2)))
            .collect())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = erpsync_bench::CatalogueArgs::from_env()?;
    let per_product: usize = std::env::args()
        .nth(4)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(10)
        .max(1);
    anyhow::ensure!(args.skus > 0, "a price bench needs at least one SKU");
    let (skus, plan) = (args.skus, args.plan);
    let (maximum, restore_rate) = (plan.bucket_size(), plan.restore_rate());
    let (mut child, mut channels) =
        erpsync_bench::synthetic_stores(&format!("{skus}x{per_product}"), plan).await?;
    for channel in &mut channels {
        channel.prices = Some(PriceConfig {
            price_list: None,
            realtime: false,
            taxes_included: false,
        });
    }
    let started = Instant::now();
    // Each channel has its own bucket: the two run side by side.
    let (uk, eu) = tokio::join!(resync(&channels[0]), resync(&channels[1]));
    let results = [uk?, eu?];
    let elapsed = started.elapsed();
    let _ = child.kill().await;

    // The derivation at the top of this file.
    let products = skus.div_ceil(per_product);
    let last = skus - (products - 1) * per_product;
    let mutations = (products - 1) * per_product.div_ceil(MAX_VARIANTS_PER_UPDATE)
        + last.div_ceil(MAX_VARIANTS_PER_UPDATE);
    let points = BULK_READ_POINTS + mutations as f64 * MUTATION_POINTS;
    let minimum = ((points - maximum) / restore_rate).max(0.0);
    let report = json!({
        "skus_per_channel": skus,
        "variants_per_product": per_product,
        "channels": 2,
        "plan": format!("{plan:?}"),
        "restore_rate_points_per_s": restore_rate,
        "bucket_maximum": maximum,
        "mutations": results.iter().map(|o| o.mutations).sum::<usize>(),
        "prices_set": results.iter().map(|o| o.updated.len()).sum::<usize>(),
        "complete": results.iter().all(|o| o.complete),
        "points_per_channel": points,
        "throttle_bound_minimum_s": minimum,
        "points_at_restore_rate_s": points / restore_rate,
        "elapsed_s": elapsed.as_secs_f64(),
        "ratio_to_minimum": (minimum > 0.0).then(|| elapsed.as_secs_f64() / minimum),
        "peak_rss_mib": erpsync_bench::peak_rss_mib(None).unwrap_or(0.0),
    });
    std::fs::write(
        args.out_dir.join(format!("price-{per_product}.json")),
        serde_json::to_vec_pretty(&report)?,
    )?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn resync(channel: &ChannelConfig) -> anyhow::Result<PriceOutcome> {
    let admin = erpsync_bench::admin_client(channel)?;
    let outcome = sync_prices(&PriceSource, &admin, channel, None).await?;
    anyhow::ensure!(
        outcome.not_priced.is_empty() && outcome.unchanged == 0,
        "channel {}: {} not priced, {} unchanged: every price should have changed",
        channel.id,
        outcome.not_priced.len(),
        outcome.unchanged
    );
    Ok(outcome)
}
