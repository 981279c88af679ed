//! The drain: sends the outbox upstream while the link is up, and the
//! supervisor that tells whether "up" reaches past the leaf node.
//!
//! A device usually talks to a NATS leaf node on its own site, and the
//! leaf to the core. When the core goes away the device's own connection
//! stays up, and a plain publish to the leaf is silently dropped there. So
//! the drain never trusts the connection alone:
//!
//! * for a subject a JetStream stream captures (asked of the lattice's
//!   JetStream domain, or fixed by the class's `delivery`), each message is
//!   published with `Nats-Msg-Id` = its outbox id and acknowledged in the
//!   outbox only when the stream's acknowledgement comes back. A message
//!   sent twice (an acknowledgement lost, twig killed before it recorded
//!   one) is dropped by the stream as a duplicate: exactly once at the
//!   stream.
//! * other subjects are published plainly once the supervisor's last ping
//!   of the upstream succeeded, and acknowledged once the server has them
//!   (at least once to the server).
//!
//! Messages go in outbox order (per class, so per subject), in batches
//! whose acknowledgements are awaited together, paced by a token bucket
//! (`drain_rate`, `drain_bytes_per_sec`) so that a backlog does not flood
//! a slow link. After a failure the drain backs off with jitter; the
//! supervisor wakes it as soon as the upstream answers again.
//!
//! A batch pipelines across subjects but never within one: a stream
//! publish on a subject waits until the stream has acknowledged the one
//! before it on that subject. Otherwise a publish lost on the way (a leaf
//! whose link to the core drops and returns within a paced batch) while a
//! later one on its subject was stored would be stored after it on the
//! resend. With the wait, a loss stops the subject there: the outbox is
//! acknowledged up to the last record confirmed in order, and the next
//! batch starts again at the first unconfirmed one (records after it that
//! the stream already has come back as duplicates of their `Nats-Msg-Id`).
//! [`send_batch`] talks to NATS through [`Wire`], which the tests fake
//! to lose a publish.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use tokio::sync::{watch, Notify};

use super::{update, SharedStatus, UpstreamState};
use crate::board::Delivery;
use crate::outbox::Upstream;

/// Records per batch at most: the window of publishes awaiting their
/// acknowledgements together.
const BATCH: usize = 32;

/// Pacing: a token bucket for messages and one for bytes. Pure (the
/// caller passes the time), so it is tested without sleeping.
#[derive(Debug)]
pub(crate) struct Pacer {
    msgs_per_sec: f64,
    bytes_per_sec: f64,
    /// Tokens available; may go negative (a debt paid by waiting).
    msgs: f64,
    bytes: f64,
    last: Instant,
}

impl Pacer {
    /// `0` means unlimited for either rate. The buckets hold a quarter of
    /// a second's worth, so a reconnect sends no burst bigger than that.
    pub(crate) fn new(msgs_per_sec: u32, bytes_per_sec: u64, now: Instant) -> Pacer {
        let m = msgs_per_sec as f64;
        let b = bytes_per_sec as f64;
        Pacer {
            msgs_per_sec: m,
            bytes_per_sec: b,
            msgs: (m / 4.0).max(1.0),
            bytes: (b / 4.0).max(1.0),
            last: now,
        }
    }

    /// Takes one message of `bytes`; returns how long to wait before
    /// sending it.
    pub(crate) fn take(&mut self, bytes: usize, now: Instant) -> Duration {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        let mut wait: f64 = 0.0;
        if self.msgs_per_sec > 0.0 {
            let cap = (self.msgs_per_sec / 4.0).max(1.0);
            self.msgs = (self.msgs + dt * self.msgs_per_sec).min(cap) - 1.0;
            if self.msgs < 0.0 {
                wait = wait.max(-self.msgs / self.msgs_per_sec);
            }
        }
        if self.bytes_per_sec > 0.0 {
            // A message bigger than the bucket still goes, after the wait
            // its size costs.
            let cap = (self.bytes_per_sec / 4.0).max(1.0);
            self.bytes = (self.bytes + dt * self.bytes_per_sec).min(cap) - bytes as f64;
            if self.bytes < 0.0 {
                wait = wait.max(-self.bytes / self.bytes_per_sec);
            }
        }
        Duration::from_secs_f64(wait)
    }

