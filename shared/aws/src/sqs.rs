//! Queues: sending (FIFO aware), visibility changes, and parking a message in a dead-letter
//! queue with its reason as message attributes.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use aws_lambda_events::event::sqs::SqsMessage;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::MessageAttributeValue;
use erpsync_core::SyncError;
use erpsync_core::config::ChannelConfig;
use erpsync_core::model::ids::{ChannelId, ExternalOrderId, Sku};
use erpsync_core::model::order::OrderTopic;
use erpsync_core::model::state::EntityRef;
use erpsync_core::ports::StockSignal;
use erpsync_core::ports::{FoundOrders, ShopOrderRef};
use erpsync_core::runtime::batch::MessageFailure;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Message attribute names, the same on every queue, so the CLI reads any of them.
/// The largest message SQS takes (body and attributes), which every queue of the template is
/// set to (`MaximumMessageSize`; SQS's default is 256 KiB).
pub const MAX_MESSAGE_BYTES: usize = 1_048_576;

/// What a message's attributes may take of [`MAX_MESSAGE_BYTES`], parked ones included:
/// at most ten attributes (SQS's cap), the reason cut to [`MAX_REASON_BYTES`].
pub const ATTRIBUTES_BUDGET: usize = 16 * 1024;

/// A parking reason longer than this is cut (the full error is in sync state and the logs).
pub const MAX_REASON_BYTES: usize = 4 * 1024;

pub mod attr {
    pub const CHANNEL: &str = "channel";
    pub const TOPIC: &str = "topic";
    pub const SHOP_DOMAIN: &str = "shop_domain";
    pub const WEBHOOK_ID: &str = "webhook_id";
    pub const EVENT_ID: &str = "event_id";
    pub const TRIGGERED_AT: &str = "triggered_at";
    pub const API_VERSION: &str = "api_version";
    // Added when a message is parked in a dead-letter queue.
    pub const REASON: &str = "reason";
    pub const ERROR_CLASS: &str = "error_class";
    pub const ERROR_KIND: &str = "error_kind";
    pub const FLOW: &str = "flow";
    pub const ENTITY: &str = "entity";
    pub const FAILED_AT: &str = "failed_at";
    /// When the message was first received (its first attempt), if known.
    pub const FIRST_FAILED_AT: &str = "first_failed_at";
    pub const ATTEMPTS: &str = "attempts";
    /// The original message's attributes and group id, as JSON: SQS allows only 10
    /// attributes per message, so they travel as one.
    pub const SOURCE: &str = "source";
    /// `reconciliation` on orders enqueued because their webhook never came.
    pub const FOUND_BY: &str = "found_by";
    /// What a message on a queue of several kinds is: [`ERP_SHIPMENT`] on the shipments
    /// queue (else a courier event).
    pub const KIND: &str = "kind";
    pub const ERP_SHIPMENT: &str = "erp-shipment";
}

/// The body of a parked ERP shipment: which shipment to send through again.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ShipmentMessage {
    pub erp_shipment: i64,
    pub number: String,
    pub sale_reference: String,
}

/// A shipment the schedule gave up on waits in the shipments' dead-letter queue like a parked
/// message: `dlq list` shows its reason, `dlq redrive` puts it on the shipments queue, where
/// shipment-sync reads it from the ERP again and syncs it.
#[async_trait::async_trait]
impl erpsync_core::ports::ParkedShipments for Queue {
    async fn park(
        &self,
        shipment: &erpsync_core::ports::ErpShipment,
        entity: &EntityRef,
        error: &SyncError,
        attempts: u32,
    ) -> Result<(), SyncError> {
        let group = format!("{}-{}", attr::ERP_SHIPMENT, shipment.id);
        let source = HashMap::from([
            (attr::KIND.to_owned(), attr::ERP_SHIPMENT.to_owned()),
            ("group_id".to_owned(), group.clone()),
        ]);
        let failure = MessageFailure {
            error: error.clone(),
            entity: Some(entity.clone()),
            version: None,
        };
        let body = serde_json::to_string(&ShipmentMessage {
            erp_shipment: shipment.id,
            number: shipment.number.clone(),
            sale_reference: shipment.sale_reference.clone(),
        })
        .unwrap_or_default();
        self.send(OutgoingMessage {
            body,
            group_id: Some(group.clone()),
            // Parked again after a redrive is another message, not a duplicate.
            deduplication_id: Some(format!(
                "{group}-{}",
                OffsetDateTime::now_utc().unix_timestamp_nanos()
            )),
            attributes: dead_letter_attributes("shipment-sync", &failure, attempts, &source),
        })
        .await
        .map(|_| ())
    }
}

