//! # twig-wasi: the WASI 0.2 host for twig components
//!
//! Implements, on [`twig_component::Linker`], every WASI 0.2 interface that a
//! Rust `std` guest (`wasm32-wasip2`) or a `wasmcloud-component` guest
//! imports. One module per WASI package:
//!
//! | file | interfaces |
//! |---|---|
//! | `cli.rs` | `wasi:cli` — environment, arguments, exit, stdin (always at end of file), stdout/stderr (line-buffered into `tracing`, tagged with the component's name, and optionally [`Capture`]d), terminal-* (none) |
//! | `io.rs` | `wasi:io` — error, poll, streams (over stdin/stdout/stderr, timers and the embedder's streams of `streams.rs`: [`InputStream`], [`OutputStream`]) |
//! | `clocks.rs` | `wasi:clocks` — monotonic and wall clocks; timers block the calling thread but never past the call's deadline |
//! | `random.rs` | `wasi:random` — random (OS entropy), insecure, insecure-seed |
//! | `logging.rs` | `wasi:logging@0.1.0-draft` — `log` becomes a `tracing` event with the component's name, the guest's context and its level |
//! | `filesystem.rs` | `wasi:filesystem` — no preopened directories; every operation is denied with `error-code::access` |
//! | `sockets.rs` | `wasi:sockets` — every operation is denied with `error-code::access-denied` |
//!
//! This file holds what they share: the per-instance [`WasiCtx`] (its
//! table of host objects behind resource handles), [`WasiView`], and
//! [`add_to_linker`], which registers the resource types and then each
//! package.
//!
//! Interfaces are registered at version 0.2.6; the linker's semver rule lets
//! them satisfy any 0.2.x import. Host state lives in a [`WasiCtx`] that the
//! embedder's store data exposes through [`WasiView`].
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::time::Instant;

use twig_component::{HostError, Linker};

mod cli;
mod clocks;
mod filesystem;
mod io;
mod logging;
mod random;
mod sockets;
mod streams;

pub use cli::Capture;
pub use logging::LOGGING_INTERFACE;
pub use streams::{InputStream, OutputStream, StreamError};

/// The WASI version the host implements; any 0.2.x import links to it.
pub const WASI_VERSION: &str = "0.2.6";

/// Largest single read/write the streams accept, so a guest cannot make the
/// host allocate without bound.
pub(crate) const MAX_IO_CHUNK: u64 = 1 << 20;

/// Host-side objects behind WASI resource handles.
pub(crate) enum Object {
    Stdin,
    Stdout,
    Stderr,
    /// A pollable that is ready at the given instant (`None`: always ready).
    Pollable(Option<Instant>),
    /// A pollable that is ready when the embedder's stream `rep` is.
    StreamPollable(u32),
    Network,
    /// A `wasi:io/error` with its message.
    Error(String),
    /// Streams an embedder made (HTTP bodies and the like).
    Input(Box<dyn InputStream>),
    Output(Box<dyn OutputStream>),
}

impl Object {
    pub(crate) fn describe(&self) -> String {
        match self {
            Object::Stdin => "stdin".into(),
            Object::Stdout => "stdout".into(),
            Object::Stderr => "stderr".into(),
            Object::Pollable(_) | Object::StreamPollable(_) => "pollable".into(),
            Object::Network => "network".into(),
            Object::Error(m) => m.clone(),
            Object::Input(_) => "input stream".into(),
            Object::Output(_) => "output stream".into(),
        }
    }
}

/// WASI state of one component instance.
pub struct WasiCtx {
    env: Vec<(String, String)>,
    args: Vec<String>,
    objects: HashMap<u32, Object>,
    next_rep: u32,
    line_out: Vec<u8>,
    line_err: Vec<u8>,
    capture: Option<Capture>,
    start: Instant,
    insecure_state: u64,
}

/// Upper bound on host objects per instance (streams, pollables, errors).
const MAX_OBJECTS: usize = 4096;

impl Default for WasiCtx {
    fn default() -> Self {
        WasiCtx::new()
    }
}

impl WasiCtx {
    pub fn new() -> WasiCtx {
        let mut seed = [0u8; 8];
        // A failed entropy read only weakens the *insecure* generator.
        let _ = getrandom::fill(&mut seed);
        WasiCtx {
            env: Vec::new(),
            args: Vec::new(),
            objects: HashMap::new(),
            next_rep: 1,
            line_out: Vec::new(),
            line_err: Vec::new(),
            capture: None,
            start: Instant::now(),
            insecure_state: u64::from_le_bytes(seed) | 1,
        }
    }

    /// Environment variables the guest sees.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Command-line arguments the guest sees.
    pub fn args(mut self, args: impl IntoIterator<Item = String>) -> Self {
        self.args = args.into_iter().collect();
        self
    }

    /// Also copy everything the guest writes to stdout/stderr into `capture`.
    pub fn capture(mut self, capture: Capture) -> Self {
        self.capture = Some(capture);
        self
    }

    pub(crate) fn insert(&mut self, o: Object) -> Result<u32, HostError> {
        if self.objects.len() >= MAX_OBJECTS {
            return Err(HostError::new(format!(
                "too many WASI objects (limit {MAX_OBJECTS})"
            )));
        }
        let rep = self.next_rep;
        self.next_rep = self.next_rep.wrapping_add(1).max(1);
        self.objects.insert(rep, o);
        Ok(rep)
    }

    pub(crate) fn get(&self, rep: u32) -> Result<&Object, HostError> {
        self.objects
            .get(&rep)
            .ok_or_else(|| HostError::new(format!("unknown WASI object {rep}")))
    }

    pub(crate) fn get_mut(&mut self, rep: u32) -> Result<&mut Object, HostError> {
        self.objects
            .get_mut(&rep)
            .ok_or_else(|| HostError::new(format!("unknown WASI object {rep}")))
    }
}

/// Gives WASI host functions access to the WASI state inside the
/// embedder's per-instance data.
pub trait WasiView {
    fn wasi(&mut self) -> &mut WasiCtx;
}

impl WasiView for WasiCtx {
    fn wasi(&mut self) -> &mut WasiCtx {
        self
    }
}

/// Resource type ids of the WASI resources, as registered on a linker.
#[derive(Debug, Clone, Copy)]
pub struct WasiTypes {
    pub pollable: u32,
    pub error: u32,
    pub input_stream: u32,
    pub output_stream: u32,
    pub network: u32,
}

/// `name` at [`WASI_VERSION`].
pub(crate) fn iface(name: &str) -> String {
    format!("{name}@{WASI_VERSION}")
}

/// Registers every WASI 0.2 interface on `linker`.
pub fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>) -> WasiTypes {
    let poll = iface("wasi:io/poll");
    let error = iface("wasi:io/error");
    let streams = iface("wasi:io/streams");
    let network_if = iface("wasi:sockets/network");
    let drop_obj = |t: &mut T, rep: u32| {
        t.wasi().objects.remove(&rep);
    };
    let types = WasiTypes {
        pollable: linker.resource(&poll, "pollable", drop_obj),
        error: linker.resource(&error, "error", drop_obj),
        input_stream: linker.resource(&streams, "input-stream", drop_obj),
        output_stream: linker.resource(&streams, "output-stream", drop_obj),
        network: linker.resource(&network_if, "network", drop_obj),
    };
    io::add_to_linker(linker, types);
    cli::add_to_linker(linker, types);
    clocks::add_to_linker(linker, types);
    random::add_to_linker(linker);
    logging::add_to_linker(linker);
    filesystem::add_to_linker(linker);
    sockets::add_to_linker(linker, types);
    types
}
