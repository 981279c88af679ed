//! Binary-size probe for `lattice-bench`: a NATS request/reply on
//! async-nats 0.51 (twig's client) and nothing else; the base the wRPC
//! probes are measured against.
//!
//! ```text
//! wrpc-size-base nats://127.0.0.1:4222
//! ```
#![forbid(unsafe_code)]

use futures::StreamExt as _;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1).ok_or("usage: wrpc-size-base URL")?;
    let nc = async_nats::connect(url).await?;
    let mut sub = nc.subscribe("probe.greet").await?;
    let server = nc.clone();
    tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            if let Some(r) = m.reply {
                let mut out = b"Hello, ".to_vec();
                out.extend_from_slice(&m.payload);
                let _ = server.publish(r, out.into()).await;
            }
        }
    });
    let r = nc.request("probe.greet", "Ada".into()).await?;
    println!("{}", String::from_utf8_lossy(&r.payload));
    Ok(())
}
