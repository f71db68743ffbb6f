//! The SQS event source mapping, emulated (moto cannot invoke functions without Docker):
//! receive a batch, hand it to the function as an `SqsEvent`, delete what it did not report
//! as failed. Like AWS, an invocation error leaves the whole batch to come back after its
//! visibility timeout, and the queue's redrive policy moves repeat failures to the DLQ.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage, SqsMessageAttribute};
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
    MessageSystemAttributeName,
};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::stack::REGION;
use crate::template::Template;

#[async_trait]
pub trait Invoker: Send + Sync {
    async fn invoke(&self, event: SqsEvent) -> anyhow::Result<SqsBatchResponse>;
}

/// Invokes a function served by `cargo lambda watch` through its invoke API.
pub struct HttpInvoker {
    pub http: reqwest::Client,
    pub url: String,
}

impl HttpInvoker {
    pub fn new(base: &str, function: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: format!("{base}/2015-03-31/functions/{function}/invocations"),
        }
    }
}

#[async_trait]
impl Invoker for HttpInvoker {
    async fn invoke(&self, event: SqsEvent) -> anyhow::Result<SqsBatchResponse> {
        let response = self
            .http
            .post(&self.url)
            .json(&event)
            .timeout(Duration::from_secs(900))
            .send()
            .await
            .with_context(|| format!("invoking {}", self.url))?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(
            status.is_success(),
            "invocation failed with HTTP {status}: {text}"
        );
        serde_json::from_str(&text)
            .with_context(|| format!("the function's answer is not a batch response: {text}"))
    }
}

pub struct EventSourceMapping {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
    pub queue_arn: String,
    pub batch_size: i32,
    pub invoker: Arc<dyn Invoker>,
}

