//! The serving stage: the vLLM-aware scaling policy (the `vllm-scaler` function and
//! `mlops scale-sim` run the same code), the capacity profiles it prices load with, the parser
//! of vLLM's `/metrics`, and the scaler that reads, decides and patches.

pub mod metrics;
pub mod policy;
pub mod profile;
pub mod scaler;