/// The FIFO group of an order's messages: one order's versions in order, orders in parallel.
pub fn order_group_id(channel: &ChannelId, order_id: &ExternalOrderId) -> String {
    format!("{channel}:{order_id}")
}

/// The order a message group belongs to (the inverse of [`order_group_id`]).
pub fn order_of_group(group: &str) -> Option<EntityRef> {
    let (channel, order_id) = group.split_once(':')?;
    let channel = ChannelId::parse(channel).ok()?;
    (!order_id.is_empty()).then(|| EntityRef::order(&channel, order_id))
}

/// Stock refresh requests for real-time channels: `{"skus": [...]}` on a standard queue.
pub struct StockRefreshQueue(pub Queue);

#[async_trait::async_trait]
impl StockSignal for StockRefreshQueue {
    async fn stock_moved(&self, skus: &[Sku]) -> Result<(), SyncError> {
        let body = serde_json::json!({ "skus": skus }).to_string();
        self.0
            .send(OutgoingMessage {
                body,
                ..OutgoingMessage::default()
            })
            .await
            .map(|_| ())
    }
}

/// Orders found by reconciliation go on the orders queue as their webhook would have.
pub struct FoundOrdersQueue(pub Queue);

#[async_trait::async_trait]
impl FoundOrders for FoundOrdersQueue {
    async fn enqueue(
        &self,
        channel: &ChannelConfig,
        order: &ShopOrderRef,
        body: String,
        fetched_at: OffsetDateTime,
    ) -> Result<(), SyncError> {
        let delivery = format!(
            "reconcile-{}-{}",
            order.id,
            order.updated_at.unix_timestamp()
        );
        let fetched_at = fetched_at
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        self.0
            .send(OutgoingMessage {
                body,
                group_id: Some(order_group_id(&channel.id, &order.id)),
                deduplication_id: Some(delivery.clone()),
                attributes: BTreeMap::from([
                    (attr::CHANNEL.to_owned(), channel.id.to_string()),
                    (
                        attr::TOPIC.to_owned(),
                        OrderTopic::Updated.as_str().to_owned(),
                    ),
                    (attr::WEBHOOK_ID.to_owned(), delivery),
                    (attr::SHOP_DOMAIN.to_owned(), channel.shop_domain.clone()),
                    (attr::FOUND_BY.to_owned(), "reconciliation".to_owned()),
                    // The body is the order as it was when it was asked for: newer than
                    // every webhook of its `updated_at` second triggered before
                    // (`payload_version`).
                    (attr::TRIGGERED_AT.to_owned(), fetched_at),
                ]),
            })
            .await
            .map(|_| ())
    }
}

#[derive(Debug, Clone, Default)]
pub struct OutgoingMessage {
    pub body: String,
    /// FIFO only: messages of a group are delivered in order.
    pub group_id: Option<String>,
    /// FIFO only: repeats within 5 minutes are dropped.
    pub deduplication_id: Option<String>,
    pub attributes: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct Queue {
    client: Client,
    url: String,
}

fn queue_error<E>(operation: &str, url: &str, error: E) -> SyncError
where
    E: std::error::Error + aws_sdk_sqs::error::ProvideErrorMetadata,
{
    if let Some(denied) = crate::error::access_denied("SQS", operation, &error) {
        return denied;
    }
    SyncError::dependency_down(
        "queue_unavailable",
        format!("SQS {operation} on {url}: {}", DisplayErrorContext(error)),
    )
}

impl Queue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        Self {
            client,
            url: url.into(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn is_fifo(&self) -> bool {
        self.url.ends_with(".fifo")
    }

    pub async fn send(&self, message: OutgoingMessage) -> Result<String, SyncError> {
        let mut request = self
            .client
            .send_message()
            .queue_url(&self.url)
            .message_body(message.body);
        if self.is_fifo() {
            request = request
                .set_message_group_id(message.group_id)
                .set_message_deduplication_id(message.deduplication_id);
        }
        for (name, value) in message.attributes {
            if value.is_empty() {
                continue;
            }
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| {
                    SyncError::dependency_down(
                        "queue_unavailable",
                        format!("SQS SendMessage (attribute) on {}: {e}", self.url),
                    )
                })?;
            request = request.message_attributes(name, value);
        }
        let output = request
            .send()
            .await
            .map_err(|e| queue_error("SendMessage", &self.url, e))?;
        Ok(output.message_id().unwrap_or_default().to_owned())
    }

