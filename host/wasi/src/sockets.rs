//! `wasi:sockets`: `instance-network` hands out a handle, and every other
//! operation is denied with `error-code::access-denied`.

use twig_component::{HostContext, Linker, Resource, Val};

use crate::{iface, Object, WasiTypes, WasiView};

pub(crate) fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>, ty: WasiTypes) {
    let network = ty.network;
    linker
        .interface(&iface("wasi:sockets/instance-network"))
        .func("instance-network", move |cx, _args, out| {
            let rep = cx.data_mut().wasi().insert(Object::Network)?;
            out.push(Val::Resource(Resource::host_own(network, rep)));
            Ok(())
        });
    let deny = |_name: &str, _cx: &mut HostContext<'_, T>, _args: &[Val], out: &mut Vec<Val>| {
        out.push(Val::err(Some(Val::Enum("access-denied".into()))));
        Ok(())
    };
    let tcp = iface("wasi:sockets/tcp");
    linker.resource(&tcp, "tcp-socket", |_t, _rep| {});
    linker.interface(&tcp).fallback(deny);
    let udp = iface("wasi:sockets/udp");
    for r in [
        "udp-socket",
        "incoming-datagram-stream",
        "outgoing-datagram-stream",
    ] {
        linker.resource(&udp, r, |_t, _rep| {});
    }
    linker.interface(&udp).fallback(deny);
    let lookup = iface("wasi:sockets/ip-name-lookup");
    linker.resource(&lookup, "resolve-address-stream", |_t, _rep| {});
    linker.interface(&lookup).fallback(deny);
    for i in [
        "wasi:sockets/tcp-create-socket",
        "wasi:sockets/udp-create-socket",
        "wasi:sockets/network",
    ] {
        linker.interface(&iface(i)).fallback(deny);
    }
}
