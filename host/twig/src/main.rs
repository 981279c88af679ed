//! The `twig` command line. See the crate documentation of `twig` (lib.rs)
//! for how the host is put together.
//!
//! The one `unsafe` block of the host is here (`one_malloc_arena`); the
//! library forbids it.
#![deny(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand, ValueEnum};
use twig::admin::{self, Request};
use twig::board::{resolve_data_dir, Board};

#[derive(Parser)]
#[command(
    name = "twig",
    version,
    about = "A small-footprint edge host for WebAssembly components",
    propagate_version = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

/// The uplink to the lattice. Without --nats-url twig runs on its own.
#[derive(clap::Args)]
struct NatsArgs {
    /// NATS server to join the lattice through (nats://HOST:PORT or
    /// tls://HOST:PORT); twig connects in the background and keeps
    /// retrying, apps run either way.
    #[arg(long, value_name = "URL", env = "TWIG_NATS_URL")]
    nats_url: Option<String>,
    /// Lattice name [default: the board profile's, else `default`].
    #[arg(long, value_name = "NAME", env = "TWIG_LATTICE")]
    lattice: Option<String>,
    /// Credentials file (user JWT + nkey seed).
    #[arg(long, value_name = "FILE", env = "TWIG_NATS_CREDS")]
    nats_creds: Option<PathBuf>,
    /// CA certificate (PEM) the server's certificate must chain to.
    #[arg(long, value_name = "FILE", env = "TWIG_NATS_TLS_CA")]
    nats_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; needs --nats-tls-key.
    #[arg(
        long,
        value_name = "FILE",
        env = "TWIG_NATS_TLS_CERT",
        requires = "nats_tls_key"
    )]
    nats_tls_cert: Option<PathBuf>,
    /// Client key (PEM) for mutual TLS.
    #[arg(
        long,
        value_name = "FILE",
        env = "TWIG_NATS_TLS_KEY",
        requires = "nats_tls_cert"
    )]
    nats_tls_key: Option<PathBuf>,
    /// File holding an nkey seed (SU…) to authenticate with.
    #[arg(long, value_name = "FILE", env = "TWIG_NATS_NKEY")]
    nats_nkey: Option<PathBuf>,
    /// User name; needs --nats-password.
    #[arg(
        long,
        value_name = "USER",
        env = "TWIG_NATS_USER",
        requires = "nats_password"
    )]
    nats_user: Option<String>,
    /// Password (better given as $TWIG_NATS_PASSWORD than on the command line).
    #[arg(
        long,
        value_name = "PASSWORD",
        env = "TWIG_NATS_PASSWORD",
        hide_env_values = true,
        requires = "nats_user"
    )]
    nats_password: Option<String>,
    /// Token (better given as $TWIG_NATS_TOKEN).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "TWIG_NATS_TOKEN",
        hide_env_values = true
    )]
    nats_token: Option<String>,
    /// JetStream domain holding the lattice's buckets (LATTICEDATA_*,
    /// CONFIGDATA_*), e.g. `core` behind a leaf node.
    #[arg(long, value_name = "DOMAIN", env = "TWIG_JS_DOMAIN")]
    js_domain: Option<String>,
    /// Seconds between heartbeats on the lattice [default: the board
    /// profile's, else 30].
    #[arg(long, value_name = "SECONDS", env = "TWIG_HEARTBEAT_SECS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    heartbeat_secs: Option<u64>,
    /// A label this host advertises besides the board profile's (repeatable;
    /// overrides a profile label of the same key).
    #[arg(long = "label", value_name = "KEY=VALUE")]
    labels: Vec<String>,
    /// The host's friendly name on the lattice; the hostname by default.
    #[arg(long, value_name = "NAME", env = "TWIG_FRIENDLY_NAME")]
    friendly_name: Option<String>,
    /// A separate NATS server for the control interface (control requests,
    /// the lattice's buckets, the policy service); with any --ctl-* option
    /// the control interface gets its own connection, to --nats-url when
    /// this is not given.
    #[arg(long, value_name = "URL", env = "TWIG_CTL_URL")]
    ctl_url: Option<String>,
    /// Credentials file of the control connection.
    #[arg(long, value_name = "FILE", env = "TWIG_CTL_CREDS")]
    ctl_creds: Option<PathBuf>,
    /// CA of the control connection's server [default: --nats-tls-ca].
    #[arg(long, value_name = "FILE", env = "TWIG_CTL_TLS_CA")]
    ctl_tls_ca: Option<PathBuf>,
    /// Client certificate (PEM) of the control connection; needs
    /// --ctl-tls-key.
    #[arg(
        long,
        value_name = "FILE",
        env = "TWIG_CTL_TLS_CERT",
        requires = "ctl_tls_key"
    )]
    ctl_tls_cert: Option<PathBuf>,
    /// Client key (PEM) of the control connection.
    #[arg(
        long,
        value_name = "FILE",
        env = "TWIG_CTL_TLS_KEY",
        requires = "ctl_tls_cert"
    )]
    ctl_tls_key: Option<PathBuf>,
    /// nkey seed file of the control connection.
    #[arg(long, value_name = "FILE", env = "TWIG_CTL_NKEY")]
    ctl_nkey: Option<PathBuf>,
    /// Subject prefix of the control interface [default: wasmbus.ctl].
    #[arg(long, value_name = "PREFIX", env = "TWIG_CTL_TOPIC_PREFIX")]
    ctl_topic_prefix: Option<String>,
}

