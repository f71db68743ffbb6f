//! EasyPost webhook events: a `tracker.updated` event parsed into a typed tracker update;
//! every other event is nothing to do.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::ParseError;

/// The one EasyPost event this flow acts on.
pub const TRACKER_UPDATED: &str = "tracker.updated";

/// EasyPost tracker statuses (their documented list; anything else is `Unknown`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CourierStatus {
    PreTransit,
    InTransit,
    OutForDelivery,
    Delivered,
    AvailableForPickup,
    ReturnToSender,
    Failure,
    Cancelled,
    Error,
    #[serde(other)]
    Unknown,
}

impl CourierStatus {
    /// The shop's fulfilment event for this status; none when it has no place there.
    pub fn shop_event(self) -> Option<&'static str> {
        match self {
            Self::PreTransit => Some("LABEL_PRINTED"),
            Self::InTransit => Some("IN_TRANSIT"),
            Self::OutForDelivery => Some("OUT_FOR_DELIVERY"),
            Self::Delivered => Some("DELIVERED"),
            Self::AvailableForPickup => Some("READY_FOR_PICKUP"),
            Self::Failure | Self::ReturnToSender | Self::Error => Some("FAILURE"),
            Self::Cancelled | Self::Unknown => None,
        }
    }

    /// The parcel will not reach the customer without someone acting.
    pub fn needs_a_person(self) -> bool {
        matches!(self, Self::Failure | Self::ReturnToSender | Self::Error)
    }
}

/// A verified `tracker.updated` event, typed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrackerUpdate {
    pub event_id: String,
    pub tracking_code: String,
    pub carrier: Option<String>,
    pub status: CourierStatus,
    pub status_detail: Option<String>,
    /// The latest tracking detail's message (what the courier says happened).
    pub message: Option<String>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub happened_at: Option<OffsetDateTime>,
}

#[derive(Deserialize)]
struct RawEvent {
    id: String,
    description: String,
    /// Its shape depends on the description: read only for tracker events.
    result: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawTracker {
    tracking_code: String,
    carrier: Option<String>,
    status: CourierStatus,
    status_detail: Option<String>,
    #[serde(default)]
    tracking_details: Vec<RawDetail>,
}

#[derive(Deserialize)]
struct RawDetail {
    message: Option<String>,
    datetime: Option<String>,
}

/// The event's body: `Ok(None)` for events other than `tracker.updated` (nothing to do).
pub fn parse_easypost(body: &[u8]) -> Result<Option<TrackerUpdate>, ParseError> {
    let raw: RawEvent = serde_json::from_slice(body)
        .map_err(|e| ParseError::new("body", format!("not an EasyPost event: {e}")))?;
    if raw.description != TRACKER_UPDATED {
        return Ok(None);
    }
    let tracker: RawTracker = raw
        .result
        .ok_or_else(|| ParseError::new("result", "a tracker.updated event without its tracker"))
        .and_then(|r| {
            serde_json::from_value(r).map_err(|e| ParseError::new("result", e.to_string()))
        })?;
    if tracker.tracking_code.trim().is_empty() {
        return Err(ParseError::new("result.tracking_code", "empty"));
    }
    let latest = tracker.tracking_details.last();
    Ok(Some(TrackerUpdate {
        event_id: raw.id,
        tracking_code: tracker.tracking_code,
        carrier: tracker.carrier,
        status: tracker.status,
        status_detail: tracker.status_detail,
        message: latest.and_then(|d| d.message.clone()),
        happened_at: latest.and_then(|d| d.datetime.as_deref()).and_then(|t| {
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        }),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn easypost_documented_events_parse() {
        let update = parse_easypost(include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/easypost-tracker-updated-delivered.json"
        )))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("a tracker.updated event"));
        assert_eq!(update.tracking_code, "EZ4000000004");
        assert_eq!(update.status, CourierStatus::Delivered);
        assert_eq!(update.status.shop_event(), Some("DELIVERED"));
        assert_eq!(update.message.as_deref(), Some("DELIVERED"));

        let signed = parse_easypost(include_bytes!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/easypost-tracker-updated.signed-body.raw"
        )))
        .unwrap_or_else(|e| panic!("{e}"))
        .unwrap_or_else(|| panic!("a tracker.updated event"));
        assert_eq!(
            (signed.tracking_code.as_str(), signed.status),
            ("1", CourierStatus::InTransit)
        );
    }

    #[test]
    fn other_events_are_ignored_and_broken_ones_name_the_field() {
        assert_eq!(
            parse_easypost(br#"{"id": "evt_1", "description": "batch.updated", "result": {}}"#),
            Ok(None)
        );
        let error = parse_easypost(
            br#"{"id": "evt_1", "description": "tracker.updated", "result": {"tracking_code": " ", "status": "delivered"}}"#,
        )
        .err()
        .unwrap_or_else(|| panic!("refused"));
        assert_eq!(error.field, "result.tracking_code");
        assert!(parse_easypost(b"not json").is_err());
    }

    #[test]
    fn failures_need_a_person_and_progress_does_not() {
        assert!(CourierStatus::ReturnToSender.needs_a_person());
        assert!(CourierStatus::Failure.needs_a_person());
        assert!(!CourierStatus::OutForDelivery.needs_a_person());
        let status: CourierStatus =
            serde_json::from_str("\"something_new\"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(status, CourierStatus::Unknown);
    }
}
