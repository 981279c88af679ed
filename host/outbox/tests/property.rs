//! Random sequences of append / next_batch / ack / reopen checked against
//! an in-memory model of what the outbox must deliver.

mod common;

use std::collections::VecDeque;

use common::*;
use twig_outbox::{DropPolicy, Outbox, OutboxConfig, SyncPolicy};

/// xorshift64*: deterministic, no dependencies.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct ModelClass {
    priority: u8,
    next_seq: u64,
    pending: VecDeque<(u64, Vec<u8>)>,
}

fn run(seed: u64, steps: usize) {
    let dir = TempDir::new(&format!("prop{seed}"));
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let priorities = [2u8, 5, 5];
    let sync = if seed.is_multiple_of(2) {
        SyncPolicy::Always
    } else {
        interval()
    };
    let mk = || {
        let mut c: OutboxConfig = config(
            dir.path(),
            priorities
                .iter()
                .enumerate()
                .map(|(i, &p)| class(&format!("c{i}"), p, DropPolicy::DropOldest))
                .collect(),
        );
        c.max_bytes = 4 << 20;
        c.segment_bytes = 4096;
        c.sync = sync;
        c
    };
    let mut model: Vec<ModelClass> = priorities
        .iter()
        .map(|&p| ModelClass {
            priority: p,
            next_seq: 1,
            pending: VecDeque::new(),
        })
        .collect();
    let mut ob = Outbox::open(mk()).expect("open");
    let mut delivered = 0u64;

    for step in 0..steps {
        let op = rng.below(100);
        if op < 45 {
            let c = rng.below(3) as usize;
            let len = rng.below(300) as usize;
            let body: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let seq = ob
                .append(twig_outbox::ClassId(c), &format!("s.{c}"), &[], &body)
                .expect("append");
            let m = &mut model[c];
            assert_eq!(seq, m.next_seq, "seed {seed} step {step}: seq");
            m.next_seq += 1;
            m.pending.push_back((seq, body));
        } else if op < 85 {
            let max_records = 1 + rng.below(10) as usize;
            let max_bytes = if rng.below(2) == 0 {
                usize::MAX
            } else {
                1 + rng.below(2000) as usize
            };
            let batch = ob.next_batch(max_records, max_bytes).expect("next_batch");
            // The class the model says goes next.
            let expect_class = (0..model.len())
                .filter(|&i| !model[i].pending.is_empty())
                .min_by_key(|&i| (std::cmp::Reverse(model[i].priority), i));
            let Some(c) = expect_class else {
                assert!(
                    batch.is_empty(),
                    "seed {seed} step {step}: batch from nothing"
                );
                continue;
            };
            assert!(!batch.is_empty(), "seed {seed} step {step}: empty batch");
            assert!(batch.len() <= max_records);
            if max_bytes == usize::MAX {
                assert_eq!(batch.len(), max_records.min(model[c].pending.len()));
            }
            for (r, (seq, body)) in batch.iter().zip(model[c].pending.iter()) {
                assert_eq!(r.class.0, c, "seed {seed} step {step}: class");
                assert_eq!(r.seq, *seq, "seed {seed} step {step}: seq");
                assert_eq!(&r.body, body, "seed {seed} step {step}: body");
                assert_eq!(r.subject, format!("s.{c}"));
            }
            match rng.below(3) {
                0 => {} // the sender failed: no ack
                1 => {
                    let upto = batch.last().expect("last").seq;
                    ob.ack(batch[0].class, upto).expect("ack");
                    for _ in 0..batch.len() {
                        model[c].pending.pop_front();
                    }
                    delivered += batch.len() as u64;
                }
                _ => {
                    let k = rng.below(batch.len() as u64) as usize;
                    ob.ack(batch[0].class, batch[k].seq).expect("ack");
                    for _ in 0..=k {
                        model[c].pending.pop_front();
                    }
                    delivered += k as u64 + 1;
                }
            }
        } else if op < 95 {
            drop(ob);
            ob = Outbox::open(mk()).expect("reopen");
            delivered = 0; // counters restart with the outbox
        } else {
            let st = ob.stats();
            for (i, m) in model.iter().enumerate() {
                assert_eq!(
                    st.classes[i].pending_records,
                    m.pending.len() as u64,
                    "seed {seed} step {step}: pending of class {i}"
                );
            }
            let d: u64 = st.classes.iter().map(|c| c.delivered).sum();
            assert_eq!(d, delivered, "seed {seed} step {step}: delivered");
            assert_eq!(st.total_bytes, segment_bytes_on_disk(dir.path()));
        }
    }
    // Whatever is left comes out in priority order, then nothing.
    let rest = drain(&ob, 16);
    let expected: usize = model.iter().map(|m| m.pending.len()).sum();
    assert_eq!(rest.len(), expected, "seed {seed}: leftovers");
    for r in &rest {
        let (seq, body) = model[r.class.0].pending.pop_front().expect("model has it");
        assert_eq!(
            (r.seq, &r.body),
            (seq, &body),
            "seed {seed}: leftover order"
        );
    }
    assert_eq!(ob.stats().total_bytes, 0);
}

#[test]
fn random_operations_match_the_model() {
    for seed in 1..=8 {
        run(seed, 400);
    }
}
