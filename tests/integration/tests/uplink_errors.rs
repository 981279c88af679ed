//! Uplink misconfigurations that used to be reported unclearly, through the
//! real binary and a real nats-server (the test topology's leaf and core):
//!
//! - a CA file with no certificate is refused at startup, naming the file
//!   (it used to be accepted, and every handshake failed later);
//! - `nats://` to a server that requires TLS says so and suggests `tls://`
//!   (it used to say `IO error`);
//! - an expired user JWT is reported with its expiry date, at startup and
//!   when the server refuses it (it used to be a bare `authorization
//!   violation`).
//!
//! The local app keeps serving in every case.
#![forbid(unsafe_code)]

use std::process::Command;
use std::time::{Duration, Instant};

use twig_integration_tests::topology::Topology;
use twig_integration_tests::twig::{demo_manifest, lattice_args, TempDir, Twig};

/// Waits until the uplink's last error contains `needle`; returns it.
fn wait_error(twig: &Twig, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = twig.status()["host"]["uplink"].clone();
        let e = up["last_error"].as_str().unwrap_or_default().to_string();
        if e.contains(needle) {
            return e;
        }
        assert!(
            Instant::now() < deadline,
            "uplink never reported `{needle}`: {up}; log:\n{}",
            twig.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_ca_file_without_certificates_is_refused_at_startup() {
    let dir = TempDir::new("ca-empty");
    let app = demo_manifest();
    let empty = dir.path().join("empty-ca.pem");
    std::fs::write(&empty, "").unwrap();
    let no_cert = dir.path().join("key-only.pem");
    std::fs::write(
        &no_cert,
        "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    for (i, ca) in [&empty, &no_cert].into_iter().enumerate() {
        // No server is needed: the file is checked before connecting.
        let args = vec![
            "--nats-url".to_string(),
            "tls://127.0.0.1:1".to_string(),
            "--nats-tls-ca".to_string(),
            ca.display().to_string(),
            "--app".to_string(),
            app.clone(),
        ];
        let t = Twig::up_in(&dir, &format!("h{i}"), &args);
        let want = format!(
            "TLS CA {}: holds no certificate (no -----BEGIN CERTIFICATE----- block)",
            ca.display()
        );
        let e = wait_error(&t, &want);
        assert_eq!(t.status()["host"]["uplink"]["state"], "failed", "{e}");
        t.settled(1);
        t.assert_demo_answers();
    }
}

#[test]
fn a_plain_url_to_a_tls_only_server_says_it_requires_tls() {
    let dir = TempDir::new("tls-only");
    let topo = Topology::start();
    let app = demo_manifest();
    // The leaf requires TLS with a client certificate (`verify: true`).
    let tls = topo.leaf_url();
    let plain = tls.replace("tls://", "nats://");
    let hostport = tls.trim_start_matches("tls://");
    let args = vec![
        "--nats-url".to_string(),
        plain,
        "--nats-creds".to_string(),
        topo.user_creds.display().to_string(),
        "--app".to_string(),
        app,
    ];
    let t = Twig::up_in(&dir, "h", &args);
    let e = wait_error(&t, "requires TLS");
    assert!(
        e.contains(&format!(
            "the server at {hostport} requires TLS: use tls://{hostport}"
        )),
        "{e}"
    );
    assert!(!e.contains("IO error"), "{e}");
    t.settled(1);
    t.assert_demo_answers();
}

/// `date -u` of `secs`, as twig writes it: an oracle independent of twig's
/// own calendar arithmetic.
fn utc(secs: u64) -> String {
    let o = Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%S.000Z"])
        .output()
        .expect("date");
    assert!(o.status.success());
    String::from_utf8(o.stdout).unwrap().trim().to_string()
}

#[test]
fn an_expired_user_jwt_is_named_with_its_expiry() {
    let dir = TempDir::new("jwt-exp");
    let topo = Topology::start();
    let app = demo_manifest();
    let mut args = lattice_args(&topo);
    let creds = args
        .iter()
        .position(|a| a == "--nats-creds")
        .expect("--nats-creds")
        + 1;
    args[creds] = topo.expired_creds.display().to_string();
    args.extend(["--app".to_string(), app]);
    let t = Twig::up_in(&dir, "h", &args);
    let expired = format!(
        "user JWT in {} expired at {}",
        topo.expired_creds.display(),
        utc(topo.expired_at)
    );
    // The server refuses it; twig says why.
    let e = wait_error(&t, "authorization violation");
    assert!(
        e.to_lowercase()
            .contains(&format!("authorization violation: {expired}").to_lowercase()),
        "{e}"
    );
    assert_ne!(t.status()["host"]["uplink"]["state"], "connected");
    // And it was said at startup, before the server was asked.
    let log = t.log_text();
    let first = log
        .lines()
        .find(|l| l.contains(&expired))
        .unwrap_or_else(|| panic!("no `{expired}` in log:\n{log}"));
    assert!(!first.contains("authorization violation"), "{first}");
    t.settled(1);
    t.assert_demo_answers();
}
