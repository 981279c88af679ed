//! Feeds arbitrary bytes to the admin socket's request parser, as the host
//! reads a request: the bytes up to the first newline, as JSON, into
//! `admin::Request`. Whatever the bytes, parsing must return a request or
//! a clean error, never panic; a request it accepts is what the CLI would
//! have sent: written back as JSON it parses to the same request.
#![no_main]
#![forbid(unsafe_code)]

use libfuzzer_sys::fuzz_target;
use twig::admin::Request;

fuzz_target!(|data: &[u8]| {
    let line = match data.iter().position(|b| *b == b'\n') {
        Some(i) => &data[..=i],
        None => data,
    };
    let req = match serde_json::from_slice::<Request>(line) {
        Ok(r) => r,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return;
        }
    };
    let json = serde_json::to_value(&req).expect("a parsed request serializes");
    let again: Request = serde_json::from_value(json.clone()).expect("and parses again");
    assert_eq!(
        serde_json::to_value(&again).expect("serializes"),
        json,
        "a request survives the CLI's encoding"
    );
});
