//! What the lattice may do to this host, as plain blocking calls on
//! [`Host`]: scale, update and stop components, start and stop the built-in
//! providers, change labels, and take in the links and named config of the
//! lattice's buckets. The NATS side ([`crate::lattice`]) parses and checks
//! requests and calls these; nothing here knows about NATS, so it is the
//! same with or without the `lattice` feature and testable without a
//! server.
//!
//! Each component or provider the lattice starts becomes an app of its own
//! in the desired state, named `lattice:{id}`, with a [`LatticeOrigin`]
//! that remembers what the lattice asked for. It is saved before it starts,
//! so it comes back after a power cut with no uplink, exactly like an app
//! from the device's own manifest. Those apps stay the device's: the
//! lattice cannot scale or stop a component that a local manifest declares.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use twig_manifest::{ComponentKind, ComponentSpec, ConfigRef, Image, Manifest, Scaler};

use crate::host::{lock, read, write, Host, State};
use crate::lattice::wire::{
    ComponentDescription, LinkDef, ProviderDescription, ScaleComponent, StartProvider,
};
use crate::providers;
use crate::state::{DeployedApp, LatticeOrigin};

/// The app name of a component or provider the lattice started.
pub fn lattice_app_name(id: &str) -> String {
    format!("lattice:{id}")
}

/// A `component.scale` request, checked and ready to run.
#[derive(Debug, Clone)]
pub struct ScalePlan {
    pub id: String,
    /// The file to run; `None` when scaling to zero.
    pub file: Option<PathBuf>,
    pub origin: LatticeOrigin,
    /// Said in the reply (e.g. that the image was not updated).
    pub message: String,
}

/// References to the lattice's named config, by name only: the values come
/// from the lattice copy when the component starts.
fn named_config_refs(names: &[String]) -> Vec<ConfigRef> {
    names
        .iter()
        .map(|n| ConfigRef {
            name: n.clone(),
            properties: BTreeMap::new(),
        })
        .collect()
}

impl Host {
    /// The host's labels as the lattice sees them.
    pub fn labels(&self) -> BTreeMap<String, String> {
        read(&self.inner.labels).clone()
    }

