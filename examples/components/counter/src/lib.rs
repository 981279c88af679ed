//! `counter`: an HTTP component that counts requests per path.
//!
//! Every request increments the counter named by the request path in the
//! `default` bucket of whatever `wasi:keyvalue` store the component is
//! linked to, and answers `Counter PATH: N` (the body ends with the new
//! count). A `link_name=NAME` query parameter picks another named
//! `wasi:keyvalue` link for this request through `wasmcloud:bus/lattice`
//! `set-link-name`, so one component can count in two stores.
//!
//! Written against `wasmcloud-component` 0.2 only, like wasmCloud's own
//! examples, so the same binary runs on a wasmCloud host with its Redis or
//! NATS key-value provider and on twig with its built-in store.

use wasmcloud_component::http;
use wasmcloud_component::wasi::keyvalue::{atomics, store};
use wasmcloud_component::wasmcloud::bus::lattice;

struct Counter;

http::export!(Counter);

/// The value of query parameter `name` in `query` (`a=1&b=2`), if present.
fn query_param<'q>(query: &'q str, name: &str) -> Option<&'q str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

fn internal(what: &str, e: impl std::fmt::Debug) -> http::ErrorCode {
    http::ErrorCode::InternalError(Some(format!("{what}: {e:?}")))
}

impl http::Server for Counter {
    fn handle(
        request: http::IncomingRequest,
    ) -> http::Result<http::Response<impl http::OutgoingBody>> {
        let (parts, _body) = request.into_parts();
        let path = parts.uri.path().to_string();
        let link = parts
            .uri
            .query()
            .and_then(|q| query_param(q, "link_name"))
            .unwrap_or("default");

        lattice::set_link_name(
            link,
            vec![
                lattice::CallTargetInterface::new("wasi", "keyvalue", "store"),
                lattice::CallTargetInterface::new("wasi", "keyvalue", "atomics"),
            ],
        )
        .map_err(|e| internal("set-link-name", e))?;

        let bucket = store::open("default").map_err(|e| internal("open bucket", e))?;
        let count = atomics::increment(&bucket, &path, 1).map_err(|e| internal("increment", e))?;
        Ok(http::Response::new(format!("Counter {path}: {count}")))
    }
}
