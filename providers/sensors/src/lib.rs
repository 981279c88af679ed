//! # twig-sensors: the sensor provider
//!
//! Components on a twig board read sensors through the WIT interface
//! `twig:sensors/sensors@0.1.0` (`wit/sensors.wit`): `list()` the
//! configured sensors, `read(name)` one of them. This crate answers those
//! calls from Linux's sensor interfaces (hwmon, thermal zones, IIO, GPIO
//! lines) and from simulated signals, as configured in the board profile's
//! `[[sensors]]` tables. The host also samples sensors that have an
//! `interval_ms` and publishes each reading on `twig.sensors.{name}`.
//!
//! ## Layout and data flow
//!
//! ```text
//!  board.toml [[sensors]] ──serde──► config.rs: SensorsConfig { sensors, sysfs_root, dev_root }
//!                                        │
//!                                        ▼
//!                       provider.rs: Sensors::new ── validate names, fields,
//!                                        │           load CSV files up front
//!                                        ▼
//!                       Sensors (Send + Sync, shared as Arc) ── one Driver per sensor
//!                                        │
//!   guest: read("cpu-temp")              │            host sampler, every interval_ms
//!     │                                  │              │  sampling() → [(name, interval)]
//!     ▼                                  ▼              ▼
//!   component.rs ──────────────► Sensors::read(name) ◄──┘
//!   (Val ⇄ Reading/error)                │                 Reading::to_json() published
//!                                        │                 on subject(name) = twig.sensors.{name}
//!            ┌───────────────┬───────────┼──────────────┬────────────────┐
//!            ▼               ▼           ▼              ▼                ▼
//!     sysfs.rs: hwmon   thermal      IIO raw ×     gpio.rs: uAPI v2   sim.rs: sine(clock),
//!     {input}_input     temp         scale+offset  line request       random walk(seed, n),
//!     (Locator finds hwmonN / thermal_zoneN /      + get values       CSV replay(n)
//!      iio:deviceN by label, caches, re-checks)
//! ```
//!
//! * [`config`]: the serde types of the board profile and the field
//!   checks. Hardware need not exist when the config is loaded.
//! * [`provider`]: [`Sensors`], [`Reading`], [`SensorInfo`], [`subject`].
//! * `sysfs`: bounded (4 KiB) reads of sysfs attributes, number parsing,
//!   device lookup by label, and the hwmon and IIO scaling rules.
//! * `gpio`: the two GPIO character-device ioctls, written against libc.
//! * [`sim`]: the [`Clock`] and the simulated signals.
//! * [`component`]: [`component::add_to_linker`], the WIT binding.
//! * [`error`]: [`ConfigError`] and [`SensorError`].
//!
//! Readings carry SI-style units for hwmon and thermal sources (°C, V, A,
//! W, J, %RH, RPM) and the kernel's own units for IIO channels (mV, m°C,
//! ...); the README has the full table.
// The GPIO character-device ioctls (`gpio.rs`) are the only `unsafe`,
// allowed there; anything new must be allowed explicitly.
#![deny(unsafe_code)]

pub mod component;
pub mod config;
pub mod error;
mod gpio;
pub mod provider;
pub mod schedule;
pub mod sim;
mod sysfs;

pub use component::{add_to_linker, SensorsView};
pub use config::{Column, SensorConfig, SensorsConfig, Sim, Source};
pub use error::{ConfigError, SensorError};
pub use provider::{subject, Reading, SensorInfo, Sensors, SUBJECT_PREFIX};
pub use schedule::Schedule;
pub use sim::{Clock, ManualClock, SystemClock};
pub use sysfs::MAX_READ;
