//! The lattice figures of BENCHMARKS.md, on the real topology of the
//! integration tests (core + leaf nats-server, TLS with client
//! certificates, creds; everything on 127.0.0.1) and the `twig` binary
//! (`TWIG_BIN`, else target/release/twig):
//!
//! ```text
//! examples/build.sh && cargo build --release -p twig
//! cargo run --release -p twig-bench --bin lattice-bench [-- OPTIONS]
//!
//!   --n N        measured calls per row (2000), after --warmup calls (200)
//!   --sizes      also build (release) and measure the size probes and
//!                twig without the `lattice` feature (minutes)
//! ```
//!
//! 1. **wRPC round trip through the leaf**: `greet(string) -> string`,
//!    one call in flight, N calls per row, every answer checked. Two
//!    clients, each on its own connection to the leaf:
//!    - `twig`: twig's own transport (`twig::lattice::wrpc::invoke`, the
//!      code a component on twig calls a link target with), async-nats 0.51;
//!    - `wrpc`: the unmodified `wrpc-transport-nats` 0.29 client with
//!      `wrpc-transport`'s `invoke_values_blocking`, async-nats 0.39 (what a
//!      wasmCloud 1.x host or provider calls with);
//!
//!    against three servers:
//!    - `twig host`: the demo app's greeter component on the twig process
//!      (transport, then the component on the interpreter);
//!    - `twig lib`: twig's transport (`twig::lattice::wrpc::answer`) in this
//!      process, answering with a Rust function;
//!    - `wrpc lib`: `wrpc-transport-nats`'s `serve_values` in this process,
//!      the same Rust function.
//!
//!    The two in-process servers compare the transports with nothing else
//!    in the way; the twig host row is what a caller on the lattice sees.
//! 2. **control interface**: request/reply to the host's own subject
//!    `wasmbus.ctl.v1.default.host.get.{host_id}` (what `wash get inventory`
//!    and wadm send; `host.ping` is a broadcast answered after an auction
//!    timeout, so its latency is the timeout's).
//! 3. **heartbeat**: bytes of `host_heartbeat` CloudEvents with the demo app
//!    running (the NATS payload).
//! 4. with `--sizes`: release sizes of twig with default features and
//!    without `lattice`, and of the three `wrpc-size-*` probes.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _, Result};
use async_nats_039 as nats039;
use futures::StreamExt as _;
use twig::host::RemoteCall;
use twig::lattice::wrpc::{answer, invoke, Inbox};
use twig_integration_tests::topology::Topology;
use twig_integration_tests::twig::{demo_manifest, lattice_args, TempDir, Twig};
use wrpc_transport::{InvokeExt as _, ServeExt as _};

/// A call not answered by then is counted as lost (and not timed).
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
const GREETER: &str = "twig:demo/greeter@0.1.0";
const NO_PATHS: [&[Option<usize>]; 0] = [];
/// What every server answers to `greet(name)`: the demo's greeter with its
/// manifest config, and the in-process servers do the same.
fn greeting(name: &str) -> String {
    format!("Hello from the edge, {name}!")
}

struct Options {
    n: usize,
    warmup: usize,
    sizes: bool,
}

fn parse_options() -> Result<Options> {
    let mut o = Options {
        n: 2000,
        warmup: 200,
        sizes: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Result<usize> {
            args.next()
                .with_context(|| format!("{name} needs a value"))?
                .parse()
                .with_context(|| format!("{name}: not a number"))
        };
        match a.as_str() {
            "--n" => o.n = num("--n")?,
            "--warmup" => o.warmup = num("--warmup")?,
            "--sizes" => o.sizes = true,
            _ => bail!("usage: lattice-bench [--n N] [--warmup W] [--sizes]"),
        }
    }
    ensure!((10..=1_000_000).contains(&o.n), "--n must be 10..=1000000");
    Ok(o)
}

