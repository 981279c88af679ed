//! The HTTP/1.1 listener: hyper on a one-worker tokio runtime of its own;
//! a guest runs on the thread that read its request.
//!
//! ```text
//!  "twig-http" worker (async)
//!  accept ─► conn::Table (evict longest-idle / refuse) ─► connection task (hyper http1 + watchdog)
//!              request ─► content-length > max? 413
//!                       ─► no free slot? 503
//!                       ─► pump (polled by the connection task): Incoming ─► Pipe ─► guest reads input-stream
//!                       ─► no guest inline? ─► guest task, next on this worker ─► Dispatch::dispatch ─► call_handler
//!                          else spawn_blocking (a blocking thread, ≤ max_concurrent) ─► the same
//!              wait for: outcome (oneshot) ◄──────────────────────────────────── response-outparam.set
//!                        | body over limit (413) | request_timeout (504)
//!              response head ─► socket
//!              ResponseBody ◄── Pipe ◄────────────────────────────────────────── guest writes output-stream
//! ```
//!
//! Why inline: at one connection, handing each request to another thread
//! and its answer back cost three context switches a request where one
//! thread doing everything costs one (BENCHMARKS.md, "HTTP hello-world").
//! The interpreter cannot yield mid-call, so an inline guest holds the
//! worker; three rules keep that safe. The guest runs in a task of its
//! own, not inside the connection's, so the connection can send the head
//! and stream the body from another thread while the guest still runs.
//! Every wait inside a guest call (`twig_component::blocking`: a body still
//! arriving, a full response pipe, a timer, a `fsync: always` write, a busy
//! instance pool) is a blocking section, and so is the rest of a call that
//! outlasts its first fuel slice (2 M units, a few milliseconds); for an
//! inline guest the section's hook, `block_in_place`, first hands the
//! worker, with every other task, to a fresh thread: nothing the guest
//! waits for waits behind it, and no other connection waits longer than
//! one slice. And a guest runs inline only when its request is alone (no
//! other guest running, no other connection's request begun in the last
//! 5 ms): under concurrent load the guests run on blocking threads, in
//! parallel, as every guest did before, rather than one after another on
//! the worker while the other cores idle.

//! One small runtime per server keeps the server independent of how the
//! host runs its own async work, and `stop` can shut it down without
//! touching anything else.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::poll_fn;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::body::{Body, Incoming};
use hyper::http::{header, HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{watch, Semaphore};

use crate::body::{End, Pipe, ResponseBody};
use crate::conn::{Admitted, Busy, ConnLimits, Refused, Table, Watched};
use crate::request::{IncomingRequest, Outcome, ResponseOutparam};

/// wasmCloud's http-server provider listens here when no `address` is
/// given (`wasmcloud_core::http::default_listen_address`).
pub const DEFAULT_ADDRESS: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 8000));

/// The server runtime's worker threads: one. A second would only take
/// turns with it at one connection (tokio hands the I/O driver between idle
/// workers: two context switches a request more, measured), and an inline
/// guest gives its worker up when it waits or outlasts one fuel slice, so
/// the worker is never held for longer than that (see the module doc).
const WORKERS: usize = 1;

/// Largest request head (and socket read buffer) per connection.
const MAX_BUF: usize = 64 * 1024;
/// How long `stop` lets in-flight requests finish.
const STOP_GRACE: Duration = Duration::from_secs(2);
/// How long a request waits for a free slot before it gets 503.
const SLOT_WAIT: Duration = Duration::from_millis(100);
/// How long a request with a body waits for the body's first bytes before
/// its guest starts anyway. A guest's non-blocking `read` returns what has
/// arrived; a guest that stops at the first empty read (there are such,
/// and `wasmtime serve` gives them the data: hyper has usually read the
/// first bytes with the head) must not race bytes still on their way from
/// the socket. Bounded, so a client that sends a head and holds its body
/// back only delays its own guest.
const FIRST_BODY_WAIT: Duration = Duration::from_secs(1);
/// After answering 413, the rest of the body is read and dropped (this
/// much, this long at most) so the client reads the answer instead of a
/// connection reset.
const DRAIN_BYTES: u64 = 4 << 20;
const DRAIN_TIME: Duration = Duration::from_secs(1);

