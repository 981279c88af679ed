//! Errors of the component layer.
//!
//! Every error that can reach a user names the component it concerns and,
//! where there is one, the function and the limit or import at fault, so a
//! log line alone tells an operator what broke.

use std::fmt;

/// Why a guest was stopped in the middle of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrapKind {
    /// The call used up its fuel budget (`limit` units).
    OutOfFuel { limit: u64 },
    /// The call ran past its wall-clock deadline.
    Deadline { millis: u64 },
    /// Linear memory or a table could not grow within the instance's cap.
    MemoryLimit { bytes: u64 },
    /// Call depth exceeded the engine's recursion limit.
    StackOverflow,
    /// `unreachable` executed: a Rust guest's `panic!` ends here.
    Unreachable,
    /// Any other wasm trap (out-of-bounds access, divide by zero, ...).
    Wasm(String),
    /// The guest broke a canonical ABI rule (bad pointer, invalid UTF-8,
    /// unknown handle, ...).
    Abi(String),
    /// A host function the guest called failed.
    Host(String),
    /// The guest called `wasi:cli/exit` with this status.
    Exit(i32),
}

impl fmt::Display for TrapKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrapKind::OutOfFuel { limit } => write!(f, "fuel limit of {limit} units exhausted"),
            TrapKind::Deadline { millis } => write!(f, "deadline of {millis} ms exceeded"),
            TrapKind::MemoryLimit { bytes } => write!(f, "memory limit of {bytes} bytes reached"),
            TrapKind::StackOverflow => write!(f, "recursion depth limit exceeded (stack overflow)"),
            TrapKind::Unreachable => write!(
                f,
                "guest trapped: unreachable executed (a guest panic ends here)"
            ),
            TrapKind::Wasm(m) => write!(f, "guest trapped: {m}"),
            TrapKind::Abi(m) => write!(f, "canonical ABI violation: {m}"),
            TrapKind::Host(m) => write!(f, "host function failed: {m}"),
            TrapKind::Exit(code) => write!(f, "guest exited with status {code}"),
        }
    }
}

/// Errors from loading, linking, instantiating and calling components.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{component}: not a WebAssembly component: {reason}")]
    NotAComponent { component: String, reason: String },

    #[error("{component}: invalid component: {reason}")]
    InvalidComponent { component: String, reason: String },

    #[error("{component}: unsupported component feature: {feature}")]
    Unsupported { component: String, feature: String },

    #[error("{component}: unsatisfied import `{import}`: {reason}")]
    MissingImport {
        component: String,
        import: String,
        reason: String,
    },

    #[error("{component}: no export named `{name}`")]
    NoSuchExport { component: String, name: String },

    #[error("{component}: instance limit of {limit} live instances reached")]
    InstanceLimit { component: String, limit: usize },

    #[error("{component}: instantiation failed: {reason}")]
    Instantiate { component: String, reason: String },

    #[error("{component}: call to `{function}` stopped: {kind}")]
    Trap {
        component: String,
        function: String,
        kind: TrapKind,
    },

    #[error("{component}: bad arguments for `{function}`: {reason}")]
    BadArguments {
        component: String,
        function: String,
        reason: String,
    },

    #[error(
        "{component}: this instance was poisoned by an earlier trap and can no longer be called"
    )]
    Poisoned { component: String },
}

impl Error {
    /// The trap kind, when this error is a stopped call.
    pub fn trap_kind(&self) -> Option<&TrapKind> {
        match self {
            Error::Trap { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An error raised while lifting or lowering, before the component and
/// function names are attached.
#[derive(Debug, Clone)]
pub(crate) struct AbiError(pub String);

impl fmt::Display for AbiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for AbiError {}
impl wasmi::errors::HostError for AbiError {}

/// An error raised by a host function; carried through wasmi as a host error
/// so the caller can tell it from a wasm trap. `wasi:cli/exit` raises one
/// with an exit status, which ends the call with [`TrapKind::Exit`].
#[derive(Debug, Clone)]
pub struct HostError {
    pub message: String,
    pub exit: Option<i32>,
    /// The host function stopped waiting because the call's deadline passed.
    pub deadline: bool,
}

impl HostError {
    pub fn new(msg: impl Into<String>) -> HostError {
        HostError {
            message: msg.into(),
            exit: None,
            deadline: false,
        }
    }

    pub fn exit(status: i32) -> HostError {
        HostError {
            message: format!("exit({status})"),
            exit: Some(status),
            deadline: false,
        }
    }

    pub fn deadline() -> HostError {
        HostError {
            message: "deadline reached while blocked in the host".into(),
            exit: None,
            deadline: true,
        }
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HostError {}
impl wasmi::errors::HostError for HostError {}
