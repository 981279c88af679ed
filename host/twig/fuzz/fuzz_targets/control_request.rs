//! Feeds arbitrary control-interface messages to `wire::parse_request`, the
//! one place bytes from the lattice enter the host. An input is the subject
//! after `wasmbus.ctl.v1.{lattice}.` (lossy UTF-8), a 0 byte, then the
//! payload. Whatever the input, parsing must return a request or a clean
//! error, never panic; and what it accepts must be safe to use: ids and
//! config names are usable as subject tokens and KV keys.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use twig::lattice::wire::{parse_request, Request};

/// The host id the fuzzer's per-host subjects may name (any other is
/// refused, which the fuzzer finds quickly from the seeds).
const HOST: &str = "NFUZZHOST";

fn token_safe(what: &str, s: &str) {
    assert!(!s.is_empty(), "{what} is empty");
    assert!(
        !s.chars()
            .any(|c| matches!(c, '.' | '*' | '>') || c.is_whitespace()),
        "{what} `{s}` cannot be a subject token"
    );
}

fuzz_target!(|data: &[u8]| {
    let (op, payload) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let op = String::from_utf8_lossy(op);
    let Ok(req) = parse_request(&op, HOST, payload) else {
        return;
    };
    match &req {
        Request::ComponentScale(s) => token_safe("component_id", &s.component_id),
        Request::ComponentUpdate(u) => token_safe("component_id", &u.component_id),
        Request::ComponentAuction(a) | Request::ProviderAuction(a) => token_safe("id", &a.id),
        Request::ProviderStart(s) => token_safe("provider_id", &s.provider_id),
        Request::ProviderStop(s) => token_safe("provider_id", &s.provider_id),
        Request::LinkPut(l) => {
            token_safe("source_id", &l.source_id);
            token_safe("target", &l.target);
        }
        Request::LinkDel(l) => token_safe("source_id", &l.source_id),
        Request::ConfigPut(name, _) | Request::ConfigGet(name) | Request::ConfigDel(name) => {
            token_safe("config name", name)
        }
        _ => {}
    }
});
