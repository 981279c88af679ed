//! The sensor configuration: what a board profile's `[[sensors]]` tables
//! deserialize into, and the checks [`crate::Sensors::new`] runs on it.
//!
//! Everything that can be checked without hardware is checked up front, so
//! a typo fails `twig validate --board` rather than the first read hours
//! later. Hardware paths are deliberately *not* required to exist: a USB
//! sensor may be plugged in after boot, and hwmon/IIO numbering is only
//! known at read time.
//!
//! ```toml
//! [[sensors]]
//! name = "cpu-temp"
//! interval_ms = 5000
//! source.hwmon = { chip = "coretemp", input = "temp1" }
//! ```

use std::fmt;
use std::path::{Component, Path, PathBuf};

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::error::ConfigError;

/// Sampling faster than this is refused: sysfs reads go through drivers
/// that may talk I2C at 100 kHz, and a 64 MB board has better things to do.
pub const MIN_INTERVAL_MS: u64 = 10;

/// Longest sensor name; names end up in message subjects and log lines.
pub const MAX_NAME_LEN: usize = 64;

/// Everything [`crate::Sensors`] needs: the sensors and where the kernel's
/// file systems are mounted.
///
/// Deserializes from a table with `sensors` (the list), `sysfs_root` and
/// `dev_root`; a host that keeps `[[sensors]]` at the top of its own file
/// deserializes a `Vec<SensorConfig>` and uses [`SensorsConfig::new`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorsConfig {
    /// The sensors, in the order [`crate::Sensors::list`] reports them.
    #[serde(default)]
    pub sensors: Vec<SensorConfig>,
    /// Where sysfs is mounted: `/sys` on a device, a temporary tree laid
    /// out like it in tests.
    #[serde(default = "default_sysfs_root")]
    pub sysfs_root: PathBuf,
    /// Where device nodes live (`gpiochipN`): `/dev` on a device.
    #[serde(default = "default_dev_root")]
    pub dev_root: PathBuf,
    /// Directory that relative CSV paths are resolved against (the board
    /// profile's directory, typically); unset means the working directory.
    #[serde(default)]
    pub base_dir: Option<PathBuf>,
}

fn default_sysfs_root() -> PathBuf {
    PathBuf::from("/sys")
}

fn default_dev_root() -> PathBuf {
    PathBuf::from("/dev")
}

impl Default for SensorsConfig {
    fn default() -> Self {
        SensorsConfig::new(Vec::new())
    }
}

impl SensorsConfig {
    /// These sensors, with `/sys` and `/dev` as roots.
    pub fn new(sensors: Vec<SensorConfig>) -> Self {
        SensorsConfig {
            sensors,
            sysfs_root: default_sysfs_root(),
            dev_root: default_dev_root(),
            base_dir: None,
        }
    }

    /// Reads sysfs files under `root` instead of `/sys`.
    pub fn sysfs_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.sysfs_root = root.into();
        self
    }

    /// Opens GPIO chips under `root` instead of `/dev`.
    pub fn dev_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.dev_root = root.into();
        self
    }

    /// Resolves relative CSV paths against `dir`.
    pub fn base_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.base_dir = Some(dir.into());
        self
    }

    /// Adds one sensor.
    pub fn sensor(mut self, sensor: SensorConfig) -> Self {
        self.sensors.push(sensor);
        self
    }
}

/// One `[[sensors]]` table.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SensorConfig {
    /// Unique, `[a-z0-9_-]+`, at most 64 characters: it is the last token
    /// of the sensor's message subject, `twig.sensors.{name}`.
    pub name: String,
    /// Replaces the unit label the source implies (the value is unchanged).
    #[serde(default)]
    pub unit: Option<String>,
    /// Sample periodically at this interval (at least 10 ms); unset means
    /// read on demand only.
    #[serde(default)]
    pub interval_ms: Option<u64>,
    /// Where the value comes from.
    pub source: Source,
}

impl SensorConfig {
    /// A sensor with no unit override and no periodic sampling.
    pub fn new(name: impl Into<String>, source: Source) -> Self {
        SensorConfig {
            name: name.into(),
            unit: None,
            interval_ms: None,
            source,
        }
    }

    /// Overrides the unit label.
    pub fn unit(mut self, unit: impl Into<String>) -> Self {
        self.unit = Some(unit.into());
        self
    }

    /// Samples periodically every `ms` milliseconds.
    pub fn interval_ms(mut self, ms: u64) -> Self {
        self.interval_ms = Some(ms);
        self
    }
}

