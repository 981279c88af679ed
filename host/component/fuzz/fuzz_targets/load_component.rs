//! Feeds arbitrary bytes to component loading. Whatever the input, loading
//! must return `Ok` or a clean `Error`, never panic; anything that loads is
//! also instantiated against the WASI host and, if it exports a
//! parameterless function, called under tight limits.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;
use std::time::Duration;
use twig_component::{Component, Engine, EngineConfig, Instance, Limits, Linker};
use twig_wasi::WasiCtx;

fn engine() -> &'static Engine {
    static E: OnceLock<Engine> = OnceLock::new();
    E.get_or_init(|| {
        Engine::new(EngineConfig {
            default_limits: Limits {
                fuel_per_call: Some(1_000_000),
                deadline: Some(Duration::from_millis(200)),
                memory_bytes: 16 << 20,
                table_elements: 10_000,
                max_instances: 4,
            },
            ..Default::default()
        })
    })
}

/// The native stack a guest runs on here. cargo-fuzz builds with debug
/// assertions, which keep wasmi's handler calls from becoming sibling
/// calls, so a deeply recursing guest uses native stack per wasm frame
/// (the workspace turns them off for wasmi in dev builds for the same
/// reason). On libFuzzer's own 8 MiB thread such an input overflows the
/// stack, a SIGSEGV libFuzzer cannot report; on a thread with room it
/// traps at the engine's recursion limit, as in a release build.
const GUEST_STACK: usize = 512 << 20;

fuzz_target!(|data: &[u8]| {
    let data = data.to_vec();
    let run = std::thread::Builder::new()
        .stack_size(GUEST_STACK)
        .spawn(move || load_and_call(&data))
        .expect("spawn the guest thread");
    // A panic there is a finding: hand it on to libFuzzer.
    if let Err(p) = run.join() {
        std::panic::resume_unwind(p);
    }
});

fn load_and_call(data: &[u8]) {
    let Ok(c) = Component::new(engine(), "fuzz.wasm", data) else { return };
    let mut linker: Linker<WasiCtx> = Linker::new();
    twig_wasi::add_to_linker(&mut linker);
    let Ok(mut inst) = Instance::new(&linker, &c, WasiCtx::new()) else { return };
    let names: Vec<String> = inst.export_names().into_iter().map(|s| s.to_string()).collect();
    for name in names {
        if inst.export_sig(&name).is_some_and(|s| s.params.is_empty()) {
            let _ = inst.call(&name, &[]);
        }
    }
}
