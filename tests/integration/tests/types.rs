//! The types world: every WIT type crosses the canonical ABI in both
//! directions (host -> guest export -> host, and guest -> host import ->
//! guest), flat and spilled to memory, plus guest- and host-defined
//! resources.
#![forbid(unsafe_code)]

use twig_component::{Engine, Instance, Resource, Val};
use twig_integration_tests::*;

const E: &str = "twig:types/echo#";

fn setup() -> (Instance<TestState>, u32) {
    let engine = Engine::default();
    let mut linker = wasi_linker();
    let blob = add_types_host(&mut linker);
    let c = load(&engine, "types");
    let (inst, _) = instantiate(&linker, &c);
    (inst, blob)
}

fn s(x: &str) -> Val {
    Val::String(x.to_string())
}

fn some(v: Val) -> Val {
    Val::Option(Some(Box::new(v)))
}

fn bytes(b: &[u8]) -> Val {
    Val::List(b.iter().map(|x| Val::U8(*x)).collect())
}

fn record(id: u32, name: &str) -> Val {
    Val::Record(vec![
        ("id".into(), Val::U32(id)),
        ("name".into(), s(name)),
        ("score".into(), Val::Float64(-1.5e300)),
        ("active".into(), Val::Bool(true)),
        ("tag".into(), some(s("tägged 🦀"))),
        ("data".into(), bytes(&[0, 1, 255])),
        (
            "aliases".into(),
            some(Val::List(vec![s("a"), s(""), s("ccc")])),
        ),
        ("initial".into(), Val::Char('λ')),
        ("delta".into(), Val::S64(i64::MIN)),
    ])
}

fn shape_circle() -> Val {
    Val::Variant("circle".into(), Some(Box::new(Val::Float32(2.5))))
}

fn variants() -> Vec<Val> {
    let v = |c: &str, p: Option<Val>| Val::Variant(c.into(), p.map(Box::new));
    vec![
        v("empty", None),
        v("small", Some(Val::U8(200))),
        v("big", Some(Val::U64(u64::MAX))),
        v("ratio", Some(Val::Float32(-0.25))),
        v("real", Some(Val::Float64(std::f64::consts::PI))),
        v("text", Some(s("variant text"))),
        v(
            "shape",
            Some(v(
                "rect",
                Some(Val::Tuple(vec![Val::Float32(1.0), Val::Float32(2.0)])),
            )),
        ),
        v("maybe-shape", Some(some(shape_circle()))),
        v("maybe-shape", Some(Val::Option(None))),
        v(
            "outcome",
            Some(Val::Result(Ok(Some(Box::new(some(v(
                "named",
                Some(s("n")),
            ))))))),
        ),
        v(
            "outcome",
            Some(Val::Result(Err(Some(Box::new(s("failed")))))),
        ),
        v(
            "shapes",
            Some(Val::List(vec![v("point", None), shape_circle()])),
        ),
        v("rec", Some(record(9, "in a variant"))),
    ]
}

fn big(seed: u32) -> Val {
    Val::Record(vec![
        ("a".into(), Val::U8(seed as u8)),
        ("b".into(), Val::S16(-3)),
        ("c".into(), Val::U32(seed)),
        ("d".into(), Val::S64(-(seed as i64))),
        ("e".into(), Val::Float32(0.5)),
        ("f".into(), Val::Float64(1e-9)),
        ("g".into(), Val::Char('z')),
        ("h".into(), Val::Bool(false)),
        ("name".into(), s("big")),
        ("bytes".into(), bytes(&[7; 33])),
        ("words".into(), Val::List(vec![s("x"), s("yy")])),
        ("inner".into(), record(seed, "inner")),
        (
            "pairs".into(),
            Val::List(vec![Val::Record(vec![
                ("key".into(), s("k")),
                ("value".into(), s("v")),
            ])]),
        ),
        (
            "triple".into(),
            Val::Tuple(vec![Val::U8(1), s("two"), Val::Float64(3.0)]),
        ),
        ("choice".into(), variants()[9].clone()),
        ("hue".into(), Val::Enum("magenta".into())),
        ("maybe".into(), some(Val::Option(None))),
        (
            "res".into(),
            Val::Result(Err(Some(Box::new(Val::U32(404))))),
        ),
        (
            "small".into(),
            Val::Flags(vec!["read".into(), "execute".into()]),
        ),
        (
            "wide".into(),
            Val::Flags(vec!["w0".into(), "w17".into(), "w31".into()]),
        ),
    ])
}

