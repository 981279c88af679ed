//! The on-disk record format: the body codec, and this format's frame
//! (magic, version, limit) for twig-seglog's framing, checksums and the
//! resynchronising search recovery uses to step over damage.
//!
//! This module does no I/O (nor do the frame and scanner it uses from
//! twig-seglog). The layout is described in the crate documentation.

use alloc::vec::Vec;
use core::fmt;

use serde::{Deserialize, Serialize};
use twig_seglog::{self as seglog, Codec, Frame, OnUnsupported, Order};

/// Why bytes are not one intact record (twig-seglog's frame errors, with
/// `BadBody` for a body that passes its CRC but does not decode).
pub use twig_seglog::FrameError as FormatError;

/// First byte of every record (different from twig-keyvalue's, so the two
/// kinds of segment are never mistaken for each other).
pub const MAGIC: u8 = 0xB7;
/// The record format this build writes and reads.
pub const VERSION: u8 = 1;
/// Bytes before the body: magic, version, flags, body length, body CRC,
/// header CRC.
pub const HEADER_LEN: usize = seglog::HEADER_LEN;
/// Largest body a record may have. A header claiming more is damage (or a
/// format this build does not know), never an allocation request.
pub const MAX_BODY_LEN: usize = 16 << 20;

/// One decoded record, borrowing its strings and bytes from the buffer it
/// was decoded from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decoded<'a> {
    /// Per-class sequence number, from 1, strictly increasing.
    pub seq: u64,
    /// When it was appended, in milliseconds since the Unix epoch (by the
    /// outbox's clock).
    pub created_ms: u64,
    #[serde(borrow)]
    pub subject: &'a str,
    #[serde(borrow)]
    pub headers: Vec<(&'a str, &'a str)>,
    #[serde(borrow, with = "raw_bytes")]
    pub body: &'a [u8],
}

/// What is encoded: the same fields as [`Decoded`] (postcard writes a slice
/// of `(String, String)` exactly as a `Vec<(&str, &str)>`), so appending
/// needs no intermediate vector.
#[derive(Serialize)]
struct EncodeView<'a, H: Serialize> {
    seq: u64,
    created_ms: u64,
    subject: &'a str,
    headers: &'a [H],
    #[serde(with = "raw_bytes")]
    body: &'a [u8],
}

/// `&[u8]` as postcard bytes (length + raw bytes in one go, rather than
/// element by element as serde's default sequence would).
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Lets postcard append straight into a caller's vector (the append path
/// reuses one buffer for every record).
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

/// Outbox records for twig-seglog's scanner. A genuine header of another
/// version is damage like any other (version 1 is the only one ever
/// written), stepped over rather than a reason to refuse the outbox.
pub struct OutboxCodec;

impl Codec for OutboxCodec {
    type Record<'a> = Decoded<'a>;
    const FRAME: Frame = FRAME;
    const ON_UNSUPPORTED: OnUnsupported = OnUnsupported::Skip;

    fn decode(body: &[u8]) -> Option<Decoded<'_>> {
        match postcard::take_from_bytes::<Decoded<'_>>(body) {
            Ok((d, [])) => Some(d),
            _ => None,
        }
    }

    fn seq(d: &Decoded<'_>) -> u64 {
        d.seq
    }
}

/// Appends one framed record to `out`. `headers` is any slice of pairs
/// that serialize as two strings (`(String, String)`, `(&str, &str)`). On
/// error `out` is left as it was.
pub fn encode<H: Serialize>(
    seq: u64,
    created_ms: u64,
    subject: &str,
    headers: &[H],
    body: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    let view = EncodeView {
        seq,
        created_ms,
        subject,
        headers,
        body,
    };
    FRAME
        .encode(out, |o| postcard::to_extend(&view, Appender(o)).map(drop))
        .map_err(|e| match e {
            seglog::EncodeError::TooLarge { body_len } => EncodeError::TooLarge { body_len },
            seglog::EncodeError::Body => EncodeError::Codec,
        })
}

/// Re-encodes a decoded record (the fuzz target checks this round-trips).
pub fn encode_decoded(d: &Decoded<'_>, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    encode(d.seq, d.created_ms, d.subject, &d.headers, d.body, out)
}

/// Checks the header at the start of `bytes`; returns the body length and
/// CRC.
pub fn read_header(bytes: &[u8]) -> Result<(usize, u32), FormatError> {
    FRAME.read_header(bytes).map(|h| (h.body_len, h.body_crc))
}

