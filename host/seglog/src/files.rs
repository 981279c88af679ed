//! Segment files and small durable files: names that sort in number
//! order, creating a file so that its name survives a power cut, cutting
//! a torn tail, `sync_dir` and `write_atomic`.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{io_err, Error};

/// How a log names its segment files: a zero-padded number and a suffix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentNames {
    /// `".log"`, `".seg"`.
    pub suffix: &'static str,
    /// Digits written (zero-padded).
    pub width: usize,
    /// Fewest and most digits a name may have to be read as a segment.
    pub min_digits: usize,
    pub max_digits: usize,
}

impl SegmentNames {
    /// The file name of segment `n`.
    pub fn name(&self, n: u64) -> String {
        format!("{n:0width$}{}", self.suffix, width = self.width)
    }

    pub fn path(&self, dir: &Path, n: u64) -> PathBuf {
        dir.join(self.name(n))
    }

    /// The number a file name stands for, if it is a segment's.
    pub fn parse(&self, name: &str) -> Option<u64> {
        let digits = name.strip_suffix(self.suffix)?;
        if !(self.min_digits..=self.max_digits).contains(&digits.len())
            || !digits.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        digits.parse().ok()
    }
}

/// Creates `dir` (and its parents) readable by the owner only, if missing.
pub fn create_dir(dir: &Path) -> Result<(), Error> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir))
}

/// Makes a directory's entries (created, renamed, removed files) durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates a new, empty file for writing (it must not exist), readable by
/// the owner only. The caller syncs the directory before counting on the
/// name (see [`create_durable`]).
pub fn create_new(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// Creates (or empties) a file for writing, readable by the owner only.
pub fn create_truncate(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// [`create_new`], then fsyncs `dir`, so the name survives a power cut
/// before any record goes in. On failure the file is removed again.
pub fn create_durable(dir: &Path, path: &Path) -> Result<File, Error> {
    let f = create_new(path).map_err(io_err(path))?;
    if let Err(e) = sync_dir(dir) {
        let _ = fs::remove_file(path);
        return Err(io_err(dir)(e));
    }
    Ok(f)
}

/// Opens an existing segment for writing at explicit offsets.
pub fn open_write(path: &Path) -> io::Result<File> {
    OpenOptions::new().write(true).open(path)
}

/// Cuts a torn tail: the file is truncated to `len` and fsynced.
pub fn truncate_tail(path: &Path, len: u64) -> Result<(), Error> {
    let f = open_write(path).map_err(io_err(path))?;
    f.set_len(len)
        .and_then(|()| f.sync_all())
        .map_err(io_err(path))
}

/// Removes a file if it exists.
pub fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Writes a small file atomically and durably: `dir/tmp`, fsynced, renamed
/// over `dir/name`, then the directory fsynced. A crash leaves either the
/// old contents or the new, never a mix (at worst a stray temporary file,
/// which the caller's open removes).
pub fn write_atomic(dir: &Path, name: &str, tmp: &str, bytes: &[u8]) -> Result<(), Error> {
    let tmp_path = dir.join(tmp);
    let path = dir.join(name);
    let f = create_truncate(&tmp_path).map_err(io_err(&tmp_path))?;
    f.write_all_at(bytes, 0)
        .and_then(|()| f.sync_all())
        .map_err(io_err(&tmp_path))?;
    drop(f);
    fs::rename(&tmp_path, &path).map_err(io_err(&path))?;
    sync_dir(dir).map_err(io_err(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdir::TestDir;

    const KV: SegmentNames = SegmentNames {
        suffix: ".log",
        width: 8,
        min_digits: 1,
        max_digits: 10,
    };

    #[test]
    fn names_round_trip_and_sort() {
        assert_eq!(KV.name(7), "00000007.log");
        assert_eq!(KV.parse("00000007.log"), Some(7));
        assert_eq!(KV.parse("7.log"), Some(7));
        assert_eq!(KV.parse("12345678901.log"), None);
        assert_eq!(KV.parse("0000000a.log"), None);
        assert_eq!(KV.parse("00000007.log.tmp"), None);
        assert_eq!(KV.parse(".log"), None);
        assert!(KV.name(9) < KV.name(10));
    }

    #[test]
    fn write_atomic_replaces_whole_and_truncate_cuts() {
        let d = TestDir::new("atomic");
        write_atomic(d.path(), "f", "f.tmp", b"first").expect("write");
        write_atomic(d.path(), "f", "f.tmp", b"2nd").expect("write");
        assert_eq!(fs::read(d.path().join("f")).expect("read"), b"2nd");
        assert!(!d.path().join("f.tmp").exists());
        truncate_tail(&d.path().join("f"), 1).expect("truncate");
        assert_eq!(fs::read(d.path().join("f")).expect("read"), b"2");
    }

    #[test]
    fn create_durable_refuses_an_existing_name() {
        let d = TestDir::new("create");
        let p = d.path().join("00000001.log");
        create_durable(d.path(), &p).expect("create");
        let e = create_durable(d.path(), &p).expect_err("exists");
        assert!(e.to_string().contains("00000001.log"), "{e}");
        assert!(p.exists(), "the existing file is left alone");
    }
}
