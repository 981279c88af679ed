//! Binary-size probe for `kv-vs-sqlite`: put then get with rusqlite
//! (bundled SQLite) only, in WAL mode. Compare with `kv-size-base` (same
//! program, plain file I/O).
//!
//! ```text
//! kv-size-sqlite DIR
//! ```
#![forbid(unsafe_code)]

use std::error::Error;
use std::path::PathBuf;

use rusqlite::{Connection, OptionalExtension};

fn main() -> Result<(), Box<dyn Error>> {
    let dir = PathBuf::from(std::env::args().nth(1).ok_or("usage: kv-size-sqlite DIR")?);
    std::fs::create_dir_all(&dir)?;
    let conn = Connection::open(dir.join("kv.db"))?;
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get::<_, String>(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS kv (k TEXT PRIMARY KEY NOT NULL, v BLOB NOT NULL) WITHOUT ROWID",
    )?;
    conn.execute(
        "INSERT INTO kv (k, v) VALUES (?1, ?2) ON CONFLICT (k) DO UPDATE SET v = excluded.v",
        ("greeting", &b"hello"[..]),
    )?;
    let v: Vec<u8> = conn
        .query_row("SELECT v FROM kv WHERE k = ?1", ["greeting"], |r| r.get(0))
        .optional()?
        .unwrap_or_default();
    println!("greeting = {}", String::from_utf8_lossy(&v));
    Ok(())
}
