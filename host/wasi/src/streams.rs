//! Streams that embedders plug into `wasi:io/streams`.
//!
//! WASI's own streams here are stdin (always at end of file) and
//! stdout/stderr (to `tracing`). Capability providers need more: an HTTP
//! request body arriving from the network while the guest reads it, a
//! response body going out while the guest writes it. A provider implements
//! [`InputStream`] or [`OutputStream`], hands it to
//! [`crate::WasiCtx::push_input_stream`] / [`crate::WasiCtx::push_output_stream`]
//! and gives the guest the returned handle; every `wasi:io/streams` and
//! `wasi:io/poll` function then works on it, blocking ones included (never
//! past the call's deadline).

use std::time::Instant;

/// Why a stream operation did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamError {
    /// The stream ended (input) or the other side went away (output).
    Closed,
    /// The operation failed; the guest gets a `wasi:io/error` with this text.
    Failed(String),
}

/// A source of bytes for a guest.
pub trait InputStream: Send {
    /// Up to `max` bytes that are available now, without waiting; an empty
    /// vector when none have arrived yet.
    fn read(&mut self, max: usize) -> Result<Vec<u8>, StreamError>;
    /// Whether `read` would now return data, the end, or an error.
    fn is_ready(&mut self) -> bool;
    /// Waits until [`InputStream::is_ready`] or until `until`.
    fn wait(&mut self, until: Option<Instant>);
}

/// A sink of bytes from a guest.
pub trait OutputStream: Send {
    /// How many bytes [`OutputStream::write`] accepts now (0: wait first).
    fn check_write(&mut self) -> Result<u64, StreamError>;
    /// Takes `data`, at most what `check_write` last allowed.
    fn write(&mut self, data: &[u8]) -> Result<(), StreamError>;
    /// Pushes out what was written; may return before it is delivered.
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    /// Whether `check_write` would now return a non-zero count or an error.
    fn is_ready(&mut self) -> bool;
    /// Waits until [`OutputStream::is_ready`] or until `until`.
    fn wait(&mut self, until: Option<Instant>);
}
