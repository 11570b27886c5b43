//! SQS batch consumer with partial batch failures (CONTRACTS §1.4, STYLE "per-message SQS
//! failures"): the raw `SqsEvent` is taken and each body parsed on its own, so one malformed
//! body fails only its own message. Messages run concurrently, each in a span with its id, and
//! only the failed ids are returned (`ReportBatchItemFailures` must be on the event source
//! mapping). The local dev stack feeds the same function from `ReceiveMessage`.

use std::future::Future;

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use tracing::{Instrument, error, info, warn};

use crate::error::{Classify, ErrorClass};

/// One queue message: its id (what a batch failure names) and body.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub body: Option<String>,
}

/// A function fed by an EventBridge rule through an SQS queue.
pub trait EventHandler: Send + Sync {
    type Error: std::error::Error + Classify + Send + Sync + 'static;
    /// The function's name, as in `events/routes.json`.
    const NAME: &'static str;
    /// Handles one event; the `Ok` value is a short summary for the log.
    fn handle(
        &self,
        event: &EventBridgeEvent<serde_json::Value>,
    ) -> impl Future<Output = Result<String, Self::Error>> + Send;
}

/// Processes messages concurrently and returns the ids of those that must be redelivered.
pub async fn process_batch<H: EventHandler>(handler: &H, messages: Vec<Message>) -> Vec<String> {
    let runs = messages.into_iter().map(|m| {
        let span = tracing::info_span!("message", function = H::NAME, message_id = %m.id);
        async move {
            let Some(body) = m.body.as_deref() else {
                error!("message has no body; it will be retried and end in the DLQ");
                return Some(m.id);
            };
            let event: EventBridgeEvent<serde_json::Value> = match serde_json::from_str(body) {
                Ok(e) => e,
                Err(e) => {
                    error!(error = %e, "body is not an EventBridge event; it will be retried and end in the DLQ");
                    return Some(m.id);
                }
            };
            let event_id = event.id.clone().unwrap_or_default();
            match handler.handle(&event).await {
                Ok(summary) => {
                    info!(%event_id, detail_type = %event.detail_type, %summary, "handled");
                    None
                }
                Err(e) => {
                    let chain = error_chain(&e);
                    match e.class() {
                        ErrorClass::Transient => warn!(%event_id, error = %chain, "transient failure; will be retried"),
                        ErrorClass::Permanent => error!(%event_id, error = %chain, "unexpected permanent failure; sent to retry/DLQ"),
                    }
                    Some(m.id)
                }
            }
        }
        .instrument(span)
    });
    futures::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// The Lambda entry point for queue-fed functions.
pub async fn handle_sqs_event<H: EventHandler>(handler: &H, event: SqsEvent) -> SqsBatchResponse {
    let messages = event
        .records
        .into_iter()
        .map(|r| Message {
            id: r.message_id.unwrap_or_default(),
            body: r.body,
        })
        .collect();
    let failed = process_batch(handler, messages).await;
    let mut resp = SqsBatchResponse::default();
    resp.set_failures(failed);
    resp
}

/// An error with its causes, `a: b: c`, for one log field.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
