//! One request can be followed through the host in its JSON logs: every
//! guest call runs in a `call` span with a trace id, the component, the
//! export and what triggered it, and a log line the guest writes carries
//! those spans.

use twig_integration_tests::guest_path;
use twig_integration_tests::twig::{stderr, stdout, TempDir, Twig};

/// Every `call` span of the log lines whose message contains `needle`.
fn call_spans(log: &str, needle: &str) -> Vec<Vec<serde_json::Value>> {
    log.lines()
        .filter(|l| l.contains(needle))
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            v["spans"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|s| s["name"] == "call")
                .collect()
        })
        .collect()
}

#[test]
fn a_guest_log_line_names_its_call_and_trace() {
    let tmp = TempDir::new("trace");
    let app = tmp.path().join("app.yaml");
    std::fs::write(
        &app,
        format!(
            r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: traced
spec:
  components:
    - name: wc
      type: component
      properties:
        image: file://{}
      traits:
        - type: spreadscaler
          properties:
            instances: 1
"#,
            guest_path("wasmcloud").display()
        ),
    )
    .unwrap();
    let data = tmp.path().join("d");
    let app = app.display().to_string();
    let t = Twig::up(&data, &["--app", &app, "--log-format", "json"]);
    t.settled(1);
    for name in ["Ada", "Grace"] {
        let o = t.invoke("traced-wc", "hello", &[&format!("\"{name}\"")]);
        assert!(stdout(&o).contains(name), "{}", stderr(&o));
    }
    // The guest's line is written while the call runs.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let (ada, grace) = loop {
        let log = t.log_text();
        let ada = call_spans(&log, "name=Ada");
        let grace = call_spans(&log, "name=Grace");
        if !ada.is_empty() && !grace.is_empty() {
            break (ada, grace);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the guest's log lines never appeared: {log}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let span = |spans: &[Vec<serde_json::Value>]| -> serde_json::Value {
        assert_eq!(spans.len(), 1, "one line per call: {spans:?}");
        assert_eq!(spans[0].len(), 1, "one call span: {spans:?}");
        spans[0][0].clone()
    };
    let (a, g) = (span(&ada), span(&grace));
    for s in [&a, &g] {
        assert_eq!(s["component"], "traced-wc", "{s}");
        assert_eq!(s["export"], "hello", "{s}");
        assert_eq!(s["trigger"], "admin", "{s}");
        let trace = s["trace"].as_str().unwrap_or_default();
        assert!(
            trace.len() == 32 && trace.bytes().all(|b| b.is_ascii_hexdigit()),
            "a W3C trace id: {s}"
        );
    }
    assert_ne!(a["trace"], g["trace"], "each request has its own trace");
}
