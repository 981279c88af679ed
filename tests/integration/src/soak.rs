//! The disconnect soak: telemetry from a device through outages, a crash
//! and an offline restart, counted at a JetStream stream in the core.
//!
//! Shared by `tests/outbox.rs` (a short run in the test command) and the
//! `soak` binary behind `tests/soak` (as long as asked).
//!
//! ```text
//! sensors (sim, interval) --> telemetry component --publish telemetry.{sensor}-->
//!   twig outbox (disk) --TLS--> leaf nats-server (domain leaf) --TLS leafnode-->
//!   core nats-server (domain core), stream TELEMETRY (telemetry.>) <-- the check reads it
//! ```
//!
//! During the run the core is killed and restarted `outages` times, and
//! twig is `kill -9`ed `kills` times and restarted with both servers down
//! (so it boots with no uplink at all) before they come back. At the end
//! the component is paused, its counters say how many readings of each
//! sensor it numbered, and the stream must hold each number exactly once,
//! in order per sensor.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::guest_path;
use crate::netns::ShapedLink;
use crate::topology::{Server, Topology};
use crate::twig::{lattice_args, TempDir, Twig};

/// What the soak does.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long the device produces before the final count.
    pub seconds: u64,
    /// Readings per second of each sensor (1 to 100).
    pub rate: u32,
    /// Times the core is killed and restarted.
    pub outages: u32,
    /// Times twig is `kill -9`ed and restarted offline.
    pub kills: u32,
    /// How long each outage (and each offline restart) lasts.
    pub outage: Duration,
    /// The sensors (each its own sequence).
    pub sensors: Vec<String>,
    /// The outbox's `drain_rate` (messages per second; 0 unlimited).
    pub drain_rate: u32,
    /// Print a line per step to stderr.
    pub progress: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            seconds: 30,
            rate: 10,
            outages: 3,
            kills: 1,
            outage: Duration::from_secs(3),
            sensors: vec!["s1".into(), "s2".into()],
            drain_rate: 500,
            progress: true,
        }
    }
}

/// Per sensor: what was numbered and what the stream holds.
#[derive(Debug, Clone, Default)]
pub struct SensorReport {
    pub produced: u64,
    /// Distinct numbers in 1..=produced present in the stream.
    pub delivered: u64,
    /// Copies beyond the first of any number.
    pub duplicates: u64,
    /// Numbers in 1..=produced not in the stream (the first few listed).
    pub lost: u64,
    pub first_lost: Vec<u64>,
    /// Times a number came after a higher one in stream order.
    pub out_of_order: u64,
    /// Numbers above `produced` (must not exist).
    pub unexpected: u64,
}

impl SensorReport {
    /// Panics unless every number produced is in the stream exactly once,
    /// in order, and nothing else is.
    pub fn assert_exactly_once_in_order(&self, name: &str) {
        assert!(self.produced > 0, "{name} produced nothing");
        assert_eq!(
            self.lost, 0,
            "{name}: lost {} (first {:?})",
            self.lost, self.first_lost
        );
        assert_eq!(self.duplicates, 0, "{name}: duplicates");
        assert_eq!(self.out_of_order, 0, "{name}: out of order");
        assert_eq!(self.unexpected, 0, "{name}: numbers never produced");
        assert_eq!(self.delivered, self.produced, "{name}");
    }
}

/// `produced=N delivered=N duplicates=D lost=L` over all sensors: the line
/// `tests/soak` ends with.
fn summary_line(sensors: &BTreeMap<String, SensorReport>) -> String {
    let sum = |f: fn(&SensorReport) -> u64| sensors.values().map(f).sum::<u64>();
    format!(
        "produced={} delivered={} duplicates={} lost={}",
        sum(|s| s.produced),
        sum(|s| s.delivered),
        sum(|s| s.duplicates),
        sum(|s| s.lost)
    )
}

/// The outcome of a soak.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub sensors: BTreeMap<String, SensorReport>,
    /// Stream messages without a `Nats-Msg-Id` header.
    pub without_msg_id: u64,
    /// Messages in the stream that are not telemetry JSON.
    pub malformed: u64,
    /// The largest outbox backlog seen during an outage (records).
    pub max_backlog: u64,
    /// What twig's status said at the end: messages delivered (since its
    /// last start) and resends the stream recognised as duplicates.
    pub twig_delivered: u64,
    pub twig_stream_duplicates: u64,
    /// Seconds from the core's last return to the first new message in
    /// the stream (one sample per outage).
    pub recovery_secs: Vec<f64>,
}

