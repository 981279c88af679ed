//! The wRPC value encoding (`twig_component::wrpc`) over the types of a real
//! component: every parameter and result list of the types world round
//! trips, every strict prefix of an encoding asks for more bytes, known
//! byte vectors come out of real WIT types, hostile bytes fail cleanly, and
//! a host function finds its own types on its `HostContext`.
#![forbid(unsafe_code)]

use proptest::prelude::*;
use twig_component::wave::TypeList;
use twig_component::wrpc::{self, Codec, DecodeError};
use twig_component::{Engine, HostError, Instance, Resource, Val};
use twig_integration_tests::arbitrary::{value, Rng};
use twig_integration_tests::*;

const E: &str = "twig:types/echo#";

fn setup() -> Instance<TestState> {
    let engine = Engine::default();
    let mut linker = wasi_linker();
    add_types_host(&mut linker);
    let c = load(&engine, "types");
    instantiate(&linker, &c).0
}

fn params(inst: &Instance<TestState>, f: &str) -> TypeList {
    inst.export_param_types(&format!("{E}{f}"))
        .unwrap_or_else(|| panic!("no export {f}"))
}

fn results(inst: &Instance<TestState>, f: &str) -> TypeList {
    inst.export_result_types(&format!("{E}{f}"))
        .unwrap_or_else(|| panic!("no export {f}"))
}

fn random_vals(rng: &mut Rng, types: &TypeList) -> Vec<Val> {
    (0..types.len())
        .map(|i| value(rng, &types.get(i).expect("type"), 0))
        .collect()
}

fn same(a: &[Val], b: &[Val]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq_nan_aware(y))
}

/// Encodes, decodes (also with trailing bytes), and checks that every
/// strict prefix of the encoding is incomplete.
fn round_trip(what: &str, types: &TypeList, vals: &[Val]) -> Vec<u8> {
    let bytes = wrpc::encode(vals, types).unwrap_or_else(|e| panic!("{what}: {e}"));
    let (back, n) = wrpc::decode(&bytes, types).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(n, bytes.len(), "{what}");
    assert!(same(&back, vals), "{what}: {back:?} != {vals:?}");
    let mut longer = bytes.clone();
    longer.extend_from_slice(&[0xff, 0, 1]);
    let (back, n) = wrpc::decode(&longer, types).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        n == bytes.len() && same(&back, vals),
        "{what}: trailing bytes"
    );
    let codec = Codec::new(types);
    for k in 0..bytes.len() {
        match codec.decode(&bytes[..k]) {
            Err(DecodeError::Incomplete { needed }) => {
                assert!(needed > k && needed <= bytes.len(), "{what}: prefix {k}")
            }
            other => panic!("{what}: prefix of {k} of {} bytes: {other:?}", bytes.len()),
        }
    }
    bytes
}

#[test]
fn every_types_world_signature_round_trips() {
    let inst = setup();
    let mut rng = Rng::new(0x7769_7270_6376);
    let mut tested = 0;
    let mut refused = Vec::new();
    for name in inst.export_names() {
        for (side, types) in [
            ("params", inst.export_param_types(name).expect("export")),
            ("results", inst.export_result_types(name).expect("export")),
        ] {
            let what = format!("{name} {side}");
            if let Some(why) = Codec::new(&types).unsupported() {
                assert!(why.contains("resources cannot be sent"), "{what}: {why}");
                refused.push(what);
                continue;
            }
            for _ in 0..25 {
                let vals = random_vals(&mut rng, &types);
                round_trip(&what, &types, &vals);
            }
            tested += 1;
        }
    }
    // The echo functions (60) both ways, the host round trips, many-*.
    assert!(tested > 140, "only {tested} type lists tested");
    assert!(
        refused.iter().any(|r| r.contains("consume-blob params")),
        "{refused:?}"
    );
}

