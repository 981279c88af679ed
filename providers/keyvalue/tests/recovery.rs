//! Recovery on open: torn tails, damage in the middle, garbage, leftovers.
#![forbid(unsafe_code)]

mod common;

use std::path::{Path, PathBuf};

use common::{contents, copy_dir, entry, file_len, manual, segments, Contents, Rng, TempDir};
use twig_keyvalue::format::{self, Change, Op, Record};
use twig_keyvalue::{Config, CorruptRange, Error, Store};

fn open(dir: &Path) -> Store {
    Store::open(dir, manual()).expect("open").0
}

#[test]
fn write_drop_reopen_gives_the_same_contents() {
    let dir = TempDir::new("reopen");
    let s = open(dir.path());
    for i in 0..100 {
        s.set(&format!("b{}", i % 3), &format!("k{i}"), &vec![i as u8; i])
            .expect("set");
    }
    for i in (0..100).step_by(7) {
        s.delete(&format!("b{}", i % 3), &format!("k{i}"))
            .expect("delete");
    }
    let expected = contents(&s);
    drop(s);
    for _ in 0..2 {
        let (s, report) = Store::open(dir.path(), manual()).expect("reopen");
        assert_eq!(contents(&s), expected);
        assert_eq!(report.recovered_records, 115);
        assert_eq!(report.truncated_tail_bytes, 0);
        assert!(report.corrupt_ranges.is_empty());
    }
}

/// Builds a store, then writes `last`; returns the contents before and
/// after it, the log's bytes and where the last record starts.
fn with_last_record(dir: &Path, last: impl FnOnce(&Store)) -> (Contents, Contents, Vec<u8>, u64) {
    let s = open(dir);
    s.set("b", "a", b"first").expect("set");
    s.set("b", "b", &[0xC7; 300]).expect("set");
    s.delete("b", "a").expect("delete");
    s.set("c", "n", b"12").expect("set");
    let before = contents(&s);
    let seg = segments(dir);
    assert_eq!(seg.len(), 1);
    let start = file_len(&seg[0]);
    last(&s);
    let after = contents(&s);
    drop(s);
    let bytes = std::fs::read(&seg[0]).expect("read");
    (before, after, bytes, start)
}

fn check_every_cut(name: &str, last: impl FnOnce(&Store)) {
    let src = TempDir::new(name);
    let (before, after, bytes, start) = with_last_record(src.path(), last);
    assert!(bytes.len() as u64 > start + 20);
    let seg_name = segments(src.path())[0]
        .file_name()
        .expect("name")
        .to_owned();
    for cut in start..=bytes.len() as u64 {
        let dir = TempDir::new(name);
        let seg = dir.path().join(&seg_name);
        std::fs::write(&seg, &bytes[..cut as usize]).expect("write");
        let (s, report) =
            Store::open(dir.path(), manual()).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
        if cut == bytes.len() as u64 {
            assert_eq!(contents(&s), after);
            assert_eq!(report.truncated_tail_bytes, 0);
            continue;
        }
        assert_eq!(contents(&s), before, "cut at {cut}");
        assert_eq!(report.truncated_tail_bytes, cut - start, "cut at {cut}");
        assert!(report.corrupt_ranges.is_empty(), "cut at {cut}");
        assert_eq!(file_len(&seg), start, "the torn tail is cut away on disk");
        // The repaired log takes new writes and reopens cleanly.
        s.set("b", "later", b"ok").expect("write after repair");
        drop(s);
        let (s, report) = Store::open(dir.path(), manual()).expect("second reopen");
        assert_eq!(report.truncated_tail_bytes, 0);
        assert_eq!(
            s.get("b", "later").expect("get").as_deref(),
            Some(&b"ok"[..])
        );
        assert_eq!(contents(&s).len(), before.len() + 1);
    }
}

#[test]
fn a_torn_last_set_is_cut_away_at_every_byte_offset() {
    check_every_cut("torn-set", |s| {
        s.set("b", "new", &[0x5A; 200]).expect("set")
    });
}

