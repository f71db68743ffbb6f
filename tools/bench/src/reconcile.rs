//! Reconciliation at volume (issue 15): ORDERS orders updated in the last 6 hours of one
//! store (the sandbox, a separate process, at a plan's GraphQL cost and REST request limits),
//! `reconcile-bench [ORDERS] [OUT_DIR] [standard|advanced|plus] [LOST_PER_THOUSAND]`
//! (20,000, bench, Standard, 10).
//!
//! Sync state knows every order at its version (booked, with its totals) except
//! LOST_PER_THOUSAND in a thousand, whose webhooks were lost: those the run fetches from the
//! shop (REST) and enqueues. The ERP answers each review search at once with the booked
//! totals, and state is in memory: this bench measures the channel path (GraphQL pages under
//! the cost model, REST fetches under the request bucket) and counts every request, ERP and
//! state ones included, whose own throughput is measured elsewhere.
//!
//! Two runs: the first, with no cursor, reads the whole 6-hour window (a first run, or the
//! run after an outage); the second is the steady one, 30 minutes after the first.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use erpsync_core::SyncError;
use erpsync_core::config::{ChannelConfig, Config};
use erpsync_core::fakes::{FakeCursors, FakeErp};
use erpsync_core::flows::reconcile::{
    ReconcileDeps, ReconcileOutcome, reconcile, reconcile_cursor,
};
use erpsync_core::model::ids::CurrencyCode;
use erpsync_core::model::state::{
    BookedTotals, EntityRef, ErrorReport, OrderBasis, SyncRecord, SyncState, SyncStatus,
};
use erpsync_core::ports::{ArchivedPayload, PayloadArchive, SyncStateStore};
use erpsync_core::ports::{Cursors, ErpSaleView, SalesReview};
use erpsync_core::ports::{FoundOrders, ShopOrderRef};
use rust_decimal::Decimal;
use serde_json::json;
use time::OffsetDateTime;

/// The reconcile function's timeout (template.yaml): a run must stop inside it.
const FUNCTION_TIMEOUT: Duration = Duration::from_secs(300);
/// Its schedule: a run must finish well inside it.
const SCHEDULE: Duration = Duration::from_secs(30 * 60);

/// What every order was booked at (and every ERP sale still adds up to).
fn booked() -> Option<BookedTotals> {
    Some(BookedTotals {
        currency: CurrencyCode::parse("GBP").ok()?,
        net: Decimal::new(1000, 2),
        gross: Decimal::new(1200, 2),
        cancelled: false,
    })
}

/// Sync state: every order booked at any version (a far-future one), but the lost ones.
struct State {
    lost_every: u64,
}

impl State {
    fn lost(&self, entity: &EntityRef) -> bool {
        entity
            .entity_id
            .parse::<u64>()
            .is_ok_and(|id| self.lost_every > 0 && id % self.lost_every == 0)
    }
}

#[async_trait]
impl SyncStateStore for State {
    async fn record(&self, _: &SyncRecord) -> Result<(), SyncError> {
        Ok(())
    }
    async fn record_failure(
        &self,
        _: &EntityRef,
        _: SyncStatus,
        _: &ErrorReport,
        _: Option<OffsetDateTime>,
    ) -> Result<(), SyncError> {
        Ok(())
    }
    async fn get(&self, entity: &EntityRef) -> Result<Option<SyncState>, SyncError> {
        if self.lost(entity) {
            return Ok(None);
        }
        Ok(Some(SyncState {
            entity: entity.clone(),
            status: SyncStatus::Synced,
            erp_id: Some(1),
            erp_number: None,
            version: Some(time::macros::datetime!(2100-01-01 00:00 UTC)),
            note: None,
            attempts: 0,
            last_error: None,
            updated_at: OffsetDateTime::now_utc(),
            basis: Some(OrderBasis {
                taxes_included: false,
                refunded_before_fulfilment: None,
                booked: booked(),
            }),
        }))
    }
}

#[derive(Default)]
struct Rest {
    enqueued: Mutex<usize>,
    cursors: FakeCursors,
}

#[async_trait]
impl FoundOrders for Rest {
    async fn enqueue(
        &self,
        _: &ChannelConfig,
        _: &ShopOrderRef,
        _: String,
        _: OffsetDateTime,
    ) -> Result<(), SyncError> {
        if let Ok(mut count) = self.enqueued.lock() {
            *count += 1;
        }
        Ok(())
    }
}

#[async_trait]
impl PayloadArchive for Rest {
    async fn keep(&self, _: &EntityRef, _: &ArchivedPayload) -> Result<(), SyncError> {
        Ok(())
    }
    async fn latest(&self, _: &EntityRef) -> Result<Option<ArchivedPayload>, SyncError> {
        Ok(None)
    }
}

