//! twig's in-process message bus, with NATS subject semantics, behind
//! wasmCloud's `wasmcloud:messaging@0.2.0` interfaces.
//!
//! Components written for wasmCloud's messaging-nats provider import
//! `wasmcloud:messaging/consumer` (to `publish` and `request`) and export
//! `wasmcloud:messaging/handler` (to receive). On a device they run
//! unchanged against this bus; no NATS server is needed. The subject rules
//! are exactly NATS's, so the bus can later be bridged to a lattice through
//! the [`Uplink`] hook without any subject meaning something different on
//! the two sides.
//!
//! # Layout
//!
//! ```text
//! subject.rs    subject and pattern validation, `*` / `>` matching
//! bus.rs        Bus: subscriptions, fan-out, queue groups, request/reply,
//!               uplink hook, counters, close; one delivery thread per
//!               subscription
//! component.rs  wasmcloud:messaging/consumer@0.2.0 host functions on a
//!               twig_component::Linker; Message <-> broker-message Val
//! v0_3.rs       wasmcloud:messaging@0.3.0: the client/message/request-options
//!               resources, producer.send, request-reply, handle's result
//! link.rs       the `subscriptions` link config of wasmCloud's provider
//! ```
//!
//! # Data flow
//!
//! ```text
//!  component A                                   component B
//!  consumer.publish(msg)                         handler.handle-message(msg)
//!       │ (component.rs: Val -> Message)                      ▲
//!       ▼                                                     │ host's Subscriber
//!  Bus::publish ── validate subject, size                     │ (message_to_val,
//!       │                                                     │  Instance::call)
//!       ├─ under the table lock, for each matching subscription:
//!       │     plain  → try_send a copy into its bounded queue ──► delivery thread
//!       │     group  → one member, round-robin                    (one per
//!       │     inbox  → hand straight to the waiting request        subscription)
//!       │     queue full → drop, count, warn
//!       ├─ subject matches BusConfig::export → Uplink::publish (future bridge)
//!       ▼
//!  PublishReport { delivered_to, dropped, exported }   (returns at once)
//!
//!  consumer.request(subject, body, timeout-ms)
//!       → Bus::request: subscribe _INBOX.<random>, publish with reply-to,
//!         NoResponders at once if nothing matched, else wait for the first
//!         reply up to min(timeout, cap, call deadline)
//! ```
//!
//! The threading model (and why it cannot deadlock when a subscriber
//! publishes from inside `deliver`) is explained at the top of
//! [`bus`](mod@bus).
//!
//! # Wiring it into a host
//!
//! ```
//! use std::sync::Arc;
//! use twig_messaging::{Bus, BusConfig, Message, MessagingView, Subscriber};
//!
//! // The host's per-instance state says which bus serves the instance.
//! struct InstanceData {
//!     bus: Option<Arc<Bus>>,
//!     messages: twig_messaging::v0_3::MessagesCtx,
//! }
//! impl MessagingView for InstanceData {
//!     fn messaging(&self) -> Option<&Arc<Bus>> {
//!         self.bus.as_ref()
//!     }
//!     fn messages(&mut self) -> &mut twig_messaging::v0_3::MessagesCtx {
//!         &mut self.messages
//!     }
//! }
//!
//! // The host's subscriber for one component. A real one calls
//! // `instance.call(HANDLE_MESSAGE, &[message_to_val(&msg)])` and maps the
//! // results with `handler_result`.
//! struct ComponentHandler {
//!     id: String,
//! }
//! impl Subscriber for ComponentHandler {
//!     fn name(&self) -> &str {
//!         &self.id
//!     }
//!     fn deliver(&self, msg: Message) -> Result<(), String> {
//!         let _args = [twig_messaging::message_to_val(&msg)];
//!         Ok(())
//!     }
//! }
//!
//! let bus = Arc::new(Bus::new(BusConfig::default())?);
//! let mut linker = twig_component::Linker::<InstanceData>::new();
//! twig_messaging::add_to_linker(&mut linker);
//!
//! // For the provider -> component `handler` link, whose source config
//! // has `subscriptions: "wasmcloud.echo,jobs.>|workers"`:
//! let echo = Arc::new(ComponentHandler { id: "echo".into() });
//! for s in twig_messaging::parse_subscriptions("wasmcloud.echo,jobs.>|workers")? {
//!     bus.subscribe(&s.pattern, s.queue_group, echo.clone())?;
//! }
//! bus.publish(Message::new("jobs.resize", b"img-1".to_vec()))?;
//! bus.close(std::time::Duration::from_secs(1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

pub mod bus;
pub mod component;
pub mod link;
pub mod subject;
pub mod v0_3;

pub use bus::{
    Bus, BusConfig, BusError, BusStats, CloseReport, Message, PublishReport, Subscriber,
    SubscriptionId, SubscriptionStats, Uplink,
};
pub use component::{
    add_to_linker, handler_result, message_to_val, val_to_message, MessagingView,
    CONSUMER_INTERFACE, HANDLER_INTERFACE, HANDLE_MESSAGE, NOT_LINKED,
};
pub use link::{parse_subscriptions, SubscriptionSpec, CONFIG_SUBSCRIPTIONS};
pub use subject::{
    matches, validate_pattern, validate_subject, Pattern, SubjectError, SubjectErrorKind,
    SubjectRole, MAX_SUBJECT_LEN,
};
