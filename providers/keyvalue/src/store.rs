//! The store: recovery, the index, appends, fsync policy and compaction.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::ops::Bound;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::config::{Config, FsyncPolicy, MAX_BUCKET_NAME_BYTES};
use twig_seglog::{self as seglog, DirLock, SegmentNames};

use crate::error::{io_err, io_error, seglog_error, Error, Result};
use crate::fair::{Fair, FairGuard};
use crate::format::{self, Change, EncodeError, Event, Op, Parsed, Record, Scanner};
use crate::io::{remove_if_exists, sync_dir, write_all_at, RealStorage, SegmentFile, Storage};

/// Where a live value is: a record in a segment, and the value's bytes
/// within it. Values stay on disk; only this is kept in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    seq: u64,
    segment: u32,
    offset: u32,
    record_len: u32,
    value_off: u32,
    value_len: u32,
}

#[derive(Debug, Default)]
struct BucketIndex {
    keys: BTreeMap<Box<str>, Entry>,
    /// Sum of key and value lengths.
    bytes: u64,
}

/// Every live key, by bucket, with byte accounting.
#[derive(Debug, Default)]
struct Index {
    buckets: BTreeMap<String, BucketIndex>,
    keys: u64,
    /// Sum of key and value lengths over all buckets (what `max_bytes`
    /// limits).
    bytes: u64,
    /// What the live keys would take on disk right after a compaction.
    record_bytes: u64,
}

fn costs(bucket: &str, key: &str, e: &Entry) -> (u64, u64) {
    (
        (key.len() + e.value_len as usize) as u64,
        format::set_record_len(e.seq, bucket.len(), key.len(), e.value_len as usize) as u64,
    )
}

impl Index {
    fn get(&self, bucket: &str, key: &str) -> Option<&Entry> {
        self.buckets.get(bucket)?.keys.get(key)
    }

    fn set(&mut self, bucket: &str, key: &str, e: Entry) {
        let b = match self.buckets.get_mut(bucket) {
            Some(b) => b,
            None => self.buckets.entry(bucket.to_owned()).or_default(),
        };
        let (bytes, rec) = costs(bucket, key, &e);
        let old = match b.keys.get_mut(key) {
            Some(slot) => Some(std::mem::replace(slot, e)),
            None => {
                b.keys.insert(key.into(), e);
                None
            }
        };
        b.bytes += bytes;
        self.bytes += bytes;
        self.record_bytes += rec;
        match old {
            Some(old) => {
                let (ob, orec) = costs(bucket, key, &old);
                b.bytes -= ob;
                self.bytes -= ob;
                self.record_bytes -= orec;
            }
            None => self.keys += 1,
        }
    }

    fn remove(&mut self, bucket: &str, key: &str) -> Option<Entry> {
        let b = self.buckets.get_mut(bucket)?;
        let old = b.keys.remove(key)?;
        let (ob, orec) = costs(bucket, key, &old);
        b.bytes -= ob;
        self.bytes -= ob;
        self.record_bytes -= orec;
        self.keys -= 1;
        if b.keys.is_empty() {
            self.buckets.remove(bucket);
        }
        Some(old)
    }
}

/// Deletions seen during recovery, so that an older set replayed later
/// (possible only after a compaction was interrupted) does not resurrect
/// a key. Dropped once the store is open.
#[derive(Default)]
struct Tombstones(BTreeMap<String, BTreeMap<Box<str>, u64>>);

impl Tombstones {
    fn get(&self, bucket: &str, key: &str) -> Option<u64> {
        self.0.get(bucket)?.get(key).copied()
    }

    fn insert(&mut self, bucket: &str, key: &str, seq: u64) {
        let b = match self.0.get_mut(bucket) {
            Some(b) => b,
            None => self.0.entry(bucket.to_owned()).or_default(),
        };
        b.insert(key.into(), seq);
    }

    fn remove(&mut self, bucket: &str, key: &str) {
        if let Some(b) = self.0.get_mut(bucket) {
            b.remove(key);
            if b.is_empty() {
                self.0.remove(bucket);
            }
        }
    }
}

/// Applies a recovered change unless a newer one (higher sequence number)
/// for the key was already seen: the result does not depend on the order
/// segments are replayed in. Changes of one record share its sequence
/// number and apply in order.
fn replay(
    index: &mut Index,
    tombs: &mut Tombstones,
    seq: u64,
    change: &Change<'_>,
    entry: Option<Entry>,
) {
    let (bucket, key) = (change.bucket(), change.key());
    let newest = index
        .get(bucket, key)
        .map(|e| e.seq)
        .max(tombs.get(bucket, key));
    if newest.is_some_and(|n| seq < n) {
        return;
    }
    match entry {
        Some(e) => {
            index.set(bucket, key, e);
            tombs.remove(bucket, key);
        }
        None => {
            index.remove(bucket, key);
            tombs.insert(bucket, key, seq);
        }
    }
}

/// `00000001.log`: eight digits written, up to ten (a `u32`) read.
const NAMES: SegmentNames = SegmentNames {
    suffix: ".log",
    width: 8,
    min_digits: 1,
    max_digits: 10,
};

fn segment_path(dir: &Path, id: u32) -> PathBuf {
    NAMES.path(dir, id.into())
}

fn temp_path(dir: &Path, id: u32) -> PathBuf {
    dir.join(format!("{}.tmp", NAMES.name(id.into())))
}

fn parse_segment_name(name: &str) -> Option<u32> {
    NAMES.parse(name).and_then(|n| u32::try_from(n).ok())
}

/// A segment open for reading. Reads hold an `Arc` to it, so a compaction
/// that deletes the file does not disturb a read in flight.
#[derive(Debug)]
struct SegFile {
    path: PathBuf,
    file: File,
}

struct Segment {
    handle: Arc<SegFile>,
    len: u64,
}

/// The segment being appended to.
struct Active {
    id: u32,
    path: PathBuf,
    file: Box<dyn SegmentFile>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    bytes_written: u64,
    user_bytes: u64,
    fsyncs: u64,
    compactions: u64,
}

struct State {
    dir: PathBuf,
    config: Config,
    storage: Arc<dyn Storage>,
    signal: Option<Arc<FlushSignal>>,
    index: Index,
    segments: BTreeMap<u32, Segment>,
    active: Active,
    /// `None` once `u64::MAX` has been used.
    next_seq: Option<u64>,
    total_bytes: u64,
    unsynced_bytes: u64,
    dirty_since: Option<Instant>,
    poisoned: Option<String>,
    counters: Counters,
    auto_compact_floor: u64,
    buf: Vec<u8>,
    /// Writes awaiting their shared fsync (`Always` only).
    group: Option<Group>,
    /// Set by `commit` when its record joined the group: the caller's
    /// `finish` takes it.
    joined: Option<Arc<Outcome>>,
    /// Test hook: fail (as if the process died) after this many more
    /// compaction steps.
    crash_countdown: Cell<Option<usize>>,
    crashed: Cell<bool>,
    /// Wakes the background compactor; `None` when automatic compaction
    /// is off.
    compactor: Option<Arc<CompactSignal>>,
    /// A background compaction is under way (from its request until its
    /// last old segment is deleted).
    compacting: bool,
}

/// Wakes the background compactor and tells waiters when it is done.
struct CompactSignal {
    ctl: Mutex<CompactCtl>,
    cv: Condvar,
    /// Test hook: the background compaction stops dead (as if the process
    /// died) after this many more steps.
    #[cfg(test)]
    crash_countdown: Mutex<Option<usize>>,
}

#[derive(Default)]
struct CompactCtl {
    /// A compaction was asked for and has not finished.
    running: bool,
    shutdown: bool,
}

impl CompactSignal {
    fn ctl(&self) -> std::sync::MutexGuard<'_, CompactCtl> {
        self.ctl.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn shutting_down(&self) -> bool {
        self.ctl().shutdown
    }

