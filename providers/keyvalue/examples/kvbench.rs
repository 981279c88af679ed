//! Measures the figures quoted in the crate's README:
//!
//! ```text
//! cargo run --release -p twig-keyvalue --example kvbench [DIR]
//! ```
//!
//! DIR (default: a fresh directory under the system temp dir) should be on
//! the filesystem the store will live on: fsync cost is the point.

use std::alloc::{GlobalAlloc, Layout, System};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Instant;

use twig_keyvalue::{CompactionPolicy, Config, FsyncPolicy, Store};

/// Counts live heap bytes, to measure what the index costs.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

fn grew(by: isize) {
    let now = LIVE.fetch_add(by, Ordering::Relaxed) + by;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        grew(l.size() as isize);
        unsafe { System.alloc(l) }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(p, l) }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        grew(new as isize - l.size() as isize);
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static A: Counting = Counting;

fn heap() -> isize {
    LIVE.load(Ordering::Relaxed)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn fresh(base: &Path, name: &str) -> PathBuf {
    let d = base.join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base = match std::env::args().nth(1) {
        Some(d) => PathBuf::from(d),
        None => std::env::temp_dir().join(format!("twig-kvbench-{}", std::process::id())),
    };
    std::fs::create_dir_all(&base)?;
    let value = [0xA5u8; 100];
    let manual = Config {
        compaction: CompactionPolicy {
            auto: false,
            ..CompactionPolicy::default()
        },
        ..Config::default()
    };

    // Memory of the index per 10k keys (first, before other phases grow
    // the heap, so the RSS delta means something).
    {
        let dir = fresh(&base, "memory");
        let (s, _) = Store::open(&dir, manual)?;
        let (h0, r0) = (heap(), rss_kib());
        for i in 0..10_000u32 {
            s.set("b", &format!("key{i:05}"), &value)?;
        }
        let (h1, r1) = (heap(), rss_kib());
        drop(s);
        let h2 = heap();
        let (s, _) = Store::open(&dir, manual)?;
        let h3 = heap();
        println!(
            "index memory per 10k keys (8-byte keys, 100 B values on disk): {} KiB heap after writing them \
             ({:.0} B/key), {} KiB heap after reopening; RSS grew {} KiB",
            (h1 - h0) / 1024,
            (h1 - h0) as f64 / 10_000.0,
            (h3 - h2) / 1024,
            r1.saturating_sub(r0)
        );
        drop(s);
    }

    // 1. Write amplification: 10k sets over 1k keys, 100-byte values.
    {
        let dir = fresh(&base, "wa");
        let (s, _) = Store::open(&dir, Config::default())?;
        for i in 0..10_000u32 {
            s.set("b", &format!("key{:04}", i % 1000), &value)?;
        }
        let st = s.stats();
        println!(
            "write amplification (10k sets, 1k keys, 100 B values, defaults): {:.2} \
             ({} bytes appended incl. {} compaction(s) / {} bytes of keys+values); {} bytes on disk at the end for {} live",
            st.bytes_written as f64 / st.user_bytes_written as f64,
            st.bytes_written,
            st.compactions,
            st.user_bytes_written,
            st.disk_bytes,
            st.live_bytes
        );
    }

    // 2. Set throughput by fsync policy.
    for (name, policy, n) in [
        ("Always", FsyncPolicy::Always, 2_000u32),
        (
            "Batched{100 ms, 1 MiB}",
            FsyncPolicy::Batched {
                max_delay_ms: 100,
                max_bytes: 1 << 20,
            },
            200_000,
        ),
    ] {
        let dir = fresh(&base, "ops");
        let cfg = Config {
            fsync: policy,
            max_bytes: 1 << 30,
            ..Config::default()
        };
        let (s, _) = Store::open(&dir, cfg)?;
        let t = Instant::now();
        for i in 0..n {
            s.set("b", &format!("key{:05}", i % 10_000), &value)?;
        }
        s.flush()?;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "set, {name}: {:.0} ops/s ({n} sets of 100 B in {secs:.2} s, {} fsyncs, {} compactions)",
            n as f64 / secs,
            s.stats().fsyncs,
            s.stats().compactions
        );
    }

    // 3. Recovery time of a 10 MB log (100-byte values, mostly superseded).
    {
        let dir = fresh(&base, "recovery");
        let cfg = Config {
            fsync: FsyncPolicy::Batched {
                max_delay_ms: 1000,
                max_bytes: 4 << 20,
            },
            ..manual
        };
        let (s, _) = Store::open(&dir, cfg)?;
        let mut i = 0u32;
        while s.stats().disk_bytes < 10_000_000 {
            s.set("b", &format!("key{:05}", i % 10_000), &value)?;
            i += 1;
        }
        let disk = s.stats().disk_bytes;
        drop(s);
        let before = heap();
        PEAK.store(before, Ordering::Relaxed);
        let t = Instant::now();
        let (s, report) = Store::open(&dir, manual)?;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "recovery of a {:.1} MB log ({} records, {} live keys, {} segments): {:.0} ms (warm page cache), \
             peak heap during open {:.1} MiB",
            disk as f64 / 1e6,
            report.recovered_records,
            report.live_keys,
            report.segments,
            secs * 1e3,
            (PEAK.load(Ordering::Relaxed) - before) as f64 / (1 << 20) as f64
        );
        drop(s);
    }

    let _ = std::fs::remove_dir_all(&base);
    Ok(())
}
