//! Board profiles: what the host needs to know about the device it runs on.
//!
//! A profile is a TOML file (`boards/NAME/board.toml`); the `sim` profile is
//! compiled into the binary so `twig up` works with no files. Everything a
//! board changes lives here rather than in `#[cfg]`s through the host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use twig_component::Limits;

/// The `[outbox]` table's types live with the outbox they configure.
pub use crate::outbox::{BoardOutbox, BoardOutboxClass, Delivery, WhenFull};

/// The embedded default profile.
pub const SIM_PROFILE: &str = include_str!("../../../boards/sim/board.toml");

/// A parsed and checked board profile.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Board {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The Rust target the board's twig is built for (`cross/build
    /// TARGET`); absent for the `sim` board, which runs anywhere.
    #[serde(default)]
    pub target: Option<String>,
    /// The board's RAM in MiB, when the profile states it: the per-instance
    /// memory limit must fit in it.
    #[serde(default)]
    pub ram_mib: Option<u64>,
    /// Where twig keeps its state; see [`Board::data_dir`].
    #[serde(default)]
    data_dir: Option<String>,
    pub limits: BoardLimits,
    /// Labels this host advertises (spread requirements match them).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Provider images of manifests written for wasmCloud (registry path
    /// without tag, e.g. `ghcr.io/wasmcloud/http-server`) and the built-in
    /// provider that stands in for each (`twig:http-server`).
    #[serde(default = "default_provider_images")]
    pub provider_images: BTreeMap<String, String>,
    /// Sensors the `twig:sensors` provider offers (`[[sensors]]` tables;
    /// format in `providers/sensors/README.md`).
    #[serde(default)]
    pub sensors: Vec<twig_sensors::SensorConfig>,
    /// Where sysfs is mounted (hwmon, thermal, IIO sensors); `/sys`.
    #[serde(default)]
    pub sysfs_root: Option<PathBuf>,
    /// Where device nodes are (GPIO chips); `/dev`.
    #[serde(default)]
    pub dev_root: Option<PathBuf>,
    /// How this device joins a lattice (`[lattice]`); the CLI and `TWIG_*`
    /// variables override each setting.
    #[serde(default)]
    pub lattice: Option<BoardLattice>,
    /// What leaves the device through the durable outbox, and how
    /// (`[outbox]`, with `[[outbox.classes]]`).
    #[serde(default)]
    pub outbox: BoardOutbox,
    /// What the lattice may do to this device (`[control]`; README,
    /// "Threat model"); `--control KEY=VALUE` overrides fields.
    #[serde(default)]
    pub control: crate::policy::ControlPolicy,
    /// The profile file's directory: relative paths in it (CSV replays)
    /// are resolved against it.
    #[serde(skip)]
    base_dir: Option<PathBuf>,
}