fn echo(inst: &mut Instance<TestState>, func: &str, v: Val) {
    let got = inst
        .call(&format!("{E}{func}"), std::slice::from_ref(&v))
        .unwrap_or_else(|e| panic!("{func}: {e}"));
    assert_eq!(got.len(), 1, "{func}");
    assert!(
        got[0].eq_nan_aware(&v),
        "{func}: sent {v:?}, got {:?}",
        got[0]
    );
}

#[test]
fn scalars_echo_at_their_limits() {
    let (mut i, _) = setup();
    for b in [true, false] {
        echo(&mut i, "echo-bool", Val::Bool(b));
    }
    for v in [i8::MIN, -1, 0, i8::MAX] {
        echo(&mut i, "echo-s8", Val::S8(v));
    }
    for v in [i16::MIN, -1, i16::MAX] {
        echo(&mut i, "echo-s16", Val::S16(v));
    }
    for v in [i32::MIN, -1, i32::MAX] {
        echo(&mut i, "echo-s32", Val::S32(v));
    }
    for v in [i64::MIN, -1, i64::MAX] {
        echo(&mut i, "echo-s64", Val::S64(v));
    }
    for v in [0, 255] {
        echo(&mut i, "echo-u8", Val::U8(v));
    }
    for v in [0, u16::MAX] {
        echo(&mut i, "echo-u16", Val::U16(v));
    }
    for v in [0, u32::MAX] {
        echo(&mut i, "echo-u32", Val::U32(v));
    }
    for v in [0, u64::MAX] {
        echo(&mut i, "echo-u64", Val::U64(v));
    }
    for v in [0.0, -0.0, f32::MIN_POSITIVE, f32::INFINITY, f32::NAN] {
        echo(&mut i, "echo-f32", Val::Float32(v));
    }
    for v in [f64::MAX, f64::NEG_INFINITY, f64::NAN, 1e-310] {
        echo(&mut i, "echo-f64", Val::Float64(v));
    }
    for c in ['a', '\0', 'λ', '🦀', '\u{10FFFF}'] {
        echo(&mut i, "echo-char", Val::Char(c));
    }
}

#[test]
fn compound_types_echo() {
    let (mut i, _) = setup();
    for text in ["", "héllo wörld 🦀", &"x".repeat(100_000)] {
        echo(&mut i, "echo-string", s(text));
    }
    echo(&mut i, "echo-bytes", bytes(&(0..=255).collect::<Vec<u8>>()));
    echo(&mut i, "echo-bytes", bytes(&[]));
    echo(
        &mut i,
        "echo-strings",
        Val::List(vec![s("a"), s(""), s("ünïcödé")]),
    );
    echo(&mut i, "echo-record", record(1, "rec"));
    let pairs = Val::List(
        (0..50)
            .map(|k| {
                Val::Record(vec![
                    ("key".into(), s(&format!("k{k}"))),
                    ("value".into(), s(&"v".repeat(k))),
                ])
            })
            .collect(),
    );
    echo(&mut i, "echo-pairs", pairs);
    echo(
        &mut i,
        "echo-tuple",
        Val::Tuple(vec![Val::U8(7), s("seven"), Val::Float64(7.7)]),
    );
    for v in variants() {
        echo(&mut i, "echo-variant", v);
    }
    echo(&mut i, "echo-shape", shape_circle());
    for c in ["red", "green", "blue", "cyan", "magenta"] {
        echo(&mut i, "echo-enum", Val::Enum(c.into()));
    }
    for v in [
        Val::Option(None),
        some(Val::Option(None)),
        some(some(Val::U32(u32::MAX))),
    ] {
        echo(&mut i, "echo-option-option", v);
    }
    echo(
        &mut i,
        "echo-result",
        Val::Result(Ok(Some(Box::new(s("fine"))))),
    );
    echo(
        &mut i,
        "echo-result",
        Val::Result(Err(Some(Box::new(Val::U32(3))))),
    );
    echo(&mut i, "echo-result-unit", Val::Result(Ok(None)));
    echo(&mut i, "echo-result-unit", Val::Result(Err(None)));
    echo(&mut i, "echo-result-err", Val::Result(Ok(None)));
    echo(
        &mut i,
        "echo-result-err",
        Val::Result(Err(Some(Box::new(s("bad"))))),
    );
    echo(&mut i, "echo-small-flags", Val::Flags(vec![]));
    echo(
        &mut i,
        "echo-small-flags",
        Val::Flags(vec!["read".into(), "write".into(), "execute".into()]),
    );
    echo(
        &mut i,
        "echo-mid-flags",
        Val::Flags(vec!["m0".into(), "m11".into()]),
    );
    echo(
        &mut i,
        "echo-wide-flags",
        Val::Flags((0..32).map(|k| format!("w{k}")).collect()),
    );
    echo(&mut i, "echo-big", big(5));
    echo(&mut i, "echo-list-big", Val::List(vec![big(1), big(2)]));
}

