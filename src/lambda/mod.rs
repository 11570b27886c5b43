//! Runtime glue shared by the function crates: tracing, the SQS batch consumer with per-message
//! failures, and each function's wiring of adapters to its stage.

pub mod build_image;
pub mod data_arrival;
pub mod deploy_sync;
pub mod git_webhook;
pub mod launch_training;
pub mod ledger;
pub mod mlflow_webhook;
pub mod promote_model;
pub mod registry_poller;
pub mod sqs;
pub mod training_watch;
pub mod validate_model;
pub mod vllm_scaler;

/// JSON logs through `tracing` (ARCHITECTURE §3, rule 5); `RUST_LOG` sets the filter.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .try_init();
}
