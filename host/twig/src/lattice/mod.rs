//! The uplink: twig's connection to a NATS server (normally a leaf node on
//! or near the device), over which it joins a wasmCloud lattice.
//!
//! Boot never waits for it. `twig up --nats-url …` starts the uplink as a
//! background task and the apps from disk without waiting for it; the
//! client reconnects with
//! backoff for as long as the host runs, and every change of the link
//! (connected, lost, refused credentials, untrusted certificate) is one log
//! line and shows in `twig status`. Local work is the same with or without
//! the link.
//!
//! Modules:
//!
//! * this one: the connection, the host identity's key (its options and
//!   state are plain data in [`crate::uplink`], its links and config on disk
//!   in [`crate::latticedata`]);
//! * [`wire`]: the control interface's requests, replies and events as JSON
//!   (parsing and checking everything that comes off the network);
//! * `agent`: the state the tasks on the connection share, and their start
//!   (only with the `lattice` feature, as are the next three);
//! * `control`: the control server, one file per request family;
//! * `events`: the typed lattice events and the heartbeat;
//! * `buckets`: the `LATTICEDATA`/`CONFIGDATA` buckets and their watcher;
//! * `wrpc`: calls to link targets elsewhere in the lattice and serving
//!   this host's components, over one reply inbox per connection;
//! * `messaging`: the NATS side of the messaging bridge
//!   ([`crate::bridge`]), on a connection of its own made on first use;
//! * `probe`: one TLS handshake of its own, to name why the server's
//!   certificate or ours was refused;
//! * `drain`: link supervision (pings of the upstream past a leaf node,
//!   backoff with jitter) and the drain that sends the durable outbox
//!   ([`crate::outbox`]) upstream, exactly once where a stream takes it.
//!
//! The host side of each request (scale, labels, links, …) is in
//! [`crate::control`]. The `lattice` cargo feature leaves the agent, and
//! async-nats with rustls, out of a build.

#[cfg(feature = "lattice")]
mod agent;
#[cfg(feature = "lattice")]
mod bucket_store;
#[cfg(feature = "lattice")]
mod buckets;

#[cfg(feature = "lattice")]
mod control;
#[cfg(feature = "lattice")]
mod drain;
#[cfg(feature = "lattice")]
mod events;
pub mod jwt;
#[cfg(feature = "lattice")]
mod messaging;
#[cfg(feature = "lattice")]
mod ordered;
#[cfg(feature = "lattice")]
mod policy_service;
#[cfg(feature = "lattice")]
mod probe;
pub mod wire;
#[cfg(feature = "lattice")]
pub mod wrpc;

use std::path::Path;
use std::sync::{Arc, Mutex};
#[cfg(feature = "lattice")]
use std::time::Duration;

/// The uplink's options and status are the host's too (it shows them in
/// `twig status`): they live in [`crate::uplink`], a build without the
/// `lattice` feature has them as well.
pub use crate::uplink::{
    ControlLinkStatus, HostIdentity, LinkState, SharedStatus, UplinkOptions, UplinkStatus,
    UpstreamState, DEFAULT_CTL_PREFIX, HOST_KEY_FILE,
};

#[cfg(feature = "lattice")]
fn update(status: &SharedStatus, f: impl FnOnce(&mut UplinkStatus)) {
    f(&mut status.lock().unwrap_or_else(|e| e.into_inner()));
}

/// The running uplink: its state, and what `twig up` needs at shutdown.
pub struct Uplink {
    pub status: SharedStatus,
    #[cfg(feature = "lattice")]
    agent: Arc<tokio::sync::OnceCell<Arc<agent::Agent>>>,
}

impl Uplink {
    /// Publishes `host_stopped` if the lattice is reachable (bounded).
    pub async fn announce_stop(&self) {
        #[cfg(feature = "lattice")]
        if let Some(a) = self.agent.get() {
            announce_agent_stop(a).await;
        }
    }
}

