//! `wasi:keyvalue/watcher` through the binary (issue 17): a watcher link
//! from the key-value provider to a component, with keyvalue-redis's
//! `watch` source config, calls the component's `on-set`/`on-delete` for
//! the keys it names, handing it the bucket as a working handle.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use twig_integration_tests::guest_path;
use twig_integration_tests::twig::{stderr, stdout, TempDir, Twig};

fn manifest(dir: &std::path::Path, watch: &str) -> String {
    let text = format!(
        "apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: kv-watch
spec:
  components:
    - name: kvw
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
              name: kv
            namespace: wasi
            package: keyvalue
            interfaces: [store]
    - name: kv
      type: capability
      properties:
        image: ghcr.io/wasmcloud/keyvalue-redis:0.30.0
      traits:
        - type: link
          properties:
            target:
              name: kvw
            namespace: wasi
            package: keyvalue
            interfaces: [watcher]
            source:
              config:
                - name: watch-config
                  properties:
                    WATCH: \"{watch}\"
",
        image = guest_path("kv-watcher").display()
    );
    let path = dir.join("kv-watch.yaml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn ok(t: &Twig, func: &str, args: &[&str]) {
    let o = t.invoke("kvw", func, args);
    assert_eq!(stdout(&o).trim(), "ok", "{func} {args:?}: {}", stderr(&o));
}

#[test]
fn watched_keys_reach_the_component_with_their_bucket() {
    let tmp = TempDir::new("kv-watch");
    // A bad entry is skipped with a warning, as wasmCloud's provider does.
    let app = manifest(tmp.path(), "SET@sensor*, DEL@sensor-1, BOGUS@x");
    let t = Twig::up(&tmp.path().join("d"), &["--app", &app]);
    let s = t.settled(1);
    for c in s["apps"][0]["components"].as_array().unwrap() {
        assert_eq!(c["state"], "running", "{s}");
    }
    ok(&t, "put", &[r#""default""#, r#""sensor-1""#, r#""21""#]);
    ok(&t, "put", &[r#""default""#, r#""other""#, r#""x""#]);
    ok(&t, "put", &[r#""default""#, r#""sensor-2""#, r#""22""#]);
    ok(&t, "del", &[r#""default""#, r#""sensor-1""#]);
    // Not watched for DEL; and a key that is not there is no change.
    ok(&t, "del", &[r#""default""#, r#""sensor-2""#]);
    ok(&t, "del", &[r#""default""#, r#""sensor-9""#]);
    let want = r#"ok(["set sensor-1=21", "set sensor-2=22", "del sensor-1"])"#;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = t.invoke("kvw", "seen", &[r#""default""#]);
        let got = stdout(&o).trim().to_string();
        if got == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the watcher saw {got}, not {want}\n{}",
            t.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nothing more comes in late.
    std::thread::sleep(Duration::from_millis(500));
    let o = t.invoke("kvw", "seen", &[r#""default""#]);
    assert_eq!(stdout(&o).trim(), want);
    let log = t.log_text();
    assert!(
        log.contains("watch entry `BOGUS@x`: unknown operation `BOGUS`"),
        "{log}"
    );
    let human = stdout(&t.cli(&["status"]));
    assert!(human.contains("watched by kv_watch-kvw"), "{human}");
}
