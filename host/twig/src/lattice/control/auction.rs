//! `component.auction` and `provider.auction`: bid (reply) only if this
//! host could take the component or provider and every constraint matches
//! its labels; otherwise stay silent, as the 1.x host does.

use std::collections::BTreeMap;

use super::super::agent::Agent;
use super::super::wire::{self, Reply, Response};
use super::blocking;

fn constraints_met(
    labels: &BTreeMap<String, String>,
    constraints: &BTreeMap<String, String>,
) -> bool {
    constraints.iter().all(|(k, v)| labels.get(k) == Some(v))
}

pub(super) fn component(agent: &Agent, a: wire::Auction) -> Option<Reply> {
    if !constraints_met(&agent.host.labels(), &a.constraints) || agent.host.has_component(&a.id) {
        return None;
    }
    Some(Reply::ok(Response::ComponentAuction(
        wire::ComponentAuctionAck {
            component_ref: a.reference,
            component_id: a.id,
            host_id: agent.id.host_id.clone(),
            constraints: a.constraints,
        },
    )))
}

pub(super) async fn provider(agent: &Agent, a: wire::Auction) -> Option<Reply> {
    let host = agent.host.clone();
    let probe = wire::StartProvider {
        provider_id: a.id.clone(),
        provider_ref: a.reference.clone(),
        host_id: agent.id.host_id.clone(),
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
    Some(Reply::ok(Response::ProviderAuction(
        wire::ProviderAuctionAck {
            provider_ref: a.reference,
            provider_id: a.id,
            host_id: agent.id.host_id.clone(),
            constraints: a.constraints,
        },
    )))
}
