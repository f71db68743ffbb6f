//! Prices from the ERP (the owner) to a channel's variants, in the channel's currency: the
//! ERP computes them (price list, currency rates); only the variants whose price differs
//! are written.

use std::collections::BTreeMap;
use std::time::Instant;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::ChannelConfig;
use crate::error::SyncError;
use crate::model::ids::Sku;
use crate::ports::{ChannelPrices, ErpPrices};
use crate::runtime::deadline::time_to_stop;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceOutcome {
    pub updated: Vec<String>,
    pub unchanged: usize,
    /// Channel SKUs with no ERP price (unknown, or bundles, which the shop prices itself).
    pub not_priced: Vec<Sku>,
    /// Price writes made (Shopify: `productVariantsBulkUpdate` calls, 10 points each).
    pub mutations: usize,
    /// Products whose new prices the shop refused, with its reason.
    pub rejected: Vec<String>,
    /// False when the run stopped before its deadline with prices left to write: the next run
    /// writes them, since it compares with the prices the channel shows.
    pub complete: bool,
}

/// The error kind of a write the shop refused for that product alone (`userErrors`).
pub const REJECTED: &str = "channel_rejected";

/// One product's variants' new prices, and each change as the outcome reports it.
type ProductChanges = (Vec<(String, Decimal)>, Vec<String>);

/// Shopify caps a mutation's input arrays at 250 items ("Shopify API limits").
pub const MAX_VARIANTS_PER_UPDATE: usize = 250;

