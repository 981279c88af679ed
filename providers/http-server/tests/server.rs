//! The HTTP server with real guests over real sockets (127.0.0.1, port 0).
//!
//! Guests: `tests/guests/out/wasmcloud-http.wasm` and `http-echo.wasm`
//! (built by `tests/guests/build.sh`). The client is a small HTTP/1.1
//! client on std sockets: it writes the request on one thread while it
//! reads the response on another, since the echo guest streams the body
//! back while it is still arriving.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use twig_component::{Component, Engine, Instance, Limits, Linker};
use twig_http_server::{
    call_handler, Dispatch, HttpCtx, HttpServer, HttpTypes, HttpView, IncomingRequest,
    ResponseOutparam, ServerConfig,
};
use twig_wasi::{WasiCtx, WasiView};

// ---- host side ------------------------------------------------------------

struct Ctx {
    wasi: WasiCtx,
    http: HttpCtx,
}

impl WasiView for Ctx {
    fn wasi(&mut self) -> &mut WasiCtx {
        &mut self.wasi
    }
}

impl HttpView for Ctx {
    fn http(&mut self) -> &mut HttpCtx {
        &mut self.http
    }
}

fn guest(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/guests/out")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read guest {}: {e}\nbuild the guests first: tests/guests/build.sh",
            path.display()
        )
    })
}

/// A minimal host: instances made on demand and kept in a pool; a trapped
/// (poisoned) instance is dropped, as the real host does.
struct Pool {
    linker: Linker<Ctx>,
    component: Component,
    types: HttpTypes,
    idle: Mutex<Vec<Instance<Ctx>>>,
}

impl Pool {
    fn new(name: &str) -> Arc<Pool> {
        let engine = Engine::default();
        let limits = Limits {
            deadline: Some(Duration::from_secs(20)),
            max_instances: 64,
            ..Limits::default()
        };
        let component = Component::with_limits(&engine, name, &guest(name), limits).unwrap();
        let mut linker = Linker::new();
        let wasi = twig_wasi::add_to_linker(&mut linker);
        let types = twig_http_server::add_to_linker(&mut linker, wasi);
        Arc::new(Pool {
            linker,
            component,
            types,
            idle: Mutex::new(Vec::new()),
        })
    }
}

impl Dispatch for Pool {
    fn dispatch(&self, req: IncomingRequest, out: ResponseOutparam) -> Result<(), String> {
        let inst = self.idle.lock().unwrap().pop();
        let mut inst = match inst {
            Some(i) => i,
            None => {
                let ctx = Ctx {
                    wasi: WasiCtx::new(),
                    http: HttpCtx::new(),
                };
                Instance::new(&self.linker, &self.component, ctx).map_err(|e| e.to_string())?
            }
        };
        let res = call_handler(&mut inst, &self.types, req, out);
        if !inst.is_poisoned() {
            assert_eq!(
                inst.data_mut().http().live_objects(),
                0,
                "request objects left behind"
            );
            self.idle.lock().unwrap().push(inst);
        }
        res
    }
}

fn config() -> ServerConfig {
    ServerConfig {
        address: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    }
}

fn serve(guest_name: &str, cfg: ServerConfig) -> (HttpServer, Arc<Pool>) {
    let pool = Pool::new(guest_name);
    let server = HttpServer::start(cfg, guest_name, pool.clone()).unwrap();
    (server, pool)
}

// ---- client side ----------------------------------------------------------

enum Body {
    None,
    Fixed(Vec<u8>),
    Chunked(Vec<u8>, usize),
    /// Only the head, announcing this content-length; no body follows.
    HeadOnly(u64),
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The body arrived whole (a chunked body with its last chunk, or all
    /// content-length bytes).
    complete: bool,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One client connection; requests on it are sent one after another.
struct Conn {
    stream: TcpStream,
    reader: BufReader<TcpStream>,
    addr: SocketAddr,
}

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Conn {
            stream,
            reader,
            addr,
        }
    }

    fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> std::io::Result<Resp> {
        let mut head = format!("{method} {path} HTTP/1.1\r\nhost: {}\r\n", self.addr);
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        match &body {
            Body::None => {}
            Body::Fixed(b) => head.push_str(&format!("content-length: {}\r\n", b.len())),
            Body::HeadOnly(n) => head.push_str(&format!("content-length: {n}\r\n")),
            Body::Chunked(..) => head.push_str("transfer-encoding: chunked\r\n"),
        }
        head.push_str("\r\n");
        let mut w = self.stream.try_clone()?;
        let is_head = method == "HEAD";
        std::thread::scope(|s| {
            // The server may answer (413, 503) and close before the body
            // is all sent: write errors are expected then, not failures.
            s.spawn(move || -> std::io::Result<()> {
                w.write_all(head.as_bytes())?;
                match body {
                    Body::None | Body::HeadOnly(_) => {}
                    Body::Fixed(b) => w.write_all(&b)?,
                    Body::Chunked(b, size) => {
                        for c in b.chunks(size) {
                            write!(w, "{:x}\r\n", c.len())?;
                            w.write_all(c)?;
                            w.write_all(b"\r\n")?;
                        }
                        w.write_all(b"0\r\n\r\n")?;
                    }
                }
                w.flush()
            });
            read_response(&mut self.reader, is_head)
        })
    }
}

fn read_line(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

fn read_response(r: &mut impl BufRead, is_head: bool) -> std::io::Result<Resp> {
    let status_line = read_line(r)?;
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        let (k, v) = line.split_once(':').unwrap();
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let mut resp = Resp {
        status,
        headers,
        body: Vec::new(),
        complete: true,
    };
    if is_head || status == 204 || status == 304 {
        return Ok(resp);
    }
    if resp
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        resp.complete = false;
        while let Ok(size_line) = read_line(r) {
            let Ok(size) = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16)
            else {
                break;
            };
            if size == 0 {
                // Trailers (none expected) up to the blank line.
                while let Ok(l) = read_line(r) {
                    if l.is_empty() {
                        resp.complete = true;
                        break;
                    }
                }
                break;
            }
            let mut chunk = vec![0; size];
            if r.read_exact(&mut chunk).is_err() {
                break;
            }
            resp.body.extend_from_slice(&chunk);
            if read_line(r).is_err() {
                break;
            }
        }
    } else if let Some(n) = resp.header("content-length") {
        let n: usize = n.parse().unwrap();
        let mut buf = Vec::with_capacity(n);
        r.take(n as u64).read_to_end(&mut buf).ok();
        resp.complete = buf.len() == n;
        resp.body = buf;
    } else {
        r.read_to_end(&mut resp.body).ok();
    }
    Ok(resp)
}

fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Body,
) -> Resp {
    Conn::open(addr)
        .request(method, path, headers, body)
        .unwrap()
}

fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[], Body::None)
}

/// Bytes that differ along the body, so a reordered or dropped chunk shows.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

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
