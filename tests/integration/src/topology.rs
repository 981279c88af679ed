//! A real NATS topology on 127.0.0.1 for tests that need more than one plain
//! nats-server: the shape an edge host meets in the field.
//!
//! ```text
//!   clients (twig, wasmCloud tools)
//!        │  TLS, client certificate required (mTLS), user JWT
//!        ▼
//!   ┌──────────────┐  leafnode link over TLS   ┌──────────────┐
//!   │ leaf         │ ────────────────────────▶ │ core         │
//!   │ JS domain    │  (APP and SYS accounts)   │ JS domain    │
//!   │ "leaf"       │                           │ "core"       │
//!   └──────────────┘                           └──────────────┘
//! ```
//!
//! Everything a deployment would get from an operator is made here, fresh
//! for every [`Topology`], so tests depend on no files, tools or network
//! beyond `$NATS_SERVER`:
//!
//! - a CA, a server certificate for `localhost`/`127.0.0.1` that both
//!   servers use, a client certificate, and a second, unrelated CA for
//!   tests that expect the server's certificate to be rejected;
//! - NATS decentralized auth ("operator mode"): an operator, an `APP`
//!   account with JetStream and a `SYS` system account, and user JWTs in
//!   `.creds` files, including one that may not publish `wasmbus.evt.>` and
//!   one signed by an account no server knows.
//!
//! Both servers run JetStream in their own domain, so a KV bucket created
//! through domain `core` from a client of the leaf lives on the core and
//! outlives the leaf, which is how a wasmCloud lattice keeps its
//! `LATTICEDATA_*` buckets. [`Topology::stop_core`] and
//! [`Topology::start_core`] let a test cut the uplink and bring it back.
//!
//! [`Topology::start_over`] moves the core into a network namespace made
//! by [`crate::netns::ShapedLink`], so the leafnode link crosses a slow,
//! cuttable veth pair instead of loopback.
//!
//! Each server picks its own ports at its first start (`-1` in its
//! config) and the helper reads them back from the server's ports file
//! and `/varz`; a restart reuses them. Picking a free port first and
//! handing it over leaves a window in which a parallel test can take it.
//!
//! The helper is synchronous std code: it only writes files, spawns
//! processes and reads the servers' monitoring endpoints.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use nkeys::KeyPair;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
    KeyUsagePurpose, SanType,
};
use serde_json::{json, Value};
use sha2::Digest as _;

use crate::netns::ShapedLink;
use crate::twig::TempDir;

/// How long a server gets to listen, become healthy and link up.
const START_DEADLINE: Duration = Duration::from_secs(20);

/// The subjects the `deny_evt_creds` user may not publish to.
pub const DENIED_EVT_SUBJECTS: &str = "wasmbus.evt.>";

/// The JetStream domain of the core server.
pub const CORE_DOMAIN: &str = "core";

/// The JetStream domain of the leaf server.
pub const LEAF_DOMAIN: &str = "leaf";

/// One of the two servers of a [`Topology`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Core,
    Leaf,
}

/// The running topology; both servers are killed and all files removed on
/// drop.
pub struct Topology {
    /// The CA that signed both servers' and the client's certificates.
    pub ca_pem: PathBuf,
    /// A CA unrelated to everything here: as a client's only root it must
    /// make the TLS handshake fail.
    pub untrusted_ca_pem: PathBuf,
    /// A client certificate signed by `ca_pem`; the leaf requires one.
    pub client_cert_pem: PathBuf,
    pub client_key_pem: PathBuf,
    /// A user of the `APP` account with full permissions.
    pub user_creds: PathBuf,
    /// A user of the `APP` account that may not publish to
    /// [`DENIED_EVT_SUBJECTS`].
    pub deny_evt_creds: PathBuf,
    /// A well-formed user JWT issued by an account no server knows.
    pub bad_creds: PathBuf,
    /// A user of the `APP` account whose JWT expired an hour before the
    /// topology started ([`Topology::expired_at`]).
    pub expired_creds: PathBuf,
    /// When `expired_creds`'s JWT expired (its `exp`, seconds since 1970).
    pub expired_at: u64,
    /// A user of the `SYS` system account (for `$SYS.>` requests).
    pub sys_creds: PathBuf,
    /// Public nkey of the `APP` account (the account's "name" on the wire).
    pub app_account: String,
    /// Public nkey of the `SYS` system account.
    pub sys_account: String,
    core: Node,
    leaf: Node,
    /// Last, so the servers are gone before their files are removed.
    dir: TempDir,
}

