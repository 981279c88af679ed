//! Driving the real `twig` binary: start `twig up`, run CLI commands
//! against it, kill it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `twig` binary cargo built beside this test (`cargo test --workspace`
/// builds it), or `$TWIG_BIN`.
pub fn twig_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TWIG_BIN") {
        return PathBuf::from(p);
    }
    // target/<profile>/deps/<test-binary> -> target/<profile>/twig
    let exe = std::env::current_exe().expect("current_exe");
    let p = exe
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .join("twig");
    assert!(
        p.exists(),
        "{} is missing: build it with `cargo build -p twig` (cargo test --workspace does)",
        p.display()
    );
    p
}

/// A built demo component, `examples/build/NAME.wasm`.
pub fn demo_path(name: &str) -> PathBuf {
    let p = repo_root().join(format!("examples/build/{name}.wasm"));
    assert!(
        p.exists(),
        "{} is missing: run examples/build.sh first (the README's test command does)",
        p.display()
    );
    p
}

/// `examples/demo/app.yaml`, after checking that its components are built
/// (so twig is never asked to read missing images).
pub fn demo_manifest() -> String {
    demo_path("greeter");
    demo_path("frontend");
    repo_root()
        .join("examples/demo/app.yaml")
        .display()
        .to_string()
}

/// What the demo app's frontend answers to `welcome("Ada")`.
pub const DEMO_WELCOME: &str = "\"Hello from the edge, Ada! (via frontend)\"";

/// A fresh, private temporary directory removed on drop.
pub struct TempDir(tempfile::TempDir);

impl TempDir {
    /// A fresh directory `tw-TAG-XXXXXX` under the system's temp dir,
    /// removed (with everything in it) on drop.
    pub fn new(tag: &str) -> TempDir {
        // Short paths: the admin socket lives inside and Unix socket paths
        // are limited to ~100 bytes.
        let d = tempfile::Builder::new()
            .prefix(&format!("tw-{tag}-"))
            .tempdir()
            .expect("create temp dir");
        TempDir(d)
    }

    pub fn path(&self) -> &Path {
        self.0.path()
    }
}

/// Starts a twig that listens on a port the test picks (an HTTP server
/// in a manifest, which twig cannot be asked to report back): `start`
/// with a [`crate::topology::free_port`], and again with another one if
/// something took that port before twig bound it ("cannot listen on
/// 127.0.0.1:PORT: Address in use" in its log). `start` returns once
/// twig has settled, so the listener has been tried.
pub fn up_on_free_port(mut start: impl FnMut(u16) -> Twig) -> (Twig, u16) {
    let mut taken = Vec::new();
    for _ in 0..5 {
        let port = crate::topology::free_port();
        let t = start(port);
        let log = t.log_text();
        let lost_race = log.lines().any(|l| {
            l.contains(&format!("cannot listen on 127.0.0.1:{port}"))
                && l.to_ascii_lowercase().contains("in use")
        });
        if !lost_race {
            return (t, port);
        }
        taken.push(port);
    }
    panic!("every free port was taken before twig could listen on it: {taken:?}");
}

