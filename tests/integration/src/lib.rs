//! Shared helpers for twig's integration tests: finding the guest
//! components that `tests/guests/build.sh` built, and a host state type with
//! WASI and the test interfaces.
#![forbid(unsafe_code)]

pub mod apps;
pub mod arbitrary;
pub mod netns;
pub mod slow_http;
pub mod soak;
pub mod topology;
pub mod twig;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use twig_component::{Component, Engine, HostError, Instance, Linker, Resource, Val};
use twig_keyvalue::component::{KeyValueCtx, KeyValueView};
use twig_messaging::{Bus, MessagingView};
use twig_wasi::{Capture, WasiCtx, WasiView};

/// Path of a built guest component, `tests/guests/out/NAME.wasm`.
///
/// Panics with instructions when the guests have not been built, so a test
/// run never passes by skipping them.
pub fn guest_path(name: &str) -> PathBuf {
    let dir = std::env::var_os("TWIG_GUESTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../guests/out"));
    let p = dir.join(format!("{name}.wasm"));
    assert!(
        p.exists(),
        "guest {} is missing: run tests/guests/build.sh first (the README's test command does)",
        p.display()
    );
    p
}

pub fn guest_bytes(name: &str) -> Vec<u8> {
    std::fs::read(guest_path(name)).expect("read guest")
}

/// Per-instance state of the tests: WASI plus anything a test records.
#[derive(Default)]
pub struct TestState {
    pub wasi: WasiCtx,
    pub calls: u32,
    /// Host `blob` resources by rep.
    pub blobs: HashMap<u32, Vec<u8>>,
    pub next_blob: u32,
    pub blobs_dropped: u32,
    /// `wasi:keyvalue` state, and the store `open` gives (none: `open`
    /// answers an error).
    pub kv: KeyValueCtx,
    pub kv_store: Option<Arc<twig_keyvalue::Store>>,
    /// The bus `wasmcloud:messaging` publishes on (none: "not linked").
    pub bus: Option<Arc<Bus>>,
    /// `wasmcloud:messaging@0.3.0` handles.
    pub messages: twig_messaging::v0_3::MessagesCtx,
}

impl TestState {
    pub fn with_wasi(wasi: WasiCtx) -> TestState {
        TestState {
            wasi,
            ..Default::default()
        }
    }
}

impl WasiView for TestState {
    fn wasi(&mut self) -> &mut WasiCtx {
        &mut self.wasi
    }
}

impl KeyValueView for TestState {
    fn keyvalue(&mut self) -> &mut KeyValueCtx {
        &mut self.kv
    }

    fn resolve_store(&mut self) -> Result<Arc<twig_keyvalue::Store>, String> {
        self.kv_store
            .clone()
            .ok_or_else(|| "no key-value store in this test".to_string())
    }
}

impl MessagingView for TestState {
    fn messaging(&self) -> Option<&Arc<Bus>> {
        self.bus.as_ref()
    }
    fn messages(&mut self) -> &mut twig_messaging::v0_3::MessagesCtx {
        &mut self.messages
    }
}

/// A linker with WASI registered.
pub fn wasi_linker() -> Linker<TestState> {
    let mut l = Linker::new();
    twig_wasi::add_to_linker(&mut l);
    l
}

/// Registers the providers' byte-taking interfaces the `misbehave` guest
/// imports: `wasi:keyvalue` (store, atomics, batch) and
/// `wasmcloud:messaging/consumer`, answering from [`TestState`].
pub fn add_providers(linker: &mut Linker<TestState>) {
    twig_keyvalue::component::add_to_linker(linker);
    twig_messaging::add_to_linker(linker);
}

/// What the `misbehave` guest needs: WASI and [`add_providers`].
pub fn misbehave_linker() -> Linker<TestState> {
    let mut l = wasi_linker();
    add_providers(&mut l);
    l
}

pub fn load(engine: &Engine, name: &str) -> Component {
    Component::new(engine, name, &guest_bytes(name)).unwrap_or_else(|e| panic!("load {name}: {e}"))
}

/// Instantiates with a fresh WASI context whose output is captured.
pub fn instantiate(linker: &Linker<TestState>, c: &Component) -> (Instance<TestState>, Capture) {
    let cap = Capture::default();
    let state = TestState::with_wasi(WasiCtx::new().capture(cap.clone()));
    let inst =
        Instance::new(linker, c, state).unwrap_or_else(|e| panic!("instantiate {}: {e}", c.name()));
    (inst, cap)
}

/// Registers the host side of the `types` world (`twig:types/values` with
/// its `blob` resource, and `twig:types/host-echo`); returns the blob
/// resource type id.
pub fn add_types_host(linker: &mut Linker<TestState>) -> u32 {
    let blob = linker.resource("twig:types/values", "blob", |s: &mut TestState, rep| {
        s.blobs.remove(&rep);
        s.blobs_dropped += 1;
    });
    let values = linker.interface("twig:types/values");
    values.func("[constructor]blob", move |cx, args, out| {
        let bytes = match args.first().and_then(Val::bytes) {
            Some(b) => b.into_owned(),
            None => return Err(HostError::new("blob: expected list<u8>")),
        };
        let s = cx.data_mut();
        s.next_blob += 1;
        let rep = s.next_blob;
        s.blobs.insert(rep, bytes);
        out.push(Val::Resource(Resource::host_own(blob, rep)));
        Ok(())
    });
    values.func("[method]blob.len", |cx, args, out| {
        let rep = blob_rep(args)?;
        let n = cx
            .data()
            .blobs
            .get(&rep)
            .map(|b| b.len())
            .ok_or_else(|| HostError::new("no such blob"))?;
        out.push(Val::U32(n as u32));
        Ok(())
    });
    values.func("[method]blob.read", |cx, args, out| {
        let rep = blob_rep(args)?;
        let b = cx
            .data()
            .blobs
            .get(&rep)
            .ok_or_else(|| HostError::new("no such blob"))?;
        out.push(Val::Bytes(b.clone()));
        Ok(())
    });
    linker
        .interface("twig:types/host-echo")
        .fallback(|name, cx, args, out| {
            cx.data_mut().calls += 1;
            if name == "echo-many-u32" {
                out.push(Val::List(args.to_vec()));
            } else {
                out.push(
                    args.first()
                        .cloned()
                        .ok_or_else(|| HostError::new("echo without argument"))?,
                );
            }
            Ok(())
        });
    blob
}

fn blob_rep(args: &[Val]) -> Result<u32, HostError> {
    match args.first() {
        Some(Val::Resource(r)) => Ok(r.rep),
        _ => Err(HostError::new("expected a blob")),
    }
}