impl Topology {
    /// Makes the certificates, keys and JWTs, writes both servers'
    /// configurations and starts them; returns once both serve clients,
    /// JetStream is up on both and the leaf is linked to the core.
    ///
    /// Panics when `$NATS_SERVER` is unset or a server does not come up in
    /// time (with the tail of its log).
    pub fn start() -> Topology {
        Topology::start_inner(None)
    }

    /// As [`Topology::start`], but with the core inside `link`'s network
    /// namespace: the leaf reaches it only over the shaped (slow) pair,
    /// while [`Topology::core_client`] and the core's monitoring port go
    /// over the unshaped one. Both servers ping every 2 s and give up
    /// after 3 missed pongs, so a cut link is noticed in seconds rather
    /// than the default minutes.
    pub fn start_over(link: &ShapedLink) -> Topology {
        Topology::start_inner(Some(link))
    }

    fn start_inner(link: Option<&ShapedLink>) -> Topology {
        let bin = nats_server_bin();
        let dir = TempDir::new("topo");
        let d = dir.path().to_path_buf();

        // --- TLS ---------------------------------------------------------
        let ca_key = rcgen::KeyPair::generate().expect("generate CA key");
        let ca_params = ca_cert_params("twig test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-sign CA");
        let ca = Issuer::new(ca_params, ca_key);

        let server_key = rcgen::KeyPair::generate().expect("generate server key");
        let mut server_params =
            CertificateParams::new(vec!["localhost".to_string()]).expect("server cert params");
        server_params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        if let Some(l) = link {
            for ip in [l.shaped_ip, l.direct_ip] {
                server_params
                    .subject_alt_names
                    .push(SanType::IpAddress(IpAddr::V4(ip)));
            }
        }
        server_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params
            .signed_by(&server_key, &ca)
            .expect("sign server cert");

        let client_key = rcgen::KeyPair::generate().expect("generate client key");
        let mut client_params =
            CertificateParams::new(Vec::<String>::new()).expect("client cert params");
        client_params
            .distinguished_name
            .push(DnType::CommonName, "twig test client");
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client_params
            .signed_by(&client_key, &ca)
            .expect("sign client cert");

        let untrusted_key = rcgen::KeyPair::generate().expect("generate untrusted CA key");
        let untrusted_cert = ca_cert_params("some other CA")
            .self_signed(&untrusted_key)
            .expect("self-sign untrusted CA");

        let ca_pem = write(&d, "ca.pem", &ca_cert.pem());
        let untrusted_ca_pem = write(&d, "untrusted-ca.pem", &untrusted_cert.pem());
        let server_cert_pem = write(&d, "server.pem", &server_cert.pem());
        let server_key_pem = write(&d, "server-key.pem", &server_key.serialize_pem());
        let client_cert_pem = write(&d, "client.pem", &client_cert.pem());
        let client_key_pem = write(&d, "client-key.pem", &client_key.serialize_pem());

        // --- NATS operator mode --------------------------------------------
        let operator = KeyPair::new_operator();
        let app = KeyPair::new_account();
        let sys = KeyPair::new_account();
        let app_account = app.public_key();
        let sys_account = sys.public_key();

        let operator_jwt = encode_jwt(
            &operator,
            &operator.public_key(),
            "twig-test-operator",
            json!({
                "system_account": sys_account,
                "type": "operator",
                "version": 2,
            }),
        );
        let app_jwt = encode_jwt(&operator, &app_account, "APP", account_nats(true));
        let sys_jwt = encode_jwt(&operator, &sys_account, "SYS", account_nats(false));
        let operator_jwt_path = write(&d, "operator.jwt", &operator_jwt);

        let user_creds = write(&d, "user.creds", &creds_file(&app, "user", json!({})));
        let deny_evt_creds = write(
            &d,
            "deny-evt.creds",
            &creds_file(&app, "deny-evt", json!({ "deny": [DENIED_EVT_SUBJECTS] })),
        );
        // Same shape as a good user, but its issuer is in no resolver.
        let stranger = KeyPair::new_account();
        let bad_creds = write(&d, "bad.creds", &creds_file(&stranger, "bad", json!({})));
        let sys_creds = write(&d, "sys.creds", &creds_file(&sys, "sys", json!({})));
        let expired_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970")
            .as_secs()
            - 3600;
        let expired_creds = write(
            &d,
            "expired.creds",
            &creds_file_expiring(&app, "expired", json!({}), Some(expired_at)),
        );
        // The leaf's own identities for its links, apart from any test user.
        let leaf_app_creds = write(&d, "leaf-app.creds", &creds_file(&app, "leaf", json!({})));
        let leaf_sys_creds = write(&d, "leaf-sys.creds", &creds_file(&sys, "leaf", json!({})));

        // --- server configurations ---------------------------------------
        // No port is chosen here: each server picks its own at its first
        // start (`-1`) and the test reads them back (`Node::learn_ports`),
        // so two tests can never be handed the same port. The configs
        // carry `@…@` placeholders that `Node::spawn` fills in.
        // Inside its own namespace the core listens on every address there
        // (its two veth ends); otherwise on loopback only.
        let core_bind = if link.is_some() {
            Ipv4Addr::UNSPECIFIED
        } else {
            Ipv4Addr::LOCALHOST
        };
        // Where the leaf dials the core, and where everyone else reaches it.
        let core_for_leaf = link.map_or(Ipv4Addr::LOCALHOST, |l| l.shaped_ip);
        let core_for_us = link.map_or(Ipv4Addr::LOCALHOST, |l| l.direct_ip);
        let pings = if link.is_some() {
            "ping_interval: \"2s\"\nping_max: 3\n"
        } else {
            ""
        };
        // Shared by both servers: the operator they trust and the accounts
        // they know, preloaded because a MEMORY resolver fetches nothing.
        let common = format!(
            "operator: {op}\n\
             system_account: {sys}\n\
             resolver: MEMORY\n\
             resolver_preload: {{\n  {app}: \"{app_jwt}\"\n  {sys}: \"{sys_jwt}\"\n}}\n",
            op = q(&operator_jwt_path),
            sys = sys_account,
            app = app_account,
        );
        // `verify: true` makes the server demand a client certificate from
        // the CA; `timeout` is the TLS handshake's, in seconds.
        let server_tls = |verify: bool, indent: &str| {
            format!(
                "{indent}tls {{\n\
                 {indent}  cert_file: {}\n\
                 {indent}  key_file: {}\n\
                 {indent}  ca_file: {}\n\
                 {indent}  verify: {verify}\n\
                 {indent}  timeout: 5\n\
                 {indent}}}\n",
                q(&server_cert_pem),
                q(&server_key_pem),
                q(&ca_pem),
            )
        };
        let core_conf = format!(
            "server_name: twig-core\n\
             listen: \"{core_bind}:{CLIENT_PORT}\"\n\
             http: \"{core_bind}:{MONITOR_PORT}\"\n\
             ports_file_dir: {ports_dir}\n\
             {pings}\
             {common}\
             # Clients of the core authenticate with their JWT only.\n\
             {client_tls}\
             jetstream {{\n  domain: {CORE_DOMAIN}\n  store_dir: {store}\n  max_memory_store: 64MB\n  max_file_store: 256MB\n}}\n\
             leafnodes {{\n  listen: \"{core_bind}:{LEAF_PORT}\"\n  # The leaf proves itself with a certificate and a JWT.\n{leaf_tls}}}\n",
            ports_dir = q(&ports_dir(&d, "core")),
            client_tls = server_tls(false, ""),
            leaf_tls = server_tls(true, "  "),
            store = q(&d.join("core-js")),
        );
        let remote = |creds: &Path, account: &str| {
            format!(
                "    {{\n      url: \"tls://{core_for_leaf}:{CORE_LEAF_PORT}\"\n      account: {account}\n      credentials: {creds}\n      tls {{\n        ca_file: {ca}\n        cert_file: {cert}\n        key_file: {key}\n      }}\n    }}\n",
                creds = q(creds),
                ca = q(&ca_pem),
                cert = q(&client_cert_pem),
                key = q(&client_key_pem),
            )
        };
        // Two links: APP carries the lattice's subjects and the `core`
        // JetStream API; SYS lets `$SYS` requests (server pings, account
        // info) see both servers, as in a deployment managed with the nats
        // CLI.
        let leaf_conf = format!(
            "server_name: twig-leaf\n\
             listen: \"127.0.0.1:{CLIENT_PORT}\"\n\
             http: \"127.0.0.1:{MONITOR_PORT}\"\n\
             ports_file_dir: {ports_dir}\n\
             {pings}\
             {common}\
             # mTLS: no client without a certificate from our CA.\n\
             {client_tls}\
             jetstream {{\n  domain: {LEAF_DOMAIN}\n  store_dir: {store}\n  max_memory_store: 64MB\n  max_file_store: 256MB\n}}\n\
             leafnodes {{\n  remotes: [\n{app_remote}{sys_remote}  ]\n}}\n",
            ports_dir = q(&ports_dir(&d, "leaf")),
            client_tls = server_tls(true, ""),
            store = q(&d.join("leaf-js")),
            app_remote = remote(&leaf_app_creds, &app_account),
            sys_remote = remote(&leaf_sys_creds, &sys_account),
        );

        let mut t = Topology {
            ca_pem,
            untrusted_ca_pem,
            client_cert_pem,
            client_key_pem,
            user_creds,
            deny_evt_creds,
            bad_creds,
            expired_creds,
            expired_at,
            sys_creds,
            app_account,
            sys_account,
            core: Node::new(
                &bin,
                "core",
                &d,
                core_conf,
                true,
                core_for_us,
                link.map(|l| l.ns.clone()),
            ),
            leaf: Node::new(
                &bin,
                "leaf",
                &d,
                leaf_conf,
                false,
                Ipv4Addr::LOCALHOST,
                None,
            ),
            dir,
        };
        t.start_core();
        // The leaf dials the core's leafnode port, known only now.
        t.leaf.conf_template = t
            .leaf
            .conf_template
            .replace(CORE_LEAF_PORT, &t.core.ports.leaf.to_string());
        t.start_leaf();
        t
    }

