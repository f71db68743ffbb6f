//! Errors carry their class: every failure answers "retry it, park it for a person, or wait
//! for the worker that holds it", and the batch runner acts on that answer alone.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What to do with a failed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorClass {
    /// Network, timeout, 5xx, 429, lock: try again later with backoff.
    Retryable,
    /// Validation, unmapped data, a business rule: a person must act; retrying cannot help.
    Permanent,
    /// Another worker holds the idempotency key: come back once it has finished.
    InFlight,
}

impl ErrorClass {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Retryable => "retryable",
            Self::Permanent => "permanent",
            Self::InFlight => "in_flight",
        }
    }
}

/// An untrusted value that could not become a typed one. `field` is the path in the input
/// (`line_items[2].sku`), so the message says where to look.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ParseError {
    pub field: String,
    pub reason: String,
}

impl ParseError {
    pub fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Prefixes the field with the path of the value that holds it.
    pub fn within(mut self, parent: &str) -> Self {
        self.field = if self.field.is_empty() {
            parent.to_owned()
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }
}

/// A failure in a flow, as the batch runner and sync state see it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct SyncError {
    pub class: ErrorClass,
    /// A stable, machine-readable name (`unknown_sku`, `erp_unavailable`, ...): what alarms,
    /// dashboards and the CLI group on.
    pub kind: String,
    /// What happened and, for permanent errors, what a person can do about it.
    pub message: String,
    /// The dependency itself is failing (not this message): stop the batch instead of
    /// hammering it with the rest.
    pub dependency_down: bool,
    /// A delay the other side asked for (Retry-After).
    pub retry_after: Option<Duration>,
}

impl SyncError {
    pub fn permanent(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Permanent, kind, message)
    }

    pub fn retryable(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorClass::Retryable, kind, message)
    }

    pub fn in_flight(message: impl Into<String>) -> Self {
        Self::new(ErrorClass::InFlight, "in_flight", message)
    }

    /// A retryable failure of a whole dependency (connection refused, 503, auth rejected).
    pub fn dependency_down(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            dependency_down: true,
            ..Self::new(ErrorClass::Retryable, kind, message)
        }
    }

    pub fn with_retry_after(mut self, delay: Duration) -> Self {
        self.retry_after = Some(delay);
        self
    }

    fn new(class: ErrorClass, kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            class,
            kind: kind.into(),
            message: message.into(),
            dependency_down: false,
            retry_after: None,
        }
    }
}

impl From<ParseError> for SyncError {
    fn from(error: ParseError) -> Self {
        SyncError::permanent(
            "invalid_payload",
            format!("{error}; fix the source record or the mapping, then redrive"),
        )
    }
}
