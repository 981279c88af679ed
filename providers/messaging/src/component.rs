//! The `wasmcloud:messaging@0.2.0` binding: the `consumer` interface a
//! component imports (host functions on a `twig_component::Linker`), and
//! the value conversions the host needs to call a component's exported
//! `handler.handle-message`.
//!
//! Errors a component can cause (bad subject, oversize body, no
//! responders, timeout, no bus linked) come back to it as the `err` string
//! of the WIT `result`, as wasmCloud's messaging-nats provider does; only
//! a value of the wrong shape (which the canonical ABI layer rules out) or
//! a request outliving the call's deadline ends the call with a
//! `HostError`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use twig_component::{HostError, Linker, Val};

use crate::bus::{Bus, BusError, Message};

/// The interface components import to publish and request.
pub const CONSUMER_INTERFACE: &str = "wasmcloud:messaging/consumer@0.2.0";
/// The interface components export to receive messages.
pub const HANDLER_INTERFACE: &str = "wasmcloud:messaging/handler@0.2.0";
/// The export the host calls for each delivered message, with one
/// argument, [`message_to_val`] of the message.
pub const HANDLE_MESSAGE: &str = "wasmcloud:messaging/handler@0.2.0#handle-message";

/// What a component's result says when no bus serves it.
pub const NOT_LINKED: &str = "no messaging provider linked";

/// Gives host functions the bus serving the calling instance, if any (a
/// component without a link to the messaging provider gets `None`).
pub trait MessagingView {
    fn messaging(&self) -> Option<&Arc<Bus>>;
    /// The instance's `wasmcloud:messaging@0.3.0` handles
    /// ([`crate::v0_3`]).
    fn messages(&mut self) -> &mut crate::v0_3::MessagesCtx;
}

/// Registers `wasmcloud:messaging/consumer@0.2.0` (`publish`, `request`).
/// `types` has no functions and needs nothing; `handler` is exported by
/// components, not imported.
pub fn add_to_linker<T: MessagingView + 'static>(linker: &mut Linker<T>) {
    linker
        .interface(CONSUMER_INTERFACE)
        .func("publish", |cx, args, out| {
            out.push(publish_call(cx.data().messaging(), cx.component(), args)?);
            Ok(())
        })
        .func("request", |cx, args, out| {
            let (bus, deadline) = (cx.data().messaging(), cx.deadline());
            out.push(request_call(bus, cx.component(), args, deadline)?);
            Ok(())
        });
}

/// `broker-message` as a component-model record.
pub fn message_to_val(msg: &Message) -> Val {
    Val::Record(vec![
        ("subject".into(), Val::String(msg.subject.clone())),
        ("body".into(), bytes_to_val(&msg.body)),
        (
            "reply-to".into(),
            Val::Option(msg.reply_to.clone().map(|r| Box::new(Val::String(r)))),
        ),
    ])
}

/// A `broker-message` record back into a [`Message`]. Fields are found by
/// name; the error names what is missing or mistyped.
pub fn val_to_message(val: &Val) -> Result<Message, String> {
    let Val::Record(fields) = val else {
        return Err(format!(
            "broker-message: expected a record, got {}",
            val.kind()
        ));
    };
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v)
            .ok_or_else(|| format!("broker-message: missing field `{name}`"))
    };
    let subject = match field("subject")? {
        Val::String(s) => s.clone(),
        other => {
            return Err(format!(
                "broker-message field `subject`: expected a string, got {}",
                other.kind()
            ))
        }
    };
    let body =
        val_to_bytes(field("body")?).map_err(|e| format!("broker-message field `body`: {e}"))?;
    let reply_to = match field("reply-to")? {
        Val::Option(None) => None,
        Val::Option(Some(v)) => match &**v {
            Val::String(s) => Some(s.clone()),
            other => {
                return Err(format!(
                    "broker-message field `reply-to`: expected option<string>, got option<{}>",
                    other.kind()
                ))
            }
        },
        other => {
            return Err(format!(
                "broker-message field `reply-to`: expected an option, got {}",
                other.kind()
            ))
        }
    };
    Ok(Message {
        subject,
        body,
        reply_to,
    })
}

