//! `twig:keyvalue`: a crash-safe key-value store per provider
//! (`twig-keyvalue`, under `DATA/kv/{id}`), reached by components through
//! `wasi:keyvalue`. Its `watcher` links (provider → component, as
//! wasmCloud's keyvalue-redis provider has them) call the component's
//! `wasi:keyvalue/watcher` `on-set`/`on-delete` for the keys in the link's
//! source config `watch` (`SET@key,DEL@key`; `*` and `?` match as in
//! Redis's keyspace patterns).
//!
//! A write announces itself to a watch's bounded queue
//! ([`WATCH_QUEUE`]) and returns; the watch's own thread makes the calls,
//! in order, so a slow watcher only delays (and, once its queue is full,
//! loses) its own events.

use std::any::Any;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};

use twig_keyvalue::component::{KeyValueCtx, KeyValueView};
use twig_manifest::ComponentSpec;

use twig_component::{Resource, Val};

use super::{merged_properties, LinkContext, Provider, ProviderKind};
use crate::host::pool::{CallError, Directory, InstanceData, Lookup};
use crate::sync::lock;

/// A running key-value provider.
pub struct KeyValueProvider {
    store: Arc<twig_keyvalue::Store>,
    /// The watches of its `watcher` links.
    watches: Mutex<Vec<Watch>>,
}

/// Events a watch may have waiting; past it new ones are dropped (and
/// counted).
pub const WATCH_QUEUE: usize = 256;

