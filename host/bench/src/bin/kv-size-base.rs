//! Baseline for the binary-size comparison in `kv-vs-sqlite`: the same
//! put-then-get as `kv-size-twig` and `kv-size-sqlite`, with plain file
//! I/O. The size of each store is its binary's size minus this one's.
//!
//! ```text
//! kv-size-base DIR
//! ```
#![forbid(unsafe_code)]

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: kv-size-base DIR")?);
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("greeting");
    let mut f = std::fs::File::create(&path)?;
    f.write_all(b"hello")?;
    f.sync_data()?;
    let v = std::fs::read(&path)?;
    println!("greeting = {}", String::from_utf8_lossy(&v));
    Ok(())
}