    /// The largest batch worth sending at once: about a quarter of a
    /// second of the byte rate, so a high-priority message waits no longer
    /// than that behind a backlog.
    pub(crate) fn batch_bytes(&self) -> usize {
        if self.bytes_per_sec > 0.0 {
            ((self.bytes_per_sec / 4.0) as usize).max(1)
        } else {
            1 << 20
        }
    }
}

/// Exponential backoff with jitter: each delay is drawn from
/// `[d/2, d]`, `d` doubling from `base` to `max`, so that a fleet of
/// devices behind one site link does not retry in step.
#[derive(Debug)]
pub(crate) struct Backoff {
    base: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    pub(crate) fn new(base: Duration, max: Duration) -> Backoff {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1)
            ^ (std::process::id() as u64).rotate_left(32);
        Backoff {
            base,
            max,
            attempt: 0,
            rng: seed | 1,
        }
    }

    pub(crate) fn reset(&mut self) {
        self.attempt = 0;
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self
            .base
            .saturating_mul(1u32 << self.attempt.min(16))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        // xorshift64: plenty for jitter.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        let frac = 0.5 + (self.rng % 1000) as f64 / 2000.0;
        d.mul_f64(frac)
    }
}

/// The async-nats reconnect delay: jittered backoff from 100 ms to 10 s.
pub(crate) fn reconnect_delay(attempts: usize) -> Duration {
    let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    b.attempt = attempts.min(32) as u32;
    b.next_delay()
}

/// Shared between the drain and the supervisor.
pub(crate) struct Link {
    pub client: async_nats::Client,
    pub js_domain: Option<String>,
    pub status: SharedStatus,
    /// Rung when the upstream answers again after not answering.
    pub upstream_back: Notify,
    /// Bumped with every (re)connect and every return of the upstream:
    /// the agent re-announces the host and re-reads the buckets on it.
    pub epochs: Arc<watch::Sender<u64>>,
}

impl Link {
    fn upstream(&self) -> UpstreamState {
        self.status
            .lock()
            .map(|s| s.upstream)
            .unwrap_or(UpstreamState::Unknown)
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}

/// Pings the upstream every `every` (every second while it does not
/// answer) and records the answer in the link's status. With a JetStream
/// domain the ping is `$JS.{domain}.API.INFO`, which only the core
/// answers; without one it is a round trip to the server itself.
pub(crate) async fn supervise(link: Arc<Link>, every: Duration) {
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(1));
    loop {
        let state = if link.connected() {
            ping(&link).await
        } else {
            Err("not connected".to_string())
        };
        let before = link.upstream();
        let now_state = match &state {
            Ok(_) => UpstreamState::Reachable,
            Err(_) => UpstreamState::Unreachable,
        };
        update(&link.status, |s| {
            s.upstream = now_state;
            match &state {
                Ok(rtt) => {
                    s.upstream_rtt_ms = Some((rtt.as_secs_f64() * 1e6).round() / 1e3);
                }
                Err(e) => s.upstream_error = Some(e.clone()),
            }
        });
        if before != now_state {
            match &state {
                Ok(_) => {
                    tracing::info!("upstream reachable");
                    // The drain is the only waiter; a stored permit
                    // reaches it even if it is not waiting right now.
                    link.upstream_back.notify_one();
                    // Not on the first answer after a connect: the connect
                    // itself bumped the epoch.
                    if before == UpstreamState::Unreachable {
                        link.epochs.send_modify(|n| *n += 1);
                    }
                }
                Err(e) => tracing::warn!("upstream unreachable: {e}"),
            }
        }
        let wait = if now_state == UpstreamState::Reachable {
            backoff.reset();
            every
        } else {
            backoff.next_delay()
        };
        tokio::time::sleep(wait).await;
    }
}

