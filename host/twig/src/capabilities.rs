//! Capabilities the host itself provides to every component, besides WASI:
//! `wasi:config` from the component's manifest config.
//!
//! wasmCloud hosts answer `wasi:config/store` (and the older name
//! `wasi:config/runtime`) from the named config attached to a component;
//! twig does the same from the `config` entries in the manifest, merged in
//! order (a later entry's key wins).

use twig_component::{Args, HostError, Linker, Resource, Val};

use crate::host::pool::{split_interface, InstanceData};

/// Interfaces answered from component config. Both are 0.2.0-draft, the
/// version `wasmcloud-component` 0.2 imports; drafts only match exactly.
pub const CONFIG_INTERFACES: [&str; 2] = [
    "wasi:config/store@0.2.0-draft",
    "wasi:config/runtime@0.2.0-draft",
];

/// Registers `wasi:config/{store,runtime}@0.2.0-draft`.
pub fn add_config(linker: &mut Linker<InstanceData>) {
    for iface in CONFIG_INTERFACES {
        linker
            .interface(iface)
            .func("get", |cx, args, out| {
                let key =
                    Args::new(args)
                        .context("wasi:config get")
                        .expect(0, "a string key", |v| match v {
                            Val::String(s) => Some(s),
                            _ => None,
                        })?;
                let value = cx.data().config.get().get(key).cloned();
                out.push(Val::ok(Some(Val::Option(
                    value.map(|v| Box::new(Val::String(v))),
                ))));
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
                out.push(Val::ok(Some(Val::List(pairs))));
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
            .func(
                "[constructor]call-target-interface",
                move |cx, args, out| {
                    let a = Args::new(args).context("call-target-interface");
                    let part = |i: usize| {
                        a.expect(
                            i,
                            "a non-empty namespace, package and interface",
                            |v| match v {
                                Val::String(s) if !s.is_empty() => Some(s.clone()),
                                _ => None,
                            },
                        )
                    };
                    let name = format!("{}:{}/{}", part(0)?, part(1)?, part(2)?);
                    let d = cx.data_mut();
                    if d.call_targets.len() >= 1024 {
                        return Err(HostError::new(
                            "too many call-target-interface handles (limit 1024)",
                        ));
                    }
                    let rep = (1..=u32::MAX)
                        .find(|r| !d.call_targets.contains_key(r))
                        .unwrap_or(u32::MAX);
                    d.call_targets.insert(rep, name);
                    out.push(Val::Resource(Resource::host_own(ty, rep)));
                    Ok(())
                },
            )
            .func("set-link-name", move |cx, args, out| {
                let a = Args::new(args).context("set-link-name");
                let name = a.expect(0, "a link name", |v| match v {
                    Val::String(s) => Some(s),
                    _ => None,
                })?;
                let reps: Vec<u32> =
                    a.expect(1, "a list of call-target-interfaces", |v| match v {
                        Val::List(items) => items
                            .iter()
                            .map(|v| match v {
                                Val::Resource(r) => Some(r.rep),
                                _ => None,
                            })
                            .collect::<Option<Vec<u32>>>(),
                        _ => None,
                    })?;
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
                            out.push(Val::err(Some(Val::String(format!(
                                "interface `{i}` does not have an existing link with name `{name}`"
                            )))));
                            return Ok(());
                        }
                    }
                }
                for i in ifaces {
                    if name == "default" {
                        d.link_names.remove(&i);
                    } else {
                        d.link_names.insert(i, name.to_string());
                    }
                }
                if checked {
                    out.push(Val::ok(None));
                }
                Ok(())
            });
    }
}
