//! The durable outbox through disconnects (issue: "Keep working through
//! disconnects"): the soak of `tests/soak`, short, in the test command.
//!
//! A real topology on 127.0.0.1: a core nats-server with JetStream (domain
//! `core`), a leaf with its own domain linked to it over TLS, twig on the
//! leaf over mutual TLS. The `telemetry` component numbers sensor readings
//! into `telemetry.{sensor}`, captured by a file-backed stream in the core.
//! The core is killed and restarted three times, twig is `kill -9`ed once
//! and restarted with neither server up; then every number must be in the
//! stream exactly once, in order per sensor.
#![forbid(unsafe_code)]

use std::time::Duration;

use twig_integration_tests::soak;

#[test]
fn telemetry_survives_outages_and_a_crash_exactly_once_in_order() {
    let opts = soak::Options {
        seconds: 36,
        rate: 10,
        outages: 3,
        kills: 1,
        outage: Duration::from_secs(3),
        ..soak::Options::default()
    };
    let r = soak::run(&opts);
    println!("{r:#?}");
    println!("{}", r.last_line());
    // Both sensors produced through the whole run (10/s for ~36 s each,
    // less the time twig was down).
    for (name, s) in &r.sensors {
        assert!(s.produced >= 200, "{name} produced only {}", s.produced);
        s.assert_exactly_once_in_order(name);
    }
    assert_eq!(r.without_msg_id, 0, "every message carries Nats-Msg-Id");
    assert_eq!(r.malformed, 0);
    // The outbox really queued while the core was away (not a run in
    // which nothing was disrupted).
    assert!(r.max_backlog > 0, "no backlog seen during an outage: {r:?}");
    assert_eq!(r.recovery_secs.len(), 4, "{r:?}");
}
