//! Making written records durable: group commit for
//! [`SyncPolicy::Always`](crate::SyncPolicy::Always) and the periodic
//! flusher for [`SyncPolicy::Interval`](crate::SyncPolicy::Interval).
//!
//! Every write takes a ticket (a number that grows by one per write) and
//! marks its file dirty. Whoever needs ticket `t` durable and finds no sync
//! under way becomes the leader: it takes the dirty files and the highest
//! ticket issued so far, fsyncs the files with no lock held, then publishes
//! that ticket as synced and wakes the waiters. Writes that arrived while
//! it synced wait for the next round, which one of them leads. So N
//! concurrent appenders cost about two fsyncs, not N.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::OutboxError;

/// Failed rounds remembered so their waiters can be told (a waiter may
/// only look after a few more rounds have passed).
const FAILURES_KEPT: usize = 32;

struct Dirty {
    file: Arc<File>,
    path: PathBuf,
}

struct Failure {
    /// Tickets `(after, upto]` of the round whose fsync failed.
    after: u64,
    upto: u64,
    path: PathBuf,
    kind: io::ErrorKind,
    message: String,
}

#[derive(Default)]
struct State {
    issued: u64,
    synced: u64,
    leading: bool,
    dirty: Vec<Dirty>,
    failures: VecDeque<Failure>,
}

#[derive(Default)]
pub(crate) struct Syncer {
    state: Mutex<State>,
    done: Condvar,
}

impl Syncer {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a write to `file` (already made) and returns its ticket.
    pub fn written(&self, file: &Arc<File>, path: &Path) -> u64 {
        let mut s = self.lock();
        s.issued += 1;
        if !s.dirty.iter().any(|d| Arc::ptr_eq(&d.file, file)) {
            s.dirty.push(Dirty {
                file: file.clone(),
                path: path.to_path_buf(),
            });
        }
        s.issued
    }

    /// Returns once every write up to `ticket` is fsynced, leading a round
    /// if none is under way. An error names the file whose fsync failed.
    pub fn wait(&self, ticket: u64) -> Result<(), OutboxError> {
        let mut s = self.lock();
        loop {
            if s.synced >= ticket {
                return match s
                    .failures
                    .iter()
                    .find(|f| f.after < ticket && ticket <= f.upto)
                {
                    Some(f) => Err(OutboxError::Io {
                        path: f.path.clone(),
                        source: io::Error::new(f.kind, format!("fsync failed: {}", f.message)),
                    }),
                    None => Ok(()),
                };
            }
            if s.leading {
                s = self.done.wait(s).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            s.leading = true;
            let after = s.synced;
            let upto = s.issued;
            let files = std::mem::take(&mut s.dirty);
            drop(s);
            let mut failed = None;
            for d in &files {
                if let Err(e) = d.file.sync_data() {
                    // Not retried: after a failed fsync the kernel may
                    // have dropped the dirty pages, so a retry could
                    // "succeed" without the data.
                    tracing::error!(file = %d.path.display(), error = %e, "outbox: fsync failed");
                    failed = Some((d.path.clone(), e));
                }
            }
            drop(files);
            s = self.lock();
            if let Some((path, e)) = failed {
                if s.failures.len() == FAILURES_KEPT {
                    s.failures.pop_front();
                }
                s.failures.push_back(Failure {
                    after,
                    upto,
                    path,
                    kind: e.kind(),
                    message: e.to_string(),
                });
            }
            s.synced = s.synced.max(upto);
            s.leading = false;
            self.done.notify_all();
        }
    }

    /// Fsyncs everything written so far.
    pub fn sync_all(&self) -> Result<(), OutboxError> {
        let ticket = self.lock().issued;
        self.wait(ticket)
    }
}

/// The background thread of `SyncPolicy::Interval`.
pub(crate) struct Flusher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    pub fn start(syncer: Arc<Syncer>, every: Duration) -> io::Result<Flusher> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("twig-outbox-sync".into())
            .spawn(move || {
                let (m, cv) = &*stop2;
                let mut stopped = m.lock().unwrap_or_else(|e| e.into_inner());
                loop {
                    // Checked before waiting too: a stop requested before
                    // this thread first took the lock must not wait out a
                    // whole interval.
                    if *stopped {
                        return;
                    }
                    let (g, _) = cv
                        .wait_timeout(stopped, every)
                        .unwrap_or_else(|e| e.into_inner());
                    stopped = g;
                    if *stopped {
                        return;
                    }
                    drop(stopped);
                    // Errors are logged by the syncer; the next round (or
                    // an explicit `sync`) tries again with new writes.
                    let _ = syncer.sync_all();
                    stopped = m.lock().unwrap_or_else(|e| e.into_inner());
                }
            })?;
        Ok(Flusher {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        let (m, cv) = &*self.stop;
        *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
        cv.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
