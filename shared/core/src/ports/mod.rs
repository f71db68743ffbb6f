//! The ports: small traits the flows call, implemented by adapters in shared/aws and
//! shared/connectors, and by in-memory fakes in core's unit tests. Every error comes back
//! already classified as a `SyncError`. One path for all: `ports::X`.

mod channels;
mod erp;
mod store;

pub use channels::*;
pub use erp::*;
pub use store::*;

use async_trait::async_trait;

use crate::error::SyncError;
use crate::model::ids::Sku;

/// Tells the stock flow that orders moved the ERP's stock of these SKUs, so channels that
/// want it real-time are refreshed now rather than at the next scheduled run.
#[async_trait]
pub trait StockSignal: Send + Sync {
    async fn stock_moved(&self, skus: &[Sku]) -> Result<(), SyncError>;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    use crate::model::state::{EntityRef, SyncRecord, SyncState, SyncStatus};

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
        let channel =
            crate::model::ids::ChannelId::parse("uk-shop").unwrap_or_else(|e| panic!("{e}"));
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
