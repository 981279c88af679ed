//! twig's segment log: the parts twig-keyvalue and twig-outbox share for
//! keeping records in append-only segment files that survive `kill -9`
//! and power cuts.
//!
//! | module | what | used by |
//! |---|---|---|
//! | [`frame`] | the 16-byte record header (magic, version, flags, body length, body CRC, header CRC) around a body: [`Frame::encode`], [`Frame::open`], [`Frame::verify`] | both |
//! | [`scan`] | the recovery scanner over a segment's bytes: intact records, damage stepped over, a torn tail, unsupported versions ([`Scanner`], [`find_next`]) | both, generic over the record type ([`Codec`]) |
//! | [`files`] | segment names ([`SegmentNames`]), creating a file durably, cutting a torn tail, [`sync_dir`], [`write_atomic`] | both |
//! | [`lock`] | the data-directory lock (`DIR/LOCK`, `flock`) | both |
//! | [`sync`] | group commit ([`Syncer`]) and the periodic [`Flusher`] | the outbox |
//!
//! What a body holds, how segments are chosen and what recovery does with
//! the scanner's events stay with each crate; so does each on-disk format,
//! which this crate only frames (each picks its magic byte, version, body
//! limit and segment names, and the bytes are the same as before the
//! crates shared this code).
//!
//! [`frame`] and [`scan`] do no I/O. No input makes the scanner panic
//! (fuzzed: `fuzz/`, target `scan_segment`).
#![forbid(unsafe_code)]
extern crate alloc;

mod error;
pub mod files;
pub mod frame;
pub mod lock;
pub mod scan;
pub mod sync;

pub use error::Error;
pub use files::{sync_dir, write_atomic, SegmentNames};
pub use frame::{EncodeError, Frame, FrameError, Header, HEADER_LEN};
pub use lock::DirLock;
pub use scan::{find_next, parse, Codec, Event, OnUnsupported, Order, Scanner};
pub use sync::{Flusher, SyncHook, Syncer};

#[cfg(test)]
mod testdir {
    use std::path::Path;

    /// A directory removed on drop.
    pub struct TestDir(tempfile::TempDir);

    impl TestDir {
        pub fn new(name: &str) -> TestDir {
            TestDir(
                tempfile::Builder::new()
                    .prefix(&format!("twig-seglog-test-{name}-"))
                    .tempdir()
                    .expect("create temp dir"),
            )
        }

        pub fn path(&self) -> &Path {
            self.0.path()
        }
    }
}
