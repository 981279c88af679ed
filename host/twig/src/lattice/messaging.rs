//! The NATS side of the messaging bridge (`crate::bridge`): a connection
//! of its own, made the first time the device's message bus needs it.
//!
//! Why its own connection, as wasmCloud's messaging-nats provider has:
//! * it is made with `no_echo`, so the device's own publishes are not
//!   delivered back to the device's subscriptions upstream (they already
//!   had them from the bus);
//! * a flood of messages on it cannot delay the control interface, the
//!   heartbeat or wRPC, which share the uplink's connection.
//!
//! Threads: publishes from components go into a bounded queue
//! ([`SEND_QUEUE`]) that one task sends in order; a request is a task
//! whose reply the component's thread waits for; each subscription is a
//! task handing messages to the bus without waiting (a full subscriber
//! queue drops, as on the bus).

use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_nats::Client;
use futures_util::StreamExt;
use tokio::sync::{mpsc, OnceCell};
use twig_messaging::Message;

use super::{SharedStatus, UplinkOptions, UplinkStatus};
use crate::bridge::{Deliver, LatticeMessaging};

/// Messages waiting to be sent on the messaging connection. Past it a
/// publish fails (the link is slower than the publishers) rather than
/// hold memory without bound.
pub const SEND_QUEUE: usize = 1024;

/// The messaging connection, made on first use.
pub(crate) struct NatsMessaging {
    /// This value's own `Arc`, for the tasks it spawns.
    me: Weak<NatsMessaging>,
    opts: UplinkOptions,
    status: SharedStatus,
    runtime: tokio::runtime::Handle,
    client: OnceCell<Client>,
    out: mpsc::Sender<Message>,
}

impl NatsMessaging {
    /// The bridge's NATS side for the uplink `opts`; nothing connects
    /// until a subscription, publish or request needs it. Call on the
    /// uplink's runtime.
    pub fn new(opts: &UplinkOptions) -> Arc<NatsMessaging> {
        let opts = UplinkOptions {
            name: format!("{} messaging", opts.name),
            ..opts.clone()
        };
        let status = Arc::new(Mutex::new(UplinkStatus::new(&opts)));
        let (out, rx) = mpsc::channel(SEND_QUEUE);
        let m = Arc::new_cyclic(|me| NatsMessaging {
            me: me.clone(),
            opts,
            status,
            runtime: tokio::runtime::Handle::current(),
            client: OnceCell::new(),
            out,
        });
        let sender = m.clone();
        m.runtime.spawn(async move { sender.send_queued(rx).await });
        m
    }

    /// The connection, connecting the first time it is asked for
    /// (async-nats then reconnects for as long as the host runs; callers
    /// at the same time wait for the one attempt).
    async fn client(&self) -> Result<Client, String> {
        self.client
            .get_or_try_init(|| async {
                let (epochs, _) = tokio::sync::watch::channel(0u64);
                super::connect(
                    &self.opts,
                    self.status.clone(),
                    Arc::new(epochs),
                    super::Role::Messaging,
                )
                .await
            })
            .await
            .cloned()
    }

    /// Starts connecting in the background, if nothing has yet.
    fn connect_soon(&self) {
        if self.client.initialized() {
            return;
        }
        if let Some(me) = self.me.upgrade() {
            self.runtime.spawn(async move {
                if let Err(e) = me.client().await {
                    tracing::error!("messaging link: {e}");
                }
            });
        }
    }

    /// Sends the queued publishes in order (there are none before the
    /// connection is up: the bridge sends only while connected).
    async fn send_queued(&self, mut rx: mpsc::Receiver<Message>) {
        while let Some(msg) = rx.recv().await {
            let client = match self.client().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(subject = %msg.subject, "messaging link: {e}; message not sent");
                    continue;
                }
            };
            let sent = match msg.reply_to {
                Some(reply) => {
                    client
                        .publish_with_reply(msg.subject.clone(), reply, msg.body.into())
                        .await
                }
                None => client.publish(msg.subject.clone(), msg.body.into()).await,
            };
            if let Err(e) = sent {
                tracing::warn!(subject = %msg.subject, "messaging link: publish failed: {e}");
            }
        }
    }
}

fn from_nats(m: async_nats::Message) -> Message {
    Message {
        subject: m.subject.to_string(),
        body: m.payload.to_vec(),
        reply_to: m.reply.map(|r| r.to_string()),
    }
}

impl LatticeMessaging for NatsMessaging {
    fn is_connected(&self) -> bool {
        match self.client.get() {
            Some(c) => c.connection_state() == async_nats::connection::State::Connected,
            None => {
                // Asked before anything needed the connection: make it now,
                // for the next message.
                self.connect_soon();
                false
            }
        }
    }

    fn publish(&self, msg: &Message) -> Result<(), String> {
        self.out.try_send(msg.clone()).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => format!(
                "the lattice send queue is full ({SEND_QUEUE} messages): the message to `{}` was not sent",
                msg.subject
            ),
            mpsc::error::TrySendError::Closed(_) => {
                "the messaging link has stopped: the message was not sent".to_string()
            }
        })
    }

    fn request(&self, subject: &str, body: &[u8], timeout: Duration) -> Result<Message, String> {
        let Some(client) = self.client.get().cloned() else {
            self.connect_soon();
            return Err(format!(
                "not connected to the lattice (the uplink is down): the request to `{subject}` was not sent"
            ));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let (subject, body) = (subject.to_string(), body.to_vec());
        self.runtime.spawn(async move {
            // The same words as wasmCloud's messaging-nats provider.
            let r = match tokio::time::timeout(timeout, client.request(subject, body.into())).await
            {
                Err(elapsed) => Err(format!("nats request timed out: {elapsed}")),
                Ok(Err(e)) => Err(format!("nats send error: {e}")),
                Ok(Ok(m)) => Ok(from_nats(m)),
            };
            let _ = tx.send(r);
        });
        // The task ends by its own timeout; the margin only covers a
        // runtime too busy to run it.
        rx.recv_timeout(timeout + Duration::from_secs(1))
            .unwrap_or_else(|_| Err("nats request timed out: deadline has elapsed".into()))
    }

    fn subscribe(
        &self,
        pattern: &str,
        queue: Option<&str>,
        deliver: Deliver,
    ) -> Box<dyn Send + Sync> {
        let (pattern, queue) = (pattern.to_string(), queue.map(str::to_string));
        let me = self.me.upgrade();
        let task = self.runtime.spawn(async move {
            let Some(me) = me else { return };
            let client = match me.client().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(subject = %pattern, "messaging link: {e}; not subscribed on the lattice");
                    return;
                }
            };
            drop(me);
            let sub = match &queue {
                Some(q) => client.queue_subscribe(pattern.clone(), q.clone()).await,
                None => client.subscribe(pattern.clone()).await,
            };
            let mut sub = match sub {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(subject = %pattern, "messaging link: cannot subscribe: {e}");
                    return;
                }
            };
            tracing::debug!(subject = %pattern, queue_group = ?queue, "subscribed on the lattice");
            while let Some(m) = sub.next().await {
                deliver(from_nats(m));
            }
        });
        Box::new(AbortOnDrop(task))
    }
}

/// Ends a subscription's task (and so the subscription: async-nats
/// unsubscribes when its `Subscriber` is dropped) with its handle.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
