//! The `twig:sensors/sensors@0.1.0` interface (`wit/sensors.wit`) on a
//! `twig-component` linker.
//!
//! The host functions only translate: a guest's `read(name)` becomes
//! [`Sensors::read`], and the result is turned into the WIT `reading`
//! record or `error` variant as dynamic [`Val`]s. The `Sensors` comes from
//! the instance's own state through [`SensorsView`], so the embedder
//! decides which components get sensors at all.

use std::sync::Arc;

use twig_component::{Args, HostError, Linker, Val};

use crate::error::SensorError;
use crate::provider::{Reading, SensorInfo, Sensors};

/// The interface name, as components import it.
pub const INTERFACE: &str = "twig:sensors/sensors@0.1.0";

/// The message in `error::unavailable` when the instance has no sensors.
pub const NOT_LINKED: &str = "no sensors provider linked";

/// Implemented by the embedder's per-instance state to hand the binding its
/// sensors. `None` (the component may not use sensors, or the board has
/// none) makes `read` fail with `error::unavailable("no sensors provider
/// linked")` and `list` return an empty list.
pub trait SensorsView {
    fn sensors(&self) -> Option<&Arc<Sensors>>;
}

/// Registers `list` and `read` of [`INTERFACE`].
pub fn add_to_linker<T: SensorsView + 'static>(linker: &mut Linker<T>) {
    linker
        .interface(INTERFACE)
        .func("list", |cx, _args, out| {
            out.push(list_val(cx.data().sensors().map(Arc::as_ref)));
            Ok(())
        })
        .func("read", |cx, args, out| {
            let name = Args::new(args).string(0).map_err(|e| {
                HostError::new(format!(
                    "{INTERFACE} read: {e}, got {:?}",
                    args.first().map(Val::kind)
                ))
            })?;
            out.push(read_val(cx.data().sensors().map(Arc::as_ref), name));
            Ok(())
        });
}

/// The result of `list`: `list<sensor-info>`.
pub(crate) fn list_val(sensors: Option<&Sensors>) -> Val {
    let infos = sensors.map(Sensors::list).unwrap_or_default();
    Val::List(infos.iter().map(info_val).collect())
}

/// The result of `read`: `result<reading, error>`.
pub(crate) fn read_val(sensors: Option<&Sensors>, name: &str) -> Val {
    let result = match sensors {
        Some(s) => s
            .read(name)
            .map(|r| reading_val(&r))
            .map_err(|e| error_val(&e)),
        None => Err(Val::Variant(
            "unavailable".into(),
            Some(Box::new(Val::String(NOT_LINKED.into()))),
        )),
    };
    Val::Result(
        result
            .map(|v| Some(Box::new(v)))
            .map_err(|e| Some(Box::new(e))),
    )
}

fn info_val(info: &SensorInfo) -> Val {
    Val::Record(vec![
        ("name".into(), Val::String(info.name.clone())),
        ("kind".into(), Val::String(info.kind.clone())),
        ("unit".into(), Val::String(info.unit.clone())),
    ])
}

fn reading_val(r: &Reading) -> Val {
    Val::Record(vec![
        ("sensor".into(), Val::String(r.sensor.clone())),
        ("value".into(), Val::Float64(r.value)),
        ("unit".into(), Val::String(r.unit.clone())),
        ("timestamp-ms".into(), Val::U64(r.timestamp_ms)),
    ])
}

/// The WIT `error` case for a read error; the payload is the whole
/// message, which names the sensor and the file or device.
fn error_val(e: &SensorError) -> Val {
    let case = match e {
        SensorError::NotFound { .. } => "not-found",
        SensorError::Unavailable { .. } => "unavailable",
        SensorError::Invalid { .. } => "invalid",
    };
    Val::Variant(case.into(), Some(Box::new(Val::String(e.to_string()))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SensorConfig, SensorsConfig, Sim, Source};
    use crate::sim::ManualClock;

    fn sensors() -> Sensors {
        let cfg = SensorsConfig::new(vec![
            SensorConfig::new(
                "wave",
                Source::Sim(Sim::Sine {
                    amplitude: 2.0,
                    period_ms: 1000,
                    offset: 20.0,
                }),
            )
            .unit("°C"),
            SensorConfig::new(
                "door",
                Source::Gpio {
                    chip: "gpiochip0".into(),
                    line: 3,
                    active_low: false,
                },
            ),
        ])
        .dev_root("/nonexistent-twig-dev");
        Sensors::with_clock(cfg, Arc::new(ManualClock::new(1_000_250))).unwrap()
    }

    fn err_case(v: &Val) -> (&str, &str) {
        match v {
            Val::Result(Err(Some(e))) => match e.as_ref() {
                Val::Variant(case, Some(p)) => match p.as_ref() {
                    Val::String(m) => (case.as_str(), m.as_str()),
                    other => panic!("payload {other:?}"),
                },
                other => panic!("error {other:?}"),
            },
            other => panic!("not an error result: {other:?}"),
        }
    }

    #[test]
    fn list_gives_records_in_declaration_order() {
        let s = sensors();
        let Val::List(items) = list_val(Some(&s)) else {
            panic!("not a list")
        };
        assert_eq!(items.len(), 2);
        assert_eq!(
            items[0],
            Val::Record(vec![
                ("name".into(), Val::String("wave".into())),
                ("kind".into(), Val::String("sim".into())),
                ("unit".into(), Val::String("°C".into())),
            ])
        );
        assert_eq!(list_val(None), Val::List(vec![]));
    }

    #[test]
    fn read_gives_a_reading_record() {
        let s = sensors();
        assert_eq!(
            read_val(Some(&s), "wave"),
            Val::Result(Ok(Some(Box::new(Val::Record(vec![
                ("sensor".into(), Val::String("wave".into())),
                ("value".into(), Val::Float64(22.0)),
                ("unit".into(), Val::String("°C".into())),
                ("timestamp-ms".into(), Val::U64(1_000_250)),
            ])))))
        );
    }

    #[test]
    fn read_errors_map_to_wit_cases() {
        let s = sensors();
        let missing = read_val(Some(&s), "nope");
        assert_eq!(err_case(&missing), ("not-found", "no sensor named `nope`"));
        let door = read_val(Some(&s), "door");
        let (case, msg) = err_case(&door);
        assert_eq!(case, "unavailable");
        assert!(msg.contains("/nonexistent-twig-dev/gpiochip0"), "{msg}");
        let unlinked = read_val(None, "wave");
        assert_eq!(err_case(&unlinked), ("unavailable", NOT_LINKED));
    }

    #[test]
    fn registers_both_functions() {
        struct State(Option<Arc<Sensors>>);
        impl SensorsView for State {
            fn sensors(&self) -> Option<&Arc<Sensors>> {
                self.0.as_ref()
            }
        }
        let mut linker = Linker::<State>::new();
        add_to_linker(&mut linker);
        let iface = linker.interface(INTERFACE);
        assert!(iface.has_func("list"));
        assert!(iface.has_func("read"));
    }
}