#[test]
fn known_bytes_from_real_types() {
    let inst = setup();
    let s = |x: &str| Val::String(x.into());
    let flags = |names: &[&str]| Val::Flags(names.iter().map(|n| n.to_string()).collect());
    let some = |v: Val| Val::Option(Some(Box::new(v)));
    let cases: Vec<(&str, Val, Vec<u8>)> = vec![
        ("echo-string", s("hi"), vec![2, b'h', b'i']),
        ("echo-u32", Val::U32(300), vec![0xac, 0x02]),
        ("echo-s32", Val::S32(-1), vec![0x7f]),
        ("echo-s8", Val::S8(-2), vec![0xfe]),
        ("echo-u8", Val::U8(255), vec![0xff]),
        ("echo-s64", Val::S64(-300), vec![0xd4, 0x7d]),
        ("echo-bool", Val::Bool(true), vec![1]),
        ("echo-char", Val::Char('λ'), vec![0xce, 0xbb]),
        (
            "echo-f64",
            Val::Float64(1.0),
            vec![0, 0, 0, 0, 0, 0, 0xf0, 0x3f],
        ),
        (
            "echo-list-u16",
            Val::List(vec![Val::U16(1), Val::U16(128)]),
            vec![2, 1, 0x80, 0x01],
        ),
        (
            "echo-bytes",
            Val::List(vec![Val::U8(0), Val::U8(200)]),
            vec![2, 0, 200],
        ),
        ("echo-option-option", some(Val::Option(None)), vec![1, 0]),
        ("echo-option-option", some(some(Val::U32(7))), vec![1, 1, 7]),
        (
            "echo-result",
            Val::Result(Err(Some(Box::new(Val::U32(7))))),
            vec![1, 7],
        ),
        (
            "echo-result",
            Val::Result(Ok(Some(Box::new(s("x"))))),
            vec![0, 1, b'x'],
        ),
        (
            "echo-result-err",
            Val::Result(Err(Some(Box::new(s("x"))))),
            vec![1, 1, b'x'],
        ),
        ("echo-result-err", Val::Result(Ok(None)), vec![0]),
        ("echo-result-unit", Val::Result(Err(None)), vec![1]),
        ("echo-enum", Val::Enum("magenta".into()), vec![4]),
        ("echo-small-flags", flags(&["read", "execute"]), vec![0b101]),
        // 12 flags: two bytes, flag i is bit i % 8 of byte i / 8.
        ("echo-mid-flags", flags(&["m0", "m9"]), vec![0x01, 0x02]),
        ("echo-mid-flags", flags(&[]), vec![0, 0]),
        ("echo-wide-flags", flags(&["w31"]), vec![0, 0, 0, 0x80]),
        (
            "echo-tuple",
            Val::Tuple(vec![Val::U8(1), s("ab"), Val::Float64(0.0)]),
            vec![1, 2, b'a', b'b', 0, 0, 0, 0, 0, 0, 0, 0],
        ),
        (
            "echo-shape",
            Val::Variant("circle".into(), Some(Box::new(Val::Float32(1.0)))),
            vec![1, 0, 0, 0x80, 0x3f],
        ),
        (
            "echo-variant",
            Val::Variant(
                "maybe-shape".into(),
                Some(Box::new(some(Val::Variant("point".into(), None)))),
            ),
            vec![7, 1, 0],
        ),
        (
            "echo-pairs",
            Val::List(vec![Val::Record(vec![
                ("key".into(), s("k")),
                ("value".into(), s("")),
            ])]),
            vec![1, 1, b'k', 0],
        ),
    ];
    for (f, val, bytes) in cases {
        let what = format!("{f}({val:?})");
        for types in [params(&inst, f), results(&inst, f)] {
            assert_eq!(
                round_trip(&what, &types, std::slice::from_ref(&val)),
                bytes,
                "{what}"
            );
        }
    }
    // A parameter list is its values one after another.
    let types = inst
        .export_param_types(&format!("{E}many-u32"))
        .expect("export");
    let vals: Vec<Val> = (0..17).map(|i| Val::U32(i * 10)).collect();
    let want: Vec<u8> = (0..17u8)
        .flat_map(|i| match i * 10 {
            x if x < 128 => vec![x],
            x => vec![x | 0x80, 1],
        })
        .collect();
    assert_eq!(round_trip("many-u32", &types, &vals), want);
}

