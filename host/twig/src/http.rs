//! `wasi:http` and HTTP listeners, with or without the `http` cargo
//! feature.
//!
//! With the feature (on by default) these names are `twig-http-server`'s:
//! `wasi:http` for handler components and hyper listeners. A board that
//! serves no HTTP builds without it, and hyper is not linked in; then the
//! same names exist here with no values (uninhabited types), a component
//! importing `wasi:http` fails to place and a `twig:http-server` provider
//! fails to start, each with an error that names the missing feature.
//! This module is the only place the feature is looked at; the provider
//! itself ([`crate::providers::http`]) is written once, against these
//! names.

use std::collections::BTreeMap;
use std::sync::Arc;

use twig_component::Linker;

#[cfg(feature = "http")]
pub use enabled::*;

#[cfg(not(feature = "http"))]
pub use disabled::*;

/// The message a build without HTTP gives.
#[cfg_attr(feature = "http", allow(dead_code))]
const NOT_BUILT: &str = "this twig was built without HTTP support (cargo feature `http`)";

#[cfg(feature = "http")]
mod enabled {
    use super::*;

    pub use twig_http_server::{
        call_handler, Dispatch, HttpCtx, HttpServer, HttpTypes, HttpView, IncomingRequest,
        ResponseOutparam, Routing,
    };

    /// Adds `wasi:http` (types and outgoing-handler) for a component that
    /// imports it.
    pub fn add_to_linker<T: HttpView + twig_wasi::WasiView + 'static>(
        linker: &mut Linker<T>,
        wasi_types: twig_wasi::WasiTypes,
    ) -> Result<HttpTypes, String> {
        Ok(twig_http_server::add_to_linker(linker, wasi_types))
    }

    /// Starts a listener, configured from a link's source config, that
    /// hands each request to `dispatch`.
    pub fn start_server(
        target: &str,
        config: &BTreeMap<String, String>,
        dispatch: Arc<dyn Dispatch>,
    ) -> Result<HttpServer, String> {
        let cfg = twig_http_server::ServerConfig::from_link_config(config)
            .map_err(|e| format!("link to `{target}`: source config: {e}"))?;
        HttpServer::start(cfg, target, dispatch)
    }

    /// Starts one listener, configured from the provider's own config,
    /// whose requests go to `routes` (`(target, path or host, dispatch)`)
    /// by `routing` (path or host).
    pub fn start_routed(
        provider: &str,
        config: &BTreeMap<String, String>,
        routing: Routing,
        routes: Vec<(String, String, Arc<dyn Dispatch>)>,
    ) -> Result<HttpServer, String> {
        let cfg = twig_http_server::ServerConfig::from_link_config(config)
            .map_err(|e| format!("provider `{provider}` config: {e}"))?;
        let router = twig_http_server::Router::new(routing, routes)
            .map_err(|e| format!("provider `{provider}`: {e}"))?;
        HttpServer::start(cfg, provider, Arc::new(router))
    }
}

#[cfg(not(feature = "http"))]
mod disabled {
    use super::*;

    /// No request objects without HTTP.
    #[derive(Default)]
    pub struct HttpCtx;

    impl HttpCtx {
        pub fn new() -> HttpCtx {
            HttpCtx
        }
    }

    /// How instance data holds its (empty) HTTP context.
    pub trait HttpView {
        fn http(&mut self) -> &mut HttpCtx;
    }

    /// Never made: no component gets `wasi:http` in this build.
    #[derive(Clone, Copy)]
    pub enum HttpTypes {}

    /// Never made: no listener starts in this build.
    pub enum HttpServer {}

    impl HttpServer {
        pub fn local_addr(&self) -> std::net::SocketAddr {
            match *self {}
        }
    }

    /// Never made: no request arrives in this build.
    pub enum IncomingRequest {}

    /// Never made: no request arrives in this build.
    pub enum ResponseOutparam {}

    impl ResponseOutparam {
        pub fn reject(self, _status: u16, _reason: &str) {
            match self {}
        }
    }

    /// What a listener hands its requests to.
    pub trait Dispatch: Send + Sync + 'static {
        fn dispatch(&self, req: IncomingRequest, out: ResponseOutparam) -> Result<(), String>;
    }

    pub fn call_handler<T>(
        _inst: &mut twig_component::Instance<T>,
        types: &HttpTypes,
        _req: IncomingRequest,
        _out: ResponseOutparam,
    ) -> Result<(), String> {
        match *types {}
    }

    pub fn add_to_linker<T>(
        _linker: &mut Linker<T>,
        _wasi_types: twig_wasi::WasiTypes,
    ) -> Result<HttpTypes, String> {
        Err(format!("it imports wasi:http, but {NOT_BUILT}"))
    }

    pub fn start_server(
        _target: &str,
        _config: &BTreeMap<String, String>,
        _dispatch: Arc<dyn Dispatch>,
    ) -> Result<HttpServer, String> {
        Err(format!("cannot serve HTTP: {NOT_BUILT}"))
    }

    /// The routing modes' names exist, so that the provider reads its
    /// config the same way; nothing is ever served.
    pub enum Routing {
        Address,
        Path,
        Host,
    }

    impl Routing {
        pub fn from_provider_config(_config: &BTreeMap<String, String>) -> Result<Routing, String> {
            Err(format!("cannot serve HTTP: {NOT_BUILT}"))
        }

        pub fn link_key(&self) -> Option<&'static str> {
            match self {
                Routing::Address => None,
                Routing::Path => Some("path"),
                Routing::Host => Some("host"),
            }
        }
    }

    pub fn start_routed(
        _provider: &str,
        _config: &BTreeMap<String, String>,
        _routing: Routing,
        _routes: Vec<(String, String, Arc<dyn Dispatch>)>,
    ) -> Result<HttpServer, String> {
        Err(format!("cannot serve HTTP: {NOT_BUILT}"))
    }
}