    /// The temporary directory holding certificates, creds, configs, logs
    /// and JetStream stores.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where clients connect to the leaf: TLS with a client certificate.
    pub fn leaf_url(&self) -> String {
        format!("tls://127.0.0.1:{}", self.leaf.ports.client)
    }

    /// A client of the leaf as the lattice peers in the tests connect (the
    /// control client, wRPC peers, the benchmarks): the test CA as the
    /// only root, the client certificate the leaf demands, the user creds.
    pub async fn leaf_client(&self) -> Result<async_nats_039::Client, String> {
        async_nats_039::ConnectOptions::with_credentials_file(self.user_creds.clone())
            .await
            .map_err(|e| format!("creds {}: {e}", self.user_creds.display()))?
            .add_root_certificates(self.ca_pem.clone())
            .add_client_certificate(self.client_cert_pem.clone(), self.client_key_pem.clone())
            .require_tls(true)
            .connect(self.leaf_url())
            .await
            .map_err(|e| {
                format!(
                    "connecting to the leaf: {e}\n{}",
                    self.log_tail(Server::Leaf)
                )
            })
    }

    /// A client of the core itself (where the lattice's streams are), with
    /// the user creds and the test CA.
    pub async fn core_client(&self) -> Result<async_nats_039::Client, String> {
        async_nats_039::ConnectOptions::with_credentials_file(self.user_creds.clone())
            .await
            .map_err(|e| format!("creds {}: {e}", self.user_creds.display()))?
            .add_root_certificates(self.ca_pem.clone())
            .require_tls(true)
            // The core comes and goes in the tests; be back soon after it.
            .reconnect_delay_callback(|_| Duration::from_millis(100))
            .connect(self.core_url())
            .await
            .map_err(|e| {
                format!(
                    "connecting to the core: {e}\n{}",
                    self.log_tail(Server::Core)
                )
            })
    }