/// Decodes the record at the start of `bytes`; returns it and how many
/// bytes it took (header included). Never panics, whatever the input.
pub fn decode_record(bytes: &[u8]) -> Result<(Decoded<'_>, usize), FormatError> {
    seglog::parse::<OutboxCodec>(bytes)
}

/// The first position `>= from` in `buf` where an intact record with a
/// sequence number above `after_seq` starts: where reading resumes after
/// damage. The seq condition keeps a record that happens to sit inside
/// another's body (a message that is itself an outbox record) from being
/// taken for a real one; bad records with genuine headers are stepped over
/// whole, and one that runs past the end of `buf` ends the search
/// (everything after it is inside it).
pub fn find_next(buf: &[u8], from: usize, after_seq: u64) -> Option<usize> {
    seglog::find_next::<OutboxCodec>(buf, from, Order::Increasing { after: after_seq })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use alloc::vec;

    fn le_u32(b: &[u8]) -> u32 {
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    fn enc(seq: u64, subject: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        encode(seq, 1000, subject, headers, body, &mut v).expect("encode");
        v
    }

    #[test]
    fn header_layout_is_as_documented() {
        let b = enc(7, "a.b", &[("k", "v")], b"xy");
        assert_eq!(b[0], MAGIC);
        assert_eq!(b[1], VERSION);
        assert_eq!(&b[2..4], &[0, 0]);
        let body_len = u32::from_le_bytes([b[4], b[5], b[6], b[7]]) as usize;
        assert_eq!(body_len, b.len() - HEADER_LEN);
        assert_eq!(le_u32(&b[8..12]), crc32fast::hash(&b[HEADER_LEN..]));
        assert_eq!(le_u32(&b[12..16]), crc32fast::hash(&b[..12]));
        // seq 7, created_ms 1000 (varint E8 07), subject, one header pair,
        // body.
        assert_eq!(
            &b[HEADER_LEN..],
            &[7, 0xE8, 0x07, 3, b'a', b'.', b'b', 1, 1, b'k', 1, b'v', 2, b'x', b'y']
        );
    }

    #[test]
    fn owned_and_borrowed_headers_encode_alike() {
        let owned = vec![(String::from("k"), String::from("v"))];
        let mut a = Vec::new();
        encode(1, 2, "s", &owned, b"b", &mut a).expect("encode");
        let mut c = Vec::new();
        encode(1, 2, "s", &[("k", "v")], b"b", &mut c).expect("encode");
        assert_eq!(a, c);
    }

    #[test]
    fn round_trip() {
        let b = enc(300, "sub", &[("a", "1"), ("b", "")], &[0, 1, 2, 255]);
        let (d, n) = decode_record(&b).expect("decode");
        assert_eq!(n, b.len());
        assert_eq!(d.seq, 300);
        assert_eq!(d.created_ms, 1000);
        assert_eq!(d.subject, "sub");
        assert_eq!(d.headers, vec![("a", "1"), ("b", "")]);
        assert_eq!(d.body, &[0, 1, 2, 255]);
        let mut again = Vec::new();
        encode_decoded(&d, &mut again).expect("encode");
        assert_eq!(again, b);
    }

    #[test]
    fn damage_is_classified() {
        let b = enc(1, "s", &[], b"body");
        assert_eq!(decode_record(&b[..5]), Err(FormatError::Short));
        assert_eq!(
            decode_record(&b[..b.len() - 1]),
            Err(FormatError::Truncated { needed: b.len() })
        );
        let mut x = b.clone();
        x[0] ^= 1;
        assert_eq!(decode_record(&x), Err(FormatError::BadMagic));
        let mut x = b.clone();
        x[5] ^= 1;
        assert_eq!(decode_record(&x), Err(FormatError::BadHeaderCrc));
        let mut x = b.clone();
        let last = x.len() - 1;
        x[last] ^= 1;
        assert_eq!(
            decode_record(&x),
            Err(FormatError::BadBodyCrc { len: b.len() })
        );
    }

    #[test]
    fn find_next_skips_damage_and_stale_records() {
        let mut buf = enc(1, "s", &[], b"one");
        let second = buf.len();
        buf.extend(enc(2, "s", &[], b"two"));
        let third = buf.len();
        buf.extend(enc(3, "s", &[], b"three"));
        buf[second + 3] ^= 0xFF; // breaks record 2's header
        assert_eq!(find_next(&buf, 1, 1), Some(third));
        assert_eq!(find_next(&buf, 0, 0), Some(0));
        assert_eq!(find_next(&buf, 0, 3), None);
    }
}
