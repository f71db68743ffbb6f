//! Money the shop took or gave back: a payment transaction as the channel reports it, and
//! what kind of money movement it is.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::model::ids::ExternalOrderId;

/// Shopify's transaction kinds (REST `kind`, GraphQL `OrderTransactionKind`:
/// https://shopify.dev/docs/api/admin-graphql/latest/enums/OrderTransactionKind).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionKind {
    /// Money the customer agreed to pay; it moves on a later capture.
    Authorization,
    /// Money moved on an authorisation.
    Capture,
    /// Authorised and captured in one step.
    Sale,
    /// An authorisation or capture cancelled: no money moved.
    Void,
    /// Money given back.
    Refund,
    /// Cash change handed back at a point of sale.
    Change,
    /// A kind this version does not know (`emv_authorization`, `suggested_refund`, newer).
    Other(String),
}

impl TransactionKind {
    pub fn parse(text: &str) -> Self {
        match text.trim().to_ascii_lowercase().as_str() {
            "authorization" => Self::Authorization,
            "capture" => Self::Capture,
            "sale" => Self::Sale,
            "void" => Self::Void,
            "refund" => Self::Refund,
            "change" => Self::Change,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// Whether the money moved (GraphQL `OrderTransactionStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionStatus {
    Success,
    /// Not yet: the gateway has not settled it.
    Pending,
    /// Never will: failed, errored, or unknown to the gateway.
    Failed,
}

impl TransactionStatus {
    pub fn parse(text: &str) -> Self {
        match text.trim().to_ascii_lowercase().as_str() {
            "success" => Self::Success,
            "pending" | "awaiting_response" => Self::Pending,
            _ => Self::Failed,
        }
    }
}

/// One payment transaction of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transaction {
    pub id: String,
    pub order_id: ExternalOrderId,
    pub kind: TransactionKind,
    pub status: TransactionStatus,
    /// The gateway as the shop names it (`shopify_payments`, `gift_card`, `manual`, ...).
    pub gateway: String,
    pub amount: Decimal,
    /// The currency the amount is in; for a multi-currency order, the customer's.
    pub currency: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub processed_at: Option<OffsetDateTime>,
    /// A test transaction (a development store, Shopify's Bogus Gateway).
    pub test: bool,
}

impl Transaction {
    /// Whether money came in: a successful sale or capture.
    pub fn took_money(&self) -> bool {
        self.status == TransactionStatus::Success
            && matches!(self.kind, TransactionKind::Sale | TransactionKind::Capture)
    }
}

/// The ERP payment's reference for a channel's transaction: unique per channel and
/// transaction, the key that keeps a payment from being recorded twice.
pub fn payment_reference(channel: &crate::model::ids::ChannelId, transaction_id: &str) -> String {
    format!("{channel}/txn-{transaction_id}")
}
