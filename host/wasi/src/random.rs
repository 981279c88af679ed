//! `wasi:random`: `random` (OS entropy), `insecure` (a per-instance
//! xorshift generator seeded from it) and `insecure-seed`.

use twig_component::{Args, HostError, Linker, Val};

use crate::{iface, WasiCtx, WasiView, MAX_IO_CHUNK};

impl WasiCtx {
    fn next_insecure(&mut self) -> u64 {
        // xorshift64*: fast, not for secrets (that is what `random` is for).
        let mut x = self.insecure_state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.insecure_state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

pub(crate) fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>) {
    let random = linker.interface(&iface("wasi:random/random"));
    random.func("get-random-bytes", |cx, args, out| {
        let len = Args::new(args).u64(0)?;
        // The guest chose the length: check the lift budget before
        // allocating it.
        cx.reserve(len)?;
        if len > MAX_IO_CHUNK {
            return Err(HostError::new(format!(
                "get-random-bytes({len}) exceeds the permitted {MAX_IO_CHUNK} bytes"
            )));
        }
        let mut buf = vec![0u8; len as usize];
        getrandom::fill(&mut buf)
            .map_err(|e| HostError::new(format!("no entropy available: {e}")))?;
        out.push(Val::Bytes(buf));
        Ok(())
    });
    random.func("get-random-u64", |_cx, _args, out| {
        let mut buf = [0u8; 8];
        getrandom::fill(&mut buf)
            .map_err(|e| HostError::new(format!("no entropy available: {e}")))?;
        out.push(Val::U64(u64::from_le_bytes(buf)));
        Ok(())
    });
    let insecure = linker.interface(&iface("wasi:random/insecure"));
    insecure.func("get-insecure-random-bytes", |cx, args, out| {
        let len = Args::new(args).u64(0)?;
        cx.reserve(len)?;
        if len > MAX_IO_CHUNK {
            return Err(HostError::new(format!(
                "get-insecure-random-bytes({len}) exceeds the permitted {MAX_IO_CHUNK} bytes"
            )));
        }
        let w = cx.data_mut().wasi();
        let buf: Vec<u8> = (0..len).map(|_| w.next_insecure() as u8).collect();
        out.push(Val::Bytes(buf));
        Ok(())
    });
    insecure.func("get-insecure-random-u64", |cx, _args, out| {
        out.push(Val::U64(cx.data_mut().wasi().next_insecure()));
        Ok(())
    });
    linker.interface(&iface("wasi:random/insecure-seed")).func(
        "insecure-seed",
        |cx, _args, out| {
            let w = cx.data_mut().wasi();
            out.push(Val::Tuple(vec![
                Val::U64(w.next_insecure()),
                Val::U64(w.next_insecure()),
            ]));
            Ok(())
        },
    );
}
