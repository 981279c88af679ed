//! The HTTP server provider as the host sees it.
//!
//! With the `http` cargo feature (on by default) this is
//! `twig-http-server`: `wasi:http` for handler components and one hyper
//! listener per `wasi:http/incoming-handler` link. A board that serves no
//! HTTP builds without it, and hyper is not linked in; then the same names
//! exist here, a component importing `wasi:http` fails to place and a
//! `twig:http-server` provider fails to start, each with an error that
//! names the missing feature. This module is the only place the feature
//! is looked at.

use std::collections::BTreeMap;
use std::sync::Weak;

use twig_component::Linker;

use crate::host::{HostInner, InstanceData};

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
    use std::sync::Arc;
    use std::time::Duration;

    pub use twig_http_server::{HttpCtx, HttpServer, HttpTypes};

    impl twig_http_server::HttpView for InstanceData {
        fn http(&mut self) -> &mut HttpCtx {
            &mut self.http
        }
    }

    /// Adds `wasi:http` (types and outgoing-handler) for a component that
    /// imports it.
    pub(crate) fn add_to_linker(
        linker: &mut Linker<InstanceData>,
        wasi_types: twig_wasi::WasiTypes,
    ) -> Result<HttpTypes, String> {
        Ok(twig_http_server::add_to_linker(linker, wasi_types))
    }

    /// Starts a listener, configured from a link's source config, that
    /// runs each request on `target`'s `wasi:http/incoming-handler`.
    pub(crate) fn start_server(
        host: Weak<HostInner>,
        target: &str,
        config: &BTreeMap<String, String>,
    ) -> Result<HttpServer, String> {
        let cfg = twig_http_server::ServerConfig::from_link_config(config)
            .map_err(|e| format!("link to `{target}`: source config: {e}"))?;
        let dispatch = Arc::new(HttpDispatch {
            target: target.to_string(),
            host,
        });
        HttpServer::start(cfg, target, dispatch)
    }

    /// The body of a 503 for a request that never reached the component.
    const UNAVAILABLE: &str = "the component is not available";

    /// Runs HTTP requests on a component's `wasi:http/incoming-handler`.
    struct HttpDispatch {
        target: String,
        host: Weak<HostInner>,
    }

    impl twig_http_server::Dispatch for HttpDispatch {
        fn dispatch(
            &self,
            req: twig_http_server::IncomingRequest,
            out: twig_http_server::ResponseOutparam,
        ) -> Result<(), String> {
            // A request that never reaches the component (host stopping,
            // component not running, every instance busy) gets 503, so the
            // client knows to retry; one the component failed gets 500.
            // The reason can name data-dir paths (an image that failed to
            // load): the client reads a fixed text, the server logs `why`
            // with the component's name.
            let unavailable = |out: twig_http_server::ResponseOutparam, why: String| {
                out.reject(503, UNAVAILABLE);
                Err(why)
            };
            let Some(host) = self.host.upgrade() else {
                return unavailable(out, "the host is shutting down".into());
            };
            let pool = match host.running_pool(&self.target) {
                Ok(pool) => pool,
                Err(e) => return unavailable(out, e),
            };
            let Some(types) = pool.http_types() else {
                return unavailable(
                    out,
                    format!(
                        "`{}` does not use wasi:http, so it cannot handle HTTP requests",
                        self.target
                    ),
                );
            };
            let wait = Duration::from_millis(host.board.limits.deadline_ms);
            let slot = std::cell::RefCell::new(Some((req, out)));
            let result = pool.with_instance(wait, |inst| {
                let (req, out) = slot
                    .borrow_mut()
                    .take()
                    .ok_or_else(|| "request already handled".to_string())?;
                twig_http_server::call_handler(inst, &types, req, out)
            });
            match (result, slot.into_inner()) {
                (Err(why), Some((_req, out))) => unavailable(out, why),
                (result, _) => result,
            }
        }
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

    pub(crate) fn add_to_linker(
        _linker: &mut Linker<InstanceData>,
        _wasi_types: twig_wasi::WasiTypes,
    ) -> Result<HttpTypes, String> {
        Err(format!("it imports wasi:http, but {NOT_BUILT}"))
    }

    pub(crate) fn start_server(
        _host: Weak<HostInner>,
        _target: &str,
        _config: &BTreeMap<String, String>,
    ) -> Result<HttpServer, String> {
        Err(format!("cannot serve HTTP: {NOT_BUILT}"))
    }
}
