//! The control interface: `{ctl_prefix}.v1.{lattice}.{op}` requests in,
//! typed [`Reply`]s out. This module subscribes, parses each subject and
//! payload into a [`Request`] (`wire::parse_request`), applies the control
//! policy's family gate and routes the request to its family's file, where
//! the whole of its handling is:
//!
//! * [`host`]: `host.ping`, `host.get` (inventory), `host.stop`,
//!   `claims.get`, `registry.put`;
//! * [`component`]: `component.scale`, `component.update`;
//! * [`provider`]: `provider.start`, `provider.stop`;
//! * [`auction`]: `component.auction`, `provider.auction`;
//! * [`label`]: `label.put`, `label.del`;
//! * [`link`]: `link.put`, `link.del`, `link.get`;
//! * [`config`]: `config.put`, `config.get`, `config.del`.
//!
//! Requests are answered one at a time, in arrival order. What takes long
//! (compiling and starting a component or provider) is acknowledged at
//! once, as on the 1.x host, and runs afterwards in [`ordered`]'s per-id
//! queue, so operations on one id still run in the order they arrived.
//! A `provider.stop` for an id with work queued joins that queue and is
//! answered when it has run (the reply is sent from a task, so later
//! requests are not held up).

mod auction;
mod component;
mod config;
mod host;
mod label;
mod link;
mod provider;
#[cfg(test)]
mod tests;

pub(crate) use super::agent::blocking;
use std::sync::Arc;

use async_nats::Message;
use futures_util::StreamExt;

use super::agent::Agent;
use super::wire::{self, Reply, Request};

/// Subscribes to the control subjects and answers them in order. Once the
/// subscriptions are flushed to the server, the uplink's status says
/// `serving`.
pub(crate) async fn serve(agent: Arc<Agent>) {
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
    announce_serving(&agent).await;
    while let Some(msg) = rx.recv().await {
        let op = msg
            .subject
            .as_str()
            .strip_prefix(&p)
            .and_then(|s| s.strip_prefix('.'))
            .unwrap_or(msg.subject.as_str())
            .to_string();
        let answer = route(&agent, &op, &msg.payload).await;
        let Some(to) = msg.reply.clone() else {
            continue;
        };
        match answer {
            Answer::Now(Some(reply)) => send_reply(&agent, &op, to, reply).await,
            Answer::Now(None) => {}
            // Answered when its turn in the id's queue has come, without
            // holding up the requests behind it.
            Answer::Later(rx) => {
                let a = agent.clone();
                tokio::spawn(async move {
                    let reply = rx.await.unwrap_or_else(|_| {
                        Reply::failure(format!("{op}: the host task ended without an answer"))
                    });
                    send_reply(&a, &op, to, reply).await
                });
            }
        }
    }
}

async fn send_reply(agent: &Agent, op: &str, to: async_nats::Subject, reply: Reply) {
    if let Err(e) = agent.ctl.client.publish(to, encode(&reply).into()).await {
        tracing::warn!("cannot reply to {op}: {e}");
    }
}

/// A reply now (`None`: stay silent), or one that comes when the work
/// queued for it on its id has run.
// One per request, moved once: boxing the common case would only add an
// allocation.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Answer {
    Now(Option<Reply>),
    Later(tokio::sync::oneshot::Receiver<Reply>),
}

