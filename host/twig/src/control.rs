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

use std::collections::BTreeMap;
use std::path::PathBuf;

use twig_manifest::{ComponentKind, ComponentSpec, ConfigRef, Image, Manifest, Scaler};

use crate::host::{Host, State};
use crate::lattice::wire::{ScaleComponent, StartProvider};
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
    fn lattice_app(&self, id: &str) -> Option<DeployedApp> {
        self.deployed_app(&lattice_app_name(id))
    }

    /// Checks a `component.scale` request against this host: who owns the
    /// id, the board's instance limit, and that the file is there. Nothing
    /// changes.
    pub fn plan_scale(&self, req: &ScaleComponent) -> Result<ScalePlan, String> {
        let id = &req.component_id;
        self.check_lattice_owned(id, "component")?;
        let max = self.board().limits.max_instances;
        if req.count as usize > max {
            return Err(format!(
                "cannot scale `{id}` to {} instances: board `{}` allows at most {max} per component (limits.max_instances)",
                req.count, self.board().name
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
            Some(self.board().control.lattice_file(&image_ref)?)
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
            let change = self.begin_change();
            if self.lattice_app(&plan.id).is_some() {
                self.remove_app(&change, &name)?;
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
            // The lattice's `SECRET_…` references are not fetched yet.
            secrets: Vec::new(),
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
            policies: Vec::new(),
        };
        let what = format!("lattice request for `{id}`");
        // Compiled before the change begins, so that other changes do not
        // wait for it.
        let blobs = self.load_images(&m, &what, &Default::default())?;
        let change = self.begin_change();
        let previous = self.lattice_app(id);
        self.deploy(&change, &m, &blobs, None, Some(origin), &what, true)?;
        let placed = self.find_component(id)?;
        let (state, reason) = placed.state();
        if state == State::Running {
            return Ok(());
        }
        let why = format!("`{id}` is {}", state.describe(reason));
        match previous {
            Some(prev) => {
                let blobs = self.cached_images(&prev);
                let _ = self.deploy(
                    &change,
                    &prev.manifest,
                    &blobs,
                    None,
                    prev.lattice,
                    &what,
                    true,
                );
            }
            None => {
                let _ = self.remove_app(&change, &name);
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
            file: Some(self.board().control.lattice_file(new_ref)?),
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
            secrets: Vec::new(),
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
        providers::resolve(&Self::provider_spec(req), &self.board().provider_images).map(|_| ())
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
        let change = self.begin_change();
        match self.lattice_app(id) {
            Some(app)
                if app
                    .manifest
                    .components
                    .iter()
                    .any(|c| c.kind == ComponentKind::Capability) =>
            {
                self.remove_app(&change, &app.manifest.name)?;
                Ok(app.lattice.map(|o| o.annotations).unwrap_or_default())
            }
            _ => Err(format!("provider `{id}` is not running on this host")),
        }
    }
}