async fn ping(link: &Link) -> Result<Duration, String> {
    let t0 = Instant::now();
    let subject = match &link.js_domain {
        Some(d) => format!("$JS.{d}.API.INFO"),
        // Nobody serves it: the server answers "no responders" in order,
        // which proves the round trip.
        None => format!("_twig.ping.{}", link.client.new_inbox().replace('.', "_")),
    };
    let req = async_nats::Request::new()
        .payload(bytes::Bytes::new())
        .timeout(Some(Duration::from_secs(3)));
    match link.client.send_request(subject, req).await {
        Ok(_) => Ok(t0.elapsed()),
        Err(e)
            if link.js_domain.is_none()
                && e.kind() == async_nats::RequestErrorKind::NoResponders =>
        {
            Ok(t0.elapsed())
        }
        Err(e) => Err(match e.kind() {
            async_nats::RequestErrorKind::NoResponders => {
                "no JetStream answers in its domain (the core is not linked)".to_string()
            }
            async_nats::RequestErrorKind::TimedOut => "the ping timed out".to_string(),
            _ => e.to_string(),
        }),
    }
}

/// Whether a JetStream stream captures `subject`, asked of the lattice's
/// domain (`STREAM.NAMES` filtered by subject). With a domain, silence is
/// an error (the core is away: ask again later); without one, "no
/// responders" means there is no JetStream at all, so nothing captures it.
async fn stream_captures(link: &Link, subject: &str) -> Result<bool, String> {
    let api = match &link.js_domain {
        Some(d) => format!("$JS.{d}.API.STREAM.NAMES"),
        None => "$JS.API.STREAM.NAMES".to_string(),
    };
    let body = serde_json::json!({ "subject": subject }).to_string();
    let req = async_nats::Request::new()
        .payload(body.into())
        .timeout(Some(Duration::from_secs(3)));
    match link.client.send_request(api, req).await {
        Ok(reply) => {
            let v: serde_json::Value = serde_json::from_slice(&reply.payload).map_err(|e| {
                format!("the lattice's JetStream gave an unreadable stream list ({e})")
            })?;
            // An error reply (JetStream not enabled for the account, …)
            // means no stream of ours captures it.
            Ok(v["streams"].as_array().is_some_and(|a| !a.is_empty()))
        }
        Err(e)
            if link.js_domain.is_none()
                && e.kind() == async_nats::RequestErrorKind::NoResponders =>
        {
            Ok(false)
        }
        Err(e) => Err(format!(
            "cannot ask the lattice's JetStream which stream captures {subject}: {e}"
        )),
    }
}

/// What one pass over a batch came to.
#[derive(Debug, Default, PartialEq, Eq)]
struct Outcome {
    /// The last seq the upstream has, in order from the batch's start.
    delivered_upto: Option<u64>,
    delivered: u64,
    duplicates: u64,
    error: Option<String>,
}

/// A stream's acknowledgement of one publish, still to come: `Ok(true)`
/// when the stream already had the message (a duplicate of its
/// `Nats-Msg-Id`).
pub(crate) type StreamAck = Pin<Box<dyn Future<Output = Result<bool, String>> + Send>>;

/// What the drain needs of its NATS connection: the seam where the tests
/// put a fake that loses publishes.
pub(crate) trait Wire: Sync {
    /// Whether a JetStream stream captures `subject`.
    fn stream_captures(&self, subject: &str) -> impl Future<Output = Result<bool, String>> + Send;
    /// Hands `rec` to the connection for a stream, with `Nats-Msg-Id` =
    /// `msg_id`; the stream's answer comes in the returned future.
    fn publish_stream(
        &self,
        rec: &twig_outbox::Record,
        msg_id: String,
    ) -> impl Future<Output = Result<StreamAck, String>> + Send;
    /// Publishes `rec` plainly (no stream captures it).
    fn publish_plain(
        &self,
        rec: &twig_outbox::Record,
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Waits until the server has everything published so far.
    fn flush(&self) -> impl Future<Output = Result<(), String>> + Send;
    /// Whether the supervisor's last ping of the upstream succeeded.
    fn upstream_reachable(&self) -> bool;
}

/// The real [`Wire`]: the link's client and its JetStream context.
struct Nats<'a> {
    link: &'a Link,
    js: &'a jetstream::Context,
}