/// `deadline`: when the run must have stopped (the function's timeout); none: no limit.
pub async fn sync_prices(
    erp: &dyn ErpPrices,
    shop: &dyn ChannelPrices,
    channel: &ChannelConfig,
    deadline: Option<Instant>,
) -> Result<PriceOutcome, SyncError> {
    let config = channel.prices.as_ref().ok_or_else(|| {
        SyncError::permanent(
            "not_configured",
            format!("channel {} has no [channels.prices] section", channel.id),
        )
    })?;
    let variants = shop.variants().await?;
    let skus: Vec<Sku> = variants
        .iter()
        .filter(|v| !channel.bundles.contains_key(&v.sku))
        .map(|v| channel.erp_sku(&v.sku).clone())
        .collect();
    let prices = erp
        .prices(
            &skus,
            &channel.currency,
            config.price_list.as_deref(),
            config.taxes_included,
        )
        .await?;
    let mut outcome = PriceOutcome::default();
    let mut changes: BTreeMap<&str, ProductChanges> = BTreeMap::new();
    for variant in &variants {
        let price = (!channel.bundles.contains_key(&variant.sku))
            .then(|| prices.get(channel.erp_sku(&variant.sku)))
            .flatten();
        let Some(price) = price else {
            outcome.not_priced.push(variant.sku.clone());
            continue;
        };
        // To the currency's minor unit, half away from zero as prices are quoted.
        let price = channel.currency.round(*price);
        if price == variant.price {
            outcome.unchanged += 1;
            continue;
        }
        let (writes, described) = changes.entry(&variant.product_id).or_default();
        writes.push((variant.variant_id.clone(), price));
        described.push(format!("{}: {} -> {price}", variant.sku, variant.price));
    }
    // A product has up to 2,048 variants and Shopify takes at most 250 in one input array.
    let writes: Vec<_> = changes
        .iter()
        .flat_map(|(product, (prices, described))| {
            prices
                .chunks(MAX_VARIANTS_PER_UPDATE)
                .zip(described.chunks(MAX_VARIANTS_PER_UPDATE))
                .map(move |(chunk, described)| (*product, chunk, described))
        })
        .collect();
    outcome.complete = true;
    // Only what was written is reported updated; the rest is the next run's.
    for (product, chunk, described) in &writes {
        if time_to_stop(deadline) {
            warn!(channel = %channel.id, left = writes.len() - outcome.mutations, "stopping before the deadline; the next run resumes");
            outcome.complete = false;
            break;
        }
        outcome.mutations += 1;
        match shop.update_prices(product, chunk).await {
            Ok(()) => outcome.updated.extend_from_slice(described),
            // The shop refused this product's prices (its userErrors): the others still go,
            // and the run says which product needs a person.
            Err(error) if error.kind == REJECTED => {
                warn!(channel = %channel.id, product, error = %error, "a product's prices were refused");
                outcome.rejected.push(error.message);
            }
            Err(error) => return Err(error),
        }
    }
    info!(channel = %channel.id, updated = outcome.updated.len(), unchanged = outcome.unchanged, complete = outcome.complete, "prices synced");
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::config::Config;
    use std::collections::HashMap;

    use async_trait::async_trait;

    use crate::model::ids::CurrencyCode;
    use crate::ports::ChannelVariant;

    /// One product with `count` variants, every one priced 1 in the shop.
    struct Shop {
        count: usize,
        calls: Mutex<Vec<usize>>,
    }

    fn sku(n: usize) -> Sku {
        Sku::parse(&format!("SKU-{n}")).unwrap_or_else(|e| panic!("{e}"))
    }

    #[async_trait]
    impl ChannelPrices for Shop {
        async fn variants(&self) -> Result<Vec<ChannelVariant>, SyncError> {
            Ok((0..self.count)
                .map(|n| ChannelVariant {
                    product_id: "gid://shopify/Product/1".to_owned(),
                    variant_id: format!("gid://shopify/ProductVariant/{n}"),
                    sku: sku(n),
                    price: Decimal::ONE,
                })
                .collect())
        }
        async fn update_prices(
            &self,
            _product_id: &str,
            prices: &[(String, Decimal)],
        ) -> Result<(), SyncError> {
            if let Ok(mut calls) = self.calls.lock() {
                calls.push(prices.len());
            }
            Ok(())
        }
    }

    /// Every SKU at one price.
    struct Erp(Decimal);

    #[async_trait]
    impl ErpPrices for Erp {
        async fn prices(
            &self,
            skus: &[Sku],
            _currency: &CurrencyCode,
            _price_list: Option<&str>,
            _gross: bool,
        ) -> Result<HashMap<Sku, Decimal>, SyncError> {
            Ok(skus.iter().map(|s| (s.clone(), self.0)).collect())
        }
    }

    #[tokio::test]
    async fn a_product_s_new_prices_go_250_variants_at_a_time() {
        let config = Config::from_toml(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/erpsync.example.toml"
        )))
        .unwrap_or_else(|e| panic!("{e}"));
        let mut channel = config.channels[0].clone();
        channel.bundles.clear();
        channel.sku_aliases.clear();
        let shop = Shop {
            count: 600,
            calls: Mutex::new(Vec::new()),
        };
        let outcome = sync_prices(&Erp(Decimal::TWO), &shop, &channel, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcome.updated.len(), 600);
        assert_eq!(
            shop.calls.lock().map(|c| c.clone()).unwrap_or_default(),
            [250, 250, 100]
        );
    }

    #[tokio::test]
    async fn prices_round_to_their_currency_s_minor_unit() {
        let config = Config::from_toml(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/erpsync.example.toml"
        )))
        .unwrap_or_else(|e| panic!("{e}"));
        let mut channel = config.channels[0].clone();
        channel.bundles.clear();
        channel.sku_aliases.clear();
        // 1234.5625 in the ERP (a price list's factor): yen have no minor unit, dinars three.
        for (currency, sent) in [
            ("JPY", "SKU-0: 1 -> 1235"),
            ("KWD", "SKU-0: 1 -> 1234.563"),
            ("GBP", "SKU-0: 1 -> 1234.56"),
        ] {
            channel.currency = CurrencyCode::parse(currency).unwrap_or_else(|e| panic!("{e}"));
            let shop = Shop {
                count: 1,
                calls: Mutex::new(Vec::new()),
            };
            let outcome = sync_prices(&Erp(Decimal::new(12_345_625, 4)), &shop, &channel, None)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(outcome.updated, [sent], "{currency}");
        }
    }

    #[tokio::test]
    async fn a_run_near_its_deadline_writes_nothing_more_and_says_it_is_incomplete() {
        let config = Config::from_toml(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/erpsync.example.toml"
        )))
        .unwrap_or_else(|e| panic!("{e}"));
        let mut channel = config.channels[0].clone();
        channel.bundles.clear();
        channel.sku_aliases.clear();
        let shop = Shop {
            count: 3,
            calls: Mutex::new(Vec::new()),
        };
        let soon = Instant::now() + std::time::Duration::from_secs(1);
        let outcome = sync_prices(&Erp(Decimal::TWO), &shop, &channel, Some(soon))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(!outcome.complete);
        assert_eq!((outcome.mutations, outcome.updated.len()), (0, 0));
        assert!(shop.calls.lock().map(|c| c.is_empty()).unwrap_or(false));
        let outcome = sync_prices(&Erp(Decimal::TWO), &shop, &channel, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(outcome.complete);
        assert_eq!((outcome.mutations, outcome.updated.len()), (1, 3));
    }

    /// Two products; the shop refuses the first one's prices (its userErrors).
    struct RefusingShop;

    #[async_trait]
    impl ChannelPrices for RefusingShop {
        async fn variants(&self) -> Result<Vec<ChannelVariant>, SyncError> {
            Ok((0..2)
                .map(|n| ChannelVariant {
                    product_id: format!("gid://shopify/Product/{n}"),
                    variant_id: format!("gid://shopify/ProductVariant/{n}"),
                    sku: sku(n),
                    price: Decimal::ONE,
                })
                .collect())
        }
        async fn update_prices(
            &self,
            product_id: &str,
            _prices: &[(String, Decimal)],
        ) -> Result<(), SyncError> {
            if product_id.ends_with("/0") {
                Err(SyncError::permanent(
                    REJECTED,
                    format!("{product_id}: price too high"),
                ))
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn a_product_the_shop_refuses_is_reported_and_the_rest_still_written() {
        let config = Config::from_toml(include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../config/erpsync.example.toml"
        )))
        .unwrap_or_else(|e| panic!("{e}"));
        let mut channel = config.channels[0].clone();
        channel.bundles.clear();
        channel.sku_aliases.clear();
        let outcome = sync_prices(&Erp(Decimal::TWO), &RefusingShop, &channel, None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(outcome.updated, ["SKU-1: 1 -> 2.00"]);
        assert_eq!(
            outcome.rejected,
            ["gid://shopify/Product/0: price too high"]
        );
        assert!(outcome.complete);
    }
}