#[test]
fn a_torn_last_batch_is_all_or_nothing_at_every_byte_offset() {
    check_every_cut("torn-batch", |s| {
        s.set_many(
            "b",
            &[
                ("x", &b"1"[..]),
                ("b", &b"replaced"[..]),
                ("y", &[7u8; 100][..]),
            ],
        )
        .expect("set_many");
    });
}

#[test]
fn a_torn_last_delete_is_cut_away_at_every_byte_offset() {
    check_every_cut("torn-delete", |s| s.delete("b", "b").expect("delete"));
}

/// Flips bytes (header and body) of record k of n, for every k: every
/// other record is recovered, and the report names the damaged range.
#[test]
fn damage_in_the_middle_is_reported_and_everything_else_recovered() {
    let src = TempDir::new("middle-src");
    let s = open(src.path());
    let seg = segments(src.path())[0].clone();
    let n = 12;
    let mut bounds = vec![0u64];
    for i in 0..n {
        s.set(
            "b",
            &format!("key{i:02}"),
            format!("value number {i}").as_bytes(),
        )
        .expect("set");
        bounds.push(file_len(&seg));
    }
    drop(s);
    let bytes = std::fs::read(&seg).expect("read");
    let seg_name = seg.file_name().expect("name").to_owned();
    for k in 0..n {
        let (start, end) = (bounds[k] as usize, bounds[k + 1] as usize);
        for pos in [start, start + 5, start + 13, start + 17, end - 1] {
            let dir = TempDir::new("middle");
            let mut bad = bytes.clone();
            bad[pos] ^= 0x20;
            let path = dir.path().join(&seg_name);
            std::fs::write(&path, &bad).expect("write");
            let (s, report) = Store::open(dir.path(), manual()).expect("open damaged store");
            let got = contents(&s);
            let expected: Contents = (0..n)
                .filter(|&i| i != k)
                .map(|i| {
                    entry(
                        "b",
                        &format!("key{i:02}"),
                        format!("value number {i}").as_bytes(),
                    )
                })
                .collect();
            assert_eq!(got, expected, "record {k}, byte {pos}");
            assert_eq!(report.recovered_records, n as u64 - 1);
            if k + 1 < n {
                assert_eq!(
                    report.corrupt_ranges,
                    vec![CorruptRange {
                        file: path.clone(),
                        offset: start as u64,
                        len: (end - start) as u64
                    }],
                    "record {k}, byte {pos}"
                );
                assert_eq!(report.truncated_tail_bytes, 0);
                assert_eq!(
                    file_len(&path),
                    bytes.len() as u64,
                    "damage in the middle is left for compaction"
                );
            } else {
                // The last record: indistinguishable from a torn write.
                assert!(report.corrupt_ranges.is_empty());
                assert_eq!(report.truncated_tail_bytes, (end - start) as u64);
            }
            // Compaction rewrites the survivors and drops the damage.
            s.compact().expect("compact");
            drop(s);
            let (s, report) = Store::open(dir.path(), manual()).expect("reopen");
            assert!(report.corrupt_ranges.is_empty());
            assert_eq!(contents(&s), expected);
        }
    }
}

#[test]
fn garbage_at_the_end_of_an_earlier_segment_is_reported_not_truncated() {
    let dir = TempDir::new("earlier");
    let cfg = Config {
        segment_max_bytes: 4096,
        ..manual()
    };
    let (s, _) = Store::open(dir.path(), cfg).expect("open");
    for i in 0..100 {
        s.set("b", &format!("k{i}"), &[1; 100]).expect("set");
    }
    let expected = contents(&s);
    drop(s);
    let segs = segments(dir.path());
    assert!(segs.len() > 2);
    let first_len = file_len(&segs[0]);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&segs[0])
        .expect("open");
    std::io::Write::write_all(&mut f, &[0xC7, 1, 0, 0, 9, 9]).expect("append");
    drop(f);
    let (s, report) = Store::open(dir.path(), cfg).expect("open");
    assert_eq!(contents(&s), expected);
    assert_eq!(
        report.corrupt_ranges,
        vec![CorruptRange {
            file: segs[0].clone(),
            offset: first_len,
            len: 6
        }]
    );
    assert_eq!(report.truncated_tail_bytes, 0);
}

