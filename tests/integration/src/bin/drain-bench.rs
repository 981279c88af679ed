//! `drain-bench`: how the outbox drains after an outage, through the real
//! TLS leaf topology into a JetStream stream in the core
//! (`twig_integration_tests::soak::drain_bench`).
//!
//! ```sh
//! tests/soak --drain-bench        # builds what it needs, then runs this
//! ```
//!
//! For each drain rate (unlimited, then 200/s, the `sim` board's default):
//! two sensors at 50 readings/s each, the core down for 20 s, production
//! paused, the core back; prints the backlog, the time from the core's
//! return to the first message stored, and the rate the backlog was
//! stored at (by the stream's timestamps). Medians of three runs.
#![forbid(unsafe_code)]

use std::time::Duration;

use twig_integration_tests::soak;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    println!("drain_rate  backlog  first_delivery_s  drain_msgs_per_s   (median of 3)");
    for drain_rate in [0u32, 200] {
        let runs: Vec<soak::DrainFigures> = (0..3)
            .map(|_| {
                soak::drain_bench(&soak::Options {
                    rate: 50,
                    outage: Duration::from_secs(20),
                    drain_rate,
                    progress: false,
                    ..soak::Options::default()
                })
            })
            .collect();
        println!(
            "{:>10}  {:>7}  {:>16.3}  {:>16.0}",
            if drain_rate == 0 {
                "unlimited".to_string()
            } else {
                drain_rate.to_string()
            },
            median(runs.iter().map(|r| r.backlog as f64).collect()),
            median(runs.iter().map(|r| r.first_delivery_secs).collect()),
            median(runs.iter().map(|r| r.drain_msgs_per_sec).collect()),
        );
    }
}
