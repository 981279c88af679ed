//! HTTP hello-world on twig beside the wasmCloud 1.x host: the same
//! component (`tests/guests/wasmcloud-http`, built with
//! `wasmcloud-component` 0.2.0; it answers every request 200
//! `hello from wasmcloud-component`) served by `twig up` and by the
//! unmodified `wasmcloud-host` 0.27.1 behind `tests/wasmcloud-launcher`,
//! under the same load, in interleaved rounds.
//!
//! ```text
//! cargo build --release -p twig
//! CARGO_TARGET_DIR=target/wasmcloud-launcher cargo build --release \
//!     --manifest-path tests/wasmcloud-launcher/Cargo.toml
//! NATS_SERVER=/path/to/nats-server \
//! TWIG_WASMCLOUD_LAUNCHER=target/wasmcloud-launcher/release/twig-wasmcloud-launcher \
//!   cargo run --release -p twig-bench --bin hello-http -- \
//!     [--runs 3] [--seconds 8] [--connections 1,8,32] [--instances 8]
//!     [--component FILE.wasm]
//! ```
//!
//! `--instances` is the spreadscaler's `instances` on both hosts, the most
//! requests in the component at once: in twig the most instances its pool
//! runs (made on demand, reused between requests), in wasmCloud 1.x
//! `max_instances` (a fresh instance per request). The default, 8, is also
//! twig's HTTP `max_concurrent`.
//!
//! Without `TWIG_WASMCLOUD_LAUNCHER` only twig is measured (its columns
//! alone), for before/after figures of a change to twig's HTTP path.
//!
//! twig runs `target/release/twig` (or `$TWIG_BIN`) with a wadm manifest
//! whose HTTP server links to the component, offline. The wasmCloud host
//! joins a nats-server (`$NATS_SERVER`, started here with JetStream on a
//! free port) and the launcher deploys the component, the host's built-in
//! HTTP server provider and their link through the host's control
//! interface, so the host is one process and the request path is hyper →
//! wasmtime → the component in it, with no NATS hop; the nats-server's CPU
//! over each window is reported too, to show that.
//!
//! Each round measures twig then wasmCloud at one connection count for
//! `--seconds`, cycling through the counts, `--runs` times; the table
//! holds the median of each figure over the runs. Per host and window:
//! requests/s, p50 and p99 latency, voluntary context switches per
//! request (summed over the host process's threads,
//! `/proc/PID/task/*/status`), CPU-seconds per 10k requests (utime +
//! stime of the process, `/proc/PID/stat`); and each host's resident set
//! when idle (deployed, answered, before any load) and at the end.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use twig_bench::flags::Flags;
use twig_bench::http_load::{clock_ticks, free_port, load, pct, peak_rss_kb, rss_kb, ProcWatch};

