//! Simulated sensors and the clock.
//!
//! Simulated values must be reproducible: a test asserts exact numbers, and
//! a demo on two boards should show the same curve. So each signal is a
//! pure function of something the caller controls: the sine of the
//! [`Clock`]'s time, the random walk of its seed and the sample index, the
//! CSV replay of the sample index. Only the sample counters are state, kept
//! in atomics or a mutex so that a shared `Sensors` stays `Sync`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Column;
use crate::error::SensorError;

/// Where readings get their time from: Unix milliseconds. The host uses
/// [`SystemClock`]; tests inject a [`ManualClock`] or a closure.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        // Before 1970 only on a board whose RTC lost its battery; report 0
        // rather than fail every read.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

impl<F: Fn() -> u64 + Send + Sync> Clock for F {
    fn now_ms(&self) -> u64 {
        self()
    }
}

/// A clock that only moves when told to, for tests.
#[derive(Debug, Default)]
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(now_ms: u64) -> Self {
        ManualClock(AtomicU64::new(now_ms))
    }

    pub fn set(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }

    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// `offset + amplitude * sin(2π * phase)`, where phase is the position of
/// `now_ms` in the current period. Taking the phase from absolute time (not
/// from startup) keeps it the same across restarts and boards.
pub(crate) fn sine(amplitude: f64, period_ms: u64, offset: f64, now_ms: u64) -> f64 {
    // The modulo in integers keeps full precision however large now_ms is.
    let phase = (now_ms % period_ms) as f64 / period_ms as f64;
    offset + amplitude * (std::f64::consts::TAU * phase).sin()
}

