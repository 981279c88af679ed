//! Host implementations of imports, found by WIT name.
//!
//! A [`Linker`] maps interface names (`wasi:io/streams@0.2.6`) to host
//! functions and host resource types. A component's import is satisfied by
//! the interface with the same name and a semver-compatible version (see
//! [`crate::names`]), so one host implementation of `wasi:io@0.2.x` serves
//! guests built against any 0.2 patch release.

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime_environ::component::TypeFuncIndex;

use crate::error::HostError;
use crate::names::{compat_version, WitName};
use crate::store::StoreData;
use crate::values::Val;
use crate::wave::TypeList;

/// What a host function sees of the calling instance.
pub struct HostContext<'a, T> {
    pub(crate) data: &'a mut StoreData<T>,
    /// The type of the lowered import being called, if known; the type
    /// lists are built from it only when asked for.
    pub(crate) func_ty: Option<TypeFuncIndex>,
}

impl<T> HostContext<'_, T> {
    /// The embedder's per-instance state.
    pub fn data(&self) -> &T {
        &self.data.user
    }

    pub fn data_mut(&mut self) -> &mut T {
        &mut self.data.user
    }

    /// The name of the calling component, for logs.
    pub fn component(&self) -> &str {
        &self.data.rt.component.name
    }

    /// When the export call in progress must end, if it has a deadline.
    /// Host functions that block (sleeps, polls) must not wait past it.
    pub fn deadline(&self) -> Option<std::time::Instant> {
        self.data.rt.call_deadline
    }

    /// Accounts for `bytes` the host function is about to allocate on the
    /// guest's behalf (e.g. `get-random-bytes(len)` before making `len`
    /// bytes), against the same per-call lift budget as the lifted
    /// arguments: the instance's memory limit. Call it *before* allocating
    /// from a length the guest chose; over the budget, return the error and
    /// the call ends with [`crate::TrapKind::LiftBudget`], which names the
    /// limit.
    pub fn reserve(&mut self, bytes: u64) -> Result<(), HostError> {
        let bytes = usize::try_from(bytes).unwrap_or(usize::MAX);
        self.data.rt.lift.charge(bytes).map_err(HostError::from)
    }

    /// Bytes still free in this call's lift budget, for host functions that
    /// may answer with less than asked (a stream `read(len)`); such a
    /// function should take no more than this, then [`Self::reserve`] it.
    pub fn lift_budget_left(&self) -> u64 {
        self.data.rt.lift.left() as u64
    }

    /// The WIT types of the called function's parameters (what `args`
    /// holds), e.g. to encode them with [`crate::wrpc::encode`]. `None`
    /// where no function type is known.
    pub fn param_types(&self) -> Option<TypeList> {
        let comp = &self.data.rt.component;
        let f = &comp.types[self.func_ty?];
        Some(TypeList::new(
            comp.clone(),
            comp.types[f.params].types.to_vec(),
        ))
    }

    /// The WIT types of the called function's results (what it must push),
    /// e.g. to decode them with [`crate::wrpc::decode`]. `None` where no
    /// function type is known.
    pub fn result_types(&self) -> Option<TypeList> {
        let comp = &self.data.rt.component;
        let f = &comp.types[self.func_ty?];
        Some(TypeList::new(
            comp.clone(),
            comp.types[f.results].types.to_vec(),
        ))
    }
}

