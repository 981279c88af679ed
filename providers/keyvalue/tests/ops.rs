//! Every operation's semantics, limits and thread safety.
#![forbid(unsafe_code)]

mod common;

use std::sync::Arc;

use common::{contents, entry, manual, TempDir};
use twig_keyvalue::{Config, Error, Store};

fn open(dir: &TempDir) -> Store {
    Store::open(dir.path(), manual()).expect("open").0
}

#[test]
fn every_operation_round_trips_and_survives_reopen() {
    let dir = TempDir::new("ops");
    let s = open(&dir);
    assert_eq!(s.get("b", "missing").expect("get"), None);
    assert!(!s.exists("b", "missing"));

    s.set("b", "k", b"v1").expect("set");
    assert_eq!(s.get("b", "k").expect("get").as_deref(), Some(&b"v1"[..]));
    assert!(s.exists("b", "k"));
    s.set("b", "k", b"v2").expect("overwrite");
    assert_eq!(s.get("b", "k").expect("get").as_deref(), Some(&b"v2"[..]));

    // Empty key, empty value, binary value, unicode key.
    s.set("b", "", b"").expect("empty");
    assert_eq!(s.get("b", "").expect("get"), Some(vec![]));
    let binary: Vec<u8> = (0..=255).collect();
    s.set("b", "bin", &binary).expect("binary");
    s.set("b", "schlüssel/✓", b"x").expect("unicode");

    s.delete("b", "k").expect("delete");
    assert_eq!(s.get("b", "k").expect("get"), None);
    assert!(!s.exists("b", "k"));
    s.delete("b", "k").expect("deleting a missing key is fine");

    s.set_many(
        "m",
        &[
            ("a", &b"1"[..]),
            ("b", &b"2"[..]),
            ("c", &b"3"[..]),
            ("a", &b"4"[..]),
        ],
    )
    .expect("set_many");
    assert_eq!(
        s.get_many("m", &["a", "b", "zz", "c"]).expect("get_many"),
        vec![
            Some(b"4".to_vec()),
            Some(b"2".to_vec()),
            None,
            Some(b"3".to_vec())
        ]
    );
    s.delete_many("m", &["a", "c", "nope"])
        .expect("delete_many");
    assert_eq!(
        s.get_many("m", &["a", "b", "c"]).expect("get_many"),
        vec![None, Some(b"2".to_vec()), None]
    );
    s.set_many::<&str, &[u8]>("m", &[]).expect("empty batch");
    s.delete_many::<&str>("m", &[]).expect("empty batch");

    assert!(s
        .compare_and_swap("c", "x", None, Some(b"1"))
        .expect("cas create"));
    assert!(!s
        .compare_and_swap("c", "x", None, Some(b"2"))
        .expect("cas must fail"));
    assert!(!s
        .compare_and_swap("c", "x", Some(b"9"), Some(b"2"))
        .expect("cas must fail"));
    assert!(s
        .compare_and_swap("c", "x", Some(b"1"), Some(b"2"))
        .expect("cas swap"));
    assert!(s
        .compare_and_swap("c", "y", None, None)
        .expect("cas absent stays absent"));
    assert!(s
        .compare_and_swap("c", "x", Some(b"2"), None)
        .expect("cas delete"));
    assert!(!s.exists("c", "x"));

    let bucket = s.bucket("h");
    bucket.set("one", b"1").expect("bucket set");
    assert_eq!(bucket.get("one").expect("get").as_deref(), Some(&b"1"[..]));
    assert_eq!(bucket.increment("n", 5).expect("increment"), 5);
    assert_eq!(bucket.stats().keys, 2);

    let expected = contents(&s);
    assert_eq!(
        expected,
        [
            entry("b", "", b""),
            entry("b", "bin", &binary),
            entry("b", "schlüssel/✓", b"x"),
            entry("h", "n", b"5"),
            entry("h", "one", b"1"),
            entry("m", "b", b"2"),
        ]
        .into_iter()
        .collect()
    );
    drop((s, bucket));
    let (s, report) = Store::open(dir.path(), manual()).expect("reopen");
    assert_eq!(contents(&s), expected);
    assert_eq!(report.truncated_tail_bytes, 0);
    assert!(report.corrupt_ranges.is_empty());
    assert_eq!(report.live_keys, 6);
}

