//! Segment files: their names, the small metadata kept per segment in
//! memory, recovery's scan of a segment's bytes, and a read-ahead window
//! for reading records back without holding a segment in memory.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use twig_seglog::{Event, Order, Scanner, SegmentNames};

use crate::format::{self, OutboxCodec};

/// `00000000000000000001.seg`: 20 digits, enough for any `u64`, so names
/// sort in seq order as strings too.
const NAMES: SegmentNames = SegmentNames {
    suffix: ".seg",
    width: 20,
    min_digits: 20,
    max_digits: 20,
};
/// How much a reader fetches at once: several typical records per
/// `pread`, little memory.
const READ_AHEAD: usize = 64 << 10;

/// `00000000000000000001.seg` for a segment whose first record is seq 1.
pub(crate) fn segment_file_name(first_seq: u64) -> String {
    NAMES.name(first_seq)
}

/// The first seq a segment file name stands for, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    NAMES.parse(name)
}

/// What is known about one segment file without reading it: enough to
/// order, count, expire and delete it. Records themselves stay on disk.
#[derive(Debug, Clone)]
pub(crate) struct Segment {
    /// The seq in the file's name (its first record's, when written).
    pub name_seq: u64,
    pub path: PathBuf,
    /// First and last seq of the intact records in it; meaningless while
    /// `count` is 0.
    pub first_seq: u64,
    pub last_seq: u64,
    /// Intact records.
    pub count: u64,
    /// Smallest and largest `created_ms` of its records (for the age of
    /// the oldest record, and to expire whole segments).
    pub first_created_ms: u64,
    pub last_created_ms: u64,
    /// Bytes in the file: what it costs against the cap, and where the
    /// next record goes when it is the active segment.
    pub len: u64,
    /// Where readable records end: `len`, except in a sealed segment whose
    /// end is damaged (those bytes are kept, but never read).
    pub end: u64,
    /// Damaged byte ranges `[start, end)` the reader jumps over.
    pub skips: Vec<(u64, u64)>,
}

impl Segment {
    /// A new, empty segment for records from `first_seq` on.
    pub fn empty(dir: &Path, first_seq: u64) -> Segment {
        Segment {
            name_seq: first_seq,
            path: dir.join(segment_file_name(first_seq)),
            first_seq,
            last_seq: first_seq.saturating_sub(1),
            count: 0,
            first_created_ms: 0,
            last_created_ms: 0,
            len: 0,
            end: 0,
            skips: Vec::new(),
        }
    }

    /// Accounts for a record of `len` bytes appended at the end.
    pub fn push(&mut self, seq: u64, created_ms: u64, len: u64) {
        if self.count == 0 {
            self.first_seq = seq;
            self.first_created_ms = created_ms;
        }
        self.first_created_ms = self.first_created_ms.min(created_ms);
        self.last_created_ms = self.last_created_ms.max(created_ms);
        self.last_seq = seq;
        self.count += 1;
        self.len += len;
        self.end = self.len;
    }

    /// How many of its records have a seq in `(after, upto]`. Exact when
    /// the seqs in the segment are consecutive (always, unless damage took
    /// records out of the middle); otherwise an estimate, never more than
    /// `count`.
    pub fn count_in(&self, after: u64, upto: u64) -> u64 {
        if self.count == 0 || upto < self.first_seq || after >= self.last_seq || upto <= after {
            return 0;
        }
        let lo = after.max(self.first_seq - 1);
        let hi = upto.min(self.last_seq);
        (hi - lo).min(self.count)
    }
}

/// What recovery made of a segment's bytes.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub segment: Segment,
    /// Cut the file to this length (a torn tail of the last segment).
    pub truncate_to: Option<u64>,
    /// Damaged regions found (each counted once in `corrupt_skipped`).
    pub corrupt_regions: u64,
}

/// Scans the bytes of one segment file. `after_seq` is the last seq of
/// the class's previous segments: a record must be above it (and above
/// the one before it) to count, so stale or misplaced bytes that happen to
/// be well-formed are treated as damage. `is_last` says whether damage
/// running to the end is a torn write to cut away (the class's newest
/// segment) or damage to step over and keep (a sealed segment).
pub(crate) fn recover(
    path: &Path,
    name_seq: u64,
    bytes: &[u8],
    after_seq: u64,
    is_last: bool,
) -> Recovered {
    let dir = path.parent().unwrap_or(Path::new(""));
    let mut seg = Segment::empty(dir, name_seq);
    seg.path = path.to_path_buf();
    let mut truncate_to = None;
    let mut corrupt_regions = 0;
    for ev in Scanner::<OutboxCodec>::with_order(bytes, Order::Increasing { after: after_seq }) {
        match ev {
            Event::Record { len, record, .. } => {
                seg.push(record.seq, record.created_ms, len as u64)
            }
            Event::Corrupt { offset, len } => {
                let next = offset + len;
                tracing::warn!(
                    file = %path.display(),
                    offset,
                    len,
                    "outbox: damaged bytes in a segment; skipping to the next intact record"
                );
                seg.skips.push((offset as u64, next as u64));
                corrupt_regions += 1;
                // The skipped bytes still occupy the file.
                seg.len = next as u64;
            }
            Event::Tail { offset, len } if is_last => {
                tracing::warn!(
                    file = %path.display(),
                    offset,
                    len,
                    "outbox: torn write at the end of the newest segment; truncating it"
                );
                truncate_to = Some(offset as u64);
            }
            Event::Tail { offset, len } => {
                tracing::warn!(
                    file = %path.display(),
                    offset,
                    len,
                    "outbox: damaged end of a sealed segment; its records from here are lost"
                );
                corrupt_regions += 1;
            }
            // Not produced: this codec skips unsupported headers as damage.
            Event::Unsupported { .. } => {}
        }
    }
    // `push` keeps `len` at the end of the last intact record; a sealed
    // segment's damaged tail still costs its bytes.
    seg.end = seg.len;
    if truncate_to.is_none() {
        seg.len = bytes.len() as u64;
    }
    Recovered {
        segment: seg,
        truncate_to,
        corrupt_regions,
    }
}

