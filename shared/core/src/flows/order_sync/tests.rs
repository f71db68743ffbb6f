//! The flow's decisions on in-memory fakes of the ports. The real adapters are tested
//! against DynamoDB (moto) and Tryton in tests/.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

use super::*;
use crate::batch::MessageFailure;
use crate::error::ErrorClass;
use crate::ids::Email;
use crate::ports::{ErpProduct, IdempotencyStore, SalesErp, SyncStateStore};
use crate::state::ErrorReport;
use crate::state::SyncState;

const ORDER: &str =
    include_str!("../../../../../tests/fixtures/shopify-orders-create-multiline-discount-tax.json");
const CONFIG: &str = include_str!("../../../../../config/erpsync.example.toml");

/// Claims and sync state in one place, as the DynamoDB table keeps them.
#[derive(Default)]
struct FakeStore {
    records: Mutex<HashMap<String, (bool, String, serde_json::Value)>>,
    states: Mutex<HashMap<EntityRef, SyncState>>,
    completed: Mutex<Vec<SyncRecord>>,
    failures: Mutex<Vec<(EntityRef, SyncStatus, ErrorReport)>>,
}

fn poisoned<T>(_: T) -> SyncError {
    SyncError::retryable("lock", "poisoned")
}

impl FakeStore {
    fn write_state(&self, record: &SyncRecord) -> Result<(), SyncError> {
        let mut states = self.states.lock().map_err(poisoned)?;
        let attempts = states.get(&record.entity).map(|s| s.attempts).unwrap_or(0);
        states.insert(
            record.entity.clone(),
            SyncState {
                entity: record.entity.clone(),
                status: record.status,
                erp_id: record.erp_id,
                erp_number: record.erp_number.clone(),
                version: record.version,
                note: record.note.clone(),
                attempts,
                last_error: None,
                updated_at: OffsetDateTime::now_utc(),
            },
        );
        Ok(())
    }
}

#[async_trait]
impl IdempotencyStore for FakeStore {
    async fn claim(
        &self,
        key: &IdempotencyKey,
        hash: &PayloadHash,
        _until: OffsetDateTime,
    ) -> Result<Claim, SyncError> {
        let mut records = self.records.lock().map_err(poisoned)?;
        match records.get(key.as_str()) {
            None => {
                records.insert(
                    key.as_str().to_owned(),
                    (false, hash.as_str().to_owned(), serde_json::Value::Null),
                );
                Ok(Claim::Start)
            }
            Some((false, _, _)) => Ok(Claim::InProgress),
            Some((true, stored, outcome)) => Ok(Claim::AlreadyDone {
                outcome: outcome.clone(),
                same_payload: stored == hash.as_str(),
            }),
        }
    }

    async fn complete(
        &self,
        key: &IdempotencyKey,
        hash: &PayloadHash,
        outcome: &serde_json::Value,
        record: &SyncRecord,
    ) -> Result<(), SyncError> {
        self.records.lock().map_err(poisoned)?.insert(
            key.as_str().to_owned(),
            (true, hash.as_str().to_owned(), outcome.clone()),
        );
        self.completed
            .lock()
            .map_err(poisoned)?
            .push(record.clone());
        self.write_state(record)
    }

    async fn release(&self, key: &IdempotencyKey) -> Result<(), SyncError> {
        self.records.lock().map_err(poisoned)?.remove(key.as_str());
        Ok(())
    }
}

#[async_trait]
impl SyncStateStore for FakeStore {
    async fn record(&self, record: &SyncRecord) -> Result<(), SyncError> {
        self.write_state(record)
    }
    async fn record_failure(
        &self,
        entity: &EntityRef,
        status: SyncStatus,
        error: &ErrorReport,
    ) -> Result<(), SyncError> {
        self.failures
            .lock()
            .map_err(poisoned)?
            .push((entity.clone(), status, error.clone()));
        Ok(())
    }
    async fn get(&self, entity: &EntityRef) -> Result<Option<SyncState>, SyncError> {
        Ok(self.states.lock().map_err(poisoned)?.get(entity).cloned())
    }
}

