//! The uplink: twig's connection to a NATS server (normally a leaf node on
//! or near the device), over which it joins a wasmCloud lattice.
//!
//! Boot never waits for it. `twig up --nats-url …` starts the apps from
//! disk first and connects in the background; the client reconnects with
//! backoff for as long as the host runs, and every change of the link
//! (connected, lost, refused credentials, untrusted certificate) is one log
//! line and shows in `twig status`. Local work is the same with or without
//! the link.
//!
//! This module is the connection and its state. The lattice protocol on
//! top of it (control interface, events, wRPC) comes with the `lattice`
//! issue; the `lattice` cargo feature leaves all of it, and async-nats with
//! rustls, out of a build.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::Serialize;

/// How to reach and authenticate to the NATS server.
#[derive(Debug, Clone)]
pub struct UplinkOptions {
    /// `nats://host:port` or `tls://host:port` (several, comma-separated,
    /// are tried in turn).
    pub url: String,
    /// Lattice name (wasmCloud's default is `default`).
    pub lattice: String,
    /// Connection name the server shows (`/connz`).
    pub name: String,
    /// Creds file (user JWT and nkey seed), as `nsc` writes it.
    pub creds: Option<PathBuf>,
    /// CA certificate(s), PEM, that the server's certificate must chain to.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key, PEM, for mutual TLS.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

/// The link's state as `twig status` shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    Connecting,
    Connected,
    Disconnected,
    /// Not retrying: the options cannot work (unreadable creds file, bad
    /// certificate file, bad URL). Fix them and restart.
    Failed,
}

#[derive(Debug, Clone, Serialize)]
pub struct UplinkStatus {
    pub url: String,
    pub lattice: String,
    pub state: LinkState,
    /// Times the link came up.
    pub connects: u64,
    /// The last problem the link had, as logged.
    pub last_error: Option<String>,
}

/// The shared, updated-in-place status of the uplink.
pub type SharedStatus = Arc<Mutex<UplinkStatus>>;

impl UplinkStatus {
    pub fn new(opts: &UplinkOptions) -> UplinkStatus {
        UplinkStatus {
            url: opts.url.clone(),
            lattice: opts.lattice.clone(),
            state: LinkState::Connecting,
            connects: 0,
            last_error: None,
        }
    }
}

#[cfg(feature = "lattice")]
fn update(status: &SharedStatus, f: impl FnOnce(&mut UplinkStatus)) {
    f(&mut status.lock().unwrap_or_else(|e| e.into_inner()));
}

/// Starts the uplink on the current tokio runtime; returns at once.
#[cfg(feature = "lattice")]
pub fn start(opts: UplinkOptions) -> SharedStatus {
    let status = Arc::new(Mutex::new(UplinkStatus::new(&opts)));
    let st = status.clone();
    tokio::spawn(async move {
        match connect(&opts, st.clone()).await {
            Ok(client) => {
                // Held for the life of the host: dropping the client would
                // close the connection.
                std::mem::forget(client);
            }
            Err(why) => {
                tracing::error!(url = %opts.url, "uplink: {why}; twig keeps running without the lattice");
                update(&st, |s| {
                    s.state = LinkState::Failed;
                    s.last_error = Some(why);
                });
            }
        }
    });
    status
}

/// Without the `lattice` feature there is no uplink to start.
#[cfg(not(feature = "lattice"))]
pub fn start(opts: UplinkOptions) -> SharedStatus {
    let why = "this twig was built without lattice support (cargo feature `lattice`)";
    tracing::error!(url = %opts.url, "uplink: {why}; twig keeps running without the lattice");
    let mut s = UplinkStatus::new(&opts);
    s.state = LinkState::Failed;
    s.last_error = Some(why.into());
    Arc::new(Mutex::new(s))
}

#[cfg(feature = "lattice")]
async fn connect(opts: &UplinkOptions, status: SharedStatus) -> Result<async_nats::Client, String> {
    use async_nats::{ConnectOptions, Event};

    let mut o = match &opts.creds {
        Some(path) => ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|e| {
                // async-nats names the file itself in most of its errors.
                let e = e.to_string();
                if e.contains(&*path.to_string_lossy()) {
                    e
                } else {
                    format!("creds file {}: {e}", path.display())
                }
            })?,
        None => ConnectOptions::new(),
    };
    if let Some(ca) = &opts.tls_ca {
        check_readable(ca, "TLS CA")?;
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    match (&opts.tls_cert, &opts.tls_key) {
        (Some(cert), Some(key)) => {
            check_readable(cert, "TLS client certificate")?;
            check_readable(key, "TLS client key")?;
            o = o
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        (None, None) => {}
        _ => return Err("mutual TLS needs both a client certificate and its key".into()),
    }
    let url = opts.url.clone();
    let st = status.clone();
    o = o
        .name(opts.name.clone())
        // Never give up: a device may be offline for days.
        .retry_on_initial_connect()
        .max_reconnects(None)
        .event_callback(move |event| {
            let st = st.clone();
            let url = url.clone();
            async move {
                match event {
                    Event::Connected => {
                        tracing::info!(%url, "uplink connected");
                        update(&st, |s| {
                            s.state = LinkState::Connected;
                            s.connects += 1;
                        });
                    }
                    Event::Disconnected => {
                        tracing::warn!(%url, "uplink lost; reconnecting in the background");
                        update(&st, |s| s.state = LinkState::Disconnected);
                    }
                    other => {
                        let why = other.to_string();
                        let changed = {
                            let s = st.lock().unwrap_or_else(|e| e.into_inner());
                            s.last_error.as_deref() != Some(why.as_str())
                        };
                        // One line per new problem, not one per retry.
                        if changed {
                            tracing::warn!(%url, "uplink: {why}");
                        }
                        update(&st, |s| s.last_error = Some(why));
                    }
                }
            }
        });
    o.connect(opts.url.as_str())
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", opts.url))
}

#[cfg(feature = "lattice")]
fn check_readable(path: &std::path::Path, what: &str) -> Result<(), String> {
    std::fs::metadata(path)
        .map(|_| ())
        .map_err(|e| format!("{what} {}: {e}", path.display()))
}
