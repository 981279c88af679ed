//! The messaging bridge's figures in BENCHMARKS.md: a NATS client's
//! request answered by a component on twig, through the real topology of
//! the integration tests (the client on the core, twig on the leaf over
//! mutual TLS, everything on 127.0.0.1), beside the same request answered
//! by a bare NATS responder on the leaf (no twig, no component): what the
//! bridge and the component add to the NATS path.
//!
//! ```text
//! tests/guests/build.sh && cargo build --release -p twig
//! cargo run --release -p twig-bench --bin messaging-bench [-- --n N --runs R]
//! ```
//!
//! Per row: `--runs` runs (3) of `--n` requests (2000, after 200 warm-up),
//! one in flight (latency), then the same count with 16 in flight
//! (requests/s); the median run is printed. Every reply is checked.
//! wasmCloud 1.x's messaging-nats provider beside it needs the 1.x host
//! launcher (`tests/wasmcloud-launcher`), which this does not build.
#![forbid(unsafe_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _, Result};
use async_nats_039 as nats;
use futures::StreamExt as _;
use twig_integration_tests::apps::echo_messaging_manifest;
use twig_integration_tests::topology::Topology;
use twig_integration_tests::twig::{uplink_args, TempDir, Twig};

const TIMEOUT: Duration = Duration::from_secs(5);
const IN_FLIGHT: usize = 16;

struct Options {
    n: usize,
    warmup: usize,
    runs: usize,
}

fn parse_options() -> Result<Options> {
    let mut o = Options {
        n: 2000,
        warmup: 200,
        runs: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Result<usize> {
            args.next()
                .with_context(|| format!("{name} needs a number"))?
                .parse()
                .with_context(|| format!("{name}: not a number"))
        };
        match a.as_str() {
            "--n" => o.n = num("--n")?.max(1),
            "--warmup" => o.warmup = num("--warmup")?,
            "--runs" => o.runs = num("--runs")?.max(1),
            other => anyhow::bail!("unknown option {other} (--n N, --warmup N, --runs R)"),
        }
    }
    Ok(o)
}

struct Run {
    p50: f64,
    p99: f64,
    per_sec: f64,
}

/// One run: latency with one request in flight, then throughput.
async fn run(client: &nats::Client, subject: &str, o: &Options) -> Result<Run> {
    let body = bytes::Bytes::from_static(b"ping-0123456789");
    let ask = |c: nats::Client, subject: String, body: bytes::Bytes| async move {
        let r = tokio::time::timeout(TIMEOUT, c.request(subject.clone(), body.clone()))
            .await
            .with_context(|| format!("{subject}: no reply within {TIMEOUT:?}"))?
            .with_context(|| format!("{subject}: request failed"))?;
        ensure!(r.payload == body, "{subject}: wrong reply {:?}", r.payload);
        Ok::<(), anyhow::Error>(())
    };
    let mut times = Vec::with_capacity(o.n);
    for i in 0..o.warmup + o.n {
        let t = Instant::now();
        ask(client.clone(), subject.to_string(), body.clone()).await?;
        if i >= o.warmup {
            times.push(t.elapsed());
        }
    }
    times.sort();
    let q = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize].as_secs_f64() * 1e6;
    let (p50, p99) = (q(0.5), q(0.99));
    let started = Instant::now();
    let mut pending = futures::stream::iter(
        (0..o.n).map(|_| ask(client.clone(), subject.to_string(), body.clone())),
    )
    .buffer_unordered(IN_FLIGHT);
    while let Some(r) = pending.next().await {
        r?;
    }
    let per_sec = o.n as f64 / started.elapsed().as_secs_f64();
    Ok(Run { p50, p99, per_sec })
}

fn median(mut runs: Vec<Run>) -> Run {
    runs.sort_by(|a, b| a.p50.total_cmp(&b.p50));
    let mid = runs.len() / 2;
    runs.swap_remove(mid)
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
    println!(
        "twig binary: {}",
        std::env::var("TWIG_BIN").unwrap_or_default()
    );
    let dir = TempDir::new("messaging-bench");
    let topo = Topology::start();
    let mut args = uplink_args(&topo);
    args.extend(["--app".to_string(), echo_messaging_manifest(dir.path())]);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let twig = Twig::up(&dir.path().join("data"), &argv);
    twig.wait_connected();

    // The bare responder: a NATS client on the leaf, as twig is, echoing.
    let leaf = topo.leaf_client().await.map_err(anyhow::Error::msg)?;
    let mut sub = leaf.subscribe("bench.bare").await?;
    leaf.flush().await?;
    let responder = leaf.clone();
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(reply) = m.reply {
                let _ = responder.publish(reply, m.payload).await;
            }
        }
    });
    let core = topo.core_client().await.map_err(anyhow::Error::msg)?;
    // twig subscribes upstream in the background once the uplink is up.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = tokio::time::timeout(
            Duration::from_secs(2),
            core.request("wasmcloud.echo", "up?".into()),
        )
        .await;
        if matches!(r, Ok(Ok(_))) {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "twig's component never answered on wasmcloud.echo"
        );
    }

    let rows = [
        (
            "core client → twig component (echo-messaging)",
            "wasmcloud.echo",
        ),
        (
            "core client → bare NATS responder on the leaf",
            "bench.bare",
        ),
    ];
    println!(
        "\nNATS request/reply through the leaf (TLS), 15-byte body, median of {} runs of {} requests after {} warm-up:",
        o.runs, o.n, o.warmup
    );
    let mut out = Vec::new();
    for (name, subject) in rows {
        let mut runs = Vec::new();
        for _ in 0..o.runs {
            runs.push(
                run(&core, subject, &o)
                    .await
                    .with_context(|| name.to_string())?,
            );
        }
        let m = median(runs);
        println!(
            "{name:<48} p50 {:>6.0} µs  p99 {:>6.0} µs  {:>7.0} req/s at {IN_FLIGHT} in flight",
            m.p50, m.p99, m.per_sec
        );
        out.push((name, m));
    }
    println!("\nMarkdown for BENCHMARKS.md:\n");
    println!("| path | p50 µs | p99 µs | req/s, {IN_FLIGHT} in flight |\n|---|---:|---:|---:|");
    for (name, m) in &out {
        println!(
            "| {name} | {:.0} | {:.0} | {:.0} |",
            m.p50, m.p99, m.per_sec
        );
    }
    drop(twig);
    Ok(())
}