/// How a server listens and what it allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Where to listen (`address`; default [`DEFAULT_ADDRESS`]).
    pub address: SocketAddr,
    /// How long a guest may take to set its response (`timeout_ms`); then
    /// the client gets 504. Default 30 s.
    pub request_timeout: Duration,
    /// Largest request body in bytes (`max_request_body`); beyond it the
    /// guest's stream fails and, if no response started yet, the client
    /// gets 413. Default 16 MiB.
    pub max_request_body: u64,
    /// Requests handled at once, i.e. blocking threads running guests
    /// (`max_concurrent`); a request that finds no slot free within 100 ms
    /// gets 503. Default 8.
    pub max_concurrent: usize,
    /// Open connections (`max_connections`), busy or idle; a new one past
    /// it closes the connection idle the longest, or is refused with 503
    /// if none is idle. Default 256.
    pub max_connections: usize,
    /// Open connections from one IP address (`max_connections_per_peer`);
    /// past it the same rule applies among that address's connections.
    /// Default 32.
    pub max_connections_per_peer: usize,
    /// How long a client may take to send a whole request head, from its
    /// first byte (from accept on a new connection) (`header_timeout_ms`);
    /// then the connection is closed. Default 5 s.
    pub header_timeout: Duration,
    /// How long a keep-alive connection may stay idle between requests,
    /// and a client may go without reading any of its response
    /// (`idle_timeout_ms`); then the connection is closed. Default 15 s.
    pub idle_timeout: Duration,
    /// Keep connections open between requests (`disable_keepalive=true`
    /// turns it off, as in wasmCloud). Default on.
    pub keep_alive: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            address: DEFAULT_ADDRESS,
            request_timeout: Duration::from_secs(30),
            max_request_body: 16 << 20,
            max_concurrent: 8,
            max_connections: 256,
            max_connections_per_peer: 32,
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
            keep_alive: true,
        }
    }
}

/// wasmCloud http-server settings twig does not implement; accepted with a
/// warning so one manifest serves both.
const WASMCLOUD_UNSUPPORTED: &[&str] = &[
    "cache_control",
    "readonly_mode",
    "cors_allowed_origins",
    "cors_allowed_headers",
    "cors_allowed_methods",
    "cors_exposed_headers",
    "cors_max_age_secs",
    "tls_cert_file",
    "tls_priv_key_file",
    "config_b64",
    "config_json",
];

/// Keys of wasmCloud's routing modes, read by [`crate::Routing`] and the
/// host (a link's `path` or `host`), not by the listener's settings.
const ROUTING_KEYS: &[&str] = &["routing_mode", "path", "host", "header"];

impl ServerConfig {
    /// Reads a link's configuration, with wasmCloud's key names: `address`
    /// (or the older `port`, meaning 127.0.0.1:PORT), `timeout_ms`,
    /// `disable_keepalive`, and twig's own `max_request_body`,
    /// `max_concurrent`, `max_connections`, `max_connections_per_peer`,
    /// `header_timeout_ms`, `idle_timeout_ms`. Keys are case-insensitive as in
    /// wasmCloud. Other keys are ignored with a warning; a bad value is an
    /// error naming its key.
    pub fn from_link_config(cfg: &BTreeMap<String, String>) -> Result<ServerConfig, String> {
        let mut c = ServerConfig::default();
        let mut address = None;
        let mut default_address = None;
        let mut port = None;
        for (key, value) in cfg {
            let k = key.to_ascii_lowercase();
            let v = value.trim();
            let bad = |what: &str| {
                format!("http server config `{key}`: invalid value `{value}` ({what})")
            };
            match k.as_str() {
                "address" => {
                    address = Some(
                        v.parse::<SocketAddr>()
                            .map_err(|_| bad("expected a socket address such as 0.0.0.0:8000"))?,
                    )
                }
                // The provider config's fallback for links without an
                // `address` (wasmCloud's `default_address`).
                "default_address" => {
                    default_address = Some(
                        v.parse::<SocketAddr>()
                            .map_err(|_| bad("expected a socket address such as 0.0.0.0:8000"))?,
                    )
                }
                k if ROUTING_KEYS.contains(&k) => {}
                "port" => {
                    port = Some(
                        v.parse::<u16>()
                            .map_err(|_| bad("expected a port number"))?,
                    )
                }
                "timeout_ms" => c.request_timeout = millis(v).ok_or_else(|| bad(MS))?,
                "header_timeout_ms" => c.header_timeout = millis(v).ok_or_else(|| bad(MS))?,
                "idle_timeout_ms" => c.idle_timeout = millis(v).ok_or_else(|| bad(MS))?,
                "max_request_body" => {
                    c.max_request_body = v.parse().map_err(|_| bad("expected a number of bytes"))?
                }
                "max_concurrent" => {
                    c.max_concurrent = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=1024).contains(n))
                        .ok_or_else(|| bad("expected 1 to 1024"))?
                }
                "max_connections" => {
                    c.max_connections = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=65536).contains(n))
                        .ok_or_else(|| bad("expected 1 to 65536"))?
                }
                "max_connections_per_peer" => {
                    c.max_connections_per_peer = v
                        .parse::<usize>()
                        .ok()
                        .filter(|n| (1..=65536).contains(n))
                        .ok_or_else(|| bad("expected 1 to 65536"))?
                }
                "disable_keepalive" => {
                    c.keep_alive = !v
                        .to_ascii_lowercase()
                        .parse::<bool>()
                        .map_err(|_| bad("expected true or false"))?
                }
                k if WASMCLOUD_UNSUPPORTED.contains(&k) || k.starts_with("cors_") => {
                    tracing::warn!(target: "twig::http", key = %key, "http server config key is not supported by twig; ignored")
                }
                _ => {
                    tracing::warn!(target: "twig::http", key = %key, "unknown http server config key; ignored")
                }
            }
        }
        if let Some(a) = address {
            c.address = a;
        } else if let Some(p) = port {
            c.address = SocketAddr::from((Ipv4Addr::LOCALHOST, p));
        } else if let Some(a) = default_address {
            c.address = a;
        }
        Ok(c)
    }
}

