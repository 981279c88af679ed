//! The `Batched` fsync policy: visibility, thresholds, flush, the
//! background flusher.
#![forbid(unsafe_code)]

mod common;

use std::time::{Duration, Instant};

use common::{contents, manual, TempDir};
use twig_keyvalue::{Config, FsyncPolicy, Store};

fn batched(max_delay_ms: u64, max_bytes: u64) -> Config {
    Config {
        fsync: FsyncPolicy::Batched {
            max_delay_ms,
            max_bytes,
        },
        ..manual()
    }
}

#[test]
fn writes_are_visible_at_once_and_flush_makes_them_durable() {
    let dir = TempDir::new("batched");
    let cfg = batched(3_600_000, 1 << 30);
    let (s, _) = Store::open(dir.path(), cfg).expect("open");
    s.set("b", "k", b"v").expect("set");
    s.increment("b", "n", 2).expect("increment");
    assert_eq!(s.get("b", "k").expect("get").as_deref(), Some(&b"v"[..]));
    assert_eq!(s.get("b", "n").expect("get").as_deref(), Some(&b"2"[..]));
    let st = s.stats();
    assert!(st.unsynced_bytes > 0);
    assert_eq!(st.fsyncs, 0, "no fsync yet");
    s.flush().expect("flush");
    let st = s.stats();
    assert_eq!(st.unsynced_bytes, 0);
    assert_eq!(st.fsyncs, 1);
    s.flush().expect("a second flush has nothing to do");
    assert_eq!(s.stats().fsyncs, 1);
    let expected = contents(&s);
    drop(s);
    let (s, _) = Store::open(dir.path(), cfg).expect("reopen");
    assert_eq!(contents(&s), expected);
}

#[test]
fn the_byte_threshold_bounds_unsynced_data() {
    let dir = TempDir::new("threshold");
    let (s, _) = Store::open(dir.path(), batched(3_600_000, 1000)).expect("open");
    for i in 0..100 {
        s.set("b", &format!("k{i}"), &[0; 80]).expect("set");
        assert!(s.stats().unsynced_bytes < 1000);
    }
    let st = s.stats();
    // ~100 bytes per record: one fsync per ~10 writes.
    assert!((8..=12).contains(&st.fsyncs), "{st:?}");
}

#[test]
fn the_background_flusher_syncs_within_the_delay() {
    let dir = TempDir::new("flusher");
    let (s, _) = Store::open(dir.path(), batched(50, 1 << 30)).expect("open");
    for round in 0..3 {
        let t = Instant::now();
        s.set("b", "k", format!("{round}").as_bytes()).expect("set");
        assert!(s.stats().unsynced_bytes > 0);
        while s.stats().unsynced_bytes > 0 {
            assert!(t.elapsed() < Duration::from_secs(10), "never flushed");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(
            t.elapsed() >= Duration::from_millis(45),
            "flushed early: {:?}",
            t.elapsed()
        );
    }
    assert_eq!(s.stats().fsyncs, 3);
}

#[test]
fn dropping_the_store_flushes_and_stops_the_flusher() {
    let dir = TempDir::new("dropflush");
    let cfg = batched(3_600_000, 1 << 30);
    let (s, _) = Store::open(dir.path(), cfg).expect("open");
    let clone = s.clone();
    s.set("b", "k", b"v").expect("set");
    drop(s);
    assert!(
        clone.stats().unsynced_bytes > 0,
        "still open, unflushed, via the clone"
    );
    drop(clone);
    // The lock is released, so the flusher no longer holds the store.
    let (s, _) = Store::open(dir.path(), cfg).expect("reopen");
    assert_eq!(s.get("b", "k").expect("get").as_deref(), Some(&b"v"[..]));
}
