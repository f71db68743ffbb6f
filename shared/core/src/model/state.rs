//! Idempotency records and sync state: the types the stores keep and the flows decide on.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::error::{ErrorClass, SyncError};
use crate::model::ids::ChannelId;

/// The key an operation is claimed under: one per business operation, so two deliveries of
/// the same order (retries, other webhook ids, other topics) share it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn new(flow: Flow, channel: &ChannelId, entity_id: &str) -> Self {
        Self(format!("{}#{channel}#{entity_id}", flow.as_str()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// A key as a store keeps it.
    pub fn from_stored(text: String) -> Self {
        Self(text)
    }
}

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// SHA-256 of the canonical request: the same key with another payload is caught by it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayloadHash(String);

impl PayloadHash {
    pub fn of<T: Serialize>(value: &T) -> Self {
        // Serialising plain data structs to JSON cannot fail; an empty input still hashes.
        let bytes = serde_json::to_vec(value).unwrap_or_default();
        Self(hex::encode(Sha256::digest(&bytes)))
    }
    pub fn of_bytes(bytes: &[u8]) -> Self {
        Self(hex::encode(Sha256::digest(bytes)))
    }
    pub fn from_stored(text: String) -> Self {
        Self(text)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whose claim it is: the store gives each claim its own token, and completes or releases a
/// claim only for the token that took it, so a worker whose lease ran out can never complete
/// or give up the claim another worker took over.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClaimToken(String);

impl ClaimToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(token.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which version of an order a payload is, as a time: the platform's `updated_at`, told apart
/// within its second when the platform writes whole seconds (Shopify's and WooCommerce's do),
/// so that two different payloads of one second are two versions, ordered the same whatever
/// order they arrive in. The rule, for an `updated_at` with no fraction:
/// - the microseconds from `updated_at` to when the delivery was triggered (Shopify's
///   `X-Shopify-Triggered-At`; reconciliation's fetch), at most 999,999: the later event wins,
///   and a fetch a second or more later wins over every webhook of that second;
/// - then the payload's SHA-256 (the nanoseconds below: 0-999, or 0-999,999,999 with no trigger
///   time), so equal triggers still order deterministically.
///
/// The same payload of the same delivery is always the same version (retries, redrives and
/// replays carry its body and trigger time).
pub fn payload_version(
    updated_at: OffsetDateTime,
    triggered_at: Option<OffsetDateTime>,
    body: &[u8],
) -> OffsetDateTime {
    if updated_at.nanosecond() != 0 {
        return updated_at;
    }
    let digest = Sha256::digest(body);
    let mut first = [0_u8; 8];
    first.copy_from_slice(&digest[..8]);
    let hashed = u64::from_be_bytes(first);
    let nanos = match triggered_at {
        Some(triggered) => {
            let micros = (triggered - updated_at)
                .whole_microseconds()
                .clamp(0, 999_999);
            micros as i64 * 1_000 + (hashed % 1_000) as i64
        }
        None => (hashed % 1_000_000_000) as i64,
    };
    updated_at + time::Duration::nanoseconds(nanos)
}

/// The answer to "may I run this operation?" (claim-or-replay).
#[derive(Debug, Clone, PartialEq)]
pub enum Claim {
    /// The key is ours until `in_progress_until`: run, then complete or release with the token.
    Start(ClaimToken),
    /// It already ran; here is what it produced. `same_payload` is false when the stored
    /// hash differs: the same business key arrived with other content.
    AlreadyDone {
        outcome: serde_json::Value,
        same_payload: bool,
    },
    /// Another worker holds it and its lease has not expired.
    InProgress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Flow {
    OrderSync,
    StockSync,
    PriceSync,
    /// ERP dispatches -> shop fulfilments.
    ShipmentSync,
    /// Courier tracking events -> fulfilment events.
    Tracking,
    /// Shop refunds -> ERP returns and credit notes.
    ReturnSync,
    /// Shop orders compared with sync state.
    Reconcile,
    /// Money taken and given back -> ERP payments settling invoices and credit notes.
    PaymentSync,
}

impl Flow {
    pub const ALL: [Self; 8] = [
        Self::OrderSync,
        Self::StockSync,
        Self::PriceSync,
        Self::ShipmentSync,
        Self::Tracking,
        Self::ReturnSync,
        Self::Reconcile,
        Self::PaymentSync,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::OrderSync => "order-sync",
            Self::StockSync => "stock-sync",
            Self::PriceSync => "price-sync",
            Self::ShipmentSync => "shipment-sync",
            Self::Tracking => "tracking",
            Self::ReturnSync => "return-sync",
            Self::Reconcile => "reconcile",
            Self::PaymentSync => "payment-sync",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.as_str() == text)
    }
}

/// Where an entity stands in a flow: the answer to "what synced, what failed, what needs a
/// person".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncStatus {
    Pending,
    Synced,
    Shadow,
    Retrying,
    NeedsAttention,
    Skipped,
    /// In the ERP, but more was sold than is in stock: the rest ships when it arrives.
    Backordered,
    /// A person looked at the failure and closed it (discarded its message), with a reason.
    Resolved,
}

impl SyncStatus {
    pub const ALL: [Self; 8] = [
        Self::Pending,
        Self::Synced,
        Self::Shadow,
        Self::Retrying,
        Self::NeedsAttention,
        Self::Skipped,
        Self::Backordered,
        Self::Resolved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Synced => "synced",
            Self::Shadow => "shadow",
            Self::Retrying => "retrying",
            Self::NeedsAttention => "needs-attention",
            Self::Skipped => "skipped",
            Self::Backordered => "backordered",
            Self::Resolved => "resolved",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The status a failure of this class leaves the entity in, if it is recorded at all.
    pub fn after_failure(class: ErrorClass) -> Option<Self> {
        match class {
            ErrorClass::Retryable => Some(Self::Retrying),
            ErrorClass::Permanent => Some(Self::NeedsAttention),
            ErrorClass::InFlight => None,
        }
    }
}

/// Which entity of which flow a state row is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct EntityRef {
    pub flow: Flow,
    pub channel: ChannelId,
    pub entity_id: String,
}

impl EntityRef {
    pub fn order(channel: &ChannelId, order_id: &str) -> Self {
        Self {
            flow: Flow::OrderSync,
            channel: channel.clone(),
            entity_id: order_id.to_owned(),
        }
    }
}

impl EntityRef {
    /// Reads back what `Display` writes: `flow/channel/entity id` (the id may hold `/`).
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.splitn(3, '/');
        let flow = Flow::parse(parts.next()?)?;
        let channel = ChannelId::parse(parts.next()?).ok()?;
        let entity_id = parts.next().filter(|id| !id.is_empty())?.to_owned();
        Some(Self {
            flow,
            channel,
            entity_id,
        })
    }
}

impl fmt::Display for EntityRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}/{}",
            self.flow.as_str(),
            self.channel,
            self.entity_id
        )
    }
}