/// Starts the uplink on the current tokio runtime and returns at once: the
/// connection, and on it the control interface, heartbeats and the bucket
/// watcher for `host` (when it has a lattice `identity`). `stop` is rung
/// when the lattice asks the host to stop.
#[cfg(feature = "lattice")]
pub fn start(
    opts: UplinkOptions,
    host: crate::host::Host,
    identity: Option<HostIdentity>,
    stop: Arc<tokio::sync::Notify>,
) -> Uplink {
    let status = Arc::new(Mutex::new(UplinkStatus::new(&opts)));
    let cell = Arc::new(tokio::sync::OnceCell::new());
    let uplink = Uplink {
        status: status.clone(),
        agent: cell.clone(),
    };
    // From now on the message bus reaches NATS while the uplink is up
    // (and fails requests at once while it is down).
    host.set_messaging(messaging::NatsMessaging::new(&opts));
    tokio::spawn(async move {
        let (connects_tx, connects) = tokio::sync::watch::channel(0u64);
        let epochs = Arc::new(connects_tx);
        match connect(&opts, status.clone(), epochs.clone(), Role::Uplink).await {
            Ok(client) => {
                // Link supervision and the outbox drain run with or
                // without a lattice identity.
                let link = Arc::new(drain::Link {
                    client: client.clone(),
                    js_domain: opts.js_domain.clone(),
                    status: status.clone(),
                    upstream_back: tokio::sync::Notify::new(),
                    epochs,
                });
                let every =
                    (opts.heartbeat / 3).clamp(Duration::from_secs(1), Duration::from_secs(10));
                tokio::spawn(drain::supervise(link.clone(), every));
                if let Some(up) = host.upstream() {
                    tokio::spawn(drain::run(link, up));
                }
                let Some(id) = identity else {
                    tracing::error!("uplink: no host identity, so twig does not join the lattice's control interface");
                    let _client = client;
                    std::future::pending::<()>().await;
                    return;
                };
                let host_max_scales = host.board().control.max_concurrent_scales;
                let ctl = match &opts.ctl {
                    None => agent::CtlLink {
                        client: client.clone(),
                        status: status.clone(),
                        connects: connects.clone(),
                    },
                    Some(c) => {
                        let c = UplinkOptions {
                            name: format!("{} control", opts.name),
                            ..(**c).clone()
                        };
                        let ctl_status = Arc::new(Mutex::new(UplinkStatus::new(&c)));
                        update(&status, |s| s.control_link = Some(ctl_status.clone()));
                        let (tx, rx) = tokio::sync::watch::channel(0u64);
                        match connect(&c, ctl_status.clone(), Arc::new(tx), Role::Uplink).await {
                            Ok(ctl_client) => agent::CtlLink {
                                client: ctl_client,
                                status: ctl_status,
                                connects: rx,
                            },
                            Err(why) => {
                                // Without its control connection the host
                                // runs and sends, but takes no orders.
                                tracing::error!(url = %c.url, "control connection: {why}; twig runs without the control interface");
                                update(&ctl_status, |s| {
                                    s.state = LinkState::Failed;
                                    s.last_error = Some(why);
                                });
                                let _client = client;
                                std::future::pending::<()>().await;
                                return;
                            }
                        }
                    }
                };
                let a = Arc::new(agent::Agent {
                    ctl,
                    client,
                    host,
                    id,
                    opts,
                    status,
                    started: std::time::Instant::now(),
                    connects,
                    stop,
                    buckets: Default::default(),
                    serve_sync: Default::default(),
                    scales: Arc::new(tokio::sync::Semaphore::new(host_max_scales)),
                    ordered: Default::default(),
                });
                let _ = cell.set(a.clone());
                spawn_agent(a).await;
            }
            Err(why) => {
                tracing::error!(url = %opts.url, "uplink: {why}; twig keeps running without the lattice");
                update(&status, |s| {
                    s.state = LinkState::Failed;
                    s.last_error = Some(why);
                });
            }
        }
    });
    uplink
}

/// Without the `lattice` feature there is no uplink to start.
#[cfg(not(feature = "lattice"))]
pub fn start(
    opts: UplinkOptions,
    _host: crate::host::Host,
    _identity: Option<HostIdentity>,
    _stop: Arc<tokio::sync::Notify>,
) -> Uplink {
    let why = "this twig was built without lattice support (cargo feature `lattice`)";
    tracing::error!(url = %opts.url, "uplink: {why}; twig keeps running without the lattice");
    let mut s = UplinkStatus::new(&opts);
    s.state = LinkState::Failed;
    s.last_error = Some(why.into());
    Uplink {
        status: Arc::new(Mutex::new(s)),
    }
}

