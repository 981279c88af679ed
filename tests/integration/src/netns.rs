//! A slow uplink for tests: a network namespace the test makes, joined to
//! this one by two veth pairs, one of them shaped with `tc qdisc … tbf`.
//!
//! ```text
//!   this namespace                          namespace "twig-slow-…"
//!   ┌───────────────────┐  shaped (tbf)    ┌───────────────────────┐
//!   │ leaf nats-server  │ ───────────────▶ │ core nats-server      │
//!   │  10.213.N.1       │   ~50 kbit/s     │  10.213.N.2           │
//!   │                   │   both ways      │                       │
//!   │ the test's own    │  unshaped        │                       │
//!   │ clients, /healthz │ ───────────────▶ │  10.213.N.6           │
//!   │  10.213.N.5       │                  │                       │
//!   └───────────────────┘                  └───────────────────────┘
//! ```
//!
//! Only the leaf→core link is slow: the test watches the core (its
//! monitoring port, the stream it reads at the end) over the second,
//! unshaped pair, so what it measures is not slowed by its own looking.
//! `netem` is not available where these tests run, so the link is only
//! rate-limited (a token bucket per direction), not delayed or lossy; a
//! cut is `ip link set … down`, which leaves both servers holding a TCP
//! connection that no longer leads anywhere until their pings give up.
//!
//! Making namespaces needs root (or CAP_NET_ADMIN) and iproute2.
//! [`ShapedLink::create`] says why it could not, so the caller can skip
//! with that reason instead of passing silently.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// A namespace with a shaped and an unshaped veth pair to this one;
/// removed (with both pairs and anything still running in it) on drop.
pub struct ShapedLink {
    /// The namespace's name, for `ip netns exec`.
    pub ns: String,
    /// The shaped pair's end in this namespace (cut it to make an outage).
    shaped_here: String,
    /// The unshaped pair's end in this namespace.
    direct_here: String,
    /// Addresses of the namespace's end of each pair.
    pub shaped_ip: Ipv4Addr,
    pub direct_ip: Ipv4Addr,
    /// This namespace's end of the shaped pair (the leaf's source address).
    pub shaped_local_ip: Ipv4Addr,
    /// The rate each direction of the shaped pair is limited to.
    pub rate_kbit: u32,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Runs `ip`/`tc` with `args`; the error carries the command and what it
/// printed.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("`{program}` could not be run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl ShapedLink {
    /// Makes the namespace and both pairs, and shapes the first to
    /// `rate_kbit` in each direction. `Err` says why it could not (no
    /// privileges, no iproute2, no tbf), with everything made so far
    /// removed again.
    pub fn create(rate_kbit: u32) -> Result<ShapedLink, String> {
        // Unique within this machine: the process id and a counter; the
        // subnet from the same pair so parallel tests do not collide.
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = (std::process::id() % 10_000) * 8 + n % 8;
        let ns = format!("twig-slow-{}-{n}", std::process::id());
        // Interface names are at most 15 bytes.
        let (shaped_here, shaped_there) = (format!("tws{id}a"), format!("tws{id}b"));
        let (direct_here, direct_there) = (format!("twd{id}a"), format!("twd{id}b"));
        let third = (id % 250) as u8;
        let fourth = ((id / 250) % 30) as u8 * 8;
        let ip = |k: u8| Ipv4Addr::new(10, 213, third, fourth + k);
        let link = ShapedLink {
            ns: ns.clone(),
            shaped_here: shaped_here.clone(),
            direct_here: direct_here.clone(),
            shaped_ip: ip(2),
            direct_ip: ip(6),
            shaped_local_ip: ip(1),
            rate_kbit,
        };
        // From here on, `link`'s drop cleans up whatever was made.
        run("ip", &["netns", "add", &ns])?;
        let rate = format!("{rate_kbit}kbit");
        for (here, there, k) in [
            (&shaped_here, &shaped_there, 1u8),
            (&direct_here, &direct_there, 5u8),
        ] {
            run(
                "ip",
                &["link", "add", here, "type", "veth", "peer", "name", there],
            )?;
            run("ip", &["link", "set", there, "netns", &ns])?;
            run(
                "ip",
                &["addr", "add", &format!("{}/30", ip(k)), "dev", here],
            )?;
            run("ip", &["link", "set", here, "up"])?;
            link.exec_ok(&[
                "ip",
                "addr",
                "add",
                &format!("{}/30", ip(k + 1)),
                "dev",
                there,
            ])?;
            link.exec_ok(&["ip", "link", "set", there, "up"])?;
        }
        link.exec_ok(&["ip", "link", "set", "lo", "up"])?;
        // A token bucket each way: `burst` must hold at least one full
        // frame; `latency` bounds the queue (a real modem's buffer), beyond
        // which packets are dropped and TCP backs off.
        let tbf = [
            "qdisc", "add", "dev", "DEV", "root", "tbf", "rate", &rate, "burst", "4kb", "latency",
            "500ms",
        ];
        let with_dev = |dev: &str| -> Vec<String> {
            tbf.iter()
                .map(|a| if *a == "DEV" { dev } else { a }.to_string())
                .collect()
        };
        let here = with_dev(&shaped_here);
        run("tc", &here.iter().map(String::as_str).collect::<Vec<_>>())?;
        let mut there = vec!["tc".to_string()];
        there.extend(with_dev(&shaped_there));
        link.exec_ok(&there.iter().map(String::as_str).collect::<Vec<_>>())?;
        Ok(link)
    }

    /// `program` to be run inside the namespace (`ip netns exec` execs it,
    /// so the child's pid is the program's own).
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }

    fn exec_ok(&self, argv: &[&str]) -> Result<(), String> {
        let mut args = vec!["netns", "exec", &self.ns];
        args.extend_from_slice(argv);
        run("ip", &args)
    }

    /// Cuts (`false`) or restores (`true`) the shaped link, as a radio
    /// losing its carrier: no packets, no resets, the connections over it
    /// go stale.
    pub fn set_shaped_link(&self, up: bool) -> Result<(), String> {
        run(
            "ip",
            &[
                "link",
                "set",
                &self.shaped_here,
                if up { "up" } else { "down" },
            ],
        )
    }

    /// The shaping as `tc` reports it, for the test's log.
    pub fn describe(&self) -> String {
        let out = Command::new("tc")
            .args(["qdisc", "show", "dev", &self.shaped_here])
            .output();
        match out {
            Ok(o) => String::from_utf8_lossy(&o.stdout).trim().to_string(),
            Err(e) => format!("tc: {e}"),
        }
    }
}

impl Drop for ShapedLink {
    fn drop(&mut self) {
        // Anything still running in the namespace would keep it alive;
        // deleting it removes its ends of the pairs, and with them ours.
        let _ = Command::new("ip")
            .args(["netns", "pids", &self.ns])
            .output()
            .map(|o| {
                for pid in String::from_utf8_lossy(&o.stdout).split_whitespace() {
                    let _ = Command::new("kill").args(["-9", pid]).status();
                }
            });
        let _ = run("ip", &["netns", "del", &self.ns]);
        // Only left when making the namespace failed half way.
        for dev in [&self.shaped_here, &self.direct_here] {
            if std::path::Path::new("/sys/class/net").join(dev).exists() {
                let _ = run("ip", &["link", "del", dev]);
            }
        }
    }
}
