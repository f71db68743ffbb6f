//! The stores: idempotency claims, sync state, cursors, the payload archive, the stock
//! ledger, and the credentials read afresh.

use std::collections::HashMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::channels::ShopOrderRef;
use super::erp::ErpShipment;
use crate::config::ChannelConfig;
use crate::error::SyncError;
use crate::model::ids::Sku;
use crate::model::state::{
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

/// Named positions in a change feed, kept between invocations.
#[async_trait]
pub trait Cursors: Send + Sync {
    async fn cursor(&self, name: &str) -> Result<Option<OffsetDateTime>, SyncError>;
    async fn set_cursor(&self, name: &str, at: OffsetDateTime) -> Result<(), SyncError>;
}

/// What was last pushed per (SKU, location): tells drift apart from the ERP's own moves.
#[async_trait]
pub trait StockLedger: Send + Sync {
    async fn pushed(&self, channel: &str) -> Result<HashMap<(Sku, String), i64>, SyncError>;
    async fn record(&self, channel: &str, pushed: &[(Sku, String, i64)]) -> Result<(), SyncError>;
}

/// Where a shipment a person must look at waits to be sent through again.
#[async_trait]
pub trait ParkedShipments: Send + Sync {
    async fn park(
        &self,
        shipment: &ErpShipment,
        entity: &EntityRef,
        error: &SyncError,
        attempts: u32,
    ) -> Result<(), SyncError>;
}

#[async_trait]
pub trait FoundOrders: Send + Sync {
    /// Puts the order on the orders queue as its webhook would have, marked as found by
    /// reconciliation; `fetched_at`, when its body was asked for, is its trigger time.
    async fn enqueue(
        &self,
        channel: &ChannelConfig,
        order: &ShopOrderRef,
        body: String,
        fetched_at: OffsetDateTime,
    ) -> Result<(), SyncError>;
}

/// Money (a refund, a payment) for an order whose ERP sale cannot be found. It can overtake
/// its order (a backlog on the orders queue, a webhook lost and brought in by reconciliation
/// every 30 minutes): while the order is on its way it waits (at most the retry policy's
/// longest delay), while its receives last, then a person is told. An order parked for a person, or
/// booked but gone from the ERP, or never to be booked (skipped, shadow), is a person's at
/// once. `subject` names the kind of money (`refund`, `payment`); `what` says which; `wait`
/// is how long it waits before it looks again.
pub async fn sale_awaited(
    state: &dyn SyncStateStore,
    channel: &crate::model::ids::ChannelId,
    order: &crate::model::ids::ExternalOrderId,
    subject: &str,
    what: &str,
    wait: std::time::Duration,
) -> SyncError {
    use crate::model::state::{EntityRef, SyncStatus};
    let order_state = match state.get(&EntityRef::order(channel, order.as_str())).await {
        Ok(order_state) => order_state,
        Err(error) => return error,
    };
    match order_state.map(|s| s.status) {
        None | Some(SyncStatus::Pending | SyncStatus::Retrying) => SyncError::retryable(
            "order_not_in_erp_yet",
            format!(
                "{what}, which is not in the ERP yet: retried while the order may still arrive; if it never does, bring the order in (erpsync replay) and redrive"
            ),
        )
        .with_retry_after(wait),
        Some(SyncStatus::NeedsAttention) => SyncError::permanent(
            format!("{subject}_for_parked_order"),
            format!(
                "{what}, which waits for a person (erpsync exceptions): settle the order first, then redrive this {subject}"
            ),
        ),
        Some(status) => SyncError::permanent(
            format!("{subject}_for_unknown_order"),
            format!(
                "{what}, whose ERP sale cannot be found (its state is {}): book it by hand and discard, or bring the order in (erpsync replay) and redrive",
                status.as_str()
            ),
        ),
    }
}
