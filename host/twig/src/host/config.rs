//! A running component's config: its manifest `config` entries merged in
//! order, with named config from the lattice, which can change while it
//! runs. `wasi:config` reads it ([`crate::capabilities`]).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use twig_manifest::ComponentSpec;

use crate::latticedata::LatticeData;

/// The config a component sees: its `config` entries merged in order. An
/// entry with no properties of its own names config kept on the lattice
/// (`CONFIGDATA_{lattice}`, cached on disk), as wadm expects.
pub fn merged_config(spec: &ComponentSpec, lattice: &LatticeData) -> BTreeMap<String, String> {
    let mut merged = BTreeMap::new();
    for c in &spec.config {
        if !c.properties.is_empty() {
            merged.extend(c.properties.clone());
        } else if let Some(named) = lattice.config.get(&c.name) {
            merged.extend(named.clone());
        } else {
            tracing::warn!(
                component = %spec.id,
                "config `{}` has no properties here and the lattice has no config of that name (yet)",
                c.name
            );
        }
    }
    merged
}

/// A running component's config, shared by its instances. Named config
/// from the lattice can change while the component runs (`config.put`, or
/// the bucket's watcher); as on a wasmCloud host, the next `wasi:config`
/// call sees the new values, without a restart.
pub struct LiveConfig {
    spec: ComponentSpec,
    current: RwLock<Arc<BTreeMap<String, String>>>,
}

impl LiveConfig {
    pub fn new(spec: &ComponentSpec, lattice: &LatticeData) -> LiveConfig {
        LiveConfig {
            current: RwLock::new(Arc::new(merged_config(spec, lattice))),
            spec: spec.clone(),
        }
    }

    /// The values as of now.
    pub fn get(&self) -> Arc<BTreeMap<String, String>> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Merges again from `lattice`; true if the values changed.
    pub fn refresh(&self, lattice: &LatticeData) -> bool {
        let next = merged_config(&self.spec, lattice);
        let mut cur = self.current.write().unwrap_or_else(|p| p.into_inner());
        if **cur == next {
            return false;
        }
        *cur = Arc::new(next);
        true
    }
}
