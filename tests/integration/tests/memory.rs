//! Loading and dropping components must give their memory back: a host
//! redeploys for months. (wasmi keeps compiled code as long as its engine
//! lives, so twig gives every component an engine of its own.)
#![forbid(unsafe_code)]

use twig_component::{Component, Engine};
use twig_integration_tests::*;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    s.split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .expect("resident pages")
        * 4
}

#[test]
fn reloading_a_component_does_not_grow_memory() {
    let engine = Engine::default();
    let linker = wasi_linker();
    let bytes = guest_bytes("hello");
    let cycle = || {
        let c = Component::new(&engine, "hello", &bytes).expect("load");
        let (mut i, _) = instantiate(&linker, &c);
        i.call("wasi:cli/run@0.2.0#run", &[]).expect("run");
    };
    for _ in 0..20 {
        cycle();
    }
    let before = rss_kib();
    for _ in 0..300 {
        cycle();
    }
    let grown = rss_kib().saturating_sub(before);
    // Before the fix each load of this 72 KB guest kept ~70 KiB (about
    // 20 MiB over 300 loads); allow allocator noise only.
    assert!(
        grown < 4096,
        "RSS grew by {grown} KiB over 300 load/instantiate/call/drop cycles"
    );
}
