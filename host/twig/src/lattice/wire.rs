//! The wasmCloud 1.x control interface on the wire: the requests a host
//! answers on `wasmbus.ctl.v1.{lattice}.…`, the `{success, message,
//! response}` replies, the JSON shapes inside them, and the CloudEvents a
//! host publishes on `wasmbus.evt.{lattice}.…`.
//!
//! The shapes follow what the `wasmcloud-control-interface` crate (3.x)
//! and wadm 0.21 read, so that their unmodified clients parse twig's
//! answers with their own types. Field names and optional fields were read
//! from that crate and from the 1.9 host; nothing here depends on them.
//!
//! Everything that comes off the network is parsed by
//! [`parse_request`], which checks sizes, names and counts before the host
//! sees a request: hostile input gets an error reply and changes nothing.
//! It is plain data (serde only), built with or without the `lattice`
//! feature, and fuzzed (`host/twig/fuzz`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The largest control message twig reads (NATS's default payload limit).
pub const MAX_CTL_PAYLOAD: usize = 1024 * 1024;
/// Longest id, name or reference twig accepts from the lattice.
pub const MAX_NAME: usize = 512;

/// The reply envelope of every control-interface call.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CtlReply<T> {
    pub success: bool,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response: Option<T>,
}

impl<T> CtlReply<T> {
    pub fn ok(response: T) -> CtlReply<T> {
        CtlReply {
            success: true,
            message: String::new(),
            response: Some(response),
        }
    }
}

impl CtlReply<()> {
    pub fn done(message: impl Into<String>) -> CtlReply<()> {
        CtlReply {
            success: true,
            message: message.into(),
            response: None,
        }
    }

    pub fn error(message: impl Into<String>) -> CtlReply<()> {
        CtlReply {
            success: false,
            message: message.into(),
            response: None,
        }
    }
}

/// The answer to `host.ping`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HostInfo {
    pub id: String,
    pub friendly_name: String,
    pub labels: BTreeMap<String, String>,
    pub lattice: String,
    pub uptime_seconds: u64,
    pub uptime_human: String,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ctl_host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpc_host: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub js_domain: Option<String>,
}

