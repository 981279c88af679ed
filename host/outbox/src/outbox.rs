//! [`Outbox`]: the classes behind one lock, the byte cap and drop policy,
//! the outbox id, and the hand-over to the sender.

use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::class::{sync_dir, write_atomic, Class, CursorFile, Discard};
use crate::config::{Clock, DropPolicy, OutboxConfig, SyncPolicy};
use crate::error::{io_err, OutboxError};
use crate::format::{self, EncodeError};
use crate::segment::Segment;
use twig_seglog::{DirLock, Flusher, Syncer};

/// The file holding the outbox's id.
pub const ID_FILE: &str = "ID";
const ID_TMP: &str = "ID.tmp";
/// Hex digits in an outbox id.
const ID_LEN: usize = 16;

/// Identifies a class: its index in [`OutboxConfig::classes`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClassId(pub usize);

/// A record handed to the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub class: ClassId,
    /// Per-class sequence number (from 1, never reused).
    pub seq: u64,
    /// When it was appended (milliseconds since the Unix epoch).
    pub created_ms: u64,
    pub subject: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Record {
    /// The record's stable message id (see [`Outbox::msg_id`]).
    pub fn msg_id(&self, outbox: &Outbox) -> String {
        outbox.msg_id(self)
    }
}

/// A snapshot of the outbox's state and counters. Counters count since
/// the outbox was opened.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct OutboxStats {
    /// Bytes of all segment files together.
    pub total_bytes: u64,
    pub max_bytes: u64,
    /// In configuration order (index = [`ClassId`]).
    pub classes: Vec<ClassStats>,
}

/// One class's part of [`OutboxStats`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClassStats {
    pub name: String,
    /// Records appended and neither acknowledged, dropped nor expired yet.
    pub pending_records: u64,
    /// On-disk bytes of those records (approximate: whole segments, less
    /// the part the reader has passed).
    pub pending_bytes: u64,
    /// Segment files of the class.
    pub segments: usize,
    pub appended: u64,
    /// Records acknowledged by [`Outbox::ack`].
    pub delivered: u64,
    /// Records dropped unsent to make room ([`DropPolicy::DropOldest`]).
    pub dropped_full: u64,
    /// Appends refused with [`OutboxError::Full`].
    pub rejected_full: u64,
    /// Records dropped unsent for being past the class's TTL.
    pub expired: u64,
    /// Damaged regions stepped over (each region counts once, whatever
    /// number of records it held).
    pub corrupt_skipped: u64,
    /// Age of the oldest pending record, by the outbox's clock.
    pub oldest_pending_age_ms: Option<u64>,
}

struct State {
    classes: Vec<Class>,
    /// Bytes of all segment files.
    total: u64,
}

/// One class's numbers as `stats()` reports them, published by whoever
/// last changed the class (under the state lock) and read without it, so
/// a heartbeat or `twig status` never waits on an append, an ack or a
/// disk that is slow to fsync.
#[derive(Default)]
struct Published {
    pending_records: AtomicU64,
    pending_bytes: AtomicU64,
    segments: AtomicU64,
    appended: AtomicU64,
    delivered: AtomicU64,
    dropped_full: AtomicU64,
    rejected_full: AtomicU64,
    expired: AtomicU64,
    corrupt_skipped: AtomicU64,
    /// `u64::MAX`: nothing pending.
    oldest_created_ms: AtomicU64,
}

/// A test seam: called with what is about to happen ("create" a segment,
/// write a "cursor", "delete" segments) before the I/O, so a test can make
/// the disk slow there and check who waits.
#[cfg(test)]
type IoHook = Arc<dyn Fn(&str) + Send + Sync>;

/// A durable, bounded, on-disk outbox. See the crate documentation.
///
/// `Send + Sync`; every method takes `&self`. The classes' in-memory state
/// is behind one lock, held only for memory updates and `pwrite`/`pread`:
/// never through an fsync, a file creation or deletion, or the waker.
/// Appends to one class are serialised by that class's own lock (held
/// while its new segment is created), cursor files by theirs, and
/// [`Outbox::stats`] reads counters published as atomics. ARCHITECTURE.md
/// has the table of locks.
pub struct Outbox {
    dir: PathBuf,
    id: String,
    names: Vec<String>,
    /// Class indexes by priority (highest first, then lowest index).
    order: Vec<usize>,
    max_bytes: u64,
    segment_bytes: u64,
    policy: SyncPolicy,
    clock: Option<Clock>,
    state: Mutex<State>,
    /// Per class: serialises its appends, and holds the buffer a record is
    /// encoded into (reused: appending allocates nothing once warm).
    appenders: Vec<Mutex<Vec<u8>>>,
    /// Per class: the cursor file.
    cursors: Vec<CursorFile>,
    published: Vec<Published>,
    total: AtomicU64,
    syncer: Arc<Syncer>,
    waker: RwLock<Option<Arc<dyn Fn() + Send + Sync>>>,
    #[cfg(test)]
    io_hook: RwLock<Option<IoHook>>,
    /// Declared before `_lock` so it stops (and syncs) while the lock is
    /// still held.
    flusher: Option<Flusher>,
    _lock: DirLock,
}

