//! Writes the input as a data directory's `desired.json` (the apps the
//! host restores at boot) and loads it, first with `DesiredState::load`,
//! then as `twig up` does, with `Host::open` and `Host::start_all`.
//!
//! Whatever the bytes, loading must return a state or a clean error naming
//! the file, never panic. A state it accepts survives `save` unchanged.
//! The host must boot past any content: a file that does not load is moved
//! aside (so the next boot does not trip on it again) and the host starts
//! with no apps; one that loads is started, and a component whose cached
//! bytes are missing is reported, not fatal. The cache is empty here, so
//! nothing from the input runs as code.
#![no_main]
#![forbid(unsafe_code)]

mod common;

use std::path::Path;

use common::{board, scratch};
use libfuzzer_sys::fuzz_target;
use twig::host::Host;
use twig::state::{DesiredState, StateError};

fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("read scratch dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch("desired");
    let path = DesiredState::path(&dir.0);
    std::fs::write(&path, data).expect("write desired.json");

    let loaded = DesiredState::load(&dir.0);
    match &loaded {
        Ok(state) => {
            // What loads is what the host would write back.
            let again = scratch("desired");
            state.save(&again.0).expect("save a loaded state");
            let back = DesiredState::load(&again.0).expect("load what was saved");
            assert_eq!(&back, state, "a loaded state survives save and load");
            let _ = state.digests();
        }
        Err(StateError::BadState { path: p, message }) => {
            assert_eq!(p, &path, "the error names desired.json");
            assert!(!message.is_empty());
        }
        Err(e) => panic!("a readable desired.json gave an I/O error: {e}"),
    }

    // The boot path: never refused for the file's content.
    let host = match Host::open(board(), &dir.0) {
        Ok(h) => h,
        Err(e) => panic!("the host refused to boot over desired.json: {e}"),
    };
    if loaded.is_err() {
        assert!(!path.exists(), "a damaged desired.json is moved aside");
        assert!(
            entries(&dir.0)
                .iter()
                .any(|n| n.starts_with("desired.json.damaged-")),
            "and kept for inspection: {:?}",
            entries(&dir.0)
        );
    }
    host.start_all();
    let status = host.status();
    if loaded.is_err() {
        assert!(status.apps.is_empty(), "a damaged state starts no apps");
    }
    drop(host);
});
