//! # twig-http-server: `wasi:http/incoming-handler` components over HTTP/1.1
//!
//! twig's in-process HTTP server provider. Stock `wasi:http` 0.2 server
//! components (wasmCloud's `wasmcloud-component` `http::Server`, the `wasi`
//! crate's `proxy::export!`, wit-bindgen) answer requests on a device
//! without a separate provider process.
//!
//! ## Layout and data flow
//!
//! ```text
//!  client ──TCP──► server.rs (hyper http1, own one-worker runtime)
//!                    │ IncomingRequest + ResponseOutparam (request.rs)
//!                    ▼ the same worker (one guest inline at a time), else
//!                      spawn_blocking; ≤ max_concurrent (else 503)
//!                  Dispatch::dispatch (the host: pick an instance)
//!                    ▼
//!                  call_handler ─► HttpCtx (types.rs) ─► guest's incoming-handler.handle
//!                                    │ fields.rs: header rules
//!                                    │ body.rs:  Pipe ⇄ wasi:io streams
//!                    ◄── response-outparam.set: status + headers (oneshot)
//!  client ◄── head, then body chunks as the guest writes them (Pipe, bounded)
//! ```
//!
//! * [`types`]: the `wasi:http/types` host functions, state in [`HttpCtx`]
//!   behind [`HttpView`], registered by [`add_to_linker`].
//! * [`server`]: [`HttpServer`], [`ServerConfig`] (wasmCloud's link config
//!   keys), the [`Dispatch`] hook.
//! * `body`: bounded byte pipes between hyper (async) and the guest's
//!   blocking `wasi:io/streams` calls: back-pressure both ways.
//! * `fields`: header names/values and what a guest may not set.
//!
//! ## What happens to a request
//!
//! | guest does | client gets |
//! |---|---|
//! | `response-outparam.set(ok(resp))`, writes body, `finish(body, none)` | the status and headers at once, then the body as written |
//! | `set(err(code))` | 500, `the component reported an error` (the code goes to the log) |
//! | returns without `set` | 500 |
//! | traps (or hits a limit) before `set` | 500, error logged with the component name |
//! | traps, forgets `finish`, or `finish(body, some(trailers))` after `set` | a truncated response (connection closed mid-body) |
//! | takes longer than `request_timeout` to `set` | 504 |
//! | (request body over `max_request_body`) | 413 if no response started; the guest's stream fails |
//! | (all `max_concurrent` slots busy) | 503 at once |
#![forbid(unsafe_code)]

mod body;
mod conn;
mod fields;
mod request;
pub mod routing;
pub mod server;
pub mod types;

use twig_component::{Instance, Resource, Val};
use twig_wasi::WasiView;

pub use request::{IncomingRequest, ResponseOutparam};
pub use routing::{Router, Routing};
pub use server::{Dispatch, HttpServer, ServerConfig, DEFAULT_ADDRESS};
pub use types::{add_to_linker, HttpCtx, HttpTypes, HttpView, WASI_HTTP_VERSION};

/// The export `handle` of `wasi:http/incoming-handler@0.2.x`, whatever the
/// patch version the component was built with.
pub fn handler_export<T: 'static>(inst: &Instance<T>) -> Option<String> {
    inst.export_names()
        .into_iter()
        .find(|n| n.starts_with("wasi:http/incoming-handler@0.2.") && n.ends_with("#handle"))
        .map(str::to_string)
}

/// Runs `inst`'s `wasi:http/incoming-handler.handle` for one request.
///
/// Puts the request and the response slot into the instance's
/// [`HttpCtx`], calls the guest, then clears the request's objects: a
/// response body left unfinished is aborted, a response never set becomes
/// a 500. An `Err` (trap, limit, no such export) carries the engine's
/// message, which names the component.
pub fn call_handler<T: HttpView + WasiView + 'static>(
    inst: &mut Instance<T>,
    types: &HttpTypes,
    req: IncomingRequest,
    out: ResponseOutparam,
) -> Result<(), String> {
    let Some(export) = handler_export(inst) else {
        let msg = format!(
            "{}: does not export wasi:http/incoming-handler@0.2.x#handle (exports: {})",
            inst.component_name(),
            inst.export_names().join(", ")
        );
        out.send(request::Outcome::Failed(msg.clone()));
        return Err(msg);
    };
    let (r, o) = inst
        .data_mut()
        .http()
        .begin_call(req, out)
        .map_err(|e| format!("{}: {e}", inst.component_name()))?;
    let res = inst.call(
        &export,
        &[
            Val::Resource(Resource::host_own(types.incoming_request, r)),
            Val::Resource(Resource::host_own(types.response_outparam, o)),
        ],
    );
    let failure = res.as_ref().err().map(|e| e.to_string());
    let data = inst.data_mut();
    data.http().end_call(failure.clone());
    // Body streams belong to the request: drop any the guest kept, so a
    // pooled instance does not collect them request after request.
    let kept = data
        .http()
        .take_call_streams()
        .into_iter()
        .filter(|rep| data.wasi().remove_stream(*rep))
        .count();
    if kept > 0 {
        tracing::debug!(target: "twig::http", component = %inst.component_name(), kept, "removed body streams the guest did not drop");
    }
    match failure {
        None => Ok(()),
        Some(msg) => Err(msg),
    }
}
