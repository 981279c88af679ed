//! What the HTTP server's test binaries share: a minimal host (a pool of
//! guest instances behind `Dispatch`) and a small std-socket HTTP/1.1
//! client.

#![allow(dead_code)] // each test binary uses part of it

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use twig_component::{Component, Engine, Instance, Limits, Linker};
use twig_http_server::{
    call_handler, Dispatch, HttpCtx, HttpServer, HttpTypes, HttpView, IncomingRequest,
    ResponseOutparam, ServerConfig,
};
use twig_wasi::{WasiCtx, WasiView};

// ---- host side ------------------------------------------------------------

pub struct Ctx {
    pub wasi: WasiCtx,
    pub http: HttpCtx,
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

pub fn guest(name: &str) -> Vec<u8> {
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
pub struct Pool {
    pub linker: Linker<Ctx>,
    pub component: Component,
    pub types: HttpTypes,
    pub idle: Mutex<Vec<Instance<Ctx>>>,
}

impl Pool {
    pub fn new(name: &str) -> Arc<Pool> {
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

pub fn config() -> ServerConfig {
    ServerConfig {
        address: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    }
}

pub fn serve(guest_name: &str, cfg: ServerConfig) -> (HttpServer, Arc<Pool>) {
    let pool = Pool::new(guest_name);
    let server = HttpServer::start(cfg, guest_name, pool.clone()).unwrap();
    (server, pool)
}

// ---- client side ----------------------------------------------------------

pub enum Body {
    None,
    Fixed(Vec<u8>),
    Chunked(Vec<u8>, usize),
    /// Only the head, announcing this content-length; no body follows.
    HeadOnly(u64),
}

#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body arrived whole (a chunked body with its last chunk, or all
    /// content-length bytes).
    pub complete: bool,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One client connection; requests on it are sent one after another.
pub struct Conn {
    pub stream: TcpStream,
    pub reader: BufReader<TcpStream>,
    pub addr: SocketAddr,
}

impl Conn {
    pub fn open(addr: SocketAddr) -> Conn {
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

    pub fn request(
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

pub fn read_line(r: &mut impl BufRead) -> std::io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

pub fn read_response(r: &mut impl BufRead, is_head: bool) -> std::io::Result<Resp> {
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

pub fn request(
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

pub fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[], Body::None)
}

/// Bytes that differ along the body, so a reordered or dropped chunk shows.
pub fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
}

/// A connection from a chosen loopback address (127.0.0.0/8 is all
/// loopback on Linux), to be one of several peers.
pub fn connect_from(src: std::net::Ipv4Addr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SocketAddr::from((src, 0)).into())?;
    s.connect_timeout(&addr.into(), Duration::from_secs(5))?;
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    Ok(s)
}

impl Conn {
    /// [`Conn::open`] from `src`.
    pub fn open_from(src: std::net::Ipv4Addr, addr: SocketAddr) -> Conn {
        let stream = connect_from(src, addr).unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        Conn {
            stream,
            reader,
            addr,
        }
    }

    /// The server closed this connection (EOF or reset), seen within
    /// `within`.
    pub fn closed_within(&mut self, within: Duration) -> bool {
        self.stream.set_read_timeout(Some(within)).unwrap();
        let mut b = [0u8; 1];
        let closed = match self.reader.read(&mut b) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        self.stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        closed
    }
}
