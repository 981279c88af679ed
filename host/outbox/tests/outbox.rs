//! The outbox's behaviour through its public API and its files.

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use twig_outbox::{DropPolicy, Outbox, OutboxError, SyncPolicy, ID_FILE};

use DropPolicy::{DropOldest, RejectNew};

#[test]
fn round_trip_fifo_and_priority() {
    let dir = TempDir::new("roundtrip");
    let cfg = config(
        dir.path(),
        vec![class("low", 1, DropOldest), class("high", 5, DropOldest)],
    );
    let ob = Outbox::open(cfg).expect("open");
    let low = ob.class("low").expect("low");
    let high = ob.class("high").expect("high");
    assert_eq!(ob.class("nope"), None);
    assert!(ob.next_batch(10, usize::MAX).expect("empty").is_empty());

    let woken = Arc::new(AtomicUsize::new(0));
    let w = woken.clone();
    ob.set_waker(Box::new(move || {
        w.fetch_add(1, Ordering::SeqCst);
    }));

    let headers = vec![("content-type".to_string(), "text/plain".to_string())];
    for i in 1..=5u64 {
        let seq = ob
            .append(
                low,
                &format!("low.{i}"),
                &headers,
                format!("l{i}").as_bytes(),
            )
            .expect("append");
        assert_eq!(seq, i);
    }
    assert_eq!(woken.load(Ordering::SeqCst), 5);

    let b = ob.next_batch(2, usize::MAX).expect("batch");
    assert_eq!(seqs(&b), vec![1, 2]);
    assert_eq!(b[0].subject, "low.1");
    assert_eq!(b[0].headers, headers);
    assert_eq!(b[1].body, b"l2");
    assert_eq!(b[0].class, low);
    // Not acknowledged: the same records again.
    assert_eq!(ob.next_batch(2, usize::MAX).expect("batch"), b);
    ob.ack(low, 2).expect("ack");

    // A higher-priority record overtakes the backlog.
    ob.append(high, "alarm", &[], b"fire").expect("append");
    let b = ob.next_batch(10, usize::MAX).expect("batch");
    assert_eq!(b.len(), 1);
    assert_eq!(
        (b[0].class, b[0].seq, b[0].body.as_slice()),
        (high, 1, &b"fire"[..])
    );
    ob.ack(high, 1).expect("ack");

    let b = ob.next_batch(10, usize::MAX).expect("batch");
    assert_eq!(seqs(&b), vec![3, 4, 5]);
    assert!(b.iter().all(|r| r.class == low));
    // A byte budget smaller than one record still yields one record.
    assert_eq!(seqs(&ob.next_batch(10, 1).expect("batch")), vec![3]);
    ob.ack(low, 5).expect("ack");
    assert!(ob.next_batch(10, usize::MAX).expect("empty").is_empty());

    let st = ob.stats();
    assert_eq!(st.classes[low.0].appended, 5);
    assert_eq!(st.classes[low.0].delivered, 5);
    assert_eq!(st.classes[high.0].delivered, 1);
    assert_eq!(st.classes[low.0].pending_records, 0);
}

#[test]
fn equal_priorities_go_by_class_index() {
    let dir = TempDir::new("ties");
    let cfg = config(
        dir.path(),
        vec![class("a", 3, DropOldest), class("b", 3, DropOldest)],
    );
    let ob = Outbox::open(cfg).expect("open");
    let (a, b) = (ob.class("a").expect("a"), ob.class("b").expect("b"));
    append(&ob, b, b"b1");
    append(&ob, a, b"a1");
    let batch = ob.next_batch(10, usize::MAX).expect("batch");
    assert_eq!(batch.len(), 1);
    assert_eq!(batch[0].class, a);
}

#[test]
fn pending_before_sees_only_classes_served_first() {
    let dir = TempDir::new("before");
    let cfg = config(
        dir.path(),
        vec![
            class("bulk", 1, DropOldest),
            class("beat", 9, DropOldest),
            class("peer", 1, DropOldest),
        ],
    );
    let ob = Outbox::open(cfg).expect("open");
    let (bulk, beat, peer) = (
        ob.class("bulk").expect("bulk"),
        ob.class("beat").expect("beat"),
        ob.class("peer").expect("peer"),
    );
    append(&ob, bulk, b"x");
    assert!(!ob.pending_before(bulk), "nothing ahead of bulk yet");
    // Same priority, higher index: served after bulk, so not "before".
    append(&ob, peer, b"y");
    assert!(!ob.pending_before(bulk));
    assert!(ob.pending_before(peer), "bulk (lower index) comes first");
    append(&ob, beat, b"hb");
    assert!(ob.pending_before(bulk), "a higher priority is pending");
    assert!(!ob.pending_before(beat));
    let b = ob.next_batch(10, usize::MAX).expect("batch");
    assert_eq!(b[0].class, beat);
    ob.ack(beat, b[0].seq).expect("ack");
    assert!(!ob.pending_before(bulk), "the heartbeat is delivered");
}

