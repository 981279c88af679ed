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

use std::collections::HashMap;
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
struct Outcome {
    /// The last seq the upstream has, in order from the batch's start.
    delivered_upto: Option<u64>,
    delivered: u64,
    duplicates: u64,
    error: Option<String>,
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
        let out = send_batch(&link, &js, &upstream, &batch, &mut pacer, &mut captured).await;
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
    Stream(u64, jetstream::context::PublishAckFuture),
    Plain(u64),
}

async fn send_batch(
    link: &Link,
    js: &jetstream::Context,
    upstream: &Upstream,
    batch: &[twig_outbox::Record],
    pacer: &mut Pacer,
    captured: &mut HashMap<String, bool>,
) -> Outcome {
    let mut out = Outcome {
        delivered_upto: None,
        delivered: 0,
        duplicates: 0,
        error: None,
    };
    let mut pending = Vec::with_capacity(batch.len());
    let mut any_plain = false;
    for (i, rec) in batch.iter().enumerate() {
        // A paced batch can take seconds on a slow uplink (32 messages at
        // 10/s); a class ahead of this one (a heartbeat) must not wait for
        // it, so end the batch early and let the next one serve that class.
        // What was sent so far is still acknowledged below.
        if i > 0 && upstream.outbox.pending_before(rec.class) {
            break;
        }
        let wait = pacer.take(rec.subject.len() + rec.body.len(), Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let to_stream = match upstream.delivery(rec.class) {
            Delivery::Jetstream => true,
            Delivery::Core => false,
            Delivery::Auto => match captured.get(&rec.subject) {
                Some(c) => *c,
                None => match stream_captures(link, &rec.subject).await {
                    Ok(c) => {
                        captured.insert(rec.subject.clone(), c);
                        c
                    }
                    Err(e) => {
                        out.error = Some(e);
                        break;
                    }
                },
            },
        };
        let headers = rec
            .headers
            .iter()
            .fold(async_nats::HeaderMap::new(), |mut h, (k, v)| {
                h.insert(k.as_str(), v.as_str());
                h
            });
        if to_stream {
            let msg = jetstream::message::PublishMessage::build()
                .payload(rec.body.clone().into())
                .headers(headers)
                .message_id(upstream.outbox.msg_id(rec));
            match js.send_publish(rec.subject.clone(), msg).await {
                Ok(ack) => pending.push(Pending::Stream(rec.seq, ack)),
                Err(e) => {
                    out.error = Some(format!("publish {}: {e}", rec.subject));
                    break;
                }
            }
        } else {
            if link.upstream() != UpstreamState::Reachable {
                out.error = Some(format!(
                    "{}: the upstream does not answer, and no stream captures this subject to acknowledge it",
                    rec.subject
                ));
                break;
            }
            match link
                .client
                .publish_with_headers(rec.subject.clone(), headers, rec.body.clone().into())
                .await
            {
                Ok(()) => {
                    any_plain = true;
                    pending.push(Pending::Plain(rec.seq));
                }
                Err(e) => {
                    out.error = Some(format!("publish {}: {e}", rec.subject));
                    break;
                }
            }
        }
    }
    let plain_flushed = if any_plain {
        link.client.flush().await.is_ok()
    } else {
        true
    };
    for p in pending {
        match p {
            Pending::Stream(seq, ack) => match ack.await {
                Ok(a) => {
                    out.delivered_upto = Some(seq);
                    out.delivered += 1;
                    if a.duplicate {
                        out.duplicates += 1;
                    }
                }
                Err(e) => {
                    if out.error.is_none() {
                        out.error = Some(format!("no acknowledgement from the stream: {e}"));
                    }
                    break;
                }
            },
            Pending::Plain(seq) => {
                if !plain_flushed {
                    if out.error.is_none() {
                        out.error = Some("the connection dropped while sending".into());
                    }
                    break;
                }
                out.delivered_upto = Some(seq);
                out.delivered += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
