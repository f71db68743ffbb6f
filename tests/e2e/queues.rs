//! The local stack's SQS keeps FIFO's promises, which exactly-once rests on: a message group
//! goes to one consumer at a time, in the order its messages were sent.

use std::time::Duration;

use aws_sdk_sqs::types::MessageSystemAttributeName;
use erpsync_e2e::World;

async fn send(sqs: &aws_sdk_sqs::Client, url: &str, group: &str, body: &str) {
    sqs.send_message()
        .queue_url(url)
        .message_group_id(group)
        .message_deduplication_id(format!("{group}-{body}"))
        .message_body(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
}

/// The bodies one receive hands out, and their receipt handles.
async fn receive(sqs: &aws_sdk_sqs::Client, url: &str) -> Vec<(String, String)> {
    sqs.receive_message()
        .queue_url(url)
        .max_number_of_messages(10)
        .visibility_timeout(30)
        .message_system_attribute_names(MessageSystemAttributeName::All)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"))
        .messages()
        .iter()
        .map(|m| {
            (
                m.body().unwrap_or_default().to_owned(),
                m.receipt_handle().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_fifo_group_in_flight_is_held_and_comes_back_in_the_order_it_was_sent() {
    let world = World::start().await;
    let sqs = aws_sdk_sqs::Client::new(&world.sdk);
    let url = world.queue("OrdersQueue");
    send(&sqs, &url, "uk-shop#1", "first").await;
    send(&sqs, &url, "uk-shop#1", "second").await;
    send(&sqs, &url, "uk-shop#2", "other").await;
    let received = receive(&sqs, &url).await;
    let bodies: Vec<&str> = received.iter().map(|(b, _)| b.as_str()).collect();
    assert_eq!(
        bodies,
        ["first", "second", "other"],
        "a group's messages in order"
    );
    assert!(receive(&sqs, &url).await.is_empty(), "all in flight");

    // The consumer hands the group back, the first message a moment before the second.
    for ((_, receipt), seconds) in received.iter().take(2).zip([1, 2]) {
        sqs.change_message_visibility()
            .queue_url(&url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{e:?}"));
    }
    tokio::time::sleep(Duration::from_millis(1300)).await;
    assert!(
        receive(&sqs, &url).await.is_empty(),
        "the first waits while the second is in flight"
    );
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let again: Vec<String> = receive(&sqs, &url)
        .await
        .into_iter()
        .map(|(body, _)| body)
        .collect();
    assert_eq!(again, ["first", "second"], "in the order sent");
}

#[tokio::test]
async fn a_message_counts_its_attributes_and_a_queue_without_a_size_takes_aws_s_default() {
    let world = World::start().await;
    let sqs = aws_sdk_sqs::Client::new(&world.sdk);
    let url = world.queue("OrdersQueue");
    let attribute = aws_sdk_sqs::types::MessageAttributeValue::builder()
        .data_type("String")
        .string_value("x".repeat(100))
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    // 1 MiB of body alone fits; with an attribute beside it, it does not.
    let body = "y".repeat(erpsync_aws::sqs::MAX_MESSAGE_BYTES);
    let send = |body: String, with_attribute: bool| {
        let mut request = sqs
            .send_message()
            .queue_url(&url)
            .message_group_id("g")
            .message_deduplication_id(uuid::Uuid::new_v4().simple().to_string())
            .message_body(body);
        if with_attribute {
            request = request.message_attributes("channel", attribute.clone());
        }
        request.send()
    };
    assert!(send(body.clone(), false).await.is_ok());
    let refused = send(body, true).await;
    assert!(
        format!("{:?}", refused.err()).contains("Message must be shorter than 1048576 bytes"),
        "SQS's own refusal"
    );

    let plain = sqs
        .create_queue()
        .queue_name(format!("{}-plain", world.stage))
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e:?}"));
    let plain = plain.queue_url().unwrap_or_default();
    for (size, accepted) in [(262_144, true), (262_145, false)] {
        let sent = sqs
            .send_message()
            .queue_url(plain)
            .message_body("z".repeat(size))
            .send()
            .await;
        assert_eq!(sent.is_ok(), accepted, "{size} bytes on a default queue");
    }
}

/// Records the size of each invocation's event.
struct Recording {
    sizes: std::sync::Mutex<Vec<(usize, usize)>>,
}

#[async_trait::async_trait]
impl erpsync_tools::esm::Invoker for Recording {
    async fn invoke(
        &self,
        event: aws_lambda_events::event::sqs::SqsEvent,
    ) -> anyhow::Result<aws_lambda_events::event::sqs::SqsBatchResponse> {
        let size = serde_json::to_vec(&event)?.len();
        if let Ok(mut sizes) = self.sizes.lock() {
            sizes.push((event.records.len(), size));
        }
        Ok(Default::default())
    }
}

#[tokio::test]
async fn an_event_source_mapping_batch_stays_under_lambda_s_6_mb_payload() {
    let world = World::start().await;
    let sqs = aws_sdk_sqs::Client::new(&world.sdk);
    let url = world.queue("OrdersQueue");
    let largest = "o".repeat(erpsync_aws::function_url::MAX_BODY_BYTES);
    for order in 0..8 {
        send(
            &sqs,
            &url,
            &format!("uk-shop#{order}"),
            &format!("{order}{largest}"),
        )
        .await;
    }
    let recording = std::sync::Arc::new(Recording {
        sizes: std::sync::Mutex::new(Vec::new()),
    });
    let esm = erpsync_tools::esm::EventSourceMapping {
        invoker: recording.clone(),
        ..world.event_source()
    };
    let mut handed = 0;
    while handed < 8 {
        let batch = esm
            .poll_once(Duration::from_secs(1))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert!(batch > 0, "the rest comes back at once");
        handed += batch;
    }
    let sizes = recording
        .sizes
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    assert_eq!(sizes.iter().map(|(n, _)| n).sum::<usize>(), 8);
    assert!(sizes.len() >= 2, "{sizes:?}");
    for (records, size) in &sizes {
        assert!(
            *size <= erpsync_tools::esm::LAMBDA_SYNC_PAYLOAD_BYTES,
            "{records} records in {size} bytes"
        );
    }
    assert_eq!(world.queue_depth("OrdersQueue").await, 0);
}
