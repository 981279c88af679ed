//! Behaviour of the bus through its public API. Waits use channels with a
//! generous upper bound (`WAIT`) that only matters when a test fails; no
//! test sleeps to let something happen.
#![forbid(unsafe_code)]

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use twig_messaging::{Bus, BusConfig, BusError, Message, Subscriber, Uplink};

const WAIT: Duration = Duration::from_secs(5);

fn bus() -> Arc<Bus> {
    Arc::new(Bus::new(BusConfig::default()).unwrap())
}

fn bus_with(config: BusConfig) -> Arc<Bus> {
    Arc::new(Bus::new(config).unwrap())
}

/// Forwards every message to a channel.
struct Collect {
    name: String,
    tx: Mutex<Sender<Message>>,
}

fn collector(name: &str) -> (Arc<Collect>, Receiver<Message>) {
    let (tx, rx) = mpsc::channel();
    let c = Arc::new(Collect {
        name: name.into(),
        tx: Mutex::new(tx),
    });
    (c, rx)
}

impl Subscriber for Collect {
    fn name(&self) -> &str {
        &self.name
    }
    fn deliver(&self, msg: Message) -> Result<(), String> {
        let _ = self.tx.lock().unwrap().send(msg);
        Ok(())
    }
}

/// Blocks in `deliver` until released: says it has entered, waits for a
/// token (or the release channel to close), then forwards the message.
struct Gate {
    entered: Mutex<Sender<()>>,
    release: Mutex<Receiver<()>>,
    seen: Mutex<Sender<Message>>,
}

struct GateHandles {
    entered: Receiver<()>,
    release: Sender<()>,
    seen: Receiver<Message>,
}

fn gate() -> (Arc<Gate>, GateHandles) {
    let (entered_tx, entered) = mpsc::channel();
    let (release, release_rx) = mpsc::channel();
    let (seen_tx, seen) = mpsc::channel();
    let g = Arc::new(Gate {
        entered: Mutex::new(entered_tx),
        release: Mutex::new(release_rx),
        seen: Mutex::new(seen_tx),
    });
    (
        g,
        GateHandles {
            entered,
            release,
            seen,
        },
    )
}

impl Subscriber for Gate {
    fn name(&self) -> &str {
        "gate"
    }
    fn deliver(&self, msg: Message) -> Result<(), String> {
        let _ = self.entered.lock().unwrap().send(());
        let _ = self.release.lock().unwrap().recv();
        let _ = self.seen.lock().unwrap().send(msg);
        Ok(())
    }
}

/// Replies to every request with `<prefix>:<body>`.
struct Responder {
    bus: Arc<Bus>,
    prefix: &'static str,
}

