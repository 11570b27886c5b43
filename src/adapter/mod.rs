//! Real I/O behind the ports, and in-memory fakes beside them for stage tests.

pub mod argocd;
pub mod aws;
pub mod ecr;
pub mod eks;
pub mod eventbridge;
pub mod git;
pub mod kube_serving;
pub mod kubernetes;
pub mod local_exec;
pub mod memory;
pub mod mlflow;
pub mod prometheus;
pub mod s3;
pub mod secrets;
pub mod sqs;
