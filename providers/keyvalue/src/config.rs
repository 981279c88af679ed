//! How a store is tuned: limits, fsync policy, segment size, compaction.

use crate::error::{Error, Result};
use crate::format::MAX_BODY_LEN;

/// Longest bucket name, in bytes.
pub const MAX_BUCKET_NAME_BYTES: usize = 255;

/// When appended records are made durable (fsynced).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// Every write is fsynced before it returns: an acknowledged write
    /// survives a power cut.
    #[default]
    Always,
    /// Writes return once they are in the OS page cache (they survive the
    /// process dying, not a power cut) and are fsynced in groups. An
    /// acknowledged write is fsynced no later than `max_delay_ms` after the
    /// oldest unsynced write (by the write that finds the delay passed, or
    /// by a background thread), or as soon as `max_bytes` are unsynced,
    /// whichever comes first; [`crate::Store::flush`] forces it. A power
    /// cut loses at most the writes of that window (any of them, not only
    /// a suffix: the filesystem may persist later pages first); recovery
    /// reports and skips what it finds damaged and keeps every older write.
    Batched { max_delay_ms: u64, max_bytes: u64 },
}

/// When the log is rewritten to drop superseded records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactionPolicy {
    /// Compact after a write once both thresholds below are passed. When
    /// false only [`crate::Store::compact`] compacts.
    pub auto: bool,
    /// Dead bytes (on disk but superseded) must exceed this...
    pub min_dead_bytes: u64,
    /// ...and this percentage of all bytes on disk.
    pub min_dead_percent: u8,
}

impl Default for CompactionPolicy {
    fn default() -> Self {
        CompactionPolicy {
            auto: true,
            min_dead_bytes: 1 << 20,
            min_dead_percent: 50,
        }
    }
}

/// A store's settings. `Config::default()` suits a small board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub fsync: FsyncPolicy,
    /// Limit on live data: the sum over all buckets of key and value
    /// lengths. A write that would exceed it fails with [`Error::Full`].
    /// Disk use is bounded by roughly `max_bytes * 100 / (100 -
    /// min_dead_percent) + min_dead_bytes + segment_max_bytes` plus record
    /// overhead (about 25 bytes per key).
    pub max_bytes: u64,
    pub max_key_bytes: usize,
    pub max_value_bytes: usize,
    /// Limit on one encoded batch (set-many, delete-many).
    pub max_batch_bytes: usize,
    /// A new segment file is started when a record would take the current
    /// one past this size.
    pub segment_max_bytes: u64,
    pub compaction: CompactionPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            fsync: FsyncPolicy::Always,
            max_bytes: 16 << 20,
            max_key_bytes: 1024,
            max_value_bytes: 1 << 20,
            max_batch_bytes: 4 << 20,
            segment_max_bytes: 4 << 20,
            compaction: CompactionPolicy::default(),
        }
    }
}

impl Config {
    pub(crate) fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidConfig(m));
        // A single record must fit the format and leave offsets in u32.
        let overhead = MAX_BUCKET_NAME_BYTES + 64;
        if self.max_value_bytes + self.max_key_bytes + overhead > MAX_BODY_LEN {
            return bad(format!(
                "max_value_bytes + max_key_bytes must stay below {} bytes",
                MAX_BODY_LEN - overhead
            ));
        }
        if self.max_batch_bytes > MAX_BODY_LEN {
            return bad(format!("max_batch_bytes must be at most {MAX_BODY_LEN}"));
        }
        if !(4096..=1 << 30).contains(&self.segment_max_bytes) {
            return bad("segment_max_bytes must be between 4 KiB and 1 GiB".into());
        }
        if self.compaction.min_dead_percent > 100 {
            return bad("compaction.min_dead_percent must be at most 100".into());
        }
        if let FsyncPolicy::Batched { max_delay_ms, .. } = self.fsync {
            if max_delay_ms > 3_600_000 {
                return bad("fsync max_delay_ms must be at most an hour".into());
            }
        }
        Ok(())
    }
}
