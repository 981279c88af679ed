//! Walks a loaded YAML tree into the model, checking it as it goes.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::yaml::{describe, line, raw_text, view, Kind, Node, View};
use crate::{
    ComponentKind, ComponentSpec, ConfigRef, Image, Link, Manifest, Scaler, SecretPolicy,
    SecretRef, Spread, Warning, SECRET_POLICY_TYPE,
};

const API_VERSION: &str = "core.oam.dev/v1beta1";
const KIND: &str = "Application";
const SHARED_ANNOTATION: &str = "experimental.wasmcloud.dev/shared";
const DEFAULT_LINK_NAME: &str = "default";
/// Most instances a scaler may ask for.
pub(crate) const MAX_INSTANCES: u64 = 1_000_000;

/// A problem found while walking: where, and what.
#[derive(Debug)]
pub(crate) struct Fail {
    pub path: String,
    pub line: Option<usize>,
    pub message: String,
}

type R<T> = Result<T, Fail>;

fn fail(path: impl Into<String>, line: usize, message: impl Into<String>) -> Fail {
    Fail {
        path: path.into(),
        line: Some(line),
        message: message.into(),
    }
}

/// wadm's id for a component: the explicit `id` if any, otherwise
/// `{app}-{component}`, each part lowercased and with every character that
/// is not ASCII alphanumeric replaced by `_`.
///
/// Mirrors `compute_component_id` in wadm 0.21.1,
/// `crates/wadm/src/scaler/convert.rs`.
pub fn component_id(app: &str, id: Option<&str>, component: &str) -> String {
    if let Some(id) = id {
        return id.to_owned();
    }
    let clean = |s: &str| -> String {
        s.to_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect()
    };
    format!("{}-{}", clean(app), clean(component))
}

/// Joins a field name onto a path: `.name`, or `["odd key"]`.
fn child(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match (plain, path.is_empty()) {
        (true, true) => key.to_owned(),
        (true, false) => format!("{path}.{key}"),
        (false, _) => format!("{path}[{key:?}]"),
    }
}

fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

struct Ctx {
    warnings: Vec<Warning>,
}

impl Ctx {
    fn warn(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.warnings.push(Warning {
            path: path.into(),
            message: message.into(),
        });
    }
}

/// A mapping being read: fields are taken by name, and whatever is left
/// when it is finished is warned about as unknown.
struct Obj<'a, 'i> {
    path: String,
    line: usize,
    entries: Vec<(&'a str, &'a Node<'i>)>,
    used: Vec<bool>,
}

impl<'a, 'i> Obj<'a, 'i> {
    fn new(node: &'a Node<'i>, path: &str) -> R<Self> {
        let View::Map(map) = view(node) else {
            return Err(type_error(node, path, "a mapping"));
        };
        let mut entries: Vec<(&'a str, &'a Node<'i>)> = Vec::with_capacity(map.len());
        for (key, value) in map.iter() {
            let Some(text) = raw_text(key) else {
                return Err(fail(path, line(key), "a mapping key must be a plain value"));
            };
            if entries.iter().any(|(k, _)| *k == text) {
                return Err(fail(child(path, text), line(key), "duplicate key"));
            }
            entries.push((text, value));
        }
        Ok(Obj {
            path: path.to_owned(),
            line: line(node),
            used: vec![false; entries.len()],
            entries,
        })
    }

    fn at(&self, key: &str) -> String {
        child(&self.path, key)
    }

    /// The field's node, null included.
    fn take(&mut self, key: &str) -> Option<&'a Node<'i>> {
        let i = self.entries.iter().position(|(k, _)| *k == key)?;
        self.used[i] = true;
        Some(self.entries[i].1)
    }

    /// The field's node; absent and null are both `None`.
    fn opt(&mut self, key: &str) -> Option<&'a Node<'i>> {
        self.take(key).filter(|n| !matches!(view(n), View::Null))
    }

    /// The field's node; absent or null is an error.
    fn req(&mut self, key: &str) -> R<&'a Node<'i>> {
        match self.take(key) {
            None => Err(fail(self.at(key), self.line, "missing required field")),
            Some(n) if matches!(view(n), View::Null) => Err(fail(
                self.at(key),
                line(n),
                "required field is empty (null)",
            )),
            Some(n) => Ok(n),
        }
    }

    /// Warns about every field not taken.
    fn finish(self, ctx: &mut Ctx) {
        for ((key, _), used) in self.entries.iter().zip(&self.used) {
            if !used {
                ctx.warn(child(&self.path, key), "unknown field (ignored)");
            }
        }
    }
}

fn type_error(node: &Node<'_>, path: &str, expected: &str) -> Fail {
    fail(
        path,
        line(node),
        format!("expected {expected}, found {}", describe(&view(node))),
    )
}

/// Any non-null scalar, as written (YAML `8080` reads as `"8080"`, as
/// wadm's serde_yaml does for string fields).
fn string(node: &Node<'_>, path: &str) -> R<String> {
    match view(node) {
        View::Scalar { text, .. } => Ok(text.to_owned()),
        _ => Err(type_error(node, path, "a string")),
    }
}

fn nonempty(node: &Node<'_>, path: &str) -> R<String> {
    let s = string(node, path)?;
    if s.is_empty() {
        return Err(fail(path, line(node), "must not be empty"));
    }
    Ok(s)
}

fn unsigned(node: &Node<'_>, path: &str, max: u64) -> R<u64> {
    let v = view(node);
    let n = match v {
        View::Scalar {
            kind: Kind::Int(i), ..
        } => u64::try_from(i).map_err(|_| type_error(node, path, "an unsigned integer"))?,
        View::Scalar {
            text,
            kind: Kind::Float,
        } if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(fail(
                path,
                line(node),
                format!("{text} is too large (at most {max})"),
            ));
        }
        _ => return Err(type_error(node, path, "an unsigned integer")),
    };
    if n > max {
        return Err(fail(
            path,
            line(node),
            format!("{n} is too large (at most {max})"),
        ));
    }
    Ok(n)
}

fn seq<'a, 'i>(node: &'a Node<'i>, path: &str) -> R<&'a [Node<'i>]> {
    match view(node) {
        View::Seq(items) => Ok(items),
        _ => Err(type_error(node, path, "a sequence")),
    }
}

