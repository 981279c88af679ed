//! The wRPC value encoding: [`Val`]s to and from the bytes wasmCloud 1.x
//! sends over its lattice.
//!
//! wRPC carries a call's parameters, and its results, as the component
//! model's *value definition* encoding (`design/mvp/Binary.md`, "Value
//! Definitions", as wrpc's `wasm-tokio` crate implements it): one value
//! after another, with no count and no framing.
//!
//! | type               | bytes                                                    |
//! |--------------------|----------------------------------------------------------|
//! | `bool`             | `0x00` or `0x01`                                         |
//! | `u8`, `s8`         | one byte (two's complement for `s8`)                     |
//! | `u16`, `u32`, `u64`| unsigned LEB128                                          |
//! | `s16`, `s32`, `s64`| signed LEB128                                            |
//! | `f32`, `f64`       | IEEE 754, little-endian; NaN is written as the canonical NaN |
//! | `char`             | the character's UTF-8 bytes (one to four)                |
//! | `string`           | LEB128 byte length, then the UTF-8 bytes                 |
//! | `list<T>`          | LEB128 element count, then the elements                  |
//! | record, tuple      | the fields in order                                      |
//! | variant, enum      | LEB128 case index, then the case's payload if it has one |
//! | `option<T>`        | `0x00`, or `0x01` and the payload                        |
//! | `result<T, E>`     | `0x00` and the `T` payload, or `0x01` and the `E` payload (each only if the type has it) |
//! | flags              | ceil(n / 8) bytes; flag `i` is bit `i % 8` of byte `i / 8` |
//!
//! Resources, futures and streams are refused: twig cannot send them yet.
//!
//! Decoding works on a buffer that may hold only the start of a message (wRPC
//! results arrive in NATS chunks): [`DecodeError::Incomplete`] means "call
//! again with more bytes", every other error means the bytes can never
//! decode. Lengths and counts are checked against the bytes present before
//! anything is allocated, so hostile input costs at most what it sends.

use std::borrow::Cow;
use std::fmt;

use wasm_wave::wasm::{WasmType, WasmTypeKind};

use crate::values::Val;
use crate::wave::{TypeList, WaveType};

/// Types nested deeper than this (counting every list, record, option ...
/// level) are refused. Value nesting follows type nesting, so this also
/// bounds the recursion of encoding and decoding.
pub const MAX_DEPTH: u32 = 100;

/// Elements a list of a type that encodes to zero bytes may declare. Valid
/// component types always take at least one byte (empty records, tuples
/// and flags do not validate); this only guards against a count that would
/// cost memory without costing bytes.
const MAX_ZERO_SIZED_ELEMS: usize = 1 << 16;

/// Encodes values of the given types, concatenated: a parameter list or a
/// result list.
pub fn encode(vals: &[Val], types: &TypeList) -> Result<Vec<u8>, EncodeError> {
    Codec::new(types).encode(vals)
}

/// Decodes one value per type from the start of `bytes`. Returns the values
/// and how many bytes they took (bytes after them are left alone).
///
/// [`DecodeError::Incomplete`] when `bytes` ends before the values do: wait
/// for more bytes and decode again from the start.
pub fn decode(bytes: &[u8], types: &TypeList) -> Result<(Vec<Val>, usize), DecodeError> {
    Codec::new(types).decode(bytes)
}

/// Why values could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The number of values is not the number of types.
    #[error("expected {expected} values, got {got}")]
    Count { expected: usize, got: usize },
    /// Value `index` does not match its type, or its type cannot be sent.
    /// `path` leads from the value to the part at fault (`record field
    /// `tags`: list element 3`), empty for the value itself.
    #[error("value {index}{}: {reason}", path_suffix(.path))]
    Value {
        index: usize,
        path: String,
        reason: String,
    },
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The bytes end before the values do. `needed` is a lower bound on the
    /// total length (from the start of the buffer) needed to go further; a
    /// caller with a size cap can give up at once when it exceeds the cap.
    #[error("incomplete: at least {needed} bytes are needed")]
    Incomplete { needed: usize },
    /// The bytes are not a valid encoding of value `index`: `reason` says
    /// what is wrong, `offset` where (from the start of the buffer), `path`
    /// in which part of the value (empty for the value itself).
    #[error("value {index}{}: {reason} (at byte {offset})", path_suffix(.path))]
    Invalid {
        index: usize,
        path: String,
        reason: String,
        offset: usize,
    },
}

fn path_suffix(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(": {path}")
    }
}

/// Encoder and decoder for one list of types, prepared once.
///
/// [`encode`] and [`decode`] build one per call; keep a `Codec` when the
/// same types are used repeatedly, e.g. to decode a result again each time
/// another chunk arrives.
#[derive(Debug, Clone)]
pub struct Codec {
    shapes: Vec<Shape>,
}

impl Codec {
    pub fn new(types: &TypeList) -> Codec {
        Codec {
            shapes: (0..types.len())
                .filter_map(|i| types.get(i))
                .map(|t| Shape::of(&t, 0))
                .collect(),
        }
    }

    /// The number of values (types).
    pub fn len(&self) -> usize {
        self.shapes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.shapes.is_empty()
    }

    /// Why some value of these types could not be sent, if that can happen:
    /// the types contain a resource, future or stream (or nest too deeply).
    /// Lets a caller refuse a call before making it rather than after the
    /// remote side has run it and its results cannot be read.
    pub fn unsupported(&self) -> Option<String> {
        self.shapes.iter().enumerate().find_map(|(i, s)| {
            s.unsupported().map(|(mut segs, reason)| {
                segs.reverse();
                format!("value {i}{}: {reason}", path_suffix(&join(&segs)))
            })
        })
    }

    pub fn encode(&self, vals: &[Val]) -> Result<Vec<u8>, EncodeError> {
        let mut out = Vec::new();
        self.encode_into(vals, &mut out)?;
        Ok(out)
    }

    /// Appends the encoding of `vals` to `out`; on error `out` is left as it
    /// was.
    pub fn encode_into(&self, vals: &[Val], out: &mut Vec<u8>) -> Result<(), EncodeError> {
        if vals.len() != self.shapes.len() {
            return Err(EncodeError::Count {
                expected: self.shapes.len(),
                got: vals.len(),
            });
        }
        let start = out.len();
        for (index, (s, v)) in self.shapes.iter().zip(vals).enumerate() {
            if let Err(f) = enc(s, v, out) {
                out.truncate(start);
                let (path, reason) = f.into_parts();
                return Err(EncodeError::Value {
                    index,
                    path,
                    reason,
                });
            }
        }
        Ok(())
    }