impl Report {
    pub fn produced(&self) -> u64 {
        self.sensors.values().map(|s| s.produced).sum()
    }
    pub fn delivered(&self) -> u64 {
        self.sensors.values().map(|s| s.delivered).sum()
    }
    pub fn duplicates(&self) -> u64 {
        self.sensors.values().map(|s| s.duplicates).sum()
    }
    pub fn lost(&self) -> u64 {
        self.sensors.values().map(|s| s.lost).sum()
    }
    pub fn out_of_order(&self) -> u64 {
        self.sensors.values().map(|s| s.out_of_order).sum()
    }

    /// The summary `tests/soak` ends with, exactly.
    pub fn last_line(&self) -> String {
        summary_line(&self.sensors)
    }
}

const APP: &str = "soak";
const COMPONENT: &str = "soak-telemetry";
const STREAM: &str = "TELEMETRY";

fn say(opts: &Options, started: Instant, what: &str) {
    if opts.progress {
        eprintln!("soak: t={:>5.1}s {what}", started.elapsed().as_secs_f64());
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
}

/// The board profile of the soak's device: one simulated sensor per
/// sequence, sampled `rate` times a second, and the outbox class that
/// sends `telemetry.>` upstream.
fn board_profile(opts: &Options) -> String {
    let interval = (1000 / opts.rate.clamp(1, 100)).max(10);
    let mut s = format!(
        "name = \"soak\"\n\
         [limits]\nmax_components = 16\nmax_instances = 4\nmemory_mib = 64\n\
         fuel_per_call = 10_000_000_000\ndeadline_ms = 10_000\n\
         [outbox]\nmax_mib = 64\ndrain_rate = {}\n\
         [[outbox.classes]]\nname = \"telemetry\"\nsubjects = [\"telemetry.>\"]\npriority = 100\n",
        opts.drain_rate
    );
    for name in &opts.sensors {
        s.push_str(&format!(
            "[[sensors]]\nname = \"{name}\"\ninterval_ms = {interval}\n\
             source.sim.sine = {{ amplitude = 1.0, period_ms = 60000, offset = 20.0 }}\n"
        ));
    }
    s
}

/// The app: the telemetry component with key-value (its counters) and
/// messaging (its publishes), and the sensors provider delivering each
/// reading to it.
fn manifest() -> String {
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: {APP}
spec:
  components:
    - name: telemetry
      type: component
      properties:
        image: {image}
      traits:
        - type: spreadscaler
          properties:
            instances: 1
        - type: link
          properties:
            target:
              name: store
            namespace: wasi
            package: keyvalue
            interfaces: [store, atomics]
        - type: link
          properties:
            target:
              name: nats
            namespace: wasmcloud
            package: messaging
            interfaces: [consumer]
    - name: store
      type: capability
      properties:
        image: twig:keyvalue
    - name: nats
      type: capability
      properties:
        image: twig:messaging
    - name: sensors
      type: capability
      properties:
        image: twig:sensors
      traits:
        - type: link
          properties:
            target:
              name: telemetry
            namespace: wasmcloud
            package: messaging
            interfaces: [handler]
"#,
        image = guest_path("telemetry").display()
    )
}

/// The stream in the core that captures the telemetry. Its duplicate
/// window (the time within which a resend with the same `Nats-Msg-Id` is
/// recognised) is an hour: longer than any outage here, which is what
/// exactly-once needs (README, "Through disconnects").
async fn make_stream(core: &async_nats_039::Client) -> Result<(), String> {
    let js = async_nats_039::jetstream::new(core.clone());
    js.create_stream(async_nats_039::jetstream::stream::Config {
        name: STREAM.into(),
        subjects: vec!["telemetry.>".into()],
        storage: async_nats_039::jetstream::stream::StorageType::File,
        duplicate_window: Duration::from_secs(3600),
        ..Default::default()
    })
    .await
    .map(|_| ())
    .map_err(|e| format!("create stream {STREAM}: {e}"))
}

/// One telemetry message as the check reads it.
struct Seen {
    sensor: String,
    seq: u64,
    /// When the stream stored it (ns since the epoch, the server's clock;
    /// the same machine's as ours).
    stored_ns: i128,
}

