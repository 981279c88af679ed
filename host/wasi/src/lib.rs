//! # twig-wasi: the WASI 0.2 host for twig components
//!
//! Implements, on [`twig_component::Linker`], every WASI 0.2 interface that a
//! Rust `std` guest (`wasm32-wasip2`) or a `wasmcloud-component` guest
//! imports:
//!
//! * `wasi:cli` — environment, arguments, exit, stdin (always at end of
//!   file), stdout/stderr (line-buffered into `tracing`, tagged with the
//!   component's name, and optionally captured), terminal-* (none).
//! * `wasi:io` — error, poll, streams.
//! * `wasi:clocks` — monotonic and wall clocks; timers block the calling
//!   thread but never past the call's deadline.
//! * `wasi:random` — random (OS entropy), insecure, insecure-seed.
//! * `wasi:logging@0.1.0-draft` — `log` becomes a `tracing` event with the
//!   component's name, the guest's context and its level.
//! * `wasi:filesystem` — no preopened directories; every operation is denied
//!   with `error-code::access`.
//! * `wasi:sockets` — every operation is denied with
//!   `error-code::access-denied`.
//!
//! Interfaces are registered at version 0.2.6; the linker's semver rule lets
//! them satisfy any 0.2.x import. Host state lives in a [`WasiCtx`] that the
//! embedder's store data exposes through [`WasiView`].
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use twig_component::{HostContext, HostError, Linker, Resource, Val};

mod streams;
pub use streams::{InputStream, OutputStream, StreamError};

/// The WASI version the host implements; any 0.2.x import links to it.
pub const WASI_VERSION: &str = "0.2.6";

/// Largest single read/write the streams accept, so a guest cannot make the
/// host allocate without bound.
const MAX_IO_CHUNK: u64 = 1 << 20;

