//! Files an operator points at by mistake, a stop that must not hang, and
//! the admin socket's bounds, through the real `twig` binary:
//!
//! - an image that is a FIFO, `/dev/zero` or a sparse 1 GiB file is refused
//!   at once, with the path, by `validate`, `apply`, `up --app` and an admin
//!   `apply` without bytes, and memory does not grow;
//! - one bad `--app` is logged and skipped, the rest boots;
//! - SIGTERM ends `twig up` within its bound (5 s) while a guest call spins
//!   and a client sits on the socket without sending, exit status 0, the
//!   data dir free again;
//! - the admin socket closes idle connections, refuses requests over its
//!   in-flight cap at once, and `twig apply` of an oversize image prints the
//!   limit instead of `Broken pipe`.
#![forbid(unsafe_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use twig_integration_tests::guest_path;
use twig_integration_tests::twig::{
    demo_manifest, repo_root, stderr, stdout, twig_bin, TempDir, Twig, DEMO_WELCOME,
};

const DEMO_FRONTEND: &str = "twig_demo-frontend";

/// A one-component app `name` whose image is `image` (a path or file://).
fn app(dir: &TempDir, name: &str, image: &str) -> String {
    let text = format!(
        "apiVersion: core.oam.dev/v1beta1\nkind: Application\nmetadata:\n  name: {name}\nspec:\n  components:\n    - name: m\n      type: component\n      properties:\n        image: {image}\n      traits:\n        - type: spreadscaler\n          properties:\n            instances: 1\n"
    );
    let path = dir.path().join(format!("{name}.yaml"));
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap();
    assert!(ok.success(), "mkfifo {}", path.display());
}

/// Runs twig with `args`, watching the process's resident memory; fails if
/// it runs longer than `limit`. Returns its output and peak RSS in KiB.
fn run_bounded(args: &[&str], limit: Duration) -> (Output, u64) {
    let started = Instant::now();
    let mut child = Command::new(twig_bin())
        .args(args)
        .env_remove("TWIG_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut peak = 0;
    loop {
        peak = peak.max(rss_kib(child.id()).unwrap_or(0));
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "twig {args:?} still running after {limit:?} (peak RSS {peak} KiB): {}",
                stderr(&out)
            );
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    (child.wait_with_output().unwrap(), peak)
}

/// VmHWM (peak resident set) of a process, in KiB.
fn hwm_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmHWM:")
}

fn rss_kib(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:")
}

fn status_field(pid: u32, field: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The host's answer line on `s`, read as `twig`'s own client reads it: up
/// to the newline. A host that refuses a request before reading all of it
/// closes with the rest unread, and Linux then reports the connection as
/// reset once the answer has been read; that reset is not the answer.
fn answer_line(s: &mut UnixStream) -> std::io::Result<String> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.contains(&b'\n') {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset && !answer.is_empty() => {
                break
            }
            Err(e) => return Err(e),
        }
    }
    Ok(String::from_utf8_lossy(&answer).into_owned())
}

/// One raw admin request line; returns the host's JSON answer.
fn admin_raw(data: &Path, line: &[u8]) -> serde_json::Value {
    let mut s = UnixStream::connect(data.join("admin.sock")).unwrap();
    s.write_all(line).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let answer = answer_line(&mut s).unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("answer {answer:?}: {e}"))
}

