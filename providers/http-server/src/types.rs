//! `wasi:http/types` and `wasi:http/outgoing-handler` on a twig linker.
//!
//! Every resource the guest holds is a `rep` into the instance's
//! [`HttpCtx`]; bodies become `wasi:io/streams` streams in the instance's
//! `WasiCtx` (see the private `body` module), so the guest reads and writes them with
//! the ordinary stream and poll functions.
//!
//! The server side is complete. The client side (`outgoing-request`,
//! `request-options`, `outgoing-handler.handle`) is implemented as plain
//! data up to `handle`, which answers `internal-error`: a guest that tries
//! outgoing HTTP gets an error code it can report, not a trap halfway
//! through building the request. Nothing can produce an
//! `incoming-response` or `future-incoming-response`, so their functions
//! fall through to a fallback that fails the call with a clear message.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use twig_component::{Args, HostContext, HostError, Linker, Resource, Val};
use twig_wasi::{StreamError, WasiTypes, WasiView};

use crate::body::{BodyReader, BodyWriter, End, Pipe, ReaderGuard};
use crate::fields::{Fields, FieldsError, MAX_BYTES, MAX_ENTRIES};
use crate::request::{IncomingRequest, Outcome, ResponseOutparam};

/// The `wasi:http` version registered; the linker's semver rule lets it
/// satisfy every 0.2.x import.
pub const WASI_HTTP_VERSION: &str = "0.2.6";

/// Most `wasi:http` objects (fields, bodies, requests, ...) one instance
/// may hold at once. A request needs about ten.
pub const MAX_OBJECTS: usize = 1024;

/// Most bytes of header names and values all of one instance's objects
/// may hold together. Each `fields` is capped on its own too, but a guest
/// could otherwise keep a thousand copies of the request headers.
pub const MAX_HEADER_BYTES: usize = 1 << 20;

const NO_TRAILERS: &str = "twig's HTTP server does not send trailers";
const NO_CLIENT: &str = "outgoing HTTP is not available on twig";

/// Resource type ids of `wasi:http/types`, as registered on a linker, and
/// the WASI ones they refer to.
#[derive(Debug, Clone, Copy)]
pub struct HttpTypes {
    pub fields: u32,
    pub incoming_request: u32,
    pub outgoing_request: u32,
    pub request_options: u32,
    pub response_outparam: u32,
    pub incoming_response: u32,
    pub incoming_body: u32,
    pub future_trailers: u32,
    pub outgoing_response: u32,
    pub outgoing_body: u32,
    pub future_incoming_response: u32,
    pub wasi: WasiTypes,
}

/// Gives `wasi:http` host functions access to the HTTP state inside the
/// embedder's per-instance data.
pub trait HttpView {
    fn http(&mut self) -> &mut HttpCtx;
}

impl HttpView for HttpCtx {
    fn http(&mut self) -> &mut HttpCtx {
        self
    }
}

/// A response body the guest is writing.
struct OutBody {
    pipe: Arc<Pipe>,
    written: Arc<AtomicU64>,
    limit: Option<u64>,
    /// The `output-stream` handed out by `write`, in the `WasiCtx`.
    stream: Option<u32>,
    finished: bool,
    /// The body of an outgoing request (discarded, never sent).
    client: bool,
}

impl OutBody {
    fn abort(&mut self, why: &str) {
        self.finished = true;
        self.pipe.end(End::Failed(why.to_string()));
    }
}

impl Drop for OutBody {
    fn drop(&mut self) {
        // WASI: a body dropped without `finish` is incomplete; the client
        // must see a broken response rather than a short one that looks
        // whole. This also runs when the call ends with the body unfinished
        // (the guest trapped or forgot), as `HttpCtx::end_call` drops all.
        if !self.finished {
            self.abort("the component did not finish the response body");
        }
    }
}

struct OutResponse {
    status: u16,
    headers: Fields,
    /// Set by `body()`; the server streams it once the response is set.
    body: Option<Arc<Pipe>>,
}

struct OutRequest {
    method: Val,
    path_with_query: Option<String>,
    scheme: Option<Val>,
    authority: Option<String>,
    headers: Fields,
    body_taken: bool,
}

enum Object {
    Fields(Fields),
    IncomingRequest(IncomingRequest),
    IncomingBody {
        guard: Arc<ReaderGuard>,
        stream_taken: bool,
    },
    FutureTrailers {
        pipe: Arc<Pipe>,
        taken: bool,
    },
    OutgoingResponse(OutResponse),
    OutgoingBody(OutBody),
    ResponseOutparam(ResponseOutparam),
    OutgoingRequest(OutRequest),
    /// connect, first-byte and between-bytes timeouts (ns).
    RequestOptions([Option<u64>; 3]),
}

