//! One component's instances: the [`Pool`] of idle instances and how to
//! make more, the [`InstanceData`] every instance carries, and its
//! [`Links`] as it resolves them at call time.
//!
//! A leaf of the host: what an instance needs from the rest of the host
//! (another component's pool, a provider, the lattice's links) it asks
//! through the [`Directory`] trait, which the host implements. So this
//! module, the providers and the WASI glue never import the host itself.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use twig_component::{Component, Instance, Linker};
use twig_keyvalue::component::KeyValueCtx;
use twig_wasi::{WasiCtx, WasiView};

use super::config::LiveConfig;
use crate::http;
use crate::sync::lock;

/// What an instance (and a provider) may ask of the host it runs in.
pub trait Directory: Send + Sync {
    /// The instance pool of a running component, or why there is none.
    fn running_pool(&self, id: &str) -> Result<Arc<Pool>, String>;
    /// A running built-in provider, as its concrete type behind `Any`.
    fn provider(&self, id: &str) -> Result<Arc<dyn Any + Send + Sync>, Lookup>;
    /// The lattice's links from `source` that provide `ns:pkg/iface`, as
    /// (link name, target id).
    fn lattice_targets(
        &self,
        source: &str,
        ns: &str,
        pkg: &str,
        iface: &str,
    ) -> Vec<(String, String)>;
    /// How long a call from outside (a request, a message) waits for an
    /// instance and runs: the board's deadline.
    fn call_wait(&self) -> Duration;
}

/// Why [`Directory::provider`] found no provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Lookup {
    /// No component or provider of that id here (the text lists them).
    #[error("{0}")]
    Missing(String),
    /// The id is here, but not a running provider; the text is its state
    /// (`failed: …`, `running` for a component).
    #[error("{0}")]
    NotProvider(String),
}

/// Why a call on a pool's instance did not give a result. The kind, not
/// the wording, decides what the caller does: [`CallError::is_unavailable`]
/// calls never reached the guest (an HTTP caller gets 503 and may retry).
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// Every instance stayed busy for as long as the caller could wait.
    #[error("{component}: all {max} instances are busy")]
    Busy { component: String, max: usize },
    /// A new instance could not be made.
    #[error("{0}")]
    Instantiate(twig_component::Error),
    /// The call could not be made as asked: no such export, arguments
    /// that do not parse or decode. The guest did not run.
    #[error("{0}")]
    Refused(String),
    /// The guest ran and failed: a trap, its fuel, deadline or memory
    /// limit, or values it returned that do not fit.
    #[error("{0}")]
    Guest(twig_component::Error),
    /// The guest's result says it failed (a handler's error result).
    #[error("{0}")]
    Failed(String),
}

impl CallError {
    /// Whether the call never reached the guest (busy, or no instance).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, CallError::Busy { .. } | CallError::Instantiate(_))
    }
}

impl From<twig_component::Error> for CallError {
    fn from(e: twig_component::Error) -> CallError {
        CallError::Guest(e)
    }
}

/// Per-instance data of every component instance.
pub struct InstanceData {
    pub wasi: WasiCtx,
    /// The component's config, merged from its manifest `config` entries
    /// (and named lattice config, which can change while it runs).
    pub config: Arc<LiveConfig>,
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
    /// `wasmcloud:messaging@0.3.0` messages, clients and request options.
    pub messages: twig_messaging::v0_3::MessagesCtx,
    /// The component's secrets and the guest's handles to them.
    pub secrets: crate::secrets::SecretsCtx,
    /// The board's sensors, when the component links `twig:sensors` to the
    /// sensors provider.
    pub sensors: Option<Arc<twig_sensors::Sensors>>,
    /// `wasi:http` objects of the request being handled.
    pub http: http::HttpCtx,
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

impl WasiView for InstanceData {
    fn wasi(&mut self) -> &mut WasiCtx {
        &mut self.wasi
    }
}

impl http::HttpView for InstanceData {
    fn http(&mut self) -> &mut http::HttpCtx {
        &mut self.http
    }
}

impl twig_messaging::MessagingView for InstanceData {
    fn messaging(&self) -> Option<&Arc<twig_messaging::Bus>> {
        self.messaging.as_ref()
    }
    fn messages(&mut self) -> &mut twig_messaging::v0_3::MessagesCtx {
        &mut self.messages
    }
}

impl crate::secrets::SecretsView for InstanceData {
    fn secrets(&mut self) -> &mut crate::secrets::SecretsCtx {
        &mut self.secrets
    }
}

impl twig_sensors::SensorsView for InstanceData {
    fn sensors(&self) -> Option<&Arc<twig_sensors::Sensors>> {
        self.sensors.as_ref()
    }
}

/// Splits `ns:pkg/iface` into its parts.
pub fn split_interface(name: &str) -> Option<(String, String, String)> {
    let (pkg, iface) = name.split_once('/')?;
    let (ns, package) = pkg.split_once(':')?;
    Some((ns.to_string(), package.to_string(), iface.to_string()))
}

/// A component's links, as its instances resolve them at call time.
pub struct Links {
    /// The component's id.
    pub source: String,
    pub links: Vec<twig_manifest::Link>,
    host: Weak<dyn Directory>,
}

impl Links {
    pub fn new(source: &str, links: Vec<twig_manifest::Link>, host: Weak<dyn Directory>) -> Links {
        Links {
            source: source.to_string(),
            links,
            host,
        }
    }

