//! What leaves the device: the board's `[outbox]` classes, the on-disk
//! outbox they open (`DATA/outbox`, the `twig-outbox` crate), and the
//! bridge that puts messages into it.
//!
//! Data flow:
//!
//! ```text
//! component --publish--> Bus --subject matches a class--> Upstream::publish
//!                         |                                   | append (durable)
//!                         v                                   v
//!              local subscribers                   DATA/outbox/{class}/*.seg
//!                                                             |
//!              lattice::drain (when the uplink is up) <-------+ next_batch / ack
//!                 JetStream publish with Nats-Msg-Id, wait for the ack
//! ```
//!
//! A message a component publishes is written to the outbox before
//! `publish` returns, whether or not the uplink is up, so a crash or power
//! cut after that loses nothing; the drain in `lattice::drain` sends it
//! when it can and acknowledges it in the outbox only once the upstream
//! has it. The host's own CloudEvents take the same path (classes
//! [`HOST_EVENTS`] and [`HOST_HEARTBEATS`]), ahead of component messages.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use twig_messaging::Pattern;
use twig_outbox::{ClassConfig, ClassId, DropPolicy, Outbox, OutboxConfig, SyncPolicy};

/// The built-in class of the host's events (`component_scaled`,
/// `linkdef_set`, …): sent before anything else but heartbeats, kept an
/// hour.
pub const HOST_EVENTS: &str = "host-events";
/// The built-in class of `host_heartbeat`: first of all, and only as long
/// as one heartbeat interval (a stale heartbeat says nothing).
pub const HOST_HEARTBEATS: &str = "host-heartbeats";

