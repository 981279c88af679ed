//! The lattice's two JetStream KV buckets, `LATTICEDATA_{lattice}` (links,
//! per source under `COMPONENT_{id}`) and `CONFIGDATA_{lattice}` (named
//! config): finding them, this host's writes, and the watcher that copies
//! them into the host (which keeps them on disk, `crate::latticedata`).
//!
//! Three writers change the host's copy: a control request here (applied
//! at once, so the next call does not wait for the watcher), the watcher's
//! stream of changes, and the full copy the watcher takes after every
//! (re)connect. They can overtake each other: a full copy read just before
//! a local write lands after it. So every applied value carries its KV
//! revision, kept per key, and a value older than the one applied is
//! ignored; the three take one lock ([`Buckets::apply`]) to compare and
//! apply.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::kv;
use bytes::Bytes;
use futures_util::StreamExt;

use super::agent::blocking;
use super::agent::Agent;
use super::wire;

pub(crate) use super::bucket_store::{Bucket, CONFIG, LINKS};

fn jetstream(agent: &Agent) -> async_nats::jetstream::Context {
    let mut js = match &agent.opts.js_domain {
        Some(d) => async_nats::jetstream::with_domain(agent.ctl.client.clone(), d),
        None => async_nats::jetstream::new(agent.ctl.client.clone()),
    };
    // A KV call through a leaf to a core that is away must fail fast
    // enough to answer the control client (2 s) with an error.
    js.set_timeout(Duration::from_millis(1500));
    js
}

/// The `{prefix}_{lattice}` bucket, made if this is the lattice's first
/// host (as the 1.x host does).
pub(crate) async fn bucket(agent: &Agent, prefix: &'static str) -> Result<Bucket, String> {
    #[cfg(test)]
    if let Some(kv) = &agent.buckets.memory {
        return Ok(Bucket::Memory(prefix, kv.clone()));
    }
    Ok(Bucket::Nats(Box::new(store(agent, prefix).await?)))
}

