//! `provider.start` and `provider.stop` for twig's built-in providers. A
//! start is checked and answered at once, then runs in the id's queue
//! ([`super::ordered`]) and `provider_started` or `provider_start_failed`
//! tells how it went; a stop runs in the same queue and is answered when
//! it is done.

use std::sync::Arc;

use super::super::agent::Agent;
use super::super::events;
use super::super::policy_service::{self, Ask};
use super::super::wire::{self, Reply};
use super::{blocking, busy, scale_permit, Answer};

pub(super) async fn start(agent: &Arc<Agent>, s: wire::StartProvider) -> Reply {
    let Some(permit) = scale_permit(agent) else {
        return busy(agent, "provider.start");
    };
    let annotations = s.annotations.clone().unwrap_or_default();
    let ask = Ask::StartProvider {
        id: &s.provider_id,
        image_ref: &s.provider_ref,
        annotations: &annotations,
    };
    if let Err(e) = policy_service::check(agent, ask).await {
        return Reply::failure(e);
    }
    let host = agent.host.clone();
    let check = s.clone();
    if let Err(e) = blocking(move || host.check_start_provider(&check))
        .await
        .and_then(|r| r)
    {
        return Reply::failure(e);
    }
    let msg = format!("starting provider {}", s.provider_id);
    let a = agent.clone();
    let id = s.provider_id.clone();
    agent.ordered.run(&id, async move {
        let host = a.host.clone();
        let req = s.clone();
        let result = blocking(move || host.start_provider(&req))
            .await
            .and_then(|r| r);
        // The slot is for the work, not the event.
        drop(permit);
        match result {
            Ok(()) => {
                let event = wire::ProviderStarted {
                    annotations,
                    host_id: a.id.host_id.clone(),
                    image_ref: s.provider_ref,
                    provider_id: s.provider_id,
                };
                events::publish(&a, event).await
            }
            Err(e) => {
                tracing::warn!(provider = %s.provider_id, "provider.start: {e}");
                let event = wire::ProviderStartFailed {
                    error: e,
                    host_id: a.id.host_id.clone(),
                    provider_id: s.provider_id,
                    provider_ref: s.provider_ref,
                };
                events::publish(&a, event).await
            }
        }
    });
    Reply::success(msg)
}

/// Done before the reply when nothing is queued for the id (as every
/// request is); queued behind the id's earlier operations otherwise (a
/// start sent just before is done first), holding a scale slot so a flood
/// of stops cannot pile up, and answered when done.
pub(super) async fn stop(agent: &Arc<Agent>, s: wire::StopProvider) -> Answer {
    if !agent.ordered.has_work(&s.provider_id) {
        return Answer::Now(Some(stop_now(agent.clone(), s).await));
    }
    let Some(permit) = scale_permit(agent) else {
        return Answer::Now(Some(busy(agent, "provider.stop")));
    };
    let a = agent.clone();
    let id = s.provider_id.clone();
    Answer::Later(agent.ordered.run_for(&id, async move {
        let reply = stop_now(a, s).await;
        drop(permit);
        reply
    }))
}

async fn stop_now(a: Arc<Agent>, s: wire::StopProvider) -> Reply {
    let host = a.host.clone();
    let id = s.provider_id.clone();
    match blocking(move || host.stop_provider(&id))
        .await
        .and_then(|r| r)
    {
        Ok(annotations) => {
            let event = wire::ProviderStopped {
                annotations,
                host_id: a.id.host_id.clone(),
                provider_id: s.provider_id,
                reason: "stop".into(),
            };
            events::publish(&a, event).await;
            Reply::success("successfully stopped provider")
        }
        Err(e) => Reply::failure(e),
    }
}
