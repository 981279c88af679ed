//! The HTTP server with real guests over real sockets (127.0.0.1, port 0).
//!
//! Guests: `tests/guests/out/wasmcloud-http.wasm` and `http-echo.wasm`
//! (built by `tests/guests/build.sh`). The client is a small HTTP/1.1
//! client on std sockets: it writes the request on one thread while it
//! reads the response on another, since the echo guest streams the body
//! back while it is still arriving.
#![forbid(unsafe_code)]

mod common;

use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;
use twig_http_server::{HttpServer, ServerConfig};

// ---- tests ----------------------------------------------------------------

#[test]
fn wasmcloud_component_answers() {
    let (server, _pool) = serve("wasmcloud-http", config());
    let r = get(server.local_addr(), "/");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello from wasmcloud-component");
    // And a POST whose body it never reads.
    let r = request(
        server.local_addr(),
        "POST",
        "/x",
        &[],
        Body::Fixed(pattern(300_000)),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "hello from wasmcloud-component");
    server.stop();
}

#[test]
fn headers_method_path_and_authority_reach_the_guest() {
    let (server, _pool) = serve("http-echo", config());
    let addr = server.local_addr();
    let r = request(
        addr,
        "GET",
        "/some/path?q=1&r=two",
        &[
            ("X-Echo-A", "first"),
            ("x-echo-a", "second"),
            ("x-echo-b", "with spaces and \t tab"),
            ("x-other", "not echoed"),
        ],
        Body::None,
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header_all("x-echo-a"), vec!["first", "second"]);
    assert_eq!(r.header("x-echo-b"), Some("with spaces and \t tab"));
    assert_eq!(r.header("x-other"), None);
    assert_eq!(r.header("x-method"), Some("GET"));
    assert_eq!(r.header("x-path"), Some("/some/path?q=1&r=two"));
    assert_eq!(r.header("x-authority"), Some(addr.to_string().as_str()));
    assert!(r.body.is_empty());

    // A method outside the WASI list arrives as `other`.
    let r = request(addr, "PURGE", "/", &[], Body::None);
    assert_eq!(r.header("x-method"), Some("PURGE"));
}

#[test]
fn guest_sets_the_status() {
    let (server, _pool) = serve("http-echo", config());
    let r = get(server.local_addr(), "/status/418");
    assert_eq!(r.status, 418);
    let r = get(server.local_addr(), "/status/201");
    assert_eq!(r.status, 201);
}

#[test]
fn content_length_body_streams_back() {
    let (server, _pool) = serve("http-echo", config());
    let body = pattern(5 << 20);
    let r = request(
        server.local_addr(),
        "POST",
        "/echo",
        &[],
        Body::Fixed(body.clone()),
    );
    assert_eq!(r.status, 200);
    assert!(r.complete);
    assert_eq!(r.body.len(), body.len());
    assert!(r.body == body, "echoed body differs");
}

/// The body race of issue 17: a guest that reads with non-blocking
/// `read` and stops at its first empty chunk got an empty body on 2 % of
/// POSTs idle and 25-30 % under load, where `wasmtime serve` gave it
/// data. The client writes the head and the body separately (so the body
/// may be a moment behind the head), from 4 threads at once, 10 B to
/// 1 MiB, each on a fresh connection (the guest leaves most of a large
/// body unread, so the connection cannot be reused).
#[test]
fn a_guest_that_stops_at_its_first_empty_read_still_gets_the_body() {
    let (server, _pool) = serve("http-echo", config());
    let addr = server.local_addr();
    let empty: Vec<(usize, String)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..4)
            .map(|t| {
                s.spawn(move || {
                    let mut empty = Vec::new();
                    for i in 0..250 {
                        // 10 B .. 1 MiB, spread evenly on a log scale.
                        let k = (i * 4 + t) % 50;
                        let n = (10f64 * (104_857.6f64).powf(k as f64 / 49.0)) as usize;
                        let mut c = Conn::open(addr);
                        let r = c
                            .request("POST", "/first-read", &[], Body::Fixed(pattern(n)))
                            .expect("answered");
                        assert_eq!(r.status, 200, "{}", r.text());
                        if r.text() == "read 0 bytes" {
                            empty.push((n, r.text()));
                        }
                    }
                    empty
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().expect("client thread"))
            .collect()
    });
    assert!(
        empty.is_empty(),
        "{} of 1000 first reads were empty: {empty:?}",
        empty.len()
    );
}