impl NatsArgs {
    /// The uplink settings: each flag (or its `TWIG_*` variable) over the
    /// board profile's `[lattice]` field, over the default. `None` when
    /// neither names a server: twig runs offline.
    fn options(
        self,
        board: &Board,
        profile: twig::board::BoardLattice,
    ) -> anyhow::Result<Option<twig::uplink::UplinkOptions>> {
        let flags = twig::board::BoardLattice {
            url: self.nats_url,
            name: self.lattice,
            js_domain: self.js_domain,
            creds: self.nats_creds,
            tls_ca: self.nats_tls_ca,
            tls_cert: self.nats_tls_cert,
            tls_key: self.nats_tls_key,
            nkey: self.nats_nkey,
            user: self.nats_user,
            password: self.nats_password,
            token: self.nats_token,
            heartbeat_secs: self.heartbeat_secs,
            friendly_name: self.friendly_name,
            ctl_url: self.ctl_url,
            ctl_creds: self.ctl_creds,
            ctl_tls_ca: self.ctl_tls_ca,
            ctl_tls_cert: self.ctl_tls_cert,
            ctl_tls_key: self.ctl_tls_key,
            ctl_nkey: self.ctl_nkey,
            ctl_topic_prefix: self.ctl_topic_prefix,
        };
        twig::uplink::UplinkOptions::from_settings(flags.over(profile), &board.name)
            .map_err(anyhow::Error::msg)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the host: restore deployed apps, deploy --app files, serve the
    /// admin socket until SIGTERM/SIGINT.
    Up {
        /// Board profile (TOML); the built-in `sim` profile when absent.
        #[arg(long, value_name = "FILE")]
        board: Option<PathBuf>,
        /// App manifest to deploy (repeatable). Deployed apps persist; a
        /// restart without --app brings them back.
        #[arg(long = "app", value_name = "FILE")]
        apps: Vec<PathBuf>,
        #[arg(long, value_name = "DIR", env = "TWIG_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "human", env = "TWIG_LOG_FORMAT")]
        log_format: LogFormat,
        /// Sets a field of the control policy over the board's `[control]`
        /// table (repeatable; `TWIG_CONTROL` takes `K=V;K=V`), e.g.
        /// `host_stop=restart`, `file_dirs=["/opt/wasm"]`, `links=deny`.
        #[arg(
            long = "control",
            value_name = "KEY=VALUE",
            env = "TWIG_CONTROL",
            value_delimiter = ';'
        )]
        control: Vec<String>,
        #[command(flatten)]
        nats: Box<NatsArgs>,
    },
    /// Show every app and component of the running host.
    Status {
        #[arg(long, value_name = "DIR", env = "TWIG_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Print JSON: {"apps":[{"name":…,"components":[{"id":…,"state":…}]}]}.
        #[arg(long)]
        json: bool,
    },
    /// Call an export of a running component; arguments and result in WAVE.
    Invoke {
        #[arg(long, value_name = "DIR", env = "TWIG_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// Component id (or its name in the manifest, if unique).
        component: String,
        /// `function`, `namespace:package/interface#function` or wash's
        /// `namespace:package/interface.function`.
        function: String,
        /// Arguments in WAVE, e.g. '"Ada"' 42 '[1, 2]' -7.
        #[arg(allow_negative_numbers = true)]
        args: Vec<String>,
        /// Print every result in WAVE; by default a string result prints
        /// as its text.
        #[arg(long)]
        wave: bool,
    },
    /// Deploy (or replace) an app on the running host.
    Apply {
        #[arg(long, value_name = "DIR", env = "TWIG_DATA_DIR")]
        data_dir: Option<PathBuf>,
        #[arg(value_name = "APP.yaml")]
        manifest: PathBuf,
    },
    /// Remove an app from the running host.
    Delete {
        #[arg(long, value_name = "DIR", env = "TWIG_DATA_DIR")]
        data_dir: Option<PathBuf>,
        /// App name, or the manifest file it was deployed from.
        #[arg(value_name = "APP.yaml|NAME")]
        app: String,
    },
    /// Check an app manifest (and its images) or a board profile.
    Validate {
        #[arg(value_name = "APP.yaml", required_unless_present = "board")]
        manifest: Option<PathBuf>,
        #[arg(long, value_name = "BOARD.toml")]
        board: Option<PathBuf>,
    },
    /// Print a component's WIT imports and exports.
    Inspect {
        #[arg(value_name = "COMPONENT.wasm")]
        component: PathBuf,
    },
}

