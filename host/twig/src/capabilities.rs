//! Capabilities the host itself provides to every component, besides WASI:
//! `wasi:config` from the component's manifest config.
//!
//! wasmCloud hosts answer `wasi:config/store` (and the older name
//! `wasi:config/runtime`) from the named config attached to a component;
//! twig does the same from the `config` entries in the manifest, merged in
//! order (a later entry's key wins).

use std::collections::BTreeMap;

use twig_component::{HostError, Linker, Val};
use twig_manifest::ComponentSpec;

use crate::host::InstanceData;

/// Interfaces answered from component config. Both are 0.2.0-draft, the
/// version `wasmcloud-component` 0.2 imports; drafts only match exactly.
pub const CONFIG_INTERFACES: [&str; 2] = [
    "wasi:config/store@0.2.0-draft",
    "wasi:config/runtime@0.2.0-draft",
];

/// The config a component sees: its manifest `config` entries merged.
pub fn merged_config(spec: &ComponentSpec) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for c in &spec.config {
        if c.properties.is_empty() {
            tracing::warn!(
                component = %spec.id,
                "config `{}` has no properties here; named config from the lattice is not available to it",
                c.name
            );
        }
        out.extend(c.properties.clone());
    }
    out
}

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
                let value = cx.data().config.get(key).cloned();
                out.push(ok(Val::Option(value.map(|v| Box::new(Val::String(v))))));
                Ok(())
            })
            .func("get-all", |cx, _args, out| {
                let pairs = cx
                    .data()
                    .config
                    .iter()
                    .map(|(k, v)| Val::Tuple(vec![Val::String(k.clone()), Val::String(v.clone())]))
                    .collect();
                out.push(ok(Val::List(pairs)));
                Ok(())
            });
    }
}
