//! What an order's attempt needs (its dependencies) and what it came to, as sync state
//! records it.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::Config;
use crate::mapping::SaleDraft;
use crate::model::state::{EntityRef, SyncRecord, SyncStatus};
use crate::ports::ErpStock;
use crate::ports::{IdempotencyStore, PayloadArchive, SalesErp, StockSignal, SyncStateStore};

pub struct OrderSyncDeps<'a> {
    pub config: &'a Config,
    pub idempotency: &'a dyn IdempotencyStore,
    pub state: &'a dyn SyncStateStore,
    pub erp: &'a dyn SalesErp,
    /// Where to say that a sale moved stock; none when no channel wants it real-time.
    pub stock: Option<&'a dyn StockSignal>,
    /// The ERP's available stock, to tell a new sale that is short (a back order); none:
    /// not checked.
    pub availability: Option<&'a dyn ErpStock>,
    /// Where a failed order's latest payload is kept for `erpsync replay`; none: not kept.
    pub archive: Option<&'a dyn PayloadArchive>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum OrderOutcome {
    /// The ERP holds the confirmed sale. `created` is false when it was found by reference.
    Synced {
        erp_id: i64,
        erp_number: Option<String>,
        created: bool,
        /// Changes the shop wanted that ownership refused.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refused: Option<String>,
        /// What the sale is short of: it ships in part now, the rest later.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        backordered: Option<String>,
    },
    /// The ERP sale was amended to the shop's new version of the order.
    Amended {
        erp_id: i64,
        erp_number: Option<String>,
        changes: Vec<String>,
    },
    /// Cancelled in the shop: the ERP sale cancelled, or none was ever made.
    Cancelled {
        erp_id: Option<i64>,
        erp_number: Option<String>,
    },
    /// Shadow mode: what would have been sent.
    Shadow { request: Box<SaleDraft> },
    /// Nothing to do, and why.
    Skipped { reason: String },
    /// Already done by an earlier delivery; its outcome.
    Replayed { previous: Box<OrderOutcome> },
}

impl OrderOutcome {
    /// What happened, for a log line: the outcome's name and the ERP sale it concerns, never
    /// the order's content (a shadow outcome holds the customer's name and addresses).
    pub fn summary(&self) -> String {
        match self {
            Self::Synced {
                erp_id, created, ..
            } => format!(
                "synced: sale {erp_id} {}",
                if *created { "created" } else { "found" }
            ),
            Self::Amended {
                erp_id, changes, ..
            } => {
                format!("amended: sale {erp_id}, {} change(s)", changes.len())
            }
            Self::Cancelled { erp_id, .. } => match erp_id {
                Some(id) => format!("cancelled: sale {id}"),
                None => "cancelled before it reached the ERP".to_owned(),
            },
            Self::Shadow { request } => format!("shadow: would send {}", request.reference),
            Self::Skipped { .. } => "skipped".to_owned(),
            Self::Replayed { previous } => format!("replayed ({})", previous.summary()),
        }
    }
}

pub(super) fn record_of(
    entity: &EntityRef,
    outcome: &OrderOutcome,
    version: OffsetDateTime,
) -> SyncRecord {
    let mut record = SyncRecord {
        basis: None,
        entity: entity.clone(),
        status: SyncStatus::Synced,
        erp_id: None,
        erp_number: None,
        version: Some(version),
        note: None,
    };
    match outcome {
        OrderOutcome::Synced {
            erp_id,
            erp_number,
            created,
            refused,
            backordered,
        } => {
            record.erp_id = Some(*erp_id);
            record.erp_number = erp_number.clone();
            record.note = match (created, refused) {
                (_, Some(refused)) => Some(refused.clone()),
                (false, None) => Some("found in the ERP by its reference".to_owned()),
                (true, None) => None,
            };
            if let Some(short) = backordered {
                record.status = SyncStatus::Backordered;
                record.note = Some(match record.note.take() {
                    Some(note) => format!("{short}; {note}"),
                    None => short.clone(),
                });
            }
        }
        OrderOutcome::Amended {
            erp_id,
            erp_number,
            changes,
        } => {
            record.erp_id = Some(*erp_id);
            record.erp_number = erp_number.clone();
            record.note = Some(format!("amended: {}", changes.join("; ")));
        }
        OrderOutcome::Cancelled { erp_id, erp_number } => {
            record.erp_id = *erp_id;
            record.erp_number = erp_number.clone();
            record.note = Some(match erp_id {
                Some(_) => "cancelled in the shop; ERP sale cancelled".to_owned(),
                None => "cancelled in the shop before it reached the ERP; no sale made".to_owned(),
            });
        }
        OrderOutcome::Shadow { request } => {
            record.status = SyncStatus::Shadow;
            record.note = serde_json::to_string(request).ok();
        }
        OrderOutcome::Skipped { reason } => {
            record.status = SyncStatus::Skipped;
            record.note = Some(reason.clone());
        }
        OrderOutcome::Replayed { .. } => {}
    }
    record
}
