//! The ports: small traits the flows call, implemented by adapters in shared/aws and
//! shared/connectors, and by in-memory fakes in core's unit tests. Every error comes back
//! already classified as a `SyncError`.

use std::collections::HashMap;

use async_trait::async_trait;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::SyncError;
use crate::ids::{CountryCode, Email, Sku};
use crate::mapping::{CustomerDraft, SaleDraft};
use crate::order::Address;
use crate::state::{
    Claim, ClaimToken, EntityRef, ErrorReport, IdempotencyKey, PayloadHash, SyncRecord, SyncState,
    SyncStatus,
};

/// Where a credential is read again when the service refuses the one in use: a rotation
/// (the ERP's REST key) then needs no redeploy.
#[async_trait]
pub trait CredentialSource: Send + Sync {
    /// The credential as stored now, read afresh.
    async fn reread(&self) -> Result<secrecy::SecretString, SyncError>;
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync {
    /// Claims `key` until `in_progress_until` (with a token of its own), or reports that it is
    /// done or held.
    async fn claim(
        &self,
        key: &IdempotencyKey,
        hash: &PayloadHash,
        in_progress_until: OffsetDateTime,
    ) -> Result<Claim, SyncError>;

    /// Marks the claim completed with its outcome and writes the entity's sync state in the
    /// same transaction: there is never a completed claim without its state, or the reverse.
    /// When the state holds a newer version (or a newer version's failure), the claim is
    /// completed alone and the state left as it is: [`Completion::StateNewer`]. A claim
    /// another worker took over (this one's lease ran out) is left to it:
    /// [`Completion::TakenOver`].
    async fn complete(
        &self,
        key: &IdempotencyKey,
        token: &ClaimToken,
        hash: &PayloadHash,
        outcome: &serde_json::Value,
        record: &SyncRecord,
    ) -> Result<Completion, SyncError>;

    /// Gives the claim up after a failure, so that the retry runs again; only the claim this
    /// token took (another worker's, after this one's lease ran out, is left alone).
    async fn release(&self, key: &IdempotencyKey, token: &ClaimToken) -> Result<(), SyncError>;
}

/// How a completed claim left the entity's sync state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completion {
    /// The outcome is the entity's state now.
    Recorded,
    /// The state already holds a newer version, or a newer version's failure: it was left
    /// as it is.
    StateNewer,
    /// This worker's lease ran out and another worker holds or completed the claim: nothing
    /// was written; that worker's outcome stands.
    TakenOver,
}

/// What [`once`] did: ran the work (its result), or found it done already.
pub enum Once<T> {
    Ran(T),
    Replayed,
}

/// Claim-or-replay around one operation: claims `key`, runs `work`, then completes the
/// claim with the outcome and the sync state in one write, or releases it on failure so the
/// retry runs again. Another holder of the claim is an in-flight error naming `what`.
pub async fn once<T, F>(
    store: &dyn IdempotencyStore,
    key: &IdempotencyKey,
    hash: &PayloadHash,
    lease_until: OffsetDateTime,
    what: &str,
    work: F,
) -> Result<Once<T>, SyncError>
where
    T: Serialize,
    F: std::future::Future<Output = Result<(T, SyncRecord), SyncError>>,
{
    let token = match store.claim(key, hash, lease_until).await? {
        Claim::AlreadyDone { .. } => return Ok(Once::Replayed),
        Claim::InProgress => {
            return Err(SyncError::in_flight(format!(
                "{what} is being handled by another worker"
            )));
        }
        Claim::Start(token) => token,
    };
    match work.await {
        Ok((outcome, record)) => {
            let stored = serde_json::to_value(&outcome).unwrap_or_default();
            store.complete(key, &token, hash, &stored, &record).await?;
            Ok(Once::Ran(outcome))
        }
        Err(error) => {
            if let Err(release) = store.release(key, &token).await {
                tracing::warn!(key = %key, error = %release, "could not release the claim");
            }
            Err(error)
        }
    }
}

#[async_trait]
///
/// Sync state never moves backwards: a write that carries a version older than the one
/// stored is not made (and is not an error), so a late or concurrent attempt at an old
/// version of an entity cannot undo what a newer one recorded.
pub trait SyncStateStore: Send + Sync {
    /// Records an outcome that is not a completed claim (skipped, shadow, ...). With a
    /// version, only when none newer is recorded; without one, the stored version is kept.
    async fn record(&self, record: &SyncRecord) -> Result<(), SyncError>;

