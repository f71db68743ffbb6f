//! Stock from the ERP (the owner) to a channel's locations: what each channel SKU may sell
//! (aliases, bundles as the minimum their components allow, the safety buffer), compared
//! with what the channel shows, and only the differences sent. A channel-side change is
//! overwritten and reported as drift.

use std::collections::{BTreeSet, HashMap};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::{ChannelConfig, StockConfig};
use crate::error::SyncError;
use crate::mapping::{channel_skus_drawing_on, erp_skus};
use crate::model::ids::Sku;
use crate::ports::{ChannelInventory, ErpStock, StockChange, StockLedger};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StockOutcome {
    /// (SKU, location) quantities written.
    pub pushed: usize,
    pub unchanged: usize,
    pub mutations: usize,
    /// Channel-side changes found and overwritten.
    pub drift: Vec<String>,
    /// Channel SKUs the ERP does not know (after aliases and bundles).
    pub unknown: Vec<Sku>,
    /// False when the run stopped before its deadline with changes left: the next run
    /// resumes, since it compares with what the channel shows and skips what is done.
    pub complete: bool,
}

/// What a channel SKU may sell given the ERP's available stock: a bundle as many as its
/// scarcest component allows; less the safety buffer; never below zero. None: unknown SKU.
pub fn sellable(
    channel: &ChannelConfig,
    stock: &StockConfig,
    sku: &Sku,
    available: &HashMap<Sku, i64>,
) -> Option<i64> {
    let quantity = match channel.bundles.get(sku) {
        Some(bundle) => bundle
            .components
            .iter()
            .map(|c| {
                available
                    .get(&c.sku)
                    .map(|a| a / i64::from(c.quantity.max(1)))
            })
            .collect::<Option<Vec<_>>>()?
            .into_iter()
            .min()?,
        None => *available.get(channel.erp_sku(sku))?,
    };
    Some((quantity - i64::from(stock.safety_buffer)).max(0))
}

pub struct StockDeps<'a> {
    pub erp: &'a dyn ErpStock,
    pub channel: &'a dyn ChannelInventory,
    pub ledger: &'a dyn StockLedger,
    /// When the run must have stopped (the function's deadline); none: no limit.
    pub deadline: Option<Instant>,
}

