//! The dispatcher against a real `Host` (the sim board, on a temp dir),
//! driven with request bytes as they come off the wire; no nats-server:
//! the client points at a closed port and never connects, and the two
//! buckets are `bucket_store::memory` (JetStream's revision rule, in memory).

use std::sync::{Arc, Mutex};

use super::super::agent::{Agent, CtlLink};
use super::super::wire::{self, Reply, Response};
use super::super::{buckets, HostIdentity, UplinkOptions, UplinkStatus};
use super::dispatch;
use crate::board::Board;
use crate::host::Host;
use crate::policy::Permit;

const HOST_ID: &str = "NCONTROLTESTHOST";

/// A fresh directory under the system's temp dir, removed on drop.
struct Scratch(std::path::PathBuf, #[allow(dead_code)] tempfile::TempDir);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let t = tempfile::Builder::new()
            .prefix(&format!("twig-control-{name}-"))
            .tempdir()
            .unwrap();
        Scratch(t.path().to_path_buf(), t)
    }
}

async fn agent(board: Board, dir: &Scratch) -> Arc<Agent> {
    let data = dir.0.join("data");
    crate::state::create_private_dir(&data).unwrap();
    let host = Host::open(board, &data).unwrap();
    // Port 1 on loopback: refused, so the client keeps retrying in the
    // background and never connects. Nothing here needs it to.
    let opts = UplinkOptions::new("nats://127.0.0.1:1");
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connect(opts.url.as_str())
        .await
        .unwrap();
    let status = Arc::new(Mutex::new(UplinkStatus::new(&opts)));
    let (_tx, connects) = tokio::sync::watch::channel(0u64);
    let max = host.board().control.max_concurrent_scales;
    Arc::new(Agent {
        ctl: CtlLink {
            client: client.clone(),
            status: status.clone(),
            connects: connects.clone(),
        },
        client,
        host,
        id: HostIdentity {
            host_id: HOST_ID.into(),
            friendly_name: "unit".into(),
        },
        opts,
        status,
        started: std::time::Instant::now(),
        connects,
        stop: Default::default(),
        buckets: crate::lattice::bucket_store::Buckets::memory(),
        serve_sync: Default::default(),
        scales: Arc::new(tokio::sync::Semaphore::new(max)),
        ordered: Default::default(),
    })
}

async fn ask(agent: &Arc<Agent>, op: &str, body: &str) -> Reply {
    dispatch(agent, op, body.as_bytes())
        .await
        .unwrap_or_else(|| panic!("{op}: no reply"))
}

fn refused(r: &Reply, needle: &str) {
    assert!(!r.success, "{r:?}");
    assert!(r.message.contains(needle), "want {needle:?} in {r:?}");
}

#[tokio::test]
async fn unknown_ops_and_malformed_requests_get_error_replies() {
    let dir = Scratch::new("bad");
    let a = agent(Board::sim(), &dir).await;
    let r = ask(&a, &format!("host.frobnicate.{HOST_ID}"), "{}").await;
    refused(&r, "not a control-interface operation twig knows");
    let r = ask(&a, &format!("component.scale.{HOST_ID}"), "{not json").await;
    refused(&r, "malformed request");
    let r = ask(&a, "component.scale.NSOMEONEELSE", "{}").await;
    refused(&r, "not this one");
    // The wire shape of a refusal: no `response`.
    let v: serde_json::Value = serde_json::from_slice(&super::encode(&r)).unwrap();
    assert_eq!(v["success"], false);
    assert!(v.get("response").is_none(), "{v}");
    assert!(!a.host.labels().contains_key("x"));
}

#[tokio::test]
async fn ping_and_inventory_answer_with_typed_responses() {
    let dir = Scratch::new("ping");
    let a = agent(Board::sim(), &dir).await;
    let r = ask(&a, "host.ping", "").await;
    let Some(Response::Host(h)) = &r.response else {
        panic!("{r:?}")
    };
    assert_eq!(h.id, HOST_ID);
    assert_eq!(h.lattice, "default");
    let r = ask(&a, &format!("host.get.{HOST_ID}"), "").await;
    let Some(Response::Inventory(inv)) = &r.response else {
        panic!("{r:?}")
    };
    assert_eq!(inv.host_id, HOST_ID);
    assert!(inv.components.is_empty(), "{inv:?}");
    assert!(dispatch(&a, "registry.put", b"{}").await.is_none());
}

