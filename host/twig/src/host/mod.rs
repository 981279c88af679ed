//! The running host: apps placed on this device, their components'
//! instance pools, the built-in providers, and the routing of calls
//! between components.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | [`Host`], the facade everything outside calls; the state it owns |
//! | [`pool`] | one component's instances, the data each carries, its links (a leaf: it asks the host through [`pool::Directory`]) |
//! | [`apps`] | open, start, deploy, apply, delete; which ids are whose |
//! | [`config`] | a running component's config, live from the lattice |
//! | [`placement`] | whether a component runs here and with how many instances |
//! | [`rpc`] | the linker: link resolution, local and remote calls, calls from the lattice |
//! | [`lattice_data`] | links, named config and labels from the lattice: bounded, saved, applied |
//! | [`status`] | `twig status` and the lattice inventory |
//!
//! A call flows like this: a trigger (`twig invoke`, an HTTP request, a
//! message, a wRPC call) picks a component by id and asks its
//! [`pool::Pool`] for an idle instance (making one if fewer than the
//! component's `instances` are alive). The guest runs under its
//! fuel/deadline/memory limits. When it calls an import, the component's
//! linker answers:
//!
//! * WASI 0.2 interfaces and `wasi:logging` from `twig-wasi`;
//! * `wasi:config/store` and `wasi:config/runtime` from the component's
//!   config in the manifest ([`crate::capabilities`]);
//! * a provider's interface (`wasi:keyvalue`, …) from that provider's
//!   crate, the store chosen by the component's link;
//! * an interface named by a `link` trait: the call is forwarded to the
//!   link's target component (its own pool and limits), here or elsewhere
//!   in the lattice, and the results come back to the caller;
//! * anything else: an error at call time naming the missing link, as a
//!   wasmCloud host does for unlinked imports.
//!
//! ## Locks
//!
//! Nothing slow (a compile, an fsync, a guest call) runs under a lock that
//! a heartbeat, a status request or a guest call takes: changes to the
//! desired state are serialised by `changes`, which only other changes
//! take, and publish their result with a pointer swap (`desired`); the
//! lattice data is saved before its swap likewise. The table of every lock
//! is in ARCHITECTURE.md.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::Duration;

use serde::Serialize;
use twig_component::Engine;
use twig_manifest::ComponentSpec;

use crate::board::Board;
use crate::latticedata::LatticeData;
use crate::providers::{Provider, ProviderKind};
use crate::state::{Cache, DesiredState};
use crate::sync::{lock, read};

pub mod apps;
pub mod config;
pub mod lattice_data;
pub mod placement;
pub mod pool;
pub mod rpc;
pub mod status;

pub use apps::{check_manifest_imports, load_images, read_image, ApplyOutcome, ApplyRequest};
pub use pool::split_interface;
pub use rpc::{RemoteCall, RemoteCalls, RemoteError};
pub use status::{AppStatus, ComponentStatus, HostStatus, InstanceCounts, Status};

use pool::{Directory, Lookup, Pool};

/// What `twig status` reports for a component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum State {
    Starting,
    Running,
    Failed,
    NotPlaced,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Running => "running",
            State::Failed => "failed",
            State::NotPlaced => "not-placed",
        }
    }

    /// The state with its reason, as errors say it (`failed: …`).
    pub fn describe(self, reason: Option<String>) -> String {
        match reason {
            Some(r) => format!("{}: {r}", self.as_str()),
            None => self.as_str().to_string(),
        }
    }
}

/// A component of an app, placed on this host or not.
pub struct Placed {
    pub id: String,
    pub name: String,
    pub app: String,
    pub digest: Option<String>,
    status: Mutex<(State, Option<String>)>,
    pool: RwLock<Option<Arc<Pool>>>,
    /// Set for a running capability provider.
    provider: RwLock<Option<Arc<dyn Provider>>>,
    /// The built-in provider a capability component runs as.
    provider_kind: Mutex<Option<ProviderKind>>,
}

impl Placed {
    fn new(app: &str, spec: &ComponentSpec, digest: Option<String>) -> Arc<Placed> {
        Arc::new(Placed {
            id: spec.id.clone(),
            name: spec.name.clone(),
            app: app.to_string(),
            digest,
            status: Mutex::new((State::Starting, None)),
            pool: RwLock::new(None),
            provider: RwLock::new(None),
            provider_kind: Mutex::new(None),
        })
    }

    fn set(&self, state: State, reason: Option<String>) {
        if let Some(r) = &reason {
            match state {
                State::Failed => tracing::error!(component = %self.id, app = %self.app, "{r}"),
                State::NotPlaced => {
                    tracing::info!(component = %self.id, app = %self.app, "not placed: {r}")
                }
                _ => {}
            }
        }
        *lock(&self.status) = (state, reason);
    }