    /// The host, unless it is shutting down.
    pub fn host(&self) -> Result<Arc<dyn Directory>, String> {
        self.host
            .upgrade()
            .ok_or_else(|| "the host is shutting down".to_string())
    }

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
            matching.extend(host.lattice_targets(&self.source, ns, pkg, iface));
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

/// What a pool is made from (see [`Pool::new`]).
pub struct PoolParts {
    pub component: Component,
    pub linker: Linker<InstanceData>,
    pub config: Arc<LiveConfig>,
    /// The component's secrets, fetched before it started.
    pub secrets: Arc<crate::secrets::Secrets>,
    pub links: Arc<Links>,
    pub messaging: Option<Arc<twig_messaging::Bus>>,
    pub sensors: Option<Arc<twig_sensors::Sensors>>,
    /// Set when the component imports `wasi:http` (an HTTP handler).
    pub http_types: Option<http::HttpTypes>,
    /// Set when the component imports `wasmcloud:messaging@0.3.0`.
    pub messaging_types: Option<twig_messaging::v0_3::MessagingTypes>,
    /// Set when the component imports `wasi:keyvalue` (its `bucket` type).
    pub bucket_type: Option<u32>,
    /// How many instances may run at once.
    pub max: usize,
}

/// Idle instances of one component, and how to make more.
pub struct Pool {
    parts: PoolParts,
    idle: Mutex<Vec<Instance<InstanceData>>>,
    freed: Condvar,
    calls: AtomicU64,
    failures: AtomicU64,
    last_error: Mutex<Option<String>>,
}

/// A pool's counters, for `twig status`.
#[derive(Debug, Clone, Default)]
pub struct PoolStats {
    pub live: usize,
    pub idle: usize,
    pub max: usize,
    pub calls: u64,
    pub failures: u64,
    pub last_error: Option<String>,
}

impl Pool {
    /// Makes the pool and one instance up front: a component whose imports
    /// cannot be satisfied fails now, with the import named, not on its
    /// first call.
    pub fn new(parts: PoolParts) -> Result<Arc<Pool>, String> {
        let pool = Arc::new(Pool {
            parts,
            idle: Mutex::new(Vec::new()),
            freed: Condvar::new(),
            calls: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_error: Mutex::new(None),
        });
        let first = pool.new_instance().map_err(|e| e.to_string())?;
        lock(&pool.idle).push(first);
        Ok(pool)
    }

    /// The component's id.
    pub fn id(&self) -> &str {
        &self.parts.links.source
    }

    /// How many instances the pool may run at once.
    pub fn max_instances(&self) -> usize {
        self.parts.max
    }

    /// Set when the component imports `wasi:http` (it can handle requests).
    pub fn http_types(&self) -> Option<http::HttpTypes> {
        self.parts.http_types
    }

    /// Set when the component imports `wasmcloud:messaging@0.3.0` (it can
    /// be handed a 0.3.0 message).
    pub fn messaging_types(&self) -> Option<twig_messaging::v0_3::MessagingTypes> {
        self.parts.messaging_types
    }

    /// `wasi:keyvalue`'s `bucket` type, when the component imports it (a
    /// watcher is handed a bucket).
    pub fn bucket_type(&self) -> Option<u32> {
        self.parts.bucket_type
    }

    /// The component's live config.
    pub fn config(&self) -> &LiveConfig {
        &self.parts.config
    }

    pub fn stats(&self) -> PoolStats {
        PoolStats {
            live: self.parts.component.live_instances(),
            idle: lock(&self.idle).len(),
            max: self.parts.max,
            calls: self.calls.load(Ordering::Relaxed),
            failures: self.failures.load(Ordering::Relaxed),
            last_error: lock(&self.last_error).clone(),
        }
    }

    fn new_instance(&self) -> Result<Instance<InstanceData>, twig_component::Error> {
        let p = &self.parts;
        let data = InstanceData {
            wasi: WasiCtx::new(),
            config: p.config.clone(),
            links: p.links.clone(),
            link_names: BTreeMap::new(),
            call_targets: HashMap::new(),
            keyvalue: KeyValueCtx::default(),
            messages: Default::default(),
            secrets: crate::secrets::SecretsCtx::new(p.secrets.clone()),
            messaging: p.messaging.clone(),
            sensors: p.sensors.clone(),
            http: http::HttpCtx::new(),
        };
        let mut inst = Instance::new(&p.linker, &p.component, data)?;
        // wasmi makes every page of a new memory resident; give back the
        // ones the guest has not written (1 MB+ per Rust guest instance).
        inst.release_zero_pages();
        Ok(inst)
    }

    /// Runs `f` on an idle instance, making one if the pool may grow, or
    /// waiting (at most `wait`) for one to come back.
    pub fn with_instance<R>(
        &self,
        wait: Duration,
        f: impl FnOnce(&mut Instance<InstanceData>) -> Result<R, CallError>,
    ) -> Result<R, CallError> {
        let give_up = Instant::now() + wait;
        let mut inst = loop {
            let mut idle = lock(&self.idle);
            if let Some(i) = idle.pop() {
                break i;
            }
            if self.parts.component.live_instances() < self.parts.max {
                drop(idle);
                match self.new_instance() {
                    Ok(i) => break i,
                    // Another thread took the last slot between the check
                    // and the instantiation: wait like everyone else.
                    Err(twig_component::Error::InstanceLimit { .. }) => {
                        idle = lock(&self.idle);
                    }
                    Err(e) => return Err(CallError::Instantiate(e)),
                }
            }
            let now = Instant::now();
            if now >= give_up {
                return Err(CallError::Busy {
                    component: self.parts.component.name().to_string(),
                    max: self.parts.max,
                });
            }
            // A real wait: whoever runs this call may move its other work
            // away meanwhile (twig_component::blocking).
            let _unused = twig_component::blocking::section(|| {
                self.freed
                    .wait_timeout(idle, give_up - now)
                    .unwrap_or_else(|p| p.into_inner())
            });
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
            *lock(&self.last_error) = Some(e.to_string());
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
