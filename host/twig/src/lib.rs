//! # twig: the host
//!
//! `twig up` runs WebAssembly components on a device, from apps declared in
//! wadm manifests, and keeps them running through restarts and power cuts
//! with no network. This crate is the host process and its CLI; the engine
//! (`twig-component`), the WASI host (`twig-wasi`) and the manifest parser
//! (`twig-manifest`) are crates of their own.
//!
//! ## Layout
//!
//! * [`board`] — the board profile (TOML; `sim` is built in): limits, data
//!   directory, labels.
//! * [`state`] — what is on disk: the content-addressed component cache and
//!   the desired state, both written crash-safely.
//! * [`host`] — the running host: placing each app's components (scalers,
//!   spread requirements against the board's labels), one instance pool per
//!   component, and the routing of imports to WASI, config or a linked
//!   component.
//! * [`capabilities`] — what the host answers itself besides WASI
//!   (`wasi:config` from manifest config, `wasmcloud:bus/lattice`
//!   `set-link-name`).
//! * [`providers`] — the built-in capability providers a manifest's
//!   `type: capability` components name (`twig:keyvalue`, …, or a
//!   wasmCloud provider image the board maps to one).
//! * [`http`] — the HTTP server provider's glue (`wasi:http` handlers,
//!   listeners); the one place the `http` cargo feature is looked at.
//! * [`lattice`] — the uplink to a NATS server (in the background; never
//!   needed to boot or run) and its state; `lattice::drain` sends the
//!   outbox upstream.
//! * [`outbox`] — what leaves the device: the board's `[outbox]` classes
//!   and the durable on-disk queue (`twig-outbox`) that messages wait in
//!   while the uplink is down.
//! * [`policy`] — what the lattice may do to this device (board
//!   `[control]`): operation families, `file://` directories, bounds on
//!   what the lattice can make the host hold, the policy service.
//! * [`image`] — reading a component image file: regular files only, up
//!   to the board's cap.
//! * [`admin`] — the local admin socket that `twig status|invoke|apply|
//!   delete` use.
//! * [`up`] — `twig up`: lock the data dir, restore the desired state,
//!   apply `--app` files, serve the admin socket, shut down on a signal.
//!
//! ## Data flow
//!
//! ```text
//! app.yaml --parse--> Manifest --images read, compiled, hashed--> cache/sha256/…
//!                        \--------------------------------------> desired.json
//! boot / apply: desired.json + cache --verify hash--> Component --> Pool (instances)
//! trigger (admin invoke, HTTP request) --> Pool --> guest --import--> WASI | config
//!                                                   | link --> other Pool | provider (KV store)
//! publish (messaging) --> Bus --> local subscribers
//!                          \--exported subject--> outbox (disk) --drain--> NATS / JetStream
//! ```

#![forbid(unsafe_code)]

pub mod admin;
pub mod board;
pub mod capabilities;
pub mod control;
pub mod exec;
pub mod host;
pub mod http;
pub mod image;
pub mod lattice;
pub mod latticedata;
pub mod names;
pub mod outbox;
pub mod policy;
pub mod providers;
pub mod state;
mod sync;
pub mod trace;
pub mod up;
pub mod uplink;
