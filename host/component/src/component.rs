//! Loading a component: validate, flatten, compile.
//!
//! `wasmtime-environ`'s translator validates the component binary and
//! flattens any nesting of components and instances into a linear list of
//! *initializers* (instantiate this core module with these arguments, lower
//! that import, extract this memory, ...) plus the list of core modules it
//! contains. We keep that description and compile each core module with
//! wasmi; instantiation (in [`crate::instance`]) then just replays the
//! initializers. This is the same division of labour wasmtime uses, which
//! keeps the component model's instantiation rules in one well-tested place.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use wasmtime_environ::component::{
    ComponentTypes, ComponentTypesBuilder, Export, ExportIndex, GlobalInitializer,
    InstantiateModule, Trampoline, TrampolineIndex, Translator, TypeDef, TypeResourceTable,
};
use wasmtime_environ::{EntityIndex, PrimaryMap, ScopeVec, StaticModuleIndex, Tunables};

use crate::error::{Error, Result};
use crate::types::{self, FuncSig};

/// How wasmi turns wasm into its internal bytecode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compilation {
    /// Validate and translate every function up front.
    Eager,
    /// Validate up front, translate each function on first call (default).
    #[default]
    LazyTranslation,
    /// Validate and translate on first call; only for trusted input.
    Lazy,
}

/// Limits applied to every instance of a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Fuel (roughly: wasm instructions) one export call may use.
    pub fuel_per_call: Option<u64>,
    /// Wall-clock time one export call may take.
    pub deadline: Option<Duration>,
    /// Cap on each instance's linear memories, in bytes. Also the lift
    /// budget: what the host may hold for the values it lifts out of the
    /// guest in one crossing (see the crate docs).
    pub memory_bytes: usize,
    /// Cap on table elements per table.
    pub table_elements: usize,
    /// Cap on live instances of one component.
    pub max_instances: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            fuel_per_call: Some(10_000_000_000),
            deadline: Some(Duration::from_secs(10)),
            memory_bytes: 64 << 20,
            table_elements: 100_000,
            max_instances: 16,
        }
    }
}

/// Engine-wide settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub compilation: Compilation,
    /// Maximum wasm call depth before a guest is stopped with a stack
    /// overflow.
    pub max_recursion_depth: usize,
    /// Limits given to components that are not given their own.
    pub default_limits: Limits,
    /// Count fuel. Fuel is what enforces both the per-call fuel limit and
    /// the wall-clock deadline (checked between fuel slices); turning it
    /// off makes guests faster but unstoppable, so it exists only to
    /// measure what metering costs.
    pub metering: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            compilation: Compilation::default(),
            max_recursion_depth: 10_000,
            default_limits: Limits::default(),
            metering: true,
        }
    }
}

/// Engine settings shared by the components loaded with it.
///
/// Each component gets a wasmi engine of its own (see
/// [`Engine::wasmi_engine`]): a wasmi engine keeps the code of every module
/// it ever compiled until the engine itself is dropped, so one engine per
/// host would grow with every redeploy. Per component, the code goes away
/// with the component's last instance.
#[derive(Clone)]
pub struct Engine {
    pub(crate) config: Arc<EngineConfig>,
}

impl Engine {
    pub fn new(config: EngineConfig) -> Engine {
        Engine {
            config: Arc::new(config),
        }
    }

    fn wasmi_engine(&self) -> wasmi::Engine {
        let config = &self.config;
        let mut c = wasmi::Config::default();
        c.consume_fuel(config.metering);
        c.set_max_recursion_depth(config.max_recursion_depth);
        c.compilation_mode(match config.compilation {
            Compilation::Eager => wasmi::CompilationMode::Eager,
            Compilation::LazyTranslation => wasmi::CompilationMode::LazyTranslation,
            Compilation::Lazy => wasmi::CompilationMode::Lazy,
        });
        wasmi::Engine::new(&c)
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new(EngineConfig::default())
    }
}

/// A core module of the component, compiled by wasmi.
pub(crate) struct CoreModule {
    pub module: wasmi::Module,
    /// Export names by entity index: the initializers refer to a static
    /// module's exports by index, wasmi looks them up by name.
    pub export_names: HashMap<EntityIndex, String>,
}

/// Everything known about a loaded component; shared by its instances.
pub(crate) struct ComponentInner {
    pub name: String,
    pub info: wasmtime_environ::component::Component,
    pub trampolines: PrimaryMap<TrampolineIndex, Trampoline>,
    pub types: ComponentTypes,
    pub modules: PrimaryMap<StaticModuleIndex, CoreModule>,
    pub engine: Engine,
    /// This component's own wasmi engine, holding its compiled code.
    pub wasmi: wasmi::Engine,
    pub limits: Limits,
    pub live_instances: AtomicUsize,
}

