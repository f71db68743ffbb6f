//! In-memory fakes of the order flow's ports (claims, sync state, the ERP), for core's unit
//! tests and the instruction-count benchmark. Never used by a function: the real adapters
//! are tested against DynamoDB (moto) and Tryton.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::error::SyncError;
use crate::mapping::CustomerDraft;
use crate::model::ids::{CountryCode, Email, Sku};
use crate::model::order::Address;
use crate::model::state::*;
use crate::ports::*;

/// Claims and sync state in one place, as the DynamoDB table keeps them.
#[derive(Default)]
pub struct FakeStore {
    /// Per key: completed, payload hash, outcome, the token of the claim that took it.
    pub records: Mutex<HashMap<String, (bool, String, serde_json::Value, String)>>,
    claims_given: std::sync::atomic::AtomicU64,
    pub states: Mutex<HashMap<EntityRef, SyncState>>,
    pub completed: Mutex<Vec<SyncRecord>>,
    pub failures: Mutex<Vec<(EntityRef, SyncStatus, ErrorReport)>>,
    /// The version whose failure is recorded, until one at least as new is applied.
    pub failed_versions: Mutex<HashMap<EntityRef, OffsetDateTime>>,
}

pub fn poisoned<T>(_: T) -> SyncError {
    SyncError::retryable("lock", "poisoned")
}

/// The store's version guard: a write about `version` is made unless a newer one is stored.
fn newer_stored(stored: Option<&SyncState>, version: Option<OffsetDateTime>) -> bool {
    matches!(
        (stored.and_then(|s| s.version), version),
        (Some(stored), Some(version)) if stored > version
    )
}

impl FakeStore {
    /// Writes an outcome as the DynamoDB store does: guarded by version, ids and the
    /// version kept when the record has none, attempts kept. Whether it was written.
    pub fn write_state(&self, record: &SyncRecord) -> Result<bool, SyncError> {
        let mut states = self.states.lock().map_err(poisoned)?;
        let stored = states.get(&record.entity);
        if newer_stored(stored, record.version) {
            return Ok(false);
        }
        if let Some(version) = record.version {
            let mut failed = self.failed_versions.lock().map_err(poisoned)?;
            if failed.get(&record.entity).is_some_and(|f| *f > version) {
                return Ok(false);
            }
            failed.remove(&record.entity);
        }
        let state = SyncState {
            basis: record
                .basis
                .clone()
                .or(stored.and_then(|s| s.basis.clone())),
            entity: record.entity.clone(),
            status: record.status,
            erp_id: record.erp_id.or(stored.and_then(|s| s.erp_id)),
            erp_number: record
                .erp_number
                .clone()
                .or_else(|| stored.and_then(|s| s.erp_number.clone())),
            version: record.version.or(stored.and_then(|s| s.version)),
            note: record.note.clone(),
            attempts: stored.map(|s| s.attempts).unwrap_or(0),
            last_error: stored.and_then(|s| s.last_error.clone()),
            updated_at: OffsetDateTime::now_utc(),
        };
        states.insert(record.entity.clone(), state);
        Ok(true)
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
                let token = format!(
                    "claim-{}",
                    self.claims_given
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                );
                records.insert(
                    key.as_str().to_owned(),
                    (
                        false,
                        hash.as_str().to_owned(),
                        serde_json::Value::Null,
                        token.clone(),
                    ),
                );
                Ok(Claim::Start(ClaimToken::new(token)))
            }
            Some((false, ..)) => Ok(Claim::InProgress),
            Some((true, stored, outcome, _)) => Ok(Claim::AlreadyDone {
                outcome: outcome.clone(),
                same_payload: stored == hash.as_str(),
            }),
        }
    }

    async fn complete(
        &self,
        key: &IdempotencyKey,
        token: &ClaimToken,
        hash: &PayloadHash,
        outcome: &serde_json::Value,
        record: &SyncRecord,
    ) -> Result<Completion, SyncError> {
        {
            let mut records = self.records.lock().map_err(poisoned)?;
            if records
                .get(key.as_str())
                .is_some_and(|(_, _, _, owner)| owner != token.as_str())
            {
                return Ok(Completion::TakenOver);
            }
            records.insert(
                key.as_str().to_owned(),
                (
                    true,
                    hash.as_str().to_owned(),
                    outcome.clone(),
                    token.as_str().to_owned(),
                ),
            );
        }
        self.completed
            .lock()
            .map_err(poisoned)?
            .push(record.clone());
        Ok(if self.write_state(record)? {
            Completion::Recorded
        } else {
            Completion::StateNewer
        })
    }

    async fn release(&self, key: &IdempotencyKey, token: &ClaimToken) -> Result<(), SyncError> {
        let mut records = self.records.lock().map_err(poisoned)?;
        if records
            .get(key.as_str())
            .is_some_and(|(done, _, _, owner)| !done && owner == token.as_str())
        {
            records.remove(key.as_str());
        }
        Ok(())
    }
}