/// A mapping of strings to strings (labels, config properties, ...).
fn string_map(node: &Node<'_>, path: &str) -> R<BTreeMap<String, String>> {
    let obj = Obj::new(node, path)?;
    let mut out = BTreeMap::new();
    for (key, value) in &obj.entries {
        out.insert((*key).to_owned(), string(value, &child(path, key))?);
    }
    Ok(out)
}

pub(crate) fn manifest(root: &Node<'_>, base_dir: &Path) -> R<(Manifest, Vec<Warning>)> {
    let mut ctx = Ctx {
        warnings: Vec::new(),
    };
    if matches!(view(root), View::Null) {
        return Err(fail("", line(root), "empty document"));
    }
    let mut top = Obj::new(root, "").map_err(|mut f| {
        f.message = format!("{} (a wadm application manifest is a mapping)", f.message);
        f
    })?;

    let api = top.req("apiVersion")?;
    let api_text = string(api, "apiVersion")?;
    if api_text != API_VERSION {
        return Err(fail(
            "apiVersion",
            line(api),
            format!("unsupported apiVersion `{api_text}` (expected `{API_VERSION}`)"),
        ));
    }
    let kind = top.req("kind")?;
    let kind_text = string(kind, "kind")?;
    if kind_text != KIND {
        return Err(fail(
            "kind",
            line(kind),
            format!("unsupported kind `{kind_text}` (expected `{KIND}`)"),
        ));
    }

    let mut meta = Obj::new(top.req("metadata")?, "metadata")?;
    let meta_line = meta.line;
    let name_node = meta.req("name")?;
    let name = string(name_node, "metadata.name")?;
    if !valid_app_name(&name) {
        return Err(fail(
            "metadata.name",
            line(name_node),
            format!(
                "`{name}` is not a valid application name (use letters, digits, `_` and `-`; \
                 wadm requires it to match `^[-\\w]+$`)"
            ),
        ));
    }
    let (annotations, annotation_lines) = labels(&mut meta, "annotations")?;
    let (labels, _) = labels(&mut meta, "labels")?;
    meta.finish(&mut ctx);
    let version = annotations.get("version").cloned();
    if version.as_deref() == Some("latest") {
        return Err(fail(
            "metadata.annotations.version",
            annotation_lines
                .get("version")
                .copied()
                .unwrap_or(meta_line),
            "`latest` is not allowed as a version (wadm reserves it)",
        ));
    }
    if annotations
        .get(SHARED_ANNOTATION)
        .is_some_and(|v| v.parse::<bool>().unwrap_or(false))
    {
        ctx.warn(
            child("metadata.annotations", SHARED_ANNOTATION),
            "shared applications are not supported by twig (ignored)",
        );
    }
    let description = annotations.get("description").cloned();

    let mut spec = Obj::new(top.req("spec")?, "spec")?;
    let list = spec.req("components")?;
    let items = seq(list, "spec.components")?;
    if items.is_empty() {
        return Err(fail(
            "spec.components",
            line(list),
            "an application needs at least one component",
        ));
    }
    let policies = match spec.opt("policies") {
        Some(p) => policies(p, "spec.policies", &mut ctx)?,
        None => Vec::new(),
    };
    spec.finish(&mut ctx);
    top.finish(&mut ctx);

    let mut drafts: Vec<Draft> = Vec::with_capacity(items.len());
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut by_id: HashMap<String, usize> = HashMap::new();
    let mut link_configs: HashMap<String, String> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let path = index("spec.components", i);
        let d = component(
            item,
            &path,
            &name,
            base_dir,
            &mut ctx,
            &mut link_configs,
            &policies,
        )?;
        if let Some(&other) = by_name.get(&d.spec.name) {
            return Err(fail(
                child(&path, "name"),
                d.name_line,
                format!(
                    "duplicate component name `{}` (also spec.components[{other}])",
                    d.spec.name
                ),
            ));
        }
        by_name.insert(d.spec.name.clone(), i);
        if let Some(&other) = by_id.get(&d.spec.id) {
            let (field, how) = if d.explicit_id {
                ("properties.id", "")
            } else {
                ("name", "computed ")
            };
            return Err(fail(
                format!("{path}.{field}"),
                d.id_line,
                format!(
                    "duplicate component id: {how}id `{}` is also the id of spec.components[{other}] (`{}`)",
                    d.spec.id, drafts[other].spec.name
                ),
            ));
        }
        by_id.insert(d.spec.id.clone(), i);
        drafts.push(d);
    }

    // Links can point forwards, so targets resolve once all names are known.
    let mut components = Vec::with_capacity(drafts.len());
    for i in 0..drafts.len() {
        let mut spec = drafts[i].spec.clone();
        for raw in &drafts[i].links {
            let Some(&t) = by_name.get(&raw.link.target) else {
                let names: Vec<&str> = drafts.iter().map(|d| d.spec.name.as_str()).collect();
                return Err(fail(
                    raw.target_path.clone(),
                    raw.target_line,
                    format!(
                        "no component named `{}` in this manifest (components: {})",
                        raw.link.target,
                        names.join(", ")
                    ),
                ));
            };
            let mut link = raw.link.clone();
            link.target_id = drafts[t].spec.id.clone();
            spec.links.push(link);
        }
        components.push(spec);
    }

    Ok((
        Manifest {
            name,
            version,
            description,
            annotations,
            labels,
            components,
            policies,
        },
        ctx.warnings,
    ))
}

