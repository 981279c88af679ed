//! Framing and recovery over any bytes, two ways.
//!
//! 1. The input as a segment, scanned with both unsupported-header rules
//!    and both orders: never a panic; the events tile the input; every
//!    record event is an intact record where it says; damage is followed
//!    by a record (or an unsupported header), a tail comes last; an
//!    ordered scan's seqs rise; cutting the tail away and scanning again
//!    finds the same records and nothing to cut (recovery is idempotent);
//!    `find_next` agrees with where the scan resumed.
//! 2. The input as a recipe: records framed from its bytes, the log cut
//!    and one byte flipped where it says. The whole log scans to exactly
//!    its records; after the damage, every record before the damaged byte
//!    is still found, in order.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twig_seglog::scan::test_codec::{record, Seq};
use twig_seglog::{find_next, parse, Codec, Event, Order, Scanner};

type Rec<'a> = (u64, &'a [u8]);

fn check<C: for<'a> Codec<Record<'a> = Rec<'a>>>(data: &[u8], order: Order) -> Vec<u64> {
    let mut covered = 0;
    let mut seqs = Vec::new();
    let mut tail_at = None;
    let mut prev_damage = false;
    let mut after_damage = None;
    for ev in Scanner::<C>::with_order(data, order) {
        assert!(tail_at.is_none(), "an event after the tail");
        let (off, len) = match ev {
            Event::Record {
                offset,
                len,
                record,
            } => {
                let (again, n) = parse::<C>(&data[offset..]).expect("a record event parses");
                assert_eq!((again, n), (record, len));
                if let Order::Increasing { after } = order {
                    assert!(record.0 > seqs.last().copied().unwrap_or(after));
                }
                if prev_damage {
                    after_damage.get_or_insert(offset);
                }
                seqs.push(record.0);
                prev_damage = false;
                (offset, len)
            }
            Event::Corrupt { offset, len } => {
                assert!(len > 0 && !prev_damage, "damage comes in one piece");
                prev_damage = true;
                (offset, len)
            }
            Event::Tail { offset, len } => {
                assert!(len > 0);
                tail_at = Some(offset);
                (offset, len)
            }
            Event::Unsupported { offset, .. } => {
                tail_at = Some(offset);
                (offset, data.len() - offset)
            }
        };
        assert_eq!(off, covered, "events tile the input");
        covered += len;
    }
    assert_eq!(covered, data.len());
    assert!(!prev_damage || tail_at.is_some(), "damage is followed by something");
    if let (Order::Any, Some(first)) = (order, after_damage) {
        // The scan resumed there; a search from the start of the buffer
        // finds it or something before it.
        let at = find_next::<C>(data, 0, order).expect("a record exists");
        assert!(at <= first);
    }
    if let Some(t) = tail_at {
        if matches!(Scanner::<C>::with_order(&data[t..], order).next(), Some(Event::Tail { .. })) {
            // Recovery cuts the tail; the rest scans to the same records.
            let mut again = Vec::new();
            for ev in Scanner::<C>::with_order(&data[..t], order) {
                match ev {
                    Event::Record { record, .. } => again.push(record.0),
                    Event::Tail { .. } => panic!("a cut log has a tail again"),
                    _ => {}
                }
            }
            assert_eq!(again, seqs);
        }
    }
    seqs
}

fn recipe(data: &[u8]) {
    let Some((&[n, cut_hi, cut_lo, flip], rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let n = (n % 16) as usize;
    let mut log = Vec::new();
    let mut starts = Vec::new();
    let chunk = rest.len() / n.max(1);
    for i in 0..n {
        starts.push(log.len());
        record(i as u64 + 1, &rest[i * chunk..(i + 1) * chunk], &mut log);
    }
    let whole: Vec<u64> = (1..=n as u64).collect();
    assert_eq!(check::<Seq<true>>(&log, Order::Any), whole);
    assert_eq!(check::<Seq<false>>(&log, Order::Increasing { after: 0 }), whole);
    if log.is_empty() {
        return;
    }
    let cut = (usize::from(cut_hi) << 8 | usize::from(cut_lo)) % (log.len() + 1);
    let mut torn = log[..cut].to_vec();
    let flip_at = (usize::from(flip) * 31) % (torn.len() + 1);
    if flip != 0 && flip_at < torn.len() {
        torn[flip_at] ^= flip;
    }
    let found = check::<Seq<true>>(&torn, Order::Increasing { after: 0 });
    // Every record wholly before the cut and the flipped byte is found, in
    // order, first. (After the damage a payload that is itself a frame may
    // be found: it is not inside any intact record, so nothing says it is
    // not one.)
    let untouched = starts
        .iter()
        .zip(starts.iter().skip(1).chain(std::iter::once(&log.len())))
        .take_while(|&(_, &e)| e <= cut && (flip == 0 || e <= flip_at))
        .count();
    assert!(found.len() >= untouched);
    assert_eq!(&found[..untouched], &whole[..untouched]);
}

fuzz_target!(|data: &[u8]| {
    check::<Seq<true>>(data, Order::Any);
    check::<Seq<false>>(data, Order::Any);
    check::<Seq<true>>(data, Order::Increasing { after: 0 });
    check::<Seq<false>>(data, Order::Increasing { after: 3 });
    recipe(data);
});
