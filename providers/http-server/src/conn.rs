//! Connections against idle and slow clients: what each connection is
//! doing, when it must go, and which one makes room for a newcomer.
//!
//! ```text
//!  accept ─► Table::admit(peer) ─► peer at its cap?  evict that peer's longest-idle, else refuse
//!                                ─► table full?      evict the longest-idle overall, else refuse
//!            connection task: hyper ⇄ Watched<TcpStream> (notes reads, stalled writes)
//!                             watchdog: sleep until Activity::deadline, woken on each change
//! ```
//!
//! A connection is *idle* while no request of it is being handled: just
//! accepted, between two requests, or part-way through sending a head.
//! Only idle connections are ever evicted or timed out here; a request in
//! progress is bounded by `timeout_ms` (the guest) and by the write-stall
//! timeout (a client that stops reading its response).
//!
//! Why not hyper's `header_read_timeout`: it starts when hyper begins
//! waiting for a head (on accept and right after every response) and runs
//! until the head is complete, so it is one timer for "idle between
//! requests" and "sending the head": a short one drops keep-alive clients
//! after a few seconds, a long one lets a slowloris client hold its socket
//! as long. Here the two are separate: the idle timeout runs from the end
//! of the last response, the header timeout from the head's first byte.
//! Neither is reset by further bytes, so a byte every few seconds buys
//! nothing.

use std::collections::HashMap;
use std::io;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// The connection limits of one server (from [`crate::ServerConfig`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnLimits {
    pub max_connections: usize,
    pub max_per_peer: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
}

/// What one connection is doing; shared by its socket wrapper, its
/// requests and its watchdog.
pub(crate) struct ConnState {
    activity: Mutex<Activity>,
    /// Wakes the watchdog when the deadline may have moved earlier.
    wake: Notify,
    /// Its task has tried to read the socket once. Until then the
    /// connection has had no chance to show a head, so it is evicted only
    /// when no other idle one is left (see [`TableInner::longest_idle`]).
    seen: AtomicBool,
}

struct Activity {
    /// Requests of this connection being handled (head read, response not
    /// yet fully handed to hyper). Zero: the connection is idle.
    busy: u32,
    /// When it last became idle (accepted, or its last response ended).
    idle_since: Instant,
    /// It has served a request (so idle means keep-alive, not fresh).
    served: bool,
    /// The first byte of the next head arrived at (idle connections only).
    head_since: Option<Instant>,
    /// A write has been waiting for the client to read since.
    stalled_since: Option<Instant>,
    evicted: bool,
}

/// Why a connection is closed by the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expired {
    /// No complete head within the header timeout.
    Header,
    /// Idle between requests for the idle timeout.
    Idle,
    /// The client read nothing of its response for the idle timeout.
    Stalled,
    /// Closed to make room for a new connection.
    Evicted,
}

impl std::fmt::Display for Expired {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Expired::Header => "no complete request head within the header timeout",
            Expired::Idle => "idle for the keep-alive timeout",
            Expired::Stalled => "the client stopped reading its response",
            Expired::Evicted => "closed to make room for a new connection",
        })
    }
}

