//! `misbehave`: a guest that misbehaves on request (`twig:test/misbehave`).
//! The host uses it to test traps, panics, fuel/time limits, memory limits and
//! call-stack limits, and that the host survives each of them.

wit_bindgen::generate!({
    world: "misbehave",
    path: "../wit/test",
});

use core::hint::black_box;
use core::ptr;

struct Misbehave;

/// Size of each buffer `hog` allocates.
const MIB: usize = 1 << 20;
/// Stride at which `hog` touches its buffers (the wasm page is 64 KiB; 4 KiB
/// also touches every OS page of a native-backed linear memory).
const PAGE: usize = 4096;

/// `recurse` calls itself through this pointer. The volatile load hides the
/// callee from LLVM, so the recursion cannot be turned into a loop (no tail
/// call or accumulator elimination), and unlike `black_box` on a local it
/// keeps every frame in wasm locals: the recursion exhausts the *engine's*
/// call stack, not Rust's 1 MiB shadow stack in linear memory (whose overflow
/// would silently corrupt memory instead of trapping).
static RECURSE: fn(u64) -> u64 = recurse_impl;

#[inline(never)]
fn recurse_impl(depth: u64) -> u64 {
    if depth == 0 {
        return 0;
    }
    // SAFETY: reading a valid, initialised static.
    let next = unsafe { ptr::read_volatile(&RECURSE) };
    1 + next(depth - 1)
}

impl Guest for Misbehave {
    fn ok() -> u32 {
        42
    }

    fn trap() {
        core::arch::wasm32::unreachable()
    }

    fn panic() {
        panic!("guest panicked on purpose")
    }

    fn spin() {
        let mut i: u64 = 0;
        loop {
            // black_box makes every iteration observable, so the loop stays.
            i = black_box(i.wrapping_add(1));
        }
    }

    fn hog() {
        let mut kept: Vec<Vec<u8>> = Vec::new();
        loop {
            let mut buf = vec![0u8; MIB];
            let mut off = 0;
            while off < MIB {
                buf[off] = (off / PAGE) as u8 | 1;
                off += PAGE;
            }
            kept.push(black_box(buf));
        }
    }

    fn recurse(depth: u64) -> u64 {
        recurse_impl(depth)
    }
}

export!(Misbehave);
