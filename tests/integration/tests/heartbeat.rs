//! The control plane never stalls: heartbeats keep their interval (1 s
//! here, ±25 %) while the host compiles a large component for a lattice
//! `component.scale`, and while a burst of 1,000 remote calls arrives from
//! the unmodified `wrpc-transport-nats` client. Heartbeats are read on the
//! real topology (core + leaf nats-server, TLS, creds), as the core sees
//! them.
//!
//! Figures from these runs are in BENCHMARKS.md ("Heartbeats under load").

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats_039 as nats;
use futures::StreamExt as _;
use twig_integration_tests::topology::Topology;
use twig_integration_tests::twig::{demo_manifest, lattice_args, TempDir, Twig};
use wrpc_transport::InvokeExt as _;

const INTERVAL: Duration = Duration::from_secs(1);

/// The greeter's `greet` takes and returns a plain string.
const NO_PATHS: [&[Option<usize>]; 0] = [];

/// A component of `modules` core modules, each with as many functions as
/// a module may have (wasmparser's limit, 1,000,000) of a little
/// arithmetic; no imports, no exports. Validating and compiling so many
/// functions is what takes the time (about 1 s per module for a debug
/// twig on a 2-core machine; four make the 5 s compile issue 20 asks for).
fn big_component(modules: u32) -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, Component, Function, FunctionSection, InstanceSection, Instruction, Module,
        ModuleArg, ModuleSection, TypeSection, ValType,
    };
    const FUNCS: usize = 1_000_000;
    let mut types = TypeSection::new();
    types.ty().function([], [ValType::I32]);
    let mut functions = FunctionSection::new();
    let mut code = CodeSection::new();
    for i in 0..FUNCS {
        functions.function(0);
        let mut f = Function::new([]);
        f.instruction(&Instruction::I32Const((i % 64) as i32));
        f.instruction(&Instruction::I32Const(7));
        f.instruction(&Instruction::I32Add);
        f.instruction(&Instruction::End);
        code.function(&f);
    }
    let mut module = Module::new();
    module.section(&types).section(&functions).section(&code);
    let mut component = Component::new();
    let mut instances = InstanceSection::new();
    for m in 0..modules {
        component.section(&ModuleSection(&module));
        instances.instantiate(m, Vec::<(&str, ModuleArg)>::new());
    }
    component.section(&instances);
    component.finish()
}

/// Arrival times of this host's heartbeats, as the core's subscriber sees
/// them.
struct Heartbeats(Arc<Mutex<Vec<Instant>>>);