/// Checks a class name: `[a-z0-9_-]`, 1 to 32 characters, and not one of
/// the built-in classes.
pub fn check_class_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 32 {
        return Err(format!("`{name}` must be 1 to 32 characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-' || *c == '_'))
    {
        return Err(format!(
            "`{name}` may hold only a-z, 0-9, `-` and `_` (found {c:?})"
        ));
    }
    if name == HOST_EVENTS || name == HOST_HEARTBEATS {
        return Err(format!("`{name}` is a built-in class"));
    }
    Ok(())
}

/// How the drain sends upstream; from the board's `[outbox]`.
#[derive(Debug, Clone)]
pub struct DrainSettings {
    /// Messages per second at most; 0 is unlimited.
    pub rate: u32,
    /// Bytes per second at most; 0 is unlimited.
    pub bytes_per_sec: u64,
    /// How long to wait for a stream's acknowledgement.
    pub ack_timeout: Duration,
}

/// The open outbox with the board's routing of subjects to classes.
pub struct Upstream {
    pub outbox: Arc<Outbox>,
    /// (pattern, class) in the board's order; the first match wins.
    routes: Vec<(Pattern, ClassId)>,
    /// How each class (by index) is delivered.
    delivery: Vec<Delivery>,
    pub drain: DrainSettings,
    pub host_events: ClassId,
    pub host_heartbeats: ClassId,
}

impl Upstream {
    /// Opens (or makes) `DIR/outbox` with the board's classes and the two
    /// built-in ones. `heartbeat` is the heartbeat interval (the TTL of
    /// queued heartbeats).
    pub fn open(
        cfg: &BoardOutbox,
        data_dir: &Path,
        heartbeat: Duration,
    ) -> Result<Upstream, String> {
        let dir = data_dir.join("outbox");
        let mut classes = vec![
            ClassConfig {
                name: HOST_HEARTBEATS.into(),
                priority: 255,
                ttl: Some(heartbeat),
                when_full: DropPolicy::DropOldest,
            },
            ClassConfig {
                name: HOST_EVENTS.into(),
                priority: 254,
                ttl: Some(Duration::from_secs(3600)),
                when_full: DropPolicy::DropOldest,
            },
        ];
        let mut delivery = vec![Delivery::Auto, Delivery::Auto];
        let mut routes = Vec::new();
        for c in &cfg.classes {
            let id = ClassId(classes.len());
            for s in &c.subjects {
                // Checked with the profile; a failure here is a bug.
                let p =
                    Pattern::parse(s).map_err(|e| format!("outbox class {}: {s}: {e}", c.name))?;
                routes.push((p, id));
            }
            classes.push(ClassConfig {
                name: c.name.clone(),
                priority: c.priority,
                ttl: c.ttl_secs.map(Duration::from_secs),
                when_full: match c.when_full {
                    WhenFull::DropOldest => DropPolicy::DropOldest,
                    WhenFull::RejectNew => DropPolicy::RejectNew,
                },
            });
            delivery.push(c.delivery);
        }
        let mut config = OutboxConfig::new(dir.clone(), classes);
        config.max_bytes = cfg.max_mib.saturating_mul(1 << 20);
        config.sync = if cfg.sync_interval_ms == 0 {
            SyncPolicy::Always
        } else {
            SyncPolicy::Interval(Duration::from_millis(cfg.sync_interval_ms))
        };
        let outbox = Outbox::open(config).map_err(|e| format!("outbox {}: {e}", dir.display()))?;
        Ok(Upstream {
            outbox: Arc::new(outbox),
            routes,
            delivery,
            drain: DrainSettings {
                rate: cfg.drain_rate,
                bytes_per_sec: cfg.drain_bytes_per_sec,
                ack_timeout: Duration::from_millis(cfg.ack_timeout_ms),
            },
            host_events: ClassId(1),
            host_heartbeats: ClassId(0),
        })
    }

    /// The subject patterns that leave the device (the bus's exports).
    pub fn exports(&self) -> Vec<String> {
        self.routes
            .iter()
            .map(|(p, _)| p.as_str().to_string())
            .collect()
    }

    /// The class a component's message on `subject` goes to, if it leaves.
    pub fn class_for(&self, subject: &str) -> Option<ClassId> {
        self.routes
            .iter()
            .find(|(p, _)| p.matches(subject))
            .map(|(_, c)| *c)
    }

    /// How messages of `class` are delivered.
    pub fn delivery(&self, class: ClassId) -> Delivery {
        self.delivery.get(class.0).copied().unwrap_or_default()
    }
}

impl twig_messaging::Uplink for Upstream {
    /// Called by the bus on the publisher's thread: appends durably, so the
    /// component's `publish` returns only once its message is safe.
    fn publish(&self, msg: &twig_messaging::Message) -> Result<bool, String> {
        let Some(class) = self.class_for(&msg.subject) else {
            return Ok(false);
        };
        if msg.reply_to.is_some() {
            // A request cannot wait in a queue for hours; its answer would
            // come to an inbox long gone. Say so rather than hang.
            return Err(format!(
                "{}: requests are not sent upstream through the outbox",
                msg.subject
            ));
        }
        self.outbox
            .append(class, &msg.subject, &[], &msg.body)
            .map(|_| true)
            .map_err(|e| format!("outbox: {e}"))
    }
}

/// The `[outbox]` table: the on-disk queue that messages bound for the
/// lattice wait in while the uplink is down (this module).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardOutbox {
    /// Cap on the outbox's files together, in MiB; 64.
    #[serde(default = "default_outbox_max_mib")]
    pub max_mib: u64,
    /// Milliseconds between fsyncs; 0 (the default) fsyncs before a publish
    /// returns, sharing one fsync among concurrent publishers. A larger
    /// value is faster, and a power cut may lose that much (a crashed
    /// process loses nothing either way).
    #[serde(default)]
    pub sync_interval_ms: u64,
    /// Messages per second sent upstream, at most; 200. 0 is unlimited.
    /// Keeps a backlog drained after an outage from flooding a slow link.
    #[serde(default = "default_drain_rate")]
    pub drain_rate: u32,
    /// Bytes (subject + body) per second sent upstream, at most; 0, the
    /// default, is unlimited. Set it below a slow link's capacity so that
    /// heartbeats and calls still get through while a backlog drains.
    #[serde(default)]
    pub drain_bytes_per_sec: u64,
    /// How long to wait for a JetStream stream's acknowledgement before
    /// sending again, in milliseconds; 5000.
    #[serde(default = "default_ack_timeout_ms")]
    pub ack_timeout_ms: u64,
    /// Which subjects leave the device, by class; a subject goes to the
    /// first class with a matching pattern. Subjects no class matches stay
    /// on the device.
    #[serde(default)]
    pub classes: Vec<BoardOutboxClass>,
}

impl Default for BoardOutbox {
    fn default() -> Self {
        BoardOutbox {
            max_mib: default_outbox_max_mib(),
            sync_interval_ms: 0,
            drain_rate: default_drain_rate(),
            drain_bytes_per_sec: 0,
            ack_timeout_ms: default_ack_timeout_ms(),
            classes: Vec::new(),
        }
    }
}

fn default_outbox_max_mib() -> u64 {
    64
}
fn default_drain_rate() -> u32 {
    200
}
fn default_ack_timeout_ms() -> u64 {
    5000
}

/// One `[[outbox.classes]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardOutboxClass {
    /// `[a-z0-9_-]`, at most 32 characters; part of each message's id.
    pub name: String,
    /// NATS subject patterns (`telemetry.>`, `alerts.*.high`).
    pub subjects: Vec<String>,
    /// Higher classes are sent first; 100.
    #[serde(default = "default_priority")]
    pub priority: u8,
    /// Messages older than this many seconds are dropped unsent (and
    /// counted); none by default.
    #[serde(default)]
    pub ttl_secs: Option<u64>,
    /// When the outbox is full: `drop-oldest` (the default) drops the
    /// oldest messages of the lowest-priority such class to make room;
    /// `reject-new` refuses the new message.
    #[serde(default)]
    pub when_full: WhenFull,
    /// `auto` (the default) asks the lattice whether a JetStream stream
    /// captures the subject, and if one does publishes with `Nats-Msg-Id`
    /// and waits for the stream's acknowledgement (exactly once at the
    /// stream); otherwise publishes plainly (at least once to the server).
    /// `jetstream` and `core` choose without asking.
    #[serde(default)]
    pub delivery: Delivery,
}

