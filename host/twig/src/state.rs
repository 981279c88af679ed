//! What survives a power cut: the content-addressed component cache and the
//! desired state (which apps should run, with which component bytes).
//!
//! Layout of the data directory:
//!
//! ```text
//! DATA/
//!   twig.lock            held (flock) by the running host
//!   admin.sock           the admin socket, mode 0600
//!   desired.json         the desired state, replaced atomically
//!   cache/sha256/HEX     component bytes, named by their sha256
//! ```
//!
//! Every write goes to a temporary file in the same directory, is fsynced,
//! renamed over the target and the directory fsynced, so after a crash a
//! file holds either its old or its new content, never a mix. Cache entries
//! are checked against their name when read, so a flipped bit on flash is
//! reported rather than run.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use twig_manifest::Manifest;

/// Errors of the on-disk state, naming the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cache entry {path} is corrupt: its content hashes to sha256:{actual}, not sha256:{expected}; refusing to run it (apply the app again to replace it)")]
    Corrupt {
        path: PathBuf,
        expected: String,
        actual: String,
    },
    #[error("{path}: not a valid desired-state file: {message}")]
    BadState { path: PathBuf, message: String },
    /// A digest that is not 64 lowercase hex digits (a hand-edited or
    /// hostile `desired.json`): never joined onto the cache directory,
    /// so it cannot name another file (`../../dev/zero`).
    #[error("`{digest}` is not a sha256 digest (64 lowercase hex digits); refusing to look it up in the component cache")]
    BadDigest { digest: String },
}

/// Whether `d` is a digest as the cache names its entries.
fn is_digest(d: &str) -> bool {
    d.len() == 64
        && d.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Lowercase hex sha256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Creates a directory (and parents) readable only by this user.
pub fn create_private_dir(path: &Path) -> Result<(), StateError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(io_err(path))
}

fn sync_dir(dir: &Path) -> Result<(), StateError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
}

/// Replaces `path` with `bytes` so that a crash at any point leaves either
/// the old or the new content: write a temporary file, fsync it, rename it
/// over the target, fsync the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        fs::rename(&tmp, path).map_err(io_err(path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Component bytes by sha256.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn open(data_dir: &Path) -> Result<Cache, StateError> {
        let dir = data_dir.join("cache").join("sha256");
        create_private_dir(&dir)?;
        Ok(Cache { dir })
    }

    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(digest)
    }

    /// Stores `bytes`, returning their digest. An entry already present and
    /// intact is left alone; a damaged one is replaced.
    pub fn put(&self, bytes: &[u8]) -> Result<String, StateError> {
        let digest = sha256_hex(bytes);
        let path = self.path(&digest);
        if let Ok(existing) = fs::read(&path) {
            if sha256_hex(&existing) == digest {
                return Ok(digest);
            }
        }
        write_atomic(&path, bytes)?;
        Ok(digest)
    }

    /// Reads an entry and checks it against its digest.
    pub fn get(&self, digest: &str) -> Result<Vec<u8>, StateError> {
        if !is_digest(digest) {
            return Err(StateError::BadDigest {
                digest: digest.chars().take(80).collect(),
            });
        }
        let path = self.path(digest);
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        let actual = sha256_hex(&bytes);
        if actual != digest {
            return Err(StateError::Corrupt {
                path,
                expected: digest.to_string(),
                actual,
            });
        }
        Ok(bytes)
    }

    /// Removes entries no app refers to any more.
    pub fn collect_garbage(&self, keep: &[&str]) -> usize {
        let mut removed = 0;
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !keep.contains(&name.as_str()) && fs::remove_file(e.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }
}

/// One deployed app: its parsed manifest and the cached bytes of each
/// component, by component name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeployedApp {
    pub manifest: Manifest,
    pub digests: BTreeMap<String, String>,
    /// The manifest file it came from, for status output.
    pub source: Option<String>,
    /// Seconds since the Unix epoch.
    pub deployed_at: u64,
    /// Set for an app the lattice made (`component.scale`,
    /// `provider.start`): what it asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lattice: Option<LatticeOrigin>,
}

/// What the lattice's control interface asked for, for one component or
/// provider it started here; echoed back in inventories and events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatticeOrigin {
    /// The reference as the lattice gave it (`file:///…`, `twig:keyvalue`).
    pub image_ref: String,
    /// Annotations (wadm's `wasmcloud.dev/managed-by`, `…/appspec`, …).
    pub annotations: BTreeMap<String, String>,
    pub max_instances: u32,
    /// Names of the lattice's named config, merged in order.
    pub config: Vec<String>,
}