#[derive(Default)]
struct FakeErp {
    sales: Mutex<Vec<(String, ErpSale)>>,
    lines: Mutex<HashMap<i64, Vec<crate::ports::ErpSaleLine>>>,
    dispatched: Mutex<bool>,
    customers: Mutex<Vec<(Option<Email>, ErpCustomer)>>,
    products: HashMap<Sku, ErpProduct>,
    writes: Mutex<u32>,
}

impl FakeErp {
    fn with_products(skus: &[&str]) -> Self {
        let products = skus
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                Some((
                    Sku::parse(s).ok()?,
                    ErpProduct {
                        id: i as i64 + 1,
                        unit_id: 1,
                    },
                ))
            })
            .collect();
        Self {
            products,
            ..Self::default()
        }
    }
    fn sales(&self) -> Vec<(String, ErpSale)> {
        self.sales.lock().map(|s| s.clone()).unwrap_or_default()
    }
    fn writes(&self) -> u32 {
        self.writes.lock().map(|w| *w).unwrap_or_default()
    }
    fn wrote(&self) -> Result<(), SyncError> {
        *self
            .writes
            .lock()
            .map_err(|_| SyncError::retryable("lock", "poisoned"))? += 1;
        Ok(())
    }
    fn set_state(&self, id: i64, state: ErpSaleState) -> Result<ErpSale, SyncError> {
        let mut sales = self
            .sales
            .lock()
            .map_err(|_| SyncError::retryable("lock", "poisoned"))?;
        let (_, sale) = sales
            .iter_mut()
            .find(|(_, s)| s.id == id)
            .ok_or_else(|| SyncError::permanent("not_found", "no sale"))?;
        sale.state = state;
        Ok(sale.clone())
    }
}