/// One `watcher` link's registration with the store.
struct Watch {
    id: twig_keyvalue::watch::WatchId,
    target: String,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

/// Queues the events a watch wants for its thread.
struct Queue {
    specs: Vec<twig_keyvalue::watch::WatchSpec>,
    tx: std::sync::mpsc::SyncSender<twig_keyvalue::watch::Event>,
    target: String,
    dropped: Arc<std::sync::atomic::AtomicU64>,
}

impl twig_keyvalue::watch::Watcher for Queue {
    fn notify(&self, event: twig_keyvalue::watch::Event) {
        if !self.specs.iter().any(|s| s.wants(&event)) {
            return;
        }
        if self.tx.try_send(event).is_err() {
            let n = self
                .dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                + 1;
            if n.is_power_of_two() {
                tracing::warn!(target = %self.target, dropped = n, capacity = WATCH_QUEUE, "key-value watcher behind: event dropped");
            }
        }
    }
}

/// The `wasi:keyvalue` `watcher` links of a provider.
fn watcher_links(links: &[twig_manifest::Link]) -> impl Iterator<Item = &twig_manifest::Link> {
    links.iter().filter(|l| {
        l.namespace == "wasi"
            && l.package == "keyvalue"
            && l.interfaces.iter().any(|i| i == "watcher")
    })
}

impl Provider for KeyValueProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::KeyValue
    }

    fn start_links(&self, cx: &LinkContext<'_>) -> Result<(), String> {
        for link in watcher_links(cx.links) {
            // wasmCloud reads the key case-insensitively.
            let config = merged_properties(&link.source_config);
            let value = config
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("watch"))
                .map(|(_, v)| v.as_str());
            let Some(value) = value else {
                tracing::warn!(provider = %cx.provider, target = %link.target_id, "watcher link has no `watch` in its source config; nothing is watched");
                continue;
            };
            let (specs, skipped) = twig_keyvalue::watch::parse_watch(value);
            for why in skipped {
                tracing::warn!(provider = %cx.provider, target = %link.target_id, "{why}; skipped");
            }
            if specs.is_empty() {
                continue;
            }
            let (tx, rx) = std::sync::mpsc::sync_channel(WATCH_QUEUE);
            let dropped = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let target = link.target_id.clone();
            let (host, store) = (cx.host.clone(), self.store.clone());
            let t = target.clone();
            std::thread::Builder::new()
                .name(format!("kv-watch:{target}").chars().take(15).collect())
                .spawn(move || {
                    // Ends when the watch is removed (its sender dropped).
                    while let Ok(event) = rx.recv() {
                        if let Err(e) = deliver_change(&host, &t, &store, &event) {
                            tracing::warn!(component = %t, key = %event.key(), "key-value watcher failed: {e}");
                        }
                    }
                })
                .map_err(|e| format!("cannot start the watcher thread for `{target}`: {e}"))?;
            let described: Vec<String> = specs
                .iter()
                .map(|s| format!("{:?}@{}", s.op, s.key))
                .collect();
            let id = self.store.watch(Arc::new(Queue {
                specs,
                tx,
                target: target.clone(),
                dropped: dropped.clone(),
            }));
            tracing::info!(provider = %cx.provider, target = %target, watch = %described.join(","), "watching keys");
            lock(&self.watches).push(Watch {
                id,
                target,
                dropped,
            });
        }
        Ok(())
    }

    fn stop_links(&self) {
        for w in lock(&self.watches).drain(..) {
            self.store.unwatch(w.id);
        }
    }

    fn status(&self) -> Option<String> {
        let watches = lock(&self.watches);
        if watches.is_empty() {
            return None;
        }
        let dropped: u64 = watches
            .iter()
            .map(|w| w.dropped.load(std::sync::atomic::Ordering::Relaxed))
            .sum();
        let targets: Vec<&str> = watches.iter().map(|w| w.target.as_str()).collect();
        Some(format!(
            "watched by {}{}",
            targets.join(", "),
            if dropped > 0 {
                format!(" ({dropped} events dropped)")
            } else {
                String::new()
            }
        ))
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
            return Ok(KeyValueProvider {
                store,
                watches: Mutex::default(),
            });
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
        Ok(KeyValueProvider {
            store,
            watches: Mutex::default(),
        })
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

impl Drop for KeyValueProvider {
    fn drop(&mut self) {
        self.stop_links();
    }
}

/// Calls a watching component's `on-set` or `on-delete` for one change,
/// handing it the bucket as `own<bucket>` (forgotten when the call ends).
fn deliver_change(
    host: &Weak<dyn Directory>,
    target_id: &str,
    store: &Arc<twig_keyvalue::Store>,
    event: &twig_keyvalue::watch::Event,
) -> Result<(), String> {
    use twig_keyvalue::component::{ON_DELETE, ON_SET};
    use twig_keyvalue::watch::Event;
    let host = host
        .upgrade()
        .ok_or_else(|| "the host is shutting down".to_string())?;
    let pool = host.running_pool(target_id)?;
    let (export, bucket) = match event {
        Event::Set { bucket, .. } => (ON_SET, bucket),
        Event::Delete { bucket, .. } => (ON_DELETE, bucket),
    };
    let Some(bucket_ty) = pool.bucket_type() else {
        return Err(format!(
            "`{target_id}` does not import wasi:keyvalue, so it cannot be a watcher"
        ));
    };
    let (_trace, trace_id) = crate::trace::enter(None);
    let _span = tracing::info_span!("call", trace = %trace_id, component = %target_id, export, trigger = "keyvalue", key = %event.key()).entered();
    pool.with_instance(host.call_wait(), |inst| {
        if !inst.export_names().contains(&export) {
            return Err(CallError::Refused(format!(
                "`{target_id}` does not export {export}"
            )));
        }
        let rep = inst
            .data_mut()
            .keyvalue
            .hand_bucket(store.clone(), bucket)
            .map_err(CallError::Failed)?;
        let handle = Val::Resource(Resource::host_own(bucket_ty, rep));
        let args = match event {
            Event::Set { key, value, .. } => {
                vec![handle, Val::String(key.clone()), Val::Bytes(value.clone())]
            }
            Event::Delete { key, .. } => vec![handle, Val::String(key.clone())],
        };
        let r = inst.call(export, &args);
        inst.data_mut().keyvalue.forget_bucket(rep);
        r?;
        Ok(())
    })
    .map_err(|e| e.to_string())
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
