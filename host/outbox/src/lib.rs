//! twig's outbox: a durable, bounded, on-disk queue for the messages a
//! device publishes upstream (to NATS), kept while the uplink is down for
//! hours and across `kill -9` and power cuts.
//!
//! Messages are appended to a *class* ([`ClassConfig`]: a FIFO queue with
//! a priority, an optional TTL and a [`DropPolicy`] for when the outbox is
//! full). A sender (the host's async NATS code; this crate is runtime-free
//! and std-only) loops: [`Outbox::next_batch`], publish, [`Outbox::ack`].
//! A record whose `append` returned `Ok` is delivered (at least once, with
//! a stable [`Outbox::msg_id`] for the server to drop duplicates) unless
//! the drop policy or its TTL discards it, and both are counted
//! ([`Outbox::stats`]).
//!
//! # Directory layout
//!
//! ```text
//! DIR/
//!   LOCK                  flock()ed while an Outbox has the directory open
//!   ID                    the outbox's random id: 16 hex digits and "\n"
//!   {class}/              one directory per class, named after it
//!     cursor              last acknowledged seq (16 bytes, below)
//!     00000000000000000001.seg   segments, named by the seq they start
//!     00000000000000000734.seg   at (20 digits); the newest is appended to
//!     cursor.tmp          only while the cursor is being replaced
//! ```
//!
//! # Record format
//!
//! A segment is a sequence of records, each a 16-byte header and a body:
//!
//! ```text
//! offset  size  field
//!      0     1  magic       0xB7
//!      1     1  version     1
//!      2     2  flags       0 (u16 LE; reserved)
//!      4     4  body_len    u32 LE, at most 16 MiB
//!      8     4  body_crc    CRC-32 (IEEE, as zlib's crc32) of the body
//!     12     4  header_crc  CRC-32 of bytes 0..12
//!     16     n  body
//! ```
//!
//! The body is, in [postcard](https://postcard.jamesmunns.com/wire-format)
//! encoding (integers and lengths as LEB128 varints, strings and bytes as
//! length + raw bytes, a sequence as its length then its elements):
//!
//! ```text
//! seq: u64, created_ms: u64, subject: str, headers: [(str, str)], body: bytes
//! ```
//!
//! so seq 7 created at 1000 ms, subject `a.b`, header `k: v`, body `xy` is
//! `B7 01 0000 0F000000 <crc> <crc> | 07 E807 03 612E62 01 01 6B 01 76 02 7879`.
//! The [`format`](mod@format) module implements this with `core` and
//! `alloc` only; [`format::decode_record`] never panics (fuzzed: `fuzz/`,
//! target `decode_record`).
//!
//! The `cursor` file is `"TOC1"`, the seq (u64 LE), and a CRC-32 of those
//! 12 bytes (u32 LE). It, and `ID`, are only ever replaced whole: written
//! to a temporary file, fsynced, renamed over the old one, and the
//! directory fsynced.
//!
//! `seq` is per class, starts at 1 and grows by one per append, forever:
//! it is never reused, even after every segment has been deleted, because
//! the cursor is persisted past any segment before that segment's file is
//! deleted (acknowledged, dropped or expired), and opening resumes at
//! `max(last seq in the segments, cursor) + 1`.
//!
//! # Data flow
//!
//! [`Outbox::append`] encodes the record into a reused buffer and writes it
//! with one `pwrite` at the end of its class's active segment (sealing it
//! and starting a new one first if the record would take it past
//! `segment_bytes`). Under [`SyncPolicy::Always`] it then waits for an
//! fsync covering it, shared with concurrent appenders (group commit);
//! under [`SyncPolicy::Interval`] a background thread fsyncs periodically.
//! Then the waker ([`Outbox::set_waker`]) is called.
//!
//! The classes' state is behind one lock held only for memory updates and
//! `pwrite`/`pread`: segment creation (file and directory fsync), cursor
//! writes and segment deletion run with it released (appends to one class
//! are serialised by that class's own lock, cursor writes by the cursor
//! file's), and [`Outbox::stats`] reads per-class counters published as
//! atomics, so it never waits on a writer or a slow disk.
//!
//! [`Outbox::next_batch`] picks the highest-priority class with pending
//! records and reads them from disk from the class's read position (a
//! segment and offset, remembered between calls, so a backlog of millions
//! costs neither memory nor rescans). Records stay pending until
//! [`Outbox::ack`] moves the class's cursor past them; then segment files
//! wholly below the cursor are deleted. Memory per class is a few words
//! per segment file, never per record.
//!
//! # Size cap and drop policy
//!
//! The segment files together never exceed [`OutboxConfig::max_bytes`].
//! An append that would pass it first deletes whole oldest segments whose
//! records are all past their TTL (counted as `expired`); then, if the
//! appending class is [`DropPolicy::RejectNew`], fails with
//! [`OutboxError::Full`] (counted in `rejected_full`). Otherwise it deletes
//! the oldest segment of the lowest-priority class with
//! [`DropPolicy::DropOldest`] (ties: the highest class index), counting its
//! unsent records in that class's `dropped_full`, until the record fits;
//! with nothing left to drop it fails with `Full`. The cursor is moved
//! (and persisted) past a dropped segment before its file is deleted, so
//! dropped records never come back.
//!
//! # Recovery on open
//!
//! The `LOCK` file is `flock`ed (a second open fails with
//! [`OutboxError::Locked`]). `ID.tmp` is removed; `ID` is read, or created
//! on first open. In each class directory:
//!
//! - files that are not segments or the cursor (a leftover `cursor.tmp`:
//!   a cursor write that crashed before its rename, so the old cursor is
//!   current) are removed;
//! - a `cursor` that fails its check is logged as an error and taken as 0:
//!   every record still present is delivered again (at-least-once);
//! - segments are scanned in seq order. A record is intact when its header
//!   CRC, body CRC and decoding check and its seq is above the previous
//!   record's. Damage at the **end of the newest segment** (a record cut
//!   short or garbage after the last good one) is a torn write: the file
//!   is truncated there and fsynced, with a warning naming file and
//!   offset. Damage **followed by intact records** is stepped over (the
//!   scan resumes at the next intact record, never inside a record whose
//!   header is genuine) and damage at the end of an older segment ends
//!   that segment's records; both are logged with the file and counted
//!   once per region in `corrupt_skipped`, and the bytes stay until the
//!   segment is deleted;
//! - segments with no intact records, or wholly at or below the cursor (a
//!   crash between persisting the cursor and deleting them), are deleted.
//!
//! No file contents make opening panic (fuzzed: target `open_dir`).
//!
//! # Durability
//!
//! New segment files are created and their directory fsynced before
//! records go in. A failed write is cut back (the file truncated to its
//! previous length) and reported as [`OutboxError::Io`] naming the file;
//! the outbox stays usable. Under [`SyncPolicy::Always`] a record whose
//! append returned `Ok` survives a power cut; under
//! [`SyncPolicy::Interval`] up to one interval of records may be lost to a
//! power cut (not to a killed process).
#![forbid(unsafe_code)]
extern crate alloc;

mod class;
mod config;
mod error;
pub mod format;
mod outbox;
mod segment;

pub use config::{
    valid_class_name, ClassConfig, Clock, DropPolicy, OutboxConfig, SyncPolicy, DEFAULT_MAX_BYTES,
    DEFAULT_SEGMENT_BYTES, MAX_CLASS_NAME, MIN_MAX_BYTES, MIN_SEGMENT_BYTES,
};
pub use error::OutboxError;
pub use format::decode_record;
pub use outbox::{ClassId, ClassStats, Outbox, OutboxStats, Record, ID_FILE};
