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
    /// Lifting the guest's values (or what a host function allocates on the
    /// guest's behalf) would make the host hold `wanted` bytes for one
    /// crossing, over the lift budget of `budget` bytes (the instance's
    /// memory limit; see [`crate::Limits::memory_bytes`]). `import` is the
    /// host function being called (`iface#func`), `None` for an export's
    /// results.
    LiftBudget {
        wanted: u64,
        budget: u64,
        import: Option<String>,
    },
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
            TrapKind::LiftBudget {
                wanted,
                budget,
                import,
            } => {
                write!(f, "lifting {} ", human_bytes(*wanted))?;
                match import {
                    Some(i) => write!(f, "for `{i}`")?,
                    None => f.write_str("of results")?,
                }
                write!(
                    f,
                    " exceeds the call's lift budget of {} (the instance's memory limit, limits.memory_bytes)",
                    human_bytes(*budget)
                )
            }
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

/// `n` bytes for a message: "512 bytes", "64 KiB", "8 MiB", "1.5 GiB";
/// inexact sizes get the exact count too ("12.3 MiB (12897484 bytes)").
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [(u64, &str); 3] = [(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for (size, unit) in UNITS {
        if n >= size {
            return if n.is_multiple_of(size) {
                format!("{} {unit}", n / size)
            } else {
                format!("{:.1} {unit} ({n} bytes)", n as f64 / size as f64)
            };
        }
    }
    format!("{n} bytes")
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

/// A lift over the call's lift budget (see [`crate::linker::HostContext::reserve`]):
/// the host would hold `wanted` bytes for this crossing, `budget` allowed,
/// while calling `import` (`None`: lifting an export's results).
#[derive(Debug, Clone)]
pub(crate) struct LiftBudgetError {
    pub wanted: u64,
    pub budget: u64,
    pub import: Option<std::sync::Arc<str>>,
}

impl LiftBudgetError {
    pub fn kind(&self) -> TrapKind {
        TrapKind::LiftBudget {
            wanted: self.wanted,
            budget: self.budget,
            import: self.import.as_deref().map(str::to_string),
        }
    }
}

impl fmt::Display for LiftBudgetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.kind().fmt(f)
    }
}

impl std::error::Error for LiftBudgetError {}
impl wasmi::errors::HostError for LiftBudgetError {}

/// An error raised by a host function; carried through wasmi as a host error
/// so the caller can tell it from a wasm trap. `wasi:cli/exit` raises one
/// with an exit status, which ends the call with [`TrapKind::Exit`].
///
/// Its fields are read through methods: only the constructors below set
/// them, so an exit status or a deadline cannot be claimed by hand.
#[derive(Debug, Clone)]
pub struct HostError {
    pub(crate) message: String,
    pub(crate) exit: Option<i32>,
    /// The host function stopped waiting because the call's deadline passed.
    pub(crate) deadline: bool,
    /// Set by [`crate::HostContext::reserve`]: the call went over its lift
    /// budget, which ends it with [`TrapKind::LiftBudget`].
    pub(crate) lift_budget: Option<LiftBudgetError>,
}

impl HostError {
    pub fn new(msg: impl Into<String>) -> HostError {
        HostError {
            message: msg.into(),
            exit: None,
            deadline: false,
            lift_budget: None,
        }
    }

    pub fn exit(status: i32) -> HostError {
        HostError {
            message: format!("exit({status})"),
            exit: Some(status),
            deadline: false,
            lift_budget: None,
        }
    }

    pub fn deadline() -> HostError {
        HostError {
            message: "deadline reached while blocked in the host".into(),
            exit: None,
            deadline: true,
            lift_budget: None,
        }
    }
}

impl HostError {
    /// What the host function reported.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The status of a `wasi:cli/exit`, if that is what this is.
    pub fn exit_status(&self) -> Option<i32> {
        self.exit
    }

    /// Whether the host function stopped at the call's deadline.
    pub fn is_deadline(&self) -> bool {
        self.deadline
    }
}

impl From<LiftBudgetError> for HostError {
    fn from(e: LiftBudgetError) -> HostError {
        HostError {
            message: e.to_string(),
            exit: None,
            deadline: false,
            lift_budget: Some(e),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(0), "0 bytes");
        assert_eq!(human_bytes(1023), "1023 bytes");
        assert_eq!(human_bytes(64 << 10), "64 KiB");
        assert_eq!(human_bytes(8 << 20), "8 MiB");
        assert_eq!(human_bytes(3 << 30), "3 GiB");
        assert_eq!(
            human_bytes((1 << 20) + (1 << 19)),
            "1.5 MiB (1572864 bytes)"
        );
    }

    #[test]
    fn a_lift_over_budget_names_the_limit() {
        let e = LiftBudgetError {
            wanted: 64 << 20,
            budget: 8 << 20,
            import: Some("wasi:io/streams@0.2.2#[method]output-stream.write".into()),
        };
        assert_eq!(
            e.kind().to_string(),
            "lifting 64 MiB for `wasi:io/streams@0.2.2#[method]output-stream.write` exceeds the call's lift budget of 8 MiB (the instance's memory limit, limits.memory_bytes)"
        );
        let results = LiftBudgetError {
            import: None,
            wanted: 9 << 20,
            ..e.clone()
        };
        assert!(results
            .to_string()
            .starts_with("lifting 9 MiB of results exceeds the call's lift budget of 8 MiB"));
        let h = HostError::from(e.clone());
        assert_eq!(h.message, e.to_string());
        assert!(h.lift_budget.is_some());
    }
}
