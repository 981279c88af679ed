//! Binary-size probe for `lattice-bench`: serves `greet(string) -> string`
//! and calls it once over wRPC with twig's own module
//! (`twig::lattice::wrpc`, async-nats 0.51).
//!
//! ```text
//! wrpc-size-twig nats://127.0.0.1:4222
//! ```
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use futures::StreamExt as _;
use twig::host::RemoteCall;
use twig::lattice::wrpc::{answer, invoke, Inbox};

/// A string in the wRPC value encoding: LEB128 length, then the bytes.
fn encode(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() + 5);
    let mut n = s.len();
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(s.as_bytes());
    out
}

/// The string at the start of `b`, or `None` while it is incomplete.
fn decode(b: &[u8]) -> Option<String> {
    let (mut n, mut shift, mut i) = (0usize, 0, 0);
    loop {
        let byte = *b.get(i)?;
        n |= usize::from(byte & 0x7f) << shift;
        i += 1;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    let s = b.get(i..i.checked_add(n)?)?;
    Some(String::from_utf8_lossy(s).into_owned())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1).ok_or("usage: wrpc-size-twig URL")?;
    let nc = async_nats::connect(url).await?;
    let inbox = std::sync::Arc::new(Inbox::new(&nc).await?);
    let mut sub = nc
        .queue_subscribe("default.probe.wrpc.0.0.1.>", "default.probe".into())
        .await?;
    let (server, server_inbox) = (nc.clone(), inbox.clone());
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            let deadline = Instant::now() + Duration::from_secs(5);
            let run = |p: Vec<u8>| async move {
                Ok(decode(&p).map(|name| encode(&format!("Hello, {name}!"))))
            };
            let _ = answer(&server, &server_inbox, m, deadline, usize::MAX, run).await;
        }
    });
    let call = RemoteCall {
        source: "probe",
        link_name: "default",
        target: "probe",
        instance: "twig:demo/greeter@0.1.0",
        func: "greet",
        params: encode("Ada"),
        deadline: Instant::now() + Duration::from_secs(5),
        traceparent: None,
    };
    let out = invoke(&nc, &inbox, "default", &call).await?;
    println!("{}", decode(&out).ok_or("incomplete results")?);
    Ok(())
}
