//! What the lattice may do to this device: the control-plane policy.
//!
//! Anyone who can publish on the lattice's NATS account can send control
//! requests and write the lattice's buckets. On a wasmCloud host that
//! account is the root password; on a device nobody can reach, it must not
//! be. The policy comes from the board profile's `[control]` table, with
//! `--control KEY=VALUE` (or `TWIG_CONTROL="KEY=VALUE;…"`) over it, and
//! decides:
//!
//! * which **operation families** the lattice may use at all ([`Family`]):
//!   scale/update, providers, links, config, labels — allowed by default, so
//!   wadm can drive the device — and `host.stop`, refused by default;
//! * which **directories** a `file://` reference from the lattice may name
//!   (none by default); a refusal never says whether the path exists;
//! * **bounds** on everything the lattice can make the host hold: links,
//!   named config, labels (counts and bytes), scales running at once, wRPC
//!   calls served at once and their parameter bytes;
//! * optionally a **policy service** (`policy_subject`), asked before
//!   starts and links, in wasmCloud 1.x's policy protocol.
//!
//! Components, providers and links of the device's own manifests are never
//! the lattice's to change, whatever the policy says: that rule is in
//! [`admit`] (applied to everything that reaches the host's copy of the
//! lattice data, from a control request, the bucket watcher or the file
//! on disk) and in the control requests themselves (`control.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component as PathPart, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::lattice::wire;
use crate::latticedata::LatticeData;

/// May the lattice use an operation family?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Permit {
    Allow,
    Deny,
}

impl Permit {
    pub fn allowed(self) -> bool {
        self == Permit::Allow
    }
}

/// What a `host.stop` from the lattice does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HostStop {
    /// Refused with an error reply (the default): nobody on the lattice
    /// can take a device down.
    #[default]
    Deny,
    /// twig stops and exits 0; the shipped unit (`Restart=always`) starts
    /// it again, so the stop is a restart.
    Restart,
    /// twig stops and exits with [`EXIT_STOPPED_BY_LATTICE`], which the
    /// shipped unit does not restart (`RestartPreventExitStatus`).
    Exit,
}

/// Exit status of `twig up` after a `host.stop` the policy let end it for
/// good (`host_stop = "exit"`). The shipped systemd unit lists it in
/// `RestartPreventExitStatus=` and `SuccessExitStatus=`.
pub const EXIT_STOPPED_BY_LATTICE: u8 = 3;

/// The families of control requests, as the policy names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `component.scale`, `component.update` (and bidding in component
    /// auctions).
    Scale,
    /// `provider.start`, `provider.stop` (and provider auctions).
    Providers,
    /// `link.put`, `link.del`, and the links of the lattice data bucket.
    Links,
    /// `config.put`, `config.del`, and the config data bucket.
    Config,
    /// `label.put`, `label.del`.
    Labels,
    /// `host.stop`.
    HostStop,
}

impl Family {
    /// The `[control]` key that governs the family.
    pub fn key(self) -> &'static str {
        match self {
            Family::Scale => "scale",
            Family::Providers => "providers",
            Family::Links => "links",
            Family::Config => "config",
            Family::Labels => "labels",
            Family::HostStop => "host_stop",
        }
    }
}

impl wire::Request {
    /// The control policy's family of the request; `None` for what only
    /// reads (ping, inventory, auctions are judged by the family they bid
    /// for, link and config reads, claims).
    pub fn family(&self) -> Option<Family> {
        use wire::Request;
        Some(match self {
            Request::HostStop(_) => Family::HostStop,
            Request::ComponentScale(_) | Request::ComponentUpdate(_) => Family::Scale,
            Request::ComponentAuction(_) => Family::Scale,
            Request::ProviderStart(_) | Request::ProviderStop(_) => Family::Providers,
            Request::ProviderAuction(_) => Family::Providers,
            Request::LabelPut(_) | Request::LabelDel(_) => Family::Labels,
            Request::LinkPut(_) | Request::LinkDel(_) => Family::Links,
            Request::ConfigPut(..) | Request::ConfigDel(_) => Family::Config,
            Request::HostPing
            | Request::HostGet
            | Request::LinkGet
            | Request::ClaimsGet
            | Request::RegistryPut
            | Request::ConfigGet(_) => return None,
        })
    }
}