impl Object {
    fn header_bytes(&self) -> usize {
        match self {
            Object::Fields(f) => f.bytes(),
            Object::IncomingRequest(r) => r.headers.bytes(),
            Object::OutgoingResponse(r) => r.headers.bytes(),
            Object::OutgoingRequest(r) => r.headers.bytes(),
            _ => 0,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Object::Fields(_) => "fields",
            Object::IncomingRequest(_) => "incoming-request",
            Object::IncomingBody { .. } => "incoming-body",
            Object::FutureTrailers { .. } => "future-trailers",
            Object::OutgoingResponse(_) => "outgoing-response",
            Object::OutgoingBody(_) => "outgoing-body",
            Object::ResponseOutparam(_) => "response-outparam",
            Object::OutgoingRequest(_) => "outgoing-request",
            Object::RequestOptions(_) => "request-options",
        }
    }
}

/// `wasi:http` state of one component instance: the objects behind the
/// guest's handles. Request-scoped: [`crate::call_handler`] clears it when
/// the handler returns, as a fresh wasmtime store per request would.
#[derive(Default)]
pub struct HttpCtx {
    objects: HashMap<u32, Object>,
    next_rep: u32,
    /// Bodies of requests given to this instance's current call.
    request_pipes: Vec<Arc<Pipe>>,
    /// `wasi:io` streams made for the current call, removed from the
    /// instance's `WasiCtx` when it ends (see [`HttpCtx::take_call_streams`]).
    call_streams: Vec<u32>,
}

impl HttpCtx {
    pub fn new() -> HttpCtx {
        HttpCtx::default()
    }

    /// Objects currently held (for diagnostics and tests).
    pub fn live_objects(&self) -> usize {
        self.objects.len()
    }

    /// Fails when `extra` more header bytes would exceed
    /// [`MAX_HEADER_BYTES`]. Summing on demand is cheap: at most
    /// [`MAX_OBJECTS`] objects, and only header-making calls check.
    fn check_header_budget(&self, extra: usize) -> Result<(), HostError> {
        let held: usize = self.objects.values().map(Object::header_bytes).sum();
        if held + extra > MAX_HEADER_BYTES {
            return Err(HostError::new(format!(
                "wasi:http header fields of this instance exceed twig's limit of {MAX_HEADER_BYTES} bytes"
            )));
        }
        Ok(())
    }

    fn insert(&mut self, o: Object) -> Result<u32, HostError> {
        if self.objects.len() >= MAX_OBJECTS {
            return Err(HostError::new(format!(
                "too many wasi:http objects (limit {MAX_OBJECTS} per instance)"
            )));
        }
        let extra = o.header_bytes();
        if extra > 0 {
            self.check_header_budget(extra)?;
        }
        // Reps are not reused soon, so a handle leaked from an earlier
        // request can never reach an object of a later one.
        self.next_rep = self.next_rep.wrapping_add(1).max(1);
        let rep = self.next_rep;
        self.objects.insert(rep, o);
        Ok(rep)
    }

    fn get_mut(&mut self, rep: u32) -> Result<&mut Object, HostError> {
        self.objects
            .get_mut(&rep)
            .ok_or_else(|| HostError::new(format!("unknown wasi:http object {rep}")))
    }

    fn take(&mut self, rep: u32) -> Result<Object, HostError> {
        self.objects
            .remove(&rep)
            .ok_or_else(|| HostError::new(format!("unknown wasi:http object {rep}")))
    }

    fn fields(&mut self, rep: u32) -> Result<&mut Fields, HostError> {
        match self.get_mut(rep)? {
            Object::Fields(f) => Ok(f),
            o => Err(wrong(rep, o.kind(), "fields")),
        }
    }

    /// Adds the request and response slot of a new call.
    pub(crate) fn begin_call(
        &mut self,
        req: IncomingRequest,
        out: ResponseOutparam,
    ) -> Result<(u32, u32), HostError> {
        self.end_call(None);
        let mut out = out;
        out.given = true;
        self.request_pipes.push(req.pipe.clone());
        let r = self.insert(Object::IncomingRequest(req))?;
        let o = self.insert(Object::ResponseOutparam(out))?;
        Ok((r, o))
    }

    /// Ends a call: a response slot still unset gets `NoResponse` (or the
    /// call's failure), unfinished response bodies are aborted, request
    /// bodies are closed for reading, and every object goes.
    pub(crate) fn end_call(&mut self, failure: Option<String>) {
        let reps: Vec<u32> = self
            .objects
            .iter()
            .filter(|(_, o)| matches!(o, Object::ResponseOutparam(_)))
            .map(|(r, _)| *r)
            .collect();
        for rep in reps {
            if let Some(Object::ResponseOutparam(out)) = self.objects.remove(&rep) {
                out.send(match &failure {
                    Some(m) => Outcome::Failed(m.clone()),
                    None => Outcome::NoResponse,
                });
            }
        }
        self.objects.clear();
        for p in self.request_pipes.drain(..) {
            p.close_reader();
        }
    }

    /// The `wasi:io` streams handed out during the call that just ended.
    pub(crate) fn take_call_streams(&mut self) -> Vec<u32> {
        std::mem::take(&mut self.call_streams)
    }
}

fn wrong(rep: u32, is: &str, want: &str) -> HostError {
    HostError::new(format!("wasi:http object {rep} is a {is}, not a {want}"))
}

// ---- value helpers --------------------------------------------------------

