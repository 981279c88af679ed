//! `config.put`, `config.get` and `config.del`: named config in the
//! lattice's `CONFIGDATA` bucket ([`buckets`]). What this host keeps of it
//! is bounded by its policy, and the answer says so.

use std::collections::BTreeMap;

use super::super::agent::Agent;
use super::super::wire::{self, Reply, Response};
use super::super::{buckets, events};

pub(super) async fn put(agent: &Agent, name: String, map: BTreeMap<String, String>) -> Reply {
    match buckets::put_config(agent, &name, Some(&map)).await {
        Ok(()) => {
            let kept = agent.host.lattice_config(&name).is_some();
            events::publish(
                agent,
                wire::ConfigSet {
                    config_name: name.clone(),
                },
            )
            .await;
            if kept {
                Reply::success("successfully put config")
            } else {
                Reply::success(format!(
                    "successfully put config (this host does not keep `{name}`: over its control.max_config_entries or control.max_lattice_kib)"
                ))
            }
        }
        Err(e) => failed(agent, e),
    }
}

pub(super) async fn del(agent: &Agent, name: String) -> Reply {
    match buckets::put_config(agent, &name, None).await {
        Ok(()) => {
            events::publish(agent, wire::ConfigDeleted { config_name: name }).await;
            Reply::success("successfully deleted config")
        }
        Err(e) => failed(agent, e),
    }
}

/// From the bucket; from the copy on disk when the bucket cannot be
/// reached.
pub(super) async fn get(agent: &Agent, name: String) -> Reply {
    let found = match buckets::get_config(agent, &name).await {
        Ok(c) => c,
        Err(_) => agent.host.lattice_config(&name),
    };
    match found {
        Some(c) => Reply::ok(Response::Config(c)),
        None => Reply::success("Configuration not found"),
    }
}

/// The bucket may be gone (deleted, or its domain away): look it up
/// afresh next time.
fn failed(agent: &Agent, e: String) -> Reply {
    agent.buckets.forget();
    Reply::failure(e)
}