#[test]
fn images_that_are_not_regular_files_or_too_large_are_refused_at_once() {
    let tmp = TempDir::new("img");
    let fifo = tmp.path().join("pipe.wasm");
    mkfifo(&fifo);
    let big = tmp.path().join("big.wasm");
    // Sparse: 1 GiB long, no blocks on disk.
    std::fs::File::create(&big)
        .unwrap()
        .set_len(1 << 30)
        .unwrap();
    let cases = [
        (
            app(&tmp, "fifo", &format!("file://{}", fifo.display())),
            format!("{} is a FIFO (named pipe), not a regular file", fifo.display()),
        ),
        (
            app(&tmp, "zero", "file:///dev/zero"),
            "/dev/zero is a character device, not a regular file".to_string(),
        ),
        (
            app(&tmp, "dir", &format!("file://{}", tmp.path().display())),
            format!("{} is a directory, not a regular file", tmp.path().display()),
        ),
        (
            app(&tmp, "big", &format!("file://{}", big.display())),
            format!(
                "{} is 1073741824 bytes, over the board's image cap of 33554432 bytes (limits.max_image_mib = 32)",
                big.display()
            ),
        ),
    ];
    let data = tmp.path().join("d");
    let demo = demo_manifest();
    let t = Twig::up(&data, &["--app", &demo]);
    t.settled(1);
    let pid = t.pid();
    for (manifest, want) in &cases {
        let field = format!("{manifest}: spec.components[0].properties.image: ");
        let (o, peak) = run_bounded(&["validate", manifest], Duration::from_secs(5));
        assert!(!o.status.success());
        assert!(
            stderr(&o).contains(&format!("{field}{want}")),
            "validate {manifest}: {}",
            stderr(&o)
        );
        assert!(peak < 64 << 10, "validate {manifest}: peak RSS {peak} KiB");

        let data_dir = data.display().to_string();
        let (o, peak) = run_bounded(
            &["apply", "--data-dir", &data_dir, manifest],
            Duration::from_secs(5),
        );
        assert!(!o.status.success());
        // The CLI reads the images itself: the big file is over what an
        // admin request can carry.
        let want_apply = if manifest.ends_with("big.yaml") {
            format!(
                "{field}{} is 1073741824 bytes; as base64 it does not fit in the admin socket's limit of 50331648 bytes (48 MiB)",
                big.display()
            )
        } else {
            format!("{field}{want}")
        };
        assert!(
            stderr(&o).contains(&want_apply),
            "apply {manifest}: {}",
            stderr(&o)
        );
        assert!(peak < 64 << 10, "apply {manifest}: peak RSS {peak} KiB");

        // An admin `apply` with no image bytes makes the host read the
        // file itself.
        let text = std::fs::read_to_string(manifest).unwrap();
        let req = serde_json::json!({"op": "apply", "file": manifest, "manifest": text});
        let started = Instant::now();
        let v = admin_raw(&data, format!("{req}\n").as_bytes());
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(v["ok"], false, "{v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains(&format!("{field}{want}")),
            "{v}"
        );
    }
    // The host read none of it: its peak RSS stays that of an idle demo.
    let hwm = hwm_kib(pid).unwrap();
    assert!(hwm < 128 << 10, "host peak RSS {hwm} KiB");
    // Nothing was deployed, the demo answers.
    let s = t.status();
    assert_eq!(s["apps"].as_array().unwrap().len(), 1, "{s}");
    let o = t.invoke(DEMO_FRONTEND, "welcome", &["\"Ada\""]);
    assert_eq!(stdout(&o).trim(), DEMO_WELCOME, "{}", stderr(&o));

    // A manifest that is itself a FIFO, for `validate` and `apply`.
    let manifest_fifo = tmp.path().join("app.yaml");
    mkfifo(&manifest_fifo);
    let m = manifest_fifo.display().to_string();
    let want = format!("cannot read app manifest: {m} is a FIFO (named pipe), not a regular file");
    for args in [
        vec!["validate", m.as_str()],
        vec!["apply", "--data-dir", data.to_str().unwrap(), m.as_str()],
    ] {
        let (o, _) = run_bounded(&args, Duration::from_secs(5));
        assert!(!o.status.success());
        assert!(stderr(&o).contains(&want), "{args:?}: {}", stderr(&o));
    }
    // `inspect` of /dev/zero too.
    let (o, _) = run_bounded(&["inspect", "/dev/zero"], Duration::from_secs(5));
    assert!(
        stderr(&o).contains("/dev/zero is a character device, not a regular file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn one_bad_app_at_boot_is_skipped_and_the_rest_runs() {
    let tmp = TempDir::new("badapp");
    let data = tmp.path().join("d");
    let fifo = tmp.path().join("pipe.wasm");
    mkfifo(&fifo);
    let good = demo_manifest();
    let misbehave = guest_path("misbehave").display().to_string();
    let first = app(&tmp, "first", &misbehave);
    // Deployed on an earlier boot: must run again whatever --app says.
    {
        let mut t = Twig::up(&data, &["--app", &first]);
        t.settled(1);
        assert!(t.terminate().success());
    }
    let bad_yaml = tmp.path().join("bad.yaml");
    std::fs::write(&bad_yaml, "apiVersion: core.oam.dev/v1beta1\nkind: [oops\n").unwrap();
    let bad_yaml = bad_yaml.display().to_string();
    let fifo_image = app(&tmp, "fifoimage", &format!("file://{}", fifo.display()));
    let missing = app(&tmp, "missing", "file:///nonexistent/x.wasm");
    let started = Instant::now();
    let mut t = Twig::up(
        &data,
        &[
            "--app",
            &bad_yaml,
            "--app",
            &good,
            "--app",
            &fifo_image,
            "--app",
            &missing,
        ],
    );
    assert!(started.elapsed() < Duration::from_secs(15));
    let s = t.settled(2);
    let names: Vec<&str> = s["apps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{s}");
    assert!(
        names.contains(&"first") && names.contains(&"twig-demo"),
        "{s}"
    );
    let (state, reason) = Twig::component_state(&s, "first-m");
    assert_eq!(state, "running", "{reason}");
    let o = t.invoke(DEMO_FRONTEND, "welcome", &["\"Ada\""]);
    assert_eq!(stdout(&o).trim(), DEMO_WELCOME, "{}", stderr(&o));
    let o = t.invoke("first-m", "ok", &[]);
    assert_eq!(stdout(&o).trim(), "42", "{}", stderr(&o));
    let log = t.log_text();
    for (file, why) in [
        (bad_yaml.as_str(), bad_yaml.as_str()),
        (
            fifo_image.as_str(),
            &*format!(
                "{} is a FIFO (named pipe), not a regular file",
                fifo.display()
            ),
        ),
        (missing.as_str(), "cannot open /nonexistent/x.wasm"),
    ] {
        let line = log
            .lines()
            .find(|l| l.contains(&format!("--app {file} skipped")))
            .unwrap_or_else(|| panic!("no line for {file} in log:\n{log}"));
        assert!(line.contains(why), "{line}");
    }
    assert!(log.contains("--app files skipped"), "{log}");
    assert!(t.terminate().success());
}

/// A board whose guest calls may run 10 minutes: a stop must not wait
/// for one.
fn slow_board(dir: &TempDir) -> String {
    let text = std::fs::read_to_string(repo_root().join("boards/sim/board.toml"))
        .unwrap()
        .replace(
            "fuel_per_call = 10_000_000_000",
            "fuel_per_call = 1_000_000_000_000_000",
        )
        .replace("deadline_ms = 10_000", "deadline_ms = 600_000");
    let path = dir.path().join("slow.toml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn sigterm_ends_within_its_bound_while_requests_are_stuck() {
    let tmp = TempDir::new("stop");
    let data = tmp.path().join("d");
    let board = slow_board(&tmp);
    let misbehave = guest_path("misbehave").display().to_string();
    let spin = app(&tmp, "spin", &misbehave);
    for signal in ["-TERM", "-INT"] {
        let mut t = Twig::up(&data, &["--board", &board, "--app", &spin]);
        t.settled(1);
        // A call that spins for 10 minutes, and a client that connects and
        // never sends its line.
        let caller = Command::new(twig_bin())
            .args([
                "invoke",
                "--data-dir",
                data.to_str().unwrap(),
                "spin-m",
                "spin",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let _silent = UnixStream::connect(data.join("admin.sock")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while t.status()["apps"][0]["components"][0]["calls"] != 1 {
            assert!(Instant::now() < deadline, "call never started");
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut child = t.child.take().unwrap();
        let started = Instant::now();
        let ok = Command::new("kill")
            .args([signal, &child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            assert!(
                started.elapsed() < Duration::from_secs(8),
                "twig did not stop within 8 s of {signal}; log:\n{}",
                t.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "{signal}: stop took {took:?}"
        );
        assert!(status.success(), "{signal}: exit status {status}");
        let log = t.log_text();
        assert!(
            log.contains("admin request(s) unfinished (cancelled)") && log.contains("stopped"),
            "{log}"
        );
        drop(caller);
        // The data dir is free: the next host takes it at once.
        drop(t);
    }
    let t = Twig::up(&data, &["--board", &board]);
    t.settled(1);
}

#[test]
fn admin_socket_closes_idle_connections_and_caps_requests_in_flight() {
    let tmp = TempDir::new("adm");
    let data = tmp.path().join("d");
    let demo = demo_manifest();
    let t = Twig::up(&data, &["--app", &demo]);
    t.settled(1);

    // Sixteen connections that send half a line hold every slot; the
    // seventeenth is told at once.
    let mut held = Vec::new();
    for _ in 0..16 {
        let mut s = UnixStream::connect(data.join("admin.sock")).unwrap();
        s.write_all(b"{\"op\":").unwrap();
        held.push(s);
    }
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let o = t.cli(&["status"]);
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(!o.status.success());
    assert_eq!(
        stderr(&o).trim(),
        "error: busy: 16 requests in flight (the admin socket's limit); try again"
    );

    // Each idle connection is answered and closed after 10 s.
    let mut s = held.pop().unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let answer = answer_line(&mut s).unwrap();
    let v: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(
        v["error"], "no complete request within 10 s; closing",
        "{v}"
    );
    drop(held);
    // Then the host answers again.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let o = t.invoke(DEMO_FRONTEND, "welcome", &["\"Ada\""]);
        if stdout(&o).trim() == DEMO_WELCOME {
            break;
        }
        assert!(Instant::now() < deadline, "{}", stderr(&o));
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn admin_socket_bounds_request_bytes_and_the_cli_names_the_limit() {
    let tmp = TempDir::new("admbytes");
    let data = tmp.path().join("d");
    let demo = demo_manifest();
    let t = Twig::up(&data, &["--app", &demo]);
    t.settled(1);
    let pid = t.pid();
    let sock = data.join("admin.sock");

    // A 36 MiB image (just what the CLI may read, but 48 MiB as base64,
    // and more with its manifest): `twig apply` refuses it before sending, with both sizes.
    let img = tmp.path().join("big.wasm");
    std::fs::write(&img, vec![0u8; 36 << 20]).unwrap();
    let manifest = app(&tmp, "big", &format!("file://{}", img.display()));
    let (o, _) = run_bounded(
        &["apply", "--data-dir", data.to_str().unwrap(), &manifest],
        Duration::from_secs(20),
    );
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("over the admin socket's limit of 50331648 bytes (48 MiB)")
            && err.contains(&format!("{} 50331648 bytes", img.display())),
        "{err}"
    );
    assert!(!err.contains("Broken pipe"), "{err}");

    // On a board with a 1 MiB image cap the host's limit is 2.3 MiB: a 4 MiB
    // image passes the CLI's check, and the host's answer (sent before it
    // has read everything) is what `twig apply` prints, not `Broken pipe`.
    let small = std::fs::read_to_string(repo_root().join("boards/sim/board.toml"))
        .unwrap()
        .replace("max_image_mib = 32", "max_image_mib = 1");
    let small_board = tmp.path().join("small.toml");
    std::fs::write(&small_board, small).unwrap();
    let small_data = tmp.path().join("small");
    let small_host = Twig::up(&small_data, &["--board", small_board.to_str().unwrap()]);
    let img4 = tmp.path().join("four.wasm");
    std::fs::write(&img4, vec![0u8; 4 << 20]).unwrap();
    let manifest4 = app(&tmp, "four", &format!("file://{}", img4.display()));
    let o = small_host.cli(&["apply", &manifest4]);
    assert!(!o.status.success());
    let small_limit = (1u64 << 20).div_ceil(3) * 4 + (1 << 20);
    assert_eq!(
        stderr(&o).trim(),
        format!(
            "error: request larger than {small_limit} bytes (the admin socket's limit) refused"
        )
    );
    drop(small_host);

    // A request line over the host's own limit (44.7 MiB for the sim
    // board's 32 MiB image cap) is refused as it arrives.
    let limit = (32u64 << 20).div_ceil(3) * 4 + (1 << 20);
    let mut s = UnixStream::connect(&sock).unwrap();
    let chunk = vec![b'x'; 1 << 20];
    let mut sent = 0u64;
    while sent <= limit {
        if s.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len() as u64;
    }
    let answer = answer_line(&mut s).unwrap();
    assert!(
        answer.contains(&format!(
            "request larger than {limit} bytes (the admin socket's limit) refused"
        )),
        "{answer}"
    );

    // Eight clients each sending 40 MiB at once: the host buffers one
    // request's worth (plus 1 MiB), the others are told it is busy.
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let sock = sock.clone();
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&sock).unwrap();
                let chunk = vec![b' '; 1 << 20];
                for _ in 0..40 {
                    if s.write_all(&chunk).is_err() {
                        break;
                    }
                }
                std::thread::sleep(Duration::from_millis(500));
                let _ = s.shutdown(std::net::Shutdown::Write);
                answer_line(&mut s).unwrap_or_else(|e| format!("read failed: {e}"))
            })
        })
        .collect();
    let answers: Vec<String> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let busy = answers
        .iter()
        .filter(|a| a.contains("busy: requests in flight hold"))
        .count();
    assert!(busy >= 6, "{answers:?}");
    let hwm = hwm_kib(pid).unwrap();
    assert!(
        hwm < 160 << 10,
        "host peak RSS {hwm} KiB with 8 × 40 MiB requests"
    );
    let o = t.invoke(DEMO_FRONTEND, "welcome", &["\"Ada\""]);
    assert_eq!(stdout(&o).trim(), DEMO_WELCOME, "{}", stderr(&o));
}