/// Host-side objects behind WASI resource handles.
enum Object {
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
    fn describe(&self) -> String {
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

/// Where a guest's standard output and error go.
#[derive(Clone, Default)]
pub struct Capture {
    pub stdout: Arc<Mutex<Vec<u8>>>,
    pub stderr: Arc<Mutex<Vec<u8>>>,
    /// `wasi:logging` records, one `[level] context: message` line each.
    pub log: Arc<Mutex<Vec<u8>>>,
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

    fn insert(&mut self, o: Object) -> Result<u32, HostError> {
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

    fn get(&self, rep: u32) -> Result<&Object, HostError> {
        self.objects
            .get(&rep)
            .ok_or_else(|| HostError::new(format!("unknown WASI object {rep}")))
    }

    fn next_insecure(&mut self) -> u64 {
        // xorshift64*: fast, not for secrets (that is what `random` is for).
        let mut x = self.insecure_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.insecure_state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Writes guest output: complete lines go to `tracing`, everything to
    /// the capture buffer.
    fn write_out(&mut self, component: &str, stderr: bool, data: &[u8]) {
        let (buf, name) = if stderr {
            (&mut self.line_err, "stderr")
        } else {
            (&mut self.line_out, "stdout")
        };
        if let Some(c) = &self.capture {
            let target = if name == "stderr" {
                &c.stderr
            } else {
                &c.stdout
            };
            if let Ok(mut v) = target.lock() {
                v.extend_from_slice(data);
            }
        }
        buf.extend_from_slice(data);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]);
            tracing::info!(target: "twig::guest", component, stream = name, "{text}");
        }
        // Keep partial lines bounded.
        if buf.len() > 64 * 1024 {
            let text = String::from_utf8_lossy(buf).into_owned();
            buf.clear();
            tracing::info!(target: "twig::guest", component, stream = name, "{text}");
        }
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

fn iface(name: &str) -> String {
    format!("{name}@{WASI_VERSION}")
}

fn arg_u64(args: &[Val], i: usize) -> Result<u64, HostError> {
    match args.get(i) {
        Some(Val::U64(v)) => Ok(*v),
        _ => Err(HostError::new("expected a u64 argument")),
    }
}

fn arg_res(args: &[Val], i: usize) -> Result<Resource, HostError> {
    match args.get(i) {
        Some(Val::Resource(r)) => Ok(*r),
        _ => Err(HostError::new("expected a resource argument")),
    }
}

/// A `list<u8>` argument, borrowed from the lifted value (see
/// [`Val::bytes`]).
fn arg_bytes(args: &[Val], i: usize) -> Result<std::borrow::Cow<'_, [u8]>, HostError> {
    args.get(i)
        .and_then(Val::bytes)
        .ok_or_else(|| HostError::new("expected list<u8>"))
}

fn ok(v: Option<Val>) -> Val {
    Val::Result(Ok(v.map(Box::new)))
}

fn err(v: Val) -> Val {
    Val::Result(Err(Some(Box::new(v))))
}

fn stream_closed() -> Val {
    err(Val::Variant("closed".into(), None))
}

fn datetime(d: Duration) -> Val {
    Val::Record(vec![
        ("seconds".into(), Val::U64(d.as_secs())),
        ("nanoseconds".into(), Val::U32(d.subsec_nanos())),
    ])
}

/// Blocks until `until`, but never past the call's deadline.
fn sleep_until<T>(cx: &HostContext<'_, T>, until: Instant) -> Result<(), HostError> {
    let now = Instant::now();
    if until <= now {
        return Ok(());
    }
    match cx.deadline() {
        Some(d) if d < until => {
            std::thread::sleep(d.saturating_duration_since(now));
            Err(HostError::deadline())
        }
        _ => {
            std::thread::sleep(until - now);
            Ok(())
        }
    }
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
    add_io(linker, types);
    add_cli(linker, types);
    add_clocks(linker, types);
    add_random(linker);
    add_logging(linker);
    add_filesystem(linker);
    add_sockets(linker, types);
    types
}

fn add_io<T: WasiView + 'static>(linker: &mut Linker<T>, ty: WasiTypes) {
    linker.interface(&iface("wasi:io/error")).func(
        "[method]error.to-debug-string",
        |cx, args, out| {
            let r = arg_res(args, 0)?;
            let msg = cx.data_mut().wasi().get(r.rep)?.describe();
            out.push(Val::String(msg));
            Ok(())
        },
    );

    let poll = linker.interface(&iface("wasi:io/poll"));
    poll.func("[method]pollable.ready", |cx, args, out| {
        let r = arg_res(args, 0)?;
        let ready = cx.data_mut().wasi().pollable_ready(r.rep)?;
        out.push(Val::Bool(ready));
        Ok(())
    });
    poll.func("[method]pollable.block", |cx, args, _out| {
        let r = arg_res(args, 0)?;
        let deadline = cx.deadline();
        match cx.data_mut().wasi().pollable_kind(r.rep)? {
            PollKind::At(Some(at)) => sleep_until(cx, at),
            PollKind::At(None) => Ok(()),
            PollKind::Stream(s) => {
                let w = cx.data_mut().wasi();
                w.wait_stream(s, deadline);
                if !w.stream_ready(s) && deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(HostError::deadline());
                }
                Ok(())
            }
        }
    });
    poll.func("poll", |cx, args, out| {
        let list = match args.first() {
            Some(Val::List(l)) if !l.is_empty() => l.clone(),
            _ => {
                return Err(HostError::new(
                    "poll: the list of pollables must not be empty",
                ))
            }
        };
        let mut reps = Vec::with_capacity(list.len());
        for v in &list {
            match v {
                Val::Resource(r) => reps.push(r.rep),
                _ => return Err(HostError::new("poll: expected pollables")),
            }
        }
        let deadline = cx.deadline();
        // Timers and streams cannot be waited on together with one
        // primitive; check them all, then sleep a little, backing off to
        // 10 ms, until one is ready (or the call's deadline passes).
        let mut nap = Duration::from_micros(100);
        loop {
            let w = cx.data_mut().wasi();
            let mut ready = Vec::new();
            let mut earliest: Option<Instant> = None;
            for (i, rep) in reps.iter().enumerate() {
                if w.pollable_ready(*rep)? {
                    ready.push(Val::U32(i as u32));
                } else if let PollKind::At(Some(at)) = w.pollable_kind(*rep)? {
                    earliest = Some(earliest.map_or(at, |e| e.min(at)));
                }
            }
            if !ready.is_empty() {
                out.push(Val::List(ready));
                return Ok(());
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(HostError::deadline());
            }
            let mut wake = now + nap;
            if let Some(e) = earliest {
                wake = wake.min(e);
            }
            if let Some(d) = deadline {
                wake = wake.min(d);
            }
            std::thread::sleep(wake.saturating_duration_since(now));
            nap = (nap * 2).min(Duration::from_millis(10));
        }
    });

