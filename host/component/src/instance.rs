//! Instantiating a component and calling its exports.
//!
//! Instantiation replays the initializers that `wasmtime-environ` produced
//! (see [`crate::component`]): core modules are instantiated in order with
//! their arguments, which are exports of earlier core instances or
//! *trampolines* — host functions created here that lift the guest's
//! arguments, run the linked host function and lower its results, or that
//! implement `resource.new`/`rep`/`drop`.
//!
//! A call to an export lowers the arguments into the guest, runs the core
//! function under the instance's fuel and deadline budget, lifts the results
//! and runs the guest's `post-return`. A trap poisons the instance: its
//! memory may be half-updated, so it refuses further calls and the host
//! replaces it with a fresh one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use wasmi::{
    AsContextMut, Caller, Extern, Func, FuncType, Store, StoreLimitsBuilder, TrapCode,
    Val as CoreVal,
};
use wasmtime_environ::component::{
    CanonicalOptions, CanonicalOptionsDataModel, CoreDef, Export, ExportItem, GlobalInitializer,
    InstantiateModule, InterfaceType, OptionsIndex, Trampoline, TrampolineIndex, TypeFuncIndex,
    MAX_FLAT_PARAMS, MAX_FLAT_RESULTS,
};
use wasmtime_environ::{EntityIndex, StaticModuleIndex, WasmValType};

use crate::abi::{
    abi_err, abi_info, check_aligned, flat_count, resource_table, top_up_fuel, AbiResult, Cx,
    FlatReader, FUEL_SLICE,
};
use crate::component::{Component, ComponentInner};
use crate::error::{AbiError, Error, HostError, LiftBudgetError, Result, TrapKind};
use crate::linker::{HostContext, HostFunc, Linker};
use crate::store::{Handle, HandleTable, LiftBudget, Runtime, StoreData};
use crate::types::{func_sig, FuncSig};
use crate::values::{Resource, ResourceType, Val};

static NEXT_UID: AtomicU64 = AtomicU64::new(1);

/// An export of an instance, resolved to its core function.
#[derive(Clone)]
struct ExportFunc {
    func: Func,
    ty: TypeFuncIndex,
    options: OptionsIndex,
}

/// A running instance of a component, with its own store.
pub struct Instance<T> {
    store: Store<StoreData<T>>,
    comp: Arc<ComponentInner>,
    exports: HashMap<String, ExportFunc>,
    poisoned: Option<String>,
    /// Fuel used by the last completed call.
    last_fuel: u64,
}

impl<T> Drop for Instance<T> {
    fn drop(&mut self) {
        self.comp.live_instances.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Maps a wasmi error to what stopped the guest.
fn classify(err: &wasmi::Error, comp: &ComponentInner) -> TrapKind {
    if let Some(b) = err.downcast_ref::<LiftBudgetError>() {
        return b.kind();
    }
    if let Some(h) = err.downcast_ref::<HostError>() {
        if let Some(b) = &h.lift_budget {
            return b.kind();
        }
        return match h.exit {
            Some(code) => TrapKind::Exit(code),
            None if h.deadline => TrapKind::Deadline {
                millis: comp
                    .limits
                    .deadline
                    .map(|d| d.as_millis() as u64)
                    .unwrap_or(0),
            },
            None => TrapKind::Host(h.message.clone()),
        };
    }
    if let Some(a) = err.downcast_ref::<AbiError>() {
        return TrapKind::Abi(a.0.clone());
    }
    if let Some(code) = err.i32_exit_status() {
        return TrapKind::Exit(code);
    }
    match err.as_trap_code() {
        Some(TrapCode::OutOfFuel) => TrapKind::OutOfFuel {
            limit: comp.limits.fuel_per_call.unwrap_or(u64::MAX),
        },
        Some(TrapCode::UnreachableCodeReached) => TrapKind::Unreachable,
        Some(TrapCode::StackOverflow) => TrapKind::StackOverflow,
        Some(TrapCode::GrowthOperationLimited) | Some(TrapCode::OutOfSystemMemory) => {
            TrapKind::MemoryLimit {
                bytes: comp.limits.memory_bytes as u64,
            }
        }
        Some(code) => TrapKind::Wasm(code.trap_message().to_string()),
        None => {
            let msg = err.to_string();
            if msg.contains("ResourceLimiterDeniedAllocation")
                || msg.contains("limit") && msg.contains("memory")
            {
                TrapKind::MemoryLimit {
                    bytes: comp.limits.memory_bytes as u64,
                }
            } else {
                TrapKind::Wasm(msg)
            }
        }
    }
}

fn core_func_type(comp: &ComponentInner, t: TrampolineIndex) -> FuncType {
    let sig = comp.types.module_types()[comp.info.trampolines[t]].unwrap_func();
    let conv = |t: &WasmValType| match t {
        WasmValType::I32 => wasmi::ValType::I32,
        WasmValType::I64 => wasmi::ValType::I64,
        WasmValType::F32 => wasmi::ValType::F32,
        WasmValType::F64 => wasmi::ValType::F64,
        WasmValType::V128 => wasmi::ValType::V128,
        // Reference types never appear in the signatures of the trampolines
        // accepted by `check_supported`.
        WasmValType::Ref(_) => wasmi::ValType::ExternRef,
    };
    FuncType::new(
        sig.params().iter().map(conv).collect::<Vec<_>>(),
        sig.results().iter().map(conv).collect::<Vec<_>>(),
    )
}

fn options_cx<'a, T>(
    comp: &'a ComponentInner,
    rt: &Runtime,
    opts: &CanonicalOptions,
    _t: std::marker::PhantomData<T>,
) -> Cx<'a> {
    let (memory, realloc) = match &opts.data_model {
        CanonicalOptionsDataModel::LinearMemory(lm) => (
            lm.memory.and_then(|m| rt.memories[m.as_u32() as usize]),
            lm.realloc.and_then(|r| rt.reallocs[r.as_u32() as usize]),
        ),
        CanonicalOptionsDataModel::Gc {} => (None, None),
    };
    Cx {
        comp,
        memory,
        realloc,
        encoding: opts.string_encoding,
    }
}

