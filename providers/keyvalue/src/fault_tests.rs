//! Disk faults and crashes injected through the storage seam: a write that
//! fails at every byte offset, failing fsyncs and truncations, and a crash
//! at every step of a compaction.

use std::sync::Arc;

use crate::io::faulty::FaultyStorage;
use crate::testutil::{contents, files, TempDir};
use crate::{CompactionPolicy, Config, Error, FsyncPolicy, Store};

fn config() -> Config {
    Config {
        segment_max_bytes: 4096,
        compaction: CompactionPolicy {
            auto: false,
            ..CompactionPolicy::default()
        },
        ..Config::default()
    }
}

fn open_faulty(dir: &TempDir, cfg: Config) -> (Store, FaultyStorage) {
    let fs = FaultyStorage::default();
    let (s, _) = Store::open_with(dir.path(), cfg, Arc::new(fs.clone())).expect("open");
    (s, fs)
}

fn seed(s: &Store) {
    for i in 0..5 {
        s.set("b", &format!("k{i}"), format!("value {i}").as_bytes())
            .expect("seed");
    }
    s.delete("b", "k3").expect("seed delete");
}

fn segment_bytes(dir: &TempDir) -> Vec<(String, Vec<u8>)> {
    files(dir.path())
        .into_iter()
        .filter(|f| f.ends_with(".log"))
        .map(|f| {
            let b = std::fs::read(dir.path().join(&f)).expect("read");
            (f, b)
        })
        .collect()
}

/// The disk fills after every possible number of bytes of a record: each
/// time the write fails with `DiskFull`, the store (in memory, on disk and
/// after reopening) is exactly as before, and stays writable.
#[test]
fn disk_full_at_every_byte_of_an_append_leaves_the_write_absent() {
    for batch in [false, true] {
        let dir = TempDir::new("diskfull");
        let (s, fs) = open_faulty(&dir, config());
        seed(&s);
        let before = contents(&s);
        let files_before = segment_bytes(&dir);
        let mut budget = 0u64;
        loop {
            fs.plan().write_budget = Some(budget);
            let r = if batch {
                s.set_many(
                    "b",
                    &[
                        ("n1", &b"first"[..]),
                        ("n2", &[7u8; 60][..]),
                        ("k0", &b"changed"[..]),
                    ],
                )
            } else {
                s.set("b", "new", &[0xC7; 60])
            };
            fs.plan().write_budget = None;
            match r {
                Ok(()) => break,
                Err(Error::DiskFull { .. }) => {}
                Err(e) => panic!("budget {budget}: unexpected error {e}"),
            }
            assert_eq!(contents(&s), before, "budget {budget}");
            assert!(!s.stats().read_only);
            assert_eq!(
                segment_bytes(&dir),
                files_before,
                "budget {budget}: log not rolled back"
            );
            budget += 1;
        }
        assert!(
            budget > 60,
            "the record was written in one go before the fault"
        );
        drop(s);
        let (s, report) = Store::open(dir.path(), config()).expect("reopen");
        assert_eq!(report.truncated_tail_bytes, 0);
        let after = contents(&s);
        if batch {
            assert_eq!(
                after.get(&("b".into(), "n1".into())).map(Vec::as_slice),
                Some(&b"first"[..])
            );
            assert_eq!(
                after.get(&("b".into(), "k0".into())).map(Vec::as_slice),
                Some(&b"changed"[..])
            );
        } else {
            assert_eq!(
                after.get(&("b".into(), "new".into())),
                Some(&vec![0xC7; 60])
            );
        }
        assert_eq!(after.len(), before.len() + if batch { 2 } else { 1 });
    }
}

/// When the disk fills and cutting the partial record away fails too, the
/// store turns read-only; reopening cuts the torn tail and gives the state
/// before the write.
#[test]
fn unrecoverable_fault_makes_the_store_read_only_and_reopen_repairs_it() {
    let dir = TempDir::new("readonly");
    let mut budget = 1u64;
    loop {
        let (s, fs) = open_faulty(&dir, config());
        if budget == 1 {
            seed(&s);
        }
        let before = contents(&s);
        {
            let mut p = fs.plan();
            p.write_budget = Some(budget);
            p.fail_set_len = true;
        }
        let r = s.set("b", "new", b"0123456789abcdef");
        if r.is_ok() {
            break;
        }
        assert!(matches!(r, Err(Error::DiskFull { .. })), "{r:?}");
        assert!(s.stats().read_only);
        {
            let mut p = fs.plan();
            p.write_budget = None;
            p.fail_set_len = false;
        }
        let again = s.set("b", "other", b"x");
        assert!(matches!(again, Err(Error::ReadOnly { .. })), "{again:?}");
        assert_eq!(
            contents(&s)
                .get(&("b".into(), "k0".into()))
                .map(Vec::as_slice),
            Some(&b"value 0"[..])
        );
        drop(s);
        let (s, report) = Store::open(dir.path(), config()).expect("reopen");
        assert_eq!(report.truncated_tail_bytes, budget, "budget {budget}");
        assert!(report.corrupt_ranges.is_empty());
        assert_eq!(contents(&s), before, "budget {budget}");
        budget += 1;
    }
    assert!(budget > 16);
}

