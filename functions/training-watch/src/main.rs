//! The `training-watch` Lambda: one tick per EventBridge Scheduler invocation (every minute).

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // kube and the AWS SDK both use rustls; pick the process-wide provider before either does.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    mlops::lambda::init_tracing();
    let function = mlops::lambda::training_watch::TrainingWatchFn::from_env().await?;
    let function = &function;
    lambda_runtime::run(service_fn(
        move |_: LambdaEvent<serde_json::Value>| async move {
            let report = function.tick().await?;
            Ok::<serde_json::Value, lambda_runtime::Error>(serde_json::json!({
                "workloads": report.workloads,
                "emitted": report.emitted.iter().map(|e| e.detail_type.clone()).collect::<Vec<_>>(),
                "errors": report.errors,
            }))
        },
    ))
    .await
}
