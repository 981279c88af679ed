//! The lattice's NATS account is not a root password: attacks from a
//! client on that account against a device with the default control
//! policy (README, "Threat model"). Each is refused with a clear error
//! reply, or bounded; afterwards the device's own app answers, its
//! key-value data is what the device wrote, and `twig status` shows
//! nothing the attacker asked for.
//!
//! The attacker is an ordinary client of the leaf (the account's creds,
//! as any lattice tool has), speaking through the unmodified
//! `wasmcloud-control-interface` crate, raw NATS requests and the
//! JetStream KV API; the device is the real binary on a real leaf
//! topology (`twig_integration_tests::topology`).
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use async_nats_039 as nats;
use futures::StreamExt as _;
use twig_integration_tests::topology::{free_port, Topology};
use twig_integration_tests::twig::{
    demo_path, repo_root, up_on_free_port, uplink_args, TempDir, Twig,
};
use wasmcloud_control_interface::{Client, ClientBuilder, Link};

/// The device app: wasmCloud's HTTP counter (component, KV provider, HTTP
/// provider) on `port`. Ids: `rust_http_kv-counter`, `…-kvredis`,
/// `…-httpserver`.
fn counter_app(dir: &std::path::Path, port: u16) -> String {
    let text = std::fs::read_to_string(repo_root().join("examples/counter/app.yaml"))
        .expect("counter manifest")
        .replace(
            "../build/counter.wasm",
            demo_path("counter").to_str().expect("utf-8 path"),
        )
        .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
    let path = dir.join("counter.yaml");
    std::fs::write(&path, text).expect("write manifest");
    path.display().to_string()
}

const COUNTER: &str = "rust_http_kv-counter";
const KV: &str = "rust_http_kv-kvredis";
const HTTP: &str = "rust_http_kv-httpserver";

/// The counter's answer for `path`: the count, or `None` if nothing
/// answers on `port`.
fn count(port: u16, path: &str) -> Option<u64> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    // `Counter /hello: N`, possibly chunked: the last number in the text.
    let body = out.split_once("\r\n\r\n")?.1;
    let after = body.split(&format!("Counter {path}: ")).nth(1)?;
    after
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

async fn attacker(t: &Topology) -> (nats::Client, Client) {
    let nc = t.leaf_client().await.unwrap_or_else(|e| panic!("{e}"));
    let ctl = ClientBuilder::new(nc.clone())
        .timeout(Duration::from_secs(5))
        .auction_timeout(Duration::from_secs(2))
        .build();
    (nc, ctl)
}

/// A raw control request and its JSON reply.
async fn raw(nc: &nats::Client, op: &str, body: &[u8]) -> serde_json::Value {
    let m = tokio::time::timeout(
        Duration::from_secs(10),
        nc.request(format!("wasmbus.ctl.v1.default.{op}"), body.to_vec().into()),
    )
    .await
    .unwrap_or_else(|_| panic!("{op}: no reply in 10 s"))
    .unwrap_or_else(|e| panic!("{op}: {e}"));
    serde_json::from_slice(&m.payload).unwrap_or_else(|e| panic!("{op}: reply is not JSON: {e}"))
}

fn link(source: &str, target: &str, package: &str, iface: &str) -> Link {
    Link::builder()
        .source_id(source)
        .target(target)
        .name("default")
        .wit_namespace("wasi")
        .wit_package(package)
        .interfaces(vec![iface.to_string()])
        .build()
        .expect("link")
}

