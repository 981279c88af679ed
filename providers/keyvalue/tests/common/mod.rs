//! Helpers shared by the integration tests and, through `#[path]` in
//! lib.rs, by the crate's unit tests (which reach the crate as
//! `twig_keyvalue` thanks to `extern crate self`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use twig_keyvalue::{CompactionPolicy, Config, Store};

/// A directory removed on drop.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        TempDir(
            tempfile::Builder::new()
                .prefix(&format!("twig-kv-test-{name}-"))
                .tempdir()
                .expect("create temp dir"),
        )
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

pub type Contents = BTreeMap<(String, String), Vec<u8>>;

/// Everything in the store, read through `list_keys` (in pages) and `get`.
pub fn contents(store: &Store) -> Contents {
    let mut all = BTreeMap::new();
    for b in store.buckets() {
        let mut cursor: Option<String> = None;
        loop {
            let page = store.list_keys(&b, cursor.as_deref(), 5);
            for k in &page.keys {
                let v = store
                    .get(&b, k)
                    .expect("get")
                    .expect("listed key has a value");
                assert!(
                    all.insert((b.clone(), k.clone()), v).is_none(),
                    "key listed twice"
                );
            }
            match page.cursor {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
    }
    all
}

pub fn entry(b: &str, k: &str, v: &[u8]) -> ((String, String), Vec<u8>) {
    ((b.to_string(), k.to_string()), v.to_vec())
}

/// Names of the files in `dir`, sorted.
pub fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Sorted names of the segment files in `dir`.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    v.sort();
    v
}

pub fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).expect("metadata").len()
}

/// Defaults, with automatic compaction off so tests decide when it runs.
pub fn manual() -> Config {
    Config {
        compaction: CompactionPolicy {
            auto: false,
            ..CompactionPolicy::default()
        },
        ..Config::default()
    }
}

/// Copies every file of `from` into `to` (created).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

/// A small deterministic PRNG (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}