/// wasmCloud's well-known providers and their twig stand-ins, used when a
/// profile has no `[provider_images]` table.
pub fn default_provider_images() -> BTreeMap<String, String> {
    [
        ("ghcr.io/wasmcloud/http-server", "twig:http-server"),
        ("ghcr.io/wasmcloud/keyvalue-nats", "twig:keyvalue"),
        ("ghcr.io/wasmcloud/keyvalue-redis", "twig:keyvalue"),
        ("ghcr.io/wasmcloud/keyvalue-vault", "twig:keyvalue"),
        ("ghcr.io/wasmcloud/messaging-nats", "twig:messaging"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Resource budget of the device.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardLimits {
    /// Components placed on this host at once, over all apps.
    pub max_components: usize,
    /// Instances of one component alive at once.
    pub max_instances: usize,
    /// Linear memory of one instance, in MiB.
    pub memory_mib: u64,
    /// Fuel one call may burn.
    pub fuel_per_call: u64,
    /// Wall-clock time one call may take, in milliseconds.
    pub deadline_ms: u64,
    /// Largest component image file twig reads, in MiB (on `apply`,
    /// `up --app`, `validate` and a lattice `component.scale`): a bigger
    /// file is refused before it is read, so a wrong path can't fill RAM.
    #[serde(default = "default_max_image_mib")]
    pub max_image_mib: u64,
}

/// Fits a 64 MB board: the image and its compiled form, at most half the
/// RAM; components seen so far are well under 1 MiB.
fn default_max_image_mib() -> u64 {
    32
}

impl BoardLimits {
    /// [`BoardLimits::max_image_mib`] in bytes.
    pub fn max_image_bytes(&self) -> u64 {
        self.max_image_mib.saturating_mul(1 << 20)
    }
}

/// The `[lattice]` table's type lives with the uplink it configures.
pub use crate::uplink::BoardLattice;

/// The targets `cross/build` knows, with each one's `std::env::consts::ARCH`.
pub const KNOWN_TARGETS: &[(&str, &str)] = &[
    ("x86_64-unknown-linux-gnu", "x86_64"),
    ("x86_64-unknown-linux-musl", "x86_64"),
    ("aarch64-unknown-linux-gnu", "aarch64"),
    ("aarch64-unknown-linux-musl", "aarch64"),
    ("armv7-unknown-linux-gnueabihf", "arm"),
    ("armv7-unknown-linux-musleabihf", "arm"),
    ("riscv64gc-unknown-linux-gnu", "riscv64"),
    ("riscv64gc-unknown-linux-musl", "riscv64"),
];

/// A profile that cannot be used, with the file and the field at fault.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct BoardError {
    pub file: String,
    pub message: String,
}

impl Board {
    /// The built-in `sim` profile.
    pub fn sim() -> Board {
        // The embedded file is checked by a unit test, so this cannot fail
        // in a released binary.
        Board::parse(SIM_PROFILE, "<built-in sim profile>")
            .expect("the built-in sim profile is valid")
    }

    /// Reads and checks a profile file.
    pub fn load(path: &Path) -> Result<Board, BoardError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| BoardError {
            file: file.clone(),
            message: format!("cannot read board profile: {e}"),
        })?;
        Board::parse(&text, &file)
    }

    /// Parses and checks profile text; `file` names it in errors (and, if
    /// it is a path, relative paths in the profile are resolved against its
    /// directory).
    pub fn parse(text: &str, file: &str) -> Result<Board, BoardError> {
        let mut board: Board = toml::from_str(text).map_err(|e| BoardError {
            file: file.to_string(),
            // toml's message names the line, column and key.
            message: e.to_string().trim_end().to_string(),
        })?;
        if !file.starts_with('<') {
            board.base_dir = Path::new(file).parent().map(Path::to_path_buf);
        }
        board.check().map_err(|message| BoardError {
            file: file.to_string(),
            message,
        })?;
        board.control.check().map_err(|message| BoardError {
            file: file.to_string(),
            message,
        })?;
        Ok(board)
    }

    fn check(&self) -> Result<(), String> {
        fn range(field: &str, v: u64, lo: u64, hi: u64) -> Result<(), String> {
            if v < lo || v > hi {
                return Err(format!("{field}: must be between {lo} and {hi} (got {v})"));
            }
            Ok(())
        }
        if self.name.trim().is_empty() {
            return Err("name: must not be empty".into());
        }
        if let Some(t) = &self.target {
            if self.target_arch().is_none() {
                let known: Vec<&str> = KNOWN_TARGETS.iter().map(|(k, _)| *k).collect();
                return Err(format!(
                    "target: `{t}` is not a target twig builds for (known: {})",
                    known.join(", ")
                ));
            }
        }
        let l = &self.limits;
        range("limits.max_components", l.max_components as u64, 1, 100_000)?;
        range("limits.max_instances", l.max_instances as u64, 1, 10_000)?;
        range("limits.memory_mib", l.memory_mib, 1, 65_536)?;
        range("limits.fuel_per_call", l.fuel_per_call, 1, u64::MAX)?;
        range("limits.deadline_ms", l.deadline_ms, 1, 24 * 3_600_000)?;
        range("limits.max_image_mib", l.max_image_mib, 1, 4096)?;
        if let Some(ram) = self.ram_mib {
            range("ram_mib", ram, 16, 16 * 1024 * 1024)?;
            if l.memory_mib > ram {
                return Err(format!(
                    "limits.memory_mib: {} MiB per instance does not fit in the board's ram_mib = {ram}",
                    l.memory_mib
                ));
            }
            // The image is held while it is compiled: both must fit.
            if l.max_image_mib > ram / 2 {
                return Err(format!(
                    "limits.max_image_mib: {} MiB images do not fit in the board's ram_mib = {ram} (at most half of it)",
                    l.max_image_mib
                ));
            }
        }
        if let Some(d) = &self.data_dir {
            if d.trim().is_empty() {
                return Err("data_dir: must not be empty (leave it out for the default)".into());
            }
        }
        // Builds the sensors once to check them (names, fields, CSV files),
        // so a bad profile fails here with the sensor and field named.
        twig_sensors::Sensors::new(self.sensors_config()).map_err(|e| e.to_string())?;
        for (image, provider) in &self.provider_images {
            if crate::providers::ProviderKind::from_reference(provider).is_none() {
                return Err(format!(
                    "provider_images.\"{image}\": `{provider}` is not a built-in provider (known: {})",
                    crate::providers::ProviderKind::references().join(", ")
                ));
            }
            if crate::providers::strip_tag(image) != image || image.trim().is_empty() {
                return Err(format!(
                    "provider_images.\"{image}\": give the image without a tag, e.g. ghcr.io/wasmcloud/http-server"
                ));
            }
        }
        for key in self.labels.keys() {
            check_label_key(key).map_err(|e| format!("labels: {e}"))?;
        }
        if let Some(l) = &self.lattice {
            l.check()?;
        }
        self.outbox.check()?;
        Ok(())
    }

    /// The `[lattice]` table with its paths resolved against the profile's
    /// directory (and `~/` expanded); an empty table when there is none.
    pub fn lattice(&self) -> BoardLattice {
        let mut l = self.lattice.clone().unwrap_or_default();
        for p in [
            &mut l.creds,
            &mut l.tls_ca,
            &mut l.tls_cert,
            &mut l.tls_key,
            &mut l.nkey,
            &mut l.ctl_creds,
            &mut l.ctl_tls_ca,
            &mut l.ctl_tls_cert,
            &mut l.ctl_tls_key,
            &mut l.ctl_nkey,
        ]
        .into_iter()
        .flatten()
        {
            let expanded = p.to_str().map(expand_home).unwrap_or_else(|| p.clone());
            *p = match &self.base_dir {
                Some(base) if expanded.is_relative() => base.join(expanded),
                _ => expanded,
            };
        }
        l
    }

    /// Limits given to each component placed on this board.
    pub fn component_limits(&self) -> Limits {
        Limits {
            fuel_per_call: Some(self.limits.fuel_per_call),
            deadline: Some(Duration::from_millis(self.limits.deadline_ms)),
            memory_bytes: (self.limits.memory_mib as usize).saturating_mul(1 << 20),
            table_elements: 100_000,
            max_instances: self.limits.max_instances,
        }
    }

    /// The data directory this profile asks for, if it names one.
    pub fn data_dir(&self) -> Option<PathBuf> {
        self.data_dir.as_deref().map(expand_home)
    }

    /// The configuration of the `twig:sensors` provider on this board.
    pub fn sensors_config(&self) -> twig_sensors::SensorsConfig {
        let mut c = twig_sensors::SensorsConfig::new(self.sensors.clone());
        if let Some(r) = &self.sysfs_root {
            c = c.sysfs_root(r.clone());
        }
        if let Some(r) = &self.dev_root {
            c = c.dev_root(r.clone());
        }
        if let Some(d) = &self.base_dir {
            c = c.base_dir(d.clone());
        }
        c
    }

    /// The CPU architecture (as `std::env::consts::ARCH` names it) the
    /// profile's target runs on, if it names a target.
    pub fn target_arch(&self) -> Option<&'static str> {
        let t = self.target.as_deref()?;
        KNOWN_TARGETS.iter().find(|(k, _)| *k == t).map(|(_, a)| *a)
    }

    /// The profile's labels plus the ones every host has.
    pub fn host_labels(&self) -> BTreeMap<String, String> {
        let mut labels = BTreeMap::new();
        labels.insert("hostcore.arch".into(), std::env::consts::ARCH.into());
        labels.insert("hostcore.os".into(), std::env::consts::OS.into());
        labels.insert("hostcore.osfamily".into(), std::env::consts::FAMILY.into());
        labels.extend(self.labels.clone());
        labels
    }
}

