//! [`Outbox`]: the classes behind one lock, the byte cap and drop policy,
//! the outbox id, and the hand-over to the sender.

use std::fs::{self, File};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::class::{sync_dir, write_atomic, Class, Discard};
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
    /// Reused for every record: appending allocates nothing once warm.
    buf: Vec<u8>,
}

/// A durable, bounded, on-disk outbox. See the crate documentation.
///
/// `Send + Sync`; every method takes `&self`. Appends, batches and acks
/// are serialised by one internal lock, which is not held while waiting
/// for fsync (group commit) or calling the waker.
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
    syncer: Arc<Syncer>,
    waker: RwLock<Option<Arc<dyn Fn() + Send + Sync>>>,
    /// Declared before `_lock` so it stops (and syncs) while the lock is
    /// still held.
    flusher: Option<Flusher>,
    _lock: DirLock,
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

        let syncer = Arc::new(Syncer::default());
        let flusher = match config.sync {
            SyncPolicy::Interval(every) => Some(
                Flusher::start(syncer.clone(), every, "twig-outbox-sync").map_err(io_err(&dir))?,
            ),
            SyncPolicy::Always => None,
        };
        Ok(Outbox {
            names: config.classes.iter().map(|c| c.name.clone()).collect(),
            dir,
            id,
            order,
            max_bytes: config.max_bytes,
            segment_bytes,
            policy: config.sync,
            clock: config.clock,
            state: Mutex::new(State {
                classes,
                total,
                buf: Vec::new(),
            }),
            syncer,
            waker: RwLock::new(None),
            flusher,
            _lock: lock,
        })
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
            let mut guard = self.lock();
            self.append_locked(&mut guard, class.0, now, subject, headers, body)?
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

    fn append_locked(
        &self,
        st: &mut State,
        ci: usize,
        now: u64,
        subject: &str,
        headers: &[(String, String)],
        body: &[u8],
    ) -> Result<(u64, u64), OutboxError> {
        let name = &self.names[ci];
        let seq = st.classes[ci].next_seq;
        if seq == u64::MAX {
            return Err(OutboxError::SequenceExhausted(name.clone()));
        }
        st.buf.clear();
        match format::encode(seq, now, subject, headers, body, &mut st.buf) {
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
        let len = st.buf.len() as u64;
        if len > self.segment_bytes {
            return Err(OutboxError::TooLarge {
                class: name.clone(),
                len,
                limit: self.segment_bytes,
            });
        }
        self.make_room(st, ci, len, now)?;

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
        let file = match &class.active {
            Some(f) => f.clone(),
            None => {
                let seg = Segment::empty(&class.dir, seq);
                // The new name must survive a power cut before records in
                // it count as appended.
                let f = Arc::new(twig_seglog::files::create_durable(&class.dir, &seg.path)?);
                class.segments.push_back(seg);
                class.active = Some(f.clone());
                f
            }
        };
        let Some(seg) = class.segments.back_mut() else {
            return Err(OutboxError::InvalidConfig("no active segment".into()));
        };
        if let Err(e) = file.write_all_at(&st.buf, seg.len) {
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

    /// Frees room for `need` more bytes: first whole segments past their
    /// TTL, then by the appending class's policy.
    fn make_room(&self, st: &mut State, ci: usize, need: u64, now: u64) -> Result<(), OutboxError> {
        while st.total + need > self.max_bytes {
            if let Some(k) = (0..st.classes.len()).find(|&k| st.classes[k].front_expired(now)) {
                let c = &mut st.classes[k];
                let (records, bytes) = c.discard_front(Discard::Expired)?;
                st.total -= bytes;
                tracing::warn!(class = %c.name(), records, bytes, "outbox: full; deleted a segment of expired records");
                continue;
            }
            let full = |st: &mut State| {
                st.classes[ci].counters.rejected_full += 1;
                Err(OutboxError::Full {
                    class: self.names[ci].clone(),
                    need,
                    total: st.total,
                    max: self.max_bytes,
                })
            };
            if st.classes[ci].cfg.when_full == DropPolicy::RejectNew {
                return full(st);
            }
            let victim = st
                .classes
                .iter()
                .enumerate()
                .filter(|(_, c)| {
                    c.cfg.when_full == DropPolicy::DropOldest && !c.segments.is_empty()
                })
                .min_by_key(|&(i, c)| (c.cfg.priority, std::cmp::Reverse(i)))
                .map(|(i, _)| i);
            let Some(v) = victim else {
                return full(st);
            };
            let c = &mut st.classes[v];
            let (records, bytes) = c.discard_front(Discard::Full)?;
            st.total -= bytes;
            tracing::warn!(class = %c.name(), records, bytes, "outbox: full; dropped the oldest segment");
        }
        Ok(())
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
        let mut st = self.lock();
        let st = &mut *st;
        let mut out = Vec::new();
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
                let cursor = class.cursor;
                match class.set_cursor(cursor) {
                    Ok(freed) => st.total -= freed,
                    // The batch is still good; the cursor is written again
                    // with the next ack.
                    Err(e) => tracing::warn!(error = %e, "outbox: could not persist the cursor"),
                }
            }
            if !out.is_empty() {
                break;
            }
        }
        Ok(out)
    }

    /// Whether a class that [`Outbox::next_batch`] serves before `class`
    /// (a higher priority, or the same priority and a lower index) has
    /// records pending: a sender in the middle of a long, paced batch of
    /// `class` asks this to step aside for, say, a heartbeat.
    pub fn pending_before(&self, class: ClassId) -> bool {
        let st = self.lock();
        self.order
            .iter()
            .take_while(|&&ci| ci != class.0)
            .any(|&ci| st.classes[ci].has_pending())
    }

    /// Marks every record of `class` with seq <= `upto` delivered: the
    /// class's cursor is persisted (temporary file, fsync, rename, fsync
    /// of the directory) and segment files wholly below it are deleted.
    pub fn ack(&self, class: ClassId, upto: u64) -> Result<(), OutboxError> {
        let mut st = self.lock();
        let c = st
            .classes
            .get_mut(class.0)
            .ok_or(OutboxError::UnknownClass(class.0))?;
        let freed = c.ack(upto)?;
        st.total -= freed;
        Ok(())
    }

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

    pub fn stats(&self) -> OutboxStats {
        let now = self.now_ms();
        let st = self.lock();
        OutboxStats {
            total_bytes: st.total,
            max_bytes: self.max_bytes,
            classes: st
                .classes
                .iter()
                .map(|c| ClassStats {
                    name: c.name().to_owned(),
                    pending_records: c.pending_records(),
                    pending_bytes: c.pending_bytes(),
                    segments: c.segments.len(),
                    appended: c.counters.appended,
                    delivered: c.counters.delivered,
                    dropped_full: c.counters.dropped_full,
                    rejected_full: c.counters.rejected_full,
                    expired: c.counters.expired,
                    corrupt_skipped: c.counters.corrupt_skipped,
                    oldest_pending_age_ms: c
                        .oldest_pending_created_ms()
                        .map(|t| now.saturating_sub(t)),
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

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn outbox_is_send_and_sync() {
        assert_send_sync::<Outbox>();
    }

    struct TempDir(PathBuf);

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn temp_dir(name: &str) -> TempDir {
        let p =
            std::env::temp_dir().join(format!("twig-outbox-unit-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        TempDir(p)
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
}
