//! Binary-size probe for `lattice-bench`: serves `greet(string) -> string`
//! and calls it once over wRPC with the unmodified `wrpc-transport-nats`
//! 0.29 and `wrpc-transport` (async-nats 0.39).
//!
//! ```text
//! wrpc-size-nats nats://127.0.0.1:4222
//! ```
#![forbid(unsafe_code)]

use async_nats_039 as nats;
use futures::StreamExt as _;
use wrpc_transport::{InvokeExt as _, ServeExt as _};

const NO_PATHS: [&[Option<usize>]; 0] = [];

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::args().nth(1).ok_or("usage: wrpc-size-nats URL")?;
    let nc = nats::connect(url).await?;
    let wrpc =
        wrpc_transport_nats::Client::new(nc, "default.probe", Some("default.probe".into())).await?;
    let invocations = wrpc
        .serve_values::<(String,), (String,)>(
            "twig:demo/greeter@0.1.0",
            "greet",
            Vec::<Box<[Option<usize>]>>::new(),
        )
        .await?;
    tokio::spawn(async move {
        let mut invocations = std::pin::pin!(invocations);
        while let Some(Ok((_, (name,), _, respond))) = invocations.next().await {
            let _ = respond((format!("Hello, {name}!"),)).await;
        }
    });
    let (out,) = wrpc
        .invoke_values_blocking::<_, (String,), (String,)>(
            None,
            "twig:demo/greeter@0.1.0",
            "greet",
            ("Ada".to_string(),),
            NO_PATHS,
        )
        .await?;
    println!("{out}");
    Ok(())
}
