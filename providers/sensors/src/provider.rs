//! [`Sensors`]: the validated set of configured sensors, read on demand.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::config::{self, At, SensorConfig, SensorsConfig, Sim, Source};
use crate::error::{ConfigError, SensorError};
use crate::gpio;
use crate::sim::{self, Clock, CsvReplay, RandomWalk, SystemClock};
use crate::sysfs::{self, Hwmon, Iio, Locator, Thermal};

/// The prefix of every sensor's message subject.
pub const SUBJECT_PREFIX: &str = "twig.sensors.";

/// The message subject periodic readings of `sensor` are delivered on:
/// `twig.sensors.{name}`. Names are restricted to `[a-z0-9_-]`, so this is
/// always a valid subject whose last token is the sensor's name and a
/// subscriber can take `twig.sensors.*` for all of them.
pub fn subject(sensor: &str) -> String {
    format!("{SUBJECT_PREFIX}{sensor}")
}

/// A configured sensor, as [`Sensors::list`] describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SensorInfo {
    /// The configured name.
    pub name: String,
    /// Where values come from: `hwmon`, `thermal`, `iio`, `gpio` or `sim`.
    pub kind: String,
    /// The unit of its values (the config's `unit`, else the source's).
    pub unit: String,
}

/// One sample of one sensor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reading {
    /// The sensor's name.
    pub sensor: String,
    /// The value, in `unit`. Always finite.
    pub value: f64,
    /// The unit of `value`.
    pub unit: String,
    /// When it was read, in milliseconds since the Unix epoch, by the
    /// [`Clock`] the `Sensors` was built with.
    pub timestamp_ms: u64,
}

impl Reading {
    /// The message payload for periodic delivery:
    /// `{"sensor":"cpu-temp","value":45.5,"unit":"°C","timestamp_ms":1700000000000}`.
    pub fn to_json(&self) -> Vec<u8> {
        // Serializing four plain fields cannot fail; the fallback keeps
        // this infallible for callers without an unwrap.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// How one sensor produces its value; built once from its [`Source`].
#[derive(Debug)]
enum Driver {
    Hwmon(Hwmon),
    Thermal(Thermal),
    Iio(Iio),
    Gpio {
        chip: std::path::PathBuf,
        line: u32,
        active_low: bool,
    },
    Sine {
        amplitude: f64,
        period_ms: u64,
        offset: f64,
    },
    RandomWalk(RandomWalk),
    Csv(CsvReplay),
}

#[derive(Debug)]
struct Entry {
    name: String,
    kind: &'static str,
    unit: String,
    interval: Option<Duration>,
    driver: Driver,
}

/// The sensors of one host. Built once from the board profile, then shared
/// (`Arc<Sensors>`) by the component binding and the periodic sampler: it
/// is `Send + Sync`, and the little state it keeps (device directory
/// caches, simulation counters) sits behind its own locks or atomics.
pub struct Sensors {
    entries: Vec<Entry>,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Sensors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sensors")
            .field("entries", &self.entries)
            .finish_non_exhaustive()
    }
}

impl Sensors {
    /// Validates `config` and builds the sensors, reading time from the
    /// system clock.
    pub fn new(config: SensorsConfig) -> Result<Sensors, ConfigError> {
        Sensors::with_clock(config, Arc::new(SystemClock))
    }

