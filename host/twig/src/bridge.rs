//! The messaging bridge: what the device's message bus sends to the
//! lattice's NATS and takes from it, standing in for wasmCloud's
//! messaging-nats provider.
//!
//! ```text
//! component publish ─► Bus ─► local subscribers (always)
//!                       └─► Bridge::publish (twig_messaging::Uplink)
//!                             subject in an [outbox] class ─► outbox (disk) ─► drain ─► NATS
//!                             else, connected ────────────► LatticeMessaging::publish ─► NATS
//!                             else ───────────────────────► not sent (the publish fails
//!                                                           if nothing on the device took it)
//! component request ─► Bus: a device subscriber answers, else
//!                       └─► Bridge::request ─► LatticeMessaging::request (NATS request/reply;
//!                                             fails at once while the uplink is down)
//! NATS message on a handler link's subscription ─► Bus::deliver_to(that subscription)
//!                                                   ─► the component's handle-message
//! ```
//!
//! The NATS side ([`LatticeMessaging`]) is the lattice module's
//! (`lattice/messaging.rs`, on a connection of its own); this side has no
//! network code, so a build without the `lattice` feature has the same bus.
//!
//! Handler links register their subscriptions here
//! ([`Bridge::add_subscription`]) whether or not the uplink is up: each is
//! made upstream when the NATS side is there, and async-nats restores it
//! after every reconnect. A message from NATS goes only to the subscription
//! it came for (never fanned out again on the bus), so a component
//! subscribed on the device and upstream gets each message once; and the
//! messaging connection does not echo the device's own publishes back.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use twig_messaging::{Bus, Message, SubscriptionId};

use crate::outbox::Upstream;
use crate::sync::lock;

/// Hands a message from NATS to the bus.
pub type Deliver = Arc<dyn Fn(Message) + Send + Sync>;

/// The NATS side of the bridge (`lattice/messaging.rs`). Every method is
/// called from a component's thread and must not wait on the network,
/// except `request`, which waits for its reply up to its timeout.
pub trait LatticeMessaging: Send + Sync {
    /// Whether the messaging connection is up now.
    fn is_connected(&self) -> bool;

    /// Queues a message for NATS without waiting; `Err` if it cannot be
    /// queued (the send queue is full: the link is slower than the
    /// publishers).
    fn publish(&self, msg: &Message) -> Result<(), String>;

    /// A NATS request; the first reply, or wasmCloud's messaging-nats
    /// error text (`nats request timed out: …`, `nats send error: …`).
    fn request(&self, subject: &str, body: &[u8], timeout: Duration) -> Result<Message, String>;

    /// Subscribes upstream (as a member of `queue` if given) and hands
    /// each message to `deliver` until the returned handle is dropped.
    fn subscribe(
        &self,
        pattern: &str,
        queue: Option<&str>,
        deliver: Deliver,
    ) -> Box<dyn Send + Sync>;
}

/// One handler link's subscription, as registered.
struct Registered {
    pattern: String,
    queue: Option<String>,
    bus: Weak<Bus>,
    /// The subscription upstream, once the NATS side is there.
    upstream: Option<Box<dyn Send + Sync>>,
}

/// The bus's uplink (one per host): the outbox classes and the NATS side.
#[derive(Default)]
pub struct Bridge {
    outbox: OnceLock<Arc<Upstream>>,
    nats: OnceLock<Arc<dyn LatticeMessaging>>,
    subs: Mutex<BTreeMap<SubscriptionId, Registered>>,
}

impl Bridge {
    /// Messages whose subject is in a board `[outbox]` class go there.
    pub fn set_outbox(&self, outbox: Arc<Upstream>) {
        let _ = self.outbox.set(outbox);
    }

    /// The NATS side, once the uplink starts; the subscriptions registered
    /// so far are made upstream now.
    pub fn set_nats(&self, nats: Arc<dyn LatticeMessaging>) {
        if self.nats.set(nats.clone()).is_err() {
            return;
        }
        let mut subs = lock(&self.subs);
        for (id, r) in subs.iter_mut() {
            r.upstream = Some(subscribe_upstream(nats.as_ref(), *id, r));
        }
    }

    /// Whether a NATS side is there (the host has an uplink).
    pub fn has_nats(&self) -> bool {
        self.nats.get().is_some()
    }

    /// A handler link's subscription `id` on `bus`: made upstream too, now
    /// or when the NATS side comes.
    pub fn add_subscription(
        &self,
        bus: &Arc<Bus>,
        id: SubscriptionId,
        pattern: &str,
        queue: Option<&str>,
    ) {
        let mut r = Registered {
            pattern: pattern.to_string(),
            queue: queue.map(str::to_string),
            bus: Arc::downgrade(bus),
            upstream: None,
        };
        if let Some(nats) = self.nats.get() {
            r.upstream = Some(subscribe_upstream(nats.as_ref(), id, &r));
        }
        lock(&self.subs).insert(id, r);
    }

    /// Ends a subscription upstream (dropping its handle unsubscribes).
    pub fn remove_subscription(&self, id: SubscriptionId) {
        lock(&self.subs).remove(&id);
    }

    /// Subscriptions registered, and how many of them are made upstream.
    pub fn subscription_counts(&self) -> (usize, usize) {
        let subs = lock(&self.subs);
        let up = subs.values().filter(|r| r.upstream.is_some()).count();
        (subs.len(), up)
    }
}

fn subscribe_upstream(
    nats: &dyn LatticeMessaging,
    id: SubscriptionId,
    r: &Registered,
) -> Box<dyn Send + Sync> {
    let bus = r.bus.clone();
    let refused = std::sync::atomic::AtomicU64::new(0);
    let deliver: Deliver = Arc::new(move |msg: Message| {
        let Some(bus) = bus.upgrade() else {
            return;
        };
        // A full queue is a drop the bus counts and logs; a message the
        // bus cannot carry (a subject or size NATS allows and it does not)
        // is logged here, the 1st, 2nd, 4th, … time: anyone on the lattice
        // can send them, and must not fill the device's log.
        if let Err(e) = bus.deliver_to(id, msg) {
            let n = refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(subscription = %id, refused = n, "message from the lattice not delivered: {e}");
            }
        }
    });
    nats.subscribe(&r.pattern, r.queue.as_deref(), deliver)
}

impl twig_messaging::Uplink for Bridge {
    fn publish(&self, msg: &Message) -> Result<bool, String> {
        // A request's own message never waits in the outbox (its answer
        // would come to an inbox long gone); everything else in a class
        // is stored, connected or not, and the drain sends it in order.
        if msg.reply_to.is_none() {
            if let Some(out) = self.outbox.get() {
                if twig_messaging::Uplink::publish(out.as_ref(), msg)? {
                    return Ok(true);
                }
            }
        }
        match self.nats.get() {
            None => Ok(false),
            Some(n) if n.is_connected() => n.publish(msg).map(|()| true),
            Some(_) => Err(format!(
                "not connected to the lattice (the uplink is down): the message to `{}` was not sent; a board [outbox] class for the subject keeps messages until the uplink is back",
                msg.subject
            )),
        }
    }

    fn request(
        &self,
        subject: &str,
        body: &[u8],
        timeout: Duration,
    ) -> Option<Result<Message, String>> {
        let nats = self.nats.get()?;
        if !nats.is_connected() {
            // At once: a request must not wait for an uplink that may be
            // gone for days.
            return Some(Err(format!(
                "not connected to the lattice (the uplink is down): the request to `{subject}` was not sent"
            )));
        }
        Some(nats.request(subject, body, timeout))
    }
}
