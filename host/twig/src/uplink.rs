//! The uplink as the rest of the host sees it: how to reach the NATS
//! server ([`UplinkOptions`]), the link's live state ([`UplinkStatus`],
//! what `twig status` shows) and the host's lattice identity. Plain data,
//! with or without the `lattice` feature; the connection itself is
//! [`crate::lattice`].

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

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

/// The `[lattice]` table: the uplink settings a device is installed with,
/// so a fleet's unit file can be a bare `twig up --board FILE`. Every field
/// is optional; `--nats-url` and friends (and their `TWIG_*` variables)
/// override the profile field by field. Relative paths are resolved
/// against the profile's directory.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardLattice {
    /// `nats://HOST:PORT` or `tls://HOST:PORT` (comma-separated for
    /// several); without one (here or on the CLI) twig runs offline.
    pub url: Option<String>,
    /// Lattice name; `default`.
    pub name: Option<String>,
    /// JetStream domain of the lattice's buckets, e.g. `core`.
    pub js_domain: Option<String>,
    /// Creds file (user JWT + nkey seed).
    pub creds: Option<PathBuf>,
    /// CA certificate(s), PEM, the server's certificate must chain to.
    pub tls_ca: Option<PathBuf>,
    /// Client certificate and key, PEM, for mutual TLS (both or neither).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// File holding an nkey seed (`SU…`).
    pub nkey: Option<PathBuf>,
    /// User and password (both or neither). Prefer a creds file: the
    /// profile is often world-readable.
    pub user: Option<String>,
    pub password: Option<String>,
    /// Token.
    pub token: Option<String>,
    /// Seconds between heartbeats; 30.
    pub heartbeat_secs: Option<u64>,
    /// Friendly name on the lattice; the hostname.
    pub friendly_name: Option<String>,
    /// A separate connection for the control interface (README, "Threat
    /// model"): its server (`url` when absent), creds, CA (`tls_ca` when
    /// absent), client certificate and key, nkey; and the control
    /// subject prefix (`wasmbus.ctl`).
    pub ctl_url: Option<String>,
    pub ctl_creds: Option<PathBuf>,
    pub ctl_tls_ca: Option<PathBuf>,
    pub ctl_tls_cert: Option<PathBuf>,
    pub ctl_tls_key: Option<PathBuf>,
    pub ctl_nkey: Option<PathBuf>,
    pub ctl_topic_prefix: Option<String>,
}

impl BoardLattice {
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Some(url) = &self.url {
            crate::names::check_url(url).map_err(|e| format!("lattice.url: {e}"))?;
        }
        if let Some(name) = &self.name {
            crate::names::check_name(name).map_err(|e| format!("lattice.name: {e}"))?;
        }
        if let Some(d) = &self.js_domain {
            crate::names::check_name(d).map_err(|e| format!("lattice.js_domain: {e}"))?;
        }
        if let Some(h) = self.heartbeat_secs {
            if !(1..=3600).contains(&h) {
                return Err(format!(
                    "lattice.heartbeat_secs: must be between 1 and 3600 (got {h})"
                ));
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err("lattice.tls_cert and lattice.tls_key: give both or neither".into());
        }
        if let Some(url) = &self.ctl_url {
            crate::names::check_url(url).map_err(|e| format!("lattice.ctl_url: {e}"))?;
        }
        if let Some(p) = &self.ctl_topic_prefix {
            crate::names::check_prefix(p).map_err(|e| format!("lattice.ctl_topic_prefix: {e}"))?;
        }
        if self.ctl_tls_cert.is_some() != self.ctl_tls_key.is_some() {
            return Err(
                "lattice.ctl_tls_cert and lattice.ctl_tls_key: give both or neither".into(),
            );
        }
        if self.user.is_some() != self.password.is_some() {
            return Err("lattice.user and lattice.password: give both or neither".into());
        }
        if let Some(n) = &self.friendly_name {
            if n.trim().is_empty() {
                return Err("lattice.friendly_name: must not be empty".into());
            }
        }
        Ok(())
    }
}

