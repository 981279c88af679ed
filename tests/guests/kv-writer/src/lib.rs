//! `kv-writer`: drives `wasi:keyvalue` (store, atomics, batch) from a
//! guest, so the host tests can check the twig:keyvalue provider through
//! the real component-model path. Every error comes back as a string.

use wasmcloud_component::wasi::keyvalue::{atomics, batch, store};

wit_bindgen::generate!({
    world: "kv",
    path: "../wit/test",
});

struct KvWriter;

fn open(bucket: &str) -> Result<store::Bucket, String> {
    store::open(bucket).map_err(|e| format!("open {bucket:?}: {e:?}"))
}

impl Guest for KvWriter {
    fn put(bucket: String, key: String, value: String) -> Result<(), String> {
        open(&bucket)?
            .set(&key, value.as_bytes())
            .map_err(|e| format!("set {key:?}: {e:?}"))
    }

    fn get(bucket: String, key: String) -> Result<Option<String>, String> {
        let v = open(&bucket)?
            .get(&key)
            .map_err(|e| format!("get {key:?}: {e:?}"))?;
        Ok(v.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    fn incr(bucket: String, key: String, delta: u64) -> Result<u64, String> {
        let b = open(&bucket)?;
        atomics::increment(&b, &key, delta).map_err(|e| format!("increment {key:?}: {e:?}"))
    }

    fn batch_roundtrip(
        bucket: String,
        prefix: String,
        count: u32,
        value: String,
    ) -> Result<u32, String> {
        let b = open(&bucket)?;
        let keys: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
        let pairs: Vec<(String, Vec<u8>)> = keys
            .iter()
            .map(|k| (k.clone(), value.as_bytes().to_vec()))
            .collect();
        batch::set_many(&b, &pairs).map_err(|e| format!("set-many: {e:?}"))?;
        let got = batch::get_many(&b, &keys).map_err(|e| format!("get-many: {e:?}"))?;
        Ok(got
            .iter()
            .filter(|kv| kv.as_ref().is_some_and(|(_, v)| v == value.as_bytes()))
            .count() as u32)
    }

    fn list_keys(bucket: String) -> Result<Vec<String>, String> {
        list_from(&bucket, None)
    }

    fn list_keys_from(bucket: String, start: u64) -> Result<Vec<String>, String> {
        list_from(&bucket, Some(start))
    }

    fn put_big(bucket: String, key: String, len: u32) -> Result<(), String> {
        open(&bucket)?
            .set(&key, &vec![b'x'; len as usize])
            .map_err(|e| format!("set {key:?}: {e:?}"))
    }
}

fn list_from(bucket: &str, mut cursor: Option<u64>) -> Result<Vec<String>, String> {
    let b = open(bucket)?;
    let mut keys = Vec::new();
    loop {
        let page = b
            .list_keys(cursor)
            .map_err(|e| format!("list-keys: {e:?}"))?;
        keys.extend(page.keys);
        match page.cursor {
            Some(c) => cursor = Some(c),
            None => return Ok(keys),
        }
    }
}

export!(KvWriter);