const MS: &str = "expected milliseconds > 0";

/// A duration in whole milliseconds, > 0.
fn millis(v: &str) -> Option<Duration> {
    v.parse::<u64>()
        .ok()
        .filter(|ms| *ms > 0)
        .map(Duration::from_millis)
}

/// Runs one request on the target component; implemented by the host.
pub trait Dispatch: Send + Sync + 'static {
    /// Called on a blocking thread: run the target component's
    /// `wasi:http/incoming-handler.handle` on one of its instances (usually
    /// with [`crate::call_handler`]). An `Err` is logged with the
    /// component's name; if no response was set the client gets 500.
    fn dispatch(&self, req: IncomingRequest, out: ResponseOutparam) -> Result<(), String>;

    /// Called on the connection's task as soon as the request's head is
    /// read, before the server waits for its body or a slot: a status and
    /// reason here answers the request at once, without a guest (a router
    /// with no route for it). The default refuses nothing.
    fn refuse(&self, _req: &IncomingRequest) -> Option<(u16, &'static str)> {
        None
    }
}

/// What every connection of a server shares.
struct Shared {
    cfg: ServerConfig,
    target: String,
    dispatch: Arc<dyn Dispatch>,
    /// One permit per request being handled by a guest.
    slots: Arc<Semaphore>,
    /// Set while a guest runs inline (at most one does).
    inline: Arc<AtomicBool>,
    /// Numbers connections, for `recent`.
    next_conn: AtomicU64,
    /// The connection whose request began last, and when.
    recent: Recent,
    /// The server's own clock origin (for `recent`).
    started: Instant,
}

/// How long after another connection's request began a request is not
/// run inline: longer than the gap between two connections' requests under
/// any load worth spreading over threads, shorter than a human's.
const INLINE_QUIET: Duration = Duration::from_millis(5);

/// The last request's connection and start time, in one atomic word
/// (connection number in the high 24 bits, start in µs in the low 40:
/// 12 days before it wraps, which at worst costs one inline decision).
#[derive(Default)]
struct Recent(AtomicU64);

impl Recent {
    /// Records a request of connection `conn` begun at `now` (since the
    /// server started); true if the request before it was this
    /// connection's, or began more than [`INLINE_QUIET`] ago.
    fn note(&self, conn: u64, now: Duration) -> bool {
        const MICROS: u64 = (1 << 40) - 1;
        let now_us = now.as_micros() as u64 & MICROS;
        let me = conn & ((1 << 24) - 1);
        let prev = self.0.swap((me << 40) | now_us, Ordering::Relaxed);
        let (prev_conn, prev_us) = (prev >> 40, prev & MICROS);
        prev == 0
            || prev_conn == me
            || now_us.wrapping_sub(prev_us) & MICROS > INLINE_QUIET.as_micros() as u64
    }
}

/// The right to run one guest inline on the worker thread; given back on
/// drop, also when the guest panics.
struct Inline(Arc<AtomicBool>);

impl Inline {
    fn claim(flag: &Arc<AtomicBool>) -> Option<Inline> {
        flag.compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .ok()
            .map(|_| Inline(flag.clone()))
    }
}

