//! `twig:http-server`: one listener per `wasi:http/incoming-handler` link,
//! each running its requests on the link target's handler export. The
//! listener itself is `twig-http-server` (see [`crate::http`] for builds
//! without the `http` feature).

use std::any::Any;
use std::sync::{Arc, Mutex, Weak};

use super::{merged_properties, LinkContext, Provider, ProviderKind};
use crate::host::pool::{CallError, Directory};
use crate::http;
use crate::sync::lock;

/// A running HTTP server provider and its listeners.
#[derive(Default)]
pub struct HttpProvider {
    listeners: Mutex<Vec<http::HttpServer>>,
}

impl Provider for HttpProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::HttpServer
    }

    fn start_links(&self, cx: &LinkContext<'_>) -> Result<(), String> {
        let links: Vec<_> = cx
            .links
            .iter()
            .filter(|l| {
                l.namespace == "wasi"
                    && l.package == "http"
                    && l.interfaces.iter().any(|i| i == "incoming-handler")
            })
            .collect();
        let dispatch = |link: &twig_manifest::Link| -> Arc<dyn http::Dispatch> {
            Arc::new(HttpDispatch {
                target: link.target_id.clone(),
                host: cx.host.clone(),
            })
        };
        let routing = http::Routing::from_provider_config(cx.config)
            .map_err(|e| format!("provider `{}` config: {e}", cx.provider))?;
        let Some(key) = routing.link_key() else {
            // Address mode: a listener per link, at its `address`, else the
            // provider's `default_address`, else 0.0.0.0:8000.
            for link in links {
                let mut config = merged_properties(&link.source_config);
                if let Some(d) = cx.config.get("default_address") {
                    config
                        .entry("default_address".into())
                        .or_insert_with(|| d.clone());
                }
                let server = http::start_server(&link.target_id, &config, dispatch(link))?;
                tracing::info!(app = %cx.app, provider = %cx.provider, target = %link.target_id, address = %server.local_addr(), "serving HTTP");
                lock(&self.listeners).push(server);
            }
            return Ok(());
        };
        // Path or host mode: one listener, set up by the provider's own
        // config, each link naming its route in its source config.
        let mut routes = Vec::new();
        for link in &links {
            let config = merged_properties(&link.source_config);
            let Some(route) = config.get(key) else {
                return Err(format!(
                    "{key} not found in link config, cannot register {key} for component {}",
                    link.target_id
                ));
            };
            // wasmCloud matches the raw value exactly; clients send host
            // names in lower case, so a capital letter is likely a route
            // that never matches.
            if key == "host" && route.chars().any(|c| c.is_ascii_uppercase()) {
                tracing::warn!(app = %cx.app, provider = %cx.provider, target = %link.target_id, "host route `{route}` has capital letters; it is matched exactly, and clients usually send host names in lower case");
            }
            routes.push((link.target_id.clone(), route.clone(), dispatch(link)));
        }
        let described: Vec<String> = routes
            .iter()
            .map(|(t, r, _)| format!("{r} -> {t}"))
            .collect();
        let server = http::start_routed(cx.provider, cx.config, routing, routes)?;
        tracing::info!(app = %cx.app, provider = %cx.provider, address = %server.local_addr(), routes = %described.join(", "), "serving HTTP ({key} routing)");
        lock(&self.listeners).push(server);
        Ok(())
    }

    fn stop_links(&self) {
        // Dropping a listener stops it and frees its port.
        lock(&self.listeners).clear();
    }

    fn status(&self) -> Option<String> {
        let addrs: Vec<String> = lock(&self.listeners)
            .iter()
            .map(|l| l.local_addr().to_string())
            .collect();
        (!addrs.is_empty()).then(|| format!("serving on {}", addrs.join(", ")))
    }

    fn as_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// The body of a 503 for a request that never reached the component.
const UNAVAILABLE: &str = "the component is not available";

/// Runs HTTP requests on a component's `wasi:http/incoming-handler`.
struct HttpDispatch {
    target: String,
    host: Weak<dyn Directory>,
}

impl http::Dispatch for HttpDispatch {
    fn dispatch(
        &self,
        req: http::IncomingRequest,
        out: http::ResponseOutparam,
    ) -> Result<(), String> {
        // A request that never reaches the component (host stopping,
        // component not running, every instance busy) gets 503, so the
        // client knows to retry; one the component failed gets 500.
        // The reason can name data-dir paths (an image that failed to
        // load): the client reads a fixed text, the server logs `why`
        // with the component's name.
        let unavailable = |out: http::ResponseOutparam, why: String| {
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
        let (_trace, trace_id) = crate::trace::enter(None);
        let _span = crate::trace::call_span(
            "http",
            &self.target,
            "wasi:http/incoming-handler#handle",
            trace_id,
        )
        .entered();
        let slot = std::cell::RefCell::new(Some((req, out)));
        let result = pool.with_instance(host.call_wait(), |inst| {
            let (req, out) = slot
                .borrow_mut()
                .take()
                .ok_or_else(|| CallError::Refused("request already handled".into()))?;
            http::call_handler(inst, &types, req, out).map_err(CallError::Failed)
        });
        match (result, slot.into_inner()) {
            // The request never reached the guest: 503, worth a retry.
            (Err(why), Some((_req, out))) => unavailable(out, why.to_string()),
            (result, _) => result.map_err(|e| e.to_string()),
        }
    }
}
