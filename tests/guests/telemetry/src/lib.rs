//! `telemetry`: numbers each periodic sensor reading and publishes it
//! upstream, the way a device's telemetry component would.
//!
//! The counter is incremented *before* the publish. A crash between the
//! two leaves a gap (a number never published) rather than two different
//! messages under one number, and the window is a few microseconds: the
//! publish returns once the host's outbox has written the message.

use wasmcloud_component::wasi::keyvalue::{atomics, store};
use wasmcloud_component::wasmcloud::messaging::{consumer, types as wc_types};

wit_bindgen::generate!({
    world: "twig:test/telemetry",
    path: ["../../../providers/sensors/wit", "../wit/edge"],
    generate_all,
});

use exports::wasmcloud::messaging::handler::Guest as Handler;
use wasmcloud::messaging::types::BrokerMessage;

const READINGS: &str = "twig.sensors.";
const OUT: &str = "telemetry.";
const PAUSED: &str = "paused";

fn bucket() -> Result<store::Bucket, String> {
    store::open("default").map_err(|e| format!("open bucket: {e:?}"))
}

struct Telemetry;

impl Handler for Telemetry {
    fn handle_message(msg: BrokerMessage) -> Result<(), String> {
        let Some(sensor) = msg.subject.strip_prefix(READINGS) else {
            return Err(format!("not a sensor reading: {}", msg.subject));
        };
        let reading = std::str::from_utf8(&msg.body)
            .map_err(|_| format!("reading of {sensor} is not UTF-8"))?;
        let bucket = bucket()?;
        if bucket
            .exists(PAUSED)
            .map_err(|e| format!("exists {PAUSED}: {e:?}"))?
        {
            return Ok(());
        }
        let seq = atomics::increment(&bucket, &format!("seq/{sensor}"), 1)
            .map_err(|e| format!("increment seq/{sensor}: {e:?}"))?;
        let body = format!("{{\"sensor\":\"{sensor}\",\"seq\":{seq},\"reading\":{reading}}}");
        consumer::publish(&wc_types::BrokerMessage {
            subject: format!("{OUT}{sensor}"),
            body: body.into_bytes(),
            reply_to: None,
        })
    }
}

impl Guest for Telemetry {
    fn pause() -> Result<(), String> {
        bucket()?
            .set(PAUSED, b"1")
            .map_err(|e| format!("set {PAUSED}: {e:?}"))
    }

    fn produced(sensor: String) -> Result<u64, String> {
        let v = bucket()?
            .get(&format!("seq/{sensor}"))
            .map_err(|e| format!("get seq/{sensor}: {e:?}"))?;
        match v {
            None => Ok(0),
            // twig keeps wasi:keyvalue counters as decimal text.
            Some(b) => String::from_utf8_lossy(&b)
                .trim()
                .parse()
                .map_err(|_| format!("seq/{sensor} holds {b:?}, not a number")),
        }
    }
}

export!(Telemetry);
