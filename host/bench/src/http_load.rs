//! The HTTP load generator shared by `http-load` and `hello-http`: plain
//! threads, keep-alive HTTP/1.1 connections, one request in flight per
//! connection, and what they read of the server process from `/proc`.
#![forbid(unsafe_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A request not answered within this is an error.
pub const ANSWER: Duration = Duration::from_secs(5);

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Reads one HTTP/1.1 response (content-length or chunked) and returns
/// its status.
pub fn read_response(r: &mut BufReader<TcpStream>) -> Result<u16> {
    let mut line = String::new();
    r.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let (mut len, mut chunked) = (None, false);
    loop {
        line.clear();
        r.read_line(&mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let lower = l.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse::<usize>().ok();
        } else if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
            chunked = true;
        }
    }
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim(), 16).context("chunk size")?;
            let mut buf = vec![0; n + 2];
            r.read_exact(&mut buf)?;
            if n == 0 {
                break;
            }
        }
    } else if let Some(n) = len {
        let mut buf = vec![0; n];
        r.read_exact(&mut buf)?;
    }
    Ok(status)
}

/// `conns` clients, each sending GET requests on one keep-alive
/// connection for `dur`; returns (requests done, errors, latencies in µs).
/// An unanswered request (error, or nothing within [`ANSWER`]) counts as
/// an error and the client reconnects.
pub fn load(port: u16, conns: usize, dur: Duration) -> Result<(usize, usize, Vec<f64>)> {
    let end = Instant::now() + dur;
    let mut threads = Vec::new();
    for c in 0..conns {
        threads.push(std::thread::spawn(move || -> (usize, usize, Vec<f64>) {
            let (mut done, mut errors, mut lat) = (0, 0, Vec::new());
            let mut i = 0u64;
            let open = || -> std::io::Result<(TcpStream, BufReader<TcpStream>)> {
                let stream = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), ANSWER)?;
                stream.set_nodelay(true)?;
                stream.set_read_timeout(Some(ANSWER))?;
                let reader = BufReader::new(stream.try_clone()?);
                Ok((stream, reader))
            };
            let mut conn = None;
            while Instant::now() < end {
                // 16 paths per connection: 16 counters being incremented.
                let req = format!("GET /c{c}-{} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", i % 16);
                i += 1;
                let t = Instant::now();
                let r = (|| -> Result<u16> {
                    if conn.is_none() {
                        conn = Some(open()?);
                    }
                    let (stream, reader) = conn.as_mut().context("connection")?;
                    stream.write_all(req.as_bytes())?;
                    read_response(reader)
                })();
                match r {
                    Ok(200) => done += 1,
                    Ok(status) => {
                        errors += 1;
                        eprintln!("connection {c}: status {status}");
                    }
                    Err(e) => {
                        errors += 1;
                        eprintln!("connection {c}: no answer: {e}");
                        conn = None;
                    }
                }
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
            (done, errors, lat)
        }));
    }
    let (mut done, mut errors, mut lat) = (0, 0, Vec::new());
    for t in threads {
        let (d, e, l) = t
            .join()
            .map_err(|_| anyhow::anyhow!("client thread panicked"))?;
        done += d;
        errors += e;
        lat.extend(l);
    }
    lat.sort_by(|a, b| a.total_cmp(b));
    Ok((done, errors, lat))
}

/// The process's peak resident set (VmHWM) in KiB; 0 if unreadable.
pub fn peak_rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmHWM:")
}

/// The value at quantile `p` (0..=1) of sorted `v`; NaN if empty.
pub fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// A process's resident set (`VmRSS`) in KiB; 0 if unreadable.
pub fn rss_kb(pid: u32) -> u64 {
    status_kb(pid, "VmRSS:")
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// What a process used over a window: CPU time (user + system, all its
/// threads, from `/proc/PID/stat`) and voluntary context switches of its
/// threads (`/proc/PID/task/*/status`).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcUsage {
    /// utime + stime, seconds.
    pub cpu_s: f64,
    /// Voluntary context switches of the process's threads in the window.
    pub vcsw: u64,
    /// Threads seen in the window (including any that exited).
    pub threads: usize,
}

/// Measures a process's [`ProcUsage`] over a window. A thread that exits
/// takes its switch count with it, so a plain before/after sum undercounts
/// (it can even shrink: the blocking threads of a warm-up time out in the
/// window); this samples every thread's count every 50 ms and adds up each
/// thread's own growth, losing at most a thread's last 50 ms.
pub struct ProcWatch {
    pid: u32,
    ticks: f64,
    cpu_before: f64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sampler: std::thread::JoinHandle<std::collections::HashMap<u32, (u64, u64)>>,
}

impl ProcWatch {
    /// Starts the window; `ticks` is the clock-tick rate of
    /// `/proc/PID/stat` (see [`clock_ticks`]).
    pub fn start(pid: u32, ticks: f64) -> Result<ProcWatch> {
        let cpu_before = cpu_seconds(pid, ticks)?;
        // Threads alive now count from their current value; threads born
        // in the window count from zero.
        let mut seen: std::collections::HashMap<u32, (u64, u64)> = thread_switches(pid)
            .into_iter()
            .map(|(tid, n)| (tid, (n, n)))
            .collect();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sampler = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                    for (tid, n) in thread_switches(pid) {
                        seen.entry(tid).or_insert((0, 0)).1 = n;
                    }
                }
                for (tid, n) in thread_switches(pid) {
                    seen.entry(tid).or_insert((0, 0)).1 = n;
                }
                seen
            })
        };
        Ok(ProcWatch {
            pid,
            ticks,
            cpu_before,
            stop,
            sampler,
        })
    }

    /// Ends the window.
    pub fn finish(self) -> Result<ProcUsage> {
        let cpu_s = cpu_seconds(self.pid, self.ticks)? - self.cpu_before;
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let seen = self
            .sampler
            .join()
            .map_err(|_| anyhow::anyhow!("the /proc sampler panicked"))?;
        let vcsw = seen
            .values()
            .map(|(first, last)| last.saturating_sub(*first))
            .sum();
        Ok(ProcUsage {
            cpu_s,
            vcsw,
            threads: seen.len(),
        })
    }
}

/// utime + stime of process `pid`, in seconds.
fn cpu_seconds(pid: u32, ticks: f64) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("/proc/{pid}/stat"))?;
    // The fields after the command name, which is in parentheses and may
    // itself hold spaces or parentheses.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .context("/proc/PID/stat without a command name")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line; `rest`
    // starts at field 3 (state).
    let tick = |i: usize| -> Result<f64> {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .map(|v| v as f64 / ticks)
            .with_context(|| format!("/proc/{pid}/stat field {}", i + 3))
    };
    Ok(tick(11)? + tick(12)?)
}

/// Each live thread's `voluntary_ctxt_switches`, by thread id.
fn thread_switches(pid: u32) -> Vec<(u32, u64)> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for task in tasks.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse().ok()) else {
            continue;
        };
        // A thread may exit between the listing and the read.
        let Ok(status) = std::fs::read_to_string(task.path().join("status")) else {
            continue;
        };
        if let Some(n) = status
            .lines()
            .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
            .and_then(|v| v.trim().parse::<u64>().ok())
        {
            out.push((tid, n));
        }
    }
    out
}

/// The clock-tick rate of `/proc/PID/stat` times (`getconf CLK_TCK`;
/// 100, Linux's fixed USER_HZ, if that cannot be run).
pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}
