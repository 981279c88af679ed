//! What the host says about itself, and how it is stopped: `host.ping`,
//! `host.get` (the inventory), `host.stop`; with `claims.get` and
//! `registry.put`, which twig has nothing to do for.

use std::collections::BTreeMap;

use super::super::agent::Agent;
use super::super::wire::{self, Reply, Response};

pub(super) fn ping(agent: &Agent) -> Reply {
    Reply::ok(Response::Host(agent.host_info()))
}

pub(super) fn inventory(agent: &Agent) -> Reply {
    Reply::ok(Response::Inventory(agent.inventory()))
}

/// Allowed only when the board's `control.host_stop` says so (the family
/// gate has checked): rings the stop, and `twig up` shuts down.
pub(super) fn stop(agent: &Agent, s: wire::StopHost) -> Reply {
    let how = match agent.host.board().control.host_stop {
        crate::policy::HostStop::Restart => "stopping; it will be started again",
        _ => "stopping",
    };
    tracing::info!(timeout_ms = ?s.timeout, "host.stop from the lattice (allowed: control.host_stop): shutting down");
    agent.stop.notify_one();
    Reply::success(format!("twig is {how}"))
}

/// twig runs no signed (claims-carrying) components.
pub(super) fn claims() -> Reply {
    Reply::ok(Response::Claims(Vec::<BTreeMap<String, String>>::new()))
}

/// twig pulls from no registry: nothing to store, nothing to say.
pub(super) fn registry_put() -> Option<Reply> {
    tracing::debug!("registry.put ignored: twig pulls from no registry");
    None
}