#[test]
fn reopen_keeps_unacked_and_continues_seq() {
    let dir = TempDir::new("reopen");
    let mk = || {
        let mut c = config(dir.path(), vec![class("t", 1, DropOldest)]);
        c.segment_bytes = 4096;
        c.max_bytes = 1 << 20;
        c
    };
    {
        let ob = Outbox::open(mk()).expect("open");
        let t = ob.class("t").expect("t");
        for i in 0..100u32 {
            append(
                &ob,
                t,
                format!("record {i:04} {}", "x".repeat(60)).as_bytes(),
            );
        }
        let b = ob.next_batch(40, usize::MAX).expect("batch");
        assert_eq!(b.len(), 40);
        ob.ack(t, 40).expect("ack");
        // Handed out but not acknowledged: must come back.
        assert_eq!(ob.next_batch(5, usize::MAX).expect("batch").len(), 5);
    }
    {
        let ob = Outbox::open(mk()).expect("reopen");
        let t = ob.class("t").expect("t");
        assert_eq!(ob.stats().classes[0].pending_records, 60);
        let all = drain(&ob, 7);
        assert_eq!(seqs(&all), (41..=100).collect::<Vec<_>>());
        assert_eq!(
            all[0].body,
            format!("record 0040 {}", "x".repeat(60)).as_bytes()
        );
        assert_eq!(append(&ob, t, b"next"), 101);
        ob.ack(t, 101).expect("ack");
        assert!(
            segments(dir.path(), "t").is_empty(),
            "all acked, all deleted"
        );
    }
    // No segments left: the seq continues from the cursor.
    let ob = Outbox::open(mk()).expect("reopen");
    let t = ob.class("t").expect("t");
    assert!(ob.next_batch(10, usize::MAX).expect("empty").is_empty());
    assert_eq!(append(&ob, t, b"after"), 102);
}

fn one_class(dir: &std::path::Path) -> twig_outbox::OutboxConfig {
    config(dir, vec![class("t", 1, DropOldest)])
}

#[test]
fn torn_tail_is_truncated() {
    let dir = TempDir::new("torn");
    let n = 10u64;
    {
        let ob = Outbox::open(one_class(dir.path())).expect("open");
        let t = ob.class("t").expect("t");
        for i in 1..=n {
            append(&ob, t, format!("body {i}").as_bytes());
        }
    }
    let segs = segments(dir.path(), "t");
    assert_eq!(segs.len(), 1);
    let seg = &segs[0];
    let full_len = fs::metadata(seg).expect("meta").len();
    // Cut the last record short.
    OpenOptions::new()
        .write(true)
        .open(seg)
        .expect("open seg")
        .set_len(full_len - 3)
        .expect("truncate");
    {
        let ob = Outbox::open(one_class(dir.path())).expect("reopen after tear");
        let t = ob.class("t").expect("t");
        let len_after = fs::metadata(seg).expect("meta").len();
        assert!(len_after < full_len - 3, "torn record cut away");
        let b = ob.next_batch(100, usize::MAX).expect("batch");
        assert_eq!(seqs(&b), (1..n).collect::<Vec<_>>());
        // The torn record was never durably appended; its seq is free.
        assert_eq!(append(&ob, t, b"after tear"), n);
        let b = ob.next_batch(100, usize::MAX).expect("batch");
        assert_eq!(b.len(), n as usize);
        assert_eq!(b.last().expect("last").body, b"after tear");
        assert_eq!(ob.stats().classes[0].corrupt_skipped, 0);
    }
    // Garbage after the last record.
    let good_len = fs::metadata(seg).expect("meta").len();
    OpenOptions::new()
        .append(true)
        .open(seg)
        .expect("open seg")
        .write_all(&[0xB7, 1, 0, 0, 0xFF, 0xFF, 7, 9, 9, 9, 1, 2, 3])
        .expect("garbage");
    let ob = Outbox::open(one_class(dir.path())).expect("reopen after garbage");
    let t = ob.class("t").expect("t");
    assert_eq!(fs::metadata(seg).expect("meta").len(), good_len);
    assert_eq!(append(&ob, t, b"later"), n + 1);
    let all = drain(&ob, 3);
    assert_eq!(seqs(&all), (1..=n + 1).collect::<Vec<_>>());
}

