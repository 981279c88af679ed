//! `wasi:logging@0.1.0-draft`: `log` becomes a `tracing` event with the
//! component's name, the guest's context and its level (and a line in the
//! capture, if any).

use twig_component::{HostError, Linker, Val};

use crate::WasiView;

/// The draft logging interface that `wasmcloud-component` guests import.
pub const LOGGING_INTERFACE: &str = "wasi:logging/logging@0.1.0-draft";

pub(crate) fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>) {
    linker
        .interface(LOGGING_INTERFACE)
        .func("log", |cx, args, _out| {
            let (level, context, message) = match args {
                [Val::Enum(l), Val::String(c), Val::String(m)] => {
                    (l.as_str(), c.as_str(), m.as_str())
                }
                _ => return Err(HostError::new("log: expected (level, context, message)")),
            };
            let component = cx.component();
            match level {
                "trace" => tracing::trace!(target: "twig::guest", component, context, "{message}"),
                "debug" => tracing::debug!(target: "twig::guest", component, context, "{message}"),
                "info" => tracing::info!(target: "twig::guest", component, context, "{message}"),
                "warn" => tracing::warn!(target: "twig::guest", component, context, "{message}"),
                _ => tracing::error!(target: "twig::guest", component, context, level, "{message}"),
            }
            let line = format!("[{level}] {context}: {message}\n");
            if let Some(c) = &cx.data_mut().wasi().capture {
                if let Ok(mut v) = c.log.lock() {
                    v.extend_from_slice(line.as_bytes());
                }
            }
            Ok(())
        });
}