fn allow() -> Permit {
    Permit::Allow
}
fn default_max_links() -> usize {
    256
}
fn default_max_config_entries() -> usize {
    256
}
fn default_max_labels() -> usize {
    32
}
fn default_max_lattice_kib() -> u64 {
    512
}
fn default_max_concurrent_scales() -> usize {
    2
}
fn default_wrpc_max_concurrent() -> usize {
    16
}
fn default_wrpc_max_param_kib() -> u64 {
    1024
}
fn default_policy_timeout_ms() -> u64 {
    1000
}

/// The `[control]` table of a board profile. Every field has a default
/// safe for a device nobody can reach.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ControlPolicy {
    #[serde(default = "allow")]
    pub scale: Permit,
    #[serde(default = "allow")]
    pub providers: Permit,
    #[serde(default = "allow")]
    pub links: Permit,
    #[serde(default = "allow")]
    pub config: Permit,
    #[serde(default = "allow")]
    pub labels: Permit,
    #[serde(default)]
    pub host_stop: HostStop,
    /// Directories whose files (and files below them) the lattice may run
    /// with `file://` references. None by default.
    #[serde(default)]
    pub file_dirs: Vec<PathBuf>,
    /// Lattice links this host keeps (over all sources).
    #[serde(default = "default_max_links")]
    pub max_links: usize,
    /// Named configs this host keeps.
    #[serde(default = "default_max_config_entries")]
    pub max_config_entries: usize,
    /// Labels the lattice may set on this host (the board's do not count).
    #[serde(default = "default_max_labels")]
    pub max_labels: usize,
    /// Bytes of links, config and labels kept from the lattice (JSON), in
    /// KiB: what `DATA/lattice.json` can grow to.
    #[serde(default = "default_max_lattice_kib")]
    pub max_lattice_kib: u64,
    /// `component.scale`/`update`/`provider.start` running at once; more
    /// are refused with an error reply, not queued.
    #[serde(default = "default_max_concurrent_scales")]
    pub max_concurrent_scales: usize,
    /// wRPC calls from the lattice served at once, per component; more get
    /// an error at once, not a queue.
    #[serde(default = "default_wrpc_max_concurrent")]
    pub wrpc_max_concurrent: usize,
    /// Whether components of the device's own manifests answer wRPC calls
    /// from the lattice. Off by default: a caller on the lattice could
    /// otherwise drive a device app (its HTTP handler, and through it the
    /// app's key-value data). Components the lattice placed are served
    /// either way.
    #[serde(default)]
    pub serve_device_components: bool,
    /// Parameter bytes of one wRPC call from the lattice, in KiB.
    #[serde(default = "default_wrpc_max_param_kib")]
    pub wrpc_max_param_kib: u64,
    /// A NATS subject answering wasmCloud 1.x policy requests
    /// (`--policy-topic`): asked before a component or provider starts for
    /// the lattice and before a lattice link to a component here is taken.
    #[serde(default)]
    pub policy_subject: Option<String>,
    /// How long to wait for the policy service; no answer is a refusal.
    #[serde(default = "default_policy_timeout_ms")]
    pub policy_timeout_ms: u64,
}

impl Default for ControlPolicy {
    fn default() -> Self {
        // Deserializing an empty table applies every field's default, so
        // the two can never disagree.
        toml::from_str("").unwrap_or_else(|_| unreachable!("an empty [control] table is valid"))
    }
}

impl ControlPolicy {
    /// Whether the lattice may use `family` here.
    pub fn permits(&self, family: Family) -> bool {
        match family {
            Family::Scale => self.scale.allowed(),
            Family::Providers => self.providers.allowed(),
            Family::Links => self.links.allowed(),
            Family::Config => self.config.allowed(),
            Family::Labels => self.labels.allowed(),
            Family::HostStop => self.host_stop != HostStop::Deny,
        }
    }