/// A `list<u8>` inside an argument (a header value), copied out.
fn bytes_of(v: &Val) -> Result<Vec<u8>, HostError> {
    v.bytes()
        .map(|b| b.into_owned())
        .ok_or_else(|| HostError::new("expected list<u8>"))
}

fn own(ty: u32, rep: u32) -> Val {
    Val::Resource(Resource::host_own(ty, rep))
}

fn case(name: &str, payload: Option<Val>) -> Val {
    Val::Variant(name.to_string(), payload.map(Box::new))
}

/// `error-code::internal-error(some(msg))`.
pub(crate) fn internal_error(msg: &str) -> Val {
    case(
        "internal-error",
        Some(Val::some(Val::String(msg.to_string()))),
    )
}

/// The result of a `fields` mutation for the guest.
fn fields_result(r: Result<(), FieldsError>) -> Result<Val, HostError> {
    match r {
        Ok(()) => Ok(Val::ok(None)),
        Err(FieldsError::Header(e)) => Ok(Val::err(Some(case(e.case(), None)))),
        Err(FieldsError::TooLarge) => Err(HostError::new(format!(
            "header fields exceed twig's limit of {MAX_ENTRIES} entries or {MAX_BYTES} bytes"
        ))),
    }
}

fn method_val(m: &hyper::http::Method) -> Val {
    use hyper::http::Method;
    let name = match *m {
        Method::GET => "get",
        Method::HEAD => "head",
        Method::POST => "post",
        Method::PUT => "put",
        Method::DELETE => "delete",
        Method::CONNECT => "connect",
        Method::OPTIONS => "options",
        Method::TRACE => "trace",
        Method::PATCH => "patch",
        _ => return case("other", Some(Val::String(m.as_str().to_string()))),
    };
    case(name, None)
}

fn entries_val(f: &Fields) -> Val {
    Val::List(
        f.entries()
            .iter()
            .map(|(k, v)| {
                Val::Tuple(vec![
                    Val::String(k.as_str().to_string()),
                    Val::Bytes(v.as_bytes().to_vec()),
                ])
            })
            .collect(),
    )
}

/// Renders an `error-code` the guest reported, for the log and the 500
/// body: `internal-error: msg`, `HTTP-request-body-size`, ...
pub(crate) fn describe_error_code(v: &Val) -> String {
    fn inner(v: &Val) -> String {
        match v {
            Val::String(s) => s.clone(),
            Val::Option(None) => String::new(),
            Val::Option(Some(v)) => inner(v),
            Val::Variant(name, None) | Val::Enum(name) => name.clone(),
            Val::U8(n) => n.to_string(),
            Val::U16(n) => n.to_string(),
            Val::U32(n) => n.to_string(),
            Val::U64(n) => n.to_string(),
            Val::Variant(name, Some(p)) => {
                let p = inner(p);
                if p.is_empty() {
                    name.clone()
                } else {
                    format!("{name}: {p}")
                }
            }
            Val::Record(fields) => fields
                .iter()
                .map(|(k, v)| format!("{k}={}", inner(v)))
                .collect::<Vec<_>>()
                .join(", "),
            other => format!("{other:?}"),
        }
    }
    inner(v)
}

/// A pollable that is always ready, for futures that are complete the
/// moment they are made (request trailers).
///
/// twig-wasi has no public constructor for pollables, but every WASI
/// resource lives in one object table and its `pollable` functions treat
/// any object that is not a timer or a stream subscription as ready. So an
/// empty input stream, handed out under the `pollable` resource type, is an
/// always-ready pollable, and the guest dropping it removes it like any
/// other. (A `WasiCtx::push_ready_pollable` would say this directly.)
fn ready_pollable<T: WasiView + HttpView>(
    cx: &mut HostContext<'_, T>,
    ty: &HttpTypes,
) -> Result<Val, HostError> {
    struct Empty;
    impl twig_wasi::InputStream for Empty {
        fn read(&mut self, _max: usize) -> Result<Vec<u8>, StreamError> {
            Err(StreamError::Closed)
        }
        fn is_ready(&mut self) -> bool {
            true
        }
        fn wait(&mut self, _until: Option<std::time::Instant>) {}
    }
    let rep = cx.data_mut().wasi().push_input_stream(Box::new(Empty))?;
    cx.data_mut().http().call_streams.push(rep);
    Ok(own(ty.wasi.pollable, rep))
}

// ---- registration ---------------------------------------------------------

