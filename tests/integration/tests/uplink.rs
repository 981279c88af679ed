//! The uplink against a real nats-server (`$NATS_SERVER`, which the README's
//! test command installs from PyPI): twig boots with the server down, runs
//! its apps, connects when the server comes up, notices it going away and
//! comes back; a creds file that cannot be read stops the uplink with one
//! clear error while the apps keep serving.
#![forbid(unsafe_code)]

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use twig_integration_tests::topology::{connection_names, free_port, nats_server_bin};
use twig_integration_tests::twig::{demo_manifest, stdout, TempDir, Twig};

/// A nats-server on 127.0.0.1 with its monitoring port; killed on drop.
struct NatsServer {
    child: Child,
    monitor: u16,
}

impl NatsServer {
    fn start(port: u16, monitor: u16) -> NatsServer {
        let child = Command::new(nats_server_bin())
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(["-m", &monitor.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        let s = NatsServer { child, monitor };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    /// Names of the server's client connections, from its `/connz` page.
    fn connection_names(&self) -> Vec<String> {
        connection_names(self.monitor)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `twig status` shows the uplink in `state`; returns it.
fn wait_uplink(twig: &Twig, state: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let uplink = twig.status()["host"]["uplink"].clone();
        if uplink["state"] == state {
            return uplink;
        }
        assert!(
            Instant::now() < deadline,
            "uplink never became {state}: {uplink}; log:\n{}",
            twig.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn boots_without_the_server_connects_when_it_comes_and_follows_it() {
    let dir = TempDir::new("uplink-follow");
    let (port, monitor) = (free_port(), free_port());
    let url = format!("nats://127.0.0.1:{port}");
    // No server yet: twig must come up and serve anyway.
    let twig = Twig::up(
        &dir.path().join("data"),
        &["--app", &demo_manifest(), "--nats-url", &url],
    );
    twig.settled(1);
    twig.assert_demo_answers();
    let uplink = twig.status()["host"]["uplink"].clone();
    assert_eq!(uplink["url"], url.as_str());
    assert_eq!(uplink["lattice"], "default");
    assert_ne!(uplink["state"], "connected", "{uplink}");
    assert_eq!(uplink["connects"], 0);

    let server = NatsServer::start(port, monitor);
    let up = wait_uplink(&twig, "connected");
    assert_eq!(up["connects"], 1);
    let names = server.connection_names();
    assert!(
        names.iter().any(|n| n.starts_with("twig sim")),
        "nats-server lists {names:?}"
    );

    // The server goes away: twig notices, and local work goes on.
    drop(server);
    wait_uplink(&twig, "disconnected");
    twig.assert_demo_answers();
    let human = stdout(&twig.cli(&["status"]));
    assert!(
        human.contains(&format!("lattice default via {url}: disconnected")),
        "{human}"
    );

    // Back on the same port: twig reconnects by itself.
    let _server = NatsServer::start(port, monitor);
    let up = wait_uplink(&twig, "connected");
    assert_eq!(up["connects"], 2, "{up}");
    twig.assert_demo_answers();
    let log = twig.log_text();
    assert_eq!(log.matches("uplink connected").count(), 2, "{log}");
    assert!(log.contains("uplink lost"), "{log}");
}

#[test]
fn unreadable_creds_file_fails_the_uplink_not_the_host() {
    let dir = TempDir::new("uplink-creds");
    let creds = dir.path().join("missing.creds");
    let twig = Twig::up(
        &dir.path().join("data"),
        &[
            "--app",
            &demo_manifest(),
            "--nats-url",
            &format!("nats://127.0.0.1:{}", free_port()),
            "--nats-creds",
            creds.to_str().unwrap(),
        ],
    );
    twig.settled(1);
    let uplink = wait_uplink(&twig, "failed");
    let why = uplink["last_error"].as_str().unwrap_or_default();
    assert!(
        why.contains("creds file") && why.contains(creds.to_str().unwrap()),
        "{why}"
    );
    twig.assert_demo_answers();
    // One line says it, naming the file.
    let log = twig.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("creds file")).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(lines[0].contains("ERROR"), "{log}");
    assert!(
        log.contains("twig keeps running without the lattice"),
        "{log}"
    );
}

#[test]
fn host_id_is_kept_across_restarts_and_labels_come_from_the_command_line() {
    let dir = TempDir::new("uplink-identity");
    let data = dir.path().join("data");
    let mut first = Twig::up(
        &data,
        &[
            "--label",
            "site=north",
            "--label",
            "tier=core",
            "--friendly-name",
            "gw-7",
        ],
    );
    let host = first.status()["host"].clone();
    let id = host["host_id"].as_str().expect("host_id").to_string();
    assert!(id.starts_with('N') && id.len() == 56, "{id}");
    assert_eq!(host["friendly_name"], "gw-7");
    assert_eq!(host["labels"]["site"], "north");
    // A command-line label overrides the board's.
    assert_eq!(host["labels"]["tier"], "core");
    assert_eq!(host["labels"]["board"], "sim");
    assert!(stdout(&first.cli(&["status"])).contains(&format!("host {id} (gw-7)")));
    assert!(first.terminate().success());

    // Offline restart, no flags: the same id, the hostname as its name.
    let second = Twig::up(&data, &[]);
    let host = second.status()["host"].clone();
    assert_eq!(host["host_id"], id.as_str());
    assert_ne!(host["friendly_name"], "gw-7");
    assert!(host["labels"].get("site").is_none());
}

#[test]
fn a_bad_label_is_refused_before_anything_starts() {
    let dir = TempDir::new("uplink-label");
    let o = twig_integration_tests::twig::twig(&[
        "up",
        "--data-dir",
        dir.path().join("data").to_str().unwrap(),
        "--label",
        "site north",
    ]);
    assert!(!o.status.success());
    let err = twig_integration_tests::twig::stderr(&o);
    assert!(
        err.contains("--label `site north`: expected KEY=VALUE"),
        "{err}"
    );
    assert!(!dir.path().join("data/host.nk").exists());
}
