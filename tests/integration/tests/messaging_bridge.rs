//! The messaging bridge (issue 17): a component behind twig's stand-in for
//! `ghcr.io/wasmcloud/messaging-nats`, driven by plain NATS clients through
//! a real edge-to-core topology (twig on the leaf over mutual TLS, the
//! clients on the core), as a wasmCloud user's manifest has it: the
//! provider's `handler` link subscribes the component to
//! `wasmcloud.echo` and a queue-grouped `jobs.>`, the component's
//! `consumer` link lets it publish and request.
//!
//! The component (`echo-messaging`) answers every message that has a
//! reply subject with its body, as wasmCloud's echo-messaging example
//! does; the provider never answers for it.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

use async_nats_039 as nats;
use futures::StreamExt as _;
use twig_integration_tests::apps::echo_messaging_manifest as manifest;
use twig_integration_tests::guest_path;
use twig_integration_tests::topology::Topology;
use twig_integration_tests::twig::{stderr, stdout, uplink_args, TempDir, Twig};

/// A runtime whose spawned tasks (the responders) run while the test
/// thread invokes the component.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

/// Answers every request on `subject` with `pong: {body}` (or never, when
/// `answer` is false), from the core, until aborted.
fn responder(
    rt: &tokio::runtime::Runtime,
    core: &nats::Client,
    subject: &'static str,
    answer: bool,
) -> tokio::task::JoinHandle<()> {
    let mut sub = rt.block_on(async {
        let s = core.subscribe(subject).await.unwrap();
        core.flush().await.unwrap();
        s
    });
    let core = core.clone();
    rt.spawn(async move {
        while let Some(m) = sub.next().await {
            if let (Some(reply), true) = (m.reply, answer) {
                let mut body = b"pong: ".to_vec();
                body.extend_from_slice(&m.payload);
                core.publish(reply, body.into()).await.unwrap();
                core.flush().await.unwrap();
            }
        }
    })
}

