//! One class's queue: its segments, its acknowledged cursor (and the file
//! that keeps it), its read position, and the counters its stats report.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::config::ClassConfig;
use crate::error::{io_err, OutboxError};
use crate::format::{decode_record, find_next};
use crate::segment::{parse_segment_name, recover, Reader, Segment};
use crate::{ClassId, Record};

/// The cursor file: the last acknowledged seq, checksummed.
pub(crate) const CURSOR_FILE: &str = "cursor";
const CURSOR_TMP: &str = "cursor.tmp";
const CURSOR_MAGIC: [u8; 4] = *b"TOC1";
const CURSOR_LEN: usize = 16;

/// `TOC1`, the seq (u64 LE), CRC-32 of the first 12 bytes (u32 LE).
fn encode_cursor(seq: u64) -> [u8; CURSOR_LEN] {
    let mut b = [0u8; CURSOR_LEN];
    b[..4].copy_from_slice(&CURSOR_MAGIC);
    b[4..12].copy_from_slice(&seq.to_le_bytes());
    let crc = crc32fast::hash(&b[..12]);
    b[12..].copy_from_slice(&crc.to_le_bytes());
    b
}

fn decode_cursor(b: &[u8]) -> Option<u64> {
    if b.len() != CURSOR_LEN || b[..4] != CURSOR_MAGIC {
        return None;
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&b[4..12]);
    let mut crc = [0u8; 4];
    crc.copy_from_slice(&b[12..16]);
    (crc32fast::hash(&b[..12]) == u32::from_le_bytes(crc)).then_some(u64::from_le_bytes(seq))
}

/// A class's cursor file, written outside the state lock. Its mutex orders
/// the writes and remembers what the file holds, so the cursor on disk
/// never moves back, whichever of two concurrent writers finishes first.
pub(crate) struct CursorFile {
    dir: PathBuf,
    on_disk: Mutex<u64>,
}

impl CursorFile {
    pub fn new(dir: PathBuf, on_disk: u64) -> CursorFile {
        CursorFile {
            dir,
            on_disk: Mutex::new(on_disk),
        }
    }

    /// Makes the file hold at least `seq` (temporary file, fsync, rename,
    /// directory fsync, unless it already does); returns what it holds.
    pub fn persist(&self, seq: u64) -> Result<u64, OutboxError> {
        let mut on_disk = self.on_disk.lock().unwrap_or_else(|e| e.into_inner());
        if seq > *on_disk {
            write_atomic(&self.dir, CURSOR_FILE, CURSOR_TMP, &encode_cursor(seq))?;
            *on_disk = seq;
        }
        Ok(*on_disk)
    }
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), OutboxError> {
    twig_seglog::sync_dir(dir).map_err(io_err(dir))
}

/// Replaces a small file whole and durably (twig-seglog's `write_atomic`).
pub(crate) fn write_atomic(
    dir: &Path,
    name: &str,
    tmp: &str,
    bytes: &[u8],
) -> Result<(), OutboxError> {
    Ok(twig_seglog::write_atomic(dir, name, tmp, bytes)?)
}

/// Where the reader resumes: a segment (by name) and an offset in it.
/// Every record of the class before this point has a seq at or below the
/// cursor, so reading from here never misses a pending record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ReadPos {
    pub segment: u64,
    pub offset: u64,
}

/// Counters since the outbox was opened.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counters {
    pub appended: u64,
    pub delivered: u64,
    pub dropped_full: u64,
    pub rejected_full: u64,
    pub expired: u64,
    pub corrupt_skipped: u64,
}

/// Why a whole segment is discarded before it was delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Discard {
    /// The drop policy made room.
    Full,
    /// Every record in it is past the class's TTL.
    Expired,
}

