//! Lambda function URL requests and answers, as every webhook endpoint reads and writes
//! them: the raw body (base64 or not, size-capped before decoding), headers, JSON answers.

use aws_lambda_events::event::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;

/// The largest body accepted: what fits in one SQS message beside its attributes, parked or
/// not (1,032,192 bytes). Orders are far smaller; a larger body is refused with 413 before
/// it is verified, since it could not be queued.
pub const MAX_BODY_BYTES: usize = crate::sqs::MAX_MESSAGE_BYTES - crate::sqs::ATTRIBUTES_BUDGET;

/// The one answer to a request that is not authentic, whatever the reason (unknown shop,
/// wrong or missing signature): the caller learns nothing about which it was.
pub const UNAUTHORIZED: Answer = respond(401, "unauthorized");

/// The HTTP answer to a delivery: what the sender acts on (2xx done, anything else retried).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub message: &'static str,
}

pub const fn respond(status: u16, message: &'static str) -> Answer {
    Answer { status, message }
}

impl From<Answer> for LambdaFunctionUrlResponse {
    fn from(answer: Answer) -> Self {
        let mut response = LambdaFunctionUrlResponse::default();
        response.status_code = answer.status.into();
        response.headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        response.body = Some(serde_json::json!({ "message": answer.message }).to_string());
        response
    }
}

pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// Webhooks are POSTed; anything else is answered 405.
pub fn require_post(request: &LambdaFunctionUrlRequest) -> Result<(), Answer> {
    let method = request
        .request_context
        .http
        .method
        .as_deref()
        .unwrap_or("POST");
    if method.eq_ignore_ascii_case("POST") {
        Ok(())
    } else {
        Err(respond(405, "webhooks are POSTed"))
    }
}

/// The body as sent, at most [`MAX_BODY_BYTES`].
pub fn raw_body(request: &LambdaFunctionUrlRequest) -> Result<Vec<u8>, Answer> {
    let text = request.body.as_deref().unwrap_or("");
    // base64 is 4/3 of the raw size: refuse early without decoding a huge body.
    if text.len() > MAX_BODY_BYTES / 3 * 4 + 4 {
        return Err(respond(413, "body over 1,032,192 bytes"));
    }
    let body = if request.is_base64_encoded {
        STANDARD
            .decode(text)
            .map_err(|_| respond(400, "body is not valid base64"))?
    } else {
        text.as_bytes().to_vec()
    };
    if body.len() > MAX_BODY_BYTES {
        return Err(respond(413, "body over 1,032,192 bytes"));
    }
    Ok(body)
}

/// SQS takes up to 128 printable ASCII characters (no spaces) as a deduplication id.
pub fn is_deduplication_id(id: &str) -> bool {
    id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}
