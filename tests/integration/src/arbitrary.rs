//! Random values of any component type, for differential tests.
//!
//! Values are generated from the type information of the component under
//! test, so every type the types world declares is covered without a
//! hand-written generator per type. The generator leans towards edge cases:
//! integer limits, NaN/infinities/-0/subnormals, empty and non-ASCII strings
//! with quotes and escapes, empty lists.

use twig_component::wave::WaveType;
use twig_component::Val;
use wasm_wave::wasm::{WasmType, WasmTypeKind};

/// A small deterministic PRNG (xorshift64*), so a failing seed can be
/// replayed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize]
    }
}

fn int(rng: &mut Rng, bits: u32, signed: bool) -> i128 {
    let r = rng.below(4);
    let (min, max): (i128, i128) = if signed {
        (-(1i128 << (bits - 1)), (1i128 << (bits - 1)) - 1)
    } else {
        (0, (1i128 << bits) - 1)
    };
    match r {
        0 => rng.pick(&[min, max, 0, 1, -1i128.max(min)]),
        _ => {
            let raw = (rng.next_u64() as u128 | ((rng.next_u64() as u128) << 64)) as i128;
            let span = max - min + 1;
            min + raw.rem_euclid(span)
        }
    }
}

fn f32v(rng: &mut Rng) -> f32 {
    match rng.below(6) {
        0 => rng.pick(&[
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE / 4.0,
            f32::MAX,
            f32::MIN,
        ]),
        1 => (rng.below(2001) as f32 - 1000.0) / 8.0,
        _ => {
            let f = f32::from_bits(rng.next_u64() as u32);
            if f.is_nan() {
                f32::NAN
            } else {
                f
            }
        }
    }
}

fn f64v(rng: &mut Rng) -> f64 {
    match rng.below(6) {
        0 => rng.pick(&[
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            5e-324,
            f64::MAX,
            f64::MIN,
        ]),
        1 => (rng.below(2001) as f64 - 1000.0) / 16.0,
        _ => {
            let f = f64::from_bits(rng.next_u64());
            if f.is_nan() {
                f64::NAN
            } else {
                f
            }
        }
    }
}

fn charv(rng: &mut Rng) -> char {
    match rng.below(4) {
        0 => rng.pick(&[
            'a',
            '\0',
            '\'',
            '"',
            '\\',
            '\n',
            '\t',
            'λ',
            '🦀',
            '\u{10FFFF}',
            '\u{FFFD}',
            '{',
            '}',
        ]),
        1 => char::from_u32(0x20 + rng.below(0x5f) as u32).unwrap_or('x'),
        _ => loop {
            if let Some(c) = char::from_u32(rng.below(0x11_0000) as u32) {
                break c;
            }
        },
    }
}

fn stringv(rng: &mut Rng) -> String {
    let len = match rng.below(8) {
        0 => 0,
        7 => rng.below(40),
        _ => rng.below(8),
    };
    (0..len).map(|_| charv(rng)).collect()
}

/// A random value of type `ty`; `depth` bounds nesting so recursive
/// structures (lists of variants of lists ...) stay small.
pub fn value(rng: &mut Rng, ty: &WaveType, depth: u32) -> Val {
    let max_len = if depth > 2 { 1 } else { 4 };
    match ty.kind() {
        WasmTypeKind::Bool => Val::Bool(rng.below(2) == 1),
        WasmTypeKind::S8 => Val::S8(int(rng, 8, true) as i8),
        WasmTypeKind::S16 => Val::S16(int(rng, 16, true) as i16),
        WasmTypeKind::S32 => Val::S32(int(rng, 32, true) as i32),
        WasmTypeKind::S64 => Val::S64(int(rng, 64, true) as i64),
        WasmTypeKind::U8 => Val::U8(int(rng, 8, false) as u8),
        WasmTypeKind::U16 => Val::U16(int(rng, 16, false) as u16),
        WasmTypeKind::U32 => Val::U32(int(rng, 32, false) as u32),
        WasmTypeKind::U64 => Val::U64(int(rng, 64, false) as u64),
        WasmTypeKind::F32 => Val::Float32(f32v(rng)),
        WasmTypeKind::F64 => Val::Float64(f64v(rng)),
        WasmTypeKind::Char => Val::Char(charv(rng)),
        WasmTypeKind::String => Val::String(stringv(rng)),
        WasmTypeKind::List => {
            let el = ty.list_element_type().expect("list type");
            let n = rng.below(max_len + 1);
            Val::List((0..n).map(|_| value(rng, &el, depth + 1)).collect())
        }
        WasmTypeKind::Record => {
            let fields: Vec<_> = ty
                .record_fields()
                .map(|(n, t)| (n.to_string(), t))
                .collect();
            Val::Record(
                fields
                    .into_iter()
                    .map(|(n, t)| (n, value(rng, &t, depth + 1)))
                    .collect(),
            )
        }
        WasmTypeKind::Tuple => {
            let tys: Vec<_> = ty.tuple_element_types().collect();
            Val::Tuple(tys.iter().map(|t| value(rng, t, depth + 1)).collect())
        }
        WasmTypeKind::Variant => {
            let cases: Vec<_> = ty
                .variant_cases()
                .map(|(n, t)| (n.to_string(), t))
                .collect();
            let (name, payload) = &cases[rng.below(cases.len() as u64) as usize];
            Val::Variant(
                name.clone(),
                payload.as_ref().map(|t| Box::new(value(rng, t, depth + 1))),
            )
        }
        WasmTypeKind::Enum => {
            let cases: Vec<String> = ty.enum_cases().map(|c| c.to_string()).collect();
            Val::Enum(cases[rng.below(cases.len() as u64) as usize].clone())
        }
        WasmTypeKind::Option => {
            let inner = ty.option_some_type().expect("option type");
            Val::Option((rng.below(3) != 0).then(|| Box::new(value(rng, &inner, depth + 1))))
        }
        WasmTypeKind::Result => {
            let (ok, err) = ty.result_types().expect("result type");
            let gen = |rng: &mut Rng, t: &Option<WaveType>| {
                t.as_ref().map(|t| Box::new(value(rng, t, depth + 1)))
            };
            if rng.below(2) == 0 {
                Val::Result(Ok(gen(rng, &ok)))
            } else {
                Val::Result(Err(gen(rng, &err)))
            }
        }
        WasmTypeKind::Flags => {
            let names: Vec<String> = ty.flags_names().map(|c| c.to_string()).collect();
            Val::Flags(names.into_iter().filter(|_| rng.below(2) == 0).collect())
        }
        other => panic!("no generator for {other}"),
    }
}
