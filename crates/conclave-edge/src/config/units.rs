//! Sizes and durations in the edge configuration: the workspace's one parser
//! (`conclave-units`), re-exported so the schema and its users name them here.

pub use conclave_units::{parse_duration, parse_size, ByteSize, Dur};