    /// The error reply for a request of a family the policy refuses.
    pub fn refusal(&self, family: Family, op: &str) -> String {
        format!(
            "{op}: refused by this device's control policy (control.{} = \"deny\")",
            family.key()
        )
    }

    pub fn max_lattice_bytes(&self) -> usize {
        (self.max_lattice_kib as usize).saturating_mul(1024)
    }

    pub fn wrpc_max_param_bytes(&self) -> usize {
        (self.wrpc_max_param_kib as usize).saturating_mul(1024)
    }

    /// The largest `lattice.json` read at boot: what the bounds allow, with
    /// room for pretty-printing. A bigger file was not written by this
    /// policy (an older twig, or a hand edit) and is set aside unread, so
    /// it can never make a small board run out of memory while booting.
    pub fn max_lattice_file_bytes(&self) -> u64 {
        (self.max_lattice_bytes() as u64)
            .saturating_mul(4)
            .saturating_add(64 * 1024)
    }

    /// Checks the values and makes `file_dirs` absolute, as they will be
    /// compared. `field` prefixes errors (`control`).
    pub fn check(&mut self) -> Result<(), String> {
        fn range(field: &str, v: u64, lo: u64, hi: u64) -> Result<(), String> {
            if v < lo || v > hi {
                return Err(format!(
                    "control.{field}: must be between {lo} and {hi} (got {v})"
                ));
            }
            Ok(())
        }
        range("max_links", self.max_links as u64, 0, 100_000)?;
        range(
            "max_config_entries",
            self.max_config_entries as u64,
            0,
            100_000,
        )?;
        range("max_labels", self.max_labels as u64, 0, 10_000)?;
        range("max_lattice_kib", self.max_lattice_kib, 1, 1024 * 1024)?;
        range(
            "max_concurrent_scales",
            self.max_concurrent_scales as u64,
            1,
            64,
        )?;
        range(
            "wrpc_max_concurrent",
            self.wrpc_max_concurrent as u64,
            1,
            10_000,
        )?;
        range("wrpc_max_param_kib", self.wrpc_max_param_kib, 1, 64 * 1024)?;
        range("policy_timeout_ms", self.policy_timeout_ms, 1, 60_000)?;
        if let Some(s) = &self.policy_subject {
            check_subject(s).map_err(|e| format!("control.policy_subject: {e}"))?;
        }
        for d in &mut self.file_dirs {
            if !d.is_absolute() {
                return Err(format!(
                    "control.file_dirs: `{}` must be an absolute directory",
                    d.display()
                ));
            }
            if has_dot_parts(d) {
                return Err(format!(
                    "control.file_dirs: `{}` must not contain `.` or `..`",
                    d.display()
                ));
            }
            // Compared against canonical file paths: resolve the
            // directory's own symlinks once here (a directory that does not
            // exist yet stays as written; it matches nothing until made).
            if let Ok(c) = std::fs::canonicalize(&*d) {
                *d = c;
            }
        }
        Ok(())
    }

    /// Overrides fields from `KEY=VALUE` strings (the `--control` flag and
    /// `TWIG_CONTROL`). A value is read as TOML (`max_links=10`,
    /// `file_dirs=["/opt/wasm"]`), else taken as a string
    /// (`host_stop=restart`). The result is checked again.
    pub fn with_overrides(&self, overrides: &[String]) -> Result<ControlPolicy, String> {
        if overrides.is_empty() {
            return Ok(self.clone());
        }
        let mut table = toml::Table::try_from(self)
            .map_err(|e| format!("control: cannot apply overrides: {e}"))?;
        for o in overrides {
            let (k, v) = o.split_once('=').ok_or_else(|| {
                format!("--control {o}: expected KEY=VALUE, e.g. host_stop=restart")
            })?;
            let k = k.trim();
            let v = v.trim();
            let value = toml::from_str::<toml::Table>(&format!("v = {v}"))
                .ok()
                .and_then(|mut t| t.remove("v"))
                .unwrap_or_else(|| toml::Value::String(v.to_string()));
            table.insert(k.to_string(), value);
        }
        let mut p: ControlPolicy = table
            .try_into()
            .map_err(|e: toml::de::Error| format!("--control: {}", e.message()))?;
        p.check()?;
        Ok(p)
    }

