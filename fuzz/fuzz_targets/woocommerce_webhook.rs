//! A WooCommerce delivery: any body, signed and verified, parsed as an order and mapped for
//! the example config's WooCommerce channel. Nothing may panic.
#![no_main]

use erpsync_core::config::{Config, Platform};
use erpsync_core::channels::signature::{sign_base64_hmac_sha256, verify_base64_hmac_sha256};
use erpsync_core::channels::{self, woocommerce};
use erpsync_core::mapping;
use libfuzzer_sys::fuzz_target;
use secrecy::SecretString;

/// Parsed once: the mapping is what is fuzzed here, not the loader (config_loader does that).
static CONFIG: std::sync::LazyLock<Option<Config>> = std::sync::LazyLock::new(|| {
    Config::from_toml(include_str!("../../config/erpsync.example.toml")).ok()
});

fuzz_target!(|body: &[u8]| {
    let secret = SecretString::from("wc_fuzz".to_owned());
    let signature = sign_base64_hmac_sha256(body, &secret);
    assert!(verify_base64_hmac_sha256(body, Some(&signature), &[secret]).is_ok());
    let _ = channels::order_id(Platform::Woocommerce, body);
    let Some(config) = CONFIG.as_ref() else {
        return;
    };
    for channel in config.channels.iter().filter(|c| c.platform == Platform::Woocommerce) {
        if let Ok(order) = woocommerce::parse_order(&channel.id, body) {
            let _ = mapping::sale_draft(&order, channel, &config.erp);
        }
    }
});
