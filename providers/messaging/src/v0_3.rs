//! `wasmcloud:messaging@0.3.0`, the resource-based revision wasmCloud 1.9's
//! runtime implements (`crates/runtime/wit/deps/messaging` on
//! release-1.9.x): `types` (resources `client` and `message`), `producer`
//! (`send`) and `request-reply` (`request`, `reply`, resource
//! `request-options`) imported, `incoming-handler.handle` exported. The
//! same bus serves both revisions, so a 0.2.0 and a 0.3.0 component talk
//! to each other and to the lattice alike.
//!
//! As in wasmCloud: `client.connect(name)` succeeds for the link's name
//! (`""` or `default`) and `send` and `request` refuse a client of another
//! name with its words; content types are not carried (NATS has no place
//! for them), and a message with metadata is refused by `send` and
//! `reply` as wasmCloud refuses it on the way to its messaging-nats
//! provider (a component that sends metadata here would fail there).
//! Unlike wasmCloud 1.9, whose `request` through the messaging-nats
//! provider only publishes and answers "returning responses is not
//! currently supported", twig's `request` waits for the reply, honours
//! `set-timeout-ms` (default and cap: the bus's request timeout) and
//! returns one reply whatever `set-expected-replies` says.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use twig_component::{Args, HostError, Linker, Resource, Val};

use crate::bus::{BusError, Message};
use crate::component::{MessagingView, NOT_LINKED};

pub const TYPES_INTERFACE: &str = "wasmcloud:messaging/types@0.3.0";
pub const PRODUCER_INTERFACE: &str = "wasmcloud:messaging/producer@0.3.0";
pub const REQUEST_REPLY_INTERFACE: &str = "wasmcloud:messaging/request-reply@0.3.0";
/// The export the host calls for each delivered message (one `own<message>`).
pub const HANDLE: &str = "wasmcloud:messaging/incoming-handler@0.3.0#handle";

/// Why a message with metadata is not sent: the words wasmCloud 1.9 uses
/// on its way to the messaging-nats provider.
const NO_METADATA: &str = "`metadata` not currently supported by wRPC targets";

/// Messages, clients and request options one instance holds; a guest that
/// leaks handles gets an error past this many of each.
const MAX_HANDLES: usize = 4096;

/// A message as a 0.3.0 guest sees it.
#[derive(Debug, Clone, Default)]
struct Msg {
    /// Set on messages the host hands in (delivered or replies); none on
    /// one the guest made.
    topic: Option<String>,
    data: Vec<u8>,
    content_type: Option<String>,
    metadata: Option<Vec<(String, String)>>,
    reply_to: Option<String>,
}

#[derive(Debug, Default, Clone, Copy)]
struct RequestOptions {
    timeout_ms: Option<u32>,
}

/// One table per kind, each rep unique within it.
#[derive(Debug)]
struct Table<V> {
    items: HashMap<u32, V>,
    next: u32,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table {
            items: HashMap::new(),
            next: 0,
        }
    }
}

impl<V> Table<V> {
    fn insert(&mut self, v: V, what: &str) -> Result<u32, HostError> {
        if self.items.len() >= MAX_HANDLES {
            return Err(HostError::new(format!(
                "{TYPES_INTERFACE}: too many open {what} handles (limit {MAX_HANDLES}); drop some"
            )));
        }
        loop {
            self.next = self.next.wrapping_add(1).max(1);
            if !self.items.contains_key(&self.next) {
                break;
            }
        }
        self.items.insert(self.next, v);
        Ok(self.next)
    }
}

/// Per-instance state of the 0.3.0 binding.
#[derive(Debug, Default)]
pub struct MessagesCtx {
    messages: Table<Msg>,
    clients: Table<String>,
    options: Table<RequestOptions>,
}

impl MessagesCtx {
    /// Handles held now (messages, clients, request options), for tests.
    pub fn open_handles(&self) -> usize {
        self.messages.items.len() + self.clients.items.len() + self.options.items.len()
    }

    /// Puts a delivered message in the table for a call of `handle`; the
    /// rep to hand the guest as `own<message>`.
    pub fn deliver(&mut self, msg: &Message) -> Result<u32, HostError> {
        self.messages.insert(
            Msg {
                topic: Some(msg.subject.clone()),
                data: msg.body.clone(),
                reply_to: msg.reply_to.clone(),
                ..Msg::default()
            },
            "message",
        )
    }