    pub async fn change_visibility(
        &self,
        receipt_handle: &str,
        delay: Duration,
    ) -> Result<(), SyncError> {
        let seconds = i32::try_from(delay.as_secs().min(43_200)).unwrap_or(43_200);
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(|e| queue_error("ChangeMessageVisibility", &self.url, e))?;
        Ok(())
    }
}

/// Attributes of a message parked for a person: why, how, what, when.
pub fn dead_letter_attributes(
    flow: &str,
    failure: &MessageFailure,
    attempts: u32,
    source: &HashMap<String, String>,
) -> BTreeMap<String, String> {
    let entity = failure
        .entity
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_else(|| "unknown".to_owned());
    let now = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default();
    BTreeMap::from([
        (attr::FIRST_FAILED_AT.to_owned(), now),
        (
            attr::REASON.to_owned(),
            cut(&failure.error.message, MAX_REASON_BYTES),
        ),
        (
            attr::ERROR_CLASS.to_owned(),
            failure.error.class.as_str().to_owned(),
        ),
        (attr::ERROR_KIND.to_owned(), failure.error.kind.clone()),
        (attr::FLOW.to_owned(), flow.to_owned()),
        (attr::ENTITY.to_owned(), entity),
        (
            attr::FAILED_AT.to_owned(),
            OffsetDateTime::now_utc()
                .format(&Rfc3339)
                .unwrap_or_default(),
        ),
        (attr::ATTEMPTS.to_owned(), attempts.to_string()),
        (
            attr::SOURCE.to_owned(),
            serde_json::to_string(&source.iter().collect::<BTreeMap<_, _>>()).unwrap_or_default(),
        ),
    ])
}

/// `text` cut to at most `limit` bytes, on a character boundary, marked as cut.
fn cut(text: &str, limit: usize) -> String {
    if text.len() <= limit {
        return text.to_owned();
    }
    let mut end = limit.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// A received message's string attributes, plus its FIFO group id under `group_id`.
pub fn source_attributes(message: &SqsMessage) -> HashMap<String, String> {
    let mut source: HashMap<String, String> = message
        .message_attributes
        .iter()
        .filter_map(|(name, value)| Some((name.clone(), value.string_value.clone()?)))
        .collect();
    if let Some(group) = message.attributes.get("MessageGroupId") {
        source.insert("group_id".to_owned(), group.clone());
    }
    source
}

/// One string message attribute of a received message.
pub fn string_attribute<'a>(message: &'a SqsMessage, name: &str) -> Option<&'a str> {
    message
        .message_attributes
        .get(name)
        .and_then(|value| value.string_value.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_reason_is_cut_on_a_character_boundary() {
        let reason = "é".repeat(MAX_REASON_BYTES);
        let kept = cut(&reason, MAX_REASON_BYTES);
        assert!(kept.len() <= MAX_REASON_BYTES);
        assert!(kept.ends_with('…'));
        assert_eq!(cut("short", MAX_REASON_BYTES), "short");
    }

    #[test]
    fn an_order_group_names_its_order() {
        let channel = ChannelId::parse("uk-shop").unwrap_or_else(|e| panic!("{e}"));
        let id = ExternalOrderId::parse("450789469").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            order_of_group(&order_group_id(&channel, &id)),
            Some(EntityRef::order(&channel, "450789469"))
        );
        assert_eq!(order_of_group("no-separator"), None);
        assert_eq!(order_of_group("uk-shop:"), None);
    }
}
