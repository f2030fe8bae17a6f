//! The RPC micro-benchmark (owned by the lead; being written).