fn main() -> ExitCode {
    let started = Instant::now();
    one_malloc_arena();
    let cli = Cli::parse();
    match run(cli, started) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Under a capped address space, gives glibc's malloc one arena (unless
/// `MALLOC_ARENA_MAX` says otherwise). glibc gives each thread that
/// allocates an arena of its own, reserved 64 MiB at a time; under
/// `prlimit --as` (or a small board's limits) that reservation fails and
/// malloc falls back to a path that kept 6.4 MB more resident in our
/// measurements (idle demo under a 128 MiB cap: 7.9 MB anonymous instead of
/// 1.3 MB). Without a cap the arenas cost no resident memory and one arena
/// would cost 19 % of HTTP throughput at 16 connections, so it is left
/// alone (BENCHMARKS.md, "Device builds").
fn one_malloc_arena() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct we own; mallopt only
        // sets an allocator tunable, before any other thread exists.
        #[allow(unsafe_code)]
        unsafe {
            if libc::getrlimit(libc::RLIMIT_AS, &mut limit) == 0
                && limit.rlim_cur != libc::RLIM_INFINITY
            {
                libc::mallopt(libc::M_ARENA_MAX, 1);
            }
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;
    // TWIG_LOG takes `info`, `debug`, or per-target `info,twig::host=debug`.
    // async-nats logs every reconnect attempt, and every refusal at error
    // level, once per retry; twig's uplink reports each of its events once
    // itself. Named explicitly in TWIG_LOG (`info,async_nats=debug`),
    // async-nats says everything.
    let spec = std::env::var("TWIG_LOG").unwrap_or_default();
    let mut filter: Targets = spec
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO));
    if spec.trim().is_empty() {
        filter = filter.with_default(LevelFilter::INFO);
    }
    if !spec.contains("async_nats") {
        filter = filter.with_target("async_nats", LevelFilter::OFF);
    }
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    match format {
        LogFormat::Human => tracing_subscriber::registry()
            .with(fmt.with_target(false).with_filter(filter))
            .init(),
        LogFormat::Json => tracing_subscriber::registry()
            .with(
                fmt.json()
                    .with_current_span(false)
                    // Every span a line sits in (`call`: trace id,
                    // component, export, trigger), outermost first.
                    .with_span_list(true)
                    .with_filter(filter),
            )
            .init(),
    }
}

fn data_dir(flag: Option<PathBuf>) -> PathBuf {
    resolve_data_dir(flag.as_deref(), Some(&Board::sim()))
}

