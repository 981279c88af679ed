//! twig-keyvalue side by side with SQLite in WAL mode (rusqlite, bundled),
//! in one run: the same workloads, keys, values, seeded key order and
//! fsync settings for both. Prints a readable table and a Markdown table
//! for BENCHMARKS.md.
//!
//! ```text
//! cargo run --release -p twig-bench --bin kv-vs-sqlite [-- OPTIONS]
//!
//!   --quick            seconds-long smoke run (small N, 1 repetition, no
//!                      binary sizes)
//!   --n N              keys/ops per workload with batched fsync (100000)
//!   --n-sync N         keys/ops per workload with an fsync per write
//!                      (default: from a probe of this disk's fsync time, so
//!                      that mode takes ~45 s; at least 200, at most 2000)
//!   --value-size B     value size in bytes (100); keys are 16 bytes
//!   --reps R           repetitions; figures are medians (5)
//!   --seed S           seed of the key order (42)
//!   --dir DIR          where the stores go (default: the system temp dir);
//!                      it should be on the filesystem being measured
//!   --no-sizes         skip building and measuring the size probes
//! ```
//!
//! Workloads, each in a fresh directory and its own child process (so that
//! peak RSS and `/proc/self/io` belong to one store and one workload):
//!
//! 1. `put-seq`: N puts of distinct keys in key order, into an empty store;
//! 2. `overwrite-rand`: 2N puts of existing keys, uniformly random order,
//!    into a store prefilled with N keys (prefill untimed, then reopened);
//!    2N so that twig's log passes its compaction threshold (more than 50%
//!    dead) within the run and compaction is paid for in the figures;
//! 3. `get-rand`: N gets of random existing keys (same prefill);
//! 4. `increment`: N read-modify-write increments of 8 hot counters
//!    (twig `increment`; SQLite `INSERT … ON CONFLICT DO UPDATE SET v = v + 1
//!    RETURNING v`, one statement, its own transaction);
//! 5. `put-batch`: N distinct keys in random order, 100 per batch (twig
//!    `set_many`, one record; SQLite one transaction of 100 upserts).
//!
//! Durability settings:
//!
//! - `sync`: twig `FsyncPolicy::Always` (fdatasync per write) vs SQLite WAL
//!   `synchronous=FULL`, each write its own (autocommit) transaction;
//! - `batched`: twig `FsyncPolicy::Batched { 100 ms, 1 MiB }` vs SQLite WAL
//!   `synchronous=NORMAL` (WAL synced only at checkpoints).
//!
//! SQLite runs with its defaults otherwise (4 KiB pages, 2 MB page cache,
//! auto-checkpoint at 1000 WAL pages); the table is `k TEXT PRIMARY KEY,
//! v BLOB` `WITHOUT ROWID`; statements are prepared once (cached).
//!
//! What is measured per run:
//!
//! - ops/s: operations (keys, for `put-batch`) over the time of the operation
//!   loop; the final flush (twig) or close with its checkpoint (SQLite) is
//!   not timed;
//! - p50/p99: latency of one call (one batch for `put-batch`);
//! - write amplification: `write_bytes` from `/proc/self/io` (bytes of page
//!   cache the process dirtied, page-granular, so what the filesystem will
//!   write back, journal excluded) from after the prefill to after the final
//!   flush/close, over the key+value bytes asked for (counters: key + 8);
//! - disk: apparent size of the directory's files while open and after
//!   close;
//! - RSS: the child's peak RSS (VmHWM, reset after the keys and values are
//!   generated) minus its RSS at that moment: prefill included.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use rusqlite::{Connection, OptionalExtension};
use twig_keyvalue::{Config, FsyncPolicy, Store};

const KEY_BYTES: usize = 16;
const HOT_COUNTERS: usize = 8;
const BATCH: usize = 100;
const VALUE_POOL: usize = 64;
const BUCKET: &str = "b";
const BATCHED_FSYNC: FsyncPolicy = FsyncPolicy::Batched {
    max_delay_ms: 100,
    max_bytes: 1 << 20,
};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Engine {
    Twig,
    Sqlite,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    /// fsync per write.
    Sync,
    /// Group fsync.
    Batched,
    /// Prefill only: as fast as each store allows.
    Load,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    PutSeq,
    OverwriteRand,
    GetRand,
    Increment,
    PutBatch,
}

const ENGINES: [Engine; 2] = [Engine::Twig, Engine::Sqlite];
const WORKLOADS: [Workload; 5] = [
    Workload::PutSeq,
    Workload::OverwriteRand,
    Workload::GetRand,
    Workload::Increment,
    Workload::PutBatch,
];

