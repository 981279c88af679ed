//! Per-instance runtime state kept inside the wasmi store.
//!
//! Each component instance gets its own `wasmi::Store`, so a guest that
//! traps or exhausts a limit takes nothing else down with it. The store's
//! data holds the embedder's state `T` next to what the canonical ABI needs
//! at run time: the extracted memories, `realloc` and `post-return`
//! functions, and one resource handle table per component instance.

use std::sync::Arc;

use wasmi::{Func, Memory, StoreLimits};

use crate::abi::{abi_err, AbiResult};
use crate::component::ComponentInner;
use crate::error::LiftBudgetError;
use crate::linker::HostResourceDtor;
use crate::values::ResourceType;

/// One slot of a handle table: what a guest's `i32` handle stands for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Handle {
    /// The guest's (or host's) representation of the resource.
    pub rep: u32,
    /// Resource type, as a `ResourceIndex` of the component.
    pub resource: u32,
    /// Own handles may be dropped and moved; borrow handles only dropped.
    pub own: bool,
    /// A borrow the host lent to the guest for one export call: it must be
    /// dropped before that call returns.
    pub scoped: bool,
}

/// A component instance's table of resource handles. Index 0 is never
/// handed out, as the canonical ABI reserves it.
#[derive(Debug, Default)]
pub(crate) struct HandleTable {
    slots: Vec<Option<Handle>>,
    free: Vec<u32>,
}

/// Upper bound on live handles per table, so a guest cannot make the host
/// allocate without limit through `resource.new`.
pub(crate) const MAX_HANDLES: usize = 1 << 20;

impl HandleTable {
    pub fn insert(&mut self, h: Handle) -> Option<u32> {
        if self.slots.is_empty() {
            self.slots.push(None);
        }
        if let Some(i) = self.free.pop() {
            self.slots[i as usize] = Some(h);
            return Some(i);
        }
        if self.slots.len() >= MAX_HANDLES {
            return None;
        }
        self.slots.push(Some(h));
        Some((self.slots.len() - 1) as u32)
    }

    pub fn get(&self, i: u32) -> Option<&Handle> {
        self.slots.get(i as usize).and_then(|s| s.as_ref())
    }

    pub fn remove(&mut self, i: u32) -> Option<Handle> {
        let h = self.slots.get_mut(i as usize)?.take()?;
        self.free.push(i);
        Some(h)
    }

    pub fn live(&self) -> usize {
        self.slots.iter().filter(|s| s.is_some()).count()
    }
}

/// Bytes the host holds for one crossing out of the guest: the values
/// lifted from the arguments of one import call (plus what the host function
/// reserves with [`crate::HostContext::reserve`] before allocating on the
/// guest's behalf), or the results of one export call.
///
/// Lifting charges what the host allocates, before allocating it: one byte
/// per byte of a string or `list<u8>`, and the size of the [`crate::Val`]s
/// (and field names) of every other list, record, tuple and variant. So a
/// guest cannot turn a small memory into a large host allocation, neither
/// with a list whose length it does not have (the charge comes before the
/// bounds check) nor with many list elements pointing at the same bytes.
/// The budget is the instance's memory limit: a guest cannot legitimately
/// hand over more than its memory holds.
#[derive(Debug, Clone)]
pub(crate) struct LiftBudget {
    pub limit: usize,
    pub used: usize,
    /// The import being called (`iface#func`), for the error; `None` while
    /// lifting an export's results.
    pub import: Option<Arc<str>>,
}

impl LiftBudget {
    pub fn new(limit: usize) -> LiftBudget {
        LiftBudget {
            limit,
            used: 0,
            import: None,
        }
    }

    /// Starts a new crossing: the arguments of `import`, or (`None`) an
    /// export's results.
    pub fn start(&mut self, import: Option<Arc<str>>) {
        self.used = 0;
        self.import = import;
    }

    /// Accounts for `bytes` more, or refuses if that goes over the limit.
    pub fn charge(&mut self, bytes: usize) -> Result<(), LiftBudgetError> {
        let wanted = self.used.saturating_add(bytes);
        if wanted > self.limit {
            return Err(LiftBudgetError {
                wanted: wanted as u64,
                budget: self.limit as u64,
                import: self.import.clone(),
            });
        }
        self.used = wanted;
        Ok(())
    }

    pub fn left(&self) -> usize {
        self.limit.saturating_sub(self.used)
    }
}

/// Runtime state of one instantiated component (not generic over `T`).
pub(crate) struct Runtime {
    pub component: Arc<ComponentInner>,
    /// Unique among all instances of this process; tags guest resources.
    pub uid: u64,
    pub memories: Vec<Option<Memory>>,
    pub reallocs: Vec<Option<Func>>,
    pub post_returns: Vec<Option<Func>>,
    /// One table per `RuntimeComponentInstanceIndex`.
    pub tables: Vec<HandleTable>,
    /// Per `ResourceIndex`: the host or guest resource type it denotes.
    pub resource_types: Vec<ResourceType>,
    /// Per `DefinedResourceIndex`: the guest destructor, if any.
    pub resource_dtors: Vec<Option<Func>>,
    /// Borrow handles lent to the guest for the call in progress.
    pub scoped_borrows: u32,
    /// When the export call in progress must end.
    pub call_deadline: Option<std::time::Instant>,
    /// Fuel of the call in progress not yet handed to the guest. Fuel is
    /// given out in slices so that the deadline can be checked between
    /// them; nested calls (realloc, post-return, destructors) draw on the
    /// same pool.
    pub fuel_pool: u64,
    /// Host bytes held for the crossing in progress (see [`LiftBudget`]).
    pub lift: LiftBudget,
}

impl Runtime {
    /// Handle `handle` in the table of component instance `inst`, checked to
    /// denote a resource of the same type as `resource` (a `ResourceIndex`;
    /// two imports of one host resource at different versions are the same
    /// type).
    pub fn handle(&self, inst: usize, handle: u32, resource: u32) -> AbiResult<Handle> {
        let h = self.tables[inst]
            .get(handle)
            .ok_or_else(|| abi_err(format!("unknown resource handle {handle}")))?;
        if self.resource_types[h.resource as usize] != self.resource_types[resource as usize] {
            return Err(abi_err(format!(
                "handle {handle} has the wrong resource type"
            )));
        }
        Ok(*h)
    }
}

/// What a wasmi store of a component instance carries.
pub struct StoreData<T> {
    pub(crate) user: T,
    pub(crate) limits: StoreLimits,
    pub(crate) rt: Runtime,
    pub(crate) host_dtors: Vec<(u32, HostResourceDtor<T>)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_adds_up_and_refuses_before_going_over() {
        let mut b = LiftBudget::new(100);
        b.start(Some("i#f".into()));
        b.charge(60).unwrap();
        b.charge(40).unwrap();
        assert_eq!(b.left(), 0);
        let e = b.charge(1).unwrap_err();
        assert_eq!((e.wanted, e.budget), (101, 100));
        assert_eq!(e.import.as_deref(), Some("i#f"));
        assert_eq!(b.used, 100, "a refused charge is not counted");
        b.start(None);
        assert_eq!(b.left(), 100);
        let e = b.charge(usize::MAX).unwrap_err();
        assert_eq!(e.wanted, usize::MAX as u64, "saturates instead of wrapping");
    }
}