fn default_priority() -> u8 {
    100
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WhenFull {
    #[default]
    DropOldest,
    RejectNew,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    #[default]
    Auto,
    Jetstream,
    Core,
}

impl BoardOutbox {
    pub(crate) fn check(&self) -> Result<(), String> {
        if !(1..=1024 * 1024).contains(&self.max_mib) {
            return Err(format!(
                "outbox.max_mib: must be between 1 and 1048576 (got {})",
                self.max_mib
            ));
        }
        if self.sync_interval_ms > 60_000 {
            return Err(format!(
                "outbox.sync_interval_ms: must be at most 60000 (got {})",
                self.sync_interval_ms
            ));
        }
        if !(100..=600_000).contains(&self.ack_timeout_ms) {
            return Err(format!(
                "outbox.ack_timeout_ms: must be between 100 and 600000 (got {})",
                self.ack_timeout_ms
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (i, c) in self.classes.iter().enumerate() {
            let at = format!("outbox.classes[{i}]");
            check_class_name(&c.name).map_err(|e| format!("{at}.name: {e}"))?;
            if !seen.insert(c.name.as_str()) {
                return Err(format!("{at}.name: `{}` is used twice", c.name));
            }
            if c.subjects.is_empty() {
                return Err(format!("{at}.subjects: give at least one subject pattern"));
            }
            for s in &c.subjects {
                twig_messaging::Pattern::parse(s)
                    .map_err(|e| format!("{at}.subjects: `{s}`: {e}"))?;
            }
            if c.ttl_secs == Some(0) {
                return Err(format!(
                    "{at}.ttl_secs: must be at least 1 (leave it out for no limit)"
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use twig_messaging::Uplink;

    fn temp_dir(tag: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let t = tempfile::Builder::new()
            .prefix(&format!("twig-upstream-{tag}-"))
            .tempdir()
            .unwrap();
        let d = t.path().to_path_buf();
        (t, d)
    }

    #[test]
    fn subjects_go_to_the_first_matching_class_and_requests_are_refused() {
        let (_tmp, dir) = temp_dir("route");
        // The sim board's two classes.
        let config: BoardOutbox = toml::from_str(
            r#"
            [[classes]]
            name = "alerts"
            subjects = ["alerts.>"]
            priority = 200
            when_full = "reject-new"
            [[classes]]
            name = "telemetry"
            subjects = ["telemetry.>"]
            "#,
        )
        .unwrap();
        let up = Upstream::open(&config, &dir, Duration::from_secs(30)).unwrap();
        assert_eq!(up.exports(), ["alerts.>", "telemetry.>"]);
        let alerts = up.outbox.class("alerts").unwrap();
        let telemetry = up.outbox.class("telemetry").unwrap();
        assert_eq!(up.class_for("alerts.door.open"), Some(alerts));
        assert_eq!(up.class_for("telemetry.s1"), Some(telemetry));
        assert_eq!(up.class_for("local.only"), None);
        assert_eq!(up.outbox.class(HOST_HEARTBEATS), Some(up.host_heartbeats));
        assert_eq!(up.outbox.class(HOST_EVENTS), Some(up.host_events));

        up.publish(&twig_messaging::Message::new("telemetry.s1", b"1".to_vec()))
            .unwrap();
        up.publish(&twig_messaging::Message::new("alerts.door", b"2".to_vec()))
            .unwrap();
        // Not exported: ignored (the bus only hands over exported subjects).
        up.publish(&twig_messaging::Message::new("local.x", b"3".to_vec()))
            .unwrap();
        let e = up
            .publish(
                &twig_messaging::Message::new("telemetry.s1", b"4".to_vec())
                    .with_reply_to("_INBOX.1"),
            )
            .unwrap_err();
        assert!(e.contains("requests are not sent upstream"), "{e}");
        // Alerts first (priority 200), then telemetry.
        let b = up.outbox.next_batch(10, 1 << 20).unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(
            (b[0].subject.as_str(), b[0].body.as_slice()),
            ("alerts.door", &b"2"[..])
        );
        up.outbox.ack(b[0].class, b[0].seq).unwrap();
        let b = up.outbox.next_batch(10, 1 << 20).unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].subject, "telemetry.s1");
        drop(up);
    }

    #[test]
    fn class_names_are_checked() {
        assert!(check_class_name("telemetry_2-x").is_ok());
        for bad in [
            "",
            "Tele",
            "a.b",
            HOST_EVENTS,
            HOST_HEARTBEATS,
            &"x".repeat(33),
        ] {
            assert!(check_class_name(bad).is_err(), "{bad}");
        }
    }
}