impl Engine {
    fn name(self) -> &'static str {
        match self {
            Engine::Twig => "twig",
            Engine::Sqlite => "sqlite",
        }
    }
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Batched => "batched",
            Mode::Load => "load",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Mode::Sync => {
                "fsync every write: twig Fsync::Always vs SQLite WAL synchronous=FULL, autocommit"
            }
            Mode::Batched => {
                "batched fsync: twig Fsync::Batched{100 ms, 1 MiB} vs SQLite WAL synchronous=NORMAL"
            }
            Mode::Load => "prefill",
        }
    }
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::PutSeq => "put-seq",
            Workload::OverwriteRand => "overwrite-rand",
            Workload::GetRand => "get-rand",
            Workload::Increment => "increment",
            Workload::PutBatch => "put-batch",
        }
    }

    fn prefilled(self) -> bool {
        matches!(self, Workload::OverwriteRand | Workload::GetRand)
    }

    fn writes(self) -> bool {
        self != Workload::GetRand
    }
}

fn parse_engine(s: &str) -> Result<Engine> {
    ENGINES
        .into_iter()
        .find(|e| e.name() == s)
        .ok_or_else(|| anyhow!("unknown engine {s:?}"))
}

fn parse_mode(s: &str) -> Result<Mode> {
    [Mode::Sync, Mode::Batched]
        .into_iter()
        .find(|m| m.name() == s)
        .ok_or_else(|| anyhow!("unknown mode {s:?}"))
}

fn parse_workload(s: &str) -> Result<Workload> {
    WORKLOADS
        .into_iter()
        .find(|w| w.name() == s)
        .ok_or_else(|| anyhow!("unknown workload {s:?}"))
}

/// splitmix64: a small seeded generator, so both stores see the same order.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

fn key_name(i: usize) -> String {
    let k = format!("key-{i:012}");
    debug_assert_eq!(k.len(), KEY_BYTES);
    k
}

fn counter_name(i: usize) -> String {
    format!("counter-{i:08}")
}

/// The two stores behind one interface. Every call is a complete,
/// acknowledged operation under the store's durability setting.
trait Kv {
    fn put(&mut self, key: &str, value: &[u8]) -> Result<()>;
    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>>;
    fn increment(&mut self, key: &str) -> Result<u64>;
    /// Atomically: twig `set_many`, SQLite one transaction.
    fn put_many(&mut self, entries: &[(&str, &[u8])]) -> Result<()>;
    /// Prefill: whatever writes these keys fastest while leaving the same
    /// state as one put per key.
    fn load(&mut self, entries: &[(&str, &[u8])]) -> Result<()>;
    /// Bytes the store appended itself (twig only).
    fn appended_bytes(&self) -> Option<u64>;
    /// Makes everything durable and closes the store.
    fn close(self: Box<Self>) -> Result<()>;
}

struct Twig(Store);

impl Twig {
    fn open(dir: &Path, mode: Mode) -> Result<Twig> {
        let fsync = match mode {
            Mode::Sync => FsyncPolicy::Always,
            Mode::Batched => BATCHED_FSYNC,
            Mode::Load => FsyncPolicy::Batched {
                max_delay_ms: 1000,
                max_bytes: 64 << 20,
            },
        };
        let config = Config {
            fsync,
            max_bytes: 1 << 40,
            ..Config::default()
        };
        let (store, _) = Store::open(dir, config)
            .with_context(|| format!("opening twig store in {}", dir.display()))?;
        Ok(Twig(store))
    }
}

impl Kv for Twig {
    fn put(&mut self, key: &str, value: &[u8]) -> Result<()> {
        self.0.set(BUCKET, key, value).context("twig set")
    }

    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        self.0.get(BUCKET, key).context("twig get")
    }

    fn increment(&mut self, key: &str) -> Result<u64> {
        self.0.increment(BUCKET, key, 1).context("twig increment")
    }

    fn put_many(&mut self, entries: &[(&str, &[u8])]) -> Result<()> {
        self.0.set_many(BUCKET, entries).context("twig set_many")
    }

    fn load(&mut self, entries: &[(&str, &[u8])]) -> Result<()> {
        // One record per key, as the workloads write them: a key written
        // in a batch would make every later get read the whole batch.
        entries.iter().try_for_each(|(k, v)| self.put(k, v))
    }

    fn appended_bytes(&self) -> Option<u64> {
        Some(self.0.stats().bytes_written)
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.0.flush().context("twig flush")?;
        drop(self);
        Ok(())
    }
}

struct Sqlite(Connection);

const SQL_PUT: &str =
    "INSERT INTO kv (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = excluded.v";
const SQL_GET: &str = "SELECT v FROM kv WHERE k = ?1";
const SQL_INCREMENT: &str =
    "INSERT INTO kv (k, v) VALUES (?1, 1) ON CONFLICT (k) DO UPDATE SET v = v + 1 RETURNING v";

