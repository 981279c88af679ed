//! The value interface: arguments written in WAVE, results printed in WAVE,
//! parsed with the export's own types (what `twig invoke` will use).
#![forbid(unsafe_code)]

use twig_component::wave::to_wave;
use twig_component::Engine;
use twig_integration_tests::*;

#[test]
fn call_with_wave_arguments_and_print_wave_results() {
    let engine = Engine::default();
    let mut linker = wasi_linker();
    add_types_host(&mut linker);
    let c = load(&engine, "types");
    let (mut inst, _) = instantiate(&linker, &c);
    let cases = [
        ("twig:types/echo#echo-string", r#""héllo \"wave\"""#),
        ("twig:types/echo#echo-option-option", "some(none)"),
        ("twig:types/echo#echo-result", "err(7)"),
        ("twig:types/echo#echo-enum", "magenta"),
        ("twig:types/echo#echo-small-flags", "{read, execute}"),
        ("twig:types/echo#echo-tuple", r#"(1, "two", 3.5)"#),
        (
            "twig:types/echo#echo-variant",
            "outcome(ok(some(circle(1.5))))",
        ),
        (
            "twig:types/echo#echo-record",
            r#"{id: 1, name: "n", score: 2.5, active: true, tag: some("t"), data: [1, 2], aliases: some(["a"]), initial: 'λ', delta: -3}"#,
        ),
    ];
    for (func, text) in cases {
        let types = inst.export_param_types(func).expect("export exists");
        let args = types
            .parse(&[text])
            .unwrap_or_else(|e| panic!("{func}: {e}"));
        let out = inst
            .call(func, &args)
            .unwrap_or_else(|e| panic!("{func}: {e}"));
        assert_eq!(to_wave(&out[0]), text, "{func}");
    }
    // WAVE's canonical form leaves out record fields that are `none`.
    let func = "twig:types/echo#echo-record";
    let text = r#"{id: 2, name: "", score: 0, active: false, tag: none, data: [], aliases: none, initial: 'x', delta: 0}"#;
    let args = inst
        .export_param_types(func)
        .expect("export")
        .parse(&[text])
        .expect("parse");
    let out = inst.call(func, &args).expect("call");
    assert_eq!(
        to_wave(&out[0]),
        r#"{id: 2, name: "", score: 0, active: false, data: [], initial: 'x', delta: 0}"#
    );
}

#[test]
fn wave_errors_name_the_argument_and_type() {
    let engine = Engine::default();
    let mut linker = wasi_linker();
    add_types_host(&mut linker);
    let c = load(&engine, "types");
    let (inst, _) = instantiate(&linker, &c);
    let types = inst
        .export_param_types("twig:types/echo#echo-u8")
        .expect("export");
    let err = types.parse(&["300"]).unwrap_err();
    assert!(err.contains("argument 1") && err.contains("u8"), "{err}");
    let err = types.parse(&[]).unwrap_err();
    assert!(err.contains("expected 1 arguments"), "{err}");
    let types = inst
        .export_param_types("twig:types/echo#echo-enum")
        .expect("export");
    let err = types.parse(&["purple"]).unwrap_err();
    assert!(err.contains("purple"), "{err}");
    let types = inst
        .export_param_types("twig:types/echo#echo-variant")
        .expect("export");
    assert!(
        types.parse(&["small"]).unwrap_err().contains("small"),
        "a payload case without payload"
    );
    assert!(
        types.parse(&["empty(1)"]).is_err(),
        "a payload on a payload-less case"
    );
    assert!(types.parse(&["nosuch"]).unwrap_err().contains("nosuch"));
}

/// A `list<u8>` reads and prints as the same WAVE text as before
/// (`[1, 2, 255]`), and is parsed into the byte form the engine lifts.
#[test]
fn byte_lists_keep_their_wave_text() {
    let engine = Engine::default();
    let mut linker = wasi_linker();
    add_types_host(&mut linker);
    let c = load(&engine, "types");
    let (mut inst, _) = instantiate(&linker, &c);
    let func = "twig:types/echo#echo-bytes";
    let types = inst.export_param_types(func).expect("export");
    for text in ["[1, 2, 255]", "[]", "[0]"] {
        let args = types.parse(&[text]).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            matches!(&args[0], twig_component::Val::Bytes(_)),
            "{args:?}"
        );
        let out = inst.call(func, &args).expect("call");
        assert_eq!(to_wave(&out[0]), text);
    }
    let err = types.parse(&["[1, 256]"]).unwrap_err();
    assert!(
        err.contains("argument 1") && err.contains("list<u8>"),
        "{err}"
    );
    // The older form prints the same.
    let older =
        twig_component::Val::List(vec![twig_component::Val::U8(1), twig_component::Val::U8(2)]);
    assert_eq!(to_wave(&older), "[1, 2]");
}