    /// Forgets a delivered message the guest has not dropped (the call is
    /// over).
    pub fn forget(&mut self, rep: u32) {
        self.messages.items.remove(&rep);
    }

    fn message(&mut self, rep: u32) -> Result<&mut Msg, HostError> {
        self.messages.items.get_mut(&rep).ok_or_else(|| {
            HostError::new(format!("unknown {TYPES_INTERFACE} message handle {rep}"))
        })
    }
}

/// The resource types, to hand a delivered message to `handle`.
#[derive(Debug, Clone, Copy)]
pub struct MessagingTypes {
    pub message: u32,
}

/// The `error` variant.
fn error(case: &str, msg: Option<String>) -> Val {
    Val::err(Some(Val::Variant(
        case.to_string(),
        msg.map(|m| Box::new(Val::String(m))),
    )))
}

fn other(msg: impl Into<String>) -> Val {
    error("other", Some(msg.into()))
}

fn args(vals: &[Val]) -> Args<'_> {
    Args::new(vals).context("wasmcloud:messaging@0.3.0")
}

/// The link name a 0.3.0 client may connect by: twig's messaging links
/// are the component's default link.
fn check_client(name: &str) -> Result<(), String> {
    let name = if name.is_empty() { "default" } else { name };
    if name == "default" {
        Ok(())
    } else {
        Err(format!(
            "mismatch between link name and client connection name, `{name}` != `default`"
        ))
    }
}

/// Maps the bus's errors onto the 0.3.0 `error` cases.
fn bus_error(e: &BusError) -> Val {
    match e {
        BusError::Timeout { .. } => error("timeout", None),
        BusError::Uplink(m) if m.contains("timed out") => error("timeout", None),
        BusError::Uplink(m) if m.contains("not connected") => error("connection", Some(m.clone())),
        e => other(e.to_string()),
    }
}

