//! Idle instances must not keep untouched linear memory resident (its own
//! test binary: it measures the process's RSS).
#![forbid(unsafe_code)]

use twig_component::{Component, Engine, Limits};
use twig_integration_tests::*;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/statm").expect("read /proc/self/statm");
    s.split_whitespace()
        .nth(1)
        .and_then(|p| p.parse::<u64>().ok())
        .expect("resident pages")
        * 4
}

/// wasmi zero-fills new linear memory, which makes all of it resident;
/// `release_zero_pages` gives back what the guest has not written, and the
/// guest still sees the same bytes.
#[test]
fn idle_instances_do_not_keep_untouched_memory_resident() {
    let engine = Engine::default();
    let mut linker = wasi_linker();
    // greeter imports these; this test never calls them.
    linker
        .interface("twig:test/host-fns")
        .fallback(|name, _cx, _args, _out| {
            Err(twig_component::HostError::new(format!("{name} unused")))
        });
    let limits = Limits {
        max_instances: 64,
        ..Limits::default()
    };
    let c =
        Component::with_limits(&engine, "greeter", &guest_bytes("greeter"), limits).expect("load");
    let mut kept = Vec::new();
    // Warm up the allocator, then measure 40 instances.
    for _ in 0..4 {
        let (i, _) = instantiate(&linker, &c);
        drop(i);
    }
    let before = rss_kib();
    let mut released = 0;
    for _ in 0..40 {
        let (mut i, _) = instantiate(&linker, &c);
        let memory = i.memory_bytes();
        assert!(
            memory >= 1 << 20,
            "a Rust guest starts with 1 MiB+ ({memory})"
        );
        released += i.release_zero_pages();
        kept.push(i);
    }
    let per_instance = rss_kib().saturating_sub(before) / 40;
    assert!(
        released / 40 > 512 << 10,
        "released only {} bytes per instance",
        released / 40
    );
    // Without the release each instance kept its whole 1.1 MiB memory.
    assert!(
        per_instance < 400,
        "{per_instance} KiB resident per idle instance"
    );
    // The guests work as before, including their data in memory.
    for i in kept.iter_mut() {
        let out = i
            .call("greet", &[twig_component::Val::String("edge".into())])
            .expect("greet");
        assert_eq!(
            out,
            vec![twig_component::Val::String("Hello, edge!".into())]
        );
        // A second round after the guest wrote to memory again.
        i.release_zero_pages();
        let out = i
            .call("greet", &[twig_component::Val::String("again".into())])
            .expect("greet");
        assert_eq!(
            out,
            vec![twig_component::Val::String("Hello, again!".into())]
        );
    }
}
