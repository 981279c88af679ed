//! Calls into and between components: the linker every component gets
//! (WASI, config, providers' interfaces, and a forwarder for each linked
//! import), link resolution at call time, calls to a local target's pool
//! or over the lattice (wRPC through [`RemoteCalls`]), and the entry for
//! calls from elsewhere in the lattice ([`Host::call_from_lattice`]).

use std::collections::BTreeSet;
use std::sync::{Arc, Weak};
use std::time::Instant;

use twig_component::{Component, HostError, Linker, Val};
use twig_manifest::{ComponentSpec, Manifest};

use super::pool::{split_interface, CallError, Directory, InstanceData};
use super::{Host, HostInner, State};
use crate::capabilities;
use crate::http;
use crate::sync::read;
use crate::trace;

/// A call to a component elsewhere in the lattice, with its parameters
/// already encoded (component-model value encoding).
pub struct RemoteCall<'a> {
    pub source: &'a str,
    pub link_name: &'a str,
    pub target: &'a str,
    /// `ns:pkg/iface@version`.
    pub instance: &'a str,
    pub func: &'a str,
    pub params: Vec<u8>,
    pub deadline: Instant,
    /// The W3C `traceparent` of the request this call is part of.
    pub traceparent: Option<String>,
}

/// How the host reaches the lattice for calls to components that are not
/// local; the lattice agent provides it (wRPC over NATS).
pub trait RemoteCalls: Send + Sync {
    /// Makes the call and returns the encoded results, or why not.
    fn call(&self, call: RemoteCall<'_>) -> Result<Vec<u8>, RemoteError>;
}

/// Why a call to another host gave no results. [`RemoteError::is_retryable`]
/// says whether the same call may work later unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// The uplink is down: the call fails at once rather than wait.
    #[error("lattice unreachable (the uplink is down)")]
    Unreachable,
    /// No host on the lattice serves the target.
    #[error("no host on the lattice serves `{0}` (no responders)")]
    NoResponders(String),
    /// The target did not answer before the caller's deadline.
    #[error("no answer from `{0}` before the deadline")]
    Timeout(String),
    /// The callee's host refused the call (a NATS status).
    #[error("the call was refused ({0})")]
    Refused(String),
    /// The connection failed or the callee broke the protocol.
    #[error("{0}")]
    Transport(String),
}

impl RemoteError {
    /// Whether the same call may succeed later (the lattice or the target
    /// may come back); a refusal or a protocol failure will not change.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            RemoteError::Unreachable | RemoteError::NoResponders(_) | RemoteError::Timeout(_)
        )
    }
}

/// The host resource types a pool needs to hand resources to its
/// component's exports (an HTTP request, a 0.3.0 message).
#[derive(Default)]
pub(super) struct ExportTypes {
    pub http: Option<http::HttpTypes>,
    pub messaging: Option<twig_messaging::v0_3::MessagingTypes>,
    /// `wasi:keyvalue`'s `bucket` resource type.
    pub bucket: Option<u32>,
}

/// The host's own part of a component's linker: WASI, config, the lattice
/// bus, and the interfaces of the built-in providers it imports.
fn builtin_linker(component: &Component) -> Result<(Linker<InstanceData>, ExportTypes), String> {
    let mut linker = Linker::new();
    let wasi_types = twig_wasi::add_to_linker(&mut linker);
    capabilities::add_config(&mut linker);
    capabilities::add_lattice(&mut linker);
    let imports = component.imports();
    let bucket = if imports.iter().any(|i| i.name.starts_with("wasi:keyvalue/")) {
        Some(twig_keyvalue::component::add_to_linker(&mut linker))
    } else {
        None
    };
    if imports
        .iter()
        .any(|i| i.name.starts_with("wasmcloud:messaging/consumer@"))
    {
        twig_messaging::add_to_linker(&mut linker);
    }
    let messaging = if imports
        .iter()
        .any(|i| i.name.starts_with("wasmcloud:messaging/") && i.name.ends_with("@0.3.0"))
    {
        Some(twig_messaging::v0_3::add_to_linker(&mut linker))
    } else {
        None
    };
    if imports
        .iter()
        .any(|i| i.name.starts_with("wasmcloud:secrets/"))
    {
        crate::secrets::add_to_linker(&mut linker);
    }
    if imports.iter().any(|i| i.name.starts_with("twig:sensors/")) {
        twig_sensors::add_to_linker(&mut linker);
    }
    let http_types = if imports.iter().any(|i| i.name.starts_with("wasi:http/")) {
        Some(http::add_to_linker(&mut linker, wasi_types)?)
    } else {
        None
    };
    Ok((
        linker,
        ExportTypes {
            http: http_types,
            messaging,
            bucket,
        },
    ))
}

