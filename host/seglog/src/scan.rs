//! The recovery scanner: walks a segment's bytes record by record, reports
//! intact records, steps over damage without ever looking inside a record
//! whose header is genuine, and tells a torn tail (damage running to the
//! end) from damage followed by intact records.
//!
//! Rules, for the position `p` of a record that is not intact:
//! - a genuine header (header CRC matches) whose record runs past the end:
//!   everything from `p` is an [`Event::Tail`] (a torn write);
//! - a genuine header but a bad body (CRC, decoding, or in an ordered scan
//!   a seq not above the previous record's): the length is trusted, so
//!   scanning resumes at the record's end, never inside it;
//! - no genuine header: scanning resumes at `p + 1`.
//!
//! A resumed scan looks for the next genuine header whose record is intact
//! (stepping over bad records with genuine headers by their length, so
//! each byte is examined a bounded number of times). If there is one, the
//! bytes before it are [`Event::Corrupt`]; if not, they are a tail. A
//! genuine header of another version or with flags set either stops the
//! scan ([`OnUnsupported::Stop`]) or is damage like any other
//! ([`OnUnsupported::Skip`]); which is the log's choice.

use crate::frame::{Frame, FrameError};

/// What a genuine header of a format this build does not read means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnUnsupported {
    /// The scan reports [`Event::Unsupported`] and stops: the log was
    /// written by a newer build and must not be "repaired" by this one.
    Stop,
    /// It is damage, stepped over byte by byte.
    Skip,
}

/// A log's record type: its frame and how a body decodes.
pub trait Codec {
    /// A decoded record, borrowing from the scanned bytes.
    type Record<'a>;
    const FRAME: Frame;
    const ON_UNSUPPORTED: OnUnsupported;
    /// Decodes a body that passed its CRC; `None` if it does not decode
    /// exactly (bytes left over count as not decoding).
    fn decode(body: &[u8]) -> Option<Self::Record<'_>>;
    /// The record's sequence number, for ordered scans ([`Order`]).
    fn seq(record: &Self::Record<'_>) -> u64;
}

/// Whether records must come in increasing seq order to count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// Any intact record counts.
    Any,
    /// A record counts only if its seq is above `after` and above the
    /// previous record's: stale or misplaced bytes that happen to be well
    /// formed (a message that is itself a record) are damage.
    Increasing { after: u64 },
}

/// Reads the record at the start of `buf`: it and its length (header
/// included). Never panics, whatever the input.
pub fn parse<C: Codec>(buf: &[u8]) -> Result<(C::Record<'_>, usize), FrameError> {
    let (body, len) = C::FRAME.open(buf)?;
    match C::decode(body) {
        Some(r) => Ok((r, len)),
        None => Err(FrameError::BadBody { len }),
    }
}

/// The first position `>= from` in `buf` where a record that the scan
/// would accept (or, under [`OnUnsupported::Stop`], an unsupported one)
/// starts: where reading resumes after damage.
pub fn find_next<C: Codec>(buf: &[u8], from: usize, order: Order) -> Option<usize> {
    let mut s = Scanner::<C>::with_order(buf, order);
    s.resync(from)
}

/// What the scanner found, in file order. Offsets and lengths are in bytes
/// from the start of the scanned buffer; the events tile it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<R> {
    Record {
        offset: usize,
        len: usize,
        record: R,
    },
    /// Damaged bytes followed by an intact record (or an unsupported one).
    Corrupt { offset: usize, len: usize },
    /// Damaged or incomplete bytes running to the end of the buffer.
    Tail { offset: usize, len: usize },
    /// A genuine header of a format this build cannot read; scanning stops
    /// (only under [`OnUnsupported::Stop`]).
    Unsupported {
        offset: usize,
        version: u8,
        flags: u16,
    },
}

/// Walks a segment's bytes; see the module documentation for the rules.
pub struct Scanner<'a, C: Codec> {
    buf: &'a [u8],
    pos: usize,
    done: bool,
    /// The last accepted seq, in an ordered scan.
    last: Option<u64>,
    _codec: core::marker::PhantomData<C>,
}

impl<'a, C: Codec> Scanner<'a, C> {
    /// A scan in which any intact record counts.
    pub fn new(buf: &'a [u8]) -> Self {
        Self::with_order(buf, Order::Any)
    }

    pub fn with_order(buf: &'a [u8], order: Order) -> Self {
        Scanner {
            buf,
            pos: 0,
            done: false,
            last: match order {
                Order::Any => None,
                Order::Increasing { after } => Some(after),
            },
            _codec: core::marker::PhantomData,
        }
    }

    /// Where the next event starts (the end of the last intact record,
    /// once the scan is over and ended without a tail).
    pub fn position(&self) -> usize {
        self.pos
    }

    fn accepts(&self, r: &C::Record<'_>) -> bool {
        self.last.is_none_or(|l| C::seq(r) > l)
    }

