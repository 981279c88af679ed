//! twig under the unmodified wadm 0.21.1 orchestrator.
//!
//! wadm runs as its own process (`tests/wadm-launcher`, a thin launcher
//! that calls `wadm::start_wadm` as wadm's own binary does) against the
//! core nats-server of the real test topology, as a cloud-side wadm would;
//! twig runs at the edge on the leaf. A wadm manifest is put and deployed
//! through wadm's NATS API (`wadm.api.{lattice}.model.*`), and wadm alone
//! then drives twig over the lattice: it scales the components, puts their
//! config and the link between them. The test asserts that wadm reports the
//! app `deployed`; that twig runs what wadm asked for, under the ids wadm
//! computed, with wadm's counts and annotations; that the link and config
//! wadm put answer a call; that wadm asks for nothing more over the next
//! heartbeats and parses everything twig sends; and that undeploying
//! through wadm stops the components on twig.
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats_039 as nats;
use twig_integration_tests::topology::{Topology, CORE_DOMAIN};
use twig_integration_tests::twig::{demo_path, lattice_args, repo_root, stdout, TempDir, Twig};

/// The launcher binary: `$TWIG_WADM_LAUNCHER`, else where tests/run builds
/// it (`target/wadm-launcher`).
fn launcher_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("TWIG_WADM_LAUNCHER") {
        return PathBuf::from(p);
    }
    let p = repo_root().join("target/wadm-launcher/debug/twig-wadm-launcher");
    assert!(
        p.exists(),
        "{} is missing: build it with `CARGO_TARGET_DIR=target/wadm-launcher cargo build \
         --manifest-path tests/wadm-launcher/Cargo.toml` (tests/run does) or set TWIG_WADM_LAUNCHER",
        p.display()
    );
    p
}

/// The running wadm; killed on drop.
struct Wadm {
    child: Child,
    log: PathBuf,
}