/// Reads the stream's messages from `from` on (stream sequence numbers);
/// returns those read, the next sequence to read, and the error that
/// stopped it early, if one did.
async fn read_stream(
    core: &async_nats_039::Client,
    from: u64,
    report: &mut Report,
) -> (Vec<Seen>, u64, Option<String>) {
    let mut out = Vec::new();
    let js = async_nats_039::jetstream::new(core.clone());
    let mut stream = match js.get_stream(STREAM).await {
        Ok(s) => s,
        Err(e) => return (out, from, Some(format!("stream {STREAM}: {e}"))),
    };
    let last = match stream.info().await {
        Ok(i) => i.state.last_sequence,
        Err(e) => return (out, from, Some(format!("stream {STREAM} info: {e}"))),
    };
    let mut n = from;
    while n <= last {
        let m = match stream.get_raw_message(n).await {
            Ok(m) => m,
            Err(e) => {
                return (out, n, Some(format!("stream {STREAM} message {n}: {e}")));
            }
        };
        n += 1;
        if m.headers
            .get(async_nats_039::header::NATS_MESSAGE_ID)
            .is_none()
        {
            report.without_msg_id += 1;
        }
        let v: serde_json::Value = match serde_json::from_slice(&m.payload) {
            Ok(v) => v,
            Err(_) => {
                report.malformed += 1;
                continue;
            }
        };
        match (v["sensor"].as_str(), v["seq"].as_u64()) {
            (Some(s), Some(seq)) => out.push(Seen {
                sensor: s.to_string(),
                seq,
                stored_ns: m.time.unix_timestamp_nanos(),
            }),
            _ => report.malformed += 1,
        }
    }
    (out, n, None)
}

fn produced(twig: &Twig, sensor: &str) -> u64 {
    let arg = format!("\"{sensor}\"");
    match twig.call(COMPONENT, "produced", &[&arg]) {
        Ok(r) => {
            let s = r.first().cloned().unwrap_or_default();
            s.strip_prefix("ok(")
                .and_then(|x| x.strip_suffix(')'))
                .and_then(|x| x.parse().ok())
                .unwrap_or_else(|| panic!("produced({sensor}) = {s}"))
        }
        Err(e) => panic!("produced({sensor}): {e}\nlog:\n{}", twig.log_text()),
    }
}

fn backlog(twig: &Twig) -> u64 {
    let s = twig.status();
    s["host"]["outbox"]["classes"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .filter(|c| c["name"] == "telemetry")
                .filter_map(|c| c["pending_records"].as_u64())
                .sum()
        })
        .unwrap_or(0)
}

fn wait_running(twig: &Twig) {
    let s = twig.settled(1);
    let (state, why) = Twig::component_state(&s, COMPONENT);
    assert_eq!(
        state,
        "running",
        "{COMPONENT}: {why}\nlog:\n{}",
        twig.log_text()
    );
}

/// Everything a run needs: the topology with the stream, a client of the
/// core, the device's files and `twig up` arguments, and twig itself,
/// running the app and connected.
struct Setup {
    rt: tokio::runtime::Runtime,
    dir: TempDir,
    topo: Topology,
    core: async_nats_039::Client,
    args: Vec<String>,
    twig: Twig,
}

fn setup(opts: &Options, tag: &str, started: Instant, link: Option<&ShapedLink>) -> Setup {
    // One worker thread, so clients of the core (and a heartbeat watcher)
    // keep running while the scenario sleeps between steps.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = TempDir::new(tag);
    let topo = match link {
        Some(l) => Topology::start_over(l),
        None => Topology::start(),
    };
    say(
        opts,
        started,
        "core (domain core) and leaf (domain leaf) up, TLS leafnode link",
    );
    let core = rt.block_on(topo.core_client()).expect("client of the core");
    rt.block_on(make_stream(&core)).expect("stream");
    let board = dir.path().join("board.toml");
    write(&board, &board_profile(opts));
    let app = dir.path().join("app.yaml");
    write(&app, &manifest());
    let mut args = vec![
        "--board".to_string(),
        board.display().to_string(),
        "--app".to_string(),
        app.display().to_string(),
    ];
    args.extend(lattice_args(&topo));
    let twig = Twig::up_in(&dir, "device", &args);
    wait_running(&twig);
    twig.wait_connected();
    say(opts, started, "twig up and connected; telemetry flowing");
    Setup {
        rt,
        dir,
        topo,
        core,
        args,
        twig,
    }
}

