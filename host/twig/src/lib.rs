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
//!   directory, labels; each table's type lives with what it configures.
//! * [`state`] — what is on disk: the content-addressed component cache and
//!   the desired state, both written crash-safely; [`latticedata`] — what
//!   the lattice told the host (links, named config, labels), on disk too.
//! * [`host`] — the running host behind one facade, [`host::Host`]: one
//!   file per job (`apps`: open, deploy, apply, delete; `placement`;
//!   `pool`: instances and their data, a leaf; `rpc`: the linker, local and
//!   remote calls; `lattice_data`; `status`; `config`).
//! * [`providers`] — the built-in capability providers a manifest's
//!   `type: capability` components name (`twig:keyvalue`, …, or a
//!   wasmCloud provider image the board maps to one), one file each behind
//!   the [`providers::Provider`] trait.
//! * [`capabilities`] — what the host answers itself besides WASI
//!   (`wasi:config` from manifest config, `wasmcloud:bus/lattice`
//!   `set-link-name`).
//! * [`http`] — `wasi:http` and listeners with or without the `http` cargo
//!   feature; the one place the feature is looked at.
//! * [`control`] — what the lattice may do to the host (scale, update,
//!   providers), as `Host` calls; [`policy`] — what it is allowed to (board
//!   `[control]`), and the bounds on what it can make the host hold.
//! * [`lattice`] — the uplink to a NATS server (feature `lattice`; in the
//!   background, never needed to boot or run): the control interface, the
//!   buckets, events, wRPC, the outbox's drain. [`uplink`] — its options,
//!   status and the host's identity, as plain data.
//! * [`bridge`] — the messaging bridge: what the message bus sends to the
//!   lattice's NATS (through the outbox classes or live) and the handler
//!   links' subscriptions upstream.
//! * [`outbox`] — what leaves the device: the board's `[outbox]` classes
//!   and the durable on-disk queue (`twig-outbox`) that messages wait in
//!   while the uplink is down.
//! * [`secrets`] — components' secrets (`wasmcloud:secrets`), fetched
//!   from the local backend (`DATA/secrets`) when a component starts.
//! * [`exec`] — where blocking work runs (guest calls apart from the
//!   control plane); [`trace`] — trace ids and call spans; [`names`] —
//!   checks of names, URLs and label keys; [`image`] — reading a component
//!   image file: regular files only, up to the board's cap.
//! * [`admin`] — the local admin socket that `twig status|invoke|apply|
//!   delete` use.
//! * [`up`] — `twig up`: lock the data dir, restore the desired state,
//!   apply `--app` files, serve the admin socket, shut down on a signal.
//!
//! `tools/modgraph` prints how these import each other; there is no cycle.
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
//!                          \--bridge--> outbox class? outbox (disk) --drain--> NATS / JetStream
//!                                     \--else, uplink up--> NATS (live)
//! NATS message on a handler link's subject --bridge--> Bus (that subscription) --> component
//! ```

#![forbid(unsafe_code)]

pub mod admin;
pub mod board;
pub mod bridge;
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
pub mod secrets;
pub mod state;
mod sync;
pub mod trace;
pub mod up;
pub mod uplink;
