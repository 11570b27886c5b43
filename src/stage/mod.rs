//! Pipeline stages: pure decisions, generic over the ports they use, with no SDK types.
//! The same stage runs in Lambda and in the local dev stack.

pub mod data_arrival;
pub mod ledger;
pub mod prepare;
pub mod training;