/// p50, p99 and mean, in microseconds.
struct Stats {
    /// Calls that got no answer within CALL_TIMEOUT.
    lost: usize,
    p50: f64,
    p99: f64,
    mean: f64,
}

fn stats(mut v: Vec<Duration>) -> Stats {
    v.sort();
    let q = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    let mean = v.iter().map(Duration::as_secs_f64).sum::<f64>() / v.len() as f64 * 1e6;
    Stats {
        lost: 0,
        p50: q(0.50),
        p99: q(0.99),
        mean,
    }
}

/// A string in the wRPC value encoding: LEB128 length, then the bytes.
fn encode_string(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 5);
    let mut n = s.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(s.as_bytes());
    out
}

/// The string at the start of `b`; `Ok(None)` while it is incomplete.
fn decode_string(b: &[u8]) -> Result<Option<String>> {
    let (mut n, mut shift, mut i) = (0usize, 0u32, 0usize);
    loop {
        let Some(&byte) = b.get(i) else {
            return Ok(None);
        };
        ensure!(shift < 35, "string length overflows");
        n |= usize::from(byte & 0x7f) << shift;
        i += 1;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let Some(s) = b.get(i..i.saturating_add(n)) else {
        return Ok(None);
    };
    Ok(Some(String::from_utf8(s.to_vec()).context("not UTF-8")?))
}

async fn connect_039(t: &Topology) -> Result<nats039::Client> {
    t.leaf_client().await.map_err(anyhow::Error::msg)
}

async fn connect_051(t: &Topology) -> Result<async_nats::Client> {
    async_nats::ConnectOptions::with_credentials_file(t.user_creds.clone())
        .await
        .context("creds")?
        .add_root_certificates(t.ca_pem.clone())
        .add_client_certificate(t.client_cert_pem.clone(), t.client_key_pem.clone())
        .require_tls(true)
        .connect(t.leaf_url())
        .await
        .context("async-nats 0.51 connects to the leaf")
}

/// One of the two clients under test.
enum Caller {
    Twig {
        nc: async_nats::Client,
        inbox: Inbox,
    },
    Wrpc(nats039::Client),
}

impl Caller {
    async fn greet(&self, target: &str, name: &str) -> Result<String> {
        match self {
            Caller::Twig { nc, inbox } => {
                let call = RemoteCall {
                    source: "lattice-bench",
                    link_name: "default",
                    target,
                    instance: GREETER,
                    func: "greet",
                    params: encode_string(name),
                    deadline: Instant::now() + CALL_TIMEOUT,
                    traceparent: None,
                };
                let out = tokio::time::timeout(CALL_TIMEOUT, invoke(nc, inbox, "default", &call))
                    .await
                    .context("no answer within the call timeout")?
                    .map_err(anyhow::Error::msg)?;
                decode_string(&out)?.context("incomplete results")
            }
            Caller::Wrpc(nc) => {
                // The crate's client is a prefix (`{lattice}.{target}`) on a
                // connection; making one is a local subscription on the
                // connection's inbox, which the crate shares per client. A
                // fresh one per call would add a SUB: keep one per target.
                let client = wrpc_client(nc, target).await?;
                let mut h = nats039::HeaderMap::new();
                h.insert("source-id", "lattice-bench");
                h.insert("link-name", "default");
                let (out,) = tokio::time::timeout(
                    CALL_TIMEOUT,
                    client.invoke_values_blocking::<_, (String,), (String,)>(
                        Some(h),
                        GREETER,
                        "greet",
                        (name.to_string(),),
                        NO_PATHS,
                    ),
                )
                .await
                .context("no answer within the call timeout")??;
                Ok(out)
            }
        }
    }
}

/// One `wrpc_transport_nats::Client` per target for the whole run.
async fn wrpc_client(
    nc: &nats039::Client,
    target: &str,
) -> Result<Arc<wrpc_transport_nats::Client>> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static CLIENTS: Mutex<Option<HashMap<String, Arc<wrpc_transport_nats::Client>>>> =
        Mutex::new(None);
    if let Some(c) = CLIENTS
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .get_or_insert_with(HashMap::new)
        .get(target)
    {
        return Ok(c.clone());
    }
    let c = Arc::new(
        wrpc_transport_nats::Client::new(nc.clone(), format!("default.{target}"), None).await?,
    );
    CLIENTS
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .get_or_insert_with(HashMap::new)
        .insert(target.to_string(), c.clone());
    Ok(c)
}

