//! Operations on one component or provider id, run in arrival order.
//!
//! `component.scale`, `component.update` and `provider.start` are answered
//! at once and run afterwards. Run each in a task of its own and a
//! scale-to-0 could overtake an earlier scale-to-2 and leave the component
//! running. So each id keeps the tail of a chain: an operation is queued
//! (synchronously, by the dispatcher, which takes requests one at a time)
//! behind the one before it on the same id, and starts when that one has
//! finished. Different ids still run side by side, as many as
//! `control.max_concurrent_scales` allows. The dispatcher never waits here.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

/// The last queued operation of each id that has one.
#[derive(Default)]
pub(crate) struct Ordered {
    tails: Arc<Mutex<HashMap<String, Tail>>>,
    next: std::sync::atomic::AtomicU64,
}

struct Tail {
    /// Which operation this is (to remove only its own entry when done).
    seq: u64,
    /// Resolves (or is dropped) when that operation has finished.
    done: oneshot::Receiver<()>,
}

impl Ordered {
    /// Runs `work` after every operation queued earlier for `id`.
    pub fn run<F>(&self, id: &str, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let seq = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (finished, done) = oneshot::channel::<()>();
        let before = lock(&self.tails).insert(id.to_string(), Tail { seq, done });
        let tails = self.tails.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            if let Some(before) = before {
                // An error means it ended without saying so (it panicked):
                // it is finished all the same.
                let _ = before.done.await;
            }
            work.await;
            let mut tails = lock(&tails);
            if tails.get(&id).is_some_and(|t| t.seq == seq) {
                tails.remove(&id);
            }
            drop(tails);
            let _ = finished.send(());
        });
    }

    /// Runs `work` after every operation queued earlier for `id`, and
    /// hands its result back: for an operation that answers only when it
    /// is done (`provider.stop`), so it cannot overtake a start queued
    /// before it. The caller awaits the answer off the dispatcher.
    pub fn run_for<T, F>(&self, id: &str, work: F) -> oneshot::Receiver<T>
    where
        T: Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        self.run(id, async move {
            let _ = tx.send(work.await);
        });
        rx
    }

    /// Whether `id` has an operation queued or running.
    pub fn has_work(&self, id: &str) -> bool {
        lock(&self.tails).contains_key(id)
    }

    /// Ids with an operation queued or running.
    #[cfg(test)]
    pub fn busy(&self) -> usize {
        lock(&self.tails).len()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_id_runs_in_arrival_order_and_others_alongside() {
        let q = Ordered::default();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (gate_tx, gate_rx) = oneshot::channel::<()>();
        // The first on `a` waits for the gate; the second on `a` must not
        // overtake it, but `b` does not wait for `a`.
        let l = log.clone();
        q.run("a", async move {
            let _ = gate_rx.await;
            lock(&l).push("a1");
        });
        let l = log.clone();
        q.run("a", async move { lock(&l).push("a2") });
        let (b_tx, b_rx) = oneshot::channel::<()>();
        let l = log.clone();
        q.run("b", async move {
            lock(&l).push("b1");
            let _ = b_tx.send(());
        });
        b_rx.await.unwrap();
        assert_eq!(*lock(&log), ["b1"]);
        gate_tx.send(()).unwrap();
        for _ in 0..100 {
            if q.busy() == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert_eq!(*lock(&log), ["b1", "a1", "a2"]);
        assert_eq!(q.busy(), 0, "finished ids leave no entry");
    }
}