/// A component's imports resolved against a linker: the host resource
/// types of its imported resources and the host function of each lowered
/// import, or for each import the linker cannot answer its name and why.
struct Resolved<T> {
    resource_types: Vec<ResourceType>,
    lowered: Vec<Option<(HostFunc<T>, Arc<str>)>>,
    missing: Vec<(String, String)>,
}

fn resolve_imports<T: 'static>(
    linker: &Linker<T>,
    info: &wasmtime_environ::component::Component,
) -> Resolved<T> {
    let import_name = |idx: wasmtime_environ::component::RuntimeImportIndex| {
        let (import, path) = &info.imports[idx];
        (info.import_types[*import].0.clone(), path.clone())
    };
    let mut missing = Vec::new();
    let mut resource_types = Vec::with_capacity(info.num_resources as usize);
    for (_, import) in info.imported_resources.iter() {
        let (iface, path) = import_name(*import);
        match path.as_slice() {
            [res] => match linker.lookup_resource(&iface, res) {
                Ok(id) => resource_types.push(ResourceType::Host(id)),
                Err(why) => {
                    missing.push((format!("{iface}#{res}"), why));
                    resource_types.push(ResourceType::Host(u32::MAX));
                }
            },
            _ => missing.push((iface, "nested instance imports are not supported".into())),
        }
    }
    let mut lowered: Vec<Option<(HostFunc<T>, Arc<str>)>> = vec![None; info.num_lowerings as usize];
    for init in &info.initializers {
        if let GlobalInitializer::LowerImport { index, import } = init {
            let (iface, path) = import_name(*import);
            let found = match path.as_slice() {
                [] => linker
                    .lookup_func("", &iface)
                    .map(|h| (h, Arc::from(iface.as_str())))
                    .map_err(|w| (iface.clone(), w)),
                [f] => linker
                    .lookup_func(&iface, f)
                    .map(|h| (h, Arc::from(format!("{iface}#{f}"))))
                    .map_err(|w| (format!("{iface}#{f}"), w)),
                _ => Err((
                    iface.clone(),
                    "nested instance imports are not supported".into(),
                )),
            };
            match found {
                Ok(f) => lowered[index.as_u32() as usize] = Some(f),
                Err(m) => missing.push(m),
            }
        }
    }
    Resolved {
        resource_types,
        lowered,
        missing,
    }
}

/// Every import of `component` that `linker` cannot answer, by name
/// (`iface#func`, `iface#resource`), with the reason: what instantiating
/// it would refuse, without instantiating it.
pub(crate) fn unresolved_imports<T: 'static>(
    linker: &Linker<T>,
    component: &Component,
) -> Vec<(String, String)> {
    resolve_imports(linker, &component.inner.info).missing
}

