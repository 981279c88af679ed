//! A thin launcher for the unmodified wadm 0.21.1 orchestrator, so
//! `tests/integration/tests/wadm.rs` can run it as a separate process
//! against its test topology. It fills in `wadm::config::WadmConfig` from
//! the command line and calls `wadm::start_wadm`, exactly as wadm's own
//! binary does; nothing of wadm is replaced.
//!
//! ```text
//! twig-wadm-launcher --nats-server URL [--creds FILE] [--tls-ca FILE]
//!                    [--js-domain DOMAIN] [--cleanup-secs N]
//! ```
//!
//! Prints `wadm ready` on stdout once wadm has made its streams and buckets
//! and serves its API, then runs until wadm exits or the process is killed.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use wadm::config::WadmConfig;
use wadm::StreamPersistence;

fn parse_args() -> Result<WadmConfig> {
    let mut config = WadmConfig {
        // A test's lattice lives as long as its servers; nothing to keep.
        stream_persistence: StreamPersistence::Memory,
        ..WadmConfig::default()
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--nats-server" => config.nats_server = value()?,
            "--creds" => config.nats_creds = Some(PathBuf::from(value()?)),
            "--tls-ca" => config.nats_tls_ca_file = Some(PathBuf::from(value()?)),
            "--js-domain" => config.domain = Some(value()?),
            "--cleanup-secs" => {
                config.cleanup_interval = value()?.parse().context("--cleanup-secs")?
            }
            other => bail!("unknown argument {other:?}"),
        }
    }
    Ok(config)
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let config = parse_args()?;
    let mut tasks = wadm::start_wadm(config).await.context("starting wadm")?;
    println!("wadm ready");
    match tasks.join_next().await {
        Some(Ok(Ok(()))) | None => Ok(()),
        Some(Ok(Err(e))) => Err(e.context("wadm stopped")),
        Some(Err(e)) => Err(anyhow::Error::new(e).context("wadm task panicked")),
    }
}
