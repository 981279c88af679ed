//! wRPC over NATS, as wasmCloud 1.x speaks it (wrpc-transport-nats 0.29,
//! frozen upstream): calls to link targets elsewhere in the lattice, and
//! this host's components serving callers elsewhere.
//!
//! One call, for parameters and results that fit in a NATS message (the
//! common case; larger ones are sent in chunks the same way):
//!
//! ```text
//! caller                                           callee (queue group {lattice}.{id})
//!   route R, R.results (in its Inbox)
//!   pub {lattice}.{id}.wrpc.0.0.1.{instance}.{func}  reply R, headers source-id, link-name
//!       payload: the parameters, value-encoded  ─────►
//!                                                   route S.params (in its Inbox)
//!                              ◄───── pub R  reply S, empty payload (the handshake)
//!   pub S.params: rest of the parameters, then an empty message (end)
//!                                                   runs the export
//!                              ◄───── pub R.results: the results, then an empty message
//! ```
//!
//! The value encoding is in `twig_component::wrpc`. Streams, futures and
//! resources are not sent; twig refuses calls that would need them.
//! Every reply subject lives under one wildcard subscription per
//! connection ([`Inbox`]), so a call adds no subscription on the server.
//!
//! Twig implements the transport itself rather than through the
//! `wrpc-transport-nats` crate: that crate pins async-nats 0.39 (twig uses
//! 0.51), so it would put a second NATS client into the device binary, and
//! its client now and then loses a reply (about one call in 500 in
//! lattice-bench, against its own server too). tests/integration/tests/wrpc_peer.rs checks this module
//! against the crate both ways; BENCHMARKS.md ("Lattice") has the sizes
//! and round trips side by side.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::{Client, HeaderMap, Message, Subscriber};
use futures_util::StreamExt;
use tokio::sync::mpsc;

use super::agent::Agent;
use crate::host::{RemoteCall, RemoteCalls, RemoteError};

/// The protocol token in every invocation subject.
pub const PROTOCOL: &str = "wrpc.0.0.1";

/// How many messages one call's stream may have waiting before it is cut
/// off: a peer that floods a stream fails its own call instead of growing
/// this host's memory.
const STREAM_BACKLOG: usize = 256;