/// Where a sensor's value comes from. In TOML the kind is the key:
/// `source.hwmon = { ... }`, `source.sim.sine = { ... }`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Source {
    /// `{sysfs}/class/hwmon/hwmonN/{input}_input`, scaled per the kernel's
    /// hwmon sysfs ABI.
    Hwmon {
        /// The chip's `name` file content (`coretemp`, `k10temp`, `bme280`)
        /// or a fixed `hwmonN` (which may change across boots).
        chip: String,
        /// The input's file prefix: `temp1`, `in0`, `curr1`, `power1`,
        /// `energy1`, `humidity1`, `fan1`.
        input: String,
    },
    /// `{sysfs}/class/thermal/thermal_zoneN/temp`, in degrees Celsius.
    Thermal {
        /// The zone's `type` file content (`cpu-thermal`, `x86_pkg_temp`)
        /// or a fixed `thermal_zoneN`.
        zone: String,
    },
    /// `{sysfs}/bus/iio/devices/iio:deviceN/in_{channel}_raw`, with scale
    /// and offset applied as the IIO ABI says.
    Iio {
        /// The device's `name` file content (`ads1015`, `bme280`) or a
        /// fixed `iio:deviceN`.
        device: String,
        /// The channel as it appears in file names: `voltage0`, `temp`,
        /// `humidityrelative`, `accel_x`.
        channel: String,
    },
    /// One line of a GPIO chip, read through the character device as an
    /// input: 1.0 when active, 0.0 when not.
    Gpio {
        /// `gpiochipN`, or a path to the chip under the dev root
        /// (`/dev/gpiochip0` is taken as `gpiochip0` under it).
        chip: String,
        /// The line's offset on the chip.
        line: u32,
        /// The line is active (reads 1.0) when it is physically low.
        #[serde(default)]
        active_low: bool,
    },
    /// A simulated signal, for development boards and tests.
    Sim(Sim),
}

impl Source {
    /// The kind as reported in [`crate::SensorInfo::kind`].
    pub fn kind(&self) -> &'static str {
        match self {
            Source::Hwmon { .. } => "hwmon",
            Source::Thermal { .. } => "thermal",
            Source::Iio { .. } => "iio",
            Source::Gpio { .. } => "gpio",
            Source::Sim(_) => "sim",
        }
    }
}

/// Simulated signals. Each is a pure function of the clock or of the
/// sample index, so tests (and two boards) see the same values.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Sim {
    /// `offset + amplitude * sin(2π * (t mod period) / period)`, with `t`
    /// the clock's Unix time in milliseconds.
    Sine {
        amplitude: f64,
        period_ms: u64,
        #[serde(default)]
        offset: f64,
    },
    /// Starts at `start`; each later sample moves by up to `step` either
    /// way, clamped to `[min, max]`. The moves come from `seed` and the
    /// sample index only.
    RandomWalk {
        start: f64,
        step: f64,
        min: f64,
        max: f64,
        #[serde(default)]
        seed: u64,
    },
    /// Replays one column of a CSV file, one value per sample, in file
    /// order.
    Csv {
        /// The file; relative paths are resolved against
        /// [`SensorsConfig::base_dir`].
        path: PathBuf,
        /// A header name, or a 0-based field index.
        column: Column,
        /// Start again from the first value after the last; otherwise the
        /// sensor is unavailable once the file is used up.
        #[serde(default, rename = "loop")]
        repeat: bool,
    },
}

/// A CSV column, by header name or 0-based index. In TOML: `column =
/// "temp"` or `column = 1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Column {
    Name(String),
    Index(usize),
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Column::Name(n) => write!(f, "`{n}`"),
            Column::Index(i) => write!(f, "{i}"),
        }
    }
}

// Written by hand rather than `#[serde(untagged)]`, whose error for a bad
// value ("data did not match any variant") says nothing useful.
impl<'de> Deserialize<'de> for Column {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ColumnVisitor;
        impl Visitor<'_> for ColumnVisitor {
            type Value = Column;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a column name or a 0-based column index")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Column, E> {
                Ok(Column::Name(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Column, E> {
                usize::try_from(v)
                    .map(Column::Index)
                    .map_err(|_| E::custom("column index too large"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Column, E> {
                usize::try_from(v)
                    .map(Column::Index)
                    .map_err(|_| E::custom("a column index must not be negative"))
            }
        }
        d.deserialize_any(ColumnVisitor)
    }
}

/// Builds [`ConfigError`]s for the sensor at one position.
pub(crate) struct At<'a> {
    pub index: usize,
    pub name: &'a str,
}

impl At<'_> {
    pub fn err(&self, field: &str, message: impl Into<String>) -> ConfigError {
        ConfigError {
            index: self.index,
            name: self.name.to_string(),
            field: field.to_string(),
            message: message.into(),
        }
    }
}

/// Checks a sensor name: it becomes a subject token, so no dots, spaces or
/// wildcards.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!("longer than {MAX_NAME_LEN} characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
    {
        return Err(format!(
            "{:?} is not allowed: use a-z, 0-9, `_` and `-` (the name is part of a message subject)",
            c
        ));
    }
    Ok(())
}