#[async_trait]
impl SalesErp for FakeErp {
    async fn find_sale_by_reference(&self, reference: &str) -> Result<Option<ErpSale>, SyncError> {
        Ok(self
            .sales()
            .into_iter()
            .find(|(r, _)| r == reference)
            .map(|(_, s)| s))
    }
    async fn products_by_sku(&self, skus: &[Sku]) -> Result<HashMap<Sku, ErpProduct>, SyncError> {
        Ok(skus
            .iter()
            .filter_map(|s| self.products.get(s).map(|p| (s.clone(), p.clone())))
            .collect())
    }
    async fn find_customer_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<ErpCustomer>, SyncError> {
        let customers = self
            .customers
            .lock()
            .map_err(|_| SyncError::retryable("lock", "poisoned"))?;
        Ok(customers
            .iter()
            .find(|(e, _)| e.as_ref() == Some(email))
            .map(|(_, c)| c.clone()))
    }
    async fn create_customer(&self, customer: &CustomerDraft) -> Result<ErpCustomer, SyncError> {
        self.wrote()?;
        let mut customers = self
            .customers
            .lock()
            .map_err(|_| SyncError::retryable("lock", "poisoned"))?;
        let id = customers.len() as i64 + 100;
        let address = |offset: i64, a: &Address| ErpAddress {
            id: id * 10 + offset,
            street: Some(a.street.clone()),
            postal_code: a.postal_code.clone(),
            city: a.city.clone(),
            country: Some(a.country.clone()),
        };
        let mut addresses = vec![address(0, &customer.invoice_address)];
        if customer.shipment_address != customer.invoice_address {
            addresses.push(address(1, &customer.shipment_address));
        }
        let created = ErpCustomer {
            id,
            name: Some(customer.name.clone()),
            addresses,
        };
        customers.push((customer.email.clone(), created.clone()));
        Ok(created)
    }
    async fn add_address(
        &self,
        _customer_id: i64,
        address: &Address,
    ) -> Result<ErpAddress, SyncError> {
        self.wrote()?;
        Ok(ErpAddress {
            id: 999,
            street: Some(address.street.clone()),
            postal_code: address.postal_code.clone(),
            city: address.city.clone(),
            country: Some(address.country.clone()),
        })
    }
    async fn rename_customer(&self, _customer_id: i64, _name: &str) -> Result<(), SyncError> {
        self.wrote()
    }
    async fn create_sale(&self, sale: &NewSale<'_>) -> Result<ErpSale, SyncError> {
        self.wrote()?;
        let mut sales = self
            .sales
            .lock()
            .map_err(|_| SyncError::retryable("lock", "poisoned"))?;
        let created = ErpSale {
            id: sales.len() as i64 + 1,
            number: None,
            state: ErpSaleState::Draft,
        };
        sales.push((sale.draft.reference.clone(), created.clone()));
        let lines = sale
            .draft
            .lines
            .iter()
            .enumerate()
            .map(|(i, l)| crate::ports::ErpSaleLine {
                id: created.id * 100 + i as i64,
                sku: Some(l.sku.clone()),
                product_id: sale.products.get(&l.sku).map(|p| p.id),
                unit_id: Some(1),
                quantity: rust_decimal::Decimal::from(l.quantity),
                unit_price: l.unit_price,
                description: Some(l.description.clone()),
            })
            .collect();
        self.lines
            .lock()
            .map_err(poisoned)?
            .insert(created.id, lines);
        Ok(created)
    }
    async fn quote_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError> {
        self.set_state(sale_id, ErpSaleState::Quotation)
    }
    async fn confirm_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError> {
        self.set_state(sale_id, ErpSaleState::Processing)
    }
    async fn sale_details(&self, sale_id: i64) -> Result<crate::ports::ErpSaleDetails, SyncError> {
        let sale = self
            .sales()
            .into_iter()
            .map(|(_, s)| s)
            .find(|s| s.id == sale_id)
            .ok_or_else(|| SyncError::permanent("not_found", "no sale"))?;
        Ok(crate::ports::ErpSaleDetails {
            sale,
            customer_id: 42,
            invoice_address_id: 420,
            shipment_address: ErpAddress {
                id: 420,
                street: Some("Chestnut Street 92".to_owned()),
                postal_code: Some("40202".to_owned()),
                city: Some("Louisville".to_owned()),
                country: CountryCode::parse("US").ok(),
            },
            lines: self
                .lines
                .lock()
                .map_err(poisoned)?
                .get(&sale_id)
                .cloned()
                .unwrap_or_default(),
            fulfilment_started: *self.dispatched.lock().map_err(poisoned)?,
            invoiced: false,
        })
    }
    async fn cancel_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError> {
        self.wrote()?;
        self.set_state(sale_id, ErpSaleState::Cancelled)
    }
    async fn amend_sale(
        &self,
        sale_id: i64,
        amendment: &crate::ports::SaleAmendment,
    ) -> Result<ErpSale, SyncError> {
        self.wrote()?;
        let mut all = self.lines.lock().map_err(poisoned)?;
        let lines = all.entry(sale_id).or_default();
        for change in &amendment.lines {
            if let Some(line) = lines.iter_mut().find(|l| l.id == change.line_id) {
                line.quantity = change.quantity;
                line.unit_price = change.unit_price;
            }
        }
        drop(all);
        self.set_state(sale_id, ErpSaleState::Processing)
    }
}

struct World {
    config: Config,
    store: FakeStore,
    erp: FakeErp,
}

impl World {
    fn new() -> Self {
        Self {
            config: Config::from_toml(CONFIG).unwrap_or_else(|e| panic!("{e}")),
            store: FakeStore::default(),
            erp: FakeErp::with_products(&[
                "IPOD2008GREEN",
                "IPOD2008RED",
                "IPOD2008BLACK",
                "SHIPPING",
            ]),
        }
    }

    async fn deliver(&self, body: &str) -> Result<OrderOutcome, MessageFailure> {
        self.deliver_topic(OrderTopic::Create, body).await
    }