fn run(cli: Cli, started: Instant) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Up {
            board,
            apps,
            data_dir: dir,
            log_format,
            control,
            nats,
        } => {
            init_logging(log_format);
            let board = match board {
                Some(path) => Board::load(&path)?,
                None => Board::sim(),
            };
            let mut board = board;
            board.control = board
                .control
                .with_overrides(&control)
                .map_err(anyhow::Error::msg)?;
            for arg in &nats.labels {
                let (k, v) = twig::lattice::parse_label(arg).map_err(anyhow::Error::msg)?;
                board.labels.insert(k, v);
            }
            let data_dir = resolve_data_dir(dir.as_deref(), Some(&board));
            let mut profile = board.lattice();
            let friendly_name = nats
                .friendly_name
                .clone()
                .or_else(|| profile.friendly_name.take());
            let uplink = nats.options(&board, profile)?;
            let stopped = twig::up::run(twig::up::UpOptions {
                board,
                apps,
                data_dir,
                started,
                uplink,
                friendly_name,
            })?;
            return Ok(ExitCode::from(stopped.exit_status()));
        }
        Command::Status {
            data_dir: dir,
            json,
        } => {
            let status = admin::request(&data_dir(dir), &Request::Status)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print_status(&status);
            }
        }
        Command::Invoke {
            data_dir: dir,
            component,
            function,
            args,
            wave,
        } => {
            let result = admin::request(
                &data_dir(dir),
                &Request::Invoke {
                    component,
                    function,
                    args,
                    plain: !wave,
                },
            )?;
            for v in result.as_array().into_iter().flatten() {
                println!("{}", v.as_str().unwrap_or_default());
            }
        }
        Command::Apply {
            data_dir: dir,
            manifest,
        } => {
            let req = admin::apply_request(&manifest)?;
            let out = admin::request(&data_dir(dir), &req)?;
            for w in out["warnings"].as_array().into_iter().flatten() {
                eprintln!("warning: {}", w.as_str().unwrap_or_default());
            }
            let name = out["name"].as_str().unwrap_or_default();
            let failed: Vec<&str> = out["failed"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| f.as_str())
                .collect();
            if !failed.is_empty() {
                anyhow::bail!(
                    "applied {name}, but not all of it started (it stays deployed: fix it and \
                     apply again, or `twig delete {name}`):\n  - {}",
                    failed.join("\n  - ")
                );
            }
            println!(
                "applied {name} {} ({})",
                out["version"].as_str().unwrap_or(""),
                plural(
                    out["components"].as_array().map_or(0, |c| c.len()),
                    "component"
                )
            );
        }
        Command::Delete { data_dir: dir, app } => {
            let name = if Path::new(&app).is_file() {
                twig::image::read_manifest(Path::new(&app))
                    .map_err(anyhow::Error::msg)?
                    .1
                    .manifest
                    .name
            } else {
                app
            };
            admin::request(&data_dir(dir), &Request::Delete { name: name.clone() })?;
            println!("deleted {name}");
        }
        Command::Validate { manifest, board } => {
            // Images are checked against the named board's cap, else the
            // built-in profile's.
            let profile = match &board {
                Some(b) => {
                    let board = Board::load(b)?;
                    println!("{}: valid board profile `{}`", b.display(), board.name);
                    board
                }
                None => Board::sim(),
            };
            if let Some(m) = manifest {
                validate_manifest(&m, profile.limits.max_image_bytes())?;
            }
        }
        Command::Inspect { component } => inspect(&component)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// Parses a manifest and compiles every file image, as `apply` would.
