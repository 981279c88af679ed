//! The bounds on stopping and on the admin socket, measured on the real
//! binary (`$TWIG_BIN`, else the one beside this program): how long
//! SIGTERM takes while a guest call spins (deadline 10 min) and a client
//! sits on the socket without sending, and the host's peak RSS after 8
//! clients each send 40 MiB at once. Prints Markdown for BENCHMARKS.md.
//!
//! ```text
//! tests/guests/build.sh && examples/build.sh && cargo build -p twig \
//!   && cargo run -p twig-integration-tests --bin admin-bounds
//! ```
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use twig_integration_tests::guest_path;
use twig_integration_tests::twig::{demo_manifest, repo_root, twig_bin, TempDir, Twig};

const SAMPLES: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn hwm_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    s.lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("VmHWM")
}

/// Seconds from SIGTERM to exit, with a call spinning and a silent client.
fn stop_time(tmp: &TempDir, n: usize) -> f64 {
    let board = std::fs::read_to_string(repo_root().join("boards/sim/board.toml"))
        .expect("sim board")
        .replace(
            "fuel_per_call = 10_000_000_000",
            "fuel_per_call = 1_000_000_000_000_000",
        )
        .replace("deadline_ms = 10_000", "deadline_ms = 600_000");
    let board_path = tmp.path().join("slow.toml");
    std::fs::write(&board_path, board).expect("write board");
    let app = tmp.path().join("spin.yaml");
    std::fs::write(
        &app,
        format!(
            "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: spin\nspec:\n  components:\n    - name: m\n      type: component\n      properties:\n        image: {}\n      traits:\n        - type: spreadscaler\n          properties:\n            instances: 1\n",
            guest_path("misbehave").display()
        ),
    )
    .expect("write app");
    let data = tmp.path().join(format!("stop{n}"));
    let mut t = Twig::up(
        &data,
        &[
            "--board",
            board_path.to_str().unwrap(),
            "--app",
            app.to_str().unwrap(),
        ],
    );
    t.settled(1);
    let mut caller = Command::new(twig_bin())
        .args([
            "invoke",
            "--data-dir",
            data.to_str().unwrap(),
            "spin-m",
            "spin",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn invoke");
    let _silent = UnixStream::connect(data.join("admin.sock")).expect("connect");
    while t.status()["apps"][0]["components"][0]["calls"] != 1 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    let status = t.terminate();
    let took = started.elapsed().as_secs_f64();
    assert!(status.success(), "exit status {status}");
    let _ = caller.wait();
    took
}

/// Peak RSS (KiB) of a host running the demo after 8 clients each send
/// 40 MiB without a newline at once, and how many were told `busy`.
fn parallel_requests(tmp: &TempDir, n: usize) -> (u64, u64, usize) {
    let data = tmp.path().join(format!("rss{n}"));
    let t = Twig::up(&data, &["--app", &demo_manifest()]);
    t.settled(1);
    let before = hwm_kib(t.pid());
    let sock = data.join("admin.sock");
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let sock = sock.clone();
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&sock).expect("connect");
                let chunk = vec![b' '; 1 << 20];
                for _ in 0..40 {
                    if s.write_all(&chunk).is_err() {
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(500));
                let _ = s.shutdown(std::net::Shutdown::Write);
                let mut answer = String::new();
                let _ = s.read_to_string(&mut answer);
                answer
            })
        })
        .collect();
    let busy = clients
        .into_iter()
        .map(|c| c.join().expect("client"))
        .filter(|a| a.contains("busy"))
        .count();
    (before, hwm_kib(t.pid()), busy)
}

fn main() {
    let tmp = TempDir::new("bounds");
    let stops: Vec<f64> = (0..SAMPLES).map(|n| stop_time(&tmp, n)).collect();
    let runs: Vec<(u64, u64, usize)> = (0..SAMPLES).map(|n| parallel_requests(&tmp, n)).collect();
    let idle = median(runs.iter().map(|r| r.0 as f64).collect());
    let peak = median(runs.iter().map(|r| r.1 as f64).collect());
    let busy = median(runs.iter().map(|r| r.2 as f64).collect());
    println!("| figure | median of {SAMPLES} |");
    println!("|---|---|");
    println!(
        "| SIGTERM to exit, a guest call spinning (deadline 10 min) and a silent admin client | {:.2} s |",
        median(stops)
    );
    println!("| host peak RSS, demo idle | {:.1} MB |", idle / 1024.0);
    println!(
        "| host peak RSS after 8 clients send 40 MiB each at once | {:.1} MB ({busy} of 8 told `busy`) |",
        peak / 1024.0
    );
}
