//! wasmCloud's http-server routing modes: one listener per link
//! (`address`, the default), or one listener whose requests go to a
//! component by exact path (`path`) or by the exact value of a header,
//! `Host` unless the provider config names another (`host`).
//!
//! The rules follow wasmCloud 1.9's provider (`crates/provider-http-server`
//! on release-1.9.x, `lib.rs` mode selection, `path.rs`, `host.rs`): the
//! mode is the provider config's `routing_mode`, matched exactly; a path
//! matches without its query and without any normalisation; a host
//! matches the raw header value, port included; no match is 404, a
//! missing or non-text routing header 400.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::{Dispatch, IncomingRequest, ResponseOutparam};

/// How a provider's links share listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Routing {
    /// A listener per link, at the link's `address`.
    Address,
    /// One listener; each link's `path` names its component's path.
    Path,
    /// One listener; each link's `host` is matched against header
    /// `header` (lower case).
    Host { header: String },
}

impl Routing {
    /// The mode a provider config asks for (`routing_mode`: `address`,
    /// `path` or `host`, exactly; absent means `address`; `header` names
    /// the routing header in host mode).
    pub fn from_provider_config(config: &BTreeMap<String, String>) -> Result<Routing, String> {
        match config.get("routing_mode").map(String::as_str) {
            None | Some("address") => Ok(Routing::Address),
            Some("path") => Ok(Routing::Path),
            Some("host") => {
                let header = config
                    .get("header")
                    .map(|h| h.to_ascii_lowercase())
                    .unwrap_or_else(|| "host".into());
                // A name no request can carry would route nothing: say so
                // when the provider starts, not with a 400 on every request.
                if hyper::http::HeaderName::from_bytes(header.as_bytes()).is_err() {
                    return Err(format!(
                        "routing header `{header}` (provider config `header`) is not a valid HTTP header name"
                    ));
                }
                Ok(Routing::Host { header })
            }
            Some(other) => Err(format!(
                "unknown routing_mode: {other} (expected address, path or host)"
            )),
        }
    }

    /// The link config key that names a link's route in this mode.
    pub fn link_key(&self) -> Option<&'static str> {
        match self {
            Routing::Address => None,
            Routing::Path => Some("path"),
            Routing::Host { .. } => Some("host"),
        }
    }
}

/// One listener's requests, sent to a component by path or by host.
pub struct Router {
    routing: Routing,
    routes: BTreeMap<String, Arc<dyn Dispatch>>,
}

impl Router {
    /// A router for `routing` (path or host) with one route per
    /// `(target, route, dispatch)`. A route used twice is refused, naming
    /// both targets.
    pub fn new(
        routing: Routing,
        routes: Vec<(String, String, Arc<dyn Dispatch>)>,
    ) -> Result<Router, String> {
        let what = routing
            .link_key()
            .ok_or("address routing needs no router (a listener per link)")?;
        let mut map: BTreeMap<String, Arc<dyn Dispatch>> = BTreeMap::new();
        let mut owner: BTreeMap<String, String> = BTreeMap::new();
        for (target, route, dispatch) in routes {
            if let Some(first) = owner.get(&route) {
                return Err(format!(
                    "{what} `{route}` is already in use by `{first}`; `{target}` needs another"
                ));
            }
            owner.insert(route.clone(), target);
            map.insert(route, dispatch);
        }
        Ok(Router {
            routing,
            routes: map,
        })
    }
}

impl Router {
    /// The component a request goes to, or the status and reason wasmCloud's
    /// provider answers when there is none (404 no route, 400 a missing or
    /// non-text routing header).
    fn route(&self, req: &IncomingRequest) -> Result<&Arc<dyn Dispatch>, (u16, &'static str)> {
        let key = match &self.routing {
            Routing::Path => {
                let p = req.path_with_query().unwrap_or("/");
                p.split('?').next().unwrap_or(p)
            }
            Routing::Host { header } => match req.header(header).map(std::str::from_utf8) {
                None => return Err((400, "missing host header")),
                Some(Err(_)) => return Err((400, "invalid host header")),
                Some(Ok(h)) => h,
            },
            Routing::Address => "",
        };
        self.routes.get(key).ok_or(match self.routing {
            Routing::Host { .. } => (404, "host not found"),
            _ => (404, "path not found"),
        })
    }
}

impl Dispatch for Router {
    fn dispatch(&self, req: IncomingRequest, out: ResponseOutparam) -> Result<(), String> {
        match self.route(&req) {
            Ok(d) => d.dispatch(req, out),
            Err((status, reason)) => {
                out.reject(status, reason);
                Ok(())
            }
        }
    }

    fn refuse(&self, req: &IncomingRequest) -> Option<(u16, &'static str)> {
        self.route(req).err()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn modes_are_read_exactly_as_wasmcloud_does() {
        assert_eq!(
            Routing::from_provider_config(&cfg(&[])),
            Ok(Routing::Address)
        );
        assert_eq!(
            Routing::from_provider_config(&cfg(&[("routing_mode", "path")])),
            Ok(Routing::Path)
        );
        assert_eq!(
            Routing::from_provider_config(&cfg(&[("routing_mode", "host"), ("header", "X-Site")])),
            Ok(Routing::Host {
                header: "x-site".into()
            })
        );
        let e = Routing::from_provider_config(&cfg(&[("routing_mode", "Path")])).unwrap_err();
        assert!(e.starts_with("unknown routing_mode: Path"), "{e}");
        let e =
            Routing::from_provider_config(&cfg(&[("routing_mode", "host"), ("header", "x site")]))
                .unwrap_err();
        assert!(
            e.contains("`x site`") && e.contains("not a valid HTTP header name"),
            "{e}"
        );
    }

    struct Nobody;
    impl Dispatch for Nobody {
        fn dispatch(&self, _: IncomingRequest, _: ResponseOutparam) -> Result<(), String> {
            Ok(())
        }
    }

    #[test]
    fn a_route_taken_twice_is_refused_naming_both() {
        let d: Arc<dyn Dispatch> = Arc::new(Nobody);
        let e = Router::new(
            Routing::Path,
            vec![
                ("a".into(), "/x".into(), d.clone()),
                ("b".into(), "/x".into(), d),
            ],
        )
        .err()
        .expect("refused");
        assert_eq!(e, "path `/x` is already in use by `a`; `b` needs another");
    }
}