impl ConnState {
    fn new(now: Instant) -> Arc<ConnState> {
        Arc::new(ConnState {
            activity: Mutex::new(Activity {
                busy: 0,
                idle_since: now,
                served: false,
                head_since: None,
                stalled_since: None,
                evicted: false,
            }),
            wake: Notify::new(),
            seen: AtomicBool::new(false),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Activity> {
        // Nothing panics while holding it; a poisoned lock still has
        // consistent counters.
        self.activity.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request's head was read: the connection is busy until the
    /// returned guard drops (with the response body, or the request).
    pub(crate) fn begin_request(self: &Arc<Self>) -> Busy {
        let mut a = self.lock();
        a.busy += 1;
        a.head_since = None;
        Busy(self.clone())
    }

    /// When the watchdog must act, and what it will say; `None`: no
    /// deadline now (a request in progress that is not stalled).
    pub(crate) fn deadline(&self, limits: &ConnLimits) -> Option<(Instant, Expired)> {
        let a = self.lock();
        if a.evicted {
            return Some((a.idle_since, Expired::Evicted));
        }
        if a.busy > 0 {
            return a
                .stalled_since
                .map(|t| (t + limits.idle_timeout, Expired::Stalled));
        }
        if let Some(t) = a.head_since {
            return Some((t + limits.header_timeout, Expired::Header));
        }
        if a.served {
            Some((a.idle_since + limits.idle_timeout, Expired::Idle))
        } else {
            // A fresh connection's head is due at once.
            Some((a.idle_since + limits.header_timeout, Expired::Header))
        }
    }

    /// Resolves when [`ConnState::deadline`] may have changed.
    pub(crate) async fn changed(&self) {
        self.wake.notified().await
    }

    /// Eviction rank while idle: seen before unseen, then oldest first.
    fn idle_rank(&self) -> Option<(bool, Instant)> {
        let a = self.lock();
        let unseen = !self.seen.load(Ordering::Relaxed);
        (a.busy == 0 && !a.evicted).then_some((unseen, a.idle_since))
    }

    fn evict(&self) {
        self.lock().evicted = true;
        self.wake.notify_one();
    }

    fn on_read(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut a = self.lock();
        if a.busy == 0 && a.head_since.is_none() {
            a.head_since = Some(Instant::now());
            drop(a);
            self.wake.notify_one();
        }
    }

    fn on_write(&self, pending: bool) {
        let mut a = self.lock();
        match (pending, a.stalled_since) {
            (true, None) => {
                a.stalled_since = Some(Instant::now());
                drop(a);
                self.wake.notify_one();
            }
            (false, Some(_)) => a.stalled_since = None,
            _ => {}
        }
    }
}

/// Held while a request of the connection is being handled.
pub(crate) struct Busy(Arc<ConnState>);

impl Drop for Busy {
    fn drop(&mut self) {
        let mut a = self.0.lock();
        a.busy = a.busy.saturating_sub(1);
        if a.busy == 0 {
            a.idle_since = Instant::now();
            a.served = true;
            drop(a);
            self.0.wake.notify_one();
        }
    }
}

/// The server's open connections.
pub(crate) struct Table {
    limits: ConnLimits,
    inner: Mutex<TableInner>,
}

#[derive(Default)]
struct TableInner {
    next_id: u64,
    conns: HashMap<u64, (IpAddr, Arc<ConnState>)>,
    per_peer: HashMap<IpAddr, usize>,
}

/// A connection the table took in; dropping it takes it out again.
pub(crate) struct Admitted {
    table: Arc<Table>,
    id: u64,
    pub state: Arc<ConnState>,
}

/// Why a new connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// Its address has `max_per_peer` connections, none of them idle.
    PeerFull,
    /// The table has `max_connections`, none of them idle.
    Full,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::PeerFull => "too many connections from this address",
            Refused::Full => "too many connections",
        })
    }
}

impl Table {
    pub(crate) fn new(limits: ConnLimits) -> Arc<Table> {
        Arc::new(Table {
            limits,
            inner: Mutex::new(TableInner::default()),
        })
    }

    pub(crate) fn limits(&self) -> &ConnLimits {
        &self.limits
    }

    fn lock(&self) -> MutexGuard<'_, TableInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes in a connection from `peer`, evicting the longest-idle one of
    /// the same peer (at its cap) or of all (when full) to make room.
    /// Returns how many were evicted, for the log.
    pub(crate) fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<(Admitted, usize), Refused> {
        let peer = peer.to_canonical();
        let mut t = self.lock();
        let mut evicted = 0;
        if t.per_peer.get(&peer).copied().unwrap_or(0) >= self.limits.max_per_peer {
            let victim = t.longest_idle(Some(peer)).ok_or(Refused::PeerFull)?;
            t.evict(victim);
            evicted += 1;
        }
        if t.conns.len() >= self.limits.max_connections {
            let victim = t.longest_idle(None).ok_or(Refused::Full)?;
            t.evict(victim);
            evicted += 1;
        }
        let id = t.next_id;
        t.next_id += 1;
        let state = ConnState::new(Instant::now());
        t.conns.insert(id, (peer, state.clone()));
        *t.per_peer.entry(peer).or_default() += 1;
        drop(t);
        Ok((
            Admitted {
                table: self.clone(),
                id,
                state,
            },
            evicted,
        ))
    }

