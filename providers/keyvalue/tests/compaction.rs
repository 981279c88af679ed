//! Compaction: same contents, space reclaimed, interrupted states, write
//! amplification.
#![forbid(unsafe_code)]

mod common;

use common::{contents, copy_dir, manual, segments, TempDir};
use twig_keyvalue::{CompactionPolicy, Config, Store};

fn small_segments() -> Config {
    Config {
        segment_max_bytes: 8192,
        ..manual()
    }
}

fn churn(s: &Store, rounds: u32) {
    for r in 0..rounds {
        for i in 0..50u32 {
            let key = format!("key{i:02}");
            if (i * 7 + r) % 11 == 0 {
                s.delete("b", &key).expect("delete");
            } else {
                s.set(
                    "b",
                    &key,
                    format!("{r}:{i}:{}", "v".repeat((i % 13) as usize * 10)).as_bytes(),
                )
                .expect("set");
            }
        }
        s.increment("n", "rounds", 1).expect("increment");
        s.set_many("m", &[("a", format!("{r}").as_bytes()), ("b", b"x")])
            .expect("set_many");
    }
}

#[test]
fn compaction_keeps_contents_and_reclaims_space() {
    let dir = TempDir::new("compact");
    let (s, _) = Store::open(dir.path(), small_segments()).expect("open");
    churn(&s, 20);
    let expected = contents(&s);
    let before = s.stats();
    assert!(before.segments > 5);
    let stats = s.compact().expect("compact");
    assert_eq!(contents(&s), expected);
    let after = s.stats();
    assert_eq!(stats.bytes_before, before.disk_bytes);
    assert_eq!(stats.bytes_after, after.disk_bytes);
    assert!(
        after.disk_bytes * 5 < before.disk_bytes,
        "{before:?} -> {after:?}"
    );
    assert_eq!(after.segments, segments(dir.path()).len());
    assert_eq!(stats.live_keys, after.live_keys);
    assert_eq!(stats.dropped_corrupt, 0);
    // The compacted store takes writes, compacts again, and reopens.
    s.set("b", "new", b"after").expect("set");
    s.compact().expect("second compaction");
    let mut expected = expected;
    expected.insert(("b".into(), "new".into()), b"after".to_vec());
    assert_eq!(contents(&s), expected);
    drop(s);
    let (s, report) = Store::open(dir.path(), small_segments()).expect("reopen");
    assert_eq!(contents(&s), expected);
    assert!(report.corrupt_ranges.is_empty());
    assert_eq!(report.recovered_records, expected.len() as u64);

    // Compacting an empty store leaves one empty segment.
    for (b, k) in expected.keys() {
        s.delete(b, k).expect("delete");
    }
    s.compact().expect("compact empty");
    assert_eq!(s.stats().disk_bytes, 0);
    assert_eq!(segments(dir.path()).len(), 1);
    drop(s);
    let (s, _) = Store::open(dir.path(), small_segments()).expect("reopen");
    assert!(contents(&s).is_empty());
}

/// The on-disk states a crash during compaction can leave, built by hand:
/// old and new generations side by side (the crash came after the renames,
/// before or during the deletions, which go oldest first), plus a
/// temporary file. Each opens to the same contents.
#[test]
fn interrupted_compaction_states_open_to_the_same_contents() {
    let dir = TempDir::new("gens");
    let (s, _) = Store::open(dir.path(), small_segments()).expect("open");
    churn(&s, 12);
    let expected = contents(&s);
    drop(s);
    let old_dir = TempDir::new("gens-old");
    copy_dir(dir.path(), old_dir.path());
    let old = segments(old_dir.path());
    let (s, _) = Store::open(dir.path(), small_segments()).expect("open");
    s.compact().expect("compact");
    drop(s);
    let new = segments(dir.path());
    assert!(old.len() > 3);
    for deleted in 0..=old.len() {
        let d = TempDir::new("gens-mix");
        copy_dir(dir.path(), d.path());
        for p in &old[deleted..] {
            std::fs::copy(p, d.path().join(p.file_name().expect("name"))).expect("copy");
        }
        std::fs::write(
            d.path().join(format!("{:08}.log.tmp", 99_999)),
            b"partial output",
        )
        .expect("tmp");
        let (s, report) = Store::open(d.path(), small_segments()).expect("open mix");
        assert_eq!(contents(&s), expected, "{deleted} old segments deleted");
        assert_eq!(report.removed_temp_files.len(), 1);
        assert_eq!(report.segments, new.len() + old.len() - deleted);
        // New writes land after both generations and win.
        s.set("b", "key01", b"newest").expect("set");
        drop(s);
        let (s, _) = Store::open(d.path(), small_segments()).expect("reopen");
        assert_eq!(
            s.get("b", "key01").expect("get").as_deref(),
            Some(&b"newest"[..])
        );
        s.compact().expect("compact the mix");
        let mut e2 = expected.clone();
        e2.insert(("b".into(), "key01".into()), b"newest".to_vec());
        assert_eq!(contents(&s), e2);
    }
}

#[test]
fn automatic_compaction_bounds_disk_use() {
    let dir = TempDir::new("auto");
    let cfg = Config {
        segment_max_bytes: 16 << 10,
        compaction: CompactionPolicy {
            auto: true,
            min_dead_bytes: 64 << 10,
            min_dead_percent: 50,
        },
        ..Config::default()
    };
    let (s, _) = Store::open(dir.path(), cfg).expect("open");
    let mut max_disk = 0;
    for i in 0..20_000u32 {
        s.set("b", &format!("k{}", i % 100), &[i as u8; 100])
            .expect("set");
        max_disk = max_disk.max(s.stats().disk_bytes);
    }
    let st = s.stats();
    assert!(st.compactions > 10, "{st:?}");
    // Live ~ 100 keys * ~125 bytes; dead is kept under max(64 KiB, live).
    assert!(
        max_disk < (64 << 10) + 2 * 16_000,
        "disk grew to {max_disk}"
    );
    assert_eq!(st.live_keys, 100);
    drop(s);
    let (s, _) = Store::open(dir.path(), cfg).expect("reopen");
    assert_eq!(
        s.get("b", "k99").expect("get"),
        Some(vec![(19_999u32) as u8; 100])
    );
}

/// The workload of the README: 10k sets of 100-byte values over 1k keys,
/// default settings. Write amplification = bytes appended to segment files
/// (records and compaction copies) / key+value bytes asked for.
#[test]
fn write_amplification_of_10k_sets_over_1k_keys() {
    let dir = TempDir::new("wa");
    let (s, _) = Store::open(dir.path(), Config::default()).expect("open");
    for i in 0..10_000u32 {
        s.set("b", &format!("key{:04}", i % 1000), &[i as u8; 100])
            .expect("set");
    }
    let st = s.stats();
    let wa = st.bytes_written as f64 / st.user_bytes_written as f64;
    println!("write amplification {wa:.3} ({st:?})");
    assert_eq!(st.user_bytes_written, 10_000 * 107);
    assert!(st.compactions >= 1);
    assert!(wa > 1.0 && wa < 1.6, "write amplification {wa}");
}
