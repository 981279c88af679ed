//! A plain Rust `std` guest (`println!`, env, clocks) runs on the WASI host.
#![forbid(unsafe_code)]

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

#[test]
fn wasmcloud_component_guest_logs_through_wasi_logging() {
    let engine = Engine::default();
    let linker = wasi_linker();
    let c = load(&engine, "wasmcloud");
    let imports: Vec<String> = c.imports().into_iter().map(|i| i.name).collect();
    assert!(
        imports
            .iter()
            .any(|n| n == "wasi:logging/logging@0.1.0-draft"),
        "{imports:?}"
    );
    let (mut inst, cap) = instantiate(&linker, &c);
    let out = inst
        .call("hello", &[Val::String("twig".into())])
        .expect("hello");
    assert_eq!(
        out,
        vec![Val::String("Hello, twig, from wasmcloud-component!".into())]
    );
    let log = String::from_utf8(cap.log.lock().unwrap().clone()).unwrap();
    assert!(
        log.contains("[info]") && log.contains("hello called with name=twig"),
        "log was: {log}"
    );
}

#[test]
fn wasmcloud_http_guest_links_against_mixed_wasi_versions() {
    // wasi:http is a provider of a later issue; what matters here is that a
    // guest mixing wasi:io@0.2.6 with wasi:http/types@0.2.4 gets as far as
    // naming exactly the one interface this host lacks.
    let engine = Engine::default();
    let c = load(&engine, "wasmcloud-http");
    let err = match twig_component::Instance::new(&wasi_linker(), &c, TestState::default()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("wasi:http is not provided by the WASI host"),
    };
    assert!(err.contains("wasi:http/types@0.2.4"), "{err}");
    assert!(
        !err.contains("wasi:io"),
        "every wasi:io import was satisfied: {err}"
    );
}
