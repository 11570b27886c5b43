//! The `deploy-sync` Lambda: an SQS batch of `GitPushed` events and its own delayed
//! `DeploymentCheck` messages in, Argo CD syncs, health verdicts and rollbacks out.

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};
use mlops::lambda::sqs::handle_sqs_event;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    // reqwest (Argo CD, MLflow, Git over HTTPS) and the AWS SDK all use rustls.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    mlops::lambda::init_tracing();
    let function = mlops::lambda::deploy_sync::LambdaDeploySync::from_env().await?;
    let function = &function;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        Ok::<SqsBatchResponse, lambda_runtime::Error>(
            handle_sqs_event(function, event.payload).await,
        )
    }))
    .await
}