/// Registers `wasi:http/types` and `wasi:http/outgoing-handler` (at
/// [`WASI_HTTP_VERSION`]) on `linker`. `wasi` are the ids from
/// `twig_wasi::add_to_linker` on the same linker.
pub fn add_to_linker<T: HttpView + WasiView + 'static>(
    linker: &mut Linker<T>,
    wasi: WasiTypes,
) -> HttpTypes {
    let iface = format!("wasi:http/types@{WASI_HTTP_VERSION}");
    let dtor = |t: &mut T, rep: u32| {
        // Dropping the object does the work: an unfinished body aborts, a
        // response slot answers 500, a request body closes.
        t.http().objects.remove(&rep);
    };
    let ty = HttpTypes {
        fields: linker.resource(&iface, "fields", dtor),
        incoming_request: linker.resource(&iface, "incoming-request", dtor),
        outgoing_request: linker.resource(&iface, "outgoing-request", dtor),
        request_options: linker.resource(&iface, "request-options", dtor),
        response_outparam: linker.resource(&iface, "response-outparam", dtor),
        incoming_response: linker.resource(&iface, "incoming-response", dtor),
        incoming_body: linker.resource(&iface, "incoming-body", dtor),
        future_trailers: linker.resource(&iface, "future-trailers", dtor),
        outgoing_response: linker.resource(&iface, "outgoing-response", dtor),
        outgoing_body: linker.resource(&iface, "outgoing-body", dtor),
        future_incoming_response: linker.resource(&iface, "future-incoming-response", dtor),
        wasi,
    };
    add_fields(linker, &iface, ty);
    add_incoming(linker, &iface, ty);
    add_outgoing(linker, &iface, ty);
    add_client(linker, &iface, ty);
    ty
}

fn add_fields<T: HttpView + WasiView + 'static>(
    linker: &mut Linker<T>,
    iface: &str,
    ty: HttpTypes,
) {
    let i = linker.interface(iface);
    i.func("[constructor]fields", move |cx, _args, out| {
        let rep = cx
            .data_mut()
            .http()
            .insert(Object::Fields(Fields::default()))?;
        out.push(own(ty.fields, rep));
        Ok(())
    });
    i.func("[static]fields.from-list", move |cx, args, out| {
        let Some(Val::List(items)) = args.first() else {
            return Err(HostError::new("from-list: expected a list of entries"));
        };
        let mut list = Vec::with_capacity(items.len().min(MAX_ENTRIES));
        for item in items {
            match item {
                Val::Tuple(t) if t.len() == 2 => match &t[0] {
                    Val::String(n) => list.push((n.clone(), bytes_of(&t[1])?)),
                    _ => return Err(HostError::new("from-list: expected (string, list<u8>)")),
                },
                _ => return Err(HostError::new("from-list: expected (string, list<u8>)")),
            }
        }
        match Fields::from_list(list) {
            Ok(f) => {
                let rep = cx.data_mut().http().insert(Object::Fields(f))?;
                out.push(Val::ok(Some(own(ty.fields, rep))));
            }
            Err(e) => out.push(fields_result(Err(e))?),
        }
        Ok(())
    });
    i.func("[method]fields.get", |cx, args, out| {
        let a = Args::new(args);
        let (r, name) = (a.resource(0)?, a.string(1)?);
        let f = cx.data_mut().http().fields(r.rep)?;
        out.push(Val::List(
            f.get(name)
                .into_iter()
                .map(|v| Val::Bytes(v.as_bytes().to_vec()))
                .collect(),
        ));
        Ok(())
    });
    i.func("[method]fields.has", |cx, args, out| {
        let a = Args::new(args);
        let (r, name) = (a.resource(0)?, a.string(1)?);
        out.push(Val::Bool(cx.data_mut().http().fields(r.rep)?.has(name)));
        Ok(())
    });
    i.func("[method]fields.set", |cx, args, out| {
        let a = Args::new(args);
        let (r, name) = (a.resource(0)?, a.string(1)?);
        let values = match args.get(2) {
            Some(Val::List(vs)) => vs.iter().map(bytes_of).collect::<Result<Vec<_>, _>>()?,
            _ => return Err(HostError::new("set: expected list<list<u8>>")),
        };
        let http = cx.data_mut().http();
        http.check_header_budget(values.iter().map(|v| name.len() + v.len()).sum())?;
        let res = http.fields(r.rep)?.set(name, &values);
        out.push(fields_result(res)?);
        Ok(())
    });
    i.func("[method]fields.delete", |cx, args, out| {
        let a = Args::new(args);
        let (r, name) = (a.resource(0)?, a.string(1)?);
        let res = cx.data_mut().http().fields(r.rep)?.delete(name);
        out.push(fields_result(res)?);
        Ok(())
    });
    i.func("[method]fields.append", |cx, args, out| {
        let a = Args::new(args);
        let (r, name) = (a.resource(0)?, a.string(1)?);
        let value = a.bytes(2)?.into_owned();
        let http = cx.data_mut().http();
        http.check_header_budget(name.len() + value.len())?;
        let res = http.fields(r.rep)?.append(name, &value);
        out.push(fields_result(res)?);
        Ok(())
    });
    i.func("[method]fields.entries", |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        out.push(entries_val(cx.data_mut().http().fields(r.rep)?));
        Ok(())
    });
    i.func("[method]fields.clone", move |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        let http = cx.data_mut().http();
        let copy = http.fields(r.rep)?.mutable_copy();
        let rep = http.insert(Object::Fields(copy))?;
        out.push(own(ty.fields, rep));
        Ok(())
    });
    i.func("http-error-code", |_cx, _args, out| {
        // Body stream errors carry their reason in the io-error's debug
        // string; none maps to a more specific error-code.
        out.push(Val::Option(None));
        Ok(())
    });
}

fn with_request<R>(
    http: &mut HttpCtx,
    rep: u32,
    f: impl FnOnce(&mut IncomingRequest) -> R,
) -> Result<R, HostError> {
    match http.get_mut(rep)? {
        Object::IncomingRequest(r) => Ok(f(r)),
        o => Err(wrong(rep, o.kind(), "incoming-request")),
    }
}

