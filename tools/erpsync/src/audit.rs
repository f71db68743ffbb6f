//! `erpsync audit`: the preflight before go-live, over the ERP and each channel's Admin API
//! (the rules are in erpsync_core::flows::audit).

use std::collections::HashMap;

use erpsync_connectors::shopify::ShopifyAdmin;
use erpsync_core::channels;
use erpsync_core::config::Config;
use erpsync_core::flows::audit::{
    Duplicate, DuplicateCustomers, Unmapped, currency_mismatch, duplicate_customers, duplicates,
    tax_rate_mismatches, unknown_skus, unmapped,
};
use erpsync_core::model::ids::Sku;
use erpsync_core::ports::ChannelPrices;
use erpsync_core::ports::{ChannelOrders, ErpCatalogue};
use serde::Serialize;
use time::OffsetDateTime;

#[derive(Debug, Serialize)]
pub struct AuditReport {
    pub erp_duplicate_skus: Vec<Duplicate>,
    pub duplicate_customers: Vec<DuplicateCustomers>,
    pub channels: Vec<ChannelAudit>,
}

#[derive(Debug, Default, Serialize)]
pub struct ChannelAudit {
    pub channel: String,
    /// Tax entries whose ERP tax is missing or charges another rate (checked without the
    /// Admin API too: they come from the config and the ERP).
    pub tax_rates: Vec<String>,
    /// The channel's currency as the ERP rounds it, when that is not its ISO minor unit.
    pub currency: Option<String>,
    /// Why this channel was not (fully) checked.
    pub not_checked: Option<String>,
    pub duplicate_skus: Vec<Duplicate>,
    pub unknown_skus: Vec<Sku>,
    pub orders_checked: usize,
    /// Recent orders that do not even parse, with the reason.
    pub unreadable_orders: Vec<String>,
    pub unmapped: Unmapped,
}

impl AuditReport {
    /// How many things need fixing before go-live.
    pub fn findings(&self) -> usize {
        self.erp_duplicate_skus.len()
            + self.duplicate_customers.len()
            + self
                .channels
                .iter()
                .map(|c| {
                    c.duplicate_skus.len()
                        + c.tax_rates.len()
                        + usize::from(c.currency.is_some())
                        + c.unknown_skus.len()
                        + c.unreadable_orders.len()
                        + c.unmapped.delivery_methods.len()
                        + c.unmapped.taxes.len()
                })
                .sum::<usize>()
    }
}

/// Runs every check; orders updated since `since` are the "recent orders". `progress` hears
/// what is being read (the CLI shows it on a spinner).
pub async fn audit(
    config: &Config,
    erp: &dyn ErpCatalogue,
    shops: &HashMap<String, ShopifyAdmin>,
    since: OffsetDateTime,
    progress: &dyn Fn(&str),
) -> anyhow::Result<AuditReport> {
    progress("the ERP's products and customers");
    let codes = erp.product_codes().await?;
    let contacts = erp.customer_emails().await?;
    progress("the ERP's taxes");
    let tax_rates = erp.tax_rates().await?;
    let roundings = erp.currency_roundings().await?;
    let mut channels = Vec::new();
    for channel in &config.channels {
        let mut found = ChannelAudit {
            channel: channel.id.to_string(),
            tax_rates: tax_rate_mismatches(channel, &tax_rates),
            currency: currency_mismatch(channel, &roundings),
            ..ChannelAudit::default()
        };
        let Some(shop) = shops.get(channel.id.as_str()) else {
            found.not_checked = Some(
                "no [channels.admin_api]: its catalogue and recent orders cannot be read"
                    .to_owned(),
            );
            channels.push(found);
            continue;
        };
        progress(&format!("{}: catalogue", channel.id));
        let variants = shop.variants().await?;
        let skus: Vec<Sku> = variants.iter().map(|v| v.sku.clone()).collect();
        found.duplicate_skus = duplicates(skus.iter().map(Sku::as_str));
        found.unknown_skus = unknown_skus(channel, &skus, &codes);
        let mut orders = Vec::new();
        for order in shop.updated_since(since).await? {
            progress(&format!("{}: order {}", channel.id, order.id));
            let body = shop.order_body(&order.id).await?;
            match channels::parse_order(channel.platform, &channel.id, body.as_bytes()) {
                Ok(parsed) => orders.push(parsed),
                Err(error) => found
                    .unreadable_orders
                    .push(format!("order {}: {error}", order.id)),
            }
        }
        found.orders_checked = orders.len();
        found.unmapped = unmapped(channel, &orders);
        channels.push(found);
    }
    Ok(AuditReport {
        erp_duplicate_skus: duplicates(codes.iter().map(String::as_str)),
        duplicate_customers: duplicate_customers(&contacts),
        channels,
    })
}

/// For people: what to fix, grouped by where.
pub fn render(report: &AuditReport) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line("ERP".to_owned());
    for duplicate in &report.erp_duplicate_skus {
        line(format!(
            "  SKU {} is held by {} products ({}): make product codes unique",
            duplicate.value,
            duplicate.count,
            duplicate.spellings.join(", ")
        ));
    }
    for group in &report.duplicate_customers {
        let parties: Vec<String> = group
            .parties
            .iter()
            .map(|p| format!("{} ({})", p.party_name, p.party_id))
            .collect();
        line(format!(
            "  customers sharing {}: {} - merge them, or orders will attach to either",
            group.email,
            parties.join(", ")
        ));
    }
    for channel in &report.channels {
        line(format!("channel {}", channel.channel));
        if let Some(currency) = &channel.currency {
            line(format!("  {currency}"));
        }
        for mismatch in &channel.tax_rates {
            line(format!(
                "  tax {mismatch}: correct rate_percent or erp_tax in [[channels.tax_codes]]"
            ));
        }
        if let Some(reason) = &channel.not_checked {
            line(format!("  not checked: {reason}"));
            continue;
        }
        for duplicate in &channel.duplicate_skus {
            line(format!(
                "  SKU {} is on {} variants ({}): stock and orders cannot tell them apart",
                duplicate.value,
                duplicate.count,
                duplicate.spellings.join(", ")
            ));
        }
        for sku in &channel.unknown_skus {
            line(format!(
                "  SKU {sku} is not an ERP product (nor an alias or bundle of one): add it to the ERP or map it under [channels.sku_aliases]"
            ));
        }
        for (method, orders) in &channel.unmapped.delivery_methods {
            line(format!(
                "  delivery method {method:?} (orders {}) has no ERP carrier: add it under [channels.delivery_methods]",
                orders.join(", ")
            ));
        }
        for (tax, orders) in &channel.unmapped.taxes {
            line(format!(
                "  tax {tax} (orders {}) has no ERP tax: add a [[channels.tax_codes]] entry",
                orders.join(", ")
            ));
        }
        for order in &channel.unreadable_orders {
            line(format!("  {order}"));
        }
        line(format!(
            "  {} recent order(s) checked",
            channel.orders_checked
        ));
    }
    line(format!("{} finding(s)", report.findings()));
    out
}
