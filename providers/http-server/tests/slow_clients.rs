//! Idle and slow clients against the server, over real sockets with the
//! `http-echo` guest: slowloris sockets and idle keep-alive connections
//! never keep a fresh client out, the header, idle and write-stall
//! timeouts close what they should, the per-peer cap, 503 when every
//! connection is busy, 400 without `Host`, fixed error bodies.
//!
//! Limits are set small here so each test takes seconds; the full-size
//! runs (200 slowloris sockets for 60 s, 64 and 300 idle clients, default
//! limits, through the `twig` binary) are in
//! tests/integration/tests/http_slow_clients.rs.
#![forbid(unsafe_code)]

mod common;

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use twig_http_server::ServerConfig;

fn peer(n: u16) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, (n >> 8) as u8 + 1, n as u8)
}

/// A fresh connection from `from`, one GET, `Connection: close`; the
/// status and how long it took.
fn probe(addr: SocketAddr, from: Ipv4Addr) -> (u16, Duration) {
    let t = Instant::now();
    let mut c = Conn::open_from(from, addr);
    let r = c
        .request("GET", "/status/200", &[("connection", "close")], Body::None)
        .expect("probe answered");
    (r.status, t.elapsed())
}

#[test]
fn slowloris_sockets_do_not_starve_fresh_clients() {
    let cfg = ServerConfig {
        max_connections: 64,
        header_timeout: Duration::from_secs(1),
        ..config()
    };
    let (server, _pool) = serve("http-echo", cfg);
    let addr = server.local_addr();
    // 200 sockets from 8 addresses (25 each, under the per-peer cap of 32,
    // so it is the full table that must make room), each sending a
    // request line a byte at a time and reconnecting when closed.
    let stop = Arc::new(AtomicBool::new(false));
    let attacker = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let head = b"GET /slow HTTP/1.1\r\nhost: x\r\nx-a: ";
            let mut socks: Vec<(Ipv4Addr, Option<TcpStream>, usize)> =
                (0..200).map(|i| (peer(1 + i % 8), None, 0)).collect();
            let mut reconnects = 0usize;
            while !stop.load(Ordering::Relaxed) {
                for (src, sock, sent) in socks.iter_mut() {
                    if sock.is_none() {
                        *sock = connect_from(*src, addr).ok();
                        *sent = 0;
                        reconnects += 1;
                    }
                    if let Some(s) = sock {
                        let b = head.get(*sent).copied().unwrap_or(b'a');
                        if s.write_all(&[b]).is_err() {
                            *sock = None;
                        }
                        *sent += 1;
                    }
                }
                std::thread::sleep(Duration::from_millis(300));
            }
            reconnects
        })
    };
    std::thread::sleep(Duration::from_millis(500));
    let end = Instant::now() + Duration::from_secs(6);
    let mut worst = Duration::ZERO;
    let mut n = 0;
    while Instant::now() < end {
        let (status, took) = probe(addr, peer(100));
        assert_eq!(status, 200);
        assert!(took < Duration::from_secs(1), "probe {n} took {took:?}");
        worst = worst.max(took);
        n += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    stop.store(true, Ordering::Relaxed);
    let reconnects = attacker.join().unwrap();
    // The header timeout (1 s) and eviction closed the attacker's sockets
    // over and over; it opened well over its 200.
    assert!(reconnects > 400, "only {reconnects} connects");
    eprintln!("{n} probes, slowest {worst:?}, attacker connects {reconnects}");
}

#[test]
fn idle_keep_alive_clients_do_not_starve_fresh_clients() {
    let cfg = ServerConfig {
        max_connections: 16,
        ..config()
    };
    let (server, _pool) = serve("http-echo", cfg);
    let addr = server.local_addr();
    // 64 clients, each from its own address, each done with one request
    // and holding its connection.
    let mut idle: Vec<Conn> = (0..64)
        .map(|i| {
            let mut c = Conn::open_from(peer(i), addr);
            assert_eq!(
                c.request("GET", "/status/200", &[], Body::None)
                    .unwrap()
                    .status,
                200
            );
            c
        })
        .collect();
    let (status, took) = probe(addr, peer(200));
    assert_eq!(status, 200);
    assert!(took < Duration::from_secs(1), "{took:?}");
    // The first ones were closed to make room; the last 15 are still open
    // and still served.
    assert!(idle[0].closed_within(Duration::from_secs(1)));
    let last = idle.last_mut().unwrap();
    assert_eq!(
        last.request("GET", "/status/201", &[], Body::None)
            .unwrap()
            .status,
        201
    );
}