#[test]
fn chunked_body_streams_back() {
    let (server, _pool) = serve("http-echo", config());
    let body = pattern(5 << 20);
    let r = request(
        server.local_addr(),
        "PUT",
        "/echo",
        &[("x-echo-kind", "chunked")],
        Body::Chunked(body.clone(), 7919),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-echo-kind"), Some("chunked"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert!(r.complete);
    assert!(
        r.body == body,
        "echoed body differs ({} bytes)",
        r.body.len()
    );
}

#[test]
fn raw_streams_and_pollables_echo() {
    let (server, _pool) = serve("http-echo", config());
    let body = pattern(1 << 20);
    let r = request(
        server.local_addr(),
        "POST",
        "/raw-echo",
        &[],
        Body::Chunked(body.clone(), 1000),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-raw"), Some("1"));
    assert!(r.complete);
    assert!(r.body == body);
}

#[test]
fn large_response_streams_out() {
    let (server, _pool) = serve("http-echo", config());
    let n = 5 << 20;
    let r = get(server.local_addr(), &format!("/big/{n}"));
    assert_eq!(r.status, 200);
    assert!(r.complete);
    assert_eq!(r.body.len(), n);
    assert!(r.body.chunks(10).all(|c| c == &b"0123456789"[..c.len()]));
}

#[test]
fn bad_headers_from_the_guest_are_header_errors() {
    let (server, _pool) = serve("http-echo", config());
    let r = request(
        server.local_addr(),
        "GET",
        "/header-errors",
        &[("X-Echo-A", "v")],
        Body::None,
    );
    assert_eq!(r.status, 200);
    let text = r.text();
    for want in [
        "bad-name Err(HeaderError::InvalidSyntax)",
        "forbidden Err(HeaderError::Forbidden)",
        "bad-value Err(HeaderError::InvalidSyntax)",
        "from-list Some(HeaderError::Forbidden)",
        "immutable Err(HeaderError::Immutable)",
        "request-header x-echo-a=[\"v\"]",
        "status-1000 Err(())",
        "response-headers Err(HeaderError::Immutable)",
        "entries 1",
    ] {
        assert!(
            text.lines().any(|l| l == want),
            "missing {want:?} in:\n{text}"
        );
    }
}

#[test]
fn request_trailers_are_ready_and_empty() {
    let (server, _pool) = serve("http-echo", config());
    let r = request(
        server.local_addr(),
        "POST",
        "/request-trailers",
        &[],
        Body::Chunked(b"abc".to_vec(), 2),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        "first Some(Ok(Ok(false)))\nsecond Some(Err(()))\n"
    );
}

#[test]
fn outgoing_http_is_refused_with_an_error_code() {
    let (server, _pool) = serve("http-echo", config());
    let r = get(server.local_addr(), "/outgoing");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.text(),
        "Some(ErrorCode::InternalError(Some(\"outgoing HTTP is not available on twig\")))\n"
    );
}

#[test]
fn oversize_bodies_get_413() {
    let cfg = ServerConfig {
        max_request_body: 1 << 20,
        ..config()
    };
    let (server, _pool) = serve("http-echo", cfg);
    let addr = server.local_addr();

    // Declared too large: refused before the guest runs.
    let r = request(addr, "POST", "/consume", &[], Body::HeadOnly(2 << 20));
    assert_eq!(r.status, 413);

    // Chunked, found out while streaming, before the guest responded.
    let r = request(
        addr,
        "POST",
        "/consume",
        &[],
        Body::Chunked(pattern(2 << 20), 16384),
    );
    assert_eq!(r.status, 413, "{}", r.text());

    // Within the limit it is read whole.
    let r = request(
        addr,
        "POST",
        "/consume",
        &[],
        Body::Chunked(pattern(1 << 20), 16384),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), format!("read {} bytes", 1 << 20));

    // The echo guest responds before it reads: then the response is cut.
    let r = request(
        addr,
        "POST",
        "/echo",
        &[],
        Body::Chunked(pattern(3 << 20), 16384),
    );
    assert_eq!(r.status, 200);
    assert!(!r.complete, "an over-limit echo must not look complete");
    assert!(r.body.len() <= 1 << 20);

    assert_eq!(get(addr, "/status/200").status, 200);
}

#[test]
fn returning_without_a_response_is_500() {
    let (server, _pool) = serve("http-echo", config());
    let r = get(server.local_addr(), "/no-response");
    assert_eq!(r.status, 500);
    assert!(
        r.text().contains("without sending a response"),
        "{}",
        r.text()
    );
}

#[test]
fn a_trap_is_500_and_the_server_keeps_serving() {
    let (server, pool) = serve("http-echo", config());
    let addr = server.local_addr();
    for _ in 0..3 {
        let r = get(addr, "/trap");
        assert_eq!(r.status, 500);
        assert_eq!(r.text(), "the component failed\n");
        assert_eq!(get(addr, "/status/202").status, 202);
    }
    assert!(pool.idle.lock().unwrap().iter().all(|i| !i.is_poisoned()));
}

#[test]
fn failures_after_the_response_started_cut_the_body() {
    let (server, _pool) = serve("http-echo", config());
    let addr = server.local_addr();
    for path in ["/trap-after-set", "/trailers", "/content-length-mismatch"] {
        let r = get(addr, path);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            !r.complete,
            "{path}: a broken body must not look complete: {r:?}"
        );
    }
    assert_eq!(get(addr, "/status/200").status, 200);
}