/// Room for a record, or what must happen first.
enum Room {
    Fits,
    /// Persist class `class`'s cursor past `last_seq`, then drop its oldest
    /// segment (`name_seq`).
    Discard {
        class: usize,
        name_seq: u64,
        last_seq: u64,
        why: Discard,
    },
}

fn system_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// 64 random bits as 16 hex digits: from the kernel, or failing that
/// from std's per-process random hash keys mixed with the time and pid.
fn new_id() -> String {
    let mut b = [0u8; 8];
    let random = File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .map(|()| u64::from_le_bytes(b));
    let n = random.unwrap_or_else(|_| {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        h.finish()
    });
    format!("{n:016x}")
}

fn valid_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads `DIR/ID`, creating it on first open.
fn load_or_create_id(dir: &Path) -> Result<String, OutboxError> {
    let tmp = dir.join(ID_TMP);
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(io_err(&tmp)(e)),
        _ => {}
    }
    let path = dir.join(ID_FILE);
    match fs::read(&path) {
        Ok(b) => {
            let s = String::from_utf8_lossy(&b);
            let s = s.trim_end();
            if valid_id(s) {
                return Ok(s.to_owned());
            }
            // Written atomically, so this is damage. A new id means
            // records sent before may be sent again under other message
            // ids (duplicates the server cannot spot), never lost.
            tracing::error!(file = %path.display(), "outbox: id file is corrupt; choosing a new id");
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&path)(e)),
    }
    let id = new_id();
    write_atomic(dir, ID_FILE, ID_TMP, format!("{id}\n").as_bytes())?;
    Ok(id)
}

impl Outbox {
    /// Opens (creating if need be) the outbox in `config.dir`, recovering
    /// what the files hold (see the crate docs). Fails with
    /// [`OutboxError::Locked`] if it is open elsewhere.
    pub fn open(config: OutboxConfig) -> Result<Outbox, OutboxError> {
        Outbox::open_with(config, None)
    }

    /// [`Outbox::open`], with a hook called before each record fsync (a
    /// seam for tests of a slow or failing disk).
    fn open_with(
        config: OutboxConfig,
        sync_hook: Option<twig_seglog::SyncHook>,
    ) -> Result<Outbox, OutboxError> {
        config.validate()?;
        let segment_bytes = config.effective_segment_bytes();
        let dir = config.dir.clone();
        twig_seglog::files::create_dir(&dir)?;
        let lock = DirLock::acquire(&dir)?;
        let id = load_or_create_id(&dir)?;

        let mut classes = Vec::with_capacity(config.classes.len());
        for c in &config.classes {
            let class_dir = dir.join(&c.name);
            classes.push(Class::open(c.clone(), class_dir, segment_bytes)?);
        }
        sync_dir(&dir)?;
        let total = classes
            .iter()
            .flat_map(|c| c.segments.iter())
            .map(|s| s.len)
            .sum();
        if total > config.max_bytes {
            // A smaller cap than the files were written under: the next
            // appends drop (or are refused) until it is met again.
            tracing::warn!(dir = %dir.display(), total, max = config.max_bytes, "outbox: over its byte cap");
        }
        let mut order: Vec<usize> = (0..classes.len()).collect();
        order.sort_by_key(|&i| (std::cmp::Reverse(config.classes[i].priority), i));

        let syncer = Arc::new(match sync_hook {
            Some(h) => Syncer::with_hook(h),
            None => Syncer::default(),
        });
        let cursors = classes
            .iter()
            .map(|c| CursorFile::new(c.dir.clone(), c.persisted))
            .collect();
        let appenders = classes.iter().map(|_| Mutex::new(Vec::new())).collect();
        let published = classes.iter().map(|_| Published::default()).collect();
        let flusher = match config.sync {
            SyncPolicy::Interval(every) => Some(
                Flusher::start(syncer.clone(), every, "twig-outbox-sync").map_err(io_err(&dir))?,
            ),
            SyncPolicy::Always => None,
        };
        let outbox = Outbox {
            names: config.classes.iter().map(|c| c.name.clone()).collect(),
            dir,
            id,
            order,
            max_bytes: config.max_bytes,
            segment_bytes,
            policy: config.sync,
            clock: config.clock,
            state: Mutex::new(State { classes, total }),
            appenders,
            cursors,
            published,
            total: AtomicU64::new(total),
            syncer,
            waker: RwLock::new(None),
            #[cfg(test)]
            io_hook: RwLock::new(None),
            flusher,
            _lock: lock,
        };
        {
            let st = outbox.lock();
            for ci in 0..st.classes.len() {
                outbox.publish(&st, ci);
            }
        }
        Ok(outbox)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the files
        // inconsistent (every change is made durable before the in-memory
        // state follows), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now_ms(&self) -> u64 {
        match &self.clock {
            Some(c) => c(),
            None => system_now_ms(),
        }
    }