impl Sqlite {
    fn open(dir: &Path, mode: Mode) -> Result<Sqlite> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join("kv.db");
        let conn =
            Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
        let journal: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .context("PRAGMA journal_mode=WAL")?;
        ensure!(
            journal.eq_ignore_ascii_case("wal"),
            "SQLite refused WAL mode (journal_mode is {journal})"
        );
        let sync = match mode {
            Mode::Sync => "FULL",
            Mode::Batched | Mode::Load => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)
            .with_context(|| format!("PRAGMA synchronous={sync}"))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY NOT NULL, v BLOB NOT NULL) WITHOUT ROWID",
        )
        .context("creating the kv table")?;
        Ok(Sqlite(conn))
    }
}

impl Kv for Sqlite {
    fn put(&mut self, key: &str, value: &[u8]) -> Result<()> {
        let mut st = self.0.prepare_cached(SQL_PUT).context("preparing put")?;
        st.execute((key, value)).context("sqlite put")?;
        Ok(())
    }

    fn get(&mut self, key: &str) -> Result<Option<Vec<u8>>> {
        let mut st = self.0.prepare_cached(SQL_GET).context("preparing get")?;
        st.query_row([key], |r| r.get(0))
            .optional()
            .context("sqlite get")
    }

    fn increment(&mut self, key: &str) -> Result<u64> {
        let mut st = self
            .0
            .prepare_cached(SQL_INCREMENT)
            .context("preparing increment")?;
        // Step the statement to its end rather than `query_row`: SQLite
        // runs the WAL auto-checkpoint only when a statement finishes
        // stepping, so resetting it after the RETURNING row would let the
        // WAL grow without bound.
        let mut rows = st.query([key]).context("sqlite increment")?;
        let v: i64 = rows
            .next()
            .context("sqlite increment")?
            .context("increment returned no row")?
            .get(0)
            .context("sqlite increment: reading the new value")?;
        ensure!(
            rows.next().context("sqlite increment")?.is_none(),
            "increment returned more than one row"
        );
        u64::try_from(v).context("counter went negative")
    }

    fn put_many(&mut self, entries: &[(&str, &[u8])]) -> Result<()> {
        let tx = self.0.transaction().context("sqlite BEGIN")?;
        {
            let mut st = tx.prepare_cached(SQL_PUT).context("preparing put")?;
            for (k, v) in entries {
                st.execute((k, v)).context("sqlite put in a transaction")?;
            }
        }
        tx.commit().context("sqlite COMMIT")
    }

    fn load(&mut self, entries: &[(&str, &[u8])]) -> Result<()> {
        self.put_many(entries)
    }

    fn appended_bytes(&self) -> Option<u64> {
        None
    }

    fn close(self: Box<Self>) -> Result<()> {
        self.0
            .close()
            .map_err(|(_, e)| e)
            .context("closing SQLite (final checkpoint)")
    }
}

fn open(engine: Engine, mode: Mode, dir: &Path) -> Result<Box<dyn Kv>> {
    Ok(match engine {
        Engine::Twig => Box::new(Twig::open(dir, mode)?),
        Engine::Sqlite => Box::new(Sqlite::open(dir, mode)?),
    })
}

fn proc_field(file: &str, field: &str) -> Result<u64> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {file}"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .with_context(|| format!("no {field} in {file}"))
}

fn write_bytes() -> Result<u64> {
    proc_field("/proc/self/io", "write_bytes")
}

