//! The local admin socket: how `twig status|invoke|apply|delete` talk to a
//! running `twig up`.
//!
//! A Unix socket `admin.sock` in the data directory (mode 0600, inside a
//! 0700 directory, so only the host's user can use it). Each connection
//! carries one request: a line of JSON, answered by a line of JSON
//! `{"ok":true,"result":…}` or `{"ok":false,"error":"…"}`. Requests that
//! run guests or touch the disk go to blocking threads so status stays
//! responsive while a call runs.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::host::{ApplyRequest, Host};

/// Largest request accepted (a manifest with its component images).
pub const MAX_REQUEST_BYTES: u64 = 64 << 20;

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

/// Serves requests until `shutdown` turns true, then waits for requests in
/// flight (guest calls finish or hit their deadline).
pub async fn serve(listener: UnixListener, host: Host, mut shutdown: watch::Receiver<bool>) {
    let host = Arc::new(host);
    let mut tasks = JoinSet::new();
    loop {
        tokio::select! {
            _ = shutdown.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let host = host.clone();
                    tasks.spawn(async move { handle(stream, host).await });
                }
                Err(e) => tracing::warn!("admin socket accept failed: {e}"),
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    if !tasks.is_empty() {
        tracing::info!("waiting for {} admin request(s) in flight", tasks.len());
    }
    while tasks.join_next().await.is_some() {}
}

async fn handle(stream: tokio::net::UnixStream, host: Arc<Host>) {
    let (read, mut write) = stream.into_split();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST_BYTES + 1));
    let mut line = Vec::new();
    let response = match reader.read_until(b'\n', &mut line).await {
        Err(e) => Response::from(Err(format!("reading request: {e}"))),
        Ok(_) if line.len() as u64 > MAX_REQUEST_BYTES => Response::from(Err(format!(
            "request larger than {MAX_REQUEST_BYTES} bytes refused"
        ))),
        Ok(_) => match serde_json::from_slice::<Request>(&line) {
            Err(e) => Response::from(Err(format!("malformed request: {e}"))),
            Ok(req) => {
                let host = host.clone();
                match tokio::task::spawn_blocking(move || execute(&host, req)).await {
                    Ok(r) => Response::from(r),
                    Err(e) => Response::from(Err(format!("request failed: {e}"))),
                }
            }
        },
    };
    let mut out = serde_json::to_vec(&response).unwrap_or_else(|_| b"{\"ok\":false}".to_vec());
    out.push(b'\n');
    if let Err(e) = write.write_all(&out).await {
        tracing::debug!("admin client went away: {e}");
    }
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
        } => host
            .invoke(&component, &function, &args)
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
pub fn request(data_dir: &Path, req: &Request) -> anyhow::Result<serde_json::Value> {
    let path = socket_path(data_dir);
    let mut stream = std::os::unix::net::UnixStream::connect(&path).map_err(|e| {
        anyhow::anyhow!(
            "cannot reach twig at {}: {e} (is `twig up` running with --data-dir {}?)",
            path.display(),
            data_dir.display()
        )
    })?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    stream.write_all(&line)?;
    stream.shutdown(std::net::Shutdown::Write)?;
    let mut reader = BufReader::new(stream.take(MAX_REQUEST_BYTES));
    let mut answer = Vec::new();
    reader.read_until(b'\n', &mut answer)?;
    if answer.is_empty() {
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

/// Builds an apply request from a manifest file: reads the manifest and the
/// bytes of its file images here, so the host needs no access to the
/// caller's files.
pub fn apply_request(file: &Path) -> anyhow::Result<Request> {
    let parsed = twig_manifest::parse_file(file)?;
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let mut images = BTreeMap::new();
    for (i, c) in parsed.manifest.components.iter().enumerate() {
        if let twig_manifest::Image::File(p) = &c.image {
            if c.kind == twig_manifest::ComponentKind::Capability {
                continue;
            }
            let bytes = crate::host::read_image(&file.display().to_string(), i, p)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
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