/// A loaded, validated and compiled component, ready to instantiate.
#[derive(Clone)]
pub struct Component {
    pub(crate) inner: Arc<ComponentInner>,
}

/// The binary preamble of components (layer 1, version 0x0d).
const COMPONENT_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00];
const CORE_MODULE_HEADER: [u8; 8] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];

impl Component {
    /// Validates and compiles a component binary. `name` identifies it in
    /// every error and log line (usually the component id or file name).
    pub fn new(engine: &Engine, name: &str, bytes: &[u8]) -> Result<Component> {
        Self::with_limits(engine, name, bytes, engine.config.default_limits.clone())
    }

    /// Like [`Component::new`] with limits of its own.
    pub fn with_limits(
        engine: &Engine,
        name: &str,
        bytes: &[u8],
        limits: Limits,
    ) -> Result<Component> {
        let component = name.to_string();
        check_header(&component, bytes)?;

        let tunables = Tunables::default_u32();
        let mut validator =
            wasmparser::Validator::new_with_features(wasmparser::WasmFeatures::default());
        let mut types = ComponentTypesBuilder::new(&validator);
        let scope = ScopeVec::new();
        let translator = Translator::new(&tunables, &mut validator, &mut types, &scope);
        let (translation, static_modules) =
            translator
                .translate(bytes)
                .map_err(|e| Error::InvalidComponent {
                    component: component.clone(),
                    reason: format!("{e:#}"),
                })?;

        let wasmi_engine = engine.wasmi_engine();
        let mut modules = PrimaryMap::new();
        for (index, m) in static_modules.iter() {
            let module =
                wasmi::Module::new(&wasmi_engine, m.wasm).map_err(|e| Error::InvalidComponent {
                    component: component.clone(),
                    reason: format!("core module #{} does not compile: {e}", index.as_u32()),
                })?;
            let export_names = m
                .module
                .exports
                .iter()
                .map(|(name, idx)| (*idx, m.module.strings[*name].to_string()))
                .collect();
            modules.push(CoreModule {
                module,
                export_names,
            });
        }

        let (types, _) = types.finish(&translation.component);
        let info = translation.component;
        check_supported(&component, &info, &translation.trampolines)?;
        Ok(Component {
            inner: Arc::new(ComponentInner {
                name: component,
                info,
                trampolines: translation.trampolines,
                types,
                modules,
                engine: engine.clone(),
                wasmi: wasmi_engine,
                limits,
                live_instances: AtomicUsize::new(0),
            }),
        })
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// Live instances of this component right now.
    pub fn live_instances(&self) -> usize {
        self.inner.live_instances.load(Ordering::Relaxed)
    }

    /// Every import `linker` cannot answer, as `(name, reason)`: exactly
    /// what [`crate::Instance::new`] would refuse, found without
    /// instantiating (for a dry run such as `twig validate`).
    pub fn unresolved_imports<T: 'static>(
        &self,
        linker: &crate::Linker<T>,
    ) -> Vec<(String, String)> {
        crate::instance::unresolved_imports(linker, self)
    }

    /// The component's imports, as written in the binary
    /// (e.g. `wasi:io/streams@0.2.6`), with the functions each one needs.
    pub fn imports(&self) -> Vec<ImportDesc> {
        let info = &self.inner.info;
        let mut out: Vec<ImportDesc> = info
            .import_types
            .iter()
            .map(|(_, (name, ext))| ImportDesc {
                name: name.clone(),
                kind: types::def_kind(&ext.ty),
                items: Vec::new(),
            })
            .collect();
        for (_, (import, path)) in info.imports.iter() {
            if let Some(item) = path.first() {
                out[import.as_u32() as usize].items.push(item.clone());
            }
        }
        out
    }