fn add_incoming<T: HttpView + WasiView + 'static>(
    linker: &mut Linker<T>,
    iface: &str,
    ty: HttpTypes,
) {
    let i = linker.interface(iface);
    i.func("[method]incoming-request.method", |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        out.push(with_request(cx.data_mut().http(), r.rep, |q| {
            method_val(&q.method)
        })?);
        Ok(())
    });
    i.func(
        "[method]incoming-request.path-with-query",
        |cx, args, out| {
            let r = Args::new(args).resource(0)?;
            let p = with_request(cx.data_mut().http(), r.rep, |q| q.path_with_query.clone())?;
            out.push(Val::Option(p.map(|s| Box::new(Val::String(s)))));
            Ok(())
        },
    );
    i.func("[method]incoming-request.scheme", |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        with_request(cx.data_mut().http(), r.rep, |_| ())?;
        // The server speaks plain HTTP (TLS is terminated elsewhere, if
        // anywhere, on a device).
        out.push(Val::some(case("HTTP", None)));
        Ok(())
    });
    i.func("[method]incoming-request.authority", |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        let a = with_request(cx.data_mut().http(), r.rep, |q| q.authority.clone())?;
        out.push(Val::Option(a.map(|s| Box::new(Val::String(s)))));
        Ok(())
    });
    i.func("[method]incoming-request.headers", move |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        let http = cx.data_mut().http();
        let h = with_request(http, r.rep, |q| q.headers.immutable_copy())?;
        let rep = http.insert(Object::Fields(h))?;
        out.push(own(ty.fields, rep));
        Ok(())
    });
    i.func("[method]incoming-request.consume", move |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        let http = cx.data_mut().http();
        match with_request(http, r.rep, |q| q.body.take())? {
            Some(guard) => {
                let rep = http.insert(Object::IncomingBody {
                    guard,
                    stream_taken: false,
                })?;
                out.push(Val::ok(Some(own(ty.incoming_body, rep))));
            }
            None => out.push(Val::err(None)),
        }
        Ok(())
    });
    i.func("[method]incoming-body.stream", move |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        let guard = match cx.data_mut().http().get_mut(r.rep)? {
            Object::IncomingBody {
                stream_taken: false,
                guard,
            } => guard.clone(),
            Object::IncomingBody { .. } => {
                out.push(Val::err(None));
                return Ok(());
            }
            o => return Err(wrong(r.rep, o.kind(), "incoming-body")),
        };
        let rep = cx
            .data_mut()
            .wasi()
            .push_input_stream(Box::new(BodyReader { guard }))?;
        cx.data_mut().http().call_streams.push(rep);
        if let Object::IncomingBody { stream_taken, .. } = cx.data_mut().http().get_mut(r.rep)? {
            *stream_taken = true;
        }
        out.push(Val::ok(Some(own(ty.wasi.input_stream, rep))));
        Ok(())
    });
    i.func("[static]incoming-body.finish", move |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        let http = cx.data_mut().http();
        let guard = match http.take(r.rep)? {
            Object::IncomingBody { guard, .. } => guard,
            o => return Err(wrong(r.rep, o.kind(), "incoming-body")),
        };
        // WASI asks for the stream to be dropped first, and wasmtime traps
        // otherwise; wasmcloud-component 0.2 finishes with its stream still
        // open, so twig is lenient: the body is closed, later reads of the
        // stream report `closed`.
        let pipe = guard.0.clone();
        pipe.close_reader();
        let rep = http.insert(Object::FutureTrailers { pipe, taken: false })?;
        out.push(own(ty.future_trailers, rep));
        Ok(())
    });
    i.func("[method]future-trailers.subscribe", move |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        match cx.data_mut().http().get_mut(r.rep)? {
            Object::FutureTrailers { .. } => {}
            o => return Err(wrong(r.rep, o.kind(), "future-trailers")),
        }
        out.push(ready_pollable(cx, &ty)?);
        Ok(())
    });
    i.func("[method]future-trailers.get", |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        let (pipe, taken) = match cx.data_mut().http().get_mut(r.rep)? {
            Object::FutureTrailers { pipe, taken } => {
                (pipe.clone(), std::mem::replace(taken, true))
            }
            o => return Err(wrong(r.rep, o.kind(), "future-trailers")),
        };
        // Request trailers are not passed on: the answer is ready at once,
        // "no trailers", or the error that cut the body short.
        out.push(Val::some(if taken {
            Val::err(None)
        } else {
            match pipe.failure() {
                Some(m) => Val::ok(Some(Val::err(Some(internal_error(&m))))),
                None => Val::ok(Some(Val::ok(Some(Val::Option(None))))),
            }
        }));
        Ok(())
    });
}

fn with_response<R>(
    http: &mut HttpCtx,
    rep: u32,
    f: impl FnOnce(&mut OutResponse) -> R,
) -> Result<R, HostError> {
    match http.get_mut(rep)? {
        Object::OutgoingResponse(r) => Ok(f(r)),
        o => Err(wrong(rep, o.kind(), "outgoing-response")),
    }
}