    /// Like [`Sensors::new`] with another clock, for tests and replays.
    ///
    /// Fails on the first sensor that is wrong: a bad or duplicate name, an
    /// interval under 10 ms, a malformed source, or a CSV file that cannot
    /// be read or parsed. Hardware need not be present.
    pub fn with_clock(
        config: SensorsConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Sensors, ConfigError> {
        let mut entries: Vec<Entry> = Vec::with_capacity(config.sensors.len());
        for (index, sensor) in config.sensors.iter().enumerate() {
            let at = At {
                index,
                name: &sensor.name,
            };
            config::check_name(&sensor.name).map_err(|m| at.err("name", m))?;
            if let Some(first) = entries.iter().position(|e| e.name == sensor.name) {
                return Err(at.err("name", format!("duplicate of sensors[{first}]")));
            }
            entries.push(build(&config, sensor, &at)?);
        }
        Ok(Sensors { entries, clock })
    }

    /// Every sensor, in configuration order.
    pub fn list(&self) -> Vec<SensorInfo> {
        self.entries
            .iter()
            .map(|e| SensorInfo {
                name: e.name.clone(),
                kind: e.kind.to_string(),
                unit: e.unit.clone(),
            })
            .collect()
    }

    /// Takes one reading of `name` now. Blocks for as long as the driver
    /// takes to answer a sysfs read or GPIO ioctl (usually microseconds;
    /// an I2C sensor can take milliseconds).
    pub fn read(&self, name: &str) -> Result<Reading, SensorError> {
        let entry = self
            .entries
            .iter()
            .find(|e| e.name == name)
            .ok_or_else(|| SensorError::NotFound {
                sensor: name.to_string(),
            })?;
        let now = self.clock.now_ms();
        let value = match &entry.driver {
            Driver::Hwmon(h) => h.read(name)?,
            Driver::Thermal(t) => t.read(name)?,
            Driver::Iio(i) => i.read(name)?,
            Driver::Gpio {
                chip,
                line,
                active_low,
            } => {
                if gpio::read_line(name, chip, *line, *active_low)? {
                    1.0
                } else {
                    0.0
                }
            }
            Driver::Sine {
                amplitude,
                period_ms,
                offset,
            } => sim::sine(*amplitude, *period_ms, *offset, now),
            Driver::RandomWalk(w) => w.next(),
            Driver::Csv(c) => c.next(name)?,
        };
        Ok(Reading {
            sensor: entry.name.clone(),
            value,
            unit: entry.unit.clone(),
            timestamp_ms: now,
        })
    }

    /// The sensors to sample periodically, with their intervals, in
    /// configuration order. The host delivers each reading as
    /// [`Reading::to_json`] on [`subject`]`(name)`.
    pub fn sampling(&self) -> Vec<(String, Duration)> {
        self.entries
            .iter()
            .filter_map(|e| e.interval.map(|i| (e.name.clone(), i)))
            .collect()
    }
}

/// Checks one sensor's config and builds its entry.
fn build(config: &SensorsConfig, sensor: &SensorConfig, at: &At<'_>) -> Result<Entry, ConfigError> {
    if let Some(unit) = &sensor.unit {
        config::check_unit(unit).map_err(|m| at.err("unit", m))?;
    }
    let interval = match sensor.interval_ms {
        Some(ms) if ms < config::MIN_INTERVAL_MS => {
            return Err(at.err(
                "interval_ms",
                format!(
                    "{ms} is below the minimum of {} ms",
                    config::MIN_INTERVAL_MS
                ),
            ))
        }
        ms => ms.map(Duration::from_millis),
    };
    let sysfs = config.sysfs_root.as_path();
    let (driver, unit) = match &sensor.source {
        Source::Hwmon { chip, input } => {
            config::check_label(chip).map_err(|m| at.err("source.hwmon.chip", m))?;
            let kind = sysfs::hwmon_kind(input).map_err(|m| at.err("source.hwmon.input", m))?;
            let driver = Driver::Hwmon(Hwmon {
                chip: Locator::new(sysfs::HWMON, sysfs, chip),
                file: format!("{input}_input"),
                kind,
            });
            (driver, kind.unit)
        }
        Source::Thermal { zone } => {
            config::check_label(zone).map_err(|m| at.err("source.thermal.zone", m))?;
            let driver = Driver::Thermal(Thermal {
                zone: Locator::new(sysfs::THERMAL, sysfs, zone),
            });
            (driver, "°C")
        }
        Source::Iio { device, channel } => {
            config::check_label(device).map_err(|m| at.err("source.iio.device", m))?;
            config::check_channel(channel).map_err(|m| at.err("source.iio.channel", m))?;
            let unit = sysfs::iio_unit(sysfs::iio_type(channel));
            let driver = Driver::Iio(Iio {
                device: Locator::new(sysfs::IIO, sysfs, device),
                channel: channel.clone(),
            });
            (driver, unit)
        }
        Source::Gpio { .. } if !cfg!(feature = "gpio") => {
            return Err(at.err("source.gpio", gpio::NOT_BUILT));
        }
        Source::Gpio {
            chip,
            line,
            active_low,
        } => {
            let chip = config::gpio_chip_path(&config.dev_root, chip)
                .map_err(|m| at.err("source.gpio.chip", m))?;
            let driver = Driver::Gpio {
                chip,
                line: *line,
                active_low: *active_low,
            };
            (driver, "")
        }
        Source::Sim(sim) => (build_sim(config, sim, at)?, ""),
    };
    Ok(Entry {
        name: sensor.name.clone(),
        kind: sensor.source.kind(),
        unit: sensor.unit.clone().unwrap_or_else(|| unit.to_string()),
        interval,
        driver,
    })
}

fn build_sim(config: &SensorsConfig, sim: &Sim, at: &At<'_>) -> Result<Driver, ConfigError> {
    let finite = |field: &str, v: f64| config::check_finite(v).map_err(|m| at.err(field, m));
    match sim {
        Sim::Sine {
            amplitude,
            period_ms,
            offset,
        } => {
            finite("source.sim.sine.amplitude", *amplitude)?;
            finite("source.sim.sine.offset", *offset)?;
            // Values range over offset ± amplitude; each finite alone can
            // still sum past f64::MAX, and a reading must be finite.
            if !(offset.abs() + amplitude.abs()).is_finite() {
                return Err(at.err(
                    "source.sim.sine.amplitude",
                    "offset ± amplitude is out of the range of finite numbers",
                ));
            }
            if *period_ms == 0 {
                return Err(at.err("source.sim.sine.period_ms", "must be at least 1"));
            }
            Ok(Driver::Sine {
                amplitude: *amplitude,
                period_ms: *period_ms,
                offset: *offset,
            })
        }
        Sim::RandomWalk {
            start,
            step,
            min,
            max,
            seed,
        } => {
            finite("source.sim.random_walk.start", *start)?;
            finite("source.sim.random_walk.step", *step)?;
            finite("source.sim.random_walk.min", *min)?;
            finite("source.sim.random_walk.max", *max)?;
            if *step < 0.0 {
                return Err(at.err("source.sim.random_walk.step", "must not be negative"));
            }
            if min > max {
                return Err(at.err(
                    "source.sim.random_walk.max",
                    format!("{max} is below min ({min})"),
                ));
            }
            if !(*min..=*max).contains(start) {
                return Err(at.err(
                    "source.sim.random_walk.start",
                    format!("{start} is outside [{min}, {max}]"),
                ));
            }
            Ok(Driver::RandomWalk(RandomWalk::new(
                *start, *step, *min, *max, *seed,
            )))
        }
        Sim::Csv {
            path,
            column,
            repeat,
        } => {
            let path = match &config.base_dir {
                Some(base) if path.is_relative() => base.join(path),
                _ => path.clone(),
            };
            let values = sim::load_csv(&path, column)
                .map_err(|e| at.err(&format!("source.sim.csv.{}", e.field), e.message))?;
            Ok(Driver::Csv(CsvReplay::new(path, values, *repeat)))
        }
    }
}

// Keep the compiler honest about the promise in the docs.
const _: () = {
    const fn shared<T: Send + Sync>() {}
    shared::<Sensors>();
};