fn app_names(status: &serde_json::Value) -> Vec<String> {
    status["apps"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lattice_attacks_on_a_device_with_the_default_policy_are_refused() {
    let dir = TempDir::new("trust-lattice");
    let topo = Topology::start();
    let (twig, port) = up_on_free_port(|port| {
        let app = counter_app(dir.path(), port);
        let mut args = uplink_args(&topo);
        args.extend(["--app".to_string(), app]);
        let twig = Twig::up_in(&dir, "data", &args);
        twig.settled(1);
        twig
    });
    twig.wait_serving();
    let id = twig.host_id();
    assert_eq!(count(port, "/hello"), Some(1));
    let (nc, ctl) = attacker(&topo).await;

    // host.stop: refused, and twig keeps running.
    let r = ctl.stop_host(&id, None).await.expect("stop reply");
    assert!(!r.succeeded(), "{r:?}");
    assert!(r.message().contains("control.host_stop"), "{r:?}");

    // file:// from the lattice: refused outside control.file_dirs (none by
    // default), with the same words whether or not the file exists.
    let counter_wasm = demo_path("counter").canonicalize().expect("canonical");
    let mut refusals = Vec::new();
    for (n, path) in [
        counter_wasm.display().to_string(),
        "/etc/passwd".to_string(),
        "/no/such/file.wasm".to_string(),
    ]
    .iter()
    .enumerate()
    {
        let r = ctl
            .scale_component(
                &id,
                &format!("file://{path}"),
                &format!("evil-{n}"),
                1,
                None,
                vec![],
                false,
            )
            .await
            .expect("scale reply");
        assert!(!r.succeeded(), "{path}: {r:?}");
        assert!(r.message().contains("control.file_dirs"), "{r:?}");
        refusals.push(r.message().replace(path.as_str(), "PATH"));
    }
    assert!(
        refusals.windows(2).all(|w| w[0] == w[1]),
        "the answers tell files apart: {refusals:?}"
    );

    // The device's own components: not scaled, stopped or relinked.
    let r = ctl
        .scale_component(&id, "twig:keyvalue", COUNTER, 0, None, vec![], false)
        .await
        .expect("scale reply");
    assert!(
        !r.succeeded() && r.message().contains("deployed on the device"),
        "{r:?}"
    );
    let r = ctl.stop_provider(&id, HTTP).await.expect("stop reply");
    assert!(
        !r.succeeded() && r.message().contains("deployed on the device"),
        "{r:?}"
    );
    // As a link's source (the device's HTTP server), as its target (the
    // device's KV store, its component), and deleting the device's links.
    for l in [
        link(HTTP, "evil-handler", "http", "incoming-handler"),
        link("evil-reader", KV, "keyvalue", "store"),
        link("evil-http", COUNTER, "http", "incoming-handler"),
    ] {
        let r = ctl.put_link(l.clone()).await.expect("link reply");
        assert!(!r.succeeded(), "{l:?}: {r:?}");
        assert!(
            r.message().contains("deployed on the device itself"),
            "{r:?}"
        );
    }
    let r = ctl
        .delete_link(HTTP, "default", "wasi", "http")
        .await
        .expect("link del reply");
    assert!(!r.succeeded(), "{r:?}");

    // The same links written straight into the lattice's bucket (anyone
    // on the account can): the device ignores them.
    let evil_port = free_port();
    let js = nats::jetstream::with_domain(nc.clone(), "core");
    let links = js
        .get_key_value("LATTICEDATA_default")
        .await
        .expect("the lattice data bucket (twig made it)");
    let configs = js
        .get_key_value("CONFIGDATA_default")
        .await
        .expect("the config bucket (twig made it)");
    configs
        .put(
            "evil-listen",
            serde_json::to_vec(&HashMap::from([(
                "address",
                format!("127.0.0.1:{evil_port}"),
            )]))
            .unwrap()
            .into(),
        )
        .await
        .expect("config put");
    let relink = serde_json::json!({"url": "", "links": [{
        "source_id": HTTP, "target": COUNTER, "name": "evil",
        "wit_namespace": "wasi", "wit_package": "http",
        "interfaces": ["incoming-handler"], "source_config": ["evil-listen"], "target_config": []
    }]});
    links
        .put(format!("COMPONENT_{HTTP}"), relink.to_string().into())
        .await
        .expect("bucket put");
    let reach = serde_json::json!({"url": "", "links": [{
        "source_id": "evil-reader", "target": KV, "name": "default",
        "wit_namespace": "wasi", "wit_package": "keyvalue",
        "interfaces": ["store"], "source_config": [], "target_config": []
    }]});
    links
        .put("COMPONENT_evil-reader", reach.to_string().into())
        .await
        .expect("bucket put");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !twig
        .log_text()
        .contains("rust_http_kv-httpserver` belongs to the device's own manifest")
    {
        assert!(
            Instant::now() < deadline,
            "the watcher did not see the bucket write; log:\n{}",
            twig.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        TcpStream::connect(("127.0.0.1", evil_port)).is_err(),
        "the device's HTTP server was relinked onto the attacker's port"
    );

    // Config: a flood of large entries is not kept (bounded), small ones
    // are kept up to control.max_config_entries.
    let big = "x".repeat(600 * 1024);
    for i in 0..10 {
        let r = ctl
            .put_config(
                &format!("flood-{i}"),
                HashMap::from([("v".to_string(), big.clone())]),
            )
            .await
            .expect("config reply");
        assert!(r.message().contains("does not keep"), "{r:?}");
    }
    for i in 0..300 {
        configs
            .put(format!("small-{i}"), b"{\"k\":\"v\"}".to_vec().into())
            .await
            .expect("config put");
    }
    // Labels: at most control.max_labels from the lattice.
    let mut refused_label = None;
    for i in 0..40 {
        let r = ctl
            .put_label(&id, &format!("evil{i}"), "x")
            .await
            .expect("label reply");
        if !r.succeeded() {
            refused_label = Some((i, r.message().to_string()));
            break;
        }
    }
    let (at, why) = refused_label.expect("a label flood is refused");
    assert_eq!(at, 32, "{why}");
    assert!(why.contains("control.max_labels"), "{why}");

    // Hostile bytes: not JSON, oversize, addressed elsewhere.
    for (op, body) in [
        ("link.put".to_string(), b"{\"source_id\":".to_vec()),
        ("config.put.x".to_string(), vec![b'{'; 900 * 1024]),
        (format!("host.stop.{id}"), b"[]".to_vec()),
    ] {
        let v = raw(&nc, &op, &body).await;
        assert_eq!(v["success"], false, "{op}: {v}");
    }

    // Afterwards: the device's app answers and counts on from where the
    // device left it (the attacker wrote nothing to its store), and its
    // status shows only its own app.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(port, "/hello"), Some(2));
    let status = twig.status();
    assert_eq!(
        app_names(&status),
        vec!["rust-http-kv".to_string()],
        "{status}"
    );
    for c in [COUNTER, KV, HTTP] {
        assert_eq!(Twig::component_state(&status, c).0, "running", "{status}");
    }
    // What the device keeps of the lattice is bounded on disk.
    let lattice_json = std::fs::metadata(twig.data_dir.join("lattice.json"))
        .expect("lattice.json")
        .len();
    assert!(
        lattice_json < 2 * 512 * 1024,
        "lattice.json is {lattice_json} bytes"
    );

    // A reboot with no uplink (no --nats-url): the same app, the same
    // count, in little memory (the flood does not come back at boot).
    let mut twig = twig;
    twig.terminate();
    let data = twig.data_dir.clone();
    let twig = Twig::up(&data, &[]);
    twig.settled(1);
    assert_eq!(count(port, "/hello"), Some(3));
    let rss = rss_kib(twig.pid());
    assert!(rss < 64 * 1024, "RSS after the offline reboot: {rss} KiB");
    eprintln!("trust: lattice.json {lattice_json} bytes, RSS after offline reboot {rss} KiB");
}

/// The demo greeter as the lattice names it: a canonical `file://`
/// reference inside the tests' `control.file_dirs`.
fn greeter_ref() -> String {
    let p = demo_path("greeter").canonicalize().expect("canonical");
    format!("file://{}", p.display())
}

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

/// A lattice peer cannot make the host hold calls or parameters without
/// bound: past `wrpc_max_concurrent` a call fails at once, and parameters
/// past `wrpc_max_param_kib` fail the call. The device's own components
/// are not served to the lattice at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrpc_calls_from_the_lattice_are_bounded() {
    let dir = TempDir::new("trust-wrpc");
    let topo = Topology::start();
    let mut args = twig_integration_tests::twig::lattice_args(&topo);
    args.extend([
        "--app".to_string(),
        twig_integration_tests::twig::demo_manifest(),
        "--control".to_string(),
        "wrpc_max_concurrent=4".to_string(),
        "--control".to_string(),
        "wrpc_max_param_kib=64".to_string(),
    ]);
    let twig = Twig::up_in(&dir, "data", &args);
    twig.settled(1);
    twig.wait_serving();
    let id = twig.host_id();
    let (nc, ctl) = attacker(&topo).await;
    let greeter = greeter_ref();
    let r = ctl
        .scale_component(&id, &greeter, "lat-greeter", 1, None, vec![], false)
        .await
        .expect("scale");
    assert!(r.succeeded(), "{r:?}");

    // Scales at once past control.max_concurrent_scales (2): refused with
    // "busy", not queued. The control server answers in order, and each
    // accepted scale compiles and records its component after its reply,
    // so the third of a burst finds both slots taken.
    let burst = (0..4).map(|i| {
        let nc = nc.clone();
        let body = serde_json::json!({
            "component_ref": greeter, "component_id": format!("burst-{i}"),
            "count": 1, "host_id": id, "config": [], "allow_update": false,
        })
        .to_string();
        let id = id.clone();
        async move { raw(&nc, &format!("component.scale.{id}"), body.as_bytes()).await }
    });
    let replies = futures::future::join_all(burst).await;
    let busy = replies
        .iter()
        .filter(|v| {
            v["success"] == false
                && v["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("control.max_concurrent_scales"))
        })
        .count();
    assert!(busy >= 1, "no scale of the burst was refused: {replies:?}");
    // (The scale of lat-greeter above may still hold one slot.)
    assert!(replies.iter().any(|v| v["success"] == true), "{replies:?}");

    // The device's greeter is not served; the lattice's is (once its
    // subscription is up).
    let subject = |cid: &str| format!("default.{cid}.wrpc.0.0.1.twig:demo/greeter@0.1.0.greet");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let inbox = nc.new_inbox();
        let mut sub = nc.subscribe(inbox.clone()).await.expect("sub");
        // An incomplete string (length 1000, no bytes): twig waits for
        // more, holding a slot.
        nc.publish_with_reply(subject("lat-greeter"), inbox, vec![0xe8, 0x07].into())
            .await
            .expect("pub");
        // A handshake names the server's subject; before twig serves the
        // component the server answers "no responders" instead.
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
            if m.reply.is_some() {
                break;
            }
        }
        assert!(Instant::now() < deadline, "lat-greeter is never served");
    }
    let device = nc
        .request(subject("twig_demo-greeter"), vec![0x00].into())
        .await;
    assert!(
        device.is_err(),
        "the device's own greeter answered the lattice: {device:?}"
    );

    // Parameters past the cap: the call fails, nothing is kept.
    let inbox = nc.new_inbox();
    let mut results = nc.subscribe(format!("{inbox}.results")).await.expect("sub");
    let mut handshake = nc.subscribe(inbox.clone()).await.expect("sub");
    // A string of 1 MiB announced, 1 KiB sent.
    let mut first = vec![0x80, 0x80, 0x40];
    first.extend(vec![b'a'; 1024]);
    nc.publish_with_reply(subject("lat-greeter"), inbox, first.into())
        .await
        .expect("pub");
    let hs = tokio::time::timeout(Duration::from_secs(5), handshake.next())
        .await
        .expect("handshake in time")
        .expect("handshake");
    let params_to = format!("{}.params", hs.reply.expect("the server's reply subject"));
    for _ in 0..100 {
        nc.publish(params_to.clone(), vec![b'a'; 1024].into())
            .await
            .expect("pub");
    }
    let m = tokio::time::timeout(Duration::from_secs(5), results.next())
        .await
        .expect("an answer once the parameters pass the cap")
        .expect("results");
    assert!(m.payload.is_empty(), "the over-cap call failed");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !twig.log_text().contains("control.wrpc_max_param_kib") {
        assert!(Instant::now() < deadline, "log:\n{}", twig.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Many calls at once that never finish their parameters: at most 4
    // are held; the rest fail at once (handshake, then an empty result).
    let mut failed_fast = 0;
    let mut held = Vec::new();
    for _ in 0..20 {
        let inbox = nc.new_inbox();
        let results = nc.subscribe(format!("{inbox}.results")).await.expect("sub");
        let handshake = nc.subscribe(inbox.clone()).await.expect("sub");
        nc.publish_with_reply(subject("lat-greeter"), inbox, vec![0xe8, 0x07].into())
            .await
            .expect("pub");
        held.push((handshake, results));
    }
    for (_, results) in &mut held {
        if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(1500), results.next()).await
        {
            assert!(m.payload.is_empty(), "a refused call carries no results");
            failed_fast += 1;
        }
    }
    // One slot is still held by the probe above; of 20 more calls at
    // least 20 - 4 are refused at once.
    assert!(
        failed_fast >= 16,
        "only {failed_fast} of 20 were refused at once"
    );

    twig.assert_demo_answers();
}

/// A policy service (wasmCloud 1.x's protocol) decides what starts; no
/// answer in time is a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_service_is_asked_before_starts_and_silence_refuses() {
    let dir = TempDir::new("trust-policy");
    let topo = Topology::start();
    let mut args = twig_integration_tests::twig::lattice_args(&topo);
    args.extend([
        "--control".to_string(),
        "policy_subject=edge.policy".to_string(),
        "--control".to_string(),
        "policy_timeout_ms=500".to_string(),
    ]);
    let twig = Twig::up_in(&dir, "data", &args);
    twig.wait_serving();
    let id = twig.host_id();
    let (nc, ctl) = attacker(&topo).await;
    let greeter = greeter_ref();

    // No service answers yet: refused.
    let r = ctl
        .scale_component(&id, &greeter, "p-greeter", 1, None, vec![], false)
        .await
        .expect("scale");
    assert!(!r.succeeded(), "{r:?}");
    assert!(r.message().contains("policy service"), "{r:?}");

    // A service that permits only components with `trusted` in their id.
    let mut requests = nc.subscribe("edge.policy").await.expect("sub");
    let service_nc = nc.clone();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<serde_json::Value>::new()));
    let seen2 = seen.clone();
    tokio::spawn(async move {
        while let Some(m) = requests.next().await {
            let req: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_default();
            let permitted = req["request"]["componentId"]
                .as_str()
                .is_some_and(|c| c.contains("trusted"));
            let reply = serde_json::json!({
                "requestId": req["requestId"],
                "permitted": permitted,
                "message": if permitted { "ok" } else { "not on the list" },
            });
            seen2.lock().unwrap().push(req);
            if let Some(to) = m.reply {
                let _ = service_nc.publish(to, reply.to_string().into()).await;
            }
        }
    });
    let r = ctl
        .scale_component(&id, &greeter, "p-greeter", 1, None, vec![], false)
        .await
        .expect("scale");
    assert!(!r.succeeded(), "{r:?}");
    assert!(r.message().contains("not on the list"), "{r:?}");
    let r = ctl
        .scale_component(&id, &greeter, "trusted-greeter", 1, None, vec![], false)
        .await
        .expect("scale");
    assert!(r.succeeded(), "{r:?}");
    let req = seen
        .lock()
        .unwrap()
        .iter()
        .find(|r| r["request"]["componentId"] == "trusted-greeter")
        .cloned()
        .expect("the service saw the request");
    assert_eq!(req["kind"], "startComponent");
    assert_eq!(req["version"], "v1");
    assert_eq!(req["host"]["publicKey"], id.as_str());
    assert_eq!(req["host"]["lattice"], "default");
    assert_eq!(req["request"]["imageRef"], greeter.as_str());
    assert_eq!(req["request"]["maxInstances"], 1);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = twig.status();
        let running = s["apps"].as_array().into_iter().flatten().any(|a| {
            a["components"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["id"] == "trusted-greeter" && c["state"] == "running")
        });
        if running {
            assert!(
                !app_names(&s).contains(&"lattice:p-greeter".to_string()),
                "{s}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "{s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The control interface on a connection of its own (wasmCloud's
/// `--ctl-*`): here to the core directly, with another subject prefix. A
/// client speaking the default `wasmbus.ctl` on the lattice does not reach
/// the device; the fleet's client with the device's prefix does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_control_connection_takes_the_orders() {
    use twig_integration_tests::topology::Server;
    let dir = TempDir::new("trust-ctl");
    let topo = Topology::start();
    let mut args = twig_integration_tests::twig::lattice_args(&topo);
    args.extend([
        "--ctl-url".to_string(),
        topo.core_url(),
        "--ctl-creds".to_string(),
        topo.user_creds.display().to_string(),
        "--ctl-topic-prefix".to_string(),
        "fleet.ctl".to_string(),
    ]);
    let twig = Twig::up_in(&dir, "data", &args);
    twig.wait_serving();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = twig.status();
        if s["host"]["uplink"]["control"]["state"] == "connected" {
            assert_eq!(
                s["host"]["uplink"]["control"]["url"],
                topo.core_url().as_str(),
                "{s}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the control connection never came up: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let id = twig.host_id();
    assert!(
        topo.connections(Server::Core)
            .iter()
            .any(|n| n.ends_with(" control")),
        "no control connection at the core: {:?}",
        topo.connections(Server::Core)
    );

    // The default prefix, on the leaf: twig is not there.
    let (_nc, ctl) = attacker(&topo).await;
    let hosts = ctl.get_hosts().await.expect("ping");
    assert!(
        hosts.iter().filter_map(|r| r.data()).all(|h| h.id() != id),
        "twig answered on wasmbus.ctl: {hosts:?}"
    );

    // The fleet's client, on the core, with the device's prefix.
    let core = topo.core_client().await.unwrap_or_else(|e| panic!("{e}"));
    let fleet = ClientBuilder::new(core)
        .topic_prefix("fleet.ctl")
        .timeout(Duration::from_secs(5))
        .auction_timeout(Duration::from_secs(2))
        .build();
    let hosts = fleet.get_hosts().await.expect("ping");
    assert!(
        hosts.iter().filter_map(|r| r.data()).any(|h| h.id() == id),
        "twig did not answer on fleet.ctl: {hosts:?}"
    );
    let r = fleet
        .scale_component(&id, &greeter_ref(), "fleet-greeter", 1, None, vec![], false)
        .await
        .expect("scale");
    assert!(r.succeeded(), "{r:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = twig.status();
        if app_names(&s).contains(&"lattice:fleet-greeter".to_string()) {
            break;
        }
        assert!(Instant::now() < deadline, "{s}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `component.scale` of a large file in an allowed directory: refused
/// with its size and the board's cap, without reading it (a sparse 1 GiB
/// file; twig's memory stays small).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lattice_scale_of_an_oversize_file_is_refused_unread() {
    let dir = TempDir::new("trust-big");
    let topo = Topology::start();
    std::fs::create_dir_all(dir.path().join("images")).expect("mkdir");
    let images = dir.path().join("images").canonicalize().expect("canonical");
    let big = images.join("big.wasm");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(1 << 30))
        .expect("sparse file");
    let mut args = uplink_args(&topo);
    args.extend([
        "--control".to_string(),
        format!(
            "file_dirs=[{}]",
            serde_json::to_string(&images.display().to_string()).expect("path")
        ),
    ]);
    let twig = Twig::up_in(&dir, "data", &args);
    twig.wait_serving();
    let id = twig.host_id();
    let (_nc, ctl) = attacker(&topo).await;
    let r = ctl
        .scale_component(
            &id,
            &format!("file://{}", big.display()),
            "big",
            1,
            None,
            vec![],
            false,
        )
        .await
        .expect("scale reply");
    // Checked at once or after the reply (component_scale_failed): either
    // way the component never runs and the host did not read the file.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = twig.log_text();
        if !r.succeeded() || log.contains("max_image_mib") {
            let all = format!("{} {log}", r.message());
            assert!(all.contains("max_image_mib"), "{r:?}\n{log}");
            break;
        }
        assert!(Instant::now() < deadline, "{r:?}\n{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!app_names(&twig.status()).contains(&"lattice:big".to_string()));
    let rss = rss_kib(twig.pid());
    assert!(rss < 64 * 1024, "twig RSS after the refusal: {rss} KiB");
}
