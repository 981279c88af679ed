//! Writes the store directory that `tests/fixtures.rs` opens: run once
//! (`cargo run -p twig-keyvalue --example write_fixture -- DIR`) by the
//! build whose on-disk format later builds must keep reading. The
//! committed `tests/fixtures/store/` was written by commit 531ec01 (the
//! store code of 61ec23b, before the segment-log crate), so it checks that
//! bytes from that build open.
use twig_keyvalue::{CompactionPolicy, Config, Store};

fn main() {
    let dir = std::env::args().nth(1).expect("usage: write_fixture DIR");
    let config = Config {
        // Small segments, so the fixture spans several files.
        segment_max_bytes: 4096,
        compaction: CompactionPolicy {
            auto: false,
            ..CompactionPolicy::default()
        },
        ..Config::default()
    };
    let (s, _) = Store::open(&dir, config).expect("open");
    s.set("app", "greeting", b"hello").expect("set");
    s.set("app", "doomed", b"soon gone").expect("set");
    for i in 0..12u32 {
        // 400-byte values: about ten records per 4 KiB segment.
        let v = vec![b'a' + (i % 26) as u8; 400];
        s.set("bulk", &format!("k{i:02}"), &v).expect("set");
    }
    s.set("app", "greeting", b"hello again").expect("overwrite");
    s.delete("app", "doomed").expect("delete");
    s.set_many("batch", &[("x", &b"1"[..]), ("y", &b"2"[..])])
        .expect("set_many");
    assert_eq!(s.increment("app", "counter", 41).expect("incr"), 41);
    assert_eq!(s.increment("app", "counter", 1).expect("incr"), 42);
    s.delete_many("bulk", &["k03", "k07"]).expect("delete_many");
    let st = s.stats();
    eprintln!(
        "wrote {dir}: {} keys in {} segments",
        st.live_keys, st.segments
    );
}