impl<T: 'static> Instance<T> {
    /// Instantiates `component` with imports from `linker`; `data` is the
    /// embedder's state, reachable from host functions.
    pub fn new(linker: &Linker<T>, component: &Component, data: T) -> Result<Instance<T>> {
        let comp = component.inner.clone();
        let name = comp.name.clone();
        let max = comp.limits.max_instances;
        if comp.live_instances.fetch_add(1, Ordering::Relaxed) >= max {
            comp.live_instances.fetch_sub(1, Ordering::Relaxed);
            return Err(Error::InstanceLimit {
                component: name,
                limit: max,
            });
        }
        // From here on `Instance::drop` (or this guard) gives the slot back.
        struct SlotGuard<'a>(&'a ComponentInner, bool);
        impl Drop for SlotGuard<'_> {
            fn drop(&mut self) {
                if self.1 {
                    self.0.live_instances.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        let mut guard = SlotGuard(&comp, true);
        let inst = Self::instantiate(linker, &comp, data)?;
        guard.1 = false;
        Ok(inst)
    }

    fn instantiate(linker: &Linker<T>, comp: &Arc<ComponentInner>, data: T) -> Result<Instance<T>> {
        let info = &comp.info;
        let name = comp.name.clone();
        let instantiate_err = |reason: String| Error::Instantiate {
            component: name.clone(),
            reason,
        };

        // Resolve every import first so that all missing ones are reported
        // together, by name.
        let Resolved {
            mut resource_types,
            lowered,
            missing,
        } = resolve_imports(linker, info);
        let uid = NEXT_UID.fetch_add(1, Ordering::Relaxed);
        for i in 0..(info.num_resources as usize - info.imported_resources.len()) {
            resource_types.push(ResourceType::Guest {
                instance: uid,
                index: i as u32,
            });
        }
        if let Some((first, why)) = missing.first() {
            let mut reason = why.clone();
            if missing.len() > 1 {
                let others: Vec<&str> = missing[1..].iter().map(|(n, _)| n.as_str()).collect();
                reason.push_str(&format!(" (also unsatisfied: {})", others.join(", ")));
            }
            return Err(Error::MissingImport {
                component: name,
                import: first.clone(),
                reason,
            });
        }

        let limits = StoreLimitsBuilder::new()
            .memory_size(comp.limits.memory_bytes)
            .table_elements(comp.limits.table_elements)
            .trap_on_grow_failure(true)
            .build();
        let num_defined = info.num_resources as usize - info.imported_resources.len();
        let rt = Runtime {
            component: comp.clone(),
            uid,
            memories: vec![None; info.num_runtime_memories as usize],
            reallocs: vec![None; info.num_runtime_reallocs as usize],
            post_returns: vec![None; info.num_runtime_post_returns as usize],
            tables: (0..info.num_runtime_component_instances)
                .map(|_| HandleTable::default())
                .collect(),
            resource_types,
            resource_dtors: vec![None; num_defined],
            scoped_borrows: 0,
            call_deadline: None,
            fuel_pool: 0,
            lift: LiftBudget::new(comp.limits.memory_bytes),
        };
        let mut store = Store::new(
            &comp.wasmi,
            StoreData {
                user: data,
                limits,
                rt,
                host_dtors: linker.dtors(),
            },
        );
        store.limiter(|d| &mut d.limits);
        // Start functions run under the per-call budget too.
        if comp.engine.config.metering {
            store
                .set_fuel(comp.limits.fuel_per_call.unwrap_or(u64::MAX))
                .map_err(|e| instantiate_err(e.to_string()))?;
        }

        let mut resolver = Resolver {
            comp,
            lowered,
            core_instances: Vec::new(),
            trampolines: HashMap::new(),
        };

        for init in &info.initializers {
            match init {
                GlobalInitializer::InstantiateModule(InstantiateModule::Static(idx, args), _) => {
                    let mut externs = Vec::with_capacity(args.len());
                    for def in args.iter() {
                        externs.push(resolver.def(&mut store, def)?);
                    }
                    let module = &comp.modules[*idx].module;
                    let instance =
                        wasmi::Instance::new(&mut store, module, &externs).map_err(|e| {
                            let kind = classify(&e, comp);
                            instantiate_err(format!(
                                "core module #{} failed to instantiate: {kind}",
                                idx.as_u32()
                            ))
                        })?;
                    resolver.core_instances.push((instance, *idx));
                }
                GlobalInitializer::InstantiateModule(InstantiateModule::Import(..), _) => {
                    return Err(instantiate_err(
                        "importing core modules is not supported".into(),
                    ));
                }
                GlobalInitializer::LowerImport { .. } => {}
                GlobalInitializer::ExtractMemory(m) => {
                    let mem = resolver
                        .export(&store, m.export.instance, &memory_item(&m.export.item))?
                        .into_memory()
                        .ok_or_else(|| {
                            instantiate_err("extracted memory is not a memory".into())
                        })?;
                    store.data_mut().rt.memories[m.index.as_u32() as usize] = Some(mem);
                }
                GlobalInitializer::ExtractRealloc(r) => {
                    let f = resolver.func(&mut store, &r.def)?;
                    store.data_mut().rt.reallocs[r.index.as_u32() as usize] = Some(f);
                }
                GlobalInitializer::ExtractPostReturn(r) => {
                    let f = resolver.func(&mut store, &r.def)?;
                    store.data_mut().rt.post_returns[r.index.as_u32() as usize] = Some(f);
                }
                GlobalInitializer::ExtractCallback(_) => {
                    return Err(instantiate_err("async callbacks are not supported".into()));
                }
                // Tables are extracted only for `thread.spawn-indirect`.
                GlobalInitializer::ExtractTable(_) => {}
                GlobalInitializer::Resource(r) => {
                    if let Some(dtor) = &r.dtor {
                        let f = resolver.func(&mut store, dtor)?;
                        store.data_mut().rt.resource_dtors[r.index.as_u32() as usize] = Some(f);
                    }
                }
            }
        }

        // Resolve exported functions once, by their user-facing names:
        // `func` at the top level, `interface#func` inside an exported
        // interface.
        let mut named = Vec::new();
        for (ename, (idx, _)) in info.exports.raw_iter() {
            match &info.export_items[*idx] {
                Export::LiftedFunction { .. } => named.push((ename.to_string(), *idx)),
                Export::Instance { exports: inner, .. } => {
                    for (fname, (fidx, _)) in inner.raw_iter() {
                        named.push((format!("{ename}#{fname}"), *fidx));
                    }
                }
                _ => {}
            }
        }
        let mut exports = HashMap::new();
        for (name, idx) in named {
            if let Export::LiftedFunction { ty, func, options } = &info.export_items[idx] {
                let f = resolver.func(&mut store, func)?;
                let (ty, options) = (*ty, *options);
                exports.insert(
                    name,
                    ExportFunc {
                        func: f,
                        ty,
                        options,
                    },
                );
            }
        }

        Ok(Instance {
            store,
            comp: comp.clone(),
            exports,
            poisoned: None,
            last_fuel: 0,
        })
    }

    /// Creates the host function behind one trampoline.
    fn make_trampoline(
        store: &mut Store<StoreData<T>>,
        comp: &Arc<ComponentInner>,
        t: TrampolineIndex,
        lowered: &[Option<(HostFunc<T>, Arc<str>)>],
    ) -> Result<Func> {
        let ty = core_func_type(comp, t);
        let f = match &comp.trampolines[t] {
            Trampoline::LowerImport {
                index,
                lower_ty,
                options,
            } => {
                let (host, import) =
                    lowered[index.as_u32() as usize]
                        .clone()
                        .ok_or_else(|| Error::Instantiate {
                            component: comp.name.clone(),
                            reason: format!(
                                "lowered import #{} has no host function",
                                index.as_u32()
                            ),
                        })?;
                let (lower_ty, options) = (*lower_ty, *options);
                Func::new(
                    &mut *store,
                    ty,
                    move |caller: Caller<'_, StoreData<T>>,
                          params: &[CoreVal],
                          results: &mut [CoreVal]| {
                        call_host(caller, &host, &import, lower_ty, options, params, results)
                    },
                )
            }
            Trampoline::ResourceNew { ty: table, .. } => {
                let table = *table;
                Func::new(
                    &mut *store,
                    ty,
                    move |mut caller: Caller<'_, StoreData<T>>,
                          params: &[CoreVal],
                          results: &mut [CoreVal]| {
                        let rep = arg_i32(params, 0)? as u32;
                        let (resource, inst) =
                            resource_table(&caller.data().rt.component.types, table)?;
                        let h = caller.data_mut().rt.tables[inst.as_u32() as usize]
                            .insert(Handle {
                                rep,
                                resource,
                                own: true,
                                scoped: false,
                            })
                            .ok_or_else(|| abi_err("resource handle table is full"))?;
                        results[0] = CoreVal::I32(h as i32);
                        Ok(())
                    },
                )
            }
            Trampoline::ResourceRep { ty: table, .. } => {
                let table = *table;
                Func::new(
                    &mut *store,
                    ty,
                    move |caller: Caller<'_, StoreData<T>>,
                          params: &[CoreVal],
                          results: &mut [CoreVal]| {
                        let handle = arg_i32(params, 0)? as u32;
                        let rt = &caller.data().rt;
                        let (resource, inst) = resource_table(&rt.component.types, table)?;
                        let h = rt.handle(inst.as_u32() as usize, handle, resource)?;
                        results[0] = CoreVal::I32(h.rep as i32);
                        Ok(())
                    },
                )
            }
            Trampoline::ResourceDrop { ty: table, .. } => {
                let table = *table;
                Func::new(
                    &mut *store,
                    ty,
                    move |mut caller: Caller<'_, StoreData<T>>,
                          params: &[CoreVal],
                          _results: &mut [CoreVal]| {
                        let handle = arg_i32(params, 0)? as u32;
                        let (resource, inst) =
                            resource_table(&caller.data().rt.component.types, table)?;
                        let rt = &mut caller.data_mut().rt;
                        let h = rt.handle(inst.as_u32() as usize, handle, resource)?;
                        let want = rt.resource_types[resource as usize];
                        rt.tables[inst.as_u32() as usize].remove(handle);
                        if !h.own {
                            if h.scoped {
                                rt.scoped_borrows = rt.scoped_borrows.saturating_sub(1);
                            }
                            return Ok(());
                        }
                        drop_resource_rep(&mut caller, want, h.rep)
                    },
                )
            }
            Trampoline::Trap => Func::new(
                &mut *store,
                ty,
                |_: Caller<'_, StoreData<T>>, _: &[CoreVal], _: &mut [CoreVal]| {
                    Err(wasmi::Error::from(TrapCode::UnreachableCodeReached))
                },
            ),
            other => {
                return Err(Error::Unsupported {
                    component: comp.name.clone(),
                    feature: format!("intrinsic {other:?}"),
                });
            }
        };
        Ok(f)
    }

    /// The component this instance runs.
    pub fn component_name(&self) -> &str {
        &self.comp.name
    }

    pub fn data(&self) -> &T {
        &self.store.data().user
    }

    pub fn data_mut(&mut self) -> &mut T {
        &mut self.store.data_mut().user
    }

    /// Names of the exported functions (`name` or `interface#name`).
    pub fn export_names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.exports.keys().map(|s| s.as_str()).collect();
        v.sort_unstable();
        v
    }

    /// The signature of an export.
    pub fn export_sig(&self, name: &str) -> Option<FuncSig> {
        self.find_export(name)
            .map(|e| func_sig(&self.comp.types, e.ty))
    }

    /// The WIT types of an export's parameters (for parsing arguments).
    pub fn export_param_types(&self, name: &str) -> Option<crate::wave::TypeList> {
        let e = self.find_export(name)?;
        let f = &self.comp.types[e.ty];
        Some(crate::wave::TypeList::new(
            self.comp.clone(),
            self.comp.types[f.params].types.to_vec(),
        ))
    }

    /// The WIT types of an export's results.
    pub fn export_result_types(&self, name: &str) -> Option<crate::wave::TypeList> {
        let e = self.find_export(name)?;
        let f = &self.comp.types[e.ty];
        Some(crate::wave::TypeList::new(
            self.comp.clone(),
            self.comp.types[f.results].types.to_vec(),
        ))
    }

    /// Finds an export by exact name, by a semver-compatible interface
    /// version (`wasi:cli/run@0.2.0#run` finds `wasi:cli/run@0.2.6#run`),
    /// by wash's `ns:pkg/iface.func` spelling, or by its bare function name
    /// when that is unambiguous.
    fn find_export(&self, name: &str) -> Option<&ExportFunc> {
        if let Some(e) = self.exports.get(name) {
            return Some(e);
        }
        // `wasmcloud:example/invoke.call` (wash call): the function follows
        // a `.` after the interface's `/` (a version's dots come before it:
        // `ns:pkg/iface@0.2.0.func`). Which `.` is not known from the name
        // alone: a resource method has one in its own name
        // (`iface.[method]counter.get`), so each is tried, last first.
        if let Some((_, after)) = name.split_once('/').filter(|_| !name.contains('#')) {
            let base = name.len() - after.len();
            return after.rmatch_indices('.').find_map(|(i, _)| {
                let at = base + i;
                self.find_hashed(&format!("{}#{}", &name[..at], &name[at + 1..]))
            });
        }
        self.find_hashed(name)
    }

    /// [`Self::find_export`] for a name in `iface#func` form or a bare
    /// function name.
    fn find_hashed(&self, name: &str) -> Option<&ExportFunc> {
        if let Some(e) = self.exports.get(name) {
            return Some(e);
        }
        let Some((iface, func)) = name.split_once('#') else {
            // A bare function name also finds `iface#name` when exactly one
            // exported interface has a function of that name.
            let mut found = self
                .exports
                .iter()
                .filter(|(k, _)| k.rsplit_once('#').is_some_and(|(_, f)| f == name));
            let first = found.next().map(|(_, v)| v);
            return if found.next().is_none() { first } else { None };
        };
        // An interface named without a version (`twig:demo/greeter#greet`,
        // as wash lets one write it) finds the exported one of any version.
        let unversioned = !iface.contains('@');
        self.exports.iter().find_map(|(k, v)| {
            let (kiface, kfunc) = k.split_once('#')?;
            let same = crate::names::compatible(iface, kiface)
                || (unversioned && kiface.split('@').next() == Some(iface));
            (kfunc == func && same).then_some(v)
        })
    }

    /// Fuel used by the last call that completed.
    pub fn last_call_fuel(&self) -> u64 {
        self.last_fuel
    }

    /// Whether an earlier trap has made this instance unusable.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned.is_some()
    }

    /// Bytes of linear memory the instance holds now.
    pub fn memory_bytes(&self) -> usize {
        self.store
            .data()
            .rt
            .memories
            .iter()
            .flatten()
            .map(|m| m.data_size(&self.store))
            .sum()
    }

    /// Gives the pages of this instance's linear memories that hold only
    /// zeros back to the operating system, and returns how many bytes that
    /// covered.
    ///
    /// wasmi zero-fills a new or grown linear memory byte by byte, so every
    /// page of it becomes resident even if the guest never touches it: a
    /// Rust guest's 17 initial pages cost 1.1 MB of RSS per instance. Pages
    /// that are still all zeros are released with `MADV_DONTNEED`; the
    /// memory stays mapped and reads as zeros again, so the guest cannot
    /// tell. Worth calling after instantiation and after a call that grew
    /// memory; it scans the whole memory, about 0.1 ms per MiB.
    pub fn release_zero_pages(&mut self) -> usize {
        let memories: Vec<wasmi::Memory> = self
            .store
            .data()
            .rt
            .memories
            .iter()
            .flatten()
            .copied()
            .collect();
        let mut released = 0;
        for m in memories {
            released += release_zero_pages(m.data_mut(&mut self.store));
        }
        released
    }

    /// Calls an exported function with `args` and returns its results.
    pub fn call(&mut self, name: &str, args: &[Val]) -> Result<Vec<Val>> {
        let comp = self.comp.clone();
        if self.poisoned.is_some() {
            return Err(Error::Poisoned {
                component: comp.name.clone(),
            });
        }
        let export = self
            .find_export(name)
            .cloned()
            .ok_or_else(|| Error::NoSuchExport {
                component: comp.name.clone(),
                name: name.to_string(),
            })?;
        let fty = &comp.types[export.ty];
        let param_tys = &comp.types[fty.params].types;
        let result_tys = &comp.types[fty.results].types;
        if args.len() != param_tys.len() {
            return Err(Error::BadArguments {
                component: comp.name.clone(),
                function: name.to_string(),
                reason: format!("expected {} arguments, got {}", param_tys.len(), args.len()),
            });
        }
        let trap = |kind: TrapKind| Error::Trap {
            component: comp.name.clone(),
            function: name.to_string(),
            kind,
        };

        let fuel_limit = comp.limits.fuel_per_call.unwrap_or(u64::MAX);
        let deadline = comp.limits.deadline.map(|d| Instant::now() + d);
        self.store.data_mut().rt.call_deadline = deadline;
        let metering = comp.engine.config.metering;
        if metering {
            let first = fuel_limit.min(FUEL_SLICE);
            self.store.data_mut().rt.fuel_pool = fuel_limit - first;
            self.store
                .set_fuel(first)
                .map_err(|e| trap(TrapKind::Wasm(e.to_string())))?;
        }

        let opts = &comp.info.options[export.options];
        let post_return = opts
            .post_return
            .and_then(|p| self.store.data().rt.post_returns[p.as_u32() as usize]);

        // Lower the arguments. A type mismatch is the caller's fault, not
        // the guest's: it does not poison the instance.
        let mut core_args = Vec::new();
        {
            let cx = options_cx(
                &comp,
                &self.store.data().rt,
                opts,
                std::marker::PhantomData::<T>,
            );
            let mut ctx = self.store.as_context_mut();
            let lowered = lower_args(&cx, &mut ctx, param_tys, args, &mut core_args);
            if let Err(e) = lowered {
                return Err(match e.downcast_ref::<AbiError>() {
                    Some(a)
                        if a.0.starts_with("type mismatch")
                            || a.0.contains("unknown")
                            || a.0.contains("record")
                            || a.0.contains("tuple") =>
                    {
                        Error::BadArguments {
                            component: comp.name.clone(),
                            function: name.to_string(),
                            reason: a.0.clone(),
                        }
                    }
                    _ => {
                        self.poisoned = Some(e.to_string());
                        trap(classify(&e, &comp))
                    }
                });
            }
        }

        let nresults = export.func.ty(&self.store).results().len();
        let mut core_results = vec![CoreVal::I32(0); nresults];
        let outcome =
            self.run_with_budget(&export.func, &core_args, &mut core_results, deadline, &comp);
        match outcome {
            Ok(()) => {}
            Err(kind) => {
                self.poisoned = Some(kind.to_string());
                return Err(trap(kind));
            }
        }

        // Lift the results, then let the guest free what it handed over.
        let lifted = {
            let cx = options_cx(
                &comp,
                &self.store.data().rt,
                opts,
                std::marker::PhantomData::<T>,
            );
            let mut ctx = self.store.as_context_mut();
            ctx.data_mut().rt.lift.start(None);
            lift_results(&cx, &mut ctx, &comp, result_tys, &core_results)
        };
        let results = match lifted {
            Ok(v) => v,
            Err(e) => {
                self.poisoned = Some(e.to_string());
                return Err(trap(classify(&e, &comp)));
            }
        };
        if let Some(pr) = post_return {
            // Freeing what the guest handed over can take long (lists of
            // thousands of strings), so it runs under the same budget.
            if let Err(kind) = self.run_with_budget(&pr, &core_results, &mut [], deadline, &comp) {
                self.poisoned = Some(kind.to_string());
                return Err(trap(kind));
            }
        }
        let left_borrows = std::mem::take(&mut self.store.data_mut().rt.scoped_borrows);
        if left_borrows != 0 {
            self.poisoned = Some("borrow handles remained at the end of the call".into());
            return Err(trap(TrapKind::Abi(
                "borrow handles still remain at the end of the call".into(),
            )));
        }
        let rt = &self.store.data().rt;
        if metering {
            let left = self.store.get_fuel().unwrap_or(0);
            self.last_fuel = fuel_limit.saturating_sub(rt.fuel_pool).saturating_sub(left);
        }
        Ok(results)
    }

    /// Runs a core function, handing out fuel in slices and checking the
    /// deadline between slices.
    fn run_with_budget(
        &mut self,
        func: &Func,
        args: &[CoreVal],
        results: &mut [CoreVal],
        deadline: Option<Instant>,
        comp: &ComponentInner,
    ) -> std::result::Result<(), TrapKind> {
        let call = func
            .call_resumable(&mut self.store, args, results)
            .map_err(|e| classify(&e, comp))?;
        self.drive(call, results, deadline, comp)
    }

    /// Resumes `call` slice by slice until it finishes. A call still
    /// running after its first slice is a long one: when the embedder has
    /// a blocking-section hook installed (it runs the call on a thread with
    /// other work, see [`crate::blocking`]), the rest of the call runs as
    /// one section, so that other work moves elsewhere.
    fn drive(
        &mut self,
        mut call: wasmi::ResumableCall,
        results: &mut [CoreVal],
        deadline: Option<Instant>,
        comp: &ComponentInner,
    ) -> std::result::Result<(), TrapKind> {
        loop {
            match call {
                wasmi::ResumableCall::Finished => return Ok(()),
                wasmi::ResumableCall::HostTrap(t) => return Err(classify(t.host_error(), comp)),
                wasmi::ResumableCall::OutOfFuel(t) if crate::blocking::hooked() => {
                    return crate::blocking::section(|| {
                        self.drive(wasmi::ResumableCall::OutOfFuel(t), results, deadline, comp)
                    });
                }
                wasmi::ResumableCall::OutOfFuel(t) => {
                    if let Some(d) = deadline {
                        if Instant::now() >= d {
                            let millis = comp
                                .limits
                                .deadline
                                .map(|d| d.as_millis() as u64)
                                .unwrap_or(0);
                            return Err(TrapKind::Deadline { millis });
                        }
                    }
                    let pool = &mut self.store.data_mut().rt.fuel_pool;
                    if *pool == 0 {
                        return Err(TrapKind::OutOfFuel {
                            limit: comp.limits.fuel_per_call.unwrap_or(u64::MAX),
                        });
                    }
                    let slice = (*pool).min(FUEL_SLICE).max(t.required_fuel());
                    *pool = pool.saturating_sub(slice);
                    self.store
                        .set_fuel(slice)
                        .map_err(|e| TrapKind::Wasm(e.to_string()))?;
                    call = t
                        .resume(&mut self.store, results)
                        .map_err(|e| classify(&e, comp))?;
                }
            }
        }
    }

    /// Drops a resource the host owns: a guest resource's destructor runs in
    /// this instance; a host resource's destructor runs on the host state.
    pub fn drop_resource(&mut self, r: Resource) -> Result<()> {
        if !r.own {
            return Ok(());
        }
        let comp = self.comp.clone();
        let budget = comp.limits.fuel_per_call.unwrap_or(u64::MAX);
        self.store.data_mut().rt.fuel_pool = budget.saturating_sub(FUEL_SLICE);
        self.store.data_mut().rt.call_deadline = comp.limits.deadline.map(|d| Instant::now() + d);
        if comp.engine.config.metering {
            self.store.set_fuel(budget.min(FUEL_SLICE)).ok();
        }
        let mut ctx = self.store.as_context_mut();
        drop_rep_in(&mut ctx, r.ty, r.rep).map_err(|e| Error::Trap {
            component: comp.name.clone(),
            function: "[resource-drop]".into(),
            kind: classify(&e, &comp),
        })
    }

    /// Live resource handles held by the guest, across its tables.
    pub fn live_handles(&self) -> usize {
        self.store.data().rt.tables.iter().map(|t| t.live()).sum()
    }
}

