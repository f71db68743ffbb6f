//! Looking at queues without consuming them: depth and a peek at the messages.

use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{Message, MessageSystemAttributeName, QueueAttributeName};

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

/// The messages currently visible, with all attributes, left on the queue (received with
/// a zero visibility timeout, repeated until nothing new comes back).
pub async fn peek(sqs: &Client, url: &str) -> anyhow::Result<Vec<Message>> {
    let mut seen: Vec<Message> = Vec::new();
    for _ in 0..100 {
        let received = sqs
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await?;
        let before = seen.len();
        for message in received.messages() {
            if !seen.iter().any(|m| m.message_id() == message.message_id()) {
                seen.push(message.clone());
            }
        }
        if seen.len() == before {
            break;
        }
    }
    Ok(seen)
}
