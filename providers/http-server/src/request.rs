//! The two objects a request hands to a guest: the request itself and the
//! slot its response goes into.
//!
//! Both are made by the server on its async runtime and moved, through the
//! embedder's [`crate::Dispatch`], onto the blocking thread that runs the
//! guest; [`crate::call_handler`] puts them into the instance's
//! [`crate::HttpCtx`] as the `incoming-request` and `response-outparam`
//! resources of `wasi:http/incoming-handler.handle`.

use std::sync::Arc;

use hyper::http::Method;
use tokio::sync::oneshot;

use crate::body::{Pipe, ReaderGuard};
use crate::fields::Fields;

/// An HTTP request on its way to a guest: method, target, headers and the
/// body, which is still arriving from the client while the guest reads it.
pub struct IncomingRequest {
    pub(crate) method: Method,
    pub(crate) path_with_query: Option<String>,
    pub(crate) authority: Option<String>,
    pub(crate) headers: Fields,
    /// Taken by `incoming-request.consume`.
    pub(crate) body: Option<Arc<ReaderGuard>>,
    /// Kept to close the body for reading when the guest's call ends,
    /// whatever handles the guest may have leaked.
    pub(crate) pipe: Arc<Pipe>,
}

impl IncomingRequest {
    /// `authority`: what the server settled on (the target's, else `Host`,
    /// else the local address for HTTP/1.0; see `server::authority`).
    pub(crate) fn new(
        parts: &hyper::http::request::Parts,
        authority: String,
        pipe: Arc<Pipe>,
    ) -> IncomingRequest {
        IncomingRequest {
            method: parts.method.clone(),
            path_with_query: parts.uri.path_and_query().map(|p| p.to_string()),
            authority: Some(authority),
            headers: Fields::from_http(&parts.headers).immutable_copy(),
            body: Some(Arc::new(ReaderGuard(pipe.clone()))),
            pipe,
        }
    }

    /// The request method, for logs.
    pub fn method(&self) -> &str {
        self.method.as_str()
    }

    /// The path and query, for logs.
    pub fn path_with_query(&self) -> Option<&str> {
        self.path_with_query.as_deref()
    }

    /// The first value of header `name` (ASCII case-insensitive), as
    /// received: for routing by header.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .entries()
            .iter()
            .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_bytes())
    }
}

impl std::fmt::Debug for IncomingRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingRequest")
            .field("method", &self.method)
            .field("path_with_query", &self.path_with_query)
            .finish_non_exhaustive()
    }
}

/// What became of a request, as the server learns it.
pub(crate) enum Outcome {
    /// `response-outparam.set(ok(response))`: status and headers go out at
    /// once, the body (if the guest took one) as the guest writes it.
    Response {
        status: u16,
        headers: Fields,
        body: Option<Arc<Pipe>>,
    },
    /// `response-outparam.set(err(error-code))`.
    GuestError(String),
    /// The handler returned without setting a response.
    NoResponse,
    /// The call failed (trap, limit, missing export) before setting one.
    Failed(String),
    /// The embedder turned the request away itself.
    Reject { status: u16, reason: String },
}

/// The slot a guest's response goes into (`response-outparam`). Dropping
/// it unset makes the server answer 500.
pub struct ResponseOutparam {
    tx: Option<oneshot::Sender<Outcome>>,
    /// Handed to a guest: dropping it unset now means the guest did not
    /// respond (before, that the embedder never ran one).
    pub(crate) given: bool,
}

impl ResponseOutparam {
    pub(crate) fn new() -> (ResponseOutparam, oneshot::Receiver<Outcome>) {
        let (tx, rx) = oneshot::channel();
        (
            ResponseOutparam {
                tx: Some(tx),
                given: false,
            },
            rx,
        )
    }

    /// Delivers the outcome; the server may have given up on the request
    /// already (timeout, client gone), which is not the guest's concern.
    pub(crate) fn send(mut self, outcome: Outcome) {
        if let Some(tx) = self.tx.take() {
            if let Err(Outcome::Response {
                body: Some(pipe), ..
            }) = tx.send(outcome)
            {
                // Nobody will read this body (the client was answered 504
                // or 413, or left): make the guest's writes fail now
                // instead of blocking on a full pipe until its deadline.
                pipe.close_reader();
            }
        }
    }

    /// Answers the request without running a guest, e.g. 503 when the
    /// embedder has no instance to spare. `status` outside 400..=599
    /// becomes 500. `reason` is the body the client reads: a fixed public
    /// text, never an internal error (log that instead).
    pub fn reject(self, status: u16, reason: &str) {
        let status = if (400..=599).contains(&status) {
            status
        } else {
            500
        };
        self.send(Outcome::Reject {
            status,
            reason: reason.to_string(),
        });
    }
}

impl Drop for ResponseOutparam {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            if self.given {
                let _ = tx.send(Outcome::NoResponse);
            }
        }
    }
}

impl std::fmt::Debug for ResponseOutparam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseOutparam")
            .field("sent", &self.tx.is_none())
            .finish()
    }
}
