//! `types`: the "types world" guest (`twig:types/types`).
//!
//! Every `echo-*` export returns its argument unchanged, every
//! `roundtrip-via-host-*` export forwards its argument to the same-shaped
//! import in `twig:types/host-echo`, and the resource exports exercise a
//! guest-defined resource (`counter`) and a host-defined one (`blob`).
//! Apart from what `std` needs, the guest imports nothing but its own world.

wit_bindgen::generate!({
    world: "types",
    path: "../wit/types",
});

use core::cell::Cell;
use core::sync::atomic::{AtomicU32, Ordering};

use exports::twig::types::echo::{Counter, CounterBorrow, Guest, GuestCounter};
use twig::types::host_echo;
use twig::types::values::{
    BigRecord, Blob, Color, MidFlags, MyRecord, MyVariant, Shape, SmallFlags, StrPair, WideFlags,
};

struct Types;

/// Counters created and not yet dropped (wasm32 here has a single thread).
static LIVE_COUNTERS: AtomicU32 = AtomicU32::new(0);

/// The guest-side representation of the exported `counter` resource.
struct MyCounter {
    value: Cell<u32>,
}

impl MyCounter {
    fn with_value(start: u32) -> Self {
        LIVE_COUNTERS.fetch_add(1, Ordering::Relaxed);
        MyCounter {
            value: Cell::new(start),
        }
    }
}

impl Drop for MyCounter {
    fn drop(&mut self) {
        LIVE_COUNTERS.fetch_sub(1, Ordering::Relaxed);
    }
}

impl GuestCounter for MyCounter {
    fn new(start: u32) -> Self {
        MyCounter::with_value(start)
    }

    fn get(&self) -> u32 {
        self.value.get()
    }

    fn increment(&self) -> u32 {
        let next = self.value.get().wrapping_add(1);
        self.value.set(next);
        next
    }

    fn zero() -> Counter {
        Counter::new(MyCounter::with_value(0))
    }
}

/// Implements `echo-NAME` and `echo-list-NAME` for each listed type: both
/// return their argument unchanged.
macro_rules! echo_fns {
    ($($one:ident, $list:ident: $ty:ty;)*) => {
        $(
            fn $one(x: $ty) -> $ty {
                x
            }

            fn $list(x: Vec<$ty>) -> Vec<$ty> {
                x
            }
        )*
    };
}

impl Guest for Types {
    type Counter = MyCounter;

    echo_fns! {
        echo_bool, echo_list_bool: bool;
        echo_s8, echo_list_s8: i8;
        echo_s16, echo_list_s16: i16;
        echo_s32, echo_list_s32: i32;
        echo_s64, echo_list_s64: i64;
        echo_u8, echo_list_u8: u8;
        echo_u16, echo_list_u16: u16;
        echo_u32, echo_list_u32: u32;
        echo_u64, echo_list_u64: u64;
        echo_f32, echo_list_f32: f32;
        echo_f64, echo_list_f64: f64;
        echo_char, echo_list_char: char;
        echo_string, echo_list_string: String;
        echo_bytes, echo_list_bytes: Vec<u8>;
        echo_strings, echo_list_strings: Vec<String>;
        echo_record, echo_list_record: MyRecord;
        echo_pairs, echo_list_pairs: Vec<StrPair>;
        echo_tuple, echo_list_tuple: (u8, String, f64);
        echo_variant, echo_list_variant: MyVariant;
        echo_shape, echo_list_shape: Shape;
        echo_enum, echo_list_enum: Color;
        echo_option_option, echo_list_option_option: Option<Option<u32>>;
        echo_result, echo_list_result: Result<String, u32>;
        echo_result_unit, echo_list_result_unit: Result<(), ()>;
        echo_result_err, echo_list_result_err: Result<(), String>;
        echo_small_flags, echo_list_small_flags: SmallFlags;
        echo_mid_flags, echo_list_mid_flags: MidFlags;
        echo_wide_flags, echo_list_wide_flags: WideFlags;
        echo_big, echo_list_big: BigRecord;
    }

    // ------------------------------------------------------------ via the host

    fn roundtrip_via_host_string(x: String) -> String {
        host_echo::echo_string(&x)
    }

    fn roundtrip_via_host_bytes(x: Vec<u8>) -> Vec<u8> {
        host_echo::echo_bytes(&x)
    }

    fn roundtrip_via_host_record(x: MyRecord) -> MyRecord {
        host_echo::echo_record(&x)
    }

    fn roundtrip_via_host_pairs(x: Vec<StrPair>) -> Vec<StrPair> {
        host_echo::echo_pairs(&x)
    }

    fn roundtrip_via_host_variant(x: MyVariant) -> MyVariant {
        host_echo::echo_variant(&x)
    }

    fn roundtrip_via_host_option_option(x: Option<Option<u32>>) -> Option<Option<u32>> {
        host_echo::echo_option_option(x)
    }

    fn roundtrip_via_host_small_flags(x: SmallFlags) -> SmallFlags {
        host_echo::echo_small_flags(x)
    }

    fn roundtrip_via_host_wide_flags(x: WideFlags) -> WideFlags {
        host_echo::echo_wide_flags(x)
    }

    fn roundtrip_via_host_tuple(x: (u8, String, f64)) -> (u8, String, f64) {
        host_echo::echo_tuple((x.0, &x.1, x.2))
    }