#[test]
fn corruption_in_an_older_segment_is_skipped_and_counted() {
    let dir = TempDir::new("corrupt");
    let mk = || {
        let mut c = one_class(dir.path());
        c.segment_bytes = 4096;
        c
    };
    let n = 100u64;
    {
        let ob = Outbox::open(mk()).expect("open");
        let t = ob.class("t").expect("t");
        for i in 1..=n {
            append(&ob, t, format!("{i:05}{}", "y".repeat(150)).as_bytes());
        }
    }
    let segs = segments(dir.path(), "t");
    assert!(segs.len() >= 3, "{segs:?}");
    // Flip a byte in the middle of the first (sealed) segment.
    let mut bytes = fs::read(&segs[0]).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x40;
    fs::write(&segs[0], &bytes).expect("write");

    let ob = Outbox::open(mk()).expect("reopen");
    assert_eq!(ob.stats().classes[0].corrupt_skipped, 1);
    let all = drain(&ob, 16);
    let got = seqs(&all);
    // One record lost to the damage, every other one delivered in order.
    assert_eq!(got.len() as u64, n - 1, "{got:?}");
    assert!(got.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(*got.last().expect("last"), n);
    for r in &all {
        assert_eq!(
            r.body,
            format!("{:05}{}", r.seq, "y".repeat(150)).as_bytes()
        );
    }
    assert!(segments(dir.path(), "t").is_empty());
}

#[test]
fn drop_oldest_keeps_the_newest_within_the_cap() {
    let dir = TempDir::new("dropoldest");
    let mut cfg = one_class(dir.path());
    cfg.max_bytes = 16 << 10;
    cfg.segment_bytes = 4 << 10;
    cfg.sync = interval();
    let ob = Outbox::open(cfg).expect("open");
    let t = ob.class("t").expect("t");
    let n = 2000u64;
    for i in 1..=n {
        append(&ob, t, format!("{i:06}{}", "z".repeat(80)).as_bytes());
        let st = ob.stats();
        assert!(
            st.total_bytes <= st.max_bytes,
            "{} > {}",
            st.total_bytes,
            st.max_bytes
        );
        if i.is_multiple_of(97) {
            assert!(segment_bytes_on_disk(dir.path()) <= 16 << 10);
            assert_eq!(segment_bytes_on_disk(dir.path()), st.total_bytes);
        }
    }
    let all = drain(&ob, 50);
    let got = seqs(&all);
    assert!(!got.is_empty() && (got.len() as u64) < n);
    // The newest survive, contiguous and in order.
    assert_eq!(*got.last().expect("last"), n);
    assert!(
        got.windows(2).all(|w| w[1] == w[0] + 1),
        "gap in kept records"
    );
    let st = ob.stats();
    assert_eq!(st.classes[0].dropped_full, n - got.len() as u64);
    assert_eq!(st.classes[0].rejected_full, 0);
    assert_eq!(st.classes[0].appended, n);
}

#[test]
fn drop_oldest_takes_from_the_lowest_priority_class() {
    let dir = TempDir::new("dropvictim");
    let mut cfg = config(
        dir.path(),
        vec![class("bulk", 1, DropOldest), class("events", 9, DropOldest)],
    );
    cfg.max_bytes = 16 << 10;
    cfg.segment_bytes = 4 << 10;
    cfg.sync = interval();
    let ob = Outbox::open(cfg).expect("open");
    let (bulk, events) = (ob.class("bulk").expect("b"), ob.class("events").expect("e"));
    for _ in 0..100 {
        append(&ob, events, &[1u8; 40]);
    }
    for _ in 0..400 {
        append(&ob, bulk, &[2u8; 40]);
    }
    let st = ob.stats();
    assert_eq!(st.classes[events.0].dropped_full, 0);
    assert!(st.classes[bulk.0].dropped_full > 0);
    assert_eq!(st.classes[events.0].pending_records, 100);
}

#[test]
fn reject_new_refuses_and_loses_nothing() {
    let dir = TempDir::new("reject");
    let mut cfg = config(dir.path(), vec![class("r", 1, RejectNew)]);
    cfg.max_bytes = 16 << 10;
    cfg.segment_bytes = 4 << 10;
    cfg.sync = interval();
    let ob = Outbox::open(cfg).expect("open");
    let r = ob.class("r").expect("r");
    let mut ok = Vec::new();
    let mut rejected = 0;
    for i in 0..400u32 {
        match ob.append(r, "s", &[], format!("{i:04}{}", "q".repeat(60)).as_bytes()) {
            Ok(seq) => ok.push(seq),
            Err(OutboxError::Full { class, .. }) => {
                assert_eq!(class, "r");
                rejected += 1;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert!(rejected > 0 && !ok.is_empty());
    assert_eq!(ok, (1..=ok.len() as u64).collect::<Vec<_>>());
    let st = ob.stats();
    assert_eq!(st.classes[0].rejected_full, rejected);
    assert_eq!(st.classes[0].dropped_full, 0);
    assert!(st.total_bytes <= st.max_bytes);
    let all = drain(&ob, 100);
    assert_eq!(seqs(&all), ok);
    // Room again after delivery.
    assert!(ob.append(r, "s", &[], b"again").is_ok());
}

#[test]
fn too_large_is_refused() {
    let dir = TempDir::new("toolarge");
    let mut cfg = one_class(dir.path());
    cfg.max_bytes = 64 << 10;
    cfg.segment_bytes = 4 << 10;
    let ob = Outbox::open(cfg).expect("open");
    let t = ob.class("t").expect("t");
    let e = ob.append(t, "s", &[], &[0u8; 5000]).expect_err("too large");
    assert!(
        matches!(e, OutboxError::TooLarge { limit: 4096, .. }),
        "{e}"
    );
    assert_eq!(append(&ob, t, b"fine"), 1);
}

#[test]
fn ttl_expires_records_with_a_fake_clock() {
    let dir = TempDir::new("ttl");
    let clock = FakeClock::default();
    clock.set(1_000_000);
    let mut c = class("t", 1, DropOldest);
    c.ttl = Some(Duration::from_secs(10));
    let mut cfg = config(dir.path(), vec![c, class("keep", 0, DropOldest)]);
    clock.install(&mut cfg);
    let ob = Outbox::open(cfg).expect("open");
    let (t, keep) = (ob.class("t").expect("t"), ob.class("keep").expect("k"));
    for _ in 0..3 {
        append(&ob, t, b"old");
    }
    append(&ob, keep, b"no ttl");
    clock.set(1_005_000);
    append(&ob, t, b"new1");
    append(&ob, t, b"new2");
    assert_eq!(ob.stats().classes[t.0].oldest_pending_age_ms, Some(5_000));
    clock.set(1_012_000);
    let b = ob.next_batch(10, usize::MAX).expect("batch");
    assert_eq!(seqs(&b), vec![4, 5]);
    assert_eq!(b[0].body, b"new1");
    let st = ob.stats();
    assert_eq!(st.classes[t.0].expired, 3);
    assert_eq!(st.classes[t.0].pending_records, 2);
    ob.ack(t, 5).expect("ack");
    assert_eq!(ob.stats().classes[t.0].delivered, 2);
    // Everything past its TTL: skipped, the other class comes next.
    append(&ob, t, b"late");
    clock.set(1_100_000);
    let b = ob.next_batch(10, usize::MAX).expect("batch");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].class, keep);
    assert_eq!(ob.stats().classes[t.0].expired, 4);
    // Classes without a TTL never expire.
    assert_eq!(ob.stats().classes[keep.0].expired, 0);
}

#[test]
fn expired_segments_go_first_when_full() {
    let dir = TempDir::new("ttlfull");
    let clock = FakeClock::default();
    clock.set(50_000);
    let mut c = class("t", 1, RejectNew);
    c.ttl = Some(Duration::from_secs(1));
    let mut cfg = config(dir.path(), vec![c]);
    cfg.max_bytes = 16 << 10;
    cfg.segment_bytes = 4 << 10;
    cfg.sync = interval();
    clock.install(&mut cfg);
    let ob = Outbox::open(cfg).expect("open");
    let t = ob.class("t").expect("t");
    let mut n = 0u64;
    while ob.append(t, "s", &[], &[7u8; 100]).is_ok() {
        n += 1;
    }
    assert_eq!(ob.stats().classes[0].rejected_full, 1);
    clock.set(60_000);
    // Every stored record is past its TTL: whole segments make room.
    ob.append(t, "s", &[], b"fresh")
        .expect("room from expired segments");
    let st = ob.stats();
    assert!(st.classes[0].expired > 0);
    assert_eq!(st.classes[0].dropped_full, 0);
    let all = drain(&ob, 1000);
    assert_eq!(all.last().expect("fresh").body, b"fresh");
    // The n old records all expired (some with their segments, the rest
    // skipped by next_batch); only the fresh one was delivered.
    assert_eq!(all.len(), 1);
    let st = ob.stats();
    assert_eq!(st.classes[0].expired, n);
    assert_eq!(st.classes[0].delivered, 1);
}

#[test]
fn acked_segments_are_deleted() {
    let dir = TempDir::new("rotation");
    let mut cfg = one_class(dir.path());
    cfg.segment_bytes = 4096;
    let ob = Outbox::open(cfg).expect("open");
    let t = ob.class("t").expect("t");
    for _ in 0..200 {
        append(&ob, t, &[3u8; 100]);
    }
    let segs = segments(dir.path(), "t");
    assert!(segs.len() >= 5, "{}", segs.len());
    for s in &segs {
        assert!(fs::metadata(s).expect("meta").len() <= 4096);
    }
    // Acknowledge up to the middle of the third segment: the first two go.
    let third_first: u64 = segs[2]
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.parse().ok())
        .expect("name");
    ob.ack(t, third_first + 1).expect("ack");
    let left = segments(dir.path(), "t");
    assert_eq!(left, segs[2..].to_vec());
    assert_eq!(ob.stats().classes[0].segments, left.len());
    assert_eq!(
        ob.next_batch(1, usize::MAX).expect("batch")[0].seq,
        third_first + 2
    );
    drain(&ob, 64);
    assert!(segments(dir.path(), "t").is_empty());
    assert_eq!(ob.stats().total_bytes, 0);
}

#[test]
fn group_commit_with_eight_threads() {
    let dir = TempDir::new("group");
    let mut cfg = one_class(dir.path());
    cfg.sync = SyncPolicy::Always;
    cfg.segment_bytes = 64 << 10;
    let ob = Arc::new(Outbox::open(cfg).expect("open"));
    let t = ob.class("t").expect("t");
    let per = 150usize;
    let threads: Vec<_> = (0..8)
        .map(|k| {
            let ob = ob.clone();
            std::thread::spawn(move || {
                for i in 0..per {
                    ob.append(t, "s", &[], format!("{k}:{i}").as_bytes())
                        .expect("append");
                }
            })
        })
        .collect();
    for th in threads {
        th.join().expect("thread");
    }
    let st = ob.stats();
    assert_eq!(st.classes[0].appended, 8 * per as u64);
    assert_eq!(st.classes[0].pending_records, 8 * per as u64);
    let all = drain(&ob, 97);
    assert_eq!(seqs(&all), (1..=(8 * per) as u64).collect::<Vec<_>>());
    let mut next = [0usize; 8];
    for r in &all {
        let s = String::from_utf8(r.body.clone()).expect("utf8");
        let (k, i) = s.split_once(':').expect("k:i");
        let (k, i): (usize, usize) = (k.parse().expect("k"), i.parse().expect("i"));
        assert_eq!(i, next[k], "thread {k} out of order");
        next[k] += 1;
    }
    assert_eq!(next, [per; 8]);
    let st = ob.stats();
    assert_eq!(st.classes[0].delivered, 8 * per as u64);
    assert_eq!(st.classes[0].pending_records, 0);
}

#[test]
fn cursor_tmp_and_corrupt_cursor() {
    let dir = TempDir::new("cursor");
    {
        let ob = Outbox::open(one_class(dir.path())).expect("open");
        let t = ob.class("t").expect("t");
        for _ in 0..5 {
            append(&ob, t, b"r");
        }
        ob.ack(t, 2).expect("ack");
    }
    let class_dir = dir.path().join("t");
    // A cursor write that crashed before its rename.
    fs::write(class_dir.join("cursor.tmp"), b"half a curs").expect("tmp");
    {
        let ob = Outbox::open(one_class(dir.path())).expect("reopen");
        assert!(!class_dir.join("cursor.tmp").exists());
        assert_eq!(
            seqs(&ob.next_batch(10, usize::MAX).expect("b")),
            vec![3, 4, 5]
        );
    }
    // A damaged cursor: everything still on disk is sent again.
    let mut c = fs::read(class_dir.join("cursor")).expect("cursor");
    c[6] ^= 1;
    fs::write(class_dir.join("cursor"), &c).expect("write");
    let ob = Outbox::open(one_class(dir.path())).expect("reopen");
    let t = ob.class("t").expect("t");
    assert_eq!(
        seqs(&ob.next_batch(10, usize::MAX).expect("b")),
        vec![1, 2, 3, 4, 5]
    );
    assert_eq!(append(&ob, t, b"six"), 6);
    ob.ack(t, 6).expect("ack rewrites the cursor");
    drop(ob);
    let ob = Outbox::open(one_class(dir.path())).expect("reopen");
    assert!(ob.next_batch(10, usize::MAX).expect("b").is_empty());
}

#[test]
fn second_open_is_locked_out() {
    let dir = TempDir::new("lock");
    let ob = Outbox::open(one_class(dir.path())).expect("open");
    let Err(e) = Outbox::open(one_class(dir.path())) else {
        panic!("second open succeeded");
    };
    assert!(matches!(e, OutboxError::Locked { .. }), "{e}");
    assert!(
        e.to_string().contains(&dir.path().display().to_string()),
        "{e}"
    );
    drop(ob);
    Outbox::open(one_class(dir.path())).expect("open after close");
}

#[test]
fn msg_id_is_stable_across_reopen() {
    let dir = TempDir::new("msgid");
    let (id, mid) = {
        let ob = Outbox::open(one_class(dir.path())).expect("open");
        let t = ob.class("t").expect("t");
        append(&ob, t, b"x");
        let r = ob.next_batch(1, usize::MAX).expect("b").remove(0);
        let id = ob.id().to_string();
        assert_eq!(id.len(), 16);
        assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(r.msg_id(&ob), format!("{id}-t-1"));
        (id, r.msg_id(&ob))
    };
    let on_disk = fs::read_to_string(dir.path().join(ID_FILE)).expect("ID");
    assert_eq!(on_disk.trim_end(), id);
    let ob = Outbox::open(one_class(dir.path())).expect("reopen");
    assert_eq!(ob.id(), id);
    let r = ob.next_batch(1, usize::MAX).expect("b").remove(0);
    assert_eq!(ob.msg_id(&r), mid);
    // A different outbox gets a different id.
    let other = TempDir::new("msgid2");
    let ob2 = Outbox::open(one_class(other.path())).expect("open other");
    assert_ne!(ob2.id(), id);
}

#[test]
fn invalid_configs_are_refused() {
    let dir = TempDir::new("config");
    for name in ["", "Upper", "has space", "../x", &"a".repeat(33)] {
        let e = Outbox::open(config(dir.path(), vec![class(name, 1, DropOldest)]))
            .err()
            .expect("invalid name accepted");
        assert!(e.to_string().contains(&format!("{name:?}")), "{e}");
    }
    let e = Outbox::open(config(
        dir.path(),
        vec![class("a", 1, DropOldest), class("a", 2, DropOldest)],
    ))
    .err()
    .expect("duplicate accepted");
    assert!(e.to_string().contains("twice"), "{e}");
}

#[test]
fn stray_files_are_removed_on_open() {
    let dir = TempDir::new("stray");
    drop(Outbox::open(one_class(dir.path())).expect("open"));
    let junk = dir.path().join("t").join("00000000000000000001.seg.tmp");
    fs::write(&junk, b"junk").expect("junk");
    let ob = Outbox::open(one_class(dir.path())).expect("reopen");
    assert!(!junk.exists());
    let t = ob.class("t").expect("t");
    assert_eq!(append(&ob, t, b"ok"), 1);
}

#[test]
fn closing_soon_after_opening_does_not_wait_for_the_interval() {
    let dir = TempDir::new("quickclose");
    let mut cfg = one_class(dir.path());
    cfg.sync = SyncPolicy::Interval(Duration::from_secs(60));
    let started = std::time::Instant::now();
    for _ in 0..20 {
        drop(Outbox::open(cfg.clone()).expect("open"));
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}
