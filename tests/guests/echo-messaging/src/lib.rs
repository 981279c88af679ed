//! `echo-messaging`: what wasmCloud's echo-messaging example component
//! does, written for twig's tests: every message that carries a reply
//! subject is sent back there with the same body. The provider never
//! answers for a component, so the answer is an ordinary `publish`.

use wasmcloud_component::wasi::logging::logging::{Level, log};
use wasmcloud_component::wasmcloud::messaging::{consumer, types as wc_types};

wit_bindgen::generate!({
    world: "twig:test/echo-messaging",
    path: ["../../../providers/sensors/wit", "../wit/edge"],
    generate_all,
});

use exports::wasmcloud::messaging::handler::Guest as Handler;
use wasmcloud::messaging::types::BrokerMessage;

struct Echo;

impl Handler for Echo {
    fn handle_message(msg: BrokerMessage) -> Result<(), String> {
        let Some(reply_to) = msg.reply_to else {
            log(
                Level::Warn,
                "echo",
                &format!("message on {} has no reply subject; ignored", msg.subject),
            );
            return Ok(());
        };
        consumer::publish(&wc_types::BrokerMessage {
            subject: reply_to,
            body: msg.body,
            reply_to: None,
        })
    }
}

impl Guest for Echo {
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
}

export!(Echo);