    async fn deliver_topic(
        &self,
        topic: OrderTopic,
        body: &str,
    ) -> Result<OrderOutcome, MessageFailure> {
        let deps = OrderSyncDeps {
            config: &self.config,
            idempotency: &self.store,
            state: &self.store,
            erp: &self.erp,
            stock: None,
            availability: None,
            archive: None,
        };
        let message = OrderMessage {
            channel: ChannelId::parse("uk-shop").unwrap_or_else(|e| panic!("{e}")),
            topic,
            body: body.as_bytes().to_vec(),
        };
        let now = OffsetDateTime::now_utc();
        sync_order(&deps, &message, now, now + Duration::seconds(60)).await
    }
}

#[tokio::test]
async fn an_order_becomes_one_confirmed_sale_and_a_redelivery_replays() {
    let world = World::new();
    let first = world.deliver(ORDER).await;
    assert!(
        matches!(first, Ok(OrderOutcome::Synced { created: true, .. })),
        "{first:?}"
    );
    let again = world.deliver(ORDER).await;
    assert!(
        matches!(again, Ok(OrderOutcome::Replayed { .. })),
        "{again:?}"
    );
    let sales = world.erp.sales();
    assert_eq!(sales.len(), 1);
    assert_eq!(sales[0].0, "uk-shop/450789469");
    assert_eq!(sales[0].1.state, ErpSaleState::Processing);
    let completed = world
        .store
        .completed
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default();
    assert_eq!(completed.len(), 1);
    assert_eq!(completed[0].status, SyncStatus::Synced);
    assert_eq!(completed[0].erp_id, Some(sales[0].1.id));
}

#[tokio::test]
async fn an_unknown_sku_needs_attention_names_the_sku_and_writes_nothing() {
    let world = World::new();
    let body = ORDER.replace("IPOD2008RED", "IPOD-NOT-IN-ERP");
    let failure = world
        .deliver(&body)
        .await
        .err()
        .unwrap_or_else(|| panic!("expected a failure"));
    assert_eq!(failure.error.class, ErrorClass::Permanent);
    assert_eq!(failure.error.kind, "unknown_sku");
    assert!(failure.error.message.contains("IPOD-NOT-IN-ERP"));
    assert_eq!(world.erp.writes(), 0);
    let failures = world
        .store
        .failures
        .lock()
        .map(|f| f.clone())
        .unwrap_or_default();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].1, SyncStatus::NeedsAttention);
    // The claim was released: once the SKU exists, a redrive runs the order.
    assert!(
        world
            .store
            .records
            .lock()
            .map(|r| r.is_empty())
            .unwrap_or(false)
    );
}