/// A `list<u8>` comes out of the guest as `Val::Bytes` (one byte per byte),
/// at an export and through a host import, also inside a record; the older
/// form, a `U8` value per byte, is still accepted going in.
#[test]
fn byte_lists_lift_as_bytes_and_lower_from_either_form() {
    let (mut i, _) = setup();
    let data: Vec<u8> = (0..70_000u32).map(|x| x as u8).collect();
    for func in ["echo-bytes", "roundtrip-via-host-bytes"] {
        for arg in [Val::Bytes(data.clone()), bytes(&data), Val::Bytes(vec![])] {
            let got = i
                .call(&format!("{E}{func}"), std::slice::from_ref(&arg))
                .unwrap_or_else(|e| panic!("{func}: {e}"));
            let [Val::Bytes(b)] = got.as_slice() else {
                panic!("{func}: not lifted as bytes: {got:?}");
            };
            assert_eq!(arg.bytes().as_deref(), Some(b.as_slice()), "{func}");
        }
    }
    let big = big(3);
    let got = i
        .call(&format!("{E}echo-big"), std::slice::from_ref(&big))
        .unwrap();
    let Val::Record(fields) = &got[0] else {
        panic!("{got:?}")
    };
    assert!(
        matches!(fields.iter().find(|(n, _)| n == "bytes"), Some((_, Val::Bytes(b))) if b == &[7; 33]),
        "{fields:?}"
    );
    assert!(got[0].eq_nan_aware(&big));
    // A byte form where another list is expected is the caller's mistake.
    let err = i
        .call(&format!("{E}echo-strings"), &[Val::Bytes(vec![1])])
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("a list<u8> value given where list was expected"),
        "{err}"
    );
    assert!(!i.is_poisoned());
}

#[test]
fn values_round_trip_through_host_imports() {
    let (mut i, _) = setup();
    echo(&mut i, "roundtrip-via-host-string", s("through the host ✓"));
    echo(&mut i, "roundtrip-via-host-bytes", bytes(&[9; 1000]));
    echo(&mut i, "roundtrip-via-host-record", record(2, "via host"));
    echo(
        &mut i,
        "roundtrip-via-host-pairs",
        Val::List(vec![Val::Record(vec![
            ("key".into(), s("a")),
            ("value".into(), s("b")),
        ])]),
    );
    for v in variants() {
        echo(&mut i, "roundtrip-via-host-variant", v);
    }
    echo(
        &mut i,
        "roundtrip-via-host-option-option",
        some(Val::Option(None)),
    );
    echo(
        &mut i,
        "roundtrip-via-host-small-flags",
        Val::Flags(vec!["write".into()]),
    );
    echo(
        &mut i,
        "roundtrip-via-host-wide-flags",
        Val::Flags(vec!["w31".into(), "w1".into()].into_iter().rev().collect()),
    );
    echo(
        &mut i,
        "roundtrip-via-host-tuple",
        Val::Tuple(vec![Val::U8(0), s(""), Val::Float64(-0.0)]),
    );
    echo(&mut i, "roundtrip-via-host-big", big(77));
    let seventeen: Vec<Val> = (100..117).map(Val::U32).collect();
    echo(&mut i, "roundtrip-via-host-many-u32", Val::List(seventeen));
    assert!(
        i.data().calls >= 20,
        "host-echo was called {} times",
        i.data().calls
    );
}