#[test]
fn buckets_are_isolated() {
    let dir = TempDir::new("buckets");
    let s = open(&dir);
    s.set("a", "k", b"from a").expect("set");
    s.set("b", "k", b"from b").expect("set");
    assert_eq!(
        s.get("a", "k").expect("get").as_deref(),
        Some(&b"from a"[..])
    );
    assert_eq!(
        s.get("b", "k").expect("get").as_deref(),
        Some(&b"from b"[..])
    );
    s.delete("a", "k").expect("delete");
    assert_eq!(s.get("a", "k").expect("get"), None);
    assert_eq!(
        s.get("b", "k").expect("get").as_deref(),
        Some(&b"from b"[..])
    );
    assert_eq!(s.list_keys("a", None, 10).keys, Vec::<String>::new());
    assert_eq!(s.list_keys("b", None, 10).keys, vec!["k".to_string()]);
    assert_eq!(s.increment("a", "n", 1).expect("inc"), 1);
    assert_eq!(s.increment("b", "n", 10).expect("inc"), 10);
    assert_eq!(s.buckets(), vec!["a".to_string(), "b".to_string()]);
    assert_eq!(s.bucket_stats("b").keys, 2);
    assert_eq!(s.bucket_stats("b").live_bytes, (1 + 6 + 1 + 2) as u64);
    assert_eq!(s.bucket_stats("nope").keys, 0);
}

#[test]
fn list_keys_pages_with_a_cursor() {
    let dir = TempDir::new("list");
    let s = open(&dir);
    let mut keys: Vec<String> = (0..23).map(|i| format!("key{i:02}")).collect();
    for k in &keys {
        s.set("b", k, k.as_bytes()).expect("set");
    }
    s.set("other", "zzz", b"").expect("set");
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = s.list_keys("b", cursor.as_deref(), 5);
        assert!(page.keys.len() <= 5);
        seen.extend(page.keys);
        pages += 1;
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(seen, keys);
    assert_eq!(pages, 5);
    // An exact multiple of the page size ends without an empty page.
    let p = s.list_keys("b", Some("key17"), 5);
    assert_eq!(p.keys.len(), 5);
    assert_eq!(p.cursor, None);

    // Changes between pages: a deleted key is skipped, one added after the
    // cursor shows up, one added before it does not; nothing repeats.
    let first = s.list_keys("b", None, 10);
    s.delete("b", "key15").expect("delete");
    s.set("b", "key150", b"").expect("set");
    s.set("b", "key00a", b"").expect("set");
    let second = s.list_keys("b", first.cursor.as_deref(), 100);
    assert!(second.keys.contains(&"key150".to_string()));
    assert!(!second.keys.contains(&"key15".to_string()));
    assert!(!second.keys.contains(&"key00a".to_string()));
    assert_eq!(second.cursor, None);
    keys.retain(|k| k != "key15");
    keys.push("key150".into());
    keys.sort();
    let mut all = first.keys.clone();
    all.extend(second.keys);
    assert_eq!(
        all,
        keys[..]
            .iter()
            .filter(|k| *k != "key00a")
            .cloned()
            .collect::<Vec<_>>()
    );

    assert_eq!(s.list_keys("empty", None, 5), Default::default());
    assert_eq!(
        s.list_keys("b", None, 0).keys.len(),
        1,
        "a limit of 0 still makes progress"
    );
}

#[test]
fn increment_semantics() {
    let dir = TempDir::new("incr");
    let s = open(&dir);
    assert_eq!(s.increment("c", "n", 0).expect("missing key is 0"), 0);
    assert_eq!(s.get("c", "n").expect("get").as_deref(), Some(&b"0"[..]));
    assert_eq!(s.increment("c", "n", 3).expect("inc"), 3);
    assert_eq!(s.increment("c", "n", 4).expect("inc"), 7);
    assert_eq!(
        s.get("c", "n").expect("get").as_deref(),
        Some(&b"7"[..]),
        "stored as decimal text"
    );
    s.set("c", "text", b"42").expect("set");
    assert_eq!(
        s.increment("c", "text", 1).expect("a decimal value counts"),
        43
    );

    for bad in [
        &b"abc"[..],
        b"",
        b"-1",
        b" 1",
        b"1.5",
        b"18446744073709551616",
        &7u64.to_le_bytes(),
    ] {
        s.set("c", "bad", bad).expect("set");
        let e = s.increment("c", "bad", 1).expect_err("not a u64");
        assert!(matches!(e, Error::NotAnInteger { .. }), "{bad:?}: {e}");
        assert_eq!(
            s.get("c", "bad").expect("get").as_deref(),
            Some(bad),
            "unchanged"
        );
    }
    s.set("c", "max", u64::MAX.to_string().as_bytes())
        .expect("set");
    assert!(matches!(
        s.increment("c", "max", 1),
        Err(Error::Overflow { .. })
    ));
    assert_eq!(s.increment("c", "max", 0).expect("no overflow"), u64::MAX);
    drop(s);
    let s = open(&dir);
    assert_eq!(s.increment("c", "n", 1).expect("after reopen"), 8);
}

