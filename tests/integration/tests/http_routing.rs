//! wasmCloud's http-server routing modes through the binary: one listener
//! for two components, by exact path (`routing_mode: path`) and by the
//! `Host` header (`routing_mode: host`), with the 404 and 400 answers of
//! wasmCloud's provider; and a routing mode it does not know refused by
//! name.
#![forbid(unsafe_code)]

use std::io::{BufReader, Write};
use std::net::TcpStream;
use std::time::Duration;

use twig_integration_tests::guest_path;
use twig_integration_tests::slow_http::read_response;
use twig_integration_tests::twig::{up_on_free_port, TempDir, Twig};

/// One GET with the given `Host` (none if `None`); status and body.
fn get(port: u16, path: &str, host: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let host = host.map(|h| format!("host: {h}\r\n")).unwrap_or_default();
    // HTTP/1.0 may leave out Host; the server then routes on nothing.
    let version = if host.is_empty() { "1.0" } else { "1.1" };
    write!(
        s,
        "GET {path} HTTP/{version}\r\n{host}connection: close\r\n\r\n"
    )
    .unwrap();
    let (status, body) = read_response(&mut BufReader::new(s)).expect("response");
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Two components behind one `ghcr.io/wasmcloud/http-server` provider in
/// `mode`, each link naming its route under `key`.
fn app(dir: &std::path::Path, port: u16, mode: &str, key: &str, echo: &str, hello: &str) -> String {
    let text = format!(
        "apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: routed
spec:
  components:
    - name: echo
      type: component
      properties:
        image: {echo_wasm}
      traits:
        - type: spreadscaler
          properties:
            instances: 1
    - name: hello
      type: component
      properties:
        image: {hello_wasm}
      traits:
        - type: spreadscaler
          properties:
            instances: 1
    - name: httpserver
      type: capability
      properties:
        image: ghcr.io/wasmcloud/http-server:0.27.0
        config:
          - name: routing
            properties:
              routing_mode: {mode}
              address: 127.0.0.1:{port}
      traits:
        - type: link
          properties:
            name: to-echo
            target:
              name: echo
            namespace: wasi
            package: http
            interfaces: [incoming-handler]
            source:
              config:
                - name: echo-route
                  properties:
                    {key}: {echo}
        - type: link
          properties:
            name: to-hello
            target:
              name: hello
            namespace: wasi
            package: http
            interfaces: [incoming-handler]
            source:
              config:
                - name: hello-route
                  properties:
                    {key}: {hello}
",
        echo_wasm = guest_path("http-echo").display(),
        hello_wasm = guest_path("wasmcloud-http").display(),
    );
    let path = dir.join(format!("{mode}.yaml"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn up(tmp: &TempDir, mode: &str, key: &str, echo: &str, hello: &str) -> (Twig, u16) {
    up_on_free_port(|port| {
        let a = app(tmp.path(), port, mode, key, echo, hello);
        let t = Twig::up(&tmp.path().join(format!("d-{mode}-{port}")), &["--app", &a]);
        let s = t.settled(1);
        for c in s["apps"][0]["components"].as_array().unwrap() {
            assert_eq!(c["state"], "running", "{s}\n{}", t.log_text());
        }
        t
    })
}

#[test]
fn path_mode_routes_by_exact_path_on_one_listener() {
    let tmp = TempDir::new("http-path");
    let (t, port) = up(&tmp, "path", "path", "/status/201", "/hello");
    assert_eq!(get(port, "/status/201", Some("x")).0, 201);
    // The query is not part of the route.
    assert_eq!(get(port, "/status/201?a=1", Some("x")).0, 201);
    let (status, body) = get(port, "/hello", Some("x"));
    assert_eq!(status, 200);
    assert!(body.contains("hello from wasmcloud-component"), "{body}");
    // Exact: no prefix, no trailing slash.
    for miss in ["/hello/", "/hello/more", "/", "/status/202"] {
        assert_eq!(
            get(port, miss, Some("x")),
            (404, "path not found\n".into()),
            "{miss}"
        );
    }
    // A request with no route is answered from its head: the server does
    // not wait for a body no component will read (it waits up to 1 s for
    // a routed request's first bytes).
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let began = std::time::Instant::now();
    write!(
        s,
        "POST /nowhere HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n"
    )
    .unwrap();
    let (status, body) = read_response(&mut BufReader::new(s)).expect("response");
    let took = began.elapsed();
    assert_eq!(
        (status, String::from_utf8_lossy(&body).into_owned()),
        (404, "path not found\n".into())
    );
    assert!(took < Duration::from_millis(900), "404 took {took:?}");
    let log = t.log_text();
    assert!(log.contains("path routing"), "{log}");
}

#[test]
fn host_mode_routes_by_the_host_header_port_included() {
    let tmp = TempDir::new("http-host");
    let (_t, port) = up(&tmp, "host", "host", "echo.local", "hello.local:8081");
    assert_eq!(get(port, "/status/203", Some("echo.local")).0, 203);
    let (status, body) = get(port, "/", Some("hello.local:8081"));
    assert_eq!(status, 200);
    assert!(body.contains("hello from wasmcloud-component"), "{body}");
    // The port is part of the value, and nothing is lower-cased.
    assert_eq!(
        get(port, "/", Some("hello.local")),
        (404, "host not found\n".into())
    );
    assert_eq!(
        get(port, "/", Some("ECHO.local")),
        (404, "host not found\n".into())
    );
    assert_eq!(get(port, "/", None), (400, "missing host header\n".into()));
}

#[test]
fn an_unknown_routing_mode_fails_the_provider_by_name() {
    let tmp = TempDir::new("http-mode");
    let a = app(tmp.path(), 1, "Path", "path", "/a", "/b");
    let t = Twig::up(&tmp.path().join("d"), &[]);
    let o = t.cli(&["apply", &a]);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{err}");
    assert!(err.contains("unknown routing_mode: Path"), "{err}");
}
