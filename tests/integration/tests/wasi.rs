//! A plain Rust `std` guest (`println!`, env, clocks) runs on the WASI host.

use twig_component::{Engine, Val};
use twig_integration_tests::*;
use twig_wasi::{Capture, WasiCtx};

#[test]
fn std_guest_prints_and_exits_ok() {
    let engine = Engine::default();
    let linker = wasi_linker();
    let c = load(&engine, "hello");
    let cap = Capture::default();
    let state = TestState::with_wasi(
        WasiCtx::new()
            .env("TWIG_GREETING", "howdy")
            .capture(cap.clone()),
    );
    let mut inst = twig_component::Instance::new(&linker, &c, state).expect("instantiate");
    let out = inst.call("wasi:cli/run@0.2.0#run", &[]).expect("run");
    assert_eq!(out, vec![Val::Result(Ok(None))]);
    let stdout = String::from_utf8(cap.stdout.lock().unwrap().clone()).unwrap();
    assert!(
        stdout.contains("Hello from twig guest"),
        "stdout was: {stdout}"
    );
    assert!(
        stdout.contains("TWIG_GREETING=howdy"),
        "stdout was: {stdout}"
    );
    assert!(stdout.contains("wall clock:"), "stdout was: {stdout}");
    let stderr = String::from_utf8(cap.stderr.lock().unwrap().clone()).unwrap();
    assert!(!stderr.is_empty(), "the guest writes one line to stderr");
}

#[test]
fn inspect_lists_wasi_imports_at_mixed_versions() {
    let engine = Engine::default();
    let c = load(&engine, "hello");
    let names: Vec<String> = c.imports().into_iter().map(|i| i.name).collect();
    assert!(
        names.iter().any(|n| n == "wasi:io/streams@0.2.6"),
        "{names:?}"
    );
    assert!(
        names.iter().any(|n| n.starts_with("wasi:cli/stdout@")),
        "{names:?}"
    );
    let exports: Vec<String> = c.exports().into_iter().map(|e| e.0).collect();
    assert_eq!(exports, vec!["wasi:cli/run@0.2.0#run".to_string()]);
}