fn headers_of(rec: &twig_outbox::Record) -> async_nats::HeaderMap {
    rec.headers
        .iter()
        .fold(async_nats::HeaderMap::new(), |mut h, (k, v)| {
            h.insert(k.as_str(), v.as_str());
            h
        })
}

impl Wire for Nats<'_> {
    async fn stream_captures(&self, subject: &str) -> Result<bool, String> {
        stream_captures(self.link, subject).await
    }

    async fn publish_stream(
        &self,
        rec: &twig_outbox::Record,
        msg_id: String,
    ) -> Result<StreamAck, String> {
        let msg = jetstream::message::PublishMessage::build()
            .payload(rec.body.clone().into())
            .headers(headers_of(rec))
            .message_id(msg_id);
        match self.js.send_publish(rec.subject.clone(), msg).await {
            Ok(ack) => Ok(Box::pin(async move {
                ack.await
                    .map(|a| a.duplicate)
                    .map_err(|e| format!("no acknowledgement from the stream: {e}"))
            })),
            Err(e) => Err(format!("publish {}: {e}", rec.subject)),
        }
    }

    async fn publish_plain(&self, rec: &twig_outbox::Record) -> Result<(), String> {
        self.link
            .client
            .publish_with_headers(
                rec.subject.clone(),
                headers_of(rec),
                rec.body.clone().into(),
            )
            .await
            .map_err(|e| format!("publish {}: {e}", rec.subject))
    }

    async fn flush(&self) -> Result<(), String> {
        self.link
            .client
            .flush()
            .await
            .map_err(|_| "the connection dropped while sending".to_string())
    }

    fn upstream_reachable(&self) -> bool {
        self.link.upstream() == UpstreamState::Reachable
    }
}