fn take_fields(http: &mut HttpCtx, rep: u32) -> Result<Fields, HostError> {
    match http.take(rep)? {
        Object::Fields(f) => Ok(f),
        o => Err(wrong(rep, o.kind(), "fields")),
    }
}

fn add_outgoing<T: HttpView + WasiView + 'static>(
    linker: &mut Linker<T>,
    iface: &str,
    ty: HttpTypes,
) {
    let i = linker.interface(iface);
    i.func("[constructor]outgoing-response", move |cx, args, out| {
        let h = Args::new(args).resource(0)?;
        let http = cx.data_mut().http();
        let mut headers = take_fields(http, h.rep)?;
        // Headers copied from a request may carry hop-by-hop ones.
        headers.remove_forbidden();
        headers.immutable = true;
        let rep = http.insert(Object::OutgoingResponse(OutResponse {
            status: 200,
            headers,
            body: None,
        }))?;
        out.push(own(ty.outgoing_response, rep));
        Ok(())
    });
    i.func("[method]outgoing-response.status-code", |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        out.push(Val::U16(with_response(cx.data_mut().http(), r.rep, |x| {
            x.status
        })?));
        Ok(())
    });
    i.func(
        "[method]outgoing-response.set-status-code",
        |cx, args, out| {
            let r = Args::new(args).resource(0)?;
            let Some(Val::U16(code)) = args.get(1) else {
                return Err(HostError::new("set-status-code: expected a u16"));
            };
            let code = *code;
            let valid = (100..=599).contains(&code);
            with_response(cx.data_mut().http(), r.rep, |x| {
                if valid {
                    x.status = code;
                }
            })?;
            out.push(if valid { Val::ok(None) } else { Val::err(None) });
            Ok(())
        },
    );
    i.func("[method]outgoing-response.headers", move |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        let http = cx.data_mut().http();
        // WASI: immutable; a copy cannot be told from a view since the
        // response's headers never change after construction.
        let h = with_response(http, r.rep, |x| x.headers.immutable_copy())?;
        let rep = http.insert(Object::Fields(h))?;
        out.push(own(ty.fields, rep));
        Ok(())
    });
    i.func("[method]outgoing-response.body", move |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        let http = cx.data_mut().http();
        let made = with_response(http, r.rep, |x| {
            if x.body.is_some() {
                return None;
            }
            let pipe = Pipe::new();
            x.body = Some(pipe.clone());
            // An invalid content-length fails the response at `set`.
            Some((pipe, x.headers.content_length().ok().flatten()))
        })?;
        match made {
            None => out.push(Val::err(None)),
            Some((pipe, limit)) => {
                let rep = http.insert(Object::OutgoingBody(OutBody {
                    pipe,
                    written: Arc::new(AtomicU64::new(0)),
                    limit,
                    stream: None,
                    finished: false,
                    client: false,
                }))?;
                out.push(Val::ok(Some(own(ty.outgoing_body, rep))));
            }
        }
        Ok(())
    });
    i.func("[method]outgoing-body.write", move |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        let writer = match cx.data_mut().http().get_mut(r.rep)? {
            Object::OutgoingBody(b) if b.stream.is_none() => BodyWriter {
                pipe: b.pipe.clone(),
                written: b.written.clone(),
                limit: b.limit,
            },
            Object::OutgoingBody(_) => {
                out.push(Val::err(None));
                return Ok(());
            }
            o => return Err(wrong(r.rep, o.kind(), "outgoing-body")),
        };
        let rep = cx.data_mut().wasi().push_output_stream(Box::new(writer))?;
        cx.data_mut().http().call_streams.push(rep);
        if let Object::OutgoingBody(b) = cx.data_mut().http().get_mut(r.rep)? {
            b.stream = Some(rep);
        }
        out.push(Val::ok(Some(own(ty.wasi.output_stream, rep))));
        Ok(())
    });
    i.func("[static]outgoing-body.finish", |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        let trailers = match args.get(1) {
            Some(Val::Option(Some(t))) => match t.as_ref() {
                Val::Resource(t) => Some(*t),
                _ => return Err(HostError::new("finish: expected option<trailers>")),
            },
            _ => None,
        };
        let mut body = match cx.data_mut().http().take(r.rep)? {
            Object::OutgoingBody(b) => b,
            o => return Err(wrong(r.rep, o.kind(), "outgoing-body")),
        };
        if let Some(t) = trailers {
            take_fields(cx.data_mut().http(), t.rep)?;
        }
        if let Some(s) = body.stream {
            if cx.data_mut().wasi().has_stream(s) {
                // As wasmtime: the stream is a child of the body and must
                // go first. (Dropping `body` here aborts the response.)
                return Err(HostError::new(
                    "outgoing-body.finish: drop the body's output-stream before finishing it",
                ));
            }
        }
        if body.client {
            body.finished = true;
            out.push(Val::ok(None));
            return Ok(());
        }
        if trailers.is_some() {
            // Refuse rather than silently drop them: the client sees a
            // broken response, the guest an error it can log.
            body.abort(NO_TRAILERS);
            out.push(Val::err(Some(internal_error(NO_TRAILERS))));
            return Ok(());
        }
        let written = body.written.load(Ordering::Relaxed);
        if let Some(limit) = body.limit {
            if written != limit {
                body.abort(&format!(
                    "response body has {written} bytes, its content-length says {limit}"
                ));
                out.push(Val::err(Some(case(
                    "HTTP-response-body-size",
                    Some(Val::some(Val::U64(written))),
                ))));
                return Ok(());
            }
        }
        body.finished = true;
        body.pipe.end(End::Done);
        out.push(Val::ok(None));
        Ok(())
    });
    i.func("[static]response-outparam.set", |cx, args, _out| {
        let p = Args::new(args).resource(0)?;
        let http = cx.data_mut().http();
        let param = match http.take(p.rep)? {
            Object::ResponseOutparam(o) => o,
            o => return Err(wrong(p.rep, o.kind(), "response-outparam")),
        };
        let outcome = match args.get(1) {
            Some(Val::Result(Ok(Some(v)))) => match v.as_ref() {
                Val::Resource(r) => match http.take(r.rep)? {
                    Object::OutgoingResponse(resp) => Outcome::Response {
                        status: resp.status,
                        headers: resp.headers,
                        body: resp.body,
                    },
                    o => return Err(wrong(r.rep, o.kind(), "outgoing-response")),
                },
                _ => return Err(HostError::new("set: expected an outgoing-response")),
            },
            Some(Val::Result(Err(Some(code)))) => Outcome::GuestError(describe_error_code(code)),
            _ => {
                return Err(HostError::new(
                    "set: expected result<outgoing-response, error-code>",
                ))
            }
        };
        param.send(outcome);
        Ok(())
    });
}

