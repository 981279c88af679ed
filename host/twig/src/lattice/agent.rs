//! The lattice agent: everything twig does on the NATS connection once it
//! has one. Four tasks share the client (the control server and the data
//! watcher use [`CtlLink`], a separate control connection when `--ctl-*`
//! names one):
//!
//! * the **control server** answers `{ctl_prefix}.v1.{lattice}.…` one
//!   request at a time (so two requests for the same component never race),
//!   after the control policy's checks (`crate::policy`), running host work
//!   (compiling, starting, writing to disk) on blocking threads;
//! * the **heartbeat** publishes the inventory as `host_heartbeat` every
//!   interval and right after each (re)connect;
//! * the **data watcher** copies the `LATTICEDATA_{lattice}` and
//!   `CONFIGDATA_{lattice}` buckets (through the JetStream domain) into the
//!   host, which keeps them on disk; after every (re)connect it takes a full
//!   copy first, so links and config changed while the device was away
//!   arrive;
//! * events (`component_scaled`, `linkdef_set`, …) are published by the
//!   control server as it acts.
//!
//! Subscriptions are restored by async-nats after a reconnect. Nothing
//! here is needed for the host to run: with the link down, requests simply
//! do not arrive and the host carries on from its disk.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::kv;
use async_nats::{Client, Message};
use futures_util::StreamExt;
use tokio::sync::Notify;

use super::policy_service;
use super::wire::{self, CloudEvent, CtlReply, Request};
use super::{HostIdentity, LinkState, SharedStatus, UplinkOptions};
use crate::host::Host;

/// The connection the control interface uses: requests, replies, the
/// lattice's buckets and the policy service. The uplink's own connection,
/// unless the options name a separate one (`--ctl-url`, `--ctl-creds`, …,
/// as wasmCloud 1.x's `--ctl-*`), so that control can live on another
/// server or account than the data the device sends.
pub(crate) struct CtlLink {
    pub client: Client,
    pub status: SharedStatus,
    /// Bumped on every (re)connect of this connection.
    pub connects: tokio::sync::watch::Receiver<u64>,
}

/// Shared by the agent's tasks.
pub(crate) struct Agent {
    pub client: Client,
    pub ctl: CtlLink,
    pub host: Host,
    pub id: HostIdentity,
    pub opts: UplinkOptions,
    pub status: SharedStatus,
    pub started: Instant,
    /// Counts (re)connects and returns of the upstream past a leaf node
    /// (`drain::supervise`): on each, heartbeat now and copy the buckets
    /// again. Each task watches its own clone.
    pub connects: tokio::sync::watch::Receiver<u64>,
    /// Rung by `host.stop`.
    pub stop: Arc<Notify>,
    /// The two buckets once looked up, with the connect count they were
    /// found under: looking one up is a JetStream API round trip (through
    /// the leaf to the core), too dear for every link or config request.
    /// A reconnect, or a failed pass of the data watcher (a bucket deleted
    /// or the domain gone), makes the next use look again.
    pub buckets: std::sync::Mutex<BTreeMap<&'static str, (u64, kv::Store)>>,
    /// Asks the wRPC server to bring what it serves in step with what runs
    /// now, and says when it has (set once the server runs).
    pub serve_sync: std::sync::OnceLock<super::wrpc::SyncRequests>,
    /// Scales, updates and provider starts running at once
    /// (`control.max_concurrent_scales`); one more is refused, not queued,
    /// so a flood of them cannot pile up compiles and memory.
    pub scales: Arc<tokio::sync::Semaphore>,
}

impl Agent {
    fn ctl_prefix(&self) -> String {
        format!("{}.v1.{}", self.opts.ctl_prefix, self.opts.lattice)
    }

    fn connected(&self) -> bool {
        self.status
            .lock()
            .map(|s| s.state == LinkState::Connected)
            .unwrap_or(false)
    }

    /// Whether the control connection is up (the same as [`connected`]
    /// when there is no separate one).
    ///
    /// [`connected`]: Agent::connected
    fn ctl_connected(&self) -> bool {
        self.ctl
            .status
            .lock()
            .map(|s| s.state == LinkState::Connected)
            .unwrap_or(false)
    }

