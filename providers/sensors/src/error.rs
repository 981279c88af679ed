//! Errors: one type for a bad configuration, found once at startup, and
//! one for a failed read, which can happen on any sample.
//!
//! Both carry enough to act on from a log line alone: a config error names
//! the sensor (by position and name) and the field; a read error names the
//! sensor and the file or device it tried.

use std::path::{Path, PathBuf};

/// A sensor configuration that [`crate::Sensors::new`] refuses.
///
/// Displays as `sensors[2] (cpu-temp): source.hwmon.chip: must not be
/// empty`, where the field is the key's path inside that sensor's
/// `[[sensors]]` table.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("sensors[{index}] ({name}): {field}: {message}")]
pub struct ConfigError {
    /// Position of the sensor in the `sensors` list, from 0.
    pub index: usize,
    /// The sensor's configured name, as written (it may be the problem).
    pub name: String,
    /// Path of the offending key inside the sensor's table.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

/// Why [`crate::Sensors::read`] produced no reading.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SensorError {
    /// No sensor of that name is configured.
    #[error("no sensor named `{sensor}`")]
    NotFound { sensor: String },

    /// The hardware (or the replay) cannot give a value now: the file or
    /// device is missing, busy or failing. Often temporary: a USB sensor
    /// may be unplugged, a driver may be reloading.
    #[error("sensor `{sensor}` unavailable: {}: {reason}", path.display())]
    Unavailable {
        sensor: String,
        path: PathBuf,
        reason: String,
    },

    /// The file was read but does not hold a usable number. `content` is a
    /// short, escaped excerpt of what was there.
    #[error("sensor `{sensor}`: {} holds no valid number: \"{content}\"", path.display())]
    Invalid {
        sensor: String,
        path: PathBuf,
        content: String,
    },
}

impl SensorError {
    pub(crate) fn unavailable(sensor: &str, path: &Path, reason: impl Into<String>) -> Self {
        SensorError::Unavailable {
            sensor: sensor.to_string(),
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    pub(crate) fn invalid(sensor: &str, path: &Path, content: &[u8]) -> Self {
        SensorError::Invalid {
            sensor: sensor.to_string(),
            path: path.to_path_buf(),
            content: excerpt(content),
        }
    }
}

/// How many characters of bad content an error quotes: enough to recognise
/// it, not enough to flood a log line with whatever a broken driver wrote.
const EXCERPT_CHARS: usize = 32;

/// A printable, bounded rendering of file content for error messages:
/// invalid UTF-8 is replaced, control characters and quotes are escaped,
/// and anything past [`EXCERPT_CHARS`] characters becomes `...`.
pub(crate) fn excerpt(content: &[u8]) -> String {
    let text = String::from_utf8_lossy(content);
    let mut out = String::new();
    for (n, c) in text.chars().enumerate() {
        if n == EXCERPT_CHARS {
            out.push_str("...");
            break;
        }
        out.extend(c.escape_debug());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_escapes_and_truncates() {
        assert_eq!(excerpt(b"12a\n"), "12a\\n");
        assert_eq!(excerpt(b"\"x\"\0"), "\\\"x\\\"\\0");
        assert_eq!(excerpt(&[0xff, b'1']), "\u{fffd}1");
        let long = vec![b'7'; 100];
        assert_eq!(excerpt(&long), format!("{}...", "7".repeat(32)));
        assert_eq!(excerpt(b""), "");
    }

    #[test]
    fn messages_name_sensor_and_path() {
        let e = SensorError::invalid("cpu", Path::new("/sys/x/temp"), b"oops\n");
        assert_eq!(
            e.to_string(),
            "sensor `cpu`: /sys/x/temp holds no valid number: \"oops\\n\""
        );
        let e = ConfigError {
            index: 2,
            name: "cpu-temp".into(),
            field: "source.hwmon.chip".into(),
            message: "must not be empty".into(),
        };
        assert_eq!(
            e.to_string(),
            "sensors[2] (cpu-temp): source.hwmon.chip: must not be empty"
        );
    }
}