/// The reply subjects of every call on one connection, behind a single
/// wildcard subscription `{inbox}.>`.
///
/// Each call needs subjects of its own (the handshake and results of a
/// call made, the parameters of a call served). Subscribing to each on
/// the server costs a SUB and an UNSUB per subject and call, and on a leaf
/// node every new subject is also announced to the hub; here a call's
/// subjects are only entries in a local table, added before the subject is
/// handed to the peer, so no message can arrive before its route exists
/// (wrpc-transport-nats routes its replies the same way).
pub struct Inbox {
    prefix: String,
    next: AtomicU64,
    routes: Arc<Mutex<HashMap<String, mpsc::Sender<Message>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Inbox {
    /// Subscribes `{a fresh inbox}.>` on `client` and routes what arrives.
    pub async fn new(client: &Client) -> Result<Inbox, String> {
        let prefix = client.new_inbox();
        let mut sub = client
            .subscribe(format!("{prefix}.>"))
            .await
            .map_err(|e| format!("subscribing to the wRPC inbox: {e}"))?;
        let routes: Arc<Mutex<HashMap<String, mpsc::Sender<Message>>>> = Arc::default();
        let table = routes.clone();
        let task = tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let Ok(mut t) = table.lock() else { return };
                let Some(tx) = t.get(m.subject.as_str()) else {
                    // A call that is over (e.g. the end-of-parameters
                    // message of a call answered from its first message).
                    continue;
                };
                if let Err(e) = tx.try_send(m) {
                    // Full or gone: drop the route, so the call sees its
                    // stream end and fails instead of reading a gap.
                    let m = e.into_inner();
                    tracing::warn!(subject = %m.subject, "wRPC stream overflowed; the call fails");
                    t.remove(m.subject.as_str());
                }
            }
        });
        Ok(Inbox {
            prefix,
            next: AtomicU64::new(0),
            routes,
            task,
        })
    }

    /// A subject no other call of this connection uses.
    fn subject(&self) -> String {
        format!(
            "{}.{}",
            self.prefix,
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// Starts delivering messages on `subject`; they stop when the route
    /// is dropped.
    fn route(&self, subject: String) -> Route {
        let (tx, rx) = mpsc::channel(STREAM_BACKLOG);
        if let Ok(mut t) = self.routes.lock() {
            t.insert(subject.clone(), tx);
        }
        Route {
            rx,
            subject,
            routes: self.routes.clone(),
        }
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One subject's messages; unrouted on drop.
struct Route {
    rx: mpsc::Receiver<Message>,
    subject: String,
    routes: Arc<Mutex<HashMap<String, mpsc::Sender<Message>>>>,
}

impl Route {
    async fn next(&mut self) -> Option<Message> {
        self.rx.recv().await
    }
}

impl Drop for Route {
    fn drop(&mut self) {
        if let Ok(mut t) = self.routes.lock() {
            t.remove(&self.subject);
        }
    }
}

/// Calls to remote targets, from the blocking threads components run on.
pub(crate) struct WrpcClient {
    pub client: Client,
    pub inbox: Arc<Inbox>,
    pub lattice: String,
    pub runtime: tokio::runtime::Handle,
    pub status: super::SharedStatus,
}

impl RemoteCalls for WrpcClient {
    fn call(&self, c: RemoteCall<'_>) -> Result<Vec<u8>, RemoteError> {
        let up = self
            .status
            .lock()
            .map(|s| s.state == super::LinkState::Connected)
            .unwrap_or(false);
        if !up {
            // Fail fast: a call must not wait for an uplink that may be
            // gone for days.
            return Err(RemoteError::Unreachable);
        }
        let deadline = tokio::time::Instant::from_std(c.deadline);
        self.runtime.block_on(async {
            tokio::time::timeout_at(
                deadline,
                invoke(&self.client, &self.inbox, &self.lattice, &c),
            )
            .await
            .unwrap_or_else(|_| Err(RemoteError::Timeout(c.target.to_string())))
        })
    }
}

/// Makes one call: `c.params` (value-encoded) to `c.func` of `c.instance`
/// on `c.target`; returns the value-encoded results. No deadline of its
/// own: the caller bounds it.
pub async fn invoke(
    client: &Client,
    inbox: &Inbox,
    lattice: &str,
    c: &RemoteCall<'_>,
) -> Result<Vec<u8>, RemoteError> {
    let transport = |e: String| RemoteError::Transport(e);
    let rx = inbox.subject();
    let mut handshake = inbox.route(rx.clone());
    let mut results = inbox.route(format!("{rx}.results"));
    let mut headers = HeaderMap::new();
    headers.insert("source-id", c.source);
    headers.insert("link-name", c.link_name);
    if let Some(tp) = &c.traceparent {
        headers.insert("traceparent", tp.as_str());
    }
    let subject = format!(
        "{lattice}.{}.{PROTOCOL}.{}.{}",
        c.target, c.instance, c.func
    );
    // The first message carries as much of the parameters as fits.
    let room = client
        .server_info()
        .max_payload
        .saturating_sub(rx.len() + 128)
        .max(1024);
    let (first, rest) = c.params.split_at(c.params.len().min(room));
    client
        .publish_with_reply_and_headers(subject, rx, headers, first.to_vec().into())
        .await
        .map_err(|e| transport(e.to_string()))?;
    let hs = handshake
        .next()
        .await
        .ok_or_else(|| transport("the lattice connection closed during the call".into()))?;
    if let Some(status) = hs.status {
        if status == async_nats::StatusCode::NO_RESPONDERS {
            return Err(RemoteError::NoResponders(c.target.to_string()));
        }
        if !status.is_success() {
            return Err(RemoteError::Refused(status.to_string()));
        }
    }
    let params_to = hs
        .reply
        .map(|r| format!("{r}.params"))
        .ok_or_else(|| transport("the callee did not give a reply subject".into()))?;
    for chunk in rest.chunks(room) {
        client
            .publish(params_to.clone(), chunk.to_vec().into())
            .await
            .map_err(|e| transport(e.to_string()))?;
    }
    // End of the parameter stream, as wrpc's client sends it.
    client
        .publish(params_to, bytes::Bytes::new())
        .await
        .map_err(|e| transport(e.to_string()))?;
    let mut out = Vec::new();
    loop {
        let m = results
            .next()
            .await
            .ok_or_else(|| transport("the results stream was cut off".into()))?;
        if m.payload.is_empty() {
            break;
        }
        out.extend_from_slice(&m.payload);
    }
    // Empty results are a complete answer for a function that returns
    // nothing; for any other, the caller's decoding says the call failed.
    Ok(out)
}

/// Serves this host's components to the lattice: one queue subscription
/// per running component, kept in step with what runs.
pub(crate) async fn serve(agent: Arc<Agent>, inbox: Arc<Inbox>, mut sync: SyncReceiver) {
    let mut served: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    // The tick catches components started or stopped by other means
    // (`twig apply`, a crash); the agent asks for a pass at once after a
    // scale, before it announces it.
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let mut acks = Vec::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            Some(ack) = sync.recv() => acks.push(ack),
        }
        // Everyone who asked while this pass was due is answered by it.
        while let Ok(ack) = sync.try_recv() {
            acks.push(ack);
        }
        let host = agent.host.clone();
        let want: Vec<String> =
            match tokio::task::spawn_blocking(move || host.served_components()).await {
                Ok(w) => w,
                Err(_) => continue,
            };
        served.retain(|id, task| {
            let keep = want.contains(id) && !task.is_finished();
            if !keep {
                task.abort();
            }
            keep
        });
        for id in want {
            if served.contains_key(&id) {
                continue;
            }
            let subject = format!("{}.{id}.{PROTOCOL}.>", agent.opts.lattice);
            let group = format!("{}.{id}", agent.opts.lattice);
            match agent.client.queue_subscribe(subject.clone(), group).await {
                Ok(sub) => {
                    tracing::debug!(component = %id, %subject, "serving over wRPC");
                    let a = agent.clone();
                    let cid = id.clone();
                    let inbox = inbox.clone();
                    served.insert(
                        id,
                        tokio::spawn(async move { serve_component(a, inbox, cid, sub).await }),
                    );
                }
                Err(e) => tracing::warn!(component = %id, "cannot serve over wRPC: {e}"),
            }
        }
        for ack in acks.drain(..) {
            let _ = ack.send(());
        }
    }
}

/// A request for a serving pass, answered when it is done.
type SyncReceiver = mpsc::UnboundedReceiver<tokio::sync::oneshot::Sender<()>>;

async fn serve_component(agent: Arc<Agent>, inbox: Arc<Inbox>, id: String, mut sub: Subscriber) {
    let prefix = format!("{}.{id}.{PROTOCOL}.", agent.opts.lattice);
    let policy = agent.host.board().control.clone();
    // Calls served at once for this component: past the cap a caller gets
    // a failed call at once. A queue would let any peer on the lattice
    // make the host hold as many calls (and their parameters) as it likes.
    let slots = Arc::new(tokio::sync::Semaphore::new(policy.wrpc_max_concurrent));
    let max_params = policy.wrpc_max_param_bytes();
    let mut refused_since_log = 0u64;
    let mut last_log: Option<Instant> = None;
    while let Some(msg) = sub.next().await {
        let Some((instance, func)) = split_subject(&msg, &prefix) else {
            continue;
        };
        let (instance, func) = (instance.to_string(), func.to_string());
        let a = agent.clone();
        let id = id.clone();
        let inbox = inbox.clone();
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            refused_since_log += 1;
            // One line per 10 s at most, with the count: a flood must not
            // turn into a flood of log lines.
            if last_log.is_none_or(|t| t.elapsed() > Duration::from_secs(10)) {
                tracing::warn!(component = %id, refused = refused_since_log, "wRPC calls refused: {} already running (control.wrpc_max_concurrent)", policy.wrpc_max_concurrent);
                refused_since_log = 0;
                last_log = Some(Instant::now());
            }
            let why = format!(
                "`{id}` is busy: {} calls from the lattice are running (control.wrpc_max_concurrent)",
                policy.wrpc_max_concurrent
            );
            let deadline = Instant::now() + Duration::from_secs(1);
            tokio::spawn(async move {
                let _ = answer(&a.client, &inbox, msg, deadline, usize::MAX, |_| {
                    let why = why.clone();
                    async move { Err(why) }
                })
                .await;
            });
            continue;
        };
        tokio::spawn(async move {
            let _slot = slot;
            let source = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("source-id"))
                .map(|v| v.to_string())
                .unwrap_or_default();
            let trace = msg
                .headers
                .as_ref()
                .and_then(|h| h.get("traceparent"))
                .and_then(|v| crate::trace::TraceId::from_traceparent(v.as_str()));
            let deadline =
                Instant::now() + Duration::from_millis(a.host.board().limits.deadline_ms);
            let run = |params: Vec<u8>| {
                let host = a.host.clone();
                let (i, f, cid) = (instance.clone(), func.clone(), id.clone());
                async move {
                    // On the guest pool: a burst of calls queues there, not
                    // in front of the control plane's blocking work.
                    host.run_guest(move |h| {
                        let _trace = crate::trace::enter(trace);
                        h.call_from_lattice(&cid, &i, &f, &params, deadline)
                    })
                    .await
                    .and_then(|r| r)
                }
            };
            if let Err(e) = answer(&a.client, &inbox, msg, deadline, max_params, run).await {
                tracing::warn!(component = %id, "wRPC call {instance}#{func} from {source}: {e}");
            }
        });
    }
}