    let streams = linker.interface(&iface("wasi:io/streams"));
    // `skip` is `read` that answers with the count instead of the bytes.
    for (name, blocking, skip) in [
        ("read", false, false),
        ("blocking-read", true, false),
        ("skip", false, true),
        ("blocking-skip", true, true),
    ] {
        streams.func(
            &format!("[method]input-stream.{name}"),
            move |cx, args, out| {
                let r = arg_res(args, 0)?;
                // A read may return less than asked: take no more than the
                // call's lift budget has room for.
                let len = arg_u64(args, 1)?
                    .min(MAX_IO_CHUNK)
                    .min(cx.lift_budget_left()) as usize;
                let res = read_input(cx, r.rep, len, blocking)?;
                if let Ok(bytes) = &res {
                    cx.reserve(bytes.len() as u64)?;
                }
                out.push(match res {
                    Ok(bytes) if skip => ok(Some(Val::U64(bytes.len() as u64))),
                    Ok(bytes) => ok(Some(Val::Bytes(bytes))),
                    Err(e) => stream_error(cx, ty, e)?,
                });
                Ok(())
            },
        );
    }
    let pollable = ty.pollable;
    for which in ["input-stream", "output-stream"] {
        streams.func(
            &format!("[method]{which}.subscribe"),
            move |cx, args, out| {
                let r = arg_res(args, 0)?;
                let w = cx.data_mut().wasi();
                let obj = match w.get(r.rep)? {
                    Object::Input(_) | Object::Output(_) => Object::StreamPollable(r.rep),
                    _ => Object::Pollable(None),
                };
                let rep = w.insert(obj)?;
                out.push(Val::Resource(Resource::host_own(pollable, rep)));
                Ok(())
            },
        );
    }
    streams.func("[method]output-stream.check-write", move |cx, args, out| {
        let r = arg_res(args, 0)?;
        let res = cx.data_mut().wasi().output_room(r.rep)?;
        out.push(match res {
            Ok(n) => ok(Some(Val::U64(n.min(MAX_IO_CHUNK)))),
            Err(e) => stream_error(cx, ty, e)?,
        });
        Ok(())
    });
    for (name, blocking) in [("write", false), ("blocking-write-and-flush", true)] {
        streams.func(
            &format!("[method]output-stream.{name}"),
            move |cx, args, out| {
                let r = arg_res(args, 0)?;
                let data = arg_bytes(args, 1)?;
                if data.len() as u64 > MAX_IO_CHUNK {
                    return Err(HostError::new(format!(
                        "write of {} bytes exceeds the permitted {MAX_IO_CHUNK}",
                        data.len()
                    )));
                }
                write_stream(cx, ty, r.rep, &data, blocking, out)
            },
        );
    }
    for (name, blocking) in [
        ("write-zeroes", false),
        ("blocking-write-zeroes-and-flush", true),
    ] {
        streams.func(
            &format!("[method]output-stream.{name}"),
            move |cx, args, out| {
                let r = arg_res(args, 0)?;
                let len = arg_u64(args, 1)?;
                cx.reserve(len)?;
                if len > MAX_IO_CHUNK {
                    return Err(HostError::new(format!(
                        "write of {len} bytes exceeds the permitted {MAX_IO_CHUNK}"
                    )));
                }
                write_stream(cx, ty, r.rep, &vec![0u8; len as usize], blocking, out)
            },
        );
    }
    for name in ["flush", "blocking-flush"] {
        streams.func(
            &format!("[method]output-stream.{name}"),
            move |cx, args, out| {
                let r = arg_res(args, 0)?;
                let res = match cx.data_mut().wasi().get_mut(r.rep)? {
                    Object::Output(s) => s.flush(),
                    _ => Ok(()),
                };
                out.push(match res {
                    Ok(()) => ok(None),
                    Err(e) => stream_error(cx, ty, e)?,
                });
                Ok(())
            },
        );
    }
    for (name, blocking) in [("splice", false), ("blocking-splice", true)] {
        streams.func(
            &format!("[method]output-stream.{name}"),
            move |cx, args, out| {
                let dst = arg_res(args, 0)?;
                let src = arg_res(args, 1)?;
                let len = arg_u64(args, 2)?.min(MAX_IO_CHUNK) as usize;
                // Take no more than the output accepts now, so nothing read
                // is ever dropped.
                let room = match cx.data_mut().wasi().output_room(dst.rep)? {
                    Ok(n) => n as usize,
                    Err(e) => {
                        out.push(stream_error(cx, ty, e)?);
                        return Ok(());
                    }
                };
                let want = len
                    .min(room.max(if blocking { 1 } else { 0 }))
                    .min(cx.lift_budget_left() as usize);
                let data = match read_input(cx, src.rep, want, blocking)? {
                    Ok(d) => d,
                    Err(e) => {
                        out.push(stream_error(cx, ty, e)?);
                        return Ok(());
                    }
                };
                let n = data.len() as u64;
                cx.reserve(n)?;
                let mut scratch = Vec::new();
                write_stream(cx, ty, dst.rep, &data, blocking, &mut scratch)?;
                out.push(match scratch.pop() {
                    Some(Val::Result(Ok(_))) => ok(Some(Val::U64(n))),
                    Some(other) => other,
                    None => ok(Some(Val::U64(n))),
                });
                Ok(())
            },
        );
    }
}