#[test]
fn spilled_parameters_and_return_pointers() {
    let (mut i, _) = setup();
    let args: Vec<Val> = (0..17).map(Val::U32).collect();
    let got = i.call(&format!("{E}many-u32"), &args).unwrap();
    assert_eq!(got, vec![Val::List(args)]);
    let recs = vec![record(1, "a"), record(2, "b"), record(3, "c")];
    let got = i.call(&format!("{E}many-records"), &recs).unwrap();
    assert_eq!(got, vec![Val::Tuple(recs)]);
    let mixed = vec![
        Val::U8(1),
        Val::S8(-2),
        Val::U16(3),
        Val::S16(-4),
        Val::U32(5),
        Val::S32(-6),
        Val::U64(7),
        Val::S64(-8),
        Val::Float32(9.5),
        Val::Float64(10.25),
        Val::Char('k'),
        Val::Bool(true),
        s("m"),
        bytes(&[14]),
        Val::Enum("cyan".into()),
        Val::Flags(vec!["execute".into()]),
    ];
    let got = i.call(&format!("{E}many-mixed"), &mixed).unwrap();
    assert_eq!(got, vec![Val::Tuple(mixed)]);
    let made = i
        .call(&format!("{E}make-big"), &[Val::U32(7)])
        .unwrap()
        .remove(0);
    echo(&mut i, "echo-big", made);
}

#[test]
fn guest_resources_live_and_die_by_handle() {
    let (mut i, _) = setup();
    let ctor = format!("{E}[constructor]counter");
    let a = match i.call(&ctor, &[Val::U32(10)]).unwrap().remove(0) {
        Val::Resource(r) => r,
        other => panic!("constructor returned {other:?}"),
    };
    assert!(a.own);
    let borrow = |r: Resource| Val::Resource(Resource { own: false, ..r });
    assert_eq!(
        i.call(&format!("{E}[method]counter.increment"), &[borrow(a)])
            .unwrap(),
        vec![Val::U32(11)]
    );
    assert_eq!(
        i.call(&format!("{E}[method]counter.get"), &[borrow(a)])
            .unwrap(),
        vec![Val::U32(11)]
    );
    // wash's `iface.func` spelling, where the method's own name has a `.`.
    assert_eq!(
        i.call("twig:types/echo.[method]counter.get", &[borrow(a)])
            .unwrap(),
        vec![Val::U32(11)]
    );
    let z = match i
        .call(&format!("{E}[static]counter.zero"), &[])
        .unwrap()
        .remove(0)
    {
        Val::Resource(r) => r,
        other => panic!("zero returned {other:?}"),
    };
    assert_eq!(
        i.call(&format!("{E}sum-counters"), &[borrow(a), borrow(z)])
            .unwrap(),
        vec![Val::U32(11)]
    );
    let many = match i
        .call(&format!("{E}make-counters"), &[Val::U32(5)])
        .unwrap()
        .remove(0)
    {
        Val::List(v) => v,
        other => panic!("make-counters returned {other:?}"),
    };
    assert_eq!(many.len(), 5);
    assert_eq!(
        i.call(&format!("{E}live-counters"), &[]).unwrap(),
        vec![Val::U32(7)]
    );
    for v in many {
        let Val::Resource(r) = v else {
            panic!("not a resource")
        };
        i.drop_resource(r).unwrap();
    }
    i.drop_resource(z).unwrap();
    assert_eq!(
        i.call(&format!("{E}live-counters"), &[]).unwrap(),
        vec![Val::U32(1)]
    );
    // An own handle given back to the guest is consumed by it.
    i.drop_resource(a).unwrap();
    assert_eq!(
        i.call(&format!("{E}live-counters"), &[]).unwrap(),
        vec![Val::U32(0)]
    );
}

