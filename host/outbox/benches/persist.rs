//! `cargo bench -p twig-outbox --bench persist`: how fast the durable outbox (`twig-outbox`) persists
//! messages, and how fast it hands them back to the drain.
//!
//! ```sh
//! cargo bench -p twig-outbox --bench persist [-- --dir DIR]
//! ```
//!
//! Appends 160-byte telemetry-sized messages from 1, 4 and 16 threads at
//! once, with `sync_interval_ms = 0` (each `append` returns after its
//! fsync; concurrent appenders share one: group commit) and with
//! `sync_interval_ms = 10` (fsync every 10 ms); then reads a 50,000-message
//! backlog back with `next_batch` + `ack` the way the drain does (the
//! network excluded). Each figure is the median of three runs. The
//! directory (default: `target/outbox-bench`, on the disk the repo is on)
//! matters: fsync costs what the disk says.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use twig_outbox::{ClassConfig, DropPolicy, Outbox, OutboxConfig, SyncPolicy};

const BODY: usize = 160;
const RUNS: usize = 3;

fn open(dir: &Path, sync: SyncPolicy) -> Outbox {
    let _ = std::fs::remove_dir_all(dir);
    let mut c = OutboxConfig::new(
        dir,
        vec![ClassConfig::new("telemetry", 100, DropPolicy::DropOldest)],
    );
    c.sync = sync;
    c.max_bytes = 256 << 20;
    Outbox::open(c).expect("open outbox")
}

/// Messages per second appended by `threads` threads, `total` messages.
fn append_rate(dir: &Path, sync: SyncPolicy, threads: usize, total: usize) -> f64 {
    let ob = Arc::new(open(dir, sync));
    let class = ob.class("telemetry").expect("class");
    let body = vec![b'x'; BODY];
    let per = total / threads;
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let ob = ob.clone();
            let body = body.clone();
            s.spawn(move || {
                let subject = format!("telemetry.s{t}");
                for _ in 0..per {
                    ob.append(class, &subject, &[], &body).expect("append");
                }
            });
        }
    });
    let secs = t0.elapsed().as_secs_f64();
    (per * threads) as f64 / secs
}

/// Messages per second read back and acknowledged, batch by batch.
fn drain_rate(dir: &Path, total: usize) -> f64 {
    let ob = open(dir, SyncPolicy::Interval(Duration::from_millis(100)));
    let class = ob.class("telemetry").expect("class");
    let body = vec![b'x'; BODY];
    for _ in 0..total {
        ob.append(class, "telemetry.s1", &[], &body)
            .expect("append");
    }
    ob.sync().expect("sync");
    drop(ob);
    // Reopened, as after a reboot with a backlog.
    let mut c = OutboxConfig::new(
        dir,
        vec![ClassConfig::new("telemetry", 100, DropPolicy::DropOldest)],
    );
    c.max_bytes = 256 << 20;
    let ob = Outbox::open(c).expect("reopen");
    let t0 = Instant::now();
    let mut n = 0;
    loop {
        let b = ob.next_batch(32, 1 << 20).expect("next_batch");
        let Some(last) = b.last() else { break };
        n += b.len();
        ob.ack(last.class, last.seq).expect("ack");
    }
    assert_eq!(n, total, "every message read back once");
    n as f64 / t0.elapsed().as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/outbox-bench");
    // `cargo bench` passes `--bench`; take only our own flag.
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = PathBuf::from(args.next().expect("--dir DIR")),
            "--bench" => {}
            other => {
                eprintln!("persist: unknown argument {other} (takes --dir DIR)");
                std::process::exit(2);
            }
        }
    }
    println!(
        "outbox persist: {BODY}-byte messages in {}; median of {RUNS} runs",
        dir.display()
    );
    println!("{:<34} {:>8} {:>14}", "sync", "threads", "messages/s");
    for (name, sync, total) in [
        ("fsync per append (group commit)", SyncPolicy::Always, 3000),
        (
            "fsync every 10 ms",
            SyncPolicy::Interval(Duration::from_millis(10)),
            60_000,
        ),
    ] {
        for threads in [1, 4, 16] {
            let rate = median(
                (0..RUNS)
                    .map(|_| append_rate(&dir, sync, threads, total))
                    .collect(),
            );
            println!("{name:<34} {threads:>8} {rate:>14.0}");
        }
    }
    let rate = median((0..RUNS).map(|_| drain_rate(&dir, 50_000)).collect());
    println!("read back + ack (next_batch of 32), after reopen: {rate:.0} messages/s");
    let _ = std::fs::remove_dir_all(&dir);
}
