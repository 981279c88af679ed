//! `twig up`: the host process.
//!
//! Boot never needs a network: the desired state and the component cache
//! on disk are enough to bring every app back after a power cut. The order
//! is: take the data-dir lock (one host per data dir), restore the desired
//! state, record `--app` files into it, bind the admin socket, start every
//! app, then serve until SIGTERM/SIGINT.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::admin;
use crate::board::Board;
use crate::host::{ApplyRequest, Host, State};
use crate::state::create_private_dir;

pub struct UpOptions {
    pub board: Board,
    pub apps: Vec<PathBuf>,
    pub data_dir: PathBuf,
    /// When the process started, for the time-to-running log line.
    pub started: Instant,
    /// The NATS server to join the lattice through, if any.
    pub uplink: Option<crate::uplink::UplinkOptions>,
    /// `--friendly-name`; the hostname when absent.
    pub friendly_name: Option<String>,
}

/// Why `twig up` ended, for its exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// SIGTERM or SIGINT: a local administrator's stop (exit 0).
    Signal,
    /// `host.stop` from the lattice, as `control.host_stop` allowed.
    Lattice(crate::policy::HostStop),
}

impl Stopped {
    /// The process exit status: 0, except for a lattice stop the policy
    /// makes final ([`crate::policy::EXIT_STOPPED_BY_LATTICE`], which the
    /// shipped unit does not restart).
    pub fn exit_status(self) -> u8 {
        match self {
            Stopped::Lattice(crate::policy::HostStop::Exit) => {
                crate::policy::EXIT_STOPPED_BY_LATTICE
            }
            _ => 0,
        }
    }
}

