//! Reading a component image from a file an operator (or the lattice)
//! named.
//!
//! A path can name anything: `/dev/zero` never ends, a FIFO blocks its
//! reader until someone writes, a 1 GiB file would be held whole in memory.
//! [`read_image`] opens the path once, looks at what it opened (`fstat` on
//! the descriptor, so nothing can be swapped in between a check and the
//! open), refuses everything but a regular file at once, and never reads
//! more than the board's cap (`limits.max_image_mib`).

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why an image could not be read. Every message names the path.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("cannot open {}: {source}", path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is {kind}, not a regular file", path.display())]
    NotRegular { path: PathBuf, kind: &'static str },
    #[error(
        "{} is {size} bytes, over the board's image cap of {cap} bytes (limits.max_image_mib = {})",
        path.display(),
        cap >> 20
    )]
    TooLarge { path: PathBuf, size: u64, cap: u64 },
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Reads and parses the app manifest at `path` the same careful way (a
/// regular file, at most [`twig_manifest::MAX_MANIFEST_BYTES`]); returns its
/// text and what it says.
pub fn read_manifest(path: &Path) -> Result<(String, twig_manifest::Parsed), String> {
    let max = twig_manifest::MAX_MANIFEST_BYTES as u64;
    let bytes = read_image(path, max).map_err(|e| match e {
        ImageError::TooLarge { size, .. } => format!(
            "{}: app manifest is {size} bytes, larger than the {max} bytes accepted",
            path.display()
        ),
        e => format!("cannot read app manifest: {e}"),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        format!(
            "{}: not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    let source = twig_manifest::Source {
        file: Some(path),
        base_dir: path.parent(),
    };
    let parsed = twig_manifest::parse(&text, &source).map_err(|e| e.to_string())?;
    Ok((text, parsed))
}

/// What a file type is, for a message.
fn describe(ft: std::fs::FileType) -> &'static str {
    if ft.is_dir() {
        "a directory"
    } else if ft.is_fifo() {
        "a FIFO (named pipe)"
    } else if ft.is_char_device() {
        "a character device"
    } else if ft.is_block_device() {
        "a block device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Reads the regular file at `path` (symlinks followed), at most `cap`
/// bytes. Anything else (directory, FIFO, device, socket) and any file
/// larger than `cap` is refused without reading it.
pub fn read_image(path: &Path, cap: u64) -> Result<Vec<u8>, ImageError> {
    let mut file = open(path)?;
    let meta = file.metadata().map_err(|source| ImageError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.file_type().is_file() {
        return Err(ImageError::NotRegular {
            path: path.to_path_buf(),
            kind: describe(meta.file_type()),
        });
    }
    let too_large = |size| ImageError::TooLarge {
        path: path.to_path_buf(),
        size,
        cap,
    };
    if meta.len() > cap {
        return Err(too_large(meta.len()));
    }
    // The file may grow after the fstat: read one byte past the cap to
    // notice, never more.
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    (&mut file)
        .take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|source| ImageError::Read {
            path: path.to_path_buf(),
            source,
        })?;
    if bytes.len() as u64 > cap {
        return Err(too_large(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Opens read-only with `O_NONBLOCK`, so that opening a FIFO with no writer
/// returns at once instead of waiting for one (for a regular file the flag
/// changes nothing).
fn open(path: &Path) -> Result<File, ImageError> {
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|source| {
            // A Unix socket cannot be opened at all (ENXIO); say what the
            // path is rather than "No such device or address".
            match std::fs::metadata(path) {
                Ok(m) if !m.file_type().is_file() => ImageError::NotRegular {
                    path: path.to_path_buf(),
                    kind: describe(m.file_type()),
                },
                _ => ImageError::Open {
                    path: path.to_path_buf(),
                    source,
                },
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;
    use std::time::{Duration, Instant};

    const CAP: u64 = 1 << 20;

    fn mkfifo(path: &Path) {
        let status = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .expect("mkfifo runs");
        assert!(status.success());
    }

    /// A fresh directory, removed on drop.
    /// A scratch directory, removed when it drops.
    struct Tmp(tempfile::TempDir);

    impl std::ops::Deref for Tmp {
        type Target = Path;
        fn deref(&self) -> &Path {
            self.0.path()
        }
    }

    fn tmp(name: &str) -> Tmp {
        Tmp(tempfile::Builder::new()
            .prefix(&format!("twig-image-{name}-"))
            .tempdir()
            .unwrap())
    }

    /// Runs `f` on a thread and fails if it takes longer than 2 s: a
    /// regression (a blocking open) must fail the test, not hang it.
    fn quickly<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(f());
        });
        rx.recv_timeout(Duration::from_secs(2))
            .expect("read_image returned within 2 s")
    }

    #[test]
    fn reads_a_regular_file() {
        let dir = tmp("regular");
        let p = dir.join("a.wasm");
        std::fs::write(&p, b"\0asm").unwrap();
        assert_eq!(read_image(&p, CAP).unwrap(), b"\0asm");
        // Exactly at the cap is allowed.
        assert_eq!(read_image(&p, 4).unwrap().len(), 4);
    }

    #[test]
    fn refuses_a_fifo_at_once_also_through_a_symlink() {
        let dir = tmp("fifo");
        let fifo = dir.join("pipe.wasm");
        mkfifo(&fifo);
        let link = dir.join("link.wasm");
        std::os::unix::fs::symlink(&fifo, &link).unwrap();
        for p in [fifo, link] {
            let started = Instant::now();
            let q = p.clone();
            let e = quickly(move || read_image(&q, CAP)).unwrap_err();
            assert!(matches!(e, ImageError::NotRegular { .. }), "{e}");
            let msg = e.to_string();
            assert!(
                msg.contains(&p.display().to_string()) && msg.contains("FIFO"),
                "{msg}"
            );
            assert!(started.elapsed() < Duration::from_secs(1));
        }
    }

    #[test]
    fn refuses_dev_zero_without_reading() {
        let e = quickly(|| read_image(Path::new("/dev/zero"), CAP)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "/dev/zero is a character device, not a regular file"
        );
    }

    #[test]
    fn refuses_a_directory_and_a_socket() {
        let dir = tmp("dir");
        let e = read_image(&dir, CAP).unwrap_err();
        assert!(e
            .to_string()
            .ends_with("is a directory, not a regular file"));
        assert!(e.to_string().contains(&dir.display().to_string()));
        let sock = dir.join("s.wasm");
        let _listener = UnixListener::bind(&sock).unwrap();
        let e = read_image(&sock, CAP).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{} is a socket, not a regular file", sock.display())
        );
    }

    #[test]
    fn refuses_a_file_over_the_cap_without_reading_it() {
        // Sparse: 1 GiB long, no blocks on disk. Reading it whole would
        // take a second and a GiB of memory; the check is on its length.
        let dir = tmp("big");
        let p = dir.join("big.wasm");
        let f = File::create(&p).unwrap();
        f.set_len(1 << 30).unwrap();
        let e = quickly({
            let p = p.clone();
            move || read_image(&p, 32 << 20)
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{} is 1073741824 bytes, over the board's image cap of 33554432 bytes (limits.max_image_mib = 32)",
                p.display()
            )
        );
        let e = read_image(&p, CAP).unwrap_err();
        assert!(
            matches!(e, ImageError::TooLarge { size, cap, .. } if size == 1 << 30 && cap == CAP)
        );
    }

    #[test]
    fn a_manifest_fifo_is_refused_at_once() {
        let dir = tmp("manifest");
        let fifo = dir.join("app.yaml");
        mkfifo(&fifo);
        let e = quickly({
            let f = fifo.clone();
            move || read_manifest(&f)
        })
        .unwrap_err();
        assert_eq!(
            e,
            format!(
                "cannot read app manifest: {} is a FIFO (named pipe), not a regular file",
                fifo.display()
            )
        );
        let e = quickly(|| read_manifest(Path::new("/dev/zero"))).unwrap_err();
        assert!(e.contains("/dev/zero is a character device"), "{e}");
    }

    /// The lattice's `component.scale` path (after its checks, whatever
    /// they allow): the file goes through the same read, so a FIFO,
    /// `/dev/zero` or a 1 GiB file is refused at once and nothing is
    /// deployed.
    #[test]
    fn a_lattice_scale_of_a_file_that_is_not_an_image_is_refused_at_once() {
        let dir = tmp("scale");
        let fifo = dir.join("pipe.wasm");
        mkfifo(&fifo);
        let big = dir.join("big.wasm");
        File::create(&big).unwrap().set_len(1 << 30).unwrap();
        let data = dir.join("data");
        crate::state::create_private_dir(&data).unwrap();
        let host = crate::host::Host::open(crate::board::Board::sim(), &data).unwrap();
        for (file, want) in [
            (fifo.clone(), format!("{} is a FIFO", fifo.display())),
            (
                PathBuf::from("/dev/zero"),
                "/dev/zero is a character device".to_string(),
            ),
            (
                big.clone(),
                format!(
                    "{} is 1073741824 bytes, over the board's image cap",
                    big.display()
                ),
            ),
        ] {
            let plan = crate::control::ScalePlan {
                id: "lat-x".into(),
                file: Some(file.clone()),
                origin: crate::state::LatticeOrigin {
                    image_ref: format!("file://{}", file.display()),
                    annotations: Default::default(),
                    max_instances: 1,
                    config: Vec::new(),
                },
                message: String::new(),
            };
            let h = host.clone();
            let e = quickly(move || h.run_scale(&plan)).unwrap_err();
            assert!(e.contains(&want), "{e}");
            assert!(!host.has_component("lat-x"));
        }
    }

    #[test]
    fn a_missing_file_names_the_path() {
        let e = read_image(Path::new("/nonexistent/x.wasm"), CAP).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("cannot open /nonexistent/x.wasm: No such file"),
            "{e}"
        );
    }
}
