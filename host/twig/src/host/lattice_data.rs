//! Links, named config and labels from the lattice, as this host keeps
//! them ([`LatticeData`], `DATA/lattice.json`): every change is held to the
//! control policy's bounds ([`crate::policy::admit`]), saved, and then put
//! in effect (labels, live config of running components, providers whose
//! links changed). Changes come from control requests, the bucket watcher
//! and boot, one at a time (`lattice_changes`); readers (every linked
//! call) take the current copy with one short read lock and never wait
//! for a save.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{Host, State};
use crate::latticedata::{LatticeData, LinkDef};
use crate::sync::{lock, read, write};

impl Host {
    /// Holds the lattice data to the control policy again (after a device
    /// app is deployed, its ids are off limits to lattice links).
    pub fn sanitize_lattice(&self) {
        if let Err(e) = self.change_lattice_data(|_| Ok(())) {
            tracing::error!("lattice data: {e}");
        }
    }

    /// `label.put`: sets a label (kept on disk); returns the new labels.
    pub fn put_label(&self, key: &str, value: &str) -> Result<BTreeMap<String, String>, String> {
        let max = self.inner.board.control.max_labels;
        self.change_lattice_data(|d| {
            if !d.label_puts.contains_key(key) && d.label_puts.len() >= max {
                return Err(format!(
                    "label.put {key}: this host takes at most {max} labels from the lattice (control.max_labels)"
                ));
            }
            d.label_dels.remove(key);
            d.label_puts.insert(key.to_string(), value.to_string());
            Ok(())
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
            Ok(())
        })?;
        Ok(Some(self.labels()))
    }

    /// Applies a change to the lattice data: bounds it, saves it, swaps it
    /// in, and refreshes what depends on it. `f` may refuse the change.
    fn change_lattice_data(
        &self,
        f: impl FnOnce(&mut LatticeData) -> Result<(), String>,
    ) -> Result<(), String> {
        let _serial = lock(&self.inner.lattice_changes);
        let (owners, in_use) = self.owners();
        let current = self.inner.lattice();
        let mut next = (*current).clone();
        f(&mut next)?;
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
        if next == *current {
            return Ok(());
        }
        // Saved before it takes effect, and under no lock a reader takes:
        // a linked call in flight reads the old copy meanwhile.
        next.save(&self.inner.data_dir).map_err(|e| e.to_string())?;
        // Sources whose links changed, or whose links name config that
        // changed; a provider among them acts on its new links at once (an
        // HTTP listener on a new address, say).
        let changed_config: BTreeSet<&String> = next
            .config
            .keys()
            .chain(current.config.keys())
            .filter(|k| next.config.get(*k) != current.config.get(*k))
            .collect();
        let relink: BTreeSet<String> = next
            .links
            .keys()
            .chain(current.links.keys())
            .filter(|src| {
                let (old, new) = (current.links.get(*src), next.links.get(*src));
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
        let labels = next.labels(&self.inner.board.host_labels());
        let next = Arc::new(next);
        *write(&self.inner.lattice) = next.clone();
        *write(&self.inner.labels) = labels;
        if config_changed {
            // Running components that name lattice config see the new
            // values on their next `wasi:config` call.
            let pools: Vec<_> = read(&self.inner.components)
                .values()
                .filter_map(|p| Some((p.id.clone(), p.pool()?)))
                .collect();
            for (id, pool) in pools {
                if pool.config().refresh(&next) {
                    tracing::info!(component = %id, "config changed on the lattice; new values in effect");
                }
            }
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
        self.change_lattice_data(|d| {
            match links {
                Some(l) if !l.is_empty() => {
                    d.links.insert(source.to_string(), l);
                }
                _ => {
                    d.links.remove(source);
                }
            }
            Ok(())
        })
    }

    /// A named config from the lattice (`None`: deleted). Components read
    /// it when they start.
    pub fn set_lattice_config(
        &self,
        name: &str,
        config: Option<BTreeMap<String, String>>,
    ) -> Result<(), String> {
        self.change_lattice_data(|d| {
            match config {
                Some(c) => {
                    d.config.insert(name.to_string(), c);
                }
                None => {
                    d.config.remove(name);
                }
            }
            Ok(())
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
            Ok(())
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
        self.inner.lattice().all_links()
    }

    /// The links of one source, as last seen.
    pub fn lattice_links_of(&self, source: &str) -> Vec<LinkDef> {
        self.inner
            .lattice()
            .links
            .get(source)
            .cloned()
            .unwrap_or_default()
    }

    /// A named config as last seen.
    pub fn lattice_config(&self, name: &str) -> Option<BTreeMap<String, String>> {
        self.inner.lattice().config.get(name).cloned()
    }
}