    /// The outbox's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The outbox's stable random id (16 hex digits, kept in `DIR/ID`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The class with this name.
    pub fn class(&self, name: &str) -> Option<ClassId> {
        self.names.iter().position(|n| n == name).map(ClassId)
    }

    /// The name of a class.
    pub fn class_name(&self, class: ClassId) -> Option<&str> {
        self.names.get(class.0).map(String::as_str)
    }

    /// `"{id}-{class}-{seq}"`: the same for a record however often it is
    /// sent and across restarts, so the server can drop duplicates (e.g.
    /// as JetStream's `Nats-Msg-Id`).
    pub fn msg_id(&self, record: &Record) -> String {
        let class = self.class_name(record.class).unwrap_or("?");
        format!("{}-{}-{}", self.id, class, record.seq)
    }

    /// Appends a record to `class` and returns its seq. When it returns
    /// `Ok` the record is written, and under [`SyncPolicy::Always`]
    /// fsynced.
    ///
    /// Errors: [`OutboxError::Full`] (the class rejects new records when
    /// full, or nothing could be dropped), [`OutboxError::TooLarge`] (the
    /// record is bigger than a segment), [`OutboxError::Io`] naming the
    /// file. After an `Io` error from the write itself the record is not
    /// in the outbox; after one from the fsync it is (and may be
    /// delivered), but its durability is unknown.
    pub fn append(
        &self,
        class: ClassId,
        subject: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<u64, OutboxError> {
        if class.0 >= self.names.len() {
            return Err(OutboxError::UnknownClass(class.0));
        }
        let now = self.now_ms();
        let (seq, ticket) = {
            let mut buf = self.appenders[class.0]
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.append_serialised(&mut buf, class.0, now, subject, headers, body)?
        };
        if self.policy == SyncPolicy::Always {
            self.syncer.wait(ticket)?;
        }
        let waker = self.waker.read().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(w) = waker {
            w();
        }
        Ok(seq)
    }

    /// The append, with the class's append lock held (so its next seq and
    /// its need for a new segment stay as they are while the state lock is
    /// let go for disk work).
    fn append_serialised(
        &self,
        buf: &mut Vec<u8>,
        ci: usize,
        now: u64,
        subject: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(u64, u64), OutboxError> {
        let name = &self.names[ci];
        let seq = self.lock().classes[ci].next_seq;
        if seq == u64::MAX {
            return Err(OutboxError::SequenceExhausted(name.clone()));
        }
        buf.clear();
        match format::encode(seq, now, subject, headers, body, buf) {
            Ok(()) => {}
            Err(EncodeError::TooLarge { body_len }) => {
                return Err(OutboxError::TooLarge {
                    class: name.clone(),
                    len: body_len as u64,
                    limit: self.segment_bytes,
                })
            }
            Err(EncodeError::Codec) => {
                return Err(OutboxError::InvalidConfig(format!(
                    "class {name}: record could not be encoded"
                )))
            }
        }
        if buf.capacity() > 4 * self.segment_bytes as usize {
            // One huge record must not pin its buffer for good.
            buf.shrink_to(self.segment_bytes as usize);
        }
        let len = buf.len() as u64;
        if len > self.segment_bytes {
            return Err(OutboxError::TooLarge {
                class: name.clone(),
                len,
                limit: self.segment_bytes,
            });
        }
        // A segment created for this record, not yet in the class.
        let mut created: Option<(Segment, Arc<File>)> = None;
        loop {
            let mut st = self.lock();
            let room = match self.plan_room(&mut st, ci, len, now) {
                Ok(r) => r,
                Err(e) => {
                    self.publish(&st, ci);
                    drop(st);
                    if let Some((seg, _)) = created {
                        // Empty, so harmless if this fails: opening
                        // removes segments without records.
                        let _ = fs::remove_file(&seg.path);
                    }
                    return Err(e);
                }
            };
            if let Room::Discard {
                class,
                name_seq,
                last_seq,
                why,
            } = room
            {
                drop(st);
                self.discard(class, name_seq, last_seq, why)?;
                continue;
            }
            let class = &mut st.classes[ci];
            if class.active.is_some() {
                if let Some(back) = class.segments.back() {
                    if back.len > 0 && back.len + len > self.segment_bytes {
                        // Sealed: its records were already handed to the
                        // syncer, so nothing more to do with its handle.
                        class.active = None;
                    }
                }
            }
            if class.active.is_none() {
                match created.take() {
                    Some((seg, f)) => {
                        class.segments.push_back(seg);
                        class.active = Some(f);
                    }
                    None => {
                        // Created with the state lock let go: the name
                        // must survive a power cut (a directory fsync)
                        // before records in it count as appended.
                        let dir = class.dir.clone();
                        drop(st);
                        let seg = Segment::empty(&dir, seq);
                        self.hook("create");
                        let f = twig_seglog::files::create_durable(&dir, &seg.path)?;
                        created = Some((seg, Arc::new(f)));
                        continue;
                    }
                }
            }
            let (seq, ticket) = self.write_locked(&mut st, ci, seq, now, buf)?;
            self.publish(&st, ci);
            return Ok((seq, ticket));
        }
    }

    /// Writes the encoded record at the end of the class's active segment.
    fn write_locked(
        &self,
        st: &mut State,
        ci: usize,
        seq: u64,
        now: u64,
        buf: &[u8],
    ) -> Result<(u64, u64), OutboxError> {
        let len = buf.len() as u64;
        let class = &mut st.classes[ci];
        let (Some(file), Some(seg)) = (class.active.clone(), class.segments.back_mut()) else {
            return Err(OutboxError::InvalidConfig("no active segment".into()));
        };
        if let Err(e) = file.write_all_at(buf, seg.len) {
            // Leave the file as it was so the next append (written at the
            // same offset) and recovery both see a clean end.
            if let Err(e2) = file.set_len(seg.len) {
                tracing::error!(file = %seg.path.display(), error = %e2, "outbox: could not cut back a failed write; reopening will");
            }
            return Err(io_err(&seg.path)(e));
        }
        seg.push(seq, now, len);
        let ticket = self.syncer.written(&file, &seg.path);
        class.next_seq += 1;
        class.counters.appended += 1;
        st.total += len;
        Ok((seq, ticket))
    }

    /// Whether `need` more bytes fit, and if not what to discard first:
    /// whole segments past their TTL, then by the appending class's policy.
    /// A refusal is counted here.
    fn plan_room(
        &self,
        st: &mut State,
        ci: usize,
        need: u64,
        now: u64,
    ) -> Result<Room, OutboxError> {
        if st.total + need <= self.max_bytes {
            return Ok(Room::Fits);
        }
        let discard = |k: usize, c: &Class, why| {
            c.front().map(|(name_seq, last_seq)| Room::Discard {
                class: k,
                name_seq,
                last_seq,
                why,
            })
        };
        if let Some(k) = (0..st.classes.len()).find(|&k| st.classes[k].front_expired(now)) {
            if let Some(r) = discard(k, &st.classes[k], Discard::Expired) {
                return Ok(r);
            }
        }
        if st.classes[ci].cfg.when_full != DropPolicy::RejectNew {
            let victim = st
                .classes
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    c.cfg.when_full == DropPolicy::DropOldest && !c.segments.is_empty()
                })
                .min_by_key(|&(i, c)| (c.cfg.priority, std::cmp::Reverse(i)))
                .map(|(i, _)| i);
            if let Some(v) = victim {
                if let Some(r) = discard(v, &st.classes[v], Discard::Full) {
                    return Ok(r);
                }
            }
        }
        st.classes[ci].counters.rejected_full += 1;
        Err(OutboxError::Full {
            class: self.names[ci].clone(),
            need,
            total: st.total,
            max: self.max_bytes,
        })
    }

