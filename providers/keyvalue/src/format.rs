//! The on-disk record format: the body codec, and this format's frame
//! (magic, version, limit) for twig-seglog's framing and recovery scanner.
//!
//! This module does no I/O: the frame and scanner it uses from
//! twig-seglog do none either, and the body codec is `postcard` over
//! `core` and `alloc`. The layout is described in the crate documentation.

use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};
use twig_seglog::{
    self as seglog, Codec, Frame, FrameError, OnUnsupported, HEADER_LEN as FRAME_HEADER_LEN,
};

/// First byte of every record.
pub const MAGIC: u8 = 0xC7;
/// The record format this build writes and reads.
pub const VERSION: u8 = 1;
/// Bytes before the body: magic, version, flags, body length, body CRC,
/// header CRC.
pub const HEADER_LEN: usize = FRAME_HEADER_LEN;
/// Largest body a record may have. A header claiming more is not one this
/// build wrote.
pub const MAX_BODY_LEN: usize = 64 << 20;

/// One record: a sequence number (strictly increasing over the life of the
/// store; it decides which of two records for a key is newer) and what it
/// does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record<'a> {
    pub seq: u64,
    #[serde(borrow)]
    pub op: Op<'a>,
}

/// A single change or a batch of them. A batch is one record, so it is
/// applied completely or not at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op<'a> {
    One(#[serde(borrow)] Change<'a>),
    Batch(#[serde(borrow)] Vec<Change<'a>>),
}

/// A change to one key. Batches hold only these, never nested batches, so
/// decoding any bytes needs bounded stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change<'a> {
    Set {
        bucket: &'a str,
        key: &'a str,
        #[serde(borrow, with = "raw_bytes")]
        value: &'a [u8],
    },
    Delete {
        bucket: &'a str,
        key: &'a str,
    },
}

impl<'a> Change<'a> {
    pub fn bucket(&self) -> &'a str {
        match *self {
            Change::Set { bucket, .. } | Change::Delete { bucket, .. } => bucket,
        }
    }

    pub fn key(&self) -> &'a str {
        match *self {
            Change::Set { key, .. } | Change::Delete { key, .. } => key,
        }
    }
}

impl<'a> Op<'a> {
    /// The changes, in the order they apply.
    pub fn changes(&self) -> &[Change<'a>] {
        match self {
            Op::One(c) => core::slice::from_ref(c),
            Op::Batch(v) => v,
        }
    }
}

/// `&[u8]` as postcard bytes (length + raw bytes, written in one go rather
/// than byte by byte as serde's default sequence would).
mod raw_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &&[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de: 'a, 'a, D: Deserializer<'de>>(d: D) -> Result<&'a [u8], D::Error> {
        <&'a [u8]>::deserialize(d)
    }
}

/// Why a record could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EncodeError {
    /// The body would exceed [`MAX_BODY_LEN`].
    TooLarge { body_len: usize },
    /// postcard refused (cannot happen for these types; kept rather than
    /// unwrapped).
    Codec,
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::TooLarge { body_len } => write!(
                f,
                "record body of {body_len} bytes exceeds the format's limit of {MAX_BODY_LEN}"
            ),
            EncodeError::Codec => f.write_str("record could not be encoded"),
        }
    }
}

/// Lets postcard append straight into a caller's vector.
struct Appender<'v>(&'v mut Vec<u8>);

impl Extend<u8> for Appender<'_> {
    fn extend<I: IntoIterator<Item = u8>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

/// This format's frame (the header layout itself is twig-seglog's).
pub const FRAME: Frame = Frame {
    magic: MAGIC,
    version: VERSION,
    max_body_len: MAX_BODY_LEN,
};

/// The store's records for twig-seglog's scanner. A genuine header of
/// another version stops the scan: a newer store is never "repaired" by an
/// older build.
pub struct KvCodec;

impl Codec for KvCodec {
    type Record<'a> = Record<'a>;
    const FRAME: Frame = FRAME;
    const ON_UNSUPPORTED: OnUnsupported = OnUnsupported::Stop;