#[tokio::test]
async fn a_denied_family_is_refused_and_its_auctions_get_no_bid() {
    let dir = Scratch::new("deny");
    let mut board = Board::sim();
    board.control.labels = Permit::Deny;
    board.control.scale = Permit::Deny;
    let a = agent(board, &dir).await;
    let r = ask(
        &a,
        &format!("label.put.{HOST_ID}"),
        r#"{"key":"site","value":"north"}"#,
    )
    .await;
    refused(&r, "control.labels = \"deny\"");
    assert!(!a.host.labels().contains_key("site"), "nothing changed");
    let r = ask(
        &a,
        &format!("component.scale.{HOST_ID}"),
        r#"{"component_ref":"file:///x.wasm","component_id":"c","count":1}"#,
    )
    .await;
    refused(&r, "control.scale = \"deny\"");
    let bid = dispatch(
        &a,
        "component.auction",
        br#"{"component_ref":"file:///x.wasm","component_id":"c","constraints":{}}"#,
    )
    .await;
    assert!(bid.is_none(), "{bid:?}");
    // Reads stay open.
    assert!(ask(&a, "host.ping", "").await.success);
}

#[tokio::test]
async fn a_scale_or_link_of_a_device_owned_id_is_refused() {
    let dir = Scratch::new("owned");
    let a = agent(Board::sim(), &dir).await;
    let manifest = r#"
apiVersion: core.oam.dev/v1beta1
kind: Application
metadata:
  name: device-app
spec:
  components:
    - name: kv
      type: capability
      properties:
        image: twig:keyvalue
        id: device-kv
"#;
    let host = a.host.clone();
    super::blocking(move || {
        host.apply(
            crate::host::ApplyRequest {
                file: None,
                text: manifest.into(),
                images: Default::default(),
            },
            false,
        )
    })
    .await
    .unwrap()
    .unwrap();
    let r = ask(
        &a,
        &format!("component.scale.{HOST_ID}"),
        r#"{"component_ref":"file:///x.wasm","component_id":"device-kv","count":1}"#,
    )
    .await;
    refused(&r, "belongs to app `device-app`");
    let r = ask(
        &a,
        "link.put",
        r#"{"source_id":"lat-c","target":"device-kv","wit_namespace":"wasi","wit_package":"keyvalue","interfaces":["store"]}"#,
    )
    .await;
    refused(&r, "link target `device-kv` belongs to app `device-app`");
    assert!(a.host.lattice_links().is_empty());
    // Every slot is free again: refusals hold none.
    assert_eq!(
        a.scales.available_permits(),
        a.host.board().control.max_concurrent_scales
    );
}

