//! An order transaction (the REST transaction resource: the body of the
//! `order_transactions/create` webhook, and each of a refund's `transactions`) into the model.
//! https://shopify.dev/docs/api/admin-rest/latest/resources/transaction

use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::raw::{Amount, Id};
use crate::channels::json::from_json;
use crate::error::ParseError;
use crate::model::ids::ExternalOrderId;
use crate::model::payment::{Transaction, TransactionKind, TransactionStatus};

#[derive(Debug, Deserialize)]
pub(super) struct RawTransaction {
    id: Option<Id>,
    order_id: Option<Id>,
    pub(super) kind: String,
    pub(super) status: Option<String>,
    #[serde(default)]
    gateway: Option<String>,
    pub(super) amount: Amount,
    pub(super) currency: Option<String>,
    processed_at: Option<String>,
    created_at: Option<String>,
    #[serde(default)]
    test: bool,
}

impl RawTransaction {
    pub(super) fn id_text(&self) -> Option<String> {
        self.id
            .as_ref()
            .map(Id::text)
            .filter(|id| !id.trim().is_empty())
    }

    pub(super) fn gateway(&self) -> String {
        self.gateway
            .as_deref()
            .unwrap_or_default()
            .trim()
            .to_owned()
    }

    pub(super) fn processed_at(&self, field: &str) -> Result<Option<OffsetDateTime>, ParseError> {
        match self.processed_at.as_deref().or(self.created_at.as_deref()) {
            Some(text) => OffsetDateTime::parse(text, &Rfc3339)
                .map(Some)
                .map_err(|_| {
                    ParseError::new(
                        format!("{field}processed_at"),
                        format!("{text:?} is not an RFC 3339 time"),
                    )
                }),
            None => Ok(None),
        }
    }

    /// Into the model.
    fn read(&self) -> Result<Transaction, ParseError> {
        let id = self
            .id_text()
            .ok_or_else(|| ParseError::new("id", "is missing"))?;
        let order_id = self
            .order_id
            .as_ref()
            .ok_or_else(|| ParseError::new("order_id", "is missing"))
            .and_then(|raw| {
                ExternalOrderId::parse(&raw.text())
                    .map_err(|e| ParseError::new("order_id", e.reason))
            })?;
        let processed_at = self.processed_at("")?;
        Ok(Transaction {
            id,
            order_id,
            kind: TransactionKind::parse(&self.kind),
            // The REST resource always says; a transaction without one is taken as not (yet)
            // moving money rather than guessed successful.
            status: self
                .status
                .as_deref()
                .map_or(TransactionStatus::Pending, TransactionStatus::parse),
            gateway: self.gateway(),
            amount: self.amount.parse("amount")?,
            currency: self.currency.clone(),
            processed_at,
            test: self.test,
        })
    }
}

/// An `order_transactions/create` body into the model.
pub fn parse_transaction(body: &[u8]) -> Result<Transaction, ParseError> {
    let raw: RawTransaction = from_json(body)?;
    raw.read()
}

/// The order a transaction body is of, read without the rest (for routing).
pub fn transaction_order_id(body: &[u8]) -> Result<ExternalOrderId, ParseError> {
    #[derive(Deserialize)]
    struct Head {
        order_id: Option<Id>,
    }
    let head: Head = from_json(body)?;
    let raw = head
        .order_id
        .ok_or_else(|| ParseError::new("order_id", "is missing"))?;
    ExternalOrderId::parse(&raw.text()).map_err(|e| ParseError::new("order_id", e.reason))
}
