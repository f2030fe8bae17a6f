//! Load generation, micro-benchmarks and test content: the `ab`-like
//! HTTP(S) load generator, the seed's web content, and the rpc, bd, fs, mem
//! and keys micro-benchmarks behind one harness (the operation meter and
//! latency summaries, scratch directories, child processes, the CPU-time
//! reader). The binary only
//! parses arguments and prints what these return. Knows nothing of
//! deployments.
#![forbid(unsafe_code)]

pub mod ab;
pub mod bd;
pub mod content;
pub mod cpu;
mod error;
pub mod fs;
pub mod harness;
pub mod keys;
pub mod mem;
pub mod rpc;

pub use error::BenchError;