impl Drop for Inline {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// The blocking-section hook of an inline guest: before it waits (or
/// computes past its first fuel slice), the worker's other tasks go to
/// another thread (`block_in_place`), so that nothing the wait depends on
/// (this very connection's socket, say) waits behind it.
fn hand_off(wait: &mut dyn FnMut()) {
    tokio::task::block_in_place(wait);
}

/// A running HTTP server for one component. Stops on [`HttpServer::stop`]
/// or drop.
pub struct HttpServer {
    addr: SocketAddr,
    target: String,
    stop_tx: Option<watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HttpServer {
    /// Binds `cfg.address` (errors, e.g. address in use, are returned
    /// here) and serves requests to `target_name` through `dispatch` on a
    /// thread of its own.
    pub fn start(
        cfg: ServerConfig,
        target_name: &str,
        dispatch: Arc<dyn Dispatch>,
    ) -> Result<HttpServer, String> {
        if cfg.max_concurrent == 0 || cfg.max_connections == 0 || cfg.max_connections_per_peer == 0
        {
            return Err(
                "http server: max_concurrent, max_connections and max_connections_per_peer must be at least 1"
                    .into(),
            );
        }
        let std_listener = std::net::TcpListener::bind(cfg.address)
            .map_err(|e| format!("{target_name}: cannot listen on {}: {e}", cfg.address))?;
        std_listener
            .set_nonblocking(true)
            .map_err(|e| format!("{target_name}: listener: {e}"))?;
        let addr = std_listener
            .local_addr()
            .map_err(|e| format!("{target_name}: listener: {e}"))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKERS)
            .enable_io()
            .enable_time()
            // Blocking threads: the worker itself, the guests beyond the
            // inline one (the slot semaphore keeps those at max_concurrent;
            // this is a backstop), and the thread that takes over the
            // worker from an inline guest that waits or runs long.
            .max_blocking_threads(cfg.max_concurrent + WORKERS + 2)
            .thread_name("twig-http")
            .build()
            .map_err(|e| format!("{target_name}: cannot start the HTTP runtime: {e}"))?;
        let listener = {
            let _enter = rt.enter();
            tokio::net::TcpListener::from_std(std_listener)
                .map_err(|e| format!("{target_name}: listener: {e}"))?
        };
        let (stop_tx, stop_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            slots: Arc::new(Semaphore::new(cfg.max_concurrent)),
            inline: Arc::new(AtomicBool::new(false)),
            next_conn: AtomicU64::new(1),
            recent: Recent::default(),
            started: Instant::now(),
            cfg,
            target: target_name.to_string(),
            dispatch,
        });
        let thread = std::thread::Builder::new()
            .name("twig-http".into())
            .spawn(move || {
                // The accept loop is a task on the worker, not this
                // thread's `block_on`: sharing the worker with the
                // connection tasks, it cannot take in a flood of
                // connects faster than their heads are read (a fresh
                // client would be evicted before it was read).
                let accept = rt.spawn(serve(listener, shared, stop_rx));
                if let Err(e) = rt.block_on(accept) {
                    // The accept loop panicked: the listener is gone.
                    tracing::error!(target: "twig::http", "HTTP accept loop ended abnormally: {e}");
                }
                // Connections past the grace period are cut; guests still
                // running finish on their own (their writes then fail).
                rt.shutdown_timeout(Duration::from_millis(100));
            })
            .map_err(|e| format!("{target_name}: cannot start the HTTP thread: {e}"))?;
        tracing::info!(target: "twig::http", component = %target_name, %addr, "HTTP server listening");
        Ok(HttpServer {
            addr,
            target: target_name.to_string(),
            stop_tx: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening, lets requests in flight finish for up to 2 s, then
    /// closes every connection. Returns once the server thread has ended.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(tx) = self.stop_tx.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
            tracing::info!(target: "twig::http", component = %self.target, addr = %self.addr, "HTTP server stopped");
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let cfg = &shared.cfg;
    let table = Table::new(ConnLimits {
        max_connections: cfg.max_connections,
        max_per_peer: cfg.max_connections_per_peer,
        header_timeout: cfg.header_timeout,
        idle_timeout: cfg.idle_timeout,
    });
    // Connection tasks still running (an evicted one leaves the table at
    // once but its task a moment later): `stop` waits for zero.
    let (live_tx, mut live_rx) = watch::channel(0usize);
    let live_tx = Arc::new(live_tx);
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .keep_alive(cfg.keep_alive)
        .max_buf_size(MAX_BUF)
        .timer(TokioTimer::new())
        // Header and idle timeouts are the watchdog's (see conn.rs for why
        // not hyper's one timer).
        .header_read_timeout(None);
    let mut refusals = RefusalLog::default();
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.changed() => break,
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of file descriptors and the like: back off
                    // rather than spin.
                    tracing::warn!(target: "twig::http", component = %shared.target, "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let admitted = match table.admit(peer.ip()) {
            Ok((a, evicted)) => {
                if evicted > 0 {
                    tracing::debug!(target: "twig::http", component = %shared.target, %peer, evicted, "closed idle connections to admit a new one");
                }
                a
            }
            Err(why) => {
                refusals.note(&shared.target, why, table.len());
                // Best effort, never waiting: the answer fits the socket
                // buffer of a new connection.
                let _ = stream.try_write(REFUSED_RESPONSE);
                // As after an admitted connect: a flood of refused
                // connects must not keep the worker from the others.
                tokio::task::yield_now().await;
                continue;
            }
        };
        let local = stream.local_addr().unwrap_or(listener_addr(&listener));
        // Responses are written in whole frames; do not let Nagle hold the
        // last one back.
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let stop = stop.clone();
        let builder = http1.clone();
        let limits = *table.limits();
        live_tx.send_modify(|n| *n += 1);
        let live = LiveGuard(live_tx.clone());
        tokio::spawn(async move {
            let _live = live;
            connection(shared, builder, stream, peer, local, admitted, limits, stop).await;
        });
        // Let the new connection's task (and any woken by the I/O driver)
        // run before the next accept, so connects are taken in no faster
        // than connections are served.
        tokio::task::yield_now().await;
    }
    drop(listener);
    let _ = tokio::time::timeout(STOP_GRACE, live_rx.wait_for(|n| *n == 0)).await;
}

/// What a refused connection reads before it is closed.
const REFUSED_RESPONSE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: 21\r\n\r\ntoo many connections\n";

fn listener_addr(l: &tokio::net::TcpListener) -> SocketAddr {
    l.local_addr().unwrap_or(DEFAULT_ADDRESS)
}

/// Counts one live connection task.
struct LiveGuard(Arc<watch::Sender<usize>>);

impl Drop for LiveGuard {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n -= 1);
    }
}

