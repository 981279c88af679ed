//! The local admin socket: how `twig status|invoke|apply|delete` talk to a
//! running `twig up`.
//!
//! A Unix socket `admin.sock` in the data directory (mode 0600, inside a
//! 0700 directory, so only the host's user can use it). Each connection
//! carries one request: a line of JSON, answered by a line of JSON
//! `{"ok":true,"result":…}` or `{"ok":false,"error":"…"}`. Requests that
//! run guests or touch the disk go to blocking threads so status stays
//! responsive while a call runs.
//!
//! A local client can't make the host hold much: the request line must
//! arrive within [`IDLE_TIMEOUT`], at most [`MAX_IN_FLIGHT`] requests are
//! handled at once (more are answered `busy` at once), and the lines being
//! read share one byte budget ([`AdminLimits`]).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::host::{ApplyRequest, Host};

/// Largest request accepted (a manifest with its component images,
/// base64): room for one image at the default image cap (32 MiB, 42.7 MiB
/// as base64) and its manifest. A board with a smaller
/// `limits.max_image_mib` accepts less (see [`AdminLimits::for_board`]).
pub const MAX_REQUEST_BYTES: u64 = 48 << 20;

/// Requests handled at once (reading, running or answering). More are
/// answered at once with an error, never queued: a client that opens many
/// connections can't hold more than this many tasks and threads.
pub const MAX_IN_FLIGHT: usize = 16;

/// A connection that has not sent its whole request line within this long
/// is answered with an error and closed. The CLI writes its request at
/// once; 10 s is room for a 48 MiB request on a slow board.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a stop waits for requests in flight before it drops them (a
/// guest call blocked until its deadline, a client that never finishes its
/// line); part of the 5 s bound on SIGTERM (`up.rs`).
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The admin socket's bounds on one host.
#[derive(Debug, Clone, Copy)]
pub struct AdminLimits {
    /// Largest request line.
    pub max_request: u64,
    /// Bytes of request lines held at once over all connections: one
    /// request of the largest size and 1 MiB for small ones beside it, so
    /// 16 parallel large requests hold no more than one does.
    pub max_buffered: u64,
    pub max_in_flight: usize,
    pub idle_timeout: Duration,
}

impl AdminLimits {
    /// Sized from the board's image cap: a request never needs to be larger
    /// than one image at the cap, as base64, and 1 MiB of manifest.
    pub fn for_board(board: &crate::board::Board) -> AdminLimits {
        let image = board.limits.max_image_bytes();
        let max_request = (image.div_ceil(3) * 4 + (1 << 20)).min(MAX_REQUEST_BYTES);
        AdminLimits {
            max_request,
            max_buffered: max_request + (1 << 20),
            max_in_flight: MAX_IN_FLIGHT,
            idle_timeout: IDLE_TIMEOUT,
        }
    }
}

