//! Shared parts of the benchmark binaries.

pub mod flags;
pub mod http_load;
