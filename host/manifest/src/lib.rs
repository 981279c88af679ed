//! Reads wadm application manifests into twig's model.
//!
//! A manifest is the YAML document wasmCloud's wadm (0.21) deploys:
//! `apiVersion: core.oam.dev/v1beta1`, `kind: Application`, a `metadata`
//! block naming the application, and `spec.components`, each a WebAssembly
//! component (`type: component`, or the old `actor`) or a capability
//! provider (`type: capability`) with an `image`, optional `config` and a
//! list of `traits`: at most one scaler (`spreadscaler` or `daemonscaler`)
//! and any number of `link`s to other components of the manifest.
//!
//! [`parse`] and [`parse_file`] check the document and return a
//! [`Manifest`]:
//!
//! - every component gets its lattice id: `properties.id` when given,
//!   otherwise wadm's rule `{app}-{component}`, both lowercased with every
//!   character that is not ASCII alphanumeric replaced by `_`
//!   ([`component_id`]);
//! - images become [`Image::File`] (a `file://` URL or a path, made
//!   absolute against [`Source::base_dir`]) or [`Image::Reference`] (OCI
//!   references and twig's `twig:` built-in provider names, verbatim);
//! - links carry the target's name as written and its resolved id; the old
//!   `source_config`/`target_config` lists are folded in as wadm does;
//! - configs are `{name, properties}`; properties are empty when not given.
//!
//! # Errors and warnings
//!
//! The first problem that makes the manifest unusable is a
//! [`ManifestError`]: the file (when known), the 1-based line of the
//! offending node (when known), the path to it and a message, displayed as
//! `app.yaml:14: spec.components[1].traits[0].properties.target: no
//! component named ...`. Paths use `.field` and `[index]`; a key that is
//! not a plain identifier is quoted, `metadata.labels["app.oam.io/name"]`.
//! An empty path means the document as a whole.
//!
//! Anything twig reads past is a [`Warning`] with its path: unknown fields
//! (wadm would reject some of them; twig keeps going), and things twig
//! does not support but can safely ignore: link secrets, unknown trait
//! types, the shared-application annotation, deprecated link fields.
//! Secret policies (`spec.policies`) and components' `secrets` are read
//! and checked as wadm checks them ([`SecretPolicy`], [`SecretRef`]).
//! Interfaces that wadm flags as unrecognized are warned about too.
//!
//! Hostile input is bounded: text over [`MAX_MANIFEST_BYTES`], nesting over
//! 64 levels, collections used as mapping keys and alias expansion beyond a
//! fixed node budget are errors, never crashes.
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

mod parse;
mod yaml;

pub use parse::component_id;

/// Largest manifest text accepted.
pub const MAX_MANIFEST_BYTES: usize = 1 << 20;

/// Where a manifest text came from.
#[derive(Debug, Clone, Copy, Default)]
pub struct Source<'a> {
    /// Named in error messages.
    pub file: Option<&'a Path>,
    /// Relative image paths resolve against this; `None` means the current
    /// directory. A relative `base_dir` is itself taken from the current
    /// directory.
    pub base_dir: Option<&'a Path>,
}

/// A parsed manifest and what twig read past.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub manifest: Manifest,
    pub warnings: Vec<Warning>,
}

/// A wadm application, as twig deploys it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.annotations.version`.
    pub version: Option<String>,
    /// `metadata.annotations.description`.
    pub description: Option<String>,
    pub annotations: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
    /// In manifest order; never empty.
    pub components: Vec<ComponentSpec>,
    /// `spec.policies`: the secret policies its secrets name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<SecretPolicy>,
}

/// A `spec.policies` entry of type `policy.secret.wasmcloud.dev/v1alpha1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretPolicy {
    pub name: String,
    /// `properties.backend`: which secrets backend answers.
    pub backend: String,
    /// Every property, `backend` included (a backend may read others).
    pub properties: BTreeMap<String, String>,
}

/// The policy type wadm 0.21 accepts for secrets.
pub const SECRET_POLICY_TYPE: &str = "policy.secret.wasmcloud.dev/v1alpha1";

/// A component's `properties.secrets` entry: the name the component asks
/// for (`wasmcloud:secrets/store.get`) and where the value comes from.
/// Its `Debug` is the reference, never a value (there is none here).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretRef {
    pub name: String,
    /// `properties.policy`: a [`SecretPolicy`] of the manifest.
    pub policy: String,
    /// `properties.key`: the secret's name in the backend.
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl Manifest {
    /// The component with this name.
    pub fn component(&self, name: &str) -> Option<&ComponentSpec> {
        self.components.iter().find(|c| c.name == name)
    }
}

/// What a component entry deploys.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentKind {
    /// `type: component` (or the old `actor`): a WebAssembly component.
    Component,
    /// `type: capability`: a capability provider.
    Capability,
}