/// What a pollable waits for.
enum PollKind {
    At(Option<Instant>),
    Stream(u32),
}

impl WasiCtx {
    fn get_mut(&mut self, rep: u32) -> Result<&mut Object, HostError> {
        self.objects
            .get_mut(&rep)
            .ok_or_else(|| HostError::new(format!("unknown WASI object {rep}")))
    }

    /// How many bytes output stream `rep` takes now (`check-write`); stdout
    /// and stderr take any chunk.
    fn output_room(&mut self, rep: u32) -> Result<Result<u64, StreamError>, HostError> {
        Ok(match self.get_mut(rep)? {
            Object::Output(s) => s.check_write(),
            Object::Stdout | Object::Stderr => Ok(MAX_IO_CHUNK),
            _ => Err(StreamError::Closed),
        })
    }

    fn pollable_kind(&self, rep: u32) -> Result<PollKind, HostError> {
        Ok(match self.get(rep)? {
            Object::Pollable(at) => PollKind::At(*at),
            Object::StreamPollable(s) => PollKind::Stream(*s),
            _ => PollKind::At(None),
        })
    }

    fn pollable_ready(&mut self, rep: u32) -> Result<bool, HostError> {
        Ok(match self.pollable_kind(rep)? {
            PollKind::At(Some(at)) => Instant::now() >= at,
            PollKind::At(None) => true,
            PollKind::Stream(s) => self.stream_ready(s),
        })
    }

    /// Whether stream `rep` is ready; a stream that is gone is (its
    /// pollable must not hang the guest).
    fn stream_ready(&mut self, rep: u32) -> bool {
        match self.objects.get_mut(&rep) {
            Some(Object::Input(s)) => s.is_ready(),
            Some(Object::Output(s)) => s.is_ready(),
            _ => true,
        }
    }

    fn wait_stream(&mut self, rep: u32, until: Option<Instant>) {
        match self.objects.get_mut(&rep) {
            Some(Object::Input(s)) => s.wait(until),
            Some(Object::Output(s)) => s.wait(until),
            _ => {}
        }
    }