    /// Whether a component or provider with this id is on this host.
    pub fn has_component(&self, id: &str) -> bool {
        read(&self.inner.components).contains_key(id)
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
            Some(app) if app != lattice_app_name(id) => Err(format!(
                "{what} `{id}` belongs to app `{app}`, deployed on the device itself; the lattice cannot change it"
            )),
            _ => Ok(()),
        }
    }

    /// The device app (not one the lattice made) declaring component `id`.
    fn device_app_of(&self, id: &str) -> Option<String> {
        lock(&self.inner.desired)
            .apps
            .iter()
            .filter(|a| a.lattice.is_none())
            .find(|a| a.manifest.components.iter().any(|c| c.id == id))
            .map(|a| a.manifest.name.clone())
    }

    /// Who owns which ids, and which named config is in use here, for
    /// [`crate::policy::admit`]. Reads the desired state only: never call
    /// it with the lattice lock held.
    fn owners(&self) -> (crate::policy::Owners, BTreeSet<String>) {
        let desired = lock(&self.inner.desired);
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

    /// Holds the lattice data to the control policy again (after a device
    /// app is deployed, its ids are off limits to lattice links).
    pub fn sanitize_lattice(&self) {
        if let Err(e) = self.change_lattice_data(|_| {}) {
            tracing::error!("lattice data: {e}");
        }
    }

    fn lattice_app(&self, id: &str) -> Option<DeployedApp> {
        lock(&self.inner.desired)
            .app(&lattice_app_name(id))
            .cloned()
    }

    /// Checks a `component.scale` request against this host: who owns the
    /// id, the board's instance limit, and that the file is there. Nothing
    /// changes.
    pub fn plan_scale(&self, req: &ScaleComponent) -> Result<ScalePlan, String> {
        let id = &req.component_id;
        self.check_lattice_owned(id, "component")?;
        let max = self.inner.board.limits.max_instances;
        if req.count as usize > max {
            return Err(format!(
                "cannot scale `{id}` to {} instances: board `{}` allows at most {max} per component (limits.max_instances)",
                req.count, self.inner.board.name
            ));
        }
        let previous = self.lattice_app(id).and_then(|a| a.lattice);
        let mut message = String::new();
        let mut image_ref = req.component_ref.clone();
        if let Some(prev) = &previous {
            if prev.image_ref != req.component_ref && !req.allow_update {
                message = format!(
                    "`{id}` runs {}, not {}: scaled, but the image stays (use component.update to change it)",
                    prev.image_ref, req.component_ref
                );
                image_ref = prev.image_ref.clone();
            }
        }
        let file = if req.count == 0 {
            None
        } else {
            Some(self.inner.board.control.lattice_file(&image_ref)?)
        };
        Ok(ScalePlan {
            id: id.clone(),
            file,
            origin: LatticeOrigin {
                image_ref,
                annotations: req.annotations.clone().unwrap_or_default(),
                max_instances: req.count,
                config: req.config.clone(),
            },
            message,
        })
    }

    /// Runs a checked scale: compiles the file, records the app and
    /// (re)starts it, or stops it for a count of zero. On failure the
    /// previous state is put back.
    pub fn run_scale(&self, plan: &ScalePlan) -> Result<(), String> {
        let name = lattice_app_name(&plan.id);
        let Some(file) = &plan.file else {
            if self.lattice_app(&plan.id).is_some() {
                self.delete(&name)?;
            }
            return Ok(());
        };
        let spec = ComponentSpec {
            name: plan.id.clone(),
            kind: ComponentKind::Component,
            id: plan.id.clone(),
            image: Image::File(file.clone()),
            config: named_config_refs(&plan.origin.config),
            scaler: Some(Scaler::Spread {
                instances: plan.origin.max_instances,
                spread: Vec::new(),
            }),
            links: Vec::new(),
        };
        self.deploy_lattice_app(&plan.id, spec, plan.origin.clone())
    }

    /// Deploys a one-component app for the lattice and waits for its
    /// verdict; a component that does not run is taken out again (and the
    /// app it replaced put back), so a failed request changes nothing.
    fn deploy_lattice_app(
        &self,
        id: &str,
        spec: ComponentSpec,
        origin: LatticeOrigin,
    ) -> Result<(), String> {
        let name = lattice_app_name(id);
        let m = Manifest {
            name: name.clone(),
            version: None,
            description: None,
            annotations: origin.annotations.clone(),
            labels: BTreeMap::new(),
            components: vec![spec],
        };
        let what = format!("lattice request for `{id}`");
        let blobs = crate::host::load_images(
            &self.inner.engine,
            &m,
            &what,
            &Default::default(),
            self.inner.board.limits.max_image_bytes(),
        )?;
        let previous = self.lattice_app(id);
        self.deploy(&m, &blobs, None, Some(origin), &what, true)?;
        let placed = self.find_component(id)?;
        let (state, reason) = placed.state();
        if state == State::Running {
            return Ok(());
        }
        let why = format!(
            "`{id}` is {}{}",
            state.as_str(),
            reason.map(|r| format!(": {r}")).unwrap_or_default()
        );
        match previous {
            Some(prev) => {
                let blobs: Vec<(String, Vec<u8>)> = prev
                    .digests
                    .iter()
                    .filter_map(|(n, d)| self.inner.cache.get(d).ok().map(|b| (n.clone(), b)))
                    .collect();
                let _ = self.deploy(&prev.manifest, &blobs, None, prev.lattice, &what, true);
            }
            None => {
                let _ = self.delete(&name);
            }
        }
        Err(why)
    }

    /// `component.update`: runs `new_ref` in place of the component's
    /// image, keeping its instance count and config.
    pub fn update_component(
        &self,
        id: &str,
        new_ref: &str,
        annotations: Option<BTreeMap<String, String>>,
    ) -> Result<ScalePlan, String> {
        self.check_lattice_owned(id, "component")?;
        let Some(prev) = self.lattice_app(id).and_then(|a| a.lattice) else {
            return Err(format!("component `{id}` is not running on this host"));
        };
        Ok(ScalePlan {
            id: id.to_string(),
            file: Some(self.inner.board.control.lattice_file(new_ref)?),
            origin: LatticeOrigin {
                image_ref: new_ref.to_string(),
                annotations: annotations.unwrap_or(prev.annotations),
                max_instances: prev.max_instances,
                config: prev.config,
            },
            message: String::new(),
        })
    }

    /// The capability spec of a provider the lattice asks for.
    fn provider_spec(req: &StartProvider) -> ComponentSpec {
        ComponentSpec {
            name: req.provider_id.clone(),
            kind: ComponentKind::Capability,
            id: req.provider_id.clone(),
            image: Image::Reference(req.provider_ref.clone()),
            config: named_config_refs(&req.config),
            scaler: None,
            links: Vec::new(),
        }
    }

    /// Checks a `provider.start` request: the reference must name a
    /// built-in provider (`twig:keyvalue`, … or an image the board maps to
    /// one). Nothing changes.
    pub fn check_start_provider(&self, req: &StartProvider) -> Result<(), String> {
        self.check_lattice_owned(&req.provider_id, "provider")?;
        if self.lattice_app(&req.provider_id).is_some() {
            return Err(format!("provider `{}` is already running", req.provider_id));
        }
        providers::resolve(&Self::provider_spec(req), &self.inner.board).map(|_| ())
    }

    /// Starts a built-in provider for the lattice.
    pub fn start_provider(&self, req: &StartProvider) -> Result<(), String> {
        let origin = LatticeOrigin {
            image_ref: req.provider_ref.clone(),
            annotations: req.annotations.clone().unwrap_or_default(),
            max_instances: 1,
            config: req.config.clone(),
        };
        self.deploy_lattice_app(&req.provider_id, Self::provider_spec(req), origin)
    }

    /// Stops a provider the lattice started; returns its annotations.
    pub fn stop_provider(&self, id: &str) -> Result<BTreeMap<String, String>, String> {
        self.check_lattice_owned(id, "provider")?;
        match self.lattice_app(id) {
            Some(app)
                if app
                    .manifest
                    .components
                    .iter()
                    .any(|c| c.kind == ComponentKind::Capability) =>
            {
                self.delete(&app.manifest.name)?;
                Ok(app.lattice.map(|o| o.annotations).unwrap_or_default())
            }
            _ => Err(format!("provider `{id}` is not running on this host")),
        }
    }

    /// `label.put`: sets a label (kept on disk); returns the new labels.
    pub fn put_label(&self, key: &str, value: &str) -> Result<BTreeMap<String, String>, String> {
        let max = self.inner.board.control.max_labels;
        {
            let data = read(&self.inner.lattice);
            if !data.label_puts.contains_key(key) && data.label_puts.len() >= max {
                return Err(format!(
                    "label.put {key}: this host takes at most {max} labels from the lattice (control.max_labels)"
                ));
            }
        }
        self.change_lattice_data(|d| {
            d.label_dels.remove(key);
            d.label_puts.insert(key.to_string(), value.to_string());
        })?;
        Ok(self.labels())
    }

    /// `label.del`: removes a label; `None` if there was no such label.
    pub fn delete_label(&self, key: &str) -> Result<Option<BTreeMap<String, String>>, String> {
        if !self.labels().contains_key(key) {
            return Ok(None);
        }
        let board_has = self.inner.board.host_labels().contains_key(key);
        self.change_lattice_data(|d| {
            d.label_puts.remove(key);
            if board_has {
                d.label_dels.insert(key.to_string());
            }
        })?;
        Ok(Some(self.labels()))
    }

    /// Applies a change to the lattice cache, saves it, and refreshes the
    /// labels derived from it.
    fn change_lattice_data(
        &self,
        f: impl FnOnce(&mut crate::lattice::cache::LatticeData),
    ) -> Result<(), String> {
        let (owners, in_use) = self.owners();
        let mut guard = write(&self.inner.lattice);
        let mut next = guard.clone();
        f(&mut next);
        let dropped = crate::policy::admit(&mut next, &owners, &self.inner.board.control, &in_use);
        if !dropped.is_empty() {
            // Each line once; and a bounded set of them, so a flood of
            // distinct keys cannot grow the host through its own log.
            const MAX_LOGGED: usize = 1000;
            let mut logged = lock(&self.inner.lattice_dropped);
            for d in dropped {
                if logged.len() >= MAX_LOGGED {
                    let more = crate::policy::Dropped(String::new());
                    if logged.insert(more) {
                        tracing::warn!("more lattice data is left out by the control policy; not logged further");
                    }
                    break;
                }
                if logged.insert(d.clone()) {
                    tracing::warn!("{}", d.0);
                }
            }
        }
        if next == *guard {
            return Ok(());
        }
        next.save(&self.inner.data_dir).map_err(|e| e.to_string())?;
        *write(&self.inner.labels) = next.labels(&self.inner.board.host_labels());
        // Sources whose links changed, or whose links name config that
        // changed; a provider among them acts on its new links at once (an
        // HTTP listener on a new address, say).
        let changed_config: BTreeSet<&String> = next
            .config
            .keys()
            .chain(guard.config.keys())
            .filter(|k| next.config.get(*k) != guard.config.get(*k))
            .collect();
        let relink: BTreeSet<String> = next
            .links
            .keys()
            .chain(guard.links.keys())
            .filter(|src| {
                let (old, new) = (guard.links.get(*src), next.links.get(*src));
                old != new
                    || new.into_iter().flatten().any(|l| {
                        l.source_config
                            .iter()
                            .chain(&l.target_config)
                            .any(|c| changed_config.contains(c))
                    })
            })
            .cloned()
            .collect();
        let config_changed = !changed_config.is_empty();
        *guard = next;
        if config_changed {
            // Running components that name lattice config see the new
            // values on their next `wasi:config` call. Never hold the
            // lattice and component locks together (starting a component
            // takes them the other way round); each refresh reads the
            // lattice as it is then, so racing changes end on the last.
            drop(guard);
            let pools: Vec<(String, std::sync::Arc<crate::host::Pool>)> =
                read(&self.inner.components)
                    .values()
                    .filter_map(|p| Some((p.id.clone(), p.pool()?)))
                    .collect();
            let data = read(&self.inner.lattice);
            for (id, pool) in pools {
                if pool.config.refresh(&data) {
                    tracing::info!(component = %id, "config changed on the lattice; new values in effect");
                }
            }
        } else {
            drop(guard);
        }
        for source in relink {
            self.relink_provider(&source);
        }
        Ok(())
    }

    /// The links of one source component from the lattice (`None`: it has
    /// none any more). Calls resolve links when they happen, so a change
    /// takes effect on the next call.
    pub fn set_lattice_links(
        &self,
        source: &str,
        links: Option<Vec<LinkDef>>,
    ) -> Result<(), String> {
        self.change_lattice_data(|d| match links {
            Some(l) if !l.is_empty() => {
                d.links.insert(source.to_string(), l);
            }
            _ => {
                d.links.remove(source);
            }
        })
    }

    /// A named config from the lattice (`None`: deleted). Components read
    /// it when they start.
    pub fn set_lattice_config(
        &self,
        name: &str,
        config: Option<BTreeMap<String, String>>,
    ) -> Result<(), String> {
        self.change_lattice_data(|d| match config {
            Some(c) => {
                d.config.insert(name.to_string(), c);
            }
            None => {
                d.config.remove(name);
            }
        })
    }

    /// Replaces all links and config with a full copy of the buckets (after
    /// a (re)connect, so changes made while the host was away arrive).
    pub fn replace_lattice_data(
        &self,
        links: Option<BTreeMap<String, Vec<LinkDef>>>,
        config: Option<BTreeMap<String, BTreeMap<String, String>>>,
    ) -> Result<(), String> {
        self.change_lattice_data(|d| {
            if let Some(l) = links {
                d.links = l.into_iter().filter(|(_, v)| !v.is_empty()).collect();
            }
            if let Some(c) = config {
                d.config = c;
            }
        })
    }

    /// Why a built-in provider here could not act on its links (an HTTP
    /// listener that did not bind, say), if it is failed; `None` when it
    /// runs or is not here. Read after a link change, so the reply to
    /// `link.put` can say the link is stored but not in effect.
    pub fn provider_failure(&self, id: &str) -> Option<String> {
        let placed = read(&self.inner.components).get(id).cloned()?;
        placed.provider()?;
        match placed.state() {
            (State::Failed, reason) => Some(reason.unwrap_or_else(|| "failed".to_string())),
            _ => None,
        }
    }

    /// Every link this host knows from the lattice.
    pub fn lattice_links(&self) -> Vec<LinkDef> {
        read(&self.inner.lattice).all_links()
    }

    /// The links of one source, as last seen.
    pub fn lattice_links_of(&self, source: &str) -> Vec<LinkDef> {
        read(&self.inner.lattice)
            .links
            .get(source)
            .cloned()
            .unwrap_or_default()
    }

    /// A named config as last seen.
    pub fn lattice_config(&self, name: &str) -> Option<BTreeMap<String, String>> {
        read(&self.inner.lattice).config.get(name).cloned()
    }

    /// The running components and providers, as an inventory lists them.
    pub fn inventory(&self) -> (Vec<ComponentDescription>, Vec<ProviderDescription>) {
        let apps = read(&self.inner.apps).clone();
        let desired = lock(&self.inner.desired).clone();
        let mut components = Vec::new();
        let mut providers = Vec::new();
        for (app_name, info) in &apps {
            let manifest = desired.app(app_name).map(|a| &a.manifest);
            for p in &info.components {
                if p.state().0 != State::Running {
                    continue;
                }
                let image_ref = match &info.lattice {
                    Some(o) => o.image_ref.clone(),
                    None => match manifest
                        .and_then(|m| m.component(&p.name))
                        .map(|c| &c.image)
                    {
                        Some(Image::File(f)) => format!("file://{}", f.display()),
                        Some(Image::Reference(r)) => r.clone(),
                        None => String::new(),
                    },
                };
                let annotations = match &info.lattice {
                    Some(o) => o.annotations.clone(),
                    // Says where a component wadm did not put came from.
                    None => BTreeMap::from([("twig.dev/app".to_string(), app_name.clone())]),
                };
                if lock(&p.provider_kind).is_some() {
                    providers.push(ProviderDescription {
                        id: p.id.clone(),
                        image_ref,
                        name: Some(p.name.clone()),
                        annotations,
                        revision: 0,
                    });
                } else if let Some(pool) = p.pool() {
                    components.push(ComponentDescription {
                        id: p.id.clone(),
                        image_ref,
                        name: Some(p.name.clone()),
                        annotations,
                        revision: 0,
                        max_instances: pool.max_instances() as u32,
                    });
                }
            }
        }
        (components, providers)
    }
}

