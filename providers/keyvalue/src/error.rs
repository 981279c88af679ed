//! The store's errors. Each names the file (and offset) at fault where
//! there is one.

use std::io;
use std::path::{Path, PathBuf};

/// Everything a store operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An I/O error other than a full disk. A failed write has been rolled
    /// back: the store holds what it held before the call.
    #[error("{}{}: {source}", path.display(), at(*offset))]
    Io {
        path: PathBuf,
        offset: Option<u64>,
        #[source]
        source: io::Error,
    },
    /// The filesystem is full (ENOSPC or EDQUOT). The write was rolled back.
    #[error("{}{}: disk full, the write was not applied: {source}", path.display(), at(*offset))]
    DiskFull {
        path: PathBuf,
        offset: Option<u64>,
        #[source]
        source: io::Error,
    },
    /// The write would take the live data (keys plus values) over the
    /// store's `max_bytes`. Nothing was written.
    #[error("store full: the write would raise live data to {would_be} bytes, over the limit of {limit} (delete keys to make room)")]
    Full { would_be: u64, limit: u64 },
    #[error("key is {len} bytes, over the limit of {limit}")]
    KeyTooLarge { len: usize, limit: usize },
    #[error("value is {len} bytes, over the limit of {limit}")]
    ValueTooLarge { len: usize, limit: usize },
    #[error("bucket name is {len} bytes, over the limit of {limit}")]
    BucketNameTooLarge { len: usize, limit: usize },
    #[error("batch encodes to {len} bytes, over the limit of {limit}")]
    BatchTooLarge { len: usize, limit: usize },
    /// `increment` on a value that is not a decimal `u64`.
    #[error("{bucket}/{key} holds a value that is not a decimal u64 counter")]
    NotAnInteger { bucket: String, key: String },
    #[error("incrementing {bucket}/{key} ({current}) by {delta} overflows u64")]
    Overflow {
        bucket: String,
        key: String,
        current: u64,
        delta: u64,
    },
    /// A stored record failed its checksum when read back.
    #[error("{}: record at offset {offset} is corrupt: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: &'static str,
    },
    /// The store holds records of a format this build cannot read; it is
    /// left untouched rather than have them discarded as damage.
    #[error("{}: record at offset {offset} has format version {version} (flags {flags:#06x}); this build reads version {}; refusing to open", path.display(), crate::format::VERSION)]
    UnsupportedFormat {
        path: PathBuf,
        offset: u64,
        version: u8,
        flags: u16,
    },
    /// An I/O failure could not be rolled back, so the store refuses
    /// writes until it is reopened (which recovers from the files).
    #[error("store is read-only until reopened: {reason}")]
    ReadOnly { reason: String },
    #[error("{}: the store is open elsewhere (its lock is held)", path.display())]
    Locked { path: PathBuf },
    #[error("invalid store configuration: {0}")]
    InvalidConfig(String),
    #[error("sequence numbers are exhausted")]
    SequenceExhausted,
}

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn at(offset: Option<u64>) -> String {
    match offset {
        Some(o) => format!(" at offset {o}"),
        None => String::new(),
    }
}

/// True for "no space left" and "quota exceeded".
pub(crate) fn is_disk_full(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
    ) || matches!(e.raw_os_error(), Some(28) | Some(122))
}

/// Wraps an I/O error, telling a full disk apart.
pub(crate) fn io_error(path: &Path, offset: Option<u64>, source: io::Error) -> Error {
    let path = path.to_path_buf();
    if is_disk_full(&source) {
        Error::DiskFull {
            path,
            offset,
            source,
        }
    } else {
        Error::Io {
            path,
            offset,
            source,
        }
    }
}

pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |e| io_error(path, None, e)
}

/// Wraps an error of twig-seglog's file helpers.
pub(crate) fn seglog_error(e: twig_seglog::Error) -> Error {
    match e {
        twig_seglog::Error::Locked { dir } => Error::Locked { path: dir },
        twig_seglog::Error::Io { path, source } => io_error(&path, None, source),
        other => Error::Io {
            path: other.path().to_path_buf(),
            offset: None,
            source: io::Error::other(other.to_string()),
        },
    }
}