/// An import the host does not answer itself: each of its calls is
/// forwarded to the component its link names.
struct Forwarded {
    /// `ns:pkg/iface@version`, as imported.
    iface: String,
    /// Without `@version`.
    unversioned: String,
    ns: String,
    pkg: String,
    name: String,
}

/// The instance imports of `component` that `linker` (the host's own part)
/// does not answer and that can be forwarded over a link.
fn forwarded_imports(
    m: &Manifest,
    spec: &ComponentSpec,
    linker: &Linker<InstanceData>,
    component: &Component,
) -> Vec<Forwarded> {
    let provided: Vec<&str> = linker.interface_names().collect();
    let mut out = Vec::new();
    for import in component.imports() {
        if import.kind != "instance"
            || provided
                .iter()
                .any(|p| twig_component::names::compatible(&import.name, p))
        {
            continue;
        }
        let iface = import.name.clone();
        let unversioned = iface.split('@').next().unwrap_or(&iface).to_string();
        let Some((ns, pkg, name)) = split_interface(&unversioned) else {
            tracing::debug!(app = %m.name, component = %spec.id, "import `{iface}` is not an interface name");
            continue;
        };
        out.push(Forwarded {
            iface,
            unversioned,
            ns,
            pkg,
            name,
        });
    }
    out
}

/// What a dry run of placing one component found wrong with its imports
/// ([`check_imports`]).
#[derive(Debug, Default)]
pub struct ImportCheck {
    /// Imports nothing can answer: the component cannot be placed. Each is
    /// `` `name`: why ``.
    pub unsatisfied: Vec<String>,
    /// Imports forwarded over a link that this manifest does not define:
    /// the component runs, but calls to them fail until a link is put.
    pub unlinked: Vec<String>,
}

/// Resolves every import of `component` (placed as `spec` of `m`) the way
/// placing it would, without a host: against the built-in interfaces, then
/// the manifest's links. For `twig validate`.
pub fn check_imports(
    m: &Manifest,
    spec: &ComponentSpec,
    component: &Component,
) -> Result<ImportCheck, String> {
    let (mut linker, _) = builtin_linker(component)?;
    let mut check = ImportCheck::default();
    for f in forwarded_imports(m, spec, &linker, component) {
        // Links to a capability go to one of twig's built-in providers, and
        // those export only what the built-in part of the linker has.
        let link = spec
            .links
            .iter()
            .find(|l| l.namespace == f.ns && l.package == f.pkg && l.interfaces.contains(&f.name));
        let to_provider = link.and_then(|l| {
            m.components
                .iter()
                .find(|c| c.id == l.target_id && c.kind == twig_manifest::ComponentKind::Capability)
        });
        match (link, to_provider) {
            (Some(l), Some(_)) => check.unsatisfied.push(format!(
                "`{}`: its link goes to `{}`, a capability provider, and twig's built-in \
                 providers do not export it",
                f.iface, l.target
            )),
            (None, _) => check.unlinked.push(format!(
                "`{}`: twig does not provide it and no link of this manifest names it",
                f.iface
            )),
            (Some(_), None) => {}
        }
        linker
            .interface(&f.iface)
            .fallback(|_, _, _, _| Err(HostError::new("a dry run makes no calls".to_string())));
    }
    // What is left: what even a link cannot answer (resources, which are
    // not forwarded, and functions outside any interface).
    for (name, why) in component.unresolved_imports(&linker) {
        check.unsatisfied.push(format!("`{name}`: {why}"));
    }
    Ok(check)
}

