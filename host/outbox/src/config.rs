//! What an outbox is opened with, and the checks it must pass.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::error::OutboxError;

/// Default cap on all segment files together.
pub const DEFAULT_MAX_BYTES: u64 = 64 << 20;
/// Default segment size.
pub const DEFAULT_SEGMENT_BYTES: u64 = 1 << 20;
/// Smallest segment: below this the per-file overhead dominates.
pub const MIN_SEGMENT_BYTES: u64 = 4 << 10;
/// Smallest `max_bytes`: four minimal segments, so dropping one whole
/// segment always frees a useful share of the cap.
pub const MIN_MAX_BYTES: u64 = 4 * MIN_SEGMENT_BYTES;
/// Longest class name.
pub const MAX_CLASS_NAME: usize = 32;

/// A clock in milliseconds since the Unix epoch (injectable for tests).
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// Where and how an outbox keeps its records.
#[derive(Clone)]
pub struct OutboxConfig {
    pub dir: PathBuf,
    /// Cap on the bytes of all segment files together (default 64 MiB).
    pub max_bytes: u64,
    /// Size at which a class's active segment is sealed and a new one
    /// started (default 1 MiB). Clamped to at least 4 KiB and at most
    /// `max_bytes / 4`. It is also the largest record.
    pub segment_bytes: u64,
    pub sync: SyncPolicy,
    pub classes: Vec<ClassConfig>,
    /// Milliseconds since the Unix epoch; `None` is the system clock.
    /// Record ages (TTL, `oldest_pending_age_ms`) are measured with it.
    pub clock: Option<Clock>,
}

impl OutboxConfig {
    /// A configuration with the defaults: 64 MiB, 1 MiB segments,
    /// [`SyncPolicy::Always`], the system clock.
    pub fn new(dir: impl Into<PathBuf>, classes: Vec<ClassConfig>) -> OutboxConfig {
        OutboxConfig {
            dir: dir.into(),
            max_bytes: DEFAULT_MAX_BYTES,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            sync: SyncPolicy::Always,
            classes,
            clock: None,
        }
    }

    /// The segment size actually used (see [`OutboxConfig::segment_bytes`]).
    pub fn effective_segment_bytes(&self) -> u64 {
        self.segment_bytes
            .max(MIN_SEGMENT_BYTES)
            .min(self.max_bytes / 4)
    }

    pub(crate) fn validate(&self) -> Result<(), OutboxError> {
        let bad = |m: String| Err(OutboxError::InvalidConfig(m));
        if self.max_bytes < MIN_MAX_BYTES {
            return bad(format!(
                "max_bytes is {}, below the minimum of {MIN_MAX_BYTES}",
                self.max_bytes
            ));
        }
        if self.classes.is_empty() {
            return bad("no classes".into());
        }
        if let SyncPolicy::Interval(d) = self.sync {
            if d.is_zero() {
                return bad("SyncPolicy::Interval of zero (use Always)".into());
            }
        }
        for (i, c) in self.classes.iter().enumerate() {
            if !valid_class_name(&c.name) {
                return bad(format!(
                    "class name {:?} must be 1 to {MAX_CLASS_NAME} characters of [a-z0-9_-]",
                    c.name
                ));
            }
            if self.classes[..i].iter().any(|o| o.name == c.name) {
                return bad(format!("class {:?} is configured twice", c.name));
            }
        }
        Ok(())
    }
}

impl fmt::Debug for OutboxConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OutboxConfig")
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .field("segment_bytes", &self.segment_bytes)
            .field("sync", &self.sync)
            .field("classes", &self.classes)
            .field("clock", &self.clock.as_ref().map(|_| "custom"))
            .finish()
    }
}

/// `[a-z0-9_-]{1,32}`: safe as a directory name and in a message id.
pub fn valid_class_name(name: &str) -> bool {
    (1..=MAX_CLASS_NAME).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

/// When an appended record is on stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// `append` returns only after the record is fsynced. Concurrent
    /// appenders share fsyncs (group commit): one becomes the leader and
    /// syncs every record written so far, the others wait for it.
    Always,
    /// `append` returns after write(2); a background thread fsyncs every
    /// interval (and the outbox on drop). A power cut may lose up to one
    /// interval of records; a killed process loses nothing (the page cache
    /// survives it).
    Interval(Duration),
}

/// One class of messages: its own FIFO queue, directory, priority, TTL and
/// policy when the outbox is full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClassConfig {
    /// `[a-z0-9_-]{1,32}`; also the class's subdirectory name.
    pub name: String,
    /// Higher is sent first.
    pub priority: u8,
    /// Records older than this when they would be handed to the sender are
    /// dropped as expired. `None`: never.
    pub ttl: Option<Duration>,
    pub when_full: DropPolicy,
}

impl ClassConfig {
    pub fn new(name: impl Into<String>, priority: u8, when_full: DropPolicy) -> ClassConfig {
        ClassConfig {
            name: name.into(),
            priority,
            ttl: None,
            when_full,
        }
    }
}

/// What happens to an append that would take the outbox over its cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropPolicy {
    /// Make room by deleting the oldest segment of the lowest-priority
    /// class that has this policy (the appending class included).
    DropOldest,
    /// Refuse the append with [`OutboxError::Full`].
    RejectNew,
}