fn dir_bytes(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let meta = entry
            .metadata()
            .with_context(|| format!("stat {}", entry.path().display()))?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// One run's figures, as a child process reports them.
#[derive(Debug, Clone, Default)]
struct Sample {
    /// Operations (keys for put-batch).
    ops: u64,
    secs: f64,
    p50_ns: u64,
    p99_ns: u64,
    /// Kernel write_bytes delta.
    disk_writes: u64,
    /// Key+value bytes asked for.
    logical: u64,
    /// Bytes the store says it appended (twig), or 0.
    appended: u64,
    disk_open: u64,
    disk_closed: u64,
    rss_kib: u64,
}

impl Sample {
    fn to_line(&self) -> String {
        format!(
            "RESULT ops={} secs={} p50_ns={} p99_ns={} disk_writes={} logical={} appended={} disk_open={} disk_closed={} rss_kib={}",
            self.ops,
            self.secs,
            self.p50_ns,
            self.p99_ns,
            self.disk_writes,
            self.logical,
            self.appended,
            self.disk_open,
            self.disk_closed,
            self.rss_kib
        )
    }

    fn from_line(line: &str) -> Result<Sample> {
        let mut s = Sample::default();
        let rest = line
            .strip_prefix("RESULT ")
            .context("child result line must start with RESULT")?;
        for kv in rest.split_whitespace() {
            let (k, v) = kv.split_once('=').context("bad child result field")?;
            let int = || v.parse::<u64>().with_context(|| format!("bad {k}={v}"));
            match k {
                "ops" => s.ops = int()?,
                "secs" => s.secs = v.parse().with_context(|| format!("bad secs={v}"))?,
                "p50_ns" => s.p50_ns = int()?,
                "p99_ns" => s.p99_ns = int()?,
                "disk_writes" => s.disk_writes = int()?,
                "logical" => s.logical = int()?,
                "appended" => s.appended = int()?,
                "disk_open" => s.disk_open = int()?,
                "disk_closed" => s.disk_closed = int()?,
                "rss_kib" => s.rss_kib = int()?,
                _ => bail!("unknown child result field {k}"),
            }
        }
        Ok(s)
    }

    fn ops_per_sec(&self) -> f64 {
        self.ops as f64 / self.secs
    }

    fn write_amp(&self) -> Option<f64> {
        (self.logical > 0).then(|| self.disk_writes as f64 / self.logical as f64)
    }

    fn app_amp(&self) -> Option<f64> {
        (self.logical > 0 && self.appended > 0).then(|| self.appended as f64 / self.logical as f64)
    }
}

fn percentile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

struct ChildArgs {
    engine: Engine,
    mode: Mode,
    workload: Workload,
    n: usize,
    value_size: usize,
    seed: u64,
    dir: PathBuf,
}

/// One store, one workload, in this (child) process.
fn run_child(a: &ChildArgs) -> Result<Sample> {
    let n = a.n;
    let mut rng = Rng(a.seed);
    let keys: Vec<String> = (0..n).map(key_name).collect();
    let values: Vec<Vec<u8>> = (0..VALUE_POOL)
        .map(|_| (0..a.value_size).map(|_| rng.next_u64() as u8).collect())
        .collect();
    let counters: Vec<String> = (0..HOT_COUNTERS).map(counter_name).collect();
    // The op order; the same seed gives both stores the same sequence.
    let order: Vec<usize> = match a.workload {
        Workload::PutSeq => (0..n).collect(),
        // 2N: N overwrites of N keys leave the log exactly 50% dead, at
        // twig's compaction threshold; 2N make it compact within the run.
        Workload::OverwriteRand => (0..2 * n).map(|_| rng.below(n)).collect(),
        Workload::GetRand => (0..n).map(|_| rng.below(n)).collect(),
        Workload::Increment => (0..n).map(|_| rng.below(HOT_COUNTERS)).collect(),
        Workload::PutBatch => {
            let mut p: Vec<usize> = (0..n).collect();
            for i in (1..n).rev() {
                p.swap(i, rng.below(i + 1));
            }
            p
        }
    };
    let batches: Vec<Vec<(&str, &[u8])>> = if a.workload == Workload::PutBatch {
        order
            .chunks(BATCH)
            .enumerate()
            .map(|(b, c)| {
                c.iter()
                    .enumerate()
                    .map(|(j, &i)| (keys[i].as_str(), values[(b + j) % VALUE_POOL].as_slice()))
                    .collect()
            })
            .collect()
    } else {
        Vec::new()
    };
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;

    let rss_before = proc_field("/proc/self/status", "VmRSS")?;
    // Reset VmHWM to the current RSS (Linux >= 4.0); without it the peak
    // can only be higher, never lower.
    let _ = std::fs::write("/proc/self/clear_refs", "5");

    if a.workload.prefilled() {
        let mut kv = open(a.engine, Mode::Load, &a.dir)?;
        let entries: Vec<(&str, &[u8])> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_str(), values[i % VALUE_POOL].as_slice()))
            .collect();
        for chunk in entries.chunks(1000) {
            kv.load(chunk)?;
        }
        kv.close()?;
    }

    let mut kv = open(a.engine, a.mode, &a.dir)?;
    let writes0 = write_bytes()?;
    let appended0 = kv.appended_bytes().unwrap_or(0);
    let mut lat: Vec<u64> = Vec::with_capacity(n);
    let mut logical = 0u64;
    let mut last = [0u64; HOT_COUNTERS];
    let start = Instant::now();
    match a.workload {
        Workload::PutSeq | Workload::OverwriteRand => {
            for (j, &i) in order.iter().enumerate() {
                let (k, v) = (&keys[i], &values[(j + 1) % VALUE_POOL]);
                let t = Instant::now();
                kv.put(k, v)?;
                lat.push(t.elapsed().as_nanos() as u64);
                logical += (k.len() + v.len()) as u64;
            }
        }
        Workload::GetRand => {
            for &i in &order {
                let t = Instant::now();
                let v = kv.get(&keys[i])?;
                lat.push(t.elapsed().as_nanos() as u64);
                let v = v.with_context(|| format!("{} lost key {}", a.engine.name(), keys[i]))?;
                ensure!(
                    v.len() == a.value_size,
                    "wrong value length for {}",
                    keys[i]
                );
            }
        }
        Workload::Increment => {
            for &c in &order {
                let t = Instant::now();
                let v = kv.increment(&counters[c])?;
                lat.push(t.elapsed().as_nanos() as u64);
                last[c] = v;
                logical += (counters[c].len() + 8) as u64;
            }
        }
        Workload::PutBatch => {
            for batch in &batches {
                let t = Instant::now();
                kv.put_many(batch)?;
                lat.push(t.elapsed().as_nanos() as u64);
                logical += batch
                    .iter()
                    .map(|(k, v)| (k.len() + v.len()) as u64)
                    .sum::<u64>();
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if a.workload == Workload::Increment {
        let total: u64 = last.iter().sum();
        ensure!(total == n as u64, "counters add up to {total}, not {n}");
    }
    let appended = kv.appended_bytes().map_or(0, |b| b - appended0);
    let disk_open = dir_bytes(&a.dir)?;
    kv.close()?;
    let disk_writes = write_bytes()? - writes0;
    let disk_closed = dir_bytes(&a.dir)?;
    let peak = proc_field("/proc/self/status", "VmHWM")?;
    lat.sort_unstable();
    Ok(Sample {
        ops: if a.workload == Workload::PutBatch {
            n as u64
        } else {
            lat.len() as u64
        },
        secs,
        p50_ns: percentile(&lat, 0.50),
        p99_ns: percentile(&lat, 0.99),
        disk_writes,
        logical,
        appended,
        disk_open,
        disk_closed,
        rss_kib: peak.saturating_sub(rss_before),
    })
}

struct Options {
    quick: bool,
    n: usize,
    /// None: chosen from the measured fsync time (see `auto_n_sync`).
    n_sync: Option<usize>,
    value_size: usize,
    reps: usize,
    seed: u64,
    dir: Option<PathBuf>,
    sizes: bool,
}

fn parse_options(args: &[String]) -> Result<Options> {
    let mut o = Options {
        quick: false,
        n: 100_000,
        n_sync: None,
        value_size: 100,
        reps: 5,
        seed: 42,
        dir: None,
        sizes: true,
    };
    let (mut n, mut n_sync, mut reps) = (None, None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .cloned()
                .with_context(|| format!("{name} needs a value"))
        };
        let num = |s: String, name: &str| -> Result<usize> {
            s.replace('_', "")
                .parse()
                .with_context(|| format!("{name} {s}: not a number"))
        };
        match arg.as_str() {
            "--quick" => o.quick = true,
            "--n" => n = Some(num(value("--n")?, "--n")?),
            "--n-sync" => n_sync = Some(num(value("--n-sync")?, "--n-sync")?),
            "--value-size" => o.value_size = num(value("--value-size")?, "--value-size")?,
            "--reps" => reps = Some(num(value("--reps")?, "--reps")?),
            "--seed" => o.seed = num(value("--seed")?, "--seed")? as u64,
            "--dir" => o.dir = Some(PathBuf::from(value("--dir")?)),
            "--no-sizes" => o.sizes = false,
            "-h" | "--help" => {
                println!(
                    "kv-vs-sqlite [--quick] [--n N] [--n-sync N] [--value-size B] [--reps R] \
                     [--seed S] [--dir DIR] [--no-sizes]"
                );
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?} (try --help)"),
        }
    }
    if o.quick {
        o.n = 2_000;
        o.n_sync = Some(100);
        o.reps = 1;
        o.sizes = false;
    }
    o.n = n.unwrap_or(o.n);
    o.n_sync = n_sync.or(o.n_sync);
    o.reps = reps.unwrap_or(o.reps);
    ensure!(
        o.n >= 1 && o.n_sync != Some(0),
        "--n and --n-sync must be at least 1"
    );
    ensure!(o.reps >= 1, "--reps must be at least 1");
    ensure!(
        (1..=1 << 20).contains(&o.value_size),
        "--value-size must be between 1 and 1048576"
    );
    Ok(o)
}

fn child_main(args: &[String]) -> Result<()> {
    let [engine, mode, workload, n, value_size, seed, dir] = args else {
        bail!("usage: --child ENGINE MODE WORKLOAD N VALUE_SIZE SEED DIR");
    };
    let a = ChildArgs {
        engine: parse_engine(engine)?,
        mode: parse_mode(mode)?,
        workload: parse_workload(workload)?,
        n: n.parse().context("child N")?,
        value_size: value_size.parse().context("child VALUE_SIZE")?,
        seed: seed.parse().context("child SEED")?,
        dir: PathBuf::from(dir),
    };
    let s = run_child(&a).with_context(|| {
        format!(
            "{} {} {}",
            a.engine.name(),
            a.mode.name(),
            a.workload.name()
        )
    })?;
    println!("{}", s.to_line());
    Ok(())
}

fn spawn_child(
    exe: &Path,
    engine: Engine,
    mode: Mode,
    workload: Workload,
    n: usize,
    o: &Options,
    dir: &Path,
) -> Result<Sample> {
    let out = Command::new(exe)
        .arg("--child")
        .args([engine.name(), mode.name(), workload.name()])
        .arg(n.to_string())
        .arg(o.value_size.to_string())
        .arg(o.seed.to_string())
        .arg(dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "{} {} {} failed ({}): {stdout}",
        engine.name(),
        mode.name(),
        workload.name(),
        out.status
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("RESULT "))
        .context("child printed no RESULT line")?;
    Sample::from_line(line)
}

/// Median of each figure separately.
fn median_sample(v: &[Sample]) -> Sample {
    fn med<T: Copy + PartialOrd>(mut xs: Vec<T>) -> T {
        xs.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        xs[xs.len() / 2]
    }
    let rate = med(v.iter().map(Sample::ops_per_sec).collect());
    let ops = v[0].ops;
    Sample {
        ops,
        secs: ops as f64 / rate,
        p50_ns: med(v.iter().map(|s| s.p50_ns).collect()),
        p99_ns: med(v.iter().map(|s| s.p99_ns).collect()),
        disk_writes: med(v.iter().map(|s| s.disk_writes).collect()),
        logical: v[0].logical,
        appended: med(v.iter().map(|s| s.appended).collect()),
        disk_open: med(v.iter().map(|s| s.disk_open).collect()),
        disk_closed: med(v.iter().map(|s| s.disk_closed).collect()),
        rss_kib: med(v.iter().map(|s| s.rss_kib).collect()),
    }
}

fn fmt_rate(r: f64) -> String {
    if r >= 1e6 {
        format!("{:.2} M", r / 1e6)
    } else if r >= 1e3 {
        format!("{:.1} k", r / 1e3)
    } else {
        format!("{r:.0}")
    }
}

fn fmt_ns(ns: u64) -> String {
    let us = ns as f64 / 1e3;
    if us >= 1000.0 {
        format!("{:.2} ms", us / 1e3)
    } else if us >= 10.0 {
        format!("{us:.0} µs")
    } else {
        format!("{us:.1} µs")
    }
}

fn fmt_bytes(b: u64) -> String {
    let b = b as f64;
    if b >= 1e6 {
        format!("{:.1} MB", b / 1e6)
    } else if b >= 1e3 {
        format!("{:.0} kB", b / 1e3)
    } else {
        format!("{b:.0} B")
    }
}

fn fmt_amp(a: Option<f64>) -> String {
    a.map_or_else(|| "—".into(), |a| format!("{a:.2}"))
}

fn fmt_kib(k: u64) -> String {
    format!("{:.1} MB", k as f64 * 1024.0 / 1e6)
}

/// The filesystem type and device holding `path`, from /proc/self/mounts.
fn filesystem_of(path: &Path) -> String {
    let Ok(path) = path.canonicalize() else {
        return "?".into();
    };
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return "?".into();
    };
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && path.starts_with(f[1])).then(|| (f[1].len(), f[2], f[0]))
        })
        .max_by_key(|m| m.0)
        .map_or_else(|| "?".into(), |(_, fs, dev)| format!("{fs} on {dev}"))
}

