//! A lock that serves its waiters in arrival order.
//!
//! The store's lock is held through a write's fsync (under
//! `FsyncPolicy::Always`; writers queued share one: group commit).
//! `std::sync::Mutex` lets the thread that just released it take it
//! straight back, so with
//! 8 threads writing, one can win it dozens of times in a row while the
//! others wait: median latency stays low and the 99th percentile climbs to
//! hundreds of milliseconds (measured: `examples/kvcounter.rs`,
//! BENCHMARKS.md). Handing the lock to the longest waiter bounds a write's
//! wait by the writes queued ahead of it.

use std::collections::VecDeque;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::Thread;

#[derive(Default)]
struct Queue {
    locked: bool,
    waiters: VecDeque<(u64, Thread)>,
    /// The waiter the lock was handed to and that has not woken yet.
    granted: Option<u64>,
    next_id: u64,
}

/// A FIFO lock around `T`.
pub(crate) struct Fair<T> {
    queue: Mutex<Queue>,
    /// Never contended: only the holder of the FIFO turn locks it. It
    /// makes the access safe without `unsafe`.
    inner: Mutex<T>,
}

pub(crate) struct FairGuard<'a, T> {
    guard: Option<MutexGuard<'a, T>>,
    lock: &'a Fair<T>,
}

impl<T> Fair<T> {
    pub fn new(value: T) -> Fair<T> {
        Fair {
            queue: Mutex::new(Queue::default()),
            inner: Mutex::new(value),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for this thread's turn (after every thread already waiting).
    pub fn lock(&self) -> FairGuard<'_, T> {
        let mut q = self.queue();
        if !q.locked {
            q.locked = true;
        } else {
            let id = q.next_id;
            q.next_id += 1;
            q.waiters.push_back((id, std::thread::current()));
            loop {
                drop(q);
                std::thread::park();
                q = self.queue();
                if q.granted == Some(id) {
                    q.granted = None;
                    break;
                }
            }
        }
        drop(q);
        FairGuard {
            guard: Some(self.inner.lock().unwrap_or_else(PoisonError::into_inner)),
            lock: self,
        }
    }

    /// Whether a thread is queued for the lock (asked by its holder: the
    /// lock will be handed straight to it).
    pub fn has_waiters(&self) -> bool {
        !self.queue().waiters.is_empty()
    }
}

impl<T> Drop for FairGuard<'_, T> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut q = self.lock.queue();
        match q.waiters.pop_front() {
            Some((id, thread)) => {
                // Still locked: the turn passes straight to the waiter.
                q.granted = Some(id);
                thread.unpark();
            }
            None => q.locked = false,
        }
    }
}

impl<T> Deref for FairGuard<'_, T> {
    type Target = T;

    fn deref(&self) -> &T {
        // Present from construction until drop.
        self.guard.as_deref().unwrap_or_else(|| unreachable!())
    }
}

impl<T> DerefMut for FairGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.guard.as_deref_mut().unwrap_or_else(|| unreachable!())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    /// Threads that queue up while the lock is held get it in the order
    /// they asked, even if the releasing thread asks again at once.
    #[test]
    fn waiters_are_served_in_arrival_order() {
        let lock = Arc::new(Fair::new(Vec::new()));
        let first = lock.lock();
        let mut handles = Vec::new();
        for i in 0..6 {
            let l = lock.clone();
            handles.push(std::thread::spawn(move || l.lock().push(i)));
            // Give each thread time to join the queue before the next.
            std::thread::sleep(Duration::from_millis(30));
        }
        drop(first);
        // The releasing thread asking again goes to the back.
        lock.lock().push(99);
        for h in handles {
            h.join().expect("join");
        }
        assert_eq!(*lock.lock(), vec![0, 1, 2, 3, 4, 5, 99]);
    }

    #[test]
    fn heavy_contention_loses_nothing() {
        let lock = Arc::new(Fair::new(0u64));
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let l = lock.clone();
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        *l.lock() += 1;
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().expect("join");
        }
        assert_eq!(*lock.lock(), 16_000);
    }
}