    /// First position `>= from` holding a genuine header.
    fn next_header(&self, from: usize) -> Option<usize> {
        let magic = C::FRAME.magic;
        let mut q = from;
        while q < self.buf.len() {
            q += self.buf[q..].iter().position(|&b| b == magic)?;
            match C::FRAME.read_header(&self.buf[q..]) {
                Ok(_) => return Some(q),
                Err(e) if e.genuine_header() => return Some(q),
                Err(FrameError::Short) => return None,
                Err(_) => q += 1,
            }
        }
        None
    }

    fn resync(&mut self, mut from: usize) -> Option<usize> {
        loop {
            let q = self.next_header(from)?;
            match parse::<C>(&self.buf[q..]) {
                Ok((r, _)) if self.accepts(&r) => return Some(q),
                Ok((_, len)) => from = q + len,
                Err(FrameError::Unsupported { .. }) => match C::ON_UNSUPPORTED {
                    OnUnsupported::Stop => return Some(q),
                    OnUnsupported::Skip => from = q + 1,
                },
                Err(FrameError::Truncated { .. }) => return None,
                Err(e) => from = q + e.trusted_len().unwrap_or(1),
            }
        }
    }

    fn damaged(&mut self, from: usize, resume: usize) -> Event<C::Record<'a>> {
        let resumed = if resume >= self.buf.len() {
            None
        } else {
            self.resync(resume)
        };
        match resumed {
            Some(q) => {
                self.pos = q;
                Event::Corrupt {
                    offset: from,
                    len: q - from,
                }
            }
            None => self.tail(from),
        }
    }

    fn tail(&mut self, from: usize) -> Event<C::Record<'a>> {
        self.done = true;
        Event::Tail {
            offset: from,
            len: self.buf.len() - from,
        }
    }
}

impl<'a, C: Codec> Iterator for Scanner<'a, C> {
    type Item = Event<C::Record<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.buf.len() {
            return None;
        }
        let p = self.pos;
        let buf: &'a [u8] = self.buf;
        let ev = match parse::<C>(&buf[p..]) {
            Ok((record, len)) if self.accepts(&record) => {
                self.pos = p + len;
                if self.last.is_some() {
                    self.last = Some(C::seq(&record));
                }
                Event::Record {
                    offset: p,
                    len,
                    record,
                }
            }
            Ok((_, len)) => self.damaged(p, p + len),
            Err(FrameError::Unsupported { version, flags, .. })
                if C::ON_UNSUPPORTED == OnUnsupported::Stop =>
            {
                self.done = true;
                Event::Unsupported {
                    offset: p,
                    version,
                    flags,
                }
            }
            Err(FrameError::Truncated { .. }) => self.tail(p),
            Err(e) => self.damaged(p, p + e.trusted_len().unwrap_or(1)),
        };
        Some(ev)
    }
}

/// A codec for tests and the fuzz target: the body is a seq (u64 LE) and
/// any bytes after it.
#[doc(hidden)]
pub mod test_codec {
    use super::*;

    pub struct Seq<const STOP: bool>;

    impl<const STOP: bool> Codec for Seq<STOP> {
        type Record<'a> = (u64, &'a [u8]);
        const FRAME: Frame = Frame {
            magic: 0xC7,
            version: 1,
            max_body_len: 1 << 16,
        };
        const ON_UNSUPPORTED: OnUnsupported = if STOP {
            OnUnsupported::Stop
        } else {
            OnUnsupported::Skip
        };

        fn decode(body: &[u8]) -> Option<(u64, &[u8])> {
            let (seq, rest) = body.split_first_chunk::<8>()?;
            Some((u64::from_le_bytes(*seq), rest))
        }

