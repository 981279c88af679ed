# Sourced by cross/build and cross/test: the device targets twig builds for
# from an x86_64 Debian machine, and what each one needs.
#
#   cross_setup TARGET   installs the Rust target, the Debian cross gcc (the
#                        linker, and the C compiler for C-backed crates) and
#                        qemu-user, then exports the cargo/cc variables for
#                        TARGET (linker, CC, AR, test runner).
#
# Adding a target: one more case in cross_target_info.

# Prints "GCC_PREFIX QEMU SYSROOT DEBIAN_ARCH" for a target, or fails.
cross_target_info() {
    case "$1" in
        x86_64-unknown-linux-gnu) echo "native native - amd64" ;;
        aarch64-unknown-linux-gnu) echo "aarch64-linux-gnu qemu-aarch64 /usr/aarch64-linux-gnu arm64" ;;
        # Static musl: Rust ships musl's libc and crt objects for this target
        # (self-contained linking), so Debian's glibc cross gcc only drives
        # the link and compiles ring's C/asm; the result runs on any distro.
        aarch64-unknown-linux-musl) echo "aarch64-linux-gnu qemu-aarch64 - arm64" ;;
        armv7-unknown-linux-gnueabihf) echo "arm-linux-gnueabihf qemu-arm /usr/arm-linux-gnueabihf armhf" ;;
        riscv64gc-unknown-linux-gnu) echo "riscv64-linux-gnu qemu-riscv64 /usr/riscv64-linux-gnu riscv64" ;;
        *) return 1 ;;
    esac
}

cross_targets() {
    echo "x86_64-unknown-linux-gnu aarch64-unknown-linux-gnu aarch64-unknown-linux-musl armv7-unknown-linux-gnueabihf riscv64gc-unknown-linux-gnu"
}

# apt-get as root, or through sudo when there is one.
cross_apt_install() {
    local sudo=""
    if [[ "$(id -u)" != 0 ]]; then
        if command -v sudo >/dev/null; then sudo="sudo"; else
            echo "cross: need root (or sudo) to install: $*" >&2
            return 1
        fi
    fi
    echo "cross: installing Debian packages: $*" >&2
    $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2 \
        || { $sudo apt-get update -q >&2 && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >&2; }
}

cross_setup() {
    local target="$1" info gcc qemu sysroot arch
    if ! info="$(cross_target_info "$target")"; then
        echo "cross: unknown target '$target' (known: $(cross_targets))" >&2
        return 2
    fi
    read -r gcc qemu sysroot arch <<<"$info"
    CROSS_DEB_ARCH="$arch"
    export CROSS_DEB_ARCH
    if ! rustup target list --installed | grep -qx "$target"; then
        echo "cross: rustup target add $target" >&2
        rustup target add "$target" >&2
    fi
    if [[ "$gcc" == native ]]; then
        return 0
    fi
    # The C library headers and crt files are only a Recommends of the
    # cross gcc, so they are named too.
    local pkgs=()
    command -v "$gcc-gcc" >/dev/null || pkgs+=("gcc-$gcc" "libc6-dev-$arch-cross")
    command -v "$qemu" >/dev/null || pkgs+=(qemu-user)
    if ((${#pkgs[@]})); then
        cross_apt_install "${pkgs[@]}"
    fi
    local up="${target^^}"
    up="${up//-/_}"
    local low="${target//-/_}"
    export "CARGO_TARGET_${up}_LINKER=$gcc-gcc"
    export "CC_${low}=$gcc-gcc"
    export "AR_${low}=$gcc-ar"
    if [[ "$sysroot" == - ]]; then
        export "CARGO_TARGET_${up}_RUNNER=$qemu"
    else
        export "CARGO_TARGET_${up}_RUNNER=$qemu -L $sysroot"
    fi
    CROSS_RUNNER_VAR="CARGO_TARGET_${up}_RUNNER"
    export CROSS_RUNNER_VAR
}
