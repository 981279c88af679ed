#!/usr/bin/env bash
# Builds every example component (the workspace in examples/components) for
# wasm32-wasip2 (release) and copies them to examples/build/NAME.wasm, where
# the example apps (examples/*/app.yaml) expect them. Callable from any
# directory; safe to run again (cargo rebuilds only what changed).
#
# CARGO_TARGET_DIR defaults to <repo>/target/guests, a build directory shared
# with the test guests, so rebuilding is cheap.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
target="wasm32-wasip2"
out="$here/build"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target/guests}"
# Output name -> cargo crate name (cdylibs are written with '-' as '_').
declare -A crates=(
    [greeter]=twig-demo-greeter
    [frontend]=twig-demo-frontend
    [counter]=twig-example-counter
)

echo "==> rustup target add $target"
rustup target add "$target"

echo "==> cargo build --release --target $target --locked (in $here/components, target dir $CARGO_TARGET_DIR)"
start=$(date +%s)
cargo build --manifest-path "$here/components/Cargo.toml" --release --target "$target" --locked
echo "==> cargo build finished in $(( $(date +%s) - start )) s"

mkdir -p "$out"
for name in "${!crates[@]}"; do
    crate="${crates[$name]}"
    src="$CARGO_TARGET_DIR/$target/release/${crate//-/_}.wasm"
    if [[ ! -f "$src" ]]; then
        echo "error: no output for '$crate' at $src" >&2
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
    echo "==> build/$name.wasm ($(wc -c < "$out/$name.wasm") bytes)"
done
echo "==> done: run an app with: twig up --app examples/demo/app.yaml (or examples/counter/app.yaml)"