/// `spec.policies`: wadm 0.21 accepts only secret policies, each with a
/// `backend`; names are unique.
fn policies(node: &Node<'_>, path: &str, ctx: &mut Ctx) -> R<Vec<SecretPolicy>> {
    let mut out: Vec<SecretPolicy> = Vec::new();
    for (i, item) in seq(node, path)?.iter().enumerate() {
        let ipath = index(path, i);
        let mut obj = Obj::new(item, &ipath)?;
        let name = nonempty(obj.req("name")?, &obj.at("name"))?;
        let ty_node = obj.req("type")?;
        let ty = string(ty_node, &obj.at("type"))?;
        if ty != SECRET_POLICY_TYPE {
            return Err(fail(
                obj.at("type"),
                line(ty_node),
                format!("unknown policy type `{ty}` (expected {SECRET_POLICY_TYPE})"),
            ));
        }
        let props_node = obj.req("properties")?;
        let properties = string_map(props_node, &obj.at("properties"))?;
        let Some(backend) = properties.get("backend").filter(|b| !b.is_empty()).cloned() else {
            return Err(fail(
                child(&obj.at("properties"), "backend"),
                line(props_node),
                "a secret policy needs a `backend`",
            ));
        };
        if out.iter().any(|p| p.name == name) {
            return Err(fail(
                obj.at("name"),
                line(item),
                format!("policy `{name}` is defined twice"),
            ));
        }
        obj.finish(ctx);
        out.push(SecretPolicy {
            name,
            backend,
            properties,
        });
    }
    Ok(out)
}