    /// Waits until no background compaction is under way.
    fn wait_idle(&self) {
        let mut ctl = self.ctl();
        while ctl.running && !ctl.shutdown {
            ctl = self.cv.wait(ctl).unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// Most writes one group fsync covers: bounds how long the first of them
/// waits for the others.
const GROUP_MAX: usize = 64;

/// Writes under `FsyncPolicy::Always` that one fsync will cover (group
/// commit). Each member wrote its record and applied it to the index with
/// the lock held, then, seeing another writer queued behind it, handed
/// the lock on and waits for the group's outcome; the last member (or any
/// other holder of the lock: a read, a flush, a compaction) fsyncs for
/// all. Records are never visible to a reader before their fsync: every
/// other holder settles the group first. If the fsync fails the whole
/// group is rolled back (file cut back, index and counters restored) and
/// every member returns the error, as a lone write's failed fsync does.
struct Group {
    /// The state before the group's first record.
    offset: u64,
    next_seq: Option<u64>,
    total_bytes: u64,
    bytes_written: u64,
    user_bytes: u64,
    /// Index entries the group replaced, in order (`None`: the key was
    /// absent).
    undo: Vec<(String, Box<str>, Option<Entry>)>,
    members: usize,
    outcome: Arc<Outcome>,
}

/// How a group's fsync went, for the members waiting on it.
#[derive(Default)]
struct Outcome {
    done: Mutex<Option<std::result::Result<(), GroupFailure>>>,
    cv: Condvar,
}

#[derive(Clone)]
struct GroupFailure {
    path: PathBuf,
    offset: u64,
    kind: io::ErrorKind,
    message: String,
}

impl Outcome {
    fn set(&self, r: std::result::Result<(), GroupFailure>) {
        *self.done.lock().unwrap_or_else(PoisonError::into_inner) = Some(r);
        self.cv.notify_all();
    }

    fn wait(&self) -> Result<()> {
        let mut g = self.done.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match &*g {
                Some(Ok(())) => return Ok(()),
                Some(Err(f)) => {
                    return Err(io_error(
                        &f.path,
                        Some(f.offset),
                        io::Error::new(f.kind, f.message.clone()),
                    ))
                }
                None => g = self.cv.wait(g).unwrap_or_else(PoisonError::into_inner),
            }
        }
    }
}

/// Wakes the background flusher of a `Batched` store.
struct FlushSignal {
    ctl: Mutex<FlushCtl>,
    cv: Condvar,
}

#[derive(Default)]
struct FlushCtl {
    deadline: Option<Instant>,
    shutdown: bool,
}

struct Shared {
    /// Shared with the compactor thread, which never holds the `Shared`
    /// itself: the last `Store` dropped is where the directory lock is
    /// released, after the compactor has stopped.
    state: Arc<Fair<State>>,
    signal: Option<Arc<FlushSignal>>,
    compact_signal: Option<Arc<CompactSignal>>,
    /// The background compactor, joined on drop so that it never touches
    /// the directory after the directory lock is released.
    compactor: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Who hears of changes (`watch.rs`).
    watchers: crate::watch::Watchers,
    _lock: DirLock,
}

impl Drop for Shared {
    fn drop(&mut self) {
        if let Some(sig) = &self.signal {
            sig.ctl
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .shutdown = true;
            sig.cv.notify_all();
        }
        if let Some(sig) = &self.compact_signal {
            sig.ctl().shutdown = true;
            sig.cv.notify_all();
            let handle = self
                .compactor
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .take();
            // The compactor may itself drop the last handle: it then does
            // nothing more once it sees `shutdown`.
            if let Some(h) = handle {
                if h.thread().id() != std::thread::current().id() && h.join().is_err() {
                    tracing::error!("the key-value compaction thread panicked");
                }
            }
        }
        let mut st = self.state.lock();
        if st.poisoned.is_none() {
            if let Err(e) = st.sync_active() {
                tracing::warn!("closing the key-value store: {e}");
            }
        }
    }
}

/// A range of damaged bytes found on open and skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRange {
    pub file: PathBuf,
    pub offset: u64,
    pub len: u64,
}

/// What [`Store::open`] found and repaired.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// Intact records replayed.
    pub recovered_records: u64,
    /// Bytes cut from the end of the last segment (a torn write).
    pub truncated_tail_bytes: u64,
    /// Damage skipped in the middle of a segment (or at the end of one
    /// that is not the last); every valid record around it was recovered.
    pub corrupt_ranges: Vec<CorruptRange>,
    /// Leftovers of an interrupted compaction, deleted.
    pub removed_temp_files: Vec<PathBuf>,
    pub segments: usize,
    pub live_keys: u64,
    pub duration: Duration,
}

/// One page of [`Store::list_keys`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<String>,
    /// Pass back to get the next page; `None` when this was the last.
    pub cursor: Option<String>,
}

/// Counters and sizes, for status output and measurements.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub live_keys: u64,
    /// Sum of key and value lengths (what `max_bytes` limits).
    pub live_bytes: u64,
    /// Size of all segment files.
    pub disk_bytes: u64,
    pub segments: usize,
    /// Appended but not yet fsynced (only under `Batched`).
    pub unsynced_bytes: u64,
    /// Every byte appended to segment files, compaction included.
    pub bytes_written: u64,
    /// Key and value bytes of sets plus key bytes of deletes, as asked for
    /// by callers. `bytes_written / user_bytes_written` is the write
    /// amplification (filesystem metadata not counted).
    pub user_bytes_written: u64,
    pub fsyncs: u64,
    pub compactions: u64,
    /// True after an I/O failure that could not be rolled back.
    pub read_only: bool,
}

/// One bucket's share of the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketStats {
    pub keys: u64,
    /// Sum of key and value lengths.
    pub live_bytes: u64,
}

/// What a compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionStats {
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub segments_before: usize,
    pub segments_after: usize,
    pub live_keys: u64,
    /// Keys whose records failed their checksum and could not be copied.
    pub dropped_corrupt: u64,
    pub duration: Duration,
}

/// A durable key-value store in one directory. Cheap to clone; all clones
/// share one store. `Send + Sync`: operations take an internal lock
/// (values are read from disk outside it).
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.lock();
        f.debug_struct("Store")
            .field("dir", &st.dir)
            .field("keys", &st.index.keys)
            .finish()
    }
}

/// A bucket of a store: the handle a `wasi:keyvalue` bucket resource maps
/// to.
#[derive(Debug, Clone)]
pub struct Bucket {
    store: Store,
    name: Arc<str>,
}

fn read_value(seg: &SegFile, e: &Entry) -> Result<Vec<u8>> {
    let corrupt = |reason| {
        tracing::error!(file = %seg.path.display(), offset = e.offset, "{reason}");
        Error::Corrupt {
            path: seg.path.clone(),
            offset: e.offset as u64,
            reason,
        }
    };
    let mut buf = vec![0u8; e.record_len as usize];
    if let Err(err) = seg.file.read_exact_at(&mut buf, e.offset as u64) {
        if err.kind() == io::ErrorKind::UnexpectedEof {
            return Err(corrupt("record runs past the end of the file"));
        }
        return Err(io_error(&seg.path, Some(e.offset as u64), err));
    }
    format::verify(&buf).map_err(corrupt)?;
    let start = e.value_off as usize;
    let end = start + e.value_len as usize;
    if end > buf.len() {
        return Err(corrupt("value lies outside its record"));
    }
    buf.truncate(end);
    buf.drain(..start);
    Ok(buf)
}

/// A counter value: decimal ASCII digits only.
fn set_event(bucket: &str, key: &str, value: &[u8]) -> crate::watch::Event {
    crate::watch::Event::Set {
        bucket: bucket.to_string(),
        key: key.to_string(),
        value: value.to_vec(),
    }
}

fn delete_event(bucket: &str, key: &str) -> crate::watch::Event {
    crate::watch::Event::Delete {
        bucket: bucket.to_string(),
        key: key.to_string(),
    }
}

