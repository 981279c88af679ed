//! # twig-component: WASI 0.2 components on the wasmi interpreter
//!
//! wasmi runs core WebAssembly modules only. This crate adds the component
//! model on top of it, so that stock components (`cargo build --target
//! wasm32-wasip2`, wasmCloud's examples) run on small devices without a JIT.
//!
//! ## Layout and data flow
//!
//! ```text
//!  bytes ──► component.rs ──► Component ──► instance.rs ──► Instance ──► call(name, [Val])
//!            (validate,        (types,        (replay the      (own wasmi      │
//!             flatten with      core modules   initializers,    store, limits) ▼
//!             wasmtime-environ, compiled by    link imports                 abi.rs: lower args,
//!             compile modules)  wasmi)         by name via                  run core func with fuel
//!                                              linker.rs)                   slices, lift results,
//!                                                                           post-return
//! ```
//!
//! * [`component`]: loading. `wasmtime-environ`'s translator validates the
//!   binary and flattens nested components into a list of initializers; each
//!   core module is compiled with wasmi.
//! * [`linker`]: host implementations by WIT name, matched across
//!   semver-compatible versions ([`names`]); [`args`]: typed access to a
//!   host function's arguments, and its result values.
//! * [`blocking`]: blocking sections, how host code marks a wait inside a
//!   guest call so the embedder running the call can move other work away.
//! * [`instance`]: instantiation and export calls under per-instance limits
//!   (fuel, wall-clock deadline via fuel slicing, memory and table caps,
//!   recursion depth, live instance count, lift budget).
//! * [`abi`]: the canonical ABI lift/lower for every WIT type, and resource
//!   handle tables ([`store`]).
//! * [`values`] and [`wave`]: dynamic values and their WAVE text form. A
//!   `list<u8>` is [`Val::Bytes`], one byte per byte (a [`Val::List`] of
//!   [`Val::U8`] is still accepted going in).
//!
//! ## The lift budget
//!
//! What the host allocates for the values it lifts out of a guest in one
//! crossing (the arguments of one import call, or the results of one export
//! call) is charged, before each allocation, against a budget equal to the
//! instance's memory limit ([`Limits::memory_bytes`]). Host functions that
//! allocate from a length the guest chose charge it too, first, with
//! [`HostContext::reserve`]. Going over traps with [`TrapKind::LiftBudget`],
//! which names the limit, and poisons the instance like any trap.
//! * [`wrpc`]: values to and from the bytes wRPC (wasmCloud's lattice RPC)
//!   sends, the component model's value definition encoding.
//!
//! The public API (load, link, instantiate, call, limits) does not expose
//! wasmi types, so a second engine can sit behind the same interface.
// One `unsafe` block (madvise in `instance::release_zero_pages`), allowed
// where it is; anything new must be allowed there explicitly.
#![deny(unsafe_code)]

pub(crate) mod abi;
pub mod args;
pub mod blocking;
pub mod component;
pub mod error;
pub mod instance;
pub mod linker;
pub mod names;
pub(crate) mod store;
pub mod types;
pub mod values;
pub mod wave;
pub mod wrpc;

pub use args::{ArgError, Args};
pub use component::{Compilation, Component, Engine, EngineConfig, ImportDesc, Limits};
pub use error::{Error, HostError, Result, TrapKind};
pub use instance::Instance;
pub use linker::{HostContext, HostFunc, HostInterface, Linker};

pub use types::FuncSig;
pub use values::{Resource, ResourceType, Val};
