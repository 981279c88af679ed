//! The canonical ABI: moving [`Val`]s in and out of a guest.
//!
//! *Lifting* reads a value the guest produced (core wasm values plus linear
//! memory) into a [`Val`]; *lowering* writes a [`Val`] into the guest's
//! representation, calling the guest's `cabi_realloc` for strings and lists.
//! The rules follow the component model's `CanonicalABI.md`: flattening with
//! joined variant slots, `MAX_FLAT_PARAMS` = 16 and `MAX_FLAT_RESULTS` = 1
//! before values spill to memory, alignment and bounds traps, and resource
//! handle tables. Sizes, alignments and variant layouts come precomputed from
//! `wasmtime-environ`'s type information.
//!
//! Every failure is a `wasmi::Error` carrying an [`AbiError`], so that a guest
//! that hands over a bad pointer traps like any other wasm fault.

use wasmi::{AsContext, AsContextMut, Func, Memory, StoreContextMut, Val as CoreVal};
use wasmi::{F32, F64};
use wasmtime_environ::component::{
    CanonicalAbiInfo, ComponentTypes, InterfaceType, RuntimeComponentInstanceIndex, StringEncoding,
    TypeResourceTable, TypeResourceTableIndex, VariantInfo,
};

use crate::component::ComponentInner;
use crate::error::AbiError;
use crate::store::{Handle, StoreData};
use crate::values::{Resource, Val};

pub(crate) type AbiResult<T> = Result<T, wasmi::Error>;

pub(crate) fn abi_err(msg: impl Into<String>) -> wasmi::Error {
    wasmi::Error::host(AbiError(msg.into()))
}

macro_rules! bail {
    ($($arg:tt)*) => { return Err(abi_err(format!($($arg)*))) };
}

/// Core wasm value types of the flattened representation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flat {
    I32,
    I64,
    F32,
    F64,
}

impl Flat {
    fn join(a: Flat, b: Flat) -> Flat {
        match (a, b) {
            _ if a == b => a,
            (Flat::I32, Flat::F32) | (Flat::F32, Flat::I32) => Flat::I32,
            _ => Flat::I64,
        }
    }

    fn zero(self) -> CoreVal {
        match self {
            Flat::I32 => CoreVal::I32(0),
            Flat::I64 => CoreVal::I64(0),
            Flat::F32 => CoreVal::F32(F32::from_bits(0)),
            Flat::F64 => CoreVal::F64(F64::from_bits(0)),
        }
    }
}

/// Appends the flattened core types of `ty` to `out`.
pub(crate) fn flatten(types: &ComponentTypes, ty: &InterfaceType, out: &mut Vec<Flat>) {
    match ty {
        InterfaceType::Bool
        | InterfaceType::S8
        | InterfaceType::U8
        | InterfaceType::S16
        | InterfaceType::U16
        | InterfaceType::S32
        | InterfaceType::U32
        | InterfaceType::Char
        | InterfaceType::Own(_)
        | InterfaceType::Borrow(_)
        | InterfaceType::Future(_)
        | InterfaceType::Stream(_)
        | InterfaceType::ErrorContext(_) => out.push(Flat::I32),
        InterfaceType::S64 | InterfaceType::U64 => out.push(Flat::I64),
        InterfaceType::Float32 => out.push(Flat::F32),
        InterfaceType::Float64 => out.push(Flat::F64),
        InterfaceType::String | InterfaceType::List(_) | InterfaceType::Map(_) => {
            out.extend([Flat::I32, Flat::I32])
        }
        InterfaceType::Record(i) => {
            for f in types[*i].fields.iter() {
                flatten(types, &f.ty, out);
            }
        }
        InterfaceType::Tuple(i) => {
            for t in types[*i].types.iter() {
                flatten(types, t, out);
            }
        }
        InterfaceType::FixedLengthList(i) => {
            let t = &types[*i];
            for _ in 0..t.size {
                flatten(types, &t.element, out);
            }
        }
        InterfaceType::Flags(i) => {
            let n = types[*i].names.len();
            out.extend(std::iter::repeat_n(Flat::I32, n.div_ceil(32)));
        }
        InterfaceType::Enum(_) => out.push(Flat::I32),
        InterfaceType::Variant(_) | InterfaceType::Option(_) | InterfaceType::Result(_) => {
            out.push(Flat::I32);
            let joined = joined_payload(types, ty);
            out.extend(joined);
        }
    }
}

/// The payload cases of a variant-like type, in case order.
fn cases<'t>(types: &'t ComponentTypes, ty: &'t InterfaceType) -> Vec<Option<&'t InterfaceType>> {
    match ty {
        InterfaceType::Variant(i) => types[*i].cases.values().map(|c| c.as_ref()).collect(),
        InterfaceType::Option(i) => vec![None, Some(&types[*i].ty)],
        InterfaceType::Result(i) => vec![types[*i].ok.as_ref(), types[*i].err.as_ref()],
        InterfaceType::Enum(i) => types[*i].names.iter().map(|_| None).collect(),
        _ => Vec::new(),
    }
}

fn joined_payload(types: &ComponentTypes, ty: &InterfaceType) -> Vec<Flat> {
    let mut joined: Vec<Flat> = Vec::new();
    let mut scratch = Vec::new();
    for case in cases(types, ty).into_iter().flatten() {
        scratch.clear();
        flatten(types, case, &mut scratch);
        for (i, f) in scratch.iter().enumerate() {
            match joined.get_mut(i) {
                Some(j) => *j = Flat::join(*j, *f),
                None => joined.push(*f),
            }
        }
    }
    joined
}

pub(crate) fn flat_count(types: &ComponentTypes, tys: &[InterfaceType]) -> usize {
    let mut v = Vec::new();
    for t in tys {
        flatten(types, t, &mut v);
    }
    v.len()
}

/// Size/alignment information of a type in a 32-bit memory.
pub(crate) fn abi_info<'t>(types: &'t ComponentTypes, ty: &InterfaceType) -> &'t CanonicalAbiInfo {
    types.canonical_abi(ty)
}

fn variant_info<'t>(types: &'t ComponentTypes, ty: &InterfaceType) -> Option<&'t VariantInfo> {
    match ty {
        InterfaceType::Variant(i) => Some(&types[*i].info),
        InterfaceType::Option(i) => Some(&types[*i].info),
        InterfaceType::Result(i) => Some(&types[*i].info),
        InterfaceType::Enum(i) => Some(&types[*i].info),
        _ => None,
    }
}

/// Bytes of a variant's discriminant in memory, by its number of cases.
fn discriminant_bytes(cases: usize) -> u32 {
    if cases <= 1 << 8 {
        1
    } else if cases <= 1 << 16 {
        2
    } else {
        4
    }
}