/// The last failure, kept so a person can see what went wrong and act on it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorReport {
    pub class: ErrorClass,
    pub kind: String,
    pub message: String,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl ErrorReport {
    pub fn new(error: &SyncError, at: OffsetDateTime) -> Self {
        Self {
            class: error.class,
            kind: error.kind.clone(),
            message: error.message.clone(),
            at,
        }
    }
}

/// A successful (or deliberately skipped) outcome for an entity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncRecord {
    pub entity: EntityRef,
    pub status: SyncStatus,
    pub erp_id: Option<i64>,
    pub erp_number: Option<String>,
    /// The channel's version of the entity that was applied (the order's updated_at).
    #[serde(with = "time::serde::rfc3339::option")]
    pub version: Option<OffsetDateTime>,
    /// A note for people: why skipped, what was found, what shadow mode would have sent.
    pub note: Option<String>,
    /// How the order's refunds read (order-sync writes it); None keeps what is recorded.
    pub basis: Option<OrderBasis>,
}

/// What order-sync recorded of how it booked an order: return-sync reads the order's refunds
/// by it, and reconciliation compares the ERP sale's totals with it (no shop call needed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderBasis {
    /// Its amounts, and so its refunds', include tax.
    pub taxes_included: bool,
    /// Units of its refunds taken off the sale; None in rows written before it was kept.
    #[serde(default)]
    pub refunded_before_fulfilment: Option<crate::model::order::RefundedBeforeFulfilment>,
    /// The totals the sale was booked at; None in rows written before they were kept.
    #[serde(default)]
    pub booked: Option<BookedTotals>,
}

