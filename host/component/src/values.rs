//! Dynamic component-model values.
//!
//! A [`Val`] is what crosses between the host and a guest: the host passes
//! `Val`s as arguments to exports, host functions receive lifted `Val`s and
//! return `Val`s to be lowered into the guest. The shape of a value is checked
//! against the WIT type at the boundary (in [`crate::abi`]), so a `Val` itself
//! carries no type beyond its variant.
//!
//! ## Byte lists
//!
//! A `list<u8>` has two forms. [`Val::Bytes`] is what the engine produces
//! whenever it lifts or decodes one (canonical ABI, WAVE, wRPC): one copy of
//! the bytes, one byte per byte. [`Val::List`] of [`Val::U8`] is still
//! accepted wherever a `list<u8>` is lowered or encoded, so older host code
//! keeps working, but it costs 32 bytes per byte; new code should build
//! `Val::Bytes` and read byte lists with [`Val::bytes`], which takes either
//! form. The two forms of the same bytes compare equal (`==` and
//! [`Val::eq_nan_aware`]).

use std::borrow::Cow;
use std::fmt;

/// A component-model value.
#[derive(Debug, Clone)]
pub enum Val {
    Bool(bool),
    S8(i8),
    U8(u8),
    S16(i16),
    U16(u16),
    S32(i32),
    U32(u32),
    S64(i64),
    U64(u64),
    Float32(f32),
    Float64(f64),
    Char(char),
    String(String),
    List(Vec<Val>),
    /// A `list<u8>`, one byte per byte (see the module docs: equal to a
    /// `List` of the same `U8`s).
    Bytes(Vec<u8>),
    /// Fields in declaration order, with their names.
    Record(Vec<(String, Val)>),
    Tuple(Vec<Val>),
    /// Case name and optional payload.
    Variant(String, Option<Box<Val>>),
    Enum(String),
    Option(Option<Box<Val>>),
    Result(Result<Option<Box<Val>>, Option<Box<Val>>>),
    /// The names of the flags that are set, in declaration order.
    Flags(Vec<String>),
    Resource(Resource),
}

impl Val {
    /// A short name of the value's kind, for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Val::Bool(_) => "bool",
            Val::S8(_) => "s8",
            Val::U8(_) => "u8",
            Val::S16(_) => "s16",
            Val::U16(_) => "u16",
            Val::S32(_) => "s32",
            Val::U32(_) => "u32",
            Val::S64(_) => "s64",
            Val::U64(_) => "u64",
            Val::Float32(_) => "f32",
            Val::Float64(_) => "f64",
            Val::Char(_) => "char",
            Val::String(_) => "string",
            Val::List(_) => "list",
            Val::Bytes(_) => "list<u8>",
            Val::Record(_) => "record",
            Val::Tuple(_) => "tuple",
            Val::Variant(..) => "variant",
            Val::Enum(_) => "enum",
            Val::Option(_) => "option",
            Val::Result(_) => "result",
            Val::Flags(_) => "flags",
            Val::Resource(_) => "resource",
        }
    }

    /// The bytes of a `list<u8>` in either form: borrowed from a
    /// [`Val::Bytes`], collected from a [`Val::List`] of [`Val::U8`]. `None`
    /// for any other value (including a list holding a non-`u8`).
    pub fn bytes(&self) -> Option<Cow<'_, [u8]>> {
        match self {
            Val::Bytes(b) => Some(Cow::Borrowed(b)),
            Val::List(items) => items
                .iter()
                .map(|v| match v {
                    Val::U8(b) => Some(*b),
                    _ => None,
                })
                .collect::<Option<Vec<u8>>>()
                .map(Cow::Owned),
            _ => None,
        }
    }

    /// Compares two values treating every NaN as equal to every other NaN.
    ///
    /// The canonical ABI lets an engine change NaN payload bits, so tests
    /// that compare engines use this instead of `==`.
    pub fn eq_nan_aware(&self, other: &Val) -> bool {
        match (self, other) {
            (Val::Float32(a), Val::Float32(b)) => {
                (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits() || a == b
            }
            (Val::Float64(a), Val::Float64(b)) => {
                (a.is_nan() && b.is_nan()) || a.to_bits() == b.to_bits() || a == b
            }
            (Val::List(a), Val::List(b)) | (Val::Tuple(a), Val::Tuple(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.eq_nan_aware(y))
            }
            (Val::Record(a), Val::Record(b)) => {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|((n, x), (m, y))| n == m && x.eq_nan_aware(y))
            }
            (Val::Variant(n, a), Val::Variant(m, b)) => n == m && opt_eq(a, b),
            (Val::Option(a), Val::Option(b)) => opt_eq(a, b),
            (Val::Result(Ok(a)), Val::Result(Ok(b)))
            | (Val::Result(Err(a)), Val::Result(Err(b))) => opt_eq(a, b),
            _ => self == other,
        }
    }
}

/// Whether `items` are exactly the `U8` values of `bytes`.
fn list_is_bytes(items: &[Val], bytes: &[u8]) -> bool {
    items.len() == bytes.len()
        && items
            .iter()
            .zip(bytes)
            .all(|(v, b)| matches!(v, Val::U8(x) if x == b))
}