        fn seq(r: &(u64, &[u8])) -> u64 {
            r.0
        }
    }

    /// One framed record.
    pub fn record(seq: u64, payload: &[u8], out: &mut alloc::vec::Vec<u8>) {
        let _ = <Seq<true> as Codec>::FRAME.encode(out, |o| {
            o.extend_from_slice(&seq.to_le_bytes());
            o.extend_from_slice(payload);
            Ok::<(), ()>(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::test_codec::{record, Seq};
    use super::*;
    use alloc::vec::Vec;

    type Stop = Seq<true>;
    type Skip = Seq<false>;

    fn log(seqs: &[u64], payload: &[u8]) -> (Vec<u8>, Vec<usize>) {
        let mut v = Vec::new();
        let mut starts = Vec::new();
        for &s in seqs {
            starts.push(v.len());
            record(s, payload, &mut v);
        }
        (v, starts)
    }

    fn seqs<C: for<'a> Codec<Record<'a> = (u64, &'a [u8])>>(
        s: Scanner<'_, C>,
    ) -> (Vec<u64>, Vec<Event<()>>) {
        let mut recs = Vec::new();
        let mut other = Vec::new();
        for e in s {
            match e {
                Event::Record { record, .. } => recs.push(record.0),
                Event::Corrupt { offset, len } => other.push(Event::Corrupt { offset, len }),
                Event::Tail { offset, len } => other.push(Event::Tail { offset, len }),
                Event::Unsupported {
                    offset,
                    version,
                    flags,
                } => other.push(Event::Unsupported {
                    offset,
                    version,
                    flags,
                }),
            }
        }
        (recs, other)
    }

    #[test]
    fn every_cut_of_the_last_record_is_a_tail() {
        let (b, starts) = log(&[1, 2], &[0xC7; 40]);
        for cut in starts[1] + 1..b.len() {
            let (r, other) = seqs(Scanner::<Stop>::new(&b[..cut]));
            assert_eq!(r, [1], "cut {cut}");
            assert_eq!(
                other,
                [Event::Tail {
                    offset: starts[1],
                    len: cut - starts[1]
                }]
            );
        }
    }

    #[test]
    fn damage_in_the_middle_is_stepped_over() {
        let (b, starts) = log(&[1, 2, 3, 4], b"payload bytes");
        for i in starts[1]..starts[2] {
            let mut x = b.clone();
            x[i] ^= 0x5A;
            let (r, other) = seqs(Scanner::<Stop>::new(&x));
            assert_eq!(r, [1, 3, 4], "flip at {i}");
            assert_eq!(
                other,
                [Event::Corrupt {
                    offset: starts[1],
                    len: starts[2] - starts[1]
                }]
            );
        }
    }

    #[test]
    fn an_ordered_scan_treats_stale_records_as_damage() {
        let (b, starts) = log(&[5, 6, 3, 7], b"p");
        let (r, other) = seqs(Scanner::<Stop>::with_order(
            &b,
            Order::Increasing { after: 4 },
        ));
        assert_eq!(r, [5, 6, 7]);
        assert_eq!(
            other,
            [Event::Corrupt {
                offset: starts[2],
                len: starts[3] - starts[2]
            }]
        );
        let (r, _) = seqs(Scanner::<Stop>::with_order(
            &b,
            Order::Increasing { after: 6 },
        ));
        assert_eq!(r, [7]);
        assert_eq!(
            find_next::<Stop>(&b, 1, Order::Increasing { after: 6 }),
            Some(starts[3])
        );
        assert_eq!(
            find_next::<Stop>(&b, 0, Order::Increasing { after: 7 }),
            None
        );
        assert_eq!(find_next::<Stop>(&b, 0, Order::Any), Some(0));
    }

    #[test]
    fn a_record_inside_a_torn_one_is_never_replayed() {
        let mut inner = Vec::new();
        record(99, b"forged", &mut inner);
        let mut payload = alloc::vec![0u8; 10];
        payload.extend_from_slice(&inner);
        payload.extend_from_slice(&[0u8; 30]);
        let (b, _) = log(&[1], &payload);
        for cut in 1..b.len() {
            let (r, _) = seqs(Scanner::<Skip>::new(&b[..cut]));
            assert!(r.is_empty(), "cut {cut}: {r:?}");
        }
    }

    #[test]
    fn unsupported_headers_stop_or_are_skipped() {
        let (mut b, starts) = log(&[1, 2], b"x");
        b[starts[1] + 1] = 9;
        let c = crc32fast::hash(&b[starts[1]..starts[1] + 12]);
        b[starts[1] + 12..starts[1] + 16].copy_from_slice(&c.to_le_bytes());
        let (r, other) = seqs(Scanner::<Stop>::new(&b));
        assert_eq!(r, [1]);
        assert_eq!(
            other,
            [Event::Unsupported {
                offset: starts[1],
                version: 9,
                flags: 0
            }]
        );
        let (r, other) = seqs(Scanner::<Skip>::new(&b));
        assert_eq!(r, [1]);
        assert_eq!(
            other,
            [Event::Tail {
                offset: starts[1],
                len: b.len() - starts[1]
            }]
        );
    }

    #[test]
    fn random_bytes_never_panic_and_events_tile_the_buffer() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let (base, _) = log(&(1..20).collect::<Vec<_>>(), &[7; 20]);
        for case in 0..2000 {
            let mut b = base.clone();
            for _ in 0..(next() % 8) {
                let i = (next() as usize) % b.len();
                b[i] ^= (next() as u8) | 1;
            }
            b.truncate((next() as usize) % (b.len() + 1));
            let order = if case % 2 == 0 {
                Order::Any
            } else {
                Order::Increasing { after: 0 }
            };
            let mut covered = 0;
            for e in Scanner::<Stop>::with_order(&b, order) {
                let (off, len) = match e {
                    Event::Record { offset, len, .. }
                    | Event::Corrupt { offset, len }
                    | Event::Tail { offset, len } => (offset, len),
                    Event::Unsupported { offset, .. } => (offset, b.len() - offset),
                };
                assert_eq!(off, covered);
                covered += len;
            }
            assert_eq!(covered, b.len());
        }
    }
}