/// A value damaged on flash after it was written is reported when read,
/// with the file and offset, never returned.
#[test]
fn a_value_damaged_after_open_is_reported_on_read() {
    let dir = TempDir::new("bitrot");
    let s = open(dir.path());
    s.set("b", "k1", &[0x11; 64]).expect("set");
    let seg = segments(dir.path())[0].clone();
    let k1_end = file_len(&seg);
    s.set("b", "k2", &[0x22; 64]).expect("set");
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes[k1_end as usize - 10] ^= 1;
    std::fs::write(&seg, &bytes).expect("write");
    let e = s.get("b", "k1").expect_err("damaged value");
    match &e {
        Error::Corrupt { path, offset, .. } => {
            assert_eq!(path, &seg);
            assert_eq!(*offset, 0);
        }
        other => panic!("{other}"),
    }
    assert!(e.to_string().contains("offset 0"), "{e}");
    assert_eq!(
        s.get("b", "k2").expect("intact").as_deref(),
        Some(&[0x22; 64][..])
    );
    assert!(s.increment("b", "k1", 1).is_err());
}

#[test]
fn an_unsupported_format_version_refuses_to_open_and_changes_nothing() {
    let dir = TempDir::new("version");
    let s = open(dir.path());
    s.set("b", "k", b"v").expect("set");
    drop(s);
    let seg = segments(dir.path())[0].clone();
    let mut rec = Vec::new();
    format::encode(
        &Record {
            seq: 99,
            op: Op::One(Change::Delete {
                bucket: "b",
                key: "k",
            }),
        },
        &mut rec,
    )
    .expect("encode");
    rec[1] = 2;
    let c = crc32fast::hash(&rec[..12]);
    rec[12..16].copy_from_slice(&c.to_le_bytes());
    let mut bytes = std::fs::read(&seg).expect("read");
    bytes.extend_from_slice(&rec);
    bytes.extend_from_slice(&[1, 2, 3]);
    std::fs::write(&seg, &bytes).expect("write");
    let e = Store::open(dir.path(), manual()).expect_err("newer format");
    assert!(
        matches!(e, Error::UnsupportedFormat { version: 2, .. }),
        "{e}"
    );
    assert_eq!(std::fs::read(&seg).expect("read"), bytes, "nothing was cut");
}

#[test]
fn a_leftover_temporary_segment_is_deleted() {
    let dir = TempDir::new("tmp");
    let s = open(dir.path());
    s.set("b", "k", b"v").expect("set");
    drop(s);
    let tmp = dir.path().join("00000002.log.tmp");
    std::fs::write(&tmp, b"half a compaction").expect("write");
    let (s, report) = Store::open(dir.path(), manual()).expect("open");
    assert_eq!(report.removed_temp_files, vec![tmp.clone()]);
    assert!(!tmp.exists());
    assert_eq!(contents(&s), [entry("b", "k", b"v")].into_iter().collect());
}

fn random_log(rng: &mut Rng) -> Vec<u8> {
    let mut out = Vec::new();
    let n = rng.below(12);
    for seq in 0..n {
        let key = format!("k{}", rng.below(6));
        let value: Vec<u8> = (0..rng.below(40)).map(|_| rng.next() as u8).collect();
        let change = if rng.below(4) == 0 {
            Change::Delete {
                bucket: "b",
                key: &key,
            }
        } else {
            Change::Set {
                bucket: "b",
                key: &key,
                value: &value,
            }
        };
        let op = if rng.below(3) == 0 {
            Op::Batch(vec![
                change,
                Change::Set {
                    bucket: "x",
                    key: "y",
                    value: b"z",
                },
            ])
        } else {
            Op::One(change)
        };
        format::encode(
            &Record {
                seq: rng.below(20).max(seq),
                op,
            },
            &mut out,
        )
        .expect("encode");
    }
    out
}