/// Runs the soak; panics (with logs) if the setup fails, and otherwise
/// returns the counts for the caller to judge.
pub fn run(opts: &Options) -> Report {
    let started = Instant::now();
    let Setup {
        rt,
        dir,
        mut topo,
        core,
        args,
        mut twig,
    } = setup(opts, "soak", started, None);

    let mut report = Report::default();
    let mut next = 1u64;
    let mut seen: Vec<Seen> = Vec::new();
    // Reads what is new in the stream. Right after the core restarts its
    // JetStream may not answer yet: keep what was read and try again, for
    // up to a minute.
    let read = |report: &mut Report, seen: &mut Vec<Seen>, next: &mut u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (mut got, n, err) = rt.block_on(read_stream(&core, *next, report));
            seen.append(&mut got);
            *next = n;
            match err {
                None => return,
                Some(e) if Instant::now() > deadline => panic!("{e}"),
                Some(_) => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    };

    // The disruptions, evenly spread over the run: outages first and the
    // kill(s) in between.
    let steps = opts.outages + opts.kills;
    let mut plan: Vec<bool> = Vec::new(); // true = kill
    let (mut o, mut k) = (opts.outages, opts.kills);
    while o + k > 0 {
        if k > 0 && (o == 0 || plan.len() % 2 == 1) {
            plan.push(true);
            k -= 1;
        } else {
            plan.push(false);
            o -= 1;
        }
    }
    let run_for = Duration::from_secs(opts.seconds);
    let (mut outage_no, mut kill_no) = (0, 0);
    for (i, kill) in plan.iter().enumerate() {
        let at = run_for.mul_f64((i + 1) as f64 / (steps + 1) as f64);
        if let Some(wait) = at.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
        read(&mut report, &mut seen, &mut next);
        let count_before = next;
        if *kill {
            kill_no += 1;
            say(
                opts,
                started,
                &format!(
                    "kill {kill_no}/{}: kill -9 twig; leaf and core down",
                    opts.kills
                ),
            );
            twig.kill9();
            topo.stop_leaf();
            topo.stop_core();
            twig = Twig::up_in(&dir, "device", &args);
            wait_running(&twig);
            say(
                opts,
                started,
                "twig restarted offline (no server reachable); producing",
            );
            std::thread::sleep(opts.outage);
            report.max_backlog = report.max_backlog.max(backlog(&twig));
            topo.start_core();
            topo.start_leaf();
            say(opts, started, "core and leaf back");
        } else {
            outage_no += 1;
            say(
                opts,
                started,
                &format!("outage {outage_no}/{}: core down", opts.outages),
            );
            topo.stop_core();
            std::thread::sleep(opts.outage);
            report.max_backlog = report.max_backlog.max(backlog(&twig));
            topo.start_core();
            say(opts, started, "core back");
        }
        // Time to the first new message in the stream, by the stream's
        // own timestamp (our client of the core may itself take a while
        // to reconnect).
        let back = Instant::now();
        let back_ns = now_ns();
        let seen_before = seen.len();
        loop {
            read(&mut report, &mut seen, &mut next);
            if next > count_before {
                let first = seen[seen_before..].iter().map(|m| m.stored_ns).min();
                if let Some(t) = first {
                    report.recovery_secs.push((t - back_ns).max(0) as f64 / 1e9);
                }
                break;
            }
            if back.elapsed() > Duration::from_secs(60) {
                say(
                    opts,
                    started,
                    "nothing new reached the stream within 60 s of the return",
                );
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    if let Some(wait) = run_for.checked_sub(started.elapsed()) {
        std::thread::sleep(wait);
    }

    // Stop numbering, let the last reading finish, and count.
    twig.call(COMPONENT, "pause", &[])
        .unwrap_or_else(|e| panic!("pause: {e}\nlog:\n{}", twig.log_text()));
    std::thread::sleep(Duration::from_millis(
        2000 / opts.rate.clamp(1, 100) as u64 + 200,
    ));
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for s in &opts.sensors {
        want.insert(s.clone(), produced(&twig, s));
    }
    let total: u64 = want.values().sum();
    say(
        opts,
        started,
        &format!("paused; {total} readings numbered; waiting for the stream"),
    );

    // Wait for the backlog to drain (bounded by the drain rate).
    let drain_bound = if opts.drain_rate > 0 {
        Duration::from_secs(total / opts.drain_rate as u64 + 60)
    } else {
        Duration::from_secs(60)
    };
    let deadline = Instant::now() + drain_bound;
    loop {
        read(&mut report, &mut seen, &mut next);
        let mut have: BTreeMap<&str, std::collections::BTreeSet<u64>> = BTreeMap::new();
        for m in &seen {
            have.entry(&m.sensor).or_default().insert(m.seq);
        }
        let complete = want.iter().all(|(s, n)| {
            have.get(s.as_str())
                .map_or(0, |h| h.range(1..=*n).count() as u64)
                == *n
        });
        if complete || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // A little longer, so duplicates that would arrive late are seen too.
    std::thread::sleep(Duration::from_secs(1));
    read(&mut report, &mut seen, &mut next);

    let status = twig.status();
    report.twig_delivered = status["host"]["uplink"]["delivered"].as_u64().unwrap_or(0);
    report.twig_stream_duplicates = status["host"]["uplink"]["stream_duplicates"]
        .as_u64()
        .unwrap_or(0);

    report.sensors = judge(&want, &seen);
    if report.lost() > 0 || report.duplicates() > 0 || report.out_of_order() > 0 {
        eprintln!(
            "soak: twig log tail:\n{}\n--- core ---\n{}\n--- leaf ---\n{}",
            tail(&twig.log_text(), 60),
            tail(&topo.log_tail(Server::Core), 20),
            tail(&topo.log_tail(Server::Leaf), 20),
        );
    }
    // SOAK_DEBUG=1: twig's uplink and outbox log lines and its final
    // status, for finding out where a number went.
    if std::env::var_os("SOAK_DEBUG").is_some() {
        let text = twig.log_text();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("outbox") || l.contains("upstream") || l.contains("uplink"))
            .collect();
        eprintln!("{}", lines.join("\n"));
        eprintln!(
            "{}",
            serde_json::to_string_pretty(&status["host"]).unwrap_or_default()
        );
    }
    let _ = twig.terminate();
    report
}

/// Per sensor: `want` numbers produced against what the stream holds, in
/// stream order.
fn judge(want: &BTreeMap<String, u64>, seen: &[Seen]) -> BTreeMap<String, SensorReport> {
    let mut out = BTreeMap::new();
    for (sensor, n) in want {
        let mut r = SensorReport {
            produced: *n,
            ..Default::default()
        };
        let mut count: BTreeMap<u64, u64> = BTreeMap::new();
        let mut last = 0u64;
        for m in seen.iter().filter(|m| &m.sensor == sensor) {
            *count.entry(m.seq).or_default() += 1;
            if m.seq < last {
                r.out_of_order += 1;
            }
            last = last.max(m.seq);
            if m.seq > *n || m.seq == 0 {
                r.unexpected += 1;
            }
        }
        for seq in 1..=*n {
            match count.get(&seq) {
                Some(c) => {
                    r.delivered += 1;
                    r.duplicates += c - 1;
                }
                None => {
                    r.lost += 1;
                    if r.first_lost.len() < 10 {
                        r.first_lost.push(seq);
                    }
                }
            }
        }
        out.insert(sensor.clone(), r);
    }
    out
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

fn tail(text: &str, lines: usize) -> String {
    let v: Vec<&str> = text.lines().collect();
    v[v.len().saturating_sub(lines)..].join("\n")
}

/// What [`drain_bench`] measured.
#[derive(Debug, Clone)]
pub struct DrainFigures {
    /// Messages waiting in the outbox when the upstream came back.
    pub backlog: u64,
    /// From the core's return (once the leaf had linked to it again) to
    /// the first backlog message stored in the stream.
    pub first_delivery_secs: f64,
    /// Backlog messages stored per second, first to last.
    pub drain_msgs_per_sec: f64,
}

/// The drain after an outage: the device produces with the core down
/// for `outage`, stops producing, the core comes back, and the stream's
/// own timestamps give the time to the first delivered message and the
/// rate the backlog drains at (`opts.drain_rate` is the outbox's limit).
pub fn drain_bench(opts: &Options) -> DrainFigures {
    let started = Instant::now();
    let Setup {
        rt,
        dir: _dir,
        mut topo,
        core,
        twig,
        ..
    } = setup(opts, "drain", started, None);
    let mut report = Report::default();
    // Flowing before the outage.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut next = 1u64;
    loop {
        let (_, n, _) = rt.block_on(read_stream(&core, next, &mut report));
        next = n;
        if next > 1 || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(next > 1, "nothing reached the stream before the outage");
    say(opts, started, "flowing; core down");
    // Messages stored up to now are not part of the backlog.
    let down_ns = now_ns();
    topo.stop_core();
    std::thread::sleep(opts.outage);
    twig.call(COMPONENT, "pause", &[])
        .unwrap_or_else(|e| panic!("pause: {e}\nlog:\n{}", twig.log_text()));
    std::thread::sleep(Duration::from_millis(500));
    let backlog = backlog(&twig);
    let produced_total: u64 = opts.sensors.iter().map(|s| produced(&twig, s)).sum();
    say(opts, started, &format!("backlog {backlog}; core back"));
    topo.start_core();
    let back_ns = now_ns();
    let mut new: Vec<Seen> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let (mut got, n, _) = rt.block_on(read_stream(&core, next, &mut report));
        new.append(&mut got);
        next = n;
        let distinct: std::collections::BTreeSet<(&str, u64)> =
            new.iter().map(|m| (m.sensor.as_str(), m.seq)).collect();
        let before = next - 1 - new.len() as u64;
        if before + distinct.len() as u64 >= produced_total || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let drained: Vec<i128> = new
        .iter()
        .map(|m| m.stored_ns)
        .filter(|t| *t > down_ns)
        .collect();
    let first = drained.iter().copied().min().unwrap_or(back_ns);
    let last = drained.iter().copied().max().unwrap_or(first);
    let span = (last - first) as f64 / 1e9;
    DrainFigures {
        backlog,
        first_delivery_secs: (first - back_ns).max(0) as f64 / 1e9,
        drain_msgs_per_sec: if span > 0.0 {
            (drained.len().saturating_sub(1)) as f64 / span
        } else {
            0.0
        },
    }
}

/// The slow-uplink scenario: what to do.
#[derive(Debug, Clone)]
pub struct SlowOptions {
    /// Each direction of the leaf→core link, in kbit/s.
    pub rate_kbit: u32,
    /// Readings per second of each of the two sensors.
    pub rate: u32,
    /// The outbox's `drain_rate` (messages per second).
    pub drain_rate: u32,
    /// How long the link is cut.
    pub cut: Duration,
    pub progress: bool,
}

impl Default for SlowOptions {
    fn default() -> Self {
        SlowOptions {
            rate_kbit: 50,
            rate: 2,
            drain_rate: 10,
            cut: Duration::from_secs(20),
            progress: true,
        }
    }
}

/// What the slow-uplink scenario saw.
#[derive(Debug, Clone, Default)]
pub struct SlowReport {
    pub sensors: BTreeMap<String, SensorReport>,
    pub without_msg_id: u64,
    pub malformed: u64,
    /// Telemetry waiting in the outbox when the link came back.
    pub backlog_at_return: u64,
    /// Numbers produced before the return that were not in the stream yet
    /// (the backlog as the stream sees it).
    pub backlog_messages: u64,
    /// From the link's return to the first message stored (s): the leaf
    /// noticing, relinking over the slow link, twig's supervisor seeing
    /// the upstream answer.
    pub relink_secs: f64,
    /// From the first message stored after the return to the last
    /// backlog message stored (s), and every message stored in that
    /// span per second: the drain rate.
    pub drain_secs: f64,
    pub drain_msgs_per_sec: f64,
    /// Heartbeats that reached the core during the drain, and the longest
    /// time the core went without one then (s).
    pub heartbeats_during_drain: u64,
    pub max_heartbeat_gap_secs: f64,
    /// Readings the component numbered during the drain against what its
    /// sensors' rate asks for: local work going on meanwhile.
    pub produced_during_drain: u64,
    pub expected_during_drain: f64,
    /// The slowest `twig status` answer during the drain (ms).
    pub slowest_status_ms: u64,
}

impl SlowReport {
    pub fn last_line(&self) -> String {
        summary_line(&self.sensors)
    }
}

/// Stamps (ns since the epoch, on arrival) of every `host_heartbeat` a
/// client of the core sees, over the unshaped pair.
async fn watch_heartbeats(
    core: async_nats_039::Client,
) -> Result<std::sync::Arc<std::sync::Mutex<Vec<i128>>>, String> {
    use futures::StreamExt as _;
    let mut sub = core
        .subscribe("wasmbus.evt.*.host_heartbeat")
        .await
        .map_err(|e| format!("subscribe to heartbeats: {e}"))?;
    // The subscription is registered with the server before we return.
    core.flush()
        .await
        .map_err(|e| format!("flush the heartbeat subscription: {e}"))?;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let out = seen.clone();
    tokio::spawn(async move {
        while sub.next().await.is_some() {
            if let Ok(mut v) = seen.lock() {
                v.push(now_ns());
            }
        }
    });
    Ok(out)
}

/// The backlog of a cut drains over a ~50 kbit/s leaf→core link: the core
/// runs in a network namespace of `link`, the leaf reaches it over the
/// shaped veth pair, and the pair is cut for `opts.cut` while the device
/// goes on producing. Afterwards the backlog must drain at the outbox's
/// `drain_rate`, heartbeats must keep reaching the core, local work must
/// go on at its pace, and every number must be in the stream once.
pub fn slow_uplink(link: &ShapedLink, opts: &SlowOptions) -> SlowReport {
    let started = Instant::now();
    let sensors: Vec<String> = vec!["s1".into(), "s2".into()];
    let base = Options {
        rate: opts.rate,
        sensors: sensors.clone(),
        drain_rate: opts.drain_rate,
        progress: opts.progress,
        ..Options::default()
    };
    say(&base, started, &format!("shaped link: {}", link.describe()));
    let Setup {
        rt,
        dir: _dir,
        topo,
        core,
        mut twig,
        ..
    } = setup(&base, "slow", started, Some(link));
    let mut report = SlowReport::default();
    let mut scratch = Report::default();
    let heartbeats = rt
        .block_on(watch_heartbeats(core.clone()))
        .expect("watch heartbeats");

    let mut seen: Vec<Seen> = Vec::new();
    let mut next = 1u64;
    let read = |seen: &mut Vec<Seen>, next: &mut u64, scratch: &mut Report| {
        let (mut got, n, _) = rt.block_on(read_stream(&core, *next, scratch));
        seen.append(&mut got);
        *next = n;
    };

    // Flowing over the slow link first.
    let deadline = Instant::now() + Duration::from_secs(60);
    while next < 5 {
        assert!(
            Instant::now() < deadline,
            "telemetry did not reach the stream over the slow link within 60 s\nlog:\n{}",
            tail(&twig.log_text(), 40)
        );
        std::thread::sleep(Duration::from_millis(200));
        read(&mut seen, &mut next, &mut scratch);
    }
    say(
        &base,
        started,
        &format!("flowing ({} stored); cutting the link", next - 1),
    );

    link.set_shaped_link(false).expect("cut the shaped link");
    std::thread::sleep(opts.cut);
    let produced_at = |twig: &Twig| -> BTreeMap<String, u64> {
        sensors
            .iter()
            .map(|s| (s.clone(), produced(twig, s)))
            .collect()
    };
    report.backlog_at_return = backlog(&twig);
    read(&mut seen, &mut next, &mut scratch);
    let before_return = seen.len();
    link.set_shaped_link(true).expect("restore the shaped link");
    let back_ns = now_ns();
    let back = Instant::now();
    let produced_back = produced_at(&twig);
    say(
        &base,
        started,
        &format!(
            "link back; {} readings waiting in the outbox",
            report.backlog_at_return
        ),
    );

    // Which numbers the backlog holds: produced by the return, not yet
    // stored.
    let mut have: BTreeMap<String, std::collections::BTreeSet<u64>> = BTreeMap::new();
    for m in &seen {
        have.entry(m.sensor.clone()).or_default().insert(m.seq);
    }
    let backlog_numbers: Vec<(String, u64)> = produced_back
        .iter()
        .flat_map(|(s, n)| {
            let have = have.get(s).cloned().unwrap_or_default();
            (1..=*n)
                .filter(move |k| !have.contains(k))
                .map(move |k| (s.clone(), k))
        })
        .collect();
    report.backlog_messages = backlog_numbers.len() as u64;

    // Until the backlog is in the stream, asking twig for its status now
    // and then (local work on the device) and timing it.
    let bound =
        Duration::from_secs(90 + report.backlog_messages / u64::from(opts.drain_rate.max(1)) * 2);
    let drained_at = loop {
        let t = Instant::now();
        let _ = twig.status();
        report.slowest_status_ms = report.slowest_status_ms.max(t.elapsed().as_millis() as u64);
        read(&mut seen, &mut next, &mut scratch);
        for m in &seen[before_return..] {
            have.entry(m.sensor.clone()).or_default().insert(m.seq);
        }
        let missing = backlog_numbers
            .iter()
            .filter(|(s, k)| !have.get(s).is_some_and(|h| h.contains(k)))
            .count();
        if missing == 0 {
            break Some(Instant::now());
        }
        if back.elapsed() > bound {
            say(
                &base,
                started,
                &format!("{missing} backlog readings still missing after {bound:?}"),
            );
            break None;
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let produced_drained = produced_at(&twig);
    if let Some(at) = drained_at {
        let secs = (at - back).as_secs_f64();
        report.produced_during_drain = produced_drained
            .iter()
            .map(|(s, n)| n - produced_back.get(s).copied().unwrap_or(0))
            .sum();
        report.expected_during_drain = secs * f64::from(opts.rate) * sensors.len() as f64;
    }

    // The drain as the stream saw it.
    let after: Vec<&Seen> = seen[before_return..].iter().collect();
    let is_backlog: std::collections::BTreeSet<(&str, u64)> = backlog_numbers
        .iter()
        .map(|(s, k)| (s.as_str(), *k))
        .collect();
    let first = after.iter().map(|m| m.stored_ns).min();
    let last_backlog = after
        .iter()
        .filter(|m| is_backlog.contains(&(m.sensor.as_str(), m.seq)))
        .map(|m| m.stored_ns)
        .max();
    if let (Some(first), Some(last)) = (first, last_backlog) {
        report.relink_secs = (first - back_ns).max(0) as f64 / 1e9;
        report.drain_secs = (last - first) as f64 / 1e9;
        let in_span = after
            .iter()
            .filter(|m| m.stored_ns >= first && m.stored_ns <= last)
            .count();
        if report.drain_secs > 0.0 {
            report.drain_msgs_per_sec = (in_span.saturating_sub(1)) as f64 / report.drain_secs;
        }
        let beats: Vec<i128> = heartbeats
            .lock()
            .map(|v| v.clone())
            .unwrap_or_default()
            .into_iter()
            .filter(|t| *t >= first && *t <= last)
            .collect();
        report.heartbeats_during_drain = beats.len() as u64;
        let mut prev = first;
        let mut gap = 0i128;
        for t in beats.iter().copied().chain(std::iter::once(last)) {
            gap = gap.max(t - prev);
            prev = t;
        }
        report.max_heartbeat_gap_secs = gap as f64 / 1e9;
    }
    say(
        &base,
        started,
        &format!(
            "backlog of {} stored in {:.1} s ({:.1}/s); counting",
            report.backlog_messages, report.drain_secs, report.drain_msgs_per_sec
        ),
    );

    // Stop numbering and wait for the rest.
    twig.call(COMPONENT, "pause", &[])
        .unwrap_or_else(|e| panic!("pause: {e}\nlog:\n{}", twig.log_text()));
    std::thread::sleep(Duration::from_millis(
        2000 / u64::from(opts.rate.clamp(1, 100)) + 200,
    ));
    let want = produced_at(&twig);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        read(&mut seen, &mut next, &mut scratch);
        let done = judge(&want, &seen).values().all(|r| r.lost == 0);
        if done || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    std::thread::sleep(Duration::from_secs(1));
    read(&mut seen, &mut next, &mut scratch);
    report.sensors = judge(&want, &seen);
    report.without_msg_id = scratch.without_msg_id;
    report.malformed = scratch.malformed;
    if report
        .sensors
        .values()
        .any(|r| r.lost > 0 || r.duplicates > 0)
        || drained_at.is_none()
    {
        eprintln!(
            "slow: twig log tail:\n{}\n--- core ---\n{}\n--- leaf ---\n{}",
            tail(&twig.log_text(), 60),
            tail(&topo.log_tail(Server::Core), 30),
            tail(&topo.log_tail(Server::Leaf), 30),
        );
    }
    let _ = twig.terminate();
    report
}