/// A component's `properties.secrets`: `{name, properties: {policy, key,
/// field?, version?}}` entries with unique names.
fn secret_refs(
    node: &Node<'_>,
    path: &str,
    ctx: &mut Ctx,
    policies: &[SecretPolicy],
) -> R<Vec<SecretRef>> {
    let mut out: Vec<SecretRef> = Vec::new();
    for (i, item) in seq(node, path)?.iter().enumerate() {
        let ipath = index(path, i);
        let mut obj = Obj::new(item, &ipath)?;
        let name_node = obj.req("name")?;
        let name = nonempty(name_node, &obj.at("name"))?;
        let ppath = obj.at("properties");
        let mut props = Obj::new(obj.req("properties")?, &ppath)?;
        let policy_node = props.req("policy")?;
        let policy = nonempty(policy_node, &props.at("policy"))?;
        if !policies.iter().any(|p| p.name == policy) {
            // wadm's words.
            return Err(fail(
                props.at("policy"),
                line(policy_node),
                format!("secret '{name}' is mapped to unknown policy '{policy}'"),
            ));
        }
        let key = nonempty(props.req("key")?, &props.at("key"))?;
        let field = match props.opt("field") {
            Some(n) => Some(string(n, &props.at("field"))?),
            None => None,
        };
        let version = match props.opt("version") {
            Some(n) => Some(string(n, &props.at("version"))?),
            None => None,
        };
        props.finish(ctx);
        if out.iter().any(|s| s.name == name) {
            return Err(fail(
                obj.at("name"),
                line(name_node),
                format!("secret `{name}` is named twice"),
            ));
        }
        obj.finish(ctx);
        out.push(SecretRef {
            name,
            policy,
            key,
            field,
            version,
        });
    }
    Ok(out)
}

/// wadm's `^[-\w]+$`, restricted to what `char` can tell without Unicode
/// tables: ASCII letters and digits, `_`, `-`, and non-ASCII alphabetic
/// characters. (wadm's `\w` also takes non-ASCII digits, combining marks
/// and connector punctuation; twig refuses those.)
fn valid_app_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().all(|c| {
            c.is_ascii_alphanumeric()
                || c == '_'
                || c == '-'
                || (!c.is_ascii() && c.is_alphabetic())
        })
}

/// `metadata.labels` or `metadata.annotations`, keys checked as wadm
/// does; also the line of each value.
type Labels = (BTreeMap<String, String>, BTreeMap<String, usize>);

fn labels(meta: &mut Obj<'_, '_>, field: &str) -> R<Labels> {
    let (mut map, mut lines) = (BTreeMap::new(), BTreeMap::new());
    let Some(node) = meta.opt(field) else {
        return Ok((map, lines));
    };
    let path = meta.at(field);
    let obj = Obj::new(node, &path)?;
    for (key, value) in &obj.entries {
        let here = child(&path, key);
        if !valid_label_key(key) {
            return Err(fail(
                here,
                line(value),
                format!(
                    "`{key}` is not a valid key: `[prefix/]name`, the prefix a DNS subdomain, the name \
                     1 to 63 characters of letters, digits, `-`, `_` and `.`, starting and ending \
                     with a letter or digit"
                ),
            ));
        }
        map.insert((*key).to_owned(), string(value, &here)?);
        lines.insert((*key).to_owned(), line(value));
    }
    Ok((map, lines))
}