/// Refused connections, logged at most once a minute so a flood does not
/// become a log flood.
#[derive(Default)]
struct RefusalLog {
    since_last: u64,
    last: Option<Instant>,
}

impl RefusalLog {
    fn note(&mut self, target: &str, why: Refused, open: usize) {
        self.since_last += 1;
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(60))
        {
            return;
        }
        tracing::warn!(target: "twig::http", component = %target, refused = self.since_last, open, "refusing new connections: {why} and none idle (max_connections, max_connections_per_peer)");
        self.since_last = 0;
        self.last = Some(Instant::now());
    }
}

#[allow(clippy::too_many_arguments)]
/// Serves one connection until it closes, times out, is evicted or the
/// server stops.
async fn connection(
    shared: Arc<Shared>,
    builder: hyper::server::conn::http1::Builder,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    admitted: Admitted,
    limits: ConnLimits,
    mut stop: watch::Receiver<bool>,
) {
    let state = admitted.state.clone();
    let conn_id = shared.next_conn.fetch_add(1, Ordering::Relaxed);
    let svc_shared = shared.clone();
    let svc_state = state.clone();
    let svc = hyper::service::service_fn(move |req| {
        handle(
            svc_shared.clone(),
            svc_state.begin_request(),
            conn_id,
            local,
            req,
        )
    });
    let io = TokioIo::new(Watched::new(stream, state.clone()));
    let conn = builder.serve_connection(io, svc);
    tokio::pin!(conn);
    // The watchdog: sleeps until the connection's deadline, and is woken
    // when what the connection does moves it. No polling.
    let res = loop {
        let deadline = state.deadline(&limits);
        let at = deadline.map_or_else(|| tokio::time::Instant::now() + FAR, |(at, _)| at);
        tokio::select! {
            r = conn.as_mut() => break r,
            _ = tokio::time::sleep_until(at), if deadline.is_some() => {
                if let Some((at, why)) = state.deadline(&limits) {
                    if at <= tokio::time::Instant::now() {
                        tracing::debug!(target: "twig::http", component = %shared.target, %peer, "closing connection: {why}");
                        return;
                    }
                }
            }
            _ = state.changed() => {}
            _ = stop.changed() => {
                conn.as_mut().graceful_shutdown();
                break conn.await;
            }
        }
    };
    if let Err(e) = res {
        tracing::debug!(target: "twig::http", component = %shared.target, %peer, "connection ended: {e}");
    }
}

/// A placeholder deadline for a `sleep_until` that is not polled.
const FAR: Duration = Duration::from_secs(86400);