impl Wadm {
    /// Starts wadm on the core (TLS, user JWT) with JetStream domain
    /// `core`, and waits until it serves its API.
    fn start(t: &Topology, dir: &TempDir) -> Wadm {
        let log = dir.path().join("wadm.log");
        let stdout_path = dir.path().join("wadm.out");
        let child = Command::new(launcher_bin())
            .args(["--nats-server", &t.core_url()])
            .arg("--creds")
            .arg(&t.user_creds)
            .arg("--tls-ca")
            .arg(&t.ca_pem)
            .args(["--js-domain", CORE_DOMAIN])
            .env(
                "RUST_LOG",
                std::env::var("TWIG_WADM_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout_path).expect("wadm stdout"))
            .stderr(std::fs::File::create(&log).expect("wadm log"))
            .spawn()
            .expect("spawn the wadm launcher");
        let mut w = Wadm { child, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = std::fs::read_to_string(&stdout_path).unwrap_or_default();
            if out.contains("wadm ready") {
                return w;
            }
            if let Some(status) = w.child.try_wait().expect("wadm status") {
                panic!("wadm exited with {status}; log:\n{}", w.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "wadm did not start within 60 s; log:\n{}",
                w.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Wadm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The demo app as a wadm manifest, with `file://` images (the only kind
/// twig loads) and its own greeting, so the answer proves the config wadm
/// put reached the greeter.
fn manifest() -> String {
    let image = |name: &str| {
        let p = demo_path(name).canonicalize().expect("canonical path");
        format!("file://{}", p.display())
    };
    format!(
        r#"apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: edge-demo
  annotations:
    version: v0.0.1
    description: the demo app, deployed by wadm onto twig
spec:
  components:
    - name: greeter
      type: component
      properties:
        image: {greeter}
        config:
          - name: greeting
            properties:
              greeting: "Hello from wadm"
      traits:
        - type: spreadscaler
          properties:
            instances: 2
    - name: frontend
      type: component
      properties:
        image: {frontend}
      traits:
        - type: spreadscaler
          properties:
            instances: 1
        - type: link
          properties:
            namespace: twig
            package: demo
            interfaces: [greeter]
            target:
              name: greeter
"#,
        greeter = image("greeter"),
        frontend = image("frontend"),
    )
}

/// A request to wadm's API; the JSON reply.
async fn wadm_api(
    nc: &nats::Client,
    op: &str,
    headers: Option<nats::HeaderMap>,
    body: Vec<u8>,
) -> serde_json::Value {
    let subject = format!("wadm.api.default.{op}");
    let req = nats::Request::new()
        .payload(body.into())
        .timeout(Some(Duration::from_secs(10)));
    let req = match headers {
        Some(h) => req.headers(h),
        None => req,
    };
    let m = nc
        .send_request(subject.clone(), req)
        .await
        .unwrap_or_else(|e| panic!("{subject}: {e}"));
    serde_json::from_slice(&m.payload)
        .unwrap_or_else(|e| panic!("{subject}: reply is not JSON ({e}): {:?}", m.payload))
}

/// Waits until wadm's event pipeline is live: its work-queue stream
/// `wadm_event_consumer` has taken up both of its sources (the lattice's
/// events and wadm's own). nats-server sets sources up in the background
/// after wadm creates the stream, and a manifest deployed before the
/// `wadm_events` source is up can be missed for good (seen with
/// nats-server 2.15.1: the first `manifest_published` never reached the
/// work queue). A long-running wadm is past this long before anyone
/// deploys; a test that starts wadm and deploys within milliseconds is
/// not.
async fn wait_event_pipeline(nc: &nats::Client, logs: &impl Fn() -> String) {
    let subject = format!("$JS.{CORE_DOMAIN}.API.STREAM.INFO.wadm_event_consumer");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let info: serde_json::Value = match nc.request(subject.clone(), Vec::new().into()).await {
            Ok(m) => serde_json::from_slice(&m.payload).unwrap_or_default(),
            Err(_) => serde_json::Value::Null,
        };
        let sources = info["sources"].as_array().cloned().unwrap_or_default();
        // `active` is how long ago the source last heard from its origin;
        // -1 until the source's consumer is set up.
        if sources.len() == 2
            && sources
                .iter()
                .all(|s| s["active"].as_i64().is_some_and(|a| a >= 0))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "wadm's event stream never took up its sources: {info}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// wadm's streams and their consumers as the core's JetStream reports
/// them, for a failure message: where an event stopped on its way.
async fn wadm_streams(nc: &nats::Client) -> String {
    let mut out = String::new();
    for stream in [
        "wasmbus_events",
        "wadm_events",
        "wadm_event_consumer",
        "wadm_commands",
        "wadm_notify",
    ] {
        for api in ["STREAM.INFO", "CONSUMER.LIST"] {
            let subject = format!("$JS.{CORE_DOMAIN}.API.{api}.{stream}");
            let reply = nc
                .request(subject.clone(), Vec::new().into())
                .await
                .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
                .unwrap_or_else(|e| e.to_string());
            out.push_str(&format!("{subject}: {reply}\n"));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wadm_deploys_a_manifest_onto_twig() {
    let dir = TempDir::new("wadm");
    let topo = Topology::start();
    let wadm = Wadm::start(&topo, &dir);
    let twig = Twig::up_in(&dir, "data", &lattice_args(&topo));
    twig.wait_serving();
    let logs = || {
        format!(
            "--- wadm ---\n{}\n--- twig ---\n{}",
            wadm.log_text(),
            twig.log_text()
        )
    };

    // An operator's client of the core, as `wash app` would be.
    let nc = nats::ConnectOptions::with_credentials_file(topo.user_creds.clone())
        .await
        .expect("creds")
        .add_root_certificates(topo.ca_pem.clone())
        .require_tls(true)
        .connect(topo.core_url())
        .await
        .expect("client connects to the core");

    wait_event_pipeline(&nc, &logs).await;

    let mut h = nats::HeaderMap::new();
    h.insert("Content-Type", "application/yaml");
    let put = wadm_api(&nc, "model.put", Some(h), manifest().into_bytes()).await;
    assert_eq!(put["result"], "created", "{put}");
    assert_eq!(put["name"], "edge-demo", "{put}");
    let deploy = wadm_api(
        &nc,
        "model.deploy.edge-demo",
        None,
        br#"{"version":"v0.0.1"}"#.to_vec(),
    )
    .await;
    assert_eq!(deploy["result"], "acknowledged", "{deploy}");

    // wadm reports the app deployed once every scaler agrees with what it
    // sees on the lattice.
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        let s = wadm_api(&nc, "model.status.edge-demo", None, Vec::new()).await;
        if s["status"]["status"]["type"] == "deployed" {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the app never reached `deployed`; last status: {s}\n{}\n{}",
            wadm_streams(&nc).await,
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let scalers = status["status"]["scalers"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        scalers.iter().all(|s| s["status"]["type"] == "deployed"),
        "{status}"
    );
    // One spread scaler per component (the greeter's wraps the scaler of
    // its config) and one link scaler.
    let mut kinds: Vec<(String, String)> = scalers
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap_or_default().to_string(),
                s["name"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            (
                "LinkScaler",
                "edge_demo-frontend -(twig:demo)-> edge_demo-greeter"
            ),
            ("SpreadScaler", "edge_demo-frontend"),
            ("SpreadScaler", "edge_demo-greeter"),
        ]
        .map(|(k, n)| (k.to_string(), n.to_string())),
        "{status}"
    );

    // twig runs what wadm asked for, under the ids wadm computed and with
    // wadm's annotations, and says so in its own inventory.
    let s = twig.status();
    let components: Vec<serde_json::Value> = s["apps"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|a| a["components"].as_array().cloned().unwrap_or_default())
        .collect();
    for id in ["edge_demo-greeter", "edge_demo-frontend"] {
        assert!(
            components
                .iter()
                .any(|c| c["id"] == id && c["state"] == "running"),
            "{id} is not running on twig: {s}\n{}",
            logs()
        );
    }

    // The link and config wadm put work: frontend calls greeter, which
    // greets with the manifest's greeting.
    let o = twig.invoke("edge_demo-frontend", "welcome", &["\"Ada\""]);
    assert_eq!(
        stdout(&o).trim(),
        "\"Hello from wadm, Ada! (via frontend)\"",
        "{}{}\n{}",
        stdout(&o),
        twig_integration_tests::twig::stderr(&o),
        logs()
    );

    // The lattice's view of the host, through the unmodified control
    // client: wadm's annotations echoed, the counts wadm asked for.
    let ctl = wasmcloud_control_interface::ClientBuilder::new(nc.clone())
        .timeout(Duration::from_secs(5))
        .build();
    let host_id = twig.host_id();
    let inv = ctl
        .get_host_inventory(&host_id)
        .await
        .expect("inventory")
        .into_data()
        .expect("inventory response");
    for (id, n) in [("edge_demo-greeter", 2), ("edge_demo-frontend", 1)] {
        let c = inv
            .components()
            .iter()
            .find(|c| c.id() == id)
            .unwrap_or_else(|| panic!("{id} not in the inventory: {inv:?}"));
        assert_eq!(c.max_instances(), n, "{c:?}");
        let a = c.annotations().cloned().unwrap_or_default();
        assert_eq!(
            a.get("wasmcloud.dev/managed-by").map(String::as_str),
            Some("wadm"),
            "{c:?}"
        );
        assert_eq!(
            a.get("wasmcloud.dev/appspec").map(String::as_str),
            Some("edge-demo"),
            "{c:?}"
        );
    }

    // Steady state: over a few heartbeats (one a second) wadm sees what it
    // asked for and asks again for nothing — one scale per component — and
    // parses every event twig sends without a complaint.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let s = wadm_api(&nc, "model.status.edge-demo", None, Vec::new()).await;
    assert_eq!(s["status"]["status"]["type"], "deployed", "{s}\n{}", logs());
    let log = twig.log_text();
    for id in ["edge_demo-greeter", "edge_demo-frontend"] {
        let scales = log
            .lines()
            .filter(|l| l.contains("scaled by the lattice") && l.contains(id))
            .count();
        assert_eq!(scales, 1, "{id} scaled {scales} times\n{}", logs());
    }
    let complaints: Vec<String> = wadm
        .log_text()
        .lines()
        .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
        .map(str::to_string)
        .collect();
    assert!(
        complaints.is_empty(),
        "wadm complained:\n{}",
        complaints.join("\n")
    );

    // Undeploying through wadm stops the components on twig.
    let undeploy = wadm_api(&nc, "model.undeploy.edge-demo", None, b"{}".to_vec()).await;
    assert_eq!(undeploy["result"], "acknowledged", "{undeploy}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = twig.status();
        let any = s["apps"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|a| a["components"].as_array().cloned().unwrap_or_default())
            .any(|c| {
                c["id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("edge_demo-"))
            });
        if !any {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "wadm's undeploy left components on twig: {s}\n{}",
            logs()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}
