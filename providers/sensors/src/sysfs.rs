//! Sensors the kernel exposes as sysfs files: hwmon, thermal zones and IIO.
//!
//! Each of these is a directory per device under a class or bus directory
//! (`class/hwmon/hwmon3`), whose number the kernel hands out in probe
//! order: it can change across boots, or when a USB sensor is replugged.
//! So a sensor names its device by the label the driver gives it (the
//! `name` or `type` file) and [`Locator`] finds the directory at read time,
//! caches it, and checks on every read that the cached directory still
//! carries that label before trusting it.
//!
//! All file reads go through [`read_bounded`]: sysfs attributes are a few
//! bytes, and a misbehaving driver (or a wrong path pointing at a big file)
//! must not make us allocate more than [`MAX_READ`].

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::SensorError;

/// The most we read of any sysfs file. The kernel caps attribute files at
/// one page, so anything longer is not a sysfs attribute.
pub const MAX_READ: usize = 4096;

/// Reads at most [`MAX_READ`] + 1 bytes, so the caller can tell "too long"
/// from "exactly at the limit".
pub(crate) fn read_bounded(path: &Path) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(32);
    File::open(path)?
        .take(MAX_READ as u64 + 1)
        .read_to_end(&mut buf)?;
    Ok(buf)
}

/// Parses a sysfs number: decimal, optionally signed or fractional (IIO
/// scales are fractional), surrounded by whitespace. `inf`, `nan`, empty
/// or oversized content is rejected.
pub(crate) fn parse_number(content: &[u8]) -> Option<f64> {
    if content.len() > MAX_READ {
        return None;
    }
    let text = std::str::from_utf8(content).ok()?.trim();
    // f64's parser also takes "inf" and "NaN"; require a digit first.
    if !text
        .trim_start_matches(['+', '-'])
        .starts_with(|c: char| c.is_ascii_digit() || c == '.')
    {
        return None;
    }
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Reads and parses one numeric sysfs file, mapping failures to the
/// sensor's errors: an I/O failure (the file vanished, the driver said
/// EIO/ENODATA) is `Unavailable`, bad content is `Invalid`.
pub(crate) fn read_number(sensor: &str, path: &Path) -> Result<f64, SensorError> {
    let content = read_bounded(path).map_err(|e| io_error(sensor, path, &e))?;
    parse_number(&content).ok_or_else(|| SensorError::invalid(sensor, path, &content))
}

/// Like [`read_number`], but a missing file is `Ok(None)`: for optional
/// attributes such as IIO scale and offset.
fn read_optional(sensor: &str, path: &Path) -> Result<Option<f64>, SensorError> {
    match read_bounded(path) {
        Ok(content) => parse_number(&content)
            .map(Some)
            .ok_or_else(|| SensorError::invalid(sensor, path, &content)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_error(sensor, path, &e)),
    }
}

fn io_error(sensor: &str, path: &Path, e: &io::Error) -> SensorError {
    SensorError::unavailable(sensor, path, e.to_string())
}

/// The content of a label file (`name`, `type`) without its newline, or
/// None if it cannot be read.
fn read_label(path: &Path) -> Option<String> {
    let content = read_bounded(path).ok()?;
    let text = std::str::from_utf8(&content).ok()?;
    Some(text.trim_end_matches(['\n', '\r', ' ', '\t']).to_string())
}

/// One kind of sysfs device directory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Class {
    /// Under the sysfs root: `class/hwmon`.
    pub dir: &'static str,
    /// Device directory names are this plus a number: `hwmon`.
    pub prefix: &'static str,
    /// The file holding the driver's label for the device: `name`.
    pub label: &'static str,
    /// What to call a device of this class in messages.
    pub what: &'static str,
}

pub(crate) const HWMON: Class = Class {
    dir: "class/hwmon",
    prefix: "hwmon",
    label: "name",
    what: "hwmon chip",
};