    /// Where clients connect to the core directly: TLS (server-authenticated
    /// only; a client certificate is accepted but not required).
    pub fn core_url(&self) -> String {
        format!("tls://{}:{}", self.core.host, self.core.ports.client)
    }

    /// Starts the core (again) on the same ports and JetStream store; waits
    /// until it serves and, when the leaf runs, until the leaf has linked
    /// up to it again.
    pub fn start_core(&mut self) {
        self.core.spawn();
        self.core.wait_ready();
        if self.leaf.running() {
            self.wait_linked();
        }
    }

    /// Kills the core (SIGKILL, like a crash or power cut); the leaf and its
    /// clients stay up and the leaf keeps trying to relink.
    pub fn stop_core(&mut self) {
        self.core.kill();
    }

    /// Starts the leaf (again) on the same ports and store; waits until it
    /// serves and, when the core runs, until it has linked up.
    pub fn start_leaf(&mut self) {
        self.leaf.spawn();
        self.leaf.wait_ready();
        if self.core.running() {
            self.wait_linked();
        }
    }

    /// Kills the leaf (SIGKILL).
    pub fn stop_leaf(&mut self) {
        self.leaf.kill();
    }

    /// Names of the client connections a server lists on `/connz`
    /// (unnamed connections are left out).
    pub fn connections(&self, server: Server) -> Vec<String> {
        let node = self.node(server);
        connection_names_at(node.host, node.ports.monitor)
    }