    pub fn state(&self) -> (State, Option<String>) {
        lock(&self.status).clone()
    }

    /// `running`, or the state and why (`failed: …`).
    fn state_text(&self) -> String {
        let (state, reason) = self.state();
        state.describe(reason)
    }

    pub(crate) fn pool(&self) -> Option<Arc<Pool>> {
        read(&self.pool).clone()
    }

    pub(crate) fn provider(&self) -> Option<Arc<dyn Provider>> {
        read(&self.provider).clone()
    }

    pub(crate) fn provider_kind(&self) -> Option<ProviderKind> {
        *lock(&self.provider_kind)
    }
}

/// The running host. Cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Host {
    inner: Arc<HostInner>,
}

/// What the host owns. Private to this module and its files: everything
/// outside goes through [`Host`]'s methods.
struct HostInner {
    engine: Engine,
    board: Board,
    /// The board's labels with the lattice's `label.put`/`label.del`.
    labels: RwLock<BTreeMap<String, String>>,
    data_dir: PathBuf,
    cache: Cache,
    /// Serialises changes to the desired state (apply, delete, lattice
    /// scale/update/provider start), held through their compiles, cache
    /// writes and starts. Only another change waits on it.
    changes: Mutex<()>,
    /// The desired state as last saved. Replaced whole (after the save)
    /// under a short write lock; readers clone the `Arc`.
    desired: RwLock<Arc<DesiredState>>,
    /// Placed components by id.
    components: RwLock<HashMap<String, Arc<Placed>>>,
    /// App name -> ids of its components, in manifest order.
    apps: RwLock<BTreeMap<String, AppInfo>>,
    /// Key-value stores open in this host.
    kv_stores: crate::providers::keyvalue::OpenStores,
    /// The in-process message bus, made when a messaging provider starts.
    bus: OnceLock<Arc<twig_messaging::Bus>>,
    /// The bus's uplink: outbox classes and NATS (`crate::bridge`).
    bridge: Arc<crate::bridge::Bridge>,
    /// The durable outbox of what leaves the device, once `twig up` has
    /// opened it (before any app starts).
    upstream: OnceLock<Arc<crate::outbox::Upstream>>,
    /// The board's sensors, or why they cannot be read.
    sensors: Result<Arc<twig_sensors::Sensors>, String>,
    /// The uplink's state, once `twig up` starts one.
    uplink: OnceLock<crate::uplink::SharedStatus>,
    /// The lattice identity, once `twig up` has loaded it.
    identity: OnceLock<crate::uplink::HostIdentity>,
    /// Links, named config and label changes from the lattice, as last
    /// seen (also on disk, so they hold offline). Replaced whole after
    /// the save, like `desired`.
    lattice: RwLock<Arc<LatticeData>>,
    /// Serialises changes to `lattice` (held through the save).
    lattice_changes: Mutex<()>,
    /// What the control policy's bounds or ownership rule left out of the
    /// lattice data, as logged: each line is logged once, not on every
    /// change (`policy::admit`).
    lattice_dropped: Mutex<std::collections::BTreeSet<crate::policy::Dropped>>,
    /// Calls to components elsewhere in the lattice, once the agent runs.
    remote: OnceLock<Arc<dyn RemoteCalls>>,
    /// Where guest calls from the lattice and the admin socket run, once
    /// `twig up` has made the pool ([`crate::exec`]).
    guests: OnceLock<crate::exec::GuestHandle>,
}

#[derive(Clone)]
struct AppInfo {
    version: Option<String>,
    source: Option<String>,
    components: Vec<Arc<Placed>>,
    /// For an app the lattice made: what it asked for.
    lattice: Option<crate::state::LatticeOrigin>,
}

impl HostInner {
    /// The desired state as of now.
    fn desired(&self) -> Arc<DesiredState> {
        read(&self.desired).clone()
    }

    /// The lattice data as of now.
    fn lattice(&self) -> Arc<LatticeData> {
        read(&self.lattice).clone()
    }