fn parse_counter(v: &[u8]) -> Option<u64> {
    if v.is_empty() || v.len() > 20 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(v).ok()?.parse().ok()
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, recovering from
    /// whatever a crash left. See the crate documentation for the rules.
    pub fn open(dir: impl AsRef<Path>, config: Config) -> Result<(Store, OpenReport)> {
        Store::open_with(dir.as_ref(), config, Arc::new(RealStorage))
    }

    pub(crate) fn open_with(
        dir: &Path,
        config: Config,
        storage: Arc<dyn Storage>,
    ) -> Result<(Store, OpenReport)> {
        let started = Instant::now();
        config.validate()?;
        seglog::files::create_dir(dir).map_err(seglog_error)?;
        let lock = DirLock::acquire(dir).map_err(seglog_error)?;

        let mut report = OpenReport::default();
        let mut ids = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.ends_with(".log.tmp") {
                let path = entry.path();
                tracing::warn!(file = %path.display(), "deleting the leftover of an interrupted compaction");
                remove_if_exists(&path).map_err(io_err(&path))?;
                report.removed_temp_files.push(path);
            } else if let Some(id) = parse_segment_name(name) {
                ids.push(id);
            }
        }
        if !report.removed_temp_files.is_empty() {
            sync_dir(dir).map_err(io_err(dir))?;
        }
        ids.sort_unstable();

        let mut index = Index::default();
        let mut tombs = Tombstones::default();
        let mut max_seq: Option<u64> = None;
        let mut segments = BTreeMap::new();
        for (i, &id) in ids.iter().enumerate() {
            let last = i + 1 == ids.len();
            let path = segment_path(dir, id);
            let file = File::open(&path).map_err(io_err(&path))?;
            let size = file.metadata().map_err(io_err(&path))?.len();
            if size > u32::MAX as u64 {
                return Err(io_error(
                    &path,
                    None,
                    io::Error::new(io::ErrorKind::InvalidData, "segment is larger than 4 GiB"),
                ));
            }
            let mut bytes = Vec::with_capacity(size as usize);
            (&file).read_to_end(&mut bytes).map_err(io_err(&path))?;
            let mut len = bytes.len() as u64;
            for ev in Scanner::new(&bytes) {
                match ev {
                    Event::Record {
                        offset,
                        len: rlen,
                        record,
                    } => {
                        report.recovered_records += 1;
                        max_seq = max_seq.max(Some(record.seq));
                        let rec = &bytes[offset..offset + rlen];
                        for c in record.op.changes() {
                            let entry = match *c {
                                Change::Set { value, .. } => Some(Entry {
                                    seq: record.seq,
                                    segment: id,
                                    offset: offset as u32,
                                    record_len: rlen as u32,
                                    value_off: format::offset_in(rec, value) as u32,
                                    value_len: value.len() as u32,
                                }),
                                Change::Delete { .. } => None,
                            };
                            replay(&mut index, &mut tombs, record.seq, c, entry);
                        }
                    }
                    Event::Corrupt { offset, len: clen } => {
                        tracing::error!(
                            file = %path.display(),
                            offset,
                            len = clen,
                            "corrupt bytes in a segment skipped; the valid records after them were recovered"
                        );
                        report.corrupt_ranges.push(CorruptRange {
                            file: path.clone(),
                            offset: offset as u64,
                            len: clen as u64,
                        });
                    }
                    Event::Tail { offset, len: tlen } if last => {
                        tracing::warn!(
                            file = %path.display(),
                            offset,
                            len = tlen,
                            "cutting away an incomplete or damaged record at the end of the log (a write torn by a crash)"
                        );
                        let mut f = storage.open(&path).map_err(io_err(&path))?;
                        f.set_len(offset as u64)
                            .and_then(|()| f.sync())
                            .map_err(|e| io_error(&path, Some(offset as u64), e))?;
                        len = offset as u64;
                        report.truncated_tail_bytes += tlen as u64;
                    }
                    Event::Tail { offset, len: tlen } => {
                        tracing::error!(
                            file = %path.display(),
                            offset,
                            len = tlen,
                            "corrupt bytes at the end of a segment that is not the last; skipped"
                        );
                        report.corrupt_ranges.push(CorruptRange {
                            file: path.clone(),
                            offset: offset as u64,
                            len: tlen as u64,
                        });
                    }
                    Event::Unsupported {
                        offset,
                        version,
                        flags,
                    } => {
                        return Err(Error::UnsupportedFormat {
                            path,
                            offset: offset as u64,
                            version,
                            flags,
                        });
                    }
                }
            }
            drop(bytes);
            segments.insert(
                id,
                Segment {
                    handle: Arc::new(SegFile { path, file }),
                    len,
                },
            );
        }
        drop(tombs);

        let active_id = match ids.last() {
            Some(&id) => id,
            None => {
                let path = segment_path(dir, 1);
                drop(storage.create(&path).map_err(io_err(&path))?);
                sync_dir(dir).map_err(io_err(dir))?;
                let file = File::open(&path).map_err(io_err(&path))?;
                segments.insert(
                    1,
                    Segment {
                        handle: Arc::new(SegFile { path, file }),
                        len: 0,
                    },
                );
                1
            }
        };
        let active_path = segment_path(dir, active_id);
        let active_file = storage.open(&active_path).map_err(io_err(&active_path))?;
        let total_bytes = segments.values().map(|s| s.len).sum();
        let signal = match config.fsync {
            FsyncPolicy::Batched { .. } => Some(Arc::new(FlushSignal {
                ctl: Mutex::new(FlushCtl::default()),
                cv: Condvar::new(),
            })),
            FsyncPolicy::Always => None,
        };
        let compact_signal = config.compaction.auto.then(|| {
            Arc::new(CompactSignal {
                ctl: Mutex::new(CompactCtl::default()),
                cv: Condvar::new(),
                #[cfg(test)]
                crash_countdown: Mutex::new(None),
            })
        });
        report.segments = segments.len();
        report.live_keys = index.keys;
        let state = State {
            dir: dir.to_path_buf(),
            config,
            storage,
            signal: signal.clone(),
            index,
            segments,
            active: Active {
                id: active_id,
                path: active_path,
                file: active_file,
            },
            next_seq: match max_seq {
                None => Some(1),
                Some(s) => s.checked_add(1),
            },
            total_bytes,
            unsynced_bytes: 0,
            dirty_since: None,
            poisoned: None,
            counters: Counters::default(),
            auto_compact_floor: 0,
            buf: Vec::new(),
            group: None,
            joined: None,
            crash_countdown: Cell::new(None),
            crashed: Cell::new(false),
            compactor: compact_signal.clone(),
            compacting: false,
        };
        let shared = Arc::new(Shared {
            state: Arc::new(Fair::new(state)),
            signal: signal.clone(),
            compact_signal: compact_signal.clone(),
            compactor: Mutex::new(None),
            watchers: Default::default(),
            _lock: lock,
        });
        if let (Some(sig), FsyncPolicy::Batched { max_delay_ms, .. }) = (signal, config.fsync) {
            spawn_flusher(
                Arc::downgrade(&shared),
                sig,
                Duration::from_millis(max_delay_ms),
            )?;
        }
        if let Some(sig) = compact_signal {
            let handle = spawn_compactor(shared.state.clone(), sig)?;
            *shared
                .compactor
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(handle);
        }
        report.duration = started.elapsed();
        tracing::info!(
            dir = %dir.display(),
            records = report.recovered_records,
            keys = report.live_keys,
            segments = report.segments,
            truncated = report.truncated_tail_bytes,
            corrupt_ranges = report.corrupt_ranges.len(),
            "key-value store opened in {:?}",
            report.duration
        );
        Ok((Store { shared }, report))
    }

    /// The state, with any writes awaiting their group fsync settled
    /// first (so nothing read is undurable).
    fn lock(&self) -> FairGuard<'_, State> {
        let mut st = self.shared.state.lock();
        st.flush_group();
        st
    }

    /// The state for a write: its record may join the pending group.
    /// Every path must end in [`Store::finish`].
    fn lock_write(&self) -> FairGuard<'_, State> {
        self.shared.state.lock()
    }

    /// Ends a write: under `Always`, joins the group's fsync (handing the
    /// lock on if a writer is queued behind, else fsyncing for the group),
    /// then compacts if due.
    fn finish<T>(&self, mut st: FairGuard<'_, State>, r: Result<T>) -> Result<T> {
        let queued = self.shared.state.has_waiters();
        let joined = st.joined.take();
        let room = st.group.as_ref().is_some_and(|g| g.members < GROUP_MAX);
        if let Some(outcome) = joined {
            if queued && room {
                drop(st);
                outcome.wait()?;
                return r;
            }
            if let Some(Err(e)) = st.flush_group() {
                return Err(e);
            }
        } else if !(queued && room) {
            // Not a member, but members may be waiting on someone.
            st.flush_group();
        }
        if r.is_ok() {
            st.maybe_compact();
        }
        r
    }

    /// Waits until no background compaction is under way (tests).
    #[cfg(test)]
    pub(crate) fn wait_for_compaction(&self) {
        if let Some(sig) = &self.shared.compact_signal {
            sig.wait_idle();
        }
    }

    /// Makes the next background compaction stop dead (as if the process
    /// died) after `steps` more of its steps.
    #[cfg(test)]
    pub(crate) fn crash_background_compaction_after(&self, steps: usize) {
        if let Some(sig) = &self.shared.compact_signal {
            *sig.crash_countdown
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(steps);
        }
    }

    /// A handle on one bucket. Buckets need no creating: one exists while
    /// it has keys.
    pub fn bucket(&self, name: &str) -> Bucket {
        Bucket {
            store: self.clone(),
            name: name.into(),
        }
    }

    /// The value of `key`, read from disk and checked against its CRC.
    pub fn get(&self, bucket: &str, key: &str) -> Result<Option<Vec<u8>>> {
        let found = self.lock().locate(bucket, key);
        match found {
            None => Ok(None),
            Some((e, seg)) => read_value(&seg, &e).map(Some),
        }
    }

    pub fn exists(&self, bucket: &str, key: &str) -> bool {
        self.lock().index.get(bucket, key).is_some()
    }

    /// Sets `key` to `value`; durable on return under
    /// [`FsyncPolicy::Always`].
    pub fn set(&self, bucket: &str, key: &str, value: &[u8]) -> Result<()> {
        self.write(vec![Change::Set { bucket, key, value }])?;
        self.announce(|| vec![set_event(bucket, key, value)]);
        Ok(())
    }

    /// Deletes `key`; deleting a missing key succeeds (and writes nothing).
    pub fn delete(&self, bucket: &str, key: &str) -> Result<()> {
        let mut st = self.lock_write();
        let existed = st.index.get(bucket, key).is_some();
        let r = if !existed {
            Ok(())
        } else {
            st.commit(vec![Change::Delete { bucket, key }])
        };
        self.finish(st, r)?;
        if existed {
            self.announce(|| vec![delete_event(bucket, key)]);
        }
        Ok(())
    }

    /// Registers `w` to hear of every change from now on (`watch.rs`).
    pub fn watch(&self, w: Arc<dyn crate::watch::Watcher>) -> crate::watch::WatchId {
        self.shared.watchers.add(w)
    }

    /// Ends a registration; returns whether it was there.
    pub fn unwatch(&self, id: crate::watch::WatchId) -> bool {
        self.shared.watchers.remove(id)
    }

    /// Tells the watchers, if there are any (the events are built only
    /// then). Called after the write's lock is released.
    fn announce(&self, events: impl FnOnce() -> Vec<crate::watch::Event>) {
        if self.shared.watchers.any() {
            self.shared.watchers.send(events());
        }
    }

    /// Keys of `bucket` in byte order, at most `limit` (at least 1) of
    /// them, starting after `cursor` (the previous page's). Keys added or
    /// removed between pages are seen or not according to their order
    /// relative to the cursor; none is listed twice.
    pub fn list_keys(&self, bucket: &str, cursor: Option<&str>, limit: usize) -> KeyPage {
        let st = self.lock();
        let Some(b) = st.index.buckets.get(bucket) else {
            return KeyPage::default();
        };
        let lower = match cursor {
            Some(c) => Bound::Excluded(c),
            None => Bound::Unbounded,
        };
        let mut it = b.keys.range::<str, _>((lower, Bound::Unbounded));
        let keys: Vec<String> = it
            .by_ref()
            .take(limit.max(1))
            .map(|(k, _)| k.to_string())
            .collect();
        let cursor = if it.next().is_some() {
            keys.last().cloned()
        } else {
            None
        };
        KeyPage { keys, cursor }
    }

    /// Adds `delta` to the decimal `u64` counter at `key` (a missing key
    /// counts as 0) and returns the new value, atomically. The value is
    /// stored as decimal ASCII, so `get` reads it as text, as other
    /// `wasi:keyvalue` backends (Redis, NATS) store counters.
    pub fn increment(&self, bucket: &str, key: &str, delta: u64) -> Result<u64> {
        let mut st = self.lock_write();
        let r = Store::increment_locked(&mut st, bucket, key, delta);
        self.finish(st, r)
    }

    fn increment_locked(st: &mut State, bucket: &str, key: &str, delta: u64) -> Result<u64> {
        let current = match st.locate(bucket, key) {
            None => 0,
            Some((e, seg)) => {
                parse_counter(&read_value(&seg, &e)?).ok_or_else(|| Error::NotAnInteger {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                })?
            }
        };
        let new = current.checked_add(delta).ok_or_else(|| Error::Overflow {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
            current,
            delta,
        })?;
        let text = new.to_string();
        st.commit(vec![Change::Set {
            bucket,
            key,
            value: text.as_bytes(),
        }])?;
        Ok(new)
    }

    /// Replaces the value of `key` with `new` (`None` deletes it) if it is
    /// currently `expected` (`None`: absent). Returns whether it did.
    pub fn compare_and_swap(
        &self,
        bucket: &str,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool> {
        let mut st = self.lock_write();
        let mut changed = false;
        let r = (|| {
            let current = match st.locate(bucket, key) {
                None => None,
                Some((e, seg)) => Some(read_value(&seg, &e)?),
            };
            if current.as_deref() != expected {
                return Ok(false);
            }
            match (new, current.is_some()) {
                (Some(value), _) => st.commit(vec![Change::Set { bucket, key, value }])?,
                (None, true) => st.commit(vec![Change::Delete { bucket, key }])?,
                (None, false) => return Ok(true),
            }
            changed = true;
            Ok(true)
        })();
        let swapped = self.finish(st, r)?;
        if changed {
            self.announce(|| {
                vec![match new {
                    Some(v) => set_event(bucket, key, v),
                    None => delete_event(bucket, key),
                }]
            });
        }
        Ok(swapped)
    }

    /// Values of `keys`, in order, from one consistent view of the index.
    pub fn get_many<K: AsRef<str>>(
        &self,
        bucket: &str,
        keys: &[K],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        self.get_many_capped(bucket, keys, u64::MAX)
            .map(|r| r.unwrap_or_default())
    }

    /// [`Store::get_many`], unless the values add up to more than
    /// `max_bytes`: then `Ok(Err(total))`, with nothing read. A key given
    /// many times counts each time, as it would be copied each time.
    pub fn get_many_capped<K: AsRef<str>>(
        &self,
        bucket: &str,
        keys: &[K],
        max_bytes: u64,
    ) -> Result<std::result::Result<Vec<Option<Vec<u8>>>, u64>> {
        let found: Vec<_> = {
            let st = self.lock();
            keys.iter().map(|k| st.locate(bucket, k.as_ref())).collect()
        };
        let total: u64 = found
            .iter()
            .flatten()
            .map(|(e, _)| u64::from(e.value_len))
            .sum();
        if total > max_bytes {
            return Ok(Err(total));
        }
        found
            .into_iter()
            .map(|f| f.map(|(e, seg)| read_value(&seg, &e)).transpose())
            .collect::<Result<Vec<_>>>()
            .map(Ok)
    }

    /// Sets every pair, atomically: one record, all or nothing, even
    /// across a crash. A key given twice takes its last value.
    pub fn set_many<K: AsRef<str>, V: AsRef<[u8]>>(
        &self,
        bucket: &str,
        entries: &[(K, V)],
    ) -> Result<()> {
        self.write(
            entries
                .iter()
                .map(|(k, v)| Change::Set {
                    bucket,
                    key: k.as_ref(),
                    value: v.as_ref(),
                })
                .collect(),
        )?;
        self.announce(|| {
            entries
                .iter()
                .map(|(k, v)| set_event(bucket, k.as_ref(), v.as_ref()))
                .collect()
        });
        Ok(())
    }

    /// Deletes every key, atomically. Missing keys are ignored.
    pub fn delete_many<K: AsRef<str>>(&self, bucket: &str, keys: &[K]) -> Result<()> {
        let mut st = self.lock_write();
        let existing: Vec<&str> = keys
            .iter()
            .map(|k| k.as_ref())
            .filter(|k| st.index.get(bucket, k).is_some())
            .collect();
        let changes: Vec<Change<'_>> = existing
            .iter()
            .map(|&key| Change::Delete { bucket, key })
            .collect();
        let r = st.commit(changes);
        self.finish(st, r)?;
        self.announce(|| existing.iter().map(|k| delete_event(bucket, k)).collect());
        Ok(())
    }

    fn write(&self, changes: Vec<Change<'_>>) -> Result<()> {
        let mut st = self.lock_write();
        let r = st.commit(changes);
        self.finish(st, r)
    }

    /// Makes every write so far durable (fsync). A no-op under
    /// [`FsyncPolicy::Always`], where every write already is.
    pub fn flush(&self) -> Result<()> {
        let mut st = self.lock();
        st.check_writable()?;
        st.sync_active()
    }

    /// Rewrites the live data into fresh segments and deletes the old ones,
    /// holding the store's lock throughout (the automatic compaction runs
    /// in the background instead; this waits for one under way first).
    /// Crash-safe at every step; see the crate documentation.
    pub fn compact(&self) -> Result<CompactionStats> {
        loop {
            let mut st = self.lock();
            if !st.compacting {
                return st.compact();
            }
            drop(st);
            if let Some(sig) = &self.shared.compact_signal {
                sig.wait_idle();
            }
        }
    }

    /// Names of the buckets that hold keys.
    pub fn buckets(&self) -> Vec<String> {
        self.lock().index.buckets.keys().cloned().collect()
    }

    pub fn bucket_stats(&self, bucket: &str) -> BucketStats {
        let st = self.lock();
        st.index
            .buckets
            .get(bucket)
            .map(|b| BucketStats {
                keys: b.keys.len() as u64,
                live_bytes: b.bytes,
            })
            .unwrap_or_default()
    }

    pub fn stats(&self) -> Stats {
        let st = self.lock();
        Stats {
            live_keys: st.index.keys,
            live_bytes: st.index.bytes,
            disk_bytes: st.total_bytes,
            segments: st.segments.len(),
            unsynced_bytes: st.unsynced_bytes,
            bytes_written: st.counters.bytes_written,
            user_bytes_written: st.counters.user_bytes,
            fsyncs: st.counters.fsyncs,
            compactions: st.counters.compactions,
            read_only: st.poisoned.is_some(),
        }
    }

    /// Whether each write waits for its own fsync (`fsync: always`), i.e.
    /// blocks its thread on the disk. Read without the store's lock.
    pub fn writes_wait_for_disk(&self) -> bool {
        self.shared.signal.is_none()
    }

    /// The directory the store lives in.
    pub fn dir(&self) -> PathBuf {
        self.lock().dir.clone()
    }

    /// An increment that, after committing and before finishing, runs
    /// `meanwhile` and waits until another thread is queued for the lock:
    /// so the test knows the increment will hand the lock on and share
    /// that thread's fsync.
    #[cfg(test)]
    pub(crate) fn increment_then_queue(
        &self,
        bucket: &str,
        key: &str,
        delta: u64,
        meanwhile: impl FnOnce(),
    ) -> Result<u64> {
        let mut st = self.lock_write();
        let r = Store::increment_locked(&mut st, bucket, key, delta);
        meanwhile();
        while !self.shared.state.has_waiters() {
            std::thread::yield_now();
        }
        self.finish(st, r)
    }

    #[cfg(test)]
    pub(crate) fn crash_after_compaction_steps(&self, steps: usize) {
        self.lock().crash_countdown.set(Some(steps));
    }
}