fn with_out_request<R>(
    http: &mut HttpCtx,
    rep: u32,
    f: impl FnOnce(&mut OutRequest) -> R,
) -> Result<R, HostError> {
    match http.get_mut(rep)? {
        Object::OutgoingRequest(r) => Ok(f(r)),
        o => Err(wrong(rep, o.kind(), "outgoing-request")),
    }
}

fn with_options<R>(
    http: &mut HttpCtx,
    rep: u32,
    f: impl FnOnce(&mut [Option<u64>; 3]) -> R,
) -> Result<R, HostError> {
    match http.get_mut(rep)? {
        Object::RequestOptions(o) => Ok(f(o)),
        o => Err(wrong(rep, o.kind(), "request-options")),
    }
}

fn add_client<T: HttpView + WasiView + 'static>(
    linker: &mut Linker<T>,
    iface: &str,
    ty: HttpTypes,
) {
    let i = linker.interface(iface);
    i.func("[constructor]outgoing-request", move |cx, args, out| {
        let h = Args::new(args).resource(0)?;
        let http = cx.data_mut().http();
        let mut headers = take_fields(http, h.rep)?;
        headers.remove_forbidden();
        headers.immutable = true;
        let rep = http.insert(Object::OutgoingRequest(OutRequest {
            method: case("get", None),
            path_with_query: None,
            scheme: None,
            authority: None,
            headers,
            body_taken: false,
        }))?;
        out.push(own(ty.outgoing_request, rep));
        Ok(())
    });
    i.func("[method]outgoing-request.body", move |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        let http = cx.data_mut().http();
        if with_out_request(http, r.rep, |q| std::mem::replace(&mut q.body_taken, true))? {
            out.push(Val::err(None));
            return Ok(());
        }
        // Accepted and discarded: `handle` refuses the request anyway.
        let rep = http.insert(Object::OutgoingBody(OutBody {
            pipe: Pipe::discarding(),
            written: Arc::new(AtomicU64::new(0)),
            limit: None,
            stream: None,
            finished: false,
            client: true,
        }))?;
        out.push(Val::ok(Some(own(ty.outgoing_body, rep))));
        Ok(())
    });
    i.func("[method]outgoing-request.method", |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        out.push(with_out_request(cx.data_mut().http(), r.rep, |q| {
            q.method.clone()
        })?);
        Ok(())
    });
    i.func("[method]outgoing-request.set-method", |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        let m = args
            .get(1)
            .cloned()
            .ok_or_else(|| HostError::new("set-method: expected a method"))?;
        with_out_request(cx.data_mut().http(), r.rep, |q| q.method = m)?;
        out.push(Val::ok(None));
        Ok(())
    });
    i.func(
        "[method]outgoing-request.path-with-query",
        |cx, args, out| {
            let r = Args::new(args).resource(0)?;
            let p = with_out_request(cx.data_mut().http(), r.rep, |q| q.path_with_query.clone())?;
            out.push(Val::Option(p.map(|s| Box::new(Val::String(s)))));
            Ok(())
        },
    );
    i.func(
        "[method]outgoing-request.set-path-with-query",
        |cx, args, out| {
            let r = Args::new(args).resource(0)?;
            let p = Args::new(args).opt_string(1)?;
            with_out_request(cx.data_mut().http(), r.rep, |q| q.path_with_query = p)?;
            out.push(Val::ok(None));
            Ok(())
        },
    );
    i.func("[method]outgoing-request.scheme", |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        let s = with_out_request(cx.data_mut().http(), r.rep, |q| q.scheme.clone())?;
        out.push(Val::Option(s.map(Box::new)));
        Ok(())
    });
    i.func("[method]outgoing-request.set-scheme", |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        let s = match args.get(1) {
            Some(Val::Option(s)) => s.as_ref().map(|v| v.as_ref().clone()),
            _ => return Err(HostError::new("set-scheme: expected option<scheme>")),
        };
        with_out_request(cx.data_mut().http(), r.rep, |q| q.scheme = s)?;
        out.push(Val::ok(None));
        Ok(())
    });
    i.func("[method]outgoing-request.authority", |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        let a = with_out_request(cx.data_mut().http(), r.rep, |q| q.authority.clone())?;
        out.push(Val::Option(a.map(|s| Box::new(Val::String(s)))));
        Ok(())
    });
    i.func("[method]outgoing-request.set-authority", |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        let a = Args::new(args).opt_string(1)?;
        with_out_request(cx.data_mut().http(), r.rep, |q| q.authority = a)?;
        out.push(Val::ok(None));
        Ok(())
    });
    i.func("[method]outgoing-request.headers", move |cx, args, out| {
        let r = Args::new(args).resource(0)?;
        let http = cx.data_mut().http();
        let h = with_out_request(http, r.rep, |q| q.headers.immutable_copy())?;
        let rep = http.insert(Object::Fields(h))?;
        out.push(own(ty.fields, rep));
        Ok(())
    });
    i.func("[constructor]request-options", move |cx, _args, out| {
        let rep = cx
            .data_mut()
            .http()
            .insert(Object::RequestOptions([None; 3]))?;
        out.push(own(ty.request_options, rep));
        Ok(())
    });
    for (idx, name) in [
        "connect-timeout",
        "first-byte-timeout",
        "between-bytes-timeout",
    ]
    .into_iter()
    .enumerate()
    {
        i.func(
            &format!("[method]request-options.{name}"),
            move |cx, args, out| {
                let r = Args::new(args).resource(0)?;
                let v = with_options(cx.data_mut().http(), r.rep, |o| o[idx])?;
                out.push(Val::Option(v.map(|d| Box::new(Val::U64(d)))));
                Ok(())
            },
        );
        i.func(
            &format!("[method]request-options.set-{name}"),
            move |cx, args, out| {
                let r = Args::new(args).resource(0)?;
                let d = match args.get(1) {
                    Some(Val::Option(None)) => None,
                    Some(Val::Option(Some(v))) => match v.as_ref() {
                        Val::U64(d) => Some(*d),
                        _ => return Err(HostError::new("expected option<duration>")),
                    },
                    _ => return Err(HostError::new("expected option<duration>")),
                };
                with_options(cx.data_mut().http(), r.rep, |o| o[idx] = d)?;
                out.push(Val::ok(None));
                Ok(())
            },
        );
    }
    // incoming-response and future-incoming-response can never exist, and
    // a newer 0.2.x may add functions (e.g. the unstable
    // `response-outparam.send-informational`): fail such calls plainly.
    i.fallback(|name, _cx, _args, _out| {
        Err(HostError::new(format!(
            "wasi:http/types `{name}` is not available on twig ({NO_CLIENT}; the server side is)"
        )))
    });

    linker
        .interface(&format!("wasi:http/outgoing-handler@{WASI_HTTP_VERSION}"))
        .func("handle", |cx, args, out| {
            let http = cx.data_mut().http();
            // Both arguments are owned: release them.
            if let Ok(r) = Args::new(args).resource(0) {
                http.objects.remove(&r.rep);
            }
            if let Some(Val::Option(Some(o))) = args.get(1) {
                if let Val::Resource(o) = o.as_ref() {
                    http.objects.remove(&o.rep);
                }
            }
            out.push(Val::err(Some(internal_error(NO_CLIENT))));
            Ok(())
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::fields::HeaderError;

    #[test]
    fn header_copies_share_one_budget() {
        let mut http = HttpCtx::new();
        let mut f = Fields::default();
        for i in 0..60 {
            f.append(&format!("x-{i}"), &[b'v'; 1000]).unwrap();
        }
        let mut made = 0;
        let err = loop {
            match http.insert(Object::Fields(f.immutable_copy())) {
                Ok(_) => made += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(made, MAX_HEADER_BYTES / f.bytes());
        assert!(err.message().contains("exceed"), "{err}");
        http.end_call(None);
        assert_eq!(http.live_objects(), 0);
        http.insert(Object::Fields(f)).unwrap();
    }

    #[test]
    fn error_codes_render_readably() {
        assert_eq!(
            describe_error_code(&internal_error("boom")),
            "internal-error: boom"
        );
        assert_eq!(
            describe_error_code(&case(
                "HTTP-request-body-size",
                Some(Val::some(Val::U64(5)))
            )),
            "HTTP-request-body-size: 5"
        );
        assert_eq!(
            describe_error_code(&case("DNS-timeout", None)),
            "DNS-timeout"
        );
        let _ = HeaderError::Forbidden.case();
    }
}