/// A failed fsync under `Always`: the write is cut away and reported; the
/// store is unchanged and keeps working once the disk does. (If the cut
/// could not be synced either, the store would turn read-only: the record
/// might otherwise reappear on reopen.)
#[test]
fn failed_fsync_rolls_the_write_back() {
    let dir = TempDir::new("fsync");
    let (s, fs) = open_faulty(&dir, config());
    seed(&s);
    let before = contents(&s);
    // One fsync fails (the record's); the one after cutting it away works.
    fs.plan().fail_syncs = 1;
    let r = s.set("b", "k0", b"lost");
    assert!(matches!(r, Err(Error::Io { .. })), "{r:?}");
    assert_eq!(contents(&s), before);
    assert!(!s.stats().read_only);
    s.set("b", "k9", b"kept").expect("write after the fault");
    fs.plan().fail_syncs = 2;
    assert!(s.set("b", "k0", b"lost too").is_err());
    assert!(s.stats().read_only, "the cut-back could not be synced");
    drop(s);
    let (s, _) = Store::open(dir.path(), config()).expect("reopen");
    let mut expected = before;
    expected.insert(("b".into(), "k9".into()), b"kept".to_vec());
    assert_eq!(contents(&s), expected);
}

/// Under `Batched`, a failed fsync may have lost acknowledged writes: the
/// store refuses further writes rather than pretend otherwise.
#[test]
fn failed_batched_fsync_makes_the_store_read_only() {
    let dir = TempDir::new("batchedfsync");
    let cfg = Config {
        fsync: FsyncPolicy::Batched {
            max_delay_ms: 3_600_000,
            max_bytes: 1 << 30,
        },
        ..config()
    };
    let (s, fs) = open_faulty(&dir, cfg);
    s.set("b", "a", b"1").expect("set");
    assert!(s.stats().unsynced_bytes > 0);
    fs.plan().fail_syncs = 1;
    assert!(s.flush().is_err());
    assert!(matches!(s.set("b", "c", b"3"), Err(Error::ReadOnly { .. })));
    assert!(matches!(s.flush(), Err(Error::ReadOnly { .. })));
    // Reads still work.
    assert_eq!(s.get("b", "a").expect("get").as_deref(), Some(&b"1"[..]));
}

fn compaction_workload(s: &Store) {
    for round in 0..6u32 {
        for i in 0..40u32 {
            let key = format!("key-{i:03}");
            if (i + round) % 7 == 0 {
                s.delete("main", &key).expect("delete");
            } else {
                s.set(
                    "main",
                    &key,
                    format!("round {round} value {i} {}", "x".repeat(i as usize)).as_bytes(),
                )
                .expect("set");
            }
        }
        s.increment("counters", "rounds", 1).expect("increment");
    }
    s.set_many(
        "other",
        &[("a", &b"1"[..]), ("b", &b"2"[..]), ("c", &b"3"[..])],
    )
    .expect("set_many");
    s.delete_many("main", &["key-001", "key-002"])
        .expect("delete_many");
    // Keys set early and deleted late: their tombstones are in later
    // segments than their values.
    s.set("main", "key-001", b"back").expect("set");
}

