//! Idle and slow HTTP clients, for the tests and the benchmark that hold
//! them against a running `twig` (tests/http_slow_clients.rs, twig-bench's
//! `http-load --slowloris N --idle N`).
//!
//! Every client binds a chosen loopback source address (all of
//! 127.0.0.0/8 is loopback on Linux), so a test can be one peer or many.
//! Everything stays on 127.0.0.0/8 and stops when told to.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The `n`th of a run of distinct loopback addresses, from 127.0.1.0 on
/// (127.0.0.1 stays the ordinary client's).
pub fn peer(n: u16) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, (n >> 8) as u8 + 1, n as u8)
}

/// A TCP connection to `addr` from `src` (port chosen by the kernel).
pub fn connect_from(src: Ipv4Addr, addr: SocketAddr) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    s.bind(&SocketAddr::from((src, 0)).into())?;
    s.connect_timeout(&addr.into(), Duration::from_secs(2))?;
    let s: TcpStream = s.into();
    s.set_nodelay(true)?;
    Ok(s)
}

/// Reads one HTTP/1.1 response (content-length, chunked, or to the
/// close); its status and body.
pub fn read_response(r: &mut impl BufRead) -> std::io::Result<(u16, Vec<u8>)> {
    let bad = |what: String| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad(format!("bad status line {line:?}")))?;
    let (mut len, mut chunked) = (None, false);
    loop {
        line.clear();
        if r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let l = line.trim_end().to_ascii_lowercase();
        if l.is_empty() {
            break;
        }
        if let Some(v) = l.strip_prefix("content-length:") {
            len = v.trim().parse::<usize>().ok();
        } else if l.starts_with("transfer-encoding:") && l.contains("chunked") {
            chunked = true;
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line)?;
            let n = usize::from_str_radix(line.trim(), 16)
                .map_err(|_| bad(format!("bad chunk size {line:?}")))?;
            let mut buf = vec![0; n + 2];
            r.read_exact(&mut buf)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
        }
    } else if let Some(n) = len {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else if !(status == 204 || status == 304 || (100..200).contains(&status)) {
        // No length (an HTTP/1.0 answer): the body runs to the close.
        r.read_to_end(&mut body)?;
    }
    Ok((status, body))
}

/// One request on a fresh connection from `src`, answered within
/// `timeout` or an error; the status, body and time taken.
pub fn probe(
    addr: SocketAddr,
    src: Ipv4Addr,
    path: &str,
    timeout: Duration,
) -> std::io::Result<(u16, String, Duration)> {
    let t = Instant::now();
    let mut s = connect_from(src, addr)?;
    s.set_read_timeout(Some(timeout))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let (status, body) = read_response(&mut BufReader::new(s))?;
    Ok((
        status,
        String::from_utf8_lossy(&body).into_owned(),
        t.elapsed(),
    ))
}

/// Slowloris: sockets that each send a request head a byte at a time,
/// one byte per socket every `interval`, and never finish it; a socket
/// the server closes is opened again, so the attacker keeps `sockets` open
/// (or trying) until stopped.
pub struct Slowloris {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<u64>>,
}

impl Slowloris {
    pub fn start(
        addr: SocketAddr,
        sockets: usize,
        sources: &[Ipv4Addr],
        interval: Duration,
    ) -> Slowloris {
        assert!(!sources.is_empty());
        let stop = Arc::new(AtomicBool::new(false));
        let sources = sources.to_vec();
        let thread = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let head = b"GET /slowloris HTTP/1.1\r\nHost: x\r\nX-Wait: ";
                let mut socks: Vec<(Ipv4Addr, Option<TcpStream>, usize)> = (0..sockets)
                    .map(|i| (sources[i % sources.len()], None, 0))
                    .collect();
                let mut connects = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let round = Instant::now();
                    for (src, sock, sent) in socks.iter_mut() {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        if sock.is_none() {
                            *sock = connect_from(*src, addr).ok();
                            *sent = 0;
                            connects += 1;
                        }
                        if let Some(s) = sock {
                            let b = head.get(*sent).copied().unwrap_or(b'a');
                            if s.write_all(&[b]).is_err() {
                                *sock = None;
                            }
                            *sent += 1;
                        }
                    }
                    // One byte per socket per interval; a round slower than
                    // that (reconnects) goes on at once.
                    let rest = interval.saturating_sub(round.elapsed());
                    let until = Instant::now() + rest;
                    while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                        std::thread::sleep(Duration::from_millis(50).min(rest));
                    }
                }
                connects
            })
        };
        Slowloris {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops and closes every socket; how many connections it opened.
    pub fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.take().map_or(0, |t| t.join().unwrap_or(0))
    }
}

impl Drop for Slowloris {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Keep-alive clients that each made one request and then hold their
/// connection, sending nothing more (a browser tab left open).
pub struct IdleClients {
    pub conns: Vec<TcpStream>,
    /// Clients whose one request was answered.
    pub answered: usize,
}

impl IdleClients {
    /// Opens `n`, from `sources` in turn, one after another; a request not
    /// answered within `timeout` counts as not answered.
    pub fn open(
        addr: SocketAddr,
        n: usize,
        sources: &[Ipv4Addr],
        path: &str,
        timeout: Duration,
    ) -> IdleClients {
        let mut conns = Vec::new();
        let mut answered = 0;
        for i in 0..n {
            let Ok(mut s) = connect_from(sources[i % sources.len()], addr) else {
                continue;
            };
            let ok = s.set_read_timeout(Some(timeout)).is_ok()
                && write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").is_ok()
                && s.try_clone()
                    .ok()
                    .and_then(|c| read_response(&mut BufReader::new(c)).ok())
                    .is_some_and(|(status, _)| status == 200);
            if ok {
                answered += 1;
            }
            conns.push(s);
        }
        IdleClients { conns, answered }
    }

    /// How many of them the server has closed by now.
    pub fn closed(&self) -> usize {
        self.conns
            .iter()
            .filter(|s| {
                let _ = s.set_nonblocking(true);
                let mut b = [0u8; 1];
                let closed = match (&**s).read(&mut b) {
                    Ok(0) => true,
                    Ok(_) => false,
                    Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
                };
                let _ = s.set_nonblocking(false);
                closed
            })
            .count()
    }
}

/// The `p` quantile (0..=1) of sorted `v`.
pub fn quantile(v: &[Duration], p: f64) -> Duration {
    if v.is_empty() {
        return Duration::ZERO;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}