/// Structural equality, except that the two forms of a `list<u8>`
/// ([`Val::Bytes`] and a [`Val::List`] of [`Val::U8`]) are equal when they
/// hold the same bytes.
impl PartialEq for Val {
    fn eq(&self, other: &Val) -> bool {
        use Val::*;
        match (self, other) {
            (Bool(a), Bool(b)) => a == b,
            (S8(a), S8(b)) => a == b,
            (U8(a), U8(b)) => a == b,
            (S16(a), S16(b)) => a == b,
            (U16(a), U16(b)) => a == b,
            (S32(a), S32(b)) => a == b,
            (U32(a), U32(b)) => a == b,
            (S64(a), S64(b)) => a == b,
            (U64(a), U64(b)) => a == b,
            (Float32(a), Float32(b)) => a == b,
            (Float64(a), Float64(b)) => a == b,
            (Char(a), Char(b)) => a == b,
            (String(a), String(b)) => a == b,
            (List(a), List(b)) => a == b,
            (Bytes(a), Bytes(b)) => a == b,
            (Bytes(b), List(l)) | (List(l), Bytes(b)) => list_is_bytes(l, b),
            (Record(a), Record(b)) => a == b,
            (Tuple(a), Tuple(b)) => a == b,
            (Variant(n, a), Variant(m, b)) => n == m && a == b,
            (Enum(a), Enum(b)) => a == b,
            (Option(a), Option(b)) => a == b,
            (Result(a), Result(b)) => a == b,
            (Flags(a), Flags(b)) => a == b,
            (Resource(a), Resource(b)) => a == b,
            _ => false,
        }
    }
}

fn opt_eq(a: &Option<Box<Val>>, b: &Option<Box<Val>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.eq_nan_aware(b),
        (None, None) => true,
        _ => false,
    }
}

/// Which kind of resource a [`Resource`] value refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceType {
    /// A resource implemented by the host, registered on a [`crate::Linker`].
    Host(u32),
    /// A resource defined by a guest component instance: the instance's
    /// unique id and the resource's index inside that component.
    Guest { instance: u64, index: u32 },
}

/// A resource value as seen by the host: its type, its representation (for
/// host resources: the host's own key; for guest resources: the guest's
/// `rep`), and whether the host owns it or merely borrows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Resource {
    pub ty: ResourceType,
    pub rep: u32,
    pub own: bool,
}

impl Resource {
    /// An owned handle to a host resource, to hand to a guest.
    pub fn host_own(ty: u32, rep: u32) -> Resource {
        Resource {
            ty: ResourceType::Host(ty),
            rep,
            own: true,
        }
    }

    /// A borrowed handle to a host resource.
    pub fn host_borrow(ty: u32, rep: u32) -> Resource {
        Resource {
            ty: ResourceType::Host(ty),
            rep,
            own: false,
        }
    }
}

impl fmt::Display for Val {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u8s(b: &[u8]) -> Val {
        Val::List(b.iter().map(|x| Val::U8(*x)).collect())
    }

    #[test]
    fn byte_forms_compare_equal_and_read_alike() {
        let bytes = Val::Bytes(vec![1, 2, 255]);
        assert_eq!(bytes, u8s(&[1, 2, 255]));
        assert_eq!(u8s(&[1, 2, 255]), bytes);
        assert_ne!(bytes, u8s(&[1, 2]));
        assert_ne!(bytes, u8s(&[1, 2, 254]));
        assert_ne!(
            bytes,
            Val::List(vec![Val::U8(1), Val::U8(2), Val::U32(255)])
        );
        assert_eq!(Val::Bytes(vec![]), Val::List(vec![]));
        // Nested, and through the NaN-aware comparison.
        let a = Val::Option(Some(Box::new(bytes.clone())));
        let b = Val::Option(Some(Box::new(u8s(&[1, 2, 255]))));
        assert_eq!(a, b);
        assert!(a.eq_nan_aware(&b));
        assert!(Val::List(vec![bytes.clone()]).eq_nan_aware(&Val::List(vec![u8s(&[1, 2, 255])])));

        assert_eq!(bytes.bytes().as_deref(), Some(&[1u8, 2, 255][..]));
        assert!(matches!(bytes.bytes(), Some(Cow::Borrowed(_))));
        assert_eq!(u8s(&[4, 5]).bytes().as_deref(), Some(&[4u8, 5][..]));
        assert_eq!(Val::List(vec![Val::U16(4)]).bytes(), None);
        assert_eq!(Val::String("ab".into()).bytes(), None);
        assert_eq!(bytes.kind(), "list<u8>");
    }

    #[test]
    fn other_variants_keep_structural_equality() {
        assert_eq!(Val::U32(1), Val::U32(1));
        assert_ne!(Val::U32(1), Val::U64(1));
        assert_ne!(Val::Float64(f64::NAN), Val::Float64(f64::NAN));
        assert!(Val::Float64(f64::NAN).eq_nan_aware(&Val::Float64(f64::NAN)));
        assert_ne!(
            Val::Variant("a".into(), None),
            Val::Variant("a".into(), Some(Box::new(Val::Bool(true))))
        );
        assert_ne!(Val::Tuple(vec![]), Val::List(vec![]));
    }
}
