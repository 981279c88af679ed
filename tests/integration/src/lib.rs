//! Shared helpers for twig's integration tests: finding the guest
//! components that `tests/guests/build.sh` built, and a host state type with
//! WASI and the test interfaces.

use std::path::PathBuf;

use twig_component::{Component, Engine, Instance, Linker};
use twig_wasi::{Capture, WasiCtx, WasiView};

/// Path of a built guest component, `tests/guests/out/NAME.wasm`.
///
/// Panics with instructions when the guests have not been built, so a test
/// run never passes by skipping them.
pub fn guest_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("TWIG_GUESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../guests/out"));
    let p = dir.join(format!("{name}.wasm"));
    assert!(p.exists(), "guest {} is missing: run tests/guests/build.sh first (the README's test command does)", p.display());
    p
}

pub fn guest_bytes(name: &str) -> Vec<u8> {
    std::fs::read(guest_path(name)).expect("read guest")
}

/// Per-instance state of the tests: WASI plus anything a test records.
#[derive(Default)]
pub struct TestState {
    pub wasi: WasiCtx,
    pub calls: u32,
}

impl WasiView for TestState {
    fn wasi(&mut self) -> &mut WasiCtx {
        &mut self.wasi
    }
}

/// A linker with WASI registered.
pub fn wasi_linker() -> Linker<TestState> {
    let mut l = Linker::new();
    twig_wasi::add_to_linker(&mut l);
    l
}

pub fn load(engine: &Engine, name: &str) -> Component {
    Component::new(engine, name, &guest_bytes(name)).unwrap_or_else(|e| panic!("load {name}: {e}"))
}

/// Instantiates with a fresh WASI context whose output is captured.
pub fn instantiate(linker: &Linker<TestState>, c: &Component) -> (Instance<TestState>, Capture) {
    let cap = Capture::default();
    let state = TestState { wasi: WasiCtx::new().capture(cap.clone()), calls: 0 };
    let inst = Instance::new(linker, c, state).unwrap_or_else(|e| panic!("instantiate {}: {e}", c.name()));
    (inst, cap)
}