impl Host {
    /// The linker of one component: WASI, config, the lattice bus, the
    /// providers' interfaces, and for every other import a forwarder to the
    /// component its link names (resolved at call time, since
    /// `set-link-name` can switch links) or an error naming the missing link.
    pub(super) fn linker_for(
        &self,
        m: &Manifest,
        spec: &ComponentSpec,
        component: &Component,
    ) -> Result<(Linker<InstanceData>, ExportTypes), String> {
        let (mut linker, types) = builtin_linker(component)?;
        for Forwarded {
            iface,
            unversioned,
            ns,
            pkg,
            name,
        } in forwarded_imports(m, spec, &linker, component)
        {
            let host = Arc::downgrade(&self.inner);
            let source = spec.id.clone();
            linker
                .interface(&iface)
                .fallback(move |func, cx, args, out| {
                    let data = cx.data();
                    let link = data.link_name(&unversioned);
                    let target = data
                        .links
                        .target(&ns, &pkg, &name, &link)
                        .map_err(|e| HostError::new(format!("{e} (calling `{iface}#{func}`)")))?;
                    let local = host
                        .upgrade()
                        .is_some_and(|h| read(&h.components).contains_key(&target));
                    if !local {
                        // Not on this host: the link names a target
                        // elsewhere in the lattice.
                        return call_remote(
                            &host, &source, &link, &target, &iface, func, cx, args, out,
                        );
                    }
                    call_link(
                        &host,
                        &source,
                        &target,
                        &iface,
                        func,
                        cx.deadline(),
                        args,
                        out,
                    )
                });
        }
        Ok((linker, types))
    }

    /// Runs an export of a component with WAVE-encoded arguments and returns
    /// the results in WAVE; with `plain`, a result that is a `string` is
    /// its text instead (so a drawing prints as lines, not one `\n` line).
    pub fn invoke(
        &self,
        component: &str,
        function: &str,
        args: &[String],
        plain: bool,
    ) -> Result<Vec<String>, String> {
        let placed = self.find_component(component)?;
        let (state, reason) = placed.state();
        if state != State::Running {
            return Err(format!(
                "component `{}` is {}",
                placed.id,
                state.describe(reason)
            ));
        }
        let pool = placed
            .pool()
            .ok_or_else(|| format!("component `{}` has no instances", placed.id))?;
        let (_trace, id) = trace::enter(None);
        let _span = trace::call_span("admin", &placed.id, function, id).entered();
        pool.with_instance(self.inner.call_wait(), |inst| {
            let types = inst.export_param_types(function).ok_or_else(|| {
                CallError::Refused(format!(
                    "component `{}` has no export `{function}`; its exports are: {}",
                    placed.id,
                    inst.export_names().join(", ")
                ))
            })?;
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            let vals = types
                .parse(&refs)
                .map_err(|e| CallError::Refused(format!("arguments for `{function}`: {e}")))?;
            let results = inst.call(function, &vals)?;
            Ok(results
                .iter()
                .map(|v| match v {
                    Val::String(s) if plain => s.to_string(),
                    v => twig_component::wave::to_wave(v),
                })
                .collect())
        })
        .map_err(|e| e.to_string())
    }

    /// The components that answer calls from the lattice: every running
    /// component (providers are reached through their own links), less
    /// the device's own unless the policy serves them.
    pub fn served_components(&self) -> Vec<String> {
        let device = if self.inner.board.control.serve_device_components {
            BTreeSet::new()
        } else {
            self.owners().0.device
        };
        read(&self.inner.components)
            .values()
            .filter(|p| p.pool().is_some() && !device.contains(&p.id))
            .map(|p| p.id.clone())
            .collect()
    }