    fn decode(body: &[u8]) -> Option<Record<'_>> {
        match postcard::take_from_bytes::<Record<'_>>(body) {
            Ok((record, [])) => Some(record),
            _ => None,
        }
    }

    fn seq(record: &Record<'_>) -> u64 {
        record.seq
    }
}

/// Appends `record`, framed, to `out`. On error `out` is left as it was.
pub fn encode(record: &Record<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    FRAME
        .encode(out, |o| postcard::to_extend(record, Appender(o)).map(drop))
        .map_err(|e| match e {
            seglog::EncodeError::TooLarge { body_len } => EncodeError::TooLarge { body_len },
            seglog::EncodeError::Body => EncodeError::Codec,
        })
}

/// Length of the LEB128 varint postcard writes for `n`.
pub fn varint_len(n: u64) -> usize {
    let bits = 64 - n.leading_zeros() as usize;
    bits.div_ceil(7).max(1)
}

/// Exact framed size of `Record { seq, op: Op::One(Change::Set { .. }) }`
/// with these lengths: what a key costs on disk after compaction.
pub fn set_record_len(seq: u64, bucket_len: usize, key_len: usize, value_len: usize) -> usize {
    HEADER_LEN
        + varint_len(seq)
        + 1 // Op::One
        + 1 // Change::Set
        + varint_len(bucket_len as u64)
        + bucket_len
        + varint_len(key_len as u64)
        + key_len
        + varint_len(value_len as u64)
        + value_len
}

/// What the header at the start of a buffer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    /// Fewer than [`HEADER_LEN`] bytes.
    Short,
    /// Wrong magic or a header CRC mismatch: not a record boundary.
    Bad,
    /// A genuine header (its CRC matches) of a format this build does not
    /// read.
    Unsupported {
        version: u8,
        flags: u16,
        body_len: u32,
    },
    /// A genuine version-1 header.
    Good { body_len: usize, body_crc: u32 },
}

/// Checks the header at the start of `buf`.
pub fn read_header(buf: &[u8]) -> Header {
    match FRAME.read_header(buf) {
        Ok(h) => Header::Good {
            body_len: h.body_len,
            body_crc: h.body_crc,
        },
        Err(FrameError::Unsupported {
            version,
            flags,
            body_len,
        }) => Header::Unsupported {
            version,
            flags,
            body_len,
        },
        Err(FrameError::Short) => Header::Short,
        Err(_) => Header::Bad,
    }
}

/// The result of reading one record at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed<'a> {
    /// A whole, intact record of `len` bytes (header included).
    Valid { len: usize, record: Record<'a> },
    /// Fewer bytes than a header left.
    Short,
    /// No genuine header here.
    BadHeader,
    /// A genuine header of another format version.
    Unsupported { version: u8, flags: u16 },
    /// A genuine header whose record runs past the end of the buffer.
    Truncated,
    /// A genuine header, but the body fails its CRC or does not decode;
    /// the record would end at `end` (relative to the parse position).
    BadBody { end: usize },
}

/// Reads the record at the start of `buf`.
pub fn parse(buf: &[u8]) -> Parsed<'_> {
    match seglog::parse::<KvCodec>(buf) {
        Ok((record, len)) => Parsed::Valid { len, record },
        Err(FrameError::Short) => Parsed::Short,
        Err(FrameError::BadMagic | FrameError::BadHeaderCrc) => Parsed::BadHeader,
        Err(FrameError::Unsupported { version, flags, .. }) => {
            Parsed::Unsupported { version, flags }
        }
        Err(FrameError::Truncated { .. }) => Parsed::Truncated,
        Err(FrameError::BadBodyCrc { len } | FrameError::BadBody { len }) => {
            Parsed::BadBody { end: len }
        }
    }
}