#[tokio::test]
async fn a_sale_left_by_a_crash_is_found_by_reference_and_confirmed_not_recreated() {
    let world = World::new();
    // The crashed attempt created the sale (in draft) and died before anything else.
    let channel = &world.config.channels[0];
    let order = crate::shopify::parse_order(&channel.id, ORDER.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"));
    let draft = crate::mapping::sale_draft(&order, channel, &world.config.erp)
        .unwrap_or_else(|e| panic!("{e}"));
    let products = world
        .erp
        .products_by_sku(&draft.skus())
        .await
        .unwrap_or_default();
    let left = world
        .erp
        .create_sale(&NewSale {
            draft: &draft,
            customer_id: 42,
            invoice_address_id: 420,
            shipment_address_id: 420,
            products: &products,
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(left.state, ErpSaleState::Draft);
    let outcome = world.deliver(ORDER).await;
    assert!(
        matches!(
            outcome,
            Ok(OrderOutcome::Synced {
                erp_id: 1,
                created: false,
                ..
            })
        ),
        "{outcome:?}"
    );
    assert_eq!(world.erp.sales().len(), 1);
    assert_eq!(world.erp.sales()[0].1.state, ErpSaleState::Processing);
}

#[tokio::test]
async fn a_claim_held_by_another_worker_is_in_flight_and_not_recorded_as_a_failure() {
    let world = World::new();
    let channel = ChannelId::parse("uk-shop").unwrap_or_else(|e| panic!("{e}"));
    let order =
        crate::shopify::parse_order(&channel, ORDER.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    let version = order.updated_at.unix_timestamp_nanos();
    let key = IdempotencyKey::new(Flow::OrderSync, &channel, &format!("450789469@{version}"));
    let claimed = world
        .store
        .claim(&key, &PayloadHash::of(&"other"), OffsetDateTime::now_utc())
        .await;
    assert_eq!(claimed, Ok(Claim::Start));
    let failure = world.deliver(ORDER).await.err().map(|f| f.error.class);
    assert_eq!(failure, Some(ErrorClass::InFlight));
    assert!(
        world
            .store
            .failures
            .lock()
            .map(|f| f.is_empty())
            .unwrap_or(false)
    );
    assert!(world.erp.sales().is_empty());
}

#[tokio::test]
async fn an_existing_customer_is_matched_on_normalised_email_and_its_address_reused() {
    let world = World::new();
    let us = |s: &str| CountryCode::parse(s).unwrap_or_else(|e| panic!("{e}"));
    if let Ok(mut customers) = world.erp.customers.lock() {
        customers.push((
            Email::parse("Bob.Norman@Mail.Example.com").ok(),
            ErpCustomer {
                id: 42,
                name: Some("Bob Norman".to_owned()),
                addresses: vec![ErpAddress {
                    id: 420,
                    street: Some("Chestnut  Street 92".to_owned()),
                    postal_code: Some("40202".to_owned()),
                    city: Some("louisville".to_owned()),
                    country: Some(us("US")),
                }],
            },
        ));
    }
    let outcome = world.deliver(ORDER).await;
    assert!(
        matches!(outcome, Ok(OrderOutcome::Synced { .. })),
        "{outcome:?}"
    );
    // One write: the sale. No new customer, no new address.
    assert_eq!(world.erp.writes(), 1);
}

#[tokio::test]
async fn shadow_mode_records_the_request_and_writes_nothing_to_the_erp() {
    let mut world = World::new();
    world.config.channels[0].mode = Mode::Shadow;
    let outcome = world.deliver(ORDER).await;
    match outcome {
        Ok(OrderOutcome::Shadow { request }) => assert_eq!(request.reference, "uk-shop/450789469"),
        other => panic!("expected shadow, got {other:?}"),
    }
    assert_eq!(world.erp.writes(), 0);
    let completed = world
        .store
        .completed
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default();
    assert_eq!(completed[0].status, SyncStatus::Shadow);
}

use crate::ids::CountryCode;

/// A line's quantity after an edit, as Shopify reports it (current_quantity).
fn set_quantity(order: &mut serde_json::Value, line: usize, quantity: u32) {
    order["line_items"][line]["quantity"] = quantity.into();
    order["line_items"][line]["current_quantity"] = quantity.into();
}

/// The documented order at another version, changed by `edit`.
fn version_of(updated_at: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let mut order: serde_json::Value = serde_json::from_str(ORDER).unwrap_or_default();
    order["updated_at"] = serde_json::json!(updated_at);
    edit(&mut order);
    order.to_string()
}

#[tokio::test]
async fn a_stale_update_after_a_newer_one_is_skipped_and_never_regresses_the_erp() {
    let world = World::new();
    let newer = version_of("2026-11-29T10:05:00Z", |o| set_quantity(o, 0, 3));
    let older = version_of("2026-11-29T10:01:00Z", |_| {});
    assert!(matches!(
        world.deliver_topic(OrderTopic::Updated, &newer).await,
        Ok(OrderOutcome::Synced { .. })
    ));
    let stale = world.deliver_topic(OrderTopic::Updated, &older).await;
    assert!(
        matches!(stale, Ok(OrderOutcome::Skipped { .. })),
        "{stale:?}"
    );
    let lines = world
        .erp
        .lines
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    let green: rust_decimal::Decimal = lines
        .values()
        .flatten()
        .filter(|l| l.sku.as_ref().map(Sku::as_str) == Some("IPOD2008GREEN"))
        .map(|l| l.quantity)
        .sum();
    assert_eq!(
        green,
        rust_decimal::Decimal::from(3),
        "the newer quantity stays"
    );
}

#[tokio::test]
async fn an_update_before_its_create_creates_the_latest_version_and_the_late_create_is_skipped() {
    let world = World::new();
    let update = version_of("2026-11-29T10:05:00Z", |o| set_quantity(o, 1, 2));
    let create = version_of("2026-11-29T10:00:00Z", |_| {});
    assert!(matches!(
        world.deliver_topic(OrderTopic::Updated, &update).await,
        Ok(OrderOutcome::Synced { created: true, .. })
    ));
    assert!(matches!(
        world.deliver_topic(OrderTopic::Create, &create).await,
        Ok(OrderOutcome::Skipped { .. })
    ));
    assert_eq!(world.erp.sales().len(), 1);
}

#[tokio::test]
async fn a_cancel_that_overtakes_the_create_ends_cancelled_with_no_sale() {
    let world = World::new();
    let cancel = version_of("2026-11-29T10:05:00Z", |o| {
        o["cancelled_at"] = "2026-11-29T10:05:00Z".into()
    });
    let create = version_of("2026-11-29T10:00:00Z", |_| {});
    let cancelled = world.deliver_topic(OrderTopic::Cancelled, &cancel).await;
    assert!(
        matches!(cancelled, Ok(OrderOutcome::Cancelled { erp_id: None, .. })),
        "{cancelled:?}"
    );
    assert!(matches!(
        world.deliver_topic(OrderTopic::Create, &create).await,
        Ok(OrderOutcome::Skipped { .. })
    ));
    assert!(world.erp.sales().is_empty());
}

#[tokio::test]
async fn an_edit_before_dispatch_amends_the_sale() {
    let world = World::new();
    let create = version_of("2026-11-29T10:00:00Z", |_| {});
    let edit = version_of("2026-11-29T10:05:00Z", |o| set_quantity(o, 0, 2));
    assert!(matches!(
        world.deliver(&create).await,
        Ok(OrderOutcome::Synced { .. })
    ));
    let amended = world.deliver_topic(OrderTopic::Updated, &edit).await;
    match amended {
        Ok(OrderOutcome::Amended { changes, .. }) => assert_eq!(
            changes,
            vec!["IPOD2008GREEN: 1 x 195.66 -> 2 x 197.33".to_owned()]
        ),
        other => panic!("expected an amendment, got {other:?}"),
    }
    assert_eq!(world.erp.sales().len(), 1);
}

#[tokio::test]
async fn an_edit_after_dispatch_needs_attention_saying_what_to_do() {
    let world = World::new();
    let create = version_of("2026-11-29T10:00:00Z", |_| {});
    assert!(matches!(
        world.deliver(&create).await,
        Ok(OrderOutcome::Synced { .. })
    ));
    if let Ok(mut dispatched) = world.erp.dispatched.lock() {
        *dispatched = true;
    }
    let edit = version_of("2026-11-29T10:05:00Z", |o| set_quantity(o, 0, 2));
    let failure = world
        .deliver_topic(OrderTopic::Updated, &edit)
        .await
        .err()
        .map(|f| f.error);
    let failure = failure.unwrap_or_else(|| panic!("expected needs-attention"));
    assert_eq!(failure.kind, "changed_after_dispatch");
    assert!(failure.message.contains("by hand"), "{}", failure.message);
}

#[tokio::test]
async fn a_cancel_before_dispatch_cancels_and_after_dispatch_needs_attention() {
    let world = World::new();
    let create = version_of("2026-11-29T10:00:00Z", |_| {});
    let cancel = version_of("2026-11-29T10:05:00Z", |o| {
        o["cancelled_at"] = "2026-11-29T10:05:00Z".into()
    });
    assert!(matches!(
        world.deliver(&create).await,
        Ok(OrderOutcome::Synced { .. })
    ));
    let cancelled = world.deliver_topic(OrderTopic::Cancelled, &cancel).await;
    assert!(
        matches!(
            cancelled,
            Ok(OrderOutcome::Cancelled {
                erp_id: Some(_),
                ..
            })
        ),
        "{cancelled:?}"
    );

    let other = World::new();
    assert!(matches!(
        other.deliver(&create).await,
        Ok(OrderOutcome::Synced { .. })
    ));
    if let Ok(mut dispatched) = other.erp.dispatched.lock() {
        *dispatched = true;
    }
    let failure = other
        .deliver_topic(OrderTopic::Cancelled, &cancel)
        .await
        .err()
        .map(|f| f.error.kind);
    assert_eq!(failure.as_deref(), Some("cancelled_after_dispatch"));
}

#[tokio::test]
async fn an_edit_that_needs_a_penny_split_folds_into_the_existing_line() {
    let world = World::new();
    let create = version_of("2026-11-29T10:00:00Z", |_| {});
    let edit = version_of("2026-11-29T10:05:00Z", |o| set_quantity(o, 0, 3));
    assert!(matches!(
        world.deliver(&create).await,
        Ok(OrderOutcome::Synced { .. })
    ));
    let amended = world.deliver_topic(OrderTopic::Updated, &edit).await;
    match amended {
        // 3 x 199.00 less 3.34 = 593.66, at 197.8867 a unit in one line.
        Ok(OrderOutcome::Amended { changes, .. }) => assert_eq!(
            changes,
            vec!["IPOD2008GREEN: 1 x 195.66 -> 3 x 197.8867".to_owned()]
        ),
        other => panic!("expected an amendment, got {other:?}"),
    }
}

#[tokio::test]
async fn a_shop_side_change_to_an_erp_owned_customer_is_refused_and_recorded() {
    let world = World::new();
    if let Ok(mut customers) = world.erp.customers.lock() {
        customers.push((
            Email::parse("bob.norman@mail.example.com").ok(),
            ErpCustomer {
                id: 42,
                name: Some("Robert Norman".to_owned()),
                addresses: Vec::new(),
            },
        ));
    }
    let outcome = world.deliver(ORDER).await;
    match outcome {
        Ok(OrderOutcome::Synced {
            refused: Some(note),
            ..
        }) => assert!(note.contains("owned by the ERP"), "{note}"),
        other => panic!("expected a recorded refusal, got {other:?}"),
    }
    let completed = world
        .store
        .completed
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default();
    assert!(
        completed[0]
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("Robert Norman")
    );
}

#[tokio::test]
async fn a_channel_owned_customer_takes_the_shops_name() {
    let mut world = World::new();
    world.config.ownership.customers = crate::config::Owner::Channel;
    if let Ok(mut customers) = world.erp.customers.lock() {
        customers.push((
            Email::parse("bob.norman@mail.example.com").ok(),
            ErpCustomer {
                id: 42,
                name: Some("Robert Norman".to_owned()),
                addresses: Vec::new(),
            },
        ));
    }
    let outcome = world.deliver(ORDER).await;
    assert!(
        matches!(outcome, Ok(OrderOutcome::Synced { refused: None, .. })),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn when_the_erp_owns_orders_a_shop_edit_is_refused_and_recorded() {
    let mut world = World::new();
    world.config.ownership.orders = crate::config::Owner::Erp;
    let create = version_of("2026-11-29T10:00:00Z", |_| {});
    let edit = version_of("2026-11-29T10:05:00Z", |o| set_quantity(o, 0, 2));
    assert!(matches!(
        world.deliver(&create).await,
        Ok(OrderOutcome::Synced { .. })
    ));
    let refused = world.deliver_topic(OrderTopic::Updated, &edit).await;
    match refused {
        Ok(OrderOutcome::Skipped { reason }) => {
            assert!(reason.starts_with("ownership:"), "{reason}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}