impl Heartbeats {
    async fn watch(nc: &nats::Client, host: &str) -> Heartbeats {
        let mut sub = nc
            .subscribe("wasmbus.evt.default.host_heartbeat")
            .await
            .expect("subscribe to heartbeats");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (s, host) = (seen.clone(), host.to_string());
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let at = Instant::now();
                let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_default();
                if v["source"] == host.as_str() {
                    s.lock().unwrap().push(at);
                }
            }
        });
        Heartbeats(seen)
    }

    fn count(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Gaps between the heartbeats that arrived from `from` on (the first
    /// one after `from` counts from the one before it).
    fn gaps_since(&self, from: Instant) -> Vec<Duration> {
        let all = self.0.lock().unwrap().clone();
        let first = all.iter().position(|t| *t >= from).unwrap_or(all.len());
        all[first.saturating_sub(1)..]
            .windows(2)
            .map(|w| w[1] - w[0])
            .collect()
    }

    async fn wait_for(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.count() < n {
            assert!(
                Instant::now() < deadline,
                "only {} heartbeats",
                self.count()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The headers a wasmCloud 1.x host puts on an invocation.
fn headers() -> nats::HeaderMap {
    let mut h = nats::HeaderMap::new();
    h.insert("source-id", "heartbeat-test");
    h.insert("link-name", "default");
    h
}

fn assert_steady(what: &str, gaps: &[Duration]) {
    assert!(
        gaps.len() >= 3,
        "{what}: only {} heartbeat gaps",
        gaps.len()
    );
    let (lo, hi) = (INTERVAL.mul_f64(0.75), INTERVAL.mul_f64(1.25));
    let ms: Vec<u128> = gaps.iter().map(|g| g.as_millis()).collect();
    eprintln!("{what}: heartbeat gaps (ms) {ms:?}");
    assert!(
        gaps.iter().all(|g| *g >= lo && *g <= hi),
        "{what}: a heartbeat gap left 1 s ± 25 %: {ms:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_their_interval_through_a_long_compile_and_a_call_burst() {
    let dir = TempDir::new("heartbeat");
    // The large component sits in a directory the lattice may run from.
    let big_dir = dir.path().join("big");
    std::fs::create_dir_all(&big_dir).unwrap();
    let big = big_dir.join("big.wasm");
    let modules: u32 = std::env::var("TWIG_HEARTBEAT_MODULES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4);
    let bytes = big_component(modules);
    let size_mb = bytes.len() >> 20;
    std::fs::write(&big, bytes).unwrap();

    let topo = Topology::start();
    let mut args = lattice_args(&topo);
    let q = |p: &std::path::Path| serde_json::to_string(&p.display().to_string()).unwrap();
    args.extend([
        "--app".to_string(),
        demo_manifest(),
        "--control".into(),
        "serve_device_components=true".into(),
        "--control".into(),
        format!(
            "file_dirs=[{}, {}]",
            q(&twig_integration_tests::twig::guests_dir()),
            q(&big_dir)
        ),
    ]);
    // The sim board, with an image cap that takes the large component.
    let sim = std::fs::read_to_string(
        twig_integration_tests::twig::repo_root().join("boards/sim/board.toml"),
    )
    .unwrap();
    assert!(
        sim.contains("max_image_mib = 32"),
        "the sim board's image cap moved"
    );
    let board = dir.path().join("board.toml");
    std::fs::write(
        &board,
        sim.replace("max_image_mib = 32", "max_image_mib = 64"),
    )
    .unwrap();
    args.extend(["--board".to_string(), board.display().to_string()]);
    let twig = Twig::up_in(&dir, "data", &args);
    // The scale below is a control request: wait until they are heard.
    twig.wait_serving();
    let host = twig.host_id();

    let nc = topo.leaf_client().await.unwrap_or_else(|e| panic!("{e}"));
    let beats = Heartbeats::watch(&nc, &host).await;
    beats.wait_for(3).await;

    // 1. A compile that takes seconds, asked for by the lattice.
    let ctl = wasmcloud_control_interface::ClientBuilder::new(nc.clone())
        .timeout(Duration::from_secs(120))
        .build();
    let started = Instant::now();
    let scaled = ctl
        .scale_component(
            &host,
            &format!("file://{}", big.display()),
            "big",
            1,
            None,
            vec![],
            false,
        )
        .await
        .expect("scale request");
    assert!(scaled.succeeded(), "{:?}", scaled.message());
    // The scale answers at once and compiles after: wait for it to run.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let s = twig.status();
        let found = s["apps"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|a| a["components"].as_array().cloned().unwrap_or_default())
            .find(|c| c["id"] == "big");
        let state = found
            .as_ref()
            .map(|c| c["state"].to_string())
            .unwrap_or_default();
        let reason = found
            .as_ref()
            .map(|c| c["reason"].to_string())
            .unwrap_or_default();
        let state = state.trim_matches('"');
        if state == "running" {
            break;
        }
        assert!(
            state != "failed" && Instant::now() < deadline,
            "big: {state} {reason}\n{}",
            twig.log_text()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let compile = started.elapsed();
    eprintln!("compile of a {size_mb} MiB component took {compile:?}");
    // Two more beats after it, so the gaps around its end count too.
    let n = beats.count();
    beats.wait_for(n + 2).await;
    assert_steady("during the compile", &beats.gaps_since(started));

    // 2. A burst of 1,000 remote calls at once.
    let greeter = wrpc_transport_nats::Client::new(nc.clone(), "default.twig_demo-greeter", None)
        .await
        .expect("wrpc client");
    // Wait until the greeter is served.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = tokio::time::timeout(
            Duration::from_secs(3),
            greeter.invoke_values_blocking::<_, (String,), (String,)>(
                Some(headers()),
                "twig:demo/greeter@0.1.0",
                "greet",
                ("Ada".to_string(),),
                NO_PATHS,
            ),
        )
        .await;
        if matches!(r, Ok(Ok(_))) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the greeter is never served: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Bursts of 1,000 calls at once, one after another, for 4 s.
    let burst = Instant::now();
    let (mut sent, mut answered) = (0, 0);
    while burst.elapsed() < Duration::from_secs(4) {
        let calls = (0..1000).map(|i| {
            let greeter = greeter.clone();
            async move {
                tokio::time::timeout(
                    Duration::from_secs(3),
                    greeter.invoke_values_blocking::<_, (String,), (String,)>(
                        Some(headers()),
                        "twig:demo/greeter@0.1.0",
                        "greet",
                        (format!("n{i}"),),
                        NO_PATHS,
                    ),
                )
                .await
            }
        });
        let results = futures::future::join_all(calls).await;
        sent += results.len();
        answered += results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count();
    }
    eprintln!(
        "bursts: {answered} of {sent} calls answered in {:?} (the rest refused at the per-component cap)",
        burst.elapsed()
    );
    assert!(answered > 0, "no call of the burst was answered");
    let n = beats.count();
    beats.wait_for(n + 2).await;
    assert_steady("during the call burst", &beats.gaps_since(burst));
    drop(ctl);
}
