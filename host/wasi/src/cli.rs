//! `wasi:cli`: environment, arguments, exit, stdin (always at end of
//! file), stdout/stderr (line-buffered into `tracing`, tagged with the
//! component's name, and optionally captured), terminal-* (none).

use std::sync::{Arc, Mutex};

use twig_component::{HostError, Linker, Resource, Val};

use crate::{iface, Object, WasiCtx, WasiTypes, WasiView};

/// Where a guest's standard output and error go.
#[derive(Clone, Default)]
pub struct Capture {
    pub stdout: Arc<Mutex<Vec<u8>>>,
    pub stderr: Arc<Mutex<Vec<u8>>>,
    /// `wasi:logging` records, one `[level] context: message` line each.
    pub log: Arc<Mutex<Vec<u8>>>,
}

impl WasiCtx {
    /// Writes guest output: complete lines go to `tracing`, everything to
    /// the capture buffer.
    pub(crate) fn write_out(&mut self, component: &str, stderr: bool, data: &[u8]) {
        let (buf, name) = if stderr {
            (&mut self.line_err, "stderr")
        } else {
            (&mut self.line_out, "stdout")
        };
        if let Some(c) = &self.capture {
            let target = if name == "stderr" {
                &c.stderr
            } else {
                &c.stdout
            };
            if let Ok(mut v) = target.lock() {
                v.extend_from_slice(data);
            }
        }
        buf.extend_from_slice(data);
        while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=pos).collect();
            let text = String::from_utf8_lossy(&line[..line.len() - 1]);
            tracing::info!(target: "twig::guest", component, stream = name, "{text}");
        }
        // Keep partial lines bounded.
        if buf.len() > 64 * 1024 {
            let text = String::from_utf8_lossy(buf).into_owned();
            buf.clear();
            tracing::info!(target: "twig::guest", component, stream = name, "{text}");
        }
    }
}

pub(crate) fn add_to_linker<T: WasiView + 'static>(linker: &mut Linker<T>, ty: WasiTypes) {
    let env = linker.interface(&iface("wasi:cli/environment"));
    env.func("get-environment", |cx, _args, out| {
        let pairs = cx
            .data_mut()
            .wasi()
            .env
            .iter()
            .map(|(k, v)| Val::Tuple(vec![Val::String(k.clone()), Val::String(v.clone())]))
            .collect();
        out.push(Val::List(pairs));
        Ok(())
    });
    env.func("get-arguments", |cx, _args, out| {
        out.push(Val::List(
            cx.data_mut()
                .wasi()
                .args
                .iter()
                .cloned()
                .map(Val::String)
                .collect(),
        ));
        Ok(())
    });
    env.func("initial-cwd", |_cx, _args, out| {
        out.push(Val::Option(None));
        Ok(())
    });

    let exit = linker.interface(&iface("wasi:cli/exit"));
    exit.func("exit", |_cx, args, _out| {
        let code = match args.first() {
            Some(Val::Result(Ok(_))) => 0,
            _ => 1,
        };
        Err(HostError::exit(code))
    });
    exit.func("exit-with-code", |_cx, args, _out| {
        let code = match args.first() {
            Some(Val::U8(c)) => *c as i32,
            _ => 1,
        };
        Err(HostError::exit(code))
    });

    for (name, func, which, rtype) in [
        ("wasi:cli/stdin", "get-stdin", 0, ty.input_stream),
        ("wasi:cli/stdout", "get-stdout", 1, ty.output_stream),
        ("wasi:cli/stderr", "get-stderr", 2, ty.output_stream),
    ] {
        linker
            .interface(&iface(name))
            .func(func, move |cx, _args, out| {
                let object = match which {
                    0 => Object::Stdin,
                    1 => Object::Stdout,
                    _ => Object::Stderr,
                };
                let rep = cx.data_mut().wasi().insert(object)?;
                out.push(Val::Resource(Resource::host_own(rtype, rep)));
                Ok(())
            });
    }

    // No terminals on a device: every terminal query answers `none`.
    linker.resource(
        &iface("wasi:cli/terminal-input"),
        "terminal-input",
        |_t, _rep| {},
    );
    linker.resource(
        &iface("wasi:cli/terminal-output"),
        "terminal-output",
        |_t, _rep| {},
    );
    for (i, f) in [
        ("wasi:cli/terminal-stdin", "get-terminal-stdin"),
        ("wasi:cli/terminal-stdout", "get-terminal-stdout"),
        ("wasi:cli/terminal-stderr", "get-terminal-stderr"),
    ] {
        linker.interface(&iface(i)).func(f, |_cx, _args, out| {
            out.push(Val::Option(None));
            Ok(())
        });
    }
}
