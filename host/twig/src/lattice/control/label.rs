//! `label.put` and `label.del`: the host's labels, kept on disk; each
//! change is told in `labels_changed`. `hostcore.*` labels are refused by
//! the parser (`wire::parse_request`).

use super::super::agent::Agent;
use super::super::events;
use super::super::wire::{self, Reply};
use super::blocking;

pub(super) async fn put(agent: &Agent, l: wire::LabelPut) -> Reply {
    let host = agent.host.clone();
    match blocking(move || host.put_label(&l.key, &l.value))
        .await
        .and_then(|r| r)
    {
        Ok(labels) => {
            changed(agent, labels).await;
            Reply::success("successfully put label")
        }
        Err(e) => Reply::failure(e),
    }
}

pub(super) async fn del(agent: &Agent, l: wire::LabelDel) -> Reply {
    let host = agent.host.clone();
    match blocking(move || host.delete_label(&l.key))
        .await
        .and_then(|r| r)
    {
        Ok(Some(labels)) => {
            changed(agent, labels).await;
            Reply::success("successfully deleted label")
        }
        Ok(None) => Reply::success("successfully deleted label (no such label)"),
        Err(e) => Reply::failure(e),
    }
}

async fn changed(agent: &Agent, labels: std::collections::BTreeMap<String, String>) {
    let event = wire::LabelsChanged {
        host_id: agent.id.host_id.clone(),
        labels,
    };
    events::publish(agent, event).await;
}
