//! The crate's error: an I/O failure and the path it concerns.

use std::io;
use std::path::{Path, PathBuf};

/// Everything a file operation of this crate can fail with. Callers wrap
/// it in their own error types (keeping the path).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Another process (or another handle in this one) holds the
    /// directory's lock.
    #[error("{}: the directory is open elsewhere (its LOCK is held)", dir.display())]
    Locked { dir: PathBuf },
}

impl Error {
    /// The path the error concerns.
    pub fn path(&self) -> &Path {
        match self {
            Error::Io { path, .. } => path,
            Error::Locked { dir } => dir,
        }
    }
}

/// Wraps an I/O error with its path.
pub(crate) fn io_err(path: &Path) -> impl FnOnce(io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}
