//! `http-echo`: a `wasi:http/incoming-handler` component for twig's HTTP
//! server tests. Most paths go through wasmcloud-component's
//! `http::Server` (the way wasmCloud components are written); the paths
//! that must misbehave use the raw `wasi:http` bindings.
//!
//! | path | answer |
//! |---|---|
//! | anything else | 200 (`/status/NNN`: NNN), body = the request body streamed back (splice), `x-echo-*` request headers copied back, `x-method`, `x-path`, `x-authority` |
//! | `/raw-echo` | the body echoed with non-blocking reads/writes and pollables |
//! | `/consume` | reads the whole body first, then `read N bytes` (or `error: ...`) |
//! | `/first-read` | non-blocking `read`s until the first empty chunk (as a careless guest would), then `read N bytes` |
//! | `/big/N` | N bytes of `0123456789` repeated, streamed (`?sleep=MS`: sleeps first) |
//! | `/sleep/MS` | sleeps MS ms (wasi clocks), then `slept` |
//! | `/header-errors` | one line per refused header operation |
//! | `/request-trailers` | reads the body, then what `future-trailers.get` says, twice |
//! | `/outgoing` | what `outgoing-handler.handle` answers |
//! | `/no-response` | returns without setting a response |
//! | `/trap` | panics before setting a response |
//! | `/trap-after-set` | sets a response, writes `partial`, panics |
//! | `/trailers` | sets a response, writes a body, finishes it with trailers |
//! | `/content-length-mismatch` | declares content-length 10, writes 5 bytes |

use std::io::Write as _;

