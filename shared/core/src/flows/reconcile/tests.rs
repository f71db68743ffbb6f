use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use crate::model::ids::ExternalOrderId;
use crate::ports::OrderPage;
use async_trait::async_trait;
use rust_decimal::Decimal;
use time::macros::datetime;

use super::*;
use crate::fakes::{FakeCursors, FakeErp, FakeStore, poisoned};
use crate::model::ids::CurrencyCode;
use crate::model::state::{OrderBasis, SyncRecord};
use crate::ports::ArchivedPayload;

const CONFIG: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../config/erpsync.example.toml"
));
const NOW: OffsetDateTime = datetime!(2026-12-03 12:00 UTC);

/// The shop: orders by id and update time, pages of 100; some it cannot serve.
#[derive(Default)]
struct Shop {
    orders: Vec<ShopOrderRef>,
    gone: HashSet<String>,
    down: Mutex<HashSet<String>>,
    fetched: Mutex<Vec<String>>,
}

#[async_trait]
impl ChannelOrders for Shop {
    async fn updated_page(
        &self,
        since: OffsetDateTime,
        after: Option<&str>,
    ) -> Result<OrderPage, SyncError> {
        let start: usize = after.and_then(|a| a.parse().ok()).unwrap_or(0);
        let listed: Vec<ShopOrderRef> = self
            .orders
            .iter()
            .filter(|o| o.updated_at > since)
            .cloned()
            .collect();
        let orders: Vec<ShopOrderRef> = listed.iter().skip(start).take(100).cloned().collect();
        let next = (start + 100 < listed.len()).then(|| (start + 100).to_string());
        Ok(OrderPage { orders, next })
    }
    async fn order_body(&self, id: &ExternalOrderId) -> Result<String, SyncError> {
        if self.down.lock().map_err(poisoned)?.contains(id.as_str()) {
            return Err(SyncError::dependency_down(
                "channel_unavailable",
                "Shopify answered HTTP 503",
            ));
        }
        if self.gone.contains(id.as_str()) {
            return Err(SyncError::permanent(
                "channel_refused",
                format!("Shopify answered HTTP 404 for order {id}"),
            ));
        }
        self.fetched.lock().map_err(poisoned)?.push(id.to_string());
        Ok(format!("{{\"id\": {id}}}"))
    }
}

#[derive(Default)]
struct Rest {
    store: FakeStore,
    erp: FakeErp,
    enqueued: Mutex<Vec<String>>,
    cursors: FakeCursors,
    /// reference -> (untaxed, total) of its one sale.
    sales: HashMap<String, (Decimal, Decimal)>,
    searches: Mutex<usize>,
}

#[async_trait]
impl FoundOrders for Rest {
    async fn enqueue(
        &self,
        _: &ChannelConfig,
        order: &ShopOrderRef,
        _: String,
        _: OffsetDateTime,
    ) -> Result<(), SyncError> {
        self.enqueued
            .lock()
            .map_err(poisoned)?
            .push(order.id.to_string());
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
        Ok(self
            .sales
            .get(reference)
            .map(|(untaxed, total)| ErpSaleView {
                id: 1,
                number: Some(format!("SO-{reference}")),
                reference: Some(reference.to_owned()),
                customer_name: String::new(),
                customer_emails: Vec::new(),
                currency: "GBP".to_owned(),
                sale_date: None,
                lines: Vec::new(),
                untaxed_amount: *untaxed,
                total_amount: Some(*total),
                state: "processing".to_owned(),
            })
            .into_iter()
            .collect())
    }
    async fn sales_by_references(
        &self,
        references: &[String],
    ) -> Result<BTreeMap<String, Vec<ErpSaleView>>, SyncError> {
        *self.searches.lock().map_err(poisoned)? += 1;
        let mut found = BTreeMap::new();
        for reference in references {
            found.insert(reference.clone(), self.sales_by_reference(reference).await?);
        }
        Ok(found)
    }
    async fn sales_of_customer(
        &self,
        _: &crate::model::ids::Email,
        _: time::Date,
        _: time::Date,
    ) -> Result<Vec<ErpSaleView>, SyncError> {
        Ok(Vec::new())
    }
}

fn order(n: i64) -> ShopOrderRef {
    ShopOrderRef {
        id: ExternalOrderId::parse(&(1000 + n).to_string()).unwrap_or_else(|e| panic!("{e}")),
        updated_at: NOW - time::Duration::hours(1) + time::Duration::seconds(n),
    }
}

fn config() -> Config {
    Config::from_toml(CONFIG).unwrap_or_else(|e| panic!("{e}"))
}

/// Sync state says `order` was booked at its version for 10.00 net, 12.00 with tax.
async fn booked(rest: &Rest, channel: &ChannelConfig, order: &ShopOrderRef) {
    let record = SyncRecord {
        entity: EntityRef::order(&channel.id, order.id.as_str()),
        status: SyncStatus::Synced,
        erp_id: Some(1),
        erp_number: None,
        version: Some(order.updated_at),
        note: None,
        basis: Some(OrderBasis {
            taxes_included: false,
            refunded_before_fulfilment: None,
            booked: Some(BookedTotals {
                currency: CurrencyCode::parse("GBP").unwrap_or_else(|e| panic!("{e}")),
                net: Decimal::new(1000, 2),
                gross: Decimal::new(1200, 2),
                cancelled: false,
            }),
        }),
    };
    let stored = rest.store.record(&record).await;
    assert!(stored.is_ok(), "{stored:?}");
}

