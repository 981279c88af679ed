//! Bodies in flight between the network and a guest.
//!
//! A guest runs on a blocking thread and waits with a deadline; hyper runs
//! on the server's async runtime and waits with wakers. A [`Pipe`] is a
//! bounded byte queue between the two: one side is synchronous (the guest's
//! `wasi:io/streams` calls), the other asynchronous (hyper). A mutex-guarded
//! queue with a condition variable for the synchronous side and a stored
//! waker for the asynchronous side is all it takes, and it does not depend
//! on which thread (or runtime) the guest happens to run on.
//!
//! ```text
//!  request:  hyper Incoming ──pump (async)──► Pipe ──► BodyReader (twig_wasi::InputStream) ──► guest
//!  response: guest ──► BodyWriter (twig_wasi::OutputStream) ──► Pipe ──► ResponseBody (hyper Body) ──► socket
//! ```
//!
//! Back-pressure comes from the bound ([`PIPE_CAPACITY`]): the pump stops
//! reading the socket while the guest has not taken what is queued, and a
//! guest's `check-write` answers 0 while the client has not read what was
//! sent. Either side ending is explicit state (`end`, `reader_gone`), not
//! the drop of some handle, because the guest may leak its stream handles
//! (they live in the instance's `WasiCtx`, which outlives one request when
//! instances are pooled).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use hyper::body::{Body, Bytes, Frame, SizeHint};
use twig_wasi::StreamError;

/// Bytes queued in one direction of one request before the producer must
/// wait: enough to keep a socket busy, small enough for a 64 MB board with
/// a handful of requests in flight.
pub(crate) const PIPE_CAPACITY: usize = 64 * 1024;

/// How a producer ended a pipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// All bytes were sent.
    Done,
    /// The body is incomplete; readers see this error.
    Failed(String),
}

struct PipeState {
    chunks: VecDeque<Bytes>,
    buffered: usize,
    end: Option<End>,
    /// The consumer is gone: writes fail, the producer stops.
    reader_gone: bool,
    /// Drop written bytes instead of queueing them (bodies of outgoing
    /// requests, which twig never sends).
    discard: bool,
    /// The asynchronous side's waker (only one side of a pipe is async).
    waker: Option<Waker>,
}

/// A bounded byte queue between a synchronous and an asynchronous side.
pub(crate) struct Pipe {
    state: Mutex<PipeState>,
    cond: Condvar,
}

impl Pipe {
    pub(crate) fn new() -> Arc<Pipe> {
        Arc::new(Pipe {
            state: Mutex::new(PipeState {
                chunks: VecDeque::new(),
                buffered: 0,
                end: None,
                reader_gone: false,
                discard: false,
                waker: None,
            }),
            cond: Condvar::new(),
        })
    }

    /// A pipe that swallows what is written to it.
    pub(crate) fn discarding() -> Arc<Pipe> {
        let p = Pipe::new();
        p.lock().discard = true;
        p
    }