/// `(instance, func)` of an invocation subject `{prefix}{instance}.{func}`:
/// the instance holds dots (`@0.1.0`), the function name does not.
pub fn split_subject<'m>(msg: &'m Message, prefix: &str) -> Option<(&'m str, &'m str)> {
    msg.subject.as_str().strip_prefix(prefix)?.rsplit_once('.')
}

/// Answers one invocation `msg`: the handshake, the rest of the parameters
/// if the first message did not hold them all, and the results. `run` gets
/// the parameters received so far and returns the value-encoded results,
/// `Ok(None)` when the parameters are not complete yet, or why the call
/// failed (the caller then gets an empty result stream). Parameters past
/// `max_params` bytes fail the call without being kept.
pub async fn answer<F, Fut>(
    client: &Client,
    inbox: &Inbox,
    msg: Message,
    deadline: Instant,
    max_params: usize,
    mut run: F,
) -> Result<(), String>
where
    F: FnMut(Vec<u8>) -> Fut,
    Fut: Future<Output = Result<Option<Vec<u8>>, String>>,
{
    let reply = msg.reply.clone().ok_or("no reply subject")?;
    let rx = inbox.subject();
    // Routed before the handshake reply names it: the caller sends the
    // rest of the parameters as soon as it has that reply. The route is a
    // local table entry, so this costs nothing when the first message held
    // everything (the common case; the caller's end-of-parameters message
    // then lands here unread).
    let mut params_in = inbox.route(format!("{rx}.params"));
    client
        .publish_with_reply(reply.clone(), rx, bytes::Bytes::new())
        .await
        .map_err(|e| e.to_string())?;
    let mut params = msg.payload.to_vec();
    let results_to = format!("{reply}.results");
    let outcome = loop {
        if params.len() > max_params {
            break Err(format!(
                "the parameters are over {max_params} bytes (control.wrpc_max_param_kib)"
            ));
        }
        match run(params.clone()).await {
            Ok(Some(results)) => break Ok(results),
            Err(e) => break Err(e),
            Ok(None) => {
                // More parameters to come.
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, params_in.next()).await {
                    Ok(Some(m)) if params.len() + m.payload.len() > max_params => {
                        break Err(format!(
                            "the parameters are over {max_params} bytes (control.wrpc_max_param_kib)"
                        ))
                    }
                    Ok(Some(m)) if !m.payload.is_empty() => params.extend_from_slice(&m.payload),
                    _ => break Err("the parameters ended early".to_string()),
                }
            }
        }
    };
    drop(params_in);
    let room = client.server_info().max_payload.max(1024);
    if let Ok(results) = &outcome {
        for chunk in results.chunks(room) {
            client
                .publish(results_to.clone(), chunk.to_vec().into())
                .await
                .map_err(|e| e.to_string())?;
        }
    }
    // The end of the results; with nothing before it, the caller knows the
    // call failed.
    client
        .publish(results_to, bytes::Bytes::new())
        .await
        .map_err(|e| e.to_string())?;
    outcome.map(|_| ())
}
