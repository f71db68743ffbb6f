//! Function URL request -> verified tracker event on the shipments queue -> HTTP answer.

use std::collections::BTreeMap;

use aws_lambda_events::event::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use erpsync_aws::function_url::{
    Answer, UNAUTHORIZED, header, is_deduplication_id, raw_body, require_post, respond,
};
use erpsync_aws::sqs::{OutgoingMessage, attr, dead_letter_attributes};
use erpsync_core::SyncError;
use erpsync_core::channels::signature::{SignatureError, verify_easypost};
use erpsync_core::flows::tracking::tracking_group_id;
use erpsync_core::model::state::PayloadHash;
use erpsync_core::runtime::batch::MessageFailure;
use tracing::{info, instrument, warn};

use crate::Deps;
use erpsync_core::channels::easypost::{TRACKER_UPDATED, parse_easypost};

const FLOW: &str = "courier-webhook";

#[instrument(skip_all, fields(tracking_code = tracing::field::Empty, event_id = tracing::field::Empty))]
pub async fn handle(deps: &Deps, request: LambdaFunctionUrlRequest) -> LambdaFunctionUrlResponse {
    accept(deps, &request).await.into()
}

async fn accept(deps: &Deps, request: &LambdaFunctionUrlRequest) -> Answer {
    if let Err(answer) = require_post(request) {
        return answer;
    }
    let body = match raw_body(request) {
        Ok(body) => body,
        Err(answer) => return answer,
    };
    if let Err(answer) = verify(deps, &body, header(&request.headers, "x-hmac-signature")).await {
        return answer;
    }
    let text = String::from_utf8_lossy(&body).into_owned();
    let update = match parse_easypost(&body) {
        Ok(Some(update)) => update,
        Ok(None) => {
            info!("acknowledged without action: not a tracker.updated event");
            return respond(200, "event not routed");
        }
        Err(error) => return park(deps, text, format!("not an EasyPost event: {error}")).await,
    };
    let span = tracing::Span::current();
    span.record("tracking_code", update.tracking_code.as_str());
    span.record("event_id", update.event_id.as_str());
    // EasyPost retries an event with its id: the id deduplicates; one SQS would refuse falls
    // back to the body's hash.
    let deduplication_id = Some(update.event_id.clone())
        .filter(|id| is_deduplication_id(id))
        .unwrap_or_else(|| PayloadHash::of_bytes(&body).as_str().to_owned());
    let message = OutgoingMessage {
        body: text,
        // One group per parcel: its updates are applied in the order they came.
        group_id: Some(tracking_group_id(&update.tracking_code)),
        deduplication_id: Some(deduplication_id),
        attributes: BTreeMap::from([
            (attr::TOPIC.to_owned(), TRACKER_UPDATED.to_owned()),
            (attr::WEBHOOK_ID.to_owned(), update.event_id.clone()),
        ]),
    };
    match deps.shipments.send(message).await {
        Ok(message_id) => {
            info!(message_id, status = ?update.status, "accepted");
            respond(200, "accepted")
        }
        Err(error) => {
            warn!(error = %error, "could not enqueue; asking EasyPost to retry");
            respond(503, "could not enqueue, retry later")
        }
    }
}

async fn verify(deps: &Deps, body: &[u8], signature: Option<&str>) -> Result<(), Answer> {
    let secrets = deps.secrets.get(&deps.secret_name).await.map_err(|e| {
        warn!(error = %e, "cannot verify: webhook secret unavailable");
        respond(503, "cannot verify now, retry later")
    })?;
    let mut result = verify_easypost(body, signature, &secrets);
    if result == Err(SignatureError::Mismatch) {
        // The secret may have been rotated since this container read it.
        if let Ok(Some(fresh)) = deps.secrets.refresh_if_stale(&deps.secret_name).await {
            result = verify_easypost(body, signature, &fresh);
        }
    }
    result.map_err(|e| {
        warn!(reason = %e, "refused: signature");
        UNAUTHORIZED
    })
}

async fn park(deps: &Deps, body: String, reason: String) -> Answer {
    warn!(reason = %reason, "signed but unreadable; parking it in the dead-letter queue");
    let failure = MessageFailure::unattributed(SyncError::permanent(
        "invalid_payload",
        format!("{reason}; fix the sender or discard"),
    ));
    let deduplication_id = PayloadHash::of_bytes(body.as_bytes()).as_str().to_owned();
    let message = OutgoingMessage {
        body,
        group_id: Some(FLOW.to_owned()),
        deduplication_id: Some(deduplication_id),
        attributes: dead_letter_attributes(FLOW, &failure, 0, &Default::default()),
    };
    match deps.shipments_dead_letter.send(message).await {
        Ok(_) => respond(200, "accepted and parked: not an EasyPost event"),
        Err(error) => {
            warn!(error = %error, "could not park; asking EasyPost to retry");
            respond(503, "could not park, retry later")
        }
    }
}
