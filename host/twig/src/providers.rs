//! Capability providers, in-process.
//!
//! A manifest's `type: capability` component names a provider by image.
//! wasmCloud would start a provider binary from a registry; twig has its
//! providers built in and runs them inside the host process:
//!
//! | reference          | crate                   | what components import          |
//! |--------------------|-------------------------|---------------------------------|
//! | `twig:keyvalue`    | `twig-keyvalue`         | `wasi:keyvalue/{store,atomics,batch}` |
//! | `twig:http-server` | `twig-http-server`      | (calls their `wasi:http/incoming-handler`) |
//!
//! A manifest written for wasmCloud names `ghcr.io/wasmcloud/keyvalue-redis:0.30.0`
//! and the like; the board profile's `provider_images` maps those (any tag)
//! to a built-in one, and the host logs which stands in for which.
//!
//! A provider is placed like a component (a capability without a scaler
//! gets one instance, as wadm does) and is reached only through links: a
//! component's link to it routes the component's imports there; its own
//! link to a component (the HTTP server's `incoming-handler` link) makes it
//! call that component.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use twig_manifest::{ComponentSpec, Image};

use crate::board::Board;

/// The built-in providers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderKind {
    KeyValue,
    HttpServer,
    Messaging,
    Sensors,
}

impl ProviderKind {
    const ALL: [(ProviderKind, &'static str); 4] = [
        (ProviderKind::KeyValue, "twig:keyvalue"),
        (ProviderKind::HttpServer, "twig:http-server"),
        (ProviderKind::Messaging, "twig:messaging"),
        (ProviderKind::Sensors, "twig:sensors"),
    ];

    /// The kind a `twig:…` reference names (a `:tag` is ignored).
    pub fn from_reference(r: &str) -> Option<ProviderKind> {
        Self::ALL
            .iter()
            .find(|(_, n)| {
                r.strip_prefix(n)
                    .is_some_and(|rest| rest.is_empty() || rest.starts_with([':', '@']))
            })
            .map(|(k, _)| *k)
    }

    pub fn reference(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(k, _)| *k == self)
            .map(|(_, n)| *n)
            .unwrap_or("twig:?")
    }

    pub fn references() -> Vec<&'static str> {
        Self::ALL.iter().map(|(_, n)| *n).collect()
    }
}

/// An image reference without its `:tag` or `@digest`
/// (`ghcr.io/wasmcloud/http-server:0.27.0` → `ghcr.io/wasmcloud/http-server`).
pub fn strip_tag(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    // A ':' after the last '/' starts a tag; one before it is a port.
    match (image.rfind(':'), image.rfind('/')) {
        (Some(c), Some(s)) if c > s => &image[..c],
        (Some(c), None) => &image[..c],
        _ => image,
    }
}

/// Which built-in provider a capability component's image asks for, with
/// a note when it stands in for a wasmCloud provider image.
pub fn resolve(
    spec: &ComponentSpec,
    board: &Board,
) -> Result<(ProviderKind, Option<String>), String> {
    let image = match &spec.image {
        Image::Reference(r) => r.as_str(),
        Image::File(p) => {
            return Err(format!(
            "capability provider image {} is a file; twig runs its providers in-process (use {})",
            p.display(),
            ProviderKind::references().join(", ")
        ))
        }
    };
    if let Some(kind) = ProviderKind::from_reference(image) {
        return Ok((kind, None));
    }
    let bare = strip_tag(image);
    match board
        .provider_images
        .get(bare)
        .and_then(|r| ProviderKind::from_reference(r))
    {
        Some(kind) => Ok((
            kind,
            Some(format!("{} stands in for {image}", kind.reference())),
        )),
        None => Err(format!(
            "capability provider `{image}` has no built-in stand-in; use one of {} or map the image in the board profile's [provider_images]",
            ProviderKind::references().join(", ")
        )),
    }
}

/// A running provider.
pub enum Provider {
    KeyValue(Arc<twig_keyvalue::Store>),
    /// Listeners are started once the app's components run
    /// ([`crate::host::Host`] fills this in).
    HttpServer(std::sync::Mutex<Vec<crate::http::HttpServer>>),
    /// The host's message bus (one per host, shared by every messaging
    /// provider), and this provider's subscriptions for its handler links.
    Messaging {
        bus: Arc<twig_messaging::Bus>,
        subscriptions: std::sync::Mutex<Vec<twig_messaging::SubscriptionId>>,
    },
    /// The board's sensors, and the sampler delivering readings to the
    /// components this provider links to (if it links to any).
    Sensors {
        sensors: Arc<twig_sensors::Sensors>,
        sampler: std::sync::Mutex<Option<Sampler>>,
    },
}

/// Where the sampler sends a reading: (target component id, subject,
/// JSON body) -> the handler's answer.
pub type Deliver = Arc<dyn Fn(&str, &str, &[u8]) -> Result<(), String> + Send + Sync>;