/// What the component answers.
const HELLO: &str = "hello from wasmcloud-component";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A child process killed (and reaped) when dropped.
struct Proc {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Proc {
    fn spawn(name: &'static str, cmd: &mut Command, log: PathBuf) -> Result<Proc> {
        let out = std::fs::File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("spawn {name} ({:?})", cmd.get_program()))?;
        Ok(Proc { name, child, log })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails, with the end of its log, if the process has exited.
    fn alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: String = log
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n");
            bail!("{} exited ({status})\n--- log ---\n{tail}", self.name);
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One GET with `Connection: close`; the status and body.
fn get(port: u16) -> Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad response {text:?}"))?;
    Ok((status, text))
}

/// Waits until the host on `port` answers 200 with the component's
/// greeting.
fn wait_hello(p: &mut Proc, port: u16, within: Duration) -> Result<()> {
    let give_up = Instant::now() + within;
    loop {
        p.alive()?;
        let last = match get(port) {
            Ok((200, body)) if body.contains(HELLO) => return Ok(()),
            Ok((status, body)) => format!("status {status}: {body:?}"),
            Err(e) => e.to_string(),
        };
        if Instant::now() > give_up {
            bail!(
                "{} did not answer 200 on port {port} within {within:?}: {last}",
                p.name
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_listen(p: &mut Proc, port: u16, within: Duration) -> Result<()> {
    let give_up = Instant::now() + within;
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        p.alive()?;
        if Instant::now() > give_up {
            bail!("{} did not listen on port {port} within {within:?}", p.name);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// A wadm manifest for twig: the component, and the HTTP server linked
/// to it on `port` (as in examples/counter/app.yaml).
fn manifest(wasm: &Path, port: u16, instances: u32) -> Result<String> {
    let wasm = wasm.to_str().context("component path is not UTF-8")?;
    Ok(format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: hello-http
  annotations:
    version: v0.0.1
spec:
  components:
    - name: hello
      type: component
      properties:
        image: {wasm}
      traits:
        - type: spreadscaler
          properties:
            instances: {instances}
    - name: httpserver
      type: capability
      properties:
        image: ghcr.io/wasmcloud/http-server:0.27.0
      traits:
        - type: link
          properties:
            target:
              name: hello
            namespace: wasi
            package: http
            interfaces: [incoming-handler]
            source:
              config:
                - name: default-http
                  properties:
                    address: 127.0.0.1:{port}
"#
    ))
}

/// A host under test.
struct Host {
    name: &'static str,
    proc: Proc,
    port: u16,
    idle_rss_kb: u64,
    samples: Vec<Vec<Sample>>,
}

/// One measured window.
#[derive(Clone, Copy)]
struct Sample {
    rps: f64,
    p50_us: f64,
    p99_us: f64,
    vcsw_per_req: f64,
    cpu_per_10k: f64,
    errors: usize,
    threads: usize,
    nats_cpu_per_10k: Option<f64>,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    pct(&v, 0.5)
}

fn main() -> Result<()> {
    let flags = Flags::from_env();
    let seconds: u64 = flags.value("--seconds", 8)?;
    let runs: usize = flags.value("--runs", 3)?;
    let conns: Vec<usize> = flags.list("--connections", "1,8,32")?;
    let instances: u32 = flags.value("--instances", 8)?;
    if instances == 0 || runs == 0 || conns.is_empty() || conns.contains(&0) {
        bail!("--instances, --runs and each of --connections must be at least 1");
    }
    let wasm = flags
        .get("--component")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("tests/guests/out/wasmcloud-http.wasm"));
    let twig_bin = std::env::var_os("TWIG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/release/twig"));
    let launcher = std::env::var_os("TWIG_WASMCLOUD_LAUNCHER").map(PathBuf::from);
    for f in [&twig_bin, &wasm] {
        if !f.exists() {
            bail!(
                "{} is missing: cargo build --release -p twig; the component is \
                 tests/guests/out/wasmcloud-http.wasm (tests/guests/build.sh, or copy it)",
                f.display()
            );
        }
    }
    let wasm = wasm.canonicalize()?;
    let ticks = clock_ticks();
    let tmp_dir = tempfile::Builder::new()
        .prefix("twig-hello-http-")
        .tempdir()?;
    let tmp = tmp_dir.path();
    let mut hosts = Vec::new();

    // twig: offline, the manifest on the command line.
    let port = free_port()?;
    let app = tmp.join("app.yaml");
    std::fs::write(&app, manifest(&wasm, port, instances)?)?;
    let mut proc = Proc::spawn(
        "twig",
        Command::new(&twig_bin)
            .args(["up", "--data-dir"])
            .arg(tmp.join("twig-data"))
            .arg("--app")
            .arg(&app)
            .env("TWIG_LOG", "warn"),
        tmp.join("twig.log"),
    )?;
    wait_hello(&mut proc, port, Duration::from_secs(30))?;
    hosts.push(Host {
        name: "twig",
        proc,
        port,
        idle_rss_kb: 0,
        samples: vec![Vec::new(); conns.len()],
    });

    // wasmCloud: nats-server with JetStream, then the host, which the
    // launcher deploys to over the control interface.
    let mut nats = None;
    if let Some(launcher) = &launcher {
        let nats_bin = std::env::var_os("NATS_SERVER").map(PathBuf::from).context(
            "TWIG_WASMCLOUD_LAUNCHER is set but NATS_SERVER (a nats-server binary) is not",
        )?;
        let nats_port = free_port()?;
        let mut n = Proc::spawn(
            "nats-server",
            Command::new(&nats_bin)
                .args([
                    "-a",
                    "127.0.0.1",
                    "-p",
                    &nats_port.to_string(),
                    "-js",
                    "-sd",
                ])
                .arg(tmp.join("js")),
            tmp.join("nats.log"),
        )?;
        wait_listen(&mut n, nats_port, Duration::from_secs(10))?;
        let port = free_port()?;
        let mut proc = Proc::spawn(
            "wasmcloud",
            Command::new(launcher)
                .args(["--nats-server", &format!("nats://127.0.0.1:{nats_port}")])
                .args(["--lattice", "hello-bench", "--component"])
                .arg(&wasm)
                .args(["--http-address", &format!("127.0.0.1:{port}")])
                .args(["--instances", &instances.to_string()]),
            tmp.join("wasmcloud.log"),
        )?;
        wait_hello(&mut proc, port, Duration::from_secs(60))?;
        hosts.push(Host {
            name: "wasmCloud",
            proc,
            port,
            idle_rss_kb: 0,
            samples: vec![Vec::new(); conns.len()],
        });
        nats = Some(n);
    }

    // Idle: deployed and answered once, nothing else.
    std::thread::sleep(Duration::from_secs(1));
    for h in &mut hosts {
        h.idle_rss_kb = rss_kb(h.proc.pid());
    }
    // Warm-up: instances made, caches and allocators at their working size.
    let top = conns.iter().copied().max().unwrap_or(1);
    for h in &hosts {
        load(h.port, top, Duration::from_secs(1))?;
    }

    println!(
        "hello-world HTTP: {seconds} s per window, {runs} runs, one request in flight per connection, {instances} instances"
    );
    for run in 0..runs {
        for (ci, &c) in conns.iter().enumerate() {
            for h in &mut hosts {
                h.proc.alive()?;
                let pid = h.proc.pid();
                let nats_pid = nats.as_ref().map(Proc::pid);
                let watch = ProcWatch::start(pid, ticks)?;
                let nats_watch = nats_pid.map(|p| ProcWatch::start(p, ticks)).transpose()?;
                let (done, errors, lat) = load(h.port, c, Duration::from_secs(seconds))?;
                let used = watch.finish()?;
                let per_10k = |cpu: f64| cpu / done.max(1) as f64 * 10_000.0;
                let nats_cpu = match nats_watch {
                    Some(w) => Some(per_10k(w.finish()?.cpu_s)),
                    None => None,
                };
                let s = Sample {
                    rps: done as f64 / seconds as f64,
                    p50_us: pct(&lat, 0.5),
                    p99_us: pct(&lat, 0.99),
                    vcsw_per_req: used.vcsw as f64 / done.max(1) as f64,
                    cpu_per_10k: per_10k(used.cpu_s),
                    errors,
                    threads: used.threads,
                    nats_cpu_per_10k: nats_cpu,
                };
                eprintln!(
                    "run {} {} c{c}: {:.0} req/s p50 {:.0} µs p99 {:.0} µs {:.2} vcsw/req \
                     {:.3} CPU-s/10k {} threads {errors} errors",
                    run + 1,
                    h.name,
                    s.rps,
                    s.p50_us,
                    s.p99_us,
                    s.vcsw_per_req,
                    s.cpu_per_10k,
                    s.threads
                );
                h.samples[ci].push(s);
            }
        }
    }

    println!();
    println!("| host | connections | requests/s | p50 | p99 | vcsw/request | CPU-s/10k req | threads | errors |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for (ci, &c) in conns.iter().enumerate() {
        for h in &hosts {
            let s = &h.samples[ci];
            let m = |f: fn(&Sample) -> f64| median(s.iter().map(f).collect());
            println!(
                "| {} | {c} | {:.0} | {:.0} µs | {:.0} µs | {:.2} | {:.3} | {:.0} | {} |",
                h.name,
                m(|s| s.rps),
                m(|s| s.p50_us),
                m(|s| s.p99_us),
                m(|s| s.vcsw_per_req),
                m(|s| s.cpu_per_10k),
                m(|s| s.threads as f64),
                s.iter().map(|s| s.errors).sum::<usize>()
            );
        }
    }
    println!();
    for h in &hosts {
        println!(
            "{}: idle RSS {:.1} MB, peak RSS {:.1} MB",
            h.name,
            h.idle_rss_kb as f64 / 1024.0,
            peak_rss_kb(h.proc.pid()) as f64 / 1024.0
        );
    }
    if let Some(n) = &nats {
        let cpu: Vec<f64> = hosts
            .iter()
            .filter(|h| h.name == "wasmCloud")
            .flat_map(|h| h.samples.iter().flatten())
            .filter_map(|s| s.nats_cpu_per_10k)
            .collect();
        let max = cpu.iter().copied().fold(0.0, f64::max);
        println!(
            "nats-server (wasmCloud's lattice, off the request path): RSS {:.1} MB, \
             at most {max:.4} CPU-s per 10k requests in any wasmCloud window",
            rss_kb(n.pid()) as f64 / 1024.0
        );
    }
    println!(
        "(medians of {runs} runs; vcsw = voluntary context switches summed over the host's \
         threads; CPU = utime + stime of the host process)"
    );
    Ok(())
}