pub use crate::names::check_label_key;

fn expand_home(p: &str) -> PathBuf {
    match (p.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(p),
    }
}

/// Picks the data directory: the flag, then `$TWIG_DATA_DIR` (read by clap
/// into the flag), then the board's, then the per-user state directory.
pub fn resolve_data_dir(flag: Option<&Path>, board: Option<&Board>) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = board.and_then(|b| b.data_dir()) {
        return p;
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("twig");
    }
    if let Some(h) = std::env::var_os("HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(h).join(".local/state/twig");
    }
    PathBuf::from("twig-data")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_profile_is_valid() {
        let b = Board::sim();
        assert_eq!(b.name, "sim");
        assert_eq!(b.limits.max_instances, 16);
        assert_eq!(b.component_limits().memory_bytes, 64 << 20);
        let labels = b.host_labels();
        assert_eq!(labels["board"], "sim");
        assert_eq!(labels["hostcore.os"], std::env::consts::OS);
    }

    /// Every profile under boards/ loads, names a target cross/build knows
    /// and advertises the lattice labels a fleet selects on.
    #[test]
    #[cfg_attr(
        not(feature = "sensors-gpio"),
        ignore = "device profiles have GPIO sensors"
    )]
    fn every_board_profile_loads() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../boards");
        let cross = std::fs::read_to_string(root.join("../cross/targets.sh")).unwrap();
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&root).unwrap() {
            let file = entry.unwrap().path().join("board.toml");
            let board = Board::load(&file).unwrap_or_else(|e| panic!("{e}"));
            let dir = file.parent().unwrap().file_name().unwrap();
            assert_eq!(board.name, dir.to_str().unwrap(), "{}", file.display());
            if board.name != "sim" {
                let target = board
                    .target
                    .as_deref()
                    .expect("device boards name a target");
                assert!(
                    cross.contains(&format!("{target})")),
                    "{}: cross/targets.sh cannot build {target}",
                    file.display()
                );
                assert!(board.ram_mib.is_some(), "{}", file.display());
                assert_eq!(board.labels.get("board"), Some(&board.name));
                assert_eq!(board.labels.get("tier").map(String::as_str), Some("edge"));
                assert!(board.labels.contains_key("arch"), "{}", file.display());
                assert_eq!(board.data_dir(), Some(PathBuf::from("/var/lib/twig")));
                assert!(!board.sensors.is_empty(), "{}", file.display());
            }
            names.push(board.name);
        }
        names.sort();
        assert_eq!(
            names,
            [
                "beaglebone-black",
                "milk-v-duo",
                "raspberry-pi-4",
                "raspberry-pi-zero-2w",
                "sim",
                "x86_64-gateway"
            ]
        );
        // The smallest board we promise: its whole instance budget fits in
        // a quarter of its RAM.
        let duo = Board::load(&root.join("milk-v-duo/board.toml")).unwrap();
        let l = &duo.limits;
        assert!(l.max_instances as u64 * l.memory_mib * 4 <= duo.ram_mib.unwrap());
    }

    #[test]
    #[cfg_attr(
        not(feature = "sensors-gpio"),
        ignore = "device profiles have GPIO sensors"
    )]
    fn broken_device_profiles_name_the_field() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../boards");
        let pi = std::fs::read_to_string(root.join("raspberry-pi-4/board.toml")).unwrap();
        let cases = [
            (
                pi.replace("aarch64-unknown-linux-gnu", "aarch64-apple-darwin"),
                "pi.toml: target: `aarch64-apple-darwin` is not a target twig builds for",
            ),
            (
                pi.replace("ram_mib = 2048", "ram_mib = 64"),
                "pi.toml: limits.memory_mib: 128 MiB per instance does not fit in the board's ram_mib = 64",
            ),
            (
                pi.replace("zone = \"cpu-thermal\"", "zone = \"\""),
                "pi.toml: sensors[0] (soc-temp): source.thermal.zone",
            ),
            (
                pi.replace("line = 17", "line = -1"),
                "invalid value: integer `-1`",
            ),
            (pi.replace("[labels]", "[labels]\n\"bad key\" = \"x\""), "pi.toml: labels: `bad key`"),
            (pi.replace("ram_mib", "ram_mb"), "unknown field `ram_mb`"),
        ];
        for (text, want) in cases {
            let e = Board::parse(&text, "pi.toml").unwrap_err().to_string();
            assert!(e.contains(want), "want {want:?} in: {e}");
        }
        let e = Board::load(Path::new("/nonexistent/board.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("/nonexistent/board.toml: cannot read board profile"),
            "{e}"
        );
    }

    #[test]
    fn bad_field_names_file_and_field() {
        let text = SIM_PROFILE.replace("memory_mib = 64", "memory_mib = 0");
        let e = Board::parse(&text, "b.toml").unwrap_err().to_string();
        assert!(
            e.starts_with("b.toml: limits.memory_mib: must be between"),
            "{e}"
        );

        let text = SIM_PROFILE.replace("deadline_ms", "deadline_msec");
        let e = Board::parse(&text, "b.toml").unwrap_err().to_string();
        assert!(e.contains("b.toml") && e.contains("deadline_msec"), "{e}");

        let text = SIM_PROFILE.replace("max_instances = 16", "max_instances = \"many\"");
        let e = Board::parse(&text, "b.toml").unwrap_err().to_string();
        assert!(e.contains("max_instances") && e.contains("line"), "{e}");
    }

    #[test]
    fn image_cap_defaults_to_32_mib_and_must_fit_in_ram() {
        assert_eq!(Board::sim().limits.max_image_bytes(), 32 << 20);
        // A profile written before the field existed gets the default.
        let text = SIM_PROFILE.replace("max_image_mib = 32", "");
        assert_eq!(
            Board::parse(&text, "b.toml").unwrap().limits.max_image_mib,
            32
        );
        let text = SIM_PROFILE.replace("max_image_mib = 32", "max_image_mib = 0");
        let e = Board::parse(&text, "b.toml").unwrap_err().to_string();
        assert_eq!(
            e,
            "b.toml: limits.max_image_mib: must be between 1 and 4096 (got 0)"
        );
        let text = SIM_PROFILE
            .replace("# ram_mib = 1024", "ram_mib = 64")
            .replace("memory_mib = 64", "memory_mib = 8")
            .replace("max_image_mib = 32", "max_image_mib = 48");
        let e = Board::parse(&text, "b.toml").unwrap_err().to_string();
        assert_eq!(
            e,
            "b.toml: limits.max_image_mib: 48 MiB images do not fit in the board's ram_mib = 64 (at most half of it)"
        );
    }

    /// The `[lattice]` table: paths resolve against the profile's
    /// directory, and a bad field is named.
    #[test]
    fn lattice_table_is_read_and_checked() {
        let with = |table: &str| format!("{SIM_PROFILE}\n[lattice]\n{table}\n");
        let b = Board::parse(
            &with(
                "url = \"tls://leaf.local:7422\"\nname = \"plant-7\"\njs_domain = \"core\"\n\
                 creds = \"nats.creds\"\ntls_ca = \"/etc/twig/ca.pem\"\nheartbeat_secs = 10",
            ),
            "/etc/twig/board/board.toml",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let l = b.lattice();
        assert_eq!(l.url.as_deref(), Some("tls://leaf.local:7422"));
        assert_eq!(l.name.as_deref(), Some("plant-7"));
        assert_eq!(l.heartbeat_secs, Some(10));
        assert_eq!(
            l.creds.as_deref(),
            Some(Path::new("/etc/twig/board/nats.creds"))
        );
        assert_eq!(l.tls_ca.as_deref(), Some(Path::new("/etc/twig/ca.pem")));
        assert!(Board::sim().lattice().url.is_none());

        for (table, field) in [
            ("url = \"http://x:1\"", "lattice.url"),
            ("name = \"a.b\"", "lattice.name"),
            ("js_domain = \"\"", "lattice.js_domain"),
            ("heartbeat_secs = 0", "lattice.heartbeat_secs"),
            (
                "tls_cert = \"c.pem\"",
                "lattice.tls_cert and lattice.tls_key",
            ),
            ("user = \"u\"", "lattice.user and lattice.password"),
            ("friendly_name = \" \"", "lattice.friendly_name"),
            ("urll = \"nats://x:1\"", "urll"),
        ] {
            let e = Board::parse(&with(table), "b.toml")
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with("b.toml: ") && e.contains(field),
                "{table}: {e}"
            );
        }
    }

    #[test]
    fn outbox_table_is_read_and_checked() {
        let b = Board::sim();
        assert_eq!(b.outbox.max_mib, 64);
        assert_eq!(b.outbox.drain_rate, 200);
        let names: Vec<&str> = b.outbox.classes.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["alerts", "telemetry"]);
        assert_eq!(b.outbox.classes[0].when_full, WhenFull::RejectNew);
        assert_eq!(b.outbox.classes[0].ttl_secs, Some(86400));
        assert_eq!(b.outbox.classes[1].delivery, Delivery::Auto);

        for (from, to, field) in [
            ("max_mib = 64 ", "max_mib = 0 ", "outbox.max_mib"),
            (
                "ack_timeout_ms = 5000",
                "ack_timeout_ms = 1",
                "outbox.ack_timeout_ms",
            ),
            (
                "name = \"alerts\"",
                "name = \"Alerts!\"",
                "outbox.classes[0].name",
            ),
            (
                "name = \"alerts\"",
                "name = \"telemetry\"",
                "outbox.classes[1].name",
            ),
            (
                "name = \"alerts\"",
                "name = \"host-events\"",
                "outbox.classes[0].name",
            ),
            (
                "subjects = [\"alerts.>\"]",
                "subjects = []",
                "outbox.classes[0].subjects",
            ),
            (
                "subjects = [\"alerts.>\"]",
                "subjects = [\"alerts..x\"]",
                "outbox.classes[0].subjects",
            ),
            (
                "ttl_secs = 86400",
                "ttl_secs = 0",
                "outbox.classes[0].ttl_secs",
            ),
            (
                "when_full = \"reject-new\"",
                "when_full = \"maybe\"",
                "when_full",
            ),
            ("delivery = \"auto\"", "delivery = \"pigeon\"", "delivery"),
        ] {
            assert!(SIM_PROFILE.contains(from), "{from}");
            let text = SIM_PROFILE.replacen(from, to, 1);
            let e = Board::parse(&text, "b.toml").unwrap_err().to_string();
            assert!(e.starts_with("b.toml: ") && e.contains(field), "{to}: {e}");
        }
    }
}
