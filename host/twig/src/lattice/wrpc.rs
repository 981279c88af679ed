//! wRPC over NATS, as wasmCloud 1.x speaks it (wrpc-transport-nats 0.29,
//! frozen upstream): calls to link targets elsewhere in the lattice, and
//! this host's components serving callers elsewhere.
//!
//! One call, for parameters and results that fit in a NATS message (the
//! common case; larger ones are sent in chunks the same way):
//!
//! ```text
//! caller                                           callee (queue group {lattice}.{id})
//!   sub R, R.results
//!   pub {lattice}.{id}.wrpc.0.0.1.{instance}.{func}  reply R, headers source-id, link-name
//!       payload: the parameters, value-encoded  ─────►
//!                                                   sub S.params (only if the parameters
//!                                                   are not all there)
//!                              ◄───── pub R  reply S, empty payload (the handshake)
//!   pub S.params: rest of the parameters, then an empty message (end)
//!                                                   runs the export
//!                              ◄───── pub R.results: the results, then an empty message
//! ```
//!
//! The value encoding is in `twig_component::wrpc`. Streams, futures and
//! resources are not sent; twig refuses calls that would need them.
//! Twig implements the transport itself rather than through the
//! `wrpc-transport-nats` crate: that crate pins async-nats 0.39 (twig uses
//! 0.51), so it would put a second NATS client into the device binary;
//! the protocol above is all twig needs of it. (BENCHMARKS.md has the
//! measurements.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::{Client, HeaderMap, Subscriber};
use futures_util::StreamExt;

use super::agent::Agent;
use crate::host::{RemoteCall, RemoteCalls};

/// The protocol token in every invocation subject.
pub const PROTOCOL: &str = "wrpc.0.0.1";

/// Calls to remote targets, from the blocking threads components run on.
pub(crate) struct WrpcClient {
    pub client: Client,
    pub lattice: String,
    pub runtime: tokio::runtime::Handle,
    pub status: super::SharedStatus,
}

impl RemoteCalls for WrpcClient {
    fn call(&self, c: RemoteCall<'_>) -> Result<Vec<u8>, String> {
        let up = self
            .status
            .lock()
            .map(|s| s.state == super::LinkState::Connected)
            .unwrap_or(false);
        if !up {
            // Fail fast: a call must not wait for an uplink that may be
            // gone for days.
            return Err("lattice unreachable (the uplink is down)".into());
        }
        let deadline = tokio::time::Instant::from_std(c.deadline);
        self.runtime.block_on(async {
            tokio::time::timeout_at(deadline, invoke(&self.client, &self.lattice, &c))
                .await
                .unwrap_or_else(|_| {
                    Err(format!("no answer from `{}` before the deadline", c.target))
                })
        })
    }
}

async fn invoke(client: &Client, lattice: &str, c: &RemoteCall<'_>) -> Result<Vec<u8>, String> {
    let inbox = client.new_inbox();
    let mut handshake = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| e.to_string())?;
    let mut results = client
        .subscribe(format!("{inbox}.results"))
        .await
        .map_err(|e| e.to_string())?;
    let mut headers = HeaderMap::new();
    headers.insert("source-id", c.source);
    headers.insert("link-name", c.link_name);
    let subject = format!(
        "{lattice}.{}.{PROTOCOL}.{}.{}",
        c.target, c.instance, c.func
    );
    // The first message carries as much of the parameters as fits.
    let room = client
        .server_info()
        .max_payload
        .saturating_sub(inbox.len() + 128)
        .max(1024);
    let (first, rest) = c.params.split_at(c.params.len().min(room));
    client
        .publish_with_reply_and_headers(subject, inbox.clone(), headers, first.to_vec().into())
        .await
        .map_err(|e| e.to_string())?;
    let hs = handshake
        .next()
        .await
        .ok_or("the lattice connection closed during the call")?;
    if let Some(status) = hs.status {
        if status == async_nats::StatusCode::NO_RESPONDERS {
            return Err(format!(
                "no host on the lattice serves `{}` (no responders)",
                c.target
            ));
        }
        if !status.is_success() {
            return Err(format!("the call was refused ({status})"));
        }
    }
    let params_to = hs
        .reply
        .map(|r| format!("{r}.params"))
        .ok_or("the callee did not give a reply subject")?;
    for chunk in rest.chunks(room) {
        client
            .publish(params_to.clone(), chunk.to_vec().into())
            .await
            .map_err(|e| e.to_string())?;
    }
    // End of the parameter stream, as wrpc's client sends it.
    client
        .publish(params_to, bytes::Bytes::new())
        .await
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    while let Some(m) = results.next().await {
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
pub(crate) async fn serve(agent: Arc<Agent>) {
    let mut served: HashMap<String, tokio::task::JoinHandle<()>> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
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
                    served.insert(
                        id,
                        tokio::spawn(async move { serve_component(a, cid, sub).await }),
                    );
                }
                Err(e) => tracing::warn!(component = %id, "cannot serve over wRPC: {e}"),
            }
        }
    }
}

async fn serve_component(agent: Arc<Agent>, id: String, mut sub: Subscriber) {
    let prefix = format!("{}.{id}.{PROTOCOL}.", agent.opts.lattice);
    while let Some(msg) = sub.next().await {
        let Some(tail) = msg.subject.as_str().strip_prefix(&prefix) else {
            continue;
        };
        // `{instance}.{func}`: the instance holds dots (`@0.1.0`), the
        // function name does not.
        let Some((instance, func)) = tail.rsplit_once('.') else {
            continue;
        };
        let (instance, func) = (instance.to_string(), func.to_string());
        let a = agent.clone();
        let id = id.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(&a, &id, &instance, &func, msg).await {
                tracing::warn!(component = %id, "wRPC call {instance}#{func}: {e}");
            }
        });
    }
}

/// Answers one invocation.
async fn answer(
    agent: &Agent,
    id: &str,
    instance: &str,
    func: &str,
    msg: async_nats::Message,
) -> Result<(), String> {
    let reply = msg.reply.clone().ok_or("no reply subject")?;
    let source = msg
        .headers
        .as_ref()
        .and_then(|h| h.get("source-id"))
        .map(|v| v.to_string())
        .unwrap_or_default();
    let client = &agent.client;
    let rx = client.new_inbox();
    let mut params_sub = client
        .subscribe(format!("{rx}.params"))
        .await
        .map_err(|e| e.to_string())?;
    client
        .publish_with_reply(reply.clone(), rx, bytes::Bytes::new())
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_millis(agent.host.board().limits.deadline_ms);
    let mut params = msg.payload.to_vec();
    let results_to = format!("{reply}.results");
    let outcome = loop {
        let host = agent.host.clone();
        let (i, f, p, cid) = (
            instance.to_string(),
            func.to_string(),
            params.clone(),
            id.to_string(),
        );
        let r =
            tokio::task::spawn_blocking(move || host.call_from_lattice(&cid, &i, &f, &p, deadline))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r);
        match r {
            Ok(Some(results)) => break Ok(results),
            Err(e) => break Err(e),
            Ok(None) => {
                // More parameters to come on `{rx}.params`.
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, params_sub.next()).await {
                    Ok(Some(m)) if !m.payload.is_empty() => params.extend_from_slice(&m.payload),
                    _ => break Err("the parameters ended early".to_string()),
                }
            }
        }
    };
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
    outcome
        .map(|_| ())
        .map_err(|e| format!("from {source}: {e}"))
}
