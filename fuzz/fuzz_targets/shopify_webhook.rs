//! A Shopify delivery: any body, its signature checked (a correct one must verify, a wrong
//! one must not), then parsed as an order and a refund and, if it is an order, mapped for
//! every channel of the example config. Nothing may panic.
#![no_main]

use erpsync_core::config::{Config, Platform};
use erpsync_core::channels::signature::{sign_base64_hmac_sha256, verify_base64_hmac_sha256};
use erpsync_core::channels::{self, shopify};
use erpsync_core::mapping;
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;

/// Parsed once: the mapping is what is fuzzed here, not the loader (config_loader does that).
static CONFIG: std::sync::LazyLock<Option<Config>> = std::sync::LazyLock::new(|| {
    Config::from_toml(include_str!("../../config/erpsync.example.toml")).ok()
});

fuzz_target!(|body: &[u8]| {
    let secret = SecretString::from("shpss_fuzz".to_owned());
    let signature = sign_base64_hmac_sha256(body, &secret);
    assert!(verify_base64_hmac_sha256(body, Some(&signature), std::slice::from_ref(&secret)).is_ok());
    let header = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
    if header != signature {
        assert!(verify_base64_hmac_sha256(body, Some(&header), &[secret]).is_err());
    }
    let _ = channels::order_id(Platform::Shopify, body);
    let _ = shopify::parse_refund(body);
    let Some(config) = CONFIG.as_ref() else {
        return;
    };
    for channel in config.channels.iter().filter(|c| c.platform == Platform::Shopify) {
        if let Ok(order) = shopify::parse_order(&channel.id, body) {
            let _ = mapping::sale_draft(&order, channel, &config.erp);
        }
    }
});
