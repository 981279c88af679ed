//! twig on a wasmCloud 1.x lattice, driven only by the unmodified
//! `wasmcloud-control-interface` crate (3.0.1): every reply is parsed by
//! that crate's own types, and events arrive through its own receiver.
//!
//! The topology is real: a core nats-server with JetStream (domain
//! `core`), a leaf nats-server with its own domain joined to it by a TLS
//! leafnode connection, and twig on the leaf over mutual TLS with a creds
//! file; certificates and JWTs are made by the test
//! (`twig_integration_tests::topology`).
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use async_nats_039 as nats;
use twig_integration_tests::topology::Topology;
use twig_integration_tests::twig::{demo_manifest, demo_path, lattice_args, stdout, TempDir, Twig};
use wasmcloud_control_interface::{Client, ClientBuilder, Link};

/// A NATS client of the leaf (mTLS, creds), as an operator's tool has.
async fn leaf_client(t: &Topology) -> nats::Client {
    t.leaf_client().await.unwrap_or_else(|e| panic!("{e}"))
}

/// Connects a control client to the leaf, as an operator's tool would.
async fn ctl_client(t: &Topology) -> Client {
    let nc = leaf_client(t).await;
    ClientBuilder::new(nc)
        .timeout(Duration::from_secs(5))
        .auction_timeout(Duration::from_secs(2))
        .build()
}

/// A board profile (the sim one plus a `[lattice]` table) with the same
/// settings as `lattice_args`; the creds file sits beside it and is named
/// by a relative path, as on a device.
fn board_with_lattice(dir: &TempDir, t: &Topology) -> std::path::PathBuf {
    let board_dir = dir.path().join("board");
    std::fs::create_dir_all(&board_dir).expect("board dir");
    std::fs::copy(&t.user_creds, board_dir.join("nats.creds")).expect("copy creds");
    let sim = std::fs::read_to_string(
        twig_integration_tests::twig::repo_root().join("boards/sim/board.toml"),
    )
    .expect("read the sim profile");
    let q = |p: &std::path::Path| serde_json::to_string(&p.display().to_string()).expect("path");
    let profile = format!(
        "{sim}\n[lattice]\nurl = \"{url}\"\ncreds = \"nats.creds\"\ntls_ca = {ca}\n\
         tls_cert = {cert}\ntls_key = {key}\njs_domain = \"core\"\nheartbeat_secs = 1\n\
         friendly_name = \"edge-gw-2\"\n\n[control]\nfile_dirs = [{demo}, {guests}]\n",
        demo = q(&twig_integration_tests::twig::demo_build_dir()),
        guests = q(&twig_integration_tests::twig::guests_dir()),
        url = t.leaf_url(),
        ca = q(&t.ca_pem),
        cert = q(&t.client_cert_pem),
        key = q(&t.client_key_pem),
    );
    let file = board_dir.join("board.toml");
    std::fs::write(&file, profile).expect("write board profile");
    file
}

/// Waits for the next event of `kind` that `pick` accepts.
async fn next_event(
    rx: &mut tokio::sync::mpsc::Receiver<cloudevents::Event>,
    kind: &str,
    pick: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let ty = format!("com.wasmcloud.lattice.{kind}");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ev = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .unwrap_or_else(|_| panic!("no {kind} event within 20 s"))
            .expect("event stream open");
        use cloudevents::AttributesReader;
        if ev.ty() != ty {
            continue;
        }
        let data: serde_json::Value = match ev.data() {
            Some(cloudevents::Data::Json(v)) => v.clone(),
            Some(cloudevents::Data::Binary(b)) => serde_json::from_slice(b).expect("JSON data"),
            Some(cloudevents::Data::String(s)) => serde_json::from_str(s).expect("JSON data"),
            None => serde_json::Value::Null,
        };
        if pick(&data) {
            return serde_json::json!({"source": ev.source().to_string(), "data": data});
        }
    }
}