/// What instantiation has built so far, to resolve the core definitions
/// (`CoreDef`) that initializers and exports refer to.
struct Resolver<'c, T> {
    comp: &'c Arc<ComponentInner>,
    /// Host functions of the lowered imports, by `LoweredIndex`.
    lowered: Vec<Option<(HostFunc<T>, Arc<str>)>>,
    /// Core instances in `RuntimeInstanceIndex` order, with their module.
    core_instances: Vec<(wasmi::Instance, StaticModuleIndex)>,
    /// Trampolines already created (each is made once and shared).
    trampolines: HashMap<TrampolineIndex, Func>,
}

impl<T: 'static> Resolver<'_, T> {
    fn err(&self, reason: String) -> Error {
        Error::Instantiate {
            component: self.comp.name.clone(),
            reason,
        }
    }

    /// An export of an already instantiated core instance.
    fn export(
        &self,
        store: &Store<StoreData<T>>,
        instance: wasmtime_environ::component::RuntimeInstanceIndex,
        item: &ExportItem<EntityIndex>,
    ) -> Result<Extern> {
        let (inst, module) = self
            .core_instances
            .get(instance.as_u32() as usize)
            .ok_or_else(|| {
                self.err(format!(
                    "core instance #{} used before it exists",
                    instance.as_u32()
                ))
            })?;
        let name = match item {
            ExportItem::Name(n) => n.as_str(),
            ExportItem::Index(i) => self.comp.modules[*module]
                .export_names
                .get(i)
                .map(|s| s.as_str())
                .ok_or_else(|| {
                    self.err(format!(
                        "core module #{} does not export item {i:?}",
                        module.as_u32()
                    ))
                })?,
        };
        inst.get_export(store, name).ok_or_else(|| {
            self.err(format!(
                "core instance #{} has no export `{name}`",
                instance.as_u32()
            ))
        })
    }