    /// Decodes one value per type from the start of `bytes`; see [`decode`].
    pub fn decode(&self, bytes: &[u8]) -> Result<(Vec<Val>, usize), DecodeError> {
        let mut r = Reader { bytes, pos: 0 };
        let mut vals = Vec::with_capacity(self.shapes.len());
        for (index, s) in self.shapes.iter().enumerate() {
            match dec(s, &mut r) {
                Ok(v) => vals.push(v),
                Err(DecFail::Incomplete(needed)) => {
                    return Err(DecodeError::Incomplete { needed });
                }
                Err(DecFail::Invalid(f, offset)) => {
                    let (path, reason) = f.into_parts();
                    return Err(DecodeError::Invalid {
                        index,
                        path,
                        reason,
                        offset,
                    });
                }
            }
        }
        Ok((vals, r.pos))
    }
}

// ------------------------------------------------------------------ types

/// A component type reduced to what the encoding needs.
#[derive(Debug, Clone)]
enum Shape {
    Bool,
    S8,
    U8,
    S16,
    U16,
    S32,
    U32,
    S64,
    U64,
    F32,
    F64,
    Char,
    String,
    /// Element type and the fewest bytes one element encodes to.
    List(Box<Shape>, usize),
    Record(Vec<(String, Shape)>),
    Tuple(Vec<Shape>),
    Variant(Vec<(String, Option<Shape>)>),
    Enum(Vec<String>),
    Option(Box<Shape>),
    Result(Option<Box<Shape>>, Option<Box<Shape>>),
    Flags(Vec<String>),
    /// A type no value of which can be sent; why.
    Unsupported(String),
}

impl Shape {
    fn of(ty: &WaveType, depth: u32) -> Shape {
        if depth >= MAX_DEPTH {
            return Shape::Unsupported(format!(
                "types nested more than {MAX_DEPTH} levels deep cannot be sent over wRPC"
            ));
        }
        let d = depth + 1;
        let sub = |t: Option<WaveType>| match t {
            Some(t) => Shape::of(&t, d),
            None => Shape::Unsupported(format!("malformed type `{}`", ty.wit())),
        };
        match ty.kind() {
            WasmTypeKind::Bool => Shape::Bool,
            WasmTypeKind::S8 => Shape::S8,
            WasmTypeKind::U8 => Shape::U8,
            WasmTypeKind::S16 => Shape::S16,
            WasmTypeKind::U16 => Shape::U16,
            WasmTypeKind::S32 => Shape::S32,
            WasmTypeKind::U32 => Shape::U32,
            WasmTypeKind::S64 => Shape::S64,
            WasmTypeKind::U64 => Shape::U64,
            WasmTypeKind::F32 => Shape::F32,
            WasmTypeKind::F64 => Shape::F64,
            WasmTypeKind::Char => Shape::Char,
            WasmTypeKind::String => Shape::String,
            WasmTypeKind::List => {
                let el = sub(ty.list_element_type());
                let min = el.min_size();
                Shape::List(Box::new(el), min)
            }
            WasmTypeKind::Record => Shape::Record(
                ty.record_fields()
                    .map(|(n, t)| (n.into_owned(), Shape::of(&t, d)))
                    .collect(),
            ),
            WasmTypeKind::Tuple => {
                Shape::Tuple(ty.tuple_element_types().map(|t| Shape::of(&t, d)).collect())
            }
            WasmTypeKind::Variant => Shape::Variant(
                ty.variant_cases()
                    .map(|(n, t)| (n.into_owned(), t.map(|t| Shape::of(&t, d))))
                    .collect(),
            ),
            WasmTypeKind::Enum => Shape::Enum(ty.enum_cases().map(Cow::into_owned).collect()),
            WasmTypeKind::Option => Shape::Option(Box::new(sub(ty.option_some_type()))),
            WasmTypeKind::Result => match ty.result_types() {
                Some((ok, err)) => Shape::Result(
                    ok.map(|t| Box::new(Shape::of(&t, d))),
                    err.map(|t| Box::new(Shape::of(&t, d))),
                ),
                None => sub(None),
            },
            WasmTypeKind::Flags => Shape::Flags(ty.flags_names().map(Cow::into_owned).collect()),
            _ => {
                let wit = ty.wit();
                Shape::Unsupported(if wit.starts_with("own<") || wit.starts_with("borrow<") {
                    format!("resources cannot be sent over wRPC by twig yet (`{wit}`)")
                } else {
                    format!("`{wit}` values cannot be sent over wRPC by twig yet")
                })
            }
        }
    }

    /// The fewest bytes a value of this type encodes to.
    fn min_size(&self) -> usize {
        match self {
            Shape::F32 => 4,
            Shape::F64 => 8,
            Shape::Record(fields) => fields
                .iter()
                .fold(0, |n, (_, s)| n.saturating_add(s.min_size())),
            Shape::Tuple(tys) => tys.iter().fold(0, |n, s| n.saturating_add(s.min_size())),
            Shape::Variant(cases) => cases
                .iter()
                .map(|(_, p)| p.as_ref().map_or(0, Shape::min_size))
                .min()
                .unwrap_or(0)
                .saturating_add(1),
            Shape::Flags(names) => names.len().div_ceil(8),
            // Everything else starts with at least one byte (a tag, a
            // length, a LEB128 integer); unsupported types never decode.
            _ => 1,
        }
    }

    /// The path (innermost first) to the first unsupported type, and why.
    fn unsupported(&self) -> Option<(Vec<Seg>, String)> {
        fn within(s: &Shape, seg: Seg) -> Option<(Vec<Seg>, String)> {
            s.unsupported().map(|(mut segs, r)| {
                segs.push(seg);
                (segs, r)
            })
        }
        match self {
            Shape::Unsupported(why) => Some((Vec::new(), why.clone())),
            Shape::List(el, _) => within(el, Seg::Elem(None)),
            Shape::Record(fields) => fields
                .iter()
                .find_map(|(n, s)| within(s, Seg::Field(n.clone()))),
            Shape::Tuple(tys) => tys
                .iter()
                .enumerate()
                .find_map(|(i, s)| within(s, Seg::TupleElem(i))),
            Shape::Variant(cases) => cases
                .iter()
                .find_map(|(n, s)| s.as_ref().and_then(|s| within(s, Seg::Case(n.clone())))),
            Shape::Option(s) => within(s, Seg::Some),
            Shape::Result(ok, err) => ok
                .as_ref()
                .and_then(|s| within(s, Seg::Ok))
                .or_else(|| err.as_ref().and_then(|s| within(s, Seg::Err))),
            _ => None,
        }
    }

