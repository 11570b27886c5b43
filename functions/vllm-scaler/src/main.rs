//! The `vllm-scaler` Lambda: the minute schedule (about four evaluations of every served model
//! inside the invocation) and SQS batches of `DeploymentHealthy` (that model, once).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use aws_lambda_events::event::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use mlops::lambda::sqs::handle_sqs_event;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // kube and the AWS SDK both use rustls; pick the process-wide provider before either does.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    mlops::lambda::init_tracing();
    let function = mlops::lambda::vllm_scaler::VllmScalerFn::from_env().await?;
    let function = &function;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            if event.payload.get("Records").is_some() {
                let batch: SqsEvent = serde_json::from_value(event.payload)?;
                return Ok(serde_json::to_value(
                    handle_sqs_event(function, batch).await,
                )?);
            }
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            let left = Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
            let report = function.run(Instant::now() + left).await;
            Ok::<_, lambda_runtime::Error>(serde_json::to_value(&report)?)
        },
    ))
    .await
}
