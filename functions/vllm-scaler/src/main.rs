//! The `vllm-scaler` Lambda: EventBridge Scheduler every minute (about four evaluations per
//! served model inside the invocation) and `DeploymentHealthy` (one evaluation of that model).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // kube and the AWS SDK both use rustls; pick the process-wide provider before either does.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    mlops::lambda::init_tracing();
    let function = mlops::lambda::vllm_scaler::VllmScalerFn::from_env().await?;
    let function = &function;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            // The invocation's deadline, on the monotonic clock.
            let now_ms = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            let left = Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
            let (models, repeat) = function.targets(&event.payload);
            let report = function.run(&models, repeat, Instant::now() + left).await;
            Ok::<serde_json::Value, lambda_runtime::Error>(serde_json::to_value(&report)?)
        },
    ))
    .await
}
