//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use twig_outbox::{ClassConfig, ClassId, DropPolicy, Outbox, OutboxConfig, Record, SyncPolicy};

/// A directory removed on drop.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        TempDir(
            tempfile::Builder::new()
                .prefix(&format!("twig-outbox-test-{name}-"))
                .tempdir()
                .expect("create temp dir"),
        )
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

pub fn class(name: &str, priority: u8, when_full: DropPolicy) -> ClassConfig {
    ClassConfig::new(name, priority, when_full)
}

pub fn config(dir: &Path, classes: Vec<ClassConfig>) -> OutboxConfig {
    OutboxConfig::new(dir, classes)
}

/// A clock the test moves by hand.
#[derive(Clone, Default)]
pub struct FakeClock(pub Arc<AtomicU64>);

impl FakeClock {
    pub fn set(&self, ms: u64) {
        self.0.store(ms, Ordering::SeqCst);
    }

    pub fn install(&self, cfg: &mut OutboxConfig) {
        let c = self.0.clone();
        cfg.clock = Some(Arc::new(move || c.load(Ordering::SeqCst)));
    }
}

pub fn interval() -> SyncPolicy {
    SyncPolicy::Interval(std::time::Duration::from_millis(50))
}

pub fn append(ob: &Outbox, class: ClassId, body: &[u8]) -> u64 {
    ob.append(class, "dev.telemetry", &[], body)
        .expect("append")
}

/// Sends everything: next_batch, ack, until empty. Returns what was sent.
pub fn drain(ob: &Outbox, max_records: usize) -> Vec<Record> {
    let mut all = Vec::new();
    loop {
        let batch = ob.next_batch(max_records, usize::MAX).expect("next_batch");
        let Some(last) = batch.last() else {
            return all;
        };
        ob.ack(last.class, last.seq).expect("ack");
        all.extend(batch);
    }
}

/// Segment files of a class, oldest first.
pub fn segments(dir: &Path, class: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join(class))
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "seg"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Bytes of every segment file under `dir`.
pub fn segment_bytes_on_disk(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).expect("read dir").flatten() {
        if e.path().is_dir() {
            for s in segments(dir, &e.file_name().to_string_lossy()) {
                total += std::fs::metadata(&s).expect("metadata").len();
            }
        }
    }
    total
}

/// The seqs of records.
pub fn seqs(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}
