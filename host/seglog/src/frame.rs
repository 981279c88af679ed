//! The record frame: a 16-byte header (magic, version, flags, body length,
//! body CRC, header CRC) and the body it guards. Each log picks its own
//! magic byte, version and body limit ([`Frame`]); the layout is the same.
//!
//! No I/O, no decoding of bodies: what a body means is the caller's.

use alloc::vec::Vec;
use core::fmt;

/// Bytes before the body.
pub const HEADER_LEN: usize = 16;

/// One log's framing parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    /// First byte of every record. Different logs use different ones so
    /// their segments are never mistaken for each other.
    pub magic: u8,
    /// The format version this build writes and reads.
    pub version: u8,
    /// Largest body. A header claiming more is not one this build wrote.
    pub max_body_len: usize,
}

/// What a genuine header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub body_len: usize,
    pub body_crc: u32,
}

/// Why bytes are not one intact record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer than [`HEADER_LEN`] bytes.
    Short,
    /// The first byte is not the frame's magic.
    BadMagic,
    /// The header's CRC does not match: not a record boundary.
    BadHeaderCrc,
    /// A genuine header (its CRC matches) of another version, with flags
    /// set, or claiming a body over the frame's limit.
    Unsupported {
        version: u8,
        flags: u16,
        body_len: u32,
    },
    /// A genuine header whose record needs `needed` bytes, more than given.
    Truncated { needed: usize },
    /// A genuine header, but the body fails its CRC; the record is `len`
    /// bytes long (header included).
    BadBodyCrc { len: usize },
    /// The body passes its CRC but does not decode (or, in an ordered
    /// scan, is out of order). `len` as for `BadBodyCrc`.
    BadBody { len: usize },
}

impl FrameError {
    /// The record's length when its header is genuine, so a scan can step
    /// over it rather than look for records inside it.
    pub fn trusted_len(&self) -> Option<usize> {
        match *self {
            FrameError::BadBodyCrc { len } | FrameError::BadBody { len } => Some(len),
            _ => None,
        }
    }

    /// Whether the bytes start with a genuine header (whatever follows).
    pub fn genuine_header(&self) -> bool {
        !matches!(
            self,
            FrameError::Short | FrameError::BadMagic | FrameError::BadHeaderCrc
        )
    }
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Short => f.write_str("fewer bytes than a record header"),
            FrameError::BadMagic => f.write_str("no record magic"),
            FrameError::BadHeaderCrc => f.write_str("header checksum mismatch"),
            FrameError::Unsupported {
                version,
                flags,
                body_len,
            } => write!(
                f,
                "unsupported record (version {version}, flags {flags:#06x}, body {body_len} bytes)"
            ),
            FrameError::Truncated { needed } => {
                write!(f, "record cut short (needs {needed} bytes)")
            }
            FrameError::BadBodyCrc { .. } => f.write_str("body checksum mismatch"),
            FrameError::BadBody { .. } => f.write_str("body does not decode"),
        }
    }
}

/// Why a record could not be framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncodeError {
    /// The body would exceed the frame's limit.
    TooLarge { body_len: usize },
    /// The body writer failed.
    Body,
}

fn le_u32(b: &[u8]) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[..4]);
    u32::from_le_bytes(a)
}

impl Frame {
    /// Appends one record to `out`: `body` appends the body bytes to the
    /// vector it is given, and the header is filled in around them. On
    /// error `out` is left as it was.
    pub fn encode<E>(
        &self,
        out: &mut Vec<u8>,
        body: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), EncodeError> {
        let start = out.len();
        out.resize(start + HEADER_LEN, 0);
        if body(out).is_err() {
            out.truncate(start);
            return Err(EncodeError::Body);
        }
        let body_len = out.len() - start - HEADER_LEN;
        if body_len > self.max_body_len || body_len > u32::MAX as usize {
            out.truncate(start);
            return Err(EncodeError::TooLarge { body_len });
        }
        let body_crc = crc32fast::hash(&out[start + HEADER_LEN..]);
        let h = &mut out[start..start + HEADER_LEN];
        h[0] = self.magic;
        h[1] = self.version;
        h[2..4].copy_from_slice(&0u16.to_le_bytes());
        h[4..8].copy_from_slice(&(body_len as u32).to_le_bytes());
        h[8..12].copy_from_slice(&body_crc.to_le_bytes());
        let header_crc = crc32fast::hash(&h[..12]);
        h[12..16].copy_from_slice(&header_crc.to_le_bytes());
        Ok(())
    }

