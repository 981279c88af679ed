//! Reading a host function's arguments and building its results.
//!
//! A host function gets its arguments as lifted [`Val`]s. Their shapes were
//! already checked against the WIT signature when they were lifted, so a
//! wrong shape here means the host registered a function under a signature
//! it does not expect: a host bug, reported as a [`HostError`] (which traps
//! the call) rather than a panic. Every binding (WASI, the providers, the
//! host's own capabilities) reads its arguments through [`Args`], so the
//! messages read the same everywhere:
//!
//! ```
//! use twig_component::{args::Args, HostError, Val};
//!
//! let vals = [Val::String("k".into()), Val::U64(7)];
//! let a = Args::new(&vals);
//! assert_eq!(a.string(0)?, "k");
//! assert_eq!(a.u64(1)?, 7);
//! assert_eq!(
//!     a.u64(0).unwrap_err().to_string(),
//!     "expected a u64 argument"
//! );
//! let kv = Args::new(&vals).context("wasi:keyvalue");
//! assert_eq!(
//!     kv.resource(0).unwrap_err().to_string(),
//!     "wasi:keyvalue: expected a resource argument"
//! );
//! # Ok::<(), HostError>(())
//! ```
//!
//! The constructors of the common result shapes ([`Val::ok`], [`Val::err`],
//! [`Val::some`]) live on [`Val`] itself.

use std::borrow::Cow;

use crate::error::HostError;
use crate::values::{Resource, Val};

/// The arguments of one host-function call, with typed accessors.
#[derive(Debug, Clone, Copy)]
pub struct Args<'a> {
    vals: &'a [Val],
    /// Prefixed to error messages (`"{context}: expected …"`); empty for
    /// none.
    context: &'static str,
}

/// An argument that is missing or not of the shape the host function
/// expects. Converts into the [`HostError`] that traps the call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}expected {expected}", Prefix(self.context))]
pub struct ArgError {
    /// The [`Args::context`], or empty.
    pub context: &'static str,
    /// Which argument, from 0.
    pub index: usize,
    /// What it should have been, as the message says it (`"a u64
    /// argument"`, `"list<u8>"`).
    pub expected: &'static str,
}

/// `"{context}: "`, or nothing for an empty context.
struct Prefix(&'static str);

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, "{}: ", self.0)
        }
    }
}

impl From<ArgError> for HostError {
    fn from(e: ArgError) -> HostError {
        HostError::new(e.to_string())
    }
}

impl<'a> Args<'a> {
    pub fn new(vals: &'a [Val]) -> Args<'a> {
        Args { vals, context: "" }
    }

    /// Names the binding in error messages: `"{context}: expected …"`.
    pub fn context(self, context: &'static str) -> Args<'a> {
        Args { context, ..self }
    }

    pub fn len(&self) -> usize {
        self.vals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vals.is_empty()
    }

    /// Argument `i` as it is, if there is one.
    pub fn get(&self, i: usize) -> Option<&'a Val> {
        self.vals.get(i)
    }

    /// Argument `i` through `pick`, or an error saying it should have been
    /// `expected` (`"a bucket handle"`). The typed accessors below are this
    /// with their own `pick` and wording.
    pub fn expect<R>(
        &self,
        i: usize,
        expected: &'static str,
        pick: impl FnOnce(&'a Val) -> Option<R>,
    ) -> Result<R, ArgError> {
        self.vals.get(i).and_then(pick).ok_or(ArgError {
            context: self.context,
            index: i,
            expected,
        })
    }

    pub fn u32(&self, i: usize) -> Result<u32, ArgError> {
        self.expect(i, "a u32 argument", |v| match v {
            Val::U32(n) => Some(*n),
            _ => None,
        })
    }

    pub fn u64(&self, i: usize) -> Result<u64, ArgError> {
        self.expect(i, "a u64 argument", |v| match v {
            Val::U64(n) => Some(*n),
            _ => None,
        })
    }

    pub fn string(&self, i: usize) -> Result<&'a str, ArgError> {
        self.expect(i, "a string argument", |v| match v {
            Val::String(s) => Some(s.as_str()),
            _ => None,
        })
    }

    pub fn resource(&self, i: usize) -> Result<Resource, ArgError> {
        self.expect(i, "a resource argument", |v| match v {
            Val::Resource(r) => Some(*r),
            _ => None,
        })
    }

    /// A `list<u8>` in either form, borrowed from a [`Val::Bytes`] (see
    /// [`Val::bytes`]).
    pub fn bytes(&self, i: usize) -> Result<Cow<'a, [u8]>, ArgError> {
        self.expect(i, "list<u8>", Val::bytes)
    }