    fn roundtrip_via_host_big(x: BigRecord) -> BigRecord {
        host_echo::echo_big(&x)
    }

    fn roundtrip_via_host_many_u32(x: Vec<u32>) -> Vec<u32> {
        let a = |i: usize| x.get(i).copied().unwrap_or(0);
        host_echo::echo_many_u32(
            a(0),
            a(1),
            a(2),
            a(3),
            a(4),
            a(5),
            a(6),
            a(7),
            a(8),
            a(9),
            a(10),
            a(11),
            a(12),
            a(13),
            a(14),
            a(15),
            a(16),
        )
    }

    // ------------------------------------------------------------ many parameters

    fn many_u32(
        a0: u32,
        a1: u32,
        a2: u32,
        a3: u32,
        a4: u32,
        a5: u32,
        a6: u32,
        a7: u32,
        a8: u32,
        a9: u32,
        a10: u32,
        a11: u32,
        a12: u32,
        a13: u32,
        a14: u32,
        a15: u32,
        a16: u32,
    ) -> Vec<u32> {
        vec![
            a0, a1, a2, a3, a4, a5, a6, a7, a8, a9, a10, a11, a12, a13, a14, a15, a16,
        ]
    }

    fn many_records(a: MyRecord, b: MyRecord, c: MyRecord) -> (MyRecord, MyRecord, MyRecord) {
        (a, b, c)
    }

    fn many_mixed(
        a: u8,
        b: i8,
        c: u16,
        d: i16,
        e: u32,
        f: i32,
        g: u64,
        h: i64,
        i: f32,
        j: f64,
        k: char,
        l: bool,
        m: String,
        n: Vec<u8>,
        o: Color,
        p: SmallFlags,
    ) -> (
        u8,
        i8,
        u16,
        i16,
        u32,
        i32,
        u64,
        i64,
        f32,
        f64,
        char,
        bool,
        String,
        Vec<u8>,
        Color,
        SmallFlags,
    ) {
        (a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p)
    }

    fn make_big(seed: u32) -> BigRecord {
        make_big(seed)
    }

    // ------------------------------------------------------------ guest resource

    fn sum_counters(a: CounterBorrow<'_>, b: CounterBorrow<'_>) -> u32 {
        let a = a.get::<MyCounter>().get();
        let b = b.get::<MyCounter>().get();
        a.wrapping_add(b)
    }

    fn make_counters(n: u32) -> Vec<Counter> {
        (0..n)
            .map(|i| Counter::new(MyCounter::with_value(i)))
            .collect()
    }

    fn live_counters() -> u32 {
        LIVE_COUNTERS.load(Ordering::Relaxed)
    }

    // ------------------------------------------------------------ host resource

    fn blob_len(b: &Blob) -> u32 {
        b.len()
    }

    fn blob_read(b: &Blob) -> Vec<u8> {
        b.read()
    }

    fn make_blob(data: Vec<u8>) -> Blob {
        Blob::new(&data)
    }

    fn consume_blob(b: Blob) -> u32 {
        let len = b.len();
        drop(b);
        len
    }
}

/// Deterministic `big-record` for `make-big`. With `s = seed`:
/// a = s as u8, b = -(s as i16), c = s, d = -(s as i64) * 1_000_000_007,
/// e = s as f32 / 2, f = s as f64 * 1.5, g = 'λ', h = s is odd,
/// name = "big-{s}", bytes = [0, 1, ..., s % 256 - 1] (s % 256 bytes),
/// words = ["w0", ..., "w{s % 8 - 1}"] (s % 8 words),
/// inner = my-record { id: s, name: "inner-{s}", score: 0.25, active: true,
///   tag: some("t{s}") if s is even else none, data: [1, 2, 3],
///   aliases: some(["x", "y"]), initial: 'Z', delta: -1 },
/// pairs = [{ key: "k{s}", value: "v{s}" }], triple = (7, "seven", 7.5),
/// choice = outcome(ok(some(circle(s as f32)))), hue = blue,
/// maybe = some(none), res = err(s), small = read | execute,
/// wide = w0 | w31.
fn make_big(s: u32) -> BigRecord {
    BigRecord {
        a: s as u8,
        b: (s as i16).wrapping_neg(),
        c: s,
        d: (s as i64).wrapping_neg().wrapping_mul(1_000_000_007),
        e: s as f32 / 2.0,
        f: s as f64 * 1.5,
        g: 'λ',
        h: s % 2 == 1,
        name: format!("big-{s}"),
        bytes: (0..(s % 256)).map(|i| i as u8).collect(),
        words: (0..(s % 8)).map(|i| format!("w{i}")).collect(),
        inner: MyRecord {
            id: s,
            name: format!("inner-{s}"),
            score: 0.25,
            active: true,
            tag: (s % 2 == 0).then(|| format!("t{s}")),
            data: vec![1, 2, 3],
            aliases: Some(vec!["x".into(), "y".into()]),
            initial: 'Z',
            delta: -1,
        },
        pairs: vec![StrPair {
            key: format!("k{s}"),
            value: format!("v{s}"),
        }],
        triple: (7, "seven".into(), 7.5),
        choice: MyVariant::Outcome(Ok(Some(Shape::Circle(s as f32)))),
        hue: Color::Blue,
        maybe: Some(None),
        res: Err(s),
        small: SmallFlags::READ | SmallFlags::EXECUTE,
        wide: WideFlags::W0 | WideFlags::W31,
    }
}

export!(Types);
