//! [`DelayQueue`] on SQS: `SendMessage` with `DelaySeconds` (at most 900).

use std::time::Duration;

use aws_sdk_sqs::Client;

use crate::error::BusError;
use crate::port::DelayQueue;

#[derive(Clone)]
pub struct SqsDelayQueue {
    client: Client,
    url: String,
}

impl SqsDelayQueue {
    pub fn new(client: Client, url: impl Into<String>) -> Self {
        SqsDelayQueue {
            client,
            url: url.into(),
        }
    }
}

impl DelayQueue for SqsDelayQueue {
    async fn send(&self, body: String, delay: Duration) -> Result<(), BusError> {
        let delay = i32::try_from(delay.as_secs().min(900)).unwrap_or(900);
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(delay)
            .send()
            .await
            .map_err(|e| BusError::Put {
                bus: self.url.clone(),
                source: e.into(),
            })
            .map(drop)
    }
}