#[test]
fn a_peer_at_its_cap_loses_its_own_longest_idle_connection() {
    let cfg = ServerConfig {
        max_connections_per_peer: 2,
        ..config()
    };
    let (server, _pool) = serve("http-echo", cfg);
    let addr = server.local_addr();
    let mut conns: Vec<Conn> = (0..2)
        .map(|_| {
            let mut c = Conn::open_from(peer(1), addr);
            c.request("GET", "/", &[], Body::None).unwrap();
            c
        })
        .collect();
    let mut other = Conn::open_from(peer(2), addr);
    other.request("GET", "/", &[], Body::None).unwrap();
    // A third from the same address gets in; the first of its two goes.
    let mut third = Conn::open_from(peer(1), addr);
    assert_eq!(
        third.request("GET", "/", &[], Body::None).unwrap().status,
        200
    );
    assert!(conns[0].closed_within(Duration::from_secs(1)));
    assert_eq!(
        conns[1]
            .request("GET", "/", &[], Body::None)
            .unwrap()
            .status,
        200
    );
    // The other address was not touched.
    assert_eq!(
        other.request("GET", "/", &[], Body::None).unwrap().status,
        200
    );
}

#[test]
fn with_every_connection_busy_a_new_one_gets_503() {
    let cfg = ServerConfig {
        max_connections: 2,
        ..config()
    };
    let (server, _pool) = serve("http-echo", cfg);
    let addr = server.local_addr();
    let busy: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || get(addr, "/sleep/1500").text()))
        .collect();
    std::thread::sleep(Duration::from_millis(400));
    let r = get(addr, "/status/200");
    assert_eq!(r.status, 503);
    assert_eq!(r.text(), "too many connections\n");
    assert_eq!(r.header("retry-after"), Some("1"));
    for b in busy {
        assert_eq!(b.join().unwrap(), "slept\n");
    }
    assert_eq!(get(addr, "/status/200").status, 200);
}

#[test]
fn header_timeout_counts_from_the_first_byte_and_trickling_does_not_extend_it() {
    let cfg = ServerConfig {
        header_timeout: Duration::from_millis(600),
        idle_timeout: Duration::from_millis(1500),
        ..config()
    };
    let (server, _pool) = serve("http-echo", cfg);
    let addr = server.local_addr();

    // A head sent a byte every 100 ms is cut at about 600 ms.
    let mut s = TcpStream::connect(addr).unwrap();
    let t = Instant::now();
    let mut closed_after = None;
    for b in b"GET / HTTP/1.1\r\nhost: x\r\nx-slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
        if s.write_all(&[*b]).is_err() {
            closed_after = Some(t.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let closed_after = closed_after.expect("the trickled head was never cut");
    assert!(
        closed_after >= Duration::from_millis(500) && closed_after < Duration::from_millis(1500),
        "{closed_after:?}"
    );

    // Between requests the idle timeout applies (longer than the header
    // one): still there after 1 s, gone after 1.5 s idle.
    let mut c = Conn::open(addr);
    c.request("GET", "/", &[], Body::None).unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    assert_eq!(c.request("GET", "/", &[], Body::None).unwrap().status, 200);
    let t = Instant::now();
    assert!(c.closed_within(Duration::from_secs(3)));
    assert!(
        t.elapsed() >= Duration::from_millis(1300),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn a_client_that_stops_reading_is_dropped_and_frees_its_slot() {
    let cfg = ServerConfig {
        max_concurrent: 1,
        idle_timeout: Duration::from_millis(1000),
        ..config()
    };
    let (server, _pool) = serve("http-echo", cfg);
    let addr = server.local_addr();
    // 200 MB that nobody reads: the guest blocks on a full pipe.
    let mut stuck = TcpStream::connect(addr).unwrap();
    stuck
        .write_all(b"GET /big/200000000 HTTP/1.1\r\nhost: x\r\n\r\n")
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(get(addr, "/status/200").status, 503);
    // After the stall timeout the connection is closed, the guest's
    // writes fail, and its slot is free again.
    let t = Instant::now();
    loop {
        let status = get(addr, "/status/200").status;
        if status == 200 {
            break;
        }
        assert!(t.elapsed() < Duration::from_secs(5), "slot still held");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn host_header_rules_and_http_1_0() {
    let (server, _pool) = serve("http-echo", config());
    let addr = server.local_addr();
    let raw = |req: &str| -> Resp {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(req.as_bytes()).unwrap();
        read_response(&mut std::io::BufReader::new(s), false).unwrap()
    };
    let r = raw("GET / HTTP/1.1\r\nconnection: close\r\n\r\n");
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "missing Host header\n")
    );
    let r = raw("GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\nconnection: close\r\n\r\n");
    assert_eq!(
        (r.status, r.text().as_str()),
        (400, "more than one Host header\n")
    );
    // HTTP/1.0 may omit it: the guest sees the address it came in on.
    let r = raw("GET /x HTTP/1.0\r\n\r\n");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-authority"), Some(addr.to_string().as_str()));
}

#[test]
fn error_bodies_are_fixed_text() {
    let (server, _pool) = serve("http-echo", config());
    // The guest answers `internal-error(some("invalid status code"))`:
    // the client gets a fixed text, not the component's error.
    let r = get(server.local_addr(), "/status/1000");
    assert_eq!(r.status, 500);
    assert_eq!(r.text(), "the component reported an error\n");
}
