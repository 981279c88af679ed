//! Apps on this host: opening the data directory, starting what the
//! desired state holds, deploying (apply), deleting, and which ids belong
//! to whom (the device's own manifests, or the lattice).
//!
//! Every change runs inside a `Change` (the host's `changes` lock), so
//! changes happen one at a time, in the order they were asked for; the
//! desired state is saved before anything starts, and published to
//! readers by swapping one pointer afterwards. Compiling a component,
//! writing the cache and starting instances all happen inside the change
//! but under no lock that a reader (status, heartbeat, inventory, a call)
//! waits on.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, MutexGuard, OnceLock, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use twig_component::{Component, Engine, EngineConfig, Limits};
use twig_manifest::{ComponentKind, ComponentSpec, Image, Manifest};

use super::placement::{self, Here};
use super::pool::{Links, Pool, PoolParts};
use super::{AppInfo, Host, HostInner, Placed, State};
use crate::board::Board;
use crate::latticedata::LatticeData;
use crate::providers::http::HttpProvider;
use crate::providers::messaging::MessagingProvider;
use crate::providers::sensors::SensorsProvider;
use crate::providers::{self, LinkContext, Provider, ProviderKind};
use crate::state::{Cache, DeployedApp, DesiredState, LatticeOrigin, StateError};
use crate::sync::{lock, read, write};

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
    /// Components and providers of the app that failed to start (a
    /// listener that cannot bind, an image that cannot be instantiated):
    /// `` `id`: reason ``. The app is deployed all the same (the desired
    /// state has it, and the next boot or apply tries again); the CLI
    /// exits non-zero so that a script does not take it for running.
    pub failed: Vec<String>,
}

/// Proof that the caller holds the host's `changes` lock: the only way to
/// call [`Host::deploy`] and [`Host::remove_app`].
pub(crate) struct Change<'a>(#[allow(dead_code)] MutexGuard<'a, ()>);

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

