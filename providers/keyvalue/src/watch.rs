//! Change notifications: what `wasi:keyvalue/watcher` is built on.
//!
//! A [`Watcher`] registered with [`crate::Store::watch`] hears of every
//! `set`, `set_many`, `compare_and_swap` and `delete`/`delete_many` of a key
//! that existed, after the write is done (durable, under
//! `FsyncPolicy::Always`), on the writer's thread and with no store lock
//! held. Counters (`increment`) are not announced, as Redis announces an
//! `INCRBY` as its own event and wasmCloud's keyvalue-redis provider passes
//! only `set` and `del` on. A watcher must not block: the host's queues the
//! event for a thread of its own.
//!
//! With no watcher registered, a write pays one atomic load.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// One change a watcher hears of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Set {
        bucket: String,
        key: String,
        value: Vec<u8>,
    },
    Delete {
        bucket: String,
        key: String,
    },
}

impl Event {
    pub fn key(&self) -> &str {
        match self {
            Event::Set { key, .. } | Event::Delete { key, .. } => key,
        }
    }
}

/// Hears of the store's changes; see the module docs for when and where.
pub trait Watcher: Send + Sync {
    fn notify(&self, event: Event);
}

/// Names a registration, to end it with [`crate::Store::unwatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct WatchId(u64);

#[derive(Default)]
pub(crate) struct Watchers {
    count: AtomicUsize,
    next: AtomicU64,
    list: Mutex<Vec<(u64, Arc<dyn Watcher>)>>,
}

impl Watchers {
    pub(crate) fn add(&self, w: Arc<dyn Watcher>) -> WatchId {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        list.push((id, w));
        self.count.store(list.len(), Ordering::Release);
        WatchId(id)
    }

    pub(crate) fn remove(&self, id: WatchId) -> bool {
        let mut list = self.list.lock().unwrap_or_else(PoisonError::into_inner);
        let before = list.len();
        list.retain(|(i, _)| *i != id.0);
        self.count.store(list.len(), Ordering::Release);
        list.len() != before
    }

    /// Whether anyone listens: the events need not be built otherwise.
    pub(crate) fn any(&self) -> bool {
        self.count.load(Ordering::Acquire) > 0
    }

    pub(crate) fn send(&self, events: Vec<Event>) {
        let list: Vec<Arc<dyn Watcher>> = self
            .list
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(_, w)| w.clone())
            .collect();
        for e in events {
            for w in &list {
                w.notify(e.clone());
            }
        }
    }
}

/// What a `watch` entry asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WatchOp {
    Set,
    Delete,
}

/// One `OP@KEY` entry of a watcher link's `watch` config.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchSpec {
    pub op: WatchOp,
    /// A key, or a pattern with `*` (any run of characters) and `?` (one
    /// character), as Redis's keyspace subscriptions match keys.
    pub key: String,
}

impl WatchSpec {
    /// Whether this entry wants `event`.
    pub fn wants(&self, event: &Event) -> bool {
        let op = match event {
            Event::Set { .. } => WatchOp::Set,
            Event::Delete { .. } => WatchOp::Delete,
        };
        op == self.op && glob_match(self.key.as_bytes(), event.key().as_bytes())
    }
}

/// Reads a `watch` value the way wasmCloud's keyvalue-redis provider does
/// (`SET@key,DEL@key`): entries split on `,` and trimmed, empty ones
/// skipped, the operation case-insensitive. An entry it would skip with an
/// error (no single `@`, an empty key, a key with `:`, another operation)
/// is skipped here too, and its reason returned for the host to log.
pub fn parse_watch(value: &str) -> (Vec<WatchSpec>, Vec<String>) {
    let mut specs = Vec::new();
    let mut skipped = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parts: Vec<&str> = entry.split('@').collect();
        let [op, key] = parts.as_slice() else {
            skipped.push(format!(
                "watch entry `{entry}`: expected OPERATION@KEY (SET@key or DEL@key)"
            ));
            continue;
        };
        let key = key.trim();
        if key.is_empty() {
            skipped.push(format!("watch entry `{entry}`: no key"));
            continue;
        }
        if key.contains(':') {
            skipped.push(format!("watch entry `{entry}`: a key may not contain `:`"));
            continue;
        }
        let op = match op.trim().to_ascii_uppercase().as_str() {
            "SET" => WatchOp::Set,
            "DEL" => WatchOp::Delete,
            other => {
                skipped.push(format!(
                    "watch entry `{entry}`: unknown operation `{other}` (expected SET or DEL)"
                ));
                continue;
            }
        };
        let spec = WatchSpec {
            op,
            key: key.to_string(),
        };
        if !specs.contains(&spec) {
            specs.push(spec);
        }
    }
    (specs, skipped)
}

/// `*` and `?` glob matching over bytes, iteratively (no recursion, so a
/// long pattern cannot exhaust the stack; linear backtracking on the last
/// `*`).
pub fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_read_and_bad_ones_skipped_with_a_reason() {
        let (specs, skipped) = parse_watch(" SET@a , del@b*,,x@y,SET@,SET@c:d,SET@a@b,SET@a");
        assert_eq!(
            specs,
            [
                WatchSpec {
                    op: WatchOp::Set,
                    key: "a".into()
                },
                WatchSpec {
                    op: WatchOp::Delete,
                    key: "b*".into()
                }
            ]
        );
        assert_eq!(skipped.len(), 4, "{skipped:?}");
        assert!(skipped[0].contains("unknown operation `X`"), "{skipped:?}");
        assert!(skipped[1].contains("no key"));
        assert!(skipped[2].contains("may not contain `:`"));
        assert!(skipped[3].contains("expected OPERATION@KEY"));
    }

    #[test]
    fn globs_match_as_redis_keyspace_patterns_do() {
        for (p, t, want) in [
            ("a", "a", true),
            ("a", "ab", false),
            ("a*", "abc", true),
            ("*c", "abc", true),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*", "", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("", "", true),
        ] {
            assert_eq!(glob_match(p.as_bytes(), t.as_bytes()), want, "{p} {t}");
        }
    }
}