/// A function answering every otherwise undefined function of an
/// interface; receives the function's name. Used to deny whole interfaces
/// (sockets, filesystem) with their proper error codes.
pub type HostFallback<T> = Arc<
    dyn Fn(&str, &mut HostContext<'_, T>, &[Val], &mut Vec<Val>) -> Result<(), HostError>
        + Send
        + Sync,
>;

/// A host function: receives the lifted arguments, pushes its results.
pub type HostFunc<T> = Arc<
    dyn Fn(&mut HostContext<'_, T>, &[Val], &mut Vec<Val>) -> Result<(), HostError> + Send + Sync,
>;

/// Called when a guest drops its last own handle to a host resource, with
/// the resource's representation.
pub type HostResourceDtor<T> = Arc<dyn Fn(&mut T, u32) + Send + Sync>;

/// Host functions and resources of one interface.
pub struct HostInterface<T> {
    name: String,
    funcs: HashMap<String, HostFunc<T>>,
    resources: HashMap<String, u32>,
    dtors: Vec<(u32, HostResourceDtor<T>)>,
    fallback: Option<HostFallback<T>>,
}

impl<T: 'static> HostInterface<T> {
    /// Answers every function of this interface that has no definition of
    /// its own.
    pub fn fallback(
        &mut self,
        f: impl Fn(&str, &mut HostContext<'_, T>, &[Val], &mut Vec<Val>) -> Result<(), HostError>
            + Send
            + Sync
            + 'static,
    ) -> &mut Self {
        self.fallback = Some(Arc::new(f));
        self
    }

    /// Defines a function, by its name inside the interface
    /// (`get-environment`, `[method]output-stream.write`,
    /// `[constructor]blob`, `[static]blob.open`).
    pub fn func(
        &mut self,
        name: &str,
        f: impl Fn(&mut HostContext<'_, T>, &[Val], &mut Vec<Val>) -> Result<(), HostError>
            + Send
            + Sync
            + 'static,
    ) -> &mut Self {
        self.funcs.insert(name.to_string(), Arc::new(f));
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn has_func(&self, name: &str) -> bool {
        self.funcs.contains_key(name)
    }
}

/// A set of host implementations to instantiate components against.
pub struct Linker<T> {
    interfaces: Vec<HostInterface<T>>,
    /// Index of the interface named "" holding top-level function imports.
    next_resource: u32,
    resource_names: Vec<String>,
}

impl<T> Default for Linker<T> {
    fn default() -> Self {
        Linker {
            interfaces: Vec::new(),
            next_resource: 0,
            resource_names: Vec::new(),
        }
    }
}

impl<T: 'static> Linker<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The interface named exactly `name` (e.g. `wasi:io/streams@0.2.6`),
    /// created empty if it does not exist yet. Use `""` for functions a
    /// world imports directly rather than through an interface.
    pub fn interface(&mut self, name: &str) -> &mut HostInterface<T> {
        let pos = match self.interfaces.iter().position(|i| i.name == name) {
            Some(p) => p,
            None => {
                self.interfaces.push(HostInterface {
                    name: name.to_string(),
                    funcs: HashMap::new(),
                    resources: HashMap::new(),
                    dtors: Vec::new(),
                    fallback: None,
                });
                self.interfaces.len() - 1
            }
        };
        &mut self.interfaces[pos]
    }

    /// Defines a host resource type `resource` in interface `iface` and
    /// returns its id, which the host puts in [`crate::Resource`] values.
    /// Defining the same resource twice returns the same id.
    pub fn resource(
        &mut self,
        iface: &str,
        resource: &str,
        dtor: impl Fn(&mut T, u32) + Send + Sync + 'static,
    ) -> u32 {
        if let Some(id) = self.interface(iface).resources.get(resource) {
            return *id;
        }
        let id = self.next_resource;
        self.next_resource += 1;
        self.resource_names.push(format!("{iface}#{resource}"));
        let i = self.interface(iface);
        i.resources.insert(resource.to_string(), id);
        i.dtors.push((id, Arc::new(dtor)));
        id
    }

    /// The name a host resource id was defined with.
    pub fn resource_name(&self, id: u32) -> Option<&str> {
        self.resource_names.get(id as usize).map(|s| s.as_str())
    }

    /// Finds the interface that satisfies an import named `import`: an
    /// exact match first, else the highest semver-compatible version.
    pub(crate) fn find(&self, import: &str) -> Option<&HostInterface<T>> {
        if let Some(i) = self.interfaces.iter().find(|i| i.name == import) {
            return Some(i);
        }
        let want = WitName::parse(import);
        let want_version = want.version.as_ref()?;
        self.interfaces
            .iter()
            .filter_map(|i| {
                let have = WitName::parse(&i.name);
                let v = have.version?;
                (have.unversioned == want.unversioned
                    && compat_version(&v) == compat_version(want_version))
                .then_some((v, i))
            })
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, i)| i)
    }

    pub(crate) fn lookup_func(&self, iface: &str, name: &str) -> Result<HostFunc<T>, String> {
        let i = self
            .find(iface)
            .ok_or_else(|| "the host provides no compatible interface".to_string())?;
        if let Some(f) = i.funcs.get(name) {
            return Ok(f.clone());
        }
        match &i.fallback {
            Some(fb) => {
                let (fb, name) = (fb.clone(), name.to_string());
                Ok(Arc::new(
                    move |cx: &mut HostContext<'_, T>, args: &[Val], out: &mut Vec<Val>| {
                        fb(&name, cx, args, out)
                    },
                ))
            }
            None => Err(format!("the host's `{}` has no function `{name}`", i.name)),
        }
    }

    pub(crate) fn lookup_resource(&self, iface: &str, name: &str) -> Result<u32, String> {
        let i = self
            .find(iface)
            .ok_or_else(|| "the host provides no compatible interface".to_string())?;
        match i.resources.get(name) {
            Some(id) => Ok(*id),
            // An interface the embedder only forwards (a fallback and no
            // resources of its own): the host does not have it at all.
            None if i.fallback.is_some() && i.resources.is_empty() => Err(format!(
                "the host does not provide `{}`; calls to it can be forwarded over a link, \
                 but its resources cannot",
                i.name
            )),
            None => Err(format!("the host's `{}` has no resource `{name}`", i.name)),
        }
    }

    pub(crate) fn dtors(&self) -> Vec<(u32, HostResourceDtor<T>)> {
        self.interfaces
            .iter()
            .flat_map(|i| i.dtors.iter().cloned())
            .collect()
    }

    /// Names of all interfaces defined, for diagnostics.
    pub fn interface_names(&self) -> impl Iterator<Item = &str> {
        self.interfaces.iter().map(|i| i.name.as_str())
    }
}
