//! The in-process message bus: subscriptions, fan-out, queue groups,
//! request/reply, the uplink hook, counters and shutdown.
//!
//! # Threading model
//!
//! Every subscription gets **its own delivery thread and a bounded queue**
//! (a `std::sync::mpsc::sync_channel`). `publish` matches the subject
//! against the subscription table under one mutex and `try_send`s a copy of
//! the message into each matching queue; it never blocks on a queue and
//! never calls a subscriber, so it returns as soon as the message is
//! enqueued (or dropped because a queue was full).
//!
//! Why a thread per subscription rather than a small fixed pool:
//!
//! * `Subscriber::deliver` is, in the host, a call into a WebAssembly
//!   component, which may legitimately run for up to its deadline (seconds).
//!   With a pool of N workers, N slow subscribers would stall every other
//!   subscriber; with a thread each, a slow subscriber only fills its own
//!   queue and then loses its own messages.
//! * Per-subscription FIFO order, which NATS gives a subscriber, falls out
//!   of one consumer per queue with no scheduling logic.
//! * A device runs a handful of components with a handful of subscriptions
//!   each, so the cost (an idle thread is a few pages of committed stack;
//!   the stack size is configurable) is small. Request inboxes, which come
//!   and go with every request, get no thread at all: a reply is handed to
//!   the waiting requester directly (see `Sink::Inbox`).
//!
//! Deadlock freedom follows from two rules: no bus lock is held while a
//! subscriber or the uplink runs, and nothing on the publish path blocks.
//! A subscriber may therefore publish, subscribe or unsubscribe (even
//! itself) from inside `deliver`; publishing to itself enqueues behind the
//! current message (or drops, if its own queue is full). The one thing
//! that cannot work is a subscriber *requesting* a subject only it answers:
//! its thread is busy waiting, so the request times out, as it would with a
//! synchronous NATS handler.
//!
//! # Lifecycle
//!
//! `unsubscribe` removes the subscription at once; the message being
//! delivered finishes, the rest of its queue is discarded, and the thread
//! ends on its own (it is never joined there, because `unsubscribe` may be
//! running *on* that thread). `close` refuses new work, lets every thread
//! drain its queue, and waits for them up to a timeout.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::subject::{validate_subject, Pattern, SubjectError};

/// A message on the bus; the same fields as wasmCloud's `broker-message`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub subject: String,
    pub body: Vec<u8>,
    pub reply_to: Option<String>,
}

impl Message {
    pub fn new(subject: impl Into<String>, body: impl Into<Vec<u8>>) -> Message {
        Message {
            subject: subject.into(),
            body: body.into(),
            reply_to: None,
        }
    }

    pub fn with_reply_to(mut self, reply_to: impl Into<String>) -> Message {
        self.reply_to = Some(reply_to.into());
        self
    }
}

/// Something that receives messages: in the host, a component exporting
/// `wasmcloud:messaging/handler`.
///
/// `deliver` runs on the subscription's own thread, one message at a time,
/// in the order they were published. It may call back into the bus.
pub trait Subscriber: Send + Sync {
    /// A name for logs and stats (e.g. the component id).
    fn name(&self) -> &str;
    /// Handles one message. An `Err` is counted and logged; delivery of
    /// the following messages continues either way.
    fn deliver(&self, msg: Message) -> Result<(), String>;
}

/// The hook for a future bridge to a NATS lattice.
///
/// The bus calls `publish` synchronously, on the publisher's thread, for
/// every message published with [`Bus::publish`] or [`Bus::request`] whose
/// subject matches one of [`BusConfig::export`]. It must not block (put the
/// message in an outbox and return); an `Err` is counted and logged and does
/// not fail the local publish.
///
/// Messages coming *from* the lattice are fed in with
/// [`Bus::publish_from_uplink`], which delivers locally and never exports,
/// so a message cannot loop between the bus and the lattice. For a device
/// component's `request` to be answered from the lattice, the bridge
/// subscribes the request's `reply_to` inbox upstream and publishes the
/// answer with `publish_from_uplink`. For a lattice request to be answered
/// by a device component, the reply subject (an `_INBOX.…` subject) must be
/// exported too, e.g. with `_INBOX.>` in `export`.
pub trait Uplink: Send + Sync {
    /// A message a device component published whose subject
    /// [`BusConfig::export`] matches, on the publisher's thread: it must not
    /// wait on the network. `Ok(true)`: it went upstream, or is stored to
    /// go; `Ok(false)`: it is not for the uplink; `Err`: it was for the
    /// uplink but could not go (the bus counts it, and fails the publish
    /// if nothing on the device took the message either).
    fn publish(&self, msg: &Message) -> Result<bool, String>;