async fn handle(
    shared: Arc<Shared>,
    busy: Busy,
    conn_id: u64,
    local: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Tracked>, Infallible> {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = respond(&shared, conn_id, local, req).await;
    tracing::debug!(
        target: "twig::http",
        component = %shared.target,
        method = %method,
        path = %path,
        status = resp.status().as_u16(),
        ms = start.elapsed().as_secs_f64() * 1000.0,
        "request"
    );
    // The connection stays busy until hyper is done with the body.
    Ok(resp.map(|body| Tracked { body, _busy: busy }))
}

/// A response body that keeps its connection counted as busy until hyper
/// drops it (sent, or the connection gone).
struct Tracked {
    body: ResponseBody,
    _busy: Busy,
}

impl Body for Tracked {
    type Data = <ResponseBody as Body>::Data;
    type Error = <ResponseBody as Body>::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}

fn text(status: StatusCode, msg: impl Into<String>) -> Response<ResponseBody> {
    let mut msg = msg.into();
    msg.push('\n');
    let mut r = Response::new(ResponseBody::text(msg));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// How the wait for a guest's response ended.
enum Waited {
    Outcome(Outcome),
    /// The response slot was dropped without an outcome (the embedder's
    /// dispatch failed before the guest ran, or panicked).
    Dropped,
    BodyTooLarge,
    Timeout,
}

async fn respond(
    shared: &Arc<Shared>,
    conn_id: u64,
    local: SocketAddr,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let cfg = &shared.cfg;
    let authority = match authority(&req, local) {
        Ok(a) => a,
        Err(why) => return text(StatusCode::BAD_REQUEST, why),
    };
    let too_large = || {
        text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than {} bytes", cfg.max_request_body),
        )
    };
    if req
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n > cfg.max_request_body)
    {
        return too_large();
    }
    let (parts, incoming) = req.into_parts();
    let is_head = parts.method == hyper::http::Method::HEAD;
    let has_body = !incoming.is_end_stream();
    let pipe = Pipe::new();
    let request = IncomingRequest::new(&parts, authority, pipe.clone());
    // A request nobody will take (no route) is answered now: it must not
    // hold a slot, or wait up to FIRST_BODY_WAIT for a body no guest reads.
    if let Some((status, reason)) = shared.dispatch.refuse(&request) {
        return text(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            reason,
        );
    }
    let (out, mut outcome_rx) = ResponseOutparam::new();
    // Set by the pump before it fails the body, so before the guest can
    // see the failure: an answer the guest gives after that is still 413.
    let too_large_seen = Arc::new(std::sync::atomic::AtomicBool::new(false));
    // The body is pumped from this task (no task of its own, so no
    // wake-up of another thread) while the guest runs; a request with no
    // body needs no pump at all.
    let (first_tx, first_rx) = tokio::sync::oneshot::channel();
    let mut pump = Box::pin(pump_body(
        incoming,
        pipe,
        cfg.max_request_body,
        too_large_seen.clone(),
        first_tx,
    ));
    // Before the guest starts, its body's first bytes are in the pipe (or
    // the body has ended, or FIRST_BODY_WAIT passed): see FIRST_BODY_WAIT.
    let mut pumping = true;
    if has_body {
        tokio::select! {
            biased;
            end = &mut pump => {
                pumping = false;
                if end == PumpEnd::TooLarge {
                    return too_large();
                }
            }
            _ = first_rx => {}
            _ = tokio::time::sleep(FIRST_BODY_WAIT) => {}
        }
    }

    // A slot frees a moment after its client got the last byte (the guest
    // call still has to return), so a client sending its next request at
    // once would be refused spuriously: wait a little before saying 503.
    let slot = tokio::time::timeout(SLOT_WAIT, shared.slots.clone().acquire_owned()).await;
    let Ok(Ok(permit)) = slot else {
        let mut r = text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("busy: {} requests in progress", cfg.max_concurrent),
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    };

    let dispatch = shared.dispatch.clone();
    let target = shared.target.clone();
    let run = move || {
        // The slot is held until the guest is really done, even if the
        // client was answered (504) or went away long before.
        let _permit = permit;
        if let Err(e) = dispatch.dispatch(request, out) {
            tracing::warn!(target: "twig::http", component = %target, "HTTP handler failed: {e}");
        }
    };
    // Inline only when this is the only request around: no other guest
    // running, and no other connection's request begun in the last
    // INLINE_QUIET. Under concurrent load the worker must not run the
    // guests one after another while the other cores idle: then they go
    // to blocking threads, in parallel, as before.
    let alone = shared.slots.available_permits() + 1 == cfg.max_concurrent
        && shared.recent.note(conn_id, shared.started.elapsed());
    match alone.then(|| Inline::claim(&shared.inline)).flatten() {
        // The common case, one request at a time: the guest runs on this
        // worker, in a task of its own spawned into the worker's next slot,
        // so the thread that read the request runs the guest and then
        // writes the answer, with no hand-off. Should the guest wait (a
        // body still arriving, a client slow to read, a timer, an fsync)
        // or compute past one fuel slice, its blocking section moves the
        // worker's other tasks, this connection's among them, to another
        // thread first.
        Some(claim) => {
            tokio::spawn(async move {
                let _claim = claim;
                twig_component::blocking::with_hook(hand_off, run);
            });
        }
        // Another guest is inline already: this one runs on a blocking
        // thread, as every guest did before.
        None => {
            tokio::task::spawn_blocking(run);
        }
    }

    let timeout = tokio::time::sleep(cfg.request_timeout);
    tokio::pin!(timeout);
    let waited = loop {
        tokio::select! {
            biased;
            end = &mut pump, if pumping => {
                pumping = false;
                if end == PumpEnd::TooLarge {
                    break Waited::BodyTooLarge;
                }
            }
            o = &mut outcome_rx => break match o {
                Ok(o) => Waited::Outcome(o),
                Err(_) => Waited::Dropped,
            },
            _ = &mut timeout => break Waited::Timeout,
        }
    };
    if pumping {
        // The guest answered before it read the whole body (or the request
        // ended otherwise): the rest keeps flowing to it on a task of its own.
        tokio::spawn(pump);
    }

    // The body went over the cap while the guest read it: whatever the
    // guest answered after its read failed, the client is told why.
    let waited = match waited {
        Waited::Outcome(_) if too_large_seen.load(std::sync::atomic::Ordering::SeqCst) => {
            Waited::BodyTooLarge
        }
        w => w,
    };
    let target = &shared.target;
    match waited {
        Waited::Outcome(Outcome::Response {
            status,
            headers,
            body,
        }) => {
            // Wrapped first: on every path below, dropping it closes the
            // pipe, so the guest's writes end rather than block.
            let body = match body {
                Some(pipe) => ResponseBody::stream(pipe),
                None => ResponseBody::empty(),
            };
            let Ok(status) = StatusCode::from_u16(status).map_err(|_| ()).and_then(|s| {
                if s.is_informational() {
                    Err(())
                } else {
                    Ok(s)
                }
            }) else {
                tracing::warn!(target: "twig::http", component = %target, status, "the component set a non-final status code");
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the component sent an invalid response",
                );
            };
            if let Err(e) = headers.content_length() {
                tracing::warn!(target: "twig::http", component = %target, "the component sent a bad response header: {e}");
                return text(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the component sent an invalid response",
                );
            }
            // No body goes out for HEAD; dropping it ends the guest's writes.
            let body = if is_head { ResponseBody::empty() } else { body };
            let mut r = Response::new(body);
            *r.status_mut() = status;
            let h = r.headers_mut();
            for (k, v) in headers.entries() {
                h.append(k.clone(), v.clone());
            }
            r
        }
        Waited::Outcome(Outcome::GuestError(code)) => {
            tracing::warn!(target: "twig::http", component = %target, "the component answered with an error: {code}");
            // The code's text can be anything the component was told,
            // host paths included: it goes to the log only.
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the component reported an error",
            )
        }
        Waited::Outcome(Outcome::NoResponse) => {
            tracing::warn!(target: "twig::http", component = %target, "the component returned without setting a response");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the component returned without sending a response",
            )
        }
        // Logged at warn with the full error by the blocking task; the
        // client gets no internals.
        Waited::Outcome(Outcome::Failed(msg)) => {
            tracing::debug!(target: "twig::http", component = %target, "failed before responding: {msg}");
            text(StatusCode::INTERNAL_SERVER_ERROR, "the component failed")
        }
        Waited::Dropped => text(StatusCode::INTERNAL_SERVER_ERROR, "the component failed"),
        Waited::Outcome(Outcome::Reject { status, reason }) => text(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            reason,
        ),
        Waited::BodyTooLarge => too_large(),
        Waited::Timeout => {
            tracing::warn!(target: "twig::http", component = %target, "no response within {} ms", cfg.request_timeout.as_millis());
            text(
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the component did not respond within {} ms",
                    cfg.request_timeout.as_millis()
                ),
            )
        }
    }
}

