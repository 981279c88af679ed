//! Feeds arbitrary bytes (as lossy UTF-8) to manifest parsing. Whatever the
//! input, parsing must return `Ok` or a clean error, never panic or run
//! away; whatever parses must survive a round trip through JSON (the host
//! stores the model that way) unchanged.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use twig_manifest::{parse, Manifest, Source};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let source = Source {
        file: Some(Path::new("fuzz.yaml")),
        base_dir: Some(Path::new("/fuzz")),
    };
    match parse(&text, &source) {
        Ok(parsed) => {
            let m = &parsed.manifest;
            assert!(!m.components.is_empty());
            for c in &m.components {
                for l in &c.links {
                    assert!(m
                        .components
                        .iter()
                        .any(|t| t.name == l.target && t.id == l.target_id));
                }
            }
            let json = serde_json::to_string(m).expect("serialize");
            let back: Manifest = serde_json::from_str(&json).expect("deserialize");
            assert_eq!(&back, m);
            for w in &parsed.warnings {
                let _ = w.to_string();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
});