async fn run(
    rest: &Rest,
    shop: &Shop,
    config: &Config,
    deadline: Option<SystemTime>,
) -> Result<ReconcileOutcome, SyncError> {
    let deps = ReconcileDeps {
        config,
        shop,
        state: &rest.store,
        archive: rest,
        queue: rest,
        erp: rest,
        sales: &rest.erp,
        cursors: &rest.cursors,
    };
    reconcile(
        &deps,
        &config.channels[0],
        NOW,
        time::Duration::hours(6),
        deadline,
    )
    .await
}

#[tokio::test]
async fn orders_sync_state_vouches_for_cost_no_shop_call_and_are_reviewed_a_hundred_a_search() {
    let config = config();
    let channel = &config.channels[0];
    let shop = Shop {
        orders: (0..250).map(order).collect(),
        ..Shop::default()
    };
    let mut rest = Rest::default();
    for order in &shop.orders {
        let reference = mapping::sale_reference(&channel.id, &order.id);
        rest.sales
            .insert(reference, (Decimal::new(1000, 2), Decimal::new(1200, 2)));
    }
    // One sale was changed by hand in the ERP.
    let changed = mapping::sale_reference(&channel.id, &shop.orders[7].id);
    rest.sales
        .insert(changed, (Decimal::new(1500, 2), Decimal::new(1800, 2)));
    for order in &shop.orders {
        booked(&rest, channel, order).await;
    }
    let outcome = run(&rest, &shop, &config, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (outcome.checked, outcome.reviewed),
        (250, 250),
        "{outcome:?}"
    );
    assert!(
        outcome.enqueued.is_empty() && outcome.errors.is_empty(),
        "{outcome:?}"
    );
    assert_eq!(
        outcome.requests,
        Requests {
            shop_pages: 3,
            shop_orders: 0,
            state_batches: 3,
            erp_searches: 3
        }
    );
    assert_eq!(*rest.searches.lock().unwrap_or_else(|e| panic!("{e}")), 3);
    assert_eq!(outcome.flagged.len(), 1, "{outcome:?}");
    assert!(
        outcome.flagged[0].contains("1007") && outcome.flagged[0].contains("15.00"),
        "{outcome:?}"
    );
    let entity = EntityRef::order(&channel.id, "1007");
    let state = rest.store.get(&entity).await.ok().flatten();
    assert_eq!(state.map(|s| s.status), Some(SyncStatus::NeedsAttention));
}

#[tokio::test]
async fn one_order_s_error_is_the_run_s_note_and_the_run_goes_on() {
    let config = config();
    let shop = Shop {
        orders: (0..3).map(order).collect(),
        gone: HashSet::from(["1001".to_owned()]),
        ..Shop::default()
    };
    let rest = Rest::default();
    let outcome = run(&rest, &shop, &config, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(outcome.enqueued, ["1000", "1002"], "{outcome:?}");
    assert_eq!(outcome.errors.len(), 1, "{outcome:?}");
    assert!(outcome.errors[0].contains("1001") && outcome.errors[0].contains("404"));
    assert!(
        outcome.summary().contains("could not be checked"),
        "{}",
        outcome.summary()
    );
    // Passed by the cursor, it is a person's: its sync state says so, with the answer.
    let entity = EntityRef::order(&config.channels[0].id, "1001");
    let state = rest.store.get(&entity).await.ok().flatten();
    assert_eq!(
        state.map(|s| (s.status, s.last_error.map(|e| e.kind))),
        Some((
            SyncStatus::NeedsAttention,
            Some("channel_refused".to_owned())
        ))
    );
    // Every page read: the cursor is where the run began.
    let cursor = rest
        .cursors
        .cursor(&reconcile_cursor(&config.channels[0]))
        .await
        .ok()
        .flatten();
    assert_eq!(cursor, Some(NOW));
}

#[tokio::test]
async fn a_run_stopped_by_the_shop_or_the_clock_goes_on_from_its_cursor_next_time() {
    let config = config();
    let name = reconcile_cursor(&config.channels[0]);
    let shop = Shop {
        orders: (0..5).map(order).collect(),
        ..Shop::default()
    };
    let rest = Rest::default();
    // Out of time before the first page: nothing checked, the cursor not set.
    let short = SystemTime::now() - Duration::from_secs(1);
    let stopped = run(&rest, &shop, &config, Some(short))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(stopped.unfinished && stopped.checked == 0, "{stopped:?}");
    assert!(stopped.summary().contains("the next run goes on"));
    assert_eq!(rest.cursors.cursor(&name).await.ok().flatten(), None);
    // The shop goes down at the fourth order: the run stops there, with the error.
    if let Ok(mut down) = shop.down.lock() {
        down.insert("1003".to_owned());
    }
    let failed = run(&rest, &shop, &config, None).await;
    assert!(
        failed.as_ref().is_err_and(|e| e.dependency_down),
        "{failed:?}"
    );
    assert_eq!(
        rest.cursors.cursor(&name).await.ok().flatten(),
        Some(order(2).updated_at)
    );
    // Back up: the next run reads from the cursor (less the overlap) and goes on.
    if let Ok(mut down) = shop.down.lock() {
        down.clear();
    }
    let resumed = run(&rest, &shop, &config, None)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        resumed.enqueued.contains(&"1003".to_owned())
            && resumed.enqueued.contains(&"1004".to_owned()),
        "{resumed:?}"
    );
    assert_eq!(rest.cursors.cursor(&name).await.ok().flatten(), Some(NOW));
}
