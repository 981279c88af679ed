//! Writes the input as the only segment file of a fresh store directory and
//! opens it. Whatever the bytes, opening must return `Ok` or a clean error,
//! never panic; when it opens, every listed key must read back (so the
//! index never points at bytes that fail their checksum), a second open
//! must find nothing left to repair and the same contents, and compaction
//! must keep them.
#![no_main]
#![forbid(unsafe_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use libfuzzer_sys::fuzz_target;
use twig_keyvalue::{CompactionPolicy, Config, Store};

fn config() -> Config {
    Config {
        compaction: CompactionPolicy {
            auto: false,
            ..CompactionPolicy::default()
        },
        ..Config::default()
    }
}

fn contents(s: &Store) -> BTreeMap<(String, String), Vec<u8>> {
    let mut all = BTreeMap::new();
    for b in s.buckets() {
        let mut cursor: Option<String> = None;
        loop {
            let page = s.list_keys(&b, cursor.as_deref(), 64);
            for k in &page.keys {
                let v = s
                    .get(&b, k)
                    .expect("a listed key must read back")
                    .expect("a listed key must have a value");
                all.insert((b.clone(), k.clone()), v);
            }
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
    all
}

struct Dir(PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn scratch() -> Dir {
    static N: AtomicUsize = AtomicUsize::new(0);
    let base = std::env::var_os("TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let d = base.join(format!(
        "twig-kv-fuzz-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("scratch dir");
    Dir(d)
}

fn run(dir: &Path, data: &[u8]) {
    std::fs::write(dir.join("00000001.log"), data).expect("write segment");
    let first = match Store::open(dir, config()) {
        Ok((s, _)) => contents(&s),
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let (s, report) = Store::open(dir, config()).expect("a store that opened once opens again");
    assert_eq!(
        report.truncated_tail_bytes, 0,
        "the first open left a torn tail"
    );
    assert_eq!(contents(&s), first);
    s.compact().expect("compaction");
    assert_eq!(contents(&s), first);
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    run(&dir.0, data);
});