    /// The last lines of a server's log (all its runs), for assertion
    /// messages.
    pub fn log_tail(&self, server: Server) -> String {
        self.node(server).log_tail()
    }

    /// Waits up to 10 s for `server`'s log to contain `what`, and returns
    /// the log: nats-server writes its line about a refused client after
    /// the client has already seen the refusal.
    pub fn wait_for_log(&self, server: Server, what: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let log = self.log_tail(server);
            if log.contains(what) || Instant::now() > deadline {
                return log;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn node(&self, server: Server) -> &Node {
        match server {
            Server::Core => &self.core,
            Server::Leaf => &self.leaf,
        }
    }

    /// Waits until both of the leaf's links (APP and SYS) are up and the
    /// core's interest in the `core` JetStream API has reached the leaf, so
    /// a request through domain `core` finds a responder right away.
    fn wait_linked(&self) {
        let deadline = Instant::now() + START_DEADLINE;
        // The core announces its domain's JetStream API in pieces; these two
        // carry stream management and KV writes.
        let js_api = [
            format!("$JS.{CORE_DOMAIN}.API.STREAM.>"),
            format!("$JS.{CORE_DOMAIN}.API.$KV.>"),
        ];
        loop {
            let leafz = http_get(self.leaf.host, self.leaf.ports.monitor, "/leafz?subs=1")
                .and_then(|b| serde_json::from_str::<Value>(&b).ok());
            let links = leafz
                .as_ref()
                .and_then(|v| v["leafs"].as_array().cloned())
                .unwrap_or_default();
            let app_ready = links.iter().any(|l| {
                l["account"] == self.app_account.as_str()
                    && l["subscriptions_list"].as_array().is_some_and(|subs| {
                        js_api
                            .iter()
                            .all(|want| subs.iter().any(|x| x == want.as_str()))
                    })
            });
            let sys_up = links
                .iter()
                .any(|l| l["account"] == self.sys_account.as_str());
            if app_ready && sys_up {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "the leaf did not link up to the core within {START_DEADLINE:?}; leaf /leafz: {}\n--- leaf log ---\n{}\n--- core log ---\n{}",
                    leafz.map(|v| v.to_string()).unwrap_or_default(),
                    self.leaf.log_tail(),
                    self.core.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        self.leaf.kill();
        self.core.kill();
    }
}

/// Names of a nats-server's client connections, from the `/connz` page of
/// its monitoring port (unnamed connections are left out).
pub fn connection_names(monitor_port: u16) -> Vec<String> {
    connection_names_at(Ipv4Addr::LOCALHOST, monitor_port)
}

fn connection_names_at(host: Ipv4Addr, monitor_port: u16) -> Vec<String> {
    let body = http_get(host, monitor_port, "/connz")
        .unwrap_or_else(|| panic!("monitoring port {monitor_port} does not answer"));
    let v: Value = serde_json::from_str(&body).expect("connz JSON");
    v["connections"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

/// `$NATS_SERVER`, which the test runner sets.
pub fn nats_server_bin() -> PathBuf {
    let p = std::env::var_os("NATS_SERVER").map(PathBuf::from).expect(
        "NATS_SERVER is not set: point it at a nats-server 2.10+ binary \
         (the README's test command sets it)",
    );
    assert!(p.exists(), "NATS_SERVER={} does not exist", p.display());
    p
}

/// A free TCP port on 127.0.0.1: free when asked, but nothing holds it
/// after, so another test may take it first. Only for what cannot ask the
/// listener for its port (a server that must come back on the same one, a
/// port twig is told to listen on); the topology's servers pick their own.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind 127.0.0.1:0")
        .port()
}

/// Placeholders in a server's configuration template, filled in by
/// [`Node::spawn`]: `-1` (the server picks) at the first start, then the
/// ports it picked, so restarts reuse them.
const CLIENT_PORT: &str = "@CLIENT_PORT@";
const MONITOR_PORT: &str = "@MONITOR_PORT@";
const LEAF_PORT: &str = "@LEAF_PORT@";
/// In the leaf's template: the core's leafnode port.
const CORE_LEAF_PORT: &str = "@CORE_LEAF_PORT@";

/// Where a server writes its ports file (`ports_file_dir`).
fn ports_dir(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(format!("{name}-ports"));
    std::fs::create_dir_all(&p).unwrap_or_else(|e| panic!("create {}: {e}", p.display()));
    p
}

/// The ports one server listens on: picked by the server at its first
/// start and fixed for its life after that.
#[derive(Clone, Copy, Default)]
struct Ports {
    client: u16,
    monitor: u16,
    /// Leafnode listener (core only; 0 for the leaf).
    leaf: u16,
}

/// One nats-server process, restartable with the same configuration.
struct Node {
    name: &'static str,
    bin: PathBuf,
    conf: PathBuf,
    /// The configuration with the port placeholders.
    conf_template: String,
    log: PathBuf,
    /// The server's `ports_file_dir`.
    ports_dir: PathBuf,
    /// Whether it listens for leafnodes.
    with_leaf: bool,
    /// Zero until the first start has read them back.
    ports: Ports,
    /// Where this process's ports are reached from the test.
    host: Ipv4Addr,
    /// The network namespace it runs in, if not this one.
    netns: Option<String>,
    child: Option<Child>,
}

impl Node {
    fn new(
        bin: &Path,
        name: &'static str,
        dir: &Path,
        conf_template: String,
        with_leaf: bool,
        host: Ipv4Addr,
        netns: Option<String>,
    ) -> Node {
        let conf = dir.join(format!("{name}.conf"));
        let log = conf.with_extension("log");
        Node {
            name,
            bin: bin.to_path_buf(),
            conf,
            conf_template,
            log,
            ports_dir: ports_dir(dir, name),
            with_leaf,
            ports: Ports::default(),
            host,
            netns,
            child: None,
        }
    }

    fn ports_known(&self) -> bool {
        self.ports.client != 0
    }

    /// The configuration for the next start.
    fn render_conf(&self) -> String {
        let port = |p: u16| {
            if self.ports_known() {
                p.to_string()
            } else {
                "-1".to_string()
            }
        };
        self.conf_template
            .replace(CLIENT_PORT, &port(self.ports.client))
            .replace(MONITOR_PORT, &port(self.ports.monitor))
            .replace(LEAF_PORT, &port(self.ports.leaf))
    }

    /// Reads back the ports the running server picked: client and
    /// monitoring from the ports file nats-server writes once it listens
    /// (`<exe>_<pid>.ports` in `ports_file_dir`), the leafnode port from
    /// its `/varz`. `None` until they are all there.
    fn learn_ports(&self, pid: u32) -> Option<Ports> {
        let suffix = format!("_{pid}.ports");
        let file = std::fs::read_dir(&self.ports_dir)
            .ok()?
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().ends_with(&suffix))?;
        let v: Value = serde_json::from_slice(&std::fs::read(file.path()).ok()?).ok()?;
        // URLs such as "tls://127.0.0.1:4222"; only the port is needed
        // (inside a namespace the host is the namespace's own address).
        let port_of = |key: &str| -> Option<u16> {
            let url = v[key].as_array()?.first()?.as_str()?;
            url.rsplit_once(':')?.1.parse().ok()
        };
        let client = port_of("nats")?;
        let monitor = port_of("monitoring")?;
        let leaf = if self.with_leaf {
            let varz: Value = serde_json::from_str(&http_get(self.host, monitor, "/varz")?).ok()?;
            u16::try_from(varz["leaf"]["port"].as_u64()?)
                .ok()
                .filter(|p| *p != 0)?
        } else {
            0
        };
        Some(Ports {
            client,
            monitor,
            leaf,
        })
    }

    fn running(&self) -> bool {
        self.child.is_some()
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "{} is already running", self.name);
        std::fs::write(&self.conf, self.render_conf())
            .unwrap_or_else(|e| panic!("write {}: {e}", self.conf.display()));
        // Appended to, so the log of a restarted server tells its whole story.
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open nats-server log");
        // `ip netns exec` execs the server, so the child is the server
        // itself and killing it kills the server.
        let mut command = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        let child = command
            .arg("-c")
            .arg(&self.conf)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {} ({}): {e}", self.name, self.bin.display()));
        self.child = Some(child);
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until `/healthz` reports the server healthy, which nats-server
    /// only does once its listeners accept connections and JetStream is up.
    /// (Probing the TLS client port with a bare TCP connect would work too
    /// but leaves a "TLS handshake error" in the log for every probe.)
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    self.child = None;
                    panic!(
                        "{} nats-server exited ({status}) during start\n--- log ---\n{}",
                        self.name,
                        self.log_tail()
                    );
                }
            }
            if !self.ports_known() {
                if let Some(ports) = self.child.as_ref().and_then(|c| self.learn_ports(c.id())) {
                    self.ports = ports;
                }
            }
            let healthy = self.ports_known()
                && http_get(self.host, self.ports.monitor, "/healthz")
                    .is_some_and(|b| b.contains("\"status\":\"ok\""));
            if healthy {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} nats-server was not ready within {START_DEADLINE:?}\n--- log ---\n{}",
                self.name,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let mut text = String::new();
        let _ = File::open(&self.log).and_then(|mut f| f.read_to_string(&mut text));
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }
}

/// Body of `GET path` on a monitoring port, or `None` when the server does
/// not answer (yet).
fn http_get(host: Ipv4Addr, port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(
        &std::net::SocketAddr::from((host, port)),
        Duration::from_secs(2),
    )
    .ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
}

fn write(dir: &Path, name: &str, contents: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, contents).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    p
}