    /// Runs `instance#func` of component `id` for a caller elsewhere in
    /// the lattice, with parameters in the component-model value encoding.
    /// `Ok(None)` means `params` is not complete yet (more is on its way).
    pub fn call_from_lattice(
        &self,
        id: &str,
        instance: &str,
        func: &str,
        params: &[u8],
        deadline: Instant,
    ) -> Result<Option<Vec<u8>>, String> {
        // Also checked per call: a subscription outlives a change of what
        // is served by up to one serving pass.
        if !self.inner.board.control.serve_device_components && self.device_app_of(id).is_some() {
            return Err(format!(
                "`{id}` belongs to the device's own manifest and does not answer calls from the lattice (control.serve_device_components)"
            ));
        }
        let pool = self.inner.running_pool(id)?;
        let (_trace, trace_id) = trace::enter(None);
        let export_name = format!("{instance}#{func}");
        let _span = trace::call_span("wrpc", id, &export_name, trace_id).entered();
        let wait = deadline.saturating_duration_since(Instant::now());
        let mut incomplete = false;
        let out = pool
            .with_instance(wait, |inst| {
                let export = inst
                    .export_names()
                    .into_iter()
                    .find(|n| {
                        n.rsplit_once('#').is_some_and(|(i, f)| {
                            f == func
                                && (i == instance || twig_component::names::compatible(instance, i))
                        })
                    })
                    .map(str::to_string)
                    .ok_or_else(|| {
                        CallError::Refused(format!(
                            "`{id}` has no export `{instance}#{func}`; its exports are: {}",
                            inst.export_names().join(", ")
                        ))
                    })?;
                let (Some(pt), Some(rt)) = (
                    inst.export_param_types(&export),
                    inst.export_result_types(&export),
                ) else {
                    return Err(CallError::Refused(format!(
                        "`{id}`: `{export}` has no known type"
                    )));
                };
                let args = match twig_component::wrpc::decode(params, &pt) {
                    Ok((args, _)) => args,
                    Err(twig_component::wrpc::DecodeError::Incomplete { .. }) => {
                        incomplete = true;
                        return Ok(Vec::new());
                    }
                    Err(e) => {
                        return Err(CallError::Refused(format!(
                            "`{export}`: the parameters do not decode: {e}"
                        )))
                    }
                };
                let results = inst.call(&export, &args)?;
                twig_component::wrpc::encode(&results, &rt)
                    .map_err(|e| CallError::Failed(format!("`{export}`: {e}")))
            })
            .map_err(|e| e.to_string())?;
        Ok((!incomplete).then_some(out))
    }
}

