//! An outbox written by an earlier build opens, with exactly its pending
//! records, cursor, id and seqs.
//!
//! `fixtures/outbox/` was written by `examples/write_fixture.rs` (added in
//! commit 531ec01) against the outbox code of commit 61ec23b, the last
//! build before the record framing moved into twig-seglog: class `events` (priority 5) got seqs 1..=30 in 4 KiB
//! segments and seqs 1..=17 were acknowledged (so its first segments are
//! gone and a cursor file says 17); class `logs` got seqs 1..=3. The test
//! opens a copy (opening may repair, and the fixture must stay as written).
mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{class, config, seqs, TempDir};
use twig_outbox::{DropPolicy, Outbox, OutboxConfig, MIN_SEGMENT_BYTES};

const CREATED_MS: u64 = 1_700_000_000_000;

fn fixture() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/outbox"
    ))
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read dir") {
        let e = e.expect("entry");
        let dest = to.join(e.file_name());
        if e.file_type().expect("file type").is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            std::fs::copy(e.path(), dest).expect("copy");
        }
    }
}

fn cfg(dir: &Path) -> OutboxConfig {
    let mut c = config(
        dir,
        vec![
            class("events", 5, DropPolicy::DropOldest),
            class("logs", 1, DropPolicy::RejectNew),
        ],
    );
    c.segment_bytes = MIN_SEGMENT_BYTES;
    c.clock = Some(Arc::new(|| CREATED_MS));
    c
}

#[test]
fn an_outbox_written_by_the_previous_build_opens_with_its_records() {
    let tmp = TempDir::new("fixture");
    let dir: PathBuf = tmp.path().join("outbox");
    copy_tree(fixture(), &dir);
    let ob = Outbox::open(cfg(&dir)).expect("open the fixture");
    assert_eq!(ob.id(), "5c4a23c88aa857bd");

    let st = ob.stats();
    assert_eq!(st.total_bytes, 6675);
    let events = &st.classes[0];
    assert_eq!(
        (
            events.pending_records,
            events.segments,
            events.corrupt_skipped
        ),
        (13, 2, 0)
    );
    let logs = &st.classes[1];
    assert_eq!(
        (logs.pending_records, logs.segments, logs.corrupt_skipped),
        (3, 1, 0)
    );

    let ev = ob.class("events").expect("events");
    let batch = ob.next_batch(100, usize::MAX).expect("batch");
    assert_eq!(seqs(&batch), (18..=30).collect::<Vec<u64>>());
    for r in &batch {
        assert_eq!(r.class, ev);
        assert_eq!(r.subject, format!("dev.events.{}", r.seq));
        assert_eq!(r.headers, vec![("n".to_string(), r.seq.to_string())]);
        assert_eq!(r.body, vec![r.seq as u8; 300]);
        assert_eq!(r.created_ms, CREATED_MS);
        assert_eq!(r.msg_id(&ob), format!("5c4a23c88aa857bd-events-{}", r.seq));
    }
    ob.ack(ev, 30).expect("ack");

    let lg = ob.class("logs").expect("logs");
    let batch = ob.next_batch(100, usize::MAX).expect("batch");
    assert_eq!(seqs(&batch), vec![1, 2, 3]);
    let bodies: Vec<&[u8]> = batch.iter().map(|r| r.body.as_slice()).collect();
    assert_eq!(bodies, vec![&b"line 1"[..], b"line 2", b"line 3"]);
    assert!(batch
        .iter()
        .all(|r| r.class == lg && r.subject == "dev.logs"));

    // Seqs carry on from the old files; what this build appends survives
    // a reopen.
    assert_eq!(
        ob.append(ev, "dev.events.new", &[], b"new")
            .expect("append"),
        31
    );
    assert_eq!(
        ob.append(lg, "dev.logs", &[], b"line 4").expect("append"),
        4
    );
    drop(ob);
    let ob = Outbox::open(cfg(&dir)).expect("reopen");
    let batch = ob.next_batch(100, usize::MAX).expect("batch");
    assert_eq!(seqs(&batch), vec![31]);
    assert_eq!(batch[0].body, b"new");
}