/// The answer to `host.get`, and the data of `host_heartbeat`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Inventory {
    pub components: Vec<ComponentDescription>,
    pub providers: Vec<ProviderDescription>,
    pub host_id: String,
    pub friendly_name: String,
    pub labels: BTreeMap<String, String>,
    pub version: String,
    pub uptime_human: String,
    pub uptime_seconds: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ComponentDescription {
    pub id: String,
    pub image_ref: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub annotations: BTreeMap<String, String>,
    pub revision: i32,
    pub max_instances: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProviderDescription {
    pub id: String,
    pub image_ref: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub annotations: BTreeMap<String, String>,
    pub revision: i32,
}

use crate::latticedata::default_link_name;
/// Links are host state as well as wire format: they live with the
/// lattice data the host keeps.
pub use crate::latticedata::LinkDef;

/// The value of `COMPONENT_{id}` in the `LATTICEDATA_{lattice}` bucket: a
/// source component's links.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ComponentLinks {
    #[serde(default)]
    pub url: String,
    #[serde(default)]
    pub links: Vec<LinkDef>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ScaleComponent {
    #[serde(default)]
    pub component_ref: String,
    pub component_id: String,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, alias = "max_instances")]
    pub count: u32,
    #[serde(default)]
    pub host_id: String,
    #[serde(default)]
    pub config: Vec<String>,
    #[serde(default)]
    pub allow_update: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct UpdateComponent {
    pub component_id: String,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub host_id: String,
    pub new_component_ref: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct StartProvider {
    pub provider_id: String,
    #[serde(default)]
    pub provider_ref: String,
    #[serde(default)]
    pub host_id: String,
    #[serde(default)]
    pub config: Vec<String>,
    #[serde(default)]
    pub annotations: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct StopProvider {
    #[serde(default, alias = "provider_ref")]
    pub provider_id: String,
    #[serde(default)]
    pub host_id: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct StopHost {
    #[serde(default)]
    pub host_id: String,
    /// Milliseconds to let calls in flight finish.
    #[serde(default)]
    pub timeout: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct Auction {
    /// `component_ref` or `provider_ref`.
    #[serde(default, alias = "component_ref", alias = "provider_ref")]
    pub reference: String,
    /// `component_id` or `provider_id`.
    #[serde(alias = "component_id", alias = "provider_id")]
    pub id: String,
    #[serde(default)]
    pub constraints: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ComponentAuctionAck {
    pub component_ref: String,
    pub component_id: String,
    pub host_id: String,
    pub constraints: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProviderAuctionAck {
    pub provider_ref: String,
    pub provider_id: String,
    pub host_id: String,
    pub constraints: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct LabelPut {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct LabelDel {
    pub key: String,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct LinkDel {
    pub source_id: String,
    #[serde(default = "default_link_name")]
    pub name: String,
    pub wit_namespace: String,
    pub wit_package: String,
}

/// A control-interface request, checked.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    HostPing,
    HostGet,
    HostStop(StopHost),
    ComponentAuction(Auction),
    ComponentScale(ScaleComponent),
    ComponentUpdate(UpdateComponent),
    ProviderAuction(Auction),
    ProviderStart(StartProvider),
    ProviderStop(StopProvider),
    LabelPut(LabelPut),
    LabelDel(LabelDel),
    LinkPut(LinkDef),
    LinkDel(LinkDel),
    LinkGet,
    ClaimsGet,
    RegistryPut,
    ConfigPut(String, BTreeMap<String, String>),
    ConfigGet(String),
    ConfigDel(String),
}

/// Parses a control message. `op` is the subject after
/// `wasmbus.ctl.v1.{lattice}.`, e.g. `component.scale.NABC…`; `host_id` is
/// this host's id, which per-host subjects must carry.
pub fn parse_request(op: &str, host_id: &str, payload: &[u8]) -> Result<Request, String> {
    if payload.len() > MAX_CTL_PAYLOAD {
        return Err(format!(
            "{op}: the request is {} bytes; twig reads at most {MAX_CTL_PAYLOAD}",
            payload.len()
        ));
    }
    let parts: Vec<&str> = op.split('.').collect();
    let for_me = |h: &str| -> Result<(), String> {
        if h == host_id {
            Ok(())
        } else {
            Err(format!(
                "{op}: addressed to host {h}, not this one ({host_id})"
            ))
        }
    };
    let req = match parts.as_slice() {
        ["host", "ping"] => Request::HostPing,
        ["host", "get", h] => {
            for_me(h)?;
            Request::HostGet
        }
        ["host", "stop", h] => {
            for_me(h)?;
            Request::HostStop(json_or_default(
                op,
                payload,
                StopHost {
                    host_id: String::new(),
                    timeout: None,
                },
            )?)
        }
        ["component", "auction"] => {
            let a: Auction = json(op, payload)?;
            check_id(op, "component_id", &a.id)?;
            check_reference(op, "component_ref", &a.reference)?;
            Request::ComponentAuction(a)
        }
        ["provider", "auction"] => {
            let a: Auction = json(op, payload)?;
            check_id(op, "provider_id", &a.id)?;
            check_reference(op, "provider_ref", &a.reference)?;
            Request::ProviderAuction(a)
        }
        ["component", "scale", h] => {
            for_me(h)?;
            let s: ScaleComponent = json(op, payload)?;
            check_id(op, "component_id", &s.component_id)?;
            check_reference(op, "component_ref", &s.component_ref)?;
            check_annotations(op, s.annotations.as_ref())?;
            check_config_names(op, &s.config)?;
            Request::ComponentScale(s)
        }
        ["component", "update", h] => {
            for_me(h)?;
            let u: UpdateComponent = json(op, payload)?;
            check_id(op, "component_id", &u.component_id)?;
            check_reference(op, "new_component_ref", &u.new_component_ref)?;
            check_annotations(op, u.annotations.as_ref())?;
            Request::ComponentUpdate(u)
        }
        ["provider", "start", h] => {
            for_me(h)?;
            let s: StartProvider = json(op, payload)?;
            check_id(op, "provider_id", &s.provider_id)?;
            check_reference(op, "provider_ref", &s.provider_ref)?;
            check_annotations(op, s.annotations.as_ref())?;
            check_config_names(op, &s.config)?;
            Request::ProviderStart(s)
        }
        ["provider", "stop", h] => {
            for_me(h)?;
            let s: StopProvider = json(op, payload)?;
            check_id(op, "provider_id", &s.provider_id)?;
            Request::ProviderStop(s)
        }
        ["label", "put", h] => {
            for_me(h)?;
            let l: LabelPut = json(op, payload)?;
            check_label(op, &l.key)?;
            check_len(op, "value", &l.value)?;
            Request::LabelPut(l)
        }
        ["label", "del", h] => {
            for_me(h)?;
            let l: LabelDel = json(op, payload)?;
            check_label(op, &l.key)?;
            Request::LabelDel(l)
        }
        ["link", "put"] => {
            let l: LinkDef = json(op, payload)?;
            check_link(op, &l)?;
            Request::LinkPut(l)
        }
        ["link", "del"] => {
            let l: LinkDel = json(op, payload)?;
            check_id(op, "source_id", &l.source_id)?;
            check_word(op, "name", &l.name)?;
            check_word(op, "wit_namespace", &l.wit_namespace)?;
            check_word(op, "wit_package", &l.wit_package)?;
            Request::LinkDel(l)
        }
        ["link", "get"] => Request::LinkGet,
        ["claims", "get"] => Request::ClaimsGet,
        ["registry", "put"] => Request::RegistryPut,
        ["config", "put", name] => {
            check_config_name(op, name)?;
            let map: BTreeMap<String, String> = serde_json::from_slice(payload).map_err(|e| {
                format!("{op}: config data should be a JSON map of string to string: {e}")
            })?;
            Request::ConfigPut(name.to_string(), map)
        }
        ["config", "get", name] => {
            check_config_name(op, name)?;
            Request::ConfigGet(name.to_string())
        }
        ["config", "del", name] => {
            check_config_name(op, name)?;
            Request::ConfigDel(name.to_string())
        }
        _ => {
            return Err(format!(
                "`{op}` is not a control-interface operation twig knows"
            ))
        }
    };
    Ok(req)
}

fn json<T: for<'de> Deserialize<'de>>(op: &str, payload: &[u8]) -> Result<T, String> {
    serde_json::from_slice(payload).map_err(|e| format!("{op}: malformed request: {e}"))
}

fn json_or_default<T: for<'de> Deserialize<'de>>(
    op: &str,
    payload: &[u8],
    default: T,
) -> Result<T, String> {
    if payload.iter().all(u8::is_ascii_whitespace) {
        return Ok(default);
    }
    json(op, payload)
}

fn check_len(op: &str, field: &str, value: &str) -> Result<(), String> {
    if value.len() > MAX_NAME {
        return Err(format!(
            "{op}: {field} is {} bytes long; at most {MAX_NAME}",
            value.len()
        ));
    }
    Ok(())
}

/// A component or provider id. Ids become NATS subject tokens (wRPC) and
/// KV keys, so they may not hold `.`, `*`, `>` or whitespace.
pub fn check_id(op: &str, field: &str, id: &str) -> Result<(), String> {
    check_len(op, field, id)?;
    if id.is_empty() {
        return Err(format!("{op}: {field} is empty"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
    {
        return Err(format!(
            "{op}: {field} `{id}` holds `{c}`; ids are letters, digits, `-` and `_`"
        ));
    }
    Ok(())
}

/// A WIT namespace, package or link name.
pub fn check_word(op: &str, field: &str, w: &str) -> Result<(), String> {
    check_len(op, field, w)?;
    if w.is_empty()
        || w.chars()
            .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>'))
    {
        return Err(format!(
            "{op}: {field} `{w}` is empty or holds whitespace, `.`, `*` or `>`"
        ));
    }
    Ok(())
}

fn check_reference(op: &str, field: &str, r: &str) -> Result<(), String> {
    check_len(op, field, r)?;
    if r.trim().is_empty() {
        return Err(format!("{op}: {field} is empty"));
    }
    Ok(())
}

/// A label key the lattice may set or remove: any valid key but the
/// host's own `hostcore.*`.
fn check_label(op: &str, key: &str) -> Result<(), String> {
    crate::names::check_label_key(key).map_err(|e| format!("{op}: key: {e}"))?;
    if key.to_ascii_lowercase().starts_with("hostcore.") {
        return Err(format!(
            "{op}: hostcore.* labels are set by the host and cannot be changed"
        ));
    }
    Ok(())
}

fn check_config_names(op: &str, names: &[String]) -> Result<(), String> {
    names.iter().try_for_each(|c| check_config_name(op, c))
}

/// A named config: a KV key and a subject token.
pub fn check_config_name(op: &str, name: &str) -> Result<(), String> {
    check_len(op, "config name", name)?;
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '/' | '='))
    {
        return Err(format!(
            "{op}: config name `{name}` must be letters, digits, `-`, `_`, `/` or `=`"
        ));
    }
    Ok(())
}

fn check_annotations(op: &str, a: Option<&BTreeMap<String, String>>) -> Result<(), String> {
    for (k, v) in a.into_iter().flatten() {
        check_len(op, "annotation key", k)?;
        check_len(op, "annotation value", v)?;
    }
    Ok(())
}

fn check_link(op: &str, l: &LinkDef) -> Result<(), String> {
    check_id(op, "source_id", &l.source_id)?;
    check_id(op, "target", &l.target)?;
    check_word(op, "name", &l.name)?;
    check_word(op, "wit_namespace", &l.wit_namespace)?;
    check_word(op, "wit_package", &l.wit_package)?;
    if l.interfaces.is_empty() {
        return Err(format!("{op}: interfaces is empty"));
    }
    for i in &l.interfaces {
        check_word(op, "interface", i)?;
    }
    check_config_names(op, &l.source_config)?;
    check_config_names(op, &l.target_config)
}

/// A CloudEvent 1.0, as JSON, with `data` one of the typed payloads below.
#[derive(Debug, Clone, Serialize)]
pub struct CloudEvent<'a, T: Serialize> {
    pub specversion: &'static str,
    pub id: String,
    pub source: &'a str,
    #[serde(rename = "type")]
    pub kind: String,
    pub datacontenttype: &'static str,
    pub time: String,
    pub data: T,
}

impl<'a, T: Serialize> CloudEvent<'a, T> {
    /// The event `name` (e.g. `host_heartbeat`) from host `source`.
    pub fn new(source: &'a str, name: &str, data: T) -> CloudEvent<'a, T> {
        CloudEvent {
            specversion: "1.0",
            id: event_id(),
            source,
            kind: format!("com.wasmcloud.lattice.{name}"),
            datacontenttype: "application/json",
            time: rfc3339_now(),
            data,
        }
    }
}

/// The payload of one lattice event: its `name` is the last token of
/// `wasmbus.evt.{lattice}.{name}` and of the CloudEvent type.
///
/// Field names and shapes are what wasmCloud 1.x hosts send (wadm and the
/// control-interface crate parse them). Fields are declared in
/// alphabetical order: these payloads used to be `serde_json::Value` maps,
/// which serialize sorted, so each payload's keys keep their order.
pub trait LatticeEvent: Serialize {
    fn name(&self) -> &'static str;
}

macro_rules! lattice_event {
    ($ty:ty, $name:literal) => {
        impl LatticeEvent for $ty {
            fn name(&self) -> &'static str {
                $name
            }
        }
    };
}

/// `host_started`, once, on the first heartbeat.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostStarted {
    pub friendly_name: String,
    pub labels: BTreeMap<String, String>,
    pub uptime_seconds: u64,
    pub version: String,
}
lattice_event!(HostStarted, "host_started");

/// `host_stopped`, on the way out.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostStopped {
    pub labels: BTreeMap<String, String>,
}
lattice_event!(HostStopped, "host_stopped");

/// `host_heartbeat`: the inventory, and twig's own `twig_link` field
/// (wasmCloud's parsers ignore it).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HostHeartbeat {
    pub components: Vec<ComponentDescription>,
    pub friendly_name: String,
    pub host_id: String,
    pub labels: BTreeMap<String, String>,
    pub providers: Vec<ProviderDescription>,
    pub twig_link: LinkReport,
    pub uptime_human: String,
    pub uptime_seconds: u64,
    pub version: String,
}
lattice_event!(HostHeartbeat, "host_heartbeat");

impl HostHeartbeat {
    pub fn new(inv: Inventory, twig_link: LinkReport) -> HostHeartbeat {
        HostHeartbeat {
            components: inv.components,
            friendly_name: inv.friendly_name,
            host_id: inv.host_id,
            labels: inv.labels,
            providers: inv.providers,
            twig_link,
            uptime_human: inv.uptime_human,
            uptime_seconds: inv.uptime_seconds,
            version: inv.version,
        }
    }
}

/// The `twig_link` field of a heartbeat: the link's state and the outbox's
/// backlog, so a fleet view sees a device that is behind.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LinkReport {
    pub connects: u64,
    pub delivered: u64,
    pub outbox: Option<OutboxReport>,
    pub state: crate::uplink::LinkState,
    pub upstream: crate::uplink::UpstreamState,
    pub upstream_rtt_ms: Option<f64>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OutboxReport {
    pub bytes: u64,
    pub dropped: u64,
    pub expired: u64,
    pub pending: u64,
}

/// `labels_changed`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LabelsChanged {
    pub host_id: String,
    pub labels: BTreeMap<String, String>,
}
lattice_event!(LabelsChanged, "labels_changed");

/// `component_scaled`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ComponentScaled {
    pub annotations: BTreeMap<String, String>,
    pub component_id: String,
    pub host_id: String,
    pub image_ref: String,
    pub max_instances: u32,
}
lattice_event!(ComponentScaled, "component_scaled");

/// `component_scale_failed`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ComponentScaleFailed {
    pub annotations: BTreeMap<String, String>,
    pub component_id: String,
    pub error: String,
    pub host_id: String,
    pub image_ref: String,
    pub max_instances: u32,
}
lattice_event!(ComponentScaleFailed, "component_scale_failed");

/// `provider_started`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProviderStarted {
    pub annotations: BTreeMap<String, String>,
    pub host_id: String,
    pub image_ref: String,
    pub provider_id: String,
}
lattice_event!(ProviderStarted, "provider_started");

/// `provider_start_failed`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProviderStartFailed {
    pub error: String,
    pub host_id: String,
    pub provider_id: String,
    pub provider_ref: String,
}
lattice_event!(ProviderStartFailed, "provider_start_failed");

