//! twig's durable key-value storage engine: the store behind
//! `wasi:keyvalue` for components on boards with flash storage, little RAM
//! and no warning before the power goes.
//!
//! A [`Store`] is one directory holding an append-only log split into
//! segment files. Buckets of string keys map to byte values; the API
//! ([`Store::get`], [`Store::set`], [`Store::delete`], [`Store::exists`],
//! [`Store::list_keys`] with a cursor, [`Store::increment`],
//! [`Store::compare_and_swap`], [`Store::get_many`], [`Store::set_many`],
//! [`Store::delete_many`], or the same on a [`Bucket`]) is shaped for the
//! `wasi:keyvalue` `store`, `atomics` and `batch` interfaces.
//!
//! # Directory layout
//!
//! ```text
//! DIR/
//!   LOCK                 flock()ed while a Store has the directory open
//!   00000001.log         segment files, replayed in number order; the
//!   00000002.log         highest-numbered one is appended to
//!   00000007.log.tmp     only during a compaction (deleted on open)
//! ```
//!
//! # Record format
//!
//! A segment is a sequence of records, each a 16-byte header and a body:
//!
//! ```text
//! offset  size  field
//!      0     1  magic       0xC7
//!      1     1  version     1
//!      2     2  flags       0 (u16 LE; reserved)
//!      4     4  body_len    u32 LE, at most 64 MiB
//!      8     4  body_crc    CRC-32 (IEEE, as zlib's crc32) of the body
//!     12     4  header_crc  CRC-32 of bytes 0..12
//!     16     n  body        postcard encoding of Record (below)
//! ```
//!
//! The body is `Record { seq: u64, op: Op }` in
//! [postcard](https://postcard.jamesmunns.com/wire-format) encoding
//! (integers and lengths as LEB128 varints, enums as a varint variant
//! index, strings and bytes as length + raw bytes):
//!
//! ```text
//! Op     = One(Change) | Batch(Vec<Change>)        variant 0 | 1
//! Change = Set { bucket: str, key: str, value: bytes }      0
//!        | Delete { bucket: str, key: str }                 1
//! ```
//!
//! so `set("b", "k", "v")` as record 7 is
//! `C7 01 0000 09000000 <crc> <crc> | 07 00 00 01 62 01 6B 01 76`.
//! Batches never nest, so decoding any input needs bounded stack. The
//! [`format`](mod@format) module implements all of this with `core` and
//! `alloc` only.
//!
//! `seq` grows by one with every record. When two records set or delete
//! the same key, the one with the higher `seq` wins, whatever the order the
//! files are read in (changes within one record apply in order); this is
//! what makes an interrupted compaction harmless.
//!
//! # Recovery on open
//!
//! Leftover `*.log.tmp` files are deleted. Every segment is read in number
//! order (one whole segment in memory at a time) and scanned:
//!
//! - A record is valid when its header CRC, body CRC and decoding all
//!   check. A genuine header (header CRC matches) makes its length
//!   trusted: the scanner never looks for records inside it.
//! - Damage at the **end of the last segment** (a record cut short, or a
//!   bad one with nothing valid after it) is a torn write: it is cut away
//!   (the file truncated and fsynced) with a `tracing::warn!` naming the
//!   file and offset, and counted in [`OpenReport::truncated_tail_bytes`].
//! - Damage **followed by valid records** (or at the end of a segment that
//!   is not the last) is reported with `tracing::error!` and in
//!   [`OpenReport::corrupt_ranges`] (file, offset, length); the scanner
//!   resumes at the next genuine header (after a bad record with a genuine
//!   header: at its trusted end) and every valid record after it is
//!   recovered. The bytes stay on disk until compaction drops them.
//! - A genuine header of another format version (or with flags set) stops
//!   the open with [`Error::UnsupportedFormat`]: a newer store is never
//!   "repaired" by an older build.
//!
//! No input makes opening panic (fuzzed: `fuzz/`, target `open_store`).
//!
//! # Durability
//!
//! A write call returns after its record has been written to the segment
//! file (`pwrite`). Then, by [`FsyncPolicy`]:
//!
//! - [`FsyncPolicy::Always`] (the default): the record is fsynced
//!   (`fdatasync`) before the call returns. Writers queued behind one
//!   another share one fsync (group commit): each hands the lock on and
//!   waits for the fsync the last of them does; no record is visible to a
//!   reader before its fsync (only to the writes sharing it, which stand
//!   or fall with it), and a failed one rolls the whole group back and
//!   fails every write in it. An acknowledged write survives
//!   a power cut; a write that returned an error is absent after reopening
//!   (unless the store turned read-only because even the rollback failed:
//!   then a record that reached the disk whole may reappear on reopen).
//! - [`FsyncPolicy::Batched`]: see its documentation for the exact window.
//!   Acknowledged writes survive a crash of the process at once, and a
//!   power cut once synced: within `max_delay_ms` of the oldest unsynced
//!   write, or when `max_bytes` are unsynced, or on [`Store::flush`],
//!   segment rotation, compaction or dropping the store.
//!
//! New segment files are created and their directory fsynced before
//! records go in. A batch is one record: after a crash it is there whole
//! or not at all.
//!
//! # Failures
//!
//! If an append fails part-way (ENOSPC: [`Error::DiskFull`]; anything
//! else: [`Error::Io`], both naming file and offset) or its fsync fails,
//! the segment is truncated back to the end of the last good record and
//! the error returned; the store is unchanged and usable. If even the
//! truncation fails (or, under `Batched`, an fsync fails, which may have
//! lost acknowledged writes), the store turns read-only
//! ([`Error::ReadOnly`] for writes; reads go on) until reopened, and the
//! reopen cuts the torn tail. The store is never left corrupt by a full
//! disk.
//!
//! # Limits
//!
//! [`Config::max_bytes`] bounds live data (sum of key and value lengths): a
//! write that would exceed it fails with [`Error::Full`] and changes
//! nothing. Keys, values, bucket names and batches have their own limits
//! ([`Config`]).
//!
//! # Compaction
//!
//! When dead bytes (superseded records) pass both
//! [`CompactionPolicy::min_dead_bytes`] and
//! [`CompactionPolicy::min_dead_percent`] of the files, the write that
//! sees it wakes the store's compactor thread (`twig-kv-compact`) and
//! returns. Under the lock, briefly, the compactor seals the active
//! segment (writes go on in a fresh one, numbered with a gap below it for
//! the outputs) and notes every live key's location. Off the lock it
//! copies each of those values, with its `seq`, into new segments numbered
//! in the gap, each written under a `.log.tmp` name and fsynced; renames
//! them into place and fsyncs the directory (from here on they are part of
//! the store). Under the lock again it points the keys not written since
//! at the copies and drops the sealed segments from the store, then, off
//! the lock, deletes their files oldest first, the directory fsynced after
//! each (a read already under way has its file open). [`Store::compact`]
//! does the same in one go under the lock (the outputs numbered after all
//! existing segments, the last becoming the active one), after waiting
//! for a background compaction under way. A crash at any point leaves a
//! store that opens to the same contents: before the renames, the
//! temporary files are deleted and the old segments are intact; after,
//! old and new records are resolved by `seq` (deleting oldest first means
//! a delete's record is never gone while an older set of that key
//! remains; writes made during a background compaction are in segments it
//! never touches, with higher `seq`s). A failed compaction removes its
//! outputs and leaves the store as it was. Compaction needs free space
//! for one copy of the live data.
//!
//! # Memory
//!
//! Values stay on disk: the index holds, per key, the key and a 32-byte
//! location. Every `get` reads the value's record and checks its CRC, so
//! flash bit rot is reported ([`Error::Corrupt`]), never returned.
#![forbid(unsafe_code)]
extern crate alloc;

#[cfg(feature = "component")]
pub mod component;
pub mod config;
mod error;
mod fair;
pub mod format;
mod io;
mod store;
pub mod watch;

pub use config::{CompactionPolicy, Config, FsyncPolicy, MAX_BUCKET_NAME_BYTES};
pub use error::{Error, Result};
pub use store::{
    Bucket, BucketStats, CompactionStats, CorruptRange, KeyPage, OpenReport, Stats, Store,
};

#[cfg(test)]
mod fault_tests;
#[cfg(test)]
extern crate self as twig_keyvalue;
#[cfg(test)]
#[path = "../tests/common/mod.rs"]
mod testutil;