pub(crate) struct Class {
    pub cfg: ClassConfig,
    pub dir: PathBuf,
    /// Oldest first; each holds at least one record above the cursor,
    /// except transiently (an empty active segment whose first write
    /// failed).
    pub segments: VecDeque<Segment>,
    /// Open for appending to `segments.back()`; `None` when that segment is
    /// sealed (or there is none): the next append starts a new one.
    pub active: Option<Arc<File>>,
    /// Last acknowledged (or expired, or dropped) seq.
    pub cursor: u64,
    /// The cursor in the cursor file (behind `cursor` only after a failed
    /// write; the next cursor write catches up).
    pub persisted: u64,
    pub next_seq: u64,
    /// `None`: the start of the oldest segment.
    pub read: Option<ReadPos>,
    /// The last record handed out by `read_batch` and where the one after
    /// it starts, so acknowledging the whole batch moves the read position
    /// without rereading it.
    pub batch_end: Option<(u64, ReadPos)>,
    /// Seq and `created_ms` of the oldest pending record, when known.
    pub head: Option<(u64, u64)>,
    pub counters: Counters,
}

/// What a `read_batch` call did besides filling the batch.
#[derive(Debug, Default)]
pub(crate) struct ReadOutcome {
    pub expired: u64,
    /// The cursor moved (past expired or unreadable records): persist it.
    pub cursor_moved: bool,
}

impl Class {
    /// Opens (creating if need be) the class's directory and recovers its
    /// segments and cursor. See "Recovery on open" in the crate docs.
    pub fn open(cfg: ClassConfig, dir: PathBuf, segment_bytes: u64) -> Result<Class, OutboxError> {
        twig_seglog::files::create_dir(&dir)?;
        let mut names = Vec::new();
        let mut removed = false;
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(seq) = parse_segment_name(&name) {
                names.push(seq);
                continue;
            }
            if name == CURSOR_FILE {
                continue;
            }
            if entry.file_type().map_err(io_err(&path))?.is_dir() {
                tracing::warn!(path = %path.display(), "outbox: ignoring a directory inside a class directory");
                continue;
            }
            // A leftover `cursor.tmp` is a cursor write that crashed
            // before its rename: the old cursor is intact and current.
            if !name.ends_with(".tmp") {
                tracing::warn!(file = %path.display(), "outbox: removing a file that is not a segment");
            }
            fs::remove_file(&path).map_err(io_err(&path))?;
            removed = true;
        }
        names.sort_unstable();

        let cursor_path = dir.join(CURSOR_FILE);
        let cursor = match fs::read(&cursor_path) {
            Ok(b) => match decode_cursor(&b) {
                Some(c) => c,
                None => {
                    // Cursor writes are atomic (rename), so this is
                    // damage, not a torn write. Deliver everything still
                    // on disk again rather than guess: at-least-once.
                    tracing::error!(
                        file = %cursor_path.display(),
                        "outbox: cursor file is corrupt; resending every record still present"
                    );
                    0
                }
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_err(&cursor_path)(e)),
        };