impl Bucket {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.store.get(&self.name, key)
    }

    pub fn exists(&self, key: &str) -> bool {
        self.store.exists(&self.name, key)
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<()> {
        self.store.set(&self.name, key, value)
    }

    pub fn delete(&self, key: &str) -> Result<()> {
        self.store.delete(&self.name, key)
    }

    pub fn list_keys(&self, cursor: Option<&str>, limit: usize) -> KeyPage {
        self.store.list_keys(&self.name, cursor, limit)
    }

    pub fn increment(&self, key: &str, delta: u64) -> Result<u64> {
        self.store.increment(&self.name, key, delta)
    }

    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<bool> {
        self.store.compare_and_swap(&self.name, key, expected, new)
    }

    pub fn get_many<K: AsRef<str>>(&self, keys: &[K]) -> Result<Vec<Option<Vec<u8>>>> {
        self.store.get_many(&self.name, keys)
    }

    pub fn set_many<K: AsRef<str>, V: AsRef<[u8]>>(&self, entries: &[(K, V)]) -> Result<()> {
        self.store.set_many(&self.name, entries)
    }

    pub fn delete_many<K: AsRef<str>>(&self, keys: &[K]) -> Result<()> {
        self.store.delete_many(&self.name, keys)
    }

    pub fn stats(&self) -> BucketStats {
        self.store.bucket_stats(&self.name)
    }
}

