//! A store written by an earlier build opens, with exactly its contents.
//!
//! `fixtures/store/` was written by `examples/write_fixture.rs` (added in
//! commit 531ec01) against the store code of commit 61ec23b, the last
//! build before the record framing moved into twig-seglog: two segments, an overwritten key, a deleted key, a batch,
//! a counter and a delete-many. The test opens a copy (opening may repair,
//! and the fixture must stay as written).
mod common;

use std::path::Path;

use common::{contents, copy_dir, entry, manual, Contents, TempDir};
use twig_keyvalue::Store;

fn fixture() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/store"))
}

fn expected() -> Contents {
    let mut want = Contents::new();
    for (b, k, v) in [
        ("app", "greeting", &b"hello again"[..]),
        ("app", "counter", b"42"),
        ("batch", "x", b"1"),
        ("batch", "y", b"2"),
    ] {
        let (key, value) = entry(b, k, v);
        want.insert(key, value);
    }
    for i in (0..12u32).filter(|i| ![3, 7].contains(i)) {
        let (key, value) = entry("bulk", &format!("k{i:02}"), &[b'a' + i as u8; 400]);
        want.insert(key, value);
    }
    want
}

#[test]
fn a_store_written_by_the_previous_build_opens_with_its_contents() {
    let tmp = TempDir::new("fixture");
    let dir = tmp.path().join("store");
    copy_dir(fixture(), &dir);
    let (store, report) = Store::open(&dir, manual()).expect("open the fixture");
    assert_eq!(report.segments, 2);
    assert_eq!(report.truncated_tail_bytes, 0);
    assert!(report.corrupt_ranges.is_empty(), "{report:?}");
    assert_eq!(report.live_keys, 14);
    assert_eq!(contents(&store), expected());
    assert_eq!(store.get("app", "doomed").expect("get"), None);
    assert_eq!(store.increment("app", "counter", 1).expect("increment"), 43);

    // What this build appends to the old files reads back after a reopen
    // and a compaction.
    store
        .set("app", "new", b"written by this build")
        .expect("set");
    drop(store);
    let (store, _) = Store::open(&dir, manual()).expect("reopen");
    let mut want = expected();
    want.insert(entry("app", "counter", b"43").0, b"43".to_vec());
    let (k, v) = entry("app", "new", b"written by this build");
    want.insert(k, v);
    assert_eq!(contents(&store), want);
    store.compact().expect("compact");
    assert_eq!(contents(&store), want);
}