/// wadm's `valid_oam_label` (crates/wadm-types/src/validation.rs).
fn valid_label_key(key: &str) -> bool {
    fn name_ok(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    }
    fn dns_ok(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 253
            && s.split('.').all(|part| {
                !part.is_empty()
                    && part.len() <= 63
                    && part.starts_with(|c: char| c.is_ascii_alphabetic())
                    && part.ends_with(|c: char| c.is_ascii_alphanumeric())
                    && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
    }
    match key.split_once('/') {
        Some((prefix, name)) => dns_ok(prefix) && name_ok(name),
        None => name_ok(key),
    }
}

/// A component before its links' targets are resolved.
struct Draft {
    spec: ComponentSpec,
    links: Vec<RawLink>,
    name_line: usize,
    explicit_id: bool,
    id_line: usize,
}

struct RawLink {
    link: Link,
    target_path: String,
    target_line: usize,
}

fn component(
    node: &Node<'_>,
    path: &str,
    app: &str,
    base_dir: &Path,
    ctx: &mut Ctx,
    link_configs: &mut HashMap<String, String>,
    policies: &[SecretPolicy],
) -> R<Draft> {
    let mut obj = Obj::new(node, path)?;
    let name_node = obj.req("name")?;
    let name = nonempty(name_node, &obj.at("name"))?;
    let type_node = obj.req("type")?;
    let kind = match string(type_node, &obj.at("type"))?.as_str() {
        "component" | "actor" => ComponentKind::Component,
        "capability" => ComponentKind::Capability,
        other => {
            return Err(fail(
                obj.at("type"),
                line(type_node),
                format!("unknown component type `{other}` (expected `component` or `capability`)"),
            ))
        }
    };

    let props_path = obj.at("properties");
    let props_node = obj.req("properties")?;
    let mut props = Obj::new(props_node, &props_path)?;
    let image_node = props.opt("image");
    let application = props.opt("application");
    let image = match (image_node, application) {
        (Some(img), Some(app_node)) => {
            return Err(fail(
                props.at("application"),
                line(app_node).min(line(img)),
                "`image` and `application` are mutually exclusive",
            ))
        }
        (None, Some(app_node)) => {
            return Err(fail(
                props.at("application"),
                line(app_node),
                "shared components (`application`) are not supported by twig; give the component an `image`",
            ))
        }
        (None, None) => {
            return Err(fail(props.at("image"), props.line, "missing required field"));
        }
        (Some(img), None) => {
            let text = string(img, &props.at("image"))?;
            resolve_image(&text, base_dir)
                .ok_or_else(|| fail(props.at("image"), line(img), "must not be empty"))?
        }
    };
    let (explicit_id, id_line) = match props.opt("id") {
        Some(n) => (Some(nonempty(n, &props.at("id"))?), line(n)),
        None => (None, line(name_node)),
    };
    let config = match props.opt("config") {
        Some(n) => configs(n, &props.at("config"), ctx)?
            .into_iter()
            .map(|c| c.config)
            .collect(),
        None => Vec::new(),
    };
    let secrets = match props.opt("secrets") {
        Some(n) => secret_refs(n, &props.at("secrets"), ctx, policies)?,
        None => Vec::new(),
    };
    props.finish(ctx);

    let mut scaler: Option<(Scaler, String)> = None;
    let mut links: Vec<RawLink> = Vec::new();
    let mut link_keys: HashMap<(String, String, String, String), String> = HashMap::new();
    if let Some(traits) = obj.opt("traits") {
        let traits_path = obj.at("traits");
        for (j, t) in seq(traits, &traits_path)?.iter().enumerate() {
            let tpath = index(&traits_path, j);
            let mut tobj = Obj::new(t, &tpath)?;
            let ty_node = tobj.req("type")?;
            let ty = string(ty_node, &tobj.at("type"))?;
            match ty.as_str() {
                "spreadscaler" | "daemonscaler" => {
                    if let Some((_, other)) = &scaler {
                        return Err(fail(
                            tpath.clone(),
                            line(t),
                            format!(
                                "a component can have at most one scaler (spreadscaler or daemonscaler); \
                                 {other} is one already"
                            ),
                        ));
                    }
                    let p = tobj.req("properties")?;
                    let (instances, spread) = scaler_props(p, &tobj.at("properties"), ctx)?;
                    let s = if ty == "spreadscaler" {
                        Scaler::Spread { instances, spread }
                    } else {
                        Scaler::Daemon { instances, spread }
                    };
                    scaler = Some((s, tpath.clone()));
                }
                "link" => {
                    let p = tobj.req("properties")?;
                    let raw = link(p, &tobj.at("properties"), ctx, link_configs)?;
                    let l = &raw.link;
                    for (k, iface) in l.interfaces.iter().enumerate() {
                        let key = (
                            l.name.clone(),
                            l.namespace.clone(),
                            l.package.clone(),
                            iface.clone(),
                        );
                        let here = format!("{tpath}.properties.interfaces[{k}]");
                        if let Some(other) = link_keys.get(&key) {
                            return Err(fail(
                                here,
                                line(t),
                                format!(
                                    "duplicate link: `{}` for {}:{}/{} is already at {other}",
                                    l.name, l.namespace, l.package, iface
                                ),
                            ));
                        }
                        link_keys.insert(key, here);
                    }
                    links.push(raw);
                }
                other => {
                    // Not read, so not "unknown" either.
                    tobj.take("properties");
                    ctx.warn(
                        tobj.at("type"),
                        format!("unknown trait type `{other}` (ignored by twig)"),
                    );
                }
            }
            tobj.finish(ctx);
        }
    }
    obj.finish(ctx);

    let id = component_id(app, explicit_id.as_deref(), &name);
    Ok(Draft {
        spec: ComponentSpec {
            name,
            kind,
            id,
            image,
            config,
            scaler: scaler.map(|(s, _)| s),
            links: Vec::new(),
            secrets,
        },
        links,
        name_line: line(name_node),
        explicit_id: explicit_id.is_some(),
        id_line,
    })
}

/// Warns about a link's `secrets`: twig's providers run in-process and
/// take no secrets.
fn secrets(obj: &mut Obj<'_, '_>, ctx: &mut Ctx) {
    if let Some(n) = obj.opt("secrets") {
        if !matches!(view(n), View::Seq([])) {
            ctx.warn(
                obj.at("secrets"),
                "link secrets are not used by twig's built-in providers (ignored)",
            );
        }
    }
}

struct RawConfig {
    config: ConfigRef,
    /// Whether `properties` was given (wadm then creates the config).
    defines: bool,
    name_path: String,
    name_line: usize,
}

fn configs(node: &Node<'_>, path: &str, ctx: &mut Ctx) -> R<Vec<RawConfig>> {
    let mut out = Vec::new();
    for (i, item) in seq(node, path)?.iter().enumerate() {
        let ipath = index(path, i);
        let mut obj = Obj::new(item, &ipath)?;
        let name_node = obj.req("name")?;
        let name = nonempty(name_node, &obj.at("name"))?;
        let props = obj.opt("properties");
        let properties = match props {
            Some(p) => string_map(p, &obj.at("properties"))?,
            None => BTreeMap::new(),
        };
        let name_path = obj.at("name");
        obj.finish(ctx);
        out.push(RawConfig {
            config: ConfigRef { name, properties },
            defines: props.is_some(),
            name_path,
            name_line: line(name_node),
        });
    }
    Ok(out)
}

fn scaler_props(node: &Node<'_>, path: &str, ctx: &mut Ctx) -> R<(u32, Vec<Spread>)> {
    let mut obj = Obj::new(node, path)?;
    let instances = match (obj.take("instances"), obj.take("replicas")) {
        (Some(_), Some(r)) => {
            return Err(fail(
                obj.at("replicas"),
                line(r),
                "`replicas` is the old name of `instances`; give only one",
            ))
        }
        (Some(n), None) => unsigned(n, &obj.at("instances"), MAX_INSTANCES)?,
        (None, Some(n)) => unsigned(n, &obj.at("replicas"), MAX_INSTANCES)?,
        (None, None) => {
            return Err(fail(
                obj.at("instances"),
                obj.line,
                "missing required field",
            ))
        }
    };
    let mut spread = Vec::new();
    if let Some(list) = obj.opt("spread") {
        let spath = obj.at("spread");
        for (i, item) in seq(list, &spath)?.iter().enumerate() {
            let ipath = index(&spath, i);
            let mut s = Obj::new(item, &ipath)?;
            let name_node = s.req("name")?;
            let name = string(name_node, &s.at("name"))?;
            let requirements = match s.opt("requirements") {
                Some(r) => string_map(r, &s.at("requirements"))?,
                None => BTreeMap::new(),
            };
            let weight = match s.opt("weight") {
                Some(w) => Some(unsigned(w, &s.at("weight"), u64::from(u32::MAX))?),
                None => None,
            };
            s.finish(ctx);
            spread.push(Spread {
                name,
                requirements,
                // Bounded by `unsigned` above.
                weight: weight.map(|w| u32::try_from(w).unwrap_or(u32::MAX)),
            });
        }
    }
    obj.finish(ctx);
    Ok((u32::try_from(instances).unwrap_or(u32::MAX), spread))
}

fn link(
    node: &Node<'_>,
    path: &str,
    ctx: &mut Ctx,
    link_configs: &mut HashMap<String, String>,
) -> R<RawLink> {
    let mut obj = Obj::new(node, path)?;
    let ns_node = obj.req("namespace")?;
    let namespace = nonempty(ns_node, &obj.at("namespace"))?;
    let pkg_node = obj.req("package")?;
    let package = nonempty(pkg_node, &obj.at("package"))?;
    let ifaces_node = obj.req("interfaces")?;
    let ifaces_path = obj.at("interfaces");
    let items = seq(ifaces_node, &ifaces_path)?;
    if items.is_empty() {
        return Err(fail(
            ifaces_path,
            line(ifaces_node),
            "a link needs at least one interface",
        ));
    }
    let mut interfaces = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        interfaces.push(nonempty(item, &index(&ifaces_path, i))?);
    }
    known_interfaces(&namespace, &package, &interfaces, path, ctx);
    let name = match obj.opt("name") {
        Some(n) => nonempty(n, &obj.at("name"))?,
        None => DEFAULT_LINK_NAME.to_owned(),
    };

    let target_node = obj.req("target")?;
    let target_path = obj.at("target");
    let old_target_config = obj.opt("target_config");
    let old_source_config = obj.opt("source_config");
    let (target, target_at, target_line, mut target_config) = match view(target_node) {
        View::Scalar { .. } => {
            let t = nonempty(target_node, &target_path)?;
            let cfg = match old_target_config {
                Some(c) => configs(c, &obj.at("target_config"), ctx)?,
                None => Vec::new(),
            };
            (t, target_path.clone(), line(target_node), cfg)
        }
        View::Map(_) => {
            let mut t = Obj::new(target_node, &target_path)?;
            let name_node = t.req("name")?;
            let tname = nonempty(name_node, &t.at("name"))?;
            let cfg = match t.opt("config") {
                Some(c) => configs(c, &t.at("config"), ctx)?,
                None => Vec::new(),
            };
            secrets(&mut t, ctx);
            let at = t.at("name");
            t.finish(ctx);
            if old_target_config.is_some() {
                ctx.warn(
                    obj.at("target_config"),
                    "ignored: `target` is a mapping, so its `config` is used (as wadm does)",
                );
            }
            (tname, at, line(name_node), cfg)
        }
        _ => {
            return Err(type_error(
                target_node,
                &target_path,
                "a component name or a mapping with `name`",
            ))
        }
    };
    if old_target_config.is_some() {
        ctx.warn(
            obj.at("target_config"),
            "deprecated: use `target: {name, config}`",
        );
    }

    let mut source_config = Vec::new();
    if let Some(s) = obj.opt("source") {
        let mut src = Obj::new(s, &obj.at("source"))?;
        if let Some(c) = src.opt("config") {
            source_config = configs(c, &src.at("config"), ctx)?;
        }
        secrets(&mut src, ctx);
        src.finish(ctx);
        if old_source_config.is_some() {
            ctx.warn(
                obj.at("source_config"),
                "ignored: `source` takes precedence (as in wadm)",
            );
        }
    } else if let Some(c) = old_source_config {
        source_config = configs(c, &obj.at("source_config"), ctx)?;
    }
    if old_source_config.is_some() {
        ctx.warn(
            obj.at("source_config"),
            "deprecated: use `source: {config}`",
        );
    }
    obj.finish(ctx);

    // wadm refuses two link configs of one name that both define properties.
    for c in source_config.iter().chain(target_config.iter()) {
        if !c.defines {
            continue;
        }
        if let Some(other) = link_configs.get(&c.config.name) {
            return Err(fail(
                c.name_path.clone(),
                c.name_line,
                format!(
                    "duplicate link config name `{}`: {other} already defines its properties",
                    c.config.name
                ),
            ));
        }
        link_configs.insert(c.config.name.clone(), c.name_path.clone());
    }

    let strip = |v: Vec<RawConfig>| v.into_iter().map(|c| c.config).collect();
    let target_config_refs = strip(std::mem::take(&mut target_config));
    Ok(RawLink {
        link: Link {
            namespace,
            package,
            interfaces,
            name,
            target,
            target_id: String::new(),
            source_config: strip(source_config),
            target_config: target_config_refs,
        },
        target_path: target_at,
        target_line,
    })
}

/// Interfaces wadm 0.21 knows, by namespace and package
/// (crates/wadm-types/src/validation.rs, `KNOWN_INTERFACE_LOOKUP`).
/// A namespace and its packages, each with its interfaces.
type Namespace = (
    &'static str,
    &'static [(&'static str, &'static [&'static str])],
);