/// A crash (the process stopping dead) after every step of a compaction:
/// writing each output, syncing it, renaming it, syncing the directory,
/// deleting each old segment. Every time, reopening gives exactly the
/// contents from before, and a compaction of the reopened store works.
#[test]
fn crash_at_every_compaction_step_reopens_to_the_same_contents() {
    let mut step = 0;
    let mut saw_both_generations = false;
    let mut saw_temp = false;
    loop {
        let dir = TempDir::new("compactcrash");
        let (s, _) = Store::open(dir.path(), config()).expect("open");
        compaction_workload(&s);
        let expected = contents(&s);
        assert!(
            s.stats().segments > 3,
            "the workload should span several segments"
        );
        let old_segments = files(dir.path());
        s.crash_after_compaction_steps(step);
        let done = s.compact();
        drop(s);
        if done.is_ok() {
            break;
        }
        let on_disk = files(dir.path());
        saw_temp |= on_disk.iter().any(|f| f.ends_with(".tmp"));
        saw_both_generations |= on_disk.iter().filter(|f| f.ends_with(".log")).count()
            > old_segments.len() - 1
            && on_disk
                .iter()
                .any(|f| !old_segments.contains(f) && f.ends_with(".log"));
        let (s, report) = Store::open(dir.path(), config()).expect("reopen after crash");
        assert_eq!(contents(&s), expected, "crash after step {step}");
        assert!(report.corrupt_ranges.is_empty(), "step {step}: {report:?}");
        assert!(!files(dir.path()).iter().any(|f| f.ends_with(".tmp")));
        s.compact().expect("compaction after the crash");
        assert_eq!(contents(&s), expected, "step {step}, compacted again");
        s.set("main", "after", b"crash")
            .expect("write after the crash");
        drop(s);
        let (s, _) = Store::open(dir.path(), config()).expect("reopen");
        let mut exp2 = expected.clone();
        exp2.insert(("main".into(), "after".into()), b"crash".to_vec());
        assert_eq!(contents(&s), exp2, "step {step}, reopened");
        step += 1;
    }
    assert!(step > 10, "only {step} crash points");
    assert!(saw_temp, "no crash left a temporary segment");
    assert!(
        saw_both_generations,
        "no crash left old and new segments side by side"
    );
}

/// The disk filling during a compaction aborts it cleanly: no temporary
/// files left, the old segments still the store, nothing lost.
#[test]
fn disk_full_during_compaction_leaves_the_store_unchanged() {
    let dir = TempDir::new("compactfull");
    let (s, fs) = open_faulty(&dir, config());
    compaction_workload(&s);
    let expected = contents(&s);
    let files_before = files(dir.path());
    let mut budget = 0;
    loop {
        fs.plan().write_budget = Some(budget);
        let r = s.compact();
        fs.plan().write_budget = None;
        if r.is_ok() {
            break;
        }
        assert!(matches!(r, Err(Error::DiskFull { .. })), "{r:?}");
        assert_eq!(files(dir.path()), files_before, "budget {budget}");
        assert_eq!(contents(&s), expected);
        assert!(!s.stats().read_only);
        budget += 97;
    }
    assert!(budget > 0);
    assert_eq!(contents(&s), expected);
    drop(s);
    let (s, _) = Store::open(dir.path(), config()).expect("reopen");
    assert_eq!(contents(&s), expected);
}

