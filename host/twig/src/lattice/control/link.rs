//! `link.put`, `link.del` and `link.get`: links in the lattice's
//! `LATTICEDATA` bucket, one `COMPONENT_{source}` entry per source, kept
//! as the 1.x host keeps them ([`buckets`] writes them and applies them
//! here at once).

use super::super::agent::Agent;
use super::super::policy_service::{self, Ask};
use super::super::wire::{self, Reply, Response};
use super::super::{buckets, events};
use super::blocking;

pub(super) async fn put(agent: &Agent, link: wire::LinkDef) -> Reply {
    let result = store(agent, &link)
        .await
        .map(|()| agent.host.provider_failure(&link.source_id));
    match result {
        Ok(Some(why)) => {
            // Stored in the lattice's bucket, but the provider here could
            // not act on it: say so rather than "success".
            let e = format!(
                "the link is stored, but provider `{}` on this host cannot act on it: {why}",
                link.source_id
            );
            events::publish(agent, wire::LinkdefSet::new(&link, Some(e.clone()))).await;
            Reply::failure(e)
        }
        Ok(None) => {
            events::publish(agent, wire::LinkdefSet::new(&link, None)).await;
            let kept = agent
                .host
                .lattice_links_of(&link.source_id)
                .iter()
                .any(|l| l == &link);
            if kept {
                Reply::success("successfully set link")
            } else {
                Reply::success(
                    "successfully set link (this host does not keep it: over its control.max_links or control.max_lattice_kib)",
                )
            }
        }
        Err(e) => {
            agent.buckets.forget();
            events::publish(agent, wire::LinkdefSet::new(&link, Some(e.clone()))).await;
            Reply::failure(e)
        }
    }
}

/// Adds or replaces a link in its source's `COMPONENT_{id}` entry, as the
/// 1.x host does: a link with the same source, interface package and name
/// but another target is refused.
async fn store(agent: &Agent, link: &wire::LinkDef) -> Result<(), String> {
    // The device's own components and providers are not the lattice's to
    // wire: not as the link's source (relinking a device HTTP server), nor
    // as its target (a lattice component reaching the device's KV store).
    let host = agent.host.clone();
    let (src, dst) = (link.source_id.clone(), link.target.clone());
    blocking(move || {
        host.check_lattice_owned(&src, "link source")?;
        host.check_lattice_owned(&dst, "link target")
    })
    .await??;
    // A link that wires something running here is this device's business:
    // ask its policy service (one for other hosts is theirs).
    if agent.host.has_component(&link.source_id) || agent.host.has_component(&link.target) {
        policy_service::check(agent, Ask::PutLink(link)).await?;
    }
    for c in link.source_config.iter().chain(&link.target_config) {
        // 1.x refuses links naming config that does not exist.
        if agent.host.lattice_config(c).is_none() && buckets::get_config(agent, c).await?.is_none()
        {
            return Err(format!("link names config `{c}`, which does not exist"));
        }
    }
    let b = buckets::bucket(agent, buckets::LINKS).await?;
    let mut spec = buckets::read_links(&b, &link.source_id)
        .await?
        .map(|(_, spec)| spec)
        .unwrap_or_default();
    if spec.links.iter().any(|l| {
        l.wit_namespace == link.wit_namespace
            && l.wit_package == link.wit_package
            && l.name == link.name
            && l.interfaces.iter().any(|i| link.interfaces.contains(i))
            && l.target != link.target
    }) {
        return Err("link already exists with different target, consider deleting the existing link or using a different link name".into());
    }
    match spec.links.iter_mut().find(|l| {
        l.target == link.target
            && l.wit_namespace == link.wit_namespace
            && l.wit_package == link.wit_package
            && l.name == link.name
    }) {
        Some(l) => *l = link.clone(),
        None => spec.links.push(link.clone()),
    }
    buckets::write_links(agent, &b, &link.source_id, spec).await
}

pub(super) async fn del(agent: &Agent, d: wire::LinkDel) -> Reply {
    match remove(agent, &d).await {
        Ok(deleted) => {
            let (target, interfaces) = match deleted {
                Some(l) => (Some(l.target), Some(l.interfaces)),
                None => (None, None),
            };
            let event = wire::LinkdefDeleted {
                interfaces,
                name: d.name,
                source_id: d.source_id,
                target,
                wit_namespace: d.wit_namespace,
                wit_package: d.wit_package,
            };
            events::publish(agent, event).await;
            Reply::success("successfully deleted link")
        }
        Err(e) => {
            // The bucket may be gone (deleted, or its domain away): look
            // it up afresh next time.
            agent.buckets.forget();
            Reply::failure(e)
        }
    }
}

async fn remove(agent: &Agent, d: &wire::LinkDel) -> Result<Option<wire::LinkDef>, String> {
    let host = agent.host.clone();
    let src = d.source_id.clone();
    blocking(move || host.check_lattice_owned(&src, "link source")).await??;
    let b = buckets::bucket(agent, buckets::LINKS).await?;
    let Some((_, mut spec)) = buckets::read_links(&b, &d.source_id).await? else {
        return Ok(None);
    };
    let Some(i) = spec.links.iter().position(|l| {
        l.wit_namespace == d.wit_namespace && l.wit_package == d.wit_package && l.name == d.name
    }) else {
        return Ok(None);
    };
    let removed = spec.links.swap_remove(i);
    buckets::write_links(agent, &b, &d.source_id, spec).await?;
    Ok(Some(removed))
}

/// Every link this host knows from the lattice (its copy, not the bucket).
pub(super) fn get(agent: &Agent) -> Reply {
    Reply::ok(Response::Links(agent.host.lattice_links()))
}
