//! Dynamic component-model values.
//!
//! A [`Val`] is what crosses between the host and a guest: the host passes
//! `Val`s as arguments to exports, host functions receive lifted `Val`s and
//! return `Val`s to be lowered into the guest. The shape of a value is checked
//! against the WIT type at the boundary (in [`crate::abi`]), so a `Val` itself
//! carries no type beyond its variant.

use std::fmt;

/// A component-model value.
#[derive(Debug, Clone, PartialEq)]
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
