#!/bin/sh
# wasmcloud-host 0.27.1 does not compile on Rust 1.95 as published:
#   error: queries overflow the depth limit!
#   = help: consider increasing the recursion limit by adding a
#     `#![recursion_limit = "256"]` attribute to your crate (`wasmcloud_host`)
#   = note: query depth increased by 130 when computing layout of
#     `{async block@.../wasmcloud-host-0.27.1/src/wasmbus/ctl.rs:309:15: 309:25}`
# (the layout of a deeply nested async block; newer compilers count deeper).
# The only change made here is that compiler limit: this copies the
# published crate from cargo's registry cache into the launcher's target
# directory and adds `#![recursion_limit = "512"]` to its lib.rs; Cargo.toml
# patches crates.io's wasmcloud-host to that copy. No code of the host
# changes. Run from the repository root, after `cargo fetch` has the crate:
#   cargo fetch --manifest-path tests/wasmcloud-launcher/Cargo.toml  (may fail
#   to resolve the patch the first time: then run this script and retry)
set -eu
dest=target/wasmcloud-launcher/patched/wasmcloud-host-0.27.1
src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/wasmcloud-host-0.27.1 | head -1)
[ -d "$src" ] || { echo "wasmcloud-host 0.27.1 is not in cargo's registry cache; cargo fetch it first" >&2; exit 1; }
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
cp -r "$src" "$dest"
{ echo '#![recursion_limit = "512"]'; cat "$src/src/lib.rs"; } > "$dest/src/lib.rs"
echo "patched copy in $dest"
