//! `edge-worker`: the shape of a typical edge component — read sensors,
//! keep state in key-value, talk over messaging — used by the host tests
//! of the sensors and messaging providers.

use wasmcloud_component::wasi::keyvalue::{atomics, store};
use wasmcloud_component::wasmcloud::messaging::{consumer, types as wc_types};

wit_bindgen::generate!({
    world: "twig:test/edge",
    path: ["../../../providers/sensors/wit", "../wit/edge"],
    generate_all,
});

use exports::wasmcloud::messaging::handler::Guest as Handler;
use twig::sensors::sensors;
use wasmcloud::messaging::types::BrokerMessage;

struct EdgeWorker;

fn bucket() -> Result<store::Bucket, String> {
    store::open("default").map_err(|e| format!("open bucket: {e:?}"))
}

impl Handler for EdgeWorker {
    fn handle_message(msg: BrokerMessage) -> Result<(), String> {
        let b = bucket()?;
        b.set(&format!("msg/{}", msg.subject), &msg.body)
            .map_err(|e| format!("set: {e:?}"))?;
        atomics::increment(&b, &format!("count/{}", msg.subject), 1)
            .map_err(|e| format!("increment: {e:?}"))?;
        if let Some(reply) = msg.reply_to {
            let mut body = b"re: ".to_vec();
            body.extend_from_slice(&msg.body);
            consumer::publish(&wc_types::BrokerMessage {
                subject: reply,
                body,
                reply_to: None,
            })?;
        }
        Ok(())
    }
}

impl Guest for EdgeWorker {
    fn sample(name: String) -> Result<f64, String> {
        let r = sensors::read(&name).map_err(|e| format!("read {name}: {e:?}"))?;
        bucket()?
            .set(
                &format!("sensor/{name}"),
                format!("{} {}", r.value, r.unit).as_bytes(),
            )
            .map_err(|e| format!("set: {e:?}"))?;
        Ok(r.value)
    }

    fn sensor_names() -> Vec<String> {
        sensors::list().into_iter().map(|s| s.name).collect()
    }

    fn publish(subject: String, body: String) -> Result<(), String> {
        consumer::publish(&wc_types::BrokerMessage {
            subject,
            body: body.into_bytes(),
            reply_to: None,
        })
    }

    fn request(subject: String, body: String, timeout_ms: u32) -> Result<String, String> {
        let reply = consumer::request(&subject, &body.into_bytes(), timeout_ms)?;
        Ok(String::from_utf8_lossy(&reply.body).into_owned())
    }

    fn kv_get(key: String) -> Result<Option<String>, String> {
        let v = bucket()?.get(&key).map_err(|e| format!("get: {e:?}"))?;
        Ok(v.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }
}

export!(EdgeWorker);