/// An order's totals as order-sync sent it to the ERP, at the version it applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookedTotals {
    pub currency: crate::model::ids::CurrencyCode,
    /// The sale's net total as sent (the ERP's untaxed amount must equal it).
    pub net: rust_decimal::Decimal,
    /// What the shop charged, with tax (the ERP's total must equal it).
    pub gross: rust_decimal::Decimal,
    /// The order was cancelled: no sale should be live.
    pub cancelled: bool,
}

/// A state row as read back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncState {
    pub entity: EntityRef,
    pub status: SyncStatus,
    pub erp_id: Option<i64>,
    pub erp_number: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub version: Option<OffsetDateTime>,
    pub note: Option<String>,
    pub attempts: u32,
    pub last_error: Option<ErrorReport>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// As the order was last booked (unknown until order-sync completes it once).
    #[serde(default)]
    pub basis: Option<OrderBasis>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_content_hashes_the_same() {
        let a = PayloadHash::of(&serde_json::json!({"a": 1, "b": [1, 2]}));
        let b = PayloadHash::of(&serde_json::json!({"a": 1, "b": [1, 2]}));
        let c = PayloadHash::of(&serde_json::json!({"a": 1, "b": [2, 1]}));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.as_str().len(), 64);
    }

    #[test]
    fn versions_of_one_second_are_told_apart_the_same_way_whatever_order_they_come_in() {
        let second = time::macros::datetime!(2026-11-29 10:00:00 UTC);
        let early = second + time::Duration::milliseconds(150);
        let late = second + time::Duration::milliseconds(700);
        let a = payload_version(second, Some(early), b"{\"note\":\"a\"}");
        let b = payload_version(second, Some(late), b"{\"note\":\"b\"}");
        // The later trigger is the later version, both inside the second.
        assert!(second < a && a < b && b < second + time::Duration::SECOND);
        // The same delivery is the same version, every time.
        assert_eq!(a, payload_version(second, Some(early), b"{\"note\":\"a\"}"));
        // Equal triggers: another payload is another version, ordered by its hash.
        let c = payload_version(second, Some(early), b"{\"note\":\"c\"}");
        assert_ne!(a, c);
        assert_eq!(
            a.unix_timestamp() * 1_000_000 + 150_000,
            a.unix_timestamp_nanos() as i64 / 1_000
        );
        // A fetch a second or more later (reconciliation) wins over every webhook of the second.
        let fetched = payload_version(second, Some(second + time::Duration::HOUR), b"x");
        assert!(fetched > b && fetched < second + time::Duration::SECOND);
        // A trigger time before updated_at (clock skew) counts as none later.
        let skewed = payload_version(second, Some(second - time::Duration::SECOND), b"x");
        assert!(skewed >= second && skewed < a);
        // No trigger time: the hash alone, still within the second; a next second is newer.
        let plain = payload_version(second, None, b"x");
        assert!(plain >= second && plain < second + time::Duration::SECOND);
        assert!(payload_version(second + time::Duration::SECOND, None, b"x") > b);
        // A platform that gives fractions orders its versions itself.
        let exact = second + time::Duration::microseconds(5);
        assert_eq!(payload_version(exact, Some(late), b"x"), exact);
    }

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in [
            SyncStatus::NeedsAttention,
            SyncStatus::Synced,
            SyncStatus::Skipped,
        ] {
            assert_eq!(SyncStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(SyncStatus::after_failure(ErrorClass::InFlight), None);
        for flow in Flow::ALL {
            assert_eq!(Flow::parse(flow.as_str()), Some(flow));
        }
        for status in SyncStatus::ALL {
            assert_eq!(SyncStatus::parse(status.as_str()), Some(status));
        }
        let entity = EntityRef {
            flow: Flow::ReturnSync,
            channel: ChannelId::parse("uk-shop").unwrap_or_else(|e| panic!("{e}")),
            entity_id: "450789469/refund-929361472".to_owned(),
        };
        assert_eq!(EntityRef::parse(&entity.to_string()), Some(entity));
        assert_eq!(EntityRef::parse("unknown"), None);
    }
}