const KNOWN_INTERFACES: &[Namespace] = &[
    (
        "wrpc",
        &[
            ("blobstore", &["blobstore"]),
            ("keyvalue", &["atomics", "store"]),
            ("http", &["incoming-handler", "outgoing-handler"]),
        ],
    ),
    (
        "wasi",
        &[
            ("blobstore", &["blobstore"]),
            ("config", &["runtime"]),
            ("keyvalue", &["atomics", "store", "batch", "watch"]),
            ("http", &["incoming-handler", "outgoing-handler"]),
            ("logging", &["logging"]),
        ],
    ),
    ("wasmcloud", &[("messaging", &["consumer", "handler"])]),
];

/// Warns, as wadm does, about an unknown package or interface in a
/// namespace wadm knows (likely a typo). Other namespaces are custom.
fn known_interfaces(ns: &str, pkg: &str, ifaces: &[String], path: &str, ctx: &mut Ctx) {
    let Some((_, packages)) = KNOWN_INTERFACES.iter().find(|(n, _)| *n == ns) else {
        return;
    };
    let Some((_, known)) = packages.iter().find(|(p, _)| *p == pkg) else {
        let names: Vec<&str> = packages.iter().map(|(p, _)| *p).collect();
        ctx.warn(
            child(path, "package"),
            format!(
                "unrecognized package `{ns}:{pkg}` (known in `{ns}`: {})",
                names.join(", ")
            ),
        );
        return;
    };
    for (i, iface) in ifaces.iter().enumerate() {
        if !known.contains(&iface.as_str()) {
            ctx.warn(
                index(&child(path, "interfaces"), i),
                format!(
                    "unrecognized interface `{ns}:{pkg}/{iface}` (known: {})",
                    known.join(", ")
                ),
            );
        }
    }
}

