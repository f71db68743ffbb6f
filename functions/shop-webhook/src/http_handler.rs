//! Function URL request -> verified, routed, enqueued webhook -> HTTP answer.

use std::collections::BTreeMap;

use aws_lambda_events::event::lambda_function_urls::{
    LambdaFunctionUrlRequest, LambdaFunctionUrlResponse,
};
pub use erpsync_aws::function_url::MAX_BODY_BYTES;
use erpsync_aws::function_url::{
    Answer, UNAUTHORIZED, header, is_deduplication_id, raw_body, require_post, respond,
};
use erpsync_aws::sqs::{OutgoingMessage, attr, dead_letter_attributes, order_group_id};
use erpsync_core::SyncError;
use erpsync_core::channels::signature::{SignatureError, verify_base64_hmac_sha256};
use erpsync_core::channels::{self, shopify, woocommerce};
use erpsync_core::config::{ChannelConfig, Mode, Platform};
use erpsync_core::model::order::OrderTopic;
use erpsync_core::model::state::PayloadHash;
use erpsync_core::runtime::batch::MessageFailure;
use http::HeaderMap;
use tracing::{info, instrument, warn};

use crate::Deps;

const FLOW: &str = "shop-webhook";

#[instrument(skip_all, fields(shop = tracing::field::Empty, topic = tracing::field::Empty, webhook_id = tracing::field::Empty))]
pub async fn handle(deps: &Deps, request: LambdaFunctionUrlRequest) -> LambdaFunctionUrlResponse {
    accept(deps, &request).await.into()
}

async fn accept(deps: &Deps, request: &LambdaFunctionUrlRequest) -> Answer {
    if let Err(answer) = require_post(request) {
        return answer;
    }
    let body = match raw_body(request) {
        Ok(body) => body,
        Err(response) => return response,
    };
    let headers = &request.headers;
    let span = tracing::Span::current();
    let sender = Sender::of(headers);
    let Some(channel) = sender
        .shop(headers)
        .and_then(|shop| deps.config.channel_by_shop_domain(&shop))
        .filter(|channel| channel.platform == sender.platform)
    else {
        warn!(shop = sender.shop(headers).unwrap_or_default(), platform = ?sender.platform, "refused: unknown shop");
        return UNAUTHORIZED;
    };
    span.record("shop", channel.id.as_str());
    if let Err(response) = verify(deps, channel, &body, header(headers, sender.signature)).await {
        return response;
    }
    let topic_text = header(headers, sender.topic).unwrap_or("");
    span.record("topic", topic_text);
    if sender.platform == Platform::Woocommerce && body.starts_with(b"webhook_id=") {
        // WooCommerce's ping when a webhook is saved: it only needs a 2xx.
        return respond(200, "pong");
    }
    // The delivery id is the FIFO deduplication id; one SQS would refuse falls back to the
    // body's hash, which deduplicates identical redeliveries just the same.
    let webhook_id = header(headers, sender.delivery_id)
        .filter(|id| is_deduplication_id(id))
        .map(str::to_owned)
        .unwrap_or_else(|| PayloadHash::of_bytes(&body).as_str().to_owned());
    span.record("webhook_id", webhook_id.as_str());
    let Some(route) = sender.route(topic_text) else {
        // Only subscribed topics arrive; one this version does not route is acknowledged
        // so the platform does not disable the subscription, and logged for the operator.
        warn!("acknowledged without action: topic not routed by this version");
        return respond(200, "topic not routed");
    };
    let mut attributes = BTreeMap::from([
        (attr::CHANNEL.to_owned(), channel.id.to_string()),
        (attr::TOPIC.to_owned(), route.topic().to_owned()),
        (attr::WEBHOOK_ID.to_owned(), webhook_id.clone()),
        (attr::SHOP_DOMAIN.to_owned(), channel.shop_domain.clone()),
    ]);
    for (name, header_name) in sender.extra_attributes {
        if let Some(value) = header(headers, header_name) {
            attributes.insert((*name).to_owned(), value.to_owned());
        }
    }
    let (queue, dead_letter) = match route {
        Route::Order(_) => (&deps.orders, &deps.orders_dead_letter),
        Route::Refund | Route::Transaction => (&deps.returns, &deps.returns_dead_letter),
    };
    let body_text = match String::from_utf8(body) {
        Ok(text) => text,
        Err(e) => {
            return park(
                dead_letter,
                String::from_utf8_lossy(e.as_bytes()).into_owned(),
                &webhook_id,
                attributes,
                "the body is not UTF-8".to_owned(),
            )
            .await;
        }
    };
    // A refund or a payment is grouped with its order: an order's money is booked in order.
    let order_id = match route {
        Route::Order(_) => channels::order_id(channel.platform, body_text.as_bytes())
            .map_err(|e| format!("not an order: {e}")),
        Route::Refund => shopify::parse_refund(body_text.as_bytes())
            .map(|refund| refund.order_id)
            .map_err(|e| format!("not a refund: {e}")),
        Route::Transaction => shopify::transaction_order_id(body_text.as_bytes())
            .map_err(|e| format!("not a transaction: {e}")),
    };
    let order_id = match order_id {
        Ok(id) => id,
        Err(reason) => {
            return park(dead_letter, body_text, &webhook_id, attributes, reason).await;
        }
    };
    if channel.mode == Mode::Off {
        info!(order = %order_id, "channel is off; queued so the skip is recorded");
    }
    let message = OutgoingMessage {
        body: body_text,
        // One group per order: its versions are applied in order, other orders in parallel.
        group_id: Some(order_group_id(&channel.id, &order_id)),
        deduplication_id: Some(webhook_id),
        attributes,
    };
    match queue.send(message).await {
        Ok(message_id) => {
            info!(order = %order_id, message_id, "accepted");
            respond(200, "accepted")
        }
        Err(error) => {
            warn!(error = %error, "could not enqueue; asking Shopify to retry");
            respond(503, "could not enqueue, retry later")
        }
    }
}

