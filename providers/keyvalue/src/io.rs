//! The seam between the store and the files it writes, so tests can make
//! writes, fsyncs and truncations fail the way a full or failing disk does.
//! The files themselves are created by twig-seglog.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

pub(crate) use twig_seglog::files::{remove_if_exists, sync_dir};

/// A segment file open for writing at explicit offsets.
pub(crate) trait SegmentFile: Send {
    /// One write call; may write fewer bytes than given.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize>;
    fn sync(&mut self) -> io::Result<()>;
    fn set_len(&mut self, len: u64) -> io::Result<()>;
}

/// Opens segment files for writing.
pub(crate) trait Storage: Send + Sync {
    /// Creates (or empties) a file.
    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>>;
    /// Opens an existing file.
    fn open(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>>;
}

/// Writes all of `buf` at `offset`, retrying short writes.
pub(crate) fn write_all_at(
    f: &mut dyn SegmentFile,
    mut buf: &[u8],
    mut offset: u64,
) -> io::Result<()> {
    while !buf.is_empty() {
        match f.write_at(buf, offset) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => {
                buf = &buf[n..];
                offset += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Real files.
pub(crate) struct RealStorage;

pub(crate) struct RealFile(pub(crate) File);

impl SegmentFile for RealFile {
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize> {
        self.0.write_at(buf, offset)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl Storage for RealStorage {
    fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        Ok(Box::new(RealFile(twig_seglog::files::create_truncate(
            path,
        )?)))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
        Ok(Box::new(RealFile(twig_seglog::files::open_write(path)?)))
    }
}

#[cfg(test)]
pub(crate) mod faulty {
    //! A storage whose writes fail with ENOSPC once a byte budget is spent
    //! (after writing as much of the call as the budget allows), and whose
    //! fsyncs and truncations can be made to fail with EIO.

    use super::*;
    use std::fs::OpenOptions;
    use std::sync::{Arc, Mutex};

    #[derive(Debug, Default)]
    pub(crate) struct Plan {
        /// Bytes that may still be written; `None` is unlimited.
        pub write_budget: Option<u64>,
        /// How many of the coming fsyncs fail.
        pub fail_syncs: u32,
        pub fail_set_len: bool,
        /// Bytes written so far, across all files.
        pub written: u64,
    }

    #[derive(Clone, Default)]
    pub(crate) struct FaultyStorage(pub Arc<Mutex<Plan>>);

    impl FaultyStorage {
        pub fn plan(&self) -> std::sync::MutexGuard<'_, Plan> {
            self.0.lock().unwrap_or_else(|e| e.into_inner())
        }
    }

    struct FaultyFile {
        inner: RealFile,
        plan: Arc<Mutex<Plan>>,
    }

    fn eio() -> io::Error {
        io::Error::from_raw_os_error(5)
    }

    impl SegmentFile for FaultyFile {
        fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<usize> {
            let mut plan = self.plan.lock().unwrap_or_else(|e| e.into_inner());
            let allowed = match plan.write_budget {
                None => buf.len(),
                Some(0) => return Err(io::Error::from_raw_os_error(28)),
                Some(b) => buf.len().min(b as usize),
            };
            let n = self.inner.write_at(&buf[..allowed], offset)?;
            if let Some(b) = plan.write_budget.as_mut() {
                *b -= n as u64;
            }
            plan.written += n as u64;
            Ok(n)
        }

        fn sync(&mut self) -> io::Result<()> {
            {
                let mut plan = self.plan.lock().unwrap_or_else(|e| e.into_inner());
                if plan.fail_syncs > 0 {
                    plan.fail_syncs -= 1;
                    return Err(eio());
                }
            }
            self.inner.sync()
        }

        fn set_len(&mut self, len: u64) -> io::Result<()> {
            if self
                .plan
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .fail_set_len
            {
                return Err(eio());
            }
            self.inner.set_len(len)
        }
    }

    impl Storage for FaultyStorage {
        fn create(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
            let inner = RealStorage.create(path)?;
            let f = OpenOptions::new().write(true).open(path)?;
            drop(inner);
            Ok(Box::new(FaultyFile {
                inner: RealFile(f),
                plan: self.0.clone(),
            }))
        }

        fn open(&self, path: &Path) -> io::Result<Box<dyn SegmentFile>> {
            let f = OpenOptions::new().write(true).open(path)?;
            Ok(Box::new(FaultyFile {
                inner: RealFile(f),
                plan: self.0.clone(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;

    /// The real write path against a real full device: /dev/full fails
    /// every write with ENOSPC, which must be classified as a full disk.
    #[test]
    fn dev_full_is_reported_as_disk_full() {
        let Ok(f) = OpenOptions::new().write(true).open("/dev/full") else {
            eprintln!("no /dev/full here; skipping");
            return;
        };
        let mut f = RealFile(f);
        let err =
            write_all_at(&mut f, b"some record bytes", 0).expect_err("/dev/full accepted a write");
        assert!(crate::error::is_disk_full(&err), "{err:?}");
        let e = crate::error::io_error(Path::new("/dev/full"), Some(0), err);
        assert!(matches!(e, crate::Error::DiskFull { .. }), "{e}");
        assert!(
            e.to_string().contains("/dev/full at offset 0: disk full"),
            "{e}"
        );
    }
}