/// A thread reading sensors at their `interval_ms` and delivering each
/// reading as a message on `twig.sensors.NAME` to linked components.
/// Stops when dropped.
pub struct Sampler {
    stop: Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    pub fn start(
        provider: &str,
        sensors: Arc<twig_sensors::Sensors>,
        targets: Vec<String>,
        deliver: Deliver,
    ) -> Result<Sampler, String> {
        let stop = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let schedule = sensors.sampling();
        let provider = provider.to_string();
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("sampler {provider}"))
            .spawn(move || {
                let start = std::time::Instant::now();
                let mut due: Vec<(String, std::time::Duration, std::time::Instant)> = schedule
                    .into_iter()
                    .map(|(name, every)| (name, every, start))
                    .collect();
                // The last error per (sensor, target), so a failing sensor
                // or handler logs once per change rather than every tick.
                let mut last_err: BTreeMap<String, String> = BTreeMap::new();
                let mut note = |key: String, err: Option<String>| match err {
                    Some(e) => {
                        if last_err.get(&key) != Some(&e) {
                            tracing::warn!(provider = %provider, "{key}: {e}");
                            last_err.insert(key, e);
                        }
                    }
                    None => {
                        if last_err.remove(&key).is_some() {
                            tracing::info!(provider = %provider, "{key}: working again");
                        }
                    }
                };
                loop {
                    let now = std::time::Instant::now();
                    for (name, every, next) in due.iter_mut() {
                        if *next > now {
                            continue;
                        }
                        // Skip missed ticks rather than bunch them up.
                        while *next <= now {
                            *next += *every;
                        }
                        match sensors.read(name) {
                            Ok(reading) => {
                                note(format!("sensor {name}"), None);
                                let subject = twig_sensors::subject(name);
                                let body = reading.to_json();
                                for t in &targets {
                                    let r = deliver(t, &subject, &body);
                                    note(format!("delivering {subject} to {t}"), r.err());
                                }
                            }
                            Err(e) => note(format!("sensor {name}"), Some(e.to_string())),
                        }
                    }
                    let wake = due.iter().map(|d| d.2).min();
                    let (lock, cvar) = &*stop2;
                    let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                    if *stopped {
                        return;
                    }
                    let wait = wake
                        .map(|w| w.saturating_duration_since(std::time::Instant::now()))
                        .unwrap_or(std::time::Duration::from_secs(3600));
                    stopped = cvar
                        .wait_timeout(stopped, wait)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                    if *stopped {
                        return;
                    }
                }
            })
            .map_err(|e| format!("cannot start the sampler thread: {e}"))?;
        Ok(Sampler {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        let (lock, cvar) = &*self.stop;
        *lock.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cvar.notify_all();
        if let Some(t) = self.thread.take() {
            // The sampler may be dropped from inside a delivery (an app
            // deleted by a component's own call); never join oneself.
            if t.thread().id() != std::thread::current().id() {
                let _ = t.join();
            }
        }
    }
}

/// Named configs' properties merged in order (a later entry's key wins):
/// a component's or provider's `config`, a link's source or target config.
pub fn merged_properties(configs: &[twig_manifest::ConfigRef]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for c in configs {
        out.extend(c.properties.clone());
    }
    out
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

/// Opens (creating if needed) the store of keyvalue provider `spec` under
/// `data_dir/kv/{id}`.
pub fn open_keyvalue(spec: &ComponentSpec, data_dir: &Path) -> Result<Provider, String> {
    let config = keyvalue_config(spec)?;
    let dir = data_dir.join("kv").join(&spec.id);
    let (store, report) = twig_keyvalue::Store::open(&dir, config)
        .map_err(|e| format!("cannot open key-value store {}: {e}", dir.display()))?;
    // The store logs what it repaired itself (torn tail, corrupt ranges).
    tracing::debug!(provider = %spec.id, keys = report.live_keys, dir = %dir.display(), "key-value store open");
    Ok(Provider::KeyValue(Arc::new(store)))
}

impl Drop for Provider {
    fn drop(&mut self) {
        if let Provider::Messaging { bus, subscriptions } = self {
            for id in subscriptions
                .get_mut()
                .unwrap_or_else(|p| p.into_inner())
                .drain(..)
            {
                bus.unsubscribe(id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_stripped() {
        assert_eq!(
            strip_tag("ghcr.io/wasmcloud/http-server:0.27.0"),
            "ghcr.io/wasmcloud/http-server"
        );
        assert_eq!(strip_tag("localhost:5000/x/y:1"), "localhost:5000/x/y");
        assert_eq!(strip_tag("localhost:5000/x/y"), "localhost:5000/x/y");
        assert_eq!(strip_tag("a/b@sha256:abc"), "a/b");
    }

    #[test]
    fn references_resolve() {
        assert_eq!(
            ProviderKind::from_reference("twig:keyvalue"),
            Some(ProviderKind::KeyValue)
        );
        assert_eq!(
            ProviderKind::from_reference("twig:http-server"),
            Some(ProviderKind::HttpServer)
        );
        assert_eq!(
            ProviderKind::from_reference("twig:keyvalue:0.1"),
            Some(ProviderKind::KeyValue)
        );
        assert_eq!(ProviderKind::from_reference("twig:nope"), None);
        assert_eq!(ProviderKind::from_reference("twig:keyvaluex"), None);
    }
}