    fn lock(&self) -> MutexGuard<'_, PipeState> {
        // A panic while holding the lock cannot leave the queue half
        // updated (every update is a single push/pop), so carry on.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes both sides after a change.
    fn changed(&self, mut st: MutexGuard<'_, PipeState>) {
        let waker = st.waker.take();
        drop(st);
        self.cond.notify_all();
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Blocks the calling (synchronous) thread until `ready` holds or
    /// `until` passes.
    fn wait_sync(&self, until: Option<Instant>, ready: impl Fn(&PipeState) -> bool) {
        if ready(&self.lock()) {
            return;
        }
        // A real wait: the server may have to hand its other work (this
        // very request's connection among it) to another thread first.
        twig_component::blocking::section(|| self.wait_sync_blocking(until, ready));
    }

    fn wait_sync_blocking(&self, until: Option<Instant>, ready: impl Fn(&PipeState) -> bool) {
        let mut st = self.lock();
        while !ready(&st) {
            match until {
                None => st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner()),
                Some(t) => {
                    let now = Instant::now();
                    if now >= t {
                        return;
                    }
                    st = self
                        .cond
                        .wait_timeout(st, t - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
            }
        }
    }

    // ---- producer side -------------------------------------------------

    /// Room left before the producer must wait (0 when full).
    fn room(st: &PipeState) -> usize {
        PIPE_CAPACITY.saturating_sub(st.buffered)
    }

    /// Queues `data`. Fails once the consumer is gone or the pipe ended.
    pub(crate) fn push(&self, data: Bytes) -> Result<(), StreamError> {
        let mut st = self.lock();
        if st.reader_gone || st.end.is_some() {
            return Err(StreamError::Closed);
        }
        if data.is_empty() || st.discard {
            return Ok(());
        }
        st.buffered += data.len();
        st.chunks.push_back(data);
        self.changed(st);
        Ok(())
    }

    /// Ends the pipe; the first end wins (an abort after a clean finish,
    /// e.g. when the guest's call ends, changes nothing).
    pub(crate) fn end(&self, end: End) {
        let mut st = self.lock();
        if st.end.is_none() {
            st.end = Some(end);
            self.changed(st);
        }
    }

    /// Asynchronous producer: waits for room; `false` when the consumer is
    /// gone and nothing more should be produced.
    pub(crate) async fn wait_room(&self) -> bool {
        poll_fn(|cx| {
            let mut st = self.lock();
            if st.reader_gone || st.end.is_some() {
                Poll::Ready(false)
            } else if Pipe::room(&st) > 0 {
                Poll::Ready(true)
            } else {
                st.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }

    // ---- consumer side -------------------------------------------------

    /// The consumer will read no more: drop what is queued and make the
    /// producer stop.
    pub(crate) fn close_reader(&self) {
        let mut st = self.lock();
        if !st.reader_gone {
            st.reader_gone = true;
            st.chunks.clear();
            st.buffered = 0;
            self.changed(st);
        }
    }

    /// Takes up to `max` bytes: `Ok(None)` when nothing is queued yet,
    /// `Err` at the end (`Closed` after a clean end).
    fn take(&self, max: usize) -> Result<Option<Bytes>, StreamError> {
        let mut st = self.lock();
        if st.reader_gone {
            // The guest finished the body: nothing more will be read.
            return Err(StreamError::Closed);
        }
        if let Some(front) = st.chunks.front_mut() {
            let chunk = if front.len() <= max {
                st.chunks.pop_front().unwrap_or_default()
            } else {
                front.split_to(max)
            };
            st.buffered -= chunk.len();
            self.changed(st);
            return Ok(Some(chunk));
        }
        match &st.end {
            None => Ok(None),
            Some(End::Done) => Err(StreamError::Closed),
            Some(End::Failed(m)) => Err(StreamError::Failed(m.clone())),
        }
    }

    fn readable(st: &PipeState) -> bool {
        !st.chunks.is_empty() || st.end.is_some() || st.reader_gone
    }

    /// Why the producer failed the pipe, if it did.
    pub(crate) fn failure(&self) -> Option<String> {
        match &self.lock().end {
            Some(End::Failed(m)) => Some(m.clone()),
            _ => None,
        }
    }
}

// ---- the guest's ends -----------------------------------------------------

/// Closes a request body's pipe for reading when the last holder goes:
/// the `incoming-request` before `consume`, the `incoming-body`, and the
/// guest's `input-stream` each hold one, so the body stays readable while
/// any of them can still read it (WASI lets a stream outlive its body).
pub(crate) struct ReaderGuard(pub(crate) Arc<Pipe>);

impl Drop for ReaderGuard {
    fn drop(&mut self) {
        self.0.close_reader();
    }
}

/// The request body as a guest's `input-stream`.
pub(crate) struct BodyReader {
    pub(crate) guard: Arc<ReaderGuard>,
}

impl twig_wasi::InputStream for BodyReader {
    fn read(&mut self, max: usize) -> Result<Vec<u8>, StreamError> {
        let pipe = &self.guard.0;
        if max == 0 {
            // A zero-length read still reports the end of the stream.
            return match pipe.take(0) {
                Err(e) => Err(e),
                Ok(_) => Ok(Vec::new()),
            };
        }
        Ok(pipe.take(max)?.map(|b| b.to_vec()).unwrap_or_default())
    }

    fn is_ready(&mut self) -> bool {
        Pipe::readable(&self.guard.0.lock())
    }

    fn wait(&mut self, until: Option<Instant>) {
        self.guard.0.wait_sync(until, Pipe::readable);
    }
}

/// The response body as a guest's `output-stream`.
pub(crate) struct BodyWriter {
    pub(crate) pipe: Arc<Pipe>,
    /// Shared with the `outgoing-body`, which checks the total against a
    /// declared `content-length` when it is finished.
    pub(crate) written: Arc<std::sync::atomic::AtomicU64>,
    /// The declared `content-length`, if any: writing past it fails.
    pub(crate) limit: Option<u64>,
}

impl BodyWriter {
    fn state_error(st: &PipeState) -> Option<StreamError> {
        if st.reader_gone {
            return Some(StreamError::Closed);
        }
        match &st.end {
            None => None,
            Some(End::Done) => Some(StreamError::Closed),
            Some(End::Failed(m)) => Some(StreamError::Failed(m.clone())),
        }
    }
}

impl twig_wasi::OutputStream for BodyWriter {
    fn check_write(&mut self) -> Result<u64, StreamError> {
        let st = self.pipe.lock();
        if let Some(e) = BodyWriter::state_error(&st) {
            return Err(e);
        }
        Ok(Pipe::room(&st) as u64)
    }

    fn write(&mut self, data: &[u8]) -> Result<(), StreamError> {
        use std::sync::atomic::Ordering;
        {
            let st = self.pipe.lock();
            if let Some(e) = BodyWriter::state_error(&st) {
                return Err(e);
            }
            // WASI: a write larger than `check-write` allowed is the
            // guest's error. Room only grows between the two calls (only
            // this side adds), so this never fails a well-behaved guest.
            if data.len() > Pipe::room(&st) && !st.discard {
                return Err(StreamError::Failed(format!(
                    "write of {} bytes exceeds the {} bytes check-write permitted",
                    data.len(),
                    Pipe::room(&st)
                )));
            }
        }
        let total = self.written.load(Ordering::Relaxed) + data.len() as u64;
        if let Some(limit) = self.limit {
            if total > limit {
                let msg =
                    format!("response body exceeds its declared content-length of {limit} bytes");
                self.pipe.end(End::Failed(msg.clone()));
                return Err(StreamError::Failed(msg));
            }
        }
        self.written.store(total, Ordering::Relaxed);
        self.pipe.push(Bytes::copy_from_slice(data))
    }

    fn is_ready(&mut self) -> bool {
        let st = self.pipe.lock();
        BodyWriter::state_error(&st).is_some() || Pipe::room(&st) > 0
    }

    fn wait(&mut self, until: Option<Instant>) {
        self.pipe.wait_sync(until, |st| {
            BodyWriter::state_error(st).is_some() || Pipe::room(st) > 0
        });
    }
}

// ---- hyper's ends ---------------------------------------------------------

/// An error that ends a response body early; hyper then drops the
/// connection, so the client sees a truncated response, never a complete
/// wrong one.
#[derive(Debug)]
pub(crate) struct BodyAborted(pub(crate) String);

impl std::fmt::Display for BodyAborted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "response body aborted: {}", self.0)
    }
}

impl std::error::Error for BodyAborted {}

/// A response body for hyper: a fixed one the server made itself, or the
/// guest's stream.
pub(crate) enum ResponseBody {
    Fixed(Option<Bytes>),
    /// `flushed`: the failure was already held back once (see poll_frame).
    Stream {
        pipe: Arc<Pipe>,
        flushed: bool,
    },
}

impl ResponseBody {
    pub(crate) fn text(s: impl Into<String>) -> ResponseBody {
        ResponseBody::Fixed(Some(Bytes::from(s.into())))
    }

    pub(crate) fn empty() -> ResponseBody {
        ResponseBody::Fixed(None)
    }

    pub(crate) fn stream(pipe: Arc<Pipe>) -> ResponseBody {
        ResponseBody::Stream {
            pipe,
            flushed: false,
        }
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = BodyAborted;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyAborted>>> {
        match self.get_mut() {
            ResponseBody::Fixed(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            ResponseBody::Stream { pipe, flushed } => {
                let mut st = pipe.lock();
                if let Some(chunk) = st.chunks.pop_front() {
                    st.buffered -= chunk.len();
                    pipe.changed(st);
                    return Poll::Ready(Some(Ok(Frame::data(chunk))));
                }
                match &st.end {
                    Some(End::Done) => Poll::Ready(None),
                    Some(End::Failed(_)) if !*flushed => {
                        // hyper drops the connection on a body error
                        // without flushing what it buffered, which can be
                        // the whole head: the client would see nothing at
                        // all. Pending once lets hyper flush the head and
                        // the data so far; then the error cuts the body.
                        *flushed = true;
                        cx.waker().wake_by_ref();
                        Poll::Pending
                    }
                    Some(End::Failed(m)) => Poll::Ready(Some(Err(BodyAborted(m.clone())))),
                    None => {
                        st.waker = Some(cx.waker().clone());
                        Poll::Pending
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ResponseBody::Fixed(b) => b.is_none(),
            ResponseBody::Stream { pipe, .. } => {
                let st = pipe.lock();
                st.chunks.is_empty() && st.end == Some(End::Done)
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ResponseBody::Fixed(Some(b)) => SizeHint::with_exact(b.len() as u64),
            ResponseBody::Fixed(None) => SizeHint::with_exact(0),
            ResponseBody::Stream { .. } => SizeHint::default(),
        }
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        // hyper dropped the body: the client is gone (or the response was
        // for a HEAD request). Further guest writes report `closed`.
        if let ResponseBody::Stream { pipe, .. } = self {
            pipe.close_reader();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use twig_wasi::{InputStream, OutputStream};

    #[test]
    fn reader_sees_data_then_end() {
        let p = Pipe::new();
        let mut r = BodyReader {
            guard: Arc::new(ReaderGuard(p.clone())),
        };
        assert!(!r.is_ready());
        assert_eq!(r.read(10).unwrap(), b"");
        p.push(Bytes::from_static(b"hello world")).unwrap();
        assert!(r.is_ready());
        assert_eq!(r.read(5).unwrap(), b"hello");
        assert_eq!(r.read(100).unwrap(), b" world");
        p.end(End::Done);
        assert_eq!(r.read(1), Err(StreamError::Closed));
        assert_eq!(r.read(0), Err(StreamError::Closed));
    }

    #[test]
    fn reader_sees_failure_and_wait_respects_deadline() {
        let p = Pipe::new();
        let mut r = BodyReader {
            guard: Arc::new(ReaderGuard(p.clone())),
        };
        let t = Instant::now();
        r.wait(Some(t + Duration::from_millis(30)));
        assert!(t.elapsed() >= Duration::from_millis(30));
        let p2 = p.clone();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            p2.end(End::Failed("too big".into()));
        });
        r.wait(None);
        h.join().unwrap();
        assert_eq!(r.read(1), Err(StreamError::Failed("too big".into())));
    }

    #[test]
    fn writer_backpressure_and_close() {
        let p = Pipe::new();
        let mut w = BodyWriter {
            pipe: p.clone(),
            written: Default::default(),
            limit: None,
        };
        assert_eq!(w.check_write().unwrap(), PIPE_CAPACITY as u64);
        w.write(&vec![0u8; PIPE_CAPACITY]).unwrap();
        assert_eq!(w.check_write().unwrap(), 0);
        assert!(!w.is_ready());
        assert!(w.write(b"x").is_err(), "write past check-write must fail");
        assert_eq!(p.take(10).unwrap().unwrap().len(), 10);
        assert_eq!(w.check_write().unwrap(), 10);
        p.close_reader();
        assert_eq!(w.check_write(), Err(StreamError::Closed));
        assert!(w.is_ready());
    }

    #[test]
    fn writer_enforces_content_length() {
        let p = Pipe::new();
        let mut w = BodyWriter {
            pipe: p.clone(),
            written: Default::default(),
            limit: Some(4),
        };
        w.write(b"abc").unwrap();
        assert!(matches!(w.write(b"de"), Err(StreamError::Failed(_))));
        assert!(matches!(p.lock().end, Some(End::Failed(_))));
    }
}
