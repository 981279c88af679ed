//! `misbehave`: a guest that misbehaves on request (`twig:test/misbehave`).
//! The host uses it to test traps, panics, fuel/time limits, memory limits,
//! call-stack limits and its per-call lift budget (byte floods into host
//! functions), and that the host survives each of them.

wit_bindgen::generate!({
    world: "misbehave",
    path: "../wit/test",
});

use core::hint::black_box;
use core::ptr;

use wasmcloud_component::wasi::cli::stdout;
use wasmcloud_component::wasi::keyvalue::{batch, store};
use wasmcloud_component::wasi::random::random;

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

/// The same imports the bindings call, declared here so that the guest can
/// pass a list length it does not have: the canonical ABI is just a pointer
/// and a length, and a hostile guest controls both.
mod raw {
    #[link(wasm_import_module = "wasi:io/streams@0.2.2")]
    unsafe extern "C" {
        #[link_name = "[method]output-stream.write"]
        pub fn stream_write(this: i32, ptr: *const u8, len: usize, ret: *mut u8);
        #[link_name = "[method]output-stream.blocking-write-and-flush"]
        pub fn stream_flush(this: i32, ptr: *const u8, len: usize, ret: *mut u8);
    }

    #[link(wasm_import_module = "wasi:keyvalue/store@0.2.0-draft")]
    unsafe extern "C" {
        #[link_name = "[method]bucket.set"]
        pub fn bucket_set(
            this: i32,
            key: *const u8,
            key_len: usize,
            value: *const u8,
            value_len: usize,
            ret: *mut u8,
        );
    }

    #[link(wasm_import_module = "wasi:keyvalue/batch@0.2.0-draft")]
    unsafe extern "C" {
        #[link_name = "set-many"]
        pub fn set_many(bucket: i32, entries: *const u8, count: usize, ret: *mut u8);
    }

    #[link(wasm_import_module = "wasmcloud:messaging/consumer@0.2.0")]
    unsafe extern "C" {
        // broker-message flattened: subject, body, reply-to (option tag,
        // string), then the return pointer.
        #[link_name = "publish"]
        pub fn publish(
            subject: *const u8,
            subject_len: usize,
            body: *const u8,
            body_len: usize,
            reply_tag: i32,
            reply: *const u8,
            reply_len: usize,
            ret: *mut u8,
        );
    }
}

/// Return area of a raw call: every result here fits in 16 bytes.
#[repr(C, align(8))]
struct RetArea([u8; 16]);

impl RetArea {
    fn new() -> RetArea {
        RetArea([0; 16])
    }

    fn ptr(&mut self) -> *mut u8 {
        self.0.as_mut_ptr()
    }

    /// A `result<_, E>`: the case byte at offset 0.
    fn ok_or(&self, what: &str) -> Result<(), String> {
        match self.0[0] {
            0 => Ok(()),
            _ => Err(format!("the host answered {what} with an error")),
        }
    }

    /// A `result<_, string>`: the string at offset 4.
    fn ok_or_string(&self) -> Result<(), String> {
        match self.0[0] {
            0 => Ok(()),
            _ => Err(self.string_at(4)),
        }
    }

    /// A `result<_, wasi:keyvalue/store.error>`: the error's case byte at 4,
    /// the `other` case's string at 8.
    fn ok_or_kv_error(&self) -> Result<(), String> {
        match (self.0[0], self.0[4]) {
            (0, _) => Ok(()),
            (_, 0) => Err("no-such-store".into()),
            (_, 1) => Err("access-denied".into()),
            _ => Err(format!("other: {}", self.string_at(8))),
        }
    }

    /// A string's pointer and length at `at` and `at + 4`.
    fn string_at(&self, at: usize) -> String {
        let word = |at: usize| {
            u32::from_le_bytes(self.0[at..at + 4].try_into().unwrap_or([0; 4])) as usize
        };
        let (p, n) = (word(at), word(at + 4));
        // SAFETY: the host lowered a string of `n` bytes at `p` into this
        // memory with our realloc; the guest leaks it (it is a test guest).
        let bytes = unsafe { core::slice::from_raw_parts(p as *const u8, n) };
        String::from_utf8_lossy(bytes).into_owned()
    }
}