    /// A request that nothing on the device subscribes to, made on the
    /// requester's thread (the bus wraps it in a blocking section); it
    /// waits for the first reply up to `timeout`. `None`: this uplink does
    /// not carry requests, and the request fails with
    /// [`BusError::NoResponders`]. The error text is what the component
    /// sees.
    fn request(
        &self,
        _subject: &str,
        _body: &[u8],
        _timeout: Duration,
    ) -> Option<Result<Message, String>> {
        None
    }
}

/// Settings of a [`Bus`].
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Largest message body accepted, in bytes (NATS's default is also
    /// 1 MiB).
    pub max_payload: usize,
    /// Messages a subscription may have waiting; when full, new messages
    /// for it are dropped (and counted). At least 1. Worst-case memory per
    /// subscription is about `queue_capacity * max_payload`.
    pub queue_capacity: usize,
    /// Upper bound on any request's wait, whatever timeout the caller asks
    /// for.
    pub max_request_timeout: Duration,
    /// Subscription patterns whose matching messages go to the uplink.
    pub export: Vec<String>,
    /// Stack size of delivery threads; `None` for Rust's default (2 MiB,
    /// committed lazily). A subscriber that runs a wasm interpreter needs
    /// enough for the guest's recursion.
    pub worker_stack_size: Option<usize>,
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            max_payload: 1024 * 1024,
            queue_capacity: 64,
            max_request_timeout: Duration::from_secs(30),
            export: Vec::new(),
            worker_stack_size: None,
        }
    }
}

/// Identifies a subscription on its bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubscriptionId(u64);

impl fmt::Display for SubscriptionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sub-{}", self.0)
    }
}

/// What happened to one published message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PublishReport {
    /// Subscriptions (a queue group counting once) the message was queued
    /// for. Queued, not handled: `publish` does not wait for delivery.
    pub delivered_to: usize,
    /// Matching subscriptions (or groups) whose queue was full.
    pub dropped: usize,
    /// Whether the message was handed to the uplink.
    pub exported: bool,
}

/// Errors of bus operations. Their `Display` is what a component sees.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BusError {
    #[error(transparent)]
    Subject(#[from] SubjectError),
    #[error("message body is {size} bytes, over the maximum payload of {max}")]
    PayloadTooLarge { size: usize, max: usize },
    #[error("invalid queue group {group:?}: {reason}")]
    InvalidQueueGroup { group: String, reason: &'static str },
    /// Nothing subscribes to the subject (and it is not exported), so no
    /// reply can come; returned at once, as NATS does.
    #[error("no responders for request to {subject:?}")]
    NoResponders { subject: String },
    /// Every matching responder's queue was full, so the request was
    /// dropped; waiting could only end in a timeout.
    #[error("request to {subject:?} dropped: the queue of every responder is full")]
    RespondersBusy { subject: String },
    #[error("request to {subject:?} timed out after {} ms", after.as_millis())]
    Timeout { subject: String, after: Duration },
    #[error("the message bus is closed")]
    Closed,
    #[error("cannot start a delivery thread for {subscriber:?}: {source}")]
    Spawn {
        subscriber: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid bus config: {0}")]
    InvalidConfig(String),
    /// The uplink could not take a message or answer a request (its own
    /// words: the lattice is unreachable, a NATS error, a timeout).
    #[error("{0}")]
    Uplink(String),
}

/// Counters of one subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionStats {
    pub id: SubscriptionId,
    pub subscriber: String,
    pub pattern: String,
    pub queue_group: Option<String>,
    /// Messages put in its queue.
    pub enqueued: u64,
    /// `deliver` calls that returned `Ok`.
    pub delivered: u64,
    /// `deliver` calls that returned `Err` or panicked.
    pub failed: u64,
    /// Messages lost because its queue was full.
    pub dropped: u64,
    /// Queued or being delivered right now.
    pub pending: u64,
}

/// Bus-wide counters (totals since the bus was made, including
/// subscriptions since removed) and the live subscriptions.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BusStats {
    /// Messages accepted by `publish`, `request` and `publish_from_uplink`.
    pub published: u64,
    /// Successful deliveries (including replies handed to requesters).
    pub delivered: u64,
    pub failed: u64,
    pub dropped: u64,
    /// Messages handed to the uplink, and how many of those it refused.
    pub exported: u64,
    pub uplink_errors: u64,
    /// Live subscriptions, by id (request inboxes not included).
    pub subscriptions: Vec<SubscriptionStats>,
}

