//! `hello`: the smallest realistic WASI 0.2 command (`wasi:cli/run`).
//!
//! Uses nothing but `std`, so its imports are exactly what the Rust standard
//! library pulls in for stdout/stderr, environment variables, clocks and exit.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

fn main() {
    println!("Hello from twig guest");
    eprintln!("hello guest: this line goes to stderr");

    match std::env::var("TWIG_GREETING") {
        Ok(greeting) => println!("TWIG_GREETING={greeting}"),
        Err(_) => println!("TWIG_GREETING is not set"),
    }

    // wasi:clocks/wall-clock
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    println!("wall clock: {since_epoch} s since the Unix epoch");

    // wasi:clocks/monotonic-clock
    let start = Instant::now();
    let mut acc = 0u64;
    for i in 0..1000u64 {
        acc = acc.wrapping_add(std::hint::black_box(i));
    }
    let elapsed = start.elapsed();
    println!(
        "monotonic clock: {} ns for a 1000-step loop (acc={acc})",
        elapsed.as_nanos()
    );
}