fn validate_manifest(path: &Path, image_cap: u64) -> anyhow::Result<()> {
    let (_, parsed) = twig::image::read_manifest(path).map_err(anyhow::Error::msg)?;
    for w in &parsed.warnings {
        eprintln!("warning: {}: {w}", path.display());
    }
    let engine = twig_component::Engine::default();
    let file = path.display().to_string();
    let blobs = twig::host::load_images(
        &engine,
        &parsed.manifest,
        &file,
        &Default::default(),
        image_cap,
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    let warnings = twig::host::check_manifest_imports(&engine, &parsed.manifest, &file, &blobs)
        .map_err(anyhow::Error::msg)?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    let m = &parsed.manifest;
    println!(
        "{}: valid app `{}`{} with {}: {}",
        path.display(),
        m.name,
        m.version
            .as_deref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default(),
        plural(m.components.len(), "component"),
        m.components
            .iter()
            .map(|c| c.id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

/// `1 component`, `2 components`.
fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

fn inspect(path: &Path) -> anyhow::Result<()> {
    // The built-in profile's image cap: inspect runs without a board.
    let bytes = twig::image::read_image(path, Board::sim().limits.max_image_bytes())?;
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "component".into());
    let component =
        twig_component::Component::new(&twig_component::Engine::default(), &name, &bytes)?;
    println!("{}: {} bytes", path.display(), bytes.len());
    println!("imports:");
    for i in component.imports() {
        println!("  {} {}", i.kind, i.name);
        for item in &i.items {
            println!("    {item}");
        }
    }
    println!("exports:");
    for (name, sig) in component.exports() {
        println!("  {name}: {sig}");
    }
    Ok(())
}

fn print_status(status: &serde_json::Value) {
    let host = &status["host"];
    println!(
        "twig {} on board {} (data dir {})",
        host["version"].as_str().unwrap_or("?"),
        host["board"].as_str().unwrap_or("?"),
        host["data_dir"].as_str().unwrap_or("?")
    );
    if let Some(id) = host["host_id"].as_str() {
        println!(
            "host {id} ({})",
            host["friendly_name"].as_str().unwrap_or("?")
        );
    }
    let uplink = &host["uplink"];
    if uplink.is_object() {
        println!(
            "lattice {} via {}: {}{}",
            uplink["lattice"].as_str().unwrap_or("?"),
            uplink["url"].as_str().unwrap_or("?"),
            uplink["state"].as_str().unwrap_or("?"),
            uplink["last_error"]
                .as_str()
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        );
        let ctl = &uplink["control"];
        if ctl.is_object() {
            println!(
                "control interface via {}: {}{}",
                ctl["url"].as_str().unwrap_or("?"),
                ctl["state"].as_str().unwrap_or("?"),
                ctl["last_error"]
                    .as_str()
                    .map(|e| format!(" (last error: {e})"))
                    .unwrap_or_default()
            );
        }
    }
    let outbox = &host["outbox"];
    if let Some(classes) = outbox["classes"].as_array() {
        let sum = |k: &str| -> u64 { classes.iter().filter_map(|c| c[k].as_u64()).sum() };
        let waiting: Vec<String> = classes
            .iter()
            .filter(|c| c["pending_records"].as_u64().unwrap_or(0) > 0)
            .map(|c| {
                format!(
                    "{} {}",
                    c["name"].as_str().unwrap_or("?"),
                    c["pending_records"].as_u64().unwrap_or(0)
                )
            })
            .collect();
        println!(
            "outbox: {} waiting ({} bytes){}; {} delivered, {} dropped, {} expired (per class: --json)",
            sum("pending_records"),
            sum("pending_bytes"),
            if waiting.is_empty() {
                String::new()
            } else {
                format!(": {}", waiting.join(", "))
            },
            sum("delivered"),
            sum("dropped_full") + sum("rejected_full"),
            sum("expired")
        );
    }
    let apps = status["apps"].as_array().cloned().unwrap_or_default();
    if apps.is_empty() {
        println!("no apps deployed");
        return;
    }
    // Rows first: each column is as wide as its longest cell, so long app
    // and component ids do not push the columns out of line.
    let mut rows: Vec<[String; 6]> = Vec::new();
    for app in &apps {
        for c in app["components"].as_array().into_iter().flatten() {
            let inst = &c["instances"];
            let provider = c["provider"].as_str().map(|p| match c["serving"].as_str() {
                Some(what) => format!("provider {p}, {what}"),
                None => format!("provider {p}"),
            });
            let detail = c["reason"]
                .as_str()
                .or(c["last_error"]
                    .as_str()
                    .map(|_| "last call failed (see --json)"))
                .or(provider.as_deref())
                .unwrap_or("");
            rows.push([
                app["name"].as_str().unwrap_or("").to_string(),
                app["version"].as_str().unwrap_or("-").to_string(),
                c["id"].as_str().unwrap_or("").to_string(),
                c["state"].as_str().unwrap_or("").to_string(),
                if provider.is_some() {
                    "-".to_string()
                } else {
                    format!("{}/{}", inst["live"], inst["max"])
                },
                detail.to_string(),
            ]);
        }
    }
    print!("{}", status_table(&rows));
}

/// The component table of `twig status`: left-aligned columns as wide as
/// their widest cell (the instance counts right-aligned), the detail last.
fn status_table(rows: &[[String; 6]]) -> String {
    const HEAD: [&str; 6] = [
        "APP",
        "VERSION",
        "COMPONENT",
        "STATE",
        "INSTANCES",
        "DETAIL",
    ];
    let mut w = HEAD.map(|h| h.chars().count());
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            w[i] = w[i].max(cell.chars().count());
        }
    }
    let line = |r: [&str; 6]| {
        format!(
            "{:<a$}  {:<b$}  {:<c$}  {:<d$}  {:>e$}  {}\n",
            r[0],
            r[1],
            r[2],
            r[3],
            r[4],
            r[5],
            a = w[0],
            b = w[1],
            c = w[2],
            d = w[3],
            e = w[4]
        )
        .trim_end()
        .to_string()
            + "\n"
    };
    let mut out = line(HEAD);
    for r in rows {
        out.push_str(&line([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_columns_fit_the_longest_cell() {
        let row = |a: &str, c: &str| [a, "v1", c, "running", "1/4", "ok"].map(String::from);
        let t = status_table(&[
            row("a", "a-short"),
            row(
                "a-very-long-application-name",
                "a_very_long_application_name-component-with-a-long-name",
            ),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        // Every column starts at the same place on every line.
        let col = |l: &str, what: &str| l.find(what).unwrap();
        assert_eq!(col(lines[0], "VERSION"), col(lines[1], "v1"));
        assert_eq!(col(lines[1], "v1"), col(lines[2], "v1"));
        assert_eq!(col(lines[0], "STATE"), col(lines[2], "running"));
        assert_eq!(col(lines[1], "running"), col(lines[2], "running"));
        assert!(lines.iter().all(|l| !l.ends_with(' ')), "{t}");
    }
}