    /// Records a failure: the status it leads to, the error, and one more attempt.
    /// `version` is the entity's version the failed attempt was about, when it has one: a
    /// failure of an older version than the one recorded is not recorded. The stored
    /// version (the last applied) is never changed by a failure.
    async fn record_failure(
        &self,
        entity: &EntityRef,
        status: SyncStatus,
        error: &ErrorReport,
        version: Option<OffsetDateTime>,
    ) -> Result<(), SyncError>;

    async fn get(&self, entity: &EntityRef) -> Result<Option<SyncState>, SyncError>;

    /// The states of many entities (each read, with its state or `None`); a store that can
    /// read in batches answers with fewer requests. Entities it could not read are left out.
    async fn get_many(
        &self,
        entities: &[EntityRef],
    ) -> Result<HashMap<EntityRef, Option<SyncState>>, SyncError> {
        let mut read = HashMap::new();
        for entity in entities {
            read.insert(entity.clone(), self.get(entity).await?);
        }
        Ok(read)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErpSaleState {
    Draft,
    Quotation,
    Confirmed,
    Processing,
    Done,
    Cancelled,
    Other(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErpSale {
    pub id: i64,
    pub number: Option<String>,
    pub state: ErpSaleState,
}

/// A sale line as the ERP holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErpSaleLine {
    pub id: i64,
    pub sku: Option<Sku>,
    pub product_id: Option<i64>,
    pub unit_id: Option<i64>,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub description: Option<String>,
    /// The rates of its percentage taxes (0.20 for 20 %), to predict the ERP's tax on it.
    pub tax_rates: Vec<Decimal>,
}

/// What the flows need to know about a sale before changing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErpSaleDetails {
    pub sale: ErpSale,
    pub customer_id: i64,
    pub invoice_address_id: i64,
    pub shipment_address: ErpAddress,
    pub lines: Vec<ErpSaleLine>,
    /// A shipment has gone past waiting (assigned, picked, packed, shipped, done): the
    /// warehouse is working on it, so the sale is no longer the shop's to change.
    pub fulfilment_started: bool,
    /// An invoice is validated, posted or paid.
    pub invoiced: bool,
}

/// A change to a confirmed sale, applied by the ERP as one amendment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleAmendment {
    pub description: String,
    pub lines: Vec<AmendedLine>,
    /// New shipment address (already created on the customer), if it changed.
    pub shipment_address_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmendedLine {
    pub line_id: i64,
    pub product_id: i64,
    pub unit_id: i64,
    pub quantity: Decimal,
    pub unit_price: Decimal,
    pub description: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErpProduct {
    pub id: i64,
    pub unit_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErpAddress {
    pub id: i64,
    pub street: Option<String>,
    pub postal_code: Option<String>,
    pub city: Option<String>,
    pub country: Option<CountryCode>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErpCustomer {
    pub id: i64,
    pub name: Option<String>,
    pub addresses: Vec<ErpAddress>,
}

/// A sale ready to be written: the draft plus the ERP ids it refers to.
#[derive(Debug, Clone)]
pub struct NewSale<'a> {
    pub draft: &'a SaleDraft,
    pub customer_id: i64,
    pub invoice_address_id: i64,
    pub shipment_address_id: i64,
    pub products: &'a HashMap<Sku, ErpProduct>,
}

#[async_trait]
pub trait SalesErp: Send + Sync {
    /// The sale with this reference: the one furthest along (confirmed or later, then
    /// quotation, then draft; cancelled last), the oldest among equals.
    async fn find_sale_by_reference(&self, reference: &str) -> Result<Option<ErpSale>, SyncError>;
    /// Deletes the draft sales with this reference other than `keep`: left by a create whose
    /// answer was lost while the ERP was still working on it. Answers the ids deleted.
    async fn drop_duplicate_drafts(
        &self,
        reference: &str,
        keep: i64,
    ) -> Result<Vec<i64>, SyncError>;

    /// The products known under these SKUs; unknown SKUs are simply absent.
    async fn products_by_sku(&self, skus: &[Sku]) -> Result<HashMap<Sku, ErpProduct>, SyncError>;

    /// The customer with this e-mail (compared case-insensitively); the oldest if several.
    async fn find_customer_by_email(&self, email: &Email)
    -> Result<Option<ErpCustomer>, SyncError>;

    /// Creates the customer with its e-mail and its invoice address, plus the shipment
    /// address when it differs; the addresses come back in that order.
    async fn create_customer(&self, customer: &CustomerDraft) -> Result<ErpCustomer, SyncError>;

    async fn add_address(
        &self,
        customer_id: i64,
        address: &Address,
    ) -> Result<ErpAddress, SyncError>;

    async fn rename_customer(&self, customer_id: i64, name: &str) -> Result<(), SyncError>;

    async fn create_sale(&self, sale: &NewSale<'_>) -> Result<ErpSale, SyncError>;

    async fn quote_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError>;

    async fn confirm_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError>;

    /// Runs the ERP's processing of a confirmed sale (shipments, invoices) now: safe to repeat.
    async fn process_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError>;

    async fn sale_details(&self, sale_id: i64) -> Result<ErpSaleDetails, SyncError>;

    /// Cancels a sale that is not yet processing (draft, quotation or confirmed).
    async fn cancel_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError>;

    /// Applies an amendment to a processing sale; the ERP re-plans its shipments and
    /// invoices from the amended lines.
    async fn amend_sale(
        &self,
        sale_id: i64,
        amendment: &SaleAmendment,
    ) -> Result<ErpSale, SyncError>;
}

/// The latest payload received for an entity, kept so a person can replay it after fixing
/// what made it fail (`erpsync replay`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchivedPayload {
    pub topic: String,
    #[serde(with = "time::serde::rfc3339")]
    pub version: OffsetDateTime,
    /// The delivery's trigger time, which a replay carries so it is the same version.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub triggered_at: Option<OffsetDateTime>,
    pub body: String,
}

#[async_trait]
pub trait PayloadArchive: Send + Sync {
    /// Keeps `payload` unless a newer version is already kept.
    async fn keep(&self, entity: &EntityRef, payload: &ArchivedPayload) -> Result<(), SyncError>;
    async fn latest(&self, entity: &EntityRef) -> Result<Option<ArchivedPayload>, SyncError>;
}

/// Tells the stock flow that orders moved the ERP's stock of these SKUs, so channels that
/// want it real-time are refreshed now rather than at the next scheduled run.
#[async_trait]
pub trait StockSignal: Send + Sync {
    async fn stock_moved(&self, skus: &[Sku]) -> Result<(), SyncError>;
}

/// A create whose answer was lost (a timeout while the ERP was still at work) can commit
/// after the retry looked the reference up and made its own sale. Whenever a sale is about to
/// move on, the one furthest along is kept and the other drafts are deleted, so two attempts
/// never leave two sales (orders and return sales alike).
pub async fn keep_one_sale(
    erp: &dyn SalesErp,
    reference: &str,
    ours: ErpSale,
) -> Result<ErpSale, SyncError> {
    let kept = match erp.find_sale_by_reference(reference).await? {
        Some(oldest) if oldest.id != ours.id => oldest,
        _ => ours,
    };
    let dropped = erp.drop_duplicate_drafts(reference, kept.id).await?;
    if !dropped.is_empty() {
        tracing::warn!(
            reference,
            kept = kept.id,
            ?dropped,
            "duplicate draft sales from lost creates deleted"
        );
    }
    Ok(kept)
}

/// Sync state read ahead for a whole batch (one batch read instead of one read per
/// message), in front of the store. Each prefetched entry answers its entity's first read
/// only, and any write through here drops it, so a later message of the same entity in the
/// batch reads the store again. Sound for queues that deliver an entity's messages to one
/// consumer at a time (FIFO groups): nobody else moves the entity's version meanwhile.
pub struct PrefetchedStates<'a> {
    store: &'a dyn SyncStateStore,
    ahead: std::sync::Mutex<HashMap<EntityRef, Option<SyncState>>>,
}

impl<'a> PrefetchedStates<'a> {
    /// `ahead`: the entities read, each with its state or `None` when it has none yet.
    pub fn new(
        store: &'a dyn SyncStateStore,
        ahead: HashMap<EntityRef, Option<SyncState>>,
    ) -> Self {
        Self {
            store,
            ahead: std::sync::Mutex::new(ahead),
        }
    }

    fn take(&self, entity: &EntityRef) -> Option<Option<SyncState>> {
        self.ahead
            .lock()
            .ok()
            .and_then(|mut ahead| ahead.remove(entity))
    }
}

#[async_trait]
impl SyncStateStore for PrefetchedStates<'_> {
    async fn record(&self, record: &SyncRecord) -> Result<(), SyncError> {
        self.take(&record.entity);
        self.store.record(record).await
    }

    async fn record_failure(
        &self,
        entity: &EntityRef,
        status: SyncStatus,
        error: &ErrorReport,
        version: Option<OffsetDateTime>,
    ) -> Result<(), SyncError> {
        self.take(entity);
        self.store
            .record_failure(entity, status, error, version)
            .await
    }

    async fn get(&self, entity: &EntityRef) -> Result<Option<SyncState>, SyncError> {
        match self.take(entity) {
            Some(state) => Ok(state),
            None => self.store.get(entity).await,
        }
    }
}

/// Stock moves gathered over a batch of messages, to be announced once at its end: one
/// message per batch instead of one per order (the signal is best effort either way: the
/// scheduled run catches up with any that is lost).
#[derive(Debug, Default)]
pub struct GatheredStockMoves {
    skus: std::sync::Mutex<std::collections::BTreeSet<Sku>>,
}

impl GatheredStockMoves {
    /// The SKUs gathered so far, emptying the set.
    pub fn take(&self) -> Vec<Sku> {
        self.skus
            .lock()
            .map(|mut skus| std::mem::take(&mut *skus).into_iter().collect())
            .unwrap_or_default()
    }
}

#[async_trait]
impl StockSignal for GatheredStockMoves {
    async fn stock_moved(&self, skus: &[Sku]) -> Result<(), SyncError> {
        if let Ok(mut gathered) = self.skus.lock() {
            gathered.extend(skus.iter().cloned());
        }
        Ok(())
    }
}

/// Records a failure in sync state with the status its class leads to (retrying, or
/// needs-attention); in-flight duplicates are not failures of the entity. A state store that
/// fails too is only logged: the message's own retry or dead letter still carries the error.
pub async fn note_failure(
    state: &dyn SyncStateStore,
    entity: &EntityRef,
    error: &SyncError,
    version: Option<OffsetDateTime>,
    at: OffsetDateTime,
) {
    let Some(status) = SyncStatus::after_failure(error.class) else {
        return;
    };
    let report = ErrorReport::new(error, at);
    if let Err(state_error) = state.record_failure(entity, status, &report, version).await {
        tracing::warn!(entity = %entity, error = %state_error, "could not record the failure in sync state");
    }
}

/// Records the outcome of a scheduled run (stock, prices) for an entity: synced with a note
/// for people, or the failure and the status it leads to.
pub async fn record_run(
    state: &dyn SyncStateStore,
    entity: &EntityRef,
    result: Result<String, &SyncError>,
) -> Result<(), SyncError> {
    let now = OffsetDateTime::now_utc();
    match result {
        Ok(note) => {
            state
                .record(&SyncRecord {
                    basis: None,
                    entity: entity.clone(),
                    status: SyncStatus::Synced,
                    erp_id: None,
                    erp_number: None,
                    version: Some(now),
                    note: Some(note),
                })
                .await
        }
        Err(failure) => {
            let status = SyncStatus::after_failure(failure.class).unwrap_or(SyncStatus::Retrying);
            state
                .record_failure(entity, status, &ErrorReport::new(failure, now), None)
                .await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn stock_moves_of_a_batch_are_gathered_once_each_and_taken_once() {
        let sku = |s: &str| Sku::parse(s).unwrap_or_else(|e| panic!("{e}"));
        let gathered = GatheredStockMoves::default();
        for skus in [
            vec![sku("IPOD2008RED"), sku("IPOD2008GREEN")],
            vec![sku("IPOD2008RED")],
        ] {
            assert!(gathered.stock_moved(&skus).await.is_ok());
        }
        assert_eq!(
            gathered.take(),
            vec![sku("IPOD2008GREEN"), sku("IPOD2008RED")]
        );
        assert!(gathered.take().is_empty());
    }

    #[tokio::test]
    async fn a_prefetched_state_answers_the_first_read_only_and_writes_drop_it() {
        let channel = crate::ids::ChannelId::parse("uk-shop").unwrap_or_else(|e| panic!("{e}"));
        let read = EntityRef::order(&channel, "1");
        let written = EntityRef::order(&channel, "2");
        let store = crate::fakes::FakeStore::default();
        let record = |entity: &EntityRef| SyncRecord {
            basis: None,
            entity: entity.clone(),
            status: SyncStatus::Synced,
            erp_id: Some(7),
            erp_number: None,
            version: None,
            note: None,
        };
        for entity in [&read, &written] {
            assert!(store.record(&record(entity)).await.is_ok());
        }
        // Read ahead before the store changed: both entities had no state then.
        let prefetched = PrefetchedStates::new(
            &store,
            HashMap::from([(read.clone(), None), (written.clone(), None)]),
        );
        let erp_id = |state: Result<Option<SyncState>, SyncError>| {
            state.ok().flatten().and_then(|s| s.erp_id)
        };
        assert_eq!(
            erp_id(prefetched.get(&read).await),
            None,
            "from the prefetch"
        );
        assert_eq!(
            erp_id(prefetched.get(&read).await),
            Some(7),
            "then the store"
        );
        assert!(prefetched.record(&record(&written)).await.is_ok());
        assert_eq!(
            erp_id(prefetched.get(&written).await),
            Some(7),
            "dropped by the write"
        );
    }
}