#[test]
fn host_resources_are_borrowed_created_and_dropped() {
    let (mut i, blob_ty) = setup();
    i.data_mut().blobs.insert(1000, vec![1, 2, 3]);
    let own = Resource::host_own(blob_ty, 1000);
    let borrowed = Resource::host_borrow(blob_ty, 1000);
    assert_eq!(
        i.call(&format!("{E}blob-len"), &[Val::Resource(borrowed)])
            .unwrap(),
        vec![Val::U32(3)]
    );
    assert_eq!(
        i.call(&format!("{E}blob-read"), &[Val::Resource(borrowed)])
            .unwrap(),
        vec![bytes(&[1, 2, 3])]
    );
    assert_eq!(
        i.live_handles(),
        0,
        "borrows lent for a call are gone after it"
    );
    // The guest calls the host constructor and hands us the own handle.
    let made = match i
        .call(&format!("{E}make-blob"), &[bytes(&[5; 8])])
        .unwrap()
        .remove(0)
    {
        Val::Resource(r) => r,
        other => panic!("make-blob returned {other:?}"),
    };
    assert!(made.own);
    assert_eq!(i.data().blobs.get(&made.rep), Some(&vec![5; 8]));
    // Ownership moves into the guest, which drops it: the host destructor runs.
    assert_eq!(
        i.call(&format!("{E}consume-blob"), &[Val::Resource(own)])
            .unwrap(),
        vec![Val::U32(3)]
    );
    assert_eq!(i.data().blobs_dropped, 1);
    assert!(!i.data().blobs.contains_key(&1000));
}

#[test]
fn wrong_argument_shapes_are_refused_without_poisoning() {
    let (mut i, _) = setup();
    let err = i
        .call(&format!("{E}echo-u8"), &[s("not a u8")])
        .unwrap_err();
    assert!(err.to_string().contains("bad arguments"), "{err}");
    let err = i
        .call(&format!("{E}echo-enum"), &[Val::Enum("purple".into())])
        .unwrap_err();
    assert!(err.to_string().contains("purple"), "{err}");
    let err = i.call(&format!("{E}echo-u8"), &[]).unwrap_err();
    assert!(err.to_string().contains("expected 1 arguments"), "{err}");
    assert!(!i.is_poisoned());
    echo(&mut i, "echo-u8", Val::U8(1));
}

/// An interface the embedder only forwards (a fallback, no resources of
/// its own) whose resource a component imports: instantiation and the dry
/// run (`Component::unresolved_imports`, behind `twig validate`) both say
/// the host does not provide the interface, not that the host's copy of it
/// lacks a resource.
#[test]
fn a_forwarded_interface_cannot_carry_resources_and_the_error_says_so() {
    let engine = Engine::default();
    let c = load(&engine, "types");
    let mut linker = wasi_linker();
    for iface in ["twig:types/values", "twig:types/host-echo"] {
        linker
            .interface(iface)
            .fallback(|_, _, _, _| Err(twig_component::HostError::new("not called")));
    }
    let want = "the host does not provide `twig:types/values`; calls to it can be forwarded over a link, but its resources cannot";
    let dry = c.unresolved_imports(&linker);
    assert!(
        dry.iter()
            .any(|(name, why)| name == "twig:types/values#blob" && why == want),
        "{dry:?}"
    );
    let err = match Instance::new(&linker, &c, TestState::default()) {
        Ok(_) => panic!("instantiated without the blob resource"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("twig:types/values#blob") && err.contains(want),
        "{err}"
    );
    // With the resource defined, nothing is left unresolved.
    let mut full = wasi_linker();
    add_types_host(&mut full);
    assert_eq!(c.unresolved_imports(&full), Vec::new());
}