    /// Adds an embedder's input stream; the result is the `rep` of a
    /// `wasi:io/streams.input-stream` handle ([`WasiTypes::input_stream`]).
    pub fn push_input_stream(&mut self, s: Box<dyn InputStream>) -> Result<u32, HostError> {
        self.insert(Object::Input(s))
    }

    /// Adds an embedder's output stream; the result is the `rep` of a
    /// `wasi:io/streams.output-stream` handle ([`WasiTypes::output_stream`]).
    pub fn push_output_stream(&mut self, s: Box<dyn OutputStream>) -> Result<u32, HostError> {
        self.insert(Object::Output(s))
    }

    /// Removes the embedder stream `rep` if it is still there, whether or
    /// not the guest dropped its handle; returns whether it was. Providers
    /// call it when the request a stream belongs to is over, so a guest
    /// that never drops a body stream cannot fill a pooled instance's
    /// object table; a later use of the stale handle is an error, a later
    /// drop a no-op.
    pub fn remove_stream(&mut self, rep: u32) -> bool {
        match self.objects.get(&rep) {
            Some(Object::Input(_) | Object::Output(_)) => {
                self.objects.remove(&rep);
                true
            }
            _ => false,
        }
    }

    /// Whether the guest still holds the stream `rep` (it has not dropped
    /// the handle). Providers use it to enforce WASI's rule that a child
    /// stream is dropped before its parent is finished.
    pub fn has_stream(&self, rep: u32) -> bool {
        matches!(
            self.objects.get(&rep),
            Some(Object::Input(_) | Object::Output(_))
        )
    }
}

/// The `stream-error` value for `e`: `closed`, or `last-operation-failed`
/// with a new `wasi:io/error` carrying the message.
fn stream_error<T: WasiView>(
    cx: &mut HostContext<'_, T>,
    ty: WasiTypes,
    e: StreamError,
) -> Result<Val, HostError> {
    Ok(match e {
        StreamError::Closed => stream_closed(),
        StreamError::Failed(msg) => {
            let rep = cx.data_mut().wasi().insert(Object::Error(msg))?;
            err(Val::Variant(
                "last-operation-failed".into(),
                Some(Box::new(Val::Resource(Resource::host_own(ty.error, rep)))),
            ))
        }
    })
}

/// Reads up to `len` bytes from input stream `rep`; with `blocking`, waits
/// for at least one byte (or the end) but never past the call's deadline.
fn read_input<T: WasiView>(
    cx: &mut HostContext<'_, T>,
    rep: u32,
    len: usize,
    blocking: bool,
) -> Result<Result<Vec<u8>, StreamError>, HostError> {
    let deadline = cx.deadline();
    let w = cx.data_mut().wasi();
    loop {
        let res = match w.get_mut(rep)? {
            // stdin is always at end of file on a device.
            Object::Stdin => Err(StreamError::Closed),
            Object::Input(s) => s.read(len),
            _ => Err(StreamError::Closed),
        };
        match res {
            Ok(bytes) if bytes.is_empty() && blocking && len > 0 => {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Err(HostError::deadline());
                }
                w.wait_stream(rep, deadline);
            }
            other => return Ok(other),
        }
    }
}

fn write_stream<T: WasiView>(
    cx: &mut HostContext<'_, T>,
    ty: WasiTypes,
    rep: u32,
    data: &[u8],
    blocking: bool,
    out: &mut Vec<Val>,
) -> Result<(), HostError> {
    let component = cx.component().to_string();
    let deadline = cx.deadline();
    let w = cx.data_mut().wasi();
    let res = match w.get_mut(rep)? {
        Object::Stdout => {
            w.write_out(&component, false, data);
            Ok(())
        }
        Object::Stderr => {
            w.write_out(&component, true, data);
            Ok(())
        }
        Object::Output(s) if !blocking => s.write(data),
        Object::Output(_) => {
            // Write in the pieces the stream accepts, waiting for room.
            let mut rest = data;
            loop {
                let Some(Object::Output(s)) = w.objects.get_mut(&rep) else {
                    break Err(StreamError::Closed);
                };
                if rest.is_empty() {
                    break s.flush();
                }
                match s.check_write() {
                    Err(e) => break Err(e),
                    Ok(0) => {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            return Err(HostError::deadline());
                        }
                        s.wait(deadline);
                    }
                    Ok(n) => {
                        let n = (n as usize).min(rest.len());
                        if let Err(e) = s.write(&rest[..n]) {
                            break Err(e);
                        }
                        rest = &rest[n..];
                    }
                }
            }
        }
        _ => Err(StreamError::Closed),
    };
    out.push(match res {
        Ok(()) => ok(None),
        Err(e) => stream_error(cx, ty, e)?,
    });
    Ok(())
}