#[tokio::test]
async fn labels_are_put_and_deleted() {
    let dir = Scratch::new("labels");
    let a = agent(Board::sim(), &dir).await;
    let op = |o: &str| format!("label.{o}.{HOST_ID}");
    let r = ask(&a, &op("put"), r#"{"key":"site","value":"north"}"#).await;
    assert!(r.success, "{r:?}");
    assert_eq!(r.message, "successfully put label");
    assert_eq!(
        a.host.labels().get("site").map(String::as_str),
        Some("north")
    );
    let r = ask(&a, &op("del"), r#"{"key":"site"}"#).await;
    assert_eq!(r.message, "successfully deleted label", "{r:?}");
    assert!(!a.host.labels().contains_key("site"));
    let r = ask(&a, &op("del"), r#"{"key":"site"}"#).await;
    assert!(r.success, "{r:?}");
    assert!(r.message.contains("no such label"), "{r:?}");
    let r = ask(&a, &op("put"), r#"{"key":"hostcore.os","value":"x"}"#).await;
    refused(&r, "hostcore");
}

const LINK: &str = r#"{"source_id":"lat-a","target":"lat-b","wit_namespace":"wasi","wit_package":"keyvalue","interfaces":["store"]}"#;

#[tokio::test]
async fn a_link_put_is_stored_applied_and_got_then_deleted() {
    let dir = Scratch::new("links");
    let a = agent(Board::sim(), &dir).await;
    let r = ask(&a, "link.put", LINK).await;
    assert!(r.success, "{r:?}");
    assert_eq!(r.message, "successfully set link");
    let want: wire::LinkDef = serde_json::from_str(LINK).unwrap();
    let r = ask(&a, "link.get", "").await;
    assert_eq!(r.response, Some(Response::Links(vec![want.clone()])));
    // In the bucket, in the 1.x shape.
    let b = buckets::bucket(&a, buckets::LINKS).await.unwrap();
    let (_, spec) = buckets::read_links(&b, "lat-a").await.unwrap().unwrap();
    assert_eq!(spec.links, std::slice::from_ref(&want));
    // Another target under the same name and interface is refused.
    let other = LINK.replace("lat-b", "lat-c");
    let r = ask(&a, "link.put", &other).await;
    refused(&r, "link already exists with different target");
    let r = ask(
        &a,
        "link.del",
        r#"{"source_id":"lat-a","wit_namespace":"wasi","wit_package":"keyvalue"}"#,
    )
    .await;
    assert_eq!(r.message, "successfully deleted link", "{r:?}");
    assert_eq!(
        ask(&a, "link.get", "").await.response,
        Some(Response::Links(vec![]))
    );
}

#[tokio::test]
async fn a_link_naming_missing_config_is_refused_and_config_round_trips() {
    let dir = Scratch::new("config");
    let a = agent(Board::sim(), &dir).await;
    let with_cfg = LINK.replace(
        r#""interfaces":["store"]"#,
        r#""interfaces":["store"],"target_config":["kv-cfg"]"#,
    );
    let r = ask(&a, "link.put", &with_cfg).await;
    refused(&r, "link names config `kv-cfg`, which does not exist");
    let r = ask(&a, "config.put.kv-cfg", r#"{"bucket":"b1"}"#).await;
    assert_eq!(r.message, "successfully put config", "{r:?}");
    let r = ask(&a, "config.get.kv-cfg", "").await;
    assert_eq!(
        r.response,
        Some(Response::Config([("bucket".into(), "b1".into())].into()))
    );
    assert!(ask(&a, "link.put", &with_cfg).await.success);
    let r = ask(&a, "config.del.kv-cfg", "").await;
    assert_eq!(r.message, "successfully deleted config", "{r:?}");
    assert!(a.host.lattice_config("kv-cfg").is_none());
    let r = ask(&a, "config.get.kv-cfg", "").await;
    assert_eq!(r.message, "Configuration not found");
}

/// The flake the revisions fix: a full copy of the buckets read before a
/// local write landed must not undo that write when it is applied after.
#[tokio::test]
async fn a_full_copy_older_than_a_local_write_does_not_undo_it() {
    let dir = Scratch::new("resync");
    let a = agent(Board::sim(), &dir).await;
    // The copy began (bucket at sequence 0) and read `lat-a` with no links
    // and a config `old` at revision 0...
    let stale_links = serde_json::to_vec(&wire::ComponentLinks::default()).unwrap();
    let copy_links: buckets::Entries = vec![("COMPONENT_lat-a".into(), 0, stale_links.into())];
    let copy_config: buckets::Entries = vec![("old".into(), 0, br#"{"k":"v"}"#.to_vec().into())];
    // ...then link.put and config.put wrote revisions 1 and 2 here...
    assert!(ask(&a, "link.put", LINK).await.success);
    assert!(ask(&a, "config.put.fresh", r#"{"k":"new"}"#).await.success);
    // ...and only now is the copy applied.
    buckets::copy_in(&a, (0, copy_links), (0, copy_config))
        .await
        .unwrap();
    assert_eq!(a.host.lattice_links_of("lat-a").len(), 1, "the link stays");
    assert_eq!(
        a.host
            .lattice_config("fresh")
            .and_then(|c| c.get("k").cloned()),
        Some("new".to_string()),
        "config written after the copy began stays"
    );
    assert!(a.host.lattice_config("old").is_some(), "the copy applies");
    // A copy that is newer than the local write wins.
    let newer = serde_json::to_vec(&wire::ComponentLinks::default()).unwrap();
    buckets::copy_in(
        &a,
        (5, vec![("COMPONENT_lat-a".into(), 5, newer.into())]),
        (5, vec![]),
    )
    .await
    .unwrap();
    assert!(a.host.lattice_links_of("lat-a").is_empty());
    assert!(
        a.host.lattice_config("fresh").is_none(),
        "absent from a newer copy: deleted"
    );
}

/// `provider.stop` right after `provider.start` (acknowledged, then run in
/// the id's queue) waits its turn: the start runs first, the stop then
/// finds the provider and stops it, and nothing is left running. (Here
/// the host's desired-state lock, held through a deploy, happens to order
/// the two as well; `tests/lattice.rs` has the test that fails without the
/// queue, for scales.)
#[tokio::test]
async fn a_provider_stop_right_after_its_start_runs_after_it() {
    let dir = Scratch::new("provider");
    let a = agent(Board::sim(), &dir).await;
    let start = format!("provider.start.{HOST_ID}");
    let stop = format!("provider.stop.{HOST_ID}");
    let body = r#"{"provider_id":"lat-kv","provider_ref":"twig:keyvalue"}"#;
    let r = ask(&a, &start, body).await;
    assert!(r.success, "{r:?}");
    let r = ask(&a, &stop, r#"{"provider_id":"lat-kv"}"#).await;
    assert_eq!(r.message, "successfully stopped provider", "{r:?}");
    assert!(!a.host.has_component("lat-kv"));
    let r = ask(&a, &stop, r#"{"provider_id":"lat-kv"}"#).await;
    refused(&r, "provider `lat-kv` is not running on this host");
}
