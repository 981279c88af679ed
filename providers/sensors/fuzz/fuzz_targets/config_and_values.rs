//! The sensor provider's parsers, fed one input three ways:
//!
//! * as sysfs attribute content: a scratch tree laid out like `/sys` (an
//!   hwmon chip, a thermal zone, an IIO device) is built once, and each
//!   input is written into `temp1_input`, the zone's `temp`, and, split at
//!   0xFF bytes into raw / scale / offset, into `in_voltage0_{raw,scale,
//!   offset}` (the channel's own attributes) and `in_voltage2_raw` +
//!   `in_voltage_{scale,offset}` (the attributes shared by the type); whole
//!   into `in_voltage1_input`;
//! * as a CSV file replayed by `sim.csv` sensors (by index and by name,
//!   once and looping);
//! * as a board profile's `[[sensors]]` TOML, deserialized into
//!   `SensorsConfig` and built with `Sensors::with_clock`. Its roots are
//!   pointed at the scratch tree (so GPIO sources find no chip and nothing
//!   outside the tree is read) and every CSV path at the file above.
//!
//! Whatever the input, nothing may panic; a config is `Ok` or a
//! `ConfigError` naming a configured sensor; a read is `Ok` or a clean
//! `SensorError` (and `Invalid`, not `Unavailable`, when the file is there
//! but holds garbage); an `Ok` value is finite, as `Reading::value`
//! promises, and serializes as a JSON number. Readable plain numbers are
//! read back exactly (divided per the hwmon ABI, scaled per the IIO one),
//! an IIO channel reads the same through its own and through shared
//! attributes, and a CSV replay returns every data row once, then loops
//! over them in order.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use twig_sensors::{
    Column, ManualClock, SensorConfig, SensorError, Sensors, SensorsConfig, Sim, Source,
};

struct Fixture {
    root: PathBuf,
    clock: Arc<ManualClock>,
    /// The hwmon, thermal and IIO sensors over the tree, built once so
    /// their device caches carry over from input to input as on a host.
    sysfs: Sensors,
}

impl Fixture {
    fn sys(&self) -> PathBuf {
        self.root.join("sys")
    }

    fn csv(&self) -> PathBuf {
        self.root.join("input.csv")
    }

    fn iio(&self, file: &str) -> PathBuf {
        self.sys().join("bus/iio/devices/iio:device0").join(file)
    }

    fn config(&self, sensors: Vec<SensorConfig>) -> SensorsConfig {
        SensorsConfig::new(sensors)
            .sysfs_root(self.sys())
            .dev_root(self.root.join("dev"))
            .base_dir(&self.root)
    }
}

fn write(path: &Path, content: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, content).unwrap();
}

/// Writes `content`, or removes the file when there is none.
fn put(path: &Path, content: Option<&[u8]>) {
    match content {
        Some(c) => write(path, c),
        None => match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("remove {}: {e}", path.display()),
        },
    }
}

static ROOT: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_root() {
    if let Some(root) = ROOT.get() {
        let _ = std::fs::remove_dir_all(root);
    }
}

extern "C" {
    fn atexit(f: extern "C" fn()) -> std::os::raw::c_int;
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let base = std::env::var_os("TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let root = base.join(format!("twig-sensors-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).unwrap();
        ROOT.set(root.clone()).unwrap();
        // libFuzzer leaves through exit(), which skips Rust destructors.
        unsafe { atexit(remove_root) };
        let sys = root.join("sys");
        write(&sys.join("class/hwmon/hwmon0/name"), b"fuzzchip\n");
        write(
            &sys.join("class/thermal/thermal_zone0/type"),
            b"fuzz-zone\n",
        );
        write(&sys.join("bus/iio/devices/iio:device0/name"), b"fuzzadc\n");
        let clock = Arc::new(ManualClock::new(1_700_000_000_000));
        let mut f = Fixture {
            root,
            clock,
            sysfs: Sensors::new(SensorsConfig::default()).unwrap(),
        };
        let hwmon = |name: &str, chip: &str| {
            SensorConfig::new(
                name,
                Source::Hwmon {
                    chip: chip.into(),
                    input: "temp1".into(),
                },
            )
        };
        let iio = |name: &str, channel: &str| {
            SensorConfig::new(
                name,
                Source::Iio {
                    device: "fuzzadc".into(),
                    channel: channel.into(),
                },
            )
        };
        let config = f.config(vec![
            hwmon("hwmon", "fuzzchip"),
            hwmon("hwmon-fixed", "hwmon0"),
            SensorConfig::new(
                "zone",
                Source::Thermal {
                    zone: "fuzz-zone".into(),
                },
            ),
            iio("adc-own", "voltage0"),
            iio("adc-input", "voltage1"),
            iio("adc-shared", "voltage2"),
        ]);
        f.sysfs = Sensors::with_clock(config, f.clock.clone()).unwrap();
        f
    })
}

