//! `soak`: the disconnect soak of `tests/soak` (see `twig_integration_tests::soak`).
//!
//! Prints progress to stderr, a per-sensor table to stdout, and, as its
//! last line, exactly `produced=N delivered=N duplicates=D lost=L`. Exits
//! 0 when nothing was lost, duplicated or reordered, 1 otherwise.
#![forbid(unsafe_code)]

use std::time::Duration;

use clap::Parser;
use twig_integration_tests::soak;

/// Telemetry from a twig device through core outages, kill -9 and offline
/// restarts, counted at a JetStream stream in the core.
#[derive(Parser, Debug)]
#[command(name = "soak")]
struct Args {
    /// How long the device produces, in seconds (10 to 86400).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(10..=86_400))]
    seconds: u64,
    /// Readings per second of each of the two sensors (1 to 100).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100))]
    rate: u32,
    /// Times the core nats-server is killed and restarted.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(0..=1000))]
    outages: u32,
    /// Times twig is kill -9ed and restarted with no server reachable.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=1000))]
    kill: u32,
    /// Length of each outage, in seconds (1 to 3600).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u64).range(1..=3600))]
    outage_secs: u64,
    /// The outbox's drain rate, messages per second (0: unlimited).
    #[arg(long, default_value_t = 500)]
    drain_rate: u32,
}

fn main() {
    let a = Args::parse();
    let opts = soak::Options {
        seconds: a.seconds,
        rate: a.rate,
        outages: a.outages,
        kills: a.kill,
        outage: Duration::from_secs(a.outage_secs),
        drain_rate: a.drain_rate,
        ..soak::Options::default()
    };
    let steps = (a.outages + a.kill) as u64;
    if steps > 0 && a.seconds / (steps + 1) < a.outage_secs + 2 {
        eprintln!(
            "soak: {} s is too short for {steps} disruptions of {} s each; give more --seconds",
            a.seconds, a.outage_secs
        );
        std::process::exit(2);
    }
    let r = soak::run(&opts);
    println!("sensor produced delivered duplicates lost out_of_order");
    for (name, s) in &r.sensors {
        println!(
            "{name} {} {} {} {} {}{}",
            s.produced,
            s.delivered,
            s.duplicates,
            s.lost,
            s.out_of_order,
            if s.first_lost.is_empty() {
                String::new()
            } else {
                format!(" (first lost: {:?})", s.first_lost)
            }
        );
    }
    let rec: Vec<String> = r.recovery_secs.iter().map(|s| format!("{s:.2}")).collect();
    println!(
        "largest backlog during an outage: {} messages; seconds from the upstream's return to the first new message: [{}]",
        r.max_backlog,
        rec.join(", ")
    );
    println!(
        "twig: {} delivered since its last start, {} resends recognised by the stream; {} messages without Nats-Msg-Id, {} malformed",
        r.twig_delivered, r.twig_stream_duplicates, r.without_msg_id, r.malformed
    );
    println!("{}", r.last_line());
    let ok = r.lost() == 0
        && r.duplicates() == 0
        && r.out_of_order() == 0
        && r.produced() > 0
        && r.without_msg_id == 0
        && r.malformed == 0;
    std::process::exit(if ok { 0 } else { 1 });
}
