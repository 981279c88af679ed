//! twig-bench: figures for BENCHMARKS.md.
//!
//! Run with `cargo run --release -p twig-bench` after `tests/guests/build.sh`
//! (or `tests/run`). Every figure is the median of several samples; each
//! sample times many iterations. Prints a Markdown table.
//!
//! * load + compile (eager and lazy-translation) and instantiate, per guest
//! * host -> guest call (`add`), and guest -> host import round trips
//!   (`call-double` with a u32, `call-shout` with a 1 KiB string,
//!   `call-reverse` with a 64 KiB `list<u8>`), the import cost being the
//!   difference to the plain call
//! * heap per live instance beyond the guest's linear memory (counting
//!   allocator)
//! * sha256 of 1 MiB: twig vs the same guest on wasmtime (CLI, if
//!   `TWIG_WASMTIME` is set) vs native Rust

use std::alloc::{GlobalAlloc, Layout, System};
use std::process::Command;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::{Duration, Instant};

use sha2::Digest;
use twig_component::{Compilation, Component, Engine, EngineConfig, Instance, Linker, Val};
use twig_integration_tests::{add_providers, add_types_host, guest_bytes, guest_path, TestState};
use twig_wasi::WasiCtx;

/// Counts live heap bytes, to measure what an instance costs.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SAMPLES: usize = 11;

/// Median time per iteration over `SAMPLES` samples of `iters` iterations.
fn bench(iters: u32, mut f: impl FnMut()) -> Duration {
    f(); // warm up (lazy translation, caches)
    let mut v: Vec<Duration> = (0..SAMPLES)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed() / iters
        })
        .collect();
    v.sort();
    v[SAMPLES / 2]
}

fn fmt(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns < 10_000 {
        format!("{:.2} µs", ns as f64 / 1000.0)
    } else if ns < 10_000_000 {
        format!("{:.1} µs", ns as f64 / 1000.0)
    } else {
        format!("{:.1} ms", ns as f64 / 1e6)
    }
}

fn linker() -> Linker<TestState> {
    let mut l = Linker::new();
    twig_wasi::add_to_linker(&mut l);
    add_types_host(&mut l);
    // misbehave imports wasi:keyvalue and wasmcloud:messaging.
    add_providers(&mut l);
    let fns = l.interface("twig:test/host-fns");
    fns.func("double", |_cx, args, out| {
        let x = if let Some(Val::U32(x)) = args.first() {
            *x
        } else {
            0
        };
        out.push(Val::U32(x.wrapping_mul(2)));
        Ok(())
    });
    fns.func("shout", |_cx, args, out| {
        let s = if let Some(Val::String(s)) = args.first() {
            s.to_uppercase()
        } else {
            String::new()
        };
        out.push(Val::String(s));
        Ok(())
    });
    fns.func("reverse", |_cx, args, out| {
        out.push(reversed(args.first()));
        Ok(())
    });
    l
}

/// What `host-fns.reverse` answers: the bytes of a `list<u8>` in reverse
/// order, read from and built in the engine's representation of a byte list.
fn reversed(v: Option<&Val>) -> Val {
    match v {
        Some(Val::Bytes(b)) => Val::Bytes(b.iter().rev().copied().collect()),
        _ => Val::Bytes(Vec::new()),
    }
}

/// A `list<u8>` argument of `n` bytes, as the engine takes it.
fn byte_list(n: usize) -> Val {
    Val::Bytes((0..n).map(|i| i as u8).collect())
}

fn state() -> TestState {
    TestState::with_wasi(WasiCtx::new())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    format!(
        "{} ({}), {} cores",
        cpu,
        std::env::consts::ARCH,
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    )
}

