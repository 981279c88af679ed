//! The lattice agent: everything twig does on the NATS connection once it
//! has one. Its tasks share the client (the control server and the data
//! watcher use [`CtlLink`], a separate control connection when `--ctl-*`
//! names one):
//!
//! * the **control server** ([`super::control`]) answers
//!   `{ctl_prefix}.v1.{lattice}.…` requests one at a time, in arrival
//!   order, after the control policy's checks (`crate::policy`); host work
//!   (compiling, starting, writing to disk) runs on blocking threads, and
//!   what is acknowledged before it is done (scale, update, provider
//!   start) runs in a per-id queue, so two operations on one component
//!   never overtake each other;
//! * the **heartbeat** ([`super::events`]) publishes the inventory as
//!   `host_heartbeat` every interval and right after each (re)connect;
//! * the **data watcher** ([`super::buckets`]) copies the
//!   `LATTICEDATA_{lattice}` and `CONFIGDATA_{lattice}` buckets (through the
//!   JetStream domain) into the host, which keeps them on disk; after every
//!   (re)connect it takes a full copy first, so links and config changed
//!   while the device was away arrive;
//! * events (`component_scaled`, `linkdef_set`, …) are published by the
//!   control server as it acts ([`super::events`]).
//!
//! Subscriptions are restored by async-nats after a reconnect. Nothing
//! here is needed for the host to run: with the link down, requests simply
//! do not arrive and the host carries on from its disk.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::Client;
use tokio::sync::Notify;

use super::bucket_store::Buckets;
use super::ordered::Ordered;
use super::wire;
use super::{HostIdentity, LinkState, SharedStatus, UplinkOptions};
use crate::host::Host;

/// The connection the control interface uses: requests, replies, the
/// lattice's buckets and the policy service. The uplink's own connection,
/// unless the options name a separate one (`--ctl-url`, `--ctl-creds`, …,
/// as wasmCloud 1.x's `--ctl-*`), so that control can live on another
/// server or account than the data the device sends.
pub(crate) struct CtlLink {
    pub client: Client,
    pub status: SharedStatus,
    /// Bumped on every (re)connect of this connection.
    pub connects: tokio::sync::watch::Receiver<u64>,
}

/// Shared by the agent's tasks.
pub(crate) struct Agent {
    pub client: Client,
    pub ctl: CtlLink,
    pub host: Host,
    pub id: HostIdentity,
    pub opts: UplinkOptions,
    pub status: SharedStatus,
    pub started: Instant,
    /// Counts (re)connects and returns of the upstream past a leaf node
    /// (`drain::supervise`): on each, heartbeat now and copy the buckets
    /// again. Each task watches its own clone.
    pub connects: tokio::sync::watch::Receiver<u64>,
    /// Rung by `host.stop`.
    pub stop: Arc<Notify>,
    /// The lattice's two buckets and the revisions applied from them.
    pub buckets: Buckets,
    /// Asks the wRPC server to bring what it serves in step with what runs
    /// now, and says when it has (set once the server runs).
    pub serve_sync: std::sync::OnceLock<SyncRequests>,
    /// Scales, updates and provider starts running or queued at once
    /// (`control.max_concurrent_scales`); one more is refused, not queued,
    /// so a flood of them cannot pile up compiles and memory.
    pub scales: Arc<tokio::sync::Semaphore>,
    /// Scales, updates and provider starts per id, in arrival order.
    pub ordered: Ordered,
}

impl Agent {
    pub fn ctl_prefix(&self) -> String {
        format!("{}.v1.{}", self.opts.ctl_prefix, self.opts.lattice)
    }

    pub fn connected(&self) -> bool {
        self.status
            .lock()
            .map(|s| s.state == LinkState::Connected)
            .unwrap_or(false)
    }

    /// Whether the control connection is up (the same as [`connected`]
    /// when there is no separate one).
    ///
    /// [`connected`]: Agent::connected
    pub fn ctl_connected(&self) -> bool {
        self.ctl
            .status
            .lock()
            .map(|s| s.state == LinkState::Connected)
            .unwrap_or(false)
    }

    pub fn uptime(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    pub fn host_info(&self) -> wire::HostInfo {
        let up = self.uptime();
        wire::HostInfo {
            id: self.id.host_id.clone(),
            friendly_name: self.id.friendly_name.clone(),
            labels: self.host.labels(),
            lattice: self.opts.lattice.clone(),
            uptime_seconds: up,
            uptime_human: wire::human_uptime(up),
            version: env!("CARGO_PKG_VERSION").to_string(),
            ctl_host: Some(self.opts.url.clone()),
            rpc_host: Some(self.opts.url.clone()),
            js_domain: self.opts.js_domain.clone(),
        }
    }

    pub fn inventory(&self) -> wire::Inventory {
        let (components, providers) = self.host.inventory();
        let up = self.uptime();
        wire::Inventory {
            components,
            providers,
            host_id: self.id.host_id.clone(),
            friendly_name: self.id.friendly_name.clone(),
            labels: self.host.labels(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_human: wire::human_uptime(up),
            uptime_seconds: up,
        }
    }

    /// Waits (at most 2 s) until the wRPC server serves exactly the
    /// components running now. Its subscriptions go out on this connection
    /// before anything published after this, so a caller that hears
    /// `component_scaled` finds the component served.
    pub async fn serving_in_step(&self) {
        let Some(tx) = self.serve_sync.get() else {
            return;
        };
        let (ack, done) = tokio::sync::oneshot::channel();
        if tx.send(ack).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), done).await;
        }
    }
}

/// Asks the wRPC server for a serving pass; the sender is told when it is
/// done (`Agent::serving_in_step`).
pub(crate) type SyncRequests = tokio::sync::mpsc::UnboundedSender<tokio::sync::oneshot::Sender<()>>;

/// Runs blocking host work off the async thread.
pub(crate) async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("host task failed: {e}"))
}