fn add_cli<T: WasiView + 'static>(linker: &mut Linker<T>, ty: WasiTypes) {
    let env = linker.interface(&iface("wasi:cli/environment"));
    env.func("get-environment", |cx, _args, out| {
        let pairs = cx
            .data_mut()
            .wasi()
            .env
            .iter()
            .map(|(k, v)| Val::Tuple(vec![Val::String(k.clone()), Val::String(v.clone())]))
            .collect();
        out.push(Val::List(pairs));
        Ok(())
    });
    env.func("get-arguments", |cx, _args, out| {
        out.push(Val::List(
            cx.data_mut()
                .wasi()
                .args
                .iter()
                .cloned()
                .map(Val::String)
                .collect(),
        ));
        Ok(())
    });
    env.func("initial-cwd", |_cx, _args, out| {
        out.push(Val::Option(None));
        Ok(())
    });

    let exit = linker.interface(&iface("wasi:cli/exit"));
    exit.func("exit", |_cx, args, _out| {
        let code = match args.first() {
            Some(Val::Result(Ok(_))) => 0,
            _ => 1,
        };
        Err(HostError::exit(code))
    });
    exit.func("exit-with-code", |_cx, args, _out| {
        let code = match args.first() {
            Some(Val::U8(c)) => *c as i32,
            _ => 1,
        };
        Err(HostError::exit(code))
    });

    for (name, func, which, rtype) in [
        ("wasi:cli/stdin", "get-stdin", 0, ty.input_stream),
        ("wasi:cli/stdout", "get-stdout", 1, ty.output_stream),
        ("wasi:cli/stderr", "get-stderr", 2, ty.output_stream),
    ] {
        linker
            .interface(&iface(name))
            .func(func, move |cx, _args, out| {
                let object = match which {
                    0 => Object::Stdin,
                    1 => Object::Stdout,
                    _ => Object::Stderr,
                };
                let rep = cx.data_mut().wasi().insert(object)?;
                out.push(Val::Resource(Resource::host_own(rtype, rep)));
                Ok(())
            });
    }

    // No terminals on a device: every terminal query answers `none`.
    linker.resource(
        &iface("wasi:cli/terminal-input"),
        "terminal-input",
        |_t, _rep| {},
    );
    linker.resource(
        &iface("wasi:cli/terminal-output"),
        "terminal-output",
        |_t, _rep| {},
    );
    for (i, f) in [
        ("wasi:cli/terminal-stdin", "get-terminal-stdin"),
        ("wasi:cli/terminal-stdout", "get-terminal-stdout"),
        ("wasi:cli/terminal-stderr", "get-terminal-stderr"),
    ] {
        linker.interface(&iface(i)).func(f, |_cx, _args, out| {
            out.push(Val::Option(None));
            Ok(())
        });
    }
}