    fn def(&mut self, store: &mut Store<StoreData<T>>, def: &CoreDef) -> Result<Extern> {
        match def {
            CoreDef::Export(e) => self.export(store, e.instance, &e.item),
            CoreDef::Trampoline(t) => {
                if let Some(f) = self.trampolines.get(t) {
                    return Ok(Extern::Func(*f));
                }
                let f = Instance::make_trampoline(store, self.comp, *t, &self.lowered)?;
                self.trampolines.insert(*t, f);
                Ok(Extern::Func(f))
            }
            other => Err(Error::Unsupported {
                component: self.comp.name.clone(),
                feature: format!("core definition {other:?}"),
            }),
        }
    }

    fn func(&mut self, store: &mut Store<StoreData<T>>, def: &CoreDef) -> Result<Func> {
        self.def(store, def)?
            .into_func()
            .ok_or_else(|| self.err("a core definition used as a function is not one".into()))
    }
}

fn memory_item(item: &ExportItem<wasmtime_environ::MemoryIndex>) -> ExportItem<EntityIndex> {
    match item {
        ExportItem::Index(i) => ExportItem::Index(EntityIndex::Memory(*i)),
        ExportItem::Name(n) => ExportItem::Name(n.clone()),
    }
}

fn arg_i32(params: &[CoreVal], i: usize) -> AbiResult<i32> {
    match params.get(i) {
        Some(CoreVal::I32(v)) => Ok(*v),
        _ => Err(abi_err("intrinsic called with the wrong core arguments")),
    }
}

