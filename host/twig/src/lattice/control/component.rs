//! `component.scale` and `component.update`: checked and answered at once
//! (a missing file or a count over the board's limit is an error reply
//! that changes nothing); the work then runs in the id's queue
//! ([`super::ordered`]) and `component_scaled` or `component_scale_failed`
//! tells how it went, as on the 1.x host.

use std::sync::Arc;

use super::super::agent::Agent;
use super::super::events;
use super::super::policy_service::{self, Ask};
use super::super::wire::{self, Reply};
use super::{blocking, busy, scale_permit};

pub(super) async fn scale(agent: &Arc<Agent>, s: wire::ScaleComponent) -> Reply {
    let Some(permit) = scale_permit(agent) else {
        return busy(agent, "component.scale");
    };
    if s.count > 0 {
        let annotations = s.annotations.clone().unwrap_or_default();
        let ask = Ask::StartComponent {
            id: &s.component_id,
            image_ref: &s.component_ref,
            max_instances: s.count,
            annotations: &annotations,
        };
        if let Err(e) = policy_service::check(agent, ask).await {
            tracing::warn!(component = %s.component_id, "component.scale {e}");
            return Reply::failure(e);
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
            Reply::failure(e)
        }
        Ok(plan) => {
            let msg = plan.message.clone();
            run_plan(agent, plan, permit);
            Reply::success(msg)
        }
    }
}

pub(super) async fn update(agent: &Arc<Agent>, u: wire::UpdateComponent) -> Reply {
    let Some(permit) = scale_permit(agent) else {
        return busy(agent, "component.update");
    };
    let annotations = u.annotations.clone().unwrap_or_default();
    let ask = Ask::StartComponent {
        id: &u.component_id,
        image_ref: &u.new_component_ref,
        max_instances: 0,
        annotations: &annotations,
    };
    if let Err(e) = policy_service::check(agent, ask).await {
        return Reply::failure(e);
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
            run_plan(agent, plan, permit);
            Reply::success(msg)
        }
        Err(e) => Reply::failure(e),
    }
}

/// Queues a checked scale or update behind the id's earlier operations.
fn run_plan(
    agent: &Arc<Agent>,
    plan: crate::control::ScalePlan,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let a = agent.clone();
    let id = plan.id.clone();
    agent.ordered.run(&id, async move {
        let host = a.host.clone();
        let p = plan.clone();
        let result = blocking(move || host.run_scale(&p)).await.and_then(|r| r);
        // The slot is for the work, not the event: a request that follows
        // the event at once finds it free.
        drop(permit);
        let o = plan.origin;
        match result {
            Ok(()) => {
                tracing::info!(component = %plan.id, instances = o.max_instances, "scaled by the lattice");
                a.serving_in_step().await;
                let event = wire::ComponentScaled {
                    annotations: o.annotations,
                    component_id: plan.id,
                    host_id: a.id.host_id.clone(),
                    image_ref: o.image_ref,
                    max_instances: o.max_instances,
                };
                events::publish(&a, event).await
            }
            Err(e) => {
                tracing::warn!(component = %plan.id, "scale failed: {e}");
                let event = wire::ComponentScaleFailed {
                    annotations: o.annotations,
                    component_id: plan.id,
                    error: e,
                    host_id: a.id.host_id.clone(),
                    image_ref: o.image_ref,
                    max_instances: o.max_instances,
                };
                events::publish(&a, event).await
            }
        }
    });
}
