//! The one integration-test binary: the library against real local services (moto for S3, SQS
//! and EventBridge; pandas for the cleaning reference), plus checks over every file in events/.

mod apiserver;
mod argocd;
mod builds;
mod cli;
mod codepush;
mod deploy;
mod events;
mod git;
mod harness;
mod manifests;
mod pandas_diff;
mod pandas_parity;
mod pipeline;
mod registry;
mod scaler;
mod sync;
mod training;
