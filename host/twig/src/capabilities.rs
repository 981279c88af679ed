//! Capabilities the host itself provides to every component, besides WASI:
//! `wasi:config` from the component's manifest config.
//!
//! wasmCloud hosts answer `wasi:config/store` (and the older name
//! `wasi:config/runtime`) from the named config attached to a component;
//! twig does the same from the `config` entries in the manifest, merged in
//! order (a later entry's key wins).

use twig_component::{HostError, Linker, Resource, Val};

use crate::host::pool::{split_interface, InstanceData};

/// Interfaces answered from component config. Both are 0.2.0-draft, the
/// version `wasmcloud-component` 0.2 imports; drafts only match exactly.
pub const CONFIG_INTERFACES: [&str; 2] = [
    "wasi:config/store@0.2.0-draft",
    "wasi:config/runtime@0.2.0-draft",
];

fn ok(v: Val) -> Val {
    Val::Result(Ok(Some(Box::new(v))))
}

/// Registers `wasi:config/{store,runtime}@0.2.0-draft`.
pub fn add_config(linker: &mut Linker<InstanceData>) {
    for iface in CONFIG_INTERFACES {
        linker
            .interface(iface)
            .func("get", |cx, args, out| {
                let Some(Val::String(key)) = args.first() else {
                    return Err(HostError::new("wasi:config get: expected a string key"));
                };
                let value = cx.data().config.get().get(key).cloned();
                out.push(ok(Val::Option(value.map(|v| Box::new(Val::String(v))))));
                Ok(())
            })
            .func("get-all", |cx, _args, out| {
                let pairs = cx
                    .data()
                    .config
                    .get()
                    .iter()
                    .map(|(k, v)| Val::Tuple(vec![Val::String(k.clone()), Val::String(v.clone())]))
                    .collect();
                out.push(ok(Val::List(pairs)));
                Ok(())
            });
    }
}

/// `wasmcloud:bus/lattice`, both versions components import.
pub const LATTICE_INTERFACES: [&str; 2] =
    ["wasmcloud:bus/lattice@1.0.0", "wasmcloud:bus/lattice@2.0.0"];

/// Registers `wasmcloud:bus/lattice` `set-link-name`: the named link is
/// used for the given interfaces for the rest of the current call, as on
/// wasmCloud (where every call runs in a fresh instance). `@2.0.0` refuses
/// a name that no link of the component has for an interface; `@1.0.0` has
/// no error result and just switches.
pub fn add_lattice(linker: &mut Linker<InstanceData>) {
    for iface in LATTICE_INTERFACES {
        let checked = iface.ends_with("@2.0.0");
        let ty = linker.resource(
            iface,
            "call-target-interface",
            |d: &mut InstanceData, rep| {
                d.call_targets.remove(&rep);
            },
        );
        linker
            .interface(iface)
            .func("[constructor]call-target-interface", move |cx, args, out| {
                let part = |i: usize| match args.get(i) {
                    Some(Val::String(s)) if !s.is_empty() => Ok(s.clone()),
                    _ => Err(HostError::new(
                        "call-target-interface: namespace, package and interface must be non-empty strings",
                    )),
                };
                let name = format!("{}:{}/{}", part(0)?, part(1)?, part(2)?);
                let d = cx.data_mut();
                if d.call_targets.len() >= 1024 {
                    return Err(HostError::new("too many call-target-interface handles (limit 1024)"));
                }
                let rep = (1..=u32::MAX)
                    .find(|r| !d.call_targets.contains_key(r))
                    .unwrap_or(u32::MAX);
                d.call_targets.insert(rep, name);
                out.push(Val::Resource(Resource::host_own(ty, rep)));
                Ok(())
            })
            .func("set-link-name", move |cx, args, out| {
                let Some(Val::String(name)) = args.first() else {
                    return Err(HostError::new("set-link-name: expected a link name"));
                };
                let reps: Vec<u32> = match args.get(1) {
                    Some(Val::List(items)) => items
                        .iter()
                        .map(|v| match v {
                            Val::Resource(r) => Ok(r.rep),
                            _ => Err(HostError::new("set-link-name: expected call-target-interfaces")),
                        })
                        .collect::<Result<_, _>>()?,
                    _ => return Err(HostError::new("set-link-name: expected a list")),
                };
                let d = cx.data_mut();
                // The list passes ownership of the handles to the host.
                let ifaces: Vec<String> = reps
                    .iter()
                    .filter_map(|r| d.call_targets.remove(r))
                    .collect();
                if checked {
                    for i in &ifaces {
                        let Some((ns, pkg, it)) = split_interface(i) else {
                            continue;
                        };
                        if d.links.target(&ns, &pkg, &it, name).is_err() {
                            out.push(Val::Result(Err(Some(Box::new(Val::String(format!(
                                "interface `{i}` does not have an existing link with name `{name}`"
                            )))))));
                            return Ok(());
                        }
                    }
                }
                for i in ifaces {
                    if name == "default" {
                        d.link_names.remove(&i);
                    } else {
                        d.link_names.insert(i, name.clone());
                    }
                }
                if checked {
                    out.push(Val::Result(Ok(None)));
                }
                Ok(())
            });
    }
}
