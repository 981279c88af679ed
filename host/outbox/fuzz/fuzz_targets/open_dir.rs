//! Writes the input as a class's segment file (and, when the first byte
//! says so, part of it as the class's cursor file) and opens the outbox.
//! Whatever the bytes, opening must return `Ok` or a clean error, never
//! panic. When it opens: every pending record can be read and
//! acknowledged, the outbox accepts an append, and a second open finds
//! exactly that one record pending.
#![no_main]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use twig_outbox::{ClassConfig, DropPolicy, Outbox, OutboxConfig, SyncPolicy};

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
        "twig-outbox-fuzz-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("t")).expect("scratch dir");
    Dir(d)
}

fn config(dir: &Path) -> OutboxConfig {
    let mut c = OutboxConfig::new(dir, vec![ClassConfig::new("t", 1, DropPolicy::DropOldest)]);
    c.max_bytes = 1 << 20;
    c.segment_bytes = 64 << 10;
    c.sync = SyncPolicy::Interval(Duration::from_secs(60));
    c
}

fn run(dir: &Path, data: &[u8]) {
    let (cursor, segment) = match data.split_first() {
        Some((&b, rest)) if b & 1 == 1 && rest.len() >= 16 => (Some(&rest[..16]), &rest[16..]),
        _ => (None, data),
    };
    if let Some(c) = cursor {
        std::fs::write(dir.join("t/cursor"), c).expect("write cursor");
    }
    std::fs::write(dir.join("t/00000000000000000001.seg"), segment).expect("write segment");
    let ob = match Outbox::open(config(dir)) {
        Ok(ob) => ob,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    let t = ob.class("t").expect("class t");
    loop {
        let batch = ob.next_batch(64, 1 << 20).expect("reading back what open accepted");
        let Some(last) = batch.last() else { break };
        ob.ack(t, last.seq).expect("ack");
    }
    assert_eq!(ob.stats().classes[0].pending_records, 0);
    let seq = match ob.append(t, "s", &[], b"after") {
        Ok(seq) => seq,
        // The input's seqs reached u64::MAX: a clean refusal is right.
        Err(twig_outbox::OutboxError::SequenceExhausted(_)) => return,
        Err(e) => panic!("append after recovery: {e}"),
    };
    drop(ob);
    let ob = Outbox::open(config(dir)).expect("an outbox that opened once opens again");
    let batch = ob.next_batch(64, 1 << 20).expect("next_batch");
    assert_eq!(batch.len(), 1, "exactly the appended record is pending");
    assert_eq!((batch[0].seq, batch[0].body.as_slice()), (seq, &b"after"[..]));
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    run(&dir.0, data);
});