/// Checks that `buf` is exactly one intact record (header and body CRC)
/// without decoding it; returns why not.
pub fn verify(buf: &[u8]) -> Result<(), &'static str> {
    match FRAME.verify(buf) {
        Ok(true) => Ok(()),
        Ok(false) => Err("record length does not match the index"),
        Err(FrameError::Short) => Err("record is shorter than a header"),
        Err(FrameError::BadMagic | FrameError::BadHeaderCrc) => Err("header checksum mismatch"),
        Err(FrameError::Unsupported { .. }) => Err("unsupported record format"),
        Err(_) => Err("body checksum mismatch"),
    }
}

/// Offset of `inner` (a slice borrowed from `outer`) within `outer`.
pub fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    (inner.as_ptr() as usize).wrapping_sub(outer.as_ptr() as usize)
}

/// What the scanner found, in file order (twig-seglog's events with this
/// format's records).
pub type Event<'a> = seglog::Event<Record<'a>>;

/// Walks a segment's bytes record by record, resynchronising after damage:
/// twig-seglog's scanner (its rules are documented there) over this
/// format, in which any intact record counts whatever its seq (compaction
/// writes records out of seq order) and an unsupported version stops.
pub type Scanner<'a> = seglog::Scanner<'a, KvCodec>;

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn set<'a>(seq: u64, bucket: &'a str, key: &'a str, value: &'a [u8]) -> Record<'a> {
        Record {
            seq,
            op: Op::One(Change::Set { bucket, key, value }),
        }
    }

    fn enc(r: &Record<'_>) -> Vec<u8> {
        let mut v = Vec::new();
        encode(r, &mut v).expect("encode");
        v
    }

    #[test]
    fn header_layout_is_as_documented() {
        let b = enc(&set(7, "b", "k", b"v"));
        assert_eq!(b[0], MAGIC);
        assert_eq!(b[1], VERSION);
        assert_eq!(&b[2..4], &[0, 0]);
        let body_len = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize;
        assert_eq!(body_len, b.len() - HEADER_LEN);
        assert_eq!(
            u32::from_le_bytes([b[8], b[9], b[10], b[11]]),
            crc32fast::hash(&b[HEADER_LEN..])
        );
        assert_eq!(
            u32::from_le_bytes([b[12], b[13], b[14], b[15]]),
            crc32fast::hash(&b[..12])
        );
        // Body: seq varint, Op::One, Change::Set, then length-prefixed
        // bucket, key and value.
        assert_eq!(&b[HEADER_LEN..], &[7, 0, 0, 1, b'b', 1, b'k', 1, b'v']);
    }

    #[test]
    fn round_trip_and_value_offset() {
        let batch = Record {
            seq: 300,
            op: Op::Batch(vec![
                Change::Set {
                    bucket: "a",
                    key: "x",
                    value: &[0, 1, 2, 0xC7],
                },
                Change::Delete {
                    bucket: "a",
                    key: "y",
                },
                Change::Set {
                    bucket: "ü",
                    key: "",
                    value: &[],
                },
            ]),
        };
        let bytes = enc(&batch);
        let Parsed::Valid { len, record } = parse(&bytes) else {
            panic!("not valid")
        };
        assert_eq!(len, bytes.len());
        assert_eq!(record, batch);
        if let Change::Set { value, .. } = record.op.changes()[0] {
            let off = offset_in(&bytes, value);
            assert_eq!(&bytes[off..off + 4], &[0, 1, 2, 0xC7]);
        } else {
            panic!("first change is not a set");
        }
        assert_eq!(verify(&bytes), Ok(()));
    }

    #[test]
    fn set_record_len_is_exact() {
        for (seq, b, k, v) in [
            (0u64, 0usize, 0usize, 0usize),
            (127, 1, 127, 128),
            (128, 300, 5, 16_383),
            (u64::MAX, 2, 20_000, 70_000),
        ] {
            let bucket = "b".repeat(b);
            let key = "k".repeat(k);
            let value = vec![9u8; v];
            assert_eq!(
                enc(&set(seq, &bucket, &key, &value)).len(),
                set_record_len(seq, b, k, v),
                "seq {seq} b {b} k {k} v {v}"
            );
        }
    }

    #[test]
    fn every_cut_of_the_last_record_is_a_tail() {
        let mut log = enc(&set(1, "b", "k1", b"one"));
        let first = log.len();
        log.extend(enc(&set(2, "b", "k2", &[0xC7; 40])));
        for cut in first..log.len() {
            let events: Vec<_> = Scanner::new(&log[..cut]).collect();
            assert!(matches!(events[0], Event::Record { offset: 0, .. }));
            if cut == first {
                assert_eq!(events.len(), 1);
            } else {
                assert_eq!(
                    events[1],
                    Event::Tail {
                        offset: first,
                        len: cut - first
                    },
                    "cut at {cut}"
                );
                assert_eq!(events.len(), 2);
            }
        }
    }

    #[test]
    fn damage_in_the_middle_is_skipped_and_reported() {
        let recs: Vec<Vec<u8>> = (0..5u64)
            .map(|i| enc(&set(i, "b", "key", &[i as u8; 30])))
            .collect();
        let log: Vec<u8> = recs.concat();
        let start2 = recs[0].len() + recs[1].len();
        // Every byte of record 2, header or body, flipped in turn.
        for i in 0..recs[2].len() {
            let mut bad = log.clone();
            bad[start2 + i] ^= 0x5A;
            let events: Vec<_> = Scanner::new(&bad).collect();
            let seqs: Vec<u64> = events
                .iter()
                .filter_map(|e| match e {
                    Event::Record { record, .. } => Some(record.seq),
                    _ => None,
                })
                .collect();
            assert_eq!(seqs, [0, 1, 3, 4], "flip at {i}");
            assert!(events.contains(&Event::Corrupt {
                offset: start2,
                len: recs[2].len()
            }));
        }
    }

    #[test]
    fn an_embedded_record_inside_a_torn_value_is_not_replayed() {
        // A value that itself contains a valid record: when the record
        // holding it is torn, the genuine header's length is trusted and
        // the scan never looks inside.
        let fake = enc(&set(999, "other", "victim", b"forged"));
        let mut value = vec![0u8; 10];
        value.extend_from_slice(&fake);
        value.extend_from_slice(&[0u8; 50]);
        let log = enc(&set(1, "b", "k", &value));
        for cut in 1..log.len() {
            for e in Scanner::new(&log[..cut]) {
                assert!(!matches!(e, Event::Record { .. }), "cut {cut}: {e:?}");
            }
        }
    }

    #[test]
    fn unsupported_version_stops_the_scan() {
        let mut b = enc(&set(1, "b", "k", b"v"));
        b[1] = 2;
        let c = crc32fast::hash(&b[..12]);
        b[12..16].copy_from_slice(&c.to_le_bytes());
        let ev: Vec<_> = Scanner::new(&b).collect();
        assert_eq!(
            ev,
            [Event::Unsupported {
                offset: 0,
                version: 2,
                flags: 0
            }]
        );
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let base: Vec<u8> = (0..20u64)
            .flat_map(|i| enc(&set(i, "b", "k", &[i as u8; 20])))
            .collect();
        for case in 0..2000 {
            let buf: Vec<u8> = if case % 2 == 0 {
                let n = (next() % 600) as usize;
                (0..n)
                    .map(|_| {
                        let r = next() as u8;
                        if r < 40 {
                            MAGIC
                        } else {
                            r
                        }
                    })
                    .collect()
            } else {
                let mut b = base.clone();
                for _ in 0..(next() % 8) {
                    let i = (next() as usize) % b.len();
                    b[i] ^= (next() as u8) | 1;
                }
                let cut = (next() as usize) % (b.len() + 1);
                b.truncate(cut);
                b
            };
            let mut covered = 0;
            for e in Scanner::new(&buf) {
                let (off, len) = match e {
                    Event::Record { offset, len, .. }
                    | Event::Corrupt { offset, len }
                    | Event::Tail { offset, len } => (offset, len),
                    Event::Unsupported { offset, .. } => (offset, buf.len() - offset),
                };
                assert_eq!(off, covered, "events must tile the buffer");
                covered += len;
            }
            assert_eq!(covered, buf.len());
        }
    }
}
