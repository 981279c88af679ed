//! Size probe, baseline for the whole provider: a minimal twig-like host
//! (engine, WASI, a tokio runtime) that runs a component's export given on
//! the command line. Compare with `size-host-http`; see README.md.
#![forbid(unsafe_code)]

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(path), Some(export)) = (args.get(1), args.get(2)) else {
        eprintln!("usage: size-host COMPONENT.wasm EXPORT");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .expect("runtime");
    let engine = twig_component::Engine::default();
    let bytes = std::fs::read(path).expect("read");
    let component = twig_component::Component::new(&engine, "probe", &bytes).expect("load");
    let mut linker = twig_component::Linker::new();
    twig_wasi::add_to_linker(&mut linker);
    let mut inst = twig_component::Instance::new(&linker, &component, twig_wasi::WasiCtx::new())
        .expect("instance");
    rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        println!("{}", l.local_addr().expect("addr"));
    });
    println!("{:?}", inst.call(export, &[]));
}
