//! Lock helpers shared by the whole crate.
//!
//! A thread that panics while holding one of the host's locks poisons it;
//! the data behind these locks stays consistent between statements (no
//! invariant spans an unlock), so every user carries on with the data
//! rather than propagate the panic to every later caller.

use std::sync::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Read-locks an RwLock, carrying on if a panicking thread poisoned it.
pub(crate) fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// Write-locks an RwLock, carrying on if a panicking thread poisoned it.
pub(crate) fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// Locks a mutex, carrying on if a panicking thread poisoned it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