/// `provider_stopped`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProviderStopped {
    pub annotations: BTreeMap<String, String>,
    pub host_id: String,
    pub provider_id: String,
    pub reason: String,
}
lattice_event!(ProviderStopped, "provider_stopped");

/// `linkdef_set`, or `linkdef_set_failed` when `error` is there: the link's
/// own fields, flat.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LinkdefSet {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub interfaces: Vec<String>,
    pub name: String,
    pub source_config: Vec<String>,
    pub source_id: String,
    pub target: String,
    pub target_config: Vec<String>,
    pub wit_namespace: String,
    pub wit_package: String,
}

impl LinkdefSet {
    pub fn new(l: &LinkDef, error: Option<String>) -> LinkdefSet {
        LinkdefSet {
            error,
            interfaces: l.interfaces.clone(),
            name: l.name.clone(),
            source_config: l.source_config.clone(),
            source_id: l.source_id.clone(),
            target: l.target.clone(),
            target_config: l.target_config.clone(),
            wit_namespace: l.wit_namespace.clone(),
            wit_package: l.wit_package.clone(),
        }
    }
}

impl LatticeEvent for LinkdefSet {
    fn name(&self) -> &'static str {
        if self.error.is_some() {
            "linkdef_set_failed"
        } else {
            "linkdef_set"
        }
    }
}