/// Checks a unit label: short, printable.
pub(crate) fn check_unit(unit: &str) -> Result<(), String> {
    if unit.chars().count() > 16 {
        return Err("longer than 16 characters".into());
    }
    if unit.chars().any(char::is_control) {
        return Err("contains control characters".into());
    }
    Ok(())
}

/// Checks a device label to be matched against a sysfs `name` or `type`
/// file, or a directory name such as `hwmon3`: it must stay one path
/// component, so a config cannot make us read outside the class directory.
pub(crate) fn check_label(label: &str) -> Result<(), String> {
    if label.is_empty() {
        return Err("must not be empty".into());
    }
    if label.len() > 64 {
        return Err("longer than 64 characters".into());
    }
    if label == "." || label == ".." {
        return Err(format!("`{label}` is not a device name"));
    }
    if let Some(c) = label
        .chars()
        .find(|c| *c == '/' || c.is_whitespace() || c.is_control())
    {
        return Err(format!("{c:?} is not allowed in a device name"));
    }
    Ok(())
}

/// Checks an IIO channel (`voltage0`, `accel_x`, `voltage0-voltage1`): it
/// becomes part of a file name.
pub(crate) fn check_channel(channel: &str) -> Result<(), String> {
    if !channel.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err("must start with the channel type, e.g. `voltage0` or `temp`".into());
    }
    if channel.len() > 64 {
        return Err("longer than 64 characters".into());
    }
    if let Some(c) = channel
        .chars()
        .find(|c| !matches!(c, 'a'..='z' | '0'..='9' | '_' | '-'))
    {
        return Err(format!("{c:?} is not allowed in an IIO channel name"));
    }
    Ok(())
}

/// Where a GPIO chip's device node is: `gpiochip0` and `/dev/gpiochip0`
/// both mean `{dev_root}/gpiochip0`, so one profile works against a test
/// tree too. Paths may not climb out of the dev root.
pub(crate) fn gpio_chip_path(dev_root: &Path, chip: &str) -> Result<PathBuf, String> {
    if chip.is_empty() {
        return Err("must not be empty".into());
    }
    let rel = match chip.strip_prefix("/dev/") {
        Some(rest) => Path::new(rest),
        None if chip.starts_with('/') => {
            return Err(format!(
                "`{chip}` is outside /dev: give `gpiochipN` or a path under /dev"
            ))
        }
        None => Path::new(chip),
    };
    if rel.as_os_str().is_empty() || !rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!(
            "`{chip}` must name a device under /dev, without `.` or `..`"
        ));
    }
    Ok(dev_root.join(rel))
}

/// Checks that a float from the config is a number.
pub(crate) fn check_finite(v: f64) -> Result<(), String> {
    if v.is_finite() {
        Ok(())
    } else {
        Err(format!("{v} is not a finite number"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("cpu-temp_2").is_ok());
        assert!(check_name("").is_err());
        assert!(check_name("Cpu").is_err());
        assert!(check_name("a.b").is_err());
        assert!(check_name("a*").is_err());
        assert!(check_name(&"a".repeat(65)).is_err());
    }

    #[test]
    fn labels_stay_one_component() {
        assert!(check_label("coretemp").is_ok());
        assert!(check_label("cpu-thermal").is_ok());
        assert!(check_label("iio:device0").is_ok());
        assert!(check_label("..").is_err());
        assert!(check_label("a/b").is_err());
        assert!(check_label("a b").is_err());
        assert!(check_label("").is_err());
    }

    #[test]
    fn channels() {
        assert!(check_channel("voltage0").is_ok());
        assert!(check_channel("voltage0-voltage1").is_ok());
        assert!(check_channel("accel_x").is_ok());
        assert!(check_channel("0voltage").is_err());
        assert!(check_channel("volt/age").is_err());
    }

    #[test]
    fn gpio_paths_stay_under_dev_root() {
        let root = Path::new("/tmp/dev");
        assert_eq!(
            gpio_chip_path(root, "gpiochip0"),
            Ok(PathBuf::from("/tmp/dev/gpiochip0"))
        );
        assert_eq!(
            gpio_chip_path(root, "/dev/gpiochip1"),
            Ok(PathBuf::from("/tmp/dev/gpiochip1"))
        );
        assert_eq!(
            gpio_chip_path(root, "gpio/chip2"),
            Ok(PathBuf::from("/tmp/dev/gpio/chip2"))
        );
        assert!(gpio_chip_path(root, "/sys/x").is_err());
        assert!(gpio_chip_path(root, "../etc/passwd").is_err());
        assert!(gpio_chip_path(root, "/dev/").is_err());
        assert!(gpio_chip_path(root, "").is_err());
    }
}
