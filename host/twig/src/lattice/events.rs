//! The lattice events this host publishes on `wasmbus.evt.{lattice}.{name}`:
//! the typed payloads of [`wire`] wrapped in a CloudEvent, sent through the
//! outbox (so an event of an outage arrives after it, in order, and
//! heartbeats go ahead of a telemetry backlog); and the two the host sends
//! on its own, `host_started` with the first heartbeat and `host_stopped`
//! on the way out.

use std::sync::Arc;
use std::time::Duration;

use super::agent::blocking;
use super::agent::Agent;
use super::wire::{self, CloudEvent, LatticeEvent};

/// Publishes one event, through the outbox when the host has one.
pub(crate) async fn publish<E: LatticeEvent>(agent: &Agent, event: E) {
    let name = event.name();
    let Some(bytes) = encode(agent, &event) else {
        return;
    };
    let subject = subject(agent, name);
    if let Some(up) = agent.host.upstream() {
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
    publish_now(agent, &subject, name, bytes).await;
}

fn subject(agent: &Agent, name: &str) -> String {
    format!("wasmbus.evt.{}.{name}", agent.opts.lattice)
}

fn encode<E: LatticeEvent>(agent: &Agent, event: &E) -> Option<Vec<u8>> {
    let name = event.name();
    match serde_json::to_vec(&CloudEvent::new(&agent.id.host_id, name, event)) {
        Ok(b) => Some(b),
        Err(e) => {
            tracing::error!("event {name}: {e}");
            None
        }
    }
}

/// Publishes an event directly, past the outbox (on the way out, when
/// nothing would be left to send the outbox).
async fn publish_now(agent: &Agent, subject: &str, name: &str, bytes: Vec<u8>) {
    if let Err(e) = agent
        .client
        .publish(subject.to_string(), bytes.into())
        .await
    {
        tracing::warn!("cannot publish event {name}: {e}");
    }
}

/// `host_stopped`, flushed, on the way out (bounded: a host whose link is
/// down must still stop promptly).
pub(crate) async fn announce_stop(agent: &Agent) {
    if !agent.connected() {
        return;
    }
    let event = wire::HostStopped {
        labels: agent.host.labels(),
    };
    let Some(bytes) = encode(agent, &event) else {
        return;
    };
    let subject = subject(agent, event.name());
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        publish_now(agent, &subject, event.name(), bytes).await;
        let _ = agent.client.flush().await;
    })
    .await;
}

/// `host_heartbeat` every interval and right after each (re)connect, with
/// `host_started` before the first.
pub(crate) async fn heartbeat(agent: Arc<Agent>) {
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
            let start = wire::HostStarted {
                friendly_name: agent.id.friendly_name.clone(),
                labels: agent.host.labels(),
                uptime_seconds: agent.uptime(),
                version: env!("CARGO_PKG_VERSION").to_string(),
            };
            publish(&agent, start).await;
            announced = true;
        }
        let beat = wire::HostHeartbeat::new(agent.inventory(), link_report(&agent));
        publish(&agent, beat).await;
    }
}

/// The `twig_link` field of a heartbeat.
fn link_report(agent: &Agent) -> wire::LinkReport {
    let status = agent
        .status
        .lock()
        .map(|s| s.clone())
        .unwrap_or_else(|e| e.into_inner().clone());
    let outbox = agent.host.upstream().map(|u| {
        let st = u.outbox.stats();
        wire::OutboxReport {
            bytes: st.total_bytes,
            dropped: st
                .classes
                .iter()
                .map(|c| c.dropped_full + c.rejected_full)
                .sum(),
            expired: st.classes.iter().map(|c| c.expired).sum(),
            pending: st.classes.iter().map(|c| c.pending_records).sum(),
        }
    });
    wire::LinkReport {
        connects: status.connects,
        delivered: status.delivered,
        outbox,
        state: status.state,
        upstream: status.upstream,
        upstream_rtt_ms: status.upstream_rtt_ms,
    }
}