/// The request's authority, as RFC 9112 §3.2 has a server find it: the
/// target's own (absolute form), else `Host`. An HTTP/1.1 request without
/// `Host`, and any request with more than one or an invalid one, is a bad
/// request. HTTP/1.0 may omit it (and an HTTP/1.1 client sends it empty
/// for a target with no authority): then it is the address the request
/// came in on, so a guest always gets one.
fn authority<B>(req: &Request<B>, local: SocketAddr) -> Result<String, &'static str> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err("more than one Host header");
    }
    let host = match host.map(|h| h.to_str()) {
        None => None,
        Some(Ok("")) => Some(None),
        Some(Ok(h)) => match h.parse::<hyper::http::uri::Authority>() {
            // uri-host [":" port]: no user info.
            Ok(a) if !h.contains('@') => Some(Some(a.to_string())),
            _ => return Err("invalid Host header"),
        },
        Some(Err(_)) => return Err("invalid Host header"),
    };
    if let Some(a) = req.uri().authority() {
        if host.is_none() && req.version() >= hyper::http::Version::HTTP_11 {
            return Err("missing Host header");
        }
        return Ok(a.to_string());
    }
    match host {
        Some(Some(h)) => Ok(h),
        Some(None) => Ok(local.to_string()),
        None if req.version() < hyper::http::Version::HTTP_11 => Ok(local.to_string()),
        None => Err("missing Host header"),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum PumpEnd {
    Done,
    TooLarge,
    Failed,
    ReaderGone,
}

/// Moves the request body from hyper into the guest's pipe, waiting for
/// room before reading more so a slow guest slows the client down.
async fn pump_body(
    mut body: Incoming,
    pipe: Arc<Pipe>,
    max: u64,
    too_large_seen: Arc<std::sync::atomic::AtomicBool>,
    first: tokio::sync::oneshot::Sender<()>,
) -> PumpEnd {
    // Fired by the first bytes in the pipe; dropped (which also wakes the
    // waiter) when the pump ends without any.
    let mut first = Some(first);
    let mut total: u64 = 0;
    loop {
        if !pipe.wait_room().await {
            return PumpEnd::ReaderGone;
        }
        match poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            None => {
                pipe.end(End::Done);
                return PumpEnd::Done;
            }
            Some(Err(e)) => {
                pipe.end(End::Failed(format!("reading the request body failed: {e}")));
                return PumpEnd::Failed;
            }
            Some(Ok(frame)) => {
                // Request trailers are not passed on (see future-trailers).
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                total += data.len() as u64;
                if total > max {
                    too_large_seen.store(true, std::sync::atomic::Ordering::SeqCst);
                    pipe.end(End::Failed(format!(
                        "request body exceeds the limit of {max} bytes"
                    )));
                    tokio::spawn(drain(body));
                    return PumpEnd::TooLarge;
                }
                let some = !data.is_empty();
                if pipe.push(data).is_err() {
                    return PumpEnd::ReaderGone;
                }
                if let Some(first) = first.take_if(|_| some) {
                    let _ = first.send(());
                }
            }
        }
    }
}