    /// A `list<string>`, copied out.
    pub fn strings(&self, i: usize) -> Result<Vec<String>, ArgError> {
        self.expect(i, "list<string>", |v| match v {
            Val::List(items) => items
                .iter()
                .map(|v| match v {
                    Val::String(s) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => None,
        })
    }

    /// An `option<string>`, copied out.
    pub fn opt_string(&self, i: usize) -> Result<Option<String>, ArgError> {
        self.expect(i, "option<string>", |v| match v {
            Val::Option(None) => Some(None),
            Val::Option(Some(inner)) => match inner.as_ref() {
                Val::String(s) => Some(Some(s.clone())),
                _ => None,
            },
            _ => None,
        })
    }
}

/// Result constructors, for host functions' return values.
impl Val {
    /// `ok` of a `result`: `Some` payload for `result<T, _>`, `None` for
    /// `result<_, _>`.
    pub fn ok(payload: Option<Val>) -> Val {
        Val::Result(Ok(payload.map(Box::new)))
    }

    /// `err` of a `result`: `Some` payload for `result<_, E>`, `None` for
    /// `result<_>`.
    pub fn err(payload: Option<Val>) -> Val {
        Val::Result(Err(payload.map(Box::new)))
    }

    /// `some` of an `option`.
    pub fn some(v: Val) -> Val {
        Val::Option(Some(Box::new(v)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::ResourceType;

    fn res() -> Resource {
        Resource::host_own(3, 9)
    }

    fn vals() -> Vec<Val> {
        vec![
            Val::U32(1),
            Val::U64(2),
            Val::String("s".into()),
            Val::Resource(res()),
            Val::Bytes(vec![1, 2]),
            Val::List(vec![Val::U8(3), Val::U8(4)]),
            Val::List(vec![Val::String("a".into()), Val::String("b".into())]),
            Val::Option(None),
            Val::Option(Some(Box::new(Val::String("o".into())))),
            Val::List(vec![Val::String("a".into()), Val::U8(1)]),
            Val::Option(Some(Box::new(Val::U8(1)))),
        ]
    }

    #[test]
    fn accessors_read_their_shape() {
        let v = vals();
        let a = Args::new(&v);
        assert_eq!(a.len(), 11);
        assert!(!a.is_empty());
        assert_eq!(a.u32(0), Ok(1));
        assert_eq!(a.u64(1), Ok(2));
        assert_eq!(a.string(2), Ok("s"));
        let r = a.resource(3).unwrap();
        assert_eq!((r.ty, r.rep, r.own), (ResourceType::Host(3), 9, true));
        assert!(matches!(a.bytes(4), Ok(Cow::Borrowed(&[1, 2]))));
        assert_eq!(a.bytes(5).unwrap().as_ref(), &[3, 4]);
        assert_eq!(a.strings(6).unwrap(), ["a", "b"]);
        assert_eq!(a.opt_string(7), Ok(None));
        assert_eq!(a.opt_string(8), Ok(Some("o".into())));
        assert_eq!(a.get(0), Some(&Val::U32(1)));
        assert_eq!(a.get(11), None);
        assert_eq!(
            a.expect(3, "a bucket handle", |v| match v {
                Val::Resource(r) => Some(r.rep),
                _ => None,
            }),
            Ok(9)
        );
    }

    /// The wording bindings have always used; a trap message names it.
    #[test]
    fn wrong_or_missing_arguments_name_what_was_expected() {
        let v = vals();
        let a = Args::new(&v);
        let msg = |e: ArgError| HostError::from(e).message;
        assert_eq!(msg(a.u32(1).unwrap_err()), "expected a u32 argument");
        assert_eq!(msg(a.u64(0).unwrap_err()), "expected a u64 argument");
        assert_eq!(msg(a.string(0).unwrap_err()), "expected a string argument");
        assert_eq!(
            msg(a.resource(2).unwrap_err()),
            "expected a resource argument"
        );
        assert_eq!(msg(a.bytes(2).unwrap_err()), "expected list<u8>");
        assert_eq!(msg(a.bytes(6).unwrap_err()), "expected list<u8>");
        assert_eq!(msg(a.strings(9).unwrap_err()), "expected list<string>");
        assert_eq!(msg(a.strings(2).unwrap_err()), "expected list<string>");
        assert_eq!(
            msg(a.opt_string(10).unwrap_err()),
            "expected option<string>"
        );
        assert_eq!(msg(a.opt_string(2).unwrap_err()), "expected option<string>");
        // Past the end is the same error, with the index.
        let e = a.u64(99).unwrap_err();
        assert_eq!(e.index, 99);
        assert_eq!(e.to_string(), "expected a u64 argument");
    }

    #[test]
    fn a_context_prefixes_the_message() {
        let v = vals();
        let a = Args::new(&v).context("wasi:keyvalue");
        assert_eq!(
            a.string(0).unwrap_err().to_string(),
            "wasi:keyvalue: expected a string argument"
        );
        let e = a
            .expect(0, "a bucket handle", |v| match v {
                Val::Resource(r) => Some(r.rep),
                _ => None,
            })
            .unwrap_err();
        assert_eq!(
            e,
            ArgError {
                context: "wasi:keyvalue",
                index: 0,
                expected: "a bucket handle"
            }
        );
        assert_eq!(e.to_string(), "wasi:keyvalue: expected a bucket handle");
    }

    #[test]
    fn result_constructors() {
        assert_eq!(Val::ok(None), Val::Result(Ok(None)));
        assert_eq!(
            Val::ok(Some(Val::U8(1))),
            Val::Result(Ok(Some(Box::new(Val::U8(1)))))
        );
        assert_eq!(Val::err(None), Val::Result(Err(None)));
        assert_eq!(
            Val::err(Some(Val::U8(2))),
            Val::Result(Err(Some(Box::new(Val::U8(2)))))
        );
        assert_eq!(
            Val::some(Val::U8(3)),
            Val::Option(Some(Box::new(Val::U8(3))))
        );
    }
}
