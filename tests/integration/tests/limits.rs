//! Misbehaving guests are stopped with an error that names the component,
//! the function and the limit, while other instances keep answering; bad
//! binaries and unsatisfied imports are refused with a clear message.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use twig_component::{Component, Engine, Error, Instance, Limits, TrapKind, Val};
use twig_integration_tests::*;

const M: &str = "misbehave";

fn with_limits(engine: &Engine, limits: Limits) -> Component {
    Component::with_limits(engine, M, &guest_bytes(M), limits).expect("load misbehave")
}

fn tight() -> Limits {
    Limits {
        fuel_per_call: Some(20_000_000),
        deadline: Some(Duration::from_secs(20)),
        memory_bytes: 32 << 20,
        table_elements: 10_000,
        max_instances: 8,
    }
}

/// Calls `func` on a fresh instance, expects it to be stopped, and checks
/// that a healthy instance of the same component still answers afterwards.
fn stopped(c: &Component, func: &str, args: &[Val]) -> (Error, String) {
    let linker = misbehave_linker();
    let (mut healthy, _) = instantiate(&linker, c);
    let (mut bad, cap) = instantiate(&linker, c);
    let err = bad.call(func, args).expect_err("must be stopped");
    let msg = err.to_string();
    assert!(msg.contains(M), "error names the component: {msg}");
    assert!(msg.contains(func), "error names the function: {msg}");
    assert!(bad.is_poisoned());
    assert!(matches!(bad.call("ok", &[]), Err(Error::Poisoned { .. })));
    assert_eq!(
        healthy.call("ok", &[]).expect("healthy instance answers"),
        vec![Val::U32(42)]
    );
    let stderr = String::from_utf8_lossy(&cap.stderr.lock().unwrap()).into_owned();
    (err, stderr)
}

#[test]
fn trap_is_named() {
    let engine = Engine::default();
    let (err, _) = stopped(&with_limits(&engine, tight()), "trap", &[]);
    assert_eq!(err.trap_kind(), Some(&TrapKind::Unreachable), "{err}");
}

#[test]
fn panic_is_named_and_its_message_reaches_stderr() {
    let engine = Engine::default();
    let (err, stderr) = stopped(&with_limits(&engine, tight()), "panic", &[]);
    assert_eq!(err.trap_kind(), Some(&TrapKind::Unreachable), "{err}");
    assert!(
        stderr.contains("guest panicked on purpose"),
        "stderr: {stderr}"
    );
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let engine = Engine::default();
    let (err, _) = stopped(&with_limits(&engine, tight()), "spin", &[]);
    assert_eq!(
        err.trap_kind(),
        Some(&TrapKind::OutOfFuel { limit: 20_000_000 }),
        "{err}"
    );
    assert!(err.to_string().contains("fuel limit of 20000000"), "{err}");
}

#[test]
fn infinite_loop_hits_the_deadline() {
    let engine = Engine::default();
    let limits = Limits {
        fuel_per_call: None,
        deadline: Some(Duration::from_millis(300)),
        ..tight()
    };
    let started = Instant::now();
    let (err, _) = stopped(&with_limits(&engine, limits), "spin", &[]);
    let took = started.elapsed();
    assert_eq!(
        err.trap_kind(),
        Some(&TrapKind::Deadline { millis: 300 }),
        "{err}"
    );
    assert!(
        took < Duration::from_secs(5),
        "the deadline stopped the guest promptly ({took:?})"
    );
}

#[test]
fn unbounded_allocation_hits_the_memory_cap() {
    let engine = Engine::default();
    let (err, _) = stopped(&with_limits(&engine, tight()), "hog", &[]);
    assert_eq!(
        err.trap_kind(),
        Some(&TrapKind::MemoryLimit { bytes: 32 << 20 }),
        "{err}"
    );
}

#[test]
fn deep_recursion_is_a_stack_overflow() {
    let engine = Engine::default();
    let c = with_limits(&engine, tight());
    let linker = misbehave_linker();
    let (mut ok, _) = instantiate(&linker, &c);
    assert_eq!(
        ok.call("recurse", &[Val::U64(1000)]).unwrap(),
        vec![Val::U64(1000)]
    );
    let (err, _) = stopped(&c, "recurse", &[Val::U64(10_000_000)]);
    assert_eq!(err.trap_kind(), Some(&TrapKind::StackOverflow), "{err}");
}

#[test]
fn live_instances_are_capped_per_component() {
    let engine = Engine::default();
    let c = with_limits(
        &engine,
        Limits {
            max_instances: 2,
            ..tight()
        },
    );
    let linker = misbehave_linker();
    let (a, _) = instantiate(&linker, &c);
    let (_b, _) = instantiate(&linker, &c);
    let err = match Instance::new(&linker, &c, TestState::default()) {
        Err(e) => e,
        Ok(_) => panic!("a third instance must be refused"),
    };
    assert!(
        matches!(err, Error::InstanceLimit { limit: 2, .. }),
        "{err}"
    );
    assert!(err.to_string().contains(M), "{err}");
    drop(a);
    assert_eq!(c.live_instances(), 1);
    let (mut again, _) = instantiate(&linker, &c);
    assert_eq!(again.call("ok", &[]).unwrap(), vec![Val::U32(42)]);
}

#[test]
fn garbage_bytes_are_not_a_component() {
    let engine = Engine::default();
    for bytes in [&b""[..], b"hello world", b"\x7fELF\x02\x01\x01\0\0\0"] {
        let err = Component::new(&engine, "junk.wasm", bytes)
            .err()
            .expect("refused");
        assert!(matches!(err, Error::NotAComponent { .. }), "{err}");
        assert!(err.to_string().contains("junk.wasm"), "{err}");
    }
}

#[test]
fn a_core_module_is_refused_as_a_component() {
    let engine = Engine::default();
    // The smallest valid core module: magic + version 1.
    let err = Component::new(&engine, "core.wasm", b"\0asm\x01\0\0\0")
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("core WebAssembly module, not a component"),
        "{msg}"
    );
}

#[test]
fn a_truncated_component_is_invalid() {
    let engine = Engine::default();
    let bytes = guest_bytes("greeter");
    let err = Component::new(&engine, "cut.wasm", &bytes[..bytes.len() / 2])
        .err()
        .expect("refused");
    assert!(matches!(err, Error::InvalidComponent { .. }), "{err}");
    assert!(err.to_string().contains("cut.wasm"), "{err}");
}

#[test]
fn unsatisfied_import_is_named() {
    let engine = Engine::default();
    let c = load(&engine, "greeter");
    let err = match Instance::new(&wasi_linker(), &c, TestState::default()) {
        Err(e) => e,
        Ok(_) => panic!("greeter needs twig:test/host-fns"),
    };
    let msg = err.to_string();
    assert!(matches!(err, Error::MissingImport { .. }), "{msg}");
    assert!(
        msg.contains("twig:test/host-fns"),
        "the message names the import: {msg}"
    );
    assert!(msg.contains("greeter"), "{msg}");
    assert_eq!(
        c.live_instances(),
        0,
        "a failed instantiation frees its slot"
    );
}