#[test]
fn slow_guests_get_504() {
    let cfg = ServerConfig {
        request_timeout: Duration::from_millis(300),
        ..config()
    };
    let (server, _pool) = serve("http-echo", cfg);
    let t = Instant::now();
    let r = get(server.local_addr(), "/sleep/1500");
    assert_eq!(r.status, 504);
    assert!(
        t.elapsed() < Duration::from_millis(1200),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(get(server.local_addr(), "/sleep/10").text(), "slept\n");
}

#[test]
fn a_guest_running_on_a_worker_does_not_hold_up_other_connections() {
    // The first request's guest runs inline on the worker that read it
    // (server.rs); while it keeps the CPU busy, or waits on a timer, new
    // connections are still accepted and served at once, by the other
    // worker and a guest on a blocking thread.
    let (server, _pool) = serve("http-echo", config());
    let addr = server.local_addr();
    for (path, answer) in [("/spin/1500", "spun\n"), ("/sleep/1500", "slept\n")] {
        let slow = std::thread::spawn(move || get(addr, path));
        // Let the slow request reach its guest first.
        std::thread::sleep(Duration::from_millis(300));
        let t = Instant::now();
        for _ in 0..3 {
            let r = get(addr, "/status/201");
            assert_eq!(r.status, 201, "{path}");
        }
        assert!(
            t.elapsed() < Duration::from_millis(700),
            "three requests during {path} took {:?}",
            t.elapsed()
        );
        let r = slow.join().unwrap();
        assert_eq!((r.status, r.text()), (200, answer.to_string()), "{path}");
    }
}

#[test]
fn a_response_set_after_504_does_not_hold_the_slot() {
    // One slot; the guest sets its response (and starts a 4 MiB body)
    // only after the client got 504. Its writes must fail at once rather
    // than fill the pipe and block until the guest's 20 s deadline.
    let cfg = ServerConfig {
        request_timeout: Duration::from_millis(200),
        max_concurrent: 1,
        ..config()
    };
    let (server, _pool) = serve("http-echo", cfg);
    let addr = server.local_addr();
    assert_eq!(
        get(addr, &format!("/big/{}?sleep=400", 4 << 20)).status,
        504
    );
    let t = Instant::now();
    let status = loop {
        let s = get(addr, "/status/200").status;
        if s == 200 || t.elapsed() > Duration::from_secs(5) {
            break s;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status, 200);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "slot held for {:?}",
        t.elapsed()
    );
}

#[test]
fn requests_over_the_concurrency_cap_get_503() {
    let cfg = ServerConfig {
        max_concurrent: 1,
        ..config()
    };
    let (server, _pool) = serve("http-echo", cfg);
    let addr = server.local_addr();
    let slow = std::thread::spawn(move || get(addr, "/sleep/1000"));
    std::thread::sleep(Duration::from_millis(300));
    let t = Instant::now();
    let r = get(addr, "/status/200");
    assert_eq!(r.status, 503);
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(t.elapsed() < Duration::from_millis(500));
    assert_eq!(slow.join().unwrap().text(), "slept\n");
    assert_eq!(get(addr, "/status/200").status, 200);
}

#[test]
fn one_keep_alive_connection_serves_many_requests() {
    let (server, _pool) = serve("http-echo", config());
    let mut conn = Conn::open(server.local_addr());
    for i in 0..200 {
        let r = if i % 2 == 0 {
            conn.request("GET", &format!("/status/{}", 200 + i % 7), &[], Body::None)
        } else {
            conn.request(
                "POST",
                "/echo",
                &[],
                Body::Fixed(format!("body {i}").into_bytes()),
            )
        }
        .unwrap_or_else(|e| panic!("request {i} on the kept-alive connection: {e}"));
        if i % 2 == 0 {
            assert_eq!(r.status, 200 + i % 7);
        } else {
            assert_eq!(r.text(), format!("body {i}"));
        }
    }
    // HEAD: headers only, and the connection goes on.
    let r = conn.request("HEAD", "/", &[], Body::None).unwrap();
    assert_eq!(r.status, 200);
    let r = conn.request("GET", "/status/204", &[], Body::None).unwrap();
    assert_eq!(r.status, 204);
}

#[test]
fn a_component_without_the_handler_gets_500() {
    let (server, _pool) = serve("compute", config());
    let r = get(server.local_addr(), "/");
    assert_eq!(r.status, 500);
}

#[test]
fn stop_closes_the_port() {
    let (server, _pool) = serve("http-echo", config());
    let addr = server.local_addr();
    assert_eq!(get(addr, "/status/200").status, 200);
    // An idle kept-alive connection must not hold stop up.
    let _idle = Conn::open(addr);
    let t = Instant::now();
    server.stop();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(
        TcpStream::connect(addr).is_err(),
        "still listening after stop"
    );
    // The port can be bound again at once.
    let again = HttpServer::start(
        ServerConfig {
            address: addr,
            ..config()
        },
        "http-echo",
        Pool::new("http-echo"),
    )
    .unwrap();
    assert_eq!(get(again.local_addr(), "/status/200").status, 200);
}

#[test]
fn binding_a_used_port_fails_at_start() {
    let (server, _pool) = serve("http-echo", config());
    let err = HttpServer::start(
        ServerConfig {
            address: server.local_addr(),
            ..config()
        },
        "http-echo",
        Pool::new("http-echo"),
    )
    .err()
    .expect("second bind must fail");
    assert!(err.contains("cannot listen on"), "{err}");
}
