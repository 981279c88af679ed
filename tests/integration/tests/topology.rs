//! Tests of the NATS topology helper itself (`twig_integration_tests::
//! topology`), with an unmodified async-nats client: that the leaf demands
//! what a deployment would (TLS with a client certificate, a user JWT of a
//! known account), that permissions from the JWT are enforced, that the
//! `core` JetStream domain is reachable through the leaf, and that data in
//! it survives a core outage.
//!
//! Needs `$NATS_SERVER`.
#![forbid(unsafe_code)]

use std::path::Path;
use std::time::{Duration, Instant};

use async_nats_039 as nats;
use futures::StreamExt as _;
use nats::jetstream::{self, kv};
use tokio::sync::mpsc;
use tokio::time::timeout;
use twig_integration_tests::topology::{Server, Topology, CORE_DOMAIN, LEAF_DOMAIN};

const BUCKET: &str = "LATTICEDATA_test";
const WAIT: Duration = Duration::from_secs(5);

/// Connect options for a client of the leaf: the test CA as the only root,
/// the client certificate, and `creds`.
async fn leaf_options(t: &Topology, creds: &Path) -> nats::ConnectOptions {
    nats::ConnectOptions::with_credentials_file(creds)
        .await
        .expect("read creds file")
        .add_root_certificates(t.ca_pem.clone())
        .add_client_certificate(t.client_cert_pem.clone(), t.client_key_pem.clone())
        .require_tls(true)
        .connection_timeout(WAIT)
}

async fn connect_leaf(t: &Topology, name: &str) -> nats::Client {
    leaf_options(t, &t.user_creds)
        .await
        .name(name)
        .connect(t.leaf_url())
        .await
        .unwrap_or_else(|e| panic!("connect to the leaf: {e}\n{}", t.log_tail(Server::Leaf)))
}

/// A client of the core: server-authenticated TLS and the user JWT, no
/// client certificate.
async fn connect_core(t: &Topology, name: &str) -> nats::Client {
    nats::ConnectOptions::with_credentials_file(&t.user_creds)
        .await
        .expect("read creds file")
        .add_root_certificates(t.ca_pem.clone())
        .require_tls(true)
        .connection_timeout(WAIT)
        .name(name)
        .connect(t.core_url())
        .await
        .unwrap_or_else(|e| panic!("connect to the core: {e}\n{}", t.log_tail(Server::Core)))
}

async fn next_msg(sub: &mut nats::Subscriber, what: &str) -> nats::Message {
    timeout(WAIT, sub.next())
        .await
        .unwrap_or_else(|_| panic!("no message on {what} within {WAIT:?}"))
        .unwrap_or_else(|| panic!("subscription to {what} ended"))
}

/// Wait until the server has processed everything `client` sent before.
/// `flush` only empties the client's write buffer; a request to a subject
/// no one serves is answered by the server itself, and it answers in order,
/// so once the "no responders" reply is back every earlier SUB is in place.
async fn round_trip(client: &nats::Client) {
    match timeout(WAIT, client.request("topo.round-trip", "".into())).await {
        Ok(Err(e)) if e.kind() == nats::RequestErrorKind::NoResponders => {}
        other => panic!("round trip to the server: {other:?}"),
    }
}