/// `only`: limit the run to channel items drawing on these ERP SKUs (a real-time refresh
/// after orders moved them); none: every item.
pub async fn sync_stock(
    deps: &StockDeps<'_>,
    channel: &ChannelConfig,
    run_id: &str,
    only: Option<&BTreeSet<Sku>>,
) -> Result<StockOutcome, SyncError> {
    let stock = channel.stock.as_ref().ok_or_else(|| {
        SyncError::permanent(
            "not_configured",
            format!("channel {} has no [channels.stock] section", channel.id),
        )
    })?;
    let items = match only {
        Some(only) => {
            let mut items = deps
                .channel
                .items_with_skus(&channel_skus_drawing_on(channel, only))
                .await?;
            items.retain(|item| {
                erp_skus(channel, &item.sku)
                    .iter()
                    .any(|sku| only.contains(sku))
            });
            items
        }
        None => deps.channel.items().await?,
    };
    let needed: Vec<Sku> = items
        .iter()
        .flat_map(|item| erp_skus(channel, &item.sku))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut available = HashMap::new();
    for location in &stock.locations {
        available.insert(
            location.warehouse.clone(),
            deps.erp.available(&needed, &location.warehouse).await?,
        );
    }
    let pushed = deps.ledger.pushed(channel.id.as_str()).await?;
    let mut outcome = StockOutcome::default();
    let mut changes = Vec::new();
    for item in &items {
        for location in &stock.locations {
            let Some(wanted) = available
                .get(&location.warehouse)
                .and_then(|a| sellable(channel, stock, &item.sku, a))
            else {
                if !outcome.unknown.contains(&item.sku) {
                    outcome.unknown.push(item.sku.clone());
                }
                continue;
            };
            let shown = item.levels.get(&location.location).copied();
            if let (Some(last), Some(shown)) = (
                pushed.get(&(item.sku.clone(), location.location.clone())),
                shown,
            ) && *last != shown
            {
                outcome.drift.push(format!(
                    "{} at {}: channel showed {shown}, erpsync had set {last}",
                    item.sku, location.location
                ));
            }
            if shown == Some(wanted) {
                outcome.unchanged += 1;
                continue;
            }
            changes.push(StockChange {
                sku: item.sku.clone(),
                inventory_item: item.inventory_item.clone(),
                location: location.location.clone(),
                quantity: wanted,
                change_from: shown,
            });
        }
    }
    outcome.complete = true;
    for (index, batch) in changes.chunks(stock.batch_size as usize).enumerate() {
        if crate::runtime::deadline::time_to_stop(deps.deadline) {
            warn!(channel = %channel.id, left = changes.len() - outcome.pushed, "stopping before the deadline; the next run resumes");
            outcome.complete = false;
            break;
        }
        // The key names this exact batch: a retried run replays it instead of applying twice.
        let key = format!(
            "{run_id}-{index}-{}",
            crate::model::state::PayloadHash::of(&batch_key(batch)).as_str()
        );
        let stale = deps.channel.set_available(batch, &key).await?;
        outcome.mutations += 1;
        if !stale.is_empty() {
            // The channel changed between our read and our write; the ERP owns stock, so
            // those are written again unconditionally and reported.
            let again: Vec<StockChange> = stale
                .iter()
                .filter_map(|i| batch.get(*i))
                .map(|c| StockChange {
                    change_from: None,
                    ..c.clone()
                })
                .collect();
            for change in &again {
                outcome.drift.push(format!(
                    "{} at {}: changed in the channel during the run",
                    change.sku, change.location
                ));
            }
            deps.channel
                .set_available(&again, &format!("{key}-overwrite"))
                .await?;
            outcome.mutations += 1;
        }
        let recorded: Vec<(Sku, String, i64)> = batch
            .iter()
            .map(|c| (c.sku.clone(), c.location.clone(), c.quantity))
            .collect();
        deps.ledger.record(channel.id.as_str(), &recorded).await?;
        outcome.pushed += batch.len();
    }
    if !outcome.drift.is_empty() {
        warn!(channel = %channel.id, drift = outcome.drift.len(), "channel-side stock changes overwritten");
    }
    info!(channel = %channel.id, pushed = outcome.pushed, unchanged = outcome.unchanged, mutations = outcome.mutations, "stock synced");
    Ok(outcome)
}

fn batch_key(batch: &[StockChange]) -> Vec<(String, String, i64)> {
    batch
        .iter()
        .map(|c| (c.inventory_item.clone(), c.location.clone(), c.quantity))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config() -> Config {
        Config::from_toml(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/erpsync.example.toml"
        )))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    fn sku(text: &str) -> Sku {
        Sku::parse(text).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn a_moved_erp_sku_refreshes_itself_its_aliases_and_its_bundles() {
        let config = config();
        let moved = BTreeSet::from([sku("IPOD2008BLACK"), sku("WOOL-SOCKS")]);
        let skus = channel_skus_drawing_on(&config.channels[0], &moved);
        for expected in [
            "IPOD2008BLACK",
            "IPOD-BLACK-LEGACY",
            "WOOL-SOCKS",
            "IPOD-TRIO",
        ] {
            assert!(skus.contains(&sku(expected)), "{expected} in {skus:?}");
        }
        assert!(!skus.contains(&sku("IPOD2008RED")));
    }

    #[test]
    fn a_bundle_sells_what_its_scarcest_component_allows_less_the_buffer() {
        let config = config();
        let channel = &config.channels[0];
        let stock = channel
            .stock
            .as_ref()
            .unwrap_or_else(|| panic!("uk-shop has stock config"));
        let available = HashMap::from([
            (sku("IPOD2008GREEN"), 10),
            (sku("IPOD2008RED"), 4),
            (sku("WOOL-SOCKS"), 7),
        ]);
        // IPOD-TRIO: 1 green, 1 red, 2 socks each -> min(10, 4, 3) = 3, less the buffer of 2.
        assert_eq!(
            sellable(channel, stock, &sku("IPOD-TRIO"), &available),
            Some(1)
        );
        assert_eq!(
            sellable(channel, stock, &sku("IPOD2008RED"), &available),
            Some(2)
        );
        assert_eq!(
            sellable(channel, stock, &sku("NOT-IN-ERP"), &available),
            None
        );
        let scarce = HashMap::from([(sku("IPOD2008RED"), 1)]);
        assert_eq!(
            sellable(channel, stock, &sku("IPOD2008RED"), &scarce),
            Some(0),
            "never below zero"
        );
    }
}