/// Reads the results of a `handle-message` call (`result<_, string>`), for
/// a host-side [`crate::Subscriber`] that calls a component.
pub fn handler_result(results: &[Val]) -> Result<(), String> {
    match results {
        [Val::Result(Ok(_))] => Ok(()),
        [Val::Result(Err(Some(e)))] => match &**e {
            Val::String(s) => Err(s.clone()),
            other => Err(format!("handle-message failed with a {}", other.kind())),
        },
        [Val::Result(Err(None))] => Err("handle-message failed".into()),
        other => Err(format!(
            "handle-message returned {} values, expected one result",
            other.len()
        )),
    }
}

/// A `list<u8>`, in the byte form twig-component lifts one as.
fn bytes_to_val(bytes: &[u8]) -> Val {
    Val::Bytes(bytes.to_vec())
}

fn val_to_bytes(val: &Val) -> Result<Vec<u8>, String> {
    match val.bytes() {
        Some(b) => Ok(b.into_owned()),
        None => match val {
            Val::List(items) => Err(format!(
                "expected list<u8>, got list<{}>",
                items
                    .iter()
                    .find(|v| !matches!(v, Val::U8(_)))
                    .map_or("?", Val::kind)
            )),
            other => Err(format!("expected list<u8>, got {}", other.kind())),
        },
    }
}

/// `err(msg)` of a `result<_, string>`, the messaging interface's error.
fn string_err(msg: impl Into<String>) -> Val {
    Val::err(Some(Val::String(msg.into())))
}

/// `publish: func(msg: broker-message) -> result<_, string>`
fn publish_call(bus: Option<&Arc<Bus>>, component: &str, args: &[Val]) -> Result<Val, HostError> {
    let [arg] = args else {
        return Err(HostError::new(format!(
            "{CONSUMER_INTERFACE}#publish: expected 1 argument, got {}",
            args.len()
        )));
    };
    let msg = val_to_message(arg)
        .map_err(|e| HostError::new(format!("{CONSUMER_INTERFACE}#publish: {e}")))?;
    let Some(bus) = bus else {
        return Ok(string_err(NOT_LINKED));
    };
    let subject = msg.subject.clone();
    Ok(match bus.publish(msg) {
        Ok(report) => {
            tracing::debug!(
                component,
                subject,
                delivered_to = report.delivered_to,
                "published"
            );
            Val::ok(None)
        }
        Err(e) => {
            tracing::debug!(component, subject, error = %e, "publish refused");
            string_err(e.to_string())
        }
    })
}