fn add_clocks<T: WasiView + 'static>(linker: &mut Linker<T>, ty: WasiTypes) {
    let pollable = ty.pollable;
    let mono = linker.interface(&iface("wasi:clocks/monotonic-clock"));
    mono.func("now", |cx, _args, out| {
        let start = cx.data_mut().wasi().start;
        out.push(Val::U64(start.elapsed().as_nanos() as u64));
        Ok(())
    });
    mono.func("resolution", |_cx, _args, out| {
        out.push(Val::U64(1));
        Ok(())
    });
    mono.func("subscribe-instant", move |cx, args, out| {
        let when = arg_u64(args, 0)?;
        let w = cx.data_mut().wasi();
        let at = w
            .start
            .checked_add(Duration::from_nanos(when))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 30));
        let rep = w.insert(Object::Pollable(Some(at)))?;
        out.push(Val::Resource(Resource::host_own(pollable, rep)));
        Ok(())
    });
    mono.func("subscribe-duration", move |cx, args, out| {
        let d = arg_u64(args, 0)?;
        let at = Instant::now()
            .checked_add(Duration::from_nanos(d))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 30));
        let rep = cx.data_mut().wasi().insert(Object::Pollable(Some(at)))?;
        out.push(Val::Resource(Resource::host_own(pollable, rep)));
        Ok(())
    });

    let wall = linker.interface(&iface("wasi:clocks/wall-clock"));
    wall.func("now", |_cx, _args, out| {
        out.push(datetime(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        ));
        Ok(())
    });
    wall.func("resolution", |_cx, _args, out| {
        out.push(datetime(Duration::from_nanos(1)));
        Ok(())
    });
}

fn add_random<T: WasiView + 'static>(linker: &mut Linker<T>) {
    let random = linker.interface(&iface("wasi:random/random"));
    random.func("get-random-bytes", |cx, args, out| {
        let len = arg_u64(args, 0)?;
        // The guest chose the length: check the lift budget before
        // allocating it.
        cx.reserve(len)?;
        if len > MAX_IO_CHUNK {
            return Err(HostError::new(format!(
                "get-random-bytes({len}) exceeds the permitted {MAX_IO_CHUNK} bytes"
            )));
        }
        let mut buf = vec![0u8; len as usize];
        getrandom::fill(&mut buf)
            .map_err(|e| HostError::new(format!("no entropy available: {e}")))?;
        out.push(Val::Bytes(buf));
        Ok(())
    });
    random.func("get-random-u64", |_cx, _args, out| {
        let mut buf = [0u8; 8];
        getrandom::fill(&mut buf)
            .map_err(|e| HostError::new(format!("no entropy available: {e}")))?;
        out.push(Val::U64(u64::from_le_bytes(buf)));
        Ok(())
    });
    let insecure = linker.interface(&iface("wasi:random/insecure"));
    insecure.func("get-insecure-random-bytes", |cx, args, out| {
        let len = arg_u64(args, 0)?;
        cx.reserve(len)?;
        if len > MAX_IO_CHUNK {
            return Err(HostError::new(format!(
                "get-insecure-random-bytes({len}) exceeds the permitted {MAX_IO_CHUNK} bytes"
            )));
        }
        let w = cx.data_mut().wasi();
        let buf: Vec<u8> = (0..len).map(|_| w.next_insecure() as u8).collect();
        out.push(Val::Bytes(buf));
        Ok(())
    });
    insecure.func("get-insecure-random-u64", |cx, _args, out| {
        out.push(Val::U64(cx.data_mut().wasi().next_insecure()));
        Ok(())
    });
    linker.interface(&iface("wasi:random/insecure-seed")).func(
        "insecure-seed",
        |cx, _args, out| {
            let w = cx.data_mut().wasi();
            out.push(Val::Tuple(vec![
                Val::U64(w.next_insecure()),
                Val::U64(w.next_insecure()),
            ]));
            Ok(())
        },
    );
}

/// The draft logging interface that `wasmcloud-component` guests import.
pub const LOGGING_INTERFACE: &str = "wasi:logging/logging@0.1.0-draft";

