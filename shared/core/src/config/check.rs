//! Reading the configuration, finding a channel in it, and checking it whole: every rule that
//! spans keys (channels against each other, the secrets' layout, limits) fails naming the key.

use super::*;

/// Secret names follow one layout, `<prefix>/erp-api-key`, `<prefix>/<channel>/webhook`,
/// `<prefix>/<channel>/admin-token`, `<prefix>/easypost-webhook`, because the template grants
/// each function only the names it reads (infra/template.yaml): a secret named otherwise
/// would be refused at run time.
fn secret_layout(field: &str, name: &str, ends_with: &str) -> Result<(), ConfigError> {
    let fits = name
        .strip_suffix(ends_with)
        .and_then(|prefix| prefix.strip_suffix('/'))
        .is_some_and(|prefix| !prefix.is_empty() && !prefix.contains(char::is_whitespace));
    if fits {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!(
                "{name:?} must be named <prefix>/{ends_with} (the template grants each function only the secrets it reads, by name)"
            ),
        ))
    }
}

impl Config {
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Config =
            toml::from_str(text).map_err(|e| ConfigError::Syntax(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    pub fn channel(&self, id: &ChannelId) -> Option<&ChannelConfig> {
        self.channels.iter().find(|c| &c.id == id)
    }

    /// Shop domains compare case-insensitively, as DNS names do.
    pub fn channel_by_shop_domain(&self, domain: &str) -> Option<&ChannelConfig> {
        let domain = domain.trim();
        self.channels
            .iter()
            .find(|c| c.shop_domain.eq_ignore_ascii_case(domain))
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (name, carrier) in &self.carriers {
            if carrier
                .tracking_url
                .as_ref()
                .is_some_and(|url| !url.contains("{number}") || !url.starts_with("https://"))
            {
                return Err(invalid(
                    format!("carriers.{name:?}.tracking_url"),
                    "must be an https:// address with {number} where the tracking number goes",
                ));
            }
        }
        if self.erp.database.trim().is_empty() {
            return Err(invalid("erp.database", "must not be empty"));
        }
        secret_layout(
            "erp.api_key_secret",
            &self.erp.api_key_secret,
            "erp-api-key",
        )?;
        if let Some(rpc) = &self.erp.rpc {
            if rpc.user.trim().is_empty() {
                return Err(invalid("erp.rpc.user", "must be a Tryton login"));
            }
            secret_layout(
                "erp.rpc.password_secret",
                &rpc.password_secret,
                "erp-rpc-password",
            )?;
        }
        if let Some(courier) = &self.courier {
            secret_layout(
                "courier.webhook_secret",
                &courier.webhook_secret,
                "easypost-webhook",
            )?;
        }
        if !(1..=300).contains(&self.erp.request_timeout_seconds) {
            return Err(invalid(
                "erp.request_timeout_seconds",
                "must be between 1 and 300",
            ));
        }
        if self.erp.warehouse.trim().is_empty() {
            return Err(invalid("erp.warehouse", "must be a warehouse code"));
        }
        if self.retry.base_seconds == 0 || self.retry.max_seconds < self.retry.base_seconds {
            return Err(invalid(
                "retry",
                "base_seconds must be at least 1 and max_seconds at least base_seconds",
            ));
        }
        // SQS caps a visibility timeout at 12 hours.
        if self.retry.max_seconds > 43_200 {
            return Err(invalid(
                "retry.max_seconds",
                "must be at most 43200 (12 hours)",
            ));
        }
        if self.channels.is_empty() {
            return Err(invalid("channels", "at least one channel is needed"));
        }
        let mut ids = HashSet::new();
        let mut domains = HashSet::new();
        for (index, channel) in self.channels.iter().enumerate() {
            let key = format!("channels[{index}]");
            if !ids.insert(channel.id.clone()) {
                return Err(invalid(
                    format!("{key}.id"),
                    format!("channel id {:?} is used twice", channel.id.as_str()),
                ));
            }
            let domain = channel.shop_domain.to_ascii_lowercase();
            let domain_ok = !domain.is_empty()
                && domain.contains('.')
                && domain.bytes().all(|b| {
                    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-'
                });
            if !domain_ok {
                return Err(invalid(
                    format!("{key}.shop_domain"),
                    format!("{:?} is not a host name", channel.shop_domain),
                ));
            }
            if !domains.insert(domain) {
                return Err(invalid(
                    format!("{key}.shop_domain"),
                    format!("{:?} belongs to another channel too", channel.shop_domain),
                ));
            }
            secret_layout(
                &format!("{key}.webhook_secret"),
                &channel.webhook_secret,
                &format!("{}/webhook", channel.id),
            )?;
            if let Some(api) = &channel.admin_api {
                secret_layout(
                    &format!("{key}.admin_api.access_token_secret"),
                    &api.access_token_secret,
                    &format!("{}/admin-token", channel.id),
                )?;
            }
            for (gateway, journal) in &channel.payments {
                if gateway.trim().is_empty() || journal.trim().is_empty() {
                    return Err(invalid(
                        format!("{key}.payments"),
                        "maps a gateway as the shop names it to an ERP payment journal's name; neither may be empty",
                    ));
                }
            }
            if !channel.payments.is_empty() && self.erp.rpc.is_none() {
                return Err(invalid(
                    format!("{key}.payments"),
                    "recording payments needs [erp.rpc]: Tryton moves a payment on through a wizard, which only its JSON-RPC serves",
                ));
            }
            for (bundle, definition) in &channel.bundles {
                let key = format!("{key}.bundles.{bundle}");
                if definition.components.is_empty() {
                    return Err(invalid(key, "a bundle needs at least one component"));
                }
                for (index, component) in definition.components.iter().enumerate() {
                    if component.quantity == 0 {
                        return Err(invalid(
                            format!("{key}.components[{index}].quantity"),
                            "must be at least 1",
                        ));
                    }
                    if component.weight() <= rust_decimal::Decimal::ZERO {
                        return Err(invalid(
                            format!("{key}.components[{index}].share"),
                            "must be above 0",
                        ));
                    }
                    if channel.bundles.contains_key(&component.sku)
                        || channel.sku_aliases.contains_key(&component.sku)
                    {
                        return Err(invalid(
                            format!("{key}.components[{index}].sku"),
                            format!(
                                "{} is itself a bundle or an alias; name the ERP SKU",
                                component.sku
                            ),
                        ));
                    }
                }
                if channel.sku_aliases.contains_key(bundle) {
                    return Err(invalid(
                        key,
                        "is also a SKU alias; a channel SKU is one or the other",
                    ));
                }
            }
            if let Some(prices) = &channel.prices
                && prices.taxes_included
                && prices.price_list.is_none()
            {
                return Err(invalid(
                    format!("{key}.prices.price_list"),
                    "a channel whose prices include tax needs a Tryton price list with Tax Included set: the products' list prices are net, and would be sold as gross",
                ));
            }
            if (channel.stock.is_some() || channel.prices.is_some()) && channel.admin_api.is_none()
            {
                return Err(invalid(
                    format!("{key}.admin_api"),
                    "stock and prices need the store's Admin API",
                ));
            }
            // The Admin API clients are Shopify's GraphQL: pointed at a WooCommerce store they
            // would fail on every call, so the mistake is refused here, naming the key.
            if channel.admin_api.is_some() && channel.platform == Platform::Woocommerce {
                return Err(invalid(
                    format!("{key}.admin_api"),
                    "is Shopify's Admin API: a WooCommerce channel takes orders by webhook only",
                ));
            }
            if let Some(api) = &channel.admin_api
                && !api.url.starts_with("http")
            {
                return Err(invalid(
                    format!("{key}.admin_api.url"),
                    "must be an http(s) URL",
                ));
            }
            // Full reads follow a bulk operation by `bulkOperation(id:)`, which Shopify added
            // in 2026-01 (versions are YYYY-MM, so they compare as text).
            if let Some(api) = &channel.admin_api {
                let dated = api.version.len() == 7
                    && api.version.as_bytes()[4] == b'-'
                    && api.version.bytes().filter(u8::is_ascii_digit).count() == 6;
                if !dated || api.version.as_str() < MIN_ADMIN_API_VERSION {
                    return Err(invalid(
                        format!("{key}.admin_api.version"),
                        format!(
                            "{:?} must be a Shopify API version (YYYY-MM) of {MIN_ADMIN_API_VERSION} or later",
                            api.version
                        ),
                    ));
                }
            }
            if let Some(api) = &channel.admin_api
                && api.down_alert_minutes > 7 * 24 * 60
            {
                return Err(invalid(
                    format!("{key}.admin_api.down_alert_minutes"),
                    "must be at most a week (10080): a store down longer needs a person",
                ));
            }
            if let Some(stock) = &channel.stock {
                if !(1..=250).contains(&stock.batch_size) {
                    return Err(invalid(
                        format!("{key}.stock.batch_size"),
                        "must be between 1 and 250",
                    ));
                }
                if stock.locations.is_empty() {
                    return Err(invalid(
                        format!("{key}.stock.locations"),
                        "name at least one warehouse -> location",
                    ));
                }
            }
            for (index, tax) in channel.tax_codes.iter().enumerate() {
                if tax.shop_tax.trim().is_empty() || tax.erp_tax.trim().is_empty() {
                    return Err(invalid(
                        format!("{key}.tax_codes[{index}]"),
                        "shop_tax and erp_tax must not be empty",
                    ));
                }
                if tax.rate_percent.is_sign_negative()
                    || tax.rate_percent >= rust_decimal::Decimal::ONE_HUNDRED
                {
                    return Err(invalid(
                        format!("{key}.tax_codes[{index}].rate_percent"),
                        format!(
                            "{} is not a rate in percent (0 to under 100; 20 for 20 %)",
                            tax.rate_percent
                        ),
                    ));
                }
            }
            for (alias, target) in &channel.sku_aliases {
                if channel.sku_aliases.contains_key(target) {
                    return Err(invalid(
                        format!("{key}.sku_aliases.{alias}"),
                        format!(
                            "points to {target}, which is itself an alias; point to the ERP SKU"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
