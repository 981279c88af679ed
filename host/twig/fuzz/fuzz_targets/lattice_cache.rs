//! Writes the input as a data directory's `lattice.json` (the links, named
//! config and label changes the lattice made, kept for offline boots) and
//! loads it, first with `LatticeData::load`, then as `twig up` does, with
//! `Host::open`.
//!
//! Whatever the bytes, loading must not panic and must not stop the boot:
//! a file that does not parse is moved aside to `lattice.json.damaged` and
//! the cache starts empty; one that parses survives `save` unchanged. The
//! host advertises the board's labels with the cache's changes applied, as
//! far as the board's control policy keeps them (`policy::admit`).
#![no_main]
#![forbid(unsafe_code)]

mod common;

use common::{board, scratch};
use libfuzzer_sys::fuzz_target;
use twig::host::Host;
use twig::latticedata::LatticeData;

/// Larger than any input the smoke run gives (`-max_len`).
const MAX: u64 = 1 << 20;

/// Whether the input is what `LatticeData::load` takes as a cache (it has
/// no error of its own to tell: a damaged file is an empty cache).
fn parses(data: &[u8]) -> Option<LatticeData> {
    serde_json::from_slice(data).ok()
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch("lattice");
    let path = LatticeData::path(&dir.0);
    let aside = path.with_extension("json.damaged");
    std::fs::write(&path, data).expect("write lattice.json");

    let expected = parses(data);
    let loaded = LatticeData::load(&dir.0, MAX);
    match &expected {
        Some(d) => {
            assert_eq!(&loaded, d);
            assert!(
                path.exists() && !aside.exists(),
                "a good cache stays in place"
            );
            let again = scratch("lattice");
            loaded.save(&again.0).expect("save a loaded cache");
            assert_eq!(
                LatticeData::load(&again.0, MAX),
                loaded,
                "a loaded cache survives save and load"
            );
            let _ = loaded.all_links();
        }
        None => {
            assert_eq!(loaded, LatticeData::default(), "a damaged cache is empty");
            assert!(!path.exists(), "a damaged cache is moved aside");
            assert_eq!(
                std::fs::read(&aside).expect("moved to lattice.json.damaged"),
                data,
                "and kept as it was"
            );
            // Boot again over the same bytes, the way Host::open reads it.
            std::fs::rename(&aside, &path).expect("put it back");
        }
    }

    let board = board();
    let host = match Host::open(board.clone(), &dir.0) {
        Ok(h) => h,
        Err(e) => panic!("the host refused to boot over lattice.json: {e}"),
    };
    let labels = host.status().host.labels;
    let mut kept = expected.unwrap_or_default();
    twig::policy::admit(
        &mut kept,
        &twig::policy::Owners::default(),
        &board.control,
        &Default::default(),
    );
    let want = kept.labels(&board.host_labels());
    assert_eq!(
        labels, want,
        "the host advertises the cache's label changes"
    );
});