use wasi::exports::http::incoming_handler::Guest;
use wasi::http::types::{
    Fields, IncomingBody, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasi::io::streams::{OutputStream, StreamError};
use wasmcloud_component::http;
use wasmcloud_component::wasi;

struct Echo;

impl http::Server for Echo {
    fn handle(
        request: http::IncomingRequest,
    ) -> http::Result<http::Response<impl http::OutgoingBody>> {
        let status = request
            .uri()
            .path()
            .strip_prefix("/status/")
            .and_then(|s| s.parse::<u16>().ok())
            .unwrap_or(200);
        let mut b = http::Response::builder().status(status);
        for (k, v) in request.headers() {
            if k.as_str().starts_with("x-echo-") {
                b = b.header(k, v);
            }
        }
        b = b
            .header("x-method", request.method().as_str())
            .header(
                "x-path",
                request.uri().path_and_query().map_or("", |p| p.as_str()),
            )
            .header(
                "x-authority",
                request.uri().authority().map_or("", |a| a.as_str()),
            );
        b.body(request.into_body())
            .map_err(|e| http::ErrorCode::InternalError(Some(e.to_string())))
    }
}

/// Sets a response and returns its body and stream.
fn start(
    out: ResponseOutparam,
    status: u16,
    headers: &[(&str, &str)],
) -> (OutgoingBody, OutputStream) {
    let fields = Fields::new();
    for (k, v) in headers {
        fields
            .append(&k.to_string(), &v.as_bytes().to_vec())
            .expect("valid header");
    }
    let resp = OutgoingResponse::new(fields);
    resp.set_status_code(status).expect("valid status");
    let body = resp.body().expect("body");
    let stream = body.write().expect("stream");
    ResponseOutparam::set(out, Ok(resp));
    (body, stream)
}

fn reply(out: ResponseOutparam, status: u16, text: &str) {
    let (body, stream) = start(out, status, &[("content-type", "text/plain")]);
    for chunk in text.as_bytes().chunks(4096) {
        stream.blocking_write_and_flush(chunk).expect("write");
    }
    drop(stream);
    OutgoingBody::finish(body, None).expect("finish");
}

/// Writes all of `data`, waiting for room with the stream's pollable.
fn write_all(stream: &OutputStream, mut data: &[u8]) -> Result<(), StreamError> {
    while !data.is_empty() {
        let n = stream.check_write()? as usize;
        if n == 0 {
            stream.subscribe().block();
            continue;
        }
        let n = n.min(data.len());
        stream.write(&data[..n])?;
        data = &data[n..];
    }
    Ok(())
}

fn raw_echo(req: IncomingRequest, out: ResponseOutparam) {
    let body = req.consume().expect("consume");
    let input = body.stream().expect("stream");
    let (obody, output) = start(out, 200, &[("x-raw", "1")]);
    loop {
        match input.read(65536) {
            Ok(chunk) if chunk.is_empty() => input.subscribe().block(),
            Ok(chunk) => {
                if let Err(e) = write_all(&output, &chunk) {
                    eprintln!("raw-echo: write failed: {e:?}");
                    return;
                }
            }
            Err(StreamError::Closed) => break,
            Err(StreamError::LastOperationFailed(e)) => {
                // Returning drops the body unfinished: the client sees the
                // response cut short.
                eprintln!("raw-echo: read failed: {}", e.to_debug_string());
                return;
            }
        }
    }
    output.blocking_flush().expect("flush");
    drop(output);
    drop(input);
    let _ = IncomingBody::finish(body);
    OutgoingBody::finish(obody, None).expect("finish");
}

fn consume(req: IncomingRequest, out: ResponseOutparam) {
    let body = req.consume().expect("consume");
    let input = body.stream().expect("stream");
    let mut n = 0usize;
    let text = loop {
        match input.blocking_read(65536) {
            Ok(chunk) => n += chunk.len(),
            Err(StreamError::Closed) => break format!("read {n} bytes"),
            Err(StreamError::LastOperationFailed(e)) => {
                break format!("error after {n} bytes: {}", e.to_debug_string());
            }
        }
    };
    drop(input);
    reply(out, 200, &text);
}

/// Reads the body with non-blocking `read` and stops at the first empty
/// chunk: the guest the body race was seen with. It gets the
/// whole body only if the host has it ready; it must never get nothing
/// while a body is on its way.
fn first_read(req: IncomingRequest, out: ResponseOutparam) {
    let body = req.consume().expect("consume");
    let input = body.stream().expect("stream");
    let mut n = 0usize;
    loop {
        match input.read(65536) {
            Ok(chunk) if chunk.is_empty() => break,
            Ok(chunk) => n += chunk.len(),
            Err(_) => break,
        }
    }
    drop(input);
    reply(out, 200, &format!("read {n} bytes"));
}

fn big(n: usize, out: ResponseOutparam) {
    let (body, mut stream) = start(out, 200, &[]);
    let pattern = b"0123456789".repeat(1638); // 16380 bytes
    let mut left = n;
    while left > 0 {
        let k = left.min(pattern.len());
        stream.write_all(&pattern[..k]).expect("write");
        left -= k;
    }
    stream.flush().expect("flush");
    drop(stream);
    OutgoingBody::finish(body, None).expect("finish");
}

fn header_errors(req: IncomingRequest, out: ResponseOutparam) {
    let f = Fields::new();
    let mut lines = Vec::new();
    lines.push(format!(
        "bad-name {:?}",
        f.append(&"bad name".to_string(), &b"v".to_vec())
    ));
    lines.push(format!(
        "forbidden {:?}",
        f.set(&"Connection".to_string(), &[b"close".to_vec()])
    ));
    lines.push(format!(
        "bad-value {:?}",
        f.append(&"x-ok".to_string(), &b"a\r\nb".to_vec())
    ));
    lines.push(format!(
        "from-list {:?}",
        Fields::from_list(&[("transfer-encoding".to_string(), b"chunked".to_vec())]).err()
    ));
    let h = req.headers();
    lines.push(format!(
        "immutable {:?}",
        h.append(&"x-new".to_string(), &b"1".to_vec())
    ));
    lines.push(format!(
        "request-header x-echo-a={:?}",
        h.get(&"X-Echo-A".to_string())
            .iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect::<Vec<_>>()
    ));
    let resp = OutgoingResponse::new(Fields::new());
    lines.push(format!("status-1000 {:?}", resp.set_status_code(1000)));
    lines.push(format!(
        "response-headers {:?}",
        resp.headers().append(&"x-late".to_string(), &b"1".to_vec())
    ));
    f.append(&"x-ok".to_string(), &b"fine".to_vec())
        .expect("valid append");
    lines.push(format!("entries {}", f.entries().len()));
    drop(resp);
    let mut text = lines.join("\n");
    text.push('\n');
    reply(out, 200, &text);
}

fn request_trailers(req: IncomingRequest, out: ResponseOutparam) {
    let body = req.consume().expect("consume");
    let input = body.stream().expect("stream");
    while input.blocking_read(65536).is_ok() {}
    drop(input);
    let trailers = IncomingBody::finish(body);
    trailers.subscribe().block();
    let first = trailers.get();
    let second = trailers.get();
    reply(
        out,
        200,
        &format!(
            "first {:?}\nsecond {:?}\n",
            first.map(|r| r.map(|r| r.map(|t| t.is_some()))),
            second.map(|r| r.map(|r| r.map(|t| t.is_some())))
        ),
    );
}

fn outgoing(out: ResponseOutparam) {
    let req = wasi::http::types::OutgoingRequest::new(Fields::new());
    req.set_path_with_query(Some("/elsewhere")).expect("path");
    req.set_authority(Some("example.com")).expect("authority");
    let body = req.body().expect("body");
    let res = wasi::http::outgoing_handler::handle(req, None);
    drop(body);
    reply(out, 200, &format!("{:?}\n", res.err()));
}

fn trailers(out: ResponseOutparam) {
    let (body, stream) = start(out, 200, &[]);
    stream
        .blocking_write_and_flush(b"body that wants trailers")
        .expect("write");
    drop(stream);
    let t = Fields::new();
    t.append(&"x-trailer".to_string(), &b"1".to_vec())
        .expect("trailer");
    if let Err(e) = OutgoingBody::finish(body, Some(t)) {
        eprintln!("http-echo: finish with trailers refused: {e:?}");
    }
}

fn content_length_mismatch(out: ResponseOutparam) {
    let (body, stream) = start(out, 200, &[("content-length", "10")]);
    stream.blocking_write_and_flush(b"hello").expect("write");
    drop(stream);
    if let Err(e) = OutgoingBody::finish(body, None) {
        eprintln!("http-echo: finish refused: {e:?}");
    }
}

fn sleep_ms(ms: u64) {
    wasi::clocks::monotonic_clock::subscribe_duration(ms * 1_000_000).block();
}

/// Keeps the CPU busy for `ms` (reading the clock, never waiting on it).
fn spin_ms(ms: u64) {
    let until = wasi::clocks::monotonic_clock::now() + ms * 1_000_000;
    let mut x = 0u64;
    while wasi::clocks::monotonic_clock::now() < until {
        for i in 0..1000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
    }
}

struct Router;

impl Guest for Router {
    fn handle(req: IncomingRequest, out: ResponseOutparam) {
        let full = req.path_with_query().unwrap_or_default();
        let path = full.split('?').next().unwrap_or_default().to_string();
        match path.as_str() {
            "/raw-echo" => raw_echo(req, out),
            "/consume" => consume(req, out),
            "/first-read" => first_read(req, out),
            "/header-errors" => header_errors(req, out),
            "/request-trailers" => request_trailers(req, out),
            "/outgoing" => outgoing(out),
            "/no-response" => {}
            "/trap" => panic!("http-echo: trap requested"),
            "/trap-after-set" => {
                let (_body, stream) = start(out, 200, &[]);
                stream.blocking_write_and_flush(b"partial").expect("write");
                panic!("http-echo: trap after set requested");
            }
            "/trailers" => trailers(out),
            "/content-length-mismatch" => content_length_mismatch(out),
            p if p.starts_with("/big/") => {
                if let Some(ms) = full
                    .split_once("?sleep=")
                    .and_then(|(_, ms)| ms.parse().ok())
                {
                    sleep_ms(ms);
                }
                big(p[5..].parse().unwrap_or(0), out)
            }
            p if p.starts_with("/spin/") => {
                spin_ms(p[6..].parse().unwrap_or(0));
                reply(out, 200, "spun\n");
            }
            p if p.starts_with("/sleep/") => {
                sleep_ms(p[7..].parse().unwrap_or(0));
                reply(out, 200, "slept\n");
            }
            _ => <http::IncomingHandler<Echo> as Guest>::handle(req, out),
        }
    }
}

wasi::http::proxy::export!(Router with_types_in wasmcloud_component::wasi);