/// A request from the core until twig's subscription upstream answers
/// (it is made in the background once the uplink is up); the reply.
async fn request_until_answered(
    client: &nats::Client,
    subject: &str,
    body: &'static [u8],
    twig: &Twig,
) -> nats::Message {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = tokio::time::timeout(
            Duration::from_secs(2),
            client.request(subject.to_string(), body.into()),
        )
        .await;
        match r {
            Ok(Ok(m)) => return m,
            other => assert!(
                Instant::now() < deadline,
                "no answer on {subject}: {other:?}\n{}",
                twig.log_text()
            ),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn nats_clients_reach_the_component_and_it_reaches_them() {
    let tmp = TempDir::new("msg-bridge");
    let topo = Topology::start();
    let app = manifest(tmp.path());
    let mut args = uplink_args(&topo);
    args.extend(["--app".to_string(), app]);
    let twig = Twig::up_in(&tmp, "d", &args);
    twig.wait_connected();
    let rt = runtime();
    // Subscriptions unsubscribe on drop, which needs the runtime.
    let _in_runtime = rt.enter();
    let core = rt.block_on(topo.core_client()).unwrap();

    // A request from the core is answered by the component on the device.
    let reply = rt.block_on(request_until_answered(
        &core,
        "wasmcloud.echo",
        b"hello",
        &twig,
    ));
    assert_eq!(&reply.payload[..], b"hello");
    let human = stdout(&twig.cli(&["status"]));
    assert!(
        human.contains("2 subscriptions, on the device and the lattice"),
        "{human}"
    );
    // The queue-grouped subscription answers too.
    let reply = rt.block_on(request_until_answered(
        &core,
        "jobs.resize",
        b"img-7",
        &twig,
    ));
    assert_eq!(&reply.payload[..], b"img-7");

    // A plain publish from the core is delivered (the component logs that
    // it has no reply subject), and once only.
    rt.block_on(async {
        core.publish("wasmcloud.echo", "no-reply".into())
            .await
            .unwrap();
        core.flush().await.unwrap();
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !twig
        .log_text()
        .contains("message on wasmcloud.echo has no reply subject")
    {
        assert!(
            Instant::now() < deadline,
            "not delivered:\n{}",
            twig.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The component's publish reaches a subscriber on the core, once.
    let mut out = rt.block_on(async {
        let s = core.subscribe("device.out.>").await.unwrap();
        core.flush().await.unwrap();
        s
    });
    let o = twig.invoke(
        "echo",
        "publish",
        &[r#""device.out.a""#, r#""from the device""#],
    );
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let got = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), out.next()).await })
        .expect("the publish reached the core")
        .unwrap();
    assert_eq!(got.subject.as_str(), "device.out.a");
    assert_eq!(&got.payload[..], b"from the device");
    let again =
        rt.block_on(async { tokio::time::timeout(Duration::from_millis(500), out.next()).await });
    assert!(again.is_err(), "delivered twice: {again:?}");

    // The component's request is answered by a responder on the core.
    let svc = responder(&rt, &core, "svc.time", true);
    let o = twig.invoke("echo", "request", &[r#""svc.time""#, r#""ping""#, "5000"]);
    assert_eq!(
        stdout(&o).trim(),
        r#"ok("pong: ping")"#,
        "{}{}",
        stderr(&o),
        twig.log_text()
    );
    svc.abort();

    // Nothing on the lattice answers: wasmCloud's provider's words, at once.
    let began = Instant::now();
    let o = twig.invoke("echo", "request", &[r#""svc.nobody""#, r#""?""#, "5000"]);
    let text = stdout(&o);
    assert!(text.contains("no responders"), "{text}{}", stderr(&o));
    assert!(
        began.elapsed() < Duration::from_secs(4),
        "{:?}",
        began.elapsed()
    );

    // Offline: a request fails at once, naming the cause; a publish that
    // nothing on the device takes fails too, rather than vanish.
    drop(core);
    drop(topo);
    twig.wait_disconnected();
    // The messaging link is a connection of its own: it may see the server
    // go a moment after the uplink does. Once it has, a request fails at
    // once (well inside its 5 s timeout) naming the cause.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let began = Instant::now();
        let o = twig.invoke("echo", "request", &[r#""svc.time""#, r#""ping""#, "5000"]);
        let text = stdout(&o);
        if text.contains("not connected to the lattice (the uplink is down)") {
            assert!(
                began.elapsed() < Duration::from_secs(3),
                "{:?}",
                began.elapsed()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a request offline: {text}{}",
            stderr(&o)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = twig.invoke("echo", "publish", &[r#""device.out.b""#, r#""lost?""#]);
    let text = stdout(&o);
    assert!(
        text.contains("not connected to the lattice") && text.contains("device.out.b"),
        "{text}{}",
        stderr(&o)
    );
    // A device-local subject still works offline: the component's own
    // subscription answers its request on the bus.
    let o = twig.invoke(
        "echo",
        "request",
        &[r#""wasmcloud.echo""#, r#""local""#, "2000"],
    );
    assert_eq!(stdout(&o).trim(), r#"ok("local")"#, "{}", stderr(&o));
}

/// wasmCloud's 0.3.0 echo manifest: the component links `consumer` as the
/// 0.2.0 one does, and imports `producer` and `request-reply`@0.3.0.
fn manifest_v3(dir: &std::path::Path) -> String {
    let text = format!(
        "apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: echo-v3
spec:
  components:
    - name: echo3
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
              name: nats
            namespace: wasmcloud
            package: messaging
            interfaces: [consumer]
    - name: nats
      type: capability
      properties:
        image: ghcr.io/wasmcloud/messaging-nats:0.27.0
      traits:
        - type: link
          properties:
            target:
              name: echo3
            namespace: wasmcloud
            package: messaging
            interfaces: [handler]
            source:
              config:
                - name: simple-subscription
                  properties:
                    subscriptions: wasmcloud.echo3
",
        image = guest_path("echo-messaging-v3").display()
    );
    let path = dir.join("echo-v3.yaml");
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

#[test]
fn a_messaging_0_3_component_is_reached_and_reaches_out() {
    let tmp = TempDir::new("msg-bridge-v3");
    let topo = Topology::start();
    let mut args = uplink_args(&topo);
    args.extend(["--app".to_string(), manifest_v3(tmp.path())]);
    let twig = Twig::up_in(&tmp, "d", &args);
    twig.wait_connected();
    let rt = runtime();
    let _in_runtime = rt.enter();
    let core = rt.block_on(topo.core_client()).unwrap();

    // `handle` gets the message as a resource and answers with `reply`.
    let reply = rt.block_on(request_until_answered(
        &core,
        "wasmcloud.echo3",
        b"v3?",
        &twig,
    ));
    assert_eq!(&reply.payload[..], b"v3?");

    // `producer.send` reaches the core.
    let mut out = rt.block_on(async {
        let s = core.subscribe("device.v3").await.unwrap();
        core.flush().await.unwrap();
        s
    });
    let o = twig.invoke("echo3", "send", &[r#""device.v3""#, r#""sent""#]);
    assert_eq!(stdout(&o).trim(), "ok", "{}", stderr(&o));
    let got = rt
        .block_on(async { tokio::time::timeout(Duration::from_secs(10), out.next()).await })
        .expect("send reached the core")
        .unwrap();
    assert_eq!(&got.payload[..], b"sent");
    // With metadata: refused, as wasmCloud refuses it on the way to its
    // messaging-nats provider.
    let o = twig.invoke(
        "echo3",
        "send-with-metadata",
        &[r#""device.v3""#, r#""meta""#],
    );
    assert_eq!(
        stdout(&o).trim(),
        r#"err("other: `metadata` not currently supported by wRPC targets")"#,
        "{}",
        stderr(&o)
    );

    // `request-reply.request` waits for the reply (wasmCloud 1.9 only
    // publishes here); the reply's topic is the requester's inbox.
    let svc = responder(&rt, &core, "svc.v3", true);
    let o = twig.invoke("echo3", "request", &[r#""svc.v3""#, r#""ping""#, "5000"]);
    let text = stdout(&o);
    assert!(
        text.starts_with("ok(\"_INBOX.") && text.trim().ends_with(": pong: ping\")"),
        "{text}{}",
        stderr(&o)
    );
    svc.abort();
    // A responder that never answers: the `timeout` case, after the
    // request's own timeout.
    let silent = responder(&rt, &core, "svc.silent", false);
    let began = Instant::now();
    let o = twig.invoke("echo3", "request", &[r#""svc.silent""#, r#""?""#, "300"]);
    assert_eq!(stdout(&o).trim(), r#"err("timeout")"#, "{}", stderr(&o));
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "{:?}",
        began.elapsed()
    );
    silent.abort();
    // Nobody: the provider's error text in `other`.
    let o = twig.invoke("echo3", "request", &[r#""svc.none""#, r#""?""#, "2000"]);
    let text = stdout(&o);
    assert!(
        text.contains("other: nats send error") && text.contains("no responders"),
        "{text}"
    );
}