/// Median time of a small append plus fdatasync in `dir`: what one
/// durable write costs on this disk before either store adds anything.
fn fsync_probe(dir: &Path) -> Result<Duration> {
    let path = dir.join("fsync-probe");
    let mut f =
        std::fs::File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let mut times = Vec::new();
    for _ in 0..50 {
        let t = Instant::now();
        f.write_all(&[0x5A; 128])
            .with_context(|| format!("writing {}", path.display()))?;
        f.sync_data()
            .with_context(|| format!("fdatasync {}", path.display()))?;
        times.push(t.elapsed());
    }
    drop(f);
    std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    times.sort_unstable();
    Ok(times[times.len() / 2])
}

/// N for the fsync-every-write mode: about 8 N fsyncs per repetition (two
/// stores; N puts, 2N overwrites, N increments), kept to roughly 45 s in
/// all, between 200 and 2,000 keys, a multiple of the batch size. The cap
/// keeps the run short when the disk's fsync time swings upwards after the
/// probe (on a shared VM it can go from 0.1 ms to 4 ms and back).
fn auto_n_sync(fsync: Duration, reps: usize) -> usize {
    let budget = 45.0 / (8.0 * reps as f64 * fsync.as_secs_f64().max(1e-6));
    let n = (budget as usize).clamp(200, 2_000);
    n / BATCH * BATCH
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

struct Sizes {
    base: u64,
    twig: u64,
    sqlite: u64,
}

/// Builds the three size probes in release (fat LTO, stripped: the
/// workspace's release profile) into the target dir this binary lives in,
/// and reads their sizes.
fn binary_sizes(exe: &Path) -> Result<Sizes> {
    let bins = ["kv-size-base", "kv-size-twig", "kv-size-sqlite"];
    let target = exe
        .parent()
        .and_then(Path::parent)
        .context("cannot tell the target dir from this binary's path")?;
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("building the size probes (release) ...");
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--quiet", "--release", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target);
    for b in bins {
        cmd.args(["--bin", b]);
    }
    let status = cmd
        .status()
        .with_context(|| format!("running {}", Path::new(&cargo).display()))?;
    ensure!(status.success(), "building the size probes failed");
    let size = |b: &str| -> Result<u64> {
        let p = target.join("release").join(b);
        Ok(std::fs::metadata(&p)
            .with_context(|| format!("stat {}", p.display()))?
            .len())
    };
    Ok(Sizes {
        base: size(bins[0])?,
        twig: size(bins[1])?,
        sqlite: size(bins[2])?,
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child_main(&args[1..]);
    }
    let o = parse_options(&args)?;
    let exe = std::env::current_exe().context("locating this binary")?;
    // `--dir` picks the file system under test; the run's own directory
    // inside it is removed when it drops, at the end of main.
    let base_dir = match &o.dir {
        Some(d) => tempfile::Builder::new()
            .prefix("kv-vs-sqlite-")
            .tempdir_in(d)
            .with_context(|| format!("creating a directory in {}", d.display()))?,
        None => tempfile::Builder::new()
            .prefix("twig-kv-vs-sqlite-")
            .tempdir()
            .context("creating a temp dir")?,
    };
    let base = base_dir.path();
    let fs = filesystem_of(base);
    let started = Instant::now();
    let fsync = fsync_probe(base)?;
    let n_sync = o.n_sync.unwrap_or_else(|| auto_n_sync(fsync, o.reps));
    println!("# twig-keyvalue vs SQLite (WAL)\n");
    println!("dir: {} ({fs})", base.display());
    println!(
        "fsync probe: 128-byte append + fdatasync, median of 50: {}; load average at start: {}",
        fmt_ns(fsync.as_nanos() as u64),
        loadavg()
    );
    println!(
        "keys {KEY_BYTES} B, values {} B, seed {}, median of {} repetition(s); \
         N = {} (batched fsync), {n_sync} (fsync every write{}){}",
        o.value_size,
        o.seed,
        o.reps,
        o.n,
        if o.n_sync.is_some() {
            ""
        } else {
            ", chosen from the fsync probe"
        },
        if o.quick { "; --quick" } else { "" }
    );

    let modes = [(Mode::Sync, n_sync), (Mode::Batched, o.n)];
    let mut results: Vec<(Mode, usize, Workload, [Sample; 2])> = Vec::new();
    for &(mode, n) in &modes {
        for w in WORKLOADS {
            let mut samples: [Vec<Sample>; 2] = [Vec::new(), Vec::new()];
            for rep in 0..o.reps {
                // Alternate which store goes first, to spread drift.
                let order = if rep % 2 == 0 { [0, 1] } else { [1, 0] };
                for e in order {
                    let engine = ENGINES[e];
                    let dir = base.join(format!(
                        "{}-{}-{}-{rep}",
                        engine.name(),
                        mode.name(),
                        w.name()
                    ));
                    let s = spawn_child(&exe, engine, mode, w, n, &o, &dir)?;
                    std::fs::remove_dir_all(&dir)
                        .with_context(|| format!("removing {}", dir.display()))?;
                    samples[e].push(s);
                }
            }
            let twig = median_sample(&samples[0]);
            let sqlite = median_sample(&samples[1]);
            eprintln!(
                "  {:<8} {:<15} twig {:>9} ops/s   sqlite {:>9} ops/s",
                mode.name(),
                w.name(),
                fmt_rate(twig.ops_per_sec()),
                fmt_rate(sqlite.ops_per_sec())
            );
            results.push((mode, n, w, [twig, sqlite]));
        }
    }
    let bench_secs = started.elapsed().as_secs_f64();
    let fsync_end = fsync_probe(base)?;
    let load_end = loadavg();
    drop(base_dir);

    // Readable table.
    for &(mode, n) in &modes {
        println!("\n## {} (N = {n} keys)\n", mode.describe());
        println!(
            "{:<15} {:<6} {:>7} {:>10} {:>10} {:>10} {:>7} {:>9} {:>9} {:>9} {:>8}",
            "workload",
            "store",
            "ops",
            "ops/s",
            "p50",
            "p99",
            "WA",
            "twig WA",
            "disk open",
            "disk end",
            "RSS Δ"
        );
        for (_, _, w, pair) in results.iter().filter(|r| r.0 == mode) {
            for (e, s) in ENGINES.iter().zip(pair) {
                println!(
                    "{:<15} {:<6} {:>7} {:>10} {:>10} {:>10} {:>7} {:>9} {:>9} {:>9} {:>8}",
                    w.name(),
                    e.name(),
                    s.ops,
                    fmt_rate(s.ops_per_sec()),
                    fmt_ns(s.p50_ns),
                    fmt_ns(s.p99_ns),
                    fmt_amp(s.write_amp()),
                    fmt_amp(s.app_amp()),
                    fmt_bytes(s.disk_open),
                    fmt_bytes(s.disk_closed),
                    fmt_kib(s.rss_kib)
                );
            }
        }
    }
    println!(
        "\nWA: kernel write_bytes (page-granular, journal excluded) over key+value bytes, \
         final flush/close included. twig WA: bytes twig appended (records + compaction) \
         over key+value bytes. put-batch: ops are keys, latency is per batch of {BATCH}. \
         RSS Δ: peak RSS of the child process minus its RSS before the store was opened \
         (prefill included)."
    );

    let sizes = if o.sizes {
        match binary_sizes(&exe) {
            Ok(s) => Some(s),
            Err(e) => {
                eprintln!("binary sizes skipped: {e:#}");
                None
            }
        }
    } else {
        None
    };
    if let Some(s) = &sizes {
        println!("\n## Binary size (release: opt-level s, fat LTO, panic=abort, stripped)\n");
        println!("kv-size-base   (plain file I/O)  {:>10} bytes", s.base);
        println!(
            "kv-size-twig   (twig-keyvalue)   {:>10} bytes  (+{} KiB)",
            s.twig,
            s.twig.saturating_sub(s.base) / 1024
        );
        println!(
            "kv-size-sqlite (rusqlite bundled) {:>9} bytes  (+{} KiB)",
            s.sqlite,
            s.sqlite.saturating_sub(s.base) / 1024
        );
    }

    // Markdown for BENCHMARKS.md.
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| fsync | workload | ops | ops/s twig | ops/s SQLite | p50 / p99 twig | p50 / p99 SQLite \
         | write amp. twig / SQLite | disk at end twig / SQLite | peak RSS Δ twig / SQLite |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|---|");
    for (mode, _, w, [t, s]) in &results {
        let _ = writeln!(
            md,
            "| {} | {} | {} | **{}** | **{}** | {} / {} | {} / {} | {} / {} | {} / {} | {} / {} |",
            mode.name(),
            w.name(),
            t.ops,
            fmt_rate(t.ops_per_sec()),
            fmt_rate(s.ops_per_sec()),
            fmt_ns(t.p50_ns),
            fmt_ns(t.p99_ns),
            fmt_ns(s.p50_ns),
            fmt_ns(s.p99_ns),
            if w.writes() {
                fmt_amp(t.write_amp())
            } else {
                "—".into()
            },
            if w.writes() {
                fmt_amp(s.write_amp())
            } else {
                "—".into()
            },
            fmt_bytes(t.disk_closed),
            fmt_bytes(s.disk_closed),
            fmt_kib(t.rss_kib),
            fmt_kib(s.rss_kib)
        );
    }
    if let Some(s) = &sizes {
        let _ = writeln!(
            md,
            "\n| stripped binary | bytes | cost over plain file I/O |\n|---|---|---|\n\
             | put+get with plain file I/O (`kv-size-base`) | {} | — |\n\
             | put+get with twig-keyvalue (`kv-size-twig`) | {} | +{} KiB |\n\
             | put+get with rusqlite, bundled SQLite (`kv-size-sqlite`) | {} | +{} KiB |",
            s.base,
            s.twig,
            s.twig.saturating_sub(s.base) / 1024,
            s.sqlite,
            s.sqlite.saturating_sub(s.base) / 1024
        );
    }
    println!("\n## Markdown\n\n{md}");
    println!(
        "benchmark time (without the size probes): {bench_secs:.1} s; at the end: fsync probe {}, \
         load average {load_end}",
        fmt_ns(fsync_end.as_nanos() as u64)
    );
    Ok(())
}