/// Reads a segment file through a read-ahead buffer.
pub(crate) struct Reader {
    file: File,
    /// File offset of `buf[0]`.
    start: u64,
    buf: Vec<u8>,
}

impl Reader {
    pub fn open(path: &Path) -> io::Result<Reader> {
        Ok(Reader {
            file: File::open(path)?,
            start: 0,
            buf: Vec::new(),
        })
    }

    /// The bytes from `off` on, at least `want` of them unless `limit`
    /// (the segment's readable end) or the file's end comes first, plus
    /// whatever was read ahead.
    pub fn get(&mut self, off: u64, want: usize, limit: u64) -> io::Result<&[u8]> {
        let avail_to = limit.saturating_sub(off);
        let want = (want as u64).min(avail_to);
        let cached = off >= self.start && off + want <= self.start + self.buf.len() as u64;
        if !cached {
            let n = want.max(READ_AHEAD as u64).min(avail_to) as usize;
            self.buf.clear();
            self.buf.resize(n, 0);
            let mut got = 0;
            while got < n {
                match self.file.read_at(&mut self.buf[got..], off + got as u64) {
                    Ok(0) => break,
                    Ok(k) => got += k,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            self.buf.truncate(got);
            self.start = off;
        }
        let from = (off - self.start) as usize;
        let to = self
            .buf
            .len()
            .min(limit.saturating_sub(self.start) as usize);
        Ok(self.buf.get(from..to).unwrap_or(&[]))
    }

    /// The bytes of the whole record at `off` (or as much as there is, for
    /// the decoder to call truncated).
    pub fn record_bytes(&mut self, off: u64, limit: u64) -> io::Result<&[u8]> {
        let need = match format::read_header(self.get(off, format::HEADER_LEN, limit)?) {
            Ok((body_len, _)) => format::HEADER_LEN + body_len,
            Err(_) => format::HEADER_LEN,
        };
        self.get(off, need, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort() {
        assert_eq!(segment_file_name(1), "00000000000000000001.seg");
        assert_eq!(parse_segment_name("00000000000000000001.seg"), Some(1));
        assert_eq!(
            parse_segment_name(&segment_file_name(u64::MAX)),
            Some(u64::MAX)
        );
        assert_eq!(parse_segment_name("1.seg"), None);
        assert_eq!(parse_segment_name("0000000000000000000a.seg"), None);
        assert_eq!(parse_segment_name("00000000000000000001.seg.tmp"), None);
        assert!(segment_file_name(9) < segment_file_name(10));
    }

    #[test]
    fn count_in_is_exact_for_consecutive_seqs() {
        let mut s = Segment::empty(Path::new("/x"), 10);
        for seq in 10..20 {
            s.push(seq, 0, 5);
        }
        assert_eq!(s.count_in(0, u64::MAX), 10);
        assert_eq!(s.count_in(9, 19), 10);
        assert_eq!(s.count_in(12, 14), 2);
        assert_eq!(s.count_in(19, u64::MAX), 0);
        assert_eq!(s.count_in(0, 9), 0);
        assert_eq!(s.len, 50);
    }

    fn rec(seq: u64) -> Vec<u8> {
        let mut v = Vec::new();
        format::encode::<(&str, &str)>(seq, 5, "s", &[], b"payload", &mut v).expect("encode");
        v
    }

    #[test]
    fn recover_cuts_a_torn_tail_only_in_the_last_segment() {
        let mut bytes = rec(1);
        bytes.extend(rec(2));
        let whole = bytes.len();
        bytes.extend(&rec(3)[..10]);
        let r = recover(Path::new("/d/x.seg"), 1, &bytes, 0, true);
        assert_eq!(r.truncate_to, Some(whole as u64));
        assert_eq!((r.segment.count, r.segment.last_seq), (2, 2));
        assert_eq!(r.corrupt_regions, 0);

        let r = recover(Path::new("/d/x.seg"), 1, &bytes, 0, false);
        assert_eq!(r.truncate_to, None);
        assert_eq!(r.corrupt_regions, 1);
        assert_eq!(r.segment.end, whole as u64);
        assert_eq!(r.segment.len, bytes.len() as u64);
    }

    #[test]
    fn recover_steps_over_damage_in_the_middle() {
        let mut bytes = rec(1);
        let second = bytes.len();
        bytes.extend(rec(2));
        let third = bytes.len();
        bytes.extend(rec(3));
        bytes[second + 20] ^= 0x55;
        let r = recover(Path::new("/d/x.seg"), 1, &bytes, 0, true);
        assert_eq!(r.truncate_to, None);
        assert_eq!(r.corrupt_regions, 1);
        assert_eq!(r.segment.count, 2);
        assert_eq!(r.segment.skips, vec![(second as u64, third as u64)]);
        assert_eq!(r.segment.len, bytes.len() as u64);
    }
}
