//! Prices from the ERP (the owner) to a channel's variants, in the channel's currency: the
//! ERP computes them (price list, currency rates); only the variants whose price differs
//! are written.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::config::ChannelConfig;
use crate::error::SyncError;
use crate::ids::{CurrencyCode, Sku};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelVariant {
    pub product_id: String,
    pub variant_id: String,
    pub sku: Sku,
    pub price: Decimal,
}

#[async_trait]
pub trait ErpPrices: Send + Sync {
    /// Sale prices of one unit, in `currency`, under the price list named (or list prices).
    async fn prices(
        &self,
        skus: &[Sku],
        currency: &CurrencyCode,
        price_list: Option<&str>,
    ) -> Result<HashMap<Sku, Decimal>, SyncError>;
}

#[async_trait]
pub trait ChannelPrices: Send + Sync {
    /// Every variant of every product (on Shopify a bulk operation: a product has up to
    /// 2,048 variants).
    async fn variants(&self) -> Result<Vec<ChannelVariant>, SyncError>;
    /// New prices for some variants of one product.
    async fn update_prices(
        &self,
        product_id: &str,
        prices: &[(String, Decimal)],
    ) -> Result<(), SyncError>;
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceOutcome {
    pub updated: Vec<String>,
    pub unchanged: usize,
    /// Channel SKUs with no ERP price (unknown, or bundles, which the shop prices itself).
    pub not_priced: Vec<Sku>,
}

pub async fn sync_prices(
    erp: &dyn ErpPrices,
    shop: &dyn ChannelPrices,
    channel: &ChannelConfig,
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
        .prices(&skus, &channel.currency, config.price_list.as_deref())
        .await?;
    let mut outcome = PriceOutcome::default();
    let mut changes: BTreeMap<&str, Vec<(String, Decimal)>> = BTreeMap::new();
    for variant in &variants {
        let price = (!channel.bundles.contains_key(&variant.sku))
            .then(|| prices.get(channel.erp_sku(&variant.sku)))
            .flatten();
        let Some(price) = price else {
            outcome.not_priced.push(variant.sku.clone());
            continue;
        };
        let price = price.round_dp(2);
        if price == variant.price {
            outcome.unchanged += 1;
            continue;
        }
        outcome
            .updated
            .push(format!("{}: {} -> {price}", variant.sku, variant.price));
        changes
            .entry(&variant.product_id)
            .or_default()
            .push((variant.variant_id.clone(), price));
    }
    for (product, prices) in changes {
        shop.update_prices(product, &prices).await?;
    }
    info!(channel = %channel.id, updated = outcome.updated.len(), unchanged = outcome.unchanged, "prices synced");
    Ok(outcome)
}