/// Sends the outbox upstream for the life of the runtime.
pub(crate) async fn run(link: Arc<Link>, upstream: Arc<Upstream>) {
    let wake = Arc::new(Notify::new());
    {
        let w = wake.clone();
        upstream.outbox.set_waker(Box::new(move || w.notify_one()));
    }
    let mut js = match &link.js_domain {
        Some(d) => jetstream::with_domain(link.client.clone(), d),
        None => jetstream::new(link.client.clone()),
    };
    js.set_timeout(upstream.drain.ack_timeout);
    let wire = Nats {
        link: &link,
        js: &js,
    };
    let mut pacer = Pacer::new(
        upstream.drain.rate,
        upstream.drain.bytes_per_sec,
        Instant::now(),
    );
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    // Whether a stream captures a subject, as last asked; forgotten on
    // every new epoch (a restarted core may have other streams).
    let mut captured: HashMap<String, bool> = HashMap::new();
    let mut epochs = link.epochs.subscribe();
    let mut last_error: Option<String> = None;
    loop {
        if epochs.has_changed().unwrap_or(false) {
            epochs.mark_unchanged();
            captured.clear();
        }
        if !link.connected() {
            tokio::select! {
                _ = epochs.changed() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        let ob = upstream.outbox.clone();
        let max_bytes = pacer.batch_bytes();
        let batch = match tokio::task::spawn_blocking(move || ob.next_batch(BATCH, max_bytes)).await
        {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                tracing::error!("outbox: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
            Err(e) => {
                tracing::error!("outbox: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if batch.is_empty() {
            // Also wakes now and then so expired messages are counted.
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            continue;
        }
        let out = send_batch(&wire, &upstream, &batch, &mut pacer, &mut captured).await;
        if let Some(upto) = out.delivered_upto {
            let ob = upstream.outbox.clone();
            let class = batch[0].class;
            match tokio::task::spawn_blocking(move || ob.ack(class, upto)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::error!("outbox: cannot record delivery: {e}"),
                Err(e) => tracing::error!("outbox: cannot record delivery: {e}"),
            }
            update(&link.status, |s| {
                s.delivered += out.delivered;
                s.stream_duplicates += out.duplicates;
                s.last_delivered_ms = Some(now_ms());
            });
        }
        match out.error {
            None => {
                backoff.reset();
                if last_error.take().is_some() {
                    tracing::info!("outbox: delivering again");
                }
            }
            Some(e) => {
                if last_error.as_deref() != Some(e.as_str()) {
                    tracing::warn!("outbox: {e}; keeping the messages and retrying");
                    last_error = Some(e.clone());
                }
                update(&link.status, |s| s.last_delivery_error = Some(e));
                let delay = backoff.next_delay();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = link.upstream_back.notified() => {}
                    _ = epochs.changed() => {}
                }
            }
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

enum Pending {
    /// A stream publish on `subject`, its acknowledgement to come.
    Stream {
        seq: u64,
        subject: String,
        ack: StreamAck,
    },
    /// A plain publish, confirmed by the next flush.
    Plain(u64),
}

/// The batch's publishes not yet confirmed, oldest first, and what is
/// confirmed so far. Confirmation goes strictly in order: the first
/// failure ends it, and everything after that stays unconfirmed.
struct InFlight {
    queue: VecDeque<Pending>,
    /// Unconfirmed stream publishes per subject.
    per_subject: HashMap<String, usize>,
    out: Outcome,
}

impl InFlight {
    fn new() -> InFlight {
        InFlight {
            queue: VecDeque::new(),
            per_subject: HashMap::new(),
            out: Outcome::default(),
        }
    }

    fn push(&mut self, p: Pending) {
        if let Pending::Stream { subject, .. } = &p {
            *self.per_subject.entry(subject.clone()).or_default() += 1;
        }
        self.queue.push_back(p);
    }

    fn unconfirmed_on(&self, subject: &str) -> bool {
        self.per_subject.get(subject).is_some_and(|n| *n > 0)
    }

    /// Confirms the oldest pending publishes, in order, until `done` says
    /// to stop or one fails. Returns false on a failure (recorded in
    /// `out.error` unless one is there already).
    async fn confirm_until<W: Wire>(
        &mut self,
        wire: &W,
        mut done: impl FnMut(&InFlight) -> bool,
    ) -> bool {
        while !done(self) {
            let Some(p) = self.queue.pop_front() else {
                return true;
            };
            let ok = match p {
                Pending::Stream { seq, subject, ack } => {
                    if let Some(n) = self.per_subject.get_mut(&subject) {
                        *n = n.saturating_sub(1);
                    }
                    match ack.await {
                        Ok(duplicate) => {
                            self.confirmed(seq);
                            if duplicate {
                                self.out.duplicates += 1;
                            }
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                Pending::Plain(seq) => match wire.flush().await {
                    Ok(()) => {
                        self.confirmed(seq);
                        // The same flush covers the plain ones right behind.
                        while let Some(Pending::Plain(next)) = self.queue.front() {
                            let next = *next;
                            self.queue.pop_front();
                            self.confirmed(next);
                        }
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
            };
            if let Err(e) = ok {
                if self.out.error.is_none() {
                    self.out.error = Some(e);
                }
                // What is left is unconfirmed; the next batch sends it again.
                self.queue.clear();
                self.per_subject.clear();
                return false;
            }
        }
        true
    }

    fn confirmed(&mut self, seq: u64) {
        self.out.delivered_upto = Some(seq);
        self.out.delivered += 1;
    }
}

async fn send_batch<W: Wire>(
    wire: &W,
    upstream: &Upstream,
    batch: &[twig_outbox::Record],
    pacer: &mut Pacer,
    captured: &mut HashMap<String, bool>,
) -> Outcome {
    let mut flight = InFlight::new();
    for (i, rec) in batch.iter().enumerate() {
        // A paced batch can take seconds on a slow uplink (32 messages at
        // 10/s); a class ahead of this one (a heartbeat) must not wait for
        // it, so end the batch early and let the next one serve that class.
        // What was sent so far is still acknowledged below.
        if i > 0 && upstream.outbox.pending_before(rec.class) {
            break;
        }
        let to_stream = match upstream.delivery(rec.class) {
            Delivery::Jetstream => true,
            Delivery::Core => false,
            Delivery::Auto => match captured.get(&rec.subject) {
                Some(c) => *c,
                None => match wire.stream_captures(&rec.subject).await {
                    Ok(c) => {
                        captured.insert(rec.subject.clone(), c);
                        c
                    }
                    Err(e) => {
                        flight.out.error = Some(e);
                        break;
                    }
                },
            },
        };
        // Never two unconfirmed stream publishes on one subject: the
        // second could be stored while the first is lost.
        if to_stream
            && flight.unconfirmed_on(&rec.subject)
            && !flight
                .confirm_until(wire, |f| !f.unconfirmed_on(&rec.subject))
                .await
        {
            break;
        }
        let wait = pacer.take(rec.subject.len() + rec.body.len(), Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        if to_stream {
            match wire.publish_stream(rec, upstream.outbox.msg_id(rec)).await {
                Ok(ack) => flight.push(Pending::Stream {
                    seq: rec.seq,
                    subject: rec.subject.clone(),
                    ack,
                }),
                Err(e) => {
                    flight.out.error = Some(e);
                    break;
                }
            }
        } else {
            if !wire.upstream_reachable() {
                flight.out.error = Some(format!(
                    "{}: the upstream does not answer, and no stream captures this subject to acknowledge it",
                    rec.subject
                ));
                break;
            }
            match wire.publish_plain(rec).await {
                Ok(()) => flight.push(Pending::Plain(rec.seq)),
                Err(e) => {
                    flight.out.error = Some(e);
                    break;
                }
            }
        }
    }
    flight.confirm_until(wire, |f| f.queue.is_empty()).await;
    flight.out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Mutex;

    /// A JetStream stream behind a connection that loses publishes on
    /// request. A publish that is not lost is stored the moment it is
    /// sent, as on the real path, where the acknowledgement comes back
    /// later; so with two publishes in flight, a lost first and a stored
    /// second leave the stream out of order unless the drain waited.
    #[derive(Default)]
    struct FakeStream {
        state: Mutex<FakeState>,
    }

    #[derive(Default)]
    struct FakeState {
        /// (subject, body) in the order stored.
        stored: Vec<(String, String)>,
        ids: HashSet<String>,
        /// Bodies whose first publish never reaches the stream.
        lose_publish: HashSet<String>,
        /// Bodies stored on their first publish whose acknowledgement is
        /// lost on the way back.
        lose_ack: HashSet<String>,
        publishes: usize,
        /// Stream acknowledgements not awaited yet, per subject, and the
        /// most ever seen at once (in all, and on one subject).
        outstanding: HashMap<String, usize>,
        max_outstanding: usize,
        max_outstanding_one_subject: usize,
    }

    impl FakeStream {
        fn new(lose_publish: &[&str], lose_ack: &[&str]) -> FakeStream {
            let f = FakeStream::default();
            {
                let mut st = f.state.lock().unwrap();
                st.lose_publish = lose_publish.iter().map(|s| s.to_string()).collect();
                st.lose_ack = lose_ack.iter().map(|s| s.to_string()).collect();
            }
            f
        }

        fn stored_on(&self, subject: &str) -> Vec<String> {
            let st = self.state.lock().unwrap();
            st.stored
                .iter()
                .filter(|(s, _)| s == subject)
                .map(|(_, b)| b.clone())
                .collect()
        }
    }

    struct Outstanding(Arc<FakeStream>, String);

    impl Drop for Outstanding {
        fn drop(&mut self) {
            if let Some(n) = self.0.state.lock().unwrap().outstanding.get_mut(&self.1) {
                *n -= 1;
            }
        }
    }

    impl Wire for Arc<FakeStream> {
        async fn stream_captures(&self, subject: &str) -> Result<bool, String> {
            Ok(subject.starts_with("telemetry."))
        }

        async fn publish_stream(
            &self,
            rec: &twig_outbox::Record,
            msg_id: String,
        ) -> Result<StreamAck, String> {
            let body = String::from_utf8(rec.body.clone()).unwrap();
            let result = {
                let mut st = self.state.lock().unwrap();
                st.publishes += 1;
                let n = st.outstanding.entry(rec.subject.clone()).or_default();
                *n += 1;
                let one = *n;
                st.max_outstanding_one_subject = st.max_outstanding_one_subject.max(one);
                let all = st.outstanding.values().sum();
                st.max_outstanding = st.max_outstanding.max(all);
                if st.lose_publish.remove(&body) {
                    Err("no acknowledgement from the stream: timed out".to_string())
                } else if st.ids.contains(&msg_id) {
                    Ok(true)
                } else {
                    st.ids.insert(msg_id);
                    st.stored.push((rec.subject.clone(), body.clone()));
                    if st.lose_ack.remove(&body) {
                        Err("no acknowledgement from the stream: timed out".to_string())
                    } else {
                        Ok(false)
                    }
                }
            };
            // Counted out when the drain awaits the answer or gives up on
            // it (drops the future unpolled).
            let outstanding = Outstanding(self.clone(), rec.subject.clone());
            Ok(Box::pin(async move {
                // The answer takes a turn of the runtime, as a network
                // round trip would.
                tokio::task::yield_now().await;
                drop(outstanding);
                result
            }))
        }

        async fn publish_plain(&self, rec: &twig_outbox::Record) -> Result<(), String> {
            panic!("{}: not a stream subject in this test", rec.subject)
        }

        async fn flush(&self) -> Result<(), String> {
            Ok(())
        }

        fn upstream_reachable(&self) -> bool {
            true
        }
    }

    /// An outbox under a fresh temporary directory, with the sim board's
    /// classes (`telemetry` delivers `auto`).
    fn upstream() -> (tempfile::TempDir, Upstream) {
        let dir = tempfile::tempdir().unwrap();
        let board = crate::board::Board::sim();
        let up = Upstream::open(&board.outbox, dir.path(), Duration::from_secs(30)).unwrap();
        (dir, up)
    }

    /// Drains the outbox into `wire` the way `run` does (next batch, send,
    /// ack the confirmed prefix), without its backoff sleeps; returns the
    /// outcomes.
    async fn drain_all(up: &Upstream, wire: &Arc<FakeStream>) -> Vec<Outcome> {
        let mut pacer = Pacer::new(0, 0, Instant::now());
        let mut captured = HashMap::new();
        let mut outcomes = Vec::new();
        for _ in 0..100 {
            let batch = up.outbox.next_batch(BATCH, 1 << 20).unwrap();
            if batch.is_empty() {
                return outcomes;
            }
            let out = send_batch(wire, up, &batch, &mut pacer, &mut captured).await;
            if let Some(upto) = out.delivered_upto {
                up.outbox.ack(batch[0].class, upto).unwrap();
            }
            outcomes.push(out);
        }
        panic!("the outbox did not drain in 100 batches: {outcomes:?}");
    }

    fn append(up: &Upstream, subject: &str, body: &str) {
        let class = up.class_for(subject).unwrap();
        up.outbox
            .append(class, subject, &[], body.as_bytes())
            .unwrap();
    }

    fn numbered(prefix: &str, n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("{prefix}{i}")).collect()
    }

    #[tokio::test]
    async fn a_publish_lost_mid_batch_is_resent_and_nothing_is_stored_out_of_order() {
        let (_dir, up) = upstream();
        // Two subjects interleaved in one class, 20 each: one batch of 32
        // and one of 8 when nothing goes wrong.
        for i in 1..=20 {
            append(&up, "telemetry.a", &format!("a{i}"));
            append(&up, "telemetry.b", &format!("b{i}"));
        }
        // a5 and b3 are lost on their first publish (in the first batch),
        // a18 in the second.
        let wire = Arc::new(FakeStream::new(&["a5", "b3", "a18"], &[]));
        let outcomes = drain_all(&up, &wire).await;

        // Every record once, in outbox order, per subject.
        assert_eq!(wire.stored_on("telemetry.a"), numbered("a", 20));
        assert_eq!(wire.stored_on("telemetry.b"), numbered("b", 20));
        // The failure was seen, and the batch after it started over at
        // the first unconfirmed record: the first batch ends at the loss
        // of b3 with a1, b1, a2, b2, a3 confirmed (a4, sent meanwhile, is
        // stored and comes back as a duplicate in the next batch).
        let first = &outcomes[0];
        assert!(
            first
                .error
                .as_deref()
                .unwrap_or("")
                .contains("no acknowledgement"),
            "{outcomes:?}"
        );
        assert_eq!(first.delivered, 5, "{outcomes:?}");
        assert_eq!(
            up.outbox
                .stats()
                .classes
                .iter()
                .map(|c| c.pending_records)
                .sum::<u64>(),
            0
        );
        // The drain still pipelines across subjects, one publish in flight
        // per subject.
        let st = wire.state.lock().unwrap();
        assert_eq!(st.max_outstanding_one_subject, 1);
        assert_eq!(st.max_outstanding, 2);
    }

    #[tokio::test]
    async fn a_lost_acknowledgement_is_resent_and_the_stream_drops_the_duplicate() {
        let (_dir, up) = upstream();
        for i in 1..=10 {
            append(&up, "telemetry.a", &format!("a{i}"));
        }
        // a4 is stored but its acknowledgement never arrives.
        let wire = Arc::new(FakeStream::new(&[], &["a4"]));
        let outcomes = drain_all(&up, &wire).await;
        assert_eq!(wire.stored_on("telemetry.a"), numbered("a", 10));
        assert_eq!(outcomes.len(), 2, "{outcomes:?}");
        assert_eq!(outcomes[0].delivered_upto, Some(3));
        // The resend starts at a4, which the stream already has.
        assert_eq!(outcomes[1].duplicates, 1);
        assert_eq!(outcomes[1].delivered, 7);
        assert_eq!(outcomes[1].error, None);
        // a4 twice (lost ack, resend), the rest once: 11 publishes, not a
        // resend of the whole batch.
        assert_eq!(wire.state.lock().unwrap().publishes, 11);
    }

    #[test]
    fn pacer_holds_the_message_rate() {
        let t0 = Instant::now();
        let mut p = Pacer::new(100, 0, t0);
        // Send 1000 messages as fast as the pacer allows, on a fake clock.
        let mut now = t0;
        for _ in 0..1000 {
            now += p.take(10, now);
        }
        let secs = now.duration_since(t0).as_secs_f64();
        // 25 in the initial bucket, then 100/s.
        assert!((9.7..=9.8).contains(&secs), "{secs}");
    }

    #[test]
    fn pacer_holds_the_byte_rate_and_a_big_message_still_goes() {
        let t0 = Instant::now();
        let mut p = Pacer::new(0, 1000, t0);
        let mut now = t0;
        for _ in 0..100 {
            now += p.take(100, now);
        }
        let secs = now.duration_since(t0).as_secs_f64();
        // 10 kB at 1 kB/s less the initial 250 B bucket.
        assert!((9.6..=9.8).contains(&secs), "{secs}");
        let wait = p.take(5000, now);
        assert!(wait >= Duration::from_secs(4), "{wait:?}");
        assert_eq!(p.batch_bytes(), 250);
    }

    #[test]
    fn pacer_unlimited_never_waits() {
        let t0 = Instant::now();
        let mut p = Pacer::new(0, 0, t0);
        for _ in 0..10_000 {
            assert_eq!(p.take(1 << 20, t0), Duration::ZERO);
        }
    }

    #[test]
    fn backoff_doubles_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<Duration> = (0..10).map(|_| b.next_delay()).collect();
        for (i, d) in delays.iter().enumerate() {
            let full = Duration::from_millis(100)
                .saturating_mul(1 << i)
                .min(Duration::from_secs(2));
            assert!(
                *d >= full / 2 && *d <= full,
                "attempt {i}: {d:?} vs {full:?}"
            );
        }
        // Jitter: not all capped delays are equal.
        assert!(delays[6..].windows(2).any(|w| w[0] != w[1]), "{delays:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