/// twig's transport serving `greet` as `target` in this process.
async fn serve_twig_lib(t: &Topology, target: &str) -> Result<()> {
    let nc = connect_051(t).await?;
    let inbox = Arc::new(Inbox::new(&nc).await.map_err(anyhow::Error::msg)?);
    let mut sub = nc
        .queue_subscribe(
            format!("default.{target}.wrpc.0.0.1.>"),
            format!("default.{target}"),
        )
        .await?;
    nc.flush().await?;
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            let (nc, inbox) = (nc.clone(), inbox.clone());
            tokio::spawn(async move {
                let deadline = Instant::now() + CALL_TIMEOUT;
                let run = |p: Vec<u8>| async move {
                    match decode_string(&p) {
                        Ok(name) => Ok(name.map(|n| encode_string(&greeting(&n)))),
                        Err(e) => Err(e.to_string()),
                    }
                };
                if let Err(e) = answer(&nc, &inbox, m, deadline, usize::MAX, run).await {
                    eprintln!("twig lib server: {e}");
                }
            });
        }
    });
    Ok(())
}

/// wrpc-transport-nats serving `greet` as `target` in this process.
async fn serve_wrpc_lib(t: &Topology, target: &str) -> Result<()> {
    let nc = connect_039(t).await?;
    let group = format!("default.{target}");
    let server =
        wrpc_transport_nats::Client::new(nc.clone(), group.clone(), Some(group.into())).await?;
    let invocations = server
        .serve_values::<(String,), (String,)>(GREETER, "greet", Vec::<Box<[Option<usize>]>>::new())
        .await?;
    nc.flush().await?;
    tokio::spawn(async move {
        let _server = server;
        let mut invocations = std::pin::pin!(invocations);
        while let Some(inv) = invocations.next().await {
            match inv {
                Ok((_, (name,), _, respond)) => {
                    // Answered in its own task, as twig answers each call.
                    tokio::spawn(async move {
                        if let Err(e) = respond((greeting(&name),)).await {
                            eprintln!("wrpc lib server: {e:#}");
                        }
                    });
                }
                Err(e) => eprintln!("wrpc lib server: {e:#}"),
            }
        }
    });
    Ok(())
}

/// Calls `greet` until `target` answers (20 s at most), then `warmup`
/// unmeasured and `n` measured calls; every answer is checked.
async fn round_trips(caller: &Caller, target: &str, warmup: usize, n: usize) -> Result<Stats> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match caller.greet(target, "Ada").await {
            Ok(s) if s == greeting("Ada") => break,
            Ok(s) => bail!("{target} answered {s:?}"),
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e.context(format!("{target} never answered"))),
        }
    }
    let mut times = Vec::with_capacity(n);
    let mut lost = 0;
    for i in 0..warmup + n {
        let name = format!("n{i}");
        let started = Instant::now();
        let out = match caller.greet(target, &name).await {
            Ok(out) => out,
            Err(e) if format!("{e:#}").contains("no answer within") && lost < 100 => {
                eprintln!("call {i} to {target} lost: {e:#}");
                lost += 1;
                continue;
            }
            Err(e) => return Err(e),
        };
        let took = started.elapsed();
        ensure!(out == greeting(&name), "{target} answered {out:?}");
        if i >= warmup {
            times.push(took);
        }
    }
    Ok(Stats {
        lost,
        ..stats(times)
    })
}

struct Sizes {
    twig_default: u64,
    twig_no_lattice: u64,
    base: u64,
    twig_wrpc: u64,
    nats_wrpc: u64,
}