    /// Publishes a CloudEvent `wasmbus.evt.{lattice}.{name}`.
    pub async fn publish_event(&self, name: &str, data: serde_json::Value) {
        let event = CloudEvent::new(&self.id.host_id, name, data);
        let bytes = match serde_json::to_vec(&event) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!("event {name}: {e}");
                return;
            }
        };
        let subject = format!("wasmbus.evt.{}.{name}", self.opts.lattice);
        // Through the outbox, so an event of an outage arrives after it,
        // in order, and heartbeats go ahead of a telemetry backlog.
        if let Some(up) = self.host.upstream() {
            let class = if name == "host_heartbeat" {
                up.host_heartbeats
            } else {
                up.host_events
            };
            let (subj, body) = (subject.clone(), bytes.clone());
            match blocking(move || up.outbox.append(class, &subj, &[], &body)).await {
                Ok(Ok(_)) => return,
                Ok(Err(e)) => tracing::warn!("event {name}: outbox: {e}; publishing directly"),
                Err(e) => tracing::warn!("event {name}: {e}; publishing directly"),
            }
        }
        self.publish_event_now(&subject, name, bytes).await;
    }

    /// Publishes an event directly, past the outbox (on the way out, when
    /// nothing would be left to send the outbox).
    async fn publish_event_now(&self, subject: &str, name: &str, bytes: Vec<u8>) {
        if let Err(e) = self.client.publish(subject.to_string(), bytes.into()).await {
            tracing::warn!("cannot publish event {name}: {e}");
        }
    }

    fn uptime(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    pub fn host_info(&self) -> wire::HostInfo {
        let up = self.uptime();
        wire::HostInfo {
            id: self.id.host_id.clone(),
            friendly_name: self.id.friendly_name.clone(),
            labels: self.host.labels(),
            lattice: self.opts.lattice.clone(),
            uptime_seconds: up,
            uptime_human: wire::human_uptime(up),
            version: env!("CARGO_PKG_VERSION").to_string(),
            ctl_host: Some(self.opts.url.clone()),
            rpc_host: Some(self.opts.url.clone()),
            js_domain: self.opts.js_domain.clone(),
        }
    }

    pub fn inventory(&self) -> wire::Inventory {
        let (components, providers) = self.host.inventory();
        let up = self.uptime();
        wire::Inventory {
            components,
            providers,
            host_id: self.id.host_id.clone(),
            friendly_name: self.id.friendly_name.clone(),
            labels: self.host.labels(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            uptime_human: wire::human_uptime(up),
            uptime_seconds: up,
        }
    }

    fn jetstream(&self) -> async_nats::jetstream::Context {
        let js = match &self.opts.js_domain {
            Some(d) => async_nats::jetstream::with_domain(self.ctl.client.clone(), d),
            None => async_nats::jetstream::new(self.ctl.client.clone()),
        };
        // A KV call through a leaf to a core that is away must fail fast
        // enough to answer the control client (2 s) with an error.
        let mut js = js;
        js.set_timeout(Duration::from_millis(1500));
        js
    }

    /// The `{prefix}_{lattice}` bucket, made if this is the lattice's first
    /// host (as the 1.x host does).
    async fn bucket(&self, prefix: &'static str) -> Result<kv::Store, String> {
        let connects = *self.ctl.connects.borrow();
        if let Some((seen, store)) = self.cached_buckets().get(prefix) {
            if *seen == connects {
                return Ok(store.clone());
            }
        }
        let name = format!("{prefix}_{}", self.opts.lattice);
        let js = self.jetstream();
        let store = match js.get_key_value(&name).await {
            Ok(store) => store,
            Err(e) if e.to_string().contains("not found") => js
                .create_key_value(kv::Config {
                    bucket: name.clone(),
                    history: 1,
                    ..Default::default()
                })
                .await
                .map_err(|e| format!("bucket {name}: {e}"))?,
            Err(e) => return Err(format!("bucket {name}: {e}")),
        };
        self.cached_buckets()
            .insert(prefix, (connects, store.clone()));
        Ok(store)
    }

    fn cached_buckets(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, (u64, kv::Store)>> {
        self.buckets.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits (at most 2 s) until the wRPC server serves exactly the
    /// components running now. Its subscriptions go out on this connection
    /// before anything published after this, so a caller that hears
    /// `component_scaled` finds the component served.
    async fn serving_in_step(&self) {
        let Some(tx) = self.serve_sync.get() else {
            return;
        };
        let (ack, done) = tokio::sync::oneshot::channel();
        if tx.send(ack).is_ok() {
            let _ = tokio::time::timeout(Duration::from_secs(2), done).await;
        }
    }

    /// Makes the next [`Agent::bucket`] look the buckets up again.
    fn forget_buckets(&self) {
        self.cached_buckets().clear();
    }
}

/// Runs the agent's tasks for the life of the runtime.
pub(crate) async fn spawn(agent: Arc<Agent>) {
    // One inbox for every wRPC call this host makes or answers.
    match super::wrpc::Inbox::new(&agent.client).await {
        Ok(inbox) => {
            let inbox = Arc::new(inbox);
            agent.host.set_remote(Arc::new(super::wrpc::WrpcClient {
                client: agent.client.clone(),
                inbox: inbox.clone(),
                lattice: agent.opts.lattice.clone(),
                runtime: tokio::runtime::Handle::current(),
                status: agent.status.clone(),
            }));
            let (sync_tx, sync_rx) = tokio::sync::mpsc::unbounded_channel();
            let _ = agent.serve_sync.set(sync_tx);
            let a = agent.clone();
            tokio::spawn(async move { super::wrpc::serve(a, inbox, sync_rx).await });
        }
        Err(e) => tracing::warn!("wRPC is off: {e}"),
    }
    let a = agent.clone();
    tokio::spawn(async move { control_server(a).await });
    let a = agent.clone();
    tokio::spawn(async move { heartbeat(a).await });
    tokio::spawn(async move { data_watcher(agent).await });
}

/// `host_stopped`, flushed, on the way out (bounded: a host whose link is
/// down must still stop promptly).
pub(crate) async fn announce_stop(agent: &Agent) {
    if !agent.connected() {
        return;
    }
    let data = serde_json::json!({ "labels": agent.host.labels() });
    let event = CloudEvent::new(&agent.id.host_id, "host_stopped", data);
    let Ok(bytes) = serde_json::to_vec(&event) else {
        return;
    };
    let subject = format!("wasmbus.evt.{}.host_stopped", agent.opts.lattice);
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        agent
            .publish_event_now(&subject, "host_stopped", bytes)
            .await;
        let _ = agent.client.flush().await;
    })
    .await;
}

async fn heartbeat(agent: Arc<Agent>) {
    let mut announced = false;
    let mut connects = agent.connects.clone();
    let mut tick = tokio::time::interval(agent.opts.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            changed = connects.changed() => {
                if changed.is_err() {
                    return;
                }
            }
        }
        if !agent.connected() {
            continue;
        }
        if !announced {
            let start = serde_json::json!({
                "friendly_name": agent.id.friendly_name,
                "labels": agent.host.labels(),
                "uptime_seconds": agent.uptime(),
                "version": env!("CARGO_PKG_VERSION"),
            });
            agent.publish_event("host_started", start).await;
            announced = true;
        }
        let inv = agent.inventory();
        match serde_json::to_value(&inv) {
            Ok(mut v) => {
                // twig's own field (wasmCloud's parsers ignore it): the
                // link's state and the outbox's backlog, so a fleet view
                // sees a device that is behind.
                if let Some(obj) = v.as_object_mut() {
                    obj.insert("twig_link".into(), link_report(&agent));
                }
                agent.publish_event("host_heartbeat", v).await
            }
            Err(e) => tracing::error!("heartbeat: {e}"),
        }
    }
}