pub(crate) const THERMAL: Class = Class {
    dir: "class/thermal",
    prefix: "thermal_zone",
    label: "type",
    what: "thermal zone",
};

pub(crate) const IIO: Class = Class {
    dir: "bus/iio/devices",
    prefix: "iio:device",
    label: "name",
    what: "IIO device",
};

impl Class {
    /// The number of a directory name like `hwmon12`, if it is one.
    fn number(&self, dir_name: &str) -> Option<u32> {
        let digits = dir_name.strip_prefix(self.prefix)?;
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }
}

/// Finds the directory of one device, by fixed directory name or by label.
#[derive(Debug)]
pub(crate) struct Locator {
    class: Class,
    class_dir: PathBuf,
    want: String,
    /// `want` is a directory name (`hwmon2`), used as is.
    fixed: bool,
    /// Where `want` was last found. Behind a mutex because `Sensors` is
    /// shared across threads; held only for a few small reads.
    cache: Mutex<Option<PathBuf>>,
}

impl Locator {
    pub fn new(class: Class, sysfs_root: &Path, want: &str) -> Locator {
        Locator {
            class,
            class_dir: sysfs_root.join(class.dir),
            want: want.to_string(),
            fixed: class.number(want).is_some(),
            cache: Mutex::new(None),
        }
    }

    /// The device's directory now. A cached directory is used only while
    /// its label still matches, so a renumbering (hwmon1 and hwmon2 swap
    /// after a replug) is noticed on the next read, not just a removal.
    pub fn locate(&self, sensor: &str) -> Result<PathBuf, SensorError> {
        if self.fixed {
            return Ok(self.class_dir.join(&self.want));
        }
        // A poisoned lock only means another reader panicked mid-update of
        // a cache entry; the entry is re-checked below anyway.
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(dir) = cache.as_ref() {
            if read_label(&dir.join(self.class.label)).as_deref() == Some(self.want.as_str()) {
                return Ok(dir.clone());
            }
        }
        *cache = None;
        let dir = self
            .scan()
            .map_err(|reason| SensorError::unavailable(sensor, &self.class_dir, reason))?;
        *cache = Some(dir.clone());
        Ok(dir)
    }

    /// Looks through the class directory for the lowest-numbered device
    /// whose label is `want` (lowest, so that the choice among identical
    /// chips is stable for a given boot).
    fn scan(&self) -> Result<PathBuf, String> {
        let entries = std::fs::read_dir(&self.class_dir).map_err(|e| e.to_string())?;
        let mut best: Option<(u32, PathBuf)> = None;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(n) = name.to_str().and_then(|s| self.class.number(s)) else {
                continue;
            };
            if best.as_ref().is_some_and(|(b, _)| *b < n) {
                continue;
            }
            let dir = entry.path();
            if read_label(&dir.join(self.class.label)).as_deref() == Some(self.want.as_str()) {
                best = Some((n, dir));
            }
        }
        best.map(|(_, dir)| dir).ok_or_else(|| {
            format!(
                "no {} with {} `{}` (yet)",
                self.class.what, self.class.label, self.want
            )
        })
    }
}

/// How to turn one hwmon input's file content into a value: the kernel's
/// hwmon sysfs ABI (Documentation/hwmon/sysfs-interface.rst) fixes the unit
/// of each input type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct HwmonKind {
    pub divisor: f64,
    pub unit: &'static str,
}