fn align_to(v: u32, align: u32) -> u32 {
    v.div_ceil(align) * align
}

/// Reads flat core values one at a time.
pub(crate) struct FlatReader<'v> {
    vals: &'v [CoreVal],
    pos: usize,
}

impl<'v> FlatReader<'v> {
    pub fn new(vals: &'v [CoreVal]) -> Self {
        FlatReader { vals, pos: 0 }
    }

    fn next(&mut self) -> AbiResult<&'v CoreVal> {
        let v = self
            .vals
            .get(self.pos)
            .ok_or_else(|| abi_err("too few core values"))?;
        self.pos += 1;
        Ok(v)
    }

    fn i32(&mut self) -> AbiResult<i32> {
        match self.next()? {
            CoreVal::I32(v) => Ok(*v),
            other => bail!("expected i32 core value, found {other:?}"),
        }
    }

    fn i64(&mut self) -> AbiResult<i64> {
        match self.next()? {
            CoreVal::I64(v) => Ok(*v),
            other => bail!("expected i64 core value, found {other:?}"),
        }
    }

    fn f32(&mut self) -> AbiResult<f32> {
        match self.next()? {
            CoreVal::F32(v) => Ok(f32::from(*v)),
            other => bail!("expected f32 core value, found {other:?}"),
        }
    }

    fn f64(&mut self) -> AbiResult<f64> {
        match self.next()? {
            CoreVal::F64(v) => Ok(f64::from(*v)),
            other => bail!("expected f64 core value, found {other:?}"),
        }
    }

    fn take(&mut self, n: usize) -> AbiResult<&'v [CoreVal]> {
        let s = self
            .vals
            .get(self.pos..self.pos + n)
            .ok_or_else(|| abi_err("too few core values"))?;
        self.pos += n;
        Ok(s)
    }
}

/// Converts a value of a joined variant slot back to the case's own type.
fn coerce_from_joined(v: &CoreVal, want: Flat) -> AbiResult<CoreVal> {
    Ok(match (v, want) {
        (CoreVal::I32(x), Flat::I32) => CoreVal::I32(*x),
        (CoreVal::I64(x), Flat::I64) => CoreVal::I64(*x),
        (CoreVal::F32(x), Flat::F32) => CoreVal::F32(*x),
        (CoreVal::F64(x), Flat::F64) => CoreVal::F64(*x),
        (CoreVal::I32(x), Flat::F32) => CoreVal::F32(F32::from_bits(*x as u32)),
        (CoreVal::I64(x), Flat::I32) => CoreVal::I32(*x as i32),
        (CoreVal::I64(x), Flat::F32) => CoreVal::F32(F32::from_bits(*x as u32)),
        (CoreVal::I64(x), Flat::F64) => CoreVal::F64(F64::from_bits(*x as u64)),
        (v, want) => bail!("cannot read {want:?} from joined slot {v:?}"),
    })
}

/// Converts a case's flat value into the joined slot type.
fn coerce_to_joined(v: CoreVal, joined: Flat) -> CoreVal {
    match (v, joined) {
        (CoreVal::I32(x), Flat::I64) => CoreVal::I64(x as u32 as i64),
        (CoreVal::F32(x), Flat::I32) => CoreVal::I32(x.to_bits() as i32),
        (CoreVal::F32(x), Flat::I64) => CoreVal::I64(x.to_bits() as i64),
        (CoreVal::F64(x), Flat::I64) => CoreVal::I64(x.to_bits() as i64),
        (v, _) => v,
    }
}

/// Everything lifting and lowering need besides the store: the component's
/// types and the canonical options (memory, realloc, string encoding) of the
/// lift or lower site.
pub(crate) struct Cx<'a> {
    pub comp: &'a ComponentInner,
    pub memory: Option<Memory>,
    pub realloc: Option<Func>,
    pub encoding: StringEncoding,
}

type Ctx<'s, T> = StoreContextMut<'s, StoreData<T>>;