/// What a connection is for: how its log lines name it, and whether the
/// server echoes its own publishes to it.
#[cfg(feature = "lattice")]
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The uplink (and a separate control connection).
    Uplink,
    /// The messaging bridge's (`messaging`): no echo.
    Messaging,
}

#[cfg(feature = "lattice")]
impl Role {
    fn label(self) -> &'static str {
        match self {
            Role::Uplink => "uplink",
            Role::Messaging => "messaging link",
        }
    }
}

#[cfg(feature = "lattice")]
async fn connect(
    opts: &UplinkOptions,
    status: SharedStatus,
    connects: Arc<tokio::sync::watch::Sender<u64>>,
    role: Role,
) -> Result<async_nats::Client, String> {
    use async_nats::{ConnectOptions, Event};

    // An expired user JWT is told by its date, here and whenever the server
    // refuses it; twig still connects, in case this device's clock is
    // what is wrong.
    if let Some(why) = opts.creds.as_deref().and_then(jwt::check_creds_file) {
        tracing::error!(url = %opts.url, "{}: {why}", role.label());
        update(&status, |s| s.last_error = Some(why));
    }
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
    if let Some(path) = &opts.nkey {
        let seed = std::fs::read_to_string(path)
            .map_err(|e| format!("nkey seed file {}: {e}", path.display()))?;
        let seed = seed.trim().to_string();
        nkeys::KeyPair::from_seed(&seed)
            .map_err(|e| format!("nkey seed file {}: not an nkey seed ({e})", path.display()))?;
        o = o.nkey(seed);
    }
    match (&opts.user, &opts.password) {
        (Some(u), Some(p)) => o = o.user_and_password(u.clone(), p.clone()),
        (None, None) => {}
        _ => return Err("a NATS user needs a password, and a password a user".into()),
    }
    if let Some(t) = &opts.token {
        o = o.token(t.clone());
    }
    if let Some(ca) = &opts.tls_ca {
        probe::check_ca(ca)?;
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
    let seen: Arc<Mutex<std::collections::HashSet<String>>> = Arc::default();
    let probe_opts = Arc::new(opts.clone());
    if role == Role::Messaging {
        o = o.no_echo();
    }
    let label = role.label();
    o = o
        .name(opts.name.clone())
        // Never give up: a device may be offline for days.
        .retry_on_initial_connect()
        .max_reconnects(None)
        // Backoff with jitter, so devices behind one site link that lost
        // the server together do not all come back in the same instant.
        .reconnect_delay_callback(drain::reconnect_delay)
        .event_callback(move |event| {
            let st = st.clone();
            let url = url.clone();
            let connects = connects.clone();
            let seen = seen.clone();
            let probe_opts = probe_opts.clone();
            async move {
                match event {
                    Event::Connected => {
                        seen.lock().unwrap_or_else(|e| e.into_inner()).clear();
                        tracing::info!(%url, "{label} connected");
                        update(&st, |s| {
                            s.state = LinkState::Connected;
                            s.connects += 1;
                        });
                        connects.send_modify(|n| *n += 1);
                    }
                    Event::Disconnected => {
                        tracing::warn!(%url, "{label} lost; reconnecting in the background");
                        update(&st, |s| {
                            s.state = LinkState::Disconnected;
                            s.upstream = UpstreamState::Unknown;
                        });
                    }
                    other => {
                        let raw = other.to_string();
                        // One line per problem, not one per retry (or per
                        // heartbeat refused): each is told once until the
                        // link comes up again.
                        {
                            let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                            if seen.len() >= 256 || !seen.insert(raw.clone()) {
                                return;
                            }
                        }
                        // async-nats says only "IO error" for a failed TLS
                        // handshake; find the real cause.
                        let why = if raw.contains("IO error") {
                            probe::tls_problem(&probe_opts).await.unwrap_or(raw)
                        } else if raw.contains("authorization violation") {
                            match probe_opts.creds.as_deref().and_then(jwt::check_creds_file) {
                                Some(expired) => format!("{raw}: {expired}"),
                                None => raw,
                            }
                        } else {
                            raw
                        };
                        tracing::warn!(%url, "{label}: {why}");
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

/// Loads the host key from `DATA/host.nk`, making it on first start.
/// `friendly_name` defaults to the machine's hostname.
#[cfg(feature = "lattice")]
pub fn load_identity(
    data_dir: &Path,
    friendly_name: Option<String>,
) -> Result<Option<HostIdentity>, String> {
    let path = data_dir.join(HOST_KEY_FILE);
    let key = match std::fs::read_to_string(&path) {
        Ok(seed) => nkeys::KeyPair::from_seed(seed.trim()).map_err(|e| {
            format!(
                "{}: not a host key seed ({e}); move it away to make a new host id",
                path.display()
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = nkeys::KeyPair::new_server();
            let seed = key.seed().map_err(|e| format!("host key: {e}"))?;
            crate::state::write_atomic(&path, seed.as_bytes())
                .map_err(|e| format!("cannot save the host key: {e}"))?;
            tracing::info!(host_id = %key.public_key(), "made a new host id");
            key
        }
        Err(e) => return Err(format!("{}: {e}", path.display())),
    };
    if key.key_pair_type() != nkeys::KeyPairType::Server {
        return Err(format!(
            "{}: holds a {:?} key, not a server (host) key",
            path.display(),
            key.key_pair_type()
        ));
    }
    let friendly_name = friendly_name
        .filter(|n| !n.trim().is_empty())
        .or_else(hostname)
        .unwrap_or_else(|| format!("twig-{}", &key.public_key()[..8].to_ascii_lowercase()));
    Ok(Some(HostIdentity {
        host_id: key.public_key(),
        friendly_name,
    }))
}

/// Without the `lattice` feature the host has no lattice identity.
#[cfg(not(feature = "lattice"))]
pub fn load_identity(
    _data_dir: &Path,
    _friendly_name: Option<String>,
) -> Result<Option<HostIdentity>, String> {
    Ok(None)
}

#[cfg(feature = "lattice")]
fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

pub use crate::names::{check_name, check_prefix, check_url, parse_label};

#[cfg(feature = "lattice")]
/// Runs the agent's tasks for the life of the runtime.
async fn spawn_agent(agent: Arc<agent::Agent>) {
    // One inbox for every wRPC call this host makes or answers.
    match wrpc::Inbox::new(&agent.client).await {
        Ok(inbox) => {
            let inbox = Arc::new(inbox);
            agent.host.set_remote(Arc::new(wrpc::WrpcClient {
                client: agent.client.clone(),
                inbox: inbox.clone(),
                lattice: agent.opts.lattice.clone(),
                runtime: tokio::runtime::Handle::current(),
                status: agent.status.clone(),
            }));
            let (sync_tx, sync_rx) = tokio::sync::mpsc::unbounded_channel();
            let _ = agent.serve_sync.set(sync_tx);
            let a = agent.clone();
            tokio::spawn(async move { wrpc::serve(a, inbox, sync_rx).await });
        }
        Err(e) => tracing::warn!("wRPC is off: {e}"),
    }
    let a = agent.clone();
    tokio::spawn(async move { control::serve(a).await });
    let a = agent.clone();
    tokio::spawn(async move { events::heartbeat(a).await });
    tokio::spawn(async move { buckets::watch(agent).await });
}

#[cfg(feature = "lattice")]
/// `host_stopped`, flushed, on the way out (bounded: a host whose link is
/// down must still stop promptly).
async fn announce_agent_stop(agent: &agent::Agent) {
    events::announce_stop(agent).await
}

#[cfg(all(test, feature = "lattice"))]
mod tests {
    use super::*;

    #[test]
    fn host_id_is_made_once_and_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        let a = load_identity(&dir, Some("gw-1".into())).unwrap().unwrap();
        assert!(
            a.host_id.starts_with('N') && a.host_id.len() == 56,
            "{}",
            a.host_id
        );
        assert_eq!(a.friendly_name, "gw-1");
        let b = load_identity(&dir, None).unwrap().unwrap();
        assert_eq!(a.host_id, b.host_id);
        assert!(!b.friendly_name.is_empty());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.join(HOST_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);

        std::fs::write(dir.join(HOST_KEY_FILE), "not a seed").unwrap();
        let e = load_identity(&dir, None).unwrap_err();
        assert!(e.contains("host.nk: not a host key seed"), "{e}");
        let user = nkeys::KeyPair::new_user().seed().unwrap();
        std::fs::write(dir.join(HOST_KEY_FILE), user).unwrap();
        let e = load_identity(&dir, None).unwrap_err();
        assert!(e.contains("not a server (host) key"), "{e}");
    }
}