fn garbage(rng: &mut Rng) -> Vec<u8> {
    (0..rng.below(700))
        .map(|_| {
            let r = rng.next();
            if r.is_multiple_of(5) {
                format::MAGIC
            } else {
                (r >> 8) as u8
            }
        })
        .collect()
}

/// Random garbage, damaged logs and mixtures as segment files: opening
/// never panics; when it succeeds every listed key can be read, and a
/// second open finds nothing more to repair and the same contents.
#[test]
fn random_damage_never_panics_and_recovery_is_idempotent() {
    let mut rng = Rng::new(0x7769_6720_6b76);
    let mut opened = 0;
    for case in 0..1000 {
        let dir = TempDir::new("random");
        let nseg = 1 + rng.below(3);
        for i in 0..nseg {
            let mut bytes = match rng.below(4) {
                0 => garbage(&mut rng),
                1 => {
                    let mut b = random_log(&mut rng);
                    b.extend(garbage(&mut rng));
                    b.extend(random_log(&mut rng));
                    b
                }
                _ => random_log(&mut rng),
            };
            if !bytes.is_empty() {
                for _ in 0..rng.below(4) {
                    let at = rng.below(bytes.len() as u64) as usize;
                    bytes[at] ^= (rng.next() as u8) | 1;
                }
                if rng.below(2) == 0 {
                    let cut = rng.below(bytes.len() as u64 + 1) as usize;
                    bytes.truncate(cut);
                }
            }
            std::fs::write(dir.path().join(format!("{:08}.log", i + 1)), &bytes).expect("write");
        }
        let first = match Store::open(dir.path(), manual()) {
            Ok((s, _)) => contents(&s),
            Err(e) => {
                assert!(
                    matches!(e, Error::UnsupportedFormat { .. }),
                    "case {case}: {e}"
                );
                continue;
            }
        };
        opened += 1;
        let (s, report) = Store::open(dir.path(), manual()).expect("second open");
        assert_eq!(report.truncated_tail_bytes, 0, "case {case}");
        assert_eq!(contents(&s), first, "case {case}");
        s.compact().expect("compact");
        assert_eq!(contents(&s), first, "case {case}: compaction");
    }
    assert!(opened > 900, "only {opened} of 1000 opened");
}

#[test]
fn recovery_copes_with_a_copied_directory() {
    // Copy a live store's files elsewhere (as a backup would) and open it.
    let dir = TempDir::new("copy-src");
    let s = open(dir.path());
    s.set("b", "k", b"v").expect("set");
    let to = TempDir::new("copy-dst");
    let dst: PathBuf = to.path().join("store");
    copy_dir(dir.path(), &dst);
    drop(s);
    let (s, _) = Store::open(&dst, manual()).expect("open copy");
    assert_eq!(s.get("b", "k").expect("get").as_deref(), Some(&b"v"[..]));
}

/// `fuzz/seeds/log.bin` was written by a separate Python encoder following
/// the crate documentation's byte layout (zlib's CRC-32, hand-rolled
/// varints), so this checks the documented format, not just our own round
/// trip.
#[test]
fn a_log_written_from_the_documented_format_opens() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds");
    let dir = TempDir::new("documented");
    std::fs::copy(seeds.join("log.bin"), dir.path().join("00000001.log")).expect("copy");
    let (s, report) = Store::open(dir.path(), manual()).expect("open");
    assert_eq!(report.recovered_records, 5);
    let all: Vec<u8> = (0..=255).collect();
    assert_eq!(
        contents(&s),
        [
            entry("", "", &all),
            entry("x", "a", &[b'1'; 30]),
            entry("x", "b", b"")
        ]
        .into_iter()
        .collect()
    );
    drop(s);
    std::fs::copy(seeds.join("torn.bin"), dir.path().join("00000001.log")).expect("copy");
    let (s, report) = Store::open(dir.path(), manual()).expect("open torn");
    assert_eq!(report.recovered_records, 4);
    assert!(report.truncated_tail_bytes > 0);
    assert_eq!(s.buckets(), vec!["x".to_string()]);
}