        let mut class = Class {
            cfg,
            dir,
            segments: VecDeque::new(),
            active: None,
            cursor,
            persisted: cursor,
            next_seq: 1,
            read: None,
            batch_end: None,
            head: None,
            counters: Counters::default(),
        };
        let mut after = 0;
        for (i, &name_seq) in names.iter().enumerate() {
            let path = class.dir.join(crate::segment::segment_file_name(name_seq));
            let bytes = fs::read(&path).map_err(io_err(&path))?;
            let is_last = i + 1 == names.len();
            let r = recover(&path, name_seq, &bytes, after, is_last);
            class.counters.corrupt_skipped += r.corrupt_regions;
            if let Some(len) = r.truncate_to {
                twig_seglog::files::truncate_tail(&path, len)?;
            }
            let seg = r.segment;
            // Segments with nothing readable above the cursor are done
            // with: fully acknowledged (a crash came between persisting
            // the cursor and deleting them), empty, or wholly damaged.
            if seg.count == 0 || seg.last_seq <= cursor {
                if seg.count == 0 && !bytes.is_empty() {
                    tracing::warn!(file = %path.display(), "outbox: removing a segment with no intact records");
                }
                fs::remove_file(&path).map_err(io_err(&path))?;
                removed = true;
                after = after.max(seg.last_seq);
                continue;
            }
            after = seg.last_seq;
            class.segments.push_back(seg);
        }
        if removed {
            sync_dir(&class.dir)?;
        }
        // Seqs never repeat: above every record seen and the cursor (which
        // outlives the segments it acknowledged or dropped).
        class.next_seq = after.max(cursor).saturating_add(1);
        if let Some(last) = class.segments.back() {
            if last.len < segment_bytes {
                let f = twig_seglog::files::open_write(&last.path).map_err(io_err(&last.path))?;
                class.active = Some(Arc::new(f));
            }
        }
        Ok(class)
    }

    pub fn name(&self) -> &str {
        &self.cfg.name
    }

    pub fn has_pending(&self) -> bool {
        self.segments
            .back()
            .is_some_and(|s| s.last_seq > self.cursor)
    }

    pub fn pending_records(&self) -> u64 {
        self.segments
            .iter()
            .map(|s| s.count_in(self.cursor, u64::MAX))
            .sum()
    }

    /// On-disk bytes of the records not yet acknowledged (an estimate when
    /// the read position lags the cursor).
    pub fn pending_bytes(&self) -> u64 {
        let mut total: u64 = self
            .segments
            .iter()
            .filter(|s| s.last_seq > self.cursor)
            .map(|s| s.len)
            .sum();
        if let (Some(read), Some(first)) = (self.read, self.segments.front()) {
            if read.segment == first.name_seq {
                total = total.saturating_sub(read.offset);
            }
        }
        total
    }

    /// `created_ms` of the oldest pending record: exact when it has been
    /// read or starts a segment, else the oldest in its segment.
    pub fn oldest_pending_created_ms(&self) -> Option<u64> {
        if let Some((seq, created)) = self.head {
            if seq > self.cursor {
                return Some(created);
            }
        }
        self.segments
            .iter()
            .find(|s| s.last_seq > self.cursor)
            .map(|s| s.first_created_ms)
    }

    fn ttl_ms(&self) -> Option<u64> {
        self.cfg
            .ttl
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX))
    }

    /// Whether the oldest segment holds only records past the TTL.
    pub fn front_expired(&self, now_ms: u64) -> bool {
        match (self.ttl_ms(), self.segments.front()) {
            (Some(ttl), Some(s)) => now_ms.saturating_sub(s.last_created_ms) > ttl,
            _ => false,
        }
    }

    /// Notes that the cursor file holds at least `on_disk`.
    pub fn persisted_at_least(&mut self, on_disk: u64) {
        self.persisted = self.persisted.max(on_disk);
    }

    /// Takes the segments the persisted cursor wholly covers out of the
    /// class (deleting one before the cursor file says so could bring its
    /// records' seqs back after a crash). The caller deletes their files,
    /// outside the state lock.
    pub fn collect(&mut self) -> Vec<Segment> {
        let mut gone = Vec::new();
        while let Some(front) = self.segments.front() {
            if front.last_seq > self.persisted {
                break;
            }
            gone.extend(self.pop_front());
        }
        gone
    }

    /// Takes the oldest segment out of the class (its file stays).
    fn pop_front(&mut self) -> Option<Segment> {
        let front = self.segments.pop_front()?;
        if self.segments.is_empty() {
            self.active = None;
        }
        let name = front.name_seq;
        if self.read.is_some_and(|r| r.segment == name) {
            self.read = None;
        }
        if self.batch_end.is_some_and(|(_, p)| p.segment == name) {
            self.batch_end = None;
        }
        Some(front)
    }

    /// The oldest segment, if any: its name and last seq (what the cursor
    /// must be persisted past before it may be discarded).
    pub fn front(&self) -> Option<(u64, u64)> {
        self.segments.front().map(|s| (s.name_seq, s.last_seq))
    }

    /// Discards the oldest segment before delivery (drop policy or TTL),
    /// once the cursor file holds `on_disk` >= its last seq, so its records
    /// never come back and its seqs are never reused, even if every file
    /// goes. `None` if the oldest segment is no longer `name_seq` (acked or
    /// discarded meanwhile). Returns the records discarded and the segment,
    /// whose file the caller deletes.
    pub fn discard_front(
        &mut self,
        name_seq: u64,
        on_disk: u64,
        why: Discard,
    ) -> Option<(u64, Segment)> {
        let front = self.segments.front()?;
        if front.name_seq != name_seq || front.last_seq > on_disk {
            return None;
        }
        let records = front.count_in(self.cursor, u64::MAX);
        self.cursor = self.cursor.max(front.last_seq);
        self.persisted_at_least(on_disk);
        let seg = self.pop_front()?;
        match why {
            Discard::Full => self.counters.dropped_full += records,
            Discard::Expired => self.counters.expired += records,
        }
        Some((records, seg))
    }

    /// The cursor an ack of `upto` must persist: `upto` (capped at the
    /// last seq appended), or the current cursor if that is further (which
    /// catches up a cursor write that failed earlier).
    pub fn ack_target(&self, upto: u64) -> u64 {
        upto.min(self.next_seq - 1).max(self.cursor)
    }

    /// Acknowledges every record up to `upto` once the cursor file holds
    /// `on_disk` >= it (not durable, not acknowledged: a failed write
    /// leaves the records pending, to be sent again). Returns the segments
    /// now wholly acknowledged, whose files the caller deletes.
    pub fn ack(&mut self, upto: u64, on_disk: u64) -> Vec<Segment> {
        let upto = upto.min(self.next_seq - 1).min(on_disk);
        self.persisted_at_least(on_disk);
        if upto > self.cursor {
            let delivered: u64 = self
                .segments
                .iter()
                .map(|s| s.count_in(self.cursor, upto))
                .sum();
            self.cursor = upto;
            self.counters.delivered += delivered;
            if let Some((seq, pos)) = self.batch_end.take() {
                if seq == upto {
                    self.read = Some(pos);
                }
            }
        }
        self.collect()
    }

    /// Appends to `out` up to `max_records` / `max_bytes` (on-disk record
    /// bytes; at least one record) of the oldest pending records, skipping
    /// (and passing the cursor over) records past the TTL. Reads from the
    /// remembered position; moves it only over records that will never be
    /// handed out again.
    pub fn read_batch(
        &mut self,
        id: ClassId,
        now_ms: u64,
        max_records: usize,
        max_bytes: usize,
        out: &mut Vec<Record>,
    ) -> Result<ReadOutcome, OutboxError> {
        let mut outcome = ReadOutcome::default();
        let ttl = self.ttl_ms();
        let mut pos = match self.read {
            Some(p) if self.segments.iter().any(|s| s.name_seq == p.segment) => p,
            _ => match self.segments.front() {
                Some(s) => ReadPos {
                    segment: s.name_seq,
                    offset: 0,
                },
                None => return Ok(outcome),
            },
        };
        let mut idx = match self.segments.iter().position(|s| s.name_seq == pos.segment) {
            Some(i) => i,
            None => return Ok(outcome),
        };
        let mut last_seen = self.cursor;
        let mut bytes = 0usize;
        // Whether `pos` may still be saved as the read position: true until
        // the first record is put in the batch.
        let mut advancing = true;
        'segments: while idx < self.segments.len() {
            let (path, end, seg_last) = {
                let s = &self.segments[idx];
                (s.path.clone(), s.end, s.last_seq)
            };
            let mut reader: Option<Reader> = None;
            let mut off = pos.offset;
            while off < end {
                if let Some(&(_, skip_end)) =
                    self.segments[idx].skips.iter().find(|(s, _)| *s == off)
                {
                    off = skip_end;
                    if advancing {
                        self.read = Some(ReadPos {
                            segment: pos.segment,
                            offset: off,
                        });
                    }
                    continue;
                }
                let r = match &mut reader {
                    Some(r) => r,
                    None => reader.insert(Reader::open(&path).map_err(io_err(&path))?),
                };
                let buf = r.record_bytes(off, end).map_err(io_err(&path))?;
                let decoded = match decode_record(buf) {
                    Ok((d, n)) if d.seq > last_seen => Some((d, n)),
                    _ => None,
                };
                let Some((d, n)) = decoded else {
                    // Damage that was not there when the outbox opened
                    // (bit rot): find the next intact record in the rest
                    // of the segment.
                    let rest = r
                        .get(off, (end - off) as usize, end)
                        .map_err(io_err(&path))?;
                    let step = match decode_record(rest) {
                        Ok((_, n)) => n,
                        Err(e) => e.trusted_len().unwrap_or(1),
                    };
                    let next = find_next(rest, step.min(rest.len()), last_seen)
                        .map_or(end, |q| off + q as u64);
                    tracing::warn!(
                        file = %path.display(),
                        offset = off,
                        len = next - off,
                        "outbox: damaged bytes in a segment; skipping them"
                    );
                    self.segments[idx].skips.push((off, next));
                    self.counters.corrupt_skipped += 1;
                    off = next;
                    if advancing {
                        self.read = Some(ReadPos {
                            segment: pos.segment,
                            offset: off,
                        });
                    }
                    continue;
                };
                let next_off = off + n as u64;
                let expired = ttl.is_some_and(|t| now_ms.saturating_sub(d.created_ms) > t);
                if expired {
                    if !advancing {
                        // Records before it are in the batch; the cursor
                        // cannot pass it until they are acknowledged.
                        break 'segments;
                    }
                    outcome.expired += 1;
                    outcome.cursor_moved = true;
                    self.counters.expired += 1;
                    self.cursor = d.seq;
                    last_seen = d.seq;
                    off = next_off;
                    self.read = Some(ReadPos {
                        segment: pos.segment,
                        offset: off,
                    });
                    continue;
                }
                if !out.is_empty() && (out.len() >= max_records || bytes + n > max_bytes) {
                    break 'segments;
                }
                if out.is_empty() {
                    self.head = Some((d.seq, d.created_ms));
                }
                out.push(Record {
                    class: id,
                    seq: d.seq,
                    created_ms: d.created_ms,
                    subject: d.subject.to_owned(),
                    headers: d
                        .headers
                        .iter()
                        .map(|&(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                    body: d.body.to_vec(),
                });
                advancing = false;
                bytes += n;
                last_seen = d.seq;
                off = next_off;
                self.batch_end = Some((
                    d.seq,
                    ReadPos {
                        segment: pos.segment,
                        offset: off,
                    },
                ));
                if out.len() >= max_records {
                    break 'segments;
                }
            }
            if advancing && last_seen < seg_last {
                // The rest of this segment's records could not be read:
                // nothing will ever deliver them, so let the cursor pass.
                tracing::warn!(
                    file = %path.display(),
                    from_seq = last_seen + 1,
                    to_seq = seg_last,
                    "outbox: records lost to damage"
                );
                self.cursor = seg_last;
                last_seen = seg_last;
                outcome.cursor_moved = true;
            }
            idx += 1;
            if let Some(s) = self.segments.get(idx) {
                pos = ReadPos {
                    segment: s.name_seq,
                    offset: 0,
                };
                if advancing {
                    self.read = Some(pos);
                }
            }
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_detects_damage() {
        let b = encode_cursor(123_456);
        assert_eq!(decode_cursor(&b), Some(123_456));
        for i in 0..CURSOR_LEN {
            let mut x = b;
            x[i] ^= 0x10;
            assert_eq!(decode_cursor(&x), None, "flip in byte {i}");
        }
        assert_eq!(decode_cursor(&b[..15]), None);
    }
}