/// `request: func(subject: string, body: list<u8>, timeout-ms: u32)
/// -> result<broker-message, string>`
///
/// Waits for at most the shortest of `timeout-ms`, the bus's
/// `max_request_timeout` and the time left before the call's deadline. If
/// the deadline is what ends the wait, the call ends with
/// `HostError::deadline()` (as twig-wasi's blocking calls do): the guest
/// has run out of time, so handing it an error string to act on would
/// only let it overrun.
fn request_call(
    bus: Option<&Arc<Bus>>,
    component: &str,
    args: &[Val],
    deadline: Option<Instant>,
) -> Result<Val, HostError> {
    let (subject, body, timeout_ms) = match args {
        [Val::String(s), body, Val::U32(t)] => (s, body, *t),
        _ => {
            let kinds: Vec<_> = args.iter().map(Val::kind).collect();
            return Err(HostError::new(format!(
                "{CONSUMER_INTERFACE}#request: expected (string, list<u8>, u32), got ({})",
                kinds.join(", ")
            )));
        }
    };
    let body = val_to_bytes(body)
        .map_err(|e| HostError::new(format!("{CONSUMER_INTERFACE}#request body: {e}")))?;
    let Some(bus) = bus else {
        return Ok(string_err(NOT_LINKED));
    };
    let wanted = Duration::from_millis(timeout_ms.into()).min(bus.config().max_request_timeout);
    let (wait, deadline_bound) = match deadline {
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            if left < wanted {
                (left, true)
            } else {
                (wanted, false)
            }
        }
        None => (wanted, false),
    };
    if deadline_bound && wait.is_zero() {
        return Err(HostError::deadline());
    }
    Ok(match bus.request(subject, body, wait) {
        Ok(reply) => Val::ok(Some(message_to_val(&reply))),
        Err(BusError::Timeout { .. }) if deadline_bound => return Err(HostError::deadline()),
        Err(e) => {
            tracing::debug!(component, subject = %subject, error = %e, "request failed");
            string_err(e.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{BusConfig, Subscriber};

    fn bus(config: BusConfig) -> Arc<Bus> {
        Arc::new(Bus::new(config).unwrap())
    }

    fn err_text(v: &Val) -> &str {
        match v {
            Val::Result(Err(Some(e))) => match &**e {
                Val::String(s) => s,
                _ => panic!("not a string error: {v:?}"),
            },
            _ => panic!("not an error result: {v:?}"),
        }
    }

    /// Answers every message by echoing its body, upper-cased, to reply_to.
    struct Upper(Arc<Bus>);
    impl Subscriber for Upper {
        fn name(&self) -> &str {
            "upper"
        }
        fn deliver(&self, msg: Message) -> Result<(), String> {
            let reply = Message::new(
                msg.reply_to.ok_or("no reply_to")?,
                msg.body.to_ascii_uppercase(),
            );
            self.0.publish(reply).map(|_| ()).map_err(|e| e.to_string())
        }
    }

    #[test]
    fn message_val_round_trip() {
        for msg in [
            Message::new("a.b", b"hi".to_vec()),
            Message::new("a", Vec::new()).with_reply_to("_INBOX.x"),
        ] {
            let v = message_to_val(&msg);
            assert_eq!(val_to_message(&v).unwrap(), msg);
        }
        let v = message_to_val(&Message::new("s", vec![1, 2]).with_reply_to("r"));
        assert_eq!(
            v,
            Val::Record(vec![
                ("subject".into(), Val::String("s".into())),
                ("body".into(), Val::Bytes(vec![1, 2])),
                (
                    "reply-to".into(),
                    Val::Option(Some(Box::new(Val::String("r".into()))))
                ),
            ])
        );
        // The older form of a byte list, a `u8` value per byte, still reads.
        let older = Val::Record(vec![
            ("subject".into(), Val::String("s".into())),
            ("body".into(), Val::List(vec![Val::U8(1), Val::U8(2)])),
            ("reply-to".into(), Val::Option(None)),
        ]);
        assert_eq!(val_to_message(&older).unwrap().body, vec![1, 2]);
    }

    #[test]
    fn val_to_message_errors() {
        assert!(val_to_message(&Val::U8(1))
            .unwrap_err()
            .contains("expected a record"));
        let missing = Val::Record(vec![("subject".into(), Val::String("a".into()))]);
        assert!(val_to_message(&missing)
            .unwrap_err()
            .contains("missing field `body`"));
        let bad_body = Val::Record(vec![
            ("subject".into(), Val::String("a".into())),
            ("body".into(), Val::List(vec![Val::U32(1)])),
            ("reply-to".into(), Val::Option(None)),
        ]);
        assert!(val_to_message(&bad_body).unwrap_err().contains("list<u32>"));
    }

    #[test]
    fn handler_results() {
        assert_eq!(handler_result(&[Val::ok(None)]), Ok(()));
        assert_eq!(handler_result(&[string_err("nope")]), Err("nope".into()));
        assert!(handler_result(&[]).is_err());
    }

    #[test]
    fn registers_consumer_only() {
        struct Data(Option<Arc<Bus>>, crate::v0_3::MessagesCtx);
        impl MessagingView for Data {
            fn messaging(&self) -> Option<&Arc<Bus>> {
                self.0.as_ref()
            }
            fn messages(&mut self) -> &mut crate::v0_3::MessagesCtx {
                &mut self.1
            }
        }
        let mut linker: Linker<Data> = Linker::new();
        add_to_linker(&mut linker);
        let names: Vec<&str> = linker.interface_names().collect();
        assert_eq!(names, [CONSUMER_INTERFACE]);
        let iface = linker.interface(CONSUMER_INTERFACE);
        assert!(iface.has_func("publish") && iface.has_func("request"));
    }

    #[test]
    fn publish_without_bus_is_an_error_result() {
        let msg = message_to_val(&Message::new("a", vec![]));
        let v = publish_call(None, "c", &[msg]).unwrap();
        assert_eq!(err_text(&v), NOT_LINKED);
        let body = bytes_to_val(b"x");
        let v = request_call(
            None,
            "c",
            &[Val::String("a".into()), body, Val::U32(10)],
            None,
        )
        .unwrap();
        assert_eq!(err_text(&v), NOT_LINKED);
    }

    #[test]
    fn publish_errors_are_results() {
        let b = bus(BusConfig {
            max_payload: 4,
            ..BusConfig::default()
        });
        let ok_msg = message_to_val(&Message::new("a.b", b"1234".to_vec()));
        assert_eq!(
            publish_call(Some(&b), "c", &[ok_msg]).unwrap(),
            Val::ok(None)
        );
        let big = message_to_val(&Message::new("a.b", b"12345".to_vec()));
        let v = publish_call(Some(&b), "c", &[big]).unwrap();
        assert!(
            err_text(&v).contains("over the maximum payload of 4"),
            "{v:?}"
        );
        let bad = message_to_val(&Message::new("a..b", vec![]));
        let v = publish_call(Some(&b), "c", &[bad]).unwrap();
        assert_eq!(
            err_text(&v),
            r#"invalid subject "a..b": empty token at position 2"#
        );
        let wild = message_to_val(&Message::new("a.*", vec![]));
        assert!(err_text(&publish_call(Some(&b), "c", &[wild]).unwrap()).contains("wildcard"));
        // A shape the ABI would never produce is a host error, not a panic.
        assert!(publish_call(Some(&b), "c", &[]).is_err());
        assert!(publish_call(Some(&b), "c", &[Val::U8(0)]).is_err());
        b.close(Duration::from_secs(1));
    }

    #[test]
    fn request_round_trip_and_errors() {
        let b = bus(BusConfig::default());
        b.subscribe("svc.upper", None, Arc::new(Upper(b.clone())))
            .unwrap();
        let args = |s: &str, t: u32| [Val::String(s.into()), bytes_to_val(b"abc"), Val::U32(t)];
        let v = request_call(Some(&b), "c", &args("svc.upper", 1000), None).unwrap();
        let Val::Result(Ok(Some(reply))) = v else {
            panic!("{v:?}")
        };
        let reply = val_to_message(&reply).unwrap();
        assert_eq!(reply.body, b"ABC");
        assert!(reply.subject.starts_with("_INBOX."));

        let v = request_call(Some(&b), "c", &args("nobody.home", 1000), None).unwrap();
        assert!(err_text(&v).contains("no responders"), "{v:?}");
        let v = request_call(Some(&b), "c", &args("bad subject", 1000), None).unwrap();
        assert!(err_text(&v).contains("whitespace"), "{v:?}");
        assert!(request_call(Some(&b), "c", &[Val::U32(1)], None).is_err());
        b.close(Duration::from_secs(1));
    }

    #[test]
    fn request_respects_the_call_deadline() {
        let b = bus(BusConfig::default());
        // Subscribed but never answers.
        struct Mute;
        impl Subscriber for Mute {
            fn name(&self) -> &str {
                "mute"
            }
            fn deliver(&self, _: Message) -> Result<(), String> {
                Ok(())
            }
        }
        b.subscribe("quiet", None, Arc::new(Mute)).unwrap();
        let args = |t: u32| [Val::String("quiet".into()), bytes_to_val(b""), Val::U32(t)];

        // The component's own timeout is shorter: an error result.
        let start = Instant::now();
        let far = Some(start + Duration::from_secs(10));
        let v = request_call(Some(&b), "c", &args(20), far).unwrap();
        assert!(err_text(&v).contains("timed out after 20 ms"), "{v:?}");

        // The deadline is shorter: the wait stops there, as a deadline error.
        let start = Instant::now();
        let near = Some(start + Duration::from_millis(30));
        let e = request_call(Some(&b), "c", &args(60_000), near).unwrap_err();
        assert!(e.is_deadline(), "{e}");
        assert!(start.elapsed() < Duration::from_secs(5));

        // Already past the deadline: no wait at all.
        let past = Some(Instant::now());
        assert!(request_call(Some(&b), "c", &args(1000), past)
            .unwrap_err()
            .is_deadline());
        b.close(Duration::from_secs(1));
    }
}
