//! The server logs one debug line per request: component, method, path,
//! status, milliseconds. Its own test binary, because the subscriber that
//! catches the server thread's events has to be the global one.
#![forbid(unsafe_code)]

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};
use twig_http_server::{Dispatch, HttpServer, IncomingRequest, ResponseOutparam, ServerConfig};

/// Collects `twig::http` events as `key=value` lines.
struct Lines(Arc<Mutex<Vec<String>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl Subscriber for Lines {
    fn enabled(&self, meta: &Metadata<'_>) -> bool {
        meta.target().starts_with("twig::http")
    }
    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _span: &Id, _values: &Record<'_>) {}
    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut f = Fields(format!("{}", event.metadata().level()));
        event.record(&mut f);
        self.0.lock().unwrap().push(f.0);
    }
    fn enter(&self, _span: &Id) {}
    fn exit(&self, _span: &Id) {}
}

/// Answers every request without a guest.
struct Teapot;

impl Dispatch for Teapot {
    fn dispatch(&self, _req: IncomingRequest, out: ResponseOutparam) -> Result<(), String> {
        out.reject(418, "no guest here");
        Ok(())
    }
}

#[test]
fn one_debug_line_per_request() {
    let lines = Arc::new(Mutex::new(Vec::new()));
    tracing::subscriber::set_global_default(Lines(lines.clone())).unwrap();
    let cfg = ServerConfig {
        address: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    let server = HttpServer::start(cfg, "teapot-app", Arc::new(Teapot)).unwrap();
    let mut s = TcpStream::connect(server.local_addr()).unwrap();
    s.write_all(b"DELETE /a/b?c=d HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 418"), "{resp}");
    assert!(resp.ends_with("no guest here\n"), "{resp}");
    server.stop();
    let lines = lines.lock().unwrap();
    let requests: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("message=request"))
        .collect();
    assert_eq!(requests.len(), 1, "{lines:#?}");
    let l = requests[0];
    for want in [
        "DEBUG",
        "component=teapot-app",
        "method=DELETE",
        "path=/a/b",
        "status=418",
        " ms=",
    ] {
        assert!(l.contains(want), "{want} missing from {l}");
    }
}
