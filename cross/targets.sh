# Sourced by the cross/ scripts: the device targets twig builds for from an
# x86_64 Debian machine, and what each one needs.
#
#   cross_setup TARGET   installs the Rust target, the Debian cross gcc (the
#                        linker, and the C compiler for C-backed crates) and
#                        qemu-user, then exports the cargo/cc variables for
#                        TARGET (linker, CC, AR, test runner).
#   cross_run_prefix TARGET [CAP_MIB]
#                        sets the array CROSS_RUN: the command prefix that
#                        runs a TARGET binary here (qemu-user or nothing),
#                        with its address space capped at CAP_MIB if given.
#
# Adding a target: one more case in cross_target_info.

# Prints "GCC_PREFIX QEMU SYSROOT DEBIAN_ARCH RUST_ARCH" for a target, or
# fails. RUST_ARCH is what std::env::consts::ARCH says on it.
cross_target_info() {
    case "$1" in
        x86_64-unknown-linux-gnu) echo "native native - amd64 x86_64" ;;
        aarch64-unknown-linux-gnu) echo "aarch64-linux-gnu qemu-aarch64 /usr/aarch64-linux-gnu arm64 aarch64" ;;
        # Static musl: Rust ships musl's libc and crt objects for this target
        # (self-contained linking), so Debian's glibc cross gcc only drives
        # the link and compiles ring's C/asm; the result runs on any distro.
        aarch64-unknown-linux-musl) echo "aarch64-linux-gnu qemu-aarch64 - arm64 aarch64" ;;
        armv7-unknown-linux-gnueabihf) echo "arm-linux-gnueabihf qemu-arm /usr/arm-linux-gnueabihf armhf arm" ;;
        riscv64gc-unknown-linux-gnu) echo "riscv64-linux-gnu qemu-riscv64 /usr/riscv64-linux-gnu riscv64 riscv64" ;;
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
    local target="$1" info gcc qemu arch
    if ! info="$(cross_target_info "$target")"; then
        echo "cross: unknown target '$target' (known: $(cross_targets))" >&2
        return 2
    fi
    read -r gcc qemu _ arch _ <<<"$info"
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
    cross_run_prefix "$target"
    export "CARGO_TARGET_${up}_RUNNER=${CROSS_RUN[*]}"
}

# Natively a cap is `prlimit --as`. Under qemu-user, twig's mappings live in
# a guest region qemu reserves, so the cap on twig is qemu's `-R CAP` (every
# guest mapping must fit in it) and the qemu process gets `prlimit --as` of
# CAP + 512 MiB: qemu maps a fixed 128 MiB translation buffer, needs about as
# much again for itself before the guest runs, and gives every guest thread
# a host thread with the host's default 8 MiB stack and translation regions
# of its own. twig's HTTP path (an inline guest hands its worker to a fresh
# thread) and the key-value store's compaction thread took the smoke's qemu
# past CAP + 256 MiB on the counter's second request ("qemu_memalign: failed
# to allocate"), with twig itself still inside its -R cap.
cross_run_prefix() {
    local target="$1" cap="${2:-}" info qemu sysroot
    info="$(cross_target_info "$target")" || return 2
    read -r _ qemu sysroot _ _ <<<"$info"
    local runner=()
    if [[ "$qemu" != native ]]; then
        runner=("$qemu")
        [[ "$sysroot" == - ]] || runner+=(-L "$sysroot")
    fi
    CROSS_RUN=()
    if [[ -n "$cap" ]]; then
        if ((${#runner[@]})); then
            CROSS_RUN=(prlimit --as=$(((cap + 512) * 1024 * 1024)) -- "${runner[@]}" -R "$((cap * 1024 * 1024))")
        else
            CROSS_RUN=(prlimit --as=$((cap * 1024 * 1024)) --)
        fi
    else
        CROSS_RUN=("${runner[@]}")
    fi
}

# The first known target whose Debian architecture is ARCH.
cross_target_for_deb_arch() {
    local t
    for t in $(cross_targets); do
        [[ "$(cross_target_info "$t" | awk '{print $4}')" == "$1" ]] && { echo "$t"; return 0; }
    done
    return 1
}
