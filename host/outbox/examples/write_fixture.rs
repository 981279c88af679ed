//! Writes the outbox directory that `tests/fixtures.rs` opens: run once
//! (`cargo run -p twig-outbox --example write_fixture -- DIR`) by the build
//! whose on-disk format later builds must keep reading. The committed
//! `tests/fixtures/outbox/` was written by commit 531ec01 (the outbox code
//! of 61ec23b, before the segment-log crate), so it checks that bytes from
//! that build open.
use std::sync::Arc;

use twig_outbox::{ClassConfig, DropPolicy, Outbox, OutboxConfig, SyncPolicy, MIN_SEGMENT_BYTES};

fn main() {
    let dir = std::env::args().nth(1).expect("usage: write_fixture DIR");
    let mut cfg = OutboxConfig::new(
        &dir,
        vec![
            ClassConfig::new("events", 5, DropPolicy::DropOldest),
            ClassConfig::new("logs", 1, DropPolicy::RejectNew),
        ],
    );
    // Small segments, so a class spans several files; a fixed clock, so
    // created_ms is known.
    cfg.segment_bytes = MIN_SEGMENT_BYTES;
    cfg.sync = SyncPolicy::Always;
    cfg.clock = Some(Arc::new(|| 1_700_000_000_000));
    let ob = Outbox::open(cfg).expect("open");
    let events = ob.class("events").expect("events");
    let logs = ob.class("logs").expect("logs");
    for i in 1..=30u32 {
        let headers = vec![("n".to_string(), i.to_string())];
        ob.append(
            events,
            &format!("dev.events.{i}"),
            &headers,
            &[i as u8; 300],
        )
        .expect("append");
    }
    for i in 1..=3u32 {
        ob.append(logs, "dev.logs", &[], format!("line {i}").as_bytes())
            .expect("append");
    }
    // Deliver the first 17 events: the cursor moves and the segments it
    // wholly covers are deleted.
    let batch = ob.next_batch(17, usize::MAX).expect("batch");
    assert_eq!(batch.len(), 17);
    ob.ack(events, 17).expect("ack");
    let st = ob.stats();
    eprintln!("wrote {dir}: id {}, {:?}", ob.id(), st);
}
