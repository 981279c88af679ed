//! `greeter`: a small library component (`twig:test/greeter`).
//!
//! Exports simple functions for smoke tests and benchmarks, and three exports
//! that only forward to host imports (`twig:test/host-fns`) so benchmarks can
//! time a guest -> host round trip.

wit_bindgen::generate!({
    world: "greeter",
    path: "../wit/test",
});

use twig::test::host_fns;

struct Greeter;

impl Guest for Greeter {
    fn greet(name: String) -> String {
        let greeting = format!("Hello, {name}!");
        println!("{greeting}");
        greeting
    }

    fn add(a: u32, b: u32) -> u32 {
        a.wrapping_add(b)
    }

    fn echo_bytes(data: Vec<u8>) -> u32 {
        data.len() as u32
    }

    fn call_double(x: u32) -> u32 {
        host_fns::double(x)
    }

    fn call_shout(s: String) -> String {
        host_fns::shout(&s)
    }

    fn call_reverse(data: Vec<u8>) -> Vec<u8> {
        host_fns::reverse(&data)
    }
}

export!(Greeter);