impl Cx<'_> {
    fn types(&self) -> &ComponentTypes {
        &self.comp.types
    }

    fn memory(&self) -> AbiResult<Memory> {
        self.memory
            .ok_or_else(|| abi_err("canonical options name no memory, but the type needs one"))
    }

    /// Bounds-checked view of `len` bytes of guest memory at `ptr`.
    fn bytes<'s, T>(&self, ctx: &'s Ctx<'_, T>, ptr: u32, len: u32) -> AbiResult<&'s [u8]> {
        let mem = self.memory()?.data(ctx.as_context());
        let end = (ptr as usize)
            .checked_add(len as usize)
            .ok_or_else(|| abi_err("pointer overflow"))?;
        mem.get(ptr as usize..end).ok_or_else(|| {
            abi_err(format!(
                "out-of-bounds memory access: {len} bytes at {ptr:#x} (memory is {:#x} bytes)",
                mem.len()
            ))
        })
    }

    fn bytes_mut<'s, T>(
        &self,
        ctx: &'s mut Ctx<'_, T>,
        ptr: u32,
        len: u32,
    ) -> AbiResult<&'s mut [u8]> {
        let mem = self.memory()?.data_mut(ctx.as_context_mut());
        let size = mem.len();
        let end = (ptr as usize)
            .checked_add(len as usize)
            .ok_or_else(|| abi_err("pointer overflow"))?;
        mem.get_mut(ptr as usize..end).ok_or_else(|| {
            abi_err(format!(
                "out-of-bounds memory access: {len} bytes at {ptr:#x} (memory is {size:#x} bytes)"
            ))
        })
    }

    fn load_n<T, const N: usize>(&self, ctx: &Ctx<'_, T>, ptr: u32) -> AbiResult<[u8; N]> {
        let b = self.bytes(ctx, ptr, N as u32)?;
        let mut a = [0u8; N];
        a.copy_from_slice(b);
        Ok(a)
    }

    fn load_u32<T>(&self, ctx: &Ctx<'_, T>, ptr: u32) -> AbiResult<u32> {
        Ok(u32::from_le_bytes(self.load_n(ctx, ptr)?))
    }

    fn store_bytes<T>(&self, ctx: &mut Ctx<'_, T>, ptr: u32, data: &[u8]) -> AbiResult<()> {
        self.bytes_mut(ctx, ptr, data.len() as u32)?
            .copy_from_slice(data);
        Ok(())
    }

    /// Calls the guest's `cabi_realloc(0, 0, align, size)` and checks the
    /// block it returns.
    pub fn realloc<T>(&self, ctx: &mut Ctx<'_, T>, align: u32, size: u32) -> AbiResult<u32> {
        let f = self.realloc.ok_or_else(|| {
            abi_err("canonical options name no realloc, but a value needs guest memory")
        })?;
        top_up_fuel(ctx)?;
        let mut out = [CoreVal::I32(0)];
        f.call(
            ctx.as_context_mut(),
            &[
                CoreVal::I32(0),
                CoreVal::I32(0),
                CoreVal::I32(align as i32),
                CoreVal::I32(size as i32),
            ],
            &mut out,
        )?;
        let ptr = match out[0] {
            CoreVal::I32(p) => p as u32,
            _ => bail!("realloc returned a non-i32"),
        };
        if !ptr.is_multiple_of(align) {
            bail!("realloc returned a misaligned pointer {ptr:#x} (alignment {align})");
        }
        self.bytes(ctx, ptr, size)?;
        Ok(ptr)
    }

    // ---- lifting -------------------------------------------------------

    /// Charges `bytes` the host is about to allocate for a lifted value to
    /// the crossing's lift budget ([`crate::store::LiftBudget`]).
    fn charge<T>(&self, ctx: &mut Ctx<'_, T>, bytes: usize) -> AbiResult<()> {
        ctx.data_mut()
            .rt
            .lift
            .charge(bytes)
            .map_err(wasmi::Error::host)
    }

    /// Lifts a value of type `ty` from flat core values.
    pub fn lift_flat<T>(
        &self,
        ctx: &mut Ctx<'_, T>,
        ty: &InterfaceType,
        src: &mut FlatReader<'_>,
    ) -> AbiResult<Val> {
        let types = self.types();
        Ok(match ty {
            InterfaceType::Bool => Val::Bool(src.i32()? != 0),
            InterfaceType::S8 => Val::S8(src.i32()? as i8),
            InterfaceType::U8 => Val::U8(src.i32()? as u8),
            InterfaceType::S16 => Val::S16(src.i32()? as i16),
            InterfaceType::U16 => Val::U16(src.i32()? as u16),
            InterfaceType::S32 => Val::S32(src.i32()?),
            InterfaceType::U32 => Val::U32(src.i32()? as u32),
            InterfaceType::S64 => Val::S64(src.i64()?),
            InterfaceType::U64 => Val::U64(src.i64()? as u64),
            InterfaceType::Float32 => Val::Float32(src.f32()?),
            InterfaceType::Float64 => Val::Float64(src.f64()?),
            InterfaceType::Char => Val::Char(to_char(src.i32()? as u32)?),
            InterfaceType::String => {
                let ptr = src.i32()? as u32;
                let len = src.i32()? as u32;
                Val::String(self.load_string(ctx, ptr, len)?)
            }
            InterfaceType::List(i) => {
                let ptr = src.i32()? as u32;
                let len = src.i32()? as u32;
                self.load_list(ctx, &types[*i].element, ptr, len)?
            }
            InterfaceType::Record(i) => {
                self.charge(ctx, record_cost(types, *i))?;
                let mut fields = Vec::with_capacity(types[*i].fields.len());
                for f in types[*i].fields.iter() {
                    fields.push((f.name.clone(), self.lift_flat(ctx, &f.ty, src)?));
                }
                Val::Record(fields)
            }
            InterfaceType::Tuple(i) => {
                self.charge(ctx, vals_cost(types[*i].types.len()))?;
                let mut vals = Vec::with_capacity(types[*i].types.len());
                for t in types[*i].types.iter() {
                    vals.push(self.lift_flat(ctx, t, src)?);
                }
                Val::Tuple(vals)
            }
            InterfaceType::Flags(i) => {
                let n = types[*i].names.len();
                let mut words = Vec::with_capacity(n.div_ceil(32));
                for _ in 0..n.div_ceil(32) {
                    words.push(src.i32()? as u32);
                }
                self.flags_from_words(ctx, *i, &words)?
            }
            InterfaceType::Enum(_)
            | InterfaceType::Variant(_)
            | InterfaceType::Option(_)
            | InterfaceType::Result(_) => {
                let disc = src.i32()? as u32;
                let joined = joined_payload(types, ty);
                let slots = src.take(joined.len())?;
                let cases = cases(types, ty);
                let case = *cases.get(disc as usize).ok_or_else(|| {
                    abi_err(format!(
                        "variant discriminant {disc} out of range ({} cases)",
                        cases.len()
                    ))
                })?;
                self.charge(ctx, self.variant_cost(ty, disc, case.is_some()))?;
                let payload = match case {
                    None => None,
                    Some(cty) => {
                        let mut want = Vec::new();
                        flatten(types, cty, &mut want);
                        let mut vals = Vec::with_capacity(want.len());
                        for (slot, w) in slots.iter().zip(&want) {
                            vals.push(coerce_from_joined(slot, *w)?);
                        }
                        Some(self.lift_flat(ctx, cty, &mut FlatReader::new(&vals))?)
                    }
                };
                self.make_variant(ty, disc, payload)
            }
            InterfaceType::Own(t) => self.lift_own(ctx, *t, src.i32()? as u32)?,
            InterfaceType::Borrow(t) => self.lift_borrow(ctx, *t, src.i32()? as u32)?,
            other => bail!("values of type {other:?} are not supported"),
        })
    }

    fn make_variant(&self, ty: &InterfaceType, disc: u32, payload: Option<Val>) -> Val {
        let types = self.types();
        let boxed = payload.map(Box::new);
        match ty {
            InterfaceType::Enum(i) => Val::Enum(types[*i].names[disc as usize].clone()),
            InterfaceType::Variant(i) => {
                let (name, _) = types[*i]
                    .cases
                    .get_index(disc as usize)
                    .expect("discriminant checked");
                Val::Variant(name.clone(), boxed)
            }
            InterfaceType::Option(_) => Val::Option(if disc == 0 { None } else { boxed }),
            InterfaceType::Result(_) => Val::Result(if disc == 0 { Ok(boxed) } else { Err(boxed) }),
            _ => unreachable!("make_variant on a non-variant type"),
        }
    }

    /// Host bytes of a lifted variant-like value beyond its own `Val`: the
    /// case name (variants and enums) and the boxed payload.
    fn variant_cost(&self, ty: &InterfaceType, disc: u32, payload: bool) -> usize {
        let types = self.types();
        let name = match ty {
            InterfaceType::Enum(i) if (disc as usize) < types[*i].names.len() => {
                types[*i].names[disc as usize].len()
            }
            InterfaceType::Variant(i) => types[*i]
                .cases
                .get_index(disc as usize)
                .map_or(0, |(n, _)| n.len()),
            _ => 0,
        };
        name + if payload { VAL_BYTES } else { 0 }
    }

    fn flags_from_words<T>(
        &self,
        ctx: &mut Ctx<'_, T>,
        i: wasmtime_environ::component::TypeFlagsIndex,
        words: &[u32],
    ) -> AbiResult<Val> {
        let names = &self.types()[i].names;
        let set: Vec<String> = names
            .iter()
            .enumerate()
            .filter(|(bit, _)| words[bit / 32] & (1 << (bit % 32)) != 0)
            .map(|(_, n)| n.clone())
            .collect();
        self.charge(
            ctx,
            set.iter()
                .map(|n| n.len() + std::mem::size_of::<String>())
                .sum(),
        )?;
        Ok(Val::Flags(set))
    }

    fn load_string<T>(&self, ctx: &mut Ctx<'_, T>, ptr: u32, len: u32) -> AbiResult<String> {
        // Charged before reading: the length is the guest's claim, checked
        // against its memory only afterwards. UTF-16 is charged its
        // intermediate buffer of code units (at most 1.5 times less than
        // the UTF-8 result).
        let cost = match self.encoding {
            StringEncoding::Utf8 => len as usize,
            StringEncoding::Utf16 => (len as usize).saturating_mul(2),
            StringEncoding::CompactUtf16 => (len as usize & !(1 << 31)).saturating_mul(2),
        };
        self.charge(ctx, cost)?;
        match self.encoding {
            StringEncoding::Utf8 => {
                let b = self.bytes(ctx, ptr, len)?;
                match std::str::from_utf8(b) {
                    Ok(s) => Ok(s.to_string()),
                    Err(e) => bail!("string at {ptr:#x} is not valid UTF-8: {e}"),
                }
            }
            StringEncoding::Utf16 => self.load_utf16(ctx, ptr, len),
            StringEncoding::CompactUtf16 => {
                const UTF16_TAG: u32 = 1 << 31;
                if len & UTF16_TAG != 0 {
                    self.load_utf16(ctx, ptr, len & !UTF16_TAG)
                } else {
                    let b = self.bytes(ctx, ptr, len)?;
                    Ok(b.iter().map(|&c| c as char).collect())
                }
            }
        }
    }

    fn load_utf16<T>(&self, ctx: &Ctx<'_, T>, ptr: u32, units: u32) -> AbiResult<String> {
        if !ptr.is_multiple_of(2) {
            bail!("UTF-16 string pointer {ptr:#x} is not 2-aligned");
        }
        let nbytes = units
            .checked_mul(2)
            .ok_or_else(|| abi_err("string length overflow"))?;
        let b = self.bytes(ctx, ptr, nbytes)?;
        let units: Vec<u16> = b
            .chunks_exact(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        String::from_utf16(&units)
            .map_err(|e| abi_err(format!("string at {ptr:#x} is not valid UTF-16: {e}")))
    }

    fn load_list<T>(
        &self,
        ctx: &mut Ctx<'_, T>,
        elem: &InterfaceType,
        ptr: u32,
        len: u32,
    ) -> AbiResult<Val> {
        let info = abi_info(self.types(), elem);
        if !ptr.is_multiple_of(info.align32) {
            bail!("list pointer {ptr:#x} is not aligned to {}", info.align32);
        }
        // Charge what the host is about to hold before anything else, so a
        // length the guest does not have (or a list of zero-sized elements)
        // is refused by the budget, naming it, before any allocation.
        let is_bytes = matches!(elem, InterfaceType::U8);
        self.charge(
            ctx,
            if is_bytes {
                len as usize
            } else {
                vals_cost(len as usize)
            },
        )?;
        let total = len
            .checked_mul(info.size32)
            .ok_or_else(|| abi_err("list length overflow"))?;
        // Bounds-check the whole list before reading any element.
        let whole = self.bytes(ctx, ptr, total)?;
        if is_bytes {
            // One copy, one byte per byte.
            return Ok(Val::Bytes(whole.to_vec()));
        }
        let mut out = Vec::with_capacity(len as usize);
        for k in 0..len {
            out.push(self.load(ctx, elem, ptr + k * info.size32)?);
        }
        Ok(Val::List(out))
    }

    /// Lifts a value of type `ty` stored in guest memory at `ptr`.
    pub fn load<T>(&self, ctx: &mut Ctx<'_, T>, ty: &InterfaceType, ptr: u32) -> AbiResult<Val> {
        let types = self.types();
        Ok(match ty {
            InterfaceType::Bool => Val::Bool(self.load_n::<T, 1>(ctx, ptr)?[0] != 0),
            InterfaceType::S8 => Val::S8(self.load_n::<T, 1>(ctx, ptr)?[0] as i8),
            InterfaceType::U8 => Val::U8(self.load_n::<T, 1>(ctx, ptr)?[0]),
            InterfaceType::S16 => Val::S16(i16::from_le_bytes(self.load_n(ctx, ptr)?)),
            InterfaceType::U16 => Val::U16(u16::from_le_bytes(self.load_n(ctx, ptr)?)),
            InterfaceType::S32 => Val::S32(i32::from_le_bytes(self.load_n(ctx, ptr)?)),
            InterfaceType::U32 => Val::U32(u32::from_le_bytes(self.load_n(ctx, ptr)?)),
            InterfaceType::S64 => Val::S64(i64::from_le_bytes(self.load_n(ctx, ptr)?)),
            InterfaceType::U64 => Val::U64(u64::from_le_bytes(self.load_n(ctx, ptr)?)),
            InterfaceType::Float32 => Val::Float32(f32::from_le_bytes(self.load_n(ctx, ptr)?)),
            InterfaceType::Float64 => Val::Float64(f64::from_le_bytes(self.load_n(ctx, ptr)?)),
            InterfaceType::Char => Val::Char(to_char(self.load_u32(ctx, ptr)?)?),
            InterfaceType::String => {
                let p = self.load_u32(ctx, ptr)?;
                let l = self.load_u32(ctx, ptr + 4)?;
                Val::String(self.load_string(ctx, p, l)?)
            }
            InterfaceType::List(i) => {
                let p = self.load_u32(ctx, ptr)?;
                let l = self.load_u32(ctx, ptr + 4)?;
                self.load_list(ctx, &types[*i].element, p, l)?
            }
            InterfaceType::Record(i) => {
                self.charge(ctx, record_cost(types, *i))?;
                let mut off = 0u32;
                let mut fields = Vec::with_capacity(types[*i].fields.len());
                for f in types[*i].fields.iter() {
                    let at = abi_info(types, &f.ty).next_field32(&mut off);
                    fields.push((f.name.clone(), self.load(ctx, &f.ty, ptr + at)?));
                }
                Val::Record(fields)
            }
            InterfaceType::Tuple(i) => {
                self.charge(ctx, vals_cost(types[*i].types.len()))?;
                let mut off = 0u32;
                let mut vals = Vec::with_capacity(types[*i].types.len());
                for t in types[*i].types.iter() {
                    let at = abi_info(types, t).next_field32(&mut off);
                    vals.push(self.load(ctx, t, ptr + at)?);
                }
                Val::Tuple(vals)
            }
            InterfaceType::Flags(i) => {
                let n = types[*i].names.len();
                let words: Vec<u32> = if n <= 8 {
                    vec![self.load_n::<T, 1>(ctx, ptr)?[0] as u32]
                } else if n <= 16 {
                    vec![u16::from_le_bytes(self.load_n(ctx, ptr)?) as u32]
                } else {
                    let mut w = Vec::with_capacity(n.div_ceil(32));
                    for k in 0..n.div_ceil(32) as u32 {
                        w.push(self.load_u32(ctx, ptr + 4 * k)?);
                    }
                    w
                };
                self.flags_from_words(ctx, *i, &words)?
            }
            InterfaceType::Enum(_)
            | InterfaceType::Variant(_)
            | InterfaceType::Option(_)
            | InterfaceType::Result(_) => {
                let info = variant_info(types, ty).expect("variant-like type");
                let cases = cases(types, ty);
                let disc = match discriminant_bytes(cases.len()) {
                    1 => self.load_n::<T, 1>(ctx, ptr)?[0] as u32,
                    2 => u16::from_le_bytes(self.load_n(ctx, ptr)?) as u32,
                    _ => self.load_u32(ctx, ptr)?,
                };
                let case = *cases.get(disc as usize).ok_or_else(|| {
                    abi_err(format!(
                        "variant discriminant {disc} out of range ({} cases)",
                        cases.len()
                    ))
                })?;
                self.charge(ctx, self.variant_cost(ty, disc, case.is_some()))?;
                let payload = match case {
                    None => None,
                    Some(cty) => Some(self.load(ctx, cty, ptr + info.payload_offset32)?),
                };
                self.make_variant(ty, disc, payload)
            }
            InterfaceType::Own(t) => {
                let h = self.load_u32(ctx, ptr)?;
                self.lift_own(ctx, *t, h)?
            }
            InterfaceType::Borrow(t) => {
                let h = self.load_u32(ctx, ptr)?;
                self.lift_borrow(ctx, *t, h)?
            }
            other => bail!("values of type {other:?} are not supported"),
        })
    }

    fn lift_own<T>(
        &self,
        ctx: &mut Ctx<'_, T>,
        t: TypeResourceTableIndex,
        handle: u32,
    ) -> AbiResult<Val> {
        let (resource, inst) = resource_table(self.types(), t)?;
        let rt = &mut ctx.data_mut().rt;
        let h = rt.handle(inst.as_u32() as usize, handle, resource)?;
        if !h.own {
            bail!("handle {handle} is a borrow, but an own handle is required");
        }
        let want = rt.resource_types[resource as usize];
        rt.tables[inst.as_u32() as usize].remove(handle);
        Ok(Val::Resource(Resource {
            ty: want,
            rep: h.rep,
            own: true,
        }))
    }

    fn lift_borrow<T>(
        &self,
        ctx: &mut Ctx<'_, T>,
        t: TypeResourceTableIndex,
        handle: u32,
    ) -> AbiResult<Val> {
        let (resource, inst) = resource_table(self.types(), t)?;
        let rt = &ctx.data().rt;
        let h = rt.handle(inst.as_u32() as usize, handle, resource)?;
        let want = rt.resource_types[resource as usize];
        Ok(Val::Resource(Resource {
            ty: want,
            rep: h.rep,
            own: false,
        }))
    }

    // ---- lowering ------------------------------------------------------

    /// Lowers `val` of type `ty` into flat core values.
    pub fn lower_flat<T>(
        &self,
        ctx: &mut Ctx<'_, T>,
        ty: &InterfaceType,
        val: &Val,
        out: &mut Vec<CoreVal>,
    ) -> AbiResult<()> {
        let types = self.types();
        match (ty, val) {
            (InterfaceType::Bool, Val::Bool(b)) => out.push(CoreVal::I32(*b as i32)),
            (InterfaceType::S8, Val::S8(v)) => out.push(CoreVal::I32(*v as i32)),
            (InterfaceType::U8, Val::U8(v)) => out.push(CoreVal::I32(*v as i32)),
            (InterfaceType::S16, Val::S16(v)) => out.push(CoreVal::I32(*v as i32)),
            (InterfaceType::U16, Val::U16(v)) => out.push(CoreVal::I32(*v as i32)),
            (InterfaceType::S32, Val::S32(v)) => out.push(CoreVal::I32(*v)),
            (InterfaceType::U32, Val::U32(v)) => out.push(CoreVal::I32(*v as i32)),
            (InterfaceType::S64, Val::S64(v)) => out.push(CoreVal::I64(*v)),
            (InterfaceType::U64, Val::U64(v)) => out.push(CoreVal::I64(*v as i64)),
            (InterfaceType::Float32, Val::Float32(v)) => out.push(CoreVal::F32(F32::from(*v))),
            (InterfaceType::Float64, Val::Float64(v)) => out.push(CoreVal::F64(F64::from(*v))),
            (InterfaceType::Char, Val::Char(c)) => out.push(CoreVal::I32(*c as u32 as i32)),
            (InterfaceType::String, Val::String(s)) => {
                let (p, l) = self.store_string(ctx, s)?;
                out.extend([CoreVal::I32(p as i32), CoreVal::I32(l as i32)]);
            }
            (InterfaceType::List(i), Val::List(items)) => {
                let (p, l) = self.store_list(ctx, &types[*i].element, items)?;
                out.extend([CoreVal::I32(p as i32), CoreVal::I32(l as i32)]);
            }
            (InterfaceType::List(i), Val::Bytes(b))
                if matches!(types[*i].element, InterfaceType::U8) =>
            {
                let (p, l) = self.store_byte_list(ctx, b)?;
                out.extend([CoreVal::I32(p as i32), CoreVal::I32(l as i32)]);
            }
            (InterfaceType::Record(i), Val::Record(fields)) => {
                let ftys = &types[*i].fields;
                if fields.len() != ftys.len() {
                    bail!(
                        "record has {} fields, expected {}",
                        fields.len(),
                        ftys.len()
                    );
                }
                for (f, (name, v)) in ftys.iter().zip(fields) {
                    if &f.name != name {
                        bail!("record field `{name}` where `{}` was expected", f.name);
                    }
                    self.lower_flat(ctx, &f.ty, v, out)?;
                }
            }
            (InterfaceType::Tuple(i), Val::Tuple(vals)) => {
                let ttys = &types[*i].types;
                if vals.len() != ttys.len() {
                    bail!("tuple has {} elements, expected {}", vals.len(), ttys.len());
                }
                for (t, v) in ttys.iter().zip(vals) {
                    self.lower_flat(ctx, t, v, out)?;
                }
            }
            (InterfaceType::Flags(i), Val::Flags(set)) => {
                for w in self.flags_to_words(*i, set)? {
                    out.push(CoreVal::I32(w as i32));
                }
            }
            (
                InterfaceType::Enum(_)
                | InterfaceType::Variant(_)
                | InterfaceType::Option(_)
                | InterfaceType::Result(_),
                _,
            ) => {
                let (disc, payload) = self.variant_parts(ty, val)?;
                out.push(CoreVal::I32(disc as i32));
                let joined = joined_payload(types, ty);
                let start = out.len();
                if let (Some(cty), Some(v)) = (cases(types, ty)[disc as usize], payload) {
                    self.lower_flat(ctx, cty, v, out)?;
                }
                for (k, j) in joined.iter().enumerate() {
                    let at = start + k;
                    if at < out.len() {
                        out[at] = coerce_to_joined(out[at].clone(), *j);
                    } else {
                        out.push(j.zero());
                    }
                }
            }
            (InterfaceType::Own(t), Val::Resource(r)) => {
                let h = self.lower_own(ctx, *t, r)?;
                out.push(CoreVal::I32(h as i32));
            }
            (InterfaceType::Borrow(t), Val::Resource(r)) => {
                let h = self.lower_borrow(ctx, *t, r)?;
                out.push(CoreVal::I32(h as i32));
            }
            (ty, val) => bail!(
                "type mismatch: a {} value given where {} was expected",
                val.kind(),
                type_desc(ty)
            ),
        }
        Ok(())
    }

    fn flags_to_words(
        &self,
        i: wasmtime_environ::component::TypeFlagsIndex,
        set: &[String],
    ) -> AbiResult<Vec<u32>> {
        let names = &self.types()[i].names;
        let mut words = vec![0u32; names.len().div_ceil(32)];
        for n in set {
            let bit = names
                .iter()
                .position(|x| x == n)
                .ok_or_else(|| abi_err(format!("unknown flag `{n}`")))?;
            words[bit / 32] |= 1 << (bit % 32);
        }
        Ok(words)
    }

    /// The discriminant and payload of a variant-like value, checked against
    /// its type.
    fn variant_parts<'v>(
        &self,
        ty: &InterfaceType,
        val: &'v Val,
    ) -> AbiResult<(u32, Option<&'v Val>)> {
        let types = self.types();
        let (disc, payload): (u32, Option<&Val>) = match (ty, val) {
            (InterfaceType::Enum(i), Val::Enum(name)) => {
                let d = types[*i]
                    .names
                    .iter()
                    .position(|n| n == name)
                    .ok_or_else(|| abi_err(format!("unknown enum case `{name}`")))?;
                (d as u32, None)
            }
            (InterfaceType::Variant(i), Val::Variant(name, p)) => {
                let d = types[*i]
                    .cases
                    .keys()
                    .position(|n| n == name)
                    .ok_or_else(|| abi_err(format!("unknown variant case `{name}`")))?;
                (d as u32, p.as_deref())
            }
            (InterfaceType::Option(_), Val::Option(p)) => (p.is_some() as u32, p.as_deref()),
            (InterfaceType::Result(_), Val::Result(r)) => match r {
                Ok(p) => (0, p.as_deref()),
                Err(p) => (1, p.as_deref()),
            },
            (ty, val) => bail!(
                "type mismatch: a {} value given where {} was expected",
                val.kind(),
                type_desc(ty)
            ),
        };
        let case = cases(types, ty)[disc as usize];
        match (case, payload) {
            (Some(_), None) => bail!("case {disc} of {} needs a payload", type_desc(ty)),
            (None, Some(_)) => bail!("case {disc} of {} takes no payload", type_desc(ty)),
            _ => {}
        }
        Ok((disc, payload))
    }

    fn store_string<T>(&self, ctx: &mut Ctx<'_, T>, s: &str) -> AbiResult<(u32, u32)> {
        let too_long = || abi_err("string too long for a 32-bit memory");
        match self.encoding {
            StringEncoding::Utf8 => {
                let len = u32::try_from(s.len()).map_err(|_| too_long())?;
                let p = self.realloc(ctx, 1, len)?;
                self.store_bytes(ctx, p, s.as_bytes())?;
                Ok((p, len))
            }
            StringEncoding::Utf16 => {
                let units: Vec<u16> = s.encode_utf16().collect();
                let p = self.store_utf16(ctx, &units)?;
                Ok((p, units.len() as u32))
            }
            StringEncoding::CompactUtf16 => {
                if s.chars().all(|c| (c as u32) < 0x100) {
                    let bytes: Vec<u8> = s.chars().map(|c| c as u32 as u8).collect();
                    let len = u32::try_from(bytes.len()).map_err(|_| too_long())?;
                    let p = self.realloc(ctx, 2, len)?;
                    self.store_bytes(ctx, p, &bytes)?;
                    Ok((p, len))
                } else {
                    let units: Vec<u16> = s.encode_utf16().collect();
                    let p = self.store_utf16(ctx, &units)?;
                    Ok((p, units.len() as u32 | (1 << 31)))
                }
            }
        }
    }

    fn store_utf16<T>(&self, ctx: &mut Ctx<'_, T>, units: &[u16]) -> AbiResult<u32> {
        let n = u32::try_from(units.len() * 2)
            .map_err(|_| abi_err("string too long for a 32-bit memory"))?;
        let p = self.realloc(ctx, 2, n)?;
        let bytes: Vec<u8> = units.iter().flat_map(|u| u.to_le_bytes()).collect();
        self.store_bytes(ctx, p, &bytes)?;
        Ok(p)
    }

    /// Lowers a `list<u8>` given as [`Val::Bytes`]: one realloc, one copy.
    fn store_byte_list<T>(&self, ctx: &mut Ctx<'_, T>, b: &[u8]) -> AbiResult<(u32, u32)> {
        let len = u32::try_from(b.len()).map_err(|_| abi_err("list too long"))?;
        let p = self.realloc(ctx, 1, len)?;
        self.store_bytes(ctx, p, b)?;
        Ok((p, len))
    }

    /// Lowers a list given as [`Val::List`]; for a `list<u8>` this is the
    /// older form, a `U8` per byte, still accepted.
    fn store_list<T>(
        &self,
        ctx: &mut Ctx<'_, T>,
        elem: &InterfaceType,
        items: &[Val],
    ) -> AbiResult<(u32, u32)> {
        let info = abi_info(self.types(), elem).clone();
        let len = u32::try_from(items.len()).map_err(|_| abi_err("list too long"))?;
        let total = len
            .checked_mul(info.size32)
            .ok_or_else(|| abi_err("list too large for a 32-bit memory"))?;
        let p = self.realloc(ctx, info.align32, total)?;
        if let InterfaceType::U8 = elem {
            let mut bytes = Vec::with_capacity(items.len());
            for v in items {
                match v {
                    Val::U8(b) => bytes.push(*b),
                    v => bail!(
                        "type mismatch: a {} value given where u8 was expected",
                        v.kind()
                    ),
                }
            }
            self.store_bytes(ctx, p, &bytes)?;
            return Ok((p, len));
        }
        for (k, v) in items.iter().enumerate() {
            self.store(ctx, elem, v, p + k as u32 * info.size32)?;
        }
        Ok((p, len))
    }

    /// Lowers `val` of type `ty` into guest memory at `ptr`.
    pub fn store<T>(
        &self,
        ctx: &mut Ctx<'_, T>,
        ty: &InterfaceType,
        val: &Val,
        ptr: u32,
    ) -> AbiResult<()> {
        let types = self.types();
        match (ty, val) {
            (InterfaceType::Bool, Val::Bool(b)) => self.store_bytes(ctx, ptr, &[*b as u8]),
            (InterfaceType::S8, Val::S8(v)) => self.store_bytes(ctx, ptr, &v.to_le_bytes()),
            (InterfaceType::U8, Val::U8(v)) => self.store_bytes(ctx, ptr, &[*v]),
            (InterfaceType::S16, Val::S16(v)) => self.store_bytes(ctx, ptr, &v.to_le_bytes()),
            (InterfaceType::U16, Val::U16(v)) => self.store_bytes(ctx, ptr, &v.to_le_bytes()),
            (InterfaceType::S32, Val::S32(v)) => self.store_bytes(ctx, ptr, &v.to_le_bytes()),
            (InterfaceType::U32, Val::U32(v)) => self.store_bytes(ctx, ptr, &v.to_le_bytes()),
            (InterfaceType::S64, Val::S64(v)) => self.store_bytes(ctx, ptr, &v.to_le_bytes()),
            (InterfaceType::U64, Val::U64(v)) => self.store_bytes(ctx, ptr, &v.to_le_bytes()),
            (InterfaceType::Float32, Val::Float32(v)) => {
                self.store_bytes(ctx, ptr, &v.to_le_bytes())
            }
            (InterfaceType::Float64, Val::Float64(v)) => {
                self.store_bytes(ctx, ptr, &v.to_le_bytes())
            }
            (InterfaceType::Char, Val::Char(c)) => {
                self.store_bytes(ctx, ptr, &(*c as u32).to_le_bytes())
            }
            (InterfaceType::String, Val::String(s)) => {
                let (p, l) = self.store_string(ctx, s)?;
                self.store_pair(ctx, ptr, p, l)
            }
            (InterfaceType::List(i), Val::List(items)) => {
                let (p, l) = self.store_list(ctx, &types[*i].element, items)?;
                self.store_pair(ctx, ptr, p, l)
            }
            (InterfaceType::List(i), Val::Bytes(b))
                if matches!(types[*i].element, InterfaceType::U8) =>
            {
                let (p, l) = self.store_byte_list(ctx, b)?;
                self.store_pair(ctx, ptr, p, l)
            }
            (InterfaceType::Record(i), Val::Record(fields)) => {
                let ftys = &types[*i].fields;
                if fields.len() != ftys.len() {
                    bail!(
                        "record has {} fields, expected {}",
                        fields.len(),
                        ftys.len()
                    );
                }
                let mut off = 0u32;
                for (f, (name, v)) in ftys.iter().zip(fields) {
                    if &f.name != name {
                        bail!("record field `{name}` where `{}` was expected", f.name);
                    }
                    let at = abi_info(types, &f.ty).next_field32(&mut off);
                    self.store(ctx, &f.ty, v, ptr + at)?;
                }
                Ok(())
            }
            (InterfaceType::Tuple(i), Val::Tuple(vals)) => {
                let ttys = &types[*i].types;
                if vals.len() != ttys.len() {
                    bail!("tuple has {} elements, expected {}", vals.len(), ttys.len());
                }
                let mut off = 0u32;
                for (t, v) in ttys.iter().zip(vals) {
                    let at = abi_info(types, t).next_field32(&mut off);
                    self.store(ctx, t, v, ptr + at)?;
                }
                Ok(())
            }
            (InterfaceType::Flags(i), Val::Flags(set)) => {
                let n = types[*i].names.len();
                let words = self.flags_to_words(*i, set)?;
                if n == 0 {
                    Ok(())
                } else if n <= 8 {
                    self.store_bytes(ctx, ptr, &[words[0] as u8])
                } else if n <= 16 {
                    self.store_bytes(ctx, ptr, &(words[0] as u16).to_le_bytes())
                } else {
                    for (k, w) in words.iter().enumerate() {
                        self.store_bytes(ctx, ptr + 4 * k as u32, &w.to_le_bytes())?;
                    }
                    Ok(())
                }
            }
            (
                InterfaceType::Enum(_)
                | InterfaceType::Variant(_)
                | InterfaceType::Option(_)
                | InterfaceType::Result(_),
                _,
            ) => {
                let info = variant_info(types, ty).expect("variant-like type").clone();
                let (disc, payload) = self.variant_parts(ty, val)?;
                match discriminant_bytes(cases(types, ty).len()) {
                    1 => self.store_bytes(ctx, ptr, &[disc as u8])?,
                    2 => self.store_bytes(ctx, ptr, &(disc as u16).to_le_bytes())?,
                    _ => self.store_bytes(ctx, ptr, &disc.to_le_bytes())?,
                }
                if let (Some(cty), Some(v)) = (cases(types, ty)[disc as usize], payload) {
                    self.store(ctx, cty, v, ptr + info.payload_offset32)?;
                }
                Ok(())
            }
            (InterfaceType::Own(t), Val::Resource(r)) => {
                let h = self.lower_own(ctx, *t, r)?;
                self.store_bytes(ctx, ptr, &h.to_le_bytes())
            }
            (InterfaceType::Borrow(t), Val::Resource(r)) => {
                let h = self.lower_borrow(ctx, *t, r)?;
                self.store_bytes(ctx, ptr, &h.to_le_bytes())
            }
            (ty, val) => bail!(
                "type mismatch: a {} value given where {} was expected",
                val.kind(),
                type_desc(ty)
            ),
        }
    }

    fn store_pair<T>(&self, ctx: &mut Ctx<'_, T>, ptr: u32, a: u32, b: u32) -> AbiResult<()> {
        let mut buf = [0u8; 8];
        buf[..4].copy_from_slice(&a.to_le_bytes());
        buf[4..].copy_from_slice(&b.to_le_bytes());
        self.store_bytes(ctx, ptr, &buf)
    }

    fn check_resource_type<T>(
        &self,
        ctx: &Ctx<'_, T>,
        resource: u32,
        r: &Resource,
    ) -> AbiResult<()> {
        let want = ctx.data().rt.resource_types[resource as usize];
        if want != r.ty {
            bail!(
                "resource of type {:?} given where {:?} was expected",
                r.ty,
                want
            );
        }
        Ok(())
    }

    fn lower_own<T>(
        &self,
        ctx: &mut Ctx<'_, T>,
        t: TypeResourceTableIndex,
        r: &Resource,
    ) -> AbiResult<u32> {
        let (resource, inst) = resource_table(self.types(), t)?;
        self.check_resource_type(ctx, resource, r)?;
        if !r.own {
            bail!("a borrowed resource cannot be passed where an own handle is expected");
        }
        let h = Handle {
            rep: r.rep,
            resource,
            own: true,
            scoped: false,
        };
        ctx.data_mut().rt.tables[inst.as_u32() as usize]
            .insert(h)
            .ok_or_else(|| abi_err("resource handle table is full"))
    }

    fn lower_borrow<T>(
        &self,
        ctx: &mut Ctx<'_, T>,
        t: TypeResourceTableIndex,
        r: &Resource,
    ) -> AbiResult<u32> {
        let (resource, inst) = resource_table(self.types(), t)?;
        self.check_resource_type(ctx, resource, r)?;
        // A borrow of a resource that this very instance defines is passed as
        // its representation, not as a handle.
        let comp = self.comp;
        if let Some(def) =
            comp.info
                .defined_resource_index(wasmtime_environ::component::ResourceIndex::from_u32(
                    resource,
                ))
        {
            if comp.info.defined_resource_instances[def] == inst {
                return Ok(r.rep);
            }
        }
        let h = Handle {
            rep: r.rep,
            resource,
            own: false,
            scoped: true,
        };
        let rt = &mut ctx.data_mut().rt;
        let idx = rt.tables[inst.as_u32() as usize]
            .insert(h)
            .ok_or_else(|| abi_err("resource handle table is full"))?;
        rt.scoped_borrows += 1;
        Ok(idx)
    }
}