#[test]
fn concurrent_increments_are_atomic() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Store>();
    let dir = TempDir::new("threads");
    let s = open(&dir);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    s.increment("c", "n", 1).expect("increment");
                    s.set("t", &format!("{t}-{i}"), b"x").expect("set");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    assert_eq!(s.get("c", "n").expect("get").as_deref(), Some(&b"200"[..]));
    assert_eq!(s.bucket_stats("t").keys, 200);
}

#[test]
fn limits_give_clear_errors_and_change_nothing() {
    let dir = TempDir::new("limits");
    let cfg = Config {
        max_bytes: 1000,
        max_key_bytes: 16,
        max_value_bytes: 600,
        max_batch_bytes: 700,
        ..manual()
    };
    let (s, _) = Store::open(dir.path(), cfg).expect("open");
    s.set("b", "a", &[1; 500]).expect("fits");
    let before = contents(&s);
    let disk_before = s.stats().disk_bytes;

    let e = s.set("b", "c", &[2; 499]).expect_err("over max_bytes");
    assert!(
        matches!(
            e,
            Error::Full {
                would_be: 1001,
                limit: 1000
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("store full"), "{e}");
    let e = s
        .set_many("b", &[("x", &[0u8; 100][..]), ("y", &[0u8; 400][..])])
        .expect_err("batch over max_bytes");
    assert!(matches!(e, Error::Full { .. }), "{e}");
    assert!(matches!(
        s.set("b", &"k".repeat(17), b""),
        Err(Error::KeyTooLarge { len: 17, limit: 16 })
    ));
    assert!(matches!(
        s.set("b", "v", &[0; 601]),
        Err(Error::ValueTooLarge {
            len: 601,
            limit: 600
        })
    ));
    assert!(matches!(
        s.set(&"b".repeat(256), "k", b""),
        Err(Error::BucketNameTooLarge { .. })
    ));
    s.delete("b", "a").expect("delete");
    let e = s
        .set_many("b", &[("x", &[0u8; 400][..]), ("y", &[0u8; 400][..])])
        .expect_err("batch over max_batch_bytes");
    assert!(matches!(e, Error::BatchTooLarge { limit: 700, .. }), "{e}");
    s.set("b", "a", &[1; 500]).expect("put it back");
    assert_eq!(contents(&s), before);

    // Replacing a value with a smaller one is allowed even when full, and
    // an overwrite counts only the difference.
    s.set("b", "a", &[3; 600])
        .expect("overwrite within the limit");
    assert!(s.set("b", "b", &[3; 400]).is_err());
    s.set("b", "a", &[4; 10]).expect("shrink");
    s.set("b", "b", &[3; 400]).expect("room again");
    assert_eq!(s.stats().live_bytes, 1 + 10 + 1 + 400);
    drop(s);
    let (s, _) = Store::open(dir.path(), cfg).expect("reopen");
    assert_eq!(s.stats().live_bytes, 1 + 10 + 1 + 400);
    assert!(s.stats().disk_bytes > disk_before);
}

#[test]
fn full_store_is_unchanged_on_disk() {
    let dir = TempDir::new("full");
    let cfg = Config {
        max_bytes: 100,
        ..manual()
    };
    let (s, _) = Store::open(dir.path(), cfg).expect("open");
    s.set("b", "k", &[0; 98]).expect("set");
    let files = common::segments(dir.path());
    let sizes: Vec<u64> = files.iter().map(|p| common::file_len(p)).collect();
    assert!(matches!(
        s.set("b", "k2", &[0; 20]),
        Err(Error::Full { .. })
    ));
    assert!(matches!(s.increment("b", "n", 1), Err(Error::Full { .. })));
    assert_eq!(common::segments(dir.path()), files);
    assert_eq!(
        files
            .iter()
            .map(|p| common::file_len(p))
            .collect::<Vec<_>>(),
        sizes
    );
    drop(s);
    let (s, _) = Store::open(dir.path(), cfg).expect("reopen");
    assert_eq!(
        contents(&s),
        [entry("b", "k", &[0; 98])].into_iter().collect()
    );
}

#[test]
fn a_store_cannot_be_opened_twice() {
    let dir = TempDir::new("lock");
    let s = open(&dir);
    let e = Store::open(dir.path(), manual()).expect_err("second open");
    assert!(matches!(e, Error::Locked { .. }), "{e}");
    drop(s);
    let s = Arc::new(open(&dir));
    s.set("b", "k", b"v").expect("set");
}

#[test]
fn invalid_config_is_refused() {
    let dir = TempDir::new("config");
    let cfg = Config {
        segment_max_bytes: 10,
        ..Config::default()
    };
    assert!(matches!(
        Store::open(dir.path(), cfg),
        Err(Error::InvalidConfig(_))
    ));
    let cfg = Config {
        max_value_bytes: 1 << 30,
        ..Config::default()
    };
    assert!(matches!(
        Store::open(dir.path(), cfg),
        Err(Error::InvalidConfig(_))
    ));
}

/// `get_many_capped` adds up the values first (a key asked for twice counts
/// twice) and reads nothing when they are over the cap.
#[test]
fn get_many_capped_refuses_before_reading() {
    let dir = TempDir::new("capped");
    let s = open(&dir);
    s.set("b", "k", &[7u8; 1000]).expect("set");
    s.set("b", "small", b"xy").expect("set");
    let keys = ["k", "k", "small", "missing"];
    assert_eq!(
        s.get_many_capped("b", &keys, 2002).expect("read"),
        Ok(vec![
            Some(vec![7u8; 1000]),
            Some(vec![7u8; 1000]),
            Some(b"xy".to_vec()),
            None
        ])
    );
    assert_eq!(
        s.get_many_capped("b", &keys, 2001).expect("read"),
        Err(2002)
    );
    assert_eq!(
        s.get_many("b", &keys).expect("uncapped").len(),
        4,
        "get_many has no cap"
    );
}

/// Watchers hear of sets and of deletes of keys that existed, in order,
/// after each write; counters and no-op deletes are not announced; an
/// ended registration hears nothing more.
#[test]
fn watchers_hear_sets_and_deletes_but_not_counters() {
    use std::sync::Mutex;
    use twig_keyvalue::watch::{Event, Watcher};

    struct Log(Mutex<Vec<Event>>);
    impl Watcher for Log {
        fn notify(&self, event: Event) {
            self.0.lock().unwrap().push(event);
        }
    }
    let dir = TempDir::new("watch");
    let s = open(&dir);
    let log = Arc::new(Log(Mutex::new(Vec::new())));
    let id = s.watch(log.clone());
    s.set("b", "k", b"1").unwrap();
    s.delete("b", "missing").unwrap();
    s.increment("b", "n", 1).unwrap();
    s.set_many("b", &[("x", b"2".as_slice()), ("y", b"3".as_slice())])
        .unwrap();
    s.delete_many("b", &["x", "nope"]).unwrap();
    assert!(s
        .compare_and_swap("b", "k", Some(b"1"), Some(b"4"))
        .unwrap());
    assert!(!s
        .compare_and_swap("b", "k", Some(b"1"), Some(b"5"))
        .unwrap());
    s.delete("b", "k").unwrap();
    let set = |k: &str, v: &[u8]| Event::Set {
        bucket: "b".into(),
        key: k.into(),
        value: v.to_vec(),
    };
    let del = |k: &str| Event::Delete {
        bucket: "b".into(),
        key: k.into(),
    };
    assert_eq!(
        *log.0.lock().unwrap(),
        vec![
            set("k", b"1"),
            set("x", b"2"),
            set("y", b"3"),
            del("x"),
            set("k", b"4"),
            del("k")
        ]
    );
    assert!(s.unwatch(id));
    s.set("b", "after", b"z").unwrap();
    assert_eq!(log.0.lock().unwrap().len(), 6);
}