/// The kind of an hwmon input name such as `temp1` or `in0`, or why it is
/// not one we read.
pub(crate) fn hwmon_kind(input: &str) -> Result<HwmonKind, String> {
    let kind_len = input
        .find(|c: char| c.is_ascii_digit())
        .ok_or_else(|| format!("`{input}` has no channel number (expected e.g. `temp1`)"))?;
    let (kind, number) = input.split_at(kind_len);
    if !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "`{input}` is not an input name (expected e.g. `temp1`, `in0`)"
        ));
    }
    let (divisor, unit) = match kind {
        "temp" => (1000.0, "°C"),       // millidegree Celsius
        "in" => (1000.0, "V"),          // millivolt
        "curr" => (1000.0, "A"),        // milliampere
        "power" => (1_000_000.0, "W"),  // microwatt
        "energy" => (1_000_000.0, "J"), // microjoule
        "humidity" => (1000.0, "%RH"),  // milli-percent
        "fan" => (1.0, "RPM"),          // revolutions per minute
        _ => {
            return Err(format!(
            "`{kind}` inputs are not supported: use temp, in, curr, power, energy, humidity or fan"
        ))
        }
    };
    Ok(HwmonKind { divisor, unit })
}

/// An hwmon input: `{dir}/{input}_input` divided per its kind.
#[derive(Debug)]
pub(crate) struct Hwmon {
    pub chip: Locator,
    pub file: String,
    pub kind: HwmonKind,
}

impl Hwmon {
    pub fn read(&self, sensor: &str) -> Result<f64, SensorError> {
        let dir = self.chip.locate(sensor)?;
        Ok(read_number(sensor, &dir.join(&self.file))? / self.kind.divisor)
    }
}

/// A thermal zone's `temp`, in millidegrees Celsius on every driver.
#[derive(Debug)]
pub(crate) struct Thermal {
    pub zone: Locator,
}

impl Thermal {
    pub fn read(&self, sensor: &str) -> Result<f64, SensorError> {
        let dir = self.zone.locate(sensor)?;
        Ok(read_number(sensor, &dir.join("temp"))? / 1000.0)
    }
}

/// The unit of an IIO channel type *after* scale and offset, as the IIO
/// sysfs ABI (Documentation/ABI/testing/sysfs-bus-iio) defines it. The
/// values are not converted further, so they are in the kernel's units:
/// millivolts, millidegrees Celsius, and so on.
pub(crate) fn iio_unit(channel_type: &str) -> &'static str {
    match channel_type {
        "voltage" | "altvoltage" => "mV",
        "current" => "mA",
        "power" => "mW",
        "temp" => "m°C",
        "humidityrelative" => "m%RH",
        "pressure" => "kPa",
        "illuminance" => "lx",
        "accel" => "m/s²",
        "anglvel" => "rad/s",
        "magn" => "G",
        "resistance" => "Ω",
        "distance" => "m",
        "concentration" => "%",
        _ => "",
    }
}

/// The channel type of an IIO channel name: the leading letters
/// (`voltage0` → `voltage`, `accel_x` → `accel`, `humidityrelative` →
/// itself). Shared attributes such as `in_voltage_scale` use it.
pub(crate) fn iio_type(channel: &str) -> &str {
    let end = channel
        .find(|c: char| !c.is_ascii_lowercase())
        .unwrap_or(channel.len());
    &channel[..end]
}

/// One IIO channel.
#[derive(Debug)]
pub(crate) struct Iio {
    pub device: Locator,
    pub channel: String,
}

