//! A thin launcher for the unmodified wasmCloud 1.x host (crate
//! `wasmcloud-host` 0.27.1, the host of wasmCloud 1.9), so `host/bench`'s
//! `hello-http` can set it beside twig on the same component. It fills in
//! `wasmcloud_host::wasmbus::HostConfig` from the command line and calls
//! `wasmbus::Host::new`, as the `wasmcloud` binary does; nothing of the
//! host is replaced.
//!
//! ```text
//! twig-wasmcloud-launcher --nats-server URL [--lattice NAME]
//!     [--component FILE.wasm --http-address 127.0.0.1:PORT [--instances N]]
//! ```
//!
//! The host runs with `allow_file_load` (so `file://` component references
//! load without a registry) and the experimental feature
//! `builtin-http-server` (the in-process HTTP server provider,
//! `wasmcloud+builtin://http-server`), so the whole host is one process.
//! The NATS server must have JetStream enabled (the host keeps its lattice
//! data in JetStream key-value buckets).
//!
//! With `--component`, the launcher then deploys through the host's real
//! control interface, with `wasmcloud-control-interface` over NATS, the
//! requests wadm sends for a one-component HTTP app: scale the component
//! `file://FILE` to `--instances` (default 1: at most that many requests in
//! the component at once, as a spreadscaler's `instances`), start the provider
//! `wasmcloud+builtin://http-server`, and put the link
//! `wasi:http/incoming-handler` from the provider to the component with a
//! source config `address=ADDR`. It prints `wasmcloud host ready ID` once
//! the host is up and `wasmcloud deployed` once all three are acknowledged
//! (the component and the listener come up asynchronously after that: a
//! caller polls the address), then runs until SIGINT/SIGTERM or the host
//! stops.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use nkeys::{KeyPair, KeyPairType};
use wasmcloud_control_interface::{Client, ClientBuilder, CtlResponse, Link};
use wasmcloud_host::url::Url;
use wasmcloud_host::wasmbus::{Features, Host, HostConfig};

struct Args {
    nats_server: String,
    lattice: String,
    component: Option<PathBuf>,
    http_address: String,
    instances: u32,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        nats_server: String::new(),
        lattice: "default".into(),
        component: None,
        http_address: "127.0.0.1:8000".into(),
        instances: 1,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--nats-server" => a.nats_server = value()?,
            "--lattice" => a.lattice = value()?,
            "--component" => a.component = Some(PathBuf::from(value()?)),
            "--http-address" => a.http_address = value()?,
            "--instances" => a.instances = value()?.parse().context("--instances")?,
            other => bail!("unknown argument {other:?}"),
        }
    }
    if a.nats_server.is_empty() {
        bail!("--nats-server URL is required");
    }
    Ok(a)
}

/// A control-interface answer: the request was sent and the host said yes.
fn acked<T>(
    what: &str,
    r: Result<CtlResponse<T>, Box<dyn std::error::Error + Send + Sync>>,
) -> Result<()> {
    let r = r.map_err(|e| anyhow!("{what}: {e}"))?;
    if !r.succeeded() {
        bail!("{what} refused: {}", r.message());
    }
    Ok(())
}

async fn deploy(ctl: &Client, host_id: &str, args: &Args, wasm: &std::path::Path) -> Result<()> {
    let wasm = wasm
        .canonicalize()
        .with_context(|| format!("component {}", wasm.display()))?;
    let component_ref = format!("file://{}", wasm.display());
    acked(
        "put config",
        ctl.put_config(
            "hello-http-address",
            HashMap::from([("address".to_string(), args.http_address.clone())]),
        )
        .await,
    )?;
    acked(
        "scale component",
        ctl.scale_component(
            host_id,
            &component_ref,
            "hello",
            args.instances,
            None,
            vec![],
            false,
        )
        .await,
    )?;
    acked(
        "start provider",
        ctl.start_provider(
            host_id,
            "wasmcloud+builtin://http-server",
            "http-server",
            None,
            vec![],
        )
        .await,
    )?;
    let link = Link::builder()
        .source_id("http-server")
        .target("hello")
        .name("default")
        .wit_namespace("wasi")
        .wit_package("http")
        .interfaces(vec!["incoming-handler".to_string()])
        .source_config(vec!["hello-http-address".to_string()])
        .build()
        .map_err(|e| anyhow!("link: {e}"))?;
    acked("put link", ctl.put_link(link).await)?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let args = parse_args()?;
    let url = Url::parse(&args.nats_server).context("--nats-server")?;
    let host_key = Arc::new(KeyPair::new(KeyPairType::Server));
    let host_id = host_key.public_key();
    let config = HostConfig {
        ctl_nats_url: url.clone(),
        rpc_nats_url: url,
        lattice: args.lattice.as_str().into(),
        host_key: Some(host_key),
        allow_file_load: true,
        experimental_features: Features::new().enable_builtin_http_server(),
        ..HostConfig::default()
    };
    let (host, shutdown) = Host::new(config).await.context("starting the host")?;
    println!("wasmcloud host ready {host_id}");

    if let Some(wasm) = &args.component {
        let nc = async_nats::connect(args.nats_server.as_str())
            .await
            .context("control client: connecting to NATS")?;
        let ctl = ClientBuilder::new(nc)
            .lattice(args.lattice.as_str())
            .timeout(Duration::from_secs(10))
            .build();
        deploy(&ctl, &host_id, &args, wasm).await?;
        println!("wasmcloud deployed");
    }

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
        r = host.stopped() => { r.context("host")?; }
    }
    shutdown.await.context("stopping the host")?;
    Ok(())
}
