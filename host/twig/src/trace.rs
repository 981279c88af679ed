//! Following one request through components and hosts in the logs.
//!
//! A trigger (an HTTP request, `twig invoke`, a message, a call from the
//! lattice) runs under a trace id: the caller's, when a wRPC call brings a
//! W3C `traceparent` header (wasmCloud hosts send one), else a new one.
//! Every guest call runs in a `call` span naming the trace, the component,
//! the export and the trigger; a linked call nests in its caller's span
//! (same thread), and a call to another host carries the trace id in its
//! `traceparent` header. With `--log-format json` each line lists its
//! spans, so `grep` on one trace id shows the request on every host.
//!
//! The id is for correlation, not secrecy: it comes from the standard
//! library's per-process random hasher keys, a clock and a counter.

use std::cell::Cell;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};

/// A 128-bit W3C trace id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceId(u128);

impl std::fmt::Display for TraceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

thread_local! {
    static CURRENT: Cell<Option<TraceId>> = const { Cell::new(None) };
}

fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}

impl TraceId {
    /// A new id (never all zeros, which W3C reserves).
    pub fn new() -> TraceId {
        let id = (u128::from(random_u64()) << 64) | u128::from(random_u64());
        TraceId(id.max(1))
    }

    /// The trace id of a W3C `traceparent` header
    /// (`00-{32 hex}-{16 hex}-{2 hex}`); `None` if it is not one.
    pub fn from_traceparent(header: &str) -> Option<TraceId> {
        let mut parts = header.trim().split('-');
        let (version, trace, parent, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(version, 2)
            || version == "ff"
            || !hex(trace, 32)
            || !hex(parent, 16)
            || !hex(flags, 2)
        {
            return None;
        }
        if version == "00" && parts.next().is_some() {
            return None;
        }
        match u128::from_str_radix(trace, 16) {
            Ok(0) | Err(_) => None,
            Ok(id) => Some(TraceId(id)),
        }
    }

    /// A `traceparent` header for a call made under this trace.
    pub fn traceparent(self) -> String {
        format!("00-{self}-{:016x}-01", random_u64().max(1))
    }
}

impl Default for TraceId {
    fn default() -> Self {
        TraceId::new()
    }
}

/// The trace the current thread works under, if any.
pub fn current() -> Option<TraceId> {
    CURRENT.with(Cell::get)
}

/// While alive, the current thread works under a trace; the previous one
/// comes back when it drops.
pub struct Entered(Option<TraceId>);

/// Works under `id` (or the current trace, or a new one) until the guard
/// drops; returns the guard and the id in force.
pub fn enter(id: Option<TraceId>) -> (Entered, TraceId) {
    let id = id.or_else(current).unwrap_or_default();
    let previous = CURRENT.with(|c| c.replace(Some(id)));
    (Entered(previous), id)
}

impl Drop for Entered {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

/// The span of one guest call.
pub fn call_span(
    trigger: &'static str,
    component: &str,
    export: &str,
    trace: TraceId,
) -> tracing::Span {
    tracing::info_span!("call", %trace, %component, %export, trigger)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_bad_headers_are_refused() {
        let id = TraceId::new();
        let header = id.traceparent();
        assert_eq!(TraceId::from_traceparent(&header), Some(id));
        let good = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            TraceId::from_traceparent(good).map(|t| t.to_string()),
            Some("4bf92f3577b34da6a3ce929d0e0e4736".to_string())
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473z-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert_eq!(TraceId::from_traceparent(bad), None, "{bad}");
        }
    }

    #[test]
    fn enter_nests_and_restores() {
        assert_eq!(current(), None);
        let (outer, a) = enter(None);
        assert_eq!(current(), Some(a));
        {
            // A nested call keeps the trace it runs under.
            let (_inner, b) = enter(None);
            assert_eq!(b, a);
            let given = TraceId::new();
            let (_g, c) = enter(Some(given));
            assert_eq!(c, given);
            assert_eq!(current(), Some(given));
        }
        assert_eq!(current(), Some(a));
        drop(outer);
        assert_eq!(current(), None);
        assert_ne!(TraceId::new(), TraceId::new());
    }
}
