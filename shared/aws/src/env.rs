//! What a function reads from its environment, once, at cold start.

use anyhow::Context;
use aws_config::{BehaviorVersion, SdkConfig};
use erpsync_core::config::Config;

pub fn required(name: &str) -> anyhow::Result<String> {
    std::env::var(name).with_context(|| format!("environment variable {name} is not set"))
}

/// The config file named by `ERPSYNC_CONFIG`, parsed and validated.
pub fn load_config() -> anyhow::Result<Config> {
    let path = required("ERPSYNC_CONFIG")?;
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading config {path}"))?;
    Config::from_toml(&text).with_context(|| format!("config {path}"))
}

/// The AWS SDK configuration from the standard chain (region, credentials,
/// `AWS_ENDPOINT_URL` for the local stack).
pub async fn sdk_config() -> SdkConfig {
    aws_config::load_defaults(BehaviorVersion::latest()).await
}