    /// The type's kind, for mismatch messages.
    fn desc(&self) -> &'static str {
        match self {
            Shape::Bool => "bool",
            Shape::S8 => "s8",
            Shape::U8 => "u8",
            Shape::S16 => "s16",
            Shape::U16 => "u16",
            Shape::S32 => "s32",
            Shape::U32 => "u32",
            Shape::S64 => "s64",
            Shape::U64 => "u64",
            Shape::F32 => "f32",
            Shape::F64 => "f64",
            Shape::Char => "char",
            Shape::String => "string",
            Shape::List(..) => "a list",
            Shape::Record(_) => "a record",
            Shape::Tuple(_) => "a tuple",
            Shape::Variant(_) => "a variant",
            Shape::Enum(_) => "an enum",
            Shape::Option(_) => "an option",
            Shape::Result(..) => "a result",
            Shape::Flags(_) => "flags",
            Shape::Unsupported(_) => "an unsupported type",
        }
    }
}

// ------------------------------------------------------------------ errors

/// One step from a value into a part of it, for error messages.
#[derive(Debug)]
enum Seg {
    Field(String),
    /// A list element; `None` for "any element" (type-level messages).
    Elem(Option<usize>),
    TupleElem(usize),
    Case(String),
    Some,
    Ok,
    Err,
}

impl fmt::Display for Seg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Seg::Field(n) => write!(f, "record field `{n}`"),
            Seg::Elem(Some(i)) => write!(f, "list element {i}"),
            Seg::Elem(None) => write!(f, "list element"),
            Seg::TupleElem(i) => write!(f, "tuple element {i}"),
            Seg::Case(n) => write!(f, "variant case `{n}`"),
            Seg::Some => write!(f, "option payload"),
            Seg::Ok => write!(f, "result ok payload"),
            Seg::Err => write!(f, "result err payload"),
        }
    }
}