/// The `twig_link` field of a heartbeat.
fn link_report(agent: &Agent) -> serde_json::Value {
    let status = agent
        .status
        .lock()
        .map(|s| s.clone())
        .unwrap_or_else(|e| e.into_inner().clone());
    let outbox = agent.host.upstream().map(|u| {
        let st = u.outbox.stats();
        serde_json::json!({
            "pending": st.classes.iter().map(|c| c.pending_records).sum::<u64>(),
            "bytes": st.total_bytes,
            "dropped": st.classes.iter().map(|c| c.dropped_full + c.rejected_full).sum::<u64>(),
            "expired": st.classes.iter().map(|c| c.expired).sum::<u64>(),
        })
    });
    serde_json::json!({
        "state": status.state,
        "upstream": status.upstream,
        "upstream_rtt_ms": status.upstream_rtt_ms,
        "connects": status.connects,
        "delivered": status.delivered,
        "outbox": outbox,
    })
}

/// Subscribes to the control subjects and answers them in order.
async fn control_server(agent: Arc<Agent>) {
    let p = agent.ctl_prefix();
    let id = agent.id.host_id.clone();
    let plain = [
        format!("{p}.host.ping"),
        format!("{p}.component.auction"),
        format!("{p}.provider.auction"),
        format!("{p}.registry.put"),
        format!("{p}.component.*.{id}"),
        format!("{p}.provider.*.{id}"),
        format!("{p}.label.*.{id}"),
        format!("{p}.host.*.{id}"),
    ];
    // Lattice-wide state changes are answered by one host of the lattice.
    // A host whose policy keeps it out of links or config does not join
    // those queue groups: answering for the lattice with a refusal would
    // fail requests meant for other hosts.
    let policy = &agent.host.board().control;
    let queued: Vec<(String, String)> = [
        (
            policy.links.allowed(),
            format!("{p}.link.*"),
            format!("{p}.link"),
        ),
        (true, format!("{p}.claims.get"), format!("{p}.claims")),
        (
            policy.config.allowed(),
            format!("{p}.config.>"),
            format!("{p}.config"),
        ),
    ]
    .into_iter()
    .filter(|(on, _, _)| *on)
    .map(|(_, s, g)| (s, g))
    .collect();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Message>(64);
    for subject in plain {
        match agent.ctl.client.subscribe(subject.clone()).await {
            Ok(sub) => forward(sub, tx.clone()),
            Err(e) => tracing::error!("cannot subscribe to {subject}: {e}"),
        }
    }
    for (subject, group) in queued {
        match agent
            .ctl
            .client
            .queue_subscribe(subject.clone(), group)
            .await
        {
            Ok(sub) => forward(sub, tx.clone()),
            Err(e) => tracing::error!("cannot subscribe to {subject}: {e}"),
        }
    }
    drop(tx);
    while let Some(msg) = rx.recv().await {
        let op = msg
            .subject
            .as_str()
            .strip_prefix(&p)
            .and_then(|s| s.strip_prefix('.'))
            .unwrap_or(msg.subject.as_str())
            .to_string();
        let reply = match wire::parse_request(&op, &id, &msg.payload) {
            Ok(req) => handle(&agent, &op, req).await,
            Err(why) => {
                tracing::warn!(subject = %msg.subject, "control request refused: {why}");
                Some(to_json(&CtlReply::error(why)))
            }
        };
        if let (Some(body), Some(to)) = (reply, msg.reply.clone()) {
            if let Err(e) = agent.ctl.client.publish(to, body.into()).await {
                tracing::warn!("cannot reply to {op}: {e}");
            }
        }
    }
}

