//! Latency of concurrent counter increments, the key-value side of the HTTP
//! counter app (every request one `increment` of the counter named by its
//! path): p50, p99 and the worst increment, with 1, 8 and 32 threads, under
//! both fsync policies.
//!
//! ```text
//! cargo run --release -p twig-keyvalue --example kvcounter [-- SECONDS [DIR]]
//! ```
//!
//! Each thread increments its own 16 counters in turn (as the load
//! generator's connections walk 16 paths), so all threads share the store
//! and its compaction, not one key. Batched is the twig provider's
//! `fsync: batched` (100 ms, 1 MiB). DIR (default: the system temp dir)
//! should be on the filesystem the store will live on. One store per row,
//! 0.5 s warm-up, then SECONDS (default 5) measured.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use twig_keyvalue::{Config, FsyncPolicy, Store};

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

fn run(base: &Path, name: &str, fsync: FsyncPolicy, threads: usize, secs: f64) {
    let dir = base.join(format!(
        "twig-kvcounter-{}-{name}-{threads}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let config = Config {
        fsync,
        ..Config::default()
    };
    let (store, _) = Store::open(&dir, config).expect("open");
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (store, measuring, stop) = (store.clone(), measuring.clone(), stop.clone());
            std::thread::spawn(move || {
                let keys: Vec<String> = (0..16).map(|i| format!("/t{t}/p{i}")).collect();
                let mut lat = Vec::with_capacity(1 << 16);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let t0 = Instant::now();
                    store
                        .increment("default", &keys[i % keys.len()], 1)
                        .expect("increment");
                    if measuring.load(Ordering::Relaxed) {
                        lat.push(t0.elapsed());
                    }
                    i += 1;
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let before = store.stats();
    measuring.store(true, Ordering::Relaxed);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let took = started.elapsed();
    let mut lat: Vec<Duration> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("join"))
        .collect();
    let after = store.stats();
    lat.sort_unstable();
    let us = |d: Duration| d.as_micros();
    println!(
        "| {name} | {threads} | {:.0} | {} µs | {} µs | {} µs | {} |",
        lat.len() as f64 / took.as_secs_f64(),
        us(quantile(&lat, 0.5)),
        us(quantile(&lat, 0.99)),
        us(lat.last().copied().unwrap_or_default()),
        after.compactions - before.compactions,
    );
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().map_or(5.0, |s| s.parse().expect("SECONDS"));
    let base = args.next().map_or_else(std::env::temp_dir, PathBuf::from);
    println!("| fsync | threads | increments/s | p50 | p99 | max | compactions |");
    println!("|---|---|---|---|---|---|---|");
    for (name, fsync) in [
        ("always", FsyncPolicy::Always),
        (
            "batched",
            FsyncPolicy::Batched {
                max_delay_ms: 100,
                max_bytes: 1 << 20,
            },
        ),
    ] {
        for threads in [1, 8, 32] {
            run(&base, name, fsync, threads, secs);
        }
    }
}