/// One entry of `spec.components`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComponentSpec {
    pub name: String,
    pub kind: ComponentKind,
    /// `properties.id`, or computed by [`component_id`].
    pub id: String,
    pub image: Image,
    /// `properties.config`.
    pub config: Vec<ConfigRef>,
    /// The component's `spreadscaler` or `daemonscaler` trait, if any.
    pub scaler: Option<Scaler>,
    /// Its `link` traits, in order.
    pub links: Vec<Link>,
    /// `properties.secrets`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<SecretRef>,
}

/// Where a component's code comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Image {
    /// A local file: from a `file://` URL or a plain path, absolute.
    File(PathBuf),
    /// Anything else, verbatim: `ghcr.io/x/y:1.0`, `oci://...`, `twig:...`.
    Reference(String),
}

/// A named configuration (`{name, properties}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigRef {
    pub name: String,
    /// Empty when not given (wadm then expects the config to exist).
    pub properties: BTreeMap<String, String>,
}

/// How many instances of a component to run, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Scaler {
    /// `spreadscaler`: `instances` in total, spread by weight.
    Spread { instances: u32, spread: Vec<Spread> },
    /// `daemonscaler`: `instances` on every matching host.
    Daemon { instances: u32, spread: Vec<Spread> },
}

impl Scaler {
    pub fn instances(&self) -> u32 {
        match self {
            Scaler::Spread { instances, .. } | Scaler::Daemon { instances, .. } => *instances,
        }
    }

    pub fn spread(&self) -> &[Spread] {
        match self {
            Scaler::Spread { spread, .. } | Scaler::Daemon { spread, .. } => spread,
        }
    }
}

/// One entry of a scaler's `spread`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Spread {
    pub name: String,
    /// Host labels that must all match; empty when not given.
    pub requirements: BTreeMap<String, String>,
    pub weight: Option<u32>,
}

/// A `link` trait: the component it sits on imports
/// `namespace:package/interface` for each interface from `target`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    pub namespace: String,
    pub package: String,
    /// Never empty.
    pub interfaces: Vec<String>,
    /// `"default"` when unset.
    pub name: String,
    /// The target component's name, as written.
    pub target: String,
    /// The target component's id in this manifest.
    pub target_id: String,
    /// `source.config`, or the deprecated `source_config`.
    pub source_config: Vec<ConfigRef>,
    /// `target.config`, or the deprecated `target_config`.
    pub target_config: Vec<ConfigRef>,
}

/// Something in the manifest that twig read past.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a manifest was refused.
///
/// Displays as `{file}:{line}: {path}: {message}`, leaving out what is
/// unknown; a line without a file shows as `line {line}: `.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ManifestError {
    pub file: Option<PathBuf>,
    /// Path to the offending node; empty for the document as a whole.
    pub path: String,
    /// 1-based.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = self;
        match (&e.file, e.line) {
            (Some(file), Some(line)) => write!(f, "{}:{line}: ", file.display())?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            (None, Some(line)) => write!(f, "line {line}: ")?,
            (None, None) => {}
        }
        if !e.path.is_empty() {
            write!(f, "{}: ", e.path)?;
        }
        f.write_str(&e.message)
    }
}

/// Parses a manifest text.
pub fn parse(text: &str, source: &Source<'_>) -> Result<Parsed, ManifestError> {
    let error = |path: String, line: Option<usize>, message: String| ManifestError {
        file: source.file.map(Path::to_path_buf),
        path,
        line,
        message,
    };
    if text.len() > MAX_MANIFEST_BYTES {
        return Err(error(
            String::new(),
            None,
            format!(
                "manifest is {} bytes, more than the {MAX_MANIFEST_BYTES} accepted",
                text.len()
            ),
        ));
    }
    let root = match yaml::load(text) {
        Ok(Some(root)) => root,
        Ok(None) => return Err(error(String::new(), None, "empty document".into())),
        Err(e) => return Err(error(String::new(), e.line, e.message)),
    };
    let base_dir = base_dir(source.base_dir);
    parse::manifest(&root, &base_dir)
        .map(|(manifest, warnings)| Parsed { manifest, warnings })
        .map_err(|f| error(f.path, f.line, f.message))
}

/// Reads and parses a manifest file; relative image paths resolve against
/// the file's directory.
pub fn parse_file(path: &Path) -> Result<Parsed, ManifestError> {
    let error = |message: String| ManifestError {
        file: Some(path.to_path_buf()),
        path: String::new(),
        line: None,
        message,
    };
    let file = std::fs::File::open(path).map_err(|e| error(format!("cannot open: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_MANIFEST_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| error(format!("cannot read: {e}")))?;
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(error(format!(
            "manifest is larger than the {MAX_MANIFEST_BYTES} bytes accepted"
        )));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        error(format!(
            "not UTF-8 text (invalid byte at offset {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    let source = Source {
        file: Some(path),
        base_dir: path.parent(),
    };
    parse(&text, &source)
}

/// The directory relative images resolve against, absolute when the
/// current directory is known.
fn base_dir(given: Option<&Path>) -> PathBuf {
    let dir = match given {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf())
}
