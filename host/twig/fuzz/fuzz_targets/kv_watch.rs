//! A watcher link's `watch` config (`SET@key,DEL@key`) and the glob
//! matching of its keys. The input is `watch value 0xFF key`.
//!
//! Whatever the bytes: parsing never panics, every entry it keeps has a
//! non-empty key without `:` or `,`, every entry it drops has a reason;
//! and `glob_match` agrees with a dynamic-programming model of `*`/`?`
//! matching on every kept pattern and the key.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use twig_keyvalue::watch::{glob_match, parse_watch, Event, WatchOp};

/// `*` any run, `?` one byte, anything else itself: the table of which
/// pattern prefixes match which text prefixes.
fn model(p: &[u8], t: &[u8]) -> bool {
    let mut row = vec![false; t.len() + 1];
    row[0] = true;
    for &c in p {
        let mut next = vec![false; t.len() + 1];
        if c == b'*' {
            let mut any = false;
            for j in 0..=t.len() {
                any |= row[j];
                next[j] = any;
            }
        } else {
            for j in 1..=t.len() {
                next[j] = row[j - 1] && (c == b'?' || c == t[j - 1]);
            }
        }
        row = next;
    }
    row[t.len()]
}

fuzz_target!(|data: &[u8]| {
    let (value, key) = match data.iter().position(|b| *b == 0xFF) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let value = String::from_utf8_lossy(value);
    let key = String::from_utf8_lossy(key);
    let (specs, skipped) = parse_watch(&value);
    for r in &skipped {
        assert!(r.starts_with("watch entry `"), "{r}");
    }
    for s in &specs {
        assert!(!s.key.is_empty() && !s.key.contains(':') && !s.key.contains(','));
        assert_eq!(
            glob_match(s.key.as_bytes(), key.as_bytes()),
            model(s.key.as_bytes(), key.as_bytes()),
            "pattern {:?} key {:?}",
            s.key,
            key
        );
        let set = Event::Set {
            bucket: "b".into(),
            key: key.to_string(),
            value: vec![],
        };
        let del = Event::Delete {
            bucket: "b".into(),
            key: key.to_string(),
        };
        let m = glob_match(s.key.as_bytes(), key.as_bytes());
        assert_eq!(s.wants(&set), m && s.op == WatchOp::Set);
        assert_eq!(s.wants(&del), m && s.op == WatchOp::Delete);
    }
});
