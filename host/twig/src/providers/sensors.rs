//! `twig:sensors`: the board's sensors (`twig-sensors`), read by components
//! through `twig:sensors/*`, and sampled on the board's schedule
//! ([`twig_sensors::Schedule`]) by a thread that delivers each reading as a
//! message on `twig.sensors.NAME` to the components its `handler` links
//! name.

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use super::messaging::deliver_message;
use super::{handler_links, LinkContext, Provider, ProviderKind};
use crate::host::pool::Directory;
use crate::sync::lock;

/// A running sensors provider.
pub struct SensorsProvider {
    sensors: Arc<twig_sensors::Sensors>,
    sampler: Mutex<Option<Sampler>>,
}

impl SensorsProvider {
    pub fn new(sensors: Arc<twig_sensors::Sensors>) -> SensorsProvider {
        SensorsProvider {
            sensors,
            sampler: Mutex::new(None),
        }
    }
}

impl Provider for SensorsProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Sensors
    }

    fn start_links(&self, cx: &LinkContext<'_>) -> Result<(), String> {
        let targets: Vec<String> = handler_links(cx.links)
            .map(|l| l.target_id.clone())
            .collect();
        let schedule = twig_sensors::Schedule::new(self.sensors.sampling(), Instant::now());
        if targets.is_empty() || schedule.is_empty() {
            return Ok(());
        }
        *lock(&self.sampler) = Some(Sampler::start(
            cx.provider,
            self.sensors.clone(),
            schedule,
            targets,
            cx.host.clone(),
        )?);
        Ok(())
    }

    fn stop_links(&self) {
        *lock(&self.sampler) = None;
    }

    fn status(&self) -> Option<String> {
        lock(&self.sampler)
            .as_ref()
            .map(|s| format!("sampling for {}", s.targets.join(", ")))
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// A thread reading sensors when the schedule says and delivering each
/// reading to the linked components. Stops when dropped.
struct Sampler {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<std::thread::JoinHandle<()>>,
    targets: Vec<String>,
}

impl Sampler {
    fn start(
        provider: &str,
        sensors: Arc<twig_sensors::Sensors>,
        mut schedule: twig_sensors::Schedule,
        targets: Vec<String>,
        host: Weak<dyn Directory>,
    ) -> Result<Sampler, String> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let provider = provider.to_string();
        let stop2 = stop.clone();
        let to = targets.clone();
        let thread = std::thread::Builder::new()
            .name(format!("sampler {provider}"))
            .spawn(move || {
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
                    for name in schedule.take_due(Instant::now()) {
                        match sensors.read(&name) {
                            Ok(reading) => {
                                note(format!("sensor {name}"), None);
                                let subject = twig_sensors::subject(&name);
                                let msg = twig_messaging::Message::new(
                                    subject.clone(),
                                    reading.to_json(),
                                );
                                for t in &to {
                                    let r = deliver_message(&host, t, &msg);
                                    note(format!("delivering {subject} to {t}"), r.err());
                                }
                            }
                            Err(e) => note(format!("sensor {name}"), Some(e.to_string())),
                        }
                    }
                    let (lock, cvar) = &*stop2;
                    let mut stopped = lock.lock().unwrap_or_else(|p| p.into_inner());
                    if *stopped {
                        return;
                    }
                    let wait = schedule
                        .next_wake()
                        .map(|w| w.saturating_duration_since(Instant::now()))
                        .unwrap_or(Duration::from_secs(3600));
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
            targets,
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