#[test]
fn malformed_bytes_name_the_value_and_field() {
    let inst = setup();
    let types = params(&inst, "echo-record");
    let rec = Val::Record(vec![
        ("id".into(), Val::U32(1)),
        ("name".into(), Val::String("ab".into())),
        ("score".into(), Val::Float64(0.5)),
        ("active".into(), Val::Bool(true)),
        ("tag".into(), Val::Option(None)),
        ("data".into(), Val::List(vec![])),
        ("aliases".into(), Val::Option(None)),
        ("initial".into(), Val::Char('x')),
        ("delta".into(), Val::S64(0)),
    ]);
    let good = wrpc::encode(&[rec], &types).expect("encode");
    assert_eq!(&good[..4], &[1, 2, b'a', b'b']);
    let mut bad = good.clone();
    bad[2] = 0xff;
    assert_eq!(
        wrpc::decode(&bad, &types).unwrap_err().to_string(),
        "value 0: record field `name`: string is not UTF-8 (at byte 2)"
    );
    let active = 4 + 8;
    let mut bad = good.clone();
    bad[active] = 2;
    let e = wrpc::decode(&bad, &types).unwrap_err().to_string();
    assert!(
        e.starts_with("value 0: record field `active`: bool byte 0x02"),
        "{e}"
    );
    let mut bad = good.clone();
    let initial = good.len() - 2;
    bad[initial] = 0xed; // a 3-byte lead; `delta`'s 0x00 follows it
    let e = wrpc::decode(&bad, &types).unwrap_err().to_string();
    assert!(e.contains("record field `initial`: char"), "{e}");

    let types = params(&inst, "echo-small-flags");
    let e = wrpc::decode(&[0x08], &types).unwrap_err().to_string();
    assert!(e.contains("beyond the type's 3 flags"), "{e}");
    let types = params(&inst, "echo-enum");
    let e = wrpc::decode(&[5], &types).unwrap_err().to_string();
    assert!(e.contains("enum case index 5 is out of range"), "{e}");
    let types = params(&inst, "echo-u16");
    let e = wrpc::decode(&[0xff, 0xff, 0x04], &types)
        .unwrap_err()
        .to_string();
    assert!(e.contains("overflows u16"), "{e}");

    // Values that do not fit their types are refused by the encoder too.
    let types = params(&inst, "echo-variant");
    let e = wrpc::encode(&[Val::Variant("nosuch".into(), None)], &types).unwrap_err();
    assert_eq!(e.to_string(), "value 0: unknown variant case `nosuch`");
    let e = wrpc::encode(&[], &types).unwrap_err();
    assert_eq!(e.to_string(), "expected 1 values, got 0");
}

#[test]
fn resources_are_refused() {
    let inst = setup();
    for (types, what) in [
        (params(&inst, "consume-blob"), "consume-blob params"),
        (results(&inst, "make-blob"), "make-blob results"),
        (results(&inst, "make-counters"), "make-counters results"),
    ] {
        let why = Codec::new(&types).unsupported().expect(what);
        assert!(
            why.starts_with("value 0: ")
                && why.contains("resources cannot be sent over wRPC by twig yet"),
            "{what}: {why}"
        );
    }
    let types = results(&inst, "make-counters");
    assert!(Codec::new(&types)
        .unsupported()
        .expect("list of resources")
        .contains("list element"));
    let types = params(&inst, "consume-blob");
    let e = wrpc::encode(&[Val::Resource(Resource::host_own(0, 1))], &types)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("resources cannot be sent over wRPC by twig yet"),
        "{e}"
    );
    let e = wrpc::decode(&[0], &types).unwrap_err().to_string();
    assert!(
        e.contains("resources cannot be sent over wRPC by twig yet"),
        "{e}"
    );
}

