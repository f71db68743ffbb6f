//! Looking at queues without consuming them: depth and a peek at the messages.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, Message, MessageSystemAttributeName,
    QueueAttributeName,
};

/// Visible + in flight + delayed messages.
pub async fn depth(sqs: &Client, url: &str) -> anyhow::Result<u64> {
    count(
        sqs,
        url,
        &[
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ],
    )
    .await
}

/// Messages a consumer could receive now (neither in flight nor delayed).
pub async fn visible(sqs: &Client, url: &str) -> anyhow::Result<u64> {
    count(sqs, url, &[QueueAttributeName::ApproximateNumberOfMessages]).await
}

async fn count(sqs: &Client, url: &str, names: &[QueueAttributeName]) -> anyhow::Result<u64> {
    let output = sqs
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await?;
    let attributes = output.attributes().cloned().unwrap_or_default();
    Ok(names
        .iter()
        .filter_map(|name| attributes.get(name)?.parse::<u64>().ok())
        .sum())
}

/// How long a walk over a queue hides what it has seen; released as soon as it ends.
const WALK_HIDE_SECONDS: i32 = 60;
/// A bound on a walk: 10 messages a receive.
pub const WALK_RECEIVES: usize = 1000;

/// The messages that can be received now, with all attributes, left on the queue. Each receive
/// hides what it returned, so the next one returns others (a FIFO queue would otherwise answer
/// with the same ten every time), and all of them are made visible again at the end. On a
/// FIFO queue a group's later messages stay out of reach while earlier ones are hidden: they
/// come within reach as those go.
pub async fn peek(sqs: &Client, url: &str) -> anyhow::Result<Vec<Message>> {
    walk(sqs, url, |_| false).await.map(|(seen, _)| seen)
}

/// Walks the queue like `peek` until `wanted` matches a message, and answers that one still
/// hidden (its receipt handle valid for the walk's hiding time) beside the ones seen.
pub async fn take(
    sqs: &Client,
    url: &str,
    wanted: impl Fn(&Message) -> bool,
) -> anyhow::Result<Option<(Message, String)>> {
    walk(sqs, url, wanted).await.map(|(_, taken)| taken)
}

/// Up to ten messages, hidden for a walk's time, with every attribute.
pub async fn receive_batch(sqs: &Client, url: &str) -> anyhow::Result<Vec<Message>> {
    Ok(sqs
        .receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(WALK_HIDE_SECONDS)
        // Long polling asks every server: a short poll of a standard queue may answer nothing
        // while messages remain, and an empty answer ends a walk.
        .wait_time_seconds(1)
        .message_attribute_names("All")
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await?
        .messages
        .unwrap_or_default())
}

async fn walk(
    sqs: &Client,
    url: &str,
    wanted: impl Fn(&Message) -> bool,
) -> anyhow::Result<(Vec<Message>, Option<(Message, String)>)> {
    let mut seen: Vec<Message> = Vec::new();
    let mut receipts: Vec<String> = Vec::new();
    let mut taken = None;
    let walked: anyhow::Result<()> = async {
        for _ in 0..WALK_RECEIVES {
            let received = receive_batch(sqs, url).await?;
            if received.is_empty() {
                return Ok(());
            }
            for message in &received {
                let receipt = message.receipt_handle().unwrap_or_default().to_owned();
                if taken.is_none() && wanted(message) {
                    taken = Some((message.clone(), receipt));
                    continue;
                }
                receipts.push(receipt);
                if !seen.iter().any(|m| m.message_id() == message.message_id()) {
                    seen.push(message.clone());
                }
            }
            if taken.is_some() {
                return Ok(());
            }
        }
        Ok(())
    }
    .await;
    let released = release(sqs, url, &receipts).await;
    walked?;
    released?;
    Ok((seen, taken))
}

/// Makes hidden messages visible again, ten to a request.
pub async fn release(sqs: &Client, url: &str, receipts: &[String]) -> anyhow::Result<()> {
    for chunk in receipts.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, receipt)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(receipt)
                    .visibility_timeout(0)
                    .build()
            })
            .collect::<Result<Vec<_>, _>>()?;
        sqs.change_message_visibility_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await?;
    }
    Ok(())
}
