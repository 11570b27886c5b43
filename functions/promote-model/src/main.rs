//! The `promote-model` Lambda: an SQS batch of `ModelValidated` events in, release commits to the
//! manifests repo and partial batch failures out.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};
use mlops::lambda::sqs::handle_sqs_event;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // reqwest (MLflow, Git over HTTPS) and the AWS SDK all use rustls; pick the provider first.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    mlops::lambda::init_tracing();
    let function = mlops::lambda::promote_model::PromoteModelFn::from_env().await?;
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, lambda_runtime::Error>(
            handle_sqs_event(function, event.payload).await,
        )
    }))
    .await
}
