//! The `registry-poller` Lambda: one tick per EventBridge Scheduler invocation (every minute).

use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // reqwest (MLflow) and the AWS SDK both use rustls; pick the process-wide provider first.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    mlops::lambda::init_tracing();
    let function = mlops::lambda::registry_poller::RegistryPollerFn::from_env().await?;
    let function = &function;
    lambda_runtime::run(service_fn(
        move |_: LambdaEvent<serde_json::Value>| async move {
            let report = function.tick().await?;
            Ok::<serde_json::Value, lambda_runtime::Error>(serde_json::json!({
                "seen": report.seen,
                "emitted": report.emitted.iter().map(|(m, v, _)| format!("{m} v{v}")).collect::<Vec<_>>(),
            }))
        },
    ))
    .await
}
