//! `twig:keyvalue`: a crash-safe key-value store per provider
//! (`twig-keyvalue`, under `DATA/kv/{id}`), reached by components through
//! `wasi:keyvalue`. It calls no component, so it has no links to start.

use std::any::Any;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use twig_keyvalue::component::{KeyValueCtx, KeyValueView};
use twig_manifest::ComponentSpec;

use super::{merged_properties, LinkContext, Provider, ProviderKind};
use crate::host::pool::{InstanceData, Lookup};
use crate::sync::lock;

/// A running key-value provider.
pub struct KeyValueProvider {
    store: Arc<twig_keyvalue::Store>,
}

impl Provider for KeyValueProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::KeyValue
    }

    fn start_links(&self, _cx: &LinkContext<'_>) -> Result<(), String> {
        Ok(())
    }

    fn stop_links(&self) {}

    fn status(&self) -> Option<String> {
        None
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// The stores open in this host, by provider id, while anything holds
/// them: an app applied again reuses its store (an instance's open bucket,
/// a call in flight may still hold it) rather than fail on its lock.
#[derive(Default)]
pub struct OpenStores(Mutex<HashMap<String, Weak<twig_keyvalue::Store>>>);

impl OpenStores {
    /// Opens (creating if needed) the store of provider `spec` under
    /// `data_dir/kv/{id}`, or reuses it if it is open.
    pub fn open(&self, spec: &ComponentSpec, data_dir: &Path) -> Result<KeyValueProvider, String> {
        let mut stores = lock(&self.0);
        if let Some(store) = stores.get(&spec.id).and_then(Weak::upgrade) {
            return Ok(KeyValueProvider { store });
        }
        let config = keyvalue_config(spec)?;
        let dir = data_dir.join("kv").join(&spec.id);
        let (store, report) = twig_keyvalue::Store::open(&dir, config)
            .map_err(|e| format!("cannot open key-value store {}: {e}", dir.display()))?;
        // The store logs what it repaired itself (torn tail, corrupt ranges).
        tracing::debug!(provider = %spec.id, keys = report.live_keys, dir = %dir.display(), "key-value store open");
        let store = Arc::new(store);
        stores.retain(|_, w| w.strong_count() > 0);
        stores.insert(spec.id.clone(), Arc::downgrade(&store));
        Ok(KeyValueProvider { store })
    }
}

/// The key-value store's settings from the provider's config:
/// `fsync` (`always`, the default, or `batched`), `max_bytes`,
/// `max_value_bytes`.
pub fn keyvalue_config(spec: &ComponentSpec) -> Result<twig_keyvalue::Config, String> {
    let cfg = merged_properties(&spec.config);
    let mut c = twig_keyvalue::Config::default();
    let num = |key: &str, v: &str| -> Result<u64, String> {
        v.trim()
            .parse::<u64>()
            .map_err(|_| format!("config `{key}`: expected a number of bytes, got {v:?}"))
    };
    for (k, v) in &cfg {
        match k.as_str() {
            "fsync" => {
                c.fsync = match v.as_str() {
                    "always" => twig_keyvalue::FsyncPolicy::Always,
                    "batched" => twig_keyvalue::FsyncPolicy::Batched {
                        max_delay_ms: 100,
                        max_bytes: 1 << 20,
                    },
                    other => {
                        return Err(format!(
                            "config `fsync`: expected `always` or `batched`, got {other:?}"
                        ))
                    }
                }
            }
            "max_bytes" => c.max_bytes = num(k, v)?,
            "max_value_bytes" => c.max_value_bytes = num(k, v)? as usize,
            _ => tracing::debug!(provider = %spec.id, "keyvalue: ignoring config `{k}`"),
        }
    }
    Ok(c)
}

impl KeyValueView for InstanceData {
    fn keyvalue(&mut self) -> &mut KeyValueCtx {
        &mut self.keyvalue
    }

    /// The store the component's `wasi:keyvalue/store` link names now.
    fn resolve_store(&mut self) -> Result<Arc<twig_keyvalue::Store>, String> {
        let name = self.link_name("wasi:keyvalue/store");
        let links = &self.links;
        let target = links.target("wasi", "keyvalue", "store", &name)?;
        let provider = match links.host()?.provider(&target) {
            Ok(p) => p,
            Err(Lookup::Missing(e)) => return Err(e),
            Err(Lookup::NotProvider(state)) => {
                return Err(format!(
                    "link `{name}` of {} for wasi:keyvalue names `{target}`, which is {state}",
                    links.source
                ))
            }
        };
        match provider.downcast::<KeyValueProvider>() {
            Ok(kv) => Ok(kv.store.clone()),
            Err(_) => Err(format!(
                "link `{name}` of {} for wasi:keyvalue names `{target}`, which is not a key-value provider",
                links.source
            )),
        }
    }
}
