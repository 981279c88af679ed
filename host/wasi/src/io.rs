//! `wasi:io`: `error`, `poll` and `streams`, over the objects in a
//! [`WasiCtx`]: stdin/stdout/stderr ([`crate::cli`]), timers
//! ([`crate::clocks`]) and the streams embedders push
//! ([`crate::InputStream`], [`crate::OutputStream`]). Blocking calls wait
//! but never past the call's deadline.

use std::time::{Duration, Instant};

use twig_component::blocking::section;
use twig_component::{Args, HostContext, HostError, Linker, Resource, Val};

use crate::{
    iface, InputStream, Object, OutputStream, StreamError, WasiCtx, WasiTypes, WasiView,
    MAX_IO_CHUNK,
};

fn stream_closed() -> Val {
    Val::err(Some(Val::Variant("closed".into(), None)))
}

/// Blocks until `until`, but never past the call's deadline.
fn sleep_until<T>(cx: &HostContext<'_, T>, until: Instant) -> Result<(), HostError> {
    let now = Instant::now();
    if until <= now {
        return Ok(());
    }
    match cx.deadline() {
        Some(d) if d < until => {
            section(|| std::thread::sleep(d.saturating_duration_since(now)));
            Err(HostError::deadline())
        }
        _ => {
            section(|| std::thread::sleep(until - now));
            Ok(())
        }
    }
}

/// One pass of `poll`: the indices of the pollables ready now, and the
/// earliest timer among the others.
fn poll_once(w: &mut WasiCtx, reps: &[u32]) -> Result<(Vec<Val>, Option<Instant>), HostError> {
    let mut ready = Vec::new();
    let mut earliest: Option<Instant> = None;
    for (i, rep) in reps.iter().enumerate() {
        if w.pollable_ready(*rep)? {
            ready.push(Val::U32(i as u32));
        } else if let PollKind::At(Some(at)) = w.pollable_kind(*rep)? {
            earliest = Some(earliest.map_or(at, |e| e.min(at)));
        }
    }
    Ok((ready, earliest))
}

pub(crate) fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>, ty: WasiTypes) {
    linker.interface(&iface("wasi:io/error")).func(
        "[method]error.to-debug-string",
        |cx, args, out| {
            let r = Args::new(args).resource(0)?;
            let msg = cx.data_mut().wasi().get(r.rep)?.describe();
            out.push(Val::String(msg));
            Ok(())
        },
    );

    let poll = linker.interface(&iface("wasi:io/poll"));
    poll.func("[method]pollable.ready", |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        let ready = cx.data_mut().wasi().pollable_ready(r.rep)?;
        out.push(Val::Bool(ready));
        Ok(())
    });
    poll.func("[method]pollable.block", |cx, args, _out| {
        let r = Args::new(args).resource(0)?;
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
        // 10 ms, until one is ready (or the call's deadline passes). The
        // whole wait is one blocking section, entered only if nothing is
        // ready at once.
        let (ready, _) = poll_once(cx.data_mut().wasi(), &reps)?;
        if !ready.is_empty() {
            out.push(Val::List(ready));
            return Ok(());
        }
        let ready = section(|| {
            let mut nap = Duration::from_micros(100);
            loop {
                let (ready, earliest) = poll_once(cx.data_mut().wasi(), &reps)?;
                if !ready.is_empty() {
                    return Ok(ready);
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
        })?;
        out.push(Val::List(ready));
        Ok(())
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
                let a = Args::new(args);
                let r = a.resource(0)?;
                // A read may return less than asked: take no more than the
                // call's lift budget has room for.
                let len = a.u64(1)?.min(MAX_IO_CHUNK).min(cx.lift_budget_left()) as usize;
                let res = read_input(cx, r.rep, len, blocking)?;
                if let Ok(bytes) = &res {
                    cx.reserve(bytes.len() as u64)?;
                }
                out.push(match res {
                    Ok(bytes) if skip => Val::ok(Some(Val::U64(bytes.len() as u64))),
                    Ok(bytes) => Val::ok(Some(Val::Bytes(bytes))),
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
                let r = Args::new(args).resource(0)?;
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
        let r = Args::new(args).resource(0)?;
        let res = cx.data_mut().wasi().output_room(r.rep)?;
        out.push(match res {
            Ok(n) => Val::ok(Some(Val::U64(n.min(MAX_IO_CHUNK)))),
            Err(e) => stream_error(cx, ty, e)?,
        });
        Ok(())
    });
    for (name, blocking) in [("write", false), ("blocking-write-and-flush", true)] {
        streams.func(
            &format!("[method]output-stream.{name}"),
            move |cx, args, out| {
                let a = Args::new(args);
                let r = a.resource(0)?;
                let data = a.bytes(1)?;
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
                let a = Args::new(args);
                let r = a.resource(0)?;
                let len = a.u64(1)?;
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
                let r = Args::new(args).resource(0)?;
                let res = match cx.data_mut().wasi().get_mut(r.rep)? {
                    Object::Output(s) => s.flush(),
                    _ => Ok(()),
                };
                out.push(match res {
                    Ok(()) => Val::ok(None),
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
                let a = Args::new(args);
                let dst = a.resource(0)?;
                let src = a.resource(1)?;
                let len = a.u64(2)?.min(MAX_IO_CHUNK) as usize;
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
                    Some(Val::Result(Ok(_))) => Val::ok(Some(Val::U64(n))),
                    Some(other) => other,
                    None => Val::ok(Some(Val::U64(n))),
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
            Some(Object::Input(s)) => section(|| s.wait(until)),
            Some(Object::Output(s)) => section(|| s.wait(until)),
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
            Val::err(Some(Val::Variant(
                "last-operation-failed".into(),
                Some(Box::new(Val::Resource(Resource::host_own(ty.error, rep)))),
            )))
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
                        section(|| s.wait(deadline));
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
        Ok(()) => Val::ok(None),
        Err(e) => stream_error(cx, ty, e)?,
    });
    Ok(())
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
