//! Load generation and micro-benchmarks: the `ab`-like HTTP(S) load
//! generator and the RPC benchmark. Knows nothing of deployments.
#![forbid(unsafe_code)]

pub mod ab;
pub mod rpc;
