//! Shared parts of the benchmark binaries.

pub mod http_load;