/// Calls from elsewhere in the lattice into this host's components (the
/// serving side of wRPC), and the way out for calls to remote targets.
impl Host {
    /// Lets calls to link targets that are not local go over the lattice.
    pub fn set_remote(&self, remote: std::sync::Arc<dyn crate::host::RemoteCalls>) {
        let _ = self.inner.remote.set(remote);
    }

    /// The components that answer calls from the lattice: every running
    /// component (providers are reached through their own links).
    pub fn served_components(&self) -> Vec<String> {
        let device = if self.inner.board.control.serve_device_components {
            BTreeSet::new()
        } else {
            self.owners().0.device
        };
        read(&self.inner.components)
            .values()
            .filter(|p| p.pool().is_some() && !device.contains(&p.id))
            .map(|p| p.id.clone())
            .collect()
    }

    /// Runs `instance#func` of component `id` for a caller elsewhere in
    /// the lattice, with parameters in the component-model value encoding.
    /// `Ok(None)` means `params` is not complete yet (more is on its way).
    pub fn call_from_lattice(
        &self,
        id: &str,
        instance: &str,
        func: &str,
        params: &[u8],
        deadline: std::time::Instant,
    ) -> Result<Option<Vec<u8>>, String> {
        // Also checked per call: a subscription outlives a change of what
        // is served by up to one serving pass.
        if !self.inner.board.control.serve_device_components && self.device_app_of(id).is_some() {
            return Err(format!(
                "`{id}` belongs to the device's own manifest and does not answer calls from the lattice (control.serve_device_components)"
            ));
        }
        let pool = self.inner.running_pool(id)?;
        let wait = deadline.saturating_duration_since(std::time::Instant::now());
        let mut incomplete = false;
        let out = pool.with_instance(wait, |inst| {
            let export = inst
                .export_names()
                .into_iter()
                .find(|n| {
                    n.rsplit_once('#').is_some_and(|(i, f)| {
                        f == func
                            && (i == instance || twig_component::names::compatible(instance, i))
                    })
                })
                .map(str::to_string)
                .ok_or_else(|| {
                    format!(
                        "`{id}` has no export `{instance}#{func}`; its exports are: {}",
                        inst.export_names().join(", ")
                    )
                })?;
            let (Some(pt), Some(rt)) = (
                inst.export_param_types(&export),
                inst.export_result_types(&export),
            ) else {
                return Err(format!("`{id}`: `{export}` has no known type"));
            };
            let args = match twig_component::wrpc::decode(params, &pt) {
                Ok((args, _)) => args,
                Err(twig_component::wrpc::DecodeError::Incomplete { .. }) => {
                    incomplete = true;
                    return Ok(Vec::new());
                }
                Err(e) => return Err(format!("`{export}`: the parameters do not decode: {e}")),
            };
            let results = inst.call(&export, &args).map_err(|e| e.to_string())?;
            twig_component::wrpc::encode(&results, &rt).map_err(|e| format!("`{export}`: {e}"))
        })?;
        Ok((!incomplete).then_some(out))
    }
}
