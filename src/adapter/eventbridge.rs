//! [`EventBus`] over Amazon EventBridge PutEvents: at most 10 entries a call, each under 256 KB;
//! a partial failure still answers 200, so only the failed entries are resent (CONTRACTS §2.1).

use std::time::Duration;

use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::error::BusError;
use crate::event::BusEvent;
use crate::port::EventBus;

const MAX_ENTRIES: usize = 10;
const MAX_ENTRY_BYTES: usize = 256 * 1024;
const ATTEMPTS: u32 = 4;

#[derive(Clone)]
pub struct EventBridgeBus {
    client: Client,
    bus: String,
}

impl EventBridgeBus {
    pub fn new(client: Client, bus: impl Into<String>) -> Self {
        EventBridgeBus {
            client,
            bus: bus.into(),
        }
    }

    fn entry(&self, e: &BusEvent) -> Result<PutEventsRequestEntry, BusError> {
        let detail = e.detail.to_string();
        let size = e.source.len() + e.detail_type.len() + detail.len();
        if size >= MAX_ENTRY_BYTES {
            return Err(BusError::TooLarge {
                detail_type: e.detail_type.clone(),
                size,
            });
        }
        Ok(PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(&e.source)
            .detail_type(&e.detail_type)
            .detail(detail)
            .build())
    }
}

impl EventBus for EventBridgeBus {
    async fn put(&self, events: &[BusEvent]) -> Result<(), BusError> {
        for chunk in events.chunks(MAX_ENTRIES) {
            let mut pending = chunk
                .iter()
                .map(|e| self.entry(e))
                .collect::<Result<Vec<_>, _>>()?;
            let mut attempt = 0;
            loop {
                attempt += 1;
                let resp = self
                    .client
                    .put_events()
                    .set_entries(Some(pending.clone()))
                    .send()
                    .await
                    .map_err(|e| BusError::Put {
                        bus: self.bus.clone(),
                        source: e.into(),
                    })?;
                if resp.failed_entry_count() == 0 {
                    break;
                }
                let results = resp.entries();
                let failed: Vec<usize> = (0..pending.len())
                    .filter(|i| results.get(*i).is_none_or(|r| r.error_code().is_some()))
                    .collect();
                if attempt >= ATTEMPTS {
                    let first = failed
                        .first()
                        .and_then(|i| results.get(*i))
                        .map(|r| {
                            format!(
                                "{}: {}",
                                r.error_code().unwrap_or("?"),
                                r.error_message().unwrap_or("")
                            )
                        })
                        .unwrap_or_default();
                    return Err(BusError::EntriesFailed {
                        bus: self.bus.clone(),
                        failed: failed.len(),
                        first,
                    });
                }
                pending = failed
                    .into_iter()
                    .filter_map(|i| pending.get(i).cloned())
                    .collect();
                tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
            }
        }
        Ok(())
    }
}
