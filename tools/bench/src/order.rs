//! `order-bench N`: N order messages through order-sync's decisions (parse, map, claim,
//! create, quote, confirm, complete) with in-memory fakes of the ports, so that
//! `valgrind --tool=callgrind` counts the hub's own instructions per message, without I/O.
//! make bench runs it for two values of N and divides the difference, so the fixed start-up
//! cost drops out.

use erpsync_core::config::Config;
use erpsync_core::fakes::{FakeErp, FakeStore};
use erpsync_core::flows::orders::{OrderMessage, OrderSyncDeps, sync_order};
use erpsync_core::model::ids::ChannelId;
use erpsync_core::model::order::OrderTopic;
use time::{Duration, OffsetDateTime};

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(100);
    let config = Config::from_toml(include_str!("../../../config/erpsync.example.toml"))?;
    let store = FakeStore::default();
    let erp =
        FakeErp::with_products(&["IPOD2008GREEN", "IPOD2008RED", "IPOD2008BLACK", "SHIPPING"]);
    let deps = OrderSyncDeps {
        config: &config,
        idempotency: &store,
        state: &store,
        erp: &erp,
        stock: None,
        availability: None,
        archive: None,
    };
    let template: serde_json::Value = serde_json::from_str(include_str!(
        "../../../tests/fixtures/shopify-orders-create-multiline-discount-tax.json"
    ))?;
    let channel = ChannelId::parse("uk-shop")?;
    let now = OffsetDateTime::now_utc();
    let mut synced = 0;
    for i in 0..n {
        let mut order = template.clone();
        order["id"] = serde_json::json!(1_000_000 + i);
        let message = OrderMessage {
            channel: channel.clone(),
            topic: OrderTopic::Create,
            body: serde_json::to_vec(&order)?,
            triggered_at: None,
        };
        if sync_order(&deps, &message, now, now + Duration::seconds(60))
            .await
            .is_ok()
        {
            synced += 1;
        }
    }
    anyhow::ensure!(synced == n, "{synced} of {n} orders synced");
    println!("{n} order messages synced");
    Ok(())
}
