//! The data-directory lock: `DIR/LOCK`, `flock`ed while a store or outbox
//! has the directory open, so two processes never append to one log.

use std::fs::{File, OpenOptions, TryLockError};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{io_err, Error};

/// The lock file's name.
pub const LOCK_FILE: &str = "LOCK";

/// Held while alive; the kernel drops the lock when the file closes (also
/// when the process dies).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Takes `dir/LOCK` (creating it), or fails with [`Error::Locked`] if
    /// it is held.
    pub fn acquire(dir: &Path) -> Result<DirLock, Error> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path))?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(Error::Locked {
                dir: dir.to_path_buf(),
            }),
            Err(TryLockError::Error(e)) => Err(io_err(&path)(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::TestDir;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let d = TestDir::new("lock");
        let first = DirLock::acquire(d.path()).expect("lock");
        let e = DirLock::acquire(d.path()).expect_err("held");
        assert!(
            matches!(&e, Error::Locked { dir } if dir == d.path()),
            "{e}"
        );
        drop(first);
        DirLock::acquire(d.path()).expect("lock again");
    }
}
