//! `compute`: CPU-bound guest (`twig:test/compute`). SHA-256 runs entirely in
//! the guest (pure-Rust `sha2`, no SIMD), so the host only measures the engine.

wit_bindgen::generate!({
    world: "compute",
    path: "../wit/test",
});

use sha2::{Digest, Sha256};

struct Compute;

impl Guest for Compute {
    fn sha256_zeros(len: u32) -> Vec<u8> {
        // Feed the zeros in fixed-size chunks so memory use stays constant.
        const CHUNK: [u8; 4096] = [0; 4096];
        let mut hasher = Sha256::new();
        let mut left = len as usize;
        while left > 0 {
            let n = left.min(CHUNK.len());
            hasher.update(&CHUNK[..n]);
            left -= n;
        }
        hasher.finalize().to_vec()
    }

    fn sha256(data: Vec<u8>) -> Vec<u8> {
        Sha256::digest(&data).to_vec()
    }
}

export!(Compute);