impl Iio {
    /// Computes the channel's value as the IIO ABI documents it
    /// (Documentation/ABI/testing/sysfs-bus-iio, `in_voltageY_raw` and
    /// friends): `value = (raw + offset) * scale`, where `scale` and
    /// `offset` are the channel's own attributes (`in_voltage0_scale`) or,
    /// if it has none, the ones shared by its type (`in_voltage_scale`),
    /// and default to 1 and 0. Drivers that convert in the kernel expose
    /// `in_{channel}_input` instead, already in final units; that is read
    /// when there is no `_raw` file.
    pub fn read(&self, sensor: &str) -> Result<f64, SensorError> {
        let dir = self.device.locate(sensor)?;
        let ch = &self.channel;
        let ty = iio_type(ch);
        let raw_path = dir.join(format!("in_{ch}_raw"));
        let raw = match read_optional(sensor, &raw_path)? {
            Some(raw) => raw,
            None => {
                let input = dir.join(format!("in_{ch}_input"));
                return match read_optional(sensor, &input)? {
                    Some(v) => Ok(v),
                    None => Err(SensorError::unavailable(
                        sensor,
                        &raw_path,
                        "no such channel (neither _raw nor _input exists)",
                    )),
                };
            }
        };
        let attr = |what: &str| -> Result<Option<f64>, SensorError> {
            if let Some(v) = read_optional(sensor, &dir.join(format!("in_{ch}_{what}")))? {
                return Ok(Some(v));
            }
            if ty != ch.as_str() {
                return read_optional(sensor, &dir.join(format!("in_{ty}_{what}")));
            }
            Ok(None)
        };
        let scale = attr("scale")?.unwrap_or(1.0);
        let offset = attr("offset")?.unwrap_or(0.0);
        let value = (raw + offset) * scale;
        if value.is_finite() {
            Ok(value)
        } else {
            // Only reachable with absurd scales; report the raw reading.
            Err(SensorError::invalid(
                sensor,
                &raw_path,
                format!("{raw} (scaled out of range)").as_bytes(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_number(b"45000\n"), Some(45000.0));
        assert_eq!(parse_number(b"-1500"), Some(-1500.0));
        assert_eq!(parse_number(b" 0.000610351 \n"), Some(0.000610351));
        assert_eq!(parse_number(b"+7"), Some(7.0));
        assert_eq!(parse_number(b".5"), Some(0.5));
        assert_eq!(parse_number(b""), None);
        assert_eq!(parse_number(b"\n"), None);
        assert_eq!(parse_number(b"abc"), None);
        assert_eq!(parse_number(b"12abc"), None);
        assert_eq!(parse_number(b"inf"), None);
        assert_eq!(parse_number(b"-infinity"), None);
        assert_eq!(parse_number(b"NaN"), None);
        assert_eq!(parse_number(b"1e999"), None);
        assert_eq!(parse_number(&[0xff, b'1']), None);
        let mut huge = vec![b'1'; MAX_READ + 1];
        assert_eq!(parse_number(&huge), None);
        huge.truncate(20);
        assert_eq!(parse_number(&huge), Some(11111111111111111111.0));
    }

    #[test]
    fn hwmon_kinds() {
        assert_eq!(hwmon_kind("temp1").map(|k| k.unit), Ok("°C"));
        assert_eq!(hwmon_kind("in0").map(|k| k.divisor), Ok(1000.0));
        assert_eq!(hwmon_kind("power1").map(|k| k.divisor), Ok(1e6));
        assert_eq!(hwmon_kind("fan2").map(|k| k.unit), Ok("RPM"));
        assert_eq!(hwmon_kind("humidity1").map(|k| k.unit), Ok("%RH"));
        assert!(hwmon_kind("temp").is_err());
        assert!(hwmon_kind("temp1_input").is_err());
        assert!(hwmon_kind("pwm1").is_err());
        assert!(hwmon_kind("1").is_err());
    }

    #[test]
    fn iio_types() {
        assert_eq!(iio_type("voltage0"), "voltage");
        assert_eq!(iio_type("voltage0-voltage1"), "voltage");
        assert_eq!(iio_type("accel_x"), "accel");
        assert_eq!(iio_type("temp"), "temp");
        assert_eq!(iio_type("humidityrelative"), "humidityrelative");
        assert_eq!(iio_unit("voltage"), "mV");
        assert_eq!(iio_unit("nonsense"), "");
    }

    #[test]
    fn class_numbers() {
        assert_eq!(HWMON.number("hwmon12"), Some(12));
        assert_eq!(HWMON.number("hwmon"), None);
        assert_eq!(HWMON.number("hwmon1a"), None);
        assert_eq!(IIO.number("iio:device0"), Some(0));
        assert_eq!(IIO.number("trigger0"), None);
        assert_eq!(THERMAL.number("thermal_zone3"), Some(3));
        assert_eq!(THERMAL.number("cooling_device3"), None);
    }
}