/// Runs `twig ARGS...` to completion.
pub fn twig(args: &[&str]) -> Output {
    Command::new(twig_bin())
        .args(args)
        .env_remove("TWIG_DATA_DIR")
        .stdin(Stdio::null())
        .output()
        .expect("run twig")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A running `twig up`.
pub struct Twig {
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub log: PathBuf,
}

impl Twig {
    /// Starts `twig up --data-dir DIR EXTRA...`, logging to DIR/../NAME.log,
    /// and waits until its admin socket answers.
    pub fn up(data_dir: &Path, extra: &[&str]) -> Twig {
        Twig::start(data_dir, extra, false)
    }

    /// [`Twig::up`] with data directory `dir/name` and owned arguments
    /// (as the lattice tests build them).
    pub fn up_in(dir: &TempDir, name: &str, extra: &[String]) -> Twig {
        let args: Vec<&str> = extra.iter().map(String::as_str).collect();
        Twig::up(&dir.path().join(name), &args)
    }

    /// Like [`Twig::up`], but in a new network namespace with no interfaces
    /// but a down loopback (`unshare -n`), to prove boot needs no network.
    /// Where namespaces cannot be made, says so and runs without one.
    pub fn up_offline(data_dir: &Path, extra: &[&str]) -> Twig {
        let ok = Command::new("unshare")
            .args(["-n", "true"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("NOTE: `unshare -n` is not permitted here; starting twig without a network namespace");
        }
        Twig::start(data_dir, extra, ok)
    }

    fn start(data_dir: &Path, extra: &[&str], offline: bool) -> Twig {
        let log = data_dir.with_extension(format!(
            "log.{}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        let logfile = std::fs::File::create(&log).expect("log file");
        let mut cmd = if offline {
            let mut c = Command::new("unshare");
            c.arg("-n").arg(twig_bin());
            c
        } else {
            Command::new(twig_bin())
        };
        let child = cmd
            .arg("up")
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env("TWIG_LOG", "info")
            .stdin(Stdio::null())
            .stdout(logfile.try_clone().unwrap())
            .stderr(logfile)
            .spawn()
            .expect("spawn twig up");
        let mut t = Twig {
            child: Some(child),
            data_dir: data_dir.to_path_buf(),
            log,
        };
        t.wait_for_socket();
        t
    }

    fn wait_for_socket(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "twig up exited early with {status}; log:\n{}",
                    self.log_text()
                );
            }
            let o = self.cli(&["status", "--json"]);
            if o.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "twig up did not answer within 30 s; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Asserts that the demo app (`demo_manifest`) answers through this
    /// host.
    pub fn assert_demo_answers(&self) {
        let o = self.invoke("twig_demo-frontend", "welcome", &["\"Ada\""]);
        assert!(
            o.status.success(),
            "invoke failed: {}; log:\n{}",
            stderr(&o),
            self.log_text()
        );
        assert_eq!(stdout(&o).trim(), DEMO_WELCOME, "log:\n{}", self.log_text());
    }

    /// The host id `twig status` shows (the lattice identity).
    pub fn host_id(&self) -> String {
        self.status()["host"]["host_id"]
            .as_str()
            .expect("twig status shows a host id")
            .to_string()
    }

    /// Waits (30 s at most) until `twig status` shows the uplink connected.
    pub fn wait_connected(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = self.status()["host"]["uplink"].clone();
            if up["state"] == "connected" {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "uplink never connected: {up}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (30 s at most) until `twig status` shows the lattice control
    /// interface serving: connected, and its subscriptions flushed to the
    /// server, so a control request sent now is heard (`connected` comes
    /// before that).
    pub fn wait_serving(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = self.status()["host"]["uplink"].clone();
            if up["state"] == "connected" && up["serving"] == true {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "lattice control never serving: {up}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits (15 s at most) until twig's uplink is no longer connected:
    /// it has noticed its server go.
    pub fn wait_disconnected(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.status()["host"]["uplink"]["state"] == "connected" {
            assert!(
                Instant::now() < deadline,
                "twig still thinks it is connected with its server gone; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs a CLI command against this host (adds `--data-dir`).
    pub fn cli(&self, args: &[&str]) -> Output {
        let (cmd, rest) = args.split_first().expect("a command");
        let mut full = vec![*cmd, "--data-dir", self.data_dir.to_str().unwrap()];
        full.extend_from_slice(rest);
        twig(&full)
    }

    pub fn status(&self) -> serde_json::Value {
        let o = self.cli(&["status", "--json"]);
        assert!(o.status.success(), "twig status failed: {}", stderr(&o));
        serde_json::from_slice(&o.stdout).expect("status --json is JSON")
    }

    /// Waits until no component is `starting`, and returns the status.
    pub fn settled(&self, apps: usize) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let s = self.status();
            let arr = s["apps"].as_array().cloned().unwrap_or_default();
            let starting = arr
                .iter()
                .flat_map(|a| a["components"].as_array().cloned().unwrap_or_default())
                .any(|c| c["state"] == "starting");
            if arr.len() >= apps && !starting {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "apps did not settle: {s}\nlog:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `state` of component `id`, and its reason.
    pub fn component_state(status: &serde_json::Value, id: &str) -> (String, String) {
        for a in status["apps"].as_array().into_iter().flatten() {
            for c in a["components"].as_array().into_iter().flatten() {
                if c["id"] == id {
                    return (
                        c["state"].as_str().unwrap_or("").to_string(),
                        c["reason"].as_str().unwrap_or("").to_string(),
                    );
                }
            }
        }
        panic!("no component {id} in status {status}");
    }

    /// `twig invoke --wave`: results as WAVE, so a test compares them
    /// exactly (a string comes back quoted and escaped).
    pub fn invoke(&self, component: &str, function: &str, args: &[&str]) -> Output {
        let mut a = vec!["invoke", "--wave", component, function];
        a.extend_from_slice(args);
        self.cli(&a)
    }

    /// Invokes until stdout is `want` (20 s at most, every 200 ms): for an
    /// answer that depends on something settling elsewhere, such as a link
    /// or a peer reaching this host. `context` adds to the failure message
    /// (another host's log, say).
    pub fn invoke_until(
        &self,
        component: &str,
        function: &str,
        args: &[&str],
        want: &str,
        context: impl Fn() -> String,
    ) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let o = self.invoke(component, function, args);
            if stdout(&o).trim() == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{component} {function} never answered {want}: {}{}\nlog:\n{}\n{}",
                stdout(&o),
                stderr(&o),
                self.log_text(),
                context()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Calls an export through the admin socket directly (the protocol
    /// `twig invoke` speaks: one JSON line each way), without starting a
    /// CLI process; for tests that make thousands of calls. Returns the
    /// WAVE-encoded results, or the host's error (or an I/O error, e.g.
    /// when the host was killed mid-call).
    pub fn call(
        &self,
        component: &str,
        function: &str,
        args: &[&str],
    ) -> Result<Vec<String>, String> {
        admin_call(&self.data_dir, component, function, args)
    }

    /// The process id of the running host.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// SIGKILL: no chance to clean up, like a power cut for the process.
    pub fn kill9(&mut self) {
        let mut c = self.child.take().expect("running");
        c.kill().expect("kill -9");
        c.wait().expect("reap");
    }

    /// SIGTERM, then wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let ok = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status()
            .expect("kill -TERM");
        assert!(ok.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(s) = c.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "twig did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Twig {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// One `invoke` over the admin socket of the host using `data_dir`.
pub fn admin_call(
    data_dir: &Path,
    component: &str,
    function: &str,
    args: &[&str],
) -> Result<Vec<String>, String> {
    use std::io::{BufRead, BufReader, Write};
    let mut sock = std::os::unix::net::UnixStream::connect(data_dir.join("admin.sock"))
        .map_err(|e| format!("connect: {e}"))?;
    let req = serde_json::json!({
        "op": "invoke", "component": component, "function": function, "args": args,
    });
    let mut line = req.to_string();
    line.push('\n');
    sock.write_all(line.as_bytes())
        .map_err(|e| format!("send: {e}"))?;
    let mut reply = String::new();
    BufReader::new(sock)
        .read_line(&mut reply)
        .map_err(|e| format!("receive: {e}"))?;
    if reply.is_empty() {
        return Err("connection closed without a reply".into());
    }
    let v: serde_json::Value =
        serde_json::from_str(&reply).map_err(|e| format!("bad reply {reply:?}: {e}"))?;
    if v["ok"] == serde_json::Value::Bool(true) {
        Ok(v["result"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default())
    } else {
        Err(v["error"].as_str().unwrap_or("unknown error").to_string())
    }
}

/// The directory of the built demo components, canonical: the one
/// directory the lattice tests let the lattice run `file://` components
/// from (`--control file_dirs=[…]`).
pub fn demo_build_dir() -> PathBuf {
    repo_root()
        .join("examples/build")
        .canonicalize()
        .expect("examples/build exists (run examples/build.sh)")
}

/// The directory of the test guests (`tests/guests/out`), canonical.
pub fn guests_dir() -> PathBuf {
    crate::guest_path("hello")
        .parent()
        .expect("guest dir")
        .canonicalize()
        .expect("guest dir exists")
}

/// `twig up` arguments that join the lattice through the topology's leaf
/// the way a field device does: mutual TLS, a creds file, JetStream domain
/// `core`, a heartbeat every second, a friendly name and a label; and a
/// control policy that lets the lattice run the demo components and the
/// test guests (`file_dirs`; nothing else is changed from the defaults).
pub fn lattice_args(t: &crate::topology::Topology) -> Vec<String> {
    let mut args = file_dirs_args();
    args.extend(uplink_args(t));
    args
}

/// `--control file_dirs=[…]` naming the demo components' and the test
/// guests' directories: what the lattice tests let the lattice run.
pub fn file_dirs_args() -> Vec<String> {
    let q = |p: PathBuf| serde_json::to_string(&p.display().to_string()).expect("path");
    vec![
        "--control".into(),
        format!("file_dirs=[{}, {}]", q(demo_build_dir()), q(guests_dir())),
    ]
}

/// [`lattice_args`] without any control policy setting: a device with
/// the default policy.
pub fn uplink_args(t: &crate::topology::Topology) -> Vec<String> {
    vec![
        "--nats-url".into(),
        t.leaf_url(),
        "--nats-creds".into(),
        t.user_creds.display().to_string(),
        "--nats-tls-ca".into(),
        t.ca_pem.display().to_string(),
        "--nats-tls-cert".into(),
        t.client_cert_pem.display().to_string(),
        "--nats-tls-key".into(),
        t.client_key_pem.display().to_string(),
        "--js-domain".into(),
        "core".into(),
        "--heartbeat-secs".into(),
        "1".into(),
        "--friendly-name".into(),
        "edge-gw-1".into(),
        "--label".into(),
        "site=north".into(),
    ]
}
