//! The `build-image` Lambda: an SQS batch of `ModelCodePushed` events in, partial batch failures out.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};
use mlops::lambda::sqs::handle_sqs_event;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // kube and the AWS SDK both use rustls; pick the process-wide provider before either does.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    mlops::lambda::init_tracing();
    let function = mlops::lambda::build_image::BuildImageFn::from_env().await?;
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, lambda_runtime::Error>(
            handle_sqs_event(function, event.payload).await,
        )
    }))
    .await
}