pub fn socket_path(data_dir: &Path) -> PathBuf {
    data_dir.join("admin.sock")
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Request {
    Status,
    Invoke {
        component: String,
        function: String,
        #[serde(default)]
        args: Vec<String>,
        /// A result that is a `string` comes back as its text, not as a
        /// WAVE literal (what the CLI prints without `--wave`).
        #[serde(default)]
        plain: bool,
    },
    /// A manifest's text, the file it came from (for messages and relative
    /// images) and the bytes of its file images, base64, by absolute path.
    Apply {
        file: Option<String>,
        manifest: String,
        #[serde(default)]
        images: BTreeMap<String, String>,
    },
    Delete {
        name: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub result: serde_json::Value,
}

impl Response {
    fn from(r: Result<serde_json::Value, String>) -> Response {
        match r {
            Ok(result) => Response {
                ok: true,
                error: None,
                result,
            },
            Err(e) => Response {
                ok: false,
                error: Some(e),
                result: serde_json::Value::Null,
            },
        }
    }
}

/// Binds the admin socket. A socket left by a host that was killed is
/// replaced; the data-dir lock (held by the caller) guarantees no live host
/// owns it.
pub fn bind(data_dir: &Path) -> anyhow::Result<UnixListener> {
    let path = socket_path(data_dir);
    if path.as_os_str().len() > 100 {
        anyhow::bail!(
            "admin socket path {} is too long for a Unix socket (max ~100 bytes); use a shorter --data-dir",
            path.display()
        );
    }
    match std::fs::remove_file(&path) {
        Ok(()) => tracing::debug!("removed stale admin socket {}", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => anyhow::bail!("cannot remove old admin socket {}: {e}", path.display()),
    }
    let listener = UnixListener::bind(&path)
        .map_err(|e| anyhow::anyhow!("cannot bind admin socket {}: {e}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| anyhow::anyhow!("cannot set mode 0600 on {}: {e}", path.display()))?;
    Ok(listener)
}

/// Serves requests until `shutdown` turns true, then waits up to
/// [`SHUTDOWN_GRACE`] for requests in flight and drops the rest (a guest
/// call still running goes on on its thread until its deadline, but nobody
/// waits for it: the process exits).
pub async fn serve(
    listener: UnixListener,
    host: Host,
    limits: AdminLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let host = Arc::new(host);
    let in_flight = Arc::new(AtomicUsize::new(0));
    let buffered = Arc::new(AtomicU64::new(0));
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => match Slot::take(&in_flight, limits.max_in_flight) {
                    Some(slot) => {
                        let host = host.clone();
                        let buffered = buffered.clone();
                        tasks.spawn(async move {
                            handle(stream, host, limits, buffered).await;
                            drop(slot);
                        });
                    }
                    None => {
                        tasks.spawn(refuse_busy(stream, limits.max_in_flight));
                    }
                },
                Err(e) => tracing::warn!("admin socket accept failed: {e}"),
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    if tasks.is_empty() {
        return;
    }
    tracing::info!(
        "waiting up to {} s for {} admin request(s) in flight",
        SHUTDOWN_GRACE.as_secs(),
        tasks.len()
    );
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            "stopping with {} admin request(s) unfinished (cancelled)",
            tasks.len()
        );
        tasks.abort_all();
    }
}

/// One of the [`MAX_IN_FLIGHT`] request slots, given back on drop.
struct Slot(Arc<AtomicUsize>);

impl Slot {
    fn take(count: &Arc<AtomicUsize>, max: usize) -> Option<Slot> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| Slot(count.clone()))
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Bytes a connection holds of the shared request budget, given back on
/// drop (when the request has been answered).
struct Held {
    pool: Arc<AtomicU64>,
    max: u64,
    bytes: u64,
}

impl Held {
    /// Takes `n` more bytes of the budget, or says how much is held.
    fn grow(&mut self, n: u64) -> Result<(), u64> {
        let max = self.max;
        self.pool
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                (held + n <= max).then_some(held + n)
            })
            .map(|_| self.bytes += n)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.pool.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// Answers a connection over the in-flight cap without reading it.
async fn refuse_busy(stream: tokio::net::UnixStream, max: usize) {
    let (_read, mut write) = stream.into_split();
    let response = Response::from(Err(format!(
        "busy: {max} requests in flight (the admin socket's limit); try again"
    )));
    // A client that never reads must not hold this task either.
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        write_response(&mut write, &response),
    )
    .await;
}

async fn write_response(write: &mut tokio::net::unix::OwnedWriteHalf, response: &Response) {
    let mut out = serde_json::to_vec(response).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    out.push(b'\n');
    if let Err(e) = write.write_all(&out).await {
        tracing::debug!("admin client went away: {e}");
    }
}

/// Reads one request line within the idle timeout, holding its bytes
/// against the shared budget (`held`).
async fn read_request<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    limits: &AdminLimits,
    held: &mut Held,
) -> Result<Vec<u8>, String> {
    let read = async {
        let mut line = Vec::new();
        loop {
            let buf = reader
                .fill_buf()
                .await
                .map_err(|e| format!("reading request: {e}"))?;
            if buf.is_empty() {
                return Ok(line);
            }
            let (take, done) = match buf.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (buf.len(), false),
            };
            if (line.len() + take) as u64 > limits.max_request {
                return Err(format!(
                    "request larger than {} bytes (the admin socket's limit) refused",
                    limits.max_request
                ));
            }
            held.grow(take as u64).map_err(|in_use| {
                format!(
                    "busy: requests in flight hold {in_use} of the {} bytes the admin socket buffers; try again",
                    limits.max_buffered
                )
            })?;
            line.extend_from_slice(&buf[..take]);
            reader.consume(take);
            if done {
                return Ok(line);
            }
        }
    };
    match tokio::time::timeout(limits.idle_timeout, read).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no complete request within {} s; closing",
            limits.idle_timeout.as_secs()
        )),
    }
}

async fn handle(
    stream: tokio::net::UnixStream,
    host: Arc<Host>,
    limits: AdminLimits,
    buffered: Arc<AtomicU64>,
) {
    let (read, mut write) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read);
    let mut held = Held {
        pool: buffered,
        max: limits.max_buffered,
        bytes: 0,
    };
    let response = match read_request(&mut reader, &limits, &mut held).await {
        Err(e) => Response::from(Err(e)),
        Ok(line) => match serde_json::from_slice::<Request>(&line) {
            Err(e) => Response::from(Err(format!("malformed request: {e}"))),
            Ok(req) => {
                drop(line);
                // `invoke` runs a guest: on the guest pool, so that it
                // never holds a thread the control plane needs.
                let result = if matches!(req, Request::Invoke { .. }) {
                    host.run_guest(move |h| execute(h, req)).await
                } else {
                    let host = host.clone();
                    tokio::task::spawn_blocking(move || execute(&host, req))
                        .await
                        .map_err(|e| e.to_string())
                };
                match result {
                    Ok(r) => Response::from(r),
                    Err(e) => Response::from(Err(format!("request failed: {e}"))),
                }
            }
        },
    };
    write_response(&mut write, &response).await;
    drop(held);
}