    /// Connections in the table (evicted ones leave it at once).
    pub(crate) fn len(&self) -> usize {
        self.lock().conns.len()
    }
}

impl TableInner {
    /// The connection idle the longest, of `peer` or of all. One whose
    /// task has not yet read its socket goes last: under a flood of
    /// connects the accept loop can take in many before their tasks run,
    /// and a fresh client that sent its whole request at once must not be
    /// pushed out by those that came after it before it was even read.
    fn longest_idle(&self, peer: Option<IpAddr>) -> Option<u64> {
        self.conns
            .iter()
            .filter(|(_, (p, _))| peer.is_none_or(|want| *p == want))
            .filter_map(|(id, (_, c))| c.idle_rank().map(|r| (r, *id)))
            .min()
            .map(|(_, id)| id)
    }

    /// Tells the connection to close and takes it out of the table now, so
    /// its place is free before its task has run.
    fn evict(&mut self, id: u64) {
        if let Some((_, c)) = self.remove(id) {
            c.evict();
        }
    }

    fn remove(&mut self, id: u64) -> Option<(IpAddr, Arc<ConnState>)> {
        let (peer, c) = self.conns.remove(&id)?;
        if let Some(n) = self.per_peer.get_mut(&peer) {
            *n -= 1;
            if *n == 0 {
                self.per_peer.remove(&peer);
            }
        }
        Some((peer, c))
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.table.lock().remove(self.id);
    }
}

/// The socket as hyper sees it, noting for the connection's state when a
/// head starts to arrive and when a write waits for the client.
pub(crate) struct Watched<S> {
    io: S,
    state: Arc<ConnState>,
}