    /// Drops class `k`'s oldest segment (`name_seq`, records up to
    /// `last_seq`) unsent: its cursor is persisted past it first, then it
    /// leaves the class, then its file is deleted; no lock is held for the
    /// disk work.
    fn discard(
        &self,
        k: usize,
        name_seq: u64,
        last_seq: u64,
        why: Discard,
    ) -> Result<(), OutboxError> {
        self.hook("cursor");
        let on_disk = self.cursors[k].persist(last_seq)?;
        let gone = {
            let mut st = self.lock();
            let st = &mut *st;
            let c = &mut st.classes[k];
            let done = c.discard_front(name_seq, on_disk, why);
            if let Some((records, seg)) = &done {
                st.total -= seg.len;
                let what = match why {
                    Discard::Full => "outbox: full; dropped the oldest segment",
                    Discard::Expired => "outbox: full; deleted a segment of expired records",
                };
                tracing::warn!(class = %c.name(), records, bytes = seg.len, "{what}");
            }
            self.publish(st, k);
            done.map(|(_, seg)| seg)
        };
        // Not there any more: acknowledged or dropped meanwhile, which
        // freed the room as well.
        self.delete_segments(k, gone.into_iter().collect())
    }

    /// Deletes the files of segments already taken out of a class, then
    /// syncs its directory. The cursor file covers them, so a failure (or
    /// a crash) leaves files that opening deletes.
    fn delete_segments(&self, ci: usize, gone: Vec<Segment>) -> Result<(), OutboxError> {
        if gone.is_empty() {
            return Ok(());
        }
        self.hook("delete");
        let mut failed = None;
        for seg in &gone {
            if let Err(e) = twig_seglog::files::remove_if_exists(&seg.path) {
                tracing::error!(file = %seg.path.display(), error = %e, "outbox: could not delete a finished segment; reopening will");
                failed.get_or_insert(io_err(&seg.path)(e));
            }
        }
        let dir = self.dir.join(&self.names[ci]);
        let synced = sync_dir(&dir);
        match failed {
            Some(e) => Err(e),
            None => synced,
        }
    }