    /// Turns a `file://` reference from the lattice into a file this policy
    /// lets it run. The refusal for a path outside `file_dirs` is the same
    /// whether or not the path exists, so the lattice cannot probe the
    /// device's files.
    pub fn lattice_file(&self, reference: &str) -> Result<PathBuf, String> {
        let Some(path) = reference.strip_prefix("file://") else {
            return Err(format!(
                "`{reference}` is not a file reference; twig runs components from file:///path references in control.file_dirs and does not pull from registries"
            ));
        };
        let path = Path::new(path);
        let refused = || {
            format!(
                "`{reference}`: this device does not run files from the lattice outside its control.file_dirs{}",
                if self.file_dirs.is_empty() {
                    " (none are allowed)"
                } else {
                    ""
                }
            )
        };
        if !path.is_absolute() || has_dot_parts(path) {
            return Err(refused());
        }
        if !self.file_dirs.iter().any(|d| path.starts_with(d)) {
            return Err(refused());
        }
        // Inside an allowed directory, the operator put the files there
        // for the lattice: saying what is wrong with one is fine. The
        // canonical path must still be inside (no symlink out).
        let real = std::fs::canonicalize(path)
            .map_err(|e| format!("`{reference}`: cannot open it: {e}"))?;
        if !self.file_dirs.iter().any(|d| real.starts_with(d)) {
            return Err(refused());
        }
        Ok(real)
    }
}

fn has_dot_parts(p: &Path) -> bool {
    p.components()
        .any(|c| matches!(c, PathPart::CurDir | PathPart::ParentDir))
}

/// A NATS subject to publish requests on: dot-separated tokens without
/// wildcards or whitespace.
fn check_subject(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 256 {
        return Err("must be 1 to 256 characters".into());
    }
    for t in s.split('.') {
        if t.is_empty() || t == "*" || t == ">" || t.chars().any(|c| c.is_whitespace()) {
            return Err(format!(
                "`{s}` is not a subject to send requests to (empty tokens, wildcards and spaces are not allowed)"
            ));
        }
    }
    Ok(())
}

/// Who owns what on this host, for [`admit`].
#[derive(Debug, Default)]
pub struct Owners {
    /// Component and provider ids from the device's own manifests.
    pub device: BTreeSet<String>,
    /// Ids placed here from the lattice (their links and config are kept
    /// first when the bounds bite).
    pub local: BTreeSet<String>,
}

/// Something [`admit`] left out, and why; logged once per distinct line.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dropped(pub String);