#[cfg(test)]
mod deadline_tests {
    use std::sync::Mutex;
    use std::time::Duration;

    use super::*;
    use crate::config::Config;
    use async_trait::async_trait;

    use crate::ports::ChannelItem;

    struct Erp;
    #[async_trait]
    impl ErpStock for Erp {
        async fn available(&self, skus: &[Sku], _: &str) -> Result<HashMap<Sku, i64>, SyncError> {
            Ok(skus.iter().map(|s| (s.clone(), 5)).collect())
        }
    }

    #[derive(Default)]
    struct Shop(Mutex<usize>);
    #[async_trait]
    impl ChannelInventory for Shop {
        async fn items(&self) -> Result<Vec<ChannelItem>, SyncError> {
            Ok(["IPOD2008RED", "IPOD2008BLACK"]
                .iter()
                .filter_map(|s| Sku::parse(s).ok())
                .map(|sku| ChannelItem {
                    inventory_item: sku.to_string(),
                    sku,
                    levels: HashMap::new(),
                })
                .collect())
        }
        async fn items_with_skus(&self, skus: &[Sku]) -> Result<Vec<ChannelItem>, SyncError> {
            let mut items = self.items().await?;
            items.retain(|item| skus.contains(&item.sku));
            Ok(items)
        }
        async fn set_available(&self, _: &[StockChange], _: &str) -> Result<Vec<usize>, SyncError> {
            *self
                .0
                .lock()
                .map_err(|_| SyncError::retryable("lock", "poisoned"))? += 1;
            Ok(Vec::new())
        }
    }

    #[derive(Default)]
    struct Ledger;
    #[async_trait]
    impl StockLedger for Ledger {
        async fn pushed(&self, _: &str) -> Result<HashMap<(Sku, String), i64>, SyncError> {
            Ok(HashMap::new())
        }
        async fn record(&self, _: &str, _: &[(Sku, String, i64)]) -> Result<(), SyncError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_run_near_its_deadline_stops_cleanly_and_says_it_is_incomplete() {
        let config = Config::from_toml(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/erpsync.example.toml"
        )))
        .unwrap_or_else(|e| panic!("{e}"));
        let shop = Shop::default();
        let deps = StockDeps {
            erp: &Erp,
            channel: &shop,
            ledger: &Ledger,
            deadline: Some(Instant::now() + Duration::from_secs(1)),
        };
        let outcome = sync_stock(&deps, &config.channels[0], "run", None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!outcome.complete);
        assert_eq!(outcome.pushed, 0);
        assert_eq!(
            shop.0.lock().map(|n| *n).unwrap_or(99),
            0,
            "nothing started that could be cut"
        );

        let unlimited = StockDeps {
            deadline: None,
            ..deps
        };
        let outcome = sync_stock(&unlimited, &config.channels[0], "run", None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(outcome.complete);
        assert_eq!(outcome.pushed, 2);
    }
}