/// Registers the 0.3.0 imports.
pub fn add_to_linker<T: MessagingView + 'static>(linker: &mut Linker<T>) -> MessagingTypes {
    let client_ty = linker.resource(TYPES_INTERFACE, "client", |t: &mut T, rep| {
        t.messages().clients.items.remove(&rep);
    });
    let message_ty = linker.resource(TYPES_INTERFACE, "message", |t: &mut T, rep| {
        t.messages().messages.items.remove(&rep);
    });
    let options_ty = linker.resource(
        REQUEST_REPLY_INTERFACE,
        "request-options",
        |t: &mut T, rep| {
            t.messages().options.items.remove(&rep);
        },
    );

    linker
        .interface(TYPES_INTERFACE)
        .func("[static]client.connect", move |cx, a, out| {
            let name = args(a).string(0)?.to_string();
            if let Err(e) = check_client(&name) {
                out.push(other(e));
                return Ok(());
            }
            let rep = cx.data_mut().messages().clients.insert(name, "client")?;
            out.push(Val::ok(Some(Val::Resource(Resource::host_own(
                client_ty, rep,
            )))));
            Ok(())
        })
        .func("[method]client.disconnect", |_, _, out| {
            out.push(Val::ok(None));
            Ok(())
        })
        .func("[constructor]message", move |cx, a, out| {
            let data = args(a).bytes(0)?.into_owned();
            let rep = cx.data_mut().messages().messages.insert(
                Msg {
                    data,
                    ..Msg::default()
                },
                "message",
            )?;
            out.push(Val::Resource(Resource::host_own(message_ty, rep)));
            Ok(())
        })
        .func("[method]message.topic", |cx, a, out| {
            let m = cx.data_mut().messages().message(args(a).resource(0)?.rep)?;
            out.push(Val::Option(
                m.topic.clone().map(|t| Box::new(Val::String(t))),
            ));
            Ok(())
        })
        .func("[method]message.content-type", |cx, a, out| {
            let m = cx.data_mut().messages().message(args(a).resource(0)?.rep)?;
            out.push(Val::Option(
                m.content_type.clone().map(|t| Box::new(Val::String(t))),
            ));
            Ok(())
        })
        .func("[method]message.set-content-type", |cx, a, _| {
            let ct = args(a).string(1)?.to_string();
            cx.data_mut()
                .messages()
                .message(args(a).resource(0)?.rep)?
                .content_type = Some(ct);
            Ok(())
        })
        .func("[method]message.data", |cx, a, out| {
            let m = cx.data_mut().messages().message(args(a).resource(0)?.rep)?;
            out.push(Val::Bytes(m.data.clone()));
            Ok(())
        })
        .func("[method]message.set-data", |cx, a, _| {
            let data = args(a).bytes(1)?.into_owned();
            cx.data_mut()
                .messages()
                .message(args(a).resource(0)?.rep)?
                .data = data;
            Ok(())
        })
        .func("[method]message.metadata", |cx, a, out| {
            let m = cx.data_mut().messages().message(args(a).resource(0)?.rep)?;
            out.push(Val::Option(m.metadata.as_ref().map(|md| {
                Box::new(Val::List(
                    md.iter()
                        .map(|(k, v)| {
                            Val::Tuple(vec![Val::String(k.clone()), Val::String(v.clone())])
                        })
                        .collect(),
                ))
            })));
            Ok(())
        })
        .func("[method]message.add-metadata", |cx, a, _| {
            let (k, v) = (
                args(a).string(1)?.to_string(),
                args(a).string(2)?.to_string(),
            );
            let m = cx.data_mut().messages().message(args(a).resource(0)?.rep)?;
            let md = m.metadata.get_or_insert_with(Vec::new);
            md.retain(|(key, _)| *key != k);
            md.push((k, v));
            Ok(())
        })
        .func("[method]message.set-metadata", |cx, a, _| {
            let pairs = metadata_arg(a, 1)?;
            cx.data_mut()
                .messages()
                .message(args(a).resource(0)?.rep)?
                .metadata = Some(pairs);
            Ok(())
        })
        .func("[method]message.remove-metadata", |cx, a, _| {
            let k = args(a).string(1)?.to_string();
            let m = cx.data_mut().messages().message(args(a).resource(0)?.rep)?;
            if let Some(md) = m.metadata.as_mut() {
                md.retain(|(key, _)| *key != k);
            }
            Ok(())
        });

    linker
        .interface(PRODUCER_INTERFACE)
        .func("send", |cx, a, out| {
            let client = args(a).resource(0)?.rep;
            let topic = args(a).string(1)?.to_string();
            let msg_rep = args(a).resource(2)?.rep;
            let data = cx.data_mut();
            // The message is the host's now (`own`), sent or not.
            let msg = data.messages().messages.items.remove(&msg_rep);
            let name = data.messages().clients.items.get(&client).cloned();
            let (Some(msg), Some(name)) = (msg, name) else {
                return Err(HostError::new(format!(
                    "{PRODUCER_INTERFACE}#send: unknown client or message handle"
                )));
            };
            if let Err(e) = check_client(&name) {
                out.push(other(e));
                return Ok(());
            }
            if msg.metadata.as_ref().is_some_and(|m| !m.is_empty()) {
                out.push(other(NO_METADATA));
                return Ok(());
            }
            let Some(bus) = data.messaging() else {
                out.push(other(NOT_LINKED));
                return Ok(());
            };
            out.push(match bus.publish(Message::new(topic, msg.data)) {
                Ok(_) => Val::ok(None),
                Err(e) => bus_error(&e),
            });
            Ok(())
        });

    linker
        .interface(REQUEST_REPLY_INTERFACE)
        .func("[constructor]request-options", move |cx, _, out| {
            let rep = cx
                .data_mut()
                .messages()
                .options
                .insert(RequestOptions::default(), "request-options")?;
            out.push(Val::Resource(Resource::host_own(options_ty, rep)));
            Ok(())
        })
        .func("[method]request-options.set-timeout-ms", |cx, a, _| {
            let (rep, ms) = (args(a).resource(0)?.rep, args(a).u32(1)?);
            if let Some(o) = cx.data_mut().messages().options.items.get_mut(&rep) {
                o.timeout_ms = Some(ms);
            }
            Ok(())
        })
        .func("[method]request-options.set-expected-replies", |_, _, _| {
            Ok(())
        })
        .func("request", move |cx, a, out| {
            let client = args(a).resource(0)?.rep;
            let topic = args(a).string(1)?.to_string();
            let msg_rep = args(a).resource(2)?.rep;
            let options = match a.get(3) {
                Some(Val::Option(Some(o))) => match &**o {
                    Val::Resource(r) => Some(r.rep),
                    _ => None,
                },
                _ => None,
            };
            let deadline = cx.deadline();
            let data = cx.data_mut();
            let ctx = data.messages();
            let opts = options
                .and_then(|rep| ctx.options.items.remove(&rep))
                .unwrap_or_default();
            let name = ctx.clients.items.get(&client).cloned();
            let body = ctx.messages.items.get(&msg_rep).map(|m| m.data.clone());
            let (Some(name), Some(body)) = (name, body) else {
                return Err(HostError::new(format!(
                    "{REQUEST_REPLY_INTERFACE}#request: unknown client or message handle"
                )));
            };
            if let Err(e) = check_client(&name) {
                out.push(other(e));
                return Ok(());
            }
            let Some(bus) = data.messaging().cloned() else {
                out.push(other(NOT_LINKED));
                return Ok(());
            };
            let cap = bus.config().max_request_timeout;
            let wanted = opts
                .timeout_ms
                .map(|ms| Duration::from_millis(ms.into()).min(cap))
                .unwrap_or(cap);
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            let deadline_bound = left.is_some_and(|l| l < wanted);
            let wait = left.map_or(wanted, |l| l.min(wanted));
            if deadline_bound && wait.is_zero() {
                return Err(HostError::deadline());
            }
            match bus.request(&topic, body, wait) {
                Ok(reply) => {
                    let rep = data.messages().messages.insert(
                        Msg {
                            topic: Some(reply.subject),
                            data: reply.body,
                            reply_to: reply.reply_to,
                            ..Msg::default()
                        },
                        "message",
                    )?;
                    out.push(Val::ok(Some(Val::List(vec![Val::Resource(
                        Resource::host_own(message_ty, rep),
                    )]))));
                }
                Err(BusError::Timeout { .. }) if deadline_bound => {
                    return Err(HostError::deadline())
                }
                Err(e) => out.push(bus_error(&e)),
            }
            Ok(())
        })
        .func("reply", |cx, a, out| {
            let to = args(a).resource(0)?.rep;
            let msg_rep = args(a).resource(1)?.rep;
            let data = cx.data_mut();
            let ctx = data.messages();
            let msg = ctx.messages.items.remove(&msg_rep);
            let reply_to = ctx.messages.items.get(&to).map(|m| m.reply_to.clone());
            let (Some(msg), Some(reply_to)) = (msg, reply_to) else {
                return Err(HostError::new(format!(
                    "{REQUEST_REPLY_INTERFACE}#reply: unknown message handle"
                )));
            };
            let Some(reply_to) = reply_to else {
                out.push(other("reply not set in incoming message"));
                return Ok(());
            };
            if msg.metadata.as_ref().is_some_and(|m| !m.is_empty()) {
                out.push(other(NO_METADATA));
                return Ok(());
            }
            let Some(bus) = data.messaging() else {
                out.push(other(NOT_LINKED));
                return Ok(());
            };
            out.push(match bus.publish(Message::new(reply_to, msg.data)) {
                Ok(_) => Val::ok(None),
                Err(e) => bus_error(&e),
            });
            Ok(())
        });

    MessagingTypes {
        message: message_ty,
    }
}

