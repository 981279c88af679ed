//! `wasi:filesystem`: no preopened directories; every operation is denied
//! with `error-code::access`.

use twig_component::{Linker, Val};

use crate::{iface, WasiView};

pub(crate) fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>) {
    let types = iface("wasi:filesystem/types");
    linker.resource(&types, "descriptor", |_t, _rep| {});
    linker.resource(&types, "directory-entry-stream", |_t, _rep| {});
    let fs = linker.interface(&types);
    fs.func("filesystem-error-code", |_cx, _args, out| {
        out.push(Val::Option(None));
        Ok(())
    });
    // With no preopens no descriptor can exist; anything else is denied.
    fs.fallback(|_name, _cx, _args, out| {
        out.push(Val::err(Some(Val::Enum("access".into()))));
        Ok(())
    });
    linker.interface(&iface("wasi:filesystem/preopens")).func(
        "get-directories",
        |_cx, _args, out| {
            out.push(Val::List(Vec::new()));
            Ok(())
        },
    );
}
