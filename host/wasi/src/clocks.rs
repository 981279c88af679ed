//! `wasi:clocks`: the monotonic clock (from the instance's start) with its
//! timers, which are `wasi:io/poll` pollables ([`crate::io`]), and the wall
//! clock.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use twig_component::{Args, Linker, Resource, Val};

use crate::{iface, Object, WasiTypes, WasiView};

fn datetime(d: Duration) -> Val {
    Val::Record(vec![
        ("seconds".into(), Val::U64(d.as_secs())),
        ("nanoseconds".into(), Val::U32(d.subsec_nanos())),
    ])
}

pub(crate) fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>, ty: WasiTypes) {
    let pollable = ty.pollable;
    let mono = linker.interface(&iface("wasi:clocks/monotonic-clock"));
    mono.func("now", |cx, _args, out| {
        let start = cx.data_mut().wasi().start;
        out.push(Val::U64(start.elapsed().as_nanos() as u64));
        Ok(())
    });
    mono.func("resolution", |_cx, _args, out| {
        out.push(Val::U64(1));
        Ok(())
    });
    mono.func("subscribe-instant", move |cx, args, out| {
        let when = Args::new(args).u64(0)?;
        let w = cx.data_mut().wasi();
        let at = w
            .start
            .checked_add(Duration::from_nanos(when))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 30));
        let rep = w.insert(Object::Pollable(Some(at)))?;
        out.push(Val::Resource(Resource::host_own(pollable, rep)));
        Ok(())
    });
    mono.func("subscribe-duration", move |cx, args, out| {
        let d = Args::new(args).u64(0)?;
        let at = Instant::now()
            .checked_add(Duration::from_nanos(d))
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1 << 30));
        let rep = cx.data_mut().wasi().insert(Object::Pollable(Some(at)))?;
        out.push(Val::Resource(Resource::host_own(pollable, rep)));
        Ok(())
    });

    let wall = linker.interface(&iface("wasi:clocks/wall-clock"));
    wall.func("now", |_cx, _args, out| {
        out.push(datetime(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default(),
        ));
        Ok(())
    });
    wall.func("resolution", |_cx, _args, out| {
        out.push(datetime(Duration::from_nanos(1)));
        Ok(())
    });
}