pub const REFUNDS_CREATE: &str = "refunds/create";
/// A payment transaction of an order (a sale, a capture, a refund's money).
pub const ORDER_TRANSACTIONS_CREATE: &str = "order_transactions/create";

/// Which queue a topic goes to: order versions to order-sync, an order's money (refunds,
/// transactions) to return-sync.
#[derive(Debug, Clone, Copy)]
enum Route {
    Order(OrderTopic),
    Refund,
    Transaction,
}

impl Route {
    fn topic(self) -> &'static str {
        match self {
            Self::Order(topic) => topic.as_str(),
            Self::Refund => REFUNDS_CREATE,
            Self::Transaction => ORDER_TRANSACTIONS_CREATE,
        }
    }
}

/// Where a webhook's platform keeps what the handler needs.
struct Sender {
    platform: Platform,
    signature: &'static str,
    topic: &'static str,
    delivery_id: &'static str,
    extra_attributes: &'static [(&'static str, &'static str)],
}

impl Sender {
    fn of(headers: &HeaderMap) -> Self {
        if headers.contains_key("x-wc-webhook-signature")
            || headers.contains_key("x-wc-webhook-source")
        {
            Self {
                platform: Platform::Woocommerce,
                signature: "x-wc-webhook-signature",
                topic: "x-wc-webhook-topic",
                delivery_id: "x-wc-webhook-delivery-id",
                extra_attributes: &[(attr::EVENT_ID, "x-wc-webhook-event")],
            }
        } else {
            Self {
                platform: Platform::Shopify,
                signature: "x-shopify-hmac-sha256",
                topic: "x-shopify-topic",
                delivery_id: "x-shopify-webhook-id",
                extra_attributes: &[
                    (attr::EVENT_ID, "x-shopify-event-id"),
                    (attr::TRIGGERED_AT, "x-shopify-triggered-at"),
                    (attr::API_VERSION, "x-shopify-api-version"),
                ],
            }
        }
    }

    /// The store's host: Shopify names it, WooCommerce sends its site URL.
    fn shop(&self, headers: &HeaderMap) -> Option<String> {
        match self.platform {
            Platform::Shopify => header(headers, "x-shopify-shop-domain").map(str::to_owned),
            Platform::Woocommerce => header(headers, "x-wc-webhook-source").map(|url| {
                let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
                let host = rest.split(['/', ':', '?']).next().unwrap_or_default();
                host.to_ascii_lowercase()
            }),
        }
    }

    fn route(&self, topic: &str) -> Option<Route> {
        match self.platform {
            Platform::Shopify if topic == REFUNDS_CREATE => Some(Route::Refund),
            Platform::Shopify if topic == ORDER_TRANSACTIONS_CREATE => Some(Route::Transaction),
            Platform::Shopify => OrderTopic::parse(topic).map(Route::Order),
            Platform::Woocommerce => woocommerce::topic(topic).map(Route::Order),
        }
    }
}

async fn verify(
    deps: &Deps,
    channel: &ChannelConfig,
    body: &[u8],
    signature: Option<&str>,
) -> Result<(), Answer> {
    let secrets = deps
        .secrets
        .get(&channel.webhook_secret)
        .await
        .map_err(|e| {
            warn!(error = %e, "cannot verify: webhook secret unavailable");
            respond(503, "cannot verify now, retry later")
        })?;
    let mut result = verify_base64_hmac_sha256(body, signature, &secrets);
    if result == Err(SignatureError::Mismatch) {
        // The secret may have been rotated since this container read it.
        if let Ok(Some(fresh)) = deps.secrets.refresh_if_stale(&channel.webhook_secret).await {
            result = verify_base64_hmac_sha256(body, signature, &fresh);
        }
    }
    result.map_err(|e| {
        warn!(reason = %e, "refused: signature");
        UNAUTHORIZED
    })
}

async fn park(
    dead_letter: &erpsync_aws::sqs::Queue,
    body: String,
    webhook_id: &str,
    attributes: BTreeMap<String, String>,
    reason: String,
) -> Answer {
    warn!(reason = %reason, "signed but unreadable; parking it in the dead-letter queue");
    let failure = MessageFailure::unattributed(SyncError::permanent(
        "invalid_payload",
        format!("{reason}; fix the sender or discard"),
    ));
    let source = attributes.into_iter().collect();
    let message = OutgoingMessage {
        body,
        group_id: Some(FLOW.to_owned()),
        deduplication_id: Some(webhook_id.to_owned()),
        attributes: dead_letter_attributes(FLOW, &failure, 0, &source),
    };
    match dead_letter.send(message).await {
        Ok(_) => respond(200, "accepted and parked: not an order"),
        Err(error) => {
            warn!(error = %error, "could not park; asking Shopify to retry");
            respond(503, "could not park, retry later")
        }
    }
}