/// Calls a link target that is not on this host over the lattice (wRPC),
/// or says why it cannot.
#[allow(clippy::too_many_arguments)]
fn call_remote(
    host: &Weak<HostInner>,
    source: &str,
    link_name: &str,
    target: &str,
    iface: &str,
    func: &str,
    cx: &twig_component::HostContext<'_, InstanceData>,
    args: &[Val],
    out: &mut Vec<Val>,
) -> Result<(), HostError> {
    let host = host
        .upgrade()
        .ok_or_else(|| HostError::new("the host is shutting down"))?;
    let Some(remote) = host.remote.get() else {
        return Err(HostError::new(format!(
            "{source} -> {target}: no component `{target}` on this host, and this host is not on a lattice (start it with --nats-url to reach targets elsewhere)"
        )));
    };
    let (Some(param_types), Some(result_types)) = (cx.param_types(), cx.result_types()) else {
        return Err(HostError::new(format!(
            "{source} -> {target}: `{iface}#{func}` has no known type"
        )));
    };
    let params = twig_component::wrpc::encode(args, &param_types)
        .map_err(|e| HostError::new(format!("{source} -> {target}: `{iface}#{func}`: {e}")))?;
    let deadline = cx
        .deadline()
        .unwrap_or_else(|| Instant::now() + host.call_wait());
    let (_trace, trace_id) = trace::enter(None);
    let _span = tracing::info_span!("wrpc", trace = %trace_id, %source, %target, export = %format!("{iface}#{func}")).entered();
    let bytes = remote
        .call(RemoteCall {
            source,
            link_name,
            target,
            instance: iface,
            func,
            params,
            deadline,
            traceparent: Some(trace_id.traceparent()),
        })
        .map_err(|e| {
            HostError::new(format!(
                "{source} -> {target} (lattice): `{iface}#{func}`: {e}"
            ))
        })?;
    let (results, _) = twig_component::wrpc::decode(&bytes, &result_types).map_err(|e| {
        HostError::new(match e {
            twig_component::wrpc::DecodeError::Incomplete { .. } if bytes.is_empty() => format!(
                "{source} -> {target} (lattice): `{iface}#{func}` failed on the callee's side (it closed the call without results; see that host's log)"
            ),
            e => format!(
                "{source} -> {target} (lattice): `{iface}#{func}`: the results do not decode: {e}"
            ),
        })
    })?;
    out.extend(results);
    Ok(())
}

/// Forwards one imported call to the link's target component.
#[allow(clippy::too_many_arguments)]
fn call_link(
    host: &Weak<HostInner>,
    source: &str,
    target_id: &str,
    iface: &str,
    func: &str,
    deadline: Option<Instant>,
    args: &[Val],
    out: &mut Vec<Val>,
) -> Result<(), HostError> {
    let host = host
        .upgrade()
        .ok_or_else(|| HostError::new("the host is shutting down"))?;
    if args.iter().any(contains_resource) {
        return Err(HostError::new(format!(
            "{source} -> {target_id}: `{iface}#{func}` passes a resource; resources cannot cross components yet"
        )));
    }
    let target = host.find_component(target_id).map_err(HostError::new)?;
    let pool = target.pool().ok_or_else(|| {
        if let Some(kind) = target.provider_kind() {
            return HostError::new(format!(
                "{source} -> {target_id}: the link targets provider {}, which does not provide `{iface}`",
                kind.reference()
            ));
        }
        let (state, reason) = target.state();
        HostError::new(format!(
            "{source} -> {target_id}: link target is {}{}",
            state.as_str(),
            reason.map(|r| format!(" ({r})")).unwrap_or_default()
        ))
    })?;
    // Wait for a free target instance no longer than the caller may run.
    let wait = deadline
        .map(|d| d.saturating_duration_since(Instant::now()))
        .unwrap_or_else(|| host.call_wait());
    let export = format!("{iface}#{func}");
    let (_trace, trace_id) = trace::enter(None);
    let _span = trace::call_span("link", target_id, &export, trace_id).entered();
    let results = pool
        .with_instance(wait, |inst| Ok(inst.call(&export, args)?))
        .map_err(|e| HostError::new(format!("{source} -> {target_id}: {e}")))?;
    if results.iter().any(contains_resource) {
        return Err(HostError::new(format!(
            "{source} -> {target_id}: `{export}` returned a resource; resources cannot cross components yet"
        )));
    }
    out.extend(results);
    Ok(())
}

fn contains_resource(v: &Val) -> bool {
    match v {
        Val::Resource(_) => true,
        Val::List(vs) | Val::Tuple(vs) => vs.iter().any(contains_resource),
        Val::Record(fs) => fs.iter().any(|(_, v)| contains_resource(v)),
        Val::Variant(_, Some(v)) | Val::Option(Some(v)) => contains_resource(v),
        Val::Result(Ok(Some(v))) | Val::Result(Err(Some(v))) => contains_resource(v),
        _ => false,
    }
}