/// A host function that sends its arguments through the wRPC encoding and
/// answers with decoded bytes, as a wRPC-forwarding fallback would.
#[test]
fn host_functions_see_their_own_types() {
    let engine = Engine::default();
    let mut linker = wasi_linker();
    add_types_host(&mut linker);
    linker
        .interface("twig:types/host-echo")
        .fallback(|name, cx, args, out| {
            let fail = |e: String| HostError::new(format!("{name}: {e}"));
            let ptys = cx
                .param_types()
                .ok_or_else(|| fail("no param types".into()))?;
            let rtys = cx
                .result_types()
                .ok_or_else(|| fail("no result types".into()))?;
            if ptys.len() != args.len() || rtys.len() != 1 {
                return Err(fail(format!(
                    "{} params, {} results",
                    ptys.len(),
                    rtys.len()
                )));
            }
            // Arguments to bytes and back, as a remote side would see them.
            let sent = wrpc::encode(args, &ptys).map_err(|e| fail(e.to_string()))?;
            let (got, n) = wrpc::decode(&sent, &ptys).map_err(|e| fail(e.to_string()))?;
            if n != sent.len() || !same(&got, args) {
                return Err(fail("arguments changed on the way".into()));
            }
            let answer = if name == "echo-many-u32" {
                Val::List(got)
            } else {
                got.into_iter().next().expect("one argument")
            };
            // The answer to bytes, then decoded with the result types.
            let reply = wrpc::encode(&[answer], &rtys).map_err(|e| fail(e.to_string()))?;
            let (vals, _) = wrpc::decode(&reply, &rtys).map_err(|e| fail(e.to_string()))?;
            cx.data_mut().calls += 1;
            out.extend(vals);
            Ok(())
        });
    let c = load(&engine, "types");
    let (mut inst, _) = instantiate(&linker, &c);
    let mut rng = Rng::new(42);
    let mut calls = 0;
    for f in [
        "roundtrip-via-host-string",
        "roundtrip-via-host-bytes",
        "roundtrip-via-host-record",
        "roundtrip-via-host-pairs",
        "roundtrip-via-host-variant",
        "roundtrip-via-host-option-option",
        "roundtrip-via-host-small-flags",
        "roundtrip-via-host-wide-flags",
        "roundtrip-via-host-tuple",
        "roundtrip-via-host-big",
    ] {
        let types = params(&inst, f);
        for _ in 0..10 {
            let args = random_vals(&mut rng, &types);
            let out = inst
                .call(&format!("{E}{f}"), &args)
                .unwrap_or_else(|e| panic!("{f}: {e}"));
            assert!(same(&out, &args), "{f}: {out:?} != {args:?}");
            calls += 1;
        }
    }
    let args = vec![Val::List((0..17).map(Val::U32).collect())];
    let out = inst
        .call(&format!("{E}roundtrip-via-host-many-u32"), &args)
        .expect("many-u32");
    assert_eq!(out, args);
    assert_eq!(inst.data().calls, calls + 1);
}

/// Rich type lists to throw bytes at, built once per thread.
fn with_hostile_targets<R>(f: impl FnOnce(&[TypeList]) -> R) -> R {
    thread_local! {
        static LISTS: Vec<TypeList> = {
            let inst = setup();
            [
                "echo-big",
                "echo-list-variant",
                "echo-list-record",
                "echo-list-pairs",
                "many-mixed",
                "echo-list-wide-flags",
                "echo-list-char",
                "echo-list-option-option",
            ]
            .iter()
            .map(|f| params(&inst, f))
            .collect()
        };
    }
    LISTS.with(|l| f(l))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1500))]

    /// Arbitrary bytes against rich types: an error or values, never a
    /// panic; whatever decodes encodes and decodes to the same values.
    #[test]
    fn hostile_bytes_fail_cleanly(
        bytes in prop::collection::vec(
            prop_oneof![3 => 0u8..4, 1 => any::<u8>()],
            0..256,
        ),
        which in 0usize..8,
    ) {
        with_hostile_targets(|lists| {
            let types = &lists[which % lists.len()];
            match wrpc::decode(&bytes, types) {
                Ok((vals, n)) => {
                    prop_assert!(n <= bytes.len());
                    let again = wrpc::encode(&vals, types).expect("re-encode");
                    let (back, m) = wrpc::decode(&again, types).expect("decode again");
                    prop_assert_eq!(m, again.len());
                    prop_assert!(same(&back, &vals));
                }
                Err(DecodeError::Incomplete { needed }) => prop_assert!(needed > bytes.len()),
                Err(e @ DecodeError::Invalid { .. }) => {
                    prop_assert!(e.to_string().starts_with("value "), "{}", e);
                }
            }
            Ok(())
        })?;
    }

    /// Valid encodings with random bytes flipped: still no panic.
    #[test]
    fn corrupted_encodings_fail_cleanly(
        seed in any::<u64>(),
        flips in prop::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        with_hostile_targets(|lists| {
            let mut rng = Rng::new(seed);
            let types = &lists[(seed % lists.len() as u64) as usize];
            let vals = random_vals(&mut rng, types);
            let mut bytes = wrpc::encode(&vals, types).expect("encode");
            for (at, b) in flips {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] = b;
                }
            }
            if let Ok((vals, _)) = wrpc::decode(&bytes, types) {
                let again = wrpc::encode(&vals, types).expect("re-encode");
                prop_assert!(wrpc::decode(&again, types).is_ok());
            }
            Ok(())
        })?;
    }
}