impl Subscriber for Responder {
    fn name(&self) -> &str {
        self.prefix
    }
    fn deliver(&self, msg: Message) -> Result<(), String> {
        let reply_to = msg.reply_to.ok_or("no reply_to")?;
        let mut body = format!("{}:", self.prefix).into_bytes();
        body.extend(msg.body);
        self.bus
            .publish(Message::new(reply_to, body))
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

fn recv(rx: &Receiver<Message>) -> Message {
    rx.recv_timeout(WAIT).expect("a message within WAIT")
}

fn subjects(rx: &Receiver<Message>, n: usize) -> Vec<String> {
    (0..n).map(|_| recv(rx).subject).collect()
}

#[test]
fn wildcard_delivery() {
    let bus = bus();
    let (one, one_rx) = collector("one-token");
    let (rest, rest_rx) = collector("rest");
    let (hum, hum_rx) = collector("humidity");
    bus.subscribe("sensors.*.temp", None, one).unwrap();
    bus.subscribe("sensors.>", None, rest).unwrap();
    bus.subscribe("sensors.kitchen.humidity", None, hum)
        .unwrap();

    let r = bus
        .publish(Message::new("sensors.kitchen.temp", b"21.5".to_vec()))
        .unwrap();
    assert_eq!(r.delivered_to, 2);
    assert_eq!(r.dropped, 0);
    assert!(!r.exported);
    let r = bus
        .publish(Message::new("sensors.kitchen.humidity", b"40".to_vec()))
        .unwrap();
    assert_eq!(r.delivered_to, 2);
    let r = bus
        .publish(Message::new("sensors.garage.door.temp", vec![]))
        .unwrap();
    assert_eq!(r.delivered_to, 1, "`*` is one token, `>` is any number");
    assert_eq!(
        bus.publish(Message::new("sensors", vec![]))
            .unwrap()
            .delivered_to,
        0
    );
    assert_eq!(
        bus.publish(Message::new("other.kitchen.temp", vec![]))
            .unwrap()
            .delivered_to,
        0
    );

    let m = recv(&one_rx);
    assert_eq!(
        (m.subject.as_str(), m.body.as_slice()),
        ("sensors.kitchen.temp", &b"21.5"[..])
    );
    assert_eq!(
        subjects(&rest_rx, 3),
        [
            "sensors.kitchen.temp",
            "sensors.kitchen.humidity",
            "sensors.garage.door.temp"
        ]
    );
    assert_eq!(subjects(&hum_rx, 1), ["sensors.kitchen.humidity"]);
    bus.close(WAIT);
    assert!(
        one_rx.try_recv().is_err(),
        "nothing else for `sensors.*.temp`"
    );
}

#[test]
fn queue_group_round_robin() {
    let bus = bus();
    let mut members = Vec::new();
    for name in ["w0", "w1", "w2"] {
        let (c, rx) = collector(name);
        bus.subscribe("jobs.*", Some("workers".into()), c).unwrap();
        members.push(rx);
    }
    let (all, all_rx) = collector("audit");
    bus.subscribe("jobs.*", None, all).unwrap();
    // Same queue name, different pattern: a different group, NATS-style.
    let (other, other_rx) = collector("other-group");
    bus.subscribe("jobs.>", Some("workers".into()), other)
        .unwrap();

    for i in 0..9 {
        let r = bus
            .publish(Message::new(format!("jobs.j{i}"), vec![]))
            .unwrap();
        assert_eq!(r.delivered_to, 3, "audit, one of w0..w2, other-group");
    }
    for (k, rx) in members.iter().enumerate() {
        let got = subjects(rx, 3);
        let want: Vec<String> = (0..3).map(|n| format!("jobs.j{}", k + 3 * n)).collect();
        assert_eq!(got, want, "member w{k}");
    }
    assert_eq!(subjects(&all_rx, 9).len(), 9);
    assert_eq!(subjects(&other_rx, 9).len(), 9);
    bus.close(WAIT);
    for rx in &members {
        assert!(rx.try_recv().is_err());
    }
}

#[test]
fn queue_group_survives_members_leaving() {
    let bus = bus();
    let (a, a_rx) = collector("a");
    let (b, b_rx) = collector("b");
    let ida = bus.subscribe("q", Some("g".into()), a).unwrap();
    bus.subscribe("q", Some("g".into()), b).unwrap();
    bus.publish(Message::new("q", b"1".to_vec())).unwrap();
    // Unsubscribing discards what is still queued, so let `a` take it first.
    assert_eq!(recv(&a_rx).body, b"1");
    assert!(bus.unsubscribe(ida));
    assert!(!bus.unsubscribe(ida), "already gone");
    for _ in 0..3 {
        assert_eq!(
            bus.publish(Message::new("q", vec![])).unwrap().delivered_to,
            1
        );
    }
    assert_eq!(subjects(&b_rx, 3).len(), 3);
    bus.close(WAIT);
}

#[test]
fn request_reply() {
    let bus = bus();
    bus.subscribe(
        "svc.echo",
        None,
        Arc::new(Responder {
            bus: bus.clone(),
            prefix: "echo",
        }),
    )
    .unwrap();
    for i in 0..20 {
        let reply = bus
            .request("svc.echo", format!("ping{i}").into_bytes(), WAIT)
            .unwrap();
        assert_eq!(reply.body, format!("echo:ping{i}").into_bytes());
        assert!(reply.subject.starts_with("_INBOX."), "{}", reply.subject);
    }
    // Inboxes are cleaned up: only the responder is subscribed.
    let stats = bus.stats();
    assert_eq!(stats.subscriptions.len(), 1);
    assert_eq!(stats.published, 40);
    bus.close(WAIT);
}

#[test]
fn request_to_a_queue_group_gets_one_answer() {
    let bus = bus();
    for prefix in ["r1", "r2"] {
        let r = Arc::new(Responder {
            bus: bus.clone(),
            prefix,
        });
        bus.subscribe("svc", Some("g".into()), r).unwrap();
    }
    let a = bus.request("svc", b"x".to_vec(), WAIT).unwrap();
    let b = bus.request("svc", b"x".to_vec(), WAIT).unwrap();
    let mut got = [a.body, b.body];
    got.sort();
    assert_eq!(got, [b"r1:x".to_vec(), b"r2:x".to_vec()]);
    bus.close(WAIT);
}

#[test]
fn no_responders_is_immediate() {
    let bus = bus();
    let (c, _rx) = collector("elsewhere");
    bus.subscribe("svc.a", None, c).unwrap();
    let start = Instant::now();
    let e = bus
        .request("svc.b", vec![], Duration::from_secs(30))
        .unwrap_err();
    assert!(
        matches!(e, BusError::NoResponders { ref subject } if subject == "svc.b"),
        "{e}"
    );
    assert_eq!(e.to_string(), r#"no responders for request to "svc.b""#);
    assert!(start.elapsed() < Duration::from_secs(1));
    bus.close(WAIT);
}

#[test]
fn request_timeout_and_cap() {
    let bus = bus_with(BusConfig {
        max_request_timeout: Duration::from_millis(40),
        ..BusConfig::default()
    });
    let (mute, mute_rx) = collector("mute");
    bus.subscribe("svc.mute", None, mute).unwrap();

    let start = Instant::now();
    let e = bus
        .request("svc.mute", b"q".to_vec(), Duration::from_millis(20))
        .unwrap_err();
    assert!(matches!(e, BusError::Timeout { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        r#"request to "svc.mute" timed out after 20 ms"#
    );
    assert!(start.elapsed() >= Duration::from_millis(20));

    // Asking for an hour waits only as long as the cap.
    let start = Instant::now();
    let e = bus
        .request("svc.mute", vec![], Duration::from_secs(3600))
        .unwrap_err();
    assert!(matches!(e, BusError::Timeout { after, .. } if after == Duration::from_millis(40)));
    assert!(start.elapsed() < Duration::from_secs(2));

    // The responder did see the request, with a reply subject.
    let m = recv(&mute_rx);
    assert!(m.reply_to.unwrap().starts_with("_INBOX."));
    bus.close(WAIT);
}

#[test]
fn late_and_duplicate_replies_are_harmless() {
    let bus = bus();
    // Answers twice.
    struct Twice(Arc<Bus>);
    impl Subscriber for Twice {
        fn name(&self) -> &str {
            "twice"
        }
        fn deliver(&self, msg: Message) -> Result<(), String> {
            let to = msg.reply_to.unwrap();
            self.0
                .publish(Message::new(to.clone(), b"1".to_vec()))
                .unwrap();
            self.0.publish(Message::new(to, b"2".to_vec())).unwrap();
            Ok(())
        }
    }
    bus.subscribe("svc", None, Arc::new(Twice(bus.clone())))
        .unwrap();
    assert_eq!(bus.request("svc", vec![], WAIT).unwrap().body, b"1");
    assert_eq!(bus.request("svc", vec![], WAIT).unwrap().body, b"1");
    assert_eq!(bus.stats().dropped, 0);
    bus.close(WAIT);
}

#[test]
fn oversize_and_invalid_are_refused() {
    let bus = bus_with(BusConfig {
        max_payload: 8,
        ..BusConfig::default()
    });
    let (c, rx) = collector("c");
    bus.subscribe("a.>", None, c).unwrap();
    assert!(bus.publish(Message::new("a.b", vec![0; 8])).is_ok());
    let e = bus.publish(Message::new("a.b", vec![0; 9])).unwrap_err();
    assert!(
        matches!(e, BusError::PayloadTooLarge { size: 9, max: 8 }),
        "{e}"
    );
    assert_eq!(
        e.to_string(),
        "message body is 9 bytes, over the maximum payload of 8"
    );
    assert!(matches!(
        bus.request("a.b", vec![0; 9], WAIT),
        Err(BusError::PayloadTooLarge { .. })
    ));

    let e = bus.publish(Message::new("a..b", vec![])).unwrap_err();
    assert_eq!(
        e.to_string(),
        r#"invalid subject "a..b": empty token at position 2"#
    );
    assert!(bus.publish(Message::new("a.*", vec![])).is_err());
    assert!(bus
        .publish(Message::new("a.b", vec![]).with_reply_to("r.>"))
        .is_err());
    assert!(bus.request("a.>", vec![], WAIT).is_err());
    assert!(bus.subscribe("a.>.b", None, collector("x").0).is_err());
    assert!(bus.subscribe("", None, collector("x").0).is_err());
    assert!(bus
        .subscribe("a", Some("bad group".into()), collector("x").0)
        .is_err());
    assert!(Bus::new(BusConfig {
        export: vec!["a..b".into()],
        ..BusConfig::default()
    })
    .is_err());
    assert!(Bus::new(BusConfig {
        queue_capacity: 0,
        ..BusConfig::default()
    })
    .is_err());

    // Only the one valid message got through.
    assert_eq!(recv(&rx).body.len(), 8);
    bus.close(WAIT);
    assert!(rx.try_recv().is_err());
    assert_eq!(bus.stats().published, 1);
}

/// Counts down by publishing to its own subject from inside `deliver`.
struct Countdown {
    bus: Arc<Bus>,
    done: Mutex<Sender<()>>,
}

impl Subscriber for Countdown {
    fn name(&self) -> &str {
        "countdown"
    }
    fn deliver(&self, msg: Message) -> Result<(), String> {
        let n: u32 = std::str::from_utf8(&msg.body).unwrap().parse().unwrap();
        if n == 0 {
            self.done.lock().unwrap().send(()).unwrap();
        } else {
            self.bus
                .publish(Message::new("countdown", (n - 1).to_string().into_bytes()))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

#[test]
fn subscriber_publishing_to_itself_does_not_deadlock() {
    let bus = bus_with(BusConfig {
        queue_capacity: 1,
        ..BusConfig::default()
    });
    let (done, done_rx) = mpsc::channel();
    let c = Arc::new(Countdown {
        bus: bus.clone(),
        done: Mutex::new(done),
    });
    bus.subscribe("countdown", None, c).unwrap();
    bus.publish(Message::new("countdown", b"200".to_vec()))
        .unwrap();
    done_rx.recv_timeout(WAIT).expect("countdown finished");
    bus.close(WAIT);
    let s = bus.stats();
    assert_eq!((s.delivered, s.dropped), (201, 0));
}

#[test]
fn flooding_its_own_full_queue_drops_instead_of_blocking() {
    let bus = bus_with(BusConfig {
        queue_capacity: 2,
        ..BusConfig::default()
    });
    // On its first message, publishes 10 to itself with a queue of 2.
    struct Flood {
        bus: Arc<Bus>,
        reports: Mutex<Sender<usize>>,
    }
    impl Subscriber for Flood {
        fn name(&self) -> &str {
            "flood"
        }
        fn deliver(&self, msg: Message) -> Result<(), String> {
            if msg.body == b"go" {
                let dropped: usize = (0..10)
                    .map(|_| {
                        self.bus
                            .publish(Message::new("flood", vec![]))
                            .unwrap()
                            .dropped
                    })
                    .sum();
                self.reports.lock().unwrap().send(dropped).unwrap();
            }
            Ok(())
        }
    }
    let (tx, rx) = mpsc::channel();
    bus.subscribe(
        "flood",
        None,
        Arc::new(Flood {
            bus: bus.clone(),
            reports: Mutex::new(tx),
        }),
    )
    .unwrap();
    bus.publish(Message::new("flood", b"go".to_vec())).unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), 8, "2 queued, 8 dropped");
    bus.close(WAIT);
    let s = bus.stats();
    assert_eq!((s.delivered, s.dropped), (3, 8));
}

#[test]
fn unsubscribe_from_inside_deliver() {
    let bus = bus();
    struct Once {
        bus: Arc<Bus>,
        id: OnceLock<twig_messaging::SubscriptionId>,
        seen: Mutex<Sender<Message>>,
    }
    impl Subscriber for Once {
        fn name(&self) -> &str {
            "once"
        }
        fn deliver(&self, msg: Message) -> Result<(), String> {
            assert!(self.bus.unsubscribe(*self.id.get().unwrap()));
            self.seen.lock().unwrap().send(msg).unwrap();
            Ok(())
        }
    }
    let (tx, rx) = mpsc::channel();
    let once = Arc::new(Once {
        bus: bus.clone(),
        id: OnceLock::new(),
        seen: Mutex::new(tx),
    });
    let id = bus.subscribe("x", None, once.clone()).unwrap();
    once.id.set(id).unwrap();
    bus.publish(Message::new("x", b"1".to_vec())).unwrap();
    assert_eq!(recv(&rx).body, b"1");
    assert_eq!(
        bus.publish(Message::new("x", vec![])).unwrap().delivered_to,
        0
    );
    let report = bus.close(WAIT);
    assert!(report.still_running.is_empty());
    assert!(rx.try_recv().is_err());
}

#[test]
fn slow_subscriber_does_not_block_a_fast_one() {
    let bus = bus();
    let (slow, g) = gate();
    let (fast, fast_rx) = collector("fast");
    bus.subscribe("t", None, slow).unwrap();
    bus.subscribe("t", None, fast).unwrap();
    for i in 0..10 {
        bus.publish(Message::new("t", vec![i])).unwrap();
    }
    g.entered.recv_timeout(WAIT).unwrap();
    // The gate holds message 0; the fast one gets all ten meanwhile.
    let bodies: Vec<u8> = (0..10).map(|_| recv(&fast_rx).body[0]).collect();
    assert_eq!(bodies, (0..10).collect::<Vec<_>>());
    assert_eq!(bus.stats().subscriptions[0].pending, 10);
    drop(g.release); // lets the gate through every message
    let bodies: Vec<u8> = (0..10).map(|_| recv(&g.seen).body[0]).collect();
    assert_eq!(bodies, (0..10).collect::<Vec<_>>(), "in order");
    bus.close(WAIT);
}

#[test]
fn full_queue_drops_and_counts() {
    let bus = bus_with(BusConfig {
        queue_capacity: 2,
        ..BusConfig::default()
    });
    let (slow, g) = gate();
    let (fast, fast_rx) = collector("fast");
    let slow_id = bus.subscribe("t", None, slow).unwrap();
    bus.subscribe("t", None, fast).unwrap();

    bus.publish(Message::new("t", vec![0])).unwrap();
    g.entered.recv_timeout(WAIT).unwrap(); // message 0 is in deliver
    assert_eq!(recv(&fast_rx).body, [0]);
    // One at a time, waiting for the fast one each time, so only the
    // gate's queue can fill up.
    let reports: Vec<_> = (1..=5)
        .map(|i| {
            let r = bus.publish(Message::new("t", vec![i])).unwrap();
            assert_eq!(recv(&fast_rx).body, [i]);
            r
        })
        .collect();
    // 1 and 2 fill the gate's queue; 3, 4, 5 are dropped for it only.
    let dropped: Vec<usize> = reports.iter().map(|r| r.dropped).collect();
    assert_eq!(dropped, [0, 0, 1, 1, 1]);
    assert!(reports.iter().all(|r| r.delivered_to >= 1));

    let s = bus.stats();
    assert_eq!(s.dropped, 3);
    let slow_stats = s.subscriptions.iter().find(|x| x.id == slow_id).unwrap();
    assert_eq!(slow_stats.subscriber, "gate");
    assert_eq!((slow_stats.enqueued, slow_stats.dropped), (3, 3));
    let fast_stats = s.subscriptions.iter().find(|x| x.id != slow_id).unwrap();
    assert_eq!((fast_stats.enqueued, fast_stats.dropped), (6, 0));

    drop(g.release);
    let got: Vec<u8> = (0..3).map(|_| recv(&g.seen).body[0]).collect();
    assert_eq!(got, [0, 1, 2]);
    bus.close(WAIT);
    let s = bus.stats();
    assert_eq!(s.delivered, 9);
}

#[test]
fn full_queue_group_member_is_skipped() {
    let bus = bus_with(BusConfig {
        queue_capacity: 1,
        ..BusConfig::default()
    });
    let (slow, g) = gate();
    let (fast, fast_rx) = collector("fast");
    bus.subscribe("w", Some("g".into()), slow).unwrap();
    bus.subscribe("w", Some("g".into()), fast).unwrap();
    // Members in subscription order: gate, fast.
    bus.publish(Message::new("w", vec![0])).unwrap(); // gate, now blocked
    g.entered.recv_timeout(WAIT).unwrap();
    bus.publish(Message::new("w", vec![1])).unwrap(); // fast
    assert_eq!(recv(&fast_rx).body, [1]);
    bus.publish(Message::new("w", vec![2])).unwrap(); // gate's queue, now full
    bus.publish(Message::new("w", vec![3])).unwrap(); // fast
    assert_eq!(recv(&fast_rx).body, [3]);
    // The gate's turn, but its queue is full: fast takes them instead.
    for i in 4..7 {
        let r = bus.publish(Message::new("w", vec![i])).unwrap();
        assert_eq!((r.delivered_to, r.dropped), (1, 0));
        assert_eq!(recv(&fast_rx).body, [i]);
    }
    drop(g.release);
    assert_eq!(recv(&g.seen).body, [0]);
    assert_eq!(recv(&g.seen).body, [2]);
    bus.close(WAIT);
}

#[test]
fn request_to_backed_up_responders_fails_fast() {
    let bus = bus_with(BusConfig {
        queue_capacity: 1,
        ..BusConfig::default()
    });
    let (slow, g) = gate();
    bus.subscribe("svc", None, slow).unwrap();
    bus.publish(Message::new("svc", vec![])).unwrap();
    g.entered.recv_timeout(WAIT).unwrap();
    bus.publish(Message::new("svc", vec![])).unwrap(); // fills the queue
    let start = Instant::now();
    let e = bus
        .request("svc", vec![], Duration::from_secs(30))
        .unwrap_err();
    assert!(matches!(e, BusError::RespondersBusy { .. }), "{e}");
    assert!(start.elapsed() < Duration::from_secs(1));
    drop(g.release);
    bus.close(WAIT);
}

#[test]
fn close_drains_queues() {
    let bus = bus_with(BusConfig {
        queue_capacity: 100,
        ..BusConfig::default()
    });
    let (slow, g) = gate();
    let (c, rx) = collector("c");
    bus.subscribe("d", None, slow).unwrap();
    bus.subscribe("d", None, c).unwrap();
    for i in 0..50 {
        bus.publish(Message::new("d", vec![i])).unwrap();
    }
    g.entered.recv_timeout(WAIT).unwrap();
    // Release the gate only after close has started waiting.
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(10));
        drop(g.release);
        g.seen
    });
    let report = bus.close(WAIT);
    assert_eq!(report.stopped, 2);
    assert!(report.still_running.is_empty());
    let seen = releaser.join().unwrap();
    assert_eq!(seen.try_iter().count(), 50, "the gate drained everything");
    assert_eq!(rx.try_iter().count(), 50);
    assert_eq!(bus.stats().delivered, 100);

    assert!(bus.is_closed());
    assert!(matches!(
        bus.publish(Message::new("d", vec![])),
        Err(BusError::Closed)
    ));
    assert!(matches!(
        bus.request("d", vec![], WAIT),
        Err(BusError::Closed)
    ));
    assert!(matches!(
        bus.subscribe("d", None, collector("late").0),
        Err(BusError::Closed)
    ));
    assert_eq!(
        bus.close(WAIT),
        Default::default(),
        "closing twice is harmless"
    );
}

#[test]
fn close_gives_up_on_a_stuck_subscriber() {
    let bus = bus();
    let (slow, g) = gate();
    bus.subscribe("s", None, slow).unwrap();
    for _ in 0..3 {
        bus.publish(Message::new("s", vec![])).unwrap();
    }
    g.entered.recv_timeout(WAIT).unwrap();
    let start = Instant::now();
    let report = bus.close(Duration::from_millis(30));
    assert!(start.elapsed() >= Duration::from_millis(30));
    assert_eq!(report.stopped, 0);
    assert_eq!(report.still_running, ["gate"]);
    // Once unstuck it finishes its message and discards the rest.
    drop(g.release);
    assert!(g.seen.recv_timeout(WAIT).is_ok());
    assert!(g.seen.recv_timeout(WAIT).is_err(), "the rest was discarded");
}

#[test]
fn close_ends_a_waiting_request() {
    let bus = bus();
    let (mute, _rx) = collector("mute");
    bus.subscribe("svc", None, mute).unwrap();
    let b = bus.clone();
    let waiter = std::thread::spawn(move || b.request("svc", vec![], Duration::from_secs(30)));
    // Wait until the request is in flight: its inbox shows in the counters.
    let start = Instant::now();
    while bus.stats().published == 0 {
        assert!(start.elapsed() < WAIT);
        std::thread::yield_now();
    }
    bus.close(WAIT);
    assert!(matches!(waiter.join().unwrap(), Err(BusError::Closed)));
}

#[test]
fn close_from_inside_deliver() {
    let bus = bus();
    struct Closer(Arc<Bus>, Mutex<Sender<usize>>);
    impl Subscriber for Closer {
        fn name(&self) -> &str {
            "closer"
        }
        fn deliver(&self, _: Message) -> Result<(), String> {
            let r = self.0.close(WAIT);
            self.1.lock().unwrap().send(r.stopped).unwrap();
            Ok(())
        }
    }
    let (tx, rx) = mpsc::channel();
    bus.subscribe("stop", None, Arc::new(Closer(bus.clone(), Mutex::new(tx))))
        .unwrap();
    let start = Instant::now();
    bus.publish(Message::new("stop", vec![])).unwrap();
    assert_eq!(rx.recv_timeout(WAIT).unwrap(), 0, "did not wait for itself");
    assert!(start.elapsed() < Duration::from_secs(2));
}

#[test]
fn failing_and_panicking_subscribers_are_counted() {
    let bus = bus();
    struct Moody(Mutex<Sender<()>>);
    impl Subscriber for Moody {
        fn name(&self) -> &str {
            "moody"
        }
        fn deliver(&self, msg: Message) -> Result<(), String> {
            let _ = self.0.lock().unwrap().send(());
            match msg.body.as_slice() {
                b"err" => Err("bad input".into()),
                b"panic" => panic!("boom"),
                _ => Ok(()),
            }
        }
    }
    let (tx, rx) = mpsc::channel();
    bus.subscribe("m", None, Arc::new(Moody(Mutex::new(tx))))
        .unwrap();
    for body in ["ok", "err", "panic", "ok"] {
        bus.publish(Message::new("m", body.as_bytes().to_vec()))
            .unwrap();
    }
    for _ in 0..4 {
        rx.recv_timeout(WAIT).unwrap();
    }
    bus.close(WAIT);
    let s = bus.stats();
    assert_eq!(
        (s.delivered, s.failed),
        (2, 2),
        "the thread survived the panic"
    );
}

#[test]
fn request_from_inside_deliver() {
    let bus = bus();
    bus.subscribe(
        "svc.inner",
        None,
        Arc::new(Responder {
            bus: bus.clone(),
            prefix: "inner",
        }),
    )
    .unwrap();
    // Answers by asking svc.inner first.
    struct Outer(Arc<Bus>);
    impl Subscriber for Outer {
        fn name(&self) -> &str {
            "outer"
        }
        fn deliver(&self, msg: Message) -> Result<(), String> {
            let inner = self
                .0
                .request("svc.inner", msg.body, WAIT)
                .map_err(|e| e.to_string())?;
            let mut body = b"outer:".to_vec();
            body.extend(inner.body);
            self.0
                .publish(Message::new(msg.reply_to.unwrap(), body))
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    }
    bus.subscribe("svc.outer", None, Arc::new(Outer(bus.clone())))
        .unwrap();
    let reply = bus.request("svc.outer", b"x".to_vec(), WAIT).unwrap();
    assert_eq!(reply.body, b"outer:inner:x");
    bus.close(WAIT);
}

/// A pretend lattice: records exported messages and answers requests on
/// `remote.>` (and fails `remote.fail`).
struct FakeLattice {
    seen: Mutex<Vec<Message>>,
}

impl Uplink for FakeLattice {
    fn publish(&self, msg: &Message) -> Result<bool, String> {
        self.seen.lock().unwrap().push(msg.clone());
        if msg.subject.starts_with("remote.fail") {
            return Err("lattice down".into());
        }
        Ok(true)
    }

    fn request(
        &self,
        subject: &str,
        _body: &[u8],
        _timeout: Duration,
    ) -> Option<Result<Message, String>> {
        self.seen
            .lock()
            .unwrap()
            .push(Message::new(subject, vec![]));
        Some(if subject == "remote.fail" {
            Err("lattice down".into())
        } else {
            Ok(Message::new("remote.reply", b"from lattice".to_vec()))
        })
    }
}

#[test]
fn uplink_gets_exported_subjects_only() {
    let bus = bus_with(BusConfig {
        export: vec!["sensors.>".into(), "remote.>".into()],
        ..BusConfig::default()
    });
    let lattice = Arc::new(FakeLattice {
        seen: Mutex::new(Vec::new()),
    });
    bus.set_uplink(lattice.clone());
    let (local, local_rx) = collector("local");
    let watch = bus.subscribe("sensors.>", None, local).unwrap();

    let r = bus
        .publish(Message::new("sensors.t", b"1".to_vec()))
        .unwrap();
    assert!(r.exported);
    assert_eq!(r.delivered_to, 1);
    let r = bus.publish(Message::new("local.only", vec![])).unwrap();
    assert!(!r.exported);
    // From the lattice: delivered locally, never echoed back.
    let r = bus
        .publish_from_uplink(Message::new("sensors.remote", vec![]))
        .unwrap();
    assert!(!r.exported);

    // Nothing on the device answers, the subject is exported: the lattice
    // answers; its error is the request's.
    let reply = bus.request("remote.svc", b"q".to_vec(), WAIT).unwrap();
    assert_eq!(reply.body, b"from lattice");
    let e = bus.request("remote.fail", vec![], WAIT).unwrap_err();
    assert_eq!(e.to_string(), "lattice down");
    // Not exported: no responders, the uplink is not asked.
    let e = bus.request("local.svc", vec![], WAIT).unwrap_err();
    assert!(matches!(e, BusError::NoResponders { .. }), "{e}");

    // Refused upstream and taken by nothing here: the publish fails.
    let e = bus
        .publish(Message::new("remote.fail", vec![]))
        .unwrap_err();
    assert_eq!(e.to_string(), "lattice down");
    // Refused upstream but delivered on the device: it succeeds.
    bus.subscribe("remote.fail.*", None, collector("late").0)
        .unwrap();
    assert!(bus.publish(Message::new("remote.fail.x", vec![])).is_ok());

    let seen: Vec<String> = lattice
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.subject.clone())
        .collect();
    assert_eq!(
        seen,
        [
            "sensors.t",
            "remote.svc",
            "remote.fail",
            "remote.fail",
            "remote.fail.x"
        ]
    );
    let s = bus.stats();
    assert_eq!((s.exported, s.uplink_errors), (3, 3));
    assert_eq!(subjects(&local_rx, 2), ["sensors.t", "sensors.remote"]);

    // A message for one subscription only, as the lattice side hands it.
    assert!(bus
        .deliver_to(watch, Message::new("sensors.picked", vec![]))
        .unwrap());
    assert_eq!(subjects(&local_rx, 1), ["sensors.picked"]);
    assert!(bus.unsubscribe(watch));
    assert!(!bus
        .deliver_to(watch, Message::new("sensors.gone", vec![]))
        .unwrap());

    bus.clear_uplink();
    assert!(
        !bus.publish(Message::new("sensors.t", vec![]))
            .unwrap()
            .exported
    );
    bus.close(WAIT);
}

/// With every subject exported (as the host's bridge has it), a device
/// request answered on the device goes nowhere near the uplink: neither
/// the request nor the reply to the bus's own inbox.
#[test]
fn a_request_answered_on_the_device_stays_on_it() {
    let bus = bus_with(BusConfig {
        export: vec![">".into()],
        ..BusConfig::default()
    });
    let lattice = Arc::new(FakeLattice {
        seen: Mutex::new(Vec::new()),
    });
    bus.set_uplink(lattice.clone());
    let responder = Arc::new(Responder {
        bus: bus.clone(),
        prefix: "here",
    });
    bus.subscribe("svc.local", None, responder).unwrap();
    let reply = bus.request("svc.local", b"q".to_vec(), WAIT).unwrap();
    assert_eq!(reply.body, b"here:q");
    // A reply to someone else's inbox (a lattice requester's) does go.
    bus.publish(Message::new("_INBOX.elsewhere.1", b"a".to_vec()))
        .unwrap();
    let seen: Vec<String> = lattice
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|m| m.subject.clone())
        .collect();
    assert_eq!(seen, ["_INBOX.elsewhere.1"]);
    bus.close(WAIT);
}

#[test]
fn stats_per_subscription() {
    let bus = bus();
    let (a, a_rx) = collector("alpha");
    let id = bus.subscribe("s.*", Some("g".into()), a).unwrap();
    let st = &bus.stats().subscriptions[0];
    assert_eq!(st.id, id);
    assert_eq!(st.subscriber, "alpha");
    assert_eq!(st.pattern, "s.*");
    assert_eq!(st.queue_group.as_deref(), Some("g"));
    for _ in 0..3 {
        bus.publish(Message::new("s.x", vec![])).unwrap();
    }
    subjects(&a_rx, 3);
    assert_eq!(bus.stats().subscriptions[0].enqueued, 3);
    bus.close(WAIT);
    let s = bus.stats();
    assert_eq!(
        (s.published, s.delivered, s.failed, s.dropped),
        (3, 3, 0, 0)
    );
    assert!(s.subscriptions.is_empty(), "closed: no live subscriptions");
}
