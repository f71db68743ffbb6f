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
