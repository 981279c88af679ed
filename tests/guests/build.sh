#!/usr/bin/env bash
# Builds every guest component in this workspace for wasm32-wasip2 (release)
# and copies them to out/NAME.wasm. Callable from any directory.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
target="wasm32-wasip2"
out="$here/out"
# Cargo crate name -> output name. Binaries keep their name; cdylibs are
# written by cargo with '-' turned into '_'.
guests=(hello greeter wasmcloud wasmcloud-http types misbehave compute kv-writer http-echo edge-worker telemetry echo-messaging echo-messaging-v3 kv-watcher secret-reader)

echo "==> rustup target add $target"
rustup target add "$target"

echo "==> cargo build --release --target $target --locked (in $here)"
start=$(date +%s)
cargo build --manifest-path "$here/Cargo.toml" --release --target "$target" --locked
echo "==> cargo build finished in $(( $(date +%s) - start )) s"

# Honour CARGO_TARGET_DIR if the caller set one.
target_dir="${CARGO_TARGET_DIR:-$here/target}"
mkdir -p "$out"
for name in "${guests[@]}"; do
    src="$target_dir/$target/release/${name//-/_}.wasm"
    [[ -f "$src" ]] || src="$target_dir/$target/release/$name.wasm"
    if [[ ! -f "$src" ]]; then
        echo "error: no output for guest '$name' under $target_dir/$target/release" >&2
        exit 1
    fi
    # A component starts with "\0asm" then version 0x0d 0x00, layer 0x01 0x00
    # (a core module would have 0x01 0x00 0x00 0x00).
    magic="$(head -c 8 "$src" | od -An -tx1 | tr -d ' \n')"
    if [[ "$magic" != "0061736d0d000100" ]]; then
        echo "error: $src is not a component (header $magic)" >&2
        exit 1
    fi
    cp "$src" "$out/$name.wasm"
    echo "==> out/$name.wasm ($(wc -c < "$out/$name.wasm") bytes)"
done
echo "==> done: ${#guests[@]} components in $out"
