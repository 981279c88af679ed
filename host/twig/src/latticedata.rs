//! What the lattice told this host, kept on disk (`DATA/lattice.json`) so
//! that it holds through restarts with no uplink: the links of the
//! `LATTICEDATA_{lattice}` bucket, the named config of `CONFIGDATA_{lattice}`,
//! and the label changes made with `label.put`/`label.del`.
//!
//! The buckets are the truth while the lattice is reachable; this file is
//! the last copy seen. It is written crash-safely (temp file + rename) after
//! every change, so a power cut leaves the old or the new copy, never half.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::state::{write_atomic, StateError};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatticeData {
    /// Links by source component id (the `COMPONENT_{id}` entries).
    #[serde(default)]
    pub links: BTreeMap<String, Vec<LinkDef>>,
    /// Named config by name.
    #[serde(default)]
    pub config: BTreeMap<String, BTreeMap<String, String>>,
    /// Labels set with `label.put`, over the board's.
    #[serde(default)]
    pub label_puts: BTreeMap<String, String>,
    /// Board labels removed with `label.del`.
    #[serde(default)]
    pub label_dels: BTreeSet<String>,
}

impl LatticeData {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("lattice.json")
    }

    /// Reads the cache; a missing file is an empty cache, and a damaged one
    /// is moved aside (logged) rather than stopping the host from booting.
    /// A file over `max_bytes` (more than the control policy's bounds
    /// could have written) is moved aside unread: reading it whole could
    /// take a small board's memory at every boot. The buckets give back
    /// what matters, bounded, once the uplink is up.
    pub fn load(data_dir: &Path, max_bytes: u64) -> LatticeData {
        let path = Self::path(data_dir);
        let bytes = match read_bounded(&path, max_bytes) {
            Ok(Some(b)) => b,
            Ok(None) => {
                let aside = path.with_extension("json.oversize");
                tracing::error!(
                    "{} is over {max_bytes} bytes (the control policy's bounds, control.max_lattice_kib); moved it to {} unread and starting without the lattice cache",
                    path.display(),
                    aside.display()
                );
                let _ = std::fs::rename(&path, &aside);
                return Self::default();
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Self::default(),
            Err(e) => {
                tracing::error!(
                    "{}: {e}; starting without the lattice cache",
                    path.display()
                );
                return Self::default();
            }
        };
        match serde_json::from_slice(&bytes) {
            Ok(d) => d,
            Err(e) => {
                let aside = path.with_extension("json.damaged");
                tracing::error!(
                    "{}: {e}; moved it to {} and starting without the lattice cache",
                    path.display(),
                    aside.display()
                );
                let _ = std::fs::rename(&path, &aside);
                Self::default()
            }
        }
    }

    /// Saves the cache, crash-safely.
    pub fn save(&self, data_dir: &Path) -> Result<(), StateError> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| StateError::BadState {
            path: Self::path(data_dir),
            message: e.to_string(),
        })?;
        write_atomic(&Self::path(data_dir), &json)
    }

    /// Every link, in source order.
    pub fn all_links(&self) -> Vec<LinkDef> {
        self.links.values().flatten().cloned().collect()
    }

    /// The board's labels with the lattice's changes applied.
    pub fn labels(&self, board_labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut labels: BTreeMap<String, String> = board_labels
            .iter()
            .filter(|(k, _)| !self.label_dels.contains(*k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.extend(self.label_puts.clone());
        labels
    }
}

/// The file's bytes, or `None` if it holds more than `max` (read no
/// further than that).
fn read_bounded(path: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    f.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    Ok((bytes.len() as u64 <= max).then_some(bytes))
}

/// A link as the lattice stores and sends it: `source_id` imports
/// `wit_namespace:wit_package/{interfaces}` from `target`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub struct LinkDef {
    pub source_id: String,
    pub target: String,
    #[serde(default = "default_link_name")]
    pub name: String,
    pub wit_namespace: String,
    pub wit_package: String,
    pub interfaces: Vec<String>,
    #[serde(default)]
    pub source_config: Vec<String>,
    #[serde(default)]
    pub target_config: Vec<String>,
}

pub(crate) fn default_link_name() -> String {
    "default".into()
}

impl LinkDef {
    /// Whether this link gives `ns:pkg/iface` under link name `name`.
    pub fn provides(&self, ns: &str, pkg: &str, iface: &str) -> bool {
        self.wit_namespace == ns
            && self.wit_package == pkg
            && self.interfaces.iter().any(|i| i == iface)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(LatticeData::load(&dir, 1 << 20), LatticeData::default());
        let mut d = LatticeData::default();
        d.config
            .insert("c".into(), [("k".to_string(), "v".to_string())].into());
        d.label_puts.insert("zone".into(), "north".into());
        d.label_dels.insert("tier".into());
        d.save(&dir).unwrap();
        let back = LatticeData::load(&dir, 1 << 20);
        assert_eq!(back, d);
        let board: BTreeMap<String, String> = [("tier", "edge"), ("board", "sim")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let labels = back.labels(&board);
        assert_eq!(labels.get("zone").map(String::as_str), Some("north"));
        assert!(!labels.contains_key("tier"));
        assert_eq!(labels.get("board").map(String::as_str), Some("sim"));

        std::fs::write(LatticeData::path(&dir), "{broken").unwrap();
        assert_eq!(LatticeData::load(&dir, 1 << 20), LatticeData::default());
        assert!(dir.join("lattice.json.damaged").exists());

        // Over the bound: set aside unread, boot empty.
        d.save(&dir).unwrap();
        let size = std::fs::metadata(LatticeData::path(&dir)).unwrap().len();
        assert_eq!(LatticeData::load(&dir, size), d);
        assert_eq!(LatticeData::load(&dir, size - 1), LatticeData::default());
        assert!(dir.join("lattice.json.oversize").exists());
        assert!(!LatticeData::path(&dir).exists());
    }
}