/// Reads and drops what is left of a refused body, within bounds.
async fn drain(mut body: Incoming) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let mut n = 0u64;
        while let Some(Ok(frame)) = poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            n += frame.data_ref().map_or(0, |d| d.len() as u64);
            if n > DRAIN_BYTES {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<ServerConfig, String> {
        ServerConfig::from_link_config(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn a_request_is_alone_unless_another_connection_began_one_just_before() {
        let r = Recent::default();
        let ms = Duration::from_millis;
        assert!(r.note(1, ms(100)), "the first request");
        assert!(r.note(1, ms(101)), "the same connection again");
        assert!(!r.note(2, ms(102)), "another connection 1 ms later");
        assert!(!r.note(1, ms(103)), "and back");
        assert!(r.note(2, ms(109)), "6 ms after the last");
        assert!(r.note(3, ms(200)));
    }

    #[test]
    fn defaults_match_wasmcloud() {
        let c = cfg(&[]).unwrap();
        assert_eq!(c.address, "0.0.0.0:8000".parse().unwrap());
        assert_eq!(c, ServerConfig::default());
    }

    #[test]
    fn keys_are_read_case_insensitively() {
        let c = cfg(&[
            ("ADDRESS", "127.0.0.1:9000"),
            ("timeout_ms", "1500"),
            ("max_request_body", "1024"),
            ("Max_Concurrent", "2"),
            ("max_connections", "10"),
            ("MAX_CONNECTIONS_PER_PEER", "3"),
            ("header_timeout_ms", "700"),
            ("idle_timeout_ms", "900"),
            ("disable_keepalive", "true"),
            ("cors_allowed_origins", "[]"),
            ("something_else", "x"),
        ])
        .unwrap();
        assert_eq!(c.address, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(c.request_timeout, Duration::from_millis(1500));
        assert_eq!(c.max_request_body, 1024);
        assert_eq!(c.max_concurrent, 2);
        assert_eq!(c.max_connections, 10);
        assert_eq!(c.max_connections_per_peer, 3);
        assert_eq!(c.header_timeout, Duration::from_millis(700));
        assert_eq!(c.idle_timeout, Duration::from_millis(900));
        assert!(!c.keep_alive);
    }

    fn req(version: hyper::http::Version, target: &str, hosts: &[&str]) -> Request<()> {
        let mut b = Request::builder().version(version).uri(target);
        for h in hosts {
            b = b.header(header::HOST, *h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn the_authority_follows_rfc_9112() {
        use hyper::http::Version;
        let local: SocketAddr = "127.0.0.1:8000".parse().unwrap();
        let a = |v, t, h: &[&str]| authority(&req(v, t, h), local);
        assert_eq!(
            a(Version::HTTP_11, "/", &["example.com:81"]),
            Ok("example.com:81".into())
        );
        // HTTP/1.1 needs Host; absolute form too, and its authority wins.
        assert_eq!(a(Version::HTTP_11, "/", &[]), Err("missing Host header"));
        assert_eq!(
            a(Version::HTTP_11, "http://a.example/x", &[]),
            Err("missing Host header")
        );
        assert_eq!(
            a(Version::HTTP_11, "http://a.example/x", &["b.example"]),
            Ok("a.example".into())
        );
        assert_eq!(
            a(Version::HTTP_11, "/", &["a", "b"]),
            Err("more than one Host header")
        );
        for bad in ["a b", "user@host", "a/b"] {
            assert_eq!(
                a(Version::HTTP_11, "/", &[bad]),
                Err("invalid Host header"),
                "{bad}"
            );
        }
        // HTTP/1.0 may omit it, and an empty one means no authority: the
        // address the request came in on.
        assert_eq!(a(Version::HTTP_10, "/", &[]), Ok("127.0.0.1:8000".into()));
        assert_eq!(a(Version::HTTP_11, "/", &[""]), Ok("127.0.0.1:8000".into()));
    }

    #[test]
    fn port_means_localhost_and_address_wins() {
        assert_eq!(
            cfg(&[("port", "8081")]).unwrap().address,
            "127.0.0.1:8081".parse().unwrap()
        );
        assert_eq!(
            cfg(&[("port", "8081"), ("address", "0.0.0.0:1")])
                .unwrap()
                .address,
            "0.0.0.0:1".parse().unwrap()
        );
    }

    #[test]
    fn errors_name_the_key() {
        for (k, v) in [
            ("address", "nowhere"),
            ("timeout_ms", "0"),
            ("timeout_ms", "soon"),
            ("max_request_body", "-1"),
            ("max_concurrent", "0"),
            ("max_connections_per_peer", "0"),
            ("header_timeout_ms", "0"),
            ("idle_timeout_ms", "later"),
            ("disable_keepalive", "maybe"),
            ("port", "99999"),
        ] {
            let e = cfg(&[(k, v)]).unwrap_err();
            assert!(e.contains(&format!("`{k}`")), "{e}");
        }
    }
}
