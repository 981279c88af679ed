//! Feeds arbitrary text to `Board::parse`, the board profile parser (`twig
//! up --board FILE`; the profile is often world-readable, so nothing in it
//! may stop the host from reporting a clean error). The input is parsed as
//! the file `board.toml` of a scratch directory that holds `replay.csv`, so
//! a `sim.csv` sensor with a relative path is loaded for real.
//!
//! Whatever the input, parsing must return a profile or an error naming
//! the file, never panic. What it accepts must hold what the host relies
//! on without checking again: limits in their ranges and fitting the
//! board's RAM, label keys `--label` would accept, outbox class names and
//! subject patterns that parse, sensors that build, and the `[lattice]`
//! table's paths resolved against the profile's directory.
#![no_main]
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use twig::board::{check_label_key, Board};

/// The scratch directory the profile "lives" in, made once per process.
fn profile_file() -> &'static str {
    static FILE: OnceLock<String> = OnceLock::new();
    FILE.get_or_init(|| {
        let base = std::env::var_os("TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
        let dir = base.join(format!("twig-board-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        std::fs::write(
            dir.join("replay.csv"),
            "time,temp_c,humidity\n0,21.5,40\n1,21.75,41\n2,-3,42\n",
        )
        .expect("replay.csv");
        dir.join("board.toml").display().to_string()
    })
}

fuzz_target!(|data: &[u8]| {
    // A profile is read with read_to_string: anything else is an I/O error
    // before the parser sees it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let file = profile_file();
    let board = match Board::parse(text, file) {
        Ok(b) => b,
        Err(e) => {
            assert_eq!(e.file, file, "the error names the profile");
            assert!(!e.message.trim().is_empty(), "an error says what is wrong");
            assert!(e.to_string().starts_with(file));
            return;
        }
    };

    assert!(!board.name.trim().is_empty());
    let l = &board.limits;
    assert!((1..=100_000).contains(&l.max_components));
    assert!((1..=10_000).contains(&l.max_instances));
    assert!((1..=65_536).contains(&l.memory_mib));
    if let Some(ram) = board.ram_mib {
        assert!(l.memory_mib <= ram, "an instance fits in the board's RAM");
    }
    let limits = board.component_limits();
    assert_eq!(limits.memory_bytes as u64, l.memory_mib << 20);
    assert!(limits.deadline.is_some_and(|d| !d.is_zero()));
    assert!(limits.fuel_per_call.is_some_and(|f| f > 0));
    if board.target.is_some() {
        assert!(
            board.target_arch().is_some(),
            "a named target is a known one"
        );
    }

    for key in board.labels.keys() {
        assert!(
            check_label_key(key).is_ok(),
            "label key `{key}` was accepted"
        );
    }
    let host_labels = board.host_labels();
    for (k, v) in &board.labels {
        assert_eq!(
            host_labels.get(k),
            Some(v),
            "the profile's labels are advertised"
        );
    }

    // The host builds the sensors again at boot: what the check built once
    // must build again.
    if let Err(e) = twig_sensors::Sensors::new(board.sensors_config()) {
        panic!("sensors passed the check but do not build: {e}");
    }

    for c in &board.outbox.classes {
        assert!(twig::outbox::check_class_name(&c.name).is_ok());
        assert!(!c.subjects.is_empty());
        for s in &c.subjects {
            assert!(twig_messaging::Pattern::parse(s).is_ok());
        }
        assert_ne!(c.ttl_secs, Some(0));
    }
    assert!((1..=1024 * 1024).contains(&board.outbox.max_mib));

    let lattice = board.lattice();
    if let Some(h) = lattice.heartbeat_secs {
        assert!((1..=3600).contains(&h));
    }
    assert_eq!(lattice.tls_cert.is_some(), lattice.tls_key.is_some());
    assert_eq!(lattice.user.is_some(), lattice.password.is_some());
    // The profile's directory is absolute, so every resolved path is.
    for p in [
        &lattice.creds,
        &lattice.tls_ca,
        &lattice.tls_cert,
        &lattice.tls_key,
        &lattice.nkey,
    ]
    .into_iter()
    .flatten()
    {
        assert!(p.is_absolute(), "{} was not resolved", p.display());
    }
    let _ = board.data_dir();
});
