//! A guest with an 8 MiB memory limit floods every byte-taking host
//! function: each lie about a list's length (64 MiB at a 64 KiB buffer), and
//! each `list<u8>` value aliased many times over, is stopped by the call's
//! lift budget before the host allocates, with a trap naming the limit, as
//! is a `get-many` asking for one value many times; an honest call with the
//! most the guest holds costs the host one copy of it.
//! The instance is poisoned, a fresh one answers, and the test process's
//! peak RSS stays within a bound throughout.
//!
//! Its own test binary: it measures the process's RSS (VmHWM, reset before
//! each flood through /proc/self/clear_refs).
//!
//! Measured (2026-12-04, AMD EPYC x86_64, 2 cores, debug test build): peak
//! RSS growth per flood 0–0.3 MiB for the 64 MiB lies and
//! `get-random-bytes(64 MiB)`, 6.9 MiB for 64 aliases of a 1 MiB value in
//! `set-many` (the guest's 1 MiB plus copies up to the 8 MiB budget), 2 MiB
//! for `get-many` of one 1 MiB value 64 times, and 6–13 MiB for an honest
//! 6 MiB call (the guest's own 6 MiB plus one copy). Before bytes were
//! lifted as bytes, the honest 6 MiB call alone made the host hold
//! 6 MiB × 32 = 192 MiB. Bound asserted: 24 MiB per flood.
#![forbid(unsafe_code)]

use std::sync::Arc;

use twig_component::{Component, Engine, Error, Instance, Limits, TrapKind, Val};
use twig_integration_tests::twig::TempDir;
use twig_integration_tests::*;

const M: &str = "misbehave";
const LIMIT: usize = 8 << 20;
/// What a flood may add to the process's peak RSS.
const RSS_BOUND_KIB: u64 = 24 << 10;
/// What the guest really holds for a lie, and what an honest call hands over
/// (the most an 8 MiB guest can allocate next to its 1 MiB stack).
const HELD: u32 = 64 << 10;
const HONEST: u32 = 6 << 20;
const CLAIM: u32 = 64 << 20;

/// A field of /proc/self/status in KiB ("VmRSS", "VmHWM").
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    s.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

/// Resets VmHWM to the current RSS; false where the kernel refuses.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

struct Host {
    linker: twig_component::Linker<TestState>,
    component: Component,
    store: Arc<twig_keyvalue::Store>,
    bus: Arc<twig_messaging::Bus>,
    _dir: TempDir,
}

impl Host {
    fn new() -> Host {
        let dir = TempDir::new("lift");
        let (store, _) = twig_keyvalue::Store::open(dir.path(), twig_keyvalue::Config::default())
            .expect("open store");
        let bus = twig_messaging::Bus::new(twig_messaging::BusConfig::default()).expect("bus");
        let limits = Limits {
            memory_bytes: LIMIT,
            ..Limits::default()
        };
        let component = Component::with_limits(&Engine::default(), M, &guest_bytes(M), limits)
            .expect("load misbehave");
        Host {
            linker: misbehave_linker(),
            component,
            store: Arc::new(store),
            bus: Arc::new(bus),
            _dir: dir,
        }
    }

    fn instance(&self) -> Instance<TestState> {
        let state = TestState {
            kv_store: Some(self.store.clone()),
            bus: Some(self.bus.clone()),
            ..TestState::default()
        };
        Instance::new(&self.linker, &self.component, state).expect("instantiate misbehave")
    }

    /// Calls `func` on a fresh instance and returns its outcome and the
    /// peak RSS growth in KiB; checks that a fresh instance still answers.
    fn flood(&self, func: &str, args: &[Val]) -> (Result<Vec<Val>, Error>, u64) {
        let mut inst = self.instance();
        let exact = reset_peak();
        let (rss, hwm) = (status_kib("VmRSS"), status_kib("VmHWM"));
        let outcome = inst.call(func, args);
        // Without a reset, only what rose above the old peak shows.
        let growth = status_kib("VmHWM").saturating_sub(if exact { rss } else { hwm });
        if outcome.is_err() {
            assert!(inst.is_poisoned(), "{func}: a trap poisons the instance");
            assert!(matches!(inst.call("ok", &[]), Err(Error::Poisoned { .. })));
        }
        drop(inst);
        assert_eq!(
            self.instance()
                .call("ok", &[])
                .expect("a fresh instance answers"),
            vec![Val::U32(42)]
        );
        eprintln!("{func}({args:?}): peak RSS +{growth} KiB");
        assert!(
            growth < RSS_BOUND_KIB,
            "{func}: the host's peak RSS grew by {growth} KiB (bound {RSS_BOUND_KIB} KiB)"
        );
        (outcome, growth)
    }
}