/// Builds the release binaries whose sizes answer "which is smaller" into
/// the target dir this binary lives in.
fn binary_sizes() -> Result<Sizes> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let target = exe
        .parent()
        .and_then(Path::parent)
        .context("cannot tell the target dir from this binary's path")?
        .to_path_buf();
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let build = |args: &[&str]| -> Result<()> {
        eprintln!("cargo build --release {} ...", args.join(" "));
        let status = Command::new(&cargo)
            .current_dir(&root)
            .args(["build", "--quiet", "--release", "--locked", "--target-dir"])
            .arg(&target)
            .args(args)
            .status()
            .with_context(|| format!("running {}", Path::new(&cargo).display()))?;
        ensure!(status.success(), "cargo build --release {args:?} failed");
        Ok(())
    };
    let size = |p: &PathBuf| -> Result<u64> {
        Ok(std::fs::metadata(p)
            .with_context(|| format!("stat {}", p.display()))?
            .len())
    };
    let release = target.join("release");
    // Without `lattice` first, set aside, then the default build (which
    // leaves target/release/twig as the default binary).
    build(&[
        "-p",
        "twig",
        "--no-default-features",
        "--features",
        "http,sensors-gpio",
    ])?;
    let no_lattice = release.join("twig-no-lattice");
    std::fs::copy(release.join("twig"), &no_lattice).context("copying twig-no-lattice")?;
    build(&["-p", "twig"])?;
    build(&[
        "-p",
        "twig-bench",
        "--bin",
        "wrpc-size-base",
        "--bin",
        "wrpc-size-twig",
        "--bin",
        "wrpc-size-nats",
    ])?;
    Ok(Sizes {
        twig_default: size(&release.join("twig"))?,
        twig_no_lattice: size(&no_lattice)?,
        base: size(&release.join("wrpc-size-base"))?,
        twig_wrpc: size(&release.join("wrpc-size-twig"))?,
        nats_wrpc: size(&release.join("wrpc-size-nats"))?,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let o = parse_options()?;
    if std::env::var_os("TWIG_BIN").is_none() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release/twig");
        ensure!(
            p.exists(),
            "{} is missing: cargo build --release -p twig, or set TWIG_BIN",
            p.display()
        );
        std::env::set_var("TWIG_BIN", &p);
    }
    let bin = std::env::var("TWIG_BIN").unwrap_or_default();
    println!("twig binary: {bin}");

    let dir = TempDir::new("lattice-bench");
    let topo = Topology::start();
    let mut args = lattice_args(&topo);
    args.extend(["--app".to_string(), demo_manifest()]);
    // The bench calls the device's own demo app from the lattice, which
    // the default policy does not serve, at more calls at once than its
    // default cap.
    for c in ["serve_device_components=true", "wrpc_max_concurrent=1000"] {
        args.extend(["--control".to_string(), c.to_string()]);
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let twig = Twig::up(&dir.path().join("data"), &argv);
    twig.wait_connected();
    let host_id = twig.host_id();

    serve_twig_lib(&topo, "bench-twig-lib").await?;
    serve_wrpc_lib(&topo, "bench-wrpc-lib").await?;
    let nc = connect_051(&topo).await?;
    let callers = [
        (
            "twig",
            Caller::Twig {
                inbox: Inbox::new(&nc).await.map_err(anyhow::Error::msg)?,
                nc: nc.clone(),
            },
        ),
        ("wrpc", Caller::Wrpc(connect_039(&topo).await?)),
    ];
    let servers = [
        ("twig host (greeter component)", "twig_demo-greeter"),
        ("twig lib", "bench-twig-lib"),
        ("wrpc lib", "bench-wrpc-lib"),
    ];

    println!(
        "\nwRPC round trip through the leaf (TLS), greet(string) -> string, one call in \
         flight, {} calls after {} warm-up, microseconds:",
        o.n, o.warmup
    );
    println!(
        "{:<6} -> {:<30} {:>8} {:>8} {:>8} {:>5}",
        "client", "server", "p50", "p99", "mean", "lost"
    );
    let mut rows = Vec::new();
    for (sname, target) in servers {
        for (cname, caller) in &callers {
            let s = round_trips(caller, target, o.warmup, o.n)
                .await
                .with_context(|| format!("{cname} -> {sname}"))?;
            println!(
                "{cname:<6} -> {sname:<30} {:>8.0} {:>8.0} {:>8.0} {:>5}",
                s.p50, s.p99, s.mean, s.lost
            );
            rows.push((cname, sname, s));
        }
    }

    // Control interface: the host's own `host.get` subject.
    let subject = format!("wasmbus.ctl.v1.default.host.get.{host_id}");
    let mut times = Vec::with_capacity(o.n);
    for i in 0..o.warmup + o.n {
        let started = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(5),
            nc.request(subject.clone(), bytes::Bytes::new()),
        )
        .await
        .context("host.get: no answer within 5 s")??;
        let took = started.elapsed();
        let v: serde_json::Value = serde_json::from_slice(&r.payload).context("host.get reply")?;
        ensure!(v["success"] == true, "host.get failed: {v}");
        if i >= o.warmup {
            times.push(took);
        }
    }
    let ping = stats(times);
    println!(
        "\ncontrol interface, request/reply on {subject}: p50 {:.0} us, p99 {:.0} us, mean {:.0} us",
        ping.p50, ping.p99, ping.mean
    );

    // Heartbeats (every second with lattice_args).
    let mut hb = nc.subscribe("wasmbus.evt.default.host_heartbeat").await?;
    let mut sizes = Vec::new();
    while sizes.len() < 3 {
        let m = tokio::time::timeout(Duration::from_secs(5), hb.next())
            .await
            .context("no heartbeat within 5 s")?
            .context("subscription closed")?;
        let v: serde_json::Value = serde_json::from_slice(&m.payload).context("heartbeat")?;
        if v["source"] != host_id.as_str() {
            continue;
        }
        let comps = v["data"]["components"].as_array().map_or(0, Vec::len);
        ensure!(comps == 2, "the demo app's 2 components, not {comps}: {v}");
        sizes.push(m.payload.len());
    }
    println!(
        "heartbeat (demo app: 2 components, no providers): {:?} bytes of CloudEvent JSON",
        sizes
    );

    let sizes = if o.sizes { Some(binary_sizes()?) } else { None };
    if let Some(s) = &sizes {
        let kib = |a: u64, b: u64| (a as f64 - b as f64) / 1024.0;
        println!("\nrelease sizes (fat LTO, opt-level z, stripped; x86_64):");
        println!("twig, default features     {:>9} B", s.twig_default);
        println!(
            "twig, without `lattice`    {:>9} B  (lattice: {:+.0} KiB)",
            s.twig_no_lattice,
            kib(s.twig_default, s.twig_no_lattice)
        );
        println!("wrpc-size-base (0.51)      {:>9} B", s.base);
        println!(
            "wrpc-size-twig             {:>9} B  ({:+.0} KiB over base)",
            s.twig_wrpc,
            kib(s.twig_wrpc, s.base)
        );
        println!(
            "wrpc-size-nats (0.39)      {:>9} B  ({:+.0} KiB over base)",
            s.nats_wrpc,
            kib(s.nats_wrpc, s.base)
        );
    }

    println!("\nMarkdown for BENCHMARKS.md:\n");
    println!("| client → server | p50 µs | p99 µs | mean µs | lost |\n|---|---:|---:|---:|---:|");
    for (c, sname, s) in &rows {
        println!(
            "| {c} → {sname} | {:.0} | {:.0} | {:.0} | {} |",
            s.p50, s.p99, s.mean, s.lost
        );
    }
    println!(
        "| control interface `host.get` (request/reply) | {:.0} | {:.0} | {:.0} | — |",
        ping.p50, ping.p99, ping.mean
    );
    Ok(())
}
