//! Failures end where they should: a person's queue for what retrying cannot fix, the retry
//! path for outages, and never a second sale.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use erpsync_aws::sqs::attr;
use erpsync_connectors::TrytonClient;
use erpsync_core::SyncError;
use erpsync_core::ids::{Email, Sku};
use erpsync_core::mapping::CustomerDraft;
use erpsync_core::order::Address;
use erpsync_core::ports::{ErpAddress, ErpCustomer, ErpProduct, ErpSale, NewSale, SalesErp};
use erpsync_core::state::{Flow, SyncStatus};
use erpsync_e2e::{Stack, Tryton, World, attribute, fresh_order};

const DRAIN: Duration = Duration::from_secs(60);

#[tokio::test]
async fn an_unknown_sku_is_dead_lettered_with_a_reason_naming_it_and_needs_attention() {
    let world = World::start().await;
    let (order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let body = order.to_string().replace("IPOD2008RED", "IPOD2099GOLD");
    assert_eq!(
        world
            .post(world.signed("uk-shop", "orders/create", "wh-sku", &body))
            .await,
        200
    );
    world.drain(DRAIN).await;

    let parked = world.dead_letters().await;
    assert_eq!(parked.len(), 1, "{parked:?}");
    let reason = attribute(&parked[0], attr::REASON);
    assert!(reason.contains("IPOD2099GOLD"), "{reason}");
    assert_eq!(attribute(&parked[0], attr::ERROR_KIND), "unknown_sku");
    assert_eq!(attribute(&parked[0], attr::ERROR_CLASS), "permanent");
    assert_eq!(attribute(&parked[0], attr::FLOW), "order-sync");
    assert_eq!(
        attribute(&parked[0], attr::ENTITY),
        format!("order-sync/uk-shop/{id}")
    );
    assert_eq!(
        parked[0].body(),
        Some(body.as_str()),
        "the original payload is kept for the redrive"
    );

    let state = world
        .state("uk-shop", &id)
        .await
        .unwrap_or_else(|| panic!("no sync state"));
    assert_eq!(state.status, SyncStatus::NeedsAttention);
    let error = state.last_error.unwrap_or_else(|| panic!("no last error"));
    assert_eq!(error.kind, "unknown_sku");
    assert!(error.message.contains("IPOD2099GOLD"));
    let attention = world
        .orders
        .store
        .needing_attention(Flow::OrderSync)
        .await
        .unwrap_or_default();
    assert!(attention.iter().any(|s| s.entity.entity_id == id));

    assert!(world.erp_sales(&format!("uk-shop/{id}")).await.is_empty());
}

#[tokio::test]
async fn an_erp_outage_is_retried_not_dead_lettered_and_ends_in_one_sale() {
    let stack = Stack::from_env().unwrap_or_else(|e| panic!("{e:#}"));
    let run_dir = stack
        .run_dir
        .join(format!("outage-{}", uuid::Uuid::new_v4().simple()));
    let mut tryton = Tryton::start(&stack.venv, &stack.tryton_template, &run_dir)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let url = tryton.url.clone();
    let key = tryton.api_key.clone();
    let world = World::start_with(&url, &key, |erp| Box::new(erp)).await;
    tryton.stop().await;

    let (order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    assert_eq!(
        world
            .post(world.signed("uk-shop", "orders/create", "wh-down", &order.to_string()))
            .await,
        200
    );
    let esm = world.event_source();
    for _ in 0..4 {
        let _ = esm.poll_once(Duration::from_secs(2)).await;
    }
    let state = world
        .state("uk-shop", &id)
        .await
        .unwrap_or_else(|| panic!("no sync state"));
    assert_eq!(state.status, SyncStatus::Retrying);
    assert!(state.attempts >= 1);
    assert_eq!(
        state.last_error.map(|e| e.kind).as_deref(),
        Some("erp_unavailable")
    );
    assert!(
        world.dead_letters().await.is_empty(),
        "an outage is not a reason for the DLQ"
    );
    assert_eq!(
        world.queue_depth("OrdersQueue").await,
        1,
        "the order waits on the queue"
    );

    tryton.resume().await.unwrap_or_else(|e| panic!("{e:#}"));
    world.drain(DRAIN).await;
    assert_eq!(world.erp_sales(&format!("uk-shop/{id}")).await.len(), 1);
    assert!(world.dead_letters().await.is_empty());
    assert_eq!(
        world.state("uk-shop", &id).await.map(|s| s.status),
        Some(SyncStatus::Synced)
    );
    tryton.stop().await;
    let _ = std::fs::remove_dir_all(run_dir);
}

/// The real Tryton adapter, except that the first sale it creates is followed by a failure
/// before anything else runs: the process "dies" between the ERP write and the state write.
struct FailsAfterFirstCreate {
    inner: TrytonClient,
    failed: AtomicBool,
}

#[async_trait]
impl SalesErp for FailsAfterFirstCreate {
    async fn find_sale_by_reference(&self, reference: &str) -> Result<Option<ErpSale>, SyncError> {
        self.inner.find_sale_by_reference(reference).await
    }
    async fn products_by_sku(&self, skus: &[Sku]) -> Result<HashMap<Sku, ErpProduct>, SyncError> {
        self.inner.products_by_sku(skus).await
    }
    async fn find_customer_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<ErpCustomer>, SyncError> {
        self.inner.find_customer_by_email(email).await
    }
    async fn create_customer(&self, customer: &CustomerDraft) -> Result<ErpCustomer, SyncError> {
        self.inner.create_customer(customer).await
    }
    async fn add_address(
        &self,
        customer_id: i64,
        address: &Address,
    ) -> Result<ErpAddress, SyncError> {
        self.inner.add_address(customer_id, address).await
    }
    async fn create_sale(&self, sale: &NewSale<'_>) -> Result<ErpSale, SyncError> {
        let created = self.inner.create_sale(sale).await?;
        if !self.failed.swap(true, Ordering::SeqCst) {
            return Err(SyncError::retryable(
                "injected_crash",
                "the worker died after the ERP create",
            ));
        }
        Ok(created)
    }
    async fn quote_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError> {
        self.inner.quote_sale(sale_id).await
    }
    async fn confirm_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError> {
        self.inner.confirm_sale(sale_id).await
    }
}

#[tokio::test]
async fn a_failure_after_the_erp_create_is_recovered_by_reference_without_a_second_sale() {
    let stack = Stack::from_env().unwrap_or_else(|e| panic!("{e:#}"));
    let world = World::start_with(&stack.tryton_url, &stack.tryton_key, |erp| {
        Box::new(FailsAfterFirstCreate {
            inner: erp,
            failed: AtomicBool::new(false),
        })
    })
    .await;
    let (order, id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    assert_eq!(
        world
            .post(world.signed("uk-shop", "orders/create", "wh-crash", &order.to_string()))
            .await,
        200
    );
    world.drain(DRAIN).await;

    let sales = world.erp_sales(&format!("uk-shop/{id}")).await;
    assert_eq!(sales.len(), 1, "{sales:?}");
    assert_eq!(
        sales[0]["state"], "processing",
        "the draft left behind was quoted and confirmed"
    );
    let state = world
        .state("uk-shop", &id)
        .await
        .unwrap_or_else(|| panic!("no sync state"));
    assert_eq!(state.status, SyncStatus::Synced);
    assert_eq!(state.erp_id, sales[0]["id"].as_i64());
    assert!(state.attempts >= 1, "the failed attempt is on record");
}