impl BoardLattice {
    /// These settings (the CLI's flags and their `TWIG_*` variables) over
    /// `under` (the board profile's `[lattice]`), field by field. A client
    /// certificate and its key, and a user and its password, come as a
    /// pair from one side: a flag's certificate with the profile's key
    /// would be a mismatch no one meant.
    pub fn over(self, under: BoardLattice) -> BoardLattice {
        fn pair<T>(
            top: (Option<T>, Option<T>),
            bottom: (Option<T>, Option<T>),
        ) -> (Option<T>, Option<T>) {
            match top {
                (Some(a), Some(b)) => (Some(a), Some(b)),
                _ => bottom,
            }
        }
        let (tls_cert, tls_key) = pair(
            (self.tls_cert, self.tls_key),
            (under.tls_cert, under.tls_key),
        );
        let (user, password) = pair((self.user, self.password), (under.user, under.password));
        let (ctl_tls_cert, ctl_tls_key) = pair(
            (self.ctl_tls_cert, self.ctl_tls_key),
            (under.ctl_tls_cert, under.ctl_tls_key),
        );
        BoardLattice {
            url: self.url.or(under.url),
            name: self.name.or(under.name),
            js_domain: self.js_domain.or(under.js_domain),
            creds: self.creds.or(under.creds),
            tls_ca: self.tls_ca.or(under.tls_ca),
            tls_cert,
            tls_key,
            nkey: self.nkey.or(under.nkey),
            user,
            password,
            token: self.token.or(under.token),
            heartbeat_secs: self.heartbeat_secs.or(under.heartbeat_secs),
            friendly_name: self.friendly_name.or(under.friendly_name),
            ctl_url: self.ctl_url.or(under.ctl_url),
            ctl_creds: self.ctl_creds.or(under.ctl_creds),
            ctl_tls_ca: self.ctl_tls_ca.or(under.ctl_tls_ca),
            ctl_tls_cert,
            ctl_tls_key,
            ctl_nkey: self.ctl_nkey.or(under.ctl_nkey),
            ctl_topic_prefix: self.ctl_topic_prefix.or(under.ctl_topic_prefix),
        }
    }
}

