//! `sandbox --bind 127.0.0.1:8787 --shops shops.json`: serves simulated Shopify stores
//! until stopped. `shops.json` is a list of store set-ups (domain, access token, products,
//! locations, bucket size and restore rate).

use clap::Parser;
use sandbox::{Sandbox, ShopSetup};

#[derive(Parser)]
#[command(about = "Simulated Shopify Admin GraphQL API for erpsync's demo and tests")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    bind: String,
    #[arg(long)]
    shops: std::path::PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let setups: Vec<ShopSetup> = serde_json::from_str(&std::fs::read_to_string(&args.shops)?)?;
    let sandbox = Sandbox::start(&args.bind).await?;
    for setup in setups {
        println!("{}", sandbox.admin_url(&setup.domain));
        sandbox.shops.add(setup);
    }
    println!("sandbox listening on {}", sandbox.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
