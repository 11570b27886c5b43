//! Feeds a function from its SQS queue in-process, as the Lambda event source mapping would:
//! receive a batch, run the same batch consumer, delete what succeeded, and leave failures to
//! reappear after the visibility timeout (and reach the DLQ after `maxReceiveCount`).

use aws_sdk_sqs::types::DeleteMessageBatchRequestEntry;

use crate::lambda::sqs::{EventHandler, Message, process_batch};

/// Receives and handles one batch; returns (messages handled, messages failed).
pub async fn poll_once<H: EventHandler>(
    sqs: &aws_sdk_sqs::Client,
    queue_url: &str,
    handler: &H,
    wait_secs: i32,
) -> anyhow::Result<(usize, usize)> {
    let resp = sqs
        .receive_message()
        .queue_url(queue_url)
        .max_number_of_messages(10)
        .wait_time_seconds(wait_secs)
        .send()
        .await?;
    let msgs = resp.messages();
    if msgs.is_empty() {
        return Ok((0, 0));
    }
    let batch: Vec<Message> = msgs
        .iter()
        .map(|m| Message {
            id: m.message_id().unwrap_or_default().to_owned(),
            body: m.body().map(str::to_owned),
        })
        .collect();
    let failed = process_batch(handler, batch).await;
    let done: Vec<DeleteMessageBatchRequestEntry> = msgs
        .iter()
        .filter(|m| !failed.iter().any(|f| Some(f.as_str()) == m.message_id()))
        .filter_map(|m| {
            DeleteMessageBatchRequestEntry::builder()
                .id(m.message_id().unwrap_or_default())
                .receipt_handle(m.receipt_handle().unwrap_or_default())
                .build()
                .ok()
        })
        .collect();
    if !done.is_empty() {
        sqs.delete_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(done))
            .send()
            .await?;
    }
    Ok((msgs.len(), failed.len()))
}