impl UplinkOptions {
    /// The uplink of board `board_name` with these settings (already
    /// merged, [`BoardLattice::over`]), checked; `None` when they name no
    /// server: twig runs offline. The errors name the flag.
    pub fn from_settings(
        s: BoardLattice,
        board_name: &str,
    ) -> Result<Option<UplinkOptions>, String> {
        use crate::names::{check_name, check_prefix, check_url};
        let Some(url) = s.url else {
            return Ok(None);
        };
        check_url(&url).map_err(|e| format!("--nats-url: {e}"))?;
        let lattice = s.name.unwrap_or_else(|| "default".into());
        check_name(&lattice).map_err(|e| format!("--lattice: {e}"))?;
        if let Some(d) = &s.js_domain {
            check_name(d).map_err(|e| format!("--js-domain: {e}"))?;
        }
        let ctl_prefix = s
            .ctl_topic_prefix
            .unwrap_or_else(|| DEFAULT_CTL_PREFIX.into());
        check_prefix(&ctl_prefix).map_err(|e| format!("--ctl-topic-prefix: {e}"))?;
        // Any control setting gives the control interface its own
        // connection (to the uplink's server unless `ctl_url` names one).
        let separate = s.ctl_url.is_some()
            || s.ctl_creds.is_some()
            || s.ctl_nkey.is_some()
            || s.ctl_tls_cert.is_some()
            || s.ctl_tls_ca.is_some();
        let ctl = if separate {
            let ctl_url = s.ctl_url.unwrap_or_else(|| url.clone());
            check_url(&ctl_url).map_err(|e| format!("--ctl-url: {e}"))?;
            let mut c = UplinkOptions::new(ctl_url);
            c.creds = s.ctl_creds;
            c.nkey = s.ctl_nkey;
            c.tls_cert = s.ctl_tls_cert;
            c.tls_key = s.ctl_tls_key;
            c.tls_ca = s.ctl_tls_ca.or_else(|| s.tls_ca.clone());
            c.js_domain = s.js_domain.clone();
            Some(Box::new(c))
        } else {
            None
        };
        Ok(Some(UplinkOptions {
            ctl,
            ctl_prefix,
            url,
            lattice,
            name: format!("twig {board_name} ({})", env!("CARGO_PKG_VERSION")),
            creds: s.creds,
            tls_ca: s.tls_ca,
            tls_cert: s.tls_cert,
            tls_key: s.tls_key,
            nkey: s.nkey,
            user: s.user,
            password: s.password,
            token: s.token,
            js_domain: s.js_domain,
            heartbeat: std::time::Duration::from_secs(s.heartbeat_secs.unwrap_or(30)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_the_profile_field_by_field_and_pairs_stay_together() {
        let profile = BoardLattice {
            url: Some("tls://core:4222".into()),
            name: Some("fleet".into()),
            tls_cert: Some("board.crt".into()),
            tls_key: Some("board.key".into()),
            user: Some("board-user".into()),
            password: Some("board-pass".into()),
            heartbeat_secs: Some(10),
            ..Default::default()
        };
        let flags = BoardLattice {
            url: Some("nats://127.0.0.1:4222".into()),
            // A certificate without its key does not split the pair.
            tls_cert: Some("flag.crt".into()),
            ..Default::default()
        };
        let s = flags.over(profile);
        assert_eq!(s.url.as_deref(), Some("nats://127.0.0.1:4222"));
        assert_eq!(s.name.as_deref(), Some("fleet"));
        assert_eq!(s.tls_cert, Some(PathBuf::from("board.crt")));
        assert_eq!(s.tls_key, Some(PathBuf::from("board.key")));
        assert_eq!(s.user.as_deref(), Some("board-user"));
        let o = UplinkOptions::from_settings(s, "sim").unwrap().unwrap();
        assert_eq!(o.lattice, "fleet");
        assert_eq!(o.heartbeat, std::time::Duration::from_secs(10));
        assert!(o.ctl.is_none(), "no control setting: one connection");
        assert_eq!(o.ctl_prefix, DEFAULT_CTL_PREFIX);
        assert!(o.name.starts_with("twig sim ("), "{}", o.name);
    }

    #[test]
    fn a_control_setting_makes_a_second_connection_and_names_are_checked() {
        let s = BoardLattice {
            url: Some("tls://leaf:7422".into()),
            tls_ca: Some("ca.pem".into()),
            ctl_creds: Some("ctl.creds".into()),
            ..Default::default()
        };
        let o = UplinkOptions::from_settings(s, "sim").unwrap().unwrap();
        let ctl = o.ctl.expect("a control connection");
        assert_eq!(ctl.url, "tls://leaf:7422");
        assert_eq!(ctl.creds, Some(PathBuf::from("ctl.creds")));
        assert_eq!(ctl.tls_ca, Some(PathBuf::from("ca.pem")));
        assert_eq!(
            UplinkOptions::from_settings(BoardLattice::default(), "sim").map(|o| o.is_none()),
            Ok(true)
        );
        for (bad, flag) in [
            (
                BoardLattice {
                    url: Some("http://x:1".into()),
                    ..Default::default()
                },
                "--nats-url",
            ),
            (
                BoardLattice {
                    url: Some("nats://x:1".into()),
                    name: Some("a.b".into()),
                    ..Default::default()
                },
                "--lattice",
            ),
            (
                BoardLattice {
                    url: Some("nats://x:1".into()),
                    ctl_topic_prefix: Some("a..b".into()),
                    ..Default::default()
                },
                "--ctl-topic-prefix",
            ),
            (
                BoardLattice {
                    url: Some("nats://x:1".into()),
                    ctl_url: Some("ftp://y".into()),
                    ..Default::default()
                },
                "--ctl-url",
            ),
        ] {
            let e = UplinkOptions::from_settings(bad, "sim").unwrap_err();
            assert!(e.starts_with(flag), "{flag}: {e}");
        }
    }
}
