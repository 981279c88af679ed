//! The lattice's two buckets as this host holds them: each bucket once
//! looked up, and the revision of every key applied to the host (so an
//! older value, from a resync, never overwrites a newer one). State only;
//! reading, writing and watching are [`super::buckets`].

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_nats::jetstream::kv;
use bytes::Bytes;

/// The links bucket's prefix.
pub(crate) const LINKS: &str = "LATTICEDATA";
/// The config bucket's prefix.
pub(crate) const CONFIG: &str = "CONFIGDATA";

/// Revisions kept at most: the keys of both buckets this host applied.
/// Past it the record starts afresh (a lattice making that many keys is
/// beyond any board's `control.max_lattice_kib` anyway).
const MAX_REVISIONS: usize = 16 * 1024;

/// The buckets once looked up, and the revision of every key applied.
#[derive(Default)]
pub(crate) struct Buckets {
    /// Each bucket with the connect count it was found under: looking one
    /// up is a JetStream API round trip (through the leaf to the core),
    /// too dear for every link or config request. A reconnect, or a failed
    /// pass of the watcher (a bucket deleted or the domain gone), makes
    /// the next use look again.
    found: Mutex<BTreeMap<&'static str, (u64, kv::Store)>>,
    /// The KV revision of the value applied to the host, per bucket and
    /// key (deletes too).
    revisions: Mutex<BTreeMap<(&'static str, String), u64>>,
    /// Held while comparing revisions and applying a value to the host.
    pub(super) apply: tokio::sync::Mutex<()>,
    /// Unit tests' stand-in for JetStream (no nats-server).
    #[cfg(test)]
    pub memory: Option<std::sync::Arc<memory::Kv>>,
}

/// One bucket, ready to read and write.
pub(crate) enum Bucket {
    Nats(Box<kv::Store>),
    #[cfg(test)]
    Memory(&'static str, std::sync::Arc<memory::Kv>),
}

impl Bucket {
    /// A key's value and revision.
    pub async fn entry(&self, key: &str) -> Result<Option<(u64, Bytes)>, String> {
        match self {
            Bucket::Nats(s) => match s.entry(key).await {
                Ok(Some(e)) if e.operation == kv::Operation::Put => Ok(Some((e.revision, e.value))),
                Ok(_) => Ok(None),
                Err(e) => Err(format!("bucket {}: {e}", s.name)),
            },
            #[cfg(test)]
            Bucket::Memory(p, kv) => Ok(kv.get(p, key)),
        }
    }

    /// Writes a key; the revision it was stored at.
    pub async fn put(&self, key: &str, value: Bytes) -> Result<u64, String> {
        match self {
            Bucket::Nats(s) => s
                .put(key, value)
                .await
                .map_err(|e| format!("bucket {}: {e}", s.name)),
            #[cfg(test)]
            Bucket::Memory(p, kv) => Ok(kv.put(p, key, Some(value))),
        }
    }

    pub async fn purge(&self, key: &str) -> Result<(), String> {
        match self {
            Bucket::Nats(s) => s
                .purge(key)
                .await
                .map_err(|e| format!("bucket {}: {e}", s.name)),
            #[cfg(test)]
            Bucket::Memory(p, kv) => {
                kv.put(p, key, None);
                Ok(())
            }
        }
    }
}

impl Buckets {
    /// Buckets in memory, for unit tests of the dispatcher.
    #[cfg(test)]
    pub fn memory() -> Buckets {
        Buckets {
            memory: Some(Default::default()),
            ..Default::default()
        }
    }

    pub(super) fn found(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, (u64, kv::Store)>> {
        self.found.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn revisions(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<(&'static str, String), u64>> {
        self.revisions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the next [`bucket`] look the buckets up again.
    pub fn forget(&self) {
        self.found().clear();
    }

    pub(super) fn revision(&self, prefix: &'static str, key: &str) -> Option<u64> {
        self.revisions().get(&(prefix, key.to_string())).copied()
    }

    pub(super) fn record(&self, prefix: &'static str, key: &str, revision: u64) {
        let mut r = self.revisions();
        if r.len() >= MAX_REVISIONS && !r.contains_key(&(prefix, key.to_string())) {
            r.clear();
        }
        let e = r.entry((prefix, key.to_string())).or_insert(0);
        *e = (*e).max(revision);
    }
}

/// An in-memory bucket pair for the control dispatcher's unit tests, with
/// JetStream's revision rule: one sequence per store, bumped on each write.
#[cfg(test)]
pub(crate) mod memory {
    use std::collections::BTreeMap;
    use std::sync::Mutex;

    use bytes::Bytes;

    /// Each `(bucket, key)`'s revision and value.
    type Entries = BTreeMap<(&'static str, String), (u64, Bytes)>;

    #[derive(Default)]
    pub(crate) struct Kv {
        /// The last revision given out, and the entries.
        state: Mutex<(u64, Entries)>,
    }

    impl Kv {
        pub fn get(&self, prefix: &'static str, key: &str) -> Option<(u64, Bytes)> {
            let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.1.get(&(prefix, key.to_string())).cloned()
        }

        pub fn put(&self, prefix: &'static str, key: &str, value: Option<Bytes>) -> u64 {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.0 += 1;
            let rev = s.0;
            match value {
                Some(v) => {
                    s.1.insert((prefix, key.to_string()), (rev, v));
                }
                None => {
                    s.1.remove(&(prefix, key.to_string()));
                }
            }
            rev
        }
    }
}