/// Flushes the subscriptions just made (the server has them once the
/// flush's PING is answered), then says `serving`. A flush that fails (the
/// link is down) is retried on the next connect: async-nats sends the
/// subscriptions again when it reconnects.
async fn announce_serving(agent: &Agent) {
    let mut connects = agent.ctl.connects.clone();
    loop {
        if agent.ctl_connected() && agent.ctl.client.flush().await.is_ok() {
            super::update(&agent.status, |s| s.serving = true);
            tracing::info!("lattice control serving");
            return;
        }
        tokio::select! {
            r = connects.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(std::time::Duration::from_millis(200)) => {}
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

/// A reply as JSON; one that cannot be encoded becomes an error reply.
pub(crate) fn encode(reply: &Reply) -> Vec<u8> {
    serde_json::to_vec(reply).unwrap_or_else(|e| {
        serde_json::to_vec(&Reply::failure(format!("cannot encode the reply: {e}")))
            .unwrap_or_default()
    })
}

/// Answers one request, waiting for a reply that comes later: `op` is
/// the subject after the prefix and lattice (`component.scale.N…`). `None`
/// means stay silent (an auction this host does not bid in,
/// `registry.put`).
#[cfg(test)]
pub(crate) async fn dispatch(agent: &Arc<Agent>, op: &str, payload: &[u8]) -> Option<Reply> {
    match route(agent, op, payload).await {
        Answer::Now(reply) => reply,
        Answer::Later(rx) => Some(rx.await.unwrap_or_else(|_| Reply::failure("no answer"))),
    }
}

/// Parses, gates and routes one request to its family's handler.
pub(crate) async fn route(agent: &Arc<Agent>, op: &str, payload: &[u8]) -> Answer {
    let req = match wire::parse_request(op, &agent.id.host_id, payload) {
        Ok(req) => req,
        Err(why) => {
            tracing::warn!(op, "control request refused: {why}");
            return Answer::Now(Some(Reply::failure(why)));
        }
    };
    let policy = &agent.host.board().control;
    if let Some(family) = req.family() {
        if !policy.permits(family) {
            if matches!(
                req,
                Request::ComponentAuction(_) | Request::ProviderAuction(_)
            ) {
                // A host that may not be asked to start things does not bid.
                return Answer::Now(None);
            }
            let why = policy.refusal(family, op);
            tracing::warn!("control request refused: {why}");
            return Answer::Now(Some(Reply::failure(why)));
        }
    }
    Answer::Now(Some(match req {
        Request::HostPing => host::ping(agent),
        Request::HostGet => host::inventory(agent),
        Request::HostStop(s) => host::stop(agent, s),
        Request::ClaimsGet => host::claims(),
        Request::RegistryPut => return Answer::Now(host::registry_put()),
        Request::ComponentAuction(a) => return Answer::Now(auction::component(agent, a)),
        Request::ProviderAuction(a) => return Answer::Now(auction::provider(agent, a).await),
        Request::ComponentScale(s) => component::scale(agent, s).await,
        Request::ComponentUpdate(u) => component::update(agent, u).await,
        Request::ProviderStart(s) => provider::start(agent, s).await,
        Request::ProviderStop(s) => return provider::stop(agent, s).await,
        Request::LabelPut(l) => label::put(agent, l).await,
        Request::LabelDel(l) => label::del(agent, l).await,
        Request::LinkPut(l) => link::put(agent, l).await,
        Request::LinkDel(d) => link::del(agent, d).await,
        Request::LinkGet => link::get(agent),
        Request::ConfigPut(name, map) => config::put(agent, name, map).await,
        Request::ConfigGet(name) => config::get(agent, name).await,
        Request::ConfigDel(name) => config::del(agent, name).await,
    }))
}

/// A slot for one more scale, update or provider start, if there is one
/// (`control.max_concurrent_scales`): one more is refused, not queued, so
/// a flood of them cannot pile up compiles and memory. Queued work holds
/// its slot while it waits its turn.
fn scale_permit(agent: &Agent) -> Option<tokio::sync::OwnedSemaphorePermit> {
    agent.scales.clone().try_acquire_owned().ok()
}

/// The refusal when no slot is free.
fn busy(agent: &Agent, op: &str) -> Reply {
    let n = agent.host.board().control.max_concurrent_scales;
    Reply::failure(format!("{op}: busy: {n} scales, updates or provider starts are running on this host (control.max_concurrent_scales); try again when they are done"))
}