/// A `metadata` argument (`list<tuple<string, string>>`).
fn metadata_arg(a: &[Val], i: usize) -> Result<Vec<(String, String)>, HostError> {
    Ok(
        args(a).expect(i, "list<tuple<string, string>>", |v| match v {
            Val::List(items) => items
                .iter()
                .map(|t| match t {
                    Val::Tuple(kv) => match kv.as_slice() {
                        [Val::String(k), Val::String(v)] => Some((k.clone(), v.clone())),
                        _ => None,
                    },
                    _ => None,
                })
                .collect(),
            _ => None,
        })?,
    )
}

/// Reads the results of a `handle` call (`result<_, error>`).
pub fn handle_result(results: &[Val]) -> Result<(), String> {
    match results {
        [Val::Result(Ok(_))] => Ok(()),
        [Val::Result(Err(Some(e)))] => Err(match &**e {
            Val::Variant(case, None) => case.clone(),
            Val::Variant(case, Some(m)) => match &**m {
                Val::String(s) => format!("{case}: {s}"),
                other => format!("{case}: {}", other.kind()),
            },
            other => format!("handle failed with a {}", other.kind()),
        }),
        [Val::Result(Err(None))] => Err("handle failed".into()),
        other => Err(format!(
            "handle returned {} values, expected one result",
            other.len()
        )),
    }
}