async fn store(agent: &Agent, prefix: &'static str) -> Result<kv::Store, String> {
    let connects = *agent.ctl.connects.borrow();
    if let Some((seen, store)) = agent.buckets.found().get(prefix) {
        if *seen == connects {
            return Ok(store.clone());
        }
    }
    let name = format!("{prefix}_{}", agent.opts.lattice);
    let js = jetstream(agent);
    let store = match js.get_key_value(&name).await {
        Ok(store) => store,
        Err(e) if e.to_string().contains("not found") => js
            .create_key_value(kv::Config {
                bucket: name.clone(),
                history: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("bucket {name}: {e}"))?,
        Err(e) => return Err(format!("bucket {name}: {e}")),
    };
    agent
        .buckets
        .found()
        .insert(prefix, (connects, store.clone()));
    Ok(store)
}

/// A source's `COMPONENT_{id}` entry in the links bucket, with its
/// revision, if any.
pub(crate) async fn read_links(
    b: &Bucket,
    source: &str,
) -> Result<Option<(u64, wire::ComponentLinks)>, String> {
    let key = format!("COMPONENT_{source}");
    match b.entry(&key).await? {
        Some((rev, bytes)) => serde_json::from_slice(&bytes)
            .map(|spec| Some((rev, spec)))
            .map_err(|e| format!("{key} in the lattice data bucket: {e}")),
        None => Ok(None),
    }
}

/// Writes a source's links to the bucket and applies them here at once:
/// the watcher will bring the same, but the next call should not wait.
pub(crate) async fn write_links(
    agent: &Agent,
    b: &Bucket,
    source: &str,
    spec: wire::ComponentLinks,
) -> Result<(), String> {
    let bytes = serde_json::to_vec(&spec).map_err(|e| e.to_string())?;
    let key = format!("COMPONENT_{source}");
    let rev = b.put(&key, bytes.into()).await?;
    let links = Some(spec.links);
    apply_links(agent, &key, rev, links).await
}

/// Applies one source's links of revision `rev`, unless a newer one is in.
async fn apply_links(
    agent: &Agent,
    key: &str,
    rev: u64,
    links: Option<Vec<wire::LinkDef>>,
) -> Result<(), String> {
    let Some(source) = key.strip_prefix("COMPONENT_") else {
        return Ok(());
    };
    let _apply = agent.buckets.apply.lock().await;
    if agent.buckets.revision(LINKS, key).is_some_and(|r| r >= rev) {
        tracing::debug!(key, rev, "lattice data: an older revision; ignored");
        return Ok(());
    }
    let host = agent.host.clone();
    let source = source.to_string();
    blocking(move || host.set_lattice_links(&source, links)).await??;
    agent.buckets.record(LINKS, key, rev);
    Ok(())
}

/// Applies a named config of revision `rev`, unless a newer one is in.
async fn apply_config(
    agent: &Agent,
    name: &str,
    rev: u64,
    config: Option<BTreeMap<String, String>>,
) -> Result<(), String> {
    let _apply = agent.buckets.apply.lock().await;
    if agent
        .buckets
        .revision(CONFIG, name)
        .is_some_and(|r| r >= rev)
    {
        tracing::debug!(name, rev, "config data: an older revision; ignored");
        return Ok(());
    }
    let host = agent.host.clone();
    let n = name.to_string();
    blocking(move || host.set_lattice_config(&n, config)).await??;
    agent.buckets.record(CONFIG, name, rev);
    Ok(())
}

/// A named config from the bucket (`Ok(None)`: not there).
pub(crate) async fn get_config(
    agent: &Agent,
    name: &str,
) -> Result<Option<BTreeMap<String, String>>, String> {
    let b = bucket(agent, CONFIG).await?;
    Ok(b.entry(name)
        .await?
        .and_then(|(_, bytes)| serde_json::from_slice(&bytes).ok()))
}

/// Writes (`Some`) or deletes (`None`) a named config in the bucket and
/// applies it here at once.
pub(crate) async fn put_config(
    agent: &Agent,
    name: &str,
    map: Option<&BTreeMap<String, String>>,
) -> Result<(), String> {
    let b = bucket(agent, CONFIG).await?;
    let rev = match map {
        Some(m) => {
            let bytes = serde_json::to_vec(m).map_err(|e| e.to_string())?;
            b.put(name, bytes.into()).await?
        }
        None => {
            // A purge does not tell its revision; it is newer than the
            // value it removes, which is what a resync must not bring
            // back.
            let before = b.entry(name).await?.map(|(r, _)| r);
            b.purge(name).await?;
            before
                .or(agent.buckets.revision(CONFIG, name))
                .map_or(0, |r| r + 1)
        }
    };
    apply_config(agent, name, rev, map.cloned()).await
}

/// Keeps the host's copy of the buckets current: a full copy after each
/// (re)connect, then every change as it happens.
pub(crate) async fn watch(agent: std::sync::Arc<Agent>) {
    let mut last_error: Option<String> = None;
    let mut backoff = Duration::from_millis(500);
    let mut connects = agent.ctl.connects.clone();
    loop {
        if !agent.ctl_connected() {
            if connects.changed().await.is_err() {
                return;
            }
            continue;
        }
        connects.mark_unchanged();
        match sync(&agent, &mut connects).await {
            Ok(()) => {
                backoff = Duration::from_millis(500);
                last_error = None;
            }
            Err(e) => {
                agent.buckets.forget();
                if last_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!("lattice data: {e}; using the copy on disk until it is back");
                    last_error = Some(e);
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = connects.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// One copy-then-watch pass; returns when a watch ends or fails.
async fn sync(
    agent: &Agent,
    connects: &mut tokio::sync::watch::Receiver<u64>,
) -> Result<(), String> {
    let links = store(agent, LINKS).await?;
    let config = store(agent, CONFIG).await?;
    let links_from = links
        .status()
        .await
        .map(|s| s.info.state.last_sequence)
        .unwrap_or(0);
    let config_from = config
        .status()
        .await
        .map(|s| s.info.state.last_sequence)
        .unwrap_or(0);

    // Both buckets share the board's one byte budget for lattice data.
    let mut budget = agent.host.board().control.max_lattice_bytes();
    let link_entries = read_all(&links, &mut budget).await?;
    let config_entries = read_all(&config, &mut budget).await?;
    copy_in(
        agent,
        (links_from, link_entries),
        (config_from, config_entries),
    )
    .await?;

    let mut link_watch = links
        .watch_all_from_revision(links_from + 1)
        .await
        .map_err(|e| format!("watching lattice data: {e}"))?;
    let mut config_watch = config
        .watch_all_from_revision(config_from + 1)
        .await
        .map_err(|e| format!("watching config data: {e}"))?;
    loop {
        tokio::select! {
            e = link_watch.next() => {
                let entry = e.ok_or("lattice data watch ended")?.map_err(|e| format!("lattice data watch: {e}"))?;
                if !entry.key.starts_with("COMPONENT_") {
                    continue;
                }
                let links = match entry.operation {
                    kv::Operation::Put => match serde_json::from_slice::<wire::ComponentLinks>(&entry.value) {
                        Ok(spec) => Some(spec.links),
                        Err(e) => {
                            tracing::warn!("lattice data {}: {e}; ignored", entry.key);
                            continue;
                        }
                    },
                    _ => None,
                };
                apply_links(agent, &entry.key, entry.revision, links).await?;
            }
            e = config_watch.next() => {
                let entry = e.ok_or("config data watch ended")?.map_err(|e| format!("config data watch: {e}"))?;
                let config = match entry.operation {
                    kv::Operation::Put => match serde_json::from_slice::<BTreeMap<String, String>>(&entry.value) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            tracing::warn!("config {}: {e}; ignored", entry.key);
                            continue;
                        }
                    },
                    _ => None,
                };
                apply_config(agent, &entry.key, entry.revision, config).await?;
            }
            _ = connects.changed() => {
                // Changes made while away: take a full copy again.
                return Ok(());
            }
        }
    }
}

/// A bucket's entries as read: `(key, revision, value)`.
pub(super) type Entries = Vec<(String, u64, Bytes)>;

/// Replaces the host's links and config with a full copy, but keeps what
/// this host applied at a newer revision than the copy holds (a local
/// write that landed while the copy was read). `from` is each bucket's
/// last sequence before it was read: a key the copy lacks but that was
/// applied after it is newer, not deleted.
pub(super) async fn copy_in(
    agent: &Agent,
    (links_from, link_entries): (u64, Entries),
    (config_from, config_entries): (u64, Entries),
) -> Result<(), String> {
    let _apply = agent.buckets.apply.lock().await;
    let b = &agent.buckets;
    let newer_here = |prefix: &'static str, key: &str, copy_rev: u64| {
        b.revision(prefix, key).is_some_and(|r| r > copy_rev)
    };

    let mut all_links = BTreeMap::new();
    let mut link_revs = Vec::new();
    for (key, rev, value) in link_entries {
        let Some(source) = key.strip_prefix("COMPONENT_") else {
            continue;
        };
        if newer_here(LINKS, &key, rev) {
            all_links.insert(source.to_string(), agent.host.lattice_links_of(source));
            continue;
        }
        match serde_json::from_slice::<wire::ComponentLinks>(&value) {
            Ok(spec) => {
                all_links.insert(source.to_string(), spec.links);
                link_revs.push((key, rev));
            }
            Err(e) => tracing::warn!("lattice data {key}: {e}; ignored"),
        }
    }
    let mut all_config = BTreeMap::new();
    let mut config_revs = Vec::new();
    for (key, rev, value) in config_entries {
        if newer_here(CONFIG, &key, rev) {
            if let Some(c) = agent.host.lattice_config(&key) {
                all_config.insert(key, c);
            }
            continue;
        }
        match serde_json::from_slice::<BTreeMap<String, String>>(&value) {
            Ok(c) => {
                all_config.insert(key.clone(), c);
                config_revs.push((key, rev));
            }
            Err(e) => tracing::warn!("config {key}: not a map of strings ({e}); ignored"),
        }
    }
    // Applied here after the copy began, and not in it: keep.
    for ((prefix, key), rev) in b.revisions().clone() {
        if prefix == LINKS && rev > links_from {
            if let Some(source) = key.strip_prefix("COMPONENT_") {
                if !all_links.contains_key(source) {
                    all_links.insert(source.to_string(), agent.host.lattice_links_of(source));
                }
            }
        } else if prefix == CONFIG && rev > config_from && !all_config.contains_key(&key) {
            if let Some(c) = agent.host.lattice_config(&key) {
                all_config.insert(key, c);
            }
        }
    }
    let (n_links, n_config) = (all_links.len(), all_config.len());
    let host = agent.host.clone();
    blocking(move || host.replace_lattice_data(Some(all_links), Some(all_config))).await??;
    for (key, rev) in link_revs {
        b.record(LINKS, &key, rev);
    }
    for (key, rev) in config_revs {
        b.record(CONFIG, &key, rev);
    }
    tracing::info!(sources = n_links, configs = n_config, "lattice data copied");
    Ok(())
}

/// Every entry of a bucket, read until `budget` bytes (keys and values) are
/// spent: the host keeps no more than the board's `control.max_lattice_kib`
/// of lattice data, so reading past it would only hold memory (and take
/// time) a small board lacks. The read stops at the first entry over the
/// budget, with one warning.
async fn read_all(store: &kv::Store, budget: &mut usize) -> Result<Entries, String> {
    let mut out = Vec::new();
    if *budget == 0 {
        return Ok(out);
    }
    let mut keys = store
        .keys()
        .await
        .map_err(|e| format!("bucket {}: {e}", store.name))?;
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| format!("bucket {}: {e}", store.name))?;
        let Some(entry) = store
            .entry(key.as_str())
            .await
            .map_err(|e| format!("bucket {}: {e}", store.name))?
        else {
            continue;
        };
        if entry.operation != kv::Operation::Put {
            continue;
        }
        let size = key.len() + entry.value.len();
        if size > *budget {
            *budget = 0;
            tracing::warn!(
                bucket = %store.name,
                read = out.len(),
                "lattice data over this board's control.max_lattice_kib; the rest of the bucket is not read"
            );
            break;
        }
        *budget -= size;
        out.push((key, entry.revision, entry.value));
    }
    Ok(out)
}