fn join(segs: &[Seg]) -> String {
    segs.iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// An error on its way out of the recursion: the path is collected
/// innermost first, as the error passes each level (nothing is recorded on
/// the way in, so success costs nothing).
#[derive(Debug)]
struct Fail {
    segs: Vec<Seg>,
    reason: String,
}

impl Fail {
    fn new(reason: impl Into<String>) -> Fail {
        Fail {
            segs: Vec::new(),
            reason: reason.into(),
        }
    }

    fn within(mut self, seg: Seg) -> Fail {
        self.segs.push(seg);
        self
    }

    fn into_parts(mut self) -> (String, String) {
        self.segs.reverse();
        (join(&self.segs), self.reason)
    }
}

enum DecFail {
    /// The total buffer length needed to go further (a lower bound).
    Incomplete(usize),
    /// What is wrong, and the byte offset where.
    Invalid(Fail, usize),
}

impl DecFail {
    fn within(self, seg: impl FnOnce() -> Seg) -> DecFail {
        match self {
            DecFail::Invalid(f, at) => DecFail::Invalid(f.within(seg()), at),
            inc => inc,
        }
    }
}

fn invalid(at: usize, reason: impl Into<String>) -> DecFail {
    DecFail::Invalid(Fail::new(reason), at)
}

// ------------------------------------------------------------------ encoding

const CANONICAL_NAN32: u32 = 0x7fc0_0000;
const CANONICAL_NAN64: u64 = 0x7ff8_0000_0000_0000;

fn put_uleb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn put_sleb(out: &mut Vec<u8>, mut v: i64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if (v == 0 && b & 0x40 == 0) || (v == -1 && b & 0x40 != 0) {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn put_len(out: &mut Vec<u8>, n: usize, what: &str) -> Result<(), Fail> {
    let n = u32::try_from(n).map_err(|_| Fail::new(format!("{what} longer than 2^32 - 1")))?;
    put_uleb(out, n.into());
    Ok(())
}

fn enc(s: &Shape, v: &Val, out: &mut Vec<u8>) -> Result<(), Fail> {
    match (s, v) {
        (Shape::Unsupported(why), _) => return Err(Fail::new(why.clone())),
        (Shape::Bool, Val::Bool(b)) => out.push(u8::from(*b)),
        (Shape::S8, Val::S8(x)) => out.push(*x as u8),
        (Shape::U8, Val::U8(x)) => out.push(*x),
        (Shape::S16, Val::S16(x)) => put_sleb(out, (*x).into()),
        (Shape::U16, Val::U16(x)) => put_uleb(out, (*x).into()),
        (Shape::S32, Val::S32(x)) => put_sleb(out, (*x).into()),
        (Shape::U32, Val::U32(x)) => put_uleb(out, (*x).into()),
        (Shape::S64, Val::S64(x)) => put_sleb(out, *x),
        (Shape::U64, Val::U64(x)) => put_uleb(out, *x),
        (Shape::F32, Val::Float32(x)) => {
            let bits = if x.is_nan() {
                CANONICAL_NAN32
            } else {
                x.to_bits()
            };
            out.extend_from_slice(&bits.to_le_bytes());
        }
        (Shape::F64, Val::Float64(x)) => {
            let bits = if x.is_nan() {
                CANONICAL_NAN64
            } else {
                x.to_bits()
            };
            out.extend_from_slice(&bits.to_le_bytes());
        }
        (Shape::Char, Val::Char(c)) => {
            out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
        (Shape::String, Val::String(x)) => {
            put_len(out, x.len(), "string")?;
            out.extend_from_slice(x.as_bytes());
        }
        (Shape::List(el, _), Val::Bytes(b)) if matches!(**el, Shape::U8) => {
            put_len(out, b.len(), "list")?;
            out.extend_from_slice(b);
        }
        (Shape::List(el, _), Val::List(items)) => {
            put_len(out, items.len(), "list")?;
            for (i, item) in items.iter().enumerate() {
                enc(el, item, out).map_err(|f| f.within(Seg::Elem(Some(i))))?;
            }
        }
        (Shape::Record(fields), Val::Record(vals)) => {
            if fields.len() != vals.len() {
                return Err(Fail::new(format!(
                    "record has {} fields, its type {}",
                    vals.len(),
                    fields.len()
                )));
            }
            for ((name, fs), (given, fv)) in fields.iter().zip(vals) {
                if name != given {
                    return Err(Fail::new(format!(
                        "record field `{given}` where `{name}` was expected"
                    )));
                }
                enc(fs, fv, out).map_err(|f| f.within(Seg::Field(name.clone())))?;
            }
        }
        (Shape::Tuple(tys), Val::Tuple(vals)) => {
            if tys.len() != vals.len() {
                return Err(Fail::new(format!(
                    "tuple has {} elements, its type {}",
                    vals.len(),
                    tys.len()
                )));
            }
            for (i, (ts, tv)) in tys.iter().zip(vals).enumerate() {
                enc(ts, tv, out).map_err(|f| f.within(Seg::TupleElem(i)))?;
            }
        }
        (Shape::Variant(cases), Val::Variant(name, payload)) => {
            let i = cases
                .iter()
                .position(|(n, _)| n == name)
                .ok_or_else(|| Fail::new(format!("unknown variant case `{name}`")))?;
            put_uleb(out, i as u64);
            match (&cases[i].1, payload) {
                (Some(ps), Some(pv)) => {
                    enc(ps, pv, out).map_err(|f| f.within(Seg::Case(name.clone())))?;
                }
                (None, None) => {}
                (Some(_), None) => {
                    return Err(Fail::new(format!("variant case `{name}` needs a payload")));
                }
                (None, Some(_)) => {
                    return Err(Fail::new(format!("variant case `{name}` takes no payload")));
                }
            }
        }
        (Shape::Enum(names), Val::Enum(name)) => {
            let i = names
                .iter()
                .position(|n| n == name)
                .ok_or_else(|| Fail::new(format!("unknown enum case `{name}`")))?;
            put_uleb(out, i as u64);
        }
        (Shape::Option(ps), Val::Option(p)) => match p {
            None => out.push(0),
            Some(pv) => {
                out.push(1);
                enc(ps, pv, out).map_err(|f| f.within(Seg::Some))?;
            }
        },
        (Shape::Result(ok, err), Val::Result(r)) => {
            let (tag, ty, payload, seg, which) = match r {
                Ok(p) => (0, ok, p, Seg::Ok, "ok"),
                Err(p) => (1, err, p, Seg::Err, "err"),
            };
            out.push(tag);
            match (ty, payload) {
                (Some(ps), Some(pv)) => enc(ps, pv, out).map_err(|f| f.within(seg))?,
                (None, None) => {}
                (Some(_), None) => {
                    return Err(Fail::new(format!("result {which} needs a payload")));
                }
                (None, Some(_)) => {
                    return Err(Fail::new(format!("result {which} takes no payload")));
                }
            }
        }
        (Shape::Flags(names), Val::Flags(set)) => {
            let mut bytes = vec![0u8; names.len().div_ceil(8)];
            for flag in set {
                let i = names
                    .iter()
                    .position(|n| n == flag)
                    .ok_or_else(|| Fail::new(format!("unknown flag `{flag}`")))?;
                bytes[i / 8] |= 1 << (i % 8);
            }
            out.extend_from_slice(&bytes);
        }
        (s, v) => {
            return Err(Fail::new(format!(
                "type mismatch: a {} value given where {} was expected",
                v.kind(),
                s.desc()
            )));
        }
    }
    Ok(())
}

// ------------------------------------------------------------------ decoding

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn byte(&mut self) -> Result<u8, DecFail> {
        let b = *self
            .bytes
            .get(self.pos)
            .ok_or(DecFail::Incomplete(self.pos + 1))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecFail> {
        if n > self.remaining() {
            return Err(DecFail::Incomplete(self.pos.saturating_add(n)));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecFail> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// An unsigned LEB128 integer of at most `bits` bits, in at most
    /// ceil(bits / 7) bytes (padded encodings are allowed, as in core wasm).
    fn uleb(&mut self, bits: u32) -> Result<u64, DecFail> {
        let at = self.pos;
        let max = bits.div_ceil(7) as usize;
        let mut x = 0u64;
        for i in 0..max {
            let b = *self
                .bytes
                .get(at + i)
                .ok_or(DecFail::Incomplete(at + i + 1))?;
            let shift = 7 * i as u32;
            if i + 1 == max {
                if b & 0x80 != 0 {
                    return Err(invalid(
                        at,
                        format!("LEB128 integer longer than {max} bytes (u{bits})"),
                    ));
                }
                if u64::from(b) >> (bits - shift) != 0 {
                    return Err(invalid(at, format!("LEB128 integer overflows u{bits}")));
                }
            }
            x |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                self.pos = at + i + 1;
                return Ok(x);
            }
        }
        Err(invalid(at, format!("LEB128 integer overflows u{bits}")))
    }

    /// A signed LEB128 integer of at most `bits` bits.
    fn sleb(&mut self, bits: u32) -> Result<i64, DecFail> {
        let at = self.pos;
        let max = bits.div_ceil(7) as usize;
        let mut x = 0i64;
        for i in 0..max {
            let b = *self
                .bytes
                .get(at + i)
                .ok_or(DecFail::Incomplete(at + i + 1))?;
            let shift = 7 * i as u32;
            if i + 1 == max {
                if b & 0x80 != 0 {
                    return Err(invalid(
                        at,
                        format!("LEB128 integer longer than {max} bytes (s{bits})"),
                    ));
                }
                // The bits above the value's sign bit must repeat it.
                let sign_at = bits - shift - 1;
                let rest = (b & 0x7f) >> sign_at;
                if rest != 0 && rest != 0x7f >> sign_at {
                    return Err(invalid(at, format!("LEB128 integer overflows s{bits}")));
                }
            }
            x |= i64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                let end = shift + 7;
                if end < 64 && b & 0x40 != 0 {
                    x |= -1i64 << end;
                }
                self.pos = at + i + 1;
                return Ok(x);
            }
        }
        Err(invalid(at, format!("LEB128 integer overflows s{bits}")))
    }

    /// A char: its UTF-8 bytes.
    fn char(&mut self) -> Result<char, DecFail> {
        let at = self.pos;
        let bad = || invalid(at, "char is not a UTF-8 encoded Unicode scalar value");
        let n = match self.byte()? {
            0x00..=0x7f => 1,
            0xc0..=0xdf => 2,
            0xe0..=0xef => 3,
            0xf0..=0xf7 => 4,
            _ => return Err(bad()),
        };
        let end = at + n;
        let cont = &self.bytes[self.pos..end.min(self.bytes.len())];
        if cont.iter().any(|b| b & 0xc0 != 0x80) {
            return Err(bad());
        }
        if end > self.bytes.len() {
            return Err(DecFail::Incomplete(end));
        }
        let c = std::str::from_utf8(&self.bytes[at..end])
            .ok()
            .and_then(|s| s.chars().next())
            .ok_or_else(bad)?;
        self.pos = end;
        Ok(c)
    }

    /// A list or string length: a LEB128 u32.
    fn len(&mut self) -> Result<usize, DecFail> {
        Ok(self.uleb(32)? as usize)
    }
}

fn dec(s: &Shape, r: &mut Reader<'_>) -> Result<Val, DecFail> {
    let at = r.pos;
    Ok(match s {
        Shape::Unsupported(why) => return Err(invalid(at, why.clone())),
        Shape::Bool => match r.byte()? {
            0 => Val::Bool(false),
            1 => Val::Bool(true),
            b => {
                return Err(invalid(
                    at,
                    format!("bool byte {b:#04x} is neither 0 nor 1"),
                ))
            }
        },
        Shape::S8 => Val::S8(r.byte()? as i8),
        Shape::U8 => Val::U8(r.byte()?),
        Shape::S16 => Val::S16(r.sleb(16)? as i16),
        Shape::U16 => Val::U16(r.uleb(16)? as u16),
        Shape::S32 => Val::S32(r.sleb(32)? as i32),
        Shape::U32 => Val::U32(r.uleb(32)? as u32),
        Shape::S64 => Val::S64(r.sleb(64)?),
        Shape::U64 => Val::U64(r.uleb(64)?),
        Shape::F32 => Val::Float32(f32::from_le_bytes(r.array()?)),
        Shape::F64 => Val::Float64(f64::from_le_bytes(r.array()?)),
        Shape::Char => Val::Char(r.char()?),
        Shape::String => {
            let n = r.len()?;
            let start = r.pos;
            let b = r.take(n)?;
            match std::str::from_utf8(b) {
                Ok(s) => Val::String(s.to_owned()),
                Err(e) => return Err(invalid(start + e.valid_up_to(), "string is not UTF-8")),
            }
        }
        Shape::List(el, min) => {
            let n = r.len()?;
            if *min > 0 {
                let need = n.saturating_mul(*min);
                if need > r.remaining() {
                    return Err(DecFail::Incomplete(r.pos.saturating_add(need)));
                }
            } else if n > MAX_ZERO_SIZED_ELEMS {
                return Err(invalid(
                    at,
                    format!("list of {n} elements that take no bytes is too long"),
                ));
            }
            // `n` is now bounded by the bytes present (or the cap above).
            if let Shape::U8 = **el {
                // One copy, one byte per byte.
                Val::Bytes(r.take(n)?.to_vec())
            } else {
                let mut items = Vec::with_capacity(n);
                for i in 0..n {
                    items.push(dec(el, r).map_err(|f| f.within(|| Seg::Elem(Some(i))))?);
                }
                Val::List(items)
            }
        }
        Shape::Record(fields) => {
            let mut vals = Vec::with_capacity(fields.len());
            for (name, fs) in fields {
                let v = dec(fs, r).map_err(|f| f.within(|| Seg::Field(name.clone())))?;
                vals.push((name.clone(), v));
            }
            Val::Record(vals)
        }
        Shape::Tuple(tys) => {
            let mut vals = Vec::with_capacity(tys.len());
            for (i, ts) in tys.iter().enumerate() {
                vals.push(dec(ts, r).map_err(|f| f.within(|| Seg::TupleElem(i)))?);
            }
            Val::Tuple(vals)
        }
        Shape::Variant(cases) => {
            let i = r.uleb(32)?;
            let Some((name, ps)) = cases.get(i as usize) else {
                return Err(invalid(
                    at,
                    format!(
                        "variant case index {i} is out of range (the type has {} cases)",
                        cases.len()
                    ),
                ));
            };
            let payload = match ps {
                Some(ps) => Some(Box::new(
                    dec(ps, r).map_err(|f| f.within(|| Seg::Case(name.clone())))?,
                )),
                None => None,
            };
            Val::Variant(name.clone(), payload)
        }
        Shape::Enum(names) => {
            let i = r.uleb(32)?;
            match names.get(i as usize) {
                Some(n) => Val::Enum(n.clone()),
                None => {
                    return Err(invalid(
                        at,
                        format!(
                            "enum case index {i} is out of range (the type has {} cases)",
                            names.len()
                        ),
                    ))
                }
            }
        }
        Shape::Option(ps) => match r.byte()? {
            0 => Val::Option(None),
            1 => Val::Option(Some(Box::new(
                dec(ps, r).map_err(|f| f.within(|| Seg::Some))?,
            ))),
            b => {
                return Err(invalid(
                    at,
                    format!("option tag {b:#04x} is neither 0 (none) nor 1 (some)"),
                ))
            }
        },
        Shape::Result(ok, err) => {
            let is_ok = match r.byte()? {
                0 => true,
                1 => false,
                b => {
                    return Err(invalid(
                        at,
                        format!("result tag {b:#04x} is neither 0 (ok) nor 1 (err)"),
                    ))
                }
            };
            let (ty, seg) = if is_ok {
                (ok, Seg::Ok)
            } else {
                (err, Seg::Err)
            };
            let payload = match ty {
                Some(ps) => Some(Box::new(dec(ps, r).map_err(|f| f.within(|| seg))?)),
                None => None,
            };
            Val::Result(if is_ok { Ok(payload) } else { Err(payload) })
        }
        Shape::Flags(names) => {
            let bytes = r.take(names.len().div_ceil(8))?;
            let used = names.len() % 8;
            if let (Some(last), true) = (bytes.last(), used != 0) {
                if last >> used != 0 {
                    return Err(invalid(
                        r.pos - 1,
                        format!(
                            "flags byte {last:#04x} sets bits beyond the type's {} flags",
                            names.len()
                        ),
                    ));
                }
            }
            Val::Flags(
                names
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| bytes[i / 8] & (1 << (i % 8)) != 0)
                    .map(|(_, n)| n.clone())
                    .collect(),
            )
        }
    })
}

#[cfg(test)]
mod tests {
    //! Byte-level tests on hand-written types. Round trips over the types
    //! of a real component are in `tests/integration/tests/wrpc_values.rs`.

    use super::*;

    fn codec(shapes: Vec<Shape>) -> Codec {
        Codec { shapes }
    }

    fn one(s: Shape) -> Codec {
        codec(vec![s])
    }

    fn list(el: Shape) -> Shape {
        let min = el.min_size();
        Shape::List(Box::new(el), min)
    }

    fn flags(n: usize) -> Shape {
        Shape::Flags((0..n).map(|i| format!("f{i}")).collect())
    }

    fn some(v: Val) -> Val {
        Val::Option(Some(Box::new(v)))
    }

    fn s(x: &str) -> Val {
        Val::String(x.into())
    }

    /// Encodes, checks the bytes, decodes them back, and checks that every
    /// strict prefix is incomplete.
    fn check(c: &Codec, vals: &[Val], bytes: &[u8]) {
        let got = c.encode(vals).unwrap_or_else(|e| panic!("{vals:?}: {e}"));
        assert_eq!(got, bytes, "encoding of {vals:?}");
        let (back, n) = c.decode(bytes).unwrap_or_else(|e| panic!("{vals:?}: {e}"));
        assert_eq!(n, bytes.len());
        assert!(
            back.iter().zip(vals).all(|(a, b)| a.eq_nan_aware(b)) && back.len() == vals.len(),
            "{back:?} != {vals:?}"
        );
        all_prefixes_incomplete(c, bytes);
    }

    fn all_prefixes_incomplete(c: &Codec, bytes: &[u8]) {
        for k in 0..bytes.len() {
            match c.decode(&bytes[..k]) {
                Err(DecodeError::Incomplete { needed }) => {
                    assert!(
                        needed > k && needed <= bytes.len(),
                        "needed {needed} at {k}"
                    )
                }
                other => panic!("prefix {:?} of {bytes:?}: {other:?}", &bytes[..k]),
            }
        }
    }

    fn invalid_reason(c: &Codec, bytes: &[u8]) -> String {
        match c.decode(bytes) {
            Err(e @ DecodeError::Invalid { .. }) => e.to_string(),
            other => panic!("{bytes:?}: expected an invalid-input error, got {other:?}"),
        }
    }

    #[test]
    fn known_vectors() {
        check(&one(Shape::String), &[s("hi")], &[2, b'h', b'i']);
        check(&one(Shape::String), &[s("")], &[0]);
        check(&one(Shape::U32), &[Val::U32(300)], &[0xac, 0x02]);
        check(&one(Shape::S32), &[Val::S32(-1)], &[0x7f]);
        check(&one(Shape::S32), &[Val::S32(63)], &[0x3f]);
        check(&one(Shape::S32), &[Val::S32(64)], &[0xc0, 0x00]);
        check(&one(Shape::S32), &[Val::S32(-65)], &[0xbf, 0x7f]);
        check(
            &one(Shape::S32),
            &[Val::S32(i32::MIN)],
            &[0x80, 0x80, 0x80, 0x80, 0x78],
        );
        check(&one(Shape::S16), &[Val::S16(i16::MAX)], &[0xff, 0xff, 0x01]);
        check(&one(Shape::U16), &[Val::U16(u16::MAX)], &[0xff, 0xff, 0x03]);
        let mut u64max = vec![0xff; 9];
        u64max.push(0x01);
        check(&one(Shape::U64), &[Val::U64(u64::MAX)], &u64max);
        let mut s64min = vec![0x80; 9];
        s64min.push(0x7f);
        check(&one(Shape::S64), &[Val::S64(i64::MIN)], &s64min);
        check(&one(Shape::S8), &[Val::S8(-1)], &[0xff]);
        check(&one(Shape::S8), &[Val::S8(-128)], &[0x80]);
        check(&one(Shape::U8), &[Val::U8(200)], &[200]);
        check(&one(Shape::Bool), &[Val::Bool(true)], &[1]);
        check(&one(Shape::F32), &[Val::Float32(1.0)], &[0, 0, 0x80, 0x3f]);
        check(
            &one(Shape::F64),
            &[Val::Float64(-2.0)],
            &[0, 0, 0, 0, 0, 0, 0, 0xc0],
        );
        check(&one(Shape::Char), &[Val::Char('a')], &[0x61]);
        check(&one(Shape::Char), &[Val::Char('λ')], &[0xce, 0xbb]);
        check(&one(Shape::Char), &[Val::Char('€')], &[0xe2, 0x82, 0xac]);
        check(
            &one(Shape::Char),
            &[Val::Char('🦀')],
            &[0xf0, 0x9f, 0xa6, 0x80],
        );
        check(
            &one(Shape::Option(Box::new(Shape::U8))),
            &[some(Val::U8(7))],
            &[1, 7],
        );
        check(
            &one(Shape::Option(Box::new(Shape::U8))),
            &[Val::Option(None)],
            &[0],
        );
        let res = Shape::Result(None, Some(Box::new(Shape::String)));
        check(
            &one(res.clone()),
            &[Val::Result(Err(Some(Box::new(s("x")))))],
            &[1, 1, b'x'],
        );
        check(&one(res), &[Val::Result(Ok(None))], &[0]);
        check(
            &one(Shape::Result(Some(Box::new(Shape::U32)), None)),
            &[Val::Result(Ok(Some(Box::new(Val::U32(5)))))],
            &[0, 5],
        );
        check(
            &one(list(Shape::U16)),
            &[Val::List(vec![Val::U16(1), Val::U16(128)])],
            &[2, 1, 0x80, 0x01],
        );
        check(
            &one(list(Shape::U8)),
            &[Val::List(vec![Val::U8(1), Val::U8(0xff)])],
            &[2, 1, 0xff],
        );
        // A `list<u8>` in the byte form encodes the same, and decodes to it.
        check(
            &one(list(Shape::U8)),
            &[Val::Bytes(vec![1, 0xff])],
            &[2, 1, 0xff],
        );
        let (back, _) = one(list(Shape::U8)).decode(&[2, 1, 0xff]).unwrap();
        assert!(matches!(back.as_slice(), [Val::Bytes(b)] if b == &[1, 0xff]));
        // The byte form where another list is expected is named.
        assert!(one(list(Shape::U16))
            .encode(&[Val::Bytes(vec![1])])
            .is_err());
        check(
            &one(flags(10)),
            &[Val::Flags(vec!["f0".into(), "f9".into()])],
            &[0x01, 0x02],
        );
        check(&one(flags(8)), &[Val::Flags(vec!["f7".into()])], &[0x80]);
        check(
            &one(flags(32)),
            &[Val::Flags(vec!["f31".into()])],
            &[0, 0, 0, 0x80],
        );
        check(
            &one(Shape::Enum(vec!["a".into(), "b".into(), "c".into()])),
            &[Val::Enum("c".into())],
            &[2],
        );
        let var = Shape::Variant(vec![("none".into(), None), ("num".into(), Some(Shape::U8))]);
        check(
            &one(var.clone()),
            &[Val::Variant("num".into(), Some(Box::new(Val::U8(5))))],
            &[1, 5],
        );
        check(&one(var), &[Val::Variant("none".into(), None)], &[0]);
        let rec = Shape::Record(vec![("a".into(), Shape::U8), ("b".into(), Shape::String)]);
        check(
            &one(rec),
            &[Val::Record(vec![
                ("a".into(), Val::U8(1)),
                ("b".into(), s("z")),
            ])],
            &[1, 1, b'z'],
        );
        check(
            &one(Shape::Tuple(vec![Shape::Bool, Shape::S16])),
            &[Val::Tuple(vec![Val::Bool(false), Val::S16(-2)])],
            &[0, 0x7e],
        );
        // A parameter list is the values one after another.
        check(
            &codec(vec![Shape::U32, Shape::String, Shape::Bool]),
            &[Val::U32(1), s("ab"), Val::Bool(true)],
            &[1, 2, b'a', b'b', 1],
        );
        check(&codec(vec![]), &[], &[]);
    }

    #[test]
    fn nan_is_written_canonical_and_read_as_sent() {
        let c = one(Shape::F32);
        let odd = f32::from_bits(0xffc0_1234);
        assert!(odd.is_nan());
        assert_eq!(c.encode(&[Val::Float32(odd)]).unwrap(), [0, 0, 0xc0, 0x7f]);
        let (v, _) = c.decode(&0xffc0_1234u32.to_le_bytes()).unwrap();
        assert!(matches!(v[0], Val::Float32(x) if x.to_bits() == 0xffc0_1234));
        let c = one(Shape::F64);
        assert_eq!(
            c.encode(&[Val::Float64(f64::NAN)]).unwrap(),
            [0, 0, 0, 0, 0, 0, 0xf8, 0x7f]
        );
    }

    #[test]
    fn padded_leb128_is_accepted_overflow_is_not() {
        let dec1 = |s: Shape, b: &[u8]| one(s).decode(b).map(|(v, n)| (v[0].clone(), n));
        assert_eq!(dec1(Shape::U32, &[0x80, 0x00]).unwrap(), (Val::U32(0), 2));
        assert_eq!(
            dec1(Shape::U32, &[0xff, 0xff, 0xff, 0xff, 0x0f]).unwrap(),
            (Val::U32(u32::MAX), 5)
        );
        assert_eq!(
            dec1(Shape::S32, &[0xff, 0xff, 0xff, 0xff, 0x7f]).unwrap(),
            (Val::S32(-1), 5)
        );
        assert_eq!(
            dec1(Shape::S32, &[0xff, 0xff, 0xff, 0xff, 0x07]).unwrap(),
            (Val::S32(i32::MAX), 5)
        );
        for (shape, bytes) in [
            (Shape::U32, &[0xff, 0xff, 0xff, 0xff, 0x10][..]),
            (Shape::U32, &[0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
            (Shape::U16, &[0xff, 0xff, 0x04]),
            (
                Shape::U64,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
            ),
            (Shape::S32, &[0x80, 0x80, 0x80, 0x80, 0x70]),
            (Shape::S32, &[0xff, 0xff, 0xff, 0xff, 0x0f]),
            (Shape::S16, &[0x80, 0x80, 0x02]),
            (
                Shape::S64,
                &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01],
            ),
        ] {
            let e = invalid_reason(&one(shape), bytes);
            assert!(e.contains("LEB128"), "{bytes:?}: {e}");
        }
    }

    #[test]
    fn malformed_input_is_named() {
        let rec = Shape::Record(vec![
            ("id".into(), Shape::U32),
            ("name".into(), Shape::String),
        ]);
        let e = invalid_reason(
            &codec(vec![Shape::Bool, list(rec)]),
            &[1, 1, 7, 2, b'o', 0xff],
        );
        assert_eq!(
            e,
            "value 1: list element 0: record field `name`: string is not UTF-8 (at byte 5)"
        );
        let cases: &[(Shape, &[u8], &str)] = &[
            (Shape::Bool, &[2], "bool byte 0x02"),
            (Shape::Option(Box::new(Shape::U8)), &[2], "option tag"),
            (Shape::Result(None, None), &[3], "result tag"),
            (
                Shape::Enum(vec!["a".into(), "b".into()]),
                &[2],
                "enum case index 2 is out of range",
            ),
            (
                Shape::Variant(vec![("a".into(), None)]),
                &[0x80, 0x01],
                "variant case index 128",
            ),
            (flags(10), &[0, 0x04], "beyond the type's 10 flags"),
            (flags(3), &[0x08], "beyond the type's 3 flags"),
            (Shape::Char, &[0xff], "char"),
            (Shape::Char, &[0x80], "char"),
            (Shape::Char, &[0xc3, 0x41], "char"),
            (Shape::Char, &[0xed, 0xa0, 0x80], "char"), // a surrogate
            (Shape::Char, &[0xc0, 0x80], "char"),       // overlong
            (Shape::Char, &[0xf4, 0x90, 0x80, 0x80], "char"), // > U+10FFFF
            (Shape::String, &[1, 0x80], "not UTF-8"),
            (
                Shape::Unsupported("resources cannot be sent over wRPC by twig yet".into()),
                &[0],
                "resources cannot",
            ),
        ];
        for (shape, bytes, want) in cases {
            let e = invalid_reason(&one(shape.clone()), bytes);
            assert!(e.contains(want), "{bytes:?}: `{e}` lacks `{want}`");
        }
        // Where it happened: inside an option inside a variant.
        let var = Shape::Variant(vec![
            ("x".into(), None),
            ("y".into(), Some(Shape::Option(Box::new(Shape::Bool)))),
        ]);
        assert_eq!(
            invalid_reason(&one(var), &[1, 1, 9]),
            "value 0: variant case `y`: option payload: bool byte 0x09 is neither 0 nor 1 (at byte 2)"
        );
    }

    #[test]
    fn hostile_lengths_wait_or_fail_without_allocating() {
        // 2^32 - 1 strings announced in 5 bytes: incomplete, and the caller
        // learns how much it would have to buffer.
        let c = one(list(Shape::String));
        match c.decode(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0]) {
            Err(DecodeError::Incomplete { needed }) => assert!(needed >= u32::MAX as usize),
            other => panic!("{other:?}"),
        }
        match one(Shape::String).decode(&[0xff, 0xff, 0xff, 0xff, 0x0f, b'a']) {
            Err(DecodeError::Incomplete { needed }) => assert_eq!(needed, 5 + u32::MAX as usize),
            other => panic!("{other:?}"),
        }
        // A list whose elements take no bytes must not turn a few bytes
        // into billions of values.
        let e = invalid_reason(
            &one(list(Shape::Record(vec![]))),
            &[0xff, 0xff, 0xff, 0xff, 0x0f],
        );
        assert!(e.contains("too long"), "{e}");
        let (v, n) = one(list(Shape::Record(vec![]))).decode(&[3]).unwrap();
        assert_eq!(
            (v[0].clone(), n),
            (Val::List(vec![Val::Record(vec![]); 3]), 1)
        );
    }

    #[test]
    fn trailing_bytes_are_left_alone() {
        let (v, n) = one(Shape::U8).decode(&[7, 8, 9]).unwrap();
        assert_eq!((v, n), (vec![Val::U8(7)], 1));
    }

    #[test]
    fn encode_errors_name_the_value_and_part() {
        let rec = Shape::Record(vec![
            ("id".into(), Shape::U32),
            ("tags".into(), list(Shape::String)),
        ]);
        let c = codec(vec![Shape::U8, rec]);
        let good_rec = |tags: Vec<Val>| {
            Val::Record(vec![
                ("id".into(), Val::U32(1)),
                ("tags".into(), Val::List(tags)),
            ])
        };
        assert_eq!(
            c.encode(&[Val::U8(1)]).unwrap_err(),
            EncodeError::Count {
                expected: 2,
                got: 1
            }
        );
        let e = c
            .encode(&[Val::U8(1), good_rec(vec![s("a"), Val::U32(3)])])
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "value 1: record field `tags`: list element 1: type mismatch: a u32 value given where string was expected"
        );
        let e = c
            .encode(&[
                Val::U8(1),
                Val::Record(vec![
                    ("tags".into(), Val::List(vec![])),
                    ("id".into(), Val::U32(1)),
                ]),
            ])
            .unwrap_err();
        assert!(e.to_string().contains("`tags` where `id`"), "{e}");
        let mut out = vec![9];
        assert!(c.encode_into(&[Val::U8(1), Val::U8(2)], &mut out).is_err());
        assert_eq!(out, [9], "a failed encode leaves the buffer alone");

        let bad: &[(Shape, Val, &str)] = &[
            (
                flags(3),
                Val::Flags(vec!["nope".into()]),
                "unknown flag `nope`",
            ),
            (
                Shape::Enum(vec!["a".into()]),
                Val::Enum("b".into()),
                "unknown enum case `b`",
            ),
            (
                Shape::Variant(vec![("a".into(), Some(Shape::U8))]),
                Val::Variant("a".into(), None),
                "needs a payload",
            ),
            (
                Shape::Variant(vec![("a".into(), None)]),
                Val::Variant("a".into(), Some(Box::new(Val::U8(1)))),
                "takes no payload",
            ),
            (
                Shape::Result(None, Some(Box::new(Shape::U8))),
                Val::Result(Ok(Some(Box::new(Val::U8(1))))),
                "result ok takes no payload",
            ),
            (
                Shape::Result(None, Some(Box::new(Shape::U8))),
                Val::Result(Err(None)),
                "result err needs a payload",
            ),
            (
                Shape::Tuple(vec![Shape::U8]),
                Val::Tuple(vec![]),
                "tuple has 0 elements",
            ),
            (
                Shape::U32,
                Val::Resource(crate::Resource::host_own(0, 1)),
                "a resource value given where u32",
            ),
            (
                Shape::Unsupported("resources cannot be sent over wRPC by twig yet".into()),
                Val::Resource(crate::Resource::host_own(0, 1)),
                "resources cannot be sent",
            ),
        ];
        for (shape, val, want) in bad {
            let e = one(shape.clone())
                .encode(std::slice::from_ref(val))
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{val:?}: `{e}` lacks `{want}`");
        }
    }

    #[test]
    fn unsupported_types_are_found_before_a_call() {
        let c = codec(vec![
            Shape::U8,
            Shape::Record(vec![(
                "r".into(),
                Shape::Option(Box::new(Shape::Unsupported("no".into()))),
            )]),
        ]);
        assert_eq!(
            c.unsupported().as_deref(),
            Some("value 1: record field `r`: option payload: no")
        );
        assert_eq!(one(list(Shape::String)).unsupported(), None);
        // `none` of such an option still travels.
        assert_eq!(
            one(Shape::Option(Box::new(Shape::Unsupported("no".into()))))
                .encode(&[Val::Option(None)])
                .unwrap(),
            [0]
        );
    }

    /// A small deterministic PRNG (xorshift64*).
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
    }

    fn rich() -> Codec {
        let shape = Shape::Variant(vec![
            ("none".into(), None),
            ("s".into(), Some(Shape::String)),
            ("c".into(), Some(Shape::Char)),
            ("f".into(), Some(flags(12))),
            ("e".into(), Some(Shape::Enum(vec!["a".into(), "b".into()]))),
        ]);
        let rec = Shape::Record(vec![
            ("a".into(), Shape::S64),
            ("b".into(), list(shape.clone())),
            (
                "c".into(),
                Shape::Result(
                    Some(Box::new(Shape::Option(Box::new(Shape::F32)))),
                    Some(Box::new(list(Shape::U8))),
                ),
            ),
            (
                "d".into(),
                Shape::Tuple(vec![Shape::U16, Shape::Bool, Shape::F64]),
            ),
        ]);
        codec(vec![list(rec), shape, Shape::S16, Shape::U64])
    }

    #[test]
    fn random_bytes_never_panic_and_what_decodes_reencodes() {
        let c = rich();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let (mut ok, mut incomplete, mut invalid) = (0, 0, 0);
        for _ in 0..20_000 {
            let len = (rng.next() % 48) as usize;
            // Small values make valid tags and lengths likely.
            let bytes: Vec<u8> = (0..len)
                .map(|_| match rng.next() % 4 {
                    0 => (rng.next() % 3) as u8,
                    _ => rng.next() as u8,
                })
                .collect();
            match c.decode(&bytes) {
                Ok((vals, n)) => {
                    ok += 1;
                    assert!(n <= bytes.len());
                    let again = c.encode(&vals).expect("decoded values re-encode");
                    let (back, m) = c.decode(&again).expect("re-encoded values decode");
                    assert_eq!(m, again.len());
                    assert!(back.iter().zip(&vals).all(|(a, b)| a.eq_nan_aware(b)));
                }
                Err(DecodeError::Incomplete { needed }) => {
                    incomplete += 1;
                    assert!(needed > bytes.len());
                }
                Err(DecodeError::Invalid { offset, .. }) => {
                    invalid += 1;
                    assert!(offset < bytes.len().max(1));
                }
            }
        }
        assert!(
            ok > 0 && incomplete > 0 && invalid > 0,
            "{ok} {incomplete} {invalid}"
        );
    }

    #[test]
    fn values_as_deep_as_the_type_limit_decode() {
        // Built by hand: `Shape::of` turns anything deeper into `Unsupported`.
        let mut s = Shape::U8;
        for _ in 0..MAX_DEPTH {
            s = Shape::Option(Box::new(s));
        }
        let mut bytes = vec![1u8; MAX_DEPTH as usize];
        bytes.push(3);
        let (v, n) = one(s).decode(&bytes).unwrap();
        assert_eq!(n, bytes.len());
        assert!(matches!(v[0], Val::Option(Some(_))));
    }
}