/// `linkdef_deleted`; `interfaces` and `target` when the link was there.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LinkdefDeleted {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub interfaces: Option<Vec<String>>,
    pub name: String,
    pub source_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    pub wit_namespace: String,
    pub wit_package: String,
}
lattice_event!(LinkdefDeleted, "linkdef_deleted");

/// `config_set`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConfigSet {
    pub config_name: String,
}
lattice_event!(ConfigSet, "config_set");

/// `config_deleted`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConfigDeleted {
    pub config_name: String,
}
lattice_event!(ConfigDeleted, "config_deleted");

/// What a successful control reply carries in `response`.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Response {
    Host(HostInfo),
    Inventory(Inventory),
    ComponentAuction(ComponentAuctionAck),
    ProviderAuction(ProviderAuctionAck),
    Links(Vec<LinkDef>),
    /// `claims.get`: twig runs no signed components, so always empty.
    Claims(Vec<BTreeMap<String, String>>),
    Config(BTreeMap<String, String>),
}

/// A control reply, typed: what every request family's handler returns.
pub type Reply = CtlReply<Response>;

impl CtlReply<Response> {
    pub fn success(message: impl Into<String>) -> Reply {
        CtlReply {
            success: true,
            message: message.into(),
            response: None,
        }
    }