    /// Up to `max_records` / `max_bytes` (on-disk record bytes; at least
    /// one record if any is pending) of the oldest unacknowledged records
    /// of one class: the highest-priority class with pending records
    /// (ties: lower index first). Until acknowledged, the same records come
    /// back on every call. Records past their class's TTL are skipped and
    /// counted as expired. Empty when nothing is pending.
    pub fn next_batch(
        &self,
        max_records: usize,
        max_bytes: usize,
    ) -> Result<Vec<Record>, OutboxError> {
        let now = self.now_ms();
        let mut out = Vec::new();
        let mut moved = Vec::new();
        {
            let mut st = self.lock();
            for &ci in &self.order {
                let class = &mut st.classes[ci];
                if !class.has_pending() {
                    continue;
                }
                let outcome =
                    class.read_batch(ClassId(ci), now, max_records.max(1), max_bytes, &mut out)?;
                if outcome.expired > 0 {
                    tracing::warn!(class = %class.name(), count = outcome.expired, "outbox: records expired before they could be sent");
                }
                if outcome.cursor_moved {
                    moved.push((ci, class.cursor));
                }
                self.publish(&st, ci);
                if !out.is_empty() {
                    break;
                }
            }
        }
        // The cursor moved past expired or unreadable records: persist it
        // (outside the state lock) and let go of what it covers.
        for (ci, cursor) in moved {
            if let Err(e) = self.persist_and_collect(ci, cursor) {
                // The batch is still good; the cursor is written again
                // with the next ack.
                tracing::warn!(error = %e, "outbox: could not persist the cursor");
            }
        }
        Ok(out)
    }

    fn persist_and_collect(&self, ci: usize, cursor: u64) -> Result<(), OutboxError> {
        self.hook("cursor");
        let on_disk = self.cursors[ci].persist(cursor)?;
        let gone = {
            let mut st = self.lock();
            let st = &mut *st;
            let c = &mut st.classes[ci];
            c.persisted_at_least(on_disk);
            let gone = c.collect();
            st.total -= gone.iter().map(|s| s.len).sum::<u64>();
            self.publish(st, ci);
            gone
        };
        self.delete_segments(ci, gone)
    }

    /// Whether a class that [`Outbox::next_batch`] serves before `class`
    /// (a higher priority, or the same priority and a lower index) has
    /// records pending: a sender in the middle of a long, paced batch of
    /// `class` asks this to step aside for, say, a heartbeat.
    pub fn pending_before(&self, class: ClassId) -> bool {
        self.order
            .iter()
            .take_while(|&&ci| ci != class.0)
            .any(|&ci| self.published[ci].pending_records.load(Ordering::Relaxed) > 0)
    }

