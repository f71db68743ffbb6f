//! Shopify's Admin GraphQL API: the catalogue with what each location shows,
//! `inventorySetQuantities`, prices, orders and fulfilments. Rate-limit aware: it reads
//! `extensions.cost.throttleStatus` and waits for the bucket to refill instead of failing.
//!
//! Every query fits Shopify's 1,000-point single-query limit under the documented cost
//! rules (connection = 2 + first x one node, object 1, scalar 0, mutation 10); each query's
//! constant (in the file of its concern) carries its requested cost worked out.
//! Catalogue-wide reads are bulk operations, which have no cost limit; nested connections
//! of targeted reads page with their own cursors, so nothing is skipped.
//!
//! One file per concern: `transport` (a GraphQL call paced by the cost bucket, and what
//! Shopify's refusals mean), `bulk` (bulk operations and their download), `inventory`,
//! `orders` (with the REST order read), `prices` and `fulfilment`; `tests` checks every
//! query's stated cost.

mod bulk;
mod fulfilment;
mod inventory;
mod orders;
mod prices;
#[cfg(test)]
mod tests;
mod transport;

use std::collections::HashMap;
use std::time::Duration;

use erpsync_core::config::{ChannelConfig, Config};
use secrecy::SecretString;
use tokio::sync::Mutex;

pub struct ShopifyAdmin {
    http: reqwest::Client,
    endpoint: String,
    token: SecretString,
    /// The last throttle status seen: (currently available, restore rate).
    budget: Mutex<Option<(f64, f64)>>,
}

/// Admin API clients for the channels `wanted` selects (and that have an Admin API), each
/// with the token `token` fetches by secret name: what every Admin-API function wires at
/// cold start.
pub async fn admin_clients<F, Fut, E>(
    config: &Config,
    wanted: impl Fn(&ChannelConfig) -> bool,
    token: F,
) -> Result<HashMap<String, ShopifyAdmin>, E>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<SecretString, E>>,
    E: From<reqwest::Error>,
{
    let mut clients = HashMap::new();
    for channel in config.channels.iter().filter(|c| wanted(c)) {
        if let Some(api) = &channel.admin_api {
            let secret = token(api.access_token_secret.clone()).await?;
            clients.insert(
                channel.id.to_string(),
                ShopifyAdmin::new(&api.url, &api.version, secret)?,
            );
        }
    }
    Ok(clients)
}

impl ShopifyAdmin {
    pub fn new(
        admin_url: &str,
        api_version: &str,
        token: SecretString,
    ) -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(3))
                .timeout(Duration::from_secs(30))
                .build()?,
            endpoint: format!(
                "{}/admin/api/{api_version}/graphql.json",
                admin_url.trim_end_matches('/')
            ),
            token,
            budget: Mutex::new(None),
        })
    }
}