/// Bounds the host's copy of the lattice data and keeps the lattice off
/// the device's own components: links whose source or target is
/// device-owned are dropped, then links, config and labels past their
/// counts or past the byte budget. What runs here is kept first: links
/// whose source is placed here and the config they (and lattice-placed
/// components) name. Families the policy denies keep nothing.
pub fn admit(
    data: &mut LatticeData,
    owners: &Owners,
    policy: &ControlPolicy,
    config_in_use: &BTreeSet<String>,
) -> Vec<Dropped> {
    let mut dropped = Vec::new();
    let mut budget = policy.max_lattice_bytes();
    let mut spend = |bytes: usize| -> bool {
        if bytes <= budget {
            budget -= bytes;
            true
        } else {
            false
        }
    };

    // Links.
    if !policy.links.allowed() && !data.links.is_empty() {
        dropped.push(Dropped(
            "lattice links ignored: control.links = \"deny\"".to_string(),
        ));
        data.links.clear();
    }
    let mut sources: Vec<String> = data.links.keys().cloned().collect();
    // Local sources first; stable within each group (key order).
    sources.sort_by_key(|s| !owners.local.contains(s));
    let mut kept_links: BTreeMap<String, Vec<crate::lattice::wire::LinkDef>> = BTreeMap::new();
    let mut n_links = 0usize;
    for source in sources {
        let Some(links) = data.links.remove(&source) else {
            continue;
        };
        for l in links {
            let what = format!(
                "lattice link {} -> {} ({}:{}/{})",
                l.source_id,
                l.target,
                l.wit_namespace,
                l.wit_package,
                l.interfaces.join(",")
            );
            // What the buckets or the file hold was never through
            // wire::parse_request: ids and names end up in subjects.
            let malformed = [&source, &l.source_id, &l.target]
                .into_iter()
                .find_map(|id| wire::check_id("lattice link", "id", id).err())
                .or_else(|| {
                    [&l.wit_namespace, &l.wit_package, &l.name]
                        .into_iter()
                        .find_map(|w| wire::check_word("lattice link", "name", w).err())
                });
            if let Some(why) = malformed {
                dropped.push(Dropped(format!("{what} ignored: {why}")));
                continue;
            }
            if owners.device.contains(&l.source_id) || owners.device.contains(&source) {
                dropped.push(Dropped(format!(
                    "{what} ignored: `{}` belongs to the device's own manifest",
                    l.source_id
                )));
                continue;
            }
            if owners.device.contains(&l.target) {
                dropped.push(Dropped(format!(
                    "{what} ignored: target `{}` belongs to the device's own manifest",
                    l.target
                )));
                continue;
            }
            if n_links >= policy.max_links {
                dropped.push(Dropped(format!(
                    "{what} not kept: this host keeps at most {} lattice links (control.max_links)",
                    policy.max_links
                )));
                continue;
            }
            let size = serde_json::to_vec(&l)
                .map(|v| v.len())
                .unwrap_or(usize::MAX);
            if !spend(size) {
                dropped.push(Dropped(format!(
                    "{what} not kept: over the {} KiB this host keeps from the lattice (control.max_lattice_kib)",
                    policy.max_lattice_kib
                )));
                continue;
            }
            n_links += 1;
            kept_links.entry(source.clone()).or_default().push(l);
        }
    }
    data.links = kept_links;

    // Config: what is in use here first.
    if !policy.config.allowed() && !data.config.is_empty() {
        dropped.push(Dropped(
            "lattice config ignored: control.config = \"deny\"".to_string(),
        ));
        data.config.clear();
    }
    let named_by_links: BTreeSet<&String> = data
        .links
        .values()
        .flatten()
        .flat_map(|l| l.source_config.iter().chain(&l.target_config))
        .collect();
    let mut names: Vec<String> = data.config.keys().cloned().collect();
    names.sort_by_key(|n| !(config_in_use.contains(n) || named_by_links.contains(n)));
    let mut kept_config = BTreeMap::new();
    for name in names {
        let Some(c) = data.config.remove(&name) else {
            continue;
        };
        if kept_config.len() >= policy.max_config_entries {
            dropped.push(Dropped(format!(
                "lattice config `{name}` not kept: this host keeps at most {} named configs (control.max_config_entries)",
                policy.max_config_entries
            )));
            continue;
        }
        let size = name.len()
            + serde_json::to_vec(&c)
                .map(|v| v.len())
                .unwrap_or(usize::MAX);
        if !spend(size) {
            dropped.push(Dropped(format!(
                "lattice config `{name}` ({size} bytes) not kept: over the {} KiB this host keeps from the lattice (control.max_lattice_kib)",
                policy.max_lattice_kib
            )));
            continue;
        }
        kept_config.insert(name, c);
    }
    data.config = kept_config;

    // Labels.
    let label_changes = !data.label_puts.is_empty() || !data.label_dels.is_empty();
    if !policy.labels.allowed() && label_changes {
        dropped.push(Dropped(
            "lattice label changes ignored: control.labels = \"deny\"".to_string(),
        ));
        data.label_puts.clear();
        data.label_dels.clear();
    }
    let puts = std::mem::take(&mut data.label_puts);
    for (k, v) in puts {
        if data.label_puts.len() >= policy.max_labels {
            dropped.push(Dropped(format!(
                "lattice label `{k}` not kept: at most {} labels from the lattice (control.max_labels)",
                policy.max_labels
            )));
            continue;
        }
        if !spend(k.len() + v.len() + 8) {
            dropped.push(Dropped(format!(
                "lattice label `{k}` not kept: over control.max_lattice_kib"
            )));
            continue;
        }
        data.label_puts.insert(k, v);
    }
    dropped
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lattice::wire::LinkDef;

    fn link(source: &str, target: &str, iface: &str) -> LinkDef {
        LinkDef {
            source_id: source.into(),
            target: target.into(),
            name: "default".into(),
            wit_namespace: "wasi".into(),
            wit_package: "keyvalue".into(),
            interfaces: vec![iface.into()],
            source_config: vec![],
            target_config: vec![],
        }
    }

    #[test]
    fn defaults_are_device_safe() {
        let p = ControlPolicy::default();
        assert!(!p.permits(Family::HostStop));
        assert!(p.permits(Family::Scale) && p.permits(Family::Links));
        assert!(p.file_dirs.is_empty());
        assert!(p.lattice_file("file:///etc/passwd").is_err());
    }

    #[test]
    fn file_refusals_do_not_tell_whether_a_path_exists() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        std::fs::create_dir_all(dir.join("ok")).unwrap();
        std::fs::write(dir.join("ok/a.wasm"), b"x").unwrap();
        std::fs::write(dir.join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink(dir.join("secret"), dir.join("ok/link.wasm")).unwrap();
        let mut p = ControlPolicy {
            file_dirs: vec![dir.join("ok")],
            ..ControlPolicy::default()
        };
        p.check().unwrap();
        let ok = p.lattice_file(&format!("file://{}/ok/a.wasm", dir.display()));
        assert_eq!(
            ok.unwrap(),
            std::fs::canonicalize(dir.join("ok/a.wasm")).unwrap()
        );
        let exists = p
            .lattice_file(&format!("file://{}/secret", dir.display()))
            .unwrap_err();
        let missing = p
            .lattice_file(&format!("file://{}/nothing", dir.display()))
            .unwrap_err();
        // Same words either way, once the reference itself is taken out.
        assert_eq!(
            exists.replace("secret", "X"),
            missing.replace("nothing", "X")
        );
        assert!(exists.contains("control.file_dirs"), "{exists}");
        // `..` and a symlink out of the directory are refused the same way.
        let dotdot = p
            .lattice_file(&format!("file://{}/ok/../secret", dir.display()))
            .unwrap_err();
        assert!(dotdot.contains("control.file_dirs"), "{dotdot}");
        let link = p
            .lattice_file(&format!("file://{}/ok/link.wasm", dir.display()))
            .unwrap_err();
        assert!(link.contains("control.file_dirs"), "{link}");
        assert!(p.lattice_file("ghcr.io/x/y:1").is_err());
    }

    #[test]
    fn overrides_apply_and_are_checked() {
        let p = ControlPolicy::default();
        let q = p
            .with_overrides(&[
                "host_stop=restart".into(),
                "max_links = 3".into(),
                "file_dirs=[\"/opt/wasm\"]".into(),
            ])
            .unwrap();
        assert_eq!(q.host_stop, HostStop::Restart);
        assert_eq!(q.max_links, 3);
        assert_eq!(q.file_dirs, vec![PathBuf::from("/opt/wasm")]);
        let e = p.with_overrides(&["host_stop=maybe".into()]).unwrap_err();
        assert!(e.contains("host_stop") || e.contains("maybe"), "{e}");
        let e = p.with_overrides(&["nonsense=1".into()]).unwrap_err();
        assert!(e.contains("nonsense"), "{e}");
        let e = p
            .with_overrides(&["file_dirs=[\"rel\"]".into()])
            .unwrap_err();
        assert!(e.contains("absolute"), "{e}");
        let e = p
            .with_overrides(&["max_concurrent_scales=0".into()])
            .unwrap_err();
        assert!(e.contains("max_concurrent_scales"), "{e}");
        let e = p
            .with_overrides(&["policy_subject=a.*".into()])
            .unwrap_err();
        assert!(e.contains("policy_subject"), "{e}");
    }

    #[test]
    fn admit_keeps_the_lattice_off_device_components() {
        let mut d = LatticeData::default();
        d.links.insert(
            "attacker".into(),
            vec![link("attacker", "device-kv", "store")],
        );
        d.links.insert(
            "device-http".into(),
            vec![link("device-http", "attacker", "x")],
        );
        d.links
            .insert("mine".into(), vec![link("mine", "other", "store")]);
        let owners = Owners {
            device: ["device-kv".to_string(), "device-http".to_string()].into(),
            local: ["mine".to_string()].into(),
        };
        let dropped = admit(&mut d, &owners, &ControlPolicy::default(), &BTreeSet::new());
        assert_eq!(d.links.len(), 1, "{:?}", d.links);
        assert!(d.links.contains_key("mine"));
        assert_eq!(dropped.len(), 2, "{dropped:?}");
        assert!(dropped
            .iter()
            .all(|x| x.0.contains("device's own manifest")));
    }

    #[test]
    fn admit_bounds_counts_and_bytes_keeping_what_is_used_first() {
        let policy = ControlPolicy {
            max_config_entries: 2,
            max_links: 1,
            max_labels: 1,
            max_lattice_kib: 4,
            ..ControlPolicy::default()
        };
        let mut d = LatticeData::default();
        for n in ["a", "b", "c", "used"] {
            d.config
                .insert(n.into(), [("k".to_string(), "v".to_string())].into());
        }
        d.config
            .insert("big".into(), [("k".to_string(), "x".repeat(10_000))].into());
        d.links
            .insert("zzz-local".into(), vec![link("zzz-local", "t", "i")]);
        d.links
            .insert("aaa-remote".into(), vec![link("aaa-remote", "t", "i")]);
        d.label_puts.insert("l1".into(), "v".into());
        d.label_puts.insert("l2".into(), "v".into());
        let owners = Owners {
            device: BTreeSet::new(),
            local: ["zzz-local".to_string()].into(),
        };
        let used: BTreeSet<String> = ["used".to_string()].into();
        let dropped = admit(&mut d, &owners, &policy, &used);
        assert_eq!(d.config.len(), 2);
        assert!(d.config.contains_key("used"), "{:?}", d.config.keys());
        assert!(!d.config.contains_key("big"));
        assert_eq!(d.links.keys().collect::<Vec<_>>(), vec!["zzz-local"]);
        assert_eq!(d.label_puts.len(), 1);
        assert!(serde_json::to_vec(&d).unwrap().len() <= 4 * 1024);
        assert!(dropped.iter().any(|x| x.0.contains("max_config_entries")));
        assert!(dropped.iter().any(|x| x.0.contains("max_links")));
        assert!(dropped.iter().any(|x| x.0.contains("max_labels")));
        // A second pass over what was kept drops nothing more.
        assert!(admit(&mut d, &owners, &policy, &used).is_empty());
    }

    #[test]
    fn admit_drops_links_with_ids_that_are_not_subject_tokens() {
        let mut d = LatticeData::default();
        d.links.insert(
            "ok".into(),
            vec![link("ok", "a.>", "store"), link("ok", "t", "i")],
        );
        d.links.insert("b*d".into(), vec![link("b*d", "t", "i")]);
        let dropped = admit(
            &mut d,
            &Owners::default(),
            &ControlPolicy::default(),
            &BTreeSet::new(),
        );
        assert_eq!(d.all_links().len(), 1, "{:?}", d.links);
        assert_eq!(dropped.len(), 2, "{dropped:?}");
    }

    #[test]
    fn denied_families_keep_nothing() {
        let policy = ControlPolicy {
            links: Permit::Deny,
            config: Permit::Deny,
            ..ControlPolicy::default()
        };
        let mut d = LatticeData::default();
        d.links.insert("s".into(), vec![link("s", "t", "i")]);
        d.config.insert("c".into(), BTreeMap::new());
        let dropped = admit(&mut d, &Owners::default(), &policy, &BTreeSet::new());
        assert!(d.links.is_empty() && d.config.is_empty());
        assert_eq!(dropped.len(), 2);
    }
}
