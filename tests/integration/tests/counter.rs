//! `examples/counter/app.yaml` — wasmCloud's HTTP counter manifest — on the
//! real binary: requests over HTTP count per path in the built-in store,
//! the count survives `kill -9`, and `set-link-name` switches between two
//! named key-value links.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use twig_integration_tests::twig::{demo_path, repo_root, up_on_free_port, TempDir, Twig};

/// One HTTP/1.1 GET with `Connection: close`; returns (status, body).
/// Decodes a chunked body; enough of a client for these tests, written
/// here so the test needs no curl.
fn get(port: u16, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("header end");
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        loop {
            let (size, after) = rest.split_once("\r\n").expect("chunk size");
            let n = usize::from_str_radix(size.trim(), 16).expect("hex size");
            if n == 0 {
                break;
            }
            out.push_str(&after[..n]);
            rest = &after[n + 2..];
        }
        out
    } else {
        body.to_string()
    };
    (status, body)
}

/// The example manifest as shipped, with the image made absolute (the test
/// writes the copy elsewhere) and the port changed so tests cannot clash.
fn counter_app(dir: &std::path::Path, port: u16, extra_link: bool) -> String {
    let counter = demo_path("counter");
    let mut text = std::fs::read_to_string(repo_root().join("examples/counter/app.yaml"))
        .unwrap()
        .replace("../build/counter.wasm", counter.to_str().unwrap())
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    assert!(text.contains(&format!("127.0.0.1:{port}")));
    if extra_link {
        // A second store behind the link named `cache`.
        text = text.replace(
            "            interfaces: [atomics, store]\n",
            "            interfaces: [atomics, store]\n        - type: link\n          properties:\n            name: cache\n            target:\n              name: cache\n            namespace: wasi\n            package: keyvalue\n            interfaces: [atomics, store]\n",
        );
        text.push_str("\n    - name: cache\n      type: capability\n      properties:\n        image: twig:keyvalue\n");
    }
    let path = dir.join("counter.yaml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn counter_counts_over_http_and_keeps_the_count_through_kill_9() {
    let tmp = TempDir::new("counter");
    let data = tmp.path().join("d");
    let mut s = serde_json::Value::Null;
    let (mut t, port) = up_on_free_port(|port| {
        let app = counter_app(tmp.path(), port, false);
        let t = Twig::up(&data, &["--app", &app]);
        s = t.settled(1);
        t
    });
    for c in s["apps"][0]["components"].as_array().unwrap() {
        assert_eq!(c["state"], "running", "{s}");
    }
    let log = t.log_text();
    assert!(
        log.contains("twig:http-server stands in for ghcr.io/wasmcloud/http-server:0.27.0"),
        "{log}"
    );
    assert!(
        log.contains("twig:keyvalue stands in for ghcr.io/wasmcloud/keyvalue-redis:0.30.0"),
        "{log}"
    );

    assert_eq!(get(port, "/hello"), (200, "Counter /hello: 1".into()));
    assert_eq!(get(port, "/hello"), (200, "Counter /hello: 2".into()));
    assert_eq!(get(port, "/other"), (200, "Counter /other: 1".into()));
    assert_eq!(get(port, "/hello"), (200, "Counter /hello: 3".into()));

    // A power cut for the process; back up with no --app and no network.
    t.kill9();
    let t = Twig::up(&data, &[]);
    t.settled(1);
    assert_eq!(get(port, "/hello"), (200, "Counter /hello: 4".into()));
    assert_eq!(get(port, "/other"), (200, "Counter /other: 2".into()));

    // A link name the component has no link for: the component's error
    // is a 500 with a fixed text (what a component was told can carry
    // host details); the cause goes to the log, with the component.
    let (status, body) = get(port, "/hello?link_name=nope");
    assert_eq!(status, 500, "{body}");
    assert_eq!(body, "the component reported an error\n");
    let log = t.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("does not have an existing link with name `nope`"))
        .unwrap_or_else(|| panic!("the cause is not logged:\n{log}"));
    assert!(line.contains("counter"), "{line}");
}

#[test]
fn set_link_name_switches_between_two_stores() {
    let tmp = TempDir::new("counter-links");
    let mut s = serde_json::Value::Null;
    let (_t, port) = up_on_free_port(|port| {
        let app = counter_app(tmp.path(), port, true);
        let t = Twig::up(&tmp.path().join("d"), &["--app", &app]);
        s = t.settled(1);
        t
    });
    for c in s["apps"][0]["components"].as_array().unwrap() {
        assert_eq!(c["state"], "running", "{s}");
    }
    assert_eq!(get(port, "/n"), (200, "Counter /n: 1".into()));
    assert_eq!(get(port, "/n"), (200, "Counter /n: 2".into()));
    // The `cache` link goes to the other store, which starts at zero.
    assert_eq!(
        get(port, "/n?link_name=cache"),
        (200, "Counter /n: 1".into())
    );
    // The link name lasts for one request only.
    assert_eq!(get(port, "/n"), (200, "Counter /n: 3".into()));
    assert_eq!(
        get(port, "/n?link_name=cache"),
        (200, "Counter /n: 2".into())
    );
    assert_eq!(
        get(port, "/n?link_name=default"),
        (200, "Counter /n: 4".into())
    );
}

/// `twig apply` of an app whose HTTP listener cannot bind (its port is
/// taken) exits non-zero with the address and the cause, where it used to
/// print `applied` and exit 0; the app stays deployed and shows the
/// provider failed.
#[test]
fn apply_fails_when_the_listener_cannot_bind() {
    let tmp = TempDir::new("counter-bind");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let app = counter_app(tmp.path(), port, false);
    let t = Twig::up(&tmp.path().join("d"), &[]);
    let o = t.cli(&["apply", &app]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "apply should fail: {err}");
    assert!(
        err.contains("not all of it started")
            && err.contains(&format!("127.0.0.1:{port}"))
            && err.contains("in use"),
        "{err}"
    );
    assert!(String::from_utf8_lossy(&o.stdout).trim().is_empty());
    let s = t.status();
    let failed: Vec<&serde_json::Value> = s["apps"][0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["state"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{s}");
    drop(taken);
}

/// A provider whose image twig has no stand-in for is a failure `apply`
/// reports (non-zero, naming the image), not a placement decision: where
/// it used to leave the provider `not placed` and exit 0.
#[test]
fn apply_fails_when_a_provider_has_no_stand_in() {
    let tmp = TempDir::new("counter-no-stand-in");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = counter_app(tmp.path(), port, false);
    let text = std::fs::read_to_string(&app).unwrap().replace(
        "ghcr.io/wasmcloud/keyvalue-redis:0.30.0",
        "ghcr.io/example/keyvalue-elsewhere:0.1.0",
    );
    assert!(text.contains("keyvalue-elsewhere"));
    std::fs::write(&app, text).unwrap();
    let t = Twig::up(&tmp.path().join("d"), &[]);
    let o = t.cli(&["apply", &app]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "apply should fail: {err}");
    assert!(
        err.contains("ghcr.io/example/keyvalue-elsewhere:0.1.0")
            && err.contains("no built-in stand-in"),
        "{err}"
    );
    let s = t.status();
    let states: Vec<(String, String)> = s["apps"][0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_str().unwrap_or_default().to_string(),
                c["state"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert!(
        states.iter().any(|(_, st)| st == "failed"),
        "the provider should be failed: {states:?}"
    );
}
