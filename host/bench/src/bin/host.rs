//! Benchmarks of the `twig` binary: time from `twig up` to every component
//! of the demo running, idle memory, admin-socket round trips and the
//! stripped binary's size. Prints Markdown for BENCHMARKS.md.
//!
//! ```text
//! examples/build.sh && cargo build --release -p twig \
//!   && cargo run --release -p twig-bench --bin twig-host-bench
//! ```
//!
//! Uses `target/release/twig` (or `$TWIG_BIN`).
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use twig::admin::{self, Request};

const SAMPLES: usize = 11;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn spawn(bin: &Path, data: &Path, app: Option<&Path>) -> Child {
    let mut cmd = Command::new(bin);
    cmd.arg("up")
        .arg("--data-dir")
        .arg(data)
        .arg("--log-format")
        .arg("json");
    if let Some(a) = app {
        cmd.arg("--app").arg(a);
    }
    cmd.env("TWIG_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn twig up")
}

/// Polls the admin socket until `want` components are running.
fn wait_running(data: &Path, want: usize) {
    let give_up = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(s) = admin::request(data, &Request::Status) {
            let running = s["apps"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|a| a["components"].as_array().cloned().unwrap_or_default())
                .filter(|c| c["state"] == "running")
                .count();
            if running >= want {
                return;
            }
        }
        assert!(
            Instant::now() < give_up,
            "twig did not start the demo in 30 s"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

fn stop(mut c: Child) {
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(c.id().to_string())
        .status();
    let _ = c.wait();
}

fn proc_kib(pid: u32, field: &str) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let bin = std::env::var_os("TWIG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/release/twig"));
    assert!(
        bin.exists(),
        "{} missing: cargo build --release -p twig",
        bin.display()
    );
    let app = repo().join("examples/demo/app.yaml");
    for c in ["greeter", "frontend"] {
        let p = repo().join(format!("examples/build/{c}.wasm"));
        assert!(p.exists(), "{} missing: run examples/build.sh", p.display());
    }
    // Removed when it drops, at the end of main.
    let tmp_dir = tempfile::Builder::new()
        .prefix("twig-hb-")
        .tempdir()
        .expect("creating a temp dir");
    let tmp = tmp_dir.path();

    println!(
        "# twig-host-bench\n\nbinary: {}\nsamples: median of {SAMPLES}\n",
        bin.display()
    );
    let size = std::fs::metadata(&bin).map(|m| m.len()).unwrap_or(0);
    println!("| figure | median |\n|---|---|");
    println!(
        "| binary size (release, stripped) | {:.2} MB ({size} bytes) |",
        size as f64 / 1e6
    );

    // First deploy: parse, read images, compile to validate, hash, write
    // cache and desired state (fsync), start.
    let mut first = Vec::new();
    for i in 0..SAMPLES {
        let data = tmp.join(format!("first{i}"));
        let t = Instant::now();
        let c = spawn(&bin, &data, Some(&app));
        wait_running(&data, 2);
        first.push(t.elapsed().as_secs_f64() * 1e3);
        stop(c);
    }
    println!(
        "| `twig up --app demo` (fresh data dir) to all components running | {:.1} ms |",
        median(first)
    );

    // Restart after a power cut: no --app, state from disk.
    let data = tmp.join("restart");
    let c = spawn(&bin, &data, Some(&app));
    wait_running(&data, 2);
    stop(c);
    let mut restart = Vec::new();
    for _ in 0..SAMPLES {
        let t = Instant::now();
        let c = spawn(&bin, &data, None);
        wait_running(&data, 2);
        restart.push(t.elapsed().as_secs_f64() * 1e3);
        stop(c);
    }
    println!(
        "| `twig up` restart, no --app (apps from disk) to all running | {:.1} ms |",
        median(restart)
    );

    // Memory and admin round trips on one long-running host.
    let c = spawn(&bin, &data, None);
    wait_running(&data, 2);
    std::thread::sleep(Duration::from_secs(2));
    let idle = proc_kib(c.id(), "VmRSS:");
    let status = median(
        (0..SAMPLES)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..100 {
                    admin::request(&data, &Request::Status).expect("status");
                }
                t.elapsed().as_secs_f64() * 1e6 / 100.0
            })
            .collect(),
    );
    let invoke_req = Request::Invoke {
        component: "twig_demo-frontend".into(),
        function: "welcome".into(),
        args: vec!["\"Ada\"".into()],
        plain: false,
    };
    let invoke = median(
        (0..SAMPLES)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..100 {
                    admin::request(&data, &invoke_req).expect("invoke");
                }
                t.elapsed().as_secs_f64() * 1e6 / 100.0
            })
            .collect(),
    );
    std::thread::sleep(Duration::from_secs(1));
    let after = proc_kib(c.id(), "VmRSS:");
    let hwm = proc_kib(c.id(), "VmHWM:");
    stop(c);
    println!(
        "| idle RSS with the demo running (2 s after start) | {:.1} MB ({idle} KiB) |",
        idle as f64 / 1024.0
    );
    println!(
        "| RSS after {} invokes | {:.1} MB ({after} KiB; peak {hwm} KiB) |",
        SAMPLES * 100,
        after as f64 / 1024.0
    );
    println!("| admin `status` round trip (socket, JSON) | {status:.0} µs |");
    println!("| admin `invoke frontend welcome` round trip (frontend → link → greeter → config) | {invoke:.0} µs |");
}
