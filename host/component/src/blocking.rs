//! Blocking sections: how host code tells whoever runs a guest that it is
//! about to wait.
//!
//! A guest call on the interpreter cannot yield, so an embedder that runs
//! a guest on a thread with other work to do (the HTTP server runs short
//! guests on its async runtime's own worker, so a request costs no thread
//! hand-off) must learn when the call is about to wait on something
//! outside it: a body still arriving, a client slow to read, a timer, an
//! fsync, or simply a long computation. Host code wraps each such wait in
//! [`section`] (and the interpreter enters one for the rest of a call that
//! outlasts its first fuel slice); the embedder
//! installs a hook with [`with_hook`] for the duration of a call, and the
//! hook can move the thread's other work elsewhere before the wait (for
//! tokio, `block_in_place`). With no hook installed, [`section`] just runs
//! its closure: one thread-local read.
//!
//! The hook is a plain function so that it can live in a thread-local
//! without boxing; it receives the wait as a `&mut dyn FnMut()` and must
//! call it exactly once.

use std::cell::Cell;

/// What an embedder runs around each wait of a call it runs with
/// [`with_hook`]. It must call its argument once, on the same thread.
pub type Hook = fn(&mut dyn FnMut());

thread_local! {
    static HOOK: Cell<Option<Hook>> = const { Cell::new(None) };
}

/// Runs `f`, a wait that may block the thread, through the hook installed
/// on this thread (if any).
pub fn section<R>(f: impl FnOnce() -> R) -> R {
    // Taken, not read: waits nested inside this one (a section inside a
    // section) run plainly, and the hook is put back when this one ends.
    let Some(hook) = HOOK.with(|h| h.take()) else {
        return f();
    };
    let _restore = Restore(Some(hook));
    let mut f = Some(f);
    let mut out = None;
    hook(&mut || {
        if let Some(f) = f.take() {
            out = Some(f());
        }
    });
    match out {
        Some(r) => r,
        // A hook that did not call its argument broke its contract; run
        // the wait here rather than invent a result.
        None => match f.take() {
            Some(f) => f(),
            None => unreachable!("the wait ran but left no result"),
        },
    }
}

/// Whether a hook is installed on this thread (and not taken by a
/// [`section`] in progress): a long computation can then offer itself as
/// a section too (the interpreter does, after a call's first fuel slice).
pub fn hooked() -> bool {
    HOOK.with(|h| h.get().is_some())
}

/// Runs `f` with `hook` around every [`section`] entered on this thread
/// until `f` returns (or unwinds).
pub fn with_hook<R>(hook: Hook, f: impl FnOnce() -> R) -> R {
    let previous = HOOK.with(|h| h.replace(Some(hook)));
    let _restore = Restore(previous);
    f()
}

/// Puts the thread's hook back as it was, also on unwind.
struct Restore(Option<Hook>);

impl Drop for Restore {
    fn drop(&mut self) {
        HOOK.with(|h| h.set(self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    static CALLS: AtomicUsize = AtomicUsize::new(0);

    fn counting(wait: &mut dyn FnMut()) {
        CALLS.fetch_add(1, Ordering::SeqCst);
        wait();
    }

    #[test]
    fn sections_run_through_the_hook_only_inside_with_hook() {
        let before = CALLS.load(Ordering::SeqCst);
        assert_eq!(section(|| 1), 1);
        assert_eq!(CALLS.load(Ordering::SeqCst), before);
        assert!(!hooked());
        let r = with_hook(counting, || {
            assert!(hooked());
            assert!(!section(hooked), "taken while a section runs");
            // Nested sections run plainly inside the outer one.
            let a = section(|| section(|| 2) + 1);
            let b = section(|| 4);
            a + b
        });
        assert_eq!(r, 7);
        assert_eq!(CALLS.load(Ordering::SeqCst), before + 3);
        // Gone after with_hook returns, and after a panic inside it.
        let _ = std::panic::catch_unwind(|| with_hook(counting, || panic!("guest trap")));
        assert_eq!(section(|| 5), 5);
        assert_eq!(CALLS.load(Ordering::SeqCst), before + 3);
        assert!(!hooked());
    }

    #[test]
    fn a_hook_that_skips_the_wait_still_gets_it_run() {
        fn lazy(_: &mut dyn FnMut()) {}
        assert_eq!(with_hook(lazy, || section(|| 9)), 9);
    }
}
