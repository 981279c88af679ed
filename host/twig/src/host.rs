//! The running host: apps placed on this device, their components'
//! instance pools, and the routing of calls between components.
//!
//! A call flows like this: a trigger (today `twig invoke` through the admin
//! socket) picks a component by id and asks its [`Pool`] for an idle
//! instance (making one if fewer than the component's `instances` are
//! alive). The guest runs under its fuel/deadline/memory limits. When it
//! calls an import, the component's linker answers:
//!
//! * WASI 0.2 interfaces and `wasi:logging` from `twig-wasi`;
//! * `wasi:config/store` and `wasi:config/runtime` from the component's
//!   config in the manifest ([`crate::capabilities`]);
//! * an interface named by a `link` trait: the call is forwarded to the
//!   link's target component (its own pool and limits), and the results come
//!   back to the caller;
//! * anything else: an error at call time naming the missing link, as a
//!   wasmCloud host does for unlinked imports.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use twig_component::{Component, Engine, EngineConfig, HostError, Instance, Limits, Linker, Val};
use twig_keyvalue::component::{KeyValueCtx, KeyValueView};
use twig_manifest::{ComponentKind, ComponentSpec, Image, Manifest, Scaler};
use twig_wasi::{WasiCtx, WasiView};

use crate::board::Board;
use crate::capabilities;
use crate::http;
use crate::lattice::cache::LatticeData;
use crate::providers::{self, Provider, ProviderKind};
use crate::state::{Cache, DeployedApp, DesiredState, StateError};

/// Per-instance data of every component instance.
pub struct InstanceData {
    pub wasi: WasiCtx,
    /// The component's config, merged from its manifest `config` entries
    /// (and named lattice config, which can change while it runs).
    pub config: Arc<capabilities::LiveConfig>,
    /// The component's links and the way back to the host.
    pub links: Arc<Links>,
    /// `ns:pkg/iface` -> link name chosen by `wasmcloud:bus/lattice`
    /// `set-link-name` during the current call (absent: `default`).
    pub link_names: BTreeMap<String, String>,
    /// `wasmcloud:bus/lattice` call-target-interface handles.
    pub call_targets: HashMap<u32, String>,
    pub keyvalue: KeyValueCtx,
    /// The bus, when the component links `wasmcloud:messaging` to a
    /// messaging provider.
    pub messaging: Option<Arc<twig_messaging::Bus>>,
    /// The board's sensors, when the component links `twig:sensors` to the
    /// sensors provider.
    pub sensors: Option<Arc<twig_sensors::Sensors>>,
    /// `wasi:http` objects of the request being handled.
    pub http: http::HttpCtx,
}

impl twig_messaging::MessagingView for InstanceData {
    fn messaging(&self) -> Option<&Arc<twig_messaging::Bus>> {
        self.messaging.as_ref()
    }
}

impl twig_sensors::SensorsView for InstanceData {
    fn sensors(&self) -> Option<&Arc<twig_sensors::Sensors>> {
        self.sensors.as_ref()
    }
}

impl KeyValueView for InstanceData {
    fn keyvalue(&mut self) -> &mut KeyValueCtx {
        &mut self.keyvalue
    }

    fn resolve_store(&mut self) -> Result<Arc<twig_keyvalue::Store>, String> {
        let name = self.link_name("wasi:keyvalue/store");
        let target = self.links.target("wasi", "keyvalue", "store", &name)?;
        let host = self
            .links
            .host
            .upgrade()
            .ok_or_else(|| "the host is shutting down".to_string())?;
        let placed = find_component(&host, &target)?;
        match placed.provider().as_deref() {
            Some(Provider::KeyValue(store)) => Ok(store.clone()),
            Some(_) => Err(format!(
                "link `{name}` of {} for wasi:keyvalue names `{target}`, which is not a key-value provider",
                self.links.source
            )),
            None => {
                let (state, reason) = placed.state();
                Err(format!(
                    "link `{name}` of {} for wasi:keyvalue names `{target}`, which is {}{}",
                    self.links.source,
                    state.as_str(),
                    reason.map(|r| format!(": {r}")).unwrap_or_default()
                ))
            }
        }
    }
}

impl InstanceData {
    /// The link name in force for interface `ns:pkg/iface`.
    pub fn link_name(&self, iface: &str) -> String {
        self.link_names
            .get(iface)
            .cloned()
            .unwrap_or_else(|| "default".to_string())
    }
}

/// A component's links, as its instances resolve them at call time.
pub struct Links {
    /// The component's id.
    pub source: String,
    pub links: Vec<twig_manifest::Link>,
    host: Weak<HostInner>,
}

impl Links {
    /// The target id of the link named `name` that provides `ns:pkg/iface`.
    /// For `default`, a component with exactly one link for the interface
    /// uses it whatever its name.
    pub fn target(&self, ns: &str, pkg: &str, iface: &str, name: &str) -> Result<String, String> {
        // (link name, target id) of every link that provides the interface:
        // the app's own first (the device's manifest wins), then the
        // lattice's links for this component.
        let mut matching: Vec<(String, String)> = self
            .links
            .iter()
            .filter(|l| {
                l.namespace == ns && l.package == pkg && l.interfaces.iter().any(|i| i == iface)
            })
            .map(|l| (l.name.clone(), l.target_id.clone()))
            .collect();
        if let Some(host) = self.host.upgrade() {
            let lattice = read(&host.lattice);
            for l in lattice.links.get(&self.source).into_iter().flatten() {
                if l.provides(ns, pkg, iface) {
                    matching.push((l.name.clone(), l.target.clone()));
                }
            }
        }
        let found = matching.iter().find(|(n, _)| n == name).or(
            if name == "default" && matching.len() == 1 {
                matching.first()
            } else {
                None
            },
        );
        match found {
            Some((_, target)) => Ok(target.clone()),
            None if matching.is_empty() => Err(format!(
                "{} uses `{ns}:{pkg}/{iface}`, but no link provides it (add a `link` trait naming a target, or put a link on the lattice)",
                self.source
            )),
            None => Err(format!(
                "{} has no link named `{name}` for `{ns}:{pkg}/{iface}` (its links: {})",
                self.source,
                matching.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
            )),
        }
    }
}

impl WasiView for InstanceData {
    fn wasi(&mut self) -> &mut WasiCtx {
        &mut self.wasi
    }
}