    pub fn failure(message: impl Into<String>) -> Reply {
        CtlReply {
            success: false,
            message: message.into(),
            response: None,
        }
    }
}

/// A random id in UUID v4 form. std's `RandomState` is seeded from the
/// OS once per process and differs per instance, which is enough for ids
/// that only need to be unique.
pub fn event_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    let half = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
        );
        h.finish()
    };
    let (a, b) = (half(), half());
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0x0fff,
        0x8000 | ((b >> 48) & 0x3fff),
        b & 0xffff_ffff_ffff
    )
}

/// Now, as RFC 3339 UTC (`2026-11-22T10:04:05.123Z`).
pub fn rfc3339_now() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs(), d.subsec_millis())
}

/// `secs` since 1970 as RFC 3339 UTC, with `millis`.
pub(crate) fn rfc3339(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Uptime as wasmCloud prints it: `1h 2m 3s`, whole seconds.
pub fn human_uptime(secs: u64) -> String {
    if secs == 0 {
        return "0s".into();
    }
    let units = [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)];
    let mut left = secs;
    let mut parts = Vec::new();
    for (name, size) in units {
        if left >= size {
            parts.push(format!("{}{name}", left / size));
            left %= size;
        }
    }
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "NBHOST";

    #[test]
    fn dates_and_uptime() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(rfc3339(1_795_339_445, 123), "2026-11-22T09:24:05.123Z");
        assert_eq!(human_uptime(0), "0s");
        assert_eq!(human_uptime(3723), "1h 2m 3s");
        assert_eq!(human_uptime(90_061), "1d 1h 1m 1s");
        let (a, b) = (event_id(), event_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }

    /// The typed events give the same bytes the `json!` maps they replace
    /// gave (sorted keys, same names and shapes).
    #[test]
    fn typed_events_keep_their_wire_bytes() {
        let ann: BTreeMap<String, String> = [("a".to_string(), "b".to_string())].into();
        let scaled = ComponentScaled {
            annotations: ann.clone(),
            component_id: "c".into(),
            host_id: "N".into(),
            image_ref: "file:///x.wasm".into(),
            max_instances: 2,
        };
        let old = serde_json::json!({
            "annotations": ann, "host_id": "N", "image_ref": "file:///x.wasm",
            "max_instances": 2, "component_id": "c",
        });
        assert_eq!(
            serde_json::to_string(&scaled).unwrap(),
            serde_json::to_string(&old).unwrap()
        );
        let link = LinkDef {
            source_id: "s".into(),
            target: "t".into(),
            name: "default".into(),
            wit_namespace: "wasi".into(),
            wit_package: "keyvalue".into(),
            interfaces: vec!["store".into()],
            source_config: vec![],
            target_config: vec!["c".into()],
        };
        let mut old = serde_json::to_value(&link).unwrap();
        assert_eq!(
            serde_json::to_string(&LinkdefSet::new(&link, None)).unwrap(),
            serde_json::to_string(&old).unwrap()
        );
        old["error"] = "e".into();
        let failed = LinkdefSet::new(&link, Some("e".into()));
        assert_eq!(failed.name(), "linkdef_set_failed");
        assert_eq!(
            serde_json::to_string(&failed).unwrap(),
            serde_json::to_string(&old).unwrap()
        );
        let deleted = LinkdefDeleted {
            interfaces: None,
            name: "default".into(),
            source_id: "s".into(),
            target: None,
            wit_namespace: "wasi".into(),
            wit_package: "keyvalue".into(),
        };
        let old = serde_json::json!({
            "source_id": "s", "name": "default", "wit_namespace": "wasi", "wit_package": "keyvalue",
        });
        assert_eq!(
            serde_json::to_string(&deleted).unwrap(),
            serde_json::to_string(&old).unwrap()
        );
        let ev = CloudEvent::new("N", deleted.name(), &deleted);
        let v: serde_json::Value = serde_json::to_value(&ev).unwrap();
        assert_eq!(v["type"], "com.wasmcloud.lattice.linkdef_deleted");
        assert_eq!(v["data"]["source_id"], "s");
    }

    #[test]
    fn scale_parses_and_checks() {
        let r = parse_request(
            "component.scale.NBHOST",
            HOST,
            br#"{"component_ref":"file:///a.wasm","component_id":"app-hello","count":2,"host_id":"NBHOST","config":["c1"],"allow_update":false,"annotations":{"wasmcloud.dev/managed-by":"wadm"}}"#,
        )
        .unwrap();
        let Request::ComponentScale(s) = r else {
            panic!("{r:?}")
        };
        assert_eq!(s.count, 2);
        assert_eq!(s.config, ["c1"]);
        let e = parse_request("component.scale.NOTME", HOST, b"{}").unwrap_err();
        assert!(e.contains("not this one"), "{e}");
        let e = parse_request("component.scale.NBHOST", HOST, b"{not json").unwrap_err();
        assert!(e.contains("malformed request"), "{e}");
        let e = parse_request(
            "component.scale.NBHOST",
            HOST,
            br#"{"component_ref":"x","component_id":"a.b","count":1}"#,
        )
        .unwrap_err();
        assert!(e.contains("holds `.`"), "{e}");
        let big = vec![b' '; MAX_CTL_PAYLOAD + 1];
        let e = parse_request("component.scale.NBHOST", HOST, &big).unwrap_err();
        assert!(e.contains("at most"), "{e}");
    }

    #[test]
    fn other_requests() {
        assert_eq!(
            parse_request("host.ping", HOST, b"").unwrap(),
            Request::HostPing
        );
        assert_eq!(
            parse_request("host.get.NBHOST", HOST, b"").unwrap(),
            Request::HostGet
        );
        assert!(matches!(
            parse_request("host.stop.NBHOST", HOST, b"").unwrap(),
            Request::HostStop(_)
        ));
        let e = parse_request(
            "label.put.NBHOST",
            HOST,
            br#"{"key":"hostcore.arch","value":"x"}"#,
        )
        .unwrap_err();
        assert!(e.contains("hostcore"), "{e}");
        let r = parse_request("config.put.my-cfg", HOST, br#"{"a":"1"}"#).unwrap();
        assert_eq!(
            r,
            Request::ConfigPut("my-cfg".into(), [("a".to_string(), "1".to_string())].into())
        );
        let e = parse_request("config.put.c", HOST, br#"{"a":1}"#).unwrap_err();
        assert!(e.contains("map of string to string"), "{e}");
        let e = parse_request("nonsense.op", HOST, b"").unwrap_err();
        assert!(e.contains("not a control-interface operation"), "{e}");
        let r = parse_request(
            "link.put",
            HOST,
            br#"{"source_id":"a","target":"b","wit_namespace":"x","wit_package":"y","interfaces":["z"]}"#,
        )
        .unwrap();
        let Request::LinkPut(l) = r else { panic!() };
        assert_eq!(l.name, "default");
        let e = parse_request(
            "link.put",
            HOST,
            br#"{"source_id":"a","target":"b","wit_namespace":"x","wit_package":"y","interfaces":[]}"#,
        )
        .unwrap_err();
        assert!(e.contains("interfaces is empty"), "{e}");
        let r = parse_request(
            "component.auction",
            HOST,
            br#"{"component_ref":"r","component_id":"c","constraints":{"a":"b"}}"#,
        )
        .unwrap();
        let Request::ComponentAuction(a) = r else {
            panic!()
        };
        assert_eq!(a.id, "c");
        assert_eq!(a.reference, "r");
    }
}