/// Turns an `image` string into an [`Image`]; `None` when it names no
/// file or reference at all.
///
/// `file://` URLs and plain paths (starting with `/`, `./` or `../`, or
/// ending in `.wasm` without any `:`) are files, joined onto `base_dir`
/// when relative; everything else is a reference, kept as written.
pub(crate) fn resolve_image(text: &str, base_dir: &Path) -> Option<Image> {
    if text.is_empty() {
        return None;
    }
    let file = if let Some(rest) = text.strip_prefix("file://") {
        if rest.is_empty() {
            return None;
        }
        rest
    } else if text.starts_with('/')
        || text.starts_with("./")
        || text.starts_with("../")
        || (text.ends_with(".wasm") && !text.contains(':'))
    {
        text
    } else {
        return Some(Image::Reference(text.to_owned()));
    };
    // `components()` drops `.` parts and doubled slashes, without touching
    // the filesystem; `..` stays.
    let joined: PathBuf = base_dir.join(file).components().collect();
    Some(Image::File(joined))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Same cases as wadm 0.21.1's `compute_proper_component_id` test in
    /// crates/wadm/src/scaler/convert.rs (the rule itself is
    /// `compute_component_id` there).
    #[test]
    fn component_id_follows_wadm() {
        assert_eq!(component_id("mymodel", Some("myid"), "echo"), "myid");
        assert_eq!(
            component_id(
                "some model name with spaces cause yaml",
                Some("myid"),
                " echo "
            ),
            "myid"
        );
        assert_eq!(
            component_id("mymodel", None, "echo-component"),
            "mymodel-echo_component"
        );
        assert_eq!(
            component_id("some model name with spaces cause yaml", None, "echo"),
            "some_model_name_with_spaces_cause_yaml-echo"
        );
        assert_eq!(
            component_id("My ThInG", None, "thing.wasm"),
            "my_thing-thing_wasm"
        );
        // Every non-ASCII character (after lowercasing) becomes one `_`.
        assert_eq!(component_id("Äpp", None, "ñ-x"), "_pp-__x");
        // An explicit id is used exactly, even an odd one.
        assert_eq!(component_id("a", Some("Weird ID"), "b"), "Weird ID");
    }

    #[test]
    fn paths_quote_odd_keys() {
        assert_eq!(child("", "spec"), "spec");
        assert_eq!(child("metadata", "name"), "metadata.name");
        assert_eq!(
            child("metadata.labels", "app.oam.io/name"),
            "metadata.labels[\"app.oam.io/name\"]"
        );
        assert_eq!(child("x", ""), "x[\"\"]");
    }

    #[test]
    fn label_keys_follow_wadm() {
        for ok in [
            "version",
            "app.oam.io/name",
            "prefix.dns.prefix/name-for_a.123",
            "a",
        ] {
            assert!(valid_label_key(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "1x.io/name",
            "a.io/",
            "/name",
            "has space",
            "a/b/c",
        ] {
            assert!(!valid_label_key(bad), "{bad}");
        }
    }

    #[test]
    fn app_names_follow_wadm() {
        // wadm's own cases (crates/wadm-types/src/validation.rs tests).
        for ok in [
            "mymanifest",
            "my-manifest",
            "my_manifest",
            "mymanifest-v2-v3-final",
            "ünï",
        ] {
            assert!(valid_app_name(ok), "{ok}");
        }
        for bad in ["my.manifest", "my manifest", "", "a/b", "a\n"] {
            assert!(!valid_app_name(bad), "{bad}");
        }
    }
}
