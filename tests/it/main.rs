//! The one integration-test binary: the library against real local services (moto for S3, SQS
//! and EventBridge; pandas for the cleaning reference), plus checks over every file in events/.

mod apiserver;
mod events;
mod harness;
mod pandas_parity;
mod pipeline;
mod training;