pub fn run(opts: UpOptions) -> anyhow::Result<Stopped> {
    let data_dir = &opts.data_dir;
    create_private_dir(data_dir)?;
    // One host per data directory. The lock goes away with the process,
    // so a host killed with -9 leaves nothing to clean up by hand.
    let lock_path = data_dir.join("twig.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .with_context(|| format!("opening {}", lock_path.display()))?;
    if lock.try_lock().is_err() {
        anyhow::bail!(
            "another twig is running with data dir {} (it holds {})",
            data_dir.display(),
            lock_path.display()
        );
    }

    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        board = %opts.board.name,
        data_dir = %data_dir.display(),
        "twig starting"
    );
    if let Some(arch) = opts.board.target_arch() {
        if arch != std::env::consts::ARCH {
            // Allowed (a profile can be tried on a workstation), but worth a
            // line: the device's sensors and paths will not be there.
            tracing::warn!(
                "board {} is for {} ({arch}), but this twig runs on {}",
                opts.board.name,
                opts.board.target.as_deref().unwrap_or_default(),
                std::env::consts::ARCH
            );
        }
    }
    let host = Host::open(opts.board.clone(), data_dir)?;
    // The lattice identity is made once and kept; a problem with it is
    // logged and the host runs on (it is never needed to boot).
    let identity = match crate::lattice::load_identity(data_dir, opts.friendly_name.clone()) {
        Ok(Some(identity)) => {
            tracing::info!(host_id = %identity.host_id, friendly_name = %identity.friendly_name, "host identity");
            host.set_identity(identity.clone());
            Some(identity)
        }
        Ok(None) => None,
        Err(e) => {
            tracing::error!("host identity: {e}");
            None
        }
    };
    // The outbox before any app starts, so the bus exports to it from
    // the first message. Without it the host still runs; nothing leaves.
    let heartbeat = opts
        .uplink
        .as_ref()
        .map(|u| u.heartbeat)
        .unwrap_or(std::time::Duration::from_secs(30));
    if let Err(e) = host.open_upstream(heartbeat) {
        tracing::error!("{e}; messages for the lattice are not kept");
    }
    // A bad --app file (unreadable, bad YAML, an image that is missing or
    // not a regular file) is logged and skipped: the apps already deployed
    // and the other files still run.
    let mut skipped = Vec::new();
    for app in &opts.apps {
        match record_app(&host, app) {
            Ok(name) => tracing::info!(app = %name, "recorded {name} from {}", app.display()),
            Err(e) => {
                tracing::error!(file = %app.display(), "--app {} skipped: {e}", app.display());
                skipped.push(app.display().to_string());
            }
        }
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .max_blocking_threads(opts.board.limits.max_instances.clamp(4, 64))
        .build()
        .context("starting the async runtime")?;
    let guests = crate::exec::GuestPool::new(opts.board.limits.max_instances.clamp(4, 64))
        .context("starting the guest threads")?;
    host.set_guest_pool(guests.handle());
    let served = rt.block_on(async move {
        let listener = admin::bind(data_dir)?;
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let limits = admin::AdminLimits::for_board(&opts.board);
        let server = tokio::spawn(admin::serve(listener, host.clone(), limits, stop_rx));
        // Rung when the lattice sends `host.stop`.
        let lattice_stop = std::sync::Arc::new(tokio::sync::Notify::new());
        let uplink = opts.uplink.clone().map(|u| {
            let up = crate::lattice::start(u, host.clone(), identity, lattice_stop.clone());
            host.set_uplink(up.status.clone());
            up
        });

        let starter = host.clone();
        let started = opts.started;
        tokio::task::spawn_blocking(move || {
            starter.start_all();
            let status = starter.status();
            let components: Vec<_> = status.apps.iter().flat_map(|a| &a.components).collect();
            let not_running: Vec<String> = components
                .iter()
                .filter(|c| c.state != State::Running)
                .map(|c| format!("{} ({:?})", c.id, c.state))
                .collect();
            tracing::info!(
                apps = status.apps.len(),
                running = components.len() - not_running.len(),
                components = components.len(),
                elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
                "twig is up"
            );
            if !not_running.is_empty() {
                tracing::warn!("not running: {}", not_running.join(", "));
            }
            if !skipped.is_empty() {
                tracing::warn!("--app files skipped (see above): {}", skipped.join(", "));
            }
        })
        .await
        .context("starting apps")?;

        let stopped = tokio::select! {
            r = wait_for_signal() => { r?; Stopped::Signal }
            _ = lattice_stop.notified() => {
                tracing::info!("host.stop from the lattice");
                Stopped::Lattice(opts.board.control.host_stop)
            }
        };
        tracing::info!("shutting down: finishing calls in flight");
        // Each step of the stop is bounded, so that SIGTERM ends the
        // process within STOP_BOUND whatever is in flight: the lattice
        // hears of it (ANNOUNCE_GRACE), admin requests finish or are
        // cancelled (admin::SHUTDOWN_GRACE), blocking threads still running
        // a guest are left behind (RUNTIME_GRACE).
        if let Some(up) = &uplink {
            if tokio::time::timeout(ANNOUNCE_GRACE, up.announce_stop())
                .await
                .is_err()
            {
                tracing::warn!("the lattice did not take the stop announcement in time");
            }
        }
        let _ = stop_tx.send(true);
        let _ = server.await;
        // A guest call left running keeps the host alive past the stop, so
        // the outbox's own final fsync (on drop) may never run: do it here.
        if let Some(up) = host.upstream() {
            if let Err(e) = up.outbox.sync() {
                tracing::error!("outbox: final fsync failed: {e}");
            }
        }
        let _ = std::fs::remove_file(admin::socket_path(data_dir));
        anyhow::Ok(stopped)
    });
    // Dropping the runtime would wait for every blocking thread, a guest
    // call spinning until its deadline among them.
    rt.shutdown_timeout(RUNTIME_GRACE);
    guests.shutdown();
    let stopped = served?;
    tracing::info!("stopped");
    drop(lock);
    Ok(stopped)
}

/// How long `twig up` may take to stop after SIGTERM/SIGINT (README, the
/// `twig up` row): the sum of the steps' graces below, with room to spare.
pub const STOP_BOUND: Duration = Duration::from_secs(5);
const ANNOUNCE_GRACE: Duration = Duration::from_secs(1);
const RUNTIME_GRACE: Duration = Duration::from_millis(500);
const _: () = assert!(
    ANNOUNCE_GRACE.as_millis() + admin::SHUTDOWN_GRACE.as_millis() + RUNTIME_GRACE.as_millis()
        < STOP_BOUND.as_millis()
);

/// Records one `--app` file in the desired state; returns the app's name.
fn record_app(host: &Host, app: &std::path::Path) -> Result<String, String> {
    let (text, _) = crate::image::read_manifest(app)?;
    let outcome = host.apply(
        ApplyRequest {
            file: Some(admin::absolute(app)),
            text,
            images: Default::default(),
        },
        false,
    )?;
    Ok(outcome.name)
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
    Ok(())
}