fn spawn_flusher(shared: Weak<Shared>, sig: Arc<FlushSignal>, delay: Duration) -> Result<()> {
    let spawned = std::thread::Builder::new()
        .name("twig-kv-flush".into())
        .stack_size(128 << 10)
        .spawn(move || loop {
            {
                let mut ctl = sig.ctl.lock().unwrap_or_else(PoisonError::into_inner);
                loop {
                    if ctl.shutdown {
                        return;
                    }
                    match ctl.deadline {
                        None => ctl = sig.cv.wait(ctl).unwrap_or_else(PoisonError::into_inner),
                        Some(d) => {
                            let now = Instant::now();
                            if now >= d {
                                ctl.deadline = None;
                                break;
                            }
                            ctl = sig
                                .cv
                                .wait_timeout(ctl, d - now)
                                .unwrap_or_else(PoisonError::into_inner)
                                .0;
                        }
                    }
                }
            }
            let Some(shared) = shared.upgrade() else {
                return;
            };
            let mut st = shared.state.lock();
            if st.poisoned.is_none() && st.dirty_since.is_some_and(|t| t.elapsed() >= delay) {
                if let Err(e) = st.sync_active() {
                    tracing::error!("background fsync of the key-value store failed: {e}");
                }
            } else if let Some(t) = st.dirty_since {
                // Dirtied again since the deadline was set: come back later.
                let mut ctl = sig.ctl.lock().unwrap_or_else(PoisonError::into_inner);
                let d = t + delay;
                ctl.deadline = Some(ctl.deadline.map_or(d, |x| x.min(d)));
            }
        });
    match spawned {
        Ok(_) => Ok(()),
        Err(e) => Err(Error::Io {
            path: PathBuf::from("<flusher thread>"),
            offset: None,
            source: e,
        }),
    }
}

/// Compaction output being written.
struct Output {
    id: u32,
    tmp: PathBuf,
    path: PathBuf,
    len: u64,
    read: File,
}

impl State {
    fn locate(&self, bucket: &str, key: &str) -> Option<(Entry, Arc<SegFile>)> {
        let e = *self.index.get(bucket, key)?;
        let seg = self.segments.get(&e.segment)?;
        Some((e, seg.handle.clone()))
    }

    fn active_len(&self) -> u64 {
        self.segments.get(&self.active.id).map_or(0, |s| s.len)
    }

