//! `kv-watcher`: answers `wasi:keyvalue/watcher` calls by appending to a
//! log kept in the very bucket handle the host passes in, so a test sees
//! both that the call came and that the handle works.
//!
//! Its own writes to `log/…` are changes too; the tests watch other keys,
//! so it does not hear of them.

wit_bindgen::generate!({
    world: "twig:kvwatch/kv-watcher",
    path: ["../wit/kvwatch"],
    generate_all,
});

use exports::wasi::keyvalue::watcher::Guest as Watcher;
use wasi::keyvalue::store::{self, Bucket};

struct KvWatcher;

fn log(bucket: &Bucket, line: String) {
    let n = bucket
        .get("log/count")
        .ok()
        .flatten()
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(0)
        + 1;
    let _ = bucket.set(&format!("log/{n}"), line.as_bytes());
    let _ = bucket.set("log/count", n.to_string().as_bytes());
}

impl Watcher for KvWatcher {
    fn on_set(bucket: Bucket, key: String, value: Vec<u8>) {
        log(
            &bucket,
            format!("set {key}={}", String::from_utf8_lossy(&value)),
        );
    }

    fn on_delete(bucket: Bucket, key: String) {
        log(&bucket, format!("del {key}"));
    }
}

fn open(name: &str) -> Result<Bucket, String> {
    store::open(name).map_err(|e| format!("open {name}: {e:?}"))
}

impl Guest for KvWatcher {
    fn put(bucket: String, key: String, value: String) -> Result<(), String> {
        open(&bucket)?
            .set(&key, value.as_bytes())
            .map_err(|e| format!("set: {e:?}"))
    }

    fn del(bucket: String, key: String) -> Result<(), String> {
        open(&bucket)?
            .delete(&key)
            .map_err(|e| format!("delete: {e:?}"))
    }

    fn seen(bucket: String) -> Result<Vec<String>, String> {
        let b = open(&bucket)?;
        let count = b
            .get("log/count")
            .map_err(|e| format!("get: {e:?}"))?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0);
        (1..=count)
            .map(|n| {
                let v = b
                    .get(&format!("log/{n}"))
                    .map_err(|e| format!("get: {e:?}"))?
                    .unwrap_or_default();
                Ok(String::from_utf8_lossy(&v).into_owned())
            })
            .collect()
    }
}

export!(KvWatcher);
