//! Size probe: `size-host` plus twig-http-server (wasi:http on the linker,
//! the server, call_handler). The stripped size difference is what the
//! provider adds to twig; see README.md.
#![forbid(unsafe_code)]

use std::sync::{Arc, Mutex};

use twig_component::{Component, Instance, Linker};
use twig_http_server::{HttpCtx, HttpTypes, HttpView, IncomingRequest, ResponseOutparam};
use twig_wasi::{WasiCtx, WasiView};

struct Ctx(WasiCtx, HttpCtx);

impl WasiView for Ctx {
    fn wasi(&mut self) -> &mut WasiCtx {
        &mut self.0
    }
}

impl HttpView for Ctx {
    fn http(&mut self) -> &mut HttpCtx {
        &mut self.1
    }
}

struct One(Mutex<Instance<Ctx>>, HttpTypes);

impl twig_http_server::Dispatch for One {
    fn dispatch(&self, req: IncomingRequest, out: ResponseOutparam) -> Result<(), String> {
        let mut inst = self.0.lock().map_err(|e| e.to_string())?;
        twig_http_server::call_handler(&mut inst, &self.1, req, out)
    }
}

fn main() {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: size-host-http COMPONENT.wasm");
        return;
    };
    let engine = twig_component::Engine::default();
    let bytes = std::fs::read(path).expect("read");
    let component = Component::new(&engine, "probe", &bytes).expect("load");
    let mut linker: Linker<Ctx> = Linker::new();
    let wasi = twig_wasi::add_to_linker(&mut linker);
    let types = twig_http_server::add_to_linker(&mut linker, wasi);
    let inst =
        Instance::new(&linker, &component, Ctx(WasiCtx::new(), HttpCtx::new())).expect("instance");
    let cfg = twig_http_server::ServerConfig {
        address: "127.0.0.1:0".parse().expect("addr"),
        ..Default::default()
    };
    let server =
        twig_http_server::HttpServer::start(cfg, "probe", Arc::new(One(Mutex::new(inst), types)))
            .expect("start");
    println!("listening on {}", server.local_addr());
    std::thread::park();
}
