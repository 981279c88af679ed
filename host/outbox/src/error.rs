//! The outbox's errors. Each names the file, directory or class at fault.

use std::io;
use std::path::{Path, PathBuf};

/// Everything an outbox operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OutboxError {
    /// An I/O error. A failed append has been rolled back (the segment cut
    /// back to its previous length), so the outbox stays usable.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The record does not fit: its class rejects new records when the
    /// outbox is full, or nothing could be dropped to make room.
    #[error("outbox full: class {class}: a {need}-byte record does not fit ({total} of {max} bytes used)")]
    Full {
        class: String,
        need: u64,
        total: u64,
        max: u64,
    },
    /// The framed record would be larger than a segment.
    #[error("class {class}: record of {len} bytes is larger than a segment ({limit} bytes)")]
    TooLarge { class: String, len: u64, limit: u64 },
    /// Another outbox (in this or another process) has the directory open.
    #[error("{}: the outbox is already open elsewhere (its LOCK is held)", dir.display())]
    Locked { dir: PathBuf },
    #[error("invalid outbox configuration: {0}")]
    InvalidConfig(String),
    /// A [`ClassId`](crate::ClassId) that is not an index into the
    /// configured classes.
    #[error("no class with id {0}")]
    UnknownClass(usize),
    /// A class's sequence numbers ran out (after 2^64 records).
    #[error("class {0}: sequence numbers are exhausted")]
    SequenceExhausted(String),
}

/// Wraps an I/O error with the path it concerns.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> OutboxError + '_ {
    move |source| OutboxError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl From<twig_seglog::Error> for OutboxError {
    fn from(e: twig_seglog::Error) -> OutboxError {
        match e {
            twig_seglog::Error::Locked { dir } => OutboxError::Locked { dir },
            twig_seglog::Error::Io { path, source } => OutboxError::Io { path, source },
            other => OutboxError::Io {
                path: other.path().to_path_buf(),
                source: io::Error::other(other.to_string()),
            },
        }
    }
}