/// For `twig validate`: resolves every component's imports the way placing
/// it would (built-in interfaces, then the manifest's links) and refuses
/// the manifest, naming each import nothing can answer. `blobs` are
/// [`load_images`]'s. Returns warnings: imports only a link that this
/// manifest lacks would answer (a link can still be put from the lattice).
pub fn check_manifest_imports(
    engine: &Engine,
    m: &Manifest,
    file: &str,
    blobs: &[(String, Vec<u8>)],
) -> Result<Vec<String>, String> {
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    let components = m
        .components
        .iter()
        .enumerate()
        .filter(|(_, s)| s.kind != ComponentKind::Capability);
    for ((i, spec), (_, bytes)) in components.zip(blobs) {
        let at = format!("{file}: spec.components[{i}] ({})", spec.name);
        let component = Component::new(engine, &spec.id, bytes)
            .map_err(|e| format!("{at}: image is not a usable component: {e}"))?;
        let check =
            super::rpc::check_imports(m, spec, &component).map_err(|e| format!("{at}: {e}"))?;
        for u in check.unlinked {
            warnings.push(format!("{at}: {u}; calls to it fail until a link is put"));
        }
        if !check.unsatisfied.is_empty() {
            errors.push(format!(
                "{at}: imports nothing on twig can answer:\n  - {}",
                check.unsatisfied.join("\n  - ")
            ));
        }
    }
    if errors.is_empty() {
        Ok(warnings)
    } else {
        Err(errors.join("\n"))
    }
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
                    && providers::resolve(c, &board.provider_images).is_ok_and(|(k, _)| k == kind)
            })
        })
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
                lattice: RwLock::new(Arc::new(lattice)),
                lattice_changes: Default::default(),
                lattice_dropped: Default::default(),
                remote: OnceLock::new(),
                guests: OnceLock::new(),
                board,
                data_dir: data_dir.to_path_buf(),
                cache,
                changes: Default::default(),
                desired: RwLock::new(Arc::new(desired)),
                components: Default::default(),
                apps: Default::default(),
                kv_stores: Default::default(),
                bus: OnceLock::new(),
                bridge: Arc::default(),
                upstream: OnceLock::new(),
                sensors,
                uplink: OnceLock::new(),
                identity: OnceLock::new(),
            }),
        };
        // What was kept under another policy (or another twig) is held to
        // this one's bounds before anything uses it.
        host.sanitize_lattice();
        Ok(host)
    }

    /// Starts a change of the desired state; changes wait for each other
    /// here, in the order they arrive (nothing else does).
    pub(crate) fn begin_change(&self) -> Change<'_> {
        Change(lock(&self.inner.changes))
    }

    /// Starts every app of the desired state; [`Host::status`] tells how
    /// that went.
    pub fn start_all(&self) {
        let _change = self.begin_change();
        let desired = self.inner.desired();
        for app in &desired.apps {
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
            let mut comps = write(&self.inner.components);
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
        write(&self.inner.apps).insert(
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
                // Not placed here is a placement decision (another host may
                // run it); a provider that was placed but cannot start (no
                // stand-in for its image, a store that will not open) is a
                // failure `apply` must report.
                match self.place(m, spec) {
                    Err(reason) => p.set(State::NotPlaced, Some(reason)),
                    Ok(_) => match self.start_builtin_provider(m, spec, p) {
                        Ok(()) => p.set(State::Running, None),
                        Err(reason) => p.set(State::Failed, Some(reason)),
                    },
                }
                continue;
            }
            match self.place(m, spec) {
                Err(reason) => p.set(State::NotPlaced, Some(reason)),
                Ok(instances) => match self.start_component(m, spec, p, instances) {
                    Ok(pool) => {
                        *write(&p.pool) = Some(pool);
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
                if let Err(reason) = self.start_provider_links(m, spec, provider.as_ref()) {
                    p.set(State::Failed, Some(reason));
                }
            }
        }
    }

    /// Decides whether a component runs here ([`placement::place`]).
    fn place(&self, m: &Manifest, spec: &ComponentSpec) -> Result<usize, String> {
        let labels = self.labels();
        let running = read(&self.inner.components)
            .values()
            .filter(|p| p.state().0 == State::Running)
            .count();
        placement::place(
            &m.name,
            spec,
            &Here {
                board: &self.inner.board,
                labels: &labels,
                running,
            },
        )
    }

    /// Starts what a provider does for the components it links to. Its
    /// links are the manifest's plus the lattice's links whose source it
    /// is.
    fn start_provider_links(
        &self,
        m: &Manifest,
        spec: &ComponentSpec,
        provider: &dyn Provider,
    ) -> Result<(), String> {
        let links = self.provider_links(spec);
        let config = crate::providers::merged_properties(&spec.config);
        provider.start_links(&LinkContext {
            app: &m.name,
            provider: &spec.id,
            links: &links,
            config: &config,
            host: self.directory(),
        })
    }

    /// A provider's links: its manifest's, then the lattice's with it as
    /// source (`link.put` from wadm for an HTTP server or a messaging
    /// provider), their named config looked up in the lattice's config.
    fn provider_links(&self, spec: &ComponentSpec) -> Vec<twig_manifest::Link> {
        let mut links = spec.links.clone();
        let lattice = self.inner.lattice();
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
    pub(super) fn relink_provider(&self, id: &str) {
        let Some(placed) = read(&self.inner.components).get(id).cloned() else {
            return;
        };
        let Some(provider) = placed.provider() else {
            return;
        };
        if provider.kind() == ProviderKind::KeyValue {
            // It calls no component: nothing to restart.
            return;
        }
        let desired = self.inner.desired();
        let Some(m) = desired.app(&placed.app).map(|a| &a.manifest) else {
            return;
        };
        let Some(spec) = m.components.iter().find(|c| c.id == id) else {
            return;
        };
        provider.stop_links();
        match self.start_provider_links(m, spec, provider.as_ref()) {
            Ok(()) => {
                tracing::info!(provider = %id, "links changed on the lattice; provider relinked");
                placed.set(State::Running, None);
            }
            Err(reason) => placed.set(State::Failed, Some(reason)),
        }
    }

    /// The host's message bus, made on first use. Every subject is
    /// offered to the bridge (`crate::bridge`): the outbox classes and, with
    /// an uplink, NATS decide what leaves the device.
    fn bus(&self) -> Result<Arc<twig_messaging::Bus>, String> {
        if let Some(b) = self.inner.bus.get() {
            return Ok(b.clone());
        }
        let config = twig_messaging::BusConfig {
            export: vec![">".into()],
            ..twig_messaging::BusConfig::default()
        };
        let bus = twig_messaging::Bus::new(config)
            .map_err(|e| format!("cannot start the message bus: {e}"))?;
        let bus = self.inner.bus.get_or_init(|| Arc::new(bus)).clone();
        bus.set_uplink(self.inner.bridge.clone());
        Ok(bus)
    }

    /// Starts the built-in provider a capability component names.
    fn start_builtin_provider(
        &self,
        m: &Manifest,
        spec: &ComponentSpec,
        p: &Placed,
    ) -> Result<(), String> {
        let (kind, note) = providers::resolve(spec, &self.inner.board.provider_images)?;
        if let Some(note) = note {
            tracing::info!(app = %m.name, provider = %spec.id, "{note}");
        }
        *lock(&p.provider_kind) = Some(kind);
        let provider: Arc<dyn Provider> = match kind {
            ProviderKind::KeyValue => {
                Arc::new(self.inner.kv_stores.open(spec, &self.inner.data_dir)?)
            }
            ProviderKind::HttpServer => Arc::new(HttpProvider::default()),
            ProviderKind::Messaging => Arc::new(MessagingProvider::new(
                self.bus()?,
                self.inner.bridge.clone(),
            )),
            ProviderKind::Sensors => Arc::new(SensorsProvider::new(self.inner.sensors.clone()?)),
        };
        *write(&p.provider) = Some(provider);
        tracing::info!(app = %m.name, provider = %spec.id, kind = kind.reference(), "provider running");
        Ok(())
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
        let config = Arc::new(super::config::LiveConfig::new(spec, &self.inner.lattice()));
        let (linker, types) = self.linker_for(m, spec, &component)?;
        let board = &self.inner.board;
        let messaging = if links_to_provider(
            m,
            spec,
            board,
            "wasmcloud",
            "messaging",
            ProviderKind::Messaging,
        ) {
            Some(self.bus()?)
        } else {
            None
        };
        let sensors = if links_to_provider(m, spec, board, "twig", "sensors", ProviderKind::Sensors)
        {
            Some(self.inner.sensors.clone()?)
        } else {
            None
        };
        let secrets = crate::secrets::fetch(m, spec, &self.inner.data_dir)?;
        if !secrets.is_empty() {
            let names: Vec<&str> = secrets.names().collect();
            tracing::info!(component = %spec.id, secrets = %names.join(", "), "secrets fetched");
        }
        Pool::new(PoolParts {
            component,
            linker,
            config,
            secrets: Arc::new(secrets),
            links: Arc::new(Links::new(&spec.id, spec.links.clone(), self.directory())),
            messaging,
            sensors,
            http_types: types.http,
            messaging_types: types.messaging,
            bucket_type: types.bucket,
            max: instances,
        })
    }

    /// Records an app in the desired state (saved before anything starts,
    /// so a crash after this point brings it back on the next boot) and,
    /// with `start`, (re)starts it. `blobs` are the component images by
    /// component name; `what` names the app's origin in errors.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn deploy(
        &self,
        _change: &Change<'_>,
        m: &Manifest,
        blobs: &[(String, Vec<u8>)],
        source: Option<String>,
        lattice: Option<LatticeOrigin>,
        what: &str,
        start: bool,
    ) -> Result<(), String> {
        // Component ids must not clash with another app's.
        {
            let comps = read(&self.inner.components);
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
        let current = self.inner.desired();
        let unchanged = current.app(&m.name).is_some_and(|old| {
            old.manifest == app.manifest && old.digests == app.digests && old.lattice == app.lattice
        });
        if !unchanged {
            let mut next = (*current).clone();
            next.upsert(app.clone());
            next.save(&self.inner.data_dir).map_err(|e| e.to_string())?;
            *write(&self.inner.desired) = Arc::new(next);
        }
        if start {
            self.stop_app(&m.name);
            self.start_app(&app);
        }
        self.collect_garbage();
        Ok(())
    }

    /// Removes cache entries no app of the desired state names.
    fn collect_garbage(&self) {
        let desired = self.inner.desired();
        let removed = self.inner.cache.collect_garbage(&desired.digests());
        if removed > 0 {
            tracing::debug!("removed {removed} unused cache entries");
        }
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
        // Compiled before the change begins: a large image holds up no
        // other change while it compiles.
        let blobs = self.load_images(&m, &file, &req.images)?;
        let source = req.file.as_ref().map(|f| f.display().to_string());
        {
            let change = self.begin_change();
            self.deploy(&change, &m, &blobs, source, None, &file, start)?;
        }
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
        let failed = read(&self.inner.apps)
            .get(&m.name)
            .map(|a| {
                a.components
                    .iter()
                    .filter_map(|p| match p.state() {
                        (State::Failed, why) => Some(format!(
                            "`{}`: {}",
                            p.id,
                            why.unwrap_or_else(|| "failed".into())
                        )),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(ApplyOutcome {
            name: m.name.clone(),
            version: m.version.clone(),
            warnings,
            components: m.components.iter().map(|c| c.id.clone()).collect(),
            failed,
        })
    }

    /// [`load_images`] with this host's engine and image cap.
    pub(crate) fn load_images(
        &self,
        m: &Manifest,
        what: &str,
        provided: &HashMap<PathBuf, Vec<u8>>,
    ) -> Result<Vec<(String, Vec<u8>)>, String> {
        load_images(
            &self.inner.engine,
            m,
            what,
            provided,
            self.inner.board.limits.max_image_bytes(),
        )
    }

    /// The cached images of a deployed app, by component name (those
    /// still in the cache).
    pub(crate) fn cached_images(&self, app: &DeployedApp) -> Vec<(String, Vec<u8>)> {
        app.digests
            .iter()
            .filter_map(|(n, d)| self.inner.cache.get(d).ok().map(|b| (n.clone(), b)))
            .collect()
    }

    /// Removes an app from the desired state and stops its components.
    pub fn delete(&self, name: &str) -> Result<(), String> {
        let change = self.begin_change();
        self.remove_app(&change, name)
    }

    /// [`Host::delete`] inside a change.
    pub(crate) fn remove_app(&self, _change: &Change<'_>, name: &str) -> Result<(), String> {
        let current = self.inner.desired();
        let mut next = (*current).clone();
        if next.remove(name).is_none() {
            let names: Vec<&str> = current
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
        *write(&self.inner.desired) = Arc::new(next);
        self.stop_app(name);
        self.collect_garbage();
        tracing::info!(app = %name, "deleted");
        Ok(())
    }

    /// Stops an app's components. Calls in flight hold their instance and
    /// finish (or reach their deadline); the instances go away after.
    fn stop_app(&self, name: &str) {
        let Some(app) = write(&self.inner.apps).remove(name) else {
            return;
        };
        let mut comps = write(&self.inner.components);
        for p in &app.components {
            if comps.get(&p.id).is_some_and(|c| Arc::ptr_eq(c, p)) {
                comps.remove(&p.id);
            }
            *write(&p.pool) = None;
            *write(&p.provider) = None;
        }
    }

    /// The deployed app of that name, as last saved.
    pub(crate) fn deployed_app(&self, name: &str) -> Option<DeployedApp> {
        self.inner.desired().app(name).cloned()
    }

    /// The app a component id belongs to, if any.
    fn app_of(&self, id: &str) -> Option<String> {
        read(&self.inner.components).get(id).map(|p| p.app.clone())
    }

    /// Refuses to touch a component that the device's own manifests
    /// declare (placed or not: a component of a device app that is not
    /// running is still the device's).
    pub(crate) fn check_lattice_owned(&self, id: &str, what: &str) -> Result<(), String> {
        if let Some(app) = self.device_app_of(id) {
            return Err(format!(
                "{what} `{id}` belongs to app `{app}`, deployed on the device itself; the lattice cannot change it"
            ));
        }
        match self.app_of(id) {
            Some(app) if app != crate::control::lattice_app_name(id) => Err(format!(
                "{what} `{id}` belongs to app `{app}`, deployed on the device itself; the lattice cannot change it"
            )),
            _ => Ok(()),
        }
    }

    /// The device app (not one the lattice made) declaring component `id`.
    pub(super) fn device_app_of(&self, id: &str) -> Option<String> {
        self.inner
            .desired()
            .apps
            .iter()
            .filter(|a| a.lattice.is_none())
            .find(|a| a.manifest.components.iter().any(|c| c.id == id))
            .map(|a| a.manifest.name.clone())
    }

    /// Who owns which ids, and which named config is in use here, for
    /// [`crate::policy::admit`]. Reads a snapshot of the desired state.
    pub(super) fn owners(&self) -> (crate::policy::Owners, BTreeSet<String>) {
        let desired = self.inner.desired();
        let mut owners = crate::policy::Owners::default();
        let mut in_use = BTreeSet::new();
        for app in &desired.apps {
            for c in &app.manifest.components {
                if app.lattice.is_some() {
                    owners.local.insert(c.id.clone());
                } else {
                    owners.device.insert(c.id.clone());
                }
                // Config named without properties comes from the lattice.
                in_use.extend(
                    c.config
                        .iter()
                        .filter(|r| r.properties.is_empty())
                        .map(|r| r.name.clone()),
                );
            }
        }
        (owners, in_use)
    }
}