/// Under `Always` a lone write is fsynced before it returns (one fsync
/// each), and writers queued behind one another share fsyncs: 8 threads'
/// increments all land, in fewer fsyncs than increments, and survive a
/// reopen.
#[test]
fn concurrent_writes_share_fsyncs_and_all_survive() {
    let dir = TempDir::new("group");
    let (s, _fs) = open_faulty(&dir, config());
    for i in 0..10 {
        s.set("b", &format!("k{i}"), b"v").expect("set");
        assert_eq!(s.stats().fsyncs, i + 1, "a lone write gets its own fsync");
    }
    let before = s.stats().fsyncs;
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let s = s.clone();
            std::thread::spawn(move || {
                for _ in 0..100 {
                    s.increment("c", "n", 1).expect("increment");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("join");
    }
    let st = s.stats();
    assert_eq!(st.unsynced_bytes, 0);
    let fsyncs = st.fsyncs - before;
    assert!(
        fsyncs < 800,
        "{fsyncs} fsyncs for 800 increments: none shared"
    );
    eprintln!("800 increments from 8 threads took {fsyncs} fsyncs");
    drop(s);
    let (s, _) = Store::open(dir.path(), config()).expect("reopen");
    assert_eq!(s.get("c", "n").expect("get").as_deref(), Some(&b"800"[..]));
}

/// A group's fsync fails: every member gets the error and the whole group
/// is rolled back (index, file and counters), the store stays writable,
/// and a reopen finds neither write. The second writer read the first's
/// increment, so it must go too.
#[test]
fn a_failed_group_fsync_rolls_back_every_member() {
    let dir = TempDir::new("groupfail");
    let (s, fs) = open_faulty(&dir, config());
    seed(&s);
    s.set("c", "n", b"5").expect("set");
    let before = contents(&s);
    let stats_before = s.stats();
    fs.plan().fail_syncs = 1;

    // The first writer commits and, holding the lock, sees the second
    // queued behind it, so it hands the lock on and waits for the group.
    let mut second = None;
    let first = s.increment_then_queue("c", "n", 1, || {
        let s2 = s.clone();
        second = Some(std::thread::spawn(move || s2.increment("c", "n", 1)));
    });
    let second = second.expect("spawned").join().expect("join");
    assert!(matches!(first, Err(Error::Io { .. })), "{first:?}");
    assert!(matches!(second, Err(Error::Io { .. })), "{second:?}");

    assert_eq!(contents(&s), before);
    let st = s.stats();
    assert!(!st.read_only);
    assert_eq!(
        (st.disk_bytes, st.live_bytes, st.bytes_written),
        (
            stats_before.disk_bytes,
            stats_before.live_bytes,
            stats_before.bytes_written
        )
    );
    assert_eq!(s.increment("c", "n", 1).expect("increment"), 6);
    drop(s);
    let (s, report) = Store::open(dir.path(), config()).expect("reopen");
    assert_eq!(report.truncated_tail_bytes, 0, "the file was cut back");
    assert_eq!(s.get("c", "n").expect("get").as_deref(), Some(&b"6"[..]));
}

/// Automatic compaction as soon as a few KiB are dead: the background
/// compactor runs every few dozen writes.
fn auto_config() -> Config {
    Config {
        segment_max_bytes: 4096,
        compaction: CompactionPolicy {
            auto: true,
            min_dead_bytes: 4096,
            min_dead_percent: 50,
        },
        ..Config::default()
    }
}

/// A storage whose creation of compaction outputs (`*.log.tmp`) waits at
/// a gate (or fails while `fail` is set), so a test can hold a background
/// compaction in the middle of its copy.
#[derive(Clone, Default)]
struct GateStorage(Arc<Gate>);

#[derive(Default)]
struct Gate {
    state: std::sync::Mutex<GateState>,
    cv: std::sync::Condvar,
}

#[derive(Default)]
struct GateState {
    closed: bool,
    fail: bool,
    /// Outputs that reached the gate.
    arrived: u32,
}

impl Gate {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait_for_arrival(&self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        let mut g = self.lock();
        while g.arrived == 0 {
            let now = std::time::Instant::now();
            if now >= deadline {
                return false;
            }
            g = self
                .cv
                .wait_timeout(g, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    fn open(&self) {
        self.lock().closed = false;
        self.cv.notify_all();
    }
}

impl crate::io::Storage for GateStorage {
    fn create(&self, path: &std::path::Path) -> std::io::Result<Box<dyn crate::io::SegmentFile>> {
        if path.to_string_lossy().ends_with(".log.tmp") {
            let mut g = self.0.lock();
            g.arrived += 1;
            self.0.cv.notify_all();
            if g.fail {
                return Err(std::io::Error::from_raw_os_error(5));
            }
            while g.closed {
                g = self.0.cv.wait(g).unwrap_or_else(|e| e.into_inner());
            }
        }
        crate::io::RealStorage.create(path)
    }

    fn open(&self, path: &std::path::Path) -> std::io::Result<Box<dyn crate::io::SegmentFile>> {
        crate::io::RealStorage.open(path)
    }
}

/// Overwrites `n` counters' values `rounds` times (dead bytes pile up),
/// returning what the store should hold.
fn overwrite(s: &Store, tag: &str, n: u32, rounds: u32) -> crate::testutil::Contents {
    let mut expect = crate::testutil::Contents::new();
    for r in 0..rounds {
        for i in 0..n {
            let v = format!("{tag} round {r} key {i} {}", "y".repeat(40));
            s.set("b", &format!("k{i:02}"), v.as_bytes()).expect("set");
            expect.insert(("b".into(), format!("k{i:02}")), v.into_bytes());
        }
    }
    expect
}

/// The point of the background compactor: while a compaction is held in
/// the middle of its copy, writes (and reads, increments, deletes) go on
/// and complete; the compaction then finishes, its copies do not undo the
/// writes made meanwhile, and everything survives a reopen.
#[test]
fn writes_complete_while_a_background_compaction_is_held_mid_copy() {
    let dir = TempDir::new("bgheld");
    let gate = GateStorage::default();
    gate.0.lock().closed = true;
    let (s, _) = Store::open_with(dir.path(), auto_config(), Arc::new(gate.clone())).expect("open");
    let mut expect = overwrite(&s, "first", 20, 10);
    assert!(
        gate.0.wait_for_arrival(std::time::Duration::from_secs(10)),
        "no compaction started"
    );
    assert_eq!(s.stats().compactions, 0);
    // The compactor is parked inside its copy: these must not wait for it.
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || {
            let e = overwrite(&s, "meanwhile", 20, 5);
            let n = s.increment("c", "n", 7).expect("increment");
            s.delete("b", "k03").expect("delete");
            (e, n)
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !writer.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "writes stalled behind a held compaction"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let (meanwhile, n) = writer.join().expect("writer");
    assert_eq!(n, 7);
    expect.extend(meanwhile);
    expect.remove(&("b".into(), "k03".into()));
    expect.insert(("c".into(), "n".into()), b"7".to_vec());
    assert_eq!(s.stats().compactions, 0, "the compaction is still held");
    assert_eq!(contents(&s), expect);
    gate.0.open();
    s.wait_for_compaction();
    let st = s.stats();
    assert!(st.compactions >= 1, "{st:?}");
    assert!(!st.read_only);
    assert_eq!(contents(&s), expect);
    // The synchronous API still works alongside the background compactor.
    let stats = s.compact().expect("compact");
    assert_eq!(stats.live_keys, expect.len() as u64);
    assert_eq!(contents(&s), expect);
    assert_eq!(
        s.stats().segments,
        files(dir.path())
            .iter()
            .filter(|f| f.ends_with(".log"))
            .count()
    );
    drop(s);
    let (s, report) = Store::open(dir.path(), auto_config()).expect("reopen");
    assert!(report.removed_temp_files.is_empty());
    assert_eq!(contents(&s), expect);
}

/// A background compaction that fails (its output cannot be created)
/// leaves the store as it was and writable; the next one succeeds.
#[test]
fn a_failed_background_compaction_leaves_the_store_writable() {
    let dir = TempDir::new("bgfail");
    let gate = GateStorage::default();
    gate.0.lock().fail = true;
    let (s, _) = Store::open_with(dir.path(), auto_config(), Arc::new(gate.clone())).expect("open");
    let mut expect = overwrite(&s, "first", 20, 10);
    s.wait_for_compaction();
    assert!(gate.0.lock().arrived >= 1, "no compaction was attempted");
    let st = s.stats();
    assert_eq!(st.compactions, 0);
    assert!(!st.read_only);
    assert_eq!(contents(&s), expect);
    assert!(files(dir.path()).iter().all(|f| !f.ends_with(".tmp")));
    gate.0.lock().fail = false;
    expect.extend(overwrite(&s, "second", 20, 20));
    s.wait_for_compaction();
    assert!(s.stats().compactions >= 1);
    assert_eq!(contents(&s), expect);
    drop(s);
    let (s, _) = Store::open(dir.path(), auto_config()).expect("reopen");
    assert_eq!(contents(&s), expect);
}

/// A crash (the process stopping dead) at every step of a background
/// compaction, while writes go on: reopening shows every write that was
/// acknowledged, whatever mix of old segments, published copies and
/// temporary files the crash left.
#[test]
fn crash_at_every_background_compaction_step_keeps_every_acknowledged_write() {
    let mut step = 0;
    loop {
        let dir = TempDir::new("bgcrash");
        let (s, _) = Store::open(dir.path(), auto_config()).expect("open");
        s.crash_background_compaction_after(step);
        let mut acked = crate::testutil::Contents::new();
        'work: for r in 0..25u32 {
            for i in 0..12u32 {
                let key = format!("k{i:02}");
                let r = if (i + r) % 5 == 0 {
                    s.delete("b", &key).map(|()| None)
                } else {
                    let v = format!("round {r} key {i} {}", "z".repeat(i as usize * 3));
                    s.set("b", &key, v.as_bytes())
                        .map(|()| Some(v.into_bytes()))
                };
                match r {
                    Ok(Some(v)) => {
                        acked.insert(("b".into(), key), v);
                    }
                    Ok(None) => {
                        acked.remove(&("b".into(), key));
                    }
                    // The simulated crash turned the store read-only.
                    Err(Error::ReadOnly { .. }) => break 'work,
                    Err(e) => panic!("step {step}: {e}"),
                }
            }
        }
        s.wait_for_compaction();
        let st = s.stats();
        drop(s);
        let (s, _) = Store::open(dir.path(), auto_config()).expect("reopen");
        assert_eq!(contents(&s), acked, "step {step}");
        drop(s);
        if !st.read_only || st.compactions >= 1 {
            // The countdown outlasted a whole compaction: every step of
            // one has been crashed at.
            assert!(st.compactions >= 1, "step {step}: {st:?}");
            assert!(step > 5, "too few steps: {step}");
            break;
        }
        step += 1;
        assert!(step < 10_000);
    }
}