fn drop_resource_rep<T>(
    caller: &mut Caller<'_, StoreData<T>>,
    ty: ResourceType,
    rep: u32,
) -> AbiResult<()> {
    let mut ctx = caller.as_context_mut();
    drop_rep_in(&mut ctx, ty, rep)
}

/// Runs the destructor of an owned resource.
fn drop_rep_in<T>(
    ctx: &mut wasmi::StoreContextMut<'_, StoreData<T>>,
    ty: ResourceType,
    rep: u32,
) -> AbiResult<()> {
    match ty {
        ResourceType::Host(id) => {
            let data = ctx.data_mut();
            if let Some((_, dtor)) = data.host_dtors.iter().find(|(i, _)| *i == id) {
                let dtor = dtor.clone();
                dtor(&mut data.user, rep);
            }
            Ok(())
        }
        ResourceType::Guest { instance, index } => {
            let rt = &ctx.data().rt;
            if instance != rt.uid {
                return Err(abi_err(
                    "a resource of another instance cannot be dropped here",
                ));
            }
            if let Some(dtor) = rt.resource_dtors[index as usize] {
                top_up_fuel(ctx)?;
                dtor.call(ctx.as_context_mut(), &[CoreVal::I32(rep as i32)], &mut [])?;
            }
            Ok(())
        }
    }
}