#[async_trait]
impl SyncStateStore for FakeStore {
    async fn record(&self, record: &SyncRecord) -> Result<(), SyncError> {
        self.write_state(record).map(|_| ())
    }
    async fn record_failure(
        &self,
        entity: &EntityRef,
        status: SyncStatus,
        error: &ErrorReport,
        version: Option<OffsetDateTime>,
    ) -> Result<(), SyncError> {
        let mut states = self.states.lock().map_err(poisoned)?;
        let stored = states.get(entity);
        if newer_stored(stored, version) {
            return Ok(());
        }
        if let Some(version) = version {
            let mut failed = self.failed_versions.lock().map_err(poisoned)?;
            // A newer version's failure stands: an older one's neither lowers nor hides it.
            if failed.get(entity).is_some_and(|newer| *newer > version) {
                return Ok(());
            }
            failed.insert(entity.clone(), version);
        }
        let state = SyncState {
            basis: stored.and_then(|s| s.basis.clone()),
            entity: entity.clone(),
            status,
            erp_id: stored.and_then(|s| s.erp_id),
            erp_number: stored.and_then(|s| s.erp_number.clone()),
            version: stored.and_then(|s| s.version),
            note: stored.and_then(|s| s.note.clone()),
            attempts: stored.map(|s| s.attempts).unwrap_or(0) + 1,
            last_error: Some(error.clone()),
            updated_at: OffsetDateTime::now_utc(),
        };
        states.insert(entity.clone(), state);
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
pub struct FakeErp {
    pub sales: Mutex<Vec<(String, ErpSale)>>,
    pub lines: Mutex<HashMap<i64, Vec<crate::ports::ErpSaleLine>>>,
    pub dispatched: Mutex<bool>,
    pub customers: Mutex<Vec<(Option<Email>, ErpCustomer)>>,
    pub products: HashMap<Sku, ErpProduct>,
    pub writes: Mutex<u32>,
    /// The next create reaches the ERP, but its answer is lost.
    pub lose_create_answer: Mutex<bool>,
    /// The next look-up by reference runs before a pending create commits.
    pub hide_next_lookup: Mutex<bool>,
    /// An amendment another attempt left in draft, made at this time.
    pub draft_amendment_since: Mutex<Option<time::OffsetDateTime>>,
}

fn take(flag: &Mutex<bool>) -> bool {
    flag.lock()
        .map(|mut f| std::mem::replace(&mut *f, false))
        .unwrap_or(false)
}

impl FakeErp {
    pub fn lose_next_create_answer(&self) {
        if let Ok(mut flag) = self.lose_create_answer.lock() {
            *flag = true;
        }
    }

    pub fn hide_sales_from_next_lookup(&self) {
        if let Ok(mut flag) = self.hide_next_lookup.lock() {
            *flag = true;
        }
    }

    pub fn with_products(skus: &[&str]) -> Self {
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
    pub fn sales(&self) -> Vec<(String, ErpSale)> {
        self.sales.lock().map(|s| s.clone()).unwrap_or_default()
    }
    pub fn writes(&self) -> u32 {
        self.writes.lock().map(|w| *w).unwrap_or_default()
    }
    pub fn wrote(&self) -> Result<(), SyncError> {
        *self
            .writes
            .lock()
            .map_err(|_| SyncError::retryable("lock", "poisoned"))? += 1;
        Ok(())
    }
    pub fn set_state(&self, id: i64, state: ErpSaleState) -> Result<ErpSale, SyncError> {
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
    async fn drop_duplicate_drafts(
        &self,
        reference: &str,
        keep: i64,
    ) -> Result<Vec<i64>, SyncError> {
        let mut sales = self.sales.lock().map_err(poisoned)?;
        let dropped: Vec<i64> = sales
            .iter()
            .filter(|(r, s)| r == reference && s.id != keep && s.state == ErpSaleState::Draft)
            .map(|(_, s)| s.id)
            .collect();
        sales.retain(|(_, s)| !dropped.contains(&s.id));
        Ok(dropped)
    }

    async fn find_sale_by_reference(&self, reference: &str) -> Result<Option<ErpSale>, SyncError> {
        if take(&self.hide_next_lookup) {
            return Ok(None);
        }
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
                // The fake ERP knows tax names, not rates.
                tax_rates: Vec::new(),
            })
            .collect();
        self.lines
            .lock()
            .map_err(poisoned)?
            .insert(created.id, lines);
        if take(&self.lose_create_answer) {
            return Err(SyncError::dependency_down(
                "erp_unavailable",
                "the create's answer was lost (injected)",
            ));
        }
        Ok(created)
    }
    async fn quote_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError> {
        self.set_state(sale_id, ErpSaleState::Quotation)
    }
    async fn confirm_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError> {
        self.set_state(sale_id, ErpSaleState::Processing)
    }
    async fn process_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError> {
        self.wrote()?;
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
            draft_amendment_since: *self.draft_amendment_since.lock().map_err(poisoned)?,
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
        // As Tryton's domain on sale.amendment.sale: only a sale processing or done.
        let state = self
            .sales()
            .into_iter()
            .map(|(_, s)| s)
            .find(|s| s.id == sale_id)
            .map(|s| s.state);
        if !matches!(state, Some(ErpSaleState::Processing | ErpSaleState::Done)) {
            return Err(SyncError::permanent(
                "erp_rejected",
                format!("sale {sale_id} in state {state:?} cannot be amended"),
            ));
        }
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

/// Change-feed cursors in memory (reconciliation, shipment runs).
#[derive(Default)]
pub struct FakeCursors(pub Mutex<HashMap<String, OffsetDateTime>>);

#[async_trait]
impl crate::ports::Cursors for FakeCursors {
    async fn cursor(&self, name: &str) -> Result<Option<OffsetDateTime>, SyncError> {
        Ok(self.0.lock().map_err(poisoned)?.get(name).copied())
    }
    async fn set_cursor(&self, name: &str, at: OffsetDateTime) -> Result<(), SyncError> {
        self.0.lock().map_err(poisoned)?.insert(name.to_owned(), at);
        Ok(())
    }
}
