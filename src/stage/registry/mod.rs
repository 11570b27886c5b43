//! The registry stage: a model version that appears in MLflow (signed webhook or poller) is
//! checked against its model's validation gate.
//!
//! - [`webhook`]: MLflow 3.x webhook deliveries, verified (HMAC-SHA256, timestamp skew) and
//!   parsed into the pipeline's events.
//! - [`gate`]: the gate itself, a pure function of the version's metrics, the champion's and
//!   the dataset manifest.

pub mod gate;
pub mod poll;
pub mod receive;
pub mod validate;
pub mod webhook;
