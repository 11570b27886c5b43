//! The local dev stack: moto standing in for S3, SQS and EventBridge, provisioned like the real
//! deployment from `events/routes.json`, with the functions run in-process against it.

pub mod demo;
pub mod git_http;
pub mod local;
pub mod mlflow;
pub mod moto;
pub mod stack;
pub mod up;
pub mod webhook;
pub mod worker;
