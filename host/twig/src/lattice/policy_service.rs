//! The policy service: an optional NATS responder the device asks before
//! it starts something for the lattice (`control.policy_subject`, like
//! wasmCloud 1.x's `--policy-topic`).
//!
//! The protocol is wasmCloud 1.x's (`crates/host/src/policy.rs` on
//! `release-1.9.x`), so an existing policy service answers twig too. A
//! request is JSON:
//!
//! ```json
//! {"requestId": "…", "kind": "startComponent", "version": "v1",
//!  "request": {"componentId": "…", "imageRef": "…", "maxInstances": 1,
//!              "annotations": {}, "claims": null},
//!  "host": {"publicKey": "N…", "lattice": "default", "labels": {}}}
//! ```
//!
//! with `kind` `startComponent` or `startProvider` (`providerId`,
//! `imageRef`, `annotations`, `claims`) as wasmCloud sends them, and
//! `putLink` (`sourceId`, `target`, `name`, `witNamespace`, `witPackage`,
//! `interfaces`), which is twig's own: wasmCloud asks about no links. The
//! answer is `{"requestId": "…", "permitted": bool, "message": "…"}`.
//!
//! Differences from wasmCloud, on purpose: no answer in time (or no
//! responder) is a refusal, never a silent allow; decisions are not cached,
//! since starts and links are rare and a device should see a revoked
//! permission at once; twig sends no `performInvocation` (calls are not
//! asked about).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::agent::Agent;

/// What is asked about.
pub(crate) enum Ask<'a> {
    StartComponent {
        id: &'a str,
        image_ref: &'a str,
        max_instances: u32,
        annotations: &'a BTreeMap<String, String>,
    },
    StartProvider {
        id: &'a str,
        image_ref: &'a str,
        annotations: &'a BTreeMap<String, String>,
    },
    PutLink(&'a super::wire::LinkDef),
}

#[derive(Serialize)]
struct PolicyRequest<'a> {
    #[serde(rename = "requestId")]
    request_id: String,
    kind: &'static str,
    version: &'static str,
    request: serde_json::Value,
    host: PolicyHost<'a>,
}

#[derive(Serialize)]
struct PolicyHost<'a> {
    #[serde(rename = "publicKey")]
    public_key: &'a str,
    lattice: &'a str,
    labels: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct PolicyResponse {
    #[serde(rename = "requestId", default)]
    request_id: String,
    permitted: bool,
    #[serde(default)]
    message: Option<String>,
}

impl Ask<'_> {
    fn kind(&self) -> &'static str {
        match self {
            Ask::StartComponent { .. } => "startComponent",
            Ask::StartProvider { .. } => "startProvider",
            Ask::PutLink(_) => "putLink",
        }
    }

    fn body(&self) -> serde_json::Value {
        match self {
            Ask::StartComponent {
                id,
                image_ref,
                max_instances,
                annotations,
            } => serde_json::json!({
                "componentId": id,
                "imageRef": image_ref,
                "maxInstances": max_instances,
                "annotations": annotations,
                "claims": null,
            }),
            Ask::StartProvider {
                id,
                image_ref,
                annotations,
            } => serde_json::json!({
                "providerId": id,
                "imageRef": image_ref,
                "annotations": annotations,
                "claims": null,
            }),
            Ask::PutLink(l) => serde_json::json!({
                "sourceId": l.source_id,
                "target": l.target,
                "name": l.name,
                "witNamespace": l.wit_namespace,
                "witPackage": l.wit_package,
                "interfaces": l.interfaces,
            }),
        }
    }
}

/// Asks the policy service, if the board names one; `Ok` when there is
/// none or it permits, else the reason to put in the error reply.
pub(crate) async fn check(agent: &Agent, ask: Ask<'_>) -> Result<(), String> {
    let policy = &agent.host.board().control;
    let Some(subject) = policy.policy_subject.clone() else {
        return Ok(());
    };
    let request_id = super::wire::event_id();
    let req = PolicyRequest {
        request_id: request_id.clone(),
        kind: ask.kind(),
        version: "v1",
        request: ask.body(),
        host: PolicyHost {
            public_key: &agent.id.host_id,
            lattice: &agent.opts.lattice,
            labels: agent.host.labels(),
        },
    };
    let payload = serde_json::to_vec(&req).map_err(|e| format!("policy request: {e}"))?;
    let timeout = Duration::from_millis(policy.policy_timeout_ms);
    let kind = ask.kind();
    let answer = agent
        .ctl
        .client
        .send_request(
            subject.clone(),
            async_nats::Request::new()
                .payload(payload.into())
                .timeout(Some(timeout)),
        )
        .await
        .map_err(|e| {
            format!(
                "refused: the policy service on `{subject}` gave no answer to {kind} ({e}; control.policy_subject, control.policy_timeout_ms = {})",
                policy.policy_timeout_ms
            )
        })?;
    let decision: PolicyResponse = serde_json::from_slice(&answer.payload).map_err(|e| {
        format!("refused: the policy service on `{subject}` answered {kind} with something that is not a policy response ({e})")
    })?;
    if !decision.request_id.is_empty() && decision.request_id != request_id {
        return Err(format!(
            "refused: the policy service on `{subject}` answered another request ({})",
            decision.request_id
        ));
    }
    if decision.permitted {
        Ok(())
    } else {
        Err(format!(
            "refused by the policy service on `{subject}`: {}",
            decision
                .message
                .unwrap_or_else(|| "not permitted".to_string())
        ))
    }
}
