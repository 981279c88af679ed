//! Decodes arbitrary bytes as a record. Whatever the bytes, decoding must
//! return `Ok` or an error, never panic; when it decodes, re-encoding the
//! record must give back exactly the bytes it consumed, and the resync
//! search must not panic either.
#![no_main]

use libfuzzer_sys::fuzz_target;
use twig_outbox::format::{decode_record, encode_decoded, find_next};

fuzz_target!(|data: &[u8]| {
    if let Ok((rec, used)) = decode_record(data) {
        assert!(used <= data.len());
        let mut again = Vec::new();
        encode_decoded(&rec, &mut again).expect("a decoded record re-encodes");
        assert_eq!(again, &data[..used], "re-encoding changed the record");
    }
    if let Some(at) = find_next(data, 1, 0) {
        assert!(decode_record(&data[at..]).is_ok());
    }
});