/// A path as a quoted nats-server config string.
fn q(p: &Path) -> String {
    serde_json::to_string(&p.display().to_string()).expect("quote path")
}

fn ca_cert_params(cn: &str) -> CertificateParams {
    let mut p = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name.push(DnType::CommonName, cn);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p
}

/// The `nats` claim of an account: no limits on connections, subjects or
/// leafnodes, and, with `jetstream`, unlimited JetStream (an account gets
/// JetStream only when its JWT grants storage).
fn account_nats(jetstream: bool) -> Value {
    let mut limits = json!({
        "subs": -1, "data": -1, "payload": -1,
        "imports": -1, "exports": -1, "wildcards": true,
        "conn": -1, "leaf": -1,
    });
    if jetstream {
        for k in ["mem_storage", "disk_storage", "streams", "consumer"] {
            limits[k] = json!(-1);
        }
    }
    json!({
        "limits": limits,
        "default_permissions": { "pub": {}, "sub": {} },
        "type": "account",
        "version": 2,
    })
}

/// A `.creds` file for a fresh user of `account` with publish permissions
/// `publish` (`{}` = all, `{"deny": [...]}`, ...), in the layout `nsc`
/// writes and nats-server and the clients parse.
fn creds_file(account: &KeyPair, name: &str, publish: Value) -> String {
    creds_file_expiring(account, name, publish, None)
}