/// The result of [`Bus::close`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CloseReport {
    /// Delivery threads that drained their queue and ended in time.
    pub stopped: usize,
    /// Subscribers whose thread was still busy at the timeout; they stop
    /// after their current message and the rest of their queue is lost.
    pub still_running: Vec<String>,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    exported: AtomicU64,
    uplink_errors: AtomicU64,
}

/// What a subscription's thread and the bus share.
struct Worker {
    name: Arc<str>,
    enqueued: AtomicU64,
    delivered: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    /// Set by `unsubscribe` (or a timed-out `close`): discard the rest.
    cancelled: AtomicBool,
    /// Set by the thread as it ends, under `Exits::lock`.
    done: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Lets `close` sleep until delivery threads end, without a lost wakeup:
/// a thread sets its `done` flag while holding the lock, then notifies.
#[derive(Default)]
struct Exits {
    lock: Mutex<()>,
    cv: Condvar,
}

/// Where a subscription's messages go.
enum Sink {
    /// A delivery thread's queue.
    Worker {
        tx: SyncSender<Message>,
        worker: Arc<Worker>,
    },
    /// A waiting `request`; capacity one, only the first reply counts.
    /// Handed over inline: the requester is already waiting in
    /// `recv_timeout`, so no thread is needed.
    Inbox(SyncSender<Message>),
}

struct Sub {
    pattern: Pattern,
    queue_group: Option<String>,
    sink: Sink,
}

#[derive(Default)]
struct State {
    /// Ordered by id, so fan-out order and round-robin are deterministic.
    subs: BTreeMap<u64, Sub>,
    /// Round-robin position of each queue group. As in nats-server, a
    /// group is its (pattern, queue name) pair: `jobs.*|q` and `jobs.a|q`
    /// are two groups and each gets one copy.
    cursors: HashMap<(String, String), usize>,
    /// Threads of removed subscriptions that may still be finishing a
    /// message; kept so `close` can wait for them too.
    retired: Vec<Arc<Worker>>,
}

/// The message bus. Share it as `Arc<Bus>`.
pub struct Bus {
    config: BusConfig,
    exports: Vec<Pattern>,
    state: Mutex<State>,
    uplink: Mutex<Option<Arc<dyn Uplink>>>,
    counters: Arc<Counters>,
    exits: Arc<Exits>,
    closed: AtomicBool,
    next_id: AtomicU64,
    /// Random per bus, so inboxes of two buses bridged to one lattice do
    /// not collide; a counter after it makes each inbox unique.
    inbox_prefix: String,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Nothing runs user code under these locks, so a poisoned lock only
    // means a panic in tracing; the data is still consistent.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Logs the 1st, 2nd, 4th, 8th... occurrence, so a subscriber that falls
/// behind for good does not flood the log with one line per message.
fn worth_logging(count: u64) -> bool {
    count.is_power_of_two()
}

fn base62(mut n: u64, out: &mut String) {
    const DIGITS: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    // u64::MAX has 11 base-62 digits.
    let mut buf = [0u8; 11];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = DIGITS[(n % 62) as usize];
        n /= 62;
        if n == 0 {
            break;
        }
    }
    out.extend(buf[i..].iter().map(|&b| b as char));
}

/// 64 random bits from std's per-process random SipHash keys (seeded from
/// the OS), mixed with the clock; enough to keep bus instances apart
/// without a `rand` dependency.
fn random_u64() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    h.write_u64(nanos);
    h.finish()
}

impl Bus {
    pub fn new(config: BusConfig) -> Result<Bus, BusError> {
        if config.queue_capacity == 0 {
            return Err(BusError::InvalidConfig(
                "queue_capacity must be at least 1".into(),
            ));
        }
        let exports = config
            .export
            .iter()
            .map(|p| Pattern::parse(p))
            .collect::<Result<Vec<_>, _>>()?;
        // Fixed width, so prefix + counter can't be read two ways.
        let mut random = String::new();
        base62(random_u64(), &mut random);
        let inbox_prefix = format!("{random:0>11}");
        Ok(Bus {
            config,
            exports,
            state: Mutex::new(State::default()),
            uplink: Mutex::new(None),
            counters: Arc::default(),
            exits: Arc::default(),
            closed: AtomicBool::new(false),
            next_id: AtomicU64::new(1),
            inbox_prefix,
        })
    }

