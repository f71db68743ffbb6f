//! How a channel's failed answers are classed: one table, so every adapter retries what can
//! recover and parks what cannot. Shopify's codes: shopify.dev/docs/api/usage/response-codes
//! (HTTP statuses, and the GraphQL `errors[].extensions.code` answered with HTTP 200).

use std::time::Duration;

use crate::error::SyncError;

/// What a failed answer means for the message that asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Credentials or scopes refused (401, 403, `ACCESS_DENIED`): nothing of this kind works
    /// until they are fixed or rotated, so the batch waits rather than parking every message.
    AuthRefused,
    /// Asked to slow down or timed out (408, 429, `THROTTLED`): retried after the delay asked.
    Busy,
    /// The channel itself cannot serve now (5xx, 402 frozen, 423 locked, 430 security
    /// rejection, `INTERNAL_SERVER_ERROR`, `SHOP_INACTIVE`): retried, the batch held.
    Unavailable,
    /// This request was refused (any other 4xx: 400, 404, 406, 409, 415, 422; a GraphQL error
    /// such as `MAX_COST_EXCEEDED`): retrying cannot help, a person must.
    Refused,
}

impl Answer {
    /// An HTTP status other than success.
    pub fn of_status(status: u16) -> Self {
        match status {
            401 | 403 => Self::AuthRefused,
            408 | 429 => Self::Busy,
            402 | 423 | 430 | 500..=599 => Self::Unavailable,
            _ => Self::Refused,
        }
    }

    /// A GraphQL error's `extensions.code` (answered with HTTP 200).
    pub fn of_graphql_code(code: &str) -> Self {
        match code {
            "THROTTLED" => Self::Busy,
            // A scope the app lacks, as HTTP 403: every call of its kind fails alike.
            "ACCESS_DENIED" => Self::AuthRefused,
            "INTERNAL_SERVER_ERROR" | "SHOP_INACTIVE" => Self::Unavailable,
            _ => Self::Refused,
        }
    }

    /// The error for it: `kind` names the channel's failure (`channel_unavailable`...),
    /// `retry_after` is the delay the channel asked for, if any.
    pub fn error(self, message: String, retry_after: Option<Duration>) -> SyncError {
        let error = match self {
            Self::AuthRefused => SyncError::dependency_down("channel_auth", message),
            Self::Busy => SyncError::dependency_down("channel_throttled", message),
            Self::Unavailable => SyncError::dependency_down("channel_unavailable", message),
            Self::Refused => SyncError::permanent("channel_rejected", message),
        };
        match retry_after {
            Some(delay) => error.with_retry_after(delay),
            None => error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorClass;

    /// Every status and code Shopify documents, and the class its error gets.
    #[test]
    fn every_documented_answer_has_its_class() {
        let statuses = [
            (400, Answer::Refused),
            (401, Answer::AuthRefused),
            (402, Answer::Unavailable),
            (403, Answer::AuthRefused),
            (404, Answer::Refused),
            (405, Answer::Refused),
            (406, Answer::Refused),
            (408, Answer::Busy),
            (409, Answer::Refused),
            (414, Answer::Refused),
            (415, Answer::Refused),
            (422, Answer::Refused),
            (423, Answer::Unavailable),
            (429, Answer::Busy),
            (430, Answer::Unavailable),
            (500, Answer::Unavailable),
            (501, Answer::Unavailable),
            (502, Answer::Unavailable),
            (503, Answer::Unavailable),
            (504, Answer::Unavailable),
            (530, Answer::Unavailable),
            (540, Answer::Unavailable),
            (783, Answer::Refused),
        ];
        for (status, expected) in statuses {
            assert_eq!(Answer::of_status(status), expected, "HTTP {status}");
        }
        let codes = [
            ("THROTTLED", Answer::Busy),
            ("INTERNAL_SERVER_ERROR", Answer::Unavailable),
            ("SHOP_INACTIVE", Answer::Unavailable),
            ("ACCESS_DENIED", Answer::AuthRefused),
            ("MAX_COST_EXCEEDED", Answer::Refused),
            ("BAD_REQUEST", Answer::Refused),
            ("SOMETHING_NEW", Answer::Refused),
        ];
        for (code, expected) in codes {
            assert_eq!(Answer::of_graphql_code(code), expected, "{code}");
        }
        for (answer, class, held) in [
            (Answer::AuthRefused, ErrorClass::Retryable, true),
            (Answer::Busy, ErrorClass::Retryable, true),
            (Answer::Unavailable, ErrorClass::Retryable, true),
            (Answer::Refused, ErrorClass::Permanent, false),
        ] {
            let error = answer.error("x".to_owned(), Some(Duration::from_secs(2)));
            assert_eq!(
                (error.class, error.dependency_down),
                (class, held),
                "{answer:?}"
            );
            assert_eq!(error.retry_after, Some(Duration::from_secs(2)));
        }
    }
}