impl EventSourceMapping {
    /// One receive + invoke + delete round; the number of messages it handed over.
    pub async fn poll_once(&self, wait: Duration) -> anyhow::Result<usize> {
        let received = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(self.batch_size)
            .wait_time_seconds(i32::try_from(wait.as_secs()).unwrap_or(1))
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .context("receiving from the queue")?;
        let messages = received.messages();
        if messages.is_empty() {
            return Ok(0);
        }
        let mut event = SqsEvent::default();
        event.records = messages.iter().map(|m| self.event_record(m)).collect();
        let handed = within_payload_limit(&mut event);
        let messages = &messages[..handed];
        let returned = &received.messages()[handed..];
        if !returned.is_empty() {
            self.hand_back(returned).await?;
        }
        let failed: Vec<String> = match self.invoker.invoke(event).await {
            Ok(response) => response
                .batch_item_failures
                .into_iter()
                .map(|f| f.item_identifier)
                .collect(),
            Err(error) => {
                warn!(error = %format!("{error:#}"), "invocation failed; the whole batch returns to the queue");
                return Ok(messages.len());
            }
        };
        info!(
            queue = %self.queue_url,
            messages = messages.len(),
            failed = failed.len(),
            "batch handed to the function"
        );
        let entries: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()))
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .build()
                    .ok()
            })
            .collect();
        if !entries.is_empty() {
            self.sqs
                .delete_message_batch()
                .queue_url(&self.queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .context("deleting the processed messages")?;
        }
        Ok(messages.len())
    }

    /// Messages received but not handed to the function go back to the queue at once, as
    /// the poller leaves them for the next batch.
    async fn hand_back(&self, messages: &[aws_sdk_sqs::types::Message]) -> anyhow::Result<()> {
        let entries: Vec<ChangeMessageVisibilityBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter_map(|(i, m)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(m.receipt_handle()?)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            })
            .collect();
        self.sqs
            .change_message_visibility_batch()
            .queue_url(&self.queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .context("returning the messages over the payload limit")?;
        Ok(())
    }

    /// Polls until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        loop {
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                result = self.poll_once(Duration::from_secs(1)) => {
                    if let Err(error) = result {
                        warn!(error = %format!("{error:#}"), "event source mapping poll failed");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                _ = stop.changed() => return,
            }
        }
    }

    fn event_record(&self, message: &aws_sdk_sqs::types::Message) -> SqsMessage {
        let mut record = SqsMessage::default();
        record.message_id = message.message_id().map(str::to_owned);
        record.receipt_handle = message.receipt_handle().map(str::to_owned);
        record.body = message.body().map(str::to_owned);
        record.md5_of_body = message.md5_of_body().map(str::to_owned);
        record.md5_of_message_attributes = message.md5_of_message_attributes().map(str::to_owned);
        record.attributes = message
            .attributes()
            .map(|attributes| {
                attributes
                    .iter()
                    .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
        record.message_attributes = message
            .message_attributes()
            .map(|attributes| {
                attributes
                    .iter()
                    .map(|(name, value)| {
                        let mut attribute = SqsMessageAttribute::default();
                        attribute.string_value = value.string_value().map(str::to_owned);
                        attribute.data_type = Some(value.data_type().to_owned());
                        (name.clone(), attribute)
                    })
                    .collect()
            })
            .unwrap_or_default();
        record.event_source = Some("aws:sqs".to_owned());
        record.event_source_arn = Some(self.queue_arn.clone());
        record.aws_region = Some(REGION.to_owned());
        record
    }
}

/// Lambda's limit on a synchronous invocation's payload, which an event source mapping's batch
/// must fit: "Invocation payload (request and response): 6 MB each for synchronous"
/// (Lambda quotas). The mapping passes the batch "up to the payload limit for synchronous
/// invocation (6 MB)" (Lambda API, BatchSize).
pub const LAMBDA_SYNC_PAYLOAD_BYTES: usize = 6 * 1024 * 1024;

/// Keeps the longest head of the batch whose event fits [`LAMBDA_SYNC_PAYLOAD_BYTES`] (one
/// message always does: SQS caps a message at 1 MiB); the number of records kept.
pub fn within_payload_limit(event: &mut SqsEvent) -> usize {
    // The event is `{"Records":[r1,r2,...]}`: the empty event, each record once, a comma
    // between records.
    let mut total = json_len(&SqsEvent::default());
    let mut kept = 0;
    for record in &event.records {
        let with = total + json_len(record) + usize::from(kept > 0);
        if kept > 0 && with > LAMBDA_SYNC_PAYLOAD_BYTES {
            break;
        }
        total = with;
        kept += 1;
    }
    event.records.truncate(kept);
    kept
}

/// The length of a value's JSON, as the event source mapping sends it.
fn json_len<T: serde::Serialize>(value: &T) -> usize {
    serde_json::to_vec(value)
        .map(|bytes| bytes.len())
        .unwrap_or(0)
}

/// Runs the queue's event source mapping until the queue is empty (within `limit`): what the
/// demo and the bench do after putting work on a queue. The number of messages handed over.
pub async fn drain(
    sqs: &aws_sdk_sqs::Client,
    resources: &crate::stack::LocalResources,
    queue: &str,
    invoker: Arc<dyn Invoker>,
    limit: Duration,
) -> anyhow::Result<usize> {
    let esm = EventSourceMapping {
        sqs: sqs.clone(),
        queue_url: resources.queue_url(queue)?.to_owned(),
        queue_arn: resources.queue_arn(queue)?.to_owned(),
        batch_size: 10,
        invoker,
    };
    esm.drain(limit)
        .await
        .with_context(|| format!("draining {queue}"))
}

impl EventSourceMapping {
    /// Polls until the queue is empty (within `limit`); the number of messages handed over.
    pub async fn drain(&self, limit: Duration) -> anyhow::Result<usize> {
        let started = std::time::Instant::now();
        let mut handed = 0;
        loop {
            let batch = self.poll_once(Duration::from_secs(1)).await?;
            handed += batch;
            if batch == 0 && crate::queues::depth(&self.sqs, &self.queue_url).await? == 0 {
                return Ok(handed);
            }
            anyhow::ensure!(
                started.elapsed() < limit,
                "the queue did not drain within {limit:?}"
            );
        }
    }
}

/// A function's `SQS` event in the template: the queue an event source mapping feeds it from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqsTrigger {
    /// The function's logical id (whose role the mapping polls with, as on AWS).
    pub function: String,
    pub binary: String,
    /// The queue's logical id.
    pub queue: String,
    pub batch_size: i32,
}

