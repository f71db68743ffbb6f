//! `erpsync send order`: one signed Shopify order webhook to shop-webhook, as the channel's
//! store sends it (the sandbox's signing), for trying the local stack by hand. Reads the
//! URL, the config and the secret from the environment `erpsync stack up` prints.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use erpsync_core::config::Platform;
use sandbox::webhooks;
use secrecy::SecretString;
use serde_json::{Value, json};

use crate::up::secret_variable;

/// The order sent when no `--file` is given: Shopify's documented order, three lines.
const DEFAULT_ORDER: &str = "tests/fixtures/shopify-orders-create-multiline-discount-tax.json";

#[derive(clap::Args)]
pub struct SendOrder {
    /// The channel whose store sends it: a Shopify channel of ERPSYNC_CONFIG.
    #[arg(long, default_value = "uk-shop")]
    channel: String,
    /// The order as Shopify sends it (JSON) [default: Shopify's documented order with three
    /// lines, tests/fixtures/shopify-orders-create-multiline-discount-tax.json].
    #[arg(long)]
    file: Option<PathBuf>,
    /// The order's id [default: a new one, so that each send is a new order].
    #[arg(long)]
    id: Option<u64>,
    /// Gives the first line this SKU (one the ERP does not know, to see a failure).
    #[arg(long)]
    sku: Option<String>,
    /// The webhook topic (orders/create, orders/updated, orders/cancelled, ...).
    #[arg(long, default_value = "orders/create")]
    topic: String,
    /// The delivery's X-Shopify-Webhook-Id [default: a new one; send one twice to see a
    /// duplicate delivery].
    #[arg(long)]
    webhook_id: Option<String>,
    /// shop-webhook's function URL.
    #[arg(long, env = "ERPSYNC_SHOP_WEBHOOK_URL")]
    url: String,
    /// The channel's webhook secret [default: $ERPSYNC_WEBHOOK_SECRET_<CHANNEL>, e.g.
    /// ERPSYNC_WEBHOOK_SECRET_UK_SHOP].
    #[arg(long)]
    secret: Option<String>,
    #[arg(long)]
    json: bool,
}

pub async fn order(args: SendOrder) -> anyhow::Result<ExitCode> {
    let config = erpsync_aws::env::load_config().context(
        "the channels come from ERPSYNC_CONFIG (source the env file `erpsync stack up` printed)",
    )?;
    let channel = config
        .channels
        .iter()
        .find(|c| c.id.as_str() == args.channel)
        .with_context(|| format!("ERPSYNC_CONFIG has no channel {}", args.channel))?;
    if channel.platform != Platform::Shopify {
        bail!(
            "{} is not a Shopify channel: send order signs as Shopify does",
            args.channel
        );
    }
    let secret = match args.secret {
        Some(secret) => secret,
        None => {
            let variable = secret_variable(&args.channel);
            std::env::var(&variable)
                .with_context(|| format!("no --secret and {variable} is not set"))?
        }
    };
    let path = args
        .file
        .unwrap_or_else(|| erpsync_tools::project_root().join(DEFAULT_ORDER));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut order: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let id = args.id.unwrap_or_else(fresh_id);
    order["id"] = json!(id);
    if let Some(sku) = &args.sku {
        let line = order["line_items"]
            .get_mut(0)
            .with_context(|| format!("{} has no line_items to give a SKU", path.display()))?;
        line["sku"] = json!(sku);
    }
    let webhook_id = args
        .webhook_id
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let body = order.to_string();
    let delivery = webhooks::Delivery {
        shop_domain: &channel.shop_domain,
        topic: &args.topic,
        webhook_id: &webhook_id,
        body: &body,
    };
    let response = webhooks::send(
        &reqwest::Client::new(),
        &args.url,
        &delivery,
        &SecretString::from(secret),
    )
    .await
    .with_context(|| format!("posting to {} (is `erpsync stack up` running?)", args.url))?;
    let status = response.status();
    let answer = response.text().await.unwrap_or_default();
    if args.json {
        println!(
            "{}",
            json!({"channel": args.channel, "order": id.to_string(), "topic": args.topic,
                   "webhook_id": webhook_id, "status": status.as_u16(), "answer": answer})
        );
    } else {
        println!(
            "{} order {id} ({}, delivery {webhook_id}) -> HTTP {} {answer}",
            args.channel,
            args.topic,
            status.as_u16()
        );
    }
    Ok(if status.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// A 13-digit order id no fixture uses, as Shopify's ids look.
fn fresh_id() -> u64 {
    let span = 9_000_000_000_000u128;
    u64::try_from(uuid::Uuid::new_v4().as_u128() % span + 1_000_000_000_000).unwrap_or(1)
}
