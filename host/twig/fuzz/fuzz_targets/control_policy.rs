//! The control policy: `--control KEY=VALUE` overrides (each line of the
//! input before a 0xFF byte), then what the policy keeps of lattice data
//! (the JSON after it, as the buckets or `lattice.json` give it).
//!
//! Whatever the bytes: overrides either apply and pass the policy's checks
//! or are refused with a message, never a panic; a `file://` reference is
//! only ever turned into a path inside `file_dirs`; and `policy::admit`
//! leaves no link that touches a device-owned id, no more links, configs
//! or labels than the bounds, and nothing more to drop on a second pass.
#![no_main]
#![forbid(unsafe_code)]

use std::collections::BTreeSet;

use libfuzzer_sys::fuzz_target;
use twig::latticedata::LatticeData;
use twig::policy::{admit, ControlPolicy, Owners};

fuzz_target!(|data: &[u8]| {
    let (lines, json) = match data.iter().position(|b| *b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let overrides: Vec<String> = String::from_utf8_lossy(lines)
        .lines()
        .take(16)
        .map(str::to_string)
        .collect();
    let policy = match ControlPolicy::default().with_overrides(&overrides) {
        Ok(p) => p,
        Err(e) => {
            assert!(!e.is_empty());
            ControlPolicy::default()
        }
    };
    for r in overrides.iter().filter_map(|o| o.strip_prefix("ref=")) {
        if let Ok(path) = policy.lattice_file(r) {
            assert!(
                policy.file_dirs.iter().any(|d| path.starts_with(d)),
                "{r} resolved outside file_dirs: {}",
                path.display()
            );
        }
    }
    let Ok(mut d) = serde_json::from_slice::<LatticeData>(json) else {
        return;
    };
    let owners = Owners {
        device: ["dev-a".to_string(), "dev-b".to_string()].into(),
        local: ["mine".to_string()].into(),
    };
    let in_use: BTreeSet<String> = ["used".to_string()].into();
    admit(&mut d, &owners, &policy, &in_use);
    let links: Vec<_> = d.links.values().flatten().collect();
    assert!(links.len() <= policy.max_links);
    for l in &links {
        assert!(!owners.device.contains(&l.source_id) && !owners.device.contains(&l.target));
    }
    assert!(d.links.keys().all(|k| !owners.device.contains(k)));
    assert!(d.config.len() <= policy.max_config_entries);
    assert!(d.label_puts.len() <= policy.max_labels);
    if !policy.links.allowed() {
        assert!(d.links.is_empty());
    }
    let again = admit(&mut d, &owners, &policy, &in_use);
    assert!(again.is_empty(), "a second pass dropped more: {again:?}");
});
