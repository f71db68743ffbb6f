//! The sandbox acting as the courier tracking service: EasyPost `tracker.updated` events,
//! shaped as EasyPost documents them (the event around its tracker, tracking details
//! oldest first), signed as EasyPost signs them (`X-Hmac-Signature: hmac-sha256-hex=...`,
//! the secret NFKD-normalised).

use erpsync_core::channels::signature::sign_easypost;
use secrecy::SecretString;
use serde_json::{Value, json};

/// One tracker update: the parcel, its new status and what the courier says.
pub struct TrackerUpdate<'a> {
    pub tracking_code: &'a str,
    pub carrier: &'a str,
    /// EasyPost's status: `in_transit`, `out_for_delivery`, `delivered`, `failure`,
    /// `return_to_sender`, ...
    pub status: &'a str,
    pub message: &'a str,
    /// When it happened (RFC 3339).
    pub at: &'a str,
}

/// The event body EasyPost POSTs for this update; `event_id` names the event (retries of
/// one event share it).
pub fn tracker_updated(event_id: &str, update: &TrackerUpdate<'_>) -> Value {
    let detail = json!({
        "object": "TrackingDetail",
        "message": update.message,
        "description": update.message,
        "status": update.status,
        "status_detail": null,
        "datetime": update.at,
        "source": update.carrier,
        "carrier_code": null,
        "tracking_location": {"object": "TrackingLocation", "city": null, "state": null,
                              "country": null, "zip": null}
    });
    let tracker = json!({
        "id": format!("trk_{}", update.tracking_code),
        "object": "Tracker",
        "mode": "production",
        "tracking_code": update.tracking_code,
        "status": update.status,
        "status_detail": null,
        "created_at": update.at,
        "updated_at": update.at,
        "signed_by": null,
        "weight": null,
        "est_delivery_date": null,
        "shipment_id": null,
        "carrier": update.carrier,
        "tracking_details": [detail],
        "carrier_detail": null,
        "public_url": format!("https://track.easypost.com/djE6{}", update.tracking_code),
        "fees": []
    });
    json!({
        "description": "tracker.updated",
        "mode": "production",
        "previous_attributes": {"status": "in_transit"},
        "created_at": update.at,
        "pending_urls": [],
        "completed_urls": [],
        "updated_at": update.at,
        "id": event_id,
        "user_id": "user_sandbox",
        "status": "pending",
        "object": "Event",
        "result": tracker
    })
}

/// POSTs the body to `url` signed with `secret`; the HTTP status the endpoint answered.
pub async fn send(
    http: &reqwest::Client,
    url: &str,
    body: &str,
    secret: &SecretString,
) -> reqwest::Result<u16> {
    let response = http
        .post(url)
        .header("content-type", "application/json")
        .header("x-hmac-signature", sign_easypost(body.as_bytes(), secret))
        .header("user-agent", "EasyPost WebHook Agent 1.0")
        .body(body.to_owned())
        .send()
        .await?;
    Ok(response.status().as_u16())
}
