//! `twig:messaging`: the in-process message bus (`twig-messaging`, one per
//! host, shared by every messaging provider). Components publish through
//! `wasmcloud:messaging/consumer`; for each `handler` link the provider
//! subscribes the link's target to the subjects in the link's source
//! config `subscriptions` (as wasmCloud's NATS messaging provider reads
//! it: `a.b,c.>,d|queue-group`) and delivers to its `handle-message`.
//! With an uplink, the same subscriptions are made on the lattice's NATS
//! and publishes and requests reach it (`crate::bridge`).

use std::any::Any;
use std::sync::{Arc, Mutex, Weak};

use super::{handler_links, merged_properties, LinkContext, Provider, ProviderKind};
use crate::bridge::Bridge;
use crate::host::pool::{CallError, Directory};
use crate::sync::lock;

/// A running messaging provider: the host's bus and this provider's
/// subscriptions for its handler links.
pub struct MessagingProvider {
    bus: Arc<twig_messaging::Bus>,
    /// Makes each subscription on the lattice's NATS too, as wasmCloud's
    /// messaging-nats provider does (`crate::bridge`).
    bridge: Arc<Bridge>,
    subscriptions: Mutex<Vec<twig_messaging::SubscriptionId>>,
}

impl MessagingProvider {
    pub fn new(bus: Arc<twig_messaging::Bus>, bridge: Arc<Bridge>) -> MessagingProvider {
        MessagingProvider {
            bus,
            bridge,
            subscriptions: Mutex::new(Vec::new()),
        }
    }
}

impl Provider for MessagingProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Messaging
    }

    fn start_links(&self, cx: &LinkContext<'_>) -> Result<(), String> {
        for link in handler_links(cx.links) {
            let config = merged_properties(&link.source_config);
            let Some(subs) = config.get(twig_messaging::CONFIG_SUBSCRIPTIONS) else {
                tracing::warn!(provider = %cx.provider, target = %link.target_id, "handler link has no `subscriptions` in its source config; nothing is delivered to it");
                continue;
            };
            let specs = twig_messaging::parse_subscriptions(subs).map_err(|e| {
                format!(
                    "link to `{}`: source config `subscriptions`: {e}",
                    link.target
                )
            })?;
            let subscriber: Arc<dyn twig_messaging::Subscriber> = Arc::new(HandlerSubscriber {
                name: link.target_id.clone(),
                host: cx.host.clone(),
            });
            for s in specs {
                let id = self
                    .bus
                    .subscribe(&s.pattern, s.queue_group.clone(), subscriber.clone())
                    .map_err(|e| format!("link to `{}`: {e}", link.target))?;
                self.bridge
                    .add_subscription(&self.bus, id, &s.pattern, s.queue_group.as_deref());
                tracing::info!(provider = %cx.provider, target = %link.target_id, subject = %s.pattern, queue_group = ?s.queue_group, lattice = self.bridge.has_nats(), "subscribed");
                lock(&self.subscriptions).push(id);
            }
        }
        Ok(())
    }

    fn stop_links(&self) {
        for sub in lock(&self.subscriptions).drain(..) {
            self.bridge.remove_subscription(sub);
            self.bus.unsubscribe(sub);
        }
    }

    fn status(&self) -> Option<String> {
        let n = lock(&self.subscriptions).len();
        let where_ = if self.bridge.has_nats() {
            ", on the device and the lattice"
        } else {
            ""
        };
        (n > 0).then(|| format!("{n} subscription{}{where_}", if n == 1 { "" } else { "s" }))
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

impl Drop for MessagingProvider {
    fn drop(&mut self) {
        self.stop_links();
    }
}

/// Delivers a message to a component's `wasmcloud:messaging/handler`
/// export, on one of its instances.
pub fn deliver_message(
    host: &Weak<dyn Directory>,
    target_id: &str,
    msg: &twig_messaging::Message,
) -> Result<(), String> {
    let host = host
        .upgrade()
        .ok_or_else(|| "the host is shutting down".to_string())?;
    let pool = host.running_pool(target_id)?;
    let (_trace, trace_id) = crate::trace::enter(None);
    let _span = tracing::info_span!("call", trace = %trace_id, component = %target_id, export = "wasmcloud:messaging/handler#handle-message", trigger = "message", subject = %msg.subject).entered();
    let v3 = pool.messaging_types();
    pool.with_instance(host.call_wait(), |inst| {
        let names = inst.export_names();
        let v2 = names.iter().find(|n| {
            n.starts_with("wasmcloud:messaging/handler@0.2") && n.ends_with("#handle-message")
        });
        if let Some(export) = v2.map(|s| s.to_string()) {
            let results = inst.call(&export, &[twig_messaging::message_to_val(msg)])?;
            return twig_messaging::handler_result(&results).map_err(CallError::Failed);
        }
        // wasmcloud:messaging@0.3.0: the message is a resource the host
        // puts in the instance's table for the call (the guest may drop it,
        // or keep it until the call ends).
        let v3_export = names
            .contains(&twig_messaging::v0_3::HANDLE)
            .then_some(v3)
            .flatten();
        let Some(types) = v3_export else {
            return Err(CallError::Refused(format!(
                "`{target_id}` does not export wasmcloud:messaging/handler.handle-message (0.2.0) or incoming-handler.handle (0.3.0)"
            )));
        };
        use twig_messaging::MessagingView as _;
        let rep = inst
            .data_mut()
            .messages()
            .deliver(msg)
            .map_err(|e| CallError::Failed(e.to_string()))?;
        let arg = twig_component::Val::Resource(twig_component::Resource::host_own(
            types.message,
            rep,
        ));
        let results = inst.call(twig_messaging::v0_3::HANDLE, &[arg]);
        inst.data_mut().messages().forget(rep);
        twig_messaging::v0_3::handle_result(&results?).map_err(CallError::Failed)
    })
    .map_err(|e| e.to_string())
}

/// Delivers bus messages to one component's handler.
struct HandlerSubscriber {
    name: String,
    host: Weak<dyn Directory>,
}

impl twig_messaging::Subscriber for HandlerSubscriber {
    fn name(&self) -> &str {
        &self.name
    }

    fn deliver(&self, msg: twig_messaging::Message) -> Result<(), String> {
        deliver_message(&self.host, &self.name, &msg)
    }
}
