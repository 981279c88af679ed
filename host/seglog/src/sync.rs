//! Making written records durable: group commit, and a periodic flusher.
//!
//! Every write takes a ticket (a number that grows by one per write) and
//! marks its file dirty. Whoever needs ticket `t` durable and finds no sync
//! under way becomes the leader: it takes the dirty files and the highest
//! ticket issued so far, fsyncs the files with no lock held, then publishes
//! that ticket as synced and wakes the waiters. Writes that arrived while
//! it synced wait for the next round, which one of them leads. So N
//! concurrent writers cost about two fsyncs, not N.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::Error;

/// Failed rounds remembered so their waiters can be told (a waiter may
/// only look after a few more rounds have passed).
const FAILURES_KEPT: usize = 32;

/// Called with a file's path just before it is fsynced: a seam for tests
/// that need a slow or failing disk.
pub type SyncHook = Arc<dyn Fn(&Path) -> io::Result<()> + Send + Sync>;

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

/// Group commit over any number of files.
#[derive(Default)]
pub struct Syncer {
    state: Mutex<State>,
    done: Condvar,
    hook: Option<SyncHook>,
}

impl Syncer {
    /// A syncer that calls `hook` before each fsync (and fails the fsync
    /// if the hook does).
    pub fn with_hook(hook: SyncHook) -> Syncer {
        Syncer {
            hook: Some(hook),
            ..Syncer::default()
        }
    }

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
    pub fn wait(&self, ticket: u64) -> Result<(), Error> {
        let mut s = self.lock();
        loop {
            if s.synced >= ticket {
                return match s
                    .failures
                    .iter()
                    .find(|f| f.after < ticket && ticket <= f.upto)
                {
                    Some(f) => Err(Error::Io {
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
                let synced = match &self.hook {
                    Some(h) => h(&d.path).and_then(|()| d.file.sync_data()),
                    None => d.file.sync_data(),
                };
                if let Err(e) = synced {
                    // Not retried: after a failed fsync the kernel may
                    // have dropped the dirty pages, so a retry could
                    // "succeed" without the data.
                    tracing::error!(file = %d.path.display(), error = %e, "fsync failed");
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
    pub fn sync_all(&self) -> Result<(), Error> {
        let ticket = self.lock().issued;
        self.wait(ticket)
    }
}

/// A background thread that calls [`Syncer::sync_all`] every interval
/// until dropped.
pub struct Flusher {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    pub fn start(syncer: Arc<Syncer>, every: Duration, name: &str) -> io::Result<Flusher> {
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
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
                    // an explicit sync) tries again with new writes.
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::TestDir;
    use std::os::unix::fs::FileExt;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn concurrent_writers_share_fsyncs() {
        let d = TestDir::new("group");
        let path = d.path().join("seg");
        let file = Arc::new(crate::files::create_new(&path).expect("create"));
        let syncs = Arc::new(AtomicUsize::new(0));
        let s2 = syncs.clone();
        let syncer = Arc::new(Syncer::with_hook(Arc::new(move |_: &Path| {
            s2.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(20));
            Ok(())
        })));
        let threads: Vec<_> = (0..8u64)
            .map(|i| {
                let (syncer, file, path) = (syncer.clone(), file.clone(), path.clone());
                std::thread::spawn(move || {
                    file.write_all_at(b"x", i).expect("write");
                    let t = syncer.written(&file, &path);
                    syncer.wait(t).expect("sync");
                })
            })
            .collect();
        for t in threads {
            t.join().expect("join");
        }
        let n = syncs.load(Ordering::SeqCst);
        assert!((1..8).contains(&n), "8 writers took {n} fsyncs");
    }

    #[test]
    fn a_failed_fsync_is_reported_to_its_waiters_only() {
        let d = TestDir::new("fail");
        let path = d.path().join("seg");
        let file = Arc::new(crate::files::create_new(&path).expect("create"));
        let fail = Arc::new(AtomicUsize::new(1));
        let f2 = fail.clone();
        let syncer = Syncer::with_hook(Arc::new(move |_: &Path| {
            if f2.swap(0, Ordering::SeqCst) == 1 {
                return Err(io::Error::from_raw_os_error(5));
            }
            Ok(())
        }));
        let t1 = syncer.written(&file, &path);
        let e = syncer.wait(t1).expect_err("first round fails");
        assert!(
            e.to_string().contains("seg") && e.to_string().contains("fsync failed"),
            "{e}"
        );
        let t2 = syncer.written(&file, &path);
        syncer.wait(t2).expect("second round");
        assert!(syncer.wait(t1).is_err(), "the failure is remembered");
    }
}