/// Makes the test's KV bucket in domain `core` through `client` (a client
/// of the leaf).
async fn core_bucket(client: &nats::Client) -> kv::Store {
    jetstream::with_domain(client.clone(), CORE_DOMAIN)
        .create_key_value(kv::Config {
            bucket: BUCKET.to_string(),
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .expect("create KV bucket in domain core")
}

async fn kv_get(store: &kv::Store, key: &str) -> Option<Vec<u8>> {
    store
        .get(key)
        .await
        .unwrap_or_else(|e| panic!("KV get {key}: {e}"))
        .map(|b| b.to_vec())
}

#[tokio::test(flavor = "multi_thread")]
async fn leaf_carries_messages_and_the_core_domain() {
    let t = Topology::start();
    let leaf = connect_leaf(&t, "topo-leaf-client").await;
    let core = connect_core(&t, "topo-core-client").await;
    assert!(
        t.connections(Server::Leaf)
            .contains(&"topo-leaf-client".to_string()),
        "{:?}",
        t.connections(Server::Leaf)
    );
    assert!(
        t.connections(Server::Core)
            .contains(&"topo-core-client".to_string()),
        "{:?}",
        t.connections(Server::Core)
    );

    // Round trip on the leaf alone.
    let mut sub = leaf.subscribe("topo.local").await.expect("subscribe");
    leaf.publish("topo.local", "hello".into())
        .await
        .expect("publish");
    assert_eq!(
        &next_msg(&mut sub, "topo.local").await.payload[..],
        b"hello"
    );

    // APP subjects cross the leafnode link: a subscriber on the core hears a
    // publisher on the leaf. The subscription's interest needs a moment to
    // reach the leaf, so publish until the first message arrives.
    let mut on_core = core.subscribe("topo.up").await.expect("subscribe on core");
    core.flush().await.expect("flush core");
    let deadline = Instant::now() + WAIT;
    let msg = loop {
        leaf.publish("topo.up", "across".into())
            .await
            .expect("publish on leaf");
        leaf.flush().await.expect("flush leaf");
        if let Ok(m) = timeout(Duration::from_millis(200), on_core.next()).await {
            break m.expect("subscription ended");
        }
        assert!(Instant::now() < deadline, "core never heard the leaf");
    };
    assert_eq!(&msg.payload[..], b"across");

    // A KV bucket made through domain `core` from the leaf ...
    let store = core_bucket(&leaf).await;
    store
        .put("greeting", "from the leaf".into())
        .await
        .expect("KV put through the leaf");
    assert_eq!(
        kv_get(&store, "greeting").await.as_deref(),
        Some(&b"from the leaf"[..])
    );

    // ... lives on the core: a client of the core sees it locally ...
    let on_core = jetstream::new(core.clone())
        .get_key_value(BUCKET)
        .await
        .expect("the bucket exists on the core");
    assert_eq!(
        kv_get(&on_core, "greeting").await.as_deref(),
        Some(&b"from the leaf"[..])
    );
    // ... and not in the leaf's own domain.
    let err = jetstream::with_domain(leaf.clone(), LEAF_DOMAIN)
        .get_key_value(BUCKET)
        .await
        .expect_err("the bucket must not exist in domain leaf");
    assert!(err.to_string().contains("not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn leaf_refuses_wrong_credentials_ca_and_missing_client_cert() {
    let t = Topology::start();

    // A user JWT signed by an account the servers do not know.
    let err = leaf_options(&t, &t.bad_creds)
        .await
        .connect(t.leaf_url())
        .await
        .expect_err("bad creds must be refused");
    assert_eq!(
        err.kind(),
        nats::ConnectErrorKind::AuthorizationViolation,
        "{err}"
    );

    // A client that trusts only another CA rejects the server certificate.
    let err = nats::ConnectOptions::with_credentials_file(&t.user_creds)
        .await
        .expect("read creds file")
        .add_root_certificates(t.untrusted_ca_pem.clone())
        .add_client_certificate(t.client_cert_pem.clone(), t.client_key_pem.clone())
        .require_tls(true)
        .connection_timeout(WAIT)
        .connect(t.leaf_url())
        .await
        .expect_err("a server certificate from an unknown CA must be rejected");
    // rustls says "invalid peer certificate: UnknownIssuer".
    let text = format!("{err:?} {err}");
    assert!(text.contains("UnknownIssuer"), "{text}");

    // No client certificate: the leaf insists on mTLS.
    let err = nats::ConnectOptions::with_credentials_file(&t.user_creds)
        .await
        .expect("read creds file")
        .add_root_certificates(t.ca_pem.clone())
        .require_tls(true)
        .connection_timeout(WAIT)
        .connect(t.leaf_url())
        .await
        .expect_err("a client without a certificate must be refused");
    // With TLS 1.3 the client learns of it from the server's alert.
    assert!(format!("{err}").contains("CertificateRequired"), "{err}");
    let log = t.wait_for_log(Server::Leaf, "didn't provide a certificate");
    assert!(
        log.contains("didn't provide a certificate"),
        "leaf log:\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_publish_deny_is_enforced() {
    let t = Topology::start();
    let (tx, mut events) = mpsc::unbounded_channel();
    let denied = leaf_options(&t, &t.deny_evt_creds)
        .await
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                let _ = tx.send(e);
            }
        })
        .connect(t.leaf_url())
        .await
        .expect("connect with deny-evt creds");
    // A full-permission listener, to prove the denied message goes nowhere.
    let listener = connect_leaf(&t, "listener").await;
    let mut evt = listener
        .subscribe("wasmbus.evt.>")
        .await
        .expect("subscribe");
    let mut ok = listener
        .subscribe("wasmbus.ctl.x")
        .await
        .expect("subscribe");
    round_trip(&listener).await;

    denied
        .publish("wasmbus.evt.x", "nope".into())
        .await
        .expect("publish is buffered");
    denied
        .publish("wasmbus.ctl.x", "fine".into())
        .await
        .expect("publish");
    denied.flush().await.expect("flush");

    let deadline = Instant::now() + WAIT;
    let violation = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, events.recv()).await {
            Ok(Some(nats::Event::ServerError(nats::ServerError::Other(m)))) => break m,
            Ok(Some(_)) => continue,
            Ok(None) | Err(_) => panic!("no permissions violation reported"),
        }
    };
    assert!(
        violation.contains(r#"Permissions Violation for Publish to "wasmbus.evt.x""#),
        "{violation}"
    );
    // The allowed subject got through, and the denied one did not.
    assert_eq!(
        &next_msg(&mut ok, "wasmbus.ctl.x").await.payload[..],
        b"fine"
    );
    assert!(
        timeout(Duration::from_millis(300), evt.next())
            .await
            .is_err(),
        "a denied publish was delivered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn core_outage_keeps_the_leaf_up_and_the_kv_data() {
    let mut t = Topology::start();
    let leaf = connect_leaf(&t, "topo-outage").await;
    let store = core_bucket(&leaf).await;
    store
        .put("kept", "across the outage".into())
        .await
        .expect("KV put");

    t.stop_core();
    // The leaf and its clients stay up; only the core domain is gone.
    let mut sub = leaf.subscribe("topo.still").await.expect("subscribe");
    leaf.publish("topo.still", "here".into())
        .await
        .expect("publish");
    assert_eq!(&next_msg(&mut sub, "topo.still").await.payload[..], b"here");
    assert_eq!(leaf.connection_state(), nats::connection::State::Connected);
    let err = timeout(WAIT * 2, store.get("kept"))
        .await
        .expect("KV get must fail quickly, not hang")
        .expect_err("KV get must fail while the core is down");
    eprintln!("during the outage: {err}");

    // Same ports, same store: the leaf relinks and the data is back.
    t.start_core();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match store.get("kept").await {
            Ok(Some(v)) => {
                assert_eq!(&v[..], b"across the outage");
                break;
            }
            other => assert!(
                Instant::now() < deadline,
                "after the restart: {other:?}\n{}",
                t.log_tail(Server::Core)
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
