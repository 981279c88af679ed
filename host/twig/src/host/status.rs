//! What the host reports about itself: `twig status` ([`Host::status`])
//! and the lattice inventory ([`Host::inventory`]). Read-only: every
//! figure comes from a snapshot or an atomic counter, never from under a
//! lock that a change holds for long.

use std::collections::BTreeMap;

use serde::Serialize;
use twig_manifest::Image;

use super::{Host, Placed, State};
use crate::lattice::wire::{ComponentDescription, ProviderDescription};
use crate::providers::ProviderKind;
use crate::sync::{lock, read};

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
    pub uplink: Option<crate::uplink::UplinkStatus>,
    /// The durable outbox: what waits to leave the device, per class,
    /// with its drop and expiry counters.
    pub outbox: Option<twig_outbox::OutboxStats>,
    /// The host's lattice identity (id `N…`, friendly name).
    #[serde(flatten)]
    pub identity: Option<crate::uplink::HostIdentity>,
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
    /// For a running provider: what it does now (the addresses it serves,
    /// its subscriptions).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub serving: Option<String>,
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

impl Host {
    pub fn status(&self) -> Status {
        let apps = read(&self.inner.apps).clone();
        Status {
            host: HostStatus {
                version: env!("CARGO_PKG_VERSION"),
                board: self.inner.board.name.clone(),
                data_dir: self.inner.data_dir.display().to_string(),
                labels: self.labels(),
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

    /// The running components and providers, as an inventory lists them.
    pub fn inventory(&self) -> (Vec<ComponentDescription>, Vec<ProviderDescription>) {
        let apps = read(&self.inner.apps).clone();
        let desired = self.inner.desired();
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
                if p.provider_kind().is_some() {
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

fn component_status(p: &Placed) -> ComponentStatus {
    let (state, reason) = p.state();
    let stats = p.pool().map(|pool| pool.stats()).unwrap_or_default();
    ComponentStatus {
        provider: p.provider_kind().map(ProviderKind::reference),
        serving: p.provider().and_then(|pr| pr.status()),
        id: p.id.clone(),
        name: p.name.clone(),
        state,
        reason,
        image: p.digest.as_ref().map(|d| format!("sha256:{d}")),
        instances: InstanceCounts {
            live: stats.live,
            idle: stats.idle,
            max: stats.max,
        },
        calls: stats.calls,
        failed_calls: stats.failures,
        last_error: stats.last_error,
    }
}