fn execute(host: &Host, req: Request) -> Result<serde_json::Value, String> {
    fn to_json<T: Serialize>(v: &T) -> serde_json::Value {
        serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
    }
    match req {
        Request::Status => Ok(to_json(&host.status())),
        Request::Invoke {
            component,
            function,
            args,
            plain,
        } => host
            .invoke(&component, &function, &args, plain)
            .map(|r| serde_json::json!(r)),
        Request::Apply {
            file,
            manifest,
            images,
        } => {
            let mut bytes = std::collections::HashMap::new();
            for (path, b64) in images {
                let b = base64::engine::general_purpose::STANDARD
                    .decode(b64.as_bytes())
                    .map_err(|e| format!("image {path}: bad base64: {e}"))?;
                bytes.insert(PathBuf::from(path), b);
            }
            host.apply(
                ApplyRequest {
                    file: file.map(PathBuf::from),
                    text: manifest,
                    images: bytes,
                },
                true,
            )
            .map(|o| to_json(&o))
        }
        Request::Delete { name } => host.delete(&name).map(|()| serde_json::Value::Null),
    }
}

/// Sends one request to the host at `data_dir` and returns its result.
/// A request over [`MAX_REQUEST_BYTES`] is refused here, before anything is
/// sent, with its size and the limit.
pub fn request(data_dir: &Path, req: &Request) -> anyhow::Result<serde_json::Value> {
    let path = socket_path(data_dir);
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    check_request_size(line.len() as u64, req)?;
    let mut stream = std::os::unix::net::UnixStream::connect(&path).map_err(|e| {
        anyhow::anyhow!(
            "cannot reach twig at {}: {e} (is `twig up` running with --data-dir {}?)",
            path.display(),
            data_dir.display()
        )
    })?;
    // The host may answer before it has read everything (a request over
    // its own, smaller limit; busy): then the write fails with a broken
    // pipe, and its answer says why.
    let sent = stream
        .write_all(&line)
        .and_then(|()| stream.shutdown(std::net::Shutdown::Write));
    let mut reader = BufReader::new(stream.take(MAX_REQUEST_BYTES));
    let mut answer = Vec::new();
    let read = reader.read_until(b'\n', &mut answer);
    if answer.is_empty() {
        if let Err(e) = sent {
            anyhow::bail!("sending the request to twig at {}: {e}", path.display());
        }
        read?;
        anyhow::bail!(
            "twig at {} closed the connection without answering",
            path.display()
        );
    }
    let response: Response = serde_json::from_slice(&answer)
        .map_err(|e| anyhow::anyhow!("bad answer from twig: {e}"))?;
    if response.ok {
        Ok(response.result)
    } else {
        Err(anyhow::anyhow!(
            "{}",
            response.error.unwrap_or_else(|| "request failed".into())
        ))
    }
}

/// Refuses a request line of `size` bytes over [`MAX_REQUEST_BYTES`],
/// naming the images that make it up.
fn check_request_size(size: u64, req: &Request) -> anyhow::Result<()> {
    if size <= MAX_REQUEST_BYTES {
        return Ok(());
    }
    let images = match req {
        Request::Apply { images, .. } if !images.is_empty() => format!(
            " (images, as base64: {})",
            images
                .iter()
                .map(|(p, b)| format!("{p} {} bytes", b.len()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => String::new(),
    };
    anyhow::bail!(
        "request is {size} bytes, over the admin socket's limit of {MAX_REQUEST_BYTES} bytes ({} MiB){images}",
        MAX_REQUEST_BYTES >> 20
    )
}

/// Builds an apply request from a manifest file: reads the manifest and the
/// bytes of its file images here, so the host needs no access to the
/// caller's files. An image is read only if it can fit in a request (as
/// base64); the host checks its own board's cap.
pub fn apply_request(file: &Path) -> anyhow::Result<Request> {
    let (text, parsed) = crate::image::read_manifest(file).map_err(anyhow::Error::msg)?;
    let cap = MAX_REQUEST_BYTES / 4 * 3;
    let mut images = BTreeMap::new();
    for (i, c) in parsed.manifest.components.iter().enumerate() {
        if let twig_manifest::Image::File(p) = &c.image {
            if c.kind == twig_manifest::ComponentKind::Capability {
                continue;
            }
            let field = format!("{}: spec.components[{i}].properties.image", file.display());
            let bytes = crate::image::read_image(p, cap).map_err(|e| match e {
                crate::image::ImageError::TooLarge { size, .. } => anyhow::anyhow!(
                    "{field}: {} is {size} bytes; as base64 it does not fit in the admin socket's limit of {MAX_REQUEST_BYTES} bytes ({} MiB)",
                    p.display(),
                    MAX_REQUEST_BYTES >> 20
                ),
                e => anyhow::anyhow!("{field}: {e}"),
            })?;
            images.insert(
                p.display().to_string(),
                base64::engine::general_purpose::STANDARD.encode(bytes),
            );
        }
    }
    Ok(Request::Apply {
        file: Some(absolute(file).display().to_string()),
        manifest: text,
        images,
    })
}

pub fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}
