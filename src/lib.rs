//! An event-driven MLOps control plane for Amazon EKS.
//!
//! Each pipeline stage is a small function that reacts to one kind of event and emits the next on
//! an EventBridge bus. The layout follows the design (ARCHITECTURE §4): [`stage`] holds the pure
//! decisions, generic over the narrow traits in [`port`]; [`adapter`] implements those traits over
//! S3, EventBridge and SQS (plus in-memory fakes for tests); [`lambda`] is the runtime glue shared
//! by the function crates; [`cli`] is the `mlops` command (dev stack, demo, prepare, status).

pub mod adapter;
pub mod cli;
pub mod config;
pub mod error;
pub mod event;
pub mod lambda;
pub mod port;
pub mod sim;
pub mod stage;
