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
use crate::state::SyncState;

const ORDER: &str =
    include_str!("../../../../../tests/fixtures/shopify-orders-create-multiline-discount-tax.json");
const CONFIG: &str = include_str!("../../../../../config/erpsync.example.toml");

#[derive(Default)]
struct FakeIdempotency {
    records: Mutex<HashMap<String, (bool, String, serde_json::Value)>>,
    completed: Mutex<Vec<SyncRecord>>,
}

#[async_trait]
impl IdempotencyStore for FakeIdempotency {
    async fn claim(
        &self,
        key: &IdempotencyKey,
        hash: &PayloadHash,
        _until: OffsetDateTime,
    ) -> Result<Claim, SyncError> {
        let mut records = self
            .records
            .lock()
            .map_err(|_| SyncError::retryable("lock", "poisoned"))?;
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
        let mut records = self
            .records
            .lock()
            .map_err(|_| SyncError::retryable("lock", "poisoned"))?;
        records.insert(
            key.as_str().to_owned(),
            (true, hash.as_str().to_owned(), outcome.clone()),
        );
        self.completed
            .lock()
            .map_err(|_| SyncError::retryable("lock", "poisoned"))?
            .push(record.clone());
        Ok(())
    }

    async fn release(&self, key: &IdempotencyKey) -> Result<(), SyncError> {
        let mut records = self
            .records
            .lock()
            .map_err(|_| SyncError::retryable("lock", "poisoned"))?;
        records.remove(key.as_str());
        Ok(())
    }
}

#[derive(Default)]
struct FakeState {
    failures: Mutex<Vec<(EntityRef, SyncStatus, ErrorReport)>>,
    records: Mutex<Vec<SyncRecord>>,
}

#[async_trait]
impl SyncStateStore for FakeState {
    async fn record(&self, record: &SyncRecord) -> Result<(), SyncError> {
        self.records
            .lock()
            .map_err(|_| SyncError::retryable("lock", "poisoned"))?
            .push(record.clone());
        Ok(())
    }
    async fn record_failure(
        &self,
        entity: &EntityRef,
        status: SyncStatus,
        error: &ErrorReport,
    ) -> Result<(), SyncError> {
        self.failures
            .lock()
            .map_err(|_| SyncError::retryable("lock", "poisoned"))?
            .push((entity.clone(), status, error.clone()));
        Ok(())
    }
    async fn get(&self, _entity: &EntityRef) -> Result<Option<SyncState>, SyncError> {
        Ok(None)
    }
}

#[derive(Default)]
struct FakeErp {
    sales: Mutex<Vec<(String, ErpSale)>>,
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
        let created = ErpCustomer { id, addresses };
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
        Ok(created)
    }
    async fn quote_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError> {
        self.set_state(sale_id, ErpSaleState::Quotation)
    }
    async fn confirm_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError> {
        self.set_state(sale_id, ErpSaleState::Processing)
    }
}

struct World {
    config: Config,
    idempotency: FakeIdempotency,
    state: FakeState,
    erp: FakeErp,
}

impl World {
    fn new() -> Self {
        Self {
            config: Config::from_toml(CONFIG).unwrap_or_else(|e| panic!("{e}")),
            idempotency: FakeIdempotency::default(),
            state: FakeState::default(),
            erp: FakeErp::with_products(&[
                "IPOD2008GREEN",
                "IPOD2008RED",
                "IPOD2008BLACK",
                "SHIPPING",
            ]),
        }
    }

    async fn deliver(&self, body: &str) -> Result<OrderOutcome, MessageFailure> {
        let deps = OrderSyncDeps {
            config: &self.config,
            idempotency: &self.idempotency,
            state: &self.state,
            erp: &self.erp,
        };
        let message = OrderMessage {
            channel: ChannelId::parse("uk-shop").unwrap_or_else(|e| panic!("{e}")),
            topic: OrderTopic::Create,
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
        .idempotency
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
        .state
        .failures
        .lock()
        .map(|f| f.clone())
        .unwrap_or_default();
    assert_eq!(failures.len(), 1);
    assert_eq!(failures[0].1, SyncStatus::NeedsAttention);
    // The claim was released: once the SKU exists, a redrive runs the order.
    assert!(
        world
            .idempotency
            .records
            .lock()
            .map(|r| r.is_empty())
            .unwrap_or(false)
    );
}

#[tokio::test]
async fn a_sale_left_by_a_crash_is_found_by_reference_and_confirmed_not_recreated() {
    let world = World::new();
    if let Ok(mut sales) = world.erp.sales.lock() {
        sales.push((
            "uk-shop/450789469".to_owned(),
            ErpSale {
                id: 7,
                number: None,
                state: ErpSaleState::Draft,
            },
        ));
    }
    let outcome = world.deliver(ORDER).await;
    assert!(
        matches!(
            outcome,
            Ok(OrderOutcome::Synced {
                erp_id: 7,
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
    let key = IdempotencyKey::new(
        Flow::OrderSync,
        &ChannelId::parse("uk-shop").unwrap_or_else(|e| panic!("{e}")),
        "450789469",
    );
    let claimed = world
        .idempotency
        .claim(&key, &PayloadHash::of(&"other"), OffsetDateTime::now_utc())
        .await;
    assert_eq!(claimed, Ok(Claim::Start));
    let failure = world.deliver(ORDER).await.err().map(|f| f.error.class);
    assert_eq!(failure, Some(ErrorClass::InFlight));
    assert!(
        world
            .state
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
        .idempotency
        .completed
        .lock()
        .map(|c| c.clone())
        .unwrap_or_default();
    assert_eq!(completed[0].status, SyncStatus::Shadow);
}

use crate::ids::CountryCode;