    /// Checks the header at the start of `buf`.
    pub fn read_header(&self, buf: &[u8]) -> Result<Header, FrameError> {
        let Some(h) = buf.get(..HEADER_LEN) else {
            return Err(FrameError::Short);
        };
        if h[0] != self.magic {
            return Err(FrameError::BadMagic);
        }
        if crc32fast::hash(&h[..12]) != le_u32(&h[12..16]) {
            return Err(FrameError::BadHeaderCrc);
        }
        let version = h[1];
        let flags = u16::from_le_bytes([h[2], h[3]]);
        let body_len = le_u32(&h[4..8]);
        if version != self.version || flags != 0 || body_len as usize > self.max_body_len {
            return Err(FrameError::Unsupported {
                version,
                flags,
                body_len,
            });
        }
        Ok(Header {
            body_len: body_len as usize,
            body_crc: le_u32(&h[8..12]),
        })
    }

    /// The checked body of the record at the start of `buf`, and the
    /// record's whole length (header included).
    pub fn open<'a>(&self, buf: &'a [u8]) -> Result<(&'a [u8], usize), FrameError> {
        let h = self.read_header(buf)?;
        let len = HEADER_LEN + h.body_len;
        let Some(body) = buf.get(HEADER_LEN..len) else {
            return Err(FrameError::Truncated { needed: len });
        };
        if crc32fast::hash(body) != h.body_crc {
            return Err(FrameError::BadBodyCrc { len });
        }
        Ok((body, len))
    }

    /// Whether `buf` is exactly one intact record (header and body CRC),
    /// without decoding it. `Ok(false)`: intact, but a different length.
    pub fn verify(&self, buf: &[u8]) -> Result<bool, FrameError> {
        let h = self.read_header(buf)?;
        if buf.len() != HEADER_LEN + h.body_len {
            return Ok(false);
        }
        if crc32fast::hash(&buf[HEADER_LEN..]) != h.body_crc {
            return Err(FrameError::BadBodyCrc { len: buf.len() });
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const F: Frame = Frame {
        magic: 0xA5,
        version: 3,
        max_body_len: 100,
    };

    fn enc(body: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        F.encode(&mut v, |o| {
            o.extend_from_slice(body);
            Ok::<(), ()>(())
        })
        .expect("encode");
        v
    }

    #[test]
    fn header_layout() {
        let b = enc(b"xyz");
        assert_eq!(&b[..4], &[0xA5, 3, 0, 0]);
        assert_eq!(&b[4..8], &3u32.to_le_bytes());
        assert_eq!(&b[8..12], &crc32fast::hash(b"xyz").to_le_bytes());
        assert_eq!(&b[12..16], &crc32fast::hash(&b[..12]).to_le_bytes());
        assert_eq!(F.open(&b), Ok((&b"xyz"[..], 19)));
        assert_eq!(F.verify(&b), Ok(true));
    }

    #[test]
    fn damage_is_classified() {
        let b = enc(b"body");
        assert_eq!(F.open(&b[..5]), Err(FrameError::Short));
        assert_eq!(
            F.open(&b[..b.len() - 1]),
            Err(FrameError::Truncated { needed: b.len() })
        );
        let mut x = b.clone();
        x[0] ^= 1;
        assert_eq!(F.open(&x), Err(FrameError::BadMagic));
        let mut x = b.clone();
        x[5] ^= 1;
        assert_eq!(F.open(&x), Err(FrameError::BadHeaderCrc));
        let mut x = b.clone();
        let last = x.len() - 1;
        x[last] ^= 1;
        assert_eq!(F.open(&x), Err(FrameError::BadBodyCrc { len: b.len() }));
        let mut long = b.clone();
        long.push(0);
        assert_eq!(F.verify(&long), Ok(false));
    }

    #[test]
    fn other_versions_and_oversized_bodies_are_unsupported() {
        let mut b = enc(b"v");
        b[1] = 4;
        let c = crc32fast::hash(&b[..12]);
        b[12..16].copy_from_slice(&c.to_le_bytes());
        assert_eq!(
            F.open(&b),
            Err(FrameError::Unsupported {
                version: 4,
                flags: 0,
                body_len: 1
            })
        );
        let mut out = vec![7u8];
        assert_eq!(
            F.encode(&mut out, |o| {
                o.resize(o.len() + 101, 0);
                Ok::<(), ()>(())
            }),
            Err(EncodeError::TooLarge { body_len: 101 })
        );
        assert_eq!(out, [7], "a failed encode leaves the buffer as it was");
    }
}