/// The resource type (a `ResourceIndex`) and the component instance whose
/// handle table a resource-table type refers to.
pub(crate) fn resource_table(
    types: &ComponentTypes,
    t: TypeResourceTableIndex,
) -> AbiResult<(u32, RuntimeComponentInstanceIndex)> {
    match &types[t] {
        TypeResourceTable::Concrete { ty, instance } => Ok((ty.as_u32(), *instance)),
        TypeResourceTable::Abstract(_) => bail!("abstract resource types cannot cross at run time"),
    }
}

/// Fuel handed to the guest per slice; between slices the deadline is
/// checked. Small enough that a deadline is noticed within milliseconds,
/// large enough that refuelling costs nothing measurable.
pub(crate) const FUEL_SLICE: u64 = 2_000_000;

/// Before a nested call into the guest (realloc, post-return, destructor),
/// makes sure it has fuel to run: nested calls cannot be resumed after
/// running dry, so they get fuel up front from the call's pool.
pub(crate) fn top_up_fuel<T>(ctx: &mut Ctx<'_, T>) -> AbiResult<()> {
    let Ok(have) = ctx.get_fuel() else {
        return Ok(()); // metering is off
    };
    if have >= FUEL_SLICE / 2 {
        return Ok(());
    }
    if let Some(d) = ctx.data().rt.call_deadline {
        if std::time::Instant::now() >= d {
            return Err(wasmi::Error::host(crate::error::HostError::deadline()));
        }
    }
    let rt = &mut ctx.data_mut().rt;
    let add = rt.fuel_pool.min(FUEL_SLICE);
    rt.fuel_pool -= add;
    ctx.set_fuel(have + add)?;
    Ok(())
}

