//! The uplink as the rest of the host sees it: how to reach the NATS
//! server ([`UplinkOptions`]), the link's live state ([`UplinkStatus`],
//! what `twig status` shows) and the host's lattice identity. Plain data,
//! with or without the `lattice` feature; the connection itself is
//! [`crate::lattice`].

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
    /// A file holding an nkey seed (`SU…`) to authenticate with.
    pub nkey: Option<PathBuf>,
    /// User and password.
    pub user: Option<String>,
    pub password: Option<String>,
    /// Token.
    pub token: Option<String>,
    /// JetStream domain of the lattice's buckets (e.g. `core` when the
    /// host sits behind a leaf node with a domain of its own).
    pub js_domain: Option<String>,
    /// How often to publish `host_heartbeat`.
    pub heartbeat: std::time::Duration,
    /// A separate connection for the control interface (requests, the
    /// lattice's buckets, the policy service), as wasmCloud 1.x's
    /// `--ctl-host`/`--ctl-credsfile`/`--ctl-tls`: `None` uses this one.
    /// Its `ctl`, `ctl_prefix`, `lattice` and `heartbeat` are not used.
    pub ctl: Option<Box<UplinkOptions>>,
    /// Subject prefix of the control interface (`--ctl-topic-prefix`;
    /// `wasmbus.ctl`): requests come on `{prefix}.v1.{lattice}.…`.
    pub ctl_prefix: String,
}

impl UplinkOptions {
    /// Options for `url` with everything else at its default.
    pub fn new(url: impl Into<String>) -> UplinkOptions {
        UplinkOptions {
            url: url.into(),
            lattice: "default".into(),
            name: format!("twig ({})", env!("CARGO_PKG_VERSION")),
            creds: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            nkey: None,
            user: None,
            password: None,
            token: None,
            js_domain: None,
            heartbeat: std::time::Duration::from_secs(30),
            ctl: None,
            ctl_prefix: DEFAULT_CTL_PREFIX.into(),
        }
    }
}

/// wasmCloud's control-interface subject prefix.
pub const DEFAULT_CTL_PREFIX: &str = "wasmbus.ctl";

/// The status of a separate control connection, as `twig status` shows it
/// (`uplink.control`).
#[derive(Debug, Clone, Serialize)]
pub struct ControlLinkStatus {
    pub url: String,
    pub state: LinkState,
    pub connects: u64,
    pub last_error: Option<String>,
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

/// Whether the lattice past the server twig is connected to answers (the
/// core behind a leaf node), by the supervisor's last ping.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamState {
    /// Not pinged yet.
    Unknown,
    Reachable,
    Unreachable,
}

#[derive(Debug, Clone, Serialize)]
pub struct UplinkStatus {
    pub url: String,
    pub lattice: String,
    /// The connection to the server twig talks to (often a leaf node).
    pub state: LinkState,
    /// Times the link came up.
    pub connects: u64,
    /// The last problem the link had, as logged.
    pub last_error: Option<String>,
    /// Whether the upstream past that server answers.
    pub upstream: UpstreamState,
    /// Round trip of the last answered ping, in milliseconds.
    pub upstream_rtt_ms: Option<f64>,
    /// Why the last unanswered ping failed.
    pub upstream_error: Option<String>,
    /// Outbox messages the upstream has acknowledged since start.
    pub delivered: u64,
    /// Of those, how many a stream said it already had (a resend after a
    /// lost acknowledgement or a crash; not stored twice).
    pub stream_duplicates: u64,
    /// When the last outbox message was delivered (ms since the epoch).
    pub last_delivered_ms: Option<u64>,
    /// The last reason the drain could not deliver.
    pub last_delivery_error: Option<String>,
    /// Whether the control interface is live: the agent has made its
    /// control subscriptions and flushed them to the server, so a request
    /// sent now is heard (`connected` alone comes before that). async-nats
    /// restores the subscriptions after a reconnect.
    pub serving: bool,
    /// The separate control connection, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control: Option<ControlLinkStatus>,
    /// Where that connection keeps its live state (copied into `control`
    /// when the status is read).
    #[serde(skip)]
    pub control_link: Option<SharedStatus>,
}

impl UplinkStatus {
    /// A copy for showing, with the control connection's state filled in.
    pub fn snapshot(&self) -> UplinkStatus {
        let mut s = self.clone();
        if let Some(c) = s.control_link.take() {
            let c = c.lock().unwrap_or_else(|e| e.into_inner());
            s.control = Some(ControlLinkStatus {
                url: c.url.clone(),
                state: c.state.clone(),
                connects: c.connects,
                last_error: c.last_error.clone(),
            });
        }
        s
    }
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
            upstream: UpstreamState::Unknown,
            upstream_rtt_ms: None,
            upstream_error: None,
            delivered: 0,
            stream_duplicates: 0,
            last_delivered_ms: None,
            last_delivery_error: None,
            serving: false,
            control: None,
            control_link: None,
        }
    }
}

/// Who this host is on the lattice: an nkey server key (`N…`, 56
/// characters) made once and kept in the data directory, so the host keeps
/// its id across restarts and power cuts, and a friendly name.
#[derive(Debug, Clone, Serialize)]
pub struct HostIdentity {
    pub host_id: String,
    pub friendly_name: String,
}

/// The file in the data directory holding the host key's seed.
pub const HOST_KEY_FILE: &str = "host.nk";
