//! Where blocking work runs, so that one kind cannot starve another.
//!
//! * **Guest calls** that arrive over the lattice (wRPC) or the admin
//!   socket (`twig invoke`) run on the [`GuestPool`]: its own threads, as
//!   many as the board runs instances. A burst of remote calls queues here.
//! * **Control-plane work** (deploys and their compiles, the outbox drain's
//!   reads and acks, bucket writes, status) runs on the main runtime's
//!   blocking pool, which no guest occupies; the heartbeat and the drain
//!   run on the main runtime's thread.
//! * Each HTTP listener has its runtime and guest threads of its own
//!   (`twig-http-server`), and the message bus a thread per subscription.

use std::future::Future;
use std::pin::Pin;

/// A pool of threads for guest calls (a tokio runtime used only for its
/// blocking pool: nothing async runs on it).
pub struct GuestPool {
    rt: tokio::runtime::Runtime,
}

impl GuestPool {
    /// A pool of at most `threads` threads, made as calls need them.
    pub fn new(threads: usize) -> std::io::Result<GuestPool> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(threads.max(1))
            .thread_name("twig-guest")
            .build()?;
        Ok(GuestPool { rt })
    }

    /// A handle to give the host ([`crate::host::Host::set_guest_pool`]).
    pub fn handle(&self) -> GuestHandle {
        GuestHandle(self.rt.handle().clone())
    }

    /// Leaves threads still running a guest behind (they end with the
    /// process, or at their deadline), rather than wait for them.
    pub fn shutdown(self) {
        self.rt.shutdown_background();
    }
}

/// Runs closures on a [`GuestPool`]; cheap to clone.
#[derive(Clone)]
pub struct GuestHandle(tokio::runtime::Handle);

/// The result of [`run_on`], boxed so that callers need not name it.
pub type Running<R> = Pin<Box<dyn Future<Output = Result<R, String>> + Send>>;

/// Runs `f` on `pool`, or on the current runtime's blocking pool when
/// there is none (tests that open a host without `twig up`).
pub fn run_on<R: Send + 'static>(
    pool: Option<&GuestHandle>,
    f: impl FnOnce() -> R + Send + 'static,
) -> Running<R> {
    let join = match pool {
        Some(h) => h.0.spawn_blocking(f),
        None => tokio::task::spawn_blocking(f),
    };
    Box::pin(async move { join.await.map_err(|e| format!("guest task failed: {e}")) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_work_does_not_wait_for_the_callers_blocking_pool() {
        // The caller's runtime has one blocking thread, and it is busy for
        // as long as the test runs: work on the guest pool still finishes.
        let caller = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .max_blocking_threads(1)
            .build()
            .unwrap();
        let guests = GuestPool::new(2).unwrap();
        let handle = guests.handle();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let answer = caller.block_on(async move {
            let _busy = tokio::task::spawn_blocking(move || held.recv());
            tokio::time::timeout(
                std::time::Duration::from_secs(5),
                run_on(Some(&handle), || 6 * 7),
            )
            .await
        });
        let _ = release.send(());
        assert_eq!(answer.ok().and_then(Result::ok), Some(42));
        guests.shutdown();
    }
}