    /// Marks every record of `class` with seq <= `upto` delivered: the
    /// class's cursor is persisted (temporary file, fsync, rename, fsync
    /// of the directory) and segment files wholly below it are deleted.
    /// If persisting fails the records stay pending (at-least-once).
    pub fn ack(&self, class: ClassId, upto: u64) -> Result<(), OutboxError> {
        let ci = class.0;
        let target = {
            let st = self.lock();
            st.classes
                .get(ci)
                .ok_or(OutboxError::UnknownClass(ci))?
                .ack_target(upto)
        };
        self.hook("cursor");
        let on_disk = self.cursors[ci].persist(target)?;
        let gone = {
            let mut st = self.lock();
            let st = &mut *st;
            let gone = st.classes[ci].ack(target, on_disk);
            st.total -= gone.iter().map(|s| s.len).sum::<u64>();
            self.publish(st, ci);
            gone
        };
        self.delete_segments(ci, gone)
    }

    /// Copies class `ci`'s numbers (and the total) where `stats()` reads
    /// them. Called with the state lock held, after every change.
    fn publish(&self, st: &State, ci: usize) {
        let c = &st.classes[ci];
        let p = &self.published[ci];
        let r = Ordering::Relaxed;
        p.pending_records.store(c.pending_records(), r);
        p.pending_bytes.store(c.pending_bytes(), r);
        p.segments.store(c.segments.len() as u64, r);
        p.appended.store(c.counters.appended, r);
        p.delivered.store(c.counters.delivered, r);
        p.dropped_full.store(c.counters.dropped_full, r);
        p.rejected_full.store(c.counters.rejected_full, r);
        p.expired.store(c.counters.expired, r);
        p.corrupt_skipped.store(c.counters.corrupt_skipped, r);
        p.oldest_created_ms
            .store(c.oldest_pending_created_ms().unwrap_or(u64::MAX), r);
        self.total.store(st.total, r);
    }

    #[cfg(test)]
    fn hook(&self, what: &str) {
        let h = self
            .io_hook
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(h) = h {
            h(what);
        }
    }

    #[cfg(not(test))]
    #[inline(always)]
    fn hook(&self, _what: &str) {}