fn flood_stream(len: u32, held: u32, flush: bool) -> Result<(), String> {
    let out = stdout::get_stdout();
    let buf = vec![0x5au8; held as usize];
    let mut ret = RetArea::new();
    // SAFETY: a raw import call; the host reads (at most) `len` bytes at
    // `buf` and checks them against this instance's memory itself. The
    // guest never reads past `held`.
    unsafe {
        if flush {
            raw::stream_flush(out.handle() as i32, buf.as_ptr(), len as usize, ret.ptr());
        } else {
            raw::stream_write(out.handle() as i32, buf.as_ptr(), len as usize, ret.ptr());
        }
    }
    ret.ok_or("the stream write")
}

fn open_default() -> Result<store::Bucket, String> {
    store::open("default").map_err(|e| format!("open \"default\": {e:?}"))
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

    fn flood_stream_write(len: u32, held: u32) -> Result<(), String> {
        flood_stream(len, held, false)
    }

    fn flood_stream_flush(len: u32, held: u32) -> Result<(), String> {
        flood_stream(len, held, true)
    }

    fn flood_kv_set(len: u32, held: u32) -> Result<(), String> {
        let bucket = open_default()?;
        let key = b"flood";
        let buf = vec![0x5au8; held as usize];
        let mut ret = RetArea::new();
        // SAFETY: as in `flood_stream`.
        unsafe {
            raw::bucket_set(
                bucket.handle() as i32,
                key.as_ptr(),
                key.len(),
                buf.as_ptr(),
                len as usize,
                ret.ptr(),
            );
        }
        ret.ok_or_kv_error()
    }

    fn flood_publish(len: u32, held: u32) -> Result<(), String> {
        let subject = b"flood";
        let buf = vec![0x5au8; held as usize];
        let mut ret = RetArea::new();
        // SAFETY: as in `flood_stream`.
        unsafe {
            raw::publish(
                subject.as_ptr(),
                subject.len(),
                buf.as_ptr(),
                len as usize,
                0,
                ptr::null(),
                0,
                ret.ptr(),
            );
        }
        ret.ok_or_string()
    }

    fn flood_kv_set_many(count: u32, len: u32) -> Result<(), String> {
        let bucket = open_default()?;
        let value = vec![0x5au8; len as usize];
        let key = b"alias";
        // Each entry is a tuple<string, list<u8>> in memory: key pointer,
        // key length, value pointer, value length (4 bytes each). Every
        // entry points at the same key and the same value.
        let mut entries: Vec<u32> = Vec::with_capacity(count as usize * 4);
        for _ in 0..count {
            entries.extend([
                key.as_ptr() as u32,
                key.len() as u32,
                value.as_ptr() as u32,
                value.len() as u32,
            ]);
        }
        let mut ret = RetArea::new();
        // SAFETY: as in `flood_stream`; `entries` is a valid list of `count`
        // entries, each naming bytes the guest holds.
        unsafe {
            raw::set_many(
                bucket.handle() as i32,
                entries.as_ptr().cast(),
                count as usize,
                ret.ptr(),
            );
        }
        ret.ok_or_kv_error()
    }

    fn flood_kv_get_many(count: u32, len: u32) -> Result<u32, String> {
        let bucket = open_default()?;
        bucket
            .set("big", &vec![0x5au8; len as usize])
            .map_err(|e| format!("set: {e:?}"))?;
        let keys: Vec<String> = (0..count).map(|_| "big".to_string()).collect();
        let got = batch::get_many(&bucket, &keys).map_err(|e| format!("get-many: {e:?}"))?;
        Ok(got.iter().flatten().count() as u32)
    }

    fn random_bytes(len: u64) -> u64 {
        random::get_random_bytes(len).len() as u64
    }
}

export!(Misbehave);