/// The apps this host should run, in the order they were first deployed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DesiredState {
    pub format: u32,
    pub apps: Vec<DeployedApp>,
}

const STATE_FORMAT: u32 = 1;

impl DesiredState {
    pub fn path(data_dir: &Path) -> PathBuf {
        data_dir.join("desired.json")
    }

    /// Reads the desired state; a missing file is an empty state.
    pub fn load(data_dir: &Path) -> Result<DesiredState, StateError> {
        let path = Self::path(data_dir);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(StateError::Io { path, source: e }),
        };
        let state: DesiredState =
            serde_json::from_slice(&bytes).map_err(|e| StateError::BadState {
                path: path.clone(),
                message: e.to_string(),
            })?;
        if state.format != STATE_FORMAT {
            return Err(StateError::BadState {
                path,
                message: format!(
                    "format {} is not the one this twig writes ({STATE_FORMAT})",
                    state.format
                ),
            });
        }
        Ok(state)
    }

    /// Writes the desired state crash-safely.
    pub fn save(&self, data_dir: &Path) -> Result<(), StateError> {
        let mut state = self.clone();
        state.format = STATE_FORMAT;
        let json = serde_json::to_vec_pretty(&state).map_err(|e| StateError::BadState {
            path: Self::path(data_dir),
            message: e.to_string(),
        })?;
        write_atomic(&Self::path(data_dir), &json)
    }

    pub fn app(&self, name: &str) -> Option<&DeployedApp> {
        self.apps.iter().find(|a| a.manifest.name == name)
    }

    /// Adds an app or replaces the one with the same name in place.
    pub fn upsert(&mut self, app: DeployedApp) {
        match self
            .apps
            .iter_mut()
            .find(|a| a.manifest.name == app.manifest.name)
        {
            Some(slot) => *slot = app,
            None => self.apps.push(app),
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<DeployedApp> {
        let i = self.apps.iter().position(|a| a.manifest.name == name)?;
        Some(self.apps.remove(i))
    }

    pub fn digests(&self) -> Vec<&str> {
        self.apps
            .iter()
            .flat_map(|a| a.digests.values().map(String::as_str))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A private scratch directory, removed when the guard drops.
    fn tempdir(tag: &str) -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::Builder::new()
            .prefix(&format!("twig-state-{tag}-"))
            .tempdir()
            .unwrap();
        let p = t.path().join("data");
        create_private_dir(&p).unwrap();
        (t, p)
    }

    #[test]
    fn cache_round_trip_and_corruption() {
        let (_tmp, d) = tempdir("cache");
        let cache = Cache::open(&d).unwrap();
        let digest = cache.put(b"hello").unwrap();
        assert_eq!(
            digest,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(cache.get(&digest).unwrap(), b"hello");
        fs::write(cache.path(&digest), b"hellp").unwrap();
        let err = cache.get(&digest).unwrap_err();
        assert!(matches!(err, StateError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains("refusing to run"));
        // put repairs a damaged entry.
        cache.put(b"hello").unwrap();
        assert_eq!(cache.get(&digest).unwrap(), b"hello");
        assert_eq!(cache.collect_garbage(&[]), 1);
        // A digest from a hostile desired.json never leaves the cache.
        for bad in ["../../../../dev/zero", "", &"A".repeat(64), &"0".repeat(63)] {
            let err = cache.get(bad).unwrap_err();
            assert!(matches!(err, StateError::BadDigest { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn desired_state_survives_save_and_reports_garbage() {
        let (_tmp, d) = tempdir("desired");
        assert_eq!(DesiredState::load(&d).unwrap(), DesiredState::default());
        let parsed = twig_manifest::parse(
            "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: a\nspec:\n  components:\n    - name: c\n      type: component\n      properties:\n        image: ./c.wasm\n",
            &twig_manifest::Source { file: None, base_dir: Some(Path::new("/x")) },
        )
        .unwrap();
        let mut s = DesiredState::default();
        s.upsert(DeployedApp {
            manifest: parsed.manifest,
            digests: BTreeMap::from([("c".to_string(), "ab".to_string())]),
            source: None,
            deployed_at: 1,
            lattice: None,
        });
        s.save(&d).unwrap();
        let back = DesiredState::load(&d).unwrap();
        assert_eq!(back.apps, s.apps);
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(&d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.contains(".tmp")), "{names:?}");
        fs::write(DesiredState::path(&d), b"{\"format\":1,\"apps\":[").unwrap();
        let e = DesiredState::load(&d).unwrap_err().to_string();
        assert!(
            e.contains("desired.json") && e.contains("not a valid"),
            "{e}"
        );
    }
}