    fn find_component(&self, key: &str) -> Result<Arc<Placed>, String> {
        let comps = read(&self.components);
        if let Some(p) = comps.get(key) {
            return Ok(p.clone());
        }
        let by_name: Vec<&Arc<Placed>> = comps.values().filter(|p| p.name == key).collect();
        match by_name.as_slice() {
            [one] => Ok((*one).clone()),
            [] => {
                let mut ids: Vec<&str> = comps.keys().map(String::as_str).collect();
                ids.sort();
                Err(format!(
                    "no component `{key}` on this host (components: {})",
                    if ids.is_empty() {
                        "none".into()
                    } else {
                        ids.join(", ")
                    }
                ))
            }
            many => Err(format!(
                "`{key}` names components in several apps; use an id: {}",
                many.iter()
                    .map(|p| p.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

impl Directory for HostInner {
    fn running_pool(&self, key: &str) -> Result<Arc<Pool>, String> {
        let target = self.find_component(key)?;
        target
            .pool()
            .ok_or_else(|| format!("`{key}` is {}", target.state().0.as_str()))
    }

    fn provider(&self, id: &str) -> Result<Arc<dyn Any + Send + Sync>, Lookup> {
        let placed = self.find_component(id).map_err(Lookup::Missing)?;
        match placed.provider() {
            Some(p) => Ok(p.as_any()),
            None => Err(Lookup::NotProvider(placed.state_text())),
        }
    }

    fn lattice_targets(
        &self,
        source: &str,
        ns: &str,
        pkg: &str,
        iface: &str,
    ) -> Vec<(String, String)> {
        let lattice = read(&self.lattice);
        lattice
            .links
            .get(source)
            .into_iter()
            .flatten()
            .filter(|l| l.provides(ns, pkg, iface))
            .map(|l| (l.name.clone(), l.target.clone()))
            .collect()
    }

    fn call_wait(&self) -> Duration {
        Duration::from_millis(self.board.limits.deadline_ms)
    }
}

impl Host {
    pub fn board(&self) -> &Board {
        &self.inner.board
    }

    /// The host's labels as the lattice sees them.
    pub fn labels(&self) -> BTreeMap<String, String> {
        read(&self.inner.labels).clone()
    }

    /// Whether a component or provider with this id is on this host.
    pub fn has_component(&self, id: &str) -> bool {
        read(&self.inner.components).contains_key(id)
    }

    pub(crate) fn find_component(&self, key: &str) -> Result<Arc<Placed>, String> {
        self.inner.find_component(key)
    }

    /// Shows the host's lattice identity in [`Host::status`]; set once.
    pub fn set_identity(&self, identity: crate::uplink::HostIdentity) {
        let _ = self.inner.identity.set(identity);
    }

    /// Opens the durable outbox (`DATA/outbox`) with the board's
    /// `[outbox]` classes; `heartbeat` is the lattice heartbeat interval.
    /// Call before starting apps, so the message bus exports to it. A
    /// failure is returned for the caller to log: the host runs on, and
    /// nothing leaves the device.
    pub fn open_upstream(
        &self,
        heartbeat: Duration,
    ) -> Result<Arc<crate::outbox::Upstream>, String> {
        if let Some(u) = self.inner.upstream.get() {
            return Ok(u.clone());
        }
        let u = crate::outbox::Upstream::open(
            &self.inner.board.outbox,
            &self.inner.data_dir,
            heartbeat,
        )?;
        let u = self.inner.upstream.get_or_init(|| Arc::new(u)).clone();
        self.inner.bridge.set_outbox(u.clone());
        Ok(u)
    }

    /// The outbox, once [`Host::open_upstream`] has opened it.
    pub fn upstream(&self) -> Option<Arc<crate::outbox::Upstream>> {
        self.inner.upstream.get().cloned()
    }

    /// Shows the uplink's state in [`Host::status`]; set once.
    pub fn set_uplink(&self, status: crate::uplink::SharedStatus) {
        let _ = self.inner.uplink.set(status);
    }

    /// Lets the message bus reach the lattice's NATS (the messaging
    /// bridge, `crate::bridge`); set once, when the uplink starts.
    pub fn set_messaging(&self, nats: Arc<dyn crate::bridge::LatticeMessaging>) {
        self.inner.bridge.set_nats(nats);
    }

    /// Lets calls to link targets that are not local go over the lattice.
    pub fn set_remote(&self, remote: Arc<dyn RemoteCalls>) {
        let _ = self.inner.remote.set(remote);
    }

    /// Runs guest calls from the lattice and the admin socket on `pool`
    /// from now on; set once.
    pub fn set_guest_pool(&self, pool: crate::exec::GuestHandle) {
        let _ = self.inner.guests.set(pool);
    }

    /// Runs `f` (a call into a guest) on the guest pool, apart from the
    /// control plane's blocking work.
    pub fn run_guest<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Host) -> R + Send + 'static,
    ) -> crate::exec::Running<R> {
        let host = self.clone();
        crate::exec::run_on(self.inner.guests.get(), move || f(&host))
    }

    /// The host as its instances and providers see it.
    fn directory(&self) -> std::sync::Weak<dyn Directory> {
        let weak: std::sync::Weak<HostInner> = Arc::downgrade(&self.inner);
        weak
    }
}
