//! The sensors and messaging providers through the real binary, with the
//! `edge-worker` guest: sensors read from a directory tree laid out like
//! `/sys` and from a simulated source, readings stored in key-value and
//! delivered periodically as messages; messages from one component
//! delivered to another by subject wildcard, request/reply, bad subjects.
#![forbid(unsafe_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use twig_integration_tests::guest_path;
use twig_integration_tests::twig::{TempDir, Twig};

fn wave(s: &str) -> String {
    format!("{s:?}")
}

fn call(t: &Twig, component: &str, func: &str, args: &[&str]) -> String {
    t.call(component, func, args)
        .unwrap_or_else(|e| {
            panic!(
                "{component} {func}{args:?} failed: {e}\nlog:\n{}",
                t.log_text()
            )
        })
        .join(" ")
}

/// Polls `f` until it returns Some, for at most 10 s.
fn eventually<T>(what: &str, t: &Twig, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; log:\n{}",
            t.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

const KV_LINK: &str = r#"        - type: link
          properties:
            target:
              name: store
            namespace: wasi
            package: keyvalue
            interfaces: [store, atomics]
"#;

const KV_PROVIDER: &str = r#"    - name: store
      type: capability
      properties:
        image: twig:keyvalue
"#;

#[test]
fn sensors_are_read_from_sysfs_and_simulation_stored_and_sampled() {
    let tmp = TempDir::new("sensors");
    let sys = tmp.path().join("sys");
    // hwmon numbering is not stable across boots: the chip is found by name.
    write(&sys.join("class/hwmon/hwmon0/name"), "acpitz\n");
    write(&sys.join("class/hwmon/hwmon0/temp1_input"), "30000\n");
    write(&sys.join("class/hwmon/hwmon3/name"), "coretemp\n");
    write(&sys.join("class/hwmon/hwmon3/temp1_input"), "42500\n");
    let iio = sys.join("bus/iio/devices/iio:device0");
    write(&iio.join("name"), "ads1015\n");
    write(&iio.join("in_voltage0_raw"), "1000\n");
    write(&iio.join("in_voltage0_offset"), "10\n");
    write(&iio.join("in_voltage0_scale"), "0.5\n");

    let board = tmp.path().join("board.toml");
    write(
        &board,
        &format!(
            r#"name = "test-board"
sysfs_root = "{sys}"

[limits]
max_components = 16
max_instances = 4
memory_mib = 64
fuel_per_call = 10_000_000_000
deadline_ms = 10_000

[labels]
board = "test"

[[sensors]]
name = "cpu-temp"
source.hwmon = {{ chip = "coretemp", input = "temp1" }}

[[sensors]]
name = "adc"
source.iio = {{ device = "ads1015", channel = "voltage0" }}

[[sensors]]
name = "wave"
interval_ms = 100
source.sim.sine = {{ amplitude = 1.0, period_ms = 10000, offset = 20.0 }}
"#,
            sys = sys.display()
        ),
    );
    let app = tmp.path().join("app.yaml");
    write(
        &app,
        &format!(
            r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: sense
spec:
  components:
    - name: worker
      type: component
      properties:
        image: {image}
      traits:
        - type: spreadscaler
          properties:
            instances: 1
        - type: link
          properties:
            target:
              name: sensors
            namespace: twig
            package: sensors
            interfaces: [sensors]
{KV_LINK}    - name: sensors
      type: capability
      properties:
        image: twig:sensors
      traits:
        # Periodic readings go to the worker's messaging handler.
        - type: link
          properties:
            target:
              name: worker
            namespace: wasmcloud
            package: messaging
            interfaces: [handler]
{KV_PROVIDER}"#,
            image = guest_path("edge-worker").display()
        ),
    );
    let t = Twig::up(
        &tmp.path().join("d"),
        &[
            "--board",
            board.to_str().unwrap(),
            "--app",
            app.to_str().unwrap(),
        ],
    );
    let s = t.settled(1);
    for c in s["apps"][0]["components"].as_array().unwrap() {
        assert_eq!(c["state"], "running", "{s}");
    }
    let w = "sense-worker";
    assert_eq!(
        call(&t, w, "sensor-names", &[]),
        "[\"cpu-temp\", \"adc\", \"wave\"]"
    );
    // hwmon: millidegrees to degrees; stored in KV by the component.
    assert_eq!(call(&t, w, "sample", &[&wave("cpu-temp")]), "ok(42.5)");
    assert_eq!(
        call(&t, w, "kv-get", &[&wave("sensor/cpu-temp")]),
        "ok(some(\"42.5 °C\"))"
    );
    // IIO: (raw + offset) x scale, in the kernel's unit (mV).
    assert_eq!(call(&t, w, "sample", &[&wave("adc")]), "ok(505)");
    // A sensor file that changes is read afresh.
    write(&sys.join("class/hwmon/hwmon3/temp1_input"), "43000\n");
    assert_eq!(call(&t, w, "sample", &[&wave("cpu-temp")]), "ok(43)");

    // Bad input from the hardware: clear errors to the component.
    write(&sys.join("class/hwmon/hwmon3/temp1_input"), "hot\n");
    let r = call(&t, w, "sample", &[&wave("cpu-temp")]);
    assert!(
        r.starts_with("err(") && r.contains("Invalid") && r.contains("hot"),
        "{r}"
    );
    std::fs::remove_file(sys.join("class/hwmon/hwmon3/temp1_input")).unwrap();
    let r = call(&t, w, "sample", &[&wave("cpu-temp")]);
    assert!(r.starts_with("err(") && r.contains("Unavailable"), "{r}");
    let r = call(&t, w, "sample", &[&wave("no-such-sensor")]);
    assert!(r.starts_with("err(") && r.contains("NotFound"), "{r}");
    // The value read before the failures is still stored.
    assert_eq!(
        call(&t, w, "kv-get", &[&wave("sensor/cpu-temp")]),
        "ok(some(\"43 °C\"))"
    );

    // Periodic sampling: `wave` readings arrive as messages on
    // twig.sensors.wave and the handler counts them in KV.
    let count = eventually("three periodic readings", &t, || {
        let r = call(&t, w, "kv-get", &[&wave("count/twig.sensors.wave")]);
        let n: u64 = r
            .strip_prefix("ok(some(\"")?
            .strip_suffix("\"))")?
            .parse()
            .ok()?;
        (n >= 3).then_some(n)
    });
    let body = call(&t, w, "kv-get", &[&wave("msg/twig.sensors.wave")]);
    assert!(
        body.contains(r#"\"sensor\":\"wave\""#) && body.contains(r#"\"value\":"#),
        "{body}"
    );
    println!("periodic readings delivered: {count}");
}

#[test]
fn messages_reach_other_components_by_subject_wildcard() {
    let tmp = TempDir::new("messaging");
    let worker = |name: &str| {
        format!(
            r#"    - name: {name}
      type: component
      properties:
        image: {image}
      traits:
        - type: spreadscaler
          properties:
            instances: 2
        - type: link
          properties:
            target:
              name: nats
            namespace: wasmcloud
            package: messaging
            interfaces: [consumer]
{KV_LINK}"#,
            image = guest_path("edge-worker").display()
        )
    };
    let app = tmp.path().join("app.yaml");
    write(
        &app,
        &format!(
            r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: msg
spec:
  components:
{a}{b}    - name: nats
      type: capability
      properties:
        image: ghcr.io/wasmcloud/messaging-nats:0.23.1
      traits:
        - type: link
          properties:
            target:
              name: listener
            namespace: wasmcloud
            package: messaging
            interfaces: [handler]
            source:
              config:
                - name: subs
                  properties:
                    subscriptions: "sensors.*.temp, orders.>"
{KV_PROVIDER}"#,
            a = worker("sender"),
            b = worker("listener"),
        ),
    );
    let t = Twig::up(&tmp.path().join("d"), &["--app", app.to_str().unwrap()]);
    let s = t.settled(1);
    for c in s["apps"][0]["components"].as_array().unwrap() {
        assert_eq!(c["state"], "running", "{s}");
    }
    assert!(
        t.log_text()
            .contains("twig:messaging stands in for ghcr.io/wasmcloud/messaging-nats:0.23.1"),
        "{}",
        t.log_text()
    );
    let (a, b) = ("msg-sender", "msg-listener");
    let got = |subject: &str| call(&t, b, "kv-get", &[&wave(&format!("msg/{subject}"))]);

    // `*` matches one token; a subject it does not match is not delivered.
    assert_eq!(
        call(
            &t,
            a,
            "publish",
            &[&wave("sensors.room1.humidity"), &wave("55")]
        ),
        "ok"
    );
    assert_eq!(
        call(
            &t,
            a,
            "publish",
            &[&wave("sensors.room1.temp"), &wave("21.5")]
        ),
        "ok"
    );
    eventually("sensors.room1.temp at the listener", &t, || {
        (got("sensors.room1.temp") == "ok(some(\"21.5\"))").then_some(())
    });
    // `>` matches the rest.
    assert_eq!(
        call(
            &t,
            a,
            "publish",
            &[&wave("orders.eu.new.42"), &wave("order 42")]
        ),
        "ok"
    );
    eventually("orders.eu.new.42 at the listener", &t, || {
        (got("orders.eu.new.42") == "ok(some(\"order 42\"))").then_some(())
    });
    // Delivery per subscription is in order, so the humidity message
    // would have arrived before these if it had matched.
    assert_eq!(got("sensors.room1.humidity"), "ok(none)");
    // Exactly one delivery per message (the listener counts them; both
    // components share the store).
    assert_eq!(
        call(&t, a, "kv-get", &[&wave("count/sensors.room1.temp")]),
        "ok(some(\"1\"))"
    );

    // Request/reply through the listener's handler.
    assert_eq!(
        call(
            &t,
            a,
            "request",
            &[&wave("orders.eu.ask"), &wave("ping"), "5000"]
        ),
        "ok(\"re: ping\")"
    );
    let r = call(
        &t,
        a,
        "request",
        &[&wave("nobody.home"), &wave("ping"), "500"],
    );
    assert!(r.starts_with("err(") && r.contains("no responders"), "{r}");
    // Bad subjects and oversize payloads: errors to the component.
    let r = call(&t, a, "publish", &[&wave("bad..subject"), &wave("x")]);
    assert!(
        r.starts_with("err(") && r.contains("invalid subject"),
        "{r}"
    );
    let r = call(&t, a, "publish", &[&wave("orders.>"), &wave("x")]);
    assert!(r.starts_with("err(") && r.contains("wildcard"), "{r}");
}