    /// The component's exported functions, as `name` for top-level
    /// functions and `interface#name` for functions of exported interfaces.
    pub fn exports(&self) -> Vec<(String, FuncSig)> {
        let mut out = Vec::new();
        for (name, (idx, _)) in self.inner.info.exports.raw_iter() {
            match &self.inner.info.export_items[*idx] {
                Export::LiftedFunction { ty, .. } => {
                    out.push((name.to_string(), types::func_sig(&self.inner.types, *ty)))
                }
                Export::Instance { exports, .. } => {
                    for (fname, (fidx, _)) in exports.raw_iter() {
                        if let Export::LiftedFunction { ty, .. } =
                            &self.inner.info.export_items[*fidx]
                        {
                            out.push((
                                format!("{name}#{fname}"),
                                types::func_sig(&self.inner.types, *ty),
                            ));
                        }
                    }
                }
                _ => {}
            }
        }
        let names = self.resource_names();
        for (_, sig) in &mut out {
            for (_, ty) in &mut sig.params {
                *ty = types::name_resources(ty, &names);
            }
            for ty in &mut sig.results {
                *ty = types::name_resources(ty, &names);
            }
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The names of the component's resource types, by resource index:
    /// imported ones by their name in the import, exported ones by their
    /// name in the export. (The binary's flattened type information keeps
    /// only indices.)
    fn resource_names(&self) -> HashMap<u32, String> {
        let info = &self.inner.info;
        let mut names = HashMap::new();
        for (res, import) in info.imported_resources.iter() {
            if let Some(name) = info.imports[*import].1.last() {
                names.insert(res.as_u32(), name.clone());
            }
        }
        let mut note = |name: &str, idx: ExportIndex| {
            if let Export::Type(TypeDef::Resource(t)) = &info.export_items[idx] {
                if let TypeResourceTable::Concrete { ty, .. } = &self.inner.types[*t] {
                    names.entry(ty.as_u32()).or_insert_with(|| name.to_string());
                }
            }
        };
        for (name, (idx, _)) in info.exports.raw_iter() {
            match &info.export_items[*idx] {
                Export::Instance { exports, .. } => {
                    for (tname, (tidx, _)) in exports.raw_iter() {
                        note(tname, *tidx);
                    }
                }
                _ => note(name, *idx),
            }
        }
        names
    }
}

/// One import of a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportDesc {
    pub name: String,
    pub kind: &'static str,
    /// Functions and resources used from an imported instance.
    pub items: Vec<String>,
}

fn check_header(component: &str, bytes: &[u8]) -> Result<()> {
    if bytes.len() < 8 || bytes[..4] != COMPONENT_HEADER[..4] {
        return Err(Error::NotAComponent {
            component: component.to_string(),
            reason: "the file does not start with the WebAssembly magic bytes `\\0asm`".into(),
        });
    }
    if bytes[..8] == CORE_MODULE_HEADER {
        return Err(Error::NotAComponent {
            component: component.to_string(),
            reason: "this is a core WebAssembly module, not a component; build for wasm32-wasip2 or wrap it with `wasm-tools component new`".into(),
        });
    }
    if bytes[..8] != COMPONENT_HEADER {
        return Err(Error::NotAComponent {
            component: component.to_string(),
            reason: format!(
                "unknown WebAssembly version/layer bytes {:02x?}",
                &bytes[4..8]
            ),
        });
    }
    Ok(())
}

/// Refuses, at load time and by name, the parts of the component model
/// this layer does not run (async, streams, threads, ...), so they never
/// surface as a confusing failure during a call.
fn check_supported(
    component: &str,
    info: &wasmtime_environ::component::Component,
    trampolines: &PrimaryMap<TrampolineIndex, Trampoline>,
) -> Result<()> {
    let unsupported = |feature: String| Error::Unsupported {
        component: component.to_string(),
        feature,
    };
    for (_, t) in trampolines.iter() {
        match t {
            Trampoline::LowerImport { .. }
            | Trampoline::ResourceNew { .. }
            | Trampoline::ResourceRep { .. }
            | Trampoline::ResourceDrop { .. }
            | Trampoline::Trap => {}
            other => return Err(unsupported(format!("intrinsic {}", trampoline_name(other)))),
        }
    }
    for (_, opts) in info.options.iter() {
        if opts.async_ {
            return Err(unsupported(
                "async lift/lower (component-model async)".into(),
            ));
        }
    }
    for init in &info.initializers {
        if let GlobalInitializer::InstantiateModule(InstantiateModule::Import(..), _) = init {
            return Err(unsupported("importing core modules".into()));
        }
    }
    for (_, (name, ext)) in info.import_types.iter() {
        if let TypeDef::Component(_) | TypeDef::Module(_) = ext.ty {
            return Err(unsupported(format!(
                "import `{name}` of a component or module"
            )));
        }
    }
    Ok(())
}

fn trampoline_name(t: &Trampoline) -> String {
    let dbg = format!("{t:?}");
    dbg.split([' ', '{', '('])
        .next()
        .unwrap_or("unknown")
        .to_string()
}
