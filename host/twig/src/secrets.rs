//! Secrets for components: the manifest's `secrets` (wadm 0.21's
//! `policies` with a backend), fetched when a component starts, answered
//! through `wasmcloud:secrets/{store,reveal}@0.1.0-draft` as wasmCloud 1.9's
//! host answers them.
//!
//! ```text
//! start: ComponentSpec.secrets ──fetch──► local backend: DATA/secrets/{backend}/{key}
//!                                          (owned by twig's user, no group/other access)
//!        ──► Secrets (name → value, redacted Debug, wiped on drop), shared by the pool
//! guest: store.get(name) ──► own<secret> (the handle holds the name only)
//!        reveal.reveal(secret) ──► secret-value (string | bytes)
//! ```
//!
//! As in wasmCloud, every secret is fetched before the component runs (a
//! secret that cannot be had fails the component's start, naming the
//! secret, policy, backend and key, never the value); `get` of a name the
//! manifest did not give is `not-found`, its only error. Values are never
//! logged, shown in status or put in an error.
//!
//! The backend here is a directory, so secrets need no uplink: one file per
//! key, read whole (at most [`MAX_SECRET_BYTES`]); valid UTF-8 is a
//! `string` secret, anything else `bytes`. `field` reads that string field
//! of a JSON object in the file; `version` reads the file `{key}@{version}`.
//! wasmCloud's NATS secrets protocol (`secrets-nats-kv`) is not built yet.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use twig_component::{Args, HostError, Linker, Resource, Val};
use twig_manifest::{ComponentSpec, Manifest};
use zeroize::Zeroize;

pub const STORE_INTERFACE: &str = "wasmcloud:secrets/store@0.1.0-draft";
pub const REVEAL_INTERFACE: &str = "wasmcloud:secrets/reveal@0.1.0-draft";

/// Largest secret file read.
pub const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Secret handles one instance may hold at once.
const MAX_HANDLES: usize = 1024;

/// The directory of the local backend under the data directory.
pub const SECRETS_DIR: &str = "secrets";

/// One secret's value. Its `Debug` never shows it, and it is overwritten
/// with zeros when dropped.
pub enum SecretValue {
    String(String),
    Bytes(Vec<u8>),
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretValue::String(_) => f.write_str("string(redacted)"),
            SecretValue::Bytes(_) => f.write_str("bytes(redacted)"),
        }
    }
}

impl Drop for SecretValue {
    fn drop(&mut self) {
        match self {
            SecretValue::String(s) => s.zeroize(),
            SecretValue::Bytes(b) => b.zeroize(),
        }
    }
}

/// A component's secrets, by the name the manifest gives them.
#[derive(Debug, Default)]
pub struct Secrets(BTreeMap<String, SecretValue>);

impl Secrets {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// A name that is one safe path component: letters, digits, `.`, `_`,
/// `-`, not starting with `.`.
fn check_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} `{name}` cannot name a file of the local secrets backend (letters, digits, `.`, `_`, `-`; not starting with `.`)"
        ))
    }
}

/// Checks that `path` is twig's (owned by the data directory's owner) and
/// open to no one else: a secret others can read is refused, not used.
fn check_private(path: &Path, owner: u32) -> Result<(), String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if meta.uid() != owner {
        return Err(format!(
            "{} is owned by uid {}, not by twig's user (uid {owner})",
            path.display(),
            meta.uid()
        ));
    }
    if mode & 0o077 != 0 {
        return Err(format!(
            "{} is open to other users (mode {mode:o}); make it readable by twig's user only (chmod {})",
            path.display(),
            if meta.is_dir() { "700" } else { "600" }
        ));
    }
    Ok(())
}

/// Fetches every secret of `spec` (from `m`'s policies) from the local
/// backend under `data_dir`.
pub fn fetch(m: &Manifest, spec: &ComponentSpec, data_dir: &Path) -> Result<Secrets, String> {
    let mut out = Secrets::default();
    if spec.secrets.is_empty() {
        return Ok(out);
    }
    let owner = std::fs::metadata(data_dir)
        .map_err(|e| format!("{}: {e}", data_dir.display()))?
        .uid();
    let root = data_dir.join(SECRETS_DIR);
    for s in &spec.secrets {
        let what = || {
            format!(
                "secret `{}` (policy `{}`, key `{}`)",
                s.name, s.policy, s.key
            )
        };
        let policy = m
            .policies
            .iter()
            .find(|p| p.name == s.policy)
            .ok_or_else(|| format!("{}: the manifest has no such policy", what()))?;
        let value = read_local(&root, owner, &policy.backend, s)
            .map_err(|e| format!("{} from backend `{}`: {e}", what(), policy.backend))?;
        out.0.insert(s.name.clone(), value);
    }
    Ok(out)
}