/// [`creds_file`] with the JWT's `exp` claim set to `exp`.
fn creds_file_expiring(account: &KeyPair, name: &str, publish: Value, exp: Option<u64>) -> String {
    let user = KeyPair::new_user();
    let jwt = encode_jwt_expiring(
        account,
        &user.public_key(),
        name,
        json!({
            "pub": publish,
            "sub": {},
            "subs": -1, "data": -1, "payload": -1,
            "type": "user",
            "version": 2,
        }),
        exp,
    );
    let seed = user.seed().expect("user seed");
    format!(
        "-----BEGIN NATS USER JWT-----\n{jwt}\n------END NATS USER JWT------\n\n\
         ************************* IMPORTANT *************************\n\
         NKEY Seed printed below can be used to sign and prove identity.\n\
         NKEYs are sensitive and should be treated as secrets.\n\n\
         -----BEGIN USER NKEY SEED-----\n{seed}\n------END USER NKEY SEED------\n\n\
         *************************************************************\n"
    )
}

/// Encodes and signs a NATS JWT (nats-io/jwt v2 layout) for `subject`,
/// issued by `issuer`, with `nats` as its type-specific claim.
fn encode_jwt(issuer: &KeyPair, subject: &str, name: &str, nats: Value) -> String {
    encode_jwt_expiring(issuer, subject, name, nats, None)
}