fn forward(mut sub: async_nats::Subscriber, tx: tokio::sync::mpsc::Sender<Message>) {
    tokio::spawn(async move {
        while let Some(msg) = sub.next().await {
            if tx.send(msg).await.is_err() {
                break;
            }
        }
    });
}

fn to_json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).unwrap_or_else(|e| {
        serde_json::to_vec(&CtlReply::error(format!("cannot encode the reply: {e}")))
            .unwrap_or_default()
    })
}

/// Runs blocking host work off the async thread.
async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("host task failed: {e}"))
}

fn constraints_met(
    labels: &BTreeMap<String, String>,
    constraints: &BTreeMap<String, String>,
) -> bool {
    constraints.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Answers one request; `None` means stay silent (an auction this host
/// does not bid in).
async fn handle(agent: &Arc<Agent>, op: &str, req: Request) -> Option<Vec<u8>> {
    let host_id = agent.id.host_id.clone();
    let policy = &agent.host.board().control;
    if let Some(family) = req.family() {
        if !policy.permits(family) {
            if matches!(
                req,
                Request::ComponentAuction(_) | Request::ProviderAuction(_)
            ) {
                // A host that may not be asked to start things does not bid.
                return None;
            }
            let why = policy.refusal(family, op);
            tracing::warn!("control request refused: {why}");
            return Some(to_json(&CtlReply::error(why)));
        }
    }
    let reply = match req {
        Request::HostPing => to_json(&CtlReply::ok(agent.host_info())),
        Request::HostGet => to_json(&CtlReply::ok(agent.inventory())),
        Request::HostStop(s) => {
            let how = match agent.host.board().control.host_stop {
                crate::policy::HostStop::Restart => "stopping; it will be started again",
                _ => "stopping",
            };
            tracing::info!(timeout_ms = ?s.timeout, "host.stop from the lattice (allowed: control.host_stop): shutting down");
            agent.stop.notify_one();
            to_json(&CtlReply::done(format!("twig is {how}")))
        }
        Request::ComponentAuction(a) => {
            if !constraints_met(&agent.host.labels(), &a.constraints)
                || agent.host.has_component(&a.id)
            {
                return None;
            }
            to_json(&CtlReply::ok(wire::ComponentAuctionAck {
                component_ref: a.reference,
                component_id: a.id,
                host_id,
                constraints: a.constraints,
            }))
        }
        Request::ProviderAuction(a) => {
            let host = agent.host.clone();
            let probe = wire::StartProvider {
                provider_id: a.id.clone(),
                provider_ref: a.reference.clone(),
                host_id: host_id.clone(),
                config: Vec::new(),
                annotations: None,
            };
            // Bid only for what twig can run: a built-in provider.
            let can = blocking(move || host.check_start_provider(&probe))
                .await
                .is_ok_and(|r| r.is_ok());
            if !can || !constraints_met(&agent.host.labels(), &a.constraints) {
                return None;
            }
            to_json(&CtlReply::ok(wire::ProviderAuctionAck {
                provider_ref: a.reference,
                provider_id: a.id,
                host_id,
                constraints: a.constraints,
            }))
        }
        Request::ComponentScale(s) => return Some(scale(agent, s).await),
        Request::ComponentUpdate(u) => {
            let Some(permit) = scale_permit(agent) else {
                return Some(to_json(&CtlReply::error(busy(agent, "component.update"))));
            };
            let annotations = u.annotations.clone().unwrap_or_default();
            let ask = policy_service::Ask::StartComponent {
                id: &u.component_id,
                image_ref: &u.new_component_ref,
                max_instances: 0,
                annotations: &annotations,
            };
            if let Err(e) = policy_service::check(agent, ask).await {
                return Some(to_json(&CtlReply::error(e)));
            }
            let host = agent.host.clone();
            let (id, r, ann) = (
                u.component_id.clone(),
                u.new_component_ref.clone(),
                u.annotations.clone(),
            );
            match blocking(move || host.update_component(&id, &r, ann))
                .await
                .and_then(|r| r)
            {
                Ok(plan) => {
                    let msg = format!("updating {} to {}", plan.id, plan.origin.image_ref);
                    run_plan(agent.clone(), plan, permit);
                    to_json(&CtlReply::done(msg))
                }
                Err(e) => to_json(&CtlReply::error(e)),
            }
        }
        Request::ProviderStart(s) => {
            let Some(permit) = scale_permit(agent) else {
                return Some(to_json(&CtlReply::error(busy(agent, "provider.start"))));
            };
            let annotations = s.annotations.clone().unwrap_or_default();
            let ask = policy_service::Ask::StartProvider {
                id: &s.provider_id,
                image_ref: &s.provider_ref,
                annotations: &annotations,
            };
            if let Err(e) = policy_service::check(agent, ask).await {
                return Some(to_json(&CtlReply::error(e)));
            }
            let host = agent.host.clone();
            let check = s.clone();
            match blocking(move || host.check_start_provider(&check))
                .await
                .and_then(|r| r)
            {
                Err(e) => to_json(&CtlReply::error(e)),
                Ok(()) => {
                    let agent = agent.clone();
                    let msg = format!("starting provider {}", s.provider_id);
                    tokio::spawn(async move {
                        let _permit = permit;
                        let host = agent.host.clone();
                        let req = s.clone();
                        let annotations = s.annotations.clone().unwrap_or_default();
                        match blocking(move || host.start_provider(&req))
                            .await
                            .and_then(|r| r)
                        {
                            Ok(()) => {
                                agent
                                    .publish_event(
                                        "provider_started",
                                        serde_json::json!({
                                            "host_id": agent.id.host_id,
                                            "image_ref": s.provider_ref,
                                            "provider_id": s.provider_id,
                                            "annotations": annotations,
                                        }),
                                    )
                                    .await
                            }
                            Err(e) => {
                                tracing::warn!(provider = %s.provider_id, "provider.start: {e}");
                                agent
                                    .publish_event(
                                        "provider_start_failed",
                                        serde_json::json!({
                                            "provider_ref": s.provider_ref,
                                            "provider_id": s.provider_id,
                                            "host_id": agent.id.host_id,
                                            "error": e,
                                        }),
                                    )
                                    .await
                            }
                        }
                    });
                    to_json(&CtlReply::done(msg))
                }
            }
        }
        Request::ProviderStop(s) => {
            let host = agent.host.clone();
            let id = s.provider_id.clone();
            match blocking(move || host.stop_provider(&id))
                .await
                .and_then(|r| r)
            {
                Ok(annotations) => {
                    agent
                        .publish_event(
                            "provider_stopped",
                            serde_json::json!({
                                "host_id": host_id,
                                "provider_id": s.provider_id,
                                "annotations": annotations,
                                "reason": "stop",
                            }),
                        )
                        .await;
                    to_json(&CtlReply::done("successfully stopped provider"))
                }
                Err(e) => to_json(&CtlReply::error(e)),
            }
        }
        Request::LabelPut(l) => {
            let host = agent.host.clone();
            match blocking(move || host.put_label(&l.key, &l.value))
                .await
                .and_then(|r| r)
            {
                Ok(labels) => {
                    agent
                        .publish_event(
                            "labels_changed",
                            serde_json::json!({"host_id": host_id, "labels": labels}),
                        )
                        .await;
                    to_json(&CtlReply::done("successfully put label"))
                }
                Err(e) => to_json(&CtlReply::error(e)),
            }
        }
        Request::LabelDel(l) => {
            let host = agent.host.clone();
            match blocking(move || host.delete_label(&l.key))
                .await
                .and_then(|r| r)
            {
                Ok(Some(labels)) => {
                    agent
                        .publish_event(
                            "labels_changed",
                            serde_json::json!({"host_id": host_id, "labels": labels}),
                        )
                        .await;
                    to_json(&CtlReply::done("successfully deleted label"))
                }
                Ok(None) => to_json(&CtlReply::done(
                    "successfully deleted label (no such label)",
                )),
                Err(e) => to_json(&CtlReply::error(e)),
            }
        }
        Request::LinkPut(link) => match put_link(agent, &link)
            .await
            .map(|()| agent.host.provider_failure(&link.source_id))
        {
            Ok(Some(why)) => {
                // Stored in the lattice's bucket, but the provider here
                // could not act on it: say so rather than "success".
                let e = format!(
                    "the link is stored, but provider `{}` on this host cannot act on it: {why}",
                    link.source_id
                );
                agent
                    .publish_event("linkdef_set_failed", link_json(&link, Some(&e)))
                    .await;
                to_json(&CtlReply::error(e))
            }
            Ok(None) => {
                agent
                    .publish_event("linkdef_set", link_json(&link, None))
                    .await;
                if agent
                    .host
                    .lattice_links_of(&link.source_id)
                    .iter()
                    .any(|l| l == &link)
                {
                    to_json(&CtlReply::done("successfully set link"))
                } else {
                    to_json(&CtlReply::done(
                        "successfully set link (this host does not keep it: over its control.max_links or control.max_lattice_kib)",
                    ))
                }
            }
            Err(e) => {
                agent.forget_buckets();
                agent
                    .publish_event("linkdef_set_failed", link_json(&link, Some(&e)))
                    .await;
                to_json(&CtlReply::error(e))
            }
        },
        Request::LinkDel(d) => match del_link(agent, &d).await {
            Ok(deleted) => {
                let mut data = serde_json::json!({
                    "source_id": d.source_id,
                    "name": d.name,
                    "wit_namespace": d.wit_namespace,
                    "wit_package": d.wit_package,
                });
                if let Some(l) = deleted {
                    data["target"] = l.target.into();
                    data["interfaces"] = l.interfaces.into();
                }
                agent.publish_event("linkdef_deleted", data).await;
                to_json(&CtlReply::done("successfully deleted link"))
            }
            Err(e) => {
                // The bucket may be gone (deleted, or its domain away):
                // look it up afresh next time.
                agent.forget_buckets();
                to_json(&CtlReply::error(e))
            }
        },
        Request::LinkGet => to_json(&CtlReply::ok(agent.host.lattice_links())),
        Request::ClaimsGet => {
            // twig runs no signed (claims-carrying) components.
            to_json(&CtlReply::ok(Vec::<BTreeMap<String, String>>::new()))
        }
        Request::RegistryPut => {
            tracing::debug!("registry.put ignored: twig pulls from no registry");
            return None;
        }
        Request::ConfigPut(name, map) => match config_put(agent, &name, Some(&map)).await {
            Ok(()) => {
                agent
                    .publish_event("config_set", serde_json::json!({"config_name": name}))
                    .await;
                // The bucket is the lattice's; what this host keeps of it
                // is bounded by its policy, and the answer says so.
                if agent.host.lattice_config(&name).is_none() {
                    to_json(&CtlReply::done(format!(
                        "successfully put config (this host does not keep `{name}`: over its control.max_config_entries or control.max_lattice_kib)"
                    )))
                } else {
                    to_json(&CtlReply::done("successfully put config"))
                }
            }
            Err(e) => {
                // The bucket may be gone (deleted, or its domain away):
                // look it up afresh next time.
                agent.forget_buckets();
                to_json(&CtlReply::error(e))
            }
        },
        Request::ConfigDel(name) => match config_put(agent, &name, None).await {
            Ok(()) => {
                agent
                    .publish_event("config_deleted", serde_json::json!({"config_name": name}))
                    .await;
                to_json(&CtlReply::done("successfully deleted config"))
            }
            Err(e) => {
                // The bucket may be gone (deleted, or its domain away):
                // look it up afresh next time.
                agent.forget_buckets();
                to_json(&CtlReply::error(e))
            }
        },
        Request::ConfigGet(name) => {
            let found = match agent.bucket("CONFIGDATA").await {
                Ok(store) => match store.get(name.as_str()).await {
                    Ok(Some(bytes)) => {
                        serde_json::from_slice::<BTreeMap<String, String>>(&bytes).ok()
                    }
                    Ok(None) => None,
                    Err(_) => agent.host.lattice_config(&name),
                },
                // Unreachable store: answer from the copy on disk.
                Err(_) => agent.host.lattice_config(&name),
            };
            match found {
                Some(c) => to_json(&CtlReply::ok(c)),
                None => to_json(&CtlReply::done("Configuration not found")),
            }
        }
    };
    Some(reply)
}

fn link_json(l: &wire::LinkDef, error: Option<&str>) -> serde_json::Value {
    let mut v = serde_json::to_value(l).unwrap_or_default();
    if let Some(e) = error {
        v["error"] = e.into();
    }
    v
}

/// `component.scale`: checked and answered at once (a missing file or a
/// count over the board's limit is an error reply that changes nothing);
/// the component then starts in the background and `component_scaled` or
/// `component_scale_failed` tells how it went, as on the 1.x host.
async fn scale(agent: &Arc<Agent>, s: wire::ScaleComponent) -> Vec<u8> {
    let Some(permit) = scale_permit(agent) else {
        return to_json(&CtlReply::error(busy(agent, "component.scale")));
    };
    if s.count > 0 {
        let annotations = s.annotations.clone().unwrap_or_default();
        let ask = policy_service::Ask::StartComponent {
            id: &s.component_id,
            image_ref: &s.component_ref,
            max_instances: s.count,
            annotations: &annotations,
        };
        if let Err(e) = policy_service::check(agent, ask).await {
            tracing::warn!(component = %s.component_id, "component.scale {e}");
            return to_json(&CtlReply::error(e));
        }
    }
    let host = agent.host.clone();
    let req = s.clone();
    match blocking(move || host.plan_scale(&req))
        .await
        .and_then(|r| r)
    {
        Err(e) => {
            tracing::warn!(component = %s.component_id, "component.scale refused: {e}");
            to_json(&CtlReply::error(e))
        }
        Ok(plan) => {
            let msg = plan.message.clone();
            run_plan(agent.clone(), plan, permit);
            to_json(&CtlReply::done(msg))
        }
    }
}

/// A slot for one more scale, update or provider start, if there is one.
fn scale_permit(agent: &Agent) -> Option<tokio::sync::OwnedSemaphorePermit> {
    agent.scales.clone().try_acquire_owned().ok()
}

fn busy(agent: &Agent, op: &str) -> String {
    let n = agent.host.board().control.max_concurrent_scales;
    format!("{op}: busy: {n} scales, updates or provider starts are running on this host (control.max_concurrent_scales); try again when they are done")
}

fn run_plan(
    agent: Arc<Agent>,
    plan: crate::control::ScalePlan,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    tokio::spawn(async move {
        let _permit = permit;
        let host = agent.host.clone();
        let p = plan.clone();
        let result = blocking(move || host.run_scale(&p)).await.and_then(|r| r);
        let o = &plan.origin;
        match result {
            Ok(()) => {
                tracing::info!(component = %plan.id, instances = o.max_instances, "scaled by the lattice");
                agent.serving_in_step().await;
                agent
                    .publish_event(
                        "component_scaled",
                        serde_json::json!({
                            "annotations": o.annotations,
                            "host_id": agent.id.host_id,
                            "image_ref": o.image_ref,
                            "max_instances": o.max_instances,
                            "component_id": plan.id,
                        }),
                    )
                    .await
            }
            Err(e) => {
                tracing::warn!(component = %plan.id, "scale failed: {e}");
                agent
                    .publish_event(
                        "component_scale_failed",
                        serde_json::json!({
                            "annotations": o.annotations,
                            "component_id": plan.id,
                            "host_id": agent.id.host_id,
                            "image_ref": o.image_ref,
                            "max_instances": o.max_instances,
                            "error": e,
                        }),
                    )
                    .await
            }
        }
    });
}

/// Adds or replaces a link in its source's `COMPONENT_{id}` entry, as the
/// 1.x host does: a link with the same source, interface package and name
/// but another target is refused.
async fn put_link(agent: &Agent, link: &wire::LinkDef) -> Result<(), String> {
    // The device's own components and providers are not the lattice's to
    // wire: not as the link's source (relinking a device HTTP server), nor
    // as its target (a lattice component reaching the device's KV store).
    let host = agent.host.clone();
    let (src, dst) = (link.source_id.clone(), link.target.clone());
    blocking(move || {
        host.check_lattice_owned(&src, "link source")?;
        host.check_lattice_owned(&dst, "link target")
    })
    .await??;
    // A link that wires something running here is this device's business:
    // ask its policy service (one for other hosts is theirs).
    if agent.host.has_component(&link.source_id) || agent.host.has_component(&link.target) {
        policy_service::check(agent, policy_service::Ask::PutLink(link)).await?;
    }
    for c in link.source_config.iter().chain(&link.target_config) {
        // 1.x refuses links naming config that does not exist.
        if agent.host.lattice_config(c).is_none() {
            let store = agent.bucket("CONFIGDATA").await?;
            if store
                .get(c.as_str())
                .await
                .map_err(|e| e.to_string())?
                .is_none()
            {
                return Err(format!("link names config `{c}`, which does not exist"));
            }
        }
    }
    let store = agent.bucket("LATTICEDATA").await?;
    let mut spec = read_links(&store, &link.source_id)
        .await?
        .unwrap_or_default();
    if spec.links.iter().any(|l| {
        l.wit_namespace == link.wit_namespace
            && l.wit_package == link.wit_package
            && l.name == link.name
            && l.interfaces.iter().any(|i| link.interfaces.contains(i))
            && l.target != link.target
    }) {
        return Err("link already exists with different target, consider deleting the existing link or using a different link name".into());
    }
    match spec.links.iter_mut().find(|l| {
        l.target == link.target
            && l.wit_namespace == link.wit_namespace
            && l.wit_package == link.wit_package
            && l.name == link.name
    }) {
        Some(l) => *l = link.clone(),
        None => spec.links.push(link.clone()),
    }
    write_links(agent, &store, &link.source_id, spec).await
}

async fn del_link(agent: &Agent, d: &wire::LinkDel) -> Result<Option<wire::LinkDef>, String> {
    let host = agent.host.clone();
    let src = d.source_id.clone();
    blocking(move || host.check_lattice_owned(&src, "link source")).await??;
    let store = agent.bucket("LATTICEDATA").await?;
    let Some(mut spec) = read_links(&store, &d.source_id).await? else {
        return Ok(None);
    };
    let Some(i) = spec.links.iter().position(|l| {
        l.wit_namespace == d.wit_namespace && l.wit_package == d.wit_package && l.name == d.name
    }) else {
        return Ok(None);
    };
    let removed = spec.links.swap_remove(i);
    write_links(agent, &store, &d.source_id, spec).await?;
    Ok(Some(removed))
}

/// A source's `COMPONENT_{id}` entry in the lattice data bucket, if any.
async fn read_links(
    store: &kv::Store,
    source: &str,
) -> Result<Option<wire::ComponentLinks>, String> {
    let key = format!("COMPONENT_{source}");
    match store.get(key.as_str()).await {
        Ok(Some(b)) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| format!("{key} in the lattice data bucket: {e}")),
        Ok(None) => Ok(None),
        Err(e) => Err(format!("lattice data bucket: {e}")),
    }
}

/// Writes a source's links to the bucket and applies them here at once:
/// the watcher will bring the same, but the next call should not wait.
async fn write_links(
    agent: &Agent,
    store: &kv::Store,
    source: &str,
    spec: wire::ComponentLinks,
) -> Result<(), String> {
    let bytes = serde_json::to_vec(&spec).map_err(|e| e.to_string())?;
    store
        .put(format!("COMPONENT_{source}"), bytes.into())
        .await
        .map_err(|e| format!("lattice data bucket: {e}"))?;
    let host = agent.host.clone();
    let source = source.to_string();
    blocking(move || host.set_lattice_links(&source, Some(spec.links))).await?
}

async fn config_put(
    agent: &Agent,
    name: &str,
    map: Option<&BTreeMap<String, String>>,
) -> Result<(), String> {
    let store = agent.bucket("CONFIGDATA").await?;
    match map {
        Some(m) => {
            let bytes = serde_json::to_vec(m).map_err(|e| e.to_string())?;
            store
                .put(name, bytes.into())
                .await
                .map_err(|e| format!("config data bucket: {e}"))?;
        }
        None => store
            .purge(name)
            .await
            .map_err(|e| format!("config data bucket: {e}"))?,
    }
    let host = agent.host.clone();
    let (name, map) = (name.to_string(), map.cloned());
    blocking(move || host.set_lattice_config(&name, map)).await?
}

/// Keeps the host's copy of the buckets current: a full copy after each
/// (re)connect, then every change as it happens.
async fn data_watcher(agent: Arc<Agent>) {
    let mut last_error: Option<String> = None;
    let mut backoff = Duration::from_millis(500);
    let mut connects = agent.ctl.connects.clone();
    loop {
        if !agent.ctl_connected() {
            if connects.changed().await.is_err() {
                return;
            }
            continue;
        }
        connects.mark_unchanged();
        match sync_buckets(&agent, &mut connects).await {
            Ok(()) => {
                backoff = Duration::from_millis(500);
                last_error = None;
            }
            Err(e) => {
                agent.forget_buckets();
                if last_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!("lattice data: {e}; using the copy on disk until it is back");
                    last_error = Some(e);
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = connects.changed() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// One copy-then-watch pass; returns when a watch ends or fails.
async fn sync_buckets(
    agent: &Agent,
    connects: &mut tokio::sync::watch::Receiver<u64>,
) -> Result<(), String> {
    let links = agent.bucket("LATTICEDATA").await?;
    let config = agent.bucket("CONFIGDATA").await?;
    let links_from = links
        .status()
        .await
        .map(|s| s.info.state.last_sequence)
        .unwrap_or(0);
    let config_from = config
        .status()
        .await
        .map(|s| s.info.state.last_sequence)
        .unwrap_or(0);

    let mut all_links = BTreeMap::new();
    for (key, value) in read_all(&links).await? {
        if let Some(source) = key.strip_prefix("COMPONENT_") {
            match serde_json::from_slice::<wire::ComponentLinks>(&value) {
                Ok(spec) => {
                    all_links.insert(source.to_string(), spec.links);
                }
                Err(e) => tracing::warn!("lattice data {key}: {e}; ignored"),
            }
        }
    }
    let mut all_config = BTreeMap::new();
    for (key, value) in read_all(&config).await? {
        match serde_json::from_slice::<BTreeMap<String, String>>(&value) {
            Ok(c) => {
                all_config.insert(key, c);
            }
            Err(e) => tracing::warn!("config {key}: not a map of strings ({e}); ignored"),
        }
    }
    let (n_links, n_config) = (all_links.len(), all_config.len());
    let host = agent.host.clone();
    blocking(move || host.replace_lattice_data(Some(all_links), Some(all_config))).await??;
    tracing::info!(sources = n_links, configs = n_config, "lattice data copied");

    let mut link_watch = links
        .watch_all_from_revision(links_from + 1)
        .await
        .map_err(|e| format!("watching lattice data: {e}"))?;
    let mut config_watch = config
        .watch_all_from_revision(config_from + 1)
        .await
        .map_err(|e| format!("watching config data: {e}"))?;
    loop {
        tokio::select! {
            e = link_watch.next() => {
                let entry = e.ok_or("lattice data watch ended")?.map_err(|e| format!("lattice data watch: {e}"))?;
                let Some(source) = entry.key.strip_prefix("COMPONENT_") else { continue };
                let links = match entry.operation {
                    kv::Operation::Put => match serde_json::from_slice::<wire::ComponentLinks>(&entry.value) {
                        Ok(spec) => Some(spec.links),
                        Err(e) => {
                            tracing::warn!("lattice data {}: {e}; ignored", entry.key);
                            continue;
                        }
                    },
                    _ => None,
                };
                let host = agent.host.clone();
                let source = source.to_string();
                blocking(move || host.set_lattice_links(&source, links)).await??;
            }
            e = config_watch.next() => {
                let entry = e.ok_or("config data watch ended")?.map_err(|e| format!("config data watch: {e}"))?;
                let config = match entry.operation {
                    kv::Operation::Put => match serde_json::from_slice::<BTreeMap<String, String>>(&entry.value) {
                        Ok(c) => Some(c),
                        Err(e) => {
                            tracing::warn!("config {}: {e}; ignored", entry.key);
                            continue;
                        }
                    },
                    _ => None,
                };
                let host = agent.host.clone();
                let name = entry.key.clone();
                blocking(move || host.set_lattice_config(&name, config)).await??;
            }
            _ = connects.changed() => {
                // Changes made while away: take a full copy again.
                return Ok(());
            }
        }
    }
}

async fn read_all(store: &kv::Store) -> Result<Vec<(String, bytes::Bytes)>, String> {
    let mut keys = store
        .keys()
        .await
        .map_err(|e| format!("bucket {}: {e}", store.name))?;
    let mut out = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| format!("bucket {}: {e}", store.name))?;
        if let Some(v) = store
            .get(key.as_str())
            .await
            .map_err(|e| format!("bucket {}: {e}", store.name))?
        {
            out.push((key, v));
        }
    }
    Ok(out)
}
