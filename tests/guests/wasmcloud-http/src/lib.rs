//! `wasmcloud-http`: the canonical wasmCloud HTTP component shape: implement
//! `wasmcloud_component::http::Server` and export it as
//! `wasi:http/incoming-handler`. Answers every request with
//! "hello from wasmcloud-component" (status 200). It deliberately does not
//! log, so its imports stay within what `wasmtime serve` provides (the
//! `wasmcloud` guest covers `wasi:logging`).

use wasmcloud_component::http;

struct Component;

http::export!(Component);

impl http::Server for Component {
    fn handle(
        _request: http::IncomingRequest,
    ) -> http::Result<http::Response<impl http::OutgoingBody>> {
        Ok(http::Response::new("hello from wasmcloud-component"))
    }
}
