//! HTTP load on the counter app (`examples/counter/app.yaml`): requests per
//! second and latency percentiles of `twig up` serving wasmCloud's HTTP
//! counter component (each request: HTTP/1.1 parse, a component call on
//! the interpreter, `set-link-name`, `wasi:keyvalue` open + increment with
//! the store's fsync policy, the response).
//!
//! ```text
//! examples/build.sh && cargo build --release -p twig \
//!   && cargo run --release -p twig-bench --bin http-load [-- --seconds 10 --connections 1,4,16]
//!      [--fsync always,batched] [--slowloris 200 --idle 64]
//! ```
//!
//! With `--slowloris N` and/or `--idle N`, each run first opens N idle
//! keep-alive clients (one request each, then held; from N loopback
//! addresses) and N slowloris sockets (a request head a byte every 2 s
//! each, reopened when closed; from 8 loopback addresses), holds them
//! through the run, and also reports a fresh client's latency (a new
//! connection, one request, every 100 ms) and twig's peak RSS. A request
//! not answered within 5 s counts as an error (and its connection is
//! reopened); each error's status or cause goes to stderr.
//!
//! Runs `target/release/twig` (or `$TWIG_BIN`) with a copy of the manifest
//! on a free port, once with the provider's default `fsync: always` and
//! once with `fsync: batched`. The load generator is written here (plain
//! threads, keep-alive connections, one request in flight per connection),
//! so the figures need nothing installed.
#![forbid(unsafe_code)]

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use twig_bench::flags::Flags;
use twig_bench::http_load::{free_port, load, pct, peak_rss_kb, ANSWER};
use twig_integration_tests::slow_http::{peer, probe, quantile, IdleClients, Slowloris};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A fresh client every 100 ms until `end`: (latencies of the answered,
/// number not answered within [`ANSWER`]).
fn fresh_clients(port: u16, end: Instant) -> (Vec<Duration>, usize) {
    let addr = ([127, 0, 0, 1], port).into();
    let (mut lat, mut failed) = (Vec::new(), 0);
    while Instant::now() < end {
        let t = Instant::now();
        match probe(addr, peer(1000), "/fresh", ANSWER) {
            Ok((200, _, took)) => lat.push(took),
            _ => failed += 1,
        }
        std::thread::sleep(Duration::from_millis(100).saturating_sub(t.elapsed()));
    }
    lat.sort();
    (lat, failed)
}

fn start(bin: &Path, data: &Path, app: &Path, port: u16) -> Result<Child> {
    let child = Command::new(bin)
        .args(["up", "--data-dir"])
        .arg(data)
        .arg("--app")
        .arg(app)
        .env("TWIG_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("spawn {}", bin.display()))?;
    let give_up = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > give_up {
            bail!("twig did not listen on port {port} within 30 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child)
}

fn main() -> Result<()> {
    let flags = Flags::from_env();
    let seconds: u64 = flags.value("--seconds", 10)?;
    let slowloris: usize = flags.value("--slowloris", 0)?;
    let idle: usize = flags.value("--idle", 0)?;
    let fsyncs: Vec<String> = flags.list("--fsync", "always,batched")?;
    let slow = slowloris > 0 || idle > 0;
    let conns: Vec<usize> = flags.list("--connections", "1,4,16")?;
    let bin = std::env::var_os("TWIG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/release/twig"));
    let counter = repo().join("examples/build/counter.wasm");
    if !bin.exists() || !counter.exists() {
        bail!(
            "need {} and {}: run examples/build.sh && cargo build --release -p twig",
            bin.display(),
            counter.display()
        );
    }
    let manifest = std::fs::read_to_string(repo().join("examples/counter/app.yaml"))?;
    // Removed when it drops, at the end of main.
    let tmp_dir = tempfile::Builder::new()
        .prefix("twig-http-load-")
        .tempdir()?;
    let tmp = tmp_dir.path();
    println!(
        "twig HTTP load: counter app, {seconds} s per run, one request in flight per connection"
    );
    if slow {
        println!(
            "held through each run: {idle} idle keep-alive clients, {slowloris} slowloris sockets"
        );
    }
    println!();
    if slow {
        println!("| fsync | connections | requests/s | p50 | p99 | errors | fresh client p50 | p99 | max | unanswered | twig peak RSS |");
        println!("|---|---|---|---|---|---|---|---|---|---|---|");
    } else {
        println!("| fsync | connections | requests/s | p50 | p99 | max | errors |");
        println!("|---|---|---|---|---|---|---|");
    }
    for fsync in &fsyncs {
        for &c in &conns {
            let port = free_port()?;
            let mut text = manifest
                .replace("../build/counter.wasm", counter.to_str().context("path")?)
                .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
            // The keyvalue provider's fsync policy, as provider config.
            text = text.replace(
                "        image: ghcr.io/wasmcloud/keyvalue-redis:0.30.0\n",
                &format!("        image: ghcr.io/wasmcloud/keyvalue-redis:0.30.0\n        config:\n          - name: kv\n            properties:\n              fsync: {fsync}\n"),
            );
            let app = tmp.join(format!("app-{fsync}-{c}.yaml"));
            std::fs::write(&app, text)?;
            let data = tmp.join(format!("d-{fsync}-{c}"));
            let mut child = start(&bin, &data, &app, port)?;
            // Warm up: instances made, store open.
            load(port, c, Duration::from_millis(500))?;
            let addr = ([127, 0, 0, 1], port).into();
            let idle_sources: Vec<_> = (0..idle.max(1) as u16).map(peer).collect();
            let held = IdleClients::open(addr, idle, &idle_sources, "/idle", ANSWER);
            let attack_sources: Vec<_> = (500..508).map(peer).collect();
            let attack = (slowloris > 0).then(|| {
                Slowloris::start(addr, slowloris, &attack_sources, Duration::from_secs(2))
            });
            if slow {
                // Let the sockets connect and send their first bytes.
                std::thread::sleep(Duration::from_secs(1));
            }
            let end = Instant::now() + Duration::from_secs(seconds);
            let fresh = slow.then(|| std::thread::spawn(move || fresh_clients(port, end)));
            let (done, errors, lat) = load(port, c, Duration::from_secs(seconds))?;
            let fresh = fresh
                .map(|f| {
                    f.join()
                        .map_err(|_| anyhow::anyhow!("fresh-client thread panicked"))
                })
                .transpose()?;
            let peak = peak_rss_kb(child.id());
            drop(attack);
            drop(held);
            let _ = child.kill();
            let _ = child.wait();
            let head = format!(
                "| {fsync} | {c} | {:.0} | {:.0} µs | {:.0} µs |",
                done as f64 / seconds as f64,
                pct(&lat, 0.5),
                pct(&lat, 0.99)
            );
            let row = if slow {
                format!("{head} {errors} |")
            } else {
                // The worst request: a stall shows here before it moves the p99.
                let max = lat.last().copied().unwrap_or_default();
                format!("{head} {max:.0} µs | {errors} |")
            };
            match fresh {
                Some((f, failed)) => {
                    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1e3);
                    println!(
                        "{row} {} | {} | {} | {failed} of {} | {:.1} MB |",
                        ms(quantile(&f, 0.5)),
                        ms(quantile(&f, 0.99)),
                        ms(f.last().copied().unwrap_or_default()),
                        f.len() + failed,
                        peak as f64 / 1024.0
                    );
                }
                None => println!("{row}"),
            }
        }
    }
    Ok(())
}
