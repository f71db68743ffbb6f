//! The config loader on any text: an error naming the key, never a panic.
#![no_main]

use erpsync_core::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = Config::from_toml(text);
});