/// [`encode_jwt`] with an `exp` claim (seconds since 1970) when given.
fn encode_jwt_expiring(
    issuer: &KeyPair,
    subject: &str,
    name: &str,
    nats: Value,
    exp: Option<u64>,
) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let iat = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    let iss = issuer.public_key();
    // The jti is a hash of the standard claims without the jti, in the Go
    // struct's field order (iat, iss, name, sub for the ones set here):
    // base32 without padding of SHA-512/256, as jwt v2 computes it. Servers
    // do not check it, but it keeps our tokens indistinguishable from nsc's.
    let std_claims = format!(
        "{{\"iat\":{iat},\"iss\":{},\"name\":{},\"sub\":{}}}",
        json!(iss),
        json!(name),
        json!(subject)
    );
    let jti = data_encoding::BASE32_NOPAD.encode(&sha2::Sha512_256::digest(std_claims.as_bytes()));
    let mut claims = json!({
        "jti": jti,
        "iat": iat,
        "iss": iss,
        "name": name,
        "sub": subject,
        "nats": nats,
    });
    if let Some(exp) = exp {
        claims["exp"] = json!(exp);
    }
    let header = b64.encode(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let payload = b64.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let sig = issuer
        .sign(signing_input.as_bytes())
        .expect("sign JWT with nkey");
    format!("{signing_input}.{}", b64.encode(sig))
}
