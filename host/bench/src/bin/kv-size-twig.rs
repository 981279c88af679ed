//! Binary-size probe for `kv-vs-sqlite`: put then get with twig-keyvalue
//! only. Compare with `kv-size-base` (same program, plain file I/O).
//!
//! ```text
//! kv-size-twig DIR
//! ```
#![forbid(unsafe_code)]

use std::error::Error;
use std::path::PathBuf;

use twig_keyvalue::{Config, Store};

fn main() -> Result<(), Box<dyn Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: kv-size-twig DIR")?);
    let (store, _) = Store::open(&dir, Config::default())?;
    store.set("b", "greeting", b"hello")?;
    let v = store.get("b", "greeting")?.unwrap_or_default();
    println!("greeting = {}", String::from_utf8_lossy(&v));
    Ok(())
}
