//! The one configuration: ERP settings, channels and their mappings. Parsed and checked once
//! per cold start; every error names the key to fix. Secrets are referenced by name only.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::ids::{ChannelId, CountryCode, CurrencyCode, Sku};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config is not valid TOML for erpsync: {0}")]
    Syntax(String),
    #[error("config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub erp: ErpConfig,
    #[serde(default)]
    pub retry: RetryPolicy,
    #[serde(default)]
    pub ownership: Ownership,
    /// ERP carrier (its party name) -> how the shop and the customer see its tracking.
    #[serde(default)]
    pub carriers: BTreeMap<String, CarrierConfig>,
    /// The courier tracking service that sends tracking webhooks (EasyPost).
    pub courier: Option<CourierConfig>,
    pub channels: Vec<ChannelConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarrierConfig {
    /// The tracking company as the shop names it (Shopify's list: "Royal Mail", "DHL Express").
    pub company: String,
    /// Tracking page with `{number}` where the tracking number goes.
    pub tracking_url: Option<String>,
}

impl CarrierConfig {
    pub fn tracking_url(&self, number: &str) -> Option<String> {
        self.tracking_url
            .as_ref()
            .map(|template| template.replace("{number}", number))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourierConfig {
    /// Secrets Manager secret with the EasyPost webhook secret(s).
    pub webhook_secret: String,
}

/// Which side may change each data set. A change from the other side is refused and
/// recorded, never applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    Erp,
    Channel,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ownership {
    /// Channel: the shop's edits and cancellations reach the ERP sale. ERP: orders are
    /// created from the shop, but later changes there are refused.
    pub orders: Owner,
    /// ERP: an existing customer's master data (name) is never changed from a shop order.
    pub customers: Owner,
    pub products: Owner,
    pub stock: Owner,
    pub prices: Owner,
}

impl Default for Ownership {
    fn default() -> Self {
        Self {
            orders: Owner::Channel,
            customers: Owner::Erp,
            products: Owner::Erp,
            stock: Owner::Erp,
            prices: Owner::Erp,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErpConfig {
    /// Tryton database name (the first segment of the REST path).
    pub database: String,
    /// Name of the Secrets Manager secret holding the Tryton REST application key.
    pub api_key_secret: String,
    /// Code of the warehouse (stock.location) sales ship from.
    pub warehouse: String,
    /// Name of the payment term put on sales.
    pub payment_term: String,
    /// ERP SKU of the service product that carries shipping charges.
    pub shipping_sku: Sku,
    /// ERP SKU of the service product that carries refunds without goods coming back
    /// (goodwill, items the customer keeps) on return sales.
    pub refund_sku: Sku,
    /// How long one ERP request may take before it counts as failed (and is retried).
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u32,
    /// ERP SKU of an untaxed service product that takes the difference, a minor unit or two,
    /// between a tax-inclusive shop's total and the total the ERP makes by taxing the net
    /// prices itself (Tryton has no tax-included sale price). None: no such line, and
    /// reconciliation flags the difference.
    pub rounding_sku: Option<Sku>,
    /// How the ERP rounds taxes: as Tryton's account configuration says (its default is
    /// `document`: each tax summed over the sale, then rounded; `line`: each line's rounded).
    #[serde(default)]
    pub tax_rounding: TaxRounding,
    /// The ERP user that moves payments on. Tryton processes a payment through a wizard,
    /// which its REST API does not serve; its JSON-RPC does, for a user's session. Needed
    /// when any channel records payments (`[channels.payments]`).
    pub rpc: Option<ErpRpcLogin>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErpRpcLogin {
    /// The Tryton login (a user in the Account and Payment groups, nothing more).
    pub user: String,
    /// Name of the Secrets Manager secret holding that user's password.
    pub password_secret: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaxRounding {
    #[default]
    Document,
    Line,
}

fn default_request_timeout() -> u32 {
    30
}

/// Backoff for retryable failures: the n-th receive waits about base * 2^(n-1), capped.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    pub base_seconds: u32,
    pub max_seconds: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base_seconds: 5,
            max_seconds: 900,
        }
    }
}

impl RetryPolicy {
    pub fn base(&self) -> Duration {
        Duration::from_secs(self.base_seconds.into())
    }
    pub fn max(&self) -> Duration {
        Duration::from_secs(self.max_seconds.into())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    Shopify,
    Woocommerce,
}

/// How far a channel is live: the switch that lets a business go live one channel at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Webhooks are accepted and recorded as skipped.
    Off,
    /// Everything but the ERP writes; the request that would have been sent is recorded.
    Shadow,
    Live,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelConfig {
    pub id: ChannelId,
    pub platform: Platform,
    /// The store's host: Shopify's `X-Shopify-Shop-Domain` (`shop-uk.myshopify.com`), or the
    /// host of WooCommerce's `X-WC-Webhook-Source` (`shop.example.com`).
    pub shop_domain: String,
    pub territory: CountryCode,
    pub currency: CurrencyCode,
    /// Name of the Secrets Manager secret with the webhook signing secret(s).
    pub webhook_secret: String,
    pub mode: Mode,
    /// Channel SKU -> ERP SKU, for products the shop names differently.
    #[serde(default)]
    pub sku_aliases: BTreeMap<Sku, Sku>,
    /// Channel SKUs sold as a set of ERP products.
    #[serde(default)]
    pub bundles: BTreeMap<Sku, Bundle>,
    /// Shop shipping method (its code, else its title) -> ERP carrier (its party name).
    /// Empty: sales carry no carrier. Otherwise every method must be mapped.
    #[serde(default)]
    pub delivery_methods: BTreeMap<String, String>,
    /// Shop tax -> ERP tax, per destination country. Empty: sales carry no taxes (and
    /// tax-inclusive prices are refused). Otherwise every tax must be mapped.
    #[serde(default)]
    pub tax_codes: Vec<TaxCode>,
    /// What an order charges beyond products and shipping (tips, gift cards sold, custom
    /// items, duties, fees) -> the ERP service product each is booked to. A charge of a kind
    /// not mapped here waits for a person, naming the line and the key.
    #[serde(default)]
    pub charges: BTreeMap<crate::model::order::ChargeKind, Sku>,
    /// The customer an order with no address is booked to (a point-of-sale sale, digital
    /// goods, some draft orders). None: such an order waits for a person.
    pub default_customer: Option<FallbackCustomer>,
    /// Per point-of-sale location (Shopify's `location_id`): its own fallback customer,
    /// before `default_customer`.
    #[serde(default)]
    pub pos_customers: BTreeMap<String, FallbackCustomer>,
    /// Payment gateway as the shop names it (Shopify's transaction `gateway`:
    /// `shopify_payments`, `gift_card`, `manual`, `paypal`, ...) -> the ERP payment journal
    /// (its name) the money is recorded on; `{currency}` in the name stands for the sale's
    /// currency code (a journal has one). A gateway not mapped here waits for a person,
    /// naming it. Empty: this channel's payments are not recorded.
    #[serde(default)]
    pub payments: BTreeMap<String, String>,
    /// The store's Admin API, which the stock, price and reconciliation flows call.
    pub admin_api: Option<AdminApi>,
    /// Which ERP warehouse feeds which shop location. None: stock is not synced here.
    pub stock: Option<StockConfig>,
    /// ERP prices for this channel. None: prices are not synced here.
    pub prices: Option<PriceConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminApi {
    /// The store's Admin API base, e.g. `https://shop-uk.myshopify.com`.
    pub url: String,
    /// Admin API version in the path, e.g. `2026-07`.
    pub version: String,
    /// Secrets Manager secret holding the Admin API access token.
    pub access_token_secret: String,
    /// How long the store may fail every shipment run (down, or refusing the token) before
    /// it needs a person. Its shipments wait meanwhile; none is parked for it.
    #[serde(default = "default_down_alert_minutes")]
    pub down_alert_minutes: u32,
}

fn default_down_alert_minutes() -> u32 {
    60
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockConfig {
    /// Units held back from what the channel may sell, per SKU and location.
    #[serde(default)]
    pub safety_buffer: u32,
    /// Items per inventory mutation (Shopify takes at most 250).
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Also refresh promptly when orders or the ERP move stock, not only on the schedule.
    #[serde(default)]
    pub realtime: bool,
    pub locations: Vec<StockLocation>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceConfig {
    /// Name of the Tryton price list for this channel; none: the products' list prices.
    /// Prices come out in the channel's currency at the ERP's rates.
    pub price_list: Option<String>,
    /// Also push prices within a minute or so of a change in the ERP (list price, price
    /// list, currency rate), not only on the hourly schedule.
    #[serde(default)]
    pub realtime: bool,
    /// The shop's prices include tax (Shopify's "all prices include tax", a European store):
    /// the ERP's net list prices would sell some 16 % under (19 % VAT). Needs a price list
    /// with "Tax Included" set in Tryton, whose prices are then the gross ones.
    #[serde(default)]
    pub taxes_included: bool,
}

fn default_batch_size() -> u32 {
    250
}

/// An ERP warehouse's available stock is what this shop location may sell.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockLocation {
    /// Code of the ERP warehouse.
    pub warehouse: String,
    /// The shop's location id (`gid://shopify/Location/...`).
    pub location: String,
}

/// A channel SKU that is several ERP products. The line's net amount is shared among the
/// components in proportion to `share` (default: the component's quantity), rounded to the
/// cent, the last component taking the rounding remainder: totals are kept to the penny.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    pub components: Vec<BundleComponent>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleComponent {
    pub sku: Sku,
    /// Units of this product in one bundle.
    pub quantity: u32,
    pub share: Option<rust_decimal::Decimal>,
}

impl BundleComponent {
    pub fn weight(&self) -> rust_decimal::Decimal {
        self.share
            .unwrap_or_else(|| rust_decimal::Decimal::from(self.quantity))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaxCode {
    /// The tax's title in the shop (Shopify's tax line title, WooCommerce's rate code).
    pub shop_tax: String,
    /// Destination country this applies to; none: any destination.
    pub country: Option<CountryCode>,
    /// The rate the shop charges under this title, in percent (8.875 for 8.875 %): the same
    /// title at another rate (New York's 8.875 % against a 6 % state, a 7 % book against 19 %)
    /// is another tax, and an order carrying it needs a person, not the wrong ERP tax.
    pub rate_percent: rust_decimal::Decimal,
    /// Name of the tax in the ERP.
    pub erp_tax: String,
}

/// Who an order without an address is invoiced and shipped to: the shop's own walk-in
/// customer, say. The order's own e-mail and name, when it has them, still come first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FallbackCustomer {
    pub email: Option<crate::model::ids::Email>,
    pub address: crate::model::order::Address,
}

/// Why a shop tax has no ERP tax.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TaxMiss {
    /// No entry has its title for that destination.
    Unmapped,
    /// Entries have its title for that destination, at these other rates (percent).
    OtherRate(Vec<rust_decimal::Decimal>),
    /// The shop sent no rate, and entries have its title at these rates (percent).
    RateUnknown(Vec<rust_decimal::Decimal>),
}

/// How far two rates (percent) may differ and still be one: shops send rates as floats.
pub const RATE_TOLERANCE_PERCENT: rust_decimal::Decimal =
    rust_decimal::Decimal::from_parts(1, 0, 0, false, 4);

impl ChannelConfig {
    /// The ERP SKU for a channel SKU: its alias, or itself.
    pub fn erp_sku<'a>(&'a self, channel_sku: &'a Sku) -> &'a Sku {
        self.sku_aliases.get(channel_sku).unwrap_or(channel_sku)
    }

    /// The ERP carrier for a shop delivery method: by its code, else its title.
    pub fn carrier_for(&self, code: Option<&str>, title: &str) -> Option<&String> {
        code.and_then(|code| self.delivery_methods.get(code))
            .or_else(|| self.delivery_methods.get(title))
    }

    /// The ERP tax for a shop tax (by title, case-insensitive, and rate, a fraction as the
    /// shops send it) at a destination: the entries for that country, else those for any
    /// destination. A tax the shop sent without a rate matches on its title alone.
    pub fn erp_tax_for(
        &self,
        title: &str,
        rate: Option<rust_decimal::Decimal>,
        destination: Option<&CountryCode>,
    ) -> Result<&str, TaxMiss> {
        let titled = |code: &&TaxCode| code.shop_tax.trim().eq_ignore_ascii_case(title.trim());
        let for_country: Vec<&TaxCode> = self
            .tax_codes
            .iter()
            .filter(titled)
            .filter(|code| code.country.is_some() && code.country.as_ref() == destination)
            .collect();
        let candidates = if for_country.is_empty() {
            self.tax_codes
                .iter()
                .filter(titled)
                .filter(|code| code.country.is_none())
                .collect()
        } else {
            for_country
        };
        if candidates.is_empty() {
            return Err(TaxMiss::Unmapped);
        }
        let rates = || candidates.iter().map(|c| c.rate_percent).collect();
        let Some(rate) = rate else {
            // Without a rate (WooCommerce before 3.7) the title decides only when it names
            // one rate; otherwise which ERP tax is a guess.
            return match candidates.as_slice() {
                [only] => Ok(only.erp_tax.as_str()),
                _ => Err(TaxMiss::RateUnknown(rates())),
            };
        };
        let percent = rate * rust_decimal::Decimal::ONE_HUNDRED;
        candidates
            .iter()
            .find(|code| (percent - code.rate_percent).abs() <= RATE_TOLERANCE_PERCENT)
            .map(|code| code.erp_tax.as_str())
            .ok_or_else(|| TaxMiss::OtherRate(rates()))
    }
}

/// The oldest Shopify Admin API version erpsync speaks (bulk operations by id).
pub const MIN_ADMIN_API_VERSION: &str = "2026-01";

mod check;

#[cfg(test)]
mod tests;
