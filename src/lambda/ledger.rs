//! Wiring of the `ledger` function.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;

use super::sqs::EventHandler;
use crate::adapter::{aws, s3::S3Store};
use crate::config::LedgerSettings;
use crate::error::BoxError;
use crate::port::ObjectStore;
use crate::stage::ledger::{Filed, Ledger, LedgerError};

pub struct LedgerFn<S> {
    pub settings: LedgerSettings,
    pub store: S,
}

impl LedgerFn<S3Store> {
    pub async fn from_env() -> Result<Self, BoxError> {
        let settings = LedgerSettings::from_env(|k| std::env::var(k).ok())?;
        let sdk = aws::load().await;
        Ok(LedgerFn {
            settings,
            store: S3Store::new(aws::s3_client(&sdk)),
        })
    }
}

impl<S: ObjectStore> EventHandler for LedgerFn<S> {
    type Error = LedgerError;
    const NAME: &'static str = "ledger";

    async fn handle(
        &self,
        event: &EventBridgeEvent<serde_json::Value>,
    ) -> Result<String, LedgerError> {
        let ledger = Ledger {
            store: &self.store,
            bucket: &self.settings.artifact_bucket,
            prefix: &self.settings.ledger_prefix,
        };
        Ok(match ledger.append(event).await? {
            Filed::New { key } => format!("filed {key}"),
            Filed::Duplicate { key } => format!("already filed {key}"),
            Filed::Ignored => "not a pipeline event".into(),
        })
    }
}