fn lower_args<T>(
    cx: &Cx<'_>,
    ctx: &mut wasmi::StoreContextMut<'_, StoreData<T>>,
    tys: &[InterfaceType],
    args: &[Val],
    out: &mut Vec<CoreVal>,
) -> AbiResult<()> {
    if flat_count(&cx.comp.types, tys) <= MAX_FLAT_PARAMS {
        for (t, v) in tys.iter().zip(args) {
            cx.lower_flat(ctx, t, v, out)?;
        }
    } else {
        let (size, align, offsets) = tuple_layout(cx, tys);
        let ptr = cx.realloc(ctx, align, size)?;
        for ((t, v), off) in tys.iter().zip(args).zip(offsets) {
            cx.store(ctx, t, v, ptr + off)?;
        }
        out.push(CoreVal::I32(ptr as i32));
    }
    Ok(())
}

fn lift_results<T>(
    cx: &Cx<'_>,
    ctx: &mut wasmi::StoreContextMut<'_, StoreData<T>>,
    comp: &ComponentInner,
    tys: &[InterfaceType],
    core: &[CoreVal],
) -> AbiResult<Vec<Val>> {
    let mut out = Vec::with_capacity(tys.len());
    if flat_count(&comp.types, tys) <= MAX_FLAT_RESULTS {
        let mut r = FlatReader::new(core);
        for t in tys {
            out.push(cx.lift_flat(ctx, t, &mut r)?);
        }
    } else {
        let ptr = match core.first() {
            Some(CoreVal::I32(p)) => *p as u32,
            _ => return Err(abi_err("export returned no result pointer")),
        };
        let (_, align, offsets) = tuple_layout(cx, tys);
        if !ptr.is_multiple_of(align) {
            return Err(abi_err(format!(
                "result pointer {ptr:#x} is not aligned to {align}"
            )));
        }
        for (t, off) in tys.iter().zip(offsets) {
            out.push(cx.load(ctx, t, ptr + off)?);
        }
    }
    Ok(out)
}