impl Template {
    /// Every `SQS` event of the template's functions.
    pub fn sqs_triggers(&self) -> anyhow::Result<Vec<SqsTrigger>> {
        let mut triggers = Vec::new();
        for function in self.resources_of("AWS::Serverless::Function") {
            let Some(serde_yaml_ng::Value::Mapping(events)) = function.properties.get("Events")
            else {
                continue;
            };
            for (name, event) in events {
                if event.get("Type").and_then(|t| t.as_str()) != Some("SQS") {
                    continue;
                }
                let name = format!(
                    "{}.{}",
                    function.logical_id,
                    name.as_str().unwrap_or_default()
                );
                let properties = event.get("Properties");
                // `Queue: !GetAtt X.Arn` is a tagged value in YAML.
                let queue = match properties.and_then(|p| p.get("Queue")) {
                    Some(serde_yaml_ng::Value::Tagged(tagged)) => tagged.value.as_str(),
                    Some(other) => other.as_str(),
                    None => None,
                }
                .and_then(|q| q.strip_suffix(".Arn"))
                .with_context(|| format!("{name}: Queue is not `!GetAtt <queue>.Arn`"))?;
                // SAM's default batch size for SQS.
                let batch_size = properties
                    .and_then(|p| p.get("BatchSize"))
                    .and_then(|b| b.as_i64())
                    .unwrap_or(10);
                triggers.push(SqsTrigger {
                    function: function.logical_id.clone(),
                    binary: function
                        .binary()
                        .with_context(|| format!("{name}: the function names no Binary"))?
                        .to_owned(),
                    queue: queue.to_owned(),
                    batch_size: i32::try_from(batch_size)
                        .with_context(|| format!("{name}: BatchSize {batch_size}"))?,
                });
            }
        }
        Ok(triggers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(body_bytes: usize) -> SqsMessage {
        let mut message = SqsMessage::default();
        message.body = Some("x".repeat(body_bytes));
        message.message_id = Some("id".to_owned());
        message
    }

    #[test]
    fn the_template_sqs_triggers_name_their_queue_function_and_batch() {
        let template = Template::project().unwrap_or_else(|e| panic!("{e:#}"));
        let triggers = template.sqs_triggers().unwrap_or_else(|e| panic!("{e:#}"));
        let orders = triggers
            .iter()
            .find(|t| t.queue == "OrdersQueue")
            .unwrap_or_else(|| panic!("{triggers:?}"));
        assert_eq!(
            (
                orders.function.as_str(),
                orders.binary.as_str(),
                orders.batch_size
            ),
            ("OrderSyncFunction", "order-sync", 10)
        );
        let mut queues: Vec<&str> = triggers.iter().map(|t| t.queue.as_str()).collect();
        queues.sort_unstable();
        assert_eq!(
            queues,
            [
                "OrdersQueue",
                "ReturnsQueue",
                "ShipmentsQueue",
                "StockRefreshQueue"
            ]
        );
    }

    #[test]
    fn a_batch_keeps_the_records_that_fit_the_payload_and_at_least_one() {
        let mut event = SqsEvent::default();
        event.records = (0..8).map(|_| record(1_000_000)).collect();
        let kept = within_payload_limit(&mut event);
        assert_eq!(kept, 6);
        let size = json_len(&event);
        assert!(size <= LAMBDA_SYNC_PAYLOAD_BYTES, "{size}");
        event.records.push(record(1_000_000));
        assert!(
            json_len(&event) > LAMBDA_SYNC_PAYLOAD_BYTES,
            "a seventh would not fit"
        );

        let mut small = SqsEvent::default();
        small.records = (0..3).map(|_| record(10)).collect();
        assert_eq!(within_payload_limit(&mut small), 3);
        let mut huge = SqsEvent::default();
        huge.records = vec![record(7_000_000)];
        assert_eq!(within_payload_limit(&mut huge), 1, "one record always goes");
    }
}