    pub fn config(&self) -> &BusConfig {
        &self.config
    }

    /// Sets (or replaces) the uplink that receives exported messages.
    pub fn set_uplink(&self, uplink: Arc<dyn Uplink>) {
        *lock(&self.uplink) = Some(uplink);
    }

    pub fn clear_uplink(&self) {
        *lock(&self.uplink) = None;
    }

    /// Subscribes `subscriber` to `pattern` (NATS wildcards allowed), as a
    /// member of `queue_group` if given: each message then goes to one
    /// member of the group, round-robin.
    pub fn subscribe(
        &self,
        pattern: &str,
        queue_group: Option<String>,
        subscriber: Arc<dyn Subscriber>,
    ) -> Result<SubscriptionId, BusError> {
        let pattern = Pattern::parse(pattern)?;
        if let Some(group) = &queue_group {
            check_queue_group(group)?;
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(BusError::Closed);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let name: Arc<str> = Arc::from(subscriber.name());
        let worker = Arc::new(Worker {
            name: name.clone(),
            enqueued: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            cancelled: AtomicBool::new(false),
            done: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let (tx, rx) = mpsc::sync_channel(self.config.queue_capacity);
        // Thread names are for debuggers; Linux keeps 15 bytes of them.
        let thread_name: String = format!("msg:{name}")
            .chars()
            .filter(|c| *c != '\0')
            .collect();
        let mut builder = std::thread::Builder::new().name(thread_name);
        if let Some(size) = self.config.worker_stack_size {
            builder = builder.stack_size(size);
        }
        let run = {
            let worker = worker.clone();
            let counters = self.counters.clone();
            let exits = self.exits.clone();
            move || run_worker(rx, subscriber, worker, counters, exits)
        };
        let handle = builder.spawn(run).map_err(|source| BusError::Spawn {
            subscriber: name.to_string(),
            source,
        })?;
        *lock(&worker.thread) = Some(handle);

        let mut state = lock(&self.state);
        // Re-checked under the lock: `close` empties the table under it, so
        // a subscription can't slip in after close took its snapshot.
        if self.closed.load(Ordering::Acquire) {
            worker.cancelled.store(true, Ordering::Release);
            return Err(BusError::Closed); // dropping `tx` ends the thread
        }
        tracing::debug!(subscriber = %name, pattern = %pattern, queue_group = ?queue_group, id, "subscribed");
        state.subs.insert(
            id,
            Sub {
                pattern,
                queue_group,
                sink: Sink::Worker { tx, worker },
            },
        );
        Ok(SubscriptionId(id))
    }

    /// Removes a subscription; returns whether it existed. The message
    /// being delivered finishes; the rest of its queue is discarded. Safe
    /// to call from inside that subscription's own `deliver`.
    pub fn unsubscribe(&self, id: SubscriptionId) -> bool {
        let mut state = lock(&self.state);
        let Some(sub) = state.subs.remove(&id.0) else {
            return false;
        };
        self.forget_cursor(&mut state, &sub);
        if let Sink::Worker { worker, .. } = &sub.sink {
            worker.cancelled.store(true, Ordering::Release);
            tracing::debug!(subscriber = %worker.name, pattern = %sub.pattern, %id, "unsubscribed");
            state.retired.retain(|w| !w.done.load(Ordering::Acquire));
            state.retired.push(worker.clone());
        }
        // Dropping `sub` drops the sender; the thread ends once idle.
        true
    }

    fn forget_cursor(&self, state: &mut State, sub: &Sub) {
        if let Some(group) = &sub.queue_group {
            let still_used = state.subs.values().any(|s| {
                s.queue_group.as_deref() == Some(group.as_str())
                    && s.pattern.as_str() == sub.pattern.as_str()
            });
            if !still_used {
                state
                    .cursors
                    .remove(&(sub.pattern.as_str().to_string(), group.clone()));
            }
        }
    }

    /// Publishes a message: queues a copy for every matching subscription
    /// (one member per queue group) and hands it to the uplink if its
    /// subject is exported. Returns once queued; never waits for delivery.
    pub fn publish(&self, msg: Message) -> Result<PublishReport, BusError> {
        self.publish_inner(msg, true)
    }

    /// Publishes a message that came from the lattice: delivered locally,
    /// never sent back to the uplink.
    pub fn publish_from_uplink(&self, msg: Message) -> Result<PublishReport, BusError> {
        self.publish_inner(msg, false)
    }

    /// Queues a message from the uplink for one subscription only (the
    /// lattice chose it: its subscription upstream matched). Never waits:
    /// `Ok(false)` if the subscription is gone or its queue is full (a
    /// drop, counted as one).
    pub fn deliver_to(&self, id: SubscriptionId, msg: Message) -> Result<bool, BusError> {
        self.check_message(&msg.subject, msg.body.len())?;
        if let Some(reply_to) = &msg.reply_to {
            validate_subject(reply_to)?;
        }
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        let state = lock(&self.state);
        let Some(sub) = state.subs.get(&id.0) else {
            return Ok(false);
        };
        match self.offer(sub, msg) {
            Ok(()) => Ok(true),
            Err(m) => {
                self.note_drop(sub, &m.subject);
                Ok(false)
            }
        }
    }

    fn check_message(&self, subject: &str, body_len: usize) -> Result<(), BusError> {
        validate_subject(subject)?;
        if body_len > self.config.max_payload {
            return Err(BusError::PayloadTooLarge {
                size: body_len,
                max: self.config.max_payload,
            });
        }
        if self.closed.load(Ordering::Acquire) {
            return Err(BusError::Closed);
        }
        Ok(())
    }

    fn publish_inner(&self, msg: Message, export: bool) -> Result<PublishReport, BusError> {
        self.check_message(&msg.subject, msg.body.len())?;
        if let Some(reply_to) = &msg.reply_to {
            validate_subject(reply_to)?;
        }
        self.counters.published.fetch_add(1, Ordering::Relaxed);

        // A reply to one of this bus's own requests is for the requester
        // here, never for the lattice.
        let own_inbox = msg
            .subject
            .strip_prefix("_INBOX.")
            .is_some_and(|rest| rest.starts_with(&self.inbox_prefix));
        let uplink = if export && !own_inbox && self.exports.iter().any(|p| p.matches(&msg.subject))
        {
            lock(&self.uplink).clone()
        } else {
            None
        };
        // Keep the original for the uplink; otherwise the last local
        // target takes it without a copy.
        let (local, for_uplink) = match uplink {
            Some(u) => (msg.clone(), Some((u, msg))),
            None => (msg, None),
        };
        let (mut report, _) = self.fan_out(local);

        if let Some((uplink, msg)) = for_uplink {
            // Outside the state lock: the uplink may publish into the bus.
            match uplink.publish(&msg) {
                Ok(true) => {
                    self.counters.exported.fetch_add(1, Ordering::Relaxed);
                    report.exported = true;
                }
                Ok(false) => {}
                Err(e) => {
                    let n = self.counters.uplink_errors.fetch_add(1, Ordering::Relaxed) + 1;
                    if worth_logging(n) {
                        tracing::warn!(subject = %msg.subject, error = %e, uplink_errors = n, "uplink refused a message");
                    }
                    // Taken by nothing on the device and refused upstream:
                    // the publisher must hear it was not sent.
                    if report.delivered_to == 0 && report.dropped == 0 {
                        return Err(BusError::Uplink(e));
                    }
                }
            }
        }
        Ok(report)
    }

    /// Matches and enqueues under the state lock. Nothing here blocks:
    /// `try_send` only. The message comes back if no subscription matched
    /// it (a request then goes to the uplink without a copy).
    fn fan_out(&self, msg: Message) -> (PublishReport, Option<Message>) {
        let mut report = PublishReport::default();
        let mut state = lock(&self.state);
        let state = &mut *state;

        // Plain subscriptions get a copy each; queue groups collect their
        // members (in id order) and get one copy per group.
        let mut plain: Vec<u64> = Vec::new();
        let mut groups: BTreeMap<(&str, &str), Vec<u64>> = BTreeMap::new();
        for (id, sub) in &state.subs {
            if !sub.pattern.matches(&msg.subject) {
                continue;
            }
            match &sub.queue_group {
                None => plain.push(*id),
                Some(g) => groups
                    .entry((sub.pattern.as_str(), g.as_str()))
                    .or_default()
                    .push(*id),
            }
        }
        let mut remaining = plain.len() + groups.len();
        if remaining == 0 {
            return (report, Some(msg));
        }
        let mut msg = Some(msg);
        let mut next_copy = || -> Message {
            // The last target gets the original, the others a clone.
            remaining -= 1;
            if remaining == 0 {
                msg.take().expect("one message per target")
            } else {
                msg.as_ref()
                    .expect("message kept until the last target")
                    .clone()
            }
        };

        for id in &plain {
            let sub = &state.subs[id];
            match self.offer(sub, next_copy()) {
                Ok(()) => report.delivered_to += 1,
                Err(m) => {
                    report.dropped += 1;
                    self.note_drop(sub, &m.subject);
                }
            }
        }

        for ((pattern, group), members) in groups {
            let key = (pattern.to_string(), group.to_string());
            let cursor = state.cursors.entry(key).or_insert(0);
            let start = *cursor % members.len();
            let mut unsent = Some(next_copy());
            // Round-robin, except that a member whose queue is full is
            // skipped for the next one: better load balancing than NATS's
            // random pick, and a message is dropped only when the whole
            // group is backed up. The drop is charged to the member whose
            // turn it was.
            for k in 0..members.len() {
                let idx = (start + k) % members.len();
                let m = unsent.take().expect("kept until sent");
                match self.offer(&state.subs[&members[idx]], m) {
                    Ok(()) => {
                        *cursor = idx + 1;
                        break;
                    }
                    Err(back) => unsent = Some(back),
                }
            }
            match unsent {
                None => report.delivered_to += 1,
                Some(m) => {
                    *cursor = start + 1;
                    report.dropped += 1;
                    self.note_drop(&state.subs[&members[start]], &m.subject);
                }
            }
        }
        (report, None)
    }

    /// Tries to queue `msg` for `sub`; gives it back if the queue is full
    /// (or its thread is gone).
    fn offer(&self, sub: &Sub, msg: Message) -> Result<(), Message> {
        match &sub.sink {
            Sink::Worker { tx, worker } => match tx.try_send(msg) {
                Ok(()) => {
                    worker.enqueued.fetch_add(1, Ordering::Relaxed);
                    Ok(())
                }
                Err(TrySendError::Full(m) | TrySendError::Disconnected(m)) => Err(m),
            },
            Sink::Inbox(tx) => {
                // A second reply to a request finds the slot taken (or the
                // requester gone) and is ignored, as with a NATS request's
                // auto-unsubscribed inbox. Either way it is not a drop.
                if tx.try_send(msg).is_ok() {
                    self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            }
        }
    }

    fn note_drop(&self, sub: &Sub, subject: &str) {
        self.counters.dropped.fetch_add(1, Ordering::Relaxed);
        if let Sink::Worker { worker, .. } = &sub.sink {
            let n = worker.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if worth_logging(n) {
                tracing::warn!(
                    subscriber = %worker.name,
                    subject,
                    pattern = %sub.pattern,
                    dropped = n,
                    capacity = self.config.queue_capacity,
                    "subscriber queue full, message dropped"
                );
            }
        }
    }

    fn new_inbox(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut s = String::with_capacity(32);
        s.push_str("_INBOX.");
        s.push_str(&self.inbox_prefix);
        base62(n, &mut s);
        s
    }

    /// Sends a request and waits for the first reply, for at most
    /// `timeout` (itself capped by [`BusConfig::max_request_timeout`]).
    ///
    /// As a NATS client does, it subscribes a fresh `_INBOX.<random>`
    /// subject, publishes with `reply_to` set to it, and waits. If nothing
    /// on the device subscribes to `subject`, an exported subject goes to
    /// [`Uplink::request`] (its error is [`BusError::Uplink`]); otherwise
    /// it fails at once with [`BusError::NoResponders`].
    pub fn request(
        &self,
        subject: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Message, BusError> {
        self.check_message(subject, body.len())?;
        let timeout = timeout.min(self.config.max_request_timeout);
        let inbox = self.new_inbox();
        let (tx, rx) = mpsc::sync_channel(1);
        let id = {
            let mut state = lock(&self.state);
            if self.closed.load(Ordering::Acquire) {
                return Err(BusError::Closed);
            }
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            state.subs.insert(
                id,
                Sub {
                    pattern: Pattern::parse(&inbox).expect("inbox subjects are valid"),
                    queue_group: None,
                    sink: Sink::Inbox(tx),
                },
            );
            SubscriptionId(id)
        };
        // Unsubscribes the inbox however this function returns.
        struct InboxGuard<'a>(&'a Bus, SubscriptionId);
        impl Drop for InboxGuard<'_> {
            fn drop(&mut self) {
                self.0.unsubscribe(self.1);
            }
        }
        let _guard = InboxGuard(self, id);

        let msg = Message {
            subject: subject.to_string(),
            body,
            reply_to: Some(inbox),
        };
        // Local subscribers first (a request is never queued upstream: its
        // answer would come to an inbox long gone); the uplink answers
        // only what nothing on the device subscribes to.
        let uplink = if self.exports.iter().any(|p| p.matches(subject)) {
            lock(&self.uplink).clone()
        } else {
            None
        };
        self.counters.published.fetch_add(1, Ordering::Relaxed);
        let (report, unmatched) = self.fan_out(msg);
        if !self.is_closed() {
            if let (Some(u), Some(msg)) = (uplink, unmatched) {
                let answer =
                    twig_component::blocking::section(|| u.request(subject, &msg.body, timeout));
                if let Some(answer) = answer {
                    self.counters.exported.fetch_add(1, Ordering::Relaxed);
                    return answer.map_err(|e| {
                        self.counters.uplink_errors.fetch_add(1, Ordering::Relaxed);
                        BusError::Uplink(e)
                    });
                }
            }
        }
        if report.delivered_to == 0 {
            return Err(if self.is_closed() {
                // `close` emptied the table between our checks and the
                // fan-out; "no responders" would be misleading.
                BusError::Closed
            } else if report.dropped > 0 {
                BusError::RespondersBusy {
                    subject: subject.to_string(),
                }
            } else {
                BusError::NoResponders {
                    subject: subject.to_string(),
                }
            });
        }
        // The requester (a guest, usually) waits for another component's
        // answer: a blocking section (twig_component::blocking).
        match twig_component::blocking::section(|| rx.recv_timeout(timeout)) {
            Ok(reply) => Ok(reply),
            Err(RecvTimeoutError::Timeout) => Err(BusError::Timeout {
                subject: subject.to_string(),
                after: timeout,
            }),
            // `close` dropped the inbox.
            Err(RecvTimeoutError::Disconnected) => Err(BusError::Closed),
        }
    }

    /// Counters, bus-wide and per live subscription.
    pub fn stats(&self) -> BusStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let state = lock(&self.state);
        let subscriptions = state
            .subs
            .iter()
            .filter_map(|(id, sub)| match &sub.sink {
                Sink::Worker { worker: w, .. } => {
                    let enqueued = get(&w.enqueued);
                    let (delivered, failed) = (get(&w.delivered), get(&w.failed));
                    Some(SubscriptionStats {
                        id: SubscriptionId(*id),
                        subscriber: w.name.to_string(),
                        pattern: sub.pattern.to_string(),
                        queue_group: sub.queue_group.clone(),
                        enqueued,
                        delivered,
                        failed,
                        dropped: get(&w.dropped),
                        pending: enqueued.saturating_sub(delivered + failed),
                    })
                }
                Sink::Inbox(_) => None,
            })
            .collect();
        BusStats {
            published: get(&c.published),
            delivered: get(&c.delivered),
            failed: get(&c.failed),
            dropped: get(&c.dropped),
            exported: get(&c.exported),
            uplink_errors: get(&c.uplink_errors),
            subscriptions,
        }
    }

    pub fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Stops the bus: new publishes, requests and subscriptions fail with
    /// [`BusError::Closed`], pending requests end with it, and every
    /// delivery thread delivers what is already queued and ends. Waits up
    /// to `timeout` for that; threads still busy then are told to stop
    /// after their current message and left to finish on their own.
    ///
    /// Called from inside a `deliver`, it does not wait for its own thread.
    /// Calling it again is harmless.
    pub fn close(&self, timeout: Duration) -> CloseReport {
        let until = Instant::now() + timeout;
        let workers: Vec<Arc<Worker>> = {
            let mut state = lock(&self.state);
            self.closed.store(true, Ordering::Release);
            let subs = std::mem::take(&mut state.subs);
            state.cursors.clear();
            let mut workers = std::mem::take(&mut state.retired);
            workers.extend(subs.into_values().filter_map(|s| match s.sink {
                Sink::Worker { worker, .. } => Some(worker),
                Sink::Inbox(_) => None,
            }));
            workers
            // `subs` dropped here: every sender goes, so each thread sees
            // its queue end after the last queued message.
        };
        let me = std::thread::current().id();
        let is_me = |w: &Worker| {
            lock(&w.thread)
                .as_ref()
                .is_some_and(|h| h.thread().id() == me)
        };
        let others: Vec<&Arc<Worker>> = workers.iter().filter(|w| !is_me(w)).collect();

        let mut guard = lock(&self.exits.lock);
        loop {
            if others.iter().all(|w| w.done.load(Ordering::Acquire)) {
                break;
            }
            let now = Instant::now();
            if now >= until {
                break;
            }
            guard = self
                .exits
                .cv
                .wait_timeout(guard, until - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(guard);

        let mut report = CloseReport::default();
        for w in others {
            if w.done.load(Ordering::Acquire) {
                if let Some(h) = lock(&w.thread).take() {
                    // Already past its last statement; joins at once.
                    let _ = h.join();
                }
                report.stopped += 1;
            } else {
                w.cancelled.store(true, Ordering::Release);
                report.still_running.push(w.name.to_string());
            }
        }
        if !report.still_running.is_empty() {
            tracing::warn!(still_running = ?report.still_running, "message bus closed before every subscriber drained its queue");
        }
        report
    }
}

fn check_queue_group(group: &str) -> Result<(), BusError> {
    let reason = if group.is_empty() {
        "empty"
    } else if group
        .bytes()
        .any(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0c | 0))
    {
        "contains whitespace or NUL"
    } else {
        return Ok(());
    };
    Err(BusError::InvalidQueueGroup {
        group: group.to_string(),
        reason,
    })
}

/// The body of a delivery thread: one message at a time, in queue order,
/// until the queue's sender is gone (unsubscribe or close) or it is told
/// to stop.
fn run_worker(
    rx: Receiver<Message>,
    subscriber: Arc<dyn Subscriber>,
    worker: Arc<Worker>,
    counters: Arc<Counters>,
    exits: Arc<Exits>,
) {
    while let Ok(msg) = rx.recv() {
        if worker.cancelled.load(Ordering::Acquire) {
            break;
        }
        let subject = msg.subject.clone();
        // A panicking subscriber must not take its thread (and so its
        // subscription) down with it. Release builds abort on panic
        // anyway; this matters for debug builds and tests.
        let outcome = catch_unwind(AssertUnwindSafe(|| subscriber.deliver(msg)));
        let error = match outcome {
            Ok(Ok(())) => {
                worker.delivered.fetch_add(1, Ordering::Relaxed);
                counters.delivered.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            Ok(Err(e)) => e,
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "panic".into());
                format!("panicked: {what}")
            }
        };
        counters.failed.fetch_add(1, Ordering::Relaxed);
        let n = worker.failed.fetch_add(1, Ordering::Relaxed) + 1;
        if worth_logging(n) {
            tracing::warn!(subscriber = %worker.name, subject, error = %error, failed = n, "subscriber failed to handle a message");
        }
    }
    // Dropping the receiver before signalling: any later `try_send` fails
    // at once instead of filling a queue nobody reads.
    drop(rx);
    let _g = lock(&exits.lock);
    worker.done.store(true, Ordering::Release);
    exits.cv.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base62_digits() {
        let mut s = String::new();
        base62(0, &mut s);
        assert_eq!(s, "0");
        s.clear();
        base62(61, &mut s);
        assert_eq!(s, "z");
        s.clear();
        base62(62, &mut s);
        assert_eq!(s, "10");
        s.clear();
        base62(u64::MAX, &mut s);
        assert_eq!(s, "LygHa16AHYF");
    }

    #[test]
    fn inboxes_are_unique_valid_subjects() {
        let bus = Bus::new(BusConfig::default()).unwrap();
        let other = Bus::new(BusConfig::default()).unwrap();
        let a = bus.new_inbox();
        let b = bus.new_inbox();
        assert_ne!(a, b);
        assert_ne!(bus.inbox_prefix, other.inbox_prefix);
        for s in [&a, &b] {
            assert!(s.starts_with("_INBOX."));
            validate_subject(s).unwrap();
            assert_eq!(s.split('.').count(), 2);
        }
    }

    #[test]
    fn queue_group_names() {
        assert!(check_queue_group("workers").is_ok());
        assert!(check_queue_group("").is_err());
        assert!(check_queue_group("a b").is_err());
    }
}