/// A `file://` reference to a demo component, canonical (the control
/// policy refuses `..` in lattice references).
fn file_ref(name: &str) -> String {
    let p = demo_path(name).canonicalize().expect("canonical path");
    format!("file://{}", p.display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_interface_client_sees_and_drives_twig() {
    let dir = TempDir::new("lattice-ctl");
    let topo = Topology::start();
    // This device lets the lattice stop it for good (the default refuses:
    // tests/trust.rs).
    let mut args = lattice_args(&topo);
    args.extend(["--control".to_string(), "host_stop=exit".to_string()]);
    let twig = Twig::up_in(&dir, "data", &args);
    twig.wait_serving();
    let id = twig.host_id();
    let ctl = ctl_client(&topo).await;
    let mut events = ctl
        .events_receiver(vec![
            "host_heartbeat".into(),
            "component_scaled".into(),
            "component_scale_failed".into(),
            "linkdef_set".into(),
            "config_set".into(),
            "labels_changed".into(),
            "host_stopped".into(),
        ])
        .await
        .expect("event subscription");

    // Ping: twig answers like a 1.x host.
    let hosts = ctl.get_hosts().await.expect("ping");
    let me = hosts
        .iter()
        .filter_map(|r| r.data())
        .find(|h| h.id() == id)
        .unwrap_or_else(|| panic!("twig did not answer the ping: {hosts:?}"));
    assert_eq!(me.friendly_name(), "edge-gw-1");
    assert_eq!(me.lattice(), "default");
    assert_eq!(me.labels().get("site").map(String::as_str), Some("north"));
    assert_eq!(me.js_domain(), Some("core"));
    assert!(semver_like(me.version().unwrap_or_default()), "{me:?}");

    // A heartbeat arrives (every second here), with the inventory.
    let hb = next_event(&mut events, "host_heartbeat", |_| true).await;
    assert_eq!(hb["source"], id.as_str());
    assert_eq!(hb["data"]["friendly_name"], "edge-gw-1");
    assert!(hb["data"]["components"].is_array(), "{hb}");
    assert!(semver_like(
        hb["data"]["version"].as_str().unwrap_or_default()
    ));

    // Named config, then a component that reads it, scaled from a file.
    let put = ctl
        .put_config(
            "lat-greeter-config",
            HashMap::from([("greeting".to_string(), "Hola".to_string())]),
        )
        .await
        .expect("config put");
    assert!(put.succeeded(), "{put:?}");
    next_event(&mut events, "config_set", |d| {
        d["config_name"] == "lat-greeter-config"
    })
    .await;
    let got = ctl
        .get_config("lat-greeter-config")
        .await
        .expect("config get");
    assert_eq!(
        got.data()
            .and_then(|m| m.get("greeting"))
            .map(String::as_str),
        Some("Hola"),
        "{got:?}"
    );

    let annotations = BTreeMap::from([
        ("wasmcloud.dev/managed-by".to_string(), "wadm".to_string()),
        ("wasmcloud.dev/appspec".to_string(), "lat-demo".to_string()),
    ]);
    for (cid, file, n) in [
        ("lat-greeter", "greeter", 2),
        ("lat-frontend", "frontend", 1),
    ] {
        let config = if cid == "lat-greeter" {
            vec!["lat-greeter-config".to_string()]
        } else {
            vec![]
        };
        let r = ctl
            .scale_component(
                &id,
                &file_ref(file),
                cid,
                n,
                Some(annotations.clone()),
                config,
                false,
            )
            .await
            .expect("scale");
        assert!(r.succeeded(), "{r:?}");
        let ev = next_event(&mut events, "component_scaled", |d| {
            d["component_id"] == cid
        })
        .await;
        assert_eq!(ev["data"]["max_instances"], n);
        assert_eq!(ev["data"]["host_id"], id.as_str());
        assert_eq!(
            ev["data"]["annotations"]["wasmcloud.dev/managed-by"],
            "wadm"
        );
    }
    // By the time `component_scaled` is out, twig serves the component
    // over wRPC: the first message of an invocation gets the handshake
    // reply at once, not "no responders". (`greet("Ada")`: the string is
    // its LEB128 length and its bytes.)
    let nc = leaf_client(&topo).await;
    let handshake = nc
        .request(
            "default.lat-greeter.wrpc.0.0.1.twig:demo/greeter@0.1.0.greet",
            vec![3, b'A', b'd', b'a'].into(),
        )
        .await
        .expect("a scaled component is served when component_scaled is out");
    assert!(handshake.payload.is_empty(), "{handshake:?}");

    // The inventory lists them, annotations echoed.
    let inv = ctl.get_host_inventory(&id).await.expect("inventory");
    let inv = inv.into_data().expect("inventory response");
    assert_eq!(inv.host_id(), id);
    let greeter = inv
        .components()
        .iter()
        .find(|c| c.id() == "lat-greeter")
        .unwrap_or_else(|| panic!("{inv:?}"));
    assert_eq!(greeter.max_instances(), 2);
    assert_eq!(greeter.image_ref(), file_ref("greeter"));
    assert_eq!(
        greeter
            .annotations()
            .and_then(|a| a.get("wasmcloud.dev/appspec"))
            .map(String::as_str),
        Some("lat-demo")
    );

    // A link on the lattice wires frontend to greeter; twig stores it in
    // LATTICEDATA (through the core's domain) and uses it on the next call.
    let link = Link::builder()
        .source_id("lat-frontend")
        .target("lat-greeter")
        .name("default")
        .wit_namespace("twig")
        .wit_package("demo")
        .interfaces(vec!["greeter".to_string()])
        .build()
        .expect("link");
    let r = ctl.put_link(link).await.expect("link put");
    assert!(r.succeeded(), "{r:?}");
    next_event(&mut events, "linkdef_set", |d| {
        d["source_id"] == "lat-frontend"
    })
    .await;
    let links = ctl
        .get_links()
        .await
        .expect("links")
        .into_data()
        .unwrap_or_default();
    assert!(
        links
            .iter()
            .any(|l| l.source_id() == "lat-frontend" && l.target() == "lat-greeter"),
        "{links:?}"
    );
    let o = twig.invoke("lat-frontend", "welcome", &["\"Ada\""]);
    assert_eq!(
        stdout(&o).trim(),
        "\"Hola, Ada! (via frontend)\"",
        "log:\n{}",
        twig.log_text()
    );

    // New values for the named config reach the running greeter on its
    // next call, with no restart (as on a wasmCloud host).
    let put = ctl
        .put_config(
            "lat-greeter-config",
            HashMap::from([("greeting".to_string(), "Hallo".to_string())]),
        )
        .await
        .expect("config put");
    assert!(put.succeeded(), "{put:?}");
    let o = twig.invoke("lat-frontend", "welcome", &["\"Ada\""]);
    assert_eq!(
        stdout(&o).trim(),
        "\"Hallo, Ada! (via frontend)\"",
        "log:\n{}",
        twig.log_text()
    );

    // Labels.
    let r = ctl.put_label(&id, "zone", "z1").await.expect("label put");
    assert!(r.succeeded(), "{r:?}");
    let ev = next_event(&mut events, "labels_changed", |_| true).await;
    assert_eq!(ev["data"]["labels"]["zone"], "z1");

    // Auctions: twig bids only when the constraints match its labels.
    let acks = ctl
        .perform_component_auction(
            &file_ref("greeter"),
            "another",
            BTreeMap::from([("zone".to_string(), "z1".to_string())]),
        )
        .await
        .expect("auction");
    assert!(
        acks.iter()
            .filter_map(|a| a.data())
            .any(|a| a.host_id() == id),
        "{acks:?}"
    );
    let acks = ctl
        .perform_component_auction(
            &file_ref("greeter"),
            "another",
            BTreeMap::from([("zone".to_string(), "elsewhere".to_string())]),
        )
        .await
        .expect("auction");
    assert!(
        !acks
            .iter()
            .filter_map(|a| a.data())
            .any(|a| a.host_id() == id),
        "{acks:?}"
    );

    // Hostile requests: error replies that change nothing.
    let missing = ctl
        .scale_component(
            &id,
            "file:///nonexistent/x.wasm",
            "lat-x",
            1,
            None,
            vec![],
            false,
        )
        .await
        .expect("reply");
    assert!(!missing.succeeded(), "{missing:?}");
    assert!(
        missing.message().contains("/nonexistent/x.wasm"),
        "{missing:?}"
    );
    let huge = ctl
        .scale_component(
            &id,
            &file_ref("greeter"),
            "lat-greeter",
            u32::MAX,
            None,
            vec![],
            false,
        )
        .await
        .expect("reply");
    assert!(!huge.succeeded(), "{huge:?}");
    assert!(huge.message().contains("at most"), "{huge:?}");
    let oci = ctl
        .scale_component(
            &id,
            "ghcr.io/wasmcloud/components/http-hello-world-rust:0.1.0",
            "lat-oci",
            1,
            None,
            vec![],
            false,
        )
        .await
        .expect("reply");
    assert!(!oci.succeeded(), "{oci:?}");
    let raw = ctl.nats_client();
    for (subject, body) in [
        (
            format!("wasmbus.ctl.v1.default.component.scale.{id}"),
            b"{not json".to_vec(),
        ),
        (
            format!("wasmbus.ctl.v1.default.label.put.{id}"),
            br#"{"key":"hostcore.arch","value":"x"}"#.to_vec(),
        ),
        (
            format!("wasmbus.ctl.v1.default.host.frobnicate.{id}"),
            b"{}".to_vec(),
        ),
    ] {
        let m = raw
            .request(subject.clone(), body.into())
            .await
            .expect("a reply");
        let v: serde_json::Value = serde_json::from_slice(&m.payload).expect("JSON reply");
        assert_eq!(v["success"], false, "{subject}: {v}");
        assert!(!v["message"].as_str().unwrap_or_default().is_empty(), "{v}");
    }
    let inv2 = ctl
        .get_host_inventory(&id)
        .await
        .expect("inventory")
        .into_data()
        .expect("inv");
    assert_eq!(inv2.components().len(), inv.components().len());
    let still = inv2
        .components()
        .iter()
        .find(|c| c.id() == "lat-greeter")
        .expect("greeter");
    assert_eq!(
        still.max_instances(),
        2,
        "the refused scale changed nothing"
    );
    assert_eq!(
        inv2.labels().get("hostcore.arch").map(String::as_str),
        Some(std::env::consts::ARCH)
    );

    // Scale to zero stops it.
    let r = ctl
        .scale_component(
            &id,
            &file_ref("frontend"),
            "lat-frontend",
            0,
            None,
            vec![],
            false,
        )
        .await
        .expect("scale 0");
    assert!(r.succeeded(), "{r:?}");
    next_event(&mut events, "component_scaled", |d| {
        d["component_id"] == "lat-frontend" && d["max_instances"] == 0
    })
    .await;

    // The lattice stops the host; it says goodbye.
    let r = ctl.stop_host(&id, None).await.expect("stop");
    assert!(r.succeeded(), "{r:?}");
    let ev = next_event(&mut events, "host_stopped", |_| true).await;
    assert_eq!(ev["source"], id.as_str());
    let mut twig = twig;
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = twig.child.as_mut().unwrap().try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "twig did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    // host_stop = "exit": the status the shipped unit does not restart.
    assert_eq!(status.code(), Some(3), "{status:?}");
}

fn semver_like(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| p.parse::<u64>().is_ok())
}

/// Waits until the uplink's last error contains `needle`; returns it.
fn wait_error(twig: &Twig, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = twig.status()["host"]["uplink"].clone();
        let e = up["last_error"].as_str().unwrap_or_default().to_string();
        if e.to_lowercase().contains(&needle.to_lowercase()) {
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

/// Bad credentials, a server certificate from a CA twig does not trust,
/// and a subject the account may not publish to: each is named once in
/// the log and in `twig status`, and the local app keeps serving.
#[test]
fn refused_credentials_certificates_and_subjects_are_named_and_local_work_goes_on() {
    let dir = TempDir::new("lattice-refused");
    let topo = Topology::start();
    let app = demo_manifest();
    let with = |creds: &std::path::Path, ca: &std::path::Path| {
        let mut a = lattice_args(&topo);
        let at = |flag: &str| a.iter().position(|x| x == flag).expect("flag") + 1;
        let (c, k) = (at("--nats-creds"), at("--nats-tls-ca"));
        a[c] = creds.display().to_string();
        a[k] = ca.display().to_string();
        a.extend(["--app".to_string(), app.clone()]);
        a
    };
    let bad_creds = Twig::up_in(&dir, "bad-creds", &with(&topo.bad_creds, &topo.ca_pem));
    let bad_ca = Twig::up_in(
        &dir,
        "bad-ca",
        &with(&topo.user_creds, &topo.untrusted_ca_pem),
    );
    let denied = Twig::up_in(&dir, "denied", &with(&topo.deny_evt_creds, &topo.ca_pem));

    let e = wait_error(&bad_creds, "authorization violation");
    assert_ne!(
        bad_creds.status()["host"]["uplink"]["state"],
        "connected",
        "{e}"
    );
    let e = wait_error(&bad_ca, "certificate");
    assert!(
        e.to_lowercase().contains("issuer") || e.contains("UnknownIssuer"),
        "{e}"
    );
    denied.wait_connected();
    let e = wait_error(&denied, "permissions violation");
    assert!(e.contains("wasmbus.evt.default"), "{e}");

    for (twig, needle) in [
        (&bad_creds, "authorization violation"),
        (&bad_ca, "certificate"),
        (&denied, "publish to \"wasmbus.evt.default.host_heartbeat\""),
    ] {
        twig.settled(1);
        twig.assert_demo_answers();
        // Named once, not once per retry.
        std::thread::sleep(Duration::from_secs(2));
        let log = twig.log_text();
        let lines = log
            .lines()
            .filter(|l| l.to_lowercase().contains(needle))
            .count();
        assert_eq!(lines, 1, "`{needle}` logged {lines} times:\n{log}");
    }
}

/// Two twig hosts on one lattice: a component on A calls an export of a
/// component on B through a lattice link, over wRPC through the leaf;
/// with B gone, A's call fails with a clear error and A's local work goes
/// on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_on_one_host_calls_a_component_on_another_over_wrpc() {
    let dir = TempDir::new("lattice-wrpc");
    let mut topo = Topology::start();
    let app = demo_manifest();
    let mut args_a = lattice_args(&topo);
    args_a.extend(["--app".to_string(), app]);
    let twig_a = Twig::up_in(&dir, "a", &args_a);
    // B is set up the way a device is installed: everything about the
    // lattice in its board profile's `[lattice]` table, no flags.
    let board_b = board_with_lattice(&dir, &topo);
    let mut twig_b = Twig::up_in(
        &dir,
        "b",
        &["--board".into(), board_b.display().to_string()],
    );
    twig_a.wait_serving();
    twig_b.wait_serving();
    let (a, b) = (twig_a.host_id(), twig_b.host_id());
    assert_ne!(a, b);
    assert_eq!(
        twig_b.status()["host"]["friendly_name"],
        "edge-gw-2",
        "B's profile names it"
    );
    let ctl = ctl_client(&topo).await;
    let mut events = ctl
        .events_receiver(vec!["component_scaled".into()])
        .await
        .expect("events");

    let r = ctl
        .put_config(
            "remote-greeter-config",
            HashMap::from([("greeting".to_string(), "Hej".to_string())]),
        )
        .await
        .expect("config");
    assert!(r.succeeded(), "{r:?}");
    for (host, cid, file, config) in [
        (
            &b,
            "remote-greeter",
            "greeter",
            vec!["remote-greeter-config".to_string()],
        ),
        (&a, "edge-frontend", "frontend", vec![]),
    ] {
        let r = ctl
            .scale_component(host, &file_ref(file), cid, 1, None, config, false)
            .await
            .expect("scale");
        assert!(r.succeeded(), "{r:?}");
        next_event(&mut events, "component_scaled", |d| {
            d["component_id"] == cid
        })
        .await;
    }
    let link = Link::builder()
        .source_id("edge-frontend")
        .target("remote-greeter")
        .name("default")
        .wit_namespace("twig")
        .wit_package("demo")
        .interfaces(vec!["greeter".to_string()])
        .build()
        .expect("link");
    assert!(ctl.put_link(link).await.expect("link").succeeded());

    // A's frontend reaches B's greeter over the lattice.
    twig_a.invoke_until(
        "edge-frontend",
        "welcome",
        &["\"Ada\""],
        "\"Hej, Ada! (via frontend)\"",
        || format!("B:\n{}", twig_b.log_text()),
    );
    let b_status = twig_b.status();
    let calls = b_status["apps"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|app| app["components"].as_array().cloned().unwrap_or_default())
        .find(|c| c["id"] == "remote-greeter")
        .map(|c| c["calls"].as_u64().unwrap_or(0))
        .unwrap_or(0);
    assert!(calls >= 1, "B's greeter counted no calls: {b_status}");

    // B goes away: A's call fails fast and says why; A's own app serves.
    twig_b.terminate();
    assert_welcome_fails_fast(&twig_a, "no responders", Duration::from_secs(5));
    twig_a.assert_demo_answers();

    // A's own uplink goes too (the leaf is gone): the call fails at once
    // with "lattice unreachable" instead of waiting out its deadline, and
    // A's local app still answers.
    topo.stop_leaf();
    twig_a.wait_disconnected();
    assert_welcome_fails_fast(&twig_a, "lattice unreachable", Duration::from_secs(2));
    twig_a.assert_demo_answers();
}

/// `edge-frontend`'s `welcome` on `twig` fails within `within`, naming
/// the remote greeter and `why`.
fn assert_welcome_fails_fast(twig: &Twig, why: &str, within: Duration) {
    let started = Instant::now();
    let o = twig.invoke("edge-frontend", "welcome", &["\"Ada\""]);
    let all = format!("{}{}", stdout(&o), twig_integration_tests::twig::stderr(&o));
    assert!(!o.status.success(), "{all}");
    assert!(
        all.contains("remote-greeter") && all.contains(why),
        "{all}\nlog:\n{}",
        twig.log_text()
    );
    assert!(started.elapsed() < within, "took {:?}", started.elapsed());
}

/// A GET over a plain TCP connection: the status line and headers, or
/// `None` if nothing listens on `port`.
fn http_get(port: u16, path: &str) -> Option<String> {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// Polls until `port` answers `path` with 200 (or, with `up == false`,
/// until nothing listens there any more).
fn wait_http(twig: &Twig, port: u16, path: &str, up: bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let got = http_get(port, path);
        match (&got, up) {
            (Some(r), true) if r.starts_with("HTTP/1.1 200") => return r.clone(),
            (None, false) => return String::new(),
            _ => {}
        }
        assert!(
            Instant::now() < deadline,
            "port {port} {path}: {got:?} (wanted it {}); log:\n{}",
            if up { "serving" } else { "closed" },
            twig.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// wadm's link from the HTTP server provider to its handler, with the
/// listen address in named source config.
fn http_link() -> Link {
    Link::builder()
        .source_id("lat-http")
        .target("lat-echo")
        .name("default")
        .wit_namespace("wasi")
        .wit_package("http")
        .interfaces(vec!["incoming-handler".to_string()])
        .source_config(vec!["lat-http-listen".to_string()])
        .build()
        .expect("link")
}

/// How wadm deploys an HTTP app: it starts the HTTP server provider, scales
/// the handler component, and links provider → component with the
/// listen address in a named source config. twig's built-in HTTP server
/// serves on that address, moves when the config changes, and stops
/// when the link goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_server_provider_linked_from_the_lattice_serves_its_target() {
    let dir = TempDir::new("lattice-http");
    let topo = Topology::start();
    let twig = Twig::up_in(&dir, "data", &lattice_args(&topo));
    twig.wait_serving();
    let id = twig.host_id();
    let ctl = ctl_client(&topo).await;

    let r = ctl
        .start_provider(
            &id,
            "ghcr.io/wasmcloud/http-server:0.27.0",
            "lat-http",
            None,
            vec![],
        )
        .await
        .expect("provider start");
    assert!(r.succeeded(), "{r:?}");
    let echo = format!(
        "file://{}",
        twig_integration_tests::guest_path("http-echo")
            .canonicalize()
            .expect("canonical")
            .display()
    );
    let r = ctl
        .scale_component(&id, &echo, "lat-echo", 1, None, vec![], false)
        .await
        .expect("scale");
    assert!(r.succeeded(), "{r:?}");

    let (port_a, port_b) = (
        twig_integration_tests::topology::free_port(),
        twig_integration_tests::topology::free_port(),
    );
    let address = |port: u16| HashMap::from([("address".to_string(), format!("127.0.0.1:{port}"))]);
    // A port something else holds: the link is stored, but the reply says
    // the listener could not start (not "success").
    let busy = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy_port = busy.local_addr().expect("addr").port();
    let r = ctl
        .put_config("lat-http-listen", address(busy_port))
        .await
        .expect("config");
    assert!(r.succeeded(), "{r:?}");
    let r = ctl.put_link(http_link()).await.expect("link put");
    assert!(!r.succeeded(), "{r:?}");
    assert!(
        r.message().contains("cannot act on it") && r.message().contains(&busy_port.to_string()),
        "{r:?}"
    );
    drop(busy);
    let r = ctl
        .put_config("lat-http-listen", address(port_a))
        .await
        .expect("config");
    assert!(r.succeeded(), "{r:?}");
    let r = ctl.put_link(http_link()).await.expect("link put");
    assert!(r.succeeded(), "{r:?}");

    let answer = wait_http(&twig, port_a, "/from-the-lattice", true);
    assert!(
        answer.to_lowercase().contains("x-path: /from-the-lattice"),
        "{answer}"
    );

    // New config: the listener moves.
    let r = ctl
        .put_config("lat-http-listen", address(port_b))
        .await
        .expect("config");
    assert!(r.succeeded(), "{r:?}");
    wait_http(&twig, port_b, "/moved", true);
    wait_http(&twig, port_a, "/", false);

    // No link, no listener; the component itself keeps running.
    let r = ctl
        .delete_link("lat-http", "default", "wasi", "http")
        .await
        .expect("link del");
    assert!(r.succeeded(), "{r:?}");
    wait_http(&twig, port_b, "/", false);
    let (state, _) = Twig::component_state(&twig.status(), "lat-echo");
    assert_eq!(state, "running");
}

/// Reconciliation: what the lattice decides while a device is away is
/// applied when it comes back, and the device's own manifest stays in
/// force throughout.
///
/// Device A sits on the leaf with the demo app from its own manifest and
/// two components scaled onto it by the control client (a greeter with a
/// named config, and a frontend that imports the greeter but has no link
/// yet). The leaf goes down, so A is cut off. Meanwhile a second host, B,
/// connected straight to the core, answers the control client: the
/// greeter's config changes and the frontend's link is put. When the
/// leaf returns, A re-announces itself and, without being told, serves
/// the new config through the new link.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn links_and_config_changed_while_away_are_applied_on_return() {
    let dir = TempDir::new("lattice-reconcile");
    let mut topo = Topology::start();
    let mut args_a = lattice_args(&topo);
    args_a.extend(["--app".to_string(), demo_manifest()]);
    let twig_a = Twig::up_in(&dir, "a", &args_a);
    // B is a host of the core itself (TLS, creds; the core asks for no
    // client certificate).
    let args_b: Vec<String> = vec![
        "--nats-url".into(),
        topo.core_url(),
        "--nats-creds".into(),
        topo.user_creds.display().to_string(),
        "--nats-tls-ca".into(),
        topo.ca_pem.display().to_string(),
        "--js-domain".into(),
        "core".into(),
        "--heartbeat-secs".into(),
        "1".into(),
        "--friendly-name".into(),
        "core-b".into(),
    ];
    let twig_b = Twig::up_in(&dir, "b", &args_b);
    twig_a.wait_serving();
    twig_b.wait_serving();
    let a = twig_a.host_id();

    // The operator's tool talks to the core, which stays up throughout.
    let nc = topo.core_client().await.unwrap_or_else(|e| panic!("{e}"));
    let ctl = ClientBuilder::new(nc)
        .timeout(Duration::from_secs(5))
        .auction_timeout(Duration::from_secs(2))
        .build();
    let mut events = ctl
        .events_receiver(vec!["component_scaled".into()])
        .await
        .expect("events");
    let put_greeting = |greeting: &'static str| {
        let ctl = &ctl;
        async move {
            let r = ctl
                .put_config(
                    "away-greeter-config",
                    HashMap::from([("greeting".to_string(), greeting.to_string())]),
                )
                .await
                .expect("put config");
            assert!(r.succeeded(), "{r:?}");
        }
    };
    put_greeting("Hej").await;
    for (cid, file, config) in [
        (
            "away-greeter",
            "greeter",
            vec!["away-greeter-config".to_string()],
        ),
        ("away-frontend", "frontend", vec![]),
    ] {
        let r = ctl
            .scale_component(&a, &file_ref(file), cid, 1, None, config, false)
            .await
            .expect("scale");
        assert!(r.succeeded(), "{r:?}");
        next_event(&mut events, "component_scaled", |d| {
            d["component_id"] == cid
        })
        .await;
    }
    twig_a.invoke_until(
        "away-greeter",
        "greet",
        &["\"Ada\""],
        "\"Hej, Ada!\"",
        || format!("A:\n{}", twig_a.log_text()),
    );
    let unlinked = twig_a.invoke("away-frontend", "welcome", &["\"Ada\""]);
    assert!(
        !unlinked.status.success(),
        "the frontend has no link yet: {}",
        stdout(&unlinked)
    );

    // A is cut off.
    topo.stop_leaf();
    twig_a.wait_disconnected();

    // The lattice moves on without it; B answers the control client.
    put_greeting("Hallo").await;
    let link = Link::builder()
        .source_id("away-frontend")
        .target("away-greeter")
        .name("default")
        .wit_namespace("twig")
        .wit_package("demo")
        .interfaces(vec!["greeter".to_string()])
        .build()
        .expect("link");
    let r = ctl.put_link(link).await.expect("put link");
    assert!(r.succeeded(), "{r:?}");
    // Away, A still runs what it had and its own manifest's app.
    let o = twig_a.invoke("away-greeter", "greet", &["\"Ada\""]);
    assert_eq!(stdout(&o).trim(), "\"Hej, Ada!\"", "A away");
    twig_a.assert_demo_answers();

    // A is back: it catches up with both changes by itself.
    topo.start_leaf();
    twig_a.wait_serving();
    twig_a.invoke_until(
        "away-frontend",
        "welcome",
        &["\"Ada\""],
        "\"Hallo, Ada! (via frontend)\"",
        || format!("A:\n{}", twig_a.log_text()),
    );
    // It announced itself again: the control client sees it.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let hosts = ctl.get_hosts().await.expect("hosts");
        if hosts.iter().filter_map(|h| h.data()).any(|h| h.id() == a) {
            break;
        }
        assert!(Instant::now() < deadline, "A not among the hosts");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The device's own manifest was never overridden.
    twig_a.assert_demo_answers();
}

/// Operations on one component id run in the order they arrived, though
/// each is acknowledged before it runs: a scale to 2 followed at once by a
/// scale to 0 ends with the component stopped, every time. Each round's
/// annotations carry its number, so its two `component_scaled` events are
/// told apart from other rounds'; the scale to 2 must be told first, and
/// the inventory after the scale to 0 must not list the component.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scale_to_zero_right_after_a_scale_up_ends_stopped_every_time() {
    const ROUNDS: usize = 100;
    let dir = TempDir::new("lattice-order");
    let topo = Topology::start();
    let twig = Twig::up_in(&dir, "data", &lattice_args(&topo));
    twig.wait_serving();
    let id = twig.host_id();
    let ctl = ctl_client(&topo).await;
    let mut events = ctl
        .events_receiver(vec![
            "component_scaled".into(),
            "component_scale_failed".into(),
        ])
        .await
        .expect("event subscription");
    let greeter = file_ref("greeter");
    let cid = "lat-order";
    let started = Instant::now();
    for round in 0..ROUNDS {
        let annotations = BTreeMap::from([("round".to_string(), round.to_string())]);
        for n in [2, 0] {
            let r = ctl
                .scale_component(
                    &id,
                    &greeter,
                    cid,
                    n,
                    Some(annotations.clone()),
                    vec![],
                    false,
                )
                .await
                .expect("scale reply");
            assert!(r.succeeded(), "round {round}: scale to {n}: {r:?}");
        }
        let tag = round.to_string();
        let this_round =
            |d: &serde_json::Value| d["component_id"] == cid && d["annotations"]["round"] == *tag;
        let first = next_event(&mut events, "component_scaled", this_round).await;
        assert_eq!(
            first["data"]["max_instances"], 2,
            "round {round}: the scale to 0 overtook the scale to 2: {first}"
        );
        let second = next_event(&mut events, "component_scaled", this_round).await;
        assert_eq!(
            second["data"]["max_instances"], 0,
            "round {round}: {second}"
        );
        let inv = ctl
            .get_host_inventory(&id)
            .await
            .expect("inventory")
            .into_data()
            .expect("inventory data");
        assert!(
            inv.components().iter().all(|c| c.id() != cid),
            "round {round}: {cid} still runs after its scale to 0: {:?}",
            inv.components()
        );
    }
    let took = started.elapsed();
    eprintln!("{ROUNDS} rounds of scale 2 → 0 in {took:?}");
    assert!(
        took < Duration::from_secs(90),
        "{ROUNDS} rounds took {took:?}"
    );
}

/// The full copy of the buckets that twig takes after it connects reads no
/// more than the board's byte budget for lattice data
/// (`control.max_lattice_kib`): a bucket of 64 entries of 1 KiB on a board
/// with 16 KiB is read to its 16th entry, and the rest is left unread with
/// one warning, not loaded and then cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_full_copy_of_the_buckets_stops_at_the_boards_byte_budget() {
    let dir = TempDir::new("lattice-budget");
    let topo = Topology::start();
    let nc = leaf_client(&topo).await;
    let js = nats::jetstream::with_domain(nc.clone(), "core");
    let configs = js
        .create_key_value(nats::jetstream::kv::Config {
            bucket: "CONFIGDATA_default".into(),
            history: 1,
            ..Default::default()
        })
        .await
        .expect("the config bucket");
    // Key (6 bytes) and value (1,010) make 1,016 bytes an entry: 16 fit in
    // 16 KiB, the 17th does not.
    let value = serde_json::to_vec(&HashMap::from([("v", "x".repeat(1000))])).expect("json");
    for i in 0..64 {
        configs
            .put(format!("cfg-{i:02}"), value.clone().into())
            .await
            .expect("config put");
    }
    let mut args = lattice_args(&topo);
    args.extend(["--control".to_string(), "max_lattice_kib=16".to_string()]);
    let twig = Twig::up_in(&dir, "data", &args);
    twig.wait_serving();
    let deadline = Instant::now() + Duration::from_secs(20);
    let log = loop {
        let log = twig.log_text();
        if log.contains("lattice data copied") {
            break log;
        }
        assert!(
            Instant::now() < deadline,
            "no full copy within 20 s; log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let log = strip_ansi(&log);
    let warning = log
        .lines()
        .find(|l| l.contains("the rest of the bucket is not read"))
        .unwrap_or_else(|| panic!("no warning of the unread rest; log:\n{log}"));
    assert!(warning.contains("CONFIGDATA_default"), "{warning}");
    assert!(
        warning.contains("read=16") || warning.contains("\"read\":16"),
        "{warning}"
    );
    let copied = log
        .lines()
        .find(|l| l.contains("lattice data copied"))
        .expect("copied line");
    assert!(
        copied.contains("configs=16") || copied.contains("\"configs\":16"),
        "{copied}"
    );
}

/// `text` without its terminal colour codes (`ESC [ … m`), which the log
/// puts around field names.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