fn read_local(
    root: &Path,
    owner: u32,
    backend: &str,
    s: &twig_manifest::SecretRef,
) -> Result<SecretValue, String> {
    check_name("backend", backend)?;
    check_name("key", &s.key)?;
    let file_name = match &s.version {
        Some(v) => {
            check_name("version", v)?;
            format!("{}@{v}", s.key)
        }
        None => s.key.clone(),
    };
    let dir = root.join(backend);
    let path: PathBuf = dir.join(&file_name);
    if !path.exists() {
        return Err(format!(
            "{} not found (twig's local secrets backend: one file per key, mode 600)",
            path.display()
        ));
    }
    check_private(root, owner)?;
    check_private(&dir, owner)?;
    check_private(&path, owner)?;
    let f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    f.take(MAX_SECRET_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_SECRET_BYTES {
        bytes.zeroize();
        return Err(format!(
            "{} is larger than {MAX_SECRET_BYTES} bytes",
            path.display()
        ));
    }
    let value = match String::from_utf8(bytes) {
        Ok(s) => SecretValue::String(s),
        Err(e) => SecretValue::Bytes(e.into_bytes()),
    };
    match &s.field {
        None => Ok(value),
        Some(field) => field_of(&value, field).map_err(|e| format!("{}: {e}", path.display())),
    }
}

/// The string field `field` of the JSON object a secret holds. Parse
/// errors say where, never what.
fn field_of(value: &SecretValue, field: &str) -> Result<SecretValue, String> {
    let SecretValue::String(text) = value else {
        return Err(format!("field `{field}`: the file is not a JSON object"));
    };
    let parsed: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        format!(
            "field `{field}`: not a JSON object (line {}, column {})",
            e.line(),
            e.column()
        )
    })?;
    match parsed.get(field) {
        Some(serde_json::Value::String(s)) => Ok(SecretValue::String(s.clone())),
        Some(_) => Err(format!("field `{field}` is not a string")),
        None => Err(format!("no field `{field}`")),
    }
}

/// Per-instance state: the component's secrets and the guest's handles.
#[derive(Debug, Default)]
pub struct SecretsCtx {
    secrets: std::sync::Arc<Secrets>,
    handles: BTreeMap<u32, String>,
    next: u32,
}

impl SecretsCtx {
    pub fn new(secrets: std::sync::Arc<Secrets>) -> SecretsCtx {
        SecretsCtx {
            secrets,
            ..SecretsCtx::default()
        }
    }
}

/// How the secrets functions reach an instance's [`SecretsCtx`].
pub trait SecretsView {
    fn secrets(&mut self) -> &mut SecretsCtx;
}

/// Registers `store` and `reveal`.
pub fn add_to_linker<T: SecretsView + 'static>(linker: &mut Linker<T>) {
    let secret_ty = linker.resource(STORE_INTERFACE, "secret", |t: &mut T, rep| {
        t.secrets().handles.remove(&rep);
    });
    linker
        .interface(STORE_INTERFACE)
        .func("get", move |cx, a, out| {
            let key = Args::new(a).context(STORE_INTERFACE).string(0)?.to_string();
            let ctx = cx.data_mut().secrets();
            if !ctx.secrets.0.contains_key(&key) {
                out.push(Val::err(Some(Val::Variant("not-found".into(), None))));
                return Ok(());
            }
            if ctx.handles.len() >= MAX_HANDLES {
                return Err(HostError::new(format!(
                    "{STORE_INTERFACE}: too many secret handles (limit {MAX_HANDLES}); drop some"
                )));
            }
            loop {
                ctx.next = ctx.next.wrapping_add(1).max(1);
                if !ctx.handles.contains_key(&ctx.next) {
                    break;
                }
            }
            let rep = ctx.next;
            ctx.handles.insert(rep, key);
            out.push(Val::ok(Some(Val::Resource(Resource::host_own(
                secret_ty, rep,
            )))));
            Ok(())
        });
    linker
        .interface(REVEAL_INTERFACE)
        .func("reveal", |cx, a, out| {
            let rep = Args::new(a).context(REVEAL_INTERFACE).resource(0)?.rep;
            let ctx = cx.data_mut().secrets();
            let value = ctx
                .handles
                .get(&rep)
                .and_then(|name| ctx.secrets.0.get(name));
            // wasmCloud traps here too, with these words.
            let Some(value) = value else {
                return Err(HostError::new(
                    "secret not found to reveal, ensure the secret is declared and associated with this component at startup",
                ));
            };
            out.push(match value {
                SecretValue::String(s) => {
                    Val::Variant("string".into(), Some(Box::new(Val::String(s.clone()))))
                }
                SecretValue::Bytes(b) => {
                    Val::Variant("bytes".into(), Some(Box::new(Val::Bytes(b.clone()))))
                }
            });
            Ok(())
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_never_show_in_debug() {
        let s = SecretValue::String("hunter2".into());
        let b = SecretValue::Bytes(vec![1, 2, 3]);
        assert_eq!(format!("{s:?} {b:?}"), "string(redacted) bytes(redacted)");
        let mut all = Secrets::default();
        all.0.insert("pw".into(), s);
        let shown = format!("{all:?}");
        assert!(
            shown.contains("pw") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn unsafe_names_are_refused() {
        for bad in ["", "../x", ".hidden", "a/b", "a b"] {
            assert!(check_name("key", bad).is_err(), "{bad}");
        }
        assert!(check_name("key", "api_password-2.v1").is_ok());
    }

    #[test]
    fn a_json_field_is_read_without_showing_the_text_in_errors() {
        let v = SecretValue::String(r#"{"user":"u","pw":"hunter2","n":1}"#.into());
        match &field_of(&v, "pw").unwrap() {
            SecretValue::String(s) => assert_eq!(s, "hunter2"),
            other => panic!("{other:?}"),
        }
        assert_eq!(field_of(&v, "n").unwrap_err(), "field `n` is not a string");
        assert_eq!(field_of(&v, "x").unwrap_err(), "no field `x`");
        let e = field_of(&SecretValue::String("hunter2 {".into()), "pw").unwrap_err();
        assert!(
            e.starts_with("field `pw`: not a JSON object") && !e.contains("hunter2"),
            "{e}"
        );
    }
}