/// SplitMix64's output function: a fixed bijective mix of 64 bits. Used
/// as `mix(seed + n * γ)`, it gives the n-th number of the seed's stream
/// directly, so the walk's steps depend on (seed, n) and nothing else.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The move of sample `n` of a walk seeded with `seed`, in [-1, 1).
pub(crate) fn walk_step(seed: u64, n: u64) -> f64 {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;
    let bits = mix(seed.wrapping_add(n.wrapping_mul(GAMMA)));
    // The top 53 bits as a fraction in [0, 1), then stretched to [-1, 1).
    (bits >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

/// A bounded random walk. Sample 0 is `start`; sample n moves the previous
/// value by `step * walk_step(seed, n)` and clamps it to `[min, max]`.
#[derive(Debug)]
pub(crate) struct RandomWalk {
    pub step: f64,
    pub min: f64,
    pub max: f64,
    pub seed: u64,
    /// (index of the next sample, last value). The walk needs the previous
    /// value, so this is a mutex rather than an atomic counter.
    state: Mutex<(u64, f64)>,
}

impl RandomWalk {
    pub fn new(start: f64, step: f64, min: f64, max: f64, seed: u64) -> Self {
        RandomWalk {
            step,
            min,
            max,
            seed,
            state: Mutex::new((0, start)),
        }
    }

    pub fn next(&self) -> f64 {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (n, last) = *state;
        let value = if n == 0 {
            last
        } else {
            (last + self.step * walk_step(self.seed, n)).clamp(self.min, self.max)
        };
        *state = (n.wrapping_add(1), value);
        value
    }
}

/// The largest CSV file we load. The values are held in memory (8 bytes
/// each), and boards have as little as 64 MB.
pub const MAX_CSV_BYTES: u64 = 1 << 20;

/// A CSV column loaded up front, replayed one value per sample.
#[derive(Debug)]
pub(crate) struct CsvReplay {
    pub path: PathBuf,
    pub values: Vec<f64>,
    pub repeat: bool,
    /// Index of the next sample.
    next: AtomicU64,
}

impl CsvReplay {
    pub fn new(path: PathBuf, values: Vec<f64>, repeat: bool) -> Self {
        CsvReplay {
            path,
            values,
            repeat,
            next: AtomicU64::new(0),
        }
    }

    pub fn next(&self, sensor: &str) -> Result<f64, SensorError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let len = self.values.len() as u64;
        let i = if self.repeat { n % len.max(1) } else { n };
        usize::try_from(i)
            .ok()
            .and_then(|i| self.values.get(i).copied())
            .ok_or_else(|| {
                SensorError::unavailable(
                    sensor,
                    &self.path,
                    format!("replay finished after {len} values (set `loop = true` to repeat)"),
                )
            })
    }
}

/// A CSV problem, with the field of the config it belongs to
/// (`path` or `column`).
#[derive(Debug, PartialEq)]
pub(crate) struct CsvError {
    pub field: &'static str,
    pub message: String,
}

fn csv_err(field: &'static str, message: String) -> CsvError {
    CsvError { field, message }
}

/// Loads one column of a CSV file.
///
/// The format is plain: one record per line, fields separated by commas,
/// surrounding spaces and double quotes trimmed (no commas inside quotes).
/// Empty lines and lines starting with `#` are skipped. The first record is
/// a header when `column` is a name, or, with an index, when that field of
/// it is not a number. Every other record must have a number in the
/// column; the first that does not is reported with its line number.
pub(crate) fn load_csv(path: &Path, column: &Column) -> Result<Vec<f64>, CsvError> {
    let shown = path.display();
    let file = std::fs::File::open(path)
        .map_err(|e| csv_err("path", format!("cannot open {shown}: {e}")))?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(file, MAX_CSV_BYTES + 1),
        &mut bytes,
    )
    .map_err(|e| csv_err("path", format!("cannot read {shown}: {e}")))?;
    if bytes.len() as u64 > MAX_CSV_BYTES {
        return Err(csv_err(
            "path",
            format!("{shown} is larger than {MAX_CSV_BYTES} bytes"),
        ));
    }

    let mut index = match column {
        Column::Index(i) => Some(*i),
        Column::Name(_) => None,
    };
    let mut values = Vec::new();
    let mut seen_first = false;
    for (n, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let line_no = n + 1;
        let line = std::str::from_utf8(line)
            .map_err(|_| csv_err("path", format!("{shown} line {line_no}: not valid UTF-8")))?;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let fields: Vec<&str> = line
            .split(',')
            .map(|f| f.trim().trim_matches('"'))
            .collect();
        let first = !seen_first;
        seen_first = true;

        let Some(i) = index else {
            // Named column: this first record is the header.
            let Column::Name(name) = column else {
                continue;
            };
            let found = fields.iter().position(|f| f == name).ok_or_else(|| {
                csv_err(
                    "column",
                    format!(
                        "{shown} line {line_no}: no column `{name}` in the header ({})",
                        fields.join(", ")
                    ),
                )
            })?;
            index = Some(found);
            continue;
        };
        let Some(field) = fields.get(i) else {
            // On the first record the index is more likely wrong than the
            // file.
            return Err(csv_err(
                if first { "column" } else { "path" },
                format!(
                    "{shown} line {line_no}: has {} fields, no column {column}",
                    fields.len()
                ),
            ));
        };
        match crate::sysfs::parse_number(field.as_bytes()) {
            Some(v) => values.push(v),
            // An index-addressed file may still have a header line.
            None if first => {}
            None => {
                return Err(csv_err(
                    "path",
                    format!(
                        "{shown} line {line_no}: column {column} is \"{}\", not a number",
                        crate::error::excerpt(field.as_bytes())
                    ),
                ))
            }
        }
    }
    if values.is_empty() {
        return Err(csv_err("path", format!("{shown} has no data rows")));
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sine_is_a_function_of_time() {
        assert_eq!(sine(2.0, 1000, 20.0, 0), 20.0);
        assert_eq!(sine(2.0, 1000, 20.0, 250), 22.0);
        assert_eq!(sine(2.0, 1000, 20.0, 1_700_000_000_250), 22.0);
        assert!((sine(2.0, 1000, 20.0, 500) - 20.0).abs() < 1e-12);
        assert_eq!(sine(2.0, 1000, 20.0, 750), 18.0);
    }

    #[test]
    fn walk_steps_are_fixed_by_seed_and_index() {
        assert_eq!(walk_step(7, 3), walk_step(7, 3));
        assert_ne!(walk_step(7, 3), walk_step(8, 3));
        assert_ne!(walk_step(7, 3), walk_step(7, 4));
        for n in 0..10_000 {
            let s = walk_step(42, n);
            assert!((-1.0..1.0).contains(&s), "{s}");
        }
        // Pinned so that a change to the generator, which would change
        // every simulated board's data, is a deliberate one.
        assert_eq!(mix(0), 0);
        assert_eq!(mix(0x9e37_79b9_7f4a_7c15), 0xe220_a839_7b1d_cdaf);
    }

    #[test]
    fn walk_stays_in_bounds() {
        let w = RandomWalk::new(5.0, 3.0, 0.0, 10.0, 1);
        assert_eq!(w.next(), 5.0);
        let mut last = 5.0;
        for _ in 0..1000 {
            let v = w.next();
            assert!((0.0..=10.0).contains(&v));
            assert!((v - last).abs() <= 3.0);
            last = v;
        }
    }
}