/// Size, alignment and field offsets of a tuple of `tys` in memory.
fn tuple_layout(cx: &Cx<'_>, tys: &[InterfaceType]) -> (u32, u32, Vec<u32>) {
    let mut off = 0u32;
    let mut align = 1u32;
    let mut offsets = Vec::with_capacity(tys.len());
    for t in tys {
        let info = abi_info(&cx.comp.types, t);
        align = align.max(info.align32);
        offsets.push(info.next_field32(&mut off));
    }
    (off.div_ceil(align) * align, align, offsets)
}

/// The body of every lowered-import trampoline: lift the guest's arguments,
/// call the host function, lower its results.
fn call_host<T>(
    mut caller: Caller<'_, StoreData<T>>,
    host: &HostFunc<T>,
    import: &Arc<str>,
    lower_ty: TypeFuncIndex,
    options: OptionsIndex,
    params: &[CoreVal],
    results: &mut [CoreVal],
) -> std::result::Result<(), wasmi::Error> {
    let comp = caller.data().rt.component.clone();
    let opts = &comp.info.options[options];
    let cx = options_cx(
        &comp,
        &caller.data().rt,
        opts,
        std::marker::PhantomData::<T>,
    );
    let fty = &comp.types[lower_ty];
    let param_tys = &comp.types[fty.params].types;
    let result_tys = &comp.types[fty.results].types;
    let mut ctx = caller.as_context_mut();

    // A new crossing: its lifted arguments and what the host function
    // reserves share one lift budget.
    ctx.data_mut().rt.lift.start(Some(import.clone()));
    let nparams = flat_count(&comp.types, param_tys);
    let mut args = Vec::with_capacity(param_tys.len());
    if nparams <= MAX_FLAT_PARAMS {
        let mut r = FlatReader::new(params);
        for t in param_tys.iter() {
            args.push(cx.lift_flat(&mut ctx, t, &mut r)?);
        }
    } else {
        let ptr = arg_i32(params, 0)? as u32;
        check_aligned(ptr, &comp.types[fty.params].abi)?;
        let (_, _, offsets) = tuple_layout(&cx, param_tys);
        for (t, off) in param_tys.iter().zip(offsets) {
            args.push(cx.load(&mut ctx, t, ptr + off)?);
        }
    }

    let mut out = Vec::with_capacity(result_tys.len());
    {
        let mut hcx = HostContext {
            data: ctx.data_mut(),
            func_ty: Some(lower_ty),
        };
        host(&mut hcx, &args, &mut out).map_err(wasmi::Error::host)?;
    }
    if out.len() != result_tys.len() {
        return Err(wasmi::Error::host(HostError::new(format!(
            "host function returned {} values, its type has {}",
            out.len(),
            result_tys.len()
        ))));
    }

    let nresults = flat_count(&comp.types, result_tys);
    if nresults <= MAX_FLAT_RESULTS {
        let mut flat = Vec::with_capacity(1);
        for (t, v) in result_tys.iter().zip(&out) {
            cx.lower_flat(&mut ctx, t, v, &mut flat)
                .map_err(host_side)?;
        }
        for (slot, v) in results.iter_mut().zip(flat) {
            *slot = v;
        }
    } else {
        let retptr = match params.last() {
            Some(CoreVal::I32(p)) => *p as u32,
            _ => return Err(abi_err("missing return pointer")),
        };
        check_aligned(retptr, &comp.types[fty.results].abi)?;
        let (_, _, offsets) = tuple_layout(&cx, result_tys);
        for ((t, v), off) in result_tys.iter().zip(&out).zip(offsets) {
            cx.store(&mut ctx, t, v, retptr + off).map_err(host_side)?;
        }
    }
    Ok(())
}

/// A value the host returned that does not fit its declared type is the
/// host's bug, not the guest's: report it as a host failure.
fn host_side(e: wasmi::Error) -> wasmi::Error {
    match e.downcast_ref::<AbiError>() {
        Some(a) if a.0.starts_with("type mismatch") => wasmi::Error::host(HostError::new(format!(
            "host returned a bad value: {}",
            a.0
        ))),
        _ => e,
    }
}

/// Releases the all-zero, page-aligned parts of `data` (see
/// [`Instance::release_zero_pages`]).
#[cfg(unix)]
#[allow(unsafe_code)]
fn release_zero_pages(data: &mut [u8]) -> usize {
    const PAGE: usize = 4096;
    let start = data.as_ptr() as usize;
    let first = start.next_multiple_of(PAGE) - start;
    let mut released = 0;
    let mut run_start: Option<usize> = None;
    let mut offset = first;
    let flush = |data: &mut [u8], from: usize, to: usize| -> usize {
        // SAFETY: [from, to) is a page-aligned range inside `data`, which is
        // private anonymous memory from the global allocator that we hold
        // exclusively (`&mut`). MADV_DONTNEED on such memory only drops
        // pages whose content is all zeros (checked by the caller), and the
        // next access maps a fresh zero page, so the bytes are unchanged.
        let rc = unsafe {
            libc::madvise(
                data.as_mut_ptr().add(from).cast(),
                to - from,
                libc::MADV_DONTNEED,
            )
        };
        if rc == 0 {
            to - from
        } else {
            0
        }
    };
    while offset + PAGE <= data.len() {
        let zero = data[offset..offset + PAGE].iter().all(|b| *b == 0);
        match (zero, run_start) {
            (true, None) => run_start = Some(offset),
            (false, Some(from)) => {
                released += flush(data, from, offset);
                run_start = None;
            }
            _ => {}
        }
        offset += PAGE;
    }
    if let Some(from) = run_start {
        released += flush(data, from, offset);
    }
    released
}

#[cfg(not(unix))]
fn release_zero_pages(_data: &mut [u8]) -> usize {
    0
}