/// Bytes of one [`Val`] on the host: what each element of a lifted list or
/// tuple costs the lift budget.
const VAL_BYTES: usize = std::mem::size_of::<Val>();

/// Host bytes of the `Val`s of `n` list or tuple elements.
fn vals_cost(n: usize) -> usize {
    n.saturating_mul(VAL_BYTES)
}

/// Host bytes of a lifted record beyond its own `Val`: its field vector and
/// a copy of every field name.
fn record_cost(types: &ComponentTypes, i: wasmtime_environ::component::TypeRecordIndex) -> usize {
    types[i]
        .fields
        .iter()
        .map(|f| std::mem::size_of::<(String, Val)>() + f.name.len())
        .sum()
}

fn to_char(v: u32) -> AbiResult<char> {
    char::from_u32(v).ok_or_else(|| abi_err(format!("{v:#x} is not a valid Unicode scalar value")))
}

/// A short description of a type for error messages.
pub(crate) fn type_desc(ty: &InterfaceType) -> &'static str {
    match ty {
        InterfaceType::Bool => "bool",
        InterfaceType::S8 => "s8",
        InterfaceType::U8 => "u8",
        InterfaceType::S16 => "s16",
        InterfaceType::U16 => "u16",
        InterfaceType::S32 => "s32",
        InterfaceType::U32 => "u32",
        InterfaceType::S64 => "s64",
        InterfaceType::U64 => "u64",
        InterfaceType::Float32 => "f32",
        InterfaceType::Float64 => "f64",
        InterfaceType::Char => "char",
        InterfaceType::String => "string",
        InterfaceType::List(_) => "list",
        InterfaceType::Record(_) => "record",
        InterfaceType::Tuple(_) => "tuple",
        InterfaceType::Variant(_) => "variant",
        InterfaceType::Enum(_) => "enum",
        InterfaceType::Option(_) => "option",
        InterfaceType::Result(_) => "result",
        InterfaceType::Flags(_) => "flags",
        InterfaceType::Own(_) => "own resource",
        InterfaceType::Borrow(_) => "borrowed resource",
        InterfaceType::Map(_) => "map",
        InterfaceType::Future(_) => "future",
        InterfaceType::Stream(_) => "stream",
        InterfaceType::ErrorContext(_) => "error-context",
        InterfaceType::FixedLengthList(_) => "fixed-length list",
    }
}

/// Ensures `ptr` is aligned for a value of the given info (used for
/// parameter and return-pointer areas).
pub(crate) fn check_aligned(ptr: u32, info: &CanonicalAbiInfo) -> AbiResult<()> {
    if ptr != align_to(ptr, info.align32) {
        bail!("pointer {ptr:#x} is not aligned to {}", info.align32);
    }
    Ok(())
}
