//! `secret-reader`: `wasmcloud:secrets` from a guest, for the host tests.

wit_bindgen::generate!({
    world: "twig:secrets-test/secret-reader",
    path: ["../wit/secrets"],
    generate_all,
});

use wasmcloud::secrets::reveal::reveal;
use wasmcloud::secrets::store::{self, SecretValue, SecretsError};

struct Reader;

fn value(name: &str) -> Result<SecretValue, String> {
    let s = store::get(name).map_err(|e| match e {
        SecretsError::NotFound => "not-found".to_string(),
        SecretsError::Upstream(m) => format!("upstream: {m}"),
        SecretsError::Io(m) => format!("io: {m}"),
    })?;
    Ok(reveal(&s))
}

impl Guest for Reader {
    fn read(name: String) -> Result<String, String> {
        Ok(match value(&name)? {
            SecretValue::String(s) => format!("string:{s}"),
            SecretValue::Bytes(b) => {
                format!("bytes:{}:{}", b.len(), b.first().copied().unwrap_or(0))
            }
        })
    }

    fn digest(name: String) -> Result<String, String> {
        let bytes = match value(&name)? {
            SecretValue::String(s) => s.into_bytes(),
            SecretValue::Bytes(b) => b,
        };
        let mut h: u64 = 0xcbf29ce484222325;
        for b in bytes {
            h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
        }
        Ok(format!("{h:016x}"))
    }
}

export!(Reader);
