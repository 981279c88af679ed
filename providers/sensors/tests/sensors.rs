//! End-to-end tests of the public API against real directory trees laid
//! out like `/sys`, and of the board-profile TOML format.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use twig_sensors::{
    subject, ManualClock, Reading, SensorConfig, SensorError, Sensors, SensorsConfig, Sim, Source,
};

/// A fresh directory under the system temp dir, removed on drop.
struct Tree(tempfile::TempDir);

impl Tree {
    fn new(test: &str) -> Tree {
        let dir = tempfile::Builder::new()
            .prefix(&format!("twig-sensors-{test}-"))
            .tempdir()
            .unwrap();
        Tree(dir)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.0.path().join(rel)
    }

    fn write(&self, rel: &str, content: impl AsRef<[u8]>) {
        let p = self.path(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    fn remove(&self, rel: &str) {
        let p = self.path(rel);
        if p.is_dir() {
            std::fs::remove_dir_all(p).unwrap();
        } else {
            std::fs::remove_file(p).unwrap();
        }
    }

    fn rename(&self, from: &str, to: &str) {
        std::fs::rename(self.path(from), self.path(to)).unwrap();
    }

    /// Sensors over this tree as sysfs (and `dev` under it as /dev), with
    /// a clock fixed at 1_700_000_000_000.
    fn sensors(&self, sensors: Vec<SensorConfig>) -> Sensors {
        Sensors::with_clock(self.config(sensors), Arc::new(ManualClock::new(CLOCK))).unwrap()
    }

    fn config(&self, sensors: Vec<SensorConfig>) -> SensorsConfig {
        SensorsConfig::new(sensors)
            .sysfs_root(self.path("sys"))
            .dev_root(self.path("dev"))
            .base_dir(self.0.path())
    }
}

const CLOCK: u64 = 1_700_000_000_000;

fn hwmon(name: &str, chip: &str, input: &str) -> SensorConfig {
    SensorConfig::new(
        name,
        Source::Hwmon {
            chip: chip.into(),
            input: input.into(),
        },
    )
}

fn iio(name: &str, device: &str, channel: &str) -> SensorConfig {
    SensorConfig::new(
        name,
        Source::Iio {
            device: device.into(),
            channel: channel.into(),
        },
    )
}

fn value(s: &Sensors, name: &str) -> (f64, String) {
    let r = s.read(name).unwrap_or_else(|e| panic!("read {name}: {e}"));
    assert_eq!(r.sensor, name);
    assert_eq!(r.timestamp_ms, CLOCK);
    (r.value, r.unit)
}

fn unavailable_path(e: SensorError) -> PathBuf {
    match e {
        SensorError::Unavailable { path, .. } => path,
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

/// Two chips, every supported hwmon input type, with the kernel ABI's
/// scaling to base units.
fn two_chips(t: &Tree) {
    t.write("sys/class/hwmon/hwmon0/name", "acpitz\n");
    t.write("sys/class/hwmon/hwmon0/temp1_input", "27800\n");
    t.write("sys/class/hwmon/hwmon1/name", "coretemp\n");
    t.write("sys/class/hwmon/hwmon1/temp1_input", "45123\n");
    t.write("sys/class/hwmon/hwmon1/temp2_input", "-1500\n");
    t.write("sys/class/hwmon/hwmon1/in0_input", "1200\n");
    t.write("sys/class/hwmon/hwmon1/curr1_input", "1500\n");
    t.write("sys/class/hwmon/hwmon1/power1_input", "12500000\n");
    t.write("sys/class/hwmon/hwmon1/energy1_input", "3000000\n");
    t.write("sys/class/hwmon/hwmon1/humidity1_input", "45500\n");
    t.write("sys/class/hwmon/hwmon1/fan1_input", "2100\n");
}

#[test]
fn hwmon_inputs_are_scaled_per_the_kernel_abi() {
    let t = Tree::new("hwmon");
    two_chips(&t);
    let s = t.sensors(vec![
        hwmon("acpi", "acpitz", "temp1"),
        hwmon("cpu", "coretemp", "temp1"),
        hwmon("cold", "coretemp", "temp2"),
        hwmon("vcore", "coretemp", "in0"),
        hwmon("amps", "coretemp", "curr1"),
        hwmon("watts", "coretemp", "power1"),
        hwmon("joules", "coretemp", "energy1"),
        hwmon("rh", "coretemp", "humidity1"),
        hwmon("fan", "coretemp", "fan1"),
        hwmon("fixed", "hwmon0", "temp1"),
    ]);
    assert_eq!(value(&s, "acpi"), (27.8, "°C".into()));
    assert_eq!(value(&s, "cpu"), (45.123, "°C".into()));
    assert_eq!(value(&s, "cold"), (-1.5, "°C".into()));
    assert_eq!(value(&s, "vcore"), (1.2, "V".into()));
    assert_eq!(value(&s, "amps"), (1.5, "A".into()));
    assert_eq!(value(&s, "watts"), (12.5, "W".into()));
    assert_eq!(value(&s, "joules"), (3.0, "J".into()));
    assert_eq!(value(&s, "rh"), (45.5, "%RH".into()));
    assert_eq!(value(&s, "fan"), (2100.0, "RPM".into()));
    assert_eq!(value(&s, "fixed"), (27.8, "°C".into()));
}

#[test]
fn hwmon_follows_its_chip_across_renumbering() {
    let t = Tree::new("renumber");
    two_chips(&t);
    let s = t.sensors(vec![
        hwmon("cpu", "coretemp", "temp1"),
        hwmon("acpi", "acpitz", "temp1"),
    ]);
    assert_eq!(value(&s, "cpu").0, 45.123);
    assert_eq!(value(&s, "acpi").0, 27.8);

    // A reboot (or replug) swaps the numbers; both paths still exist, so
    // only checking the label notices.
    t.rename("sys/class/hwmon/hwmon0", "sys/class/hwmon/tmp");
    t.rename("sys/class/hwmon/hwmon1", "sys/class/hwmon/hwmon0");
    t.rename("sys/class/hwmon/tmp", "sys/class/hwmon/hwmon1");
    t.write("sys/class/hwmon/hwmon0/temp1_input", "50000\n");
    assert_eq!(value(&s, "cpu").0, 50.0);
    assert_eq!(value(&s, "acpi").0, 27.8);

    // The chip goes away entirely: unavailable, naming where we looked.
    t.remove("sys/class/hwmon/hwmon0");
    let err = s.read("cpu").unwrap_err();
    assert!(
        err.to_string()
            .contains("no hwmon chip with name `coretemp`"),
        "{err}"
    );
    assert_eq!(unavailable_path(err), t.path("sys/class/hwmon"));

    // ... and comes back under a new number.
    t.write("sys/class/hwmon/hwmon7/name", "coretemp\n");
    t.write("sys/class/hwmon/hwmon7/temp1_input", "61000\n");
    assert_eq!(value(&s, "cpu").0, 61.0);
}

#[test]
fn hardware_may_appear_after_startup() {
    let t = Tree::new("late");
    let s = t.sensors(vec![hwmon("usb", "sht3x", "humidity1")]);
    let err = s.read("usb").unwrap_err();
    assert_eq!(unavailable_path(err), t.path("sys/class/hwmon"));
    t.write("sys/class/hwmon/hwmon3/name", "sht3x\n");
    t.write("sys/class/hwmon/hwmon3/humidity1_input", "40250\n");
    assert_eq!(value(&s, "usb"), (40.25, "%RH".into()));
}

#[test]
fn identical_chips_resolve_to_the_lowest_number() {
    let t = Tree::new("twins");
    for (n, v) in [(10, "10000"), (2, "2000"), (5, "5000")] {
        t.write(&format!("sys/class/hwmon/hwmon{n}/name"), "nvme\n");
        t.write(&format!("sys/class/hwmon/hwmon{n}/temp1_input"), v);
    }
    let s = t.sensors(vec![hwmon("disk", "nvme", "temp1")]);
    assert_eq!(value(&s, "disk").0, 2.0);
}

#[test]
fn thermal_zones_by_type_and_by_number() {
    let t = Tree::new("thermal");
    t.write("sys/class/thermal/thermal_zone0/type", "acpitz\n");
    t.write("sys/class/thermal/thermal_zone0/temp", "30000\n");
    t.write("sys/class/thermal/thermal_zone1/type", "cpu-thermal\n");
    t.write("sys/class/thermal/thermal_zone1/temp", "48312\n");
    t.write("sys/class/thermal/cooling_device0/type", "cpu-thermal\n");
    let zone =
        |name: &str, zone: &str| SensorConfig::new(name, Source::Thermal { zone: zone.into() });
    let s = t.sensors(vec![
        zone("soc", "cpu-thermal"),
        zone("z0", "thermal_zone0"),
    ]);
    assert_eq!(value(&s, "soc"), (48.312, "°C".into()));
    assert_eq!(value(&s, "z0"), (30.0, "°C".into()));
}

#[test]
fn iio_applies_offset_and_scale_with_type_level_fallback() {
    let t = Tree::new("iio");
    let dev = "sys/bus/iio/devices/iio:device1";
    t.write("sys/bus/iio/devices/iio:device0/name", "bme280\n");
    t.write("sys/bus/iio/devices/trigger0/name", "ads1015\n");
    t.write(&format!("{dev}/name"), "ads1015\n");
    // Shared by every voltage channel without attributes of its own.
    t.write(&format!("{dev}/in_voltage_scale"), "0.5\n");
    t.write(&format!("{dev}/in_voltage_offset"), "4\n");
    // voltage0: only the shared type-level scale and offset.
    t.write(&format!("{dev}/in_voltage0_raw"), "1000\n");
    // voltage1: its own scale and offset win over the shared ones.
    t.write(&format!("{dev}/in_voltage1_raw"), "200\n");
    t.write(&format!("{dev}/in_voltage1_scale"), "2\n");
    t.write(&format!("{dev}/in_voltage1_offset"), "10\n");
    // temp: a channel without index; negative offset.
    t.write(&format!("{dev}/in_temp_raw"), "2500\n");
    t.write(&format!("{dev}/in_temp_offset"), "-500\n");
    t.write(&format!("{dev}/in_temp_scale"), "10\n");
    // voltage2: its own offset, the shared scale.
    t.write(&format!("{dev}/in_voltage2_raw"), "7\n");
    t.write(&format!("{dev}/in_voltage2_offset"), "-1\n");
    // humidity: processed in the kernel, only _input.
    t.write(&format!("{dev}/in_humidityrelative_input"), "45125\n");
    // accel with a modifier: in_accel_x_raw, shared in_accel_scale.
    t.write(&format!("{dev}/in_accel_x_raw"), "-16\n");
    t.write(&format!("{dev}/in_accel_scale"), "0.25\n");

    let s = t.sensors(vec![
        iio("v0", "ads1015", "voltage0"),
        iio("v1", "ads1015", "voltage1"),
        iio("v2", "ads1015", "voltage2"),
        iio("t", "ads1015", "temp"),
        iio("rh", "iio:device1", "humidityrelative"),
        iio("ax", "ads1015", "accel_x"),
        iio("gone", "ads1015", "voltage9"),
    ]);
    assert_eq!(value(&s, "v0"), (502.0, "mV".into()));
    assert_eq!(value(&s, "v1"), (420.0, "mV".into()));
    assert_eq!(value(&s, "v2"), (3.0, "mV".into()));
    assert_eq!(value(&s, "t"), (20000.0, "m°C".into()));
    assert_eq!(value(&s, "rh"), (45125.0, "m%RH".into()));
    assert_eq!(value(&s, "ax"), (-4.0, "m/s²".into()));
    let err = s.read("gone").unwrap_err();
    assert_eq!(
        unavailable_path(err),
        t.path(&format!("{dev}/in_voltage9_raw"))
    );
}

#[test]
fn a_file_that_vanishes_between_reads_is_unavailable() {
    let t = Tree::new("vanish");
    two_chips(&t);
    t.write("sys/bus/iio/devices/iio:device0/name", "adc\n");
    t.write("sys/bus/iio/devices/iio:device0/in_voltage0_raw", "5\n");
    let s = t.sensors(vec![
        hwmon("cpu", "coretemp", "temp1"),
        iio("adc", "adc", "voltage0"),
    ]);
    assert_eq!(value(&s, "cpu").0, 45.123);
    assert_eq!(value(&s, "adc").0, 5.0);
    t.remove("sys/class/hwmon/hwmon1/temp1_input");
    t.remove("sys/bus/iio/devices/iio:device0");
    let err = s.read("cpu").unwrap_err();
    assert_eq!(
        unavailable_path(err),
        t.path("sys/class/hwmon/hwmon1/temp1_input")
    );
    let err = s.read("adc").unwrap_err();
    assert_eq!(unavailable_path(err), t.path("sys/bus/iio/devices"));
    // Nothing was cached in a broken state: it recovers.
    t.write("sys/class/hwmon/hwmon1/temp1_input", "46000");
    assert_eq!(value(&s, "cpu").0, 46.0);
}

#[test]
fn garbage_content_is_invalid_with_an_excerpt() {
    let t = Tree::new("garbage");
    t.write("sys/class/hwmon/hwmon0/name", "chip\n");
    let s = t.sensors(vec![hwmon("x", "chip", "temp1")]);
    let file = t.path("sys/class/hwmon/hwmon0/temp1_input");
    let cases: Vec<(Vec<u8>, String)> = vec![
        (b"abc\n".to_vec(), "abc\\n".into()),
        (b"".to_vec(), "".into()),
        (b"\n".to_vec(), "\\n".into()),
        (b"inf".to_vec(), "inf".into()),
        (b"12 34".to_vec(), "12 34".into()),
        (b"\x01\"q".to_vec(), "\\u{1}\\\"q".into()),
        // Larger than a sysfs attribute can be: only the first 4 KiB are
        // even read, and the excerpt is short.
        (vec![b'9'; 5000], format!("{}...", "9".repeat(32))),
    ];
    for (content, excerpt) in cases {
        std::fs::write(&file, &content).unwrap();
        match s.read("x") {
            Err(SensorError::Invalid {
                sensor,
                path,
                content,
            }) => {
                assert_eq!(sensor, "x");
                assert_eq!(path, file);
                assert_eq!(content, excerpt);
            }
            other => panic!("{excerpt}: expected Invalid, got {other:?}"),
        }
    }
    // A bad IIO scale is invalid too, naming the scale file.
    t.write("sys/bus/iio/devices/iio:device0/name", "adc\n");
    t.write("sys/bus/iio/devices/iio:device0/in_voltage0_raw", "5\n");
    t.write("sys/bus/iio/devices/iio:device0/in_voltage_scale", "x\n");
    let s = t.sensors(vec![iio("adc", "adc", "voltage0")]);
    match s.read("adc") {
        Err(SensorError::Invalid { path, .. }) => {
            assert_eq!(
                path,
                t.path("sys/bus/iio/devices/iio:device0/in_voltage_scale")
            )
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn a_missing_gpio_chip_is_unavailable_naming_the_path() {
    let t = Tree::new("gpio");
    let gpio = |name: &str, chip: &str| {
        SensorConfig::new(
            name,
            Source::Gpio {
                chip: chip.into(),
                line: 4,
                active_low: true,
            },
        )
    };
    let s = t.sensors(vec![
        gpio("door", "gpiochip0"),
        gpio("btn", "/dev/gpiochip3"),
    ]);
    assert_eq!(s.list()[0].unit, "");
    let err = s.read("door").unwrap_err();
    assert!(err.to_string().contains("gpiochip0"), "{err}");
    assert_eq!(unavailable_path(err), t.path("dev/gpiochip0"));
    assert_eq!(
        unavailable_path(s.read("btn").unwrap_err()),
        t.path("dev/gpiochip3")
    );
    // A regular file is no chip: the ioctl is refused.
    t.write("dev/gpiochip0", "");
    let err = s.read("door").unwrap_err();
    assert!(
        err.to_string().contains("not a GPIO character device"),
        "{err}"
    );
}

fn sim(name: &str, sim: Sim) -> SensorConfig {
    SensorConfig::new(name, Source::Sim(sim))
}

#[test]
fn sine_is_a_function_of_the_clock() {
    let clock = Arc::new(ManualClock::new(1_000_000));
    let cfg = SensorsConfig::new(vec![sim(
        "wave",
        Sim::Sine {
            amplitude: 5.0,
            period_ms: 4000,
            offset: 10.0,
        },
    )
    .unit("°C")]);
    let s = Sensors::with_clock(cfg, clock.clone()).unwrap();
    let mut got = Vec::new();
    for _ in 0..4 {
        let r = s.read("wave").unwrap();
        got.push((r.timestamp_ms, r.value));
        clock.advance(1000);
    }
    assert_eq!(got[0], (1_000_000, 10.0));
    assert_eq!(got[1], (1_001_000, 15.0));
    assert!((got[2].1 - 10.0).abs() < 1e-12);
    assert_eq!(got[3], (1_003_000, 5.0));
    assert_eq!(s.read("wave").unwrap().unit, "°C");
}

#[test]
fn random_walk_is_fixed_by_seed_and_sample_index() {
    let walk = |seed| {
        sim(
            "walk",
            Sim::RandomWalk {
                start: 20.0,
                step: 0.5,
                min: 19.0,
                max: 21.0,
                seed,
            },
        )
    };
    let run = |seed| {
        let s = Sensors::new(SensorsConfig::new(vec![walk(seed)])).unwrap();
        (0..200)
            .map(|_| s.read("walk").unwrap().value)
            .collect::<Vec<_>>()
    };
    let a = run(42);
    assert_eq!(a, run(42));
    assert_ne!(a, run(43));
    assert_eq!(a[0], 20.0);
    for w in a.windows(2) {
        assert!((19.0..=21.0).contains(&w[1]));
        assert!((w[1] - w[0]).abs() <= 0.5);
    }
    // The walk touches a bound at some point and is clamped there.
    assert!(a.iter().any(|v| *v == 19.0 || *v == 21.0));
}

#[test]
fn csv_replays_a_column_in_file_order() {
    let t = Tree::new("csv");
    t.write(
        "data/room.csv",
        "# recorded on the bench\ntime, temp ,\"rh\"\n0,20.5,40\n\n1,21,41\r\n2,-3.25,42\n",
    );
    t.write("data/plain.csv", "7;x,1\n8;y,2\n");
    let csv = |name: &str, path: &str, column: twig_sensors::Column, repeat: bool| {
        sim(
            name,
            Sim::Csv {
                path: path.into(),
                column,
                repeat,
            },
        )
    };
    let s = t.sensors(vec![
        csv(
            "by-name",
            "data/room.csv",
            twig_sensors::Column::Name("temp".into()),
            true,
        ),
        csv(
            "by-index",
            "data/room.csv",
            twig_sensors::Column::Index(2),
            false,
        ),
        csv(
            "no-header",
            "data/plain.csv",
            twig_sensors::Column::Index(1),
            false,
        ),
    ]);
    let values = |name: &str, n: usize| {
        (0..n)
            .map(|_| s.read(name).map(|r| r.value))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        values("by-name", 7),
        [20.5, 21.0, -3.25, 20.5, 21.0, -3.25, 20.5].map(Ok)
    );
    let by_index = values("by-index", 4);
    assert_eq!(by_index[..3], [40.0, 41.0, 42.0].map(Ok));
    let err = by_index[3].clone().unwrap_err();
    assert!(
        err.to_string().contains("replay finished after 3 values"),
        "{err}"
    );
    assert_eq!(unavailable_path(err), t.path("data/room.csv"));
    assert_eq!(values("no-header", 2), [1.0, 2.0].map(Ok));
}

#[test]
fn csv_position_is_shared_safely_across_threads() {
    let t = Tree::new("csv-threads");
    let rows: String = (1..=400).map(|i| format!("{i}\n")).collect();
    t.write("n.csv", rows);
    let s = Arc::new(t.sensors(vec![sim(
        "n",
        Sim::Csv {
            path: "n.csv".into(),
            column: twig_sensors::Column::Index(0),
            repeat: false,
        },
    )]));
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let s = Arc::clone(&s);
            std::thread::spawn(move || (0..100).map(|_| s.read("n").unwrap().value).sum::<f64>())
        })
        .collect();
    let total: f64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    // Every row was replayed exactly once.
    assert_eq!(total, (1..=400).sum::<u32>() as f64);
    assert!(s.read("n").is_err());
}

/// Builds from TOML like the host does; returns the error message.
fn toml_error(t: &Tree, toml_text: &str) -> String {
    let cfg: SensorsConfig = match toml::from_str(toml_text) {
        Ok(c) => c,
        Err(e) => return e.to_string(),
    };
    let cfg = cfg
        .sysfs_root(t.path("sys"))
        .dev_root(t.path("dev"))
        .base_dir(t.0.path());
    match Sensors::new(cfg) {
        Ok(_) => panic!("accepted:\n{toml_text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn config_errors_name_the_sensor_and_field() {
    let t = Tree::new("config");
    t.write("bad.csv", "t,v\n1,2\n2,3\n3,oops\n");
    t.write("empty.csv", "t,v\n\n");
    let cases = [
        (
            "[[sensors]]\nname='a'\nsource.thermal.zone='z'\n[[sensors]]\nname='b'\nsource.thermal.zone='z'\n[[sensors]]\nname='a'\nsource.thermal.zone='y'",
            "sensors[2] (a): name: duplicate of sensors[0]",
        ),
        (
            "[[sensors]]\nname='CPU temp'\nsource.thermal.zone='z'",
            "sensors[0] (CPU temp): name: 'C' is not allowed",
        ),
        (
            "[[sensors]]\nname='x'\ninterval_ms=5\nsource.thermal.zone='z'",
            "sensors[0] (x): interval_ms: 5 is below the minimum of 10 ms",
        ),
        (
            "[[sensors]]\nname='x'\nsource.hwmon={chip='', input='temp1'}",
            "sensors[0] (x): source.hwmon.chip: must not be empty",
        ),
        (
            "[[sensors]]\nname='cpu-temp'\nsource.hwmon={chip='coretemp', input='pwm1'}",
            "sensors[0] (cpu-temp): source.hwmon.input: `pwm` inputs are not supported",
        ),
        (
            "[[sensors]]\nname='x'\nsource.thermal.zone='../../etc'",
            "sensors[0] (x): source.thermal.zone: '/' is not allowed",
        ),
        (
            "[[sensors]]\nname='x'\nsource.iio={device='adc', channel='Voltage0'}",
            "sensors[0] (x): source.iio.channel: must start with the channel type",
        ),
        (
            "[[sensors]]\nname='x'\nsource.gpio={chip='/sys/class/gpio', line=1}",
            "sensors[0] (x): source.gpio.chip: `/sys/class/gpio` is outside /dev",
        ),
        (
            "[[sensors]]\nname='x'\nsource.sim.sine={amplitude=1, period_ms=0}",
            "sensors[0] (x): source.sim.sine.period_ms: must be at least 1",
        ),
        (
            "[[sensors]]\nname='x'\nsource.sim.sine={amplitude=nan, period_ms=10}",
            "sensors[0] (x): source.sim.sine.amplitude: NaN is not a finite number",
        ),
        (
            "[[sensors]]\nname='x'\nsource.sim.random_walk={start=0, step=1, min=5, max=1}",
            "sensors[0] (x): source.sim.random_walk.max: 1 is below min (5)",
        ),
        (
            "[[sensors]]\nname='x'\nsource.sim.random_walk={start=9, step=1, min=0, max=1}",
            "sensors[0] (x): source.sim.random_walk.start: 9 is outside [0, 1]",
        ),
        (
            "[[sensors]]\nname='x'\nunit=\"a\\nb\"\nsource.thermal.zone='z'",
            "sensors[0] (x): unit: contains control characters",
        ),
        (
            "[[sensors]]\nname='replay'\nsource.sim.csv={path='bad.csv', column='v'}",
            "sensors[0] (replay): source.sim.csv.path: ",
        ),
        (
            "[[sensors]]\nname='replay'\nsource.sim.csv={path='bad.csv', column='w'}",
            "sensors[0] (replay): source.sim.csv.column: ",
        ),
        (
            "[[sensors]]\nname='replay'\nsource.sim.csv={path='missing.csv', column=0}",
            "sensors[0] (replay): source.sim.csv.path: cannot open ",
        ),
        (
            "[[sensors]]\nname='replay'\nsource.sim.csv={path='empty.csv', column='v'}",
            "has no data rows",
        ),
        // Errors serde finds, with toml's own location.
        (
            "[[sensors]]\nname='x'\nsource.thermal={zone='z', zoen='y'}",
            "unexpected keys in table: zoen",
        ),
        (
            "[[sensors]]\nname='x'\nintervall_ms=5\nsource.thermal.zone='z'",
            "intervall_ms",
        ),
        (
            "[[sensors]]\nname='x'\nsource.hwmn={chip='a', input='temp1'}",
            "unknown variant `hwmn`",
        ),
        (
            "[[sensors]]\nname='x'\nsource.sim.csv={path='a.csv', column=-1}",
            "a column index must not be negative",
        ),
        (
            "[[sensors]]\nname='x'\nsource.sim.csv={path='a.csv', column=true}",
            "a column name or a 0-based column index",
        ),
    ];
    for (input, want) in cases {
        let got = toml_error(&t, input);
        assert!(
            got.contains(want),
            "for\n{input}\nwanted `{want}` in\n{got}"
        );
    }
}

#[test]
fn csv_errors_carry_line_numbers() {
    let t = Tree::new("csv-errors");
    t.write("bad.csv", "t,v\n1,2\n\n2,3\n3,oops\n");
    t.write("short.csv", "t,v\n1,2\n2\n");
    t.write("hdr.csv", "t,v\n1,2\n");
    let err = |file: &str, column: &str| {
        toml_error(
            &t,
            &format!("[[sensors]]\nname='r'\nsource.sim.csv={{path='{file}', column={column}}}"),
        )
    };
    let path = |f: &str| t.path(f).display().to_string();
    assert_eq!(
        err("bad.csv", "'v'"),
        format!(
            "sensors[0] (r): source.sim.csv.path: {} line 5: column `v` is \"oops\", not a number",
            path("bad.csv")
        )
    );
    assert_eq!(
        err("short.csv", "1"),
        format!(
            "sensors[0] (r): source.sim.csv.path: {} line 3: has 1 fields, no column 1",
            path("short.csv")
        )
    );
    assert_eq!(
        err("hdr.csv", "'x'"),
        format!(
            "sensors[0] (r): source.sim.csv.column: {} line 1: no column `x` in the header (t, v)",
            path("hdr.csv")
        )
    );
    assert_eq!(
        err("hdr.csv", "5"),
        format!(
            "sensors[0] (r): source.sim.csv.column: {} line 1: has 2 fields, no column 5",
            path("hdr.csv")
        )
    );
}

#[test]
fn readme_example_parses_and_validates() {
    let readme = include_str!("../README.md");
    let start = readme
        .find("```toml\n# board.toml")
        .expect("README has the full example");
    let body = &readme[start + "```toml\n".len()..];
    let body = &body[..body.find("```").unwrap()];
    let t = Tree::new("readme");
    t.write("data/bench-run.csv", "time_s,temp\n0,21.5\n1,21.75\n");
    let cfg: SensorsConfig = toml::from_str(body).unwrap_or_else(|e| panic!("{e}"));
    let cfg = cfg.sysfs_root(t.path("sys")).base_dir(t.0.path());
    let s = Sensors::with_clock(cfg, Arc::new(ManualClock::new(CLOCK))).unwrap();
    let kinds: Vec<String> = s.list().into_iter().map(|i| i.kind).collect();
    for kind in ["hwmon", "thermal", "iio", "gpio", "sim"] {
        assert!(kinds.iter().any(|k| k == kind), "no {kind} in the example");
    }
    assert_eq!(s.read("bench-replay").unwrap().value, 21.5);
}

#[test]
fn sampling_subjects_and_json_payload() {
    let s = Sensors::with_clock(
        SensorsConfig::new(vec![
            sim(
                "a",
                Sim::Sine {
                    amplitude: 1.0,
                    period_ms: 1000,
                    offset: 0.0,
                },
            )
            .interval_ms(250),
            sim(
                "b",
                Sim::Sine {
                    amplitude: 1.0,
                    period_ms: 1000,
                    offset: 0.5,
                },
            ),
            sim(
                "c",
                Sim::RandomWalk {
                    start: 1.0,
                    step: 0.0,
                    min: 0.0,
                    max: 2.0,
                    seed: 0,
                },
            )
            .interval_ms(10)
            .unit("°C"),
        ]),
        Arc::new(|| 1_234u64),
    )
    .unwrap();
    assert_eq!(
        s.sampling(),
        vec![
            ("a".to_string(), Duration::from_millis(250)),
            ("c".to_string(), Duration::from_millis(10)),
        ]
    );
    assert_eq!(subject("c"), "twig.sensors.c");
    let r = s.read("c").unwrap();
    assert_eq!(
        r,
        Reading {
            sensor: "c".into(),
            value: 1.0,
            unit: "°C".into(),
            timestamp_ms: 1234
        }
    );
    assert_eq!(
        String::from_utf8(r.to_json()).unwrap(),
        r#"{"sensor":"c","value":1.0,"unit":"°C","timestamp_ms":1234}"#
    );
    assert!(matches!(
        s.read("zzz"),
        Err(SensorError::NotFound { sensor }) if sensor == "zzz"
    ));
    let names: Vec<String> = s.list().into_iter().map(|i| i.name).collect();
    assert_eq!(names, ["a", "b", "c"]);
}

#[test]
fn sensors_is_shareable() {
    fn shared<T: Send + Sync + 'static>() {}
    shared::<Sensors>();
    shared::<Arc<Sensors>>();
}

/// Found by the `config_and_values` fuzz target: two finite settings whose
/// sum overflows would have made a sine sensor report `inf` as a reading.
#[test]
fn a_sine_that_could_overflow_is_refused_at_load() {
    let cfg: SensorsConfig = toml::from_str(
        "[[sensors]]\nname = \"s\"\nsource.sim.sine = { amplitude = 1e308, period_ms = 4, offset = 1e308 }\n",
    )
    .unwrap();
    let Err(e) = Sensors::new(cfg) else {
        panic!("an overflowing sine was accepted");
    };
    let e = e.to_string();
    assert!(
        e.contains("source.sim.sine.amplitude") && e.contains("finite"),
        "{e}"
    );
}