fn add_logging<T: WasiView + 'static>(linker: &mut Linker<T>) {
    linker
        .interface(LOGGING_INTERFACE)
        .func("log", |cx, args, _out| {
            let (level, context, message) = match args {
                [Val::Enum(l), Val::String(c), Val::String(m)] => {
                    (l.as_str(), c.as_str(), m.as_str())
                }
                _ => return Err(HostError::new("log: expected (level, context, message)")),
            };
            let component = cx.component();
            match level {
                "trace" => tracing::trace!(target: "twig::guest", component, context, "{message}"),
                "debug" => tracing::debug!(target: "twig::guest", component, context, "{message}"),
                "info" => tracing::info!(target: "twig::guest", component, context, "{message}"),
                "warn" => tracing::warn!(target: "twig::guest", component, context, "{message}"),
                _ => tracing::error!(target: "twig::guest", component, context, level, "{message}"),
            }
            let line = format!("[{level}] {context}: {message}\n");
            if let Some(c) = &cx.data_mut().wasi().capture {
                if let Ok(mut v) = c.log.lock() {
                    v.extend_from_slice(line.as_bytes());
                }
            }
            Ok(())
        });
}

fn add_filesystem<T: WasiView + 'static>(linker: &mut Linker<T>) {
    let types = iface("wasi:filesystem/types");
    linker.resource(&types, "descriptor", |_t, _rep| {});
    linker.resource(&types, "directory-entry-stream", |_t, _rep| {});
    let fs = linker.interface(&types);
    fs.func("filesystem-error-code", |_cx, _args, out| {
        out.push(Val::Option(None));
        Ok(())
    });
    // With no preopens no descriptor can exist; anything else is denied.
    fs.fallback(|_name, _cx, _args, out| {
        out.push(err(Val::Enum("access".into())));
        Ok(())
    });
    linker.interface(&iface("wasi:filesystem/preopens")).func(
        "get-directories",
        |_cx, _args, out| {
            out.push(Val::List(Vec::new()));
            Ok(())
        },
    );
}

fn add_sockets<T: WasiView + 'static>(linker: &mut Linker<T>, ty: WasiTypes) {
    let network = ty.network;
    linker
        .interface(&iface("wasi:sockets/instance-network"))
        .func("instance-network", move |cx, _args, out| {
            let rep = cx.data_mut().wasi().insert(Object::Network)?;
            out.push(Val::Resource(Resource::host_own(network, rep)));
            Ok(())
        });
    let deny = |_name: &str, _cx: &mut HostContext<'_, T>, _args: &[Val], out: &mut Vec<Val>| {
        out.push(err(Val::Enum("access-denied".into())));
        Ok(())
    };
    let tcp = iface("wasi:sockets/tcp");
    linker.resource(&tcp, "tcp-socket", |_t, _rep| {});
    linker.interface(&tcp).fallback(deny);
    let udp = iface("wasi:sockets/udp");
    for r in [
        "udp-socket",
        "incoming-datagram-stream",
        "outgoing-datagram-stream",
    ] {
        linker.resource(&udp, r, |_t, _rep| {});
    }
    linker.interface(&udp).fallback(deny);
    let lookup = iface("wasi:sockets/ip-name-lookup");
    linker.resource(&lookup, "resolve-address-stream", |_t, _rep| {});
    linker.interface(&lookup).fallback(deny);
    for i in [
        "wasi:sockets/tcp-create-socket",
        "wasi:sockets/udp-create-socket",
        "wasi:sockets/network",
    ] {
        linker.interface(&iface(i)).fallback(deny);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct AtEnd;

    impl InputStream for AtEnd {
        fn read(&mut self, _max: usize) -> Result<Vec<u8>, StreamError> {
            Err(StreamError::Closed)
        }
        fn is_ready(&mut self) -> bool {
            true
        }
        fn wait(&mut self, _until: Option<Instant>) {}
    }

    #[test]
    fn remove_stream_removes_embedder_streams_only() {
        let mut w = WasiCtx::new();
        let s = w.push_input_stream(Box::new(AtEnd)).unwrap();
        let timer = w.insert(Object::Pollable(None)).unwrap();
        assert!(w.has_stream(s));
        assert!(w.remove_stream(s));
        assert!(!w.has_stream(s));
        // Gone already, and other objects are not streams.
        assert!(!w.remove_stream(s));
        assert!(!w.remove_stream(timer));
        assert!(w.get(timer).is_ok());
    }
}