impl<S> Watched<S> {
    pub(crate) fn new(io: S, state: Arc<ConnState>) -> Watched<S> {
        Watched { io, state }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.state.seen.load(Ordering::Relaxed) {
            this.state.seen.store(true, Ordering::Relaxed);
        }
        let before = buf.filled().len();
        let r = Pin::new(&mut this.io).poll_read(cx, buf);
        if r.is_ready() {
            this.state.on_read(buf.filled().len() - before);
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write(cx, buf);
        this.state.on_write(r.is_pending());
        r
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.state.on_write(r.is_pending());
        r
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.io).poll_flush(cx);
        this.state.on_write(r.is_pending());
        r
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn limits(max: usize, per_peer: usize) -> ConnLimits {
        ConnLimits {
            max_connections: max,
            max_per_peer: per_peer,
            header_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(15),
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_table_evicts_the_longest_idle_and_never_a_busy_one() {
        let table = Table::new(limits(3, 3));
        let (a, _) = table.admit(ip(1)).unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        let (b, _) = table.admit(ip(2)).unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        let (c, _) = table.admit(ip(3)).unwrap();
        // `a` is the oldest but busy: `b` goes.
        let busy_a = a.state.begin_request();
        let (d, evicted) = table.admit(ip(4)).unwrap();
        assert_eq!(evicted, 1);
        assert_eq!(
            b.state.deadline(table.limits()).unwrap().1,
            Expired::Evicted
        );
        assert!(a.state.deadline(table.limits()).is_none());
        assert_eq!(table.len(), 3);
        // All busy: refused.
        let _busy = [c.state.begin_request(), d.state.begin_request()];
        assert_eq!(table.admit(ip(5)).err(), Some(Refused::Full));
        // `a` done: idle since now, so it is the one to go.
        drop(busy_a);
        let (_e, evicted) = table.admit(ip(5)).unwrap();
        assert_eq!(evicted, 1);
        assert_eq!(
            a.state.deadline(table.limits()).unwrap().1,
            Expired::Evicted
        );
        // Dropping an evicted connection's handle leaves the others alone.
        drop(b);
        assert_eq!(table.len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_connection_not_yet_read_goes_only_when_no_other_idle_one_is_left() {
        let table = Table::new(limits(3, 3));
        // `a` is the oldest, but its task has not read its socket yet.
        let (a, _) = table.admit(ip(1)).unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        let (b, _) = table.admit(ip(2)).unwrap();
        let (c, _) = table.admit(ip(3)).unwrap();
        b.state.seen.store(true, Ordering::Relaxed);
        c.state.seen.store(true, Ordering::Relaxed);
        let (d, _) = table.admit(ip(4)).unwrap();
        assert_eq!(
            b.state.deadline(table.limits()).unwrap().1,
            Expired::Evicted
        );
        let (_e, _) = table.admit(ip(5)).unwrap();
        assert_eq!(
            c.state.deadline(table.limits()).unwrap().1,
            Expired::Evicted
        );
        // Only unseen ones are left: the oldest of them goes.
        let (_f, _) = table.admit(ip(6)).unwrap();
        assert_eq!(
            a.state.deadline(table.limits()).unwrap().1,
            Expired::Evicted
        );
        assert_ne!(
            d.state.deadline(table.limits()).unwrap().1,
            Expired::Evicted
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_at_its_cap_loses_its_own_idle_connection() {
        let table = Table::new(limits(10, 2));
        let (a, _) = table.admit(ip(1)).unwrap();
        let (b, _) = table.admit(ip(1)).unwrap();
        let (other, _) = table.admit(ip(2)).unwrap();
        tokio::time::advance(Duration::from_millis(10)).await;
        let (_c, evicted) = table.admit(ip(1)).unwrap();
        assert_eq!(evicted, 1);
        let gone = [&a, &b]
            .iter()
            .filter(|x| x.state.deadline(table.limits()).unwrap().1 == Expired::Evicted)
            .count();
        assert_eq!(gone, 1);
        assert_ne!(
            other.state.deadline(table.limits()).unwrap().1,
            Expired::Evicted
        );
        // Both of ip(1)'s live connections busy: the next is refused, and
        // another address still gets in.
        let (d, _) = table.admit(ip(1)).unwrap();
        let _busy = [_c.state.begin_request(), d.state.begin_request()];
        assert_eq!(table.admit(ip(1)).err(), Some(Refused::PeerFull));
        assert!(table.admit(ip(3)).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn ipv4_mapped_ipv6_counts_as_the_same_peer() {
        let table = Table::new(limits(10, 1));
        let (_a, _) = table.admit(ip(1)).unwrap();
        let mapped = IpAddr::V6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped());
        let (_b, evicted) = table.admit(mapped).unwrap();
        assert_eq!(evicted, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn deadlines_follow_what_the_connection_does() {
        let l = limits(10, 10);
        let table = Table::new(l);
        let (a, _) = table.admit(ip(1)).unwrap();
        let t0 = Instant::now();
        // Fresh: the head is due within the header timeout.
        assert_eq!(
            a.state.deadline(&l),
            Some((t0 + l.header_timeout, Expired::Header))
        );
        let busy = a.state.begin_request();
        assert_eq!(a.state.deadline(&l), None);
        // A write waiting on the client starts the stall clock; progress
        // stops it.
        tokio::time::advance(Duration::from_secs(1)).await;
        a.state.on_write(true);
        let t1 = Instant::now();
        assert_eq!(
            a.state.deadline(&l),
            Some((t1 + l.idle_timeout, Expired::Stalled))
        );
        a.state.on_write(false);
        assert_eq!(a.state.deadline(&l), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        drop(busy);
        let t2 = Instant::now();
        // Between requests: the keep-alive timeout.
        assert_eq!(
            a.state.deadline(&l),
            Some((t2 + l.idle_timeout, Expired::Idle))
        );
        // The next head's first byte: the header timeout from then, and
        // more bytes do not move it.
        tokio::time::advance(Duration::from_secs(3)).await;
        a.state.on_read(1);
        let t3 = Instant::now();
        tokio::time::advance(Duration::from_secs(1)).await;
        a.state.on_read(1);
        assert_eq!(
            a.state.deadline(&l),
            Some((t3 + l.header_timeout, Expired::Header))
        );
    }
}
