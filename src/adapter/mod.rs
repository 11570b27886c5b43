//! Real I/O behind the ports, and in-memory fakes beside them for stage tests.

pub mod aws;
pub mod eventbridge;
pub mod memory;
pub mod s3;