/// The error of a trap over the lift budget while calling `import`, checked
/// to name the call, the import and the limit; returns the bytes wanted.
fn over_budget(func: &str, import: &str, outcome: Result<Vec<Val>, Error>) -> u64 {
    let err = outcome.expect_err(&format!("{func} must be stopped"));
    let msg = err.to_string();
    let Some(TrapKind::LiftBudget {
        wanted,
        budget,
        import: Some(during),
    }) = err.trap_kind()
    else {
        panic!("{func}: not stopped by the lift budget in an import: {msg}");
    };
    assert!(during.ends_with(import), "{during} is not {import}: {msg}");
    assert!(msg.contains(&format!("for `{during}`")), "{msg}");
    assert_eq!(*budget, LIMIT as u64, "{msg}");
    assert!(*wanted > *budget, "{msg}");
    assert!(
        msg.contains(M) && msg.contains(func),
        "names the call: {msg}"
    );
    assert!(
        msg.contains("exceeds the call's lift budget of 8 MiB")
            && msg.contains("limits.memory_bytes"),
        "names the limit: {msg}"
    );
    *wanted
}

/// The `err` string of a `result<_, string>` the guest returned.
fn guest_err(func: &str, outcome: Result<Vec<Val>, Error>) -> String {
    match outcome.unwrap_or_else(|e| panic!("{func}: {e}")).as_slice() {
        [Val::Result(Err(Some(e)))] => match &**e {
            Val::String(s) => s.clone(),
            other => panic!("{func}: error {other:?}"),
        },
        other => panic!("{func}: expected an error result, got {other:?}"),
    }
}

#[test]
fn byte_floods_are_stopped_by_the_lift_budget_and_the_host_stays_small() {
    let host = Host::new();
    let claim = [Val::U32(CLAIM), Val::U32(HELD)];

    // Lies: 64 MiB at a 64 KiB buffer. The budget refuses before the bounds
    // check, so nothing is allocated and the trap names the limit.
    for (func, import) in [
        ("flood-stream-write", "[method]output-stream.write"),
        (
            "flood-stream-flush",
            "[method]output-stream.blocking-write-and-flush",
        ),
        ("flood-kv-set", "[method]bucket.set"),
        (
            "flood-publish",
            "wasmcloud:messaging/consumer@0.2.0#publish",
        ),
    ] {
        let (outcome, _) = host.flood(func, &claim);
        let wanted = over_budget(func, import, outcome);
        assert!(wanted >= CLAIM as u64, "{func}: charged {wanted}");
    }

    // The host allocates what the guest asks for: checked before allocating.
    let (outcome, _) = host.flood("random-bytes", &[Val::U64(CLAIM as u64)]);
    assert_eq!(
        over_budget("random-bytes", "get-random-bytes", outcome),
        CLAIM as u64
    );
    // Within the budget it answers (up to WASI's own 1 MiB cap per call).
    let (outcome, _) = host.flood("random-bytes", &[Val::U64(64 << 10)]);
    assert_eq!(outcome.unwrap(), vec![Val::U64(64 << 10)]);

    // Aliasing: 64 entries all pointing at the same 1 MiB the guest holds
    // would be 64 MiB on the host; the budget stops it at 8 MiB.
    let (outcome, _) = host.flood("flood-kv-set-many", &[Val::U32(64), Val::U32(1 << 20)]);
    over_budget("flood-kv-set-many", "batch@0.2.0-draft#set-many", outcome);
    assert!(
        !host.store.exists("default", "alias"),
        "nothing was written"
    );

    // The same on the way back: 64 reads of one 1 MiB value would make the
    // host read 64 MiB for the guest; refused before reading any.
    let (outcome, _) = host.flood("flood-kv-get-many", &[Val::U32(64), Val::U32(1 << 20)]);
    over_budget("flood-kv-get-many", "batch@0.2.0-draft#get-many", outcome);
    // Within the budget it answers.
    let (outcome, _) = host.flood("flood-kv-get-many", &[Val::U32(3), Val::U32(1 << 20)]);
    assert_eq!(
        outcome.unwrap(),
        vec![Val::Result(Ok(Some(Box::new(Val::U32(3)))))]
    );

    // Honest calls with the most the guest holds: lifted as one copy, then
    // refused by each host function's own limit.
    let honest = [Val::U32(HONEST), Val::U32(HONEST)];
    let (outcome, _) = host.flood("flood-stream-write", &honest);
    let err = outcome.expect_err("a 6 MiB write is over WASI's 1 MiB chunk");
    assert!(
        err.to_string()
            .contains("write of 6291456 bytes exceeds the permitted 1048576"),
        "{err}"
    );
    let (outcome, _) = host.flood("flood-kv-set", &honest);
    let e = guest_err("flood-kv-set", outcome);
    assert!(e.contains("over the limit of 1048576"), "{e}");
    assert!(
        !host.store.exists("default", "flood"),
        "nothing was written"
    );
    let (outcome, _) = host.flood("flood-publish", &honest);
    let e = guest_err("flood-publish", outcome);
    assert!(e.contains("1048576"), "names the bus's payload limit: {e}");

    // And a value within every limit goes through, byte for byte.
    let (outcome, _) = host.flood("flood-kv-set", &[Val::U32(1000), Val::U32(1000)]);
    assert_eq!(outcome.unwrap(), vec![Val::Result(Ok(None))]);
    assert_eq!(
        host.store.get("default", "flood").unwrap(),
        Some(vec![0x5a; 1000])
    );
}
