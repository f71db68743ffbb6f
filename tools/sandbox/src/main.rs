//! `sandbox --bind 127.0.0.1:8787 --shops shops.json`: serves simulated Shopify stores
//! until stopped. `shops.json` is a list of store set-ups (domain, access token, products,
//! locations, bucket size and restore rate).

use clap::Parser;
use sandbox::{Plan, Sandbox, ShopSetup};

#[derive(Parser)]
#[command(about = "Simulated Shopify Admin GraphQL API for erpsync's demo and tests")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: String,
    /// A file with a list of store set-ups.
    #[arg(long)]
    shops: Option<std::path::PathBuf>,
    /// A generated store, `domain:skus:bucket:restore_rate` or `domain:skus:plan` (plan:
    /// standard, advanced, plus, enterprise), SKUs `SKU-000000`..., one location
    /// `gid://shopify/Location/1`, token `shpat_<domain>`: for benchmarks. `skus` is a count
    /// (a product each) or `COUNTxV`, products of V variants each.
    #[arg(long)]
    synthetic: Vec<String>,
    /// Orders for a store added above, `domain:count:hours`: ids 1000000..., their
    /// `updated_at` spread evenly over the last `hours` (for the reconciliation bench).
    #[arg(long)]
    orders: Vec<String>,
}

/// `count` orders updated evenly over the last `hours`, oldest first.
fn synthetic_orders(count: u64, hours: u64) -> Vec<serde_json::Value> {
    let now = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let span = time::Duration::hours(i64::try_from(hours).unwrap_or(6));
    (0..count)
        .map(|n| {
            let at = now - span + span * (n as f64 / count.max(1) as f64);
            let at = at
                .replace_nanosecond(0)
                .unwrap_or(at)
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            serde_json::json!({
                "id": 1_000_000 + n,
                "name": format!("#{}", 1001 + n),
                "updated_at": at,
                "currency": "GBP",
                "line_items": [],
            })
        })
        .collect()
}

fn synthetic(spec: &str) -> anyhow::Result<ShopSetup> {
    let parts: Vec<&str> = spec.split(':').collect();
    let (domain, skus, maximum, rate) = match parts.as_slice() {
        [domain, skus, maximum, rate] => (*domain, *skus, maximum.parse()?, rate.parse()?),
        [domain, skus, plan] => {
            let plan = <Plan as clap::ValueEnum>::from_str(plan, true)
                .map_err(|e| anyhow::anyhow!("plan {plan:?}: {e}"))?;
            (*domain, *skus, plan.bucket_size(), plan.restore_rate())
        }
        _ => anyhow::bail!(
            "--synthetic takes domain:skus:bucket:restore_rate or domain:skus:plan, got {spec:?}"
        ),
    };
    let (count, per_product) = match skus.split_once('x') {
        Some((count, per_product)) => (count.parse::<usize>()?, per_product.parse::<usize>()?),
        None => (skus.parse::<usize>()?, 1),
    };
    let skus: Vec<String> = (0..count).map(|n| format!("SKU-{n:06}")).collect();
    Ok(
        ShopSetup::with_skus(domain, "gid://shopify/Location/1", &skus, maximum, rate)
            .grouped(per_product),
    )
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut setups: Vec<ShopSetup> = match &args.shops {
        Some(path) => serde_json::from_str(&std::fs::read_to_string(path)?)?,
        None => Vec::new(),
    };
    for spec in &args.synthetic {
        setups.push(synthetic(spec)?);
    }
    let sandbox = Sandbox::start(&args.bind).await?;
    for setup in setups {
        println!("{}", sandbox.admin_url(&setup.domain));
        sandbox.shops.add(setup);
    }
    for spec in &args.orders {
        let parts: Vec<&str> = spec.split(':').collect();
        let [domain, count, hours] = parts.as_slice() else {
            anyhow::bail!("--orders takes domain:count:hours, got {spec:?}");
        };
        let shop = sandbox
            .shops
            .get(domain)
            .ok_or_else(|| anyhow::anyhow!("--orders for {domain}, which is not a store here"))?;
        for order in synthetic_orders(count.parse()?, hours.parse()?) {
            shop.place_order(order);
        }
    }
    println!("sandbox listening on {}", sandbox.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