#[async_trait]
impl SalesReview for Rest {
    async fn sales_by_reference(&self, reference: &str) -> Result<Vec<ErpSaleView>, SyncError> {
        let Some(totals) = booked() else {
            return Ok(Vec::new());
        };
        Ok(vec![ErpSaleView {
            id: 1,
            number: Some("SO1".to_owned()),
            reference: Some(reference.to_owned()),
            customer_name: String::new(),
            customer_emails: Vec::new(),
            currency: "GBP".to_owned(),
            sale_date: None,
            lines: Vec::new(),
            untaxed_amount: totals.net,
            total_amount: Some(totals.gross),
            state: "processing".to_owned(),
        }])
    }
    async fn sales_of_customer(
        &self,
        _: &erpsync_core::model::ids::Email,
        _: time::Date,
        _: time::Date,
    ) -> Result<Vec<ErpSaleView>, SyncError> {
        Ok(Vec::new())
    }
}

async fn timed_run(
    deps: &ReconcileDeps<'_>,
    channel: &ChannelConfig,
) -> Result<(ReconcileOutcome, f64), SyncError> {
    let started = Instant::now();
    let outcome = reconcile(
        deps,
        channel,
        OffsetDateTime::now_utc(),
        time::Duration::hours(6),
        Some(SystemTime::now() + FUNCTION_TIMEOUT),
    )
    .await?;
    Ok((outcome, started.elapsed().as_secs_f64()))
}

fn figures(outcome: &ReconcileOutcome, elapsed: f64) -> serde_json::Value {
    json!({
        "elapsed_s": elapsed,
        "orders_checked": outcome.checked,
        "enqueued": outcome.enqueued.len(),
        "reviewed": outcome.reviewed,
        "flagged": outcome.flagged.len(),
        "errors": outcome.errors.len(),
        "unfinished": outcome.unfinished,
        "graphql_pages": outcome.requests.shop_pages,
        "rest_order_fetches": outcome.requests.shop_orders,
        "state_batch_reads": outcome.requests.state_batches,
        "erp_searches": outcome.requests.erp_searches,
        "share_of_schedule": elapsed / SCHEDULE.as_secs_f64(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let orders: u64 = args
        .next()
        .map(|n| n.parse())
        .transpose()?
        .unwrap_or(20_000);
    let out_dir: std::path::PathBuf = args.next().unwrap_or_else(|| "bench".to_owned()).into();
    let plan = match args.next() {
        Some(name) => <sandbox::Plan as clap::ValueEnum>::from_str(&name, true)
            .map_err(|e| anyhow::anyhow!("plan {name:?}: {e}"))?,
        None => sandbox::Plan::Standard,
    };
    let lost_per_thousand: u64 = args.next().map(|n| n.parse()).transpose()?.unwrap_or(10);
    std::fs::create_dir_all(&out_dir)?;
    let (_, domain) = erpsync_bench::CHANNELS[0];
    let more = vec!["--orders".to_owned(), format!("{domain}:{orders}:6")];
    let (mut child, channels) = erpsync_bench::synthetic_stores_with("1", plan, &more).await?;
    let channel = channels
        .first()
        .ok_or_else(|| anyhow::anyhow!("no bench channel"))?;
    let shop = erpsync_bench::admin_client(channel)?;
    let config = Config::from_toml(include_str!("../../../config/erpsync.example.toml"))?;
    let state = State {
        lost_every: 1000 / lost_per_thousand.clamp(1, 1000),
    };
    let rest = Rest::default();
    let erp = FakeErp::default();
    let deps = ReconcileDeps {
        config: &config,
        shop: &shop,
        state: &state,
        archive: &rest,
        queue: &rest,
        erp: &rest,
        sales: &erp,
        cursors: &rest.cursors,
    };
    let (first, first_s) = timed_run(&deps, channel).await?;
    // Thirty minutes on: the steady run reads from its cursor (less the overlap).
    let cursor = reconcile_cursor(channel);
    let after_first = rest.cursors.cursor(&cursor).await?;
    if let Some(at) = after_first {
        rest.cursors
            .set_cursor(&cursor, at - time::Duration::minutes(30))
            .await?;
    }
    let (steady, steady_s) = timed_run(&deps, channel).await?;
    let report = json!({
        "plan": format!("{plan:?}").to_lowercase(),
        "orders_in_window": orders,
        "lost_per_thousand": lost_per_thousand,
        "graphql_restore_rate": plan.restore_rate(),
        "rest_requests_per_s": plan.restore_rate() / 50.0,
        "function_timeout_s": FUNCTION_TIMEOUT.as_secs(),
        "schedule_s": SCHEDULE.as_secs(),
        "first_run": figures(&first, first_s),
        "steady_run": figures(&steady, steady_s),
        "peak_rss_mib": erpsync_bench::peak_rss_mib(None),
    });
    let path = out_dir.join("reconcile.json");
    std::fs::write(&path, serde_json::to_string_pretty(&report)?)?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    child.kill().await.ok();
    Ok(())
}