/// What `twig status` reports for a component.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
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
    provider: RwLock<Option<Arc<Provider>>>,
    /// The built-in provider a capability component runs as.
    pub(crate) provider_kind: Mutex<Option<ProviderKind>>,
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

    pub(crate) fn pool(&self) -> Option<Arc<Pool>> {
        self.pool.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(crate) fn provider(&self) -> Option<Arc<Provider>> {
        self.provider
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Read-locks an RwLock, carrying on if a panicking thread poisoned it.
pub(crate) fn read<T>(l: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// Write-locks an RwLock, carrying on if a panicking thread poisoned it.
pub(crate) fn write<T>(l: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// Locks a mutex, carrying on if a panicking thread poisoned it: the data
/// behind these locks stays consistent between statements.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Idle instances of one component, and how to make more.
pub struct Pool {
    component: Component,
    linker: Linker<InstanceData>,
    pub(crate) config: Arc<capabilities::LiveConfig>,
    links: Arc<Links>,
    messaging: Option<Arc<twig_messaging::Bus>>,
    sensors: Option<Arc<twig_sensors::Sensors>>,
    /// Set when the component imports `wasi:http` (an HTTP handler).
    http_types: Option<http::HttpTypes>,
    idle: Mutex<Vec<Instance<InstanceData>>>,
    freed: Condvar,
    max: usize,
    calls: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Pool {
    /// How many instances the pool may run at once.
    pub fn max_instances(&self) -> usize {
        self.max
    }

    /// Set when the component imports `wasi:http` (it can handle requests).
    pub fn http_types(&self) -> Option<http::HttpTypes> {
        self.http_types
    }

    fn new_instance(&self) -> Result<Instance<InstanceData>, twig_component::Error> {
        let data = InstanceData {
            wasi: WasiCtx::new(),
            config: self.config.clone(),
            links: self.links.clone(),
            link_names: BTreeMap::new(),
            call_targets: HashMap::new(),
            keyvalue: KeyValueCtx::default(),
            messaging: self.messaging.clone(),
            sensors: self.sensors.clone(),
            http: http::HttpCtx::new(),
        };
        let mut inst = Instance::new(&self.linker, &self.component, data)?;
        // wasmi makes every page of a new memory resident; give back the
        // ones the guest has not written (1 MB+ per Rust guest instance).
        inst.release_zero_pages();
        Ok(inst)
    }

    /// Runs `f` on an idle instance, making one if the pool may grow, or
    /// waiting (at most `wait`) for one to come back.
    pub(crate) fn with_instance<R>(
        &self,
        wait: Duration,
        f: impl FnOnce(&mut Instance<InstanceData>) -> Result<R, String>,
    ) -> Result<R, String> {
        let give_up = Instant::now() + wait;
        let mut inst = loop {
            let mut idle = lock(&self.idle);
            if let Some(i) = idle.pop() {
                break i;
            }
            if self.component.live_instances() < self.max {
                drop(idle);
                match self.new_instance() {
                    Ok(i) => break i,
                    // Another thread took the last slot between the check
                    // and the instantiation: wait like everyone else.
                    Err(twig_component::Error::InstanceLimit { .. }) => {
                        idle = lock(&self.idle);
                    }
                    Err(e) => return Err(e.to_string()),
                }
            }
            let now = Instant::now();
            if now >= give_up {
                return Err(format!(
                    "{}: all {} instances are busy",
                    self.component.name(),
                    self.max
                ));
            }
            let _unused = self
                .freed
                .wait_timeout(idle, give_up - now)
                .unwrap_or_else(|p| p.into_inner());
        };
        self.calls.fetch_add(1, Ordering::Relaxed);
        // Link names chosen with set-link-name last for one call, as on
        // wasmCloud, where every call gets a fresh instance.
        inst.data_mut().link_names.clear();
        let size_before = inst.memory_bytes();
        let result = f(&mut inst);
        if inst.memory_bytes() > size_before {
            // Grown memory was zero-filled (and so made resident) by wasmi.
            inst.release_zero_pages();
        }
        if let Err(e) = &result {
            self.failures.fetch_add(1, Ordering::Relaxed);
            *lock(&self.last_error) = Some(e.clone());
        }
        // A trapped instance is poisoned: drop it, the next call makes a
        // fresh one. The component itself keeps running.
        if !inst.is_poisoned() {
            lock(&self.idle).push(inst);
        }
        self.freed.notify_one();
        result
    }
}

/// The running host.
#[derive(Clone)]
pub struct Host {
    pub(crate) inner: Arc<HostInner>,
}

pub(crate) struct HostInner {
    pub(crate) engine: Engine,
    pub(crate) board: Board,
    /// The board's labels with the lattice's `label.put`/`label.del`.
    pub(crate) labels: RwLock<BTreeMap<String, String>>,
    pub(crate) data_dir: PathBuf,
    pub(crate) cache: Cache,
    /// Serialises apply/delete; holds the desired state as last saved.
    pub(crate) desired: Mutex<DesiredState>,
    /// Placed components by id.
    pub(crate) components: RwLock<HashMap<String, Arc<Placed>>>,
    /// App name -> ids of its components, in manifest order.
    pub(crate) apps: RwLock<BTreeMap<String, AppInfo>>,
    /// Key-value stores by provider id, while anything holds them.
    kv_stores: Mutex<HashMap<String, Weak<twig_keyvalue::Store>>>,
    /// The in-process message bus, made when a messaging provider starts.
    bus: std::sync::OnceLock<Arc<twig_messaging::Bus>>,
    /// The durable outbox of what leaves the device, once `twig up` has
    /// opened it (before any app starts).
    upstream: std::sync::OnceLock<Arc<crate::outbox::Upstream>>,
    /// The board's sensors, or why they cannot be read.
    sensors: Result<Arc<twig_sensors::Sensors>, String>,
    /// The uplink's state, once `twig up` starts one.
    uplink: std::sync::OnceLock<crate::lattice::SharedStatus>,
    /// The lattice identity, once `twig up` has loaded it.
    identity: std::sync::OnceLock<crate::lattice::HostIdentity>,
    /// Links, named config and label changes from the lattice, as last
    /// seen (also on disk, so they hold offline).
    pub(crate) lattice: RwLock<LatticeData>,
    /// What the control policy's bounds or ownership rule left out of the
    /// lattice data, as logged: each line is logged once, not on every
    /// change (`policy::admit`).
    pub(crate) lattice_dropped: Mutex<std::collections::BTreeSet<crate::policy::Dropped>>,
    /// Calls to components elsewhere in the lattice, once the agent runs.
    pub(crate) remote: std::sync::OnceLock<Arc<dyn RemoteCalls>>,
}

impl HostInner {
    /// The instance pool of a running component, or why there is none.
    pub(crate) fn running_pool(&self, key: &str) -> Result<Arc<Pool>, String> {
        let target = find_component(self, key)?;
        target
            .pool()
            .ok_or_else(|| format!("`{key}` is {}", target.state().0.as_str()))
    }
}

#[derive(Clone)]
pub(crate) struct AppInfo {
    pub(crate) version: Option<String>,
    pub(crate) source: Option<String>,
    pub(crate) components: Vec<Arc<Placed>>,
    /// For an app the lattice made: what it asked for.
    pub(crate) lattice: Option<crate::state::LatticeOrigin>,
}

/// A manifest to deploy, with the bytes of its file images if the caller
/// read them (the admin client does; `twig up --app` lets the host read).
pub struct ApplyRequest {
    pub file: Option<PathBuf>,
    pub text: String,
    pub images: HashMap<PathBuf, Vec<u8>>,
}

#[derive(Debug, Serialize)]
pub struct ApplyOutcome {
    pub name: String,
    pub version: Option<String>,
    pub warnings: Vec<String>,
    pub components: Vec<String>,
}

/// Status of everything, in the shape of `twig status --json`.
#[derive(Debug, Serialize)]
pub struct Status {
    pub host: HostStatus,
    pub apps: Vec<AppStatus>,
}

#[derive(Debug, Serialize)]
pub struct HostStatus {
    pub version: &'static str,
    pub board: String,
    pub data_dir: String,
    pub labels: BTreeMap<String, String>,
    /// The uplink to the lattice, when `twig up` was given one.
    pub uplink: Option<crate::lattice::UplinkStatus>,
    /// The durable outbox: what waits to leave the device, per class,
    /// with its drop and expiry counters.
    pub outbox: Option<twig_outbox::OutboxStats>,
    /// The host's lattice identity (id `N…`, friendly name).
    #[serde(flatten)]
    pub identity: Option<crate::lattice::HostIdentity>,
}

#[derive(Debug, Serialize)]
pub struct AppStatus {
    pub name: String,
    pub version: Option<String>,
    pub source: Option<String>,
    pub components: Vec<ComponentStatus>,
}

#[derive(Debug, Serialize)]
pub struct ComponentStatus {
    pub id: String,
    pub name: String,
    pub state: State,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// For a capability: the built-in provider it runs as.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<&'static str>,
    pub instances: InstanceCounts,
    pub calls: u64,
    pub failed_calls: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct InstanceCounts {
    pub live: usize,
    pub idle: usize,
    pub max: usize,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn image_field(i: usize) -> String {
    format!("spec.components[{i}].properties.image")
}

/// Reads the image file of component `index` of manifest `file`, at most
/// `cap` bytes (see [`crate::image::read_image`]: only a regular file).
pub fn read_image(file: &str, index: usize, path: &Path, cap: u64) -> Result<Vec<u8>, String> {
    crate::image::read_image(path, cap).map_err(|e| format!("{file}: {}: {e}", image_field(index)))
}

/// The bytes of every component image of `m` (capability providers have
/// none), each compiled once so that a bad image is refused before anything
/// changes, with the manifest position named. `provided` holds bytes the
/// caller already read, by path; other files are read here. No image may
/// be larger than `cap` bytes (the board's `limits.max_image_mib`).
pub fn load_images(
    engine: &Engine,
    m: &Manifest,
    file: &str,
    provided: &HashMap<PathBuf, Vec<u8>>,
    cap: u64,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut blobs = Vec::new();
    for (i, spec) in m.components.iter().enumerate() {
        if spec.kind == ComponentKind::Capability {
            continue;
        }
        let bytes = match &spec.image {
            Image::File(path) => match provided.get(path) {
                Some(b) if b.len() as u64 > cap => {
                    return Err(format!(
                        "{file}: {}: image {} is {} bytes, over the board's image cap of {cap} bytes (limits.max_image_mib = {})",
                        image_field(i),
                        path.display(),
                        b.len(),
                        cap >> 20
                    ))
                }
                Some(b) => b.clone(),
                None => read_image(file, i, path, cap)?,
            },
            Image::Reference(r) => {
                return Err(format!(
                    "{file}: {}: `{r}` is a registry reference; twig loads component images from files (file:// or a path relative to the manifest) so that it never needs a network to deploy",
                    image_field(i)
                ))
            }
        };
        Component::new(engine, &spec.id, &bytes).map_err(|e| {
            format!(
                "{file}: {}: image is not a usable component: {e}",
                image_field(i)
            )
        })?;
        blobs.push((spec.name.clone(), bytes));
    }
    Ok(blobs)
}

impl Host {
    /// Opens the data directory's cache and desired state. Apps are not
    /// started until [`Host::start_all`].
    pub fn open(board: Board, data_dir: &Path) -> Result<Host, StateError> {
        let cache = Cache::open(data_dir)?;
        let desired = match DesiredState::load(data_dir) {
            Ok(d) => d,
            Err(e @ StateError::BadState { .. }) => {
                // Keep the damaged file for inspection and start empty
                // rather than refuse to boot.
                let path = DesiredState::path(data_dir);
                let aside = path.with_extension(format!("json.damaged-{}", now_secs()));
                tracing::error!(
                    "{e}; moved it to {} and starting with no apps",
                    aside.display()
                );
                let _ = std::fs::rename(&path, &aside);
                DesiredState::default()
            }
            Err(e) => return Err(e),
        };
        let sensors = twig_sensors::Sensors::new(board.sensors_config())
            .map(Arc::new)
            .map_err(|e| format!("board `{}`: {e}", board.name));
        let engine = Engine::new(EngineConfig {
            default_limits: board.component_limits(),
            ..EngineConfig::default()
        });
        let lattice = LatticeData::load(data_dir, board.control.max_lattice_file_bytes());
        let host = Host {
            inner: Arc::new(HostInner {
                engine,
                labels: RwLock::new(lattice.labels(&board.host_labels())),
                lattice: RwLock::new(lattice),
                lattice_dropped: Mutex::new(Default::default()),
                remote: std::sync::OnceLock::new(),
                board,
                data_dir: data_dir.to_path_buf(),
                cache,
                desired: Mutex::new(desired),
                components: RwLock::new(HashMap::new()),
                apps: RwLock::new(BTreeMap::new()),
                kv_stores: Mutex::new(HashMap::new()),
                bus: std::sync::OnceLock::new(),
                upstream: std::sync::OnceLock::new(),
                sensors,
                uplink: std::sync::OnceLock::new(),
                identity: std::sync::OnceLock::new(),
            }),
        };
        // What was kept under another policy (or another twig) is held to
        // this one's bounds before anything uses it.
        host.sanitize_lattice();
        Ok(host)
    }

    pub fn board(&self) -> &Board {
        &self.inner.board
    }

    /// Starts every app of the desired state; [`Host::status`] tells how
    /// that went.
    pub fn start_all(&self) {
        let apps = lock(&self.inner.desired).apps.clone();
        for app in &apps {
            self.start_app(app);
        }
    }

    /// Registers an app's components as `starting`, then places and starts
    /// each of them.
    fn start_app(&self, app: &DeployedApp) {
        let m = &app.manifest;
        let placed: Vec<Arc<Placed>> = m
            .components
            .iter()
            .map(|c| Placed::new(&m.name, c, app.digests.get(&c.name).cloned()))
            .collect();
        {
            let mut comps = self
                .inner
                .components
                .write()
                .unwrap_or_else(|p| p.into_inner());
            for p in &placed {
                if let Some(other) = comps.get(&p.id) {
                    if other.app != p.app {
                        p.set(
                            State::Failed,
                            Some(format!(
                                "component id `{}` is already used by app `{}`",
                                p.id, other.app
                            )),
                        );
                        continue;
                    }
                }
                comps.insert(p.id.clone(), p.clone());
            }
        }
        self.inner
            .apps
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                m.name.clone(),
                AppInfo {
                    version: m.version.clone(),
                    source: app.source.clone(),
                    components: placed.clone(),
                    lattice: app.lattice.clone(),
                },
            );
        for (spec, p) in m.components.iter().zip(&placed) {
            if p.state().0 == State::Failed {
                continue;
            }
            if spec.kind == ComponentKind::Capability {
                match self
                    .place(m, spec)
                    .and_then(|_| self.start_builtin_provider(m, spec, p))
                {
                    Ok(()) => p.set(State::Running, None),
                    Err(reason) => p.set(State::NotPlaced, Some(reason)),
                }
                continue;
            }
            match self.place(m, spec) {
                Err(reason) => p.set(State::NotPlaced, Some(reason)),
                Ok(instances) => match self.start_component(m, spec, p, instances) {
                    Ok(pool) => {
                        *p.pool.write().unwrap_or_else(|e| e.into_inner()) = Some(pool);
                        p.set(State::Running, None);
                        tracing::info!(component = %p.id, app = %m.name, instances, "running");
                    }
                    Err(reason) => p.set(State::Failed, Some(reason)),
                },
            }
        }
        // Providers that call components start once those run.
        for (spec, p) in m.components.iter().zip(&placed) {
            if let Some(provider) = p.provider() {
                if let Err(reason) = self.start_provider_links(m, spec, &provider) {
                    p.set(State::Failed, Some(reason));
                }
            }
        }
    }

    /// Starts what a provider does for the components it links to: HTTP
    /// listeners, message subscriptions, sensor sampling. Its links are the
    /// manifest's plus the lattice's links whose source it is.
    fn start_provider_links(
        &self,
        m: &Manifest,
        spec: &ComponentSpec,
        provider: &Provider,
    ) -> Result<(), String> {
        let links = self.provider_links(spec);
        match provider {
            Provider::HttpServer(listeners) => self.start_listeners(m, spec, &links, listeners),
            Provider::Messaging { bus, subscriptions } => {
                self.subscribe_handlers(spec, &links, bus, subscriptions)
            }
            Provider::Sensors { sensors, sampler } => {
                self.start_sampler(spec, &links, sensors, sampler)
            }
            Provider::KeyValue(_) => Ok(()),
        }
    }

    /// A provider's links: its manifest's, then the lattice's with it as
    /// source (`link.put` from wadm for an HTTP server or a messaging
    /// provider), their named config looked up in the lattice's config.
    fn provider_links(&self, spec: &ComponentSpec) -> Vec<twig_manifest::Link> {
        let mut links = spec.links.clone();
        let lattice = read(&self.inner.lattice);
        let named = |names: &[String]| -> Vec<twig_manifest::ConfigRef> {
            names
                .iter()
                .map(|n| twig_manifest::ConfigRef {
                    name: n.clone(),
                    properties: lattice.config.get(n).cloned().unwrap_or_default(),
                })
                .collect()
        };
        for l in lattice.links.get(&spec.id).into_iter().flatten() {
            links.push(twig_manifest::Link {
                namespace: l.wit_namespace.clone(),
                package: l.wit_package.clone(),
                interfaces: l.interfaces.clone(),
                name: l.name.clone(),
                target: l.target.clone(),
                target_id: l.target.clone(),
                source_config: named(&l.source_config),
                target_config: named(&l.target_config),
            });
        }
        links
    }

    /// Restarts what a running provider does for its links, after the
    /// lattice changed the links whose source it is (or their config).
    pub(crate) fn relink_provider(&self, id: &str) {
        let Some(placed) = read(&self.inner.components).get(id).cloned() else {
            return;
        };
        let Some(provider) = placed.provider() else {
            return;
        };
        let Some(m) = lock(&self.inner.desired)
            .app(&placed.app)
            .map(|a| a.manifest.clone())
        else {
            return;
        };
        let Some(spec) = m.components.iter().find(|c| c.id == id) else {
            return;
        };
        match &*provider {
            // Dropping a listener stops it and frees its port.
            Provider::HttpServer(listeners) => lock(listeners).clear(),
            Provider::Messaging { bus, subscriptions } => {
                for sub in lock(subscriptions).drain(..) {
                    bus.unsubscribe(sub);
                }
            }
            Provider::Sensors { sampler, .. } => *lock(sampler) = None,
            Provider::KeyValue(_) => return,
        }
        match self.start_provider_links(&m, spec, &provider) {
            Ok(()) => {
                tracing::info!(provider = %id, "links changed on the lattice; provider relinked");
                placed.set(State::Running, None);
            }
            Err(reason) => placed.set(State::Failed, Some(reason)),
        }
    }

    /// The host's message bus, made on first use.
    fn bus(&self) -> Result<Arc<twig_messaging::Bus>, String> {
        if let Some(b) = self.inner.bus.get() {
            return Ok(b.clone());
        }
        let upstream = self.inner.upstream.get().cloned();
        let config = twig_messaging::BusConfig {
            export: upstream.as_ref().map(|u| u.exports()).unwrap_or_default(),
            ..twig_messaging::BusConfig::default()
        };
        let bus = twig_messaging::Bus::new(config)
            .map_err(|e| format!("cannot start the message bus: {e}"))?;
        let bus = self.inner.bus.get_or_init(|| Arc::new(bus)).clone();
        if let Some(u) = upstream {
            bus.set_uplink(u);
        }
        Ok(bus)
    }

    /// Subscribes, for each `wasmcloud:messaging` `handler` link of a
    /// messaging provider, the link's target component to the subjects in
    /// the link's source config `subscriptions` (as wasmCloud's NATS
    /// messaging provider reads it: `a.b,c.>,d|queue-group`).
    fn subscribe_handlers(
        &self,
        spec: &ComponentSpec,
        links: &[twig_manifest::Link],
        bus: &Arc<twig_messaging::Bus>,
        subscriptions: &Mutex<Vec<twig_messaging::SubscriptionId>>,
    ) -> Result<(), String> {
        for link in handler_links(links) {
            let config = providers::merged_properties(&link.source_config);
            let Some(subs) = config.get(twig_messaging::CONFIG_SUBSCRIPTIONS) else {
                tracing::warn!(provider = %spec.id, target = %link.target_id, "handler link has no `subscriptions` in its source config; nothing is delivered to it");
                continue;
            };
            let specs = twig_messaging::parse_subscriptions(subs).map_err(|e| {
                format!(
                    "link to `{}`: source config `subscriptions`: {e}",
                    link.target
                )
            })?;
            let subscriber: Arc<dyn twig_messaging::Subscriber> = Arc::new(HandlerSubscriber {
                name: link.target_id.clone(),
                host: Arc::downgrade(&self.inner),
            });
            for s in specs {
                let id = bus
                    .subscribe(&s.pattern, s.queue_group.clone(), subscriber.clone())
                    .map_err(|e| format!("link to `{}`: {e}", link.target))?;
                tracing::info!(provider = %spec.id, target = %link.target_id, subject = %s.pattern, "subscribed");
                lock(subscriptions).push(id);
            }
        }
        Ok(())
    }

    /// Starts delivering periodic readings to the components the sensors
    /// provider's `wasmcloud:messaging` `handler` links name.
    fn start_sampler(
        &self,
        spec: &ComponentSpec,
        links: &[twig_manifest::Link],
        sensors: &Arc<twig_sensors::Sensors>,
        sampler: &Mutex<Option<providers::Sampler>>,
    ) -> Result<(), String> {
        let targets: Vec<String> = handler_links(links).map(|l| l.target_id.clone()).collect();
        if targets.is_empty() || sensors.sampling().is_empty() {
            return Ok(());
        }
        let host = Arc::downgrade(&self.inner);
        let deliver: providers::Deliver = Arc::new(move |target, subject, body| {
            let msg = twig_messaging::Message::new(subject.to_string(), body.to_vec());
            deliver_message(&host, target, &msg)
        });
        *lock(sampler) = Some(providers::Sampler::start(
            &spec.id,
            sensors.clone(),
            targets,
            deliver,
        )?);
        Ok(())
    }

    /// Starts the built-in provider a capability component names.
    fn start_builtin_provider(
        &self,
        m: &Manifest,
        spec: &ComponentSpec,
        p: &Placed,
    ) -> Result<(), String> {
        let (kind, note) = providers::resolve(spec, &self.inner.board)?;
        if let Some(note) = note {
            tracing::info!(app = %m.name, provider = %spec.id, "{note}");
        }
        *lock(&p.provider_kind) = Some(kind);
        let provider = match kind {
            ProviderKind::KeyValue => {
                // A store stays open while anything holds it (an instance's
                // open bucket, a call in flight): reuse it rather than
                // fail on its lock when the app is applied again.
                let mut stores = lock(&self.inner.kv_stores);
                match stores.get(&spec.id).and_then(Weak::upgrade) {
                    Some(store) => Provider::KeyValue(store),
                    None => {
                        let provider = providers::open_keyvalue(spec, &self.inner.data_dir)?;
                        if let Provider::KeyValue(store) = &provider {
                            stores.insert(spec.id.clone(), Arc::downgrade(store));
                        }
                        provider
                    }
                }
            }
            ProviderKind::HttpServer => Provider::HttpServer(Mutex::new(Vec::new())),
            ProviderKind::Messaging => Provider::Messaging {
                bus: self.bus()?,
                subscriptions: Mutex::new(Vec::new()),
            },
            ProviderKind::Sensors => Provider::Sensors {
                sensors: self.inner.sensors.clone()?,
                sampler: Mutex::new(None),
            },
        };
        *p.provider.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(provider));
        tracing::info!(app = %m.name, provider = %spec.id, kind = kind.reference(), "provider running");
        Ok(())
    }

    /// Starts one listener per `wasi:http/incoming-handler` link of an HTTP
    /// server provider.
    fn start_listeners(
        &self,
        m: &Manifest,
        spec: &ComponentSpec,
        links: &[twig_manifest::Link],
        listeners: &Mutex<Vec<http::HttpServer>>,
    ) -> Result<(), String> {
        let links = links.iter().filter(|l| {
            l.namespace == "wasi"
                && l.package == "http"
                && l.interfaces.iter().any(|i| i == "incoming-handler")
        });
        for link in links {
            let config = providers::merged_properties(&link.source_config);
            let server = http::start_server(Arc::downgrade(&self.inner), &link.target_id, &config)?;
            tracing::info!(app = %m.name, provider = %spec.id, target = %link.target_id, address = %server.local_addr(), "serving HTTP");
            lock(listeners).push(server);
        }
        Ok(())
    }

    /// Decides whether a component runs here and with how many instances,
    /// following wadm's scalers: no scaler means wadm would not run it; a
    /// spread whose requirements do not match this host's labels gets no
    /// instances here.
    fn place(&self, m: &Manifest, spec: &ComponentSpec) -> Result<usize, String> {
        let Some(scaler) = &spec.scaler else {
            if spec.kind == ComponentKind::Capability {
                // wadm gives a provider without a scaler one instance.
                return Ok(1);
            }
            return Err(
                "no spreadscaler or daemonscaler trait, so no instances are asked for".into(),
            );
        };
        let total = scaler.instances() as usize;
        if total == 0 {
            return Err("the scaler asks for 0 instances".into());
        }
        let spread = scaler.spread();
        let instances = if spread.is_empty() {
            total
        } else {
            let weight = |s: &twig_manifest::Spread| s.weight.unwrap_or(100) as usize;
            let total_weight: usize = spread.iter().map(weight).sum::<usize>().max(1);
            let labels = read(&self.inner.labels).clone();
            let mut here = 0;
            let mut unmatched = Vec::new();
            for s in spread {
                let missing: Vec<String> = s
                    .requirements
                    .iter()
                    .filter(|(k, v)| labels.get(*k) != Some(*v))
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect();
                if missing.is_empty() {
                    here += match scaler {
                        Scaler::Daemon { .. } => total,
                        Scaler::Spread { .. } => (total * weight(s)).div_ceil(total_weight),
                    };
                } else {
                    unmatched.push(format!("spread `{}` needs {}", s.name, missing.join(", ")));
                }
            }
            if here == 0 {
                return Err(format!(
                    "this host's labels do not meet any spread requirement ({}); host labels: {}",
                    unmatched.join("; "),
                    labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
            here.min(total)
        };
        let max = self.inner.board.limits.max_instances;
        if instances > max {
            tracing::warn!(
                app = %m.name, component = %spec.name,
                "asks for {instances} instances; board `{}` allows {max}", self.inner.board.name
            );
        }
        let running = self
            .inner
            .components
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|p| p.state().0 == State::Running)
            .count();
        if running >= self.inner.board.limits.max_components {
            return Err(format!(
                "board `{}` allows {} components and that many are running",
                self.inner.board.name, self.inner.board.limits.max_components
            ));
        }
        Ok(instances.min(max))
    }

    fn start_component(
        &self,
        m: &Manifest,
        spec: &ComponentSpec,
        placed: &Placed,
        instances: usize,
    ) -> Result<Arc<Pool>, String> {
        let digest = placed
            .digest
            .as_deref()
            .ok_or_else(|| "no cached image for this component".to_string())?;
        let bytes = self.inner.cache.get(digest).map_err(|e| e.to_string())?;
        let limits = Limits {
            max_instances: instances,
            ..self.inner.board.component_limits()
        };
        let component = Component::with_limits(&self.inner.engine, &spec.id, &bytes, limits)
            .map_err(|e| e.to_string())?;
        let config = Arc::new(capabilities::LiveConfig::new(
            spec,
            &read(&self.inner.lattice),
        ));
        let (linker, http_types) = self.linker_for(m, spec, &component)?;
        let messaging = if links_to_provider(
            m,
            spec,
            &self.inner.board,
            "wasmcloud",
            "messaging",
            ProviderKind::Messaging,
        ) {
            Some(self.bus()?)
        } else {
            None
        };
        let sensors = if links_to_provider(
            m,
            spec,
            &self.inner.board,
            "twig",
            "sensors",
            ProviderKind::Sensors,
        ) {
            Some(self.inner.sensors.clone()?)
        } else {
            None
        };
        let links = Arc::new(Links {
            source: spec.id.clone(),
            links: spec.links.clone(),
            host: Arc::downgrade(&self.inner),
        });
        let pool = Arc::new(Pool {
            component,
            linker,
            config,
            links,
            messaging,
            sensors,
            http_types,
            idle: Mutex::new(Vec::new()),
            freed: Condvar::new(),
            max: instances,
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        // Instantiate one up front: a component whose imports cannot be
        // satisfied fails now, with the import named, not on its first call.
        let first = pool.new_instance().map_err(|e| e.to_string())?;
        lock(&pool.idle).push(first);
        Ok(pool)
    }

    /// The linker of one component: WASI, config, the lattice bus, the
    /// providers' interfaces, and for every other import a forwarder to the
    /// component its link names (resolved at call time, since
    /// `set-link-name` can switch links) or an error naming the missing link.
    fn linker_for(
        &self,
        m: &Manifest,
        spec: &ComponentSpec,
        component: &Component,
    ) -> Result<(Linker<InstanceData>, Option<http::HttpTypes>), String> {
        let mut linker = Linker::new();
        let wasi_types = twig_wasi::add_to_linker(&mut linker);
        capabilities::add_config(&mut linker);
        capabilities::add_lattice(&mut linker);
        let imports = component.imports();
        if imports.iter().any(|i| i.name.starts_with("wasi:keyvalue/")) {
            twig_keyvalue::component::add_to_linker(&mut linker);
        }
        if imports
            .iter()
            .any(|i| i.name.starts_with("wasmcloud:messaging/consumer@"))
        {
            twig_messaging::add_to_linker(&mut linker);
        }
        if imports.iter().any(|i| i.name.starts_with("twig:sensors/")) {
            twig_sensors::add_to_linker(&mut linker);
        }
        let http_types = if imports.iter().any(|i| i.name.starts_with("wasi:http/")) {
            Some(http::add_to_linker(&mut linker, wasi_types)?)
        } else {
            None
        };
        let provided: Vec<String> = linker.interface_names().map(str::to_string).collect();
        for import in component.imports() {
            if import.kind != "instance"
                || provided
                    .iter()
                    .any(|p| twig_component::names::compatible(&import.name, p))
            {
                continue;
            }
            let iface = import.name.clone();
            let unversioned = iface.split('@').next().unwrap_or(&iface).to_string();
            let Some((ns, pkg, name)) = split_interface(&unversioned) else {
                tracing::debug!(app = %m.name, component = %spec.id, "import `{iface}` is not an interface name");
                continue;
            };
            let host = Arc::downgrade(&self.inner);
            let source = spec.id.clone();
            linker
                .interface(&iface)
                .fallback(move |func, cx, args, out| {
                    let data = cx.data();
                    let link = data.link_name(&unversioned);
                    let target = data
                        .links
                        .target(&ns, &pkg, &name, &link)
                        .map_err(|e| HostError::new(format!("{e} (calling `{iface}#{func}`)")))?;
                    let local = host
                        .upgrade()
                        .is_some_and(|h| read(&h.components).contains_key(&target));
                    if !local {
                        // Not on this host: the link names a target
                        // elsewhere in the lattice.
                        return call_remote(
                            &host, &source, &link, &target, &iface, func, cx, args, out,
                        );
                    }
                    call_link(
                        &host,
                        &source,
                        &target,
                        &iface,
                        func,
                        cx.deadline(),
                        args,
                        out,
                    )
                });
        }
        Ok((linker, http_types))
    }

    /// Runs an export of a component with WAVE-encoded arguments and returns
    /// the results in WAVE.
    pub fn invoke(
        &self,
        component: &str,
        function: &str,
        args: &[String],
    ) -> Result<Vec<String>, String> {
        let placed = self.find_component(component)?;
        let (state, reason) = placed.state();
        if state != State::Running {
            return Err(format!(
                "component `{}` is {}{}",
                placed.id,
                serde_json::to_value(&state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default(),
                reason.map(|r| format!(": {r}")).unwrap_or_default()
            ));
        }
        let pool = placed
            .pool()
            .ok_or_else(|| format!("component `{}` has no instances", placed.id))?;
        let wait = self.call_wait();
        pool.with_instance(wait, |inst| {
            let types = inst.export_param_types(function).ok_or_else(|| {
                format!(
                    "component `{}` has no export `{function}`; its exports are: {}",
                    placed.id,
                    inst.export_names().join(", ")
                )
            })?;
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let vals = types
                .parse(&refs)
                .map_err(|e| format!("arguments for `{function}`: {e}"))?;
            let results = inst.call(function, &vals).map_err(|e| e.to_string())?;
            Ok(results.iter().map(twig_component::wave::to_wave).collect())
        })
    }

    fn call_wait(&self) -> Duration {
        Duration::from_millis(self.inner.board.limits.deadline_ms)
    }

    pub(crate) fn find_component(&self, key: &str) -> Result<Arc<Placed>, String> {
        find_component(&self.inner, key)
    }

    /// Records an app in the desired state (saved before anything starts,
    /// so a crash after this point brings it back on the next boot) and,
    /// with `start`, (re)starts it. `blobs` are the component images by
    /// component name; `what` names the app's origin in errors.
    pub(crate) fn deploy(
        &self,
        m: &Manifest,
        blobs: &[(String, Vec<u8>)],
        source: Option<String>,
        lattice: Option<crate::state::LatticeOrigin>,
        what: &str,
        start: bool,
    ) -> Result<(), String> {
        let mut desired = lock(&self.inner.desired);
        // Component ids must not clash with another app's.
        let comps = read(&self.inner.components).clone();
        for (i, spec) in m.components.iter().enumerate() {
            if let Some(other) = comps.get(&spec.id) {
                if other.app != m.name {
                    return Err(format!(
                        "{what}: spec.components[{i}]: component id `{}` is already used by app `{}`",
                        spec.id, other.app
                    ));
                }
            }
        }
        let mut digests = BTreeMap::new();
        for (name, bytes) in blobs {
            let digest = self.inner.cache.put(bytes).map_err(|e| e.to_string())?;
            digests.insert(name.clone(), digest);
        }
        let app = DeployedApp {
            manifest: m.clone(),
            digests,
            source,
            deployed_at: now_secs(),
            lattice,
        };
        let unchanged = desired.app(&m.name).is_some_and(|old| {
            old.manifest == app.manifest && old.digests == app.digests && old.lattice == app.lattice
        });
        if !unchanged {
            let mut next = desired.clone();
            next.upsert(app.clone());
            next.save(&self.inner.data_dir).map_err(|e| e.to_string())?;
            *desired = next;
        }
        if start {
            self.stop_app(&m.name);
            self.start_app(&app);
        }
        let removed = self.inner.cache.collect_garbage(&desired.digests());
        if removed > 0 {
            tracing::debug!("removed {removed} unused cache entries");
        }
        Ok(())
    }

    /// Parses, checks and deploys a manifest, replacing an app of the same
    /// name. The desired state is saved before the app (re)starts, so a
    /// crash after this point brings it back on the next boot.
    ///
    /// With `start` false the app is only recorded (at boot, before
    /// [`Host::start_all`] starts everything once).
    pub fn apply(&self, req: ApplyRequest, start: bool) -> Result<ApplyOutcome, String> {
        let base_dir = req
            .file
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf);
        let parsed = twig_manifest::parse(
            &req.text,
            &twig_manifest::Source {
                file: req.file.as_deref(),
                base_dir: base_dir.as_deref(),
            },
        )
        .map_err(|e| e.to_string())?;
        let file = req
            .file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "<manifest>".into());
        let m = parsed.manifest;
        let blobs = load_images(
            &self.inner.engine,
            &m,
            &file,
            &req.images,
            self.inner.board.limits.max_image_bytes(),
        )?;
        let source = req.file.as_ref().map(|f| f.display().to_string());
        self.deploy(&m, &blobs, source, None, &file, start)?;
        // The app's ids are the device's now: lattice links that touch
        // them (or bounds the app's config changes) apply from here on.
        self.sanitize_lattice();
        let warnings: Vec<String> = parsed
            .warnings
            .iter()
            .map(|w| format!("{file}: {w}"))
            .collect();
        for w in &warnings {
            tracing::warn!("{w}");
        }
        tracing::info!(app = %m.name, version = m.version.as_deref().unwrap_or("-"), "deployed");
        Ok(ApplyOutcome {
            name: m.name.clone(),
            version: m.version.clone(),
            warnings,
            components: m.components.iter().map(|c| c.id.clone()).collect(),
        })
    }

    /// Removes an app from the desired state and stops its components.
    pub fn delete(&self, name: &str) -> Result<(), String> {
        let mut desired = lock(&self.inner.desired);
        let mut next = desired.clone();
        if next.remove(name).is_none() {
            let names: Vec<&str> = desired
                .apps
                .iter()
                .map(|a| a.manifest.name.as_str())
                .collect();
            return Err(format!(
                "no app named `{name}` (deployed: {})",
                if names.is_empty() {
                    "none".to_string()
                } else {
                    names.join(", ")
                }
            ));
        }
        next.save(&self.inner.data_dir).map_err(|e| e.to_string())?;
        *desired = next;
        self.stop_app(name);
        self.inner.cache.collect_garbage(&desired.digests());
        tracing::info!(app = %name, "deleted");
        Ok(())
    }

    /// Stops an app's components. Calls in flight hold their instance and
    /// finish (or reach their deadline); the instances go away after.
    pub(crate) fn stop_app(&self, name: &str) {
        let Some(app) = self
            .inner
            .apps
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name)
        else {
            return;
        };
        let mut comps = self
            .inner
            .components
            .write()
            .unwrap_or_else(|p| p.into_inner());
        for p in &app.components {
            if comps.get(&p.id).is_some_and(|c| Arc::ptr_eq(c, p)) {
                comps.remove(&p.id);
            }
            *p.pool.write().unwrap_or_else(|e| e.into_inner()) = None;
            *p.provider.write().unwrap_or_else(|e| e.into_inner()) = None;
        }
    }

    /// Shows the host's lattice identity in [`Host::status`]; set once.
    pub fn set_identity(&self, identity: crate::lattice::HostIdentity) {
        let _ = self.inner.identity.set(identity);
    }

    /// Opens the durable outbox (`DATA/outbox`) with the board's
    /// `[outbox]` classes; `heartbeat` is the lattice heartbeat interval.
    /// Call before starting apps, so the message bus exports to it. A
    /// failure is returned for the caller to log: the host runs on, and
    /// nothing leaves the device.
    pub fn open_upstream(
        &self,
        heartbeat: std::time::Duration,
    ) -> Result<Arc<crate::outbox::Upstream>, String> {
        if let Some(u) = self.inner.upstream.get() {
            return Ok(u.clone());
        }
        let u = crate::outbox::Upstream::open(
            &self.inner.board.outbox,
            &self.inner.data_dir,
            heartbeat,
        )?;
        Ok(self.inner.upstream.get_or_init(|| Arc::new(u)).clone())
    }

    /// The outbox, once [`Host::open_upstream`] has opened it.
    pub fn upstream(&self) -> Option<Arc<crate::outbox::Upstream>> {
        self.inner.upstream.get().cloned()
    }

    /// Shows the uplink's state in [`Host::status`]; set once.
    pub fn set_uplink(&self, status: crate::lattice::SharedStatus) {
        let _ = self.inner.uplink.set(status);
    }

    pub fn status(&self) -> Status {
        let apps = self.inner.apps.read().unwrap_or_else(|p| p.into_inner());
        Status {
            host: HostStatus {
                version: env!("CARGO_PKG_VERSION"),
                board: self.inner.board.name.clone(),
                data_dir: self.inner.data_dir.display().to_string(),
                labels: read(&self.inner.labels).clone(),
                uplink: self.inner.uplink.get().map(|s| lock(s).snapshot()),
                outbox: self.inner.upstream.get().map(|u| u.outbox.stats()),
                identity: self.inner.identity.get().cloned(),
            },
            apps: apps
                .iter()
                .map(|(name, info)| AppStatus {
                    name: name.clone(),
                    version: info.version.clone(),
                    source: info.source.clone(),
                    components: info
                        .components
                        .iter()
                        .map(|p| component_status(p))
                        .collect(),
                })
                .collect(),
        }
    }
}

fn component_status(p: &Placed) -> ComponentStatus {
    let (state, reason) = p.state();
    let pool = p.pool();
    let (instances, calls, failed_calls, last_error) = match &pool {
        Some(pool) => (
            InstanceCounts {
                live: pool.component.live_instances(),
                idle: lock(&pool.idle).len(),
                max: pool.max,
            },
            pool.calls.load(Ordering::Relaxed),
            pool.failures.load(Ordering::Relaxed),
            lock(&pool.last_error).clone(),
        ),
        None => (
            InstanceCounts {
                live: 0,
                idle: 0,
                max: 0,
            },
            0,
            0,
            None,
        ),
    };
    ComponentStatus {
        provider: lock(&p.provider_kind).map(ProviderKind::reference),
        id: p.id.clone(),
        name: p.name.clone(),
        state,
        reason,
        image: p.digest.as_ref().map(|d| format!("sha256:{d}")),
        instances,
        calls,
        failed_calls,
        last_error,
    }
}

fn find_component(inner: &HostInner, key: &str) -> Result<Arc<Placed>, String> {
    let comps = inner.components.read().unwrap_or_else(|p| p.into_inner());
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

/// Splits `ns:pkg/iface` into its parts.
pub fn split_interface(name: &str) -> Option<(String, String, String)> {
    let (pkg, iface) = name.split_once('/')?;
    let (ns, package) = pkg.split_once(':')?;
    Some((ns.to_string(), package.to_string(), iface.to_string()))
}

/// Calls a link target that is not on this host over the lattice (wRPC),
/// or says why it cannot.
#[allow(clippy::too_many_arguments)]
fn call_remote(
    host: &Weak<HostInner>,
    source: &str,
    link_name: &str,
    target: &str,
    iface: &str,
    func: &str,
    cx: &twig_component::HostContext<'_, InstanceData>,
    args: &[Val],
    out: &mut Vec<Val>,
) -> Result<(), HostError> {
    let host = host
        .upgrade()
        .ok_or_else(|| HostError::new("the host is shutting down"))?;
    let Some(remote) = host.remote.get() else {
        return Err(HostError::new(format!(
            "{source} -> {target}: no component `{target}` on this host, and this host is not on a lattice (start it with --nats-url to reach targets elsewhere)"
        )));
    };
    let (Some(param_types), Some(result_types)) = (cx.param_types(), cx.result_types()) else {
        return Err(HostError::new(format!(
            "{source} -> {target}: `{iface}#{func}` has no known type"
        )));
    };
    let params = twig_component::wrpc::encode(args, &param_types)
        .map_err(|e| HostError::new(format!("{source} -> {target}: `{iface}#{func}`: {e}")))?;
    let deadline = cx
        .deadline()
        .unwrap_or_else(|| Instant::now() + Duration::from_millis(host.board.limits.deadline_ms));
    let bytes = remote
        .call(RemoteCall {
            source,
            link_name,
            target,
            instance: iface,
            func,
            params,
            deadline,
        })
        .map_err(|e| {
            HostError::new(format!(
                "{source} -> {target} (lattice): `{iface}#{func}`: {e}"
            ))
        })?;
    let (results, _) = twig_component::wrpc::decode(&bytes, &result_types).map_err(|e| {
        HostError::new(match e {
            twig_component::wrpc::DecodeError::Incomplete { .. } if bytes.is_empty() => format!(
                "{source} -> {target} (lattice): `{iface}#{func}` failed on the callee's side (it closed the call without results; see that host's log)"
            ),
            e => format!(
                "{source} -> {target} (lattice): `{iface}#{func}`: the results do not decode: {e}"
            ),
        })
    })?;
    out.extend(results);
    Ok(())
}

/// A call to a component elsewhere in the lattice, with its parameters
/// already encoded (component-model value encoding).
pub struct RemoteCall<'a> {
    pub source: &'a str,
    pub link_name: &'a str,
    pub target: &'a str,
    /// `ns:pkg/iface@version`.
    pub instance: &'a str,
    pub func: &'a str,
    pub params: Vec<u8>,
    pub deadline: Instant,
}

/// How the host reaches the lattice for calls to components that are not
/// local; the lattice agent provides it (wRPC over NATS).
pub trait RemoteCalls: Send + Sync {
    /// Makes the call and returns the encoded results, or why not.
    fn call(&self, call: RemoteCall<'_>) -> Result<Vec<u8>, String>;
}

/// Forwards one imported call to the link's target component.
#[allow(clippy::too_many_arguments)]
fn call_link(
    host: &Weak<HostInner>,
    source: &str,
    target_id: &str,
    iface: &str,
    func: &str,
    deadline: Option<Instant>,
    args: &[Val],
    out: &mut Vec<Val>,
) -> Result<(), HostError> {
    let host = host
        .upgrade()
        .ok_or_else(|| HostError::new("the host is shutting down"))?;
    if args.iter().any(contains_resource) {
        return Err(HostError::new(format!(
            "{source} -> {target_id}: `{iface}#{func}` passes a resource; resources cannot cross components yet"
        )));
    }
    let target = find_component(&host, target_id).map_err(HostError::new)?;
    let pool = target.pool().ok_or_else(|| {
        if let Some(kind) = *lock(&target.provider_kind) {
            return HostError::new(format!(
                "{source} -> {target_id}: the link targets provider {}, which does not provide `{iface}`",
                kind.reference()
            ));
        }
        let (state, reason) = target.state();
        HostError::new(format!(
            "{source} -> {target_id}: link target is {}{}",
            state.as_str(),
            reason.map(|r| format!(" ({r})")).unwrap_or_default()
        ))
    })?;
    // Wait for a free target instance no longer than the caller may run.
    let wait = deadline
        .map(|d| d.saturating_duration_since(Instant::now()))
        .unwrap_or(Duration::from_millis(host.board.limits.deadline_ms));
    let export = format!("{iface}#{func}");
    let results = pool
        .with_instance(wait, |inst| {
            inst.call(&export, args).map_err(|e| e.to_string())
        })
        .map_err(|e| HostError::new(format!("{source} -> {target_id}: {e}")))?;
    if results.iter().any(contains_resource) {
        return Err(HostError::new(format!(
            "{source} -> {target_id}: `{export}` returned a resource; resources cannot cross components yet"
        )));
    }
    out.extend(results);
    Ok(())
}

fn contains_resource(v: &Val) -> bool {
    match v {
        Val::Resource(_) => true,
        Val::List(vs) | Val::Tuple(vs) => vs.iter().any(contains_resource),
        Val::Record(fs) => fs.iter().any(|(_, v)| contains_resource(v)),
        Val::Variant(_, Some(v)) | Val::Option(Some(v)) => contains_resource(v),
        Val::Result(Ok(Some(v))) | Val::Result(Err(Some(v))) => contains_resource(v),
        _ => false,
    }
}

/// The `wasmcloud:messaging` `handler` links of a provider: the components
/// it delivers messages to.
fn handler_links(links: &[twig_manifest::Link]) -> impl Iterator<Item = &twig_manifest::Link> {
    links.iter().filter(|l| {
        l.namespace == "wasmcloud"
            && l.package == "messaging"
            && l.interfaces.iter().any(|i| i == "handler")
    })
}

/// Whether `spec` has a link for package `ns:pkg` whose target, in the
/// same manifest, is a capability running as built-in provider `kind`.
fn links_to_provider(
    m: &Manifest,
    spec: &ComponentSpec,
    board: &Board,
    ns: &str,
    pkg: &str,
    kind: ProviderKind,
) -> bool {
    spec.links
        .iter()
        .filter(|l| l.namespace == ns && l.package == pkg)
        .any(|l| {
            m.components.iter().any(|c| {
                c.id == l.target_id
                    && c.kind == ComponentKind::Capability
                    && providers::resolve(c, board).is_ok_and(|(k, _)| k == kind)
            })
        })
}

/// Delivers a message to a component's `wasmcloud:messaging/handler`
/// export, on one of its instances.
fn deliver_message(
    host: &Weak<HostInner>,
    target_id: &str,
    msg: &twig_messaging::Message,
) -> Result<(), String> {
    let host = host
        .upgrade()
        .ok_or_else(|| "the host is shutting down".to_string())?;
    let pool = host.running_pool(target_id)?;
    let wait = Duration::from_millis(host.board.limits.deadline_ms);
    let arg = twig_messaging::message_to_val(msg);
    pool.with_instance(wait, |inst| {
        let export = inst
            .export_names()
            .into_iter()
            .find(|n| {
                n.starts_with("wasmcloud:messaging/handler@0.2") && n.ends_with("#handle-message")
            })
            .map(str::to_string)
            .ok_or_else(|| {
                format!("`{target_id}` does not export wasmcloud:messaging/handler.handle-message")
            })?;
        let results = inst.call(&export, &[arg]).map_err(|e| e.to_string())?;
        twig_messaging::handler_result(&results)
    })
}

/// Delivers bus messages to one component's handler.
struct HandlerSubscriber {
    name: String,
    host: Weak<HostInner>,
}

impl twig_messaging::Subscriber for HandlerSubscriber {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(&self, msg: twig_messaging::Message) -> Result<(), String> {
        deliver_message(&self.host, &self.name, &msg)
    }
}