/// A plain number as a sysfs attribute holds it, parsed without the
/// crate: `Some` only for what the crate must accept.
fn plain_number(content: &[u8]) -> Option<f64> {
    if content.len() > twig_sensors::MAX_READ {
        return None;
    }
    let text = std::str::from_utf8(content).ok()?;
    let text = text.trim_matches(|c: char| c.is_ascii_whitespace());
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A read must be a finite value or a clean error; the error displays.
fn checked(sensors: &Sensors, name: &str, clock: &ManualClock) -> Result<f64, SensorError> {
    match sensors.read(name) {
        Ok(r) => {
            assert!(
                r.value.is_finite(),
                "sensor `{name}` read {} as Ok: Reading::value must be finite",
                r.value
            );
            assert_eq!(r.sensor, name);
            assert_eq!(r.timestamp_ms, clock_now(clock));
            let json: serde_json::Value = serde_json::from_slice(&r.to_json()).unwrap();
            assert!(json["value"].is_number(), "{json}");
            assert_eq!(json["sensor"], name);
            Ok(r.value)
        }
        Err(e) => {
            let _ = e.to_string();
            assert!(!matches!(e, SensorError::NotFound { .. }), "{e}");
            Err(e)
        }
    }
}

fn clock_now(clock: &ManualClock) -> u64 {
    use twig_sensors::Clock;
    clock.now_ms()
}

fn invalid_at(e: &SensorError, want: &Path) {
    match e {
        SensorError::Invalid { path, .. } => assert_eq!(path, want, "{e}"),
        other => panic!("expected Invalid for {}, got {other}", want.display()),
    }
}

fn sysfs_values(f: &Fixture, data: &[u8]) {
    let sys = f.sys();
    let temp1 = sys.join("class/hwmon/hwmon0/temp1_input");
    write(&temp1, data);
    write(&sys.join("class/thermal/thermal_zone0/temp"), data);
    let mut parts = data.splitn(3, |b| *b == 0xff);
    let (raw, scale, offset) = (parts.next().unwrap(), parts.next(), parts.next());
    write(&f.iio("in_voltage0_raw"), raw);
    put(&f.iio("in_voltage0_scale"), scale);
    put(&f.iio("in_voltage0_offset"), offset);
    write(&f.iio("in_voltage2_raw"), raw);
    put(&f.iio("in_voltage_scale"), scale);
    put(&f.iio("in_voltage_offset"), offset);
    write(&f.iio("in_voltage1_input"), data);

    let clock = &f.clock;
    let plain = plain_number(data);
    for name in ["hwmon", "hwmon-fixed", "zone"] {
        match checked(&f.sysfs, name, clock) {
            // Millidegrees, per the hwmon and thermal ABIs.
            Ok(v) => {
                if let Some(n) = plain {
                    assert_eq!(v, n / 1000.0, "{name} read {data:?}");
                }
            }
            Err(e) => {
                assert_eq!(plain, None, "{name} refused {data:?}: {e}");
                if name != "zone" {
                    invalid_at(&e, &temp1);
                } else {
                    invalid_at(&e, &sys.join("class/thermal/thermal_zone0/temp"));
                }
            }
        }
    }

    let own = checked(&f.sysfs, "adc-own", clock);
    let shared = checked(&f.sysfs, "adc-shared", clock);
    match (&own, &shared) {
        (Ok(a), Ok(b)) => assert_eq!(a, b, "own vs shared IIO attributes"),
        (Err(_), Err(_)) => {}
        _ => panic!("own attributes gave {own:?}, shared ones {shared:?}"),
    }
    if let Err(e) = &own {
        assert!(matches!(e, SensorError::Invalid { .. }), "{e}");
    }
    let (r, s, o) = (
        plain_number(raw),
        scale.map_or(Some(1.0), plain_number),
        offset.map_or(Some(0.0), plain_number),
    );
    if let (Some(r), Some(s), Some(o)) = (r, s, o) {
        // Plain numbers of at most 15 digits cannot overflow.
        assert_eq!(own.as_ref().ok(), Some(&((r + o) * s)), "{data:?}");
    }

    match checked(&f.sysfs, "adc-input", clock) {
        Ok(v) => {
            if let Some(n) = plain {
                assert_eq!(v, n);
            }
        }
        Err(e) => {
            assert_eq!(plain, None, "{e}");
            invalid_at(&e, &f.iio("in_voltage1_input"));
        }
    }
}

fn csv_sensor(name: &str, column: Column, repeat: bool) -> SensorConfig {
    SensorConfig::new(
        name,
        Source::Sim(Sim::Csv {
            path: "input.csv".into(),
            column,
            repeat,
        }),
    )
}

fn csv_replay(f: &Fixture, data: &[u8]) {
    // Records as load_csv documents them: lines, trimmed, not empty, not
    // comments.
    let records = data
        .split(|b| *b == b'\n')
        .map(|l| String::from_utf8_lossy(l).trim().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect::<Vec<_>>();
    let header = records
        .first()
        .and_then(|r| r.split(',').next())
        .map(|f| f.trim().trim_matches('"').to_string());
    let mut columns = vec![
        Column::Index(0),
        Column::Index(1),
        Column::Name("value".into()),
    ];
    columns.extend(header.map(Column::Name));
    for column in columns {
        let by_name = matches!(column, Column::Name(_));
        let config = f.config(vec![
            csv_sensor("once", column.clone(), false),
            csv_sensor("loop", column.clone(), true),
        ]);
        let sensors = match Sensors::with_clock(config, f.clock.clone()) {
            Ok(s) => s,
            Err(e) => {
                assert!(
                    e.field == "source.sim.csv.path" || e.field == "source.sim.csv.column",
                    "{e}"
                );
                assert_eq!((e.index, e.name.as_str()), (0, "once"), "{e}");
                let _ = e.to_string();
                continue;
            }
        };
        let mut once = Vec::new();
        let end = loop {
            match checked(&sensors, "once", &f.clock) {
                Ok(v) => once.push(v),
                Err(e) => break e,
            }
            assert!(once.len() <= records.len(), "more values than records");
        };
        match end {
            SensorError::Unavailable { path, .. } => assert_eq!(path, f.csv()),
            other => panic!("replay ended with {other}"),
        }
        assert!(!once.is_empty(), "a CSV without data rows was accepted");
        // Only the first record can be skipped (as a header).
        if by_name {
            assert_eq!(once.len() + 1, records.len());
        } else {
            assert!(
                once.len() + 1 >= records.len(),
                "{} of {}",
                once.len(),
                records.len()
            );
        }
        for i in 0..2 * once.len() + 1 {
            let v = checked(&sensors, "loop", &f.clock).expect("a looping replay never ends");
            assert_eq!(v, once[i % once.len()]);
        }
    }
}

/// Clock readings that put a sine at 0, ±peak and in between for common
/// periods, and at the extremes of time.
const TIMES: [u64; 8] = [
    0,
    1,
    250,
    750,
    1_700_000_000_250,
    u64::MAX / 3,
    u64::MAX - 1,
    u64::MAX,
];

fn board_config(f: &Fixture, text: &str) {
    let Ok(mut config) = toml::from_str::<SensorsConfig>(text) else {
        return;
    };
    config.sysfs_root = f.sys();
    config.dev_root = f.root.join("dev");
    config.base_dir = Some(f.root.clone());
    for s in &mut config.sensors {
        if let Source::Sim(Sim::Csv { path, .. }) = &mut s.source {
            *path = f.csv();
        }
    }
    let configured = config.sensors.clone();
    let sensors = match Sensors::with_clock(config, f.clock.clone()) {
        Ok(s) => s,
        Err(e) => {
            let _ = e.to_string();
            assert!(e.index < configured.len(), "{e}");
            assert_eq!(e.name, configured[e.index].name, "{e}");
            return;
        }
    };
    let list = sensors.list();
    assert_eq!(list.len(), configured.len());
    for (info, c) in list.iter().zip(&configured) {
        assert_eq!(info.name, c.name);
        assert_eq!(info.kind, c.source.kind());
        if let Some(u) = &c.unit {
            assert_eq!(&info.unit, u);
        }
        // The name is one token of a valid subject, as provider.rs promises.
        let subject = twig_sensors::subject(&info.name);
        assert!(
            twig_messaging::validate_subject(&subject).is_ok(),
            "{subject:?}"
        );
        assert!(
            twig_messaging::matches("twig.sensors.*", &subject),
            "{subject:?}"
        );
    }
    for (i, a) in list.iter().enumerate() {
        assert!(
            list[..i].iter().all(|b| b.name != a.name),
            "duplicate {}",
            a.name
        );
    }
    let sampling = sensors.sampling();
    let periodic = configured
        .iter()
        .filter(|c| c.interval_ms.is_some())
        .count();
    assert_eq!(sampling.len(), periodic);
    for (_, d) in &sampling {
        assert!(d.as_millis() >= 10);
    }
    for info in &list {
        for t in TIMES {
            f.clock.set(t);
            let _ = checked(&sensors, &info.name, &f.clock);
        }
    }
    f.clock.set(1_700_000_000_000);
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    f.clock.set(1_700_000_000_000);
    sysfs_values(f, data);
    write(&f.csv(), data);
    csv_replay(f, data);
    board_config(f, &String::from_utf8_lossy(data));
});