fn main() {
    // `twig-bench calls` runs only the "Calls" section (likewise `load`,
    // `memory`, `sha256`), e.g. to interleave runs of two builds.
    let only = std::env::args().nth(1);
    let want = |section: &str| only.as_deref().is_none_or(|o| o == section);
    println!("# twig-bench\n\nmachine: {}\ncommand: `cargo run --release -p twig-bench`\nsamples: median of {SAMPLES}\n", machine());
    let guests = [
        "hello",
        "greeter",
        "wasmcloud",
        "wasmcloud-http",
        "types",
        "misbehave",
        "compute",
    ];
    let eager = Engine::new(EngineConfig {
        compilation: Compilation::Eager,
        ..Default::default()
    });
    let lazy = Engine::new(EngineConfig {
        compilation: Compilation::LazyTranslation,
        ..Default::default()
    });
    let l = linker();

    if want("load") {
        println!("## Load and instantiate\n\n| guest | size | load+compile eager | load+compile lazy | instantiate |\n|---|---|---|---|---|");
        for g in guests {
            let bytes = guest_bytes(g);
            let te = bench(20, || {
                Component::new(&eager, g, &bytes).expect("load");
            });
            let tl = bench(20, || {
                Component::new(&lazy, g, &bytes).expect("load");
            });
            let c = Component::new(&lazy, g, &bytes).expect("load");
            let ti = if g == "wasmcloud-http" {
                "— (needs wasi:http)".to_string()
            } else {
                fmt(bench(200, || {
                    Instance::new(&l, &c, state()).expect("instantiate");
                }))
            };
            println!(
                "| {g} | {} KB | {} | {} | {} |",
                bytes.len() / 1000,
                fmt(te),
                fmt(tl),
                ti
            );
        }
    }

    if want("calls") {
        println!("\n## Calls\n\n| call | median |\n|---|---|");
        let greeter =
            Component::new(&lazy, "greeter", &guest_bytes("greeter")).expect("load greeter");
        let mut gi = Instance::new(&l, &greeter, state()).expect("instantiate greeter");
        let plain = bench(20_000, || {
            gi.call("add", &[Val::U32(1), Val::U32(2)]).expect("add");
        });
        let double = bench(20_000, || {
            gi.call("call-double", &[Val::U32(21)])
                .expect("call-double");
        });
        let kib = "x".repeat(1024);
        let shout_arg = [Val::String(kib.clone())];
        let echo_plain = bench(5_000, || {
            gi.call("greet", std::slice::from_ref(&shout_arg[0])).ok();
        });
        let shout = bench(5_000, || {
            gi.call("call-shout", &shout_arg).expect("call-shout");
        });
        println!(
            "| host → guest export `add(u32, u32) -> u32` | {} |",
            fmt(plain)
        );
        println!(
            "| export `call-double(u32)` = export + one guest → host import (u32) | {} |",
            fmt(double)
        );
        println!(
            "| **import round trip, u32** (difference) | **{}** |",
            fmt(double.saturating_sub(plain))
        );
        println!(
            "| export `call-shout(1 KiB string)` = export + one import (1 KiB string both ways) | {} |",
            fmt(shout)
        );
        println!(
            "| **import round trip, 1 KiB string** (`call-shout` − `call-double`) | **{}** |",
            fmt(shout.saturating_sub(double))
        );
        let _ = echo_plain;
        let data = [byte_list(64 << 10)];
        let reverse = bench(500, || {
            gi.call("call-reverse", &data).expect("call-reverse");
        });
        println!(
            "| export `call-reverse(64 KiB list<u8>)` = export + one import (64 KiB both ways) | {} |",
            fmt(reverse)
        );
        println!(
            "| **import round trip, 64 KiB `list<u8>`** (`call-reverse` − `call-double`) | **{}** |",
            fmt(reverse.saturating_sub(double))
        );
    }

    if want("memory") {
        println!("\n## Memory per live instance (beyond linear memory)\n\n| guest | heap per instance | linear memory per instance |\n|---|---|---|");
        for g in ["greeter", "hello", "types", "compute"] {
            let c = Component::with_limits(
                &lazy,
                g,
                &guest_bytes(g),
                twig_component::Limits {
                    max_instances: 1000,
                    ..Default::default()
                },
            )
            .expect("load");
            // One instance first, so lazily translated code is not counted.
            let first = Instance::new(&l, &c, state()).expect("instantiate");
            let n = 100;
            let before = LIVE.load(Ordering::Relaxed);
            let v: Vec<_> = (0..n)
                .map(|_| Instance::new(&l, &c, state()).expect("instantiate"))
                .collect();
            let after = LIVE.load(Ordering::Relaxed);
            let linear = v[0].memory_bytes();
            let per = (after - before) as f64 / n as f64 - linear as f64;
            println!("| {g} | {:.1} KiB | {} KiB |", per / 1024.0, linear / 1024);
            drop(v);
            drop(first);
        }
    }

    if want("sha256") {
        println!("\n## sha256 of 1 MiB (compute guest)\n\n| engine | median |\n|---|---|");
        let compute =
            Component::new(&lazy, "compute", &guest_bytes("compute")).expect("load compute");
        let mut ci = Instance::new(&l, &compute, state()).expect("instantiate compute");
        let twig = bench(3, || {
            ci.call("sha256-zeros", &[Val::U32(1 << 20)])
                .expect("sha256");
        });
        println!(
            "| twig (wasmi 2, lazy translation, fuel metering on: the default) | {} |",
            fmt(twig)
        );
        let unmetered = Engine::new(EngineConfig {
            metering: false,
            ..Default::default()
        });
        let compute_nm =
            Component::new(&unmetered, "compute", &guest_bytes("compute")).expect("load compute");
        let mut cnm = Instance::new(&l, &compute_nm, state()).expect("instantiate compute");
        let twig_nm = bench(3, || {
            cnm.call("sha256-zeros", &[Val::U32(1 << 20)])
                .expect("sha256");
        });
        println!(
            "| twig, fuel metering off (no fuel limit, no deadline) | {} (metering costs {:.0} %) |",
            fmt(twig_nm),
            (twig.as_secs_f64() / twig_nm.as_secs_f64() - 1.0) * 100.0
        );
        let zeros = vec![0u8; 1 << 20];
        let native = bench(50, || {
            std::hint::black_box(sha2::Sha256::digest(std::hint::black_box(&zeros)));
        });
        match std::env::var_os("TWIG_WASMTIME") {
            Some(w) => {
                // A private directory, removed on drop: a fixed name in
                // /tmp would be shared by concurrent runs (and users).
                let cwasm_dir = tempfile::tempdir().expect("creating a temp dir");
                let cwasm = cwasm_dir.path().join("compute.cwasm");
                let ok = Command::new(&w)
                    .arg("compile")
                    .arg(guest_path("compute"))
                    .arg("-o")
                    .arg(&cwasm)
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if ok {
                    // Process start-up is subtracted: time 64 MiB and 0 bytes.
                    let run = |len: u32| {
                        let t = Instant::now();
                        let st = Command::new(&w)
                            .args(["run", "--allow-precompiled", "--invoke"])
                            .arg(format!("sha256-zeros({len})"))
                            .arg(&cwasm)
                            .output()
                            .expect("run wasmtime");
                        assert!(st.status.success());
                        t.elapsed()
                    };
                    let mut per: Vec<Duration> = (0..5)
                        .map(|_| run(64 << 20).saturating_sub(run(0)) / 64)
                        .collect();
                    per.sort();
                    println!(
                        "| wasmtime 49 CLI (Cranelift, precompiled; start-up subtracted) | {} |",
                        fmt(per[2])
                    );
                } else {
                    println!("| wasmtime | compile failed, not measured |");
                }
            }
            None => {
                println!("| wasmtime | not measured: set TWIG_WASMTIME (tests/run installs it) |")
            }
        }
        println!("| native Rust (sha2 0.11, this binary) | {} |", fmt(native));
    }
}