    fn check_writable(&self) -> Result<()> {
        match &self.poisoned {
            Some(reason) => Err(Error::ReadOnly {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    fn poison(&mut self, reason: String) {
        tracing::error!(
            "key-value store in {} is now read-only: {reason}",
            self.dir.display()
        );
        self.poisoned.get_or_insert(reason);
    }

    fn validate(&self, c: &Change<'_>) -> Result<()> {
        let cfg = &self.config;
        if c.bucket().len() > MAX_BUCKET_NAME_BYTES {
            return Err(Error::BucketNameTooLarge {
                len: c.bucket().len(),
                limit: MAX_BUCKET_NAME_BYTES,
            });
        }
        if c.key().len() > cfg.max_key_bytes {
            return Err(Error::KeyTooLarge {
                len: c.key().len(),
                limit: cfg.max_key_bytes,
            });
        }
        if let Change::Set { value, .. } = c {
            if value.len() > cfg.max_value_bytes {
                return Err(Error::ValueTooLarge {
                    len: value.len(),
                    limit: cfg.max_value_bytes,
                });
            }
        }
        Ok(())
    }

    /// Live bytes after `changes`.
    fn projected_bytes(&self, changes: &[Change<'_>]) -> u64 {
        let size = |key: &str, vlen: Option<usize>| vlen.map_or(0, |v| (key.len() + v) as i128);
        let mut delta: i128 = 0;
        let mut seen: BTreeMap<(&str, &str), Option<usize>> = BTreeMap::new();
        for c in changes {
            let (b, k) = (c.bucket(), c.key());
            let old = match seen.get(&(b, k)) {
                Some(v) => *v,
                None => self.index.get(b, k).map(|e| e.value_len as usize),
            };
            let new = match c {
                Change::Set { value, .. } => Some(value.len()),
                Change::Delete { .. } => None,
            };
            delta += size(k, new) - size(k, old);
            if changes.len() > 1 {
                seen.insert((b, k), new);
            }
        }
        (self.index.bytes as i128 + delta).max(0) as u64
    }

    /// Appends one record holding `changes` and applies it to the index.
    /// On error nothing was applied and the log is as before.
    fn commit(&mut self, changes: Vec<Change<'_>>) -> Result<()> {
        self.check_writable()?;
        if changes.is_empty() {
            return Ok(());
        }
        for c in &changes {
            self.validate(c)?;
        }
        let would_be = self.projected_bytes(&changes);
        if would_be > self.config.max_bytes && would_be > self.index.bytes {
            return Err(Error::Full {
                would_be,
                limit: self.config.max_bytes,
            });
        }
        let seq = self.next_seq.ok_or(Error::SequenceExhausted)?;
        let user_bytes: u64 = changes
            .iter()
            .map(|c| match c {
                Change::Set { key, value, .. } => (key.len() + value.len()) as u64,
                Change::Delete { key, .. } => key.len() as u64,
            })
            .sum();
        let is_batch = changes.len() > 1;
        let op = if is_batch {
            Op::Batch(changes)
        } else {
            Op::One(changes[0])
        };
        let record = Record { seq, op };
        let mut buf = std::mem::take(&mut self.buf);
        buf.clear();
        let limit = if is_batch {
            self.config.max_batch_bytes
        } else {
            format::MAX_BODY_LEN + format::HEADER_LEN
        };
        let too_large = match format::encode(&record, &mut buf) {
            Ok(()) if buf.len() <= limit => None,
            Ok(()) => Some(buf.len()),
            Err(EncodeError::TooLarge { body_len }) => Some(body_len + format::HEADER_LEN),
            Err(EncodeError::Codec) => {
                self.buf = buf;
                return Err(Error::InvalidConfig("record could not be encoded".into()));
            }
        };
        if let Some(len) = too_large {
            self.buf = buf;
            return Err(Error::BatchTooLarge { len, limit });
        }
        drop(record);
        // A record that starts a new segment goes after the group is
        // settled, so a group's records are all in one file.
        let cur = self.active_len();
        if cur > 0 && cur + buf.len() as u64 > self.config.segment_max_bytes {
            self.flush_group();
        }
        let grouped = self.config.fsync == FsyncPolicy::Always;
        if grouped && self.group.is_none() {
            self.group = Some(Group {
                offset: 0,
                next_seq: self.next_seq,
                total_bytes: self.total_bytes,
                bytes_written: self.counters.bytes_written,
                user_bytes: self.counters.user_bytes,
                undo: Vec::new(),
                members: 0,
                outcome: Arc::new(Outcome::default()),
            });
        }
        let appended = self.append(&buf);
        if let (Ok((segment, offset)), Some(g)) = (&appended, self.group.as_mut()) {
            if g.members == 0 {
                g.offset = u64::from(*offset);
                debug_assert_eq!(*segment, self.active.id);
            }
        }
        let result = appended.and_then(|(segment, offset)| {
            let Parsed::Valid { record, len } = format::parse(&buf) else {
                // The bytes just encoded always parse; if they ever did
                // not, the index could not follow the log.
                return Err(Error::ReadOnly {
                    reason: "internal error: an appended record does not parse".into(),
                });
            };
            for c in record.op.changes() {
                if let Some(g) = self.group.as_mut() {
                    let (b, k) = (c.bucket(), c.key());
                    let old = self.index.get(b, k).copied();
                    g.undo.push((b.to_owned(), k.into(), old));
                }
                match *c {
                    Change::Set { bucket, key, value } => self.index.set(
                        bucket,
                        key,
                        Entry {
                            seq,
                            segment,
                            offset,
                            record_len: len as u32,
                            value_off: format::offset_in(&buf, value) as u32,
                            value_len: value.len() as u32,
                        },
                    ),
                    Change::Delete { bucket, key } => {
                        self.index.remove(bucket, key);
                    }
                }
            }
            Ok(())
        });
        if let Err(Error::ReadOnly { reason }) = &result {
            let reason = reason.clone();
            self.poison(reason);
        }
        self.buf = buf;
        if self.buf.capacity() > 64 << 10 {
            self.buf = Vec::new();
        }
        if let Err(e) = result {
            if self.group.as_ref().is_some_and(|g| g.members == 0) {
                self.group = None;
            }
            return Err(e);
        }
        self.next_seq = seq.checked_add(1);
        self.counters.user_bytes += user_bytes;
        if let Some(g) = self.group.as_mut() {
            g.members += 1;
            self.joined = Some(g.outcome.clone());
        }
        Ok(())
    }

    /// Appends a framed record to the active segment (starting a new one
    /// first if it is full) and, by the fsync policy, syncs it. On failure
    /// the segment is cut back to where it was; if even that fails the
    /// store turns read-only.
    fn append(&mut self, rec: &[u8]) -> Result<(u32, u32)> {
        let len = rec.len() as u64;
        let cur = self.active_len();
        if cur > 0 && cur + len > self.config.segment_max_bytes {
            self.rotate()?;
        }
        let off = self.active_len();
        if let Err(e) = write_all_at(&mut *self.active.file, rec, off) {
            let err = io_error(&self.active.path, Some(off), e);
            self.roll_back(off, false);
            return Err(err);
        }
        let now = Instant::now();
        let sync_now = match self.config.fsync {
            // The group's fsync covers it (`Store::finish`).
            FsyncPolicy::Always => false,
            FsyncPolicy::Batched {
                max_delay_ms,
                max_bytes,
            } => {
                self.unsynced_bytes + len >= max_bytes
                    || self.dirty_since.is_some_and(|t| {
                        now.duration_since(t) >= Duration::from_millis(max_delay_ms)
                    })
            }
        };
        if sync_now {
            if let Err(e) = self.active.file.sync() {
                let err = io_error(&self.active.path, Some(off), e);
                self.roll_back(off, true);
                if self.unsynced_bytes > 0 {
                    // Earlier acknowledged writes may be lost with it.
                    self.poison(format!(
                        "fsync of {} failed: {err}",
                        self.active.path.display()
                    ));
                }
                return Err(err);
            }
            self.counters.fsyncs += 1;
            self.unsynced_bytes = 0;
            self.dirty_since = None;
        } else if self.config.fsync == FsyncPolicy::Always {
            self.unsynced_bytes += len;
        } else {
            self.unsynced_bytes += len;
            if self.dirty_since.is_none() {
                self.dirty_since = Some(now);
                if let (Some(sig), FsyncPolicy::Batched { max_delay_ms, .. }) =
                    (&self.signal, self.config.fsync)
                {
                    let d = now + Duration::from_millis(max_delay_ms);
                    let mut ctl = sig.ctl.lock().unwrap_or_else(PoisonError::into_inner);
                    ctl.deadline = Some(ctl.deadline.map_or(d, |x| x.min(d)));
                    sig.cv.notify_one();
                }
            }
        }
        if let Some(s) = self.segments.get_mut(&self.active.id) {
            s.len = off + len;
        }
        self.total_bytes += len;
        self.counters.bytes_written += len;
        Ok((self.active.id, off as u32))
    }

    /// Cuts the active segment back to `len` after a failed write or fsync.
    fn roll_back(&mut self, len: u64, after_failed_sync: bool) {
        let res = self.active.file.set_len(len).and_then(|()| {
            if after_failed_sync {
                self.active.file.sync()
            } else {
                Ok(())
            }
        });
        if let Err(e) = res {
            let reason = format!(
                "could not cut {} back to {len} bytes after a failed write: {e}",
                self.active.path.display()
            );
            self.poison(reason);
        }
    }

    /// Fsyncs the pending group's records and tells its members; on
    /// failure rolls the group back. `None` if no group was pending.
    fn flush_group(&mut self) -> Option<Result<()>> {
        let g = self.group.take()?;
        if g.members == 0 {
            return Some(Ok(()));
        }
        match self.active.file.sync() {
            Ok(()) => {
                self.counters.fsyncs += 1;
                self.unsynced_bytes = 0;
                self.dirty_since = None;
                g.outcome.set(Ok(()));
                Some(Ok(()))
            }
            Err(e) => {
                let failure = GroupFailure {
                    path: self.active.path.clone(),
                    offset: g.offset,
                    kind: e.kind(),
                    message: format!("fsync failed: {e}"),
                };
                let err = io_error(&self.active.path, Some(g.offset), e);
                self.roll_back(g.offset, true);
                for (b, k, old) in g.undo.into_iter().rev() {
                    match old {
                        Some(e) => self.index.set(&b, &k, e),
                        None => {
                            self.index.remove(&b, &k);
                        }
                    }
                }
                if let Some(s) = self.segments.get_mut(&self.active.id) {
                    s.len = g.offset;
                }
                self.next_seq = g.next_seq;
                self.total_bytes = g.total_bytes;
                self.counters.bytes_written = g.bytes_written;
                self.counters.user_bytes = g.user_bytes;
                self.unsynced_bytes = 0;
                g.outcome.set(Err(failure));
                Some(Err(err))
            }
        }
    }

    fn sync_active(&mut self) -> Result<()> {
        if let Some(Err(e)) = self.flush_group() {
            return Err(e);
        }
        if self.unsynced_bytes == 0 {
            return Ok(());
        }
        match self.active.file.sync() {
            Ok(()) => {
                self.counters.fsyncs += 1;
                self.unsynced_bytes = 0;
                self.dirty_since = None;
                Ok(())
            }
            Err(e) => {
                let err = io_error(&self.active.path, None, e);
                self.poison(format!("fsync failed: {err}"));
                Err(err)
            }
        }
    }

    /// Starts a new active segment (the old one is synced first).
    fn rotate(&mut self) -> Result<()> {
        let id = self
            .active
            .id
            .checked_add(1)
            .ok_or(Error::SequenceExhausted)?;
        self.rotate_to(id)
    }

    /// Starts the new active segment `id` (above every existing one).
    fn rotate_to(&mut self, id: u32) -> Result<()> {
        self.sync_active()?;
        let path = segment_path(&self.dir, id);
        let created = self
            .storage
            .create(&path)
            .and_then(|f| Ok((f, File::open(&path)?)))
            .and_then(|fr| sync_dir(&self.dir).map(|()| fr));
        let (file, read) = match created {
            Ok(x) => x,
            Err(e) => {
                let _ = fs::remove_file(&path);
                return Err(io_error(&path, None, e));
            }
        };
        self.segments.insert(
            id,
            Segment {
                handle: Arc::new(SegFile {
                    path: path.clone(),
                    file: read,
                }),
                len: 0,
            },
        );
        self.active = Active { id, path, file };
        Ok(())
    }

    fn should_compact(&self) -> bool {
        let p = &self.config.compaction;
        let total = self.total_bytes;
        let dead = total.saturating_sub(self.index.record_bytes);
        p.auto
            && self.poisoned.is_none()
            && total >= self.auto_compact_floor
            && dead > p.min_dead_bytes
            && dead as u128 * 100 > p.min_dead_percent as u128 * total as u128
    }

    /// Compacts if the policy says so. A failure is logged, not returned:
    /// the write that triggered it has succeeded.
    fn maybe_compact(&mut self) {
        if self.compacting || !self.should_compact() {
            return;
        }
        if let Some(sig) = &self.compactor {
            // Off the request path: the compactor thread takes it.
            self.compacting = true;
            sig.ctl().running = true;
            sig.cv.notify_all();
            return;
        }
        match self.compact() {
            Ok(_) => self.auto_compact_floor = 0,
            Err(e) => {
                self.auto_compact_floor = self.total_bytes + self.config.compaction.min_dead_bytes;
                tracing::warn!("automatic compaction of {} failed: {e}", self.dir.display());
            }
        }
    }

    #[inline]
    fn crash_point(&self) -> Result<()> {
        match self.crash_countdown.get() {
            Some(0) => {
                self.crashed.set(true);
                Err(Error::Io {
                    path: self.dir.clone(),
                    offset: None,
                    source: io::Error::other("simulated crash"),
                })
            }
            Some(n) => {
                self.crash_countdown.set(Some(n - 1));
                Ok(())
            }
            None => Ok(()),
        }
    }

    fn compact(&mut self) -> Result<CompactionStats> {
        self.check_writable()?;
        self.sync_active()?;
        let started = Instant::now();
        let bytes_before = self.total_bytes;
        let segments_before = self.segments.len();
        let first_new = self
            .active
            .id
            .checked_add(1)
            .ok_or(Error::SequenceExhausted)?;
        let snapshot = self.snapshot();
        let step = || self.crash_point();
        let copier = Copier {
            dir: &self.dir,
            storage: &*self.storage,
            seg_max: self.config.segment_max_bytes,
            first_id: first_new,
            end_id: u32::MAX,
            step: &step,
        };
        let mut outputs = Vec::new();
        let mut writer: Option<Box<dyn SegmentFile>> = None;
        let written = copier.write_outputs(&snapshot, true, &mut outputs, &mut writer);
        let new_entries = match written.and_then(|n| copier.publish(&outputs).map(|()| n)) {
            Ok(n) => n,
            Err(e) => {
                drop(writer);
                if self.crashed.get() {
                    // A simulated crash leaves everything as it is.
                    self.poison("simulated crash".into());
                } else if let Some(reason) = discard_outputs(&self.dir, &outputs) {
                    self.poison(reason);
                }
                return Err(e);
            }
        };
        // The outputs are durable and complete: the old segments are
        // redundant. Delete them oldest first, so that a crash part-way
        // never leaves a deletion's tombstone gone while an older set of
        // the same key survives.
        let old: Vec<u32> = self.segments.keys().copied().collect();
        let mut kept = Vec::new();
        for id in old {
            let path = segment_path(&self.dir, id);
            match fs::remove_file(&path).and_then(|()| sync_dir(&self.dir)) {
                Ok(()) => {}
                Err(e) => {
                    tracing::warn!(file = %path.display(), "could not delete a compacted segment: {e}");
                    kept.push(id);
                }
            }
            if let Err(e) = self.crash_point() {
                self.poison("simulated crash".into());
                return Err(e);
            }
        }
        let mut old_segments = std::mem::take(&mut self.segments);
        for id in kept {
            if let Some(s) = old_segments.remove(&id) {
                self.segments.insert(id, s);
            }
        }
        drop(old_segments);
        let Some(last) = outputs.last().map(|o| (o.id, o.path.clone())) else {
            return Err(Error::ReadOnly {
                reason: "internal error: compaction produced no segment".into(),
            });
        };
        let out_bytes = self.add_outputs(outputs);
        let Some(file) = writer else {
            return Err(Error::ReadOnly {
                reason: "internal error: compaction lost its last segment".into(),
            });
        };
        self.active = Active {
            id: last.0,
            path: last.1,
            file,
        };
        // Point the index at the copies, in the order they were gathered.
        let mut dropped = Vec::new();
        let mut slots = new_entries.into_iter();
        for (bname, b) in self.index.buckets.iter_mut() {
            for (k, e) in b.keys.iter_mut() {
                match slots.next().flatten() {
                    Some(n) => *e = n,
                    None => dropped.push((bname.clone(), k.to_string())),
                }
            }
        }
        let dropped_corrupt = dropped.len() as u64;
        for (b, k) in dropped {
            self.index.remove(&b, &k);
        }
        self.total_bytes = self.segments.values().map(|s| s.len).sum();
        self.unsynced_bytes = 0;
        self.dirty_since = None;
        self.counters.compactions += 1;
        self.counters.bytes_written += out_bytes;
        let stats = CompactionStats {
            bytes_before,
            bytes_after: self.total_bytes,
            segments_before,
            segments_after: self.segments.len(),
            live_keys: self.index.keys,
            dropped_corrupt,
            duration: started.elapsed(),
        };
        tracing::info!(
            dir = %self.dir.display(),
            before = stats.bytes_before,
            after = stats.bytes_after,
            keys = stats.live_keys,
            "compacted the key-value store in {:?}",
            stats.duration
        );
        Ok(stats)
    }

    /// Every live key's entry, in index order, and the segments holding
    /// them.
    fn snapshot(&self) -> Snapshot {
        let mut refs = Vec::with_capacity(self.index.keys as usize);
        for (b, bi) in &self.index.buckets {
            for (k, e) in &bi.keys {
                refs.push((b.clone(), k.clone(), *e));
            }
        }
        let handles = self
            .segments
            .iter()
            .map(|(&id, s)| (id, s.handle.clone()))
            .collect();
        Snapshot { refs, handles }
    }

    /// The first, locked step of a background compaction: seals the
    /// active segment (new writes go to a fresh one, whose id leaves room
    /// below it for the outputs) and takes a snapshot of the live entries,
    /// all of which are now in sealed segments.
    fn begin_background(&mut self) -> Result<Background> {
        self.check_writable()?;
        let first_id = self
            .active
            .id
            .checked_add(1)
            .ok_or(Error::SequenceExhausted)?;
        // Every output but the last holds at least one record, and any two
        // consecutive ones hold more than a segment's worth together (the
        // outputs' records add up to `record_bytes`).
        let seg_max = self.config.segment_max_bytes.max(1);
        let bound = (2 * self.index.record_bytes.div_ceil(seg_max) + 1).min(self.index.keys);
        let end_id = u32::try_from(bound + 1)
            .ok()
            .and_then(|r| first_id.checked_add(r))
            .ok_or(Error::SequenceExhausted)?;
        let bytes_before = self.total_bytes;
        let segments_before = self.segments.len();
        let sealed: Vec<u32> = self.segments.keys().copied().collect();
        self.rotate_to(end_id)?;
        let mut snapshot = self.snapshot();
        snapshot.handles.retain(|id, _| *id < end_id);
        Ok(Background {
            dir: self.dir.clone(),
            storage: self.storage.clone(),
            seg_max: self.config.segment_max_bytes,
            first_id,
            end_id,
            sealed,
            snapshot,
            bytes_before,
            segments_before,
        })
    }

    /// Puts a compaction's published outputs among the store's segments;
    /// returns the bytes they hold.
    fn add_outputs(&mut self, outputs: Vec<Output>) -> u64 {
        let mut bytes = 0;
        for o in outputs {
            bytes += o.len;
            let handle = Arc::new(SegFile {
                path: o.path,
                file: o.read,
            });
            self.segments.insert(o.id, Segment { handle, len: o.len });
        }
        bytes
    }

    /// The second, locked step of a background compaction: points every
    /// entry not overwritten or deleted since the snapshot at its copy,
    /// adds the outputs and takes the sealed segments out of the store
    /// (returned, oldest first, for deleting). No entry refers to them
    /// afterwards; a read already under way holds its segment open.
    fn install_background(
        &mut self,
        bg: &Background,
        new_entries: Vec<Option<Entry>>,
        outputs: Vec<Output>,
    ) -> (Vec<(u32, Segment)>, u64) {
        let mut dropped = 0;
        for ((b, k, old), new) in bg.snapshot.refs.iter().zip(new_entries) {
            if self.index.get(b, k) != Some(old) {
                continue;
            }
            match new {
                Some(n) => self.index.set(b, k, n),
                None => {
                    // Its record was corrupt, as `compact` drops it.
                    self.index.remove(b, k);
                    dropped += 1;
                }
            }
        }
        let mut retired = Vec::new();
        for id in &bg.sealed {
            if let Some(s) = self.segments.remove(id) {
                retired.push((*id, s));
            }
        }
        let out_bytes = self.add_outputs(outputs);
        self.total_bytes = self.segments.values().map(|s| s.len).sum();
        self.counters.compactions += 1;
        self.counters.bytes_written += out_bytes;
        self.auto_compact_floor = 0;
        (retired, dropped)
    }
}

/// Every live key's entry at one moment, and handles on the segments
/// they are in.
struct Snapshot {
    refs: Vec<(String, Box<str>, Entry)>,
    handles: BTreeMap<u32, Arc<SegFile>>,
}

/// A background compaction's plan, made under the lock and carried out
/// off it.
struct Background {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    seg_max: u64,
    /// The outputs take ids from `first_id`, below `end_id` (the new
    /// active segment).
    first_id: u32,
    end_id: u32,
    /// The segments compacted, oldest first.
    sealed: Vec<u32>,
    snapshot: Snapshot,
    bytes_before: u64,
    segments_before: usize,
}

/// Writes a compaction's outputs.
struct Copier<'a> {
    dir: &'a Path,
    storage: &'a dyn Storage,
    seg_max: u64,
    first_id: u32,
    /// Outputs must have ids below this.
    end_id: u32,
    /// Called after each step (a crash point in tests; the background
    /// compactor's check for shutdown).
    step: &'a dyn Fn() -> Result<()>,
}

impl Copier<'_> {
    /// Copies every live value into new segments under temporary names,
    /// each fsynced. Returns the new entry of each key in snapshot order
    /// (`None` for a key whose record turned out corrupt). The last
    /// output's writer is left in `writer`. With `always_one`, an empty
    /// snapshot still gets one (empty) output.
    fn write_outputs(
        &self,
        snapshot: &Snapshot,
        always_one: bool,
        outputs: &mut Vec<Output>,
        writer: &mut Option<Box<dyn SegmentFile>>,
    ) -> Result<Vec<Option<Entry>>> {
        let refs = &snapshot.refs;
        // Read in file order: sequential reads, and each batch record once.
        let mut order: Vec<usize> = (0..refs.len()).collect();
        order.sort_unstable_by_key(|&i| (refs[i].2.segment, refs[i].2.offset));
        let mut new_entries: Vec<Option<Entry>> = vec![None; refs.len()];
        let mut cached: Option<(u32, u32, Vec<u8>)> = None;
        let mut buf = Vec::new();
        let mut cur_len = 0u64;
        for i in order {
            let (bucket, key, e) = (&*refs[i].0, &*refs[i].1, refs[i].2);
            if cached
                .as_ref()
                .is_none_or(|c| (c.0, c.1) != (e.segment, e.offset))
            {
                let Some(seg) = snapshot.handles.get(&e.segment) else {
                    tracing::error!(
                        bucket,
                        key,
                        "compaction: the key's segment is missing; dropping it"
                    );
                    continue;
                };
                let mut rec = vec![0u8; e.record_len as usize];
                let checked = match seg.file.read_exact_at(&mut rec, e.offset as u64) {
                    Ok(()) => format::verify(&rec),
                    Err(err) if err.kind() == io::ErrorKind::UnexpectedEof => {
                        Err("record runs past the end of the file")
                    }
                    Err(err) => return Err(io_error(&seg.path, Some(e.offset as u64), err)),
                };
                if let Err(reason) = checked {
                    tracing::error!(
                        file = %seg.path.display(),
                        offset = e.offset,
                        bucket,
                        key,
                        "compaction: record is corrupt ({reason}); the key is dropped"
                    );
                    continue;
                }
                cached = Some((e.segment, e.offset, rec));
            }
            let Some((_, _, rec)) = &cached else { continue };
            let Some(value) = rec.get(e.value_off as usize..(e.value_off + e.value_len) as usize)
            else {
                continue;
            };
            buf.clear();
            let record = Record {
                seq: e.seq,
                op: Op::One(Change::Set { bucket, key, value }),
            };
            if format::encode(&record, &mut buf).is_err() {
                continue;
            }
            if writer.is_none() {
                self.start_output(outputs, writer)?;
            } else if cur_len > 0 && cur_len + buf.len() as u64 > self.seg_max {
                self.finish_output(outputs, writer, cur_len)?;
                self.start_output(outputs, writer)?;
                cur_len = 0;
            }
            let out = outputs.last().ok_or_else(|| Error::ReadOnly {
                reason: "internal error: no compaction output".into(),
            })?;
            let w = writer.as_mut().ok_or_else(|| Error::ReadOnly {
                reason: "internal error: no compaction writer".into(),
            })?;
            write_all_at(&mut **w, &buf, cur_len)
                .map_err(|err| io_error(&out.tmp, Some(cur_len), err))?;
            new_entries[i] = Some(Entry {
                seq: e.seq,
                segment: out.id,
                offset: cur_len as u32,
                record_len: buf.len() as u32,
                value_off: (buf.len() - value.len()) as u32,
                value_len: e.value_len,
            });
            cur_len += buf.len() as u64;
            (self.step)()?;
        }
        // With no live key there is still one (empty) segment to append to.
        if writer.is_none() {
            if !always_one {
                return Ok(new_entries);
            }
            self.start_output(outputs, writer)?;
        }
        self.finish_output(outputs, writer, cur_len)?;
        Ok(new_entries)
    }

    /// Syncs the current output, recording its length.
    fn finish_output(
        &self,
        outputs: &mut [Output],
        writer: &mut Option<Box<dyn SegmentFile>>,
        len: u64,
    ) -> Result<()> {
        if let (Some(w), Some(o)) = (writer.as_mut(), outputs.last_mut()) {
            w.sync().map_err(|e| io_error(&o.tmp, None, e))?;
            o.len = len;
        }
        (self.step)()
    }

    /// Creates the next output file under its temporary name.
    fn start_output(
        &self,
        outputs: &mut Vec<Output>,
        writer: &mut Option<Box<dyn SegmentFile>>,
    ) -> Result<()> {
        let id = match outputs.last() {
            Some(o) => o.id.checked_add(1).ok_or(Error::SequenceExhausted)?,
            None => self.first_id,
        };
        if id >= self.end_id {
            return Err(Error::ReadOnly {
                reason: "internal error: compaction ran out of segment ids".into(),
            });
        }
        let tmp = temp_path(self.dir, id);
        let f = self
            .storage
            .create(&tmp)
            .map_err(|e| io_error(&tmp, None, e))?;
        let read = File::open(&tmp).map_err(|e| io_error(&tmp, None, e))?;
        *writer = Some(f);
        outputs.push(Output {
            id,
            tmp,
            path: segment_path(self.dir, id),
            len: 0,
            read,
        });
        (self.step)()
    }

    /// Renames the outputs into place and syncs the directory: after this
    /// they are the store.
    fn publish(&self, outputs: &[Output]) -> Result<()> {
        for o in outputs {
            fs::rename(&o.tmp, &o.path).map_err(|e| io_error(&o.path, None, e))?;
            (self.step)()?;
        }
        sync_dir(self.dir).map_err(io_err(self.dir))?;
        (self.step)()
    }
}

/// Removes the outputs of a failed compaction, leaving the old segments
/// as the store. What failed, if anything did: the store should then turn
/// read-only (on reopen the copies are harmless duplicates).
fn discard_outputs(dir: &Path, outputs: &[Output]) -> Option<String> {
    let mut failed = None;
    for o in outputs.iter().rev() {
        for p in [&o.tmp, &o.path] {
            if let Err(e) = remove_if_exists(p) {
                failed = Some(format!("could not remove {}: {e}", p.display()));
            }
        }
    }
    if let Err(e) = sync_dir(dir) {
        failed = Some(format!("could not sync {}: {e}", dir.display()));
    }
    failed.map(|reason| format!("after a failed compaction {reason}"))
}

/// The state, with any writes awaiting their group fsync settled first
/// (as [`Store::lock`]).
fn lock_settled(state: &Fair<State>) -> FairGuard<'_, State> {
    let mut st = state.lock();
    st.flush_group();
    st
}

fn closing() -> Error {
    Error::ReadOnly {
        reason: "the store is closing".into(),
    }
}

/// The compactor thread: runs each automatic compaction off the request
/// path. Dropping the last [`Store`] waits for the thread, which stops at
/// its next step.
fn spawn_compactor(
    state: Arc<Fair<State>>,
    sig: Arc<CompactSignal>,
) -> Result<std::thread::JoinHandle<()>> {
    let spawned = std::thread::Builder::new()
        .name("twig-kv-compact".into())
        .stack_size(256 << 10)
        .spawn(move || loop {
            {
                let mut ctl = sig.ctl();
                loop {
                    if ctl.shutdown {
                        return;
                    }
                    if ctl.running {
                        break;
                    }
                    ctl = sig.cv.wait(ctl).unwrap_or_else(PoisonError::into_inner);
                }
            }
            let result = compact_in_background(&state, &sig);
            {
                let mut st = lock_settled(&state);
                match &result {
                    Ok(stats) => tracing::info!(
                        dir = %st.dir.display(),
                        before = stats.bytes_before,
                        after = stats.bytes_after,
                        keys = stats.live_keys,
                        "compacted the key-value store in the background in {:?}",
                        stats.duration
                    ),
                    Err(e) => {
                        st.auto_compact_floor =
                            st.total_bytes + st.config.compaction.min_dead_bytes;
                        if st.poisoned.is_none() {
                            tracing::warn!(
                                "automatic compaction of {} failed: {e}",
                                st.dir.display()
                            );
                        }
                    }
                }
                st.compacting = false;
                // Under the store's lock, so a new request is not lost.
                sig.ctl().running = false;
                sig.cv.notify_all();
            }
        });
    spawned.map_err(|e| Error::Io {
        path: PathBuf::from("<compaction thread>"),
        offset: None,
        source: e,
    })
}

/// One background compaction: seal and snapshot (locked), copy, fsync and
/// publish the outputs (unlocked), repoint the index (locked), delete the
/// old segments oldest first (unlocked). A crash at any point leaves old
/// and new segments that recovery merges by sequence number (the outputs
/// keep their records' numbers), as after an interrupted `compact`.
fn compact_in_background(state: &Fair<State>, sig: &CompactSignal) -> Result<CompactionStats> {
    let started = Instant::now();
    let bg = lock_settled(state).begin_background()?;
    let crashed = Cell::new(false);
    let step = || -> Result<()> {
        if sig.shutting_down() {
            return Err(closing());
        }
        #[cfg(test)]
        {
            let mut c = sig
                .crash_countdown
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            match *c {
                Some(0) => {
                    *c = None;
                    crashed.set(true);
                    return Err(Error::Io {
                        path: PathBuf::from("<compaction>"),
                        offset: None,
                        source: io::Error::other("simulated crash"),
                    });
                }
                Some(n) => *c = Some(n - 1),
                None => {}
            }
        }
        Ok(())
    };
    // A simulated crash stops everything dead: the store turns read-only
    // so that nothing more reaches the disk.
    let crash = |e: Error| {
        if crashed.get() {
            lock_settled(state).poison("simulated crash".into());
        }
        e
    };
    let copier = Copier {
        dir: &bg.dir,
        storage: &*bg.storage,
        seg_max: bg.seg_max,
        first_id: bg.first_id,
        end_id: bg.end_id,
        step: &step,
    };
    let mut outputs = Vec::new();
    let mut writer = None;
    let written = copier.write_outputs(&bg.snapshot, false, &mut outputs, &mut writer);
    drop(writer);
    let new_entries = match written.and_then(|n| copier.publish(&outputs).map(|()| n)) {
        Ok(n) => n,
        Err(e) => {
            if !crashed.get() && !sig.shutting_down() {
                if let Some(reason) = discard_outputs(&bg.dir, &outputs) {
                    lock_settled(state).poison(reason);
                }
            }
            return Err(crash(e));
        }
    };
    let (retired, dropped_corrupt, bytes_after, segments_after, live_keys) = {
        let mut st = lock_settled(state);
        // A store turned read-only meanwhile keeps its segments; the
        // published copies are harmless duplicates on reopen.
        st.check_writable()?;
        let (retired, dropped) = st.install_background(&bg, new_entries, outputs);
        (
            retired,
            dropped,
            st.total_bytes,
            st.segments.len(),
            st.index.keys,
        )
    };
    // Oldest first, as `compact` does. No reader can be handed these any
    // more; one under way has its file open.
    let mut kept = retired.into_iter().peekable();
    while let Some((id, _)) = kept.peek() {
        if sig.shutting_down() {
            // Left for the next open, which merges them harmlessly.
            return Err(closing());
        }
        let path = segment_path(&bg.dir, *id);
        if let Err(e) = fs::remove_file(&path).and_then(|()| sync_dir(&bg.dir)) {
            tracing::warn!(file = %path.display(), "could not delete a compacted segment: {e}");
            break;
        }
        kept.next();
        step().map_err(crash)?;
    }
    let kept: Vec<_> = kept.collect();
    if !kept.is_empty() {
        // Back into the store, for the next compaction to retire.
        let mut st = lock_settled(state);
        for (id, seg) in kept {
            st.total_bytes += seg.len;
            st.segments.insert(id, seg);
        }
    }
    Ok(CompactionStats {
        bytes_before: bg.bytes_before,
        bytes_after,
        segments_before: bg.segments_before,
        segments_after,
        live_keys,
        dropped_corrupt,
        duration: started.elapsed(),
    })
}