    /// Sets the function called after each successful append (outside any
    /// lock), e.g. to wake an async sender.
    pub fn set_waker(&self, waker: Box<dyn Fn() + Send + Sync>) {
        *self.waker.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::from(waker));
    }

    /// Fsyncs every record written so far (what the `Interval` flusher
    /// does periodically).
    pub fn sync(&self) -> Result<(), OutboxError> {
        Ok(self.syncer.sync_all()?)
    }

    /// The outbox's numbers, read without the state lock: each class's
    /// as its last change left them (a snapshot per class, not across
    /// classes).
    pub fn stats(&self) -> OutboxStats {
        let now = self.now_ms();
        let r = Ordering::Relaxed;
        OutboxStats {
            total_bytes: self.total.load(r),
            max_bytes: self.max_bytes,
            classes: self
                .names
                .iter()
                .zip(&self.published)
                .map(|(name, p)| ClassStats {
                    name: name.clone(),
                    pending_records: p.pending_records.load(r),
                    pending_bytes: p.pending_bytes.load(r),
                    segments: p.segments.load(r) as usize,
                    appended: p.appended.load(r),
                    delivered: p.delivered.load(r),
                    dropped_full: p.dropped_full.load(r),
                    rejected_full: p.rejected_full.load(r),
                    expired: p.expired.load(r),
                    corrupt_skipped: p.corrupt_skipped.load(r),
                    oldest_pending_age_ms: match p.oldest_created_ms.load(r) {
                        u64::MAX => None,
                        t => Some(now.saturating_sub(t)),
                    },
                })
                .collect(),
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // Stop the flusher first so the last sync below is the last word.
        self.flusher.take();
        if let Err(e) = self.syncer.sync_all() {
            tracing::error!(dir = %self.dir.display(), error = %e, "outbox: final fsync failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClassConfig;
    use std::time::Duration;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn outbox_is_send_and_sync() {
        assert_send_sync::<Outbox>();
    }

    /// A path the outbox makes (not there yet), inside a scratch
    /// directory removed on drop.
    struct TempDir(PathBuf, #[allow(dead_code)] tempfile::TempDir);

    fn temp_dir(name: &str) -> TempDir {
        let t = tempfile::Builder::new()
            .prefix(&format!("twig-outbox-unit-{name}-"))
            .tempdir()
            .expect("temp dir");
        TempDir(t.path().join("outbox"), t)
    }

    /// A write that fails (ENOSPC from /dev/full standing in for the
    /// segment) returns an error naming the segment and leaves the outbox
    /// as it was: the next append gets the same seq and everything reads
    /// back.
    #[test]
    fn failed_write_leaves_the_outbox_usable() {
        let Ok(full) = fs::OpenOptions::new().write(true).open("/dev/full") else {
            eprintln!("no /dev/full here; skipping");
            return;
        };
        let dir = temp_dir("enospc");
        let ob = Outbox::open(OutboxConfig::new(
            &dir.0,
            vec![ClassConfig::new("t", 1, DropPolicy::DropOldest)],
        ))
        .expect("open");
        let t = ob.class("t").expect("t");
        assert_eq!(ob.append(t, "s", &[], b"one").expect("append"), 1);
        let (real, total) = {
            let mut st = ob.lock();
            let total = st.total;
            let real = st.classes[0].active.replace(Arc::new(full));
            (real.expect("active segment"), total)
        };
        let e = ob
            .append(t, "s", &[], b"two")
            .expect_err("write to /dev/full");
        assert!(
            matches!(&e, OutboxError::Io { path, .. } if path.ends_with("t/00000000000000000001.seg")),
            "{e}"
        );
        {
            let mut st = ob.lock();
            assert_eq!(st.total, total, "failed write not counted");
            assert_eq!(st.classes[0].next_seq, 2);
            st.classes[0].active = Some(real);
        }
        assert_eq!(ob.append(t, "s", &[], b"two").expect("append"), 2);
        let b = ob.next_batch(10, usize::MAX).expect("batch");
        let bodies: Vec<&[u8]> = b.iter().map(|r| r.body.as_slice()).collect();
        assert_eq!(bodies, vec![&b"one"[..], &b"two"[..]]);
        assert_eq!(ob.stats().classes[0].appended, 2);
    }

    /// Creating a new segment fails (its name is taken): the append
    /// reports the file, and succeeds once the obstacle is gone.
    #[test]
    fn failed_segment_creation_is_reported() {
        let dir = temp_dir("create");
        let ob = Outbox::open(OutboxConfig::new(
            &dir.0,
            vec![ClassConfig::new("t", 1, DropPolicy::DropOldest)],
        ))
        .expect("open");
        let t = ob.class("t").expect("t");
        let blocker = dir.0.join("t").join("00000000000000000001.seg");
        fs::create_dir(&blocker).expect("blocker");
        let e = ob.append(t, "s", &[], b"x").expect_err("name taken");
        assert!(e.to_string().contains("00000000000000000001.seg"), "{e}");
        fs::remove_dir(&blocker).expect("remove blocker");
        assert_eq!(ob.append(t, "s", &[], b"x").expect("append"), 1);
        assert_eq!(ob.next_batch(10, usize::MAX).expect("batch").len(), 1);
    }

    /// A gate a hook stops at: `entered` fires when a thread reaches it,
    /// and it waits there until `release` is called.
    struct Gate {
        entered: Mutex<std::sync::mpsc::Sender<()>>,
        release: Mutex<std::sync::mpsc::Receiver<()>>,
    }

    fn gate() -> (
        Arc<Gate>,
        std::sync::mpsc::Receiver<()>,
        std::sync::mpsc::Sender<()>,
    ) {
        let (etx, erx) = std::sync::mpsc::channel();
        let (rtx, rrx) = std::sync::mpsc::channel();
        let g = Arc::new(Gate {
            entered: Mutex::new(etx),
            release: Mutex::new(rrx),
        });
        (g, erx, rtx)
    }

    impl Gate {
        fn stop(&self) {
            let _ = self.entered.lock().expect("gate").send(());
            let _ = self
                .release
                .lock()
                .expect("gate")
                .recv_timeout(Duration::from_secs(30));
        }
    }

    /// Runs `f` on another thread and returns its result, or panics if it
    /// takes more than 5 s (it is waiting on a lock it should not need).
    fn within_5s<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(5))
            .unwrap_or_else(|_| panic!("{what} waited on the slow disk"))
    }

    fn two_classes(dir: &Path) -> OutboxConfig {
        OutboxConfig::new(
            dir,
            vec![
                ClassConfig::new("a", 2, DropPolicy::DropOldest),
                ClassConfig::new("b", 1, DropPolicy::DropOldest),
            ],
        )
    }

    /// An append stuck in creating its segment (a directory fsync that
    /// takes long) holds no lock that `stats()`, `pending_before` or
    /// another class's batches and acks need; when the disk comes back the
    /// record is there.
    #[test]
    fn stats_and_other_classes_do_not_wait_for_a_slow_segment_creation() {
        let dir = temp_dir("slow-create");
        let ob = Arc::new(Outbox::open(two_classes(&dir.0)).expect("open"));
        let (a, b) = (ClassId(0), ClassId(1));
        assert_eq!(ob.append(b, "s", &[], b"b1").expect("append"), 1);
        let (g, entered, release) = gate();
        let once = std::sync::atomic::AtomicBool::new(false);
        *ob.io_hook.write().expect("hook") = Some(Arc::new(move |what: &str| {
            if what == "create" && !once.swap(true, std::sync::atomic::Ordering::SeqCst) {
                g.stop();
            }
        }));
        let ob2 = ob.clone();
        let appender = std::thread::spawn(move || ob2.append(a, "s", &[], b"a1"));
        entered
            .recv_timeout(Duration::from_secs(5))
            .expect("the append reached segment creation");

        let o = ob.clone();
        let st = within_5s("stats()", move || o.stats());
        assert_eq!(st.classes[1].pending_records, 1);
        assert_eq!(
            st.classes[0].appended, 0,
            "the stuck record is not counted yet"
        );
        let o = ob.clone();
        assert!(!within_5s("pending_before", move || o.pending_before(b)));
        let o = ob.clone();
        let batch = within_5s("next_batch", move || o.next_batch(10, usize::MAX)).expect("batch");
        assert_eq!(batch.len(), 1);
        assert_eq!((batch[0].class, batch[0].seq), (b, 1));
        let o = ob.clone();
        within_5s("ack", move || o.ack(b, 1)).expect("ack");

        release.send(()).expect("release");
        assert_eq!(appender.join().expect("join").expect("append"), 1);
        let st = ob.stats();
        assert_eq!(
            (st.classes[0].appended, st.classes[0].pending_records),
            (1, 1)
        );
        assert_eq!(st.classes[1].delivered, 1);
        let batch = ob.next_batch(10, usize::MAX).expect("batch");
        assert_eq!(batch.len(), 1);
        assert_eq!((batch[0].class, batch[0].body.as_slice()), (a, &b"a1"[..]));
    }

    /// An append waiting for its fsync (group commit) and an ack stuck in
    /// writing its cursor file hold nothing `stats()` needs; appends to
    /// the acked class go on meanwhile; the ack, when it returns, has
    /// persisted its cursor (a reopen does not resend).
    #[test]
    fn stats_do_not_wait_for_a_slow_fsync_or_cursor_write() {
        let dir = temp_dir("slow-sync");
        let (g, entered, release) = gate();
        let armed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let armed2 = armed.clone();
        let hook: twig_seglog::SyncHook = Arc::new(move |_: &Path| {
            if armed2.swap(false, std::sync::atomic::Ordering::SeqCst) {
                g.stop();
            }
            Ok(())
        });
        let ob = Arc::new(Outbox::open_with(two_classes(&dir.0), Some(hook)).expect("open"));
        let a = ClassId(0);
        assert_eq!(ob.append(a, "s", &[], b"one").expect("append"), 1);
        armed.store(true, std::sync::atomic::Ordering::SeqCst);
        let ob2 = ob.clone();
        let appender = std::thread::spawn(move || ob2.append(a, "s", &[], b"two"));
        entered
            .recv_timeout(Duration::from_secs(5))
            .expect("the append reached its fsync");
        let o = ob.clone();
        let st = within_5s("stats() during an fsync", move || o.stats());
        assert_eq!(st.classes[0].appended, 2, "written, waiting to be durable");
        release.send(()).expect("release");
        assert_eq!(appender.join().expect("join").expect("append"), 2);

        let (g, entered, release) = gate();
        *ob.io_hook.write().expect("hook") = Some(Arc::new(move |what: &str| {
            if what == "cursor" {
                g.stop();
            }
        }));
        let ob2 = ob.clone();
        let acker = std::thread::spawn(move || ob2.ack(a, 2));
        entered
            .recv_timeout(Duration::from_secs(5))
            .expect("the ack reached its cursor write");
        let o = ob.clone();
        let st = within_5s("stats() during a cursor write", move || o.stats());
        assert_eq!(
            (st.classes[0].pending_records, st.classes[0].delivered),
            (2, 0),
            "not acknowledged before the cursor is durable"
        );
        let o = ob.clone();
        assert_eq!(
            within_5s("append during a cursor write", move || o.append(
                a,
                "s",
                &[],
                b"three"
            ))
            .expect("append"),
            3
        );
        release.send(()).expect("release");
        acker.join().expect("join").expect("ack");
        *ob.io_hook.write().expect("hook") = None;
        assert_eq!(ob.stats().classes[0].delivered, 2);
        drop(ob);
        let ob = Outbox::open(two_classes(&dir.0)).expect("reopen");
        let batch = ob.next_batch(10, usize::MAX).expect("batch");
        let seqs: Vec<u64> = batch.iter().map(|r| r.seq).collect();
        assert_eq!(seqs, vec![3], "acknowledged records are not sent again");
    }
}
